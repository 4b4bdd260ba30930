#!/usr/bin/env python3
"""Generate grafana/data-quality.json, the "tradewind data quality" Grafana dashboard (uid
tradewind-quality), from this file. Stdlib only; the JSON is committed.

Its SQL panels use Grafana's MySQL datasource (variable DS_MYSQL; provisioned as uid tradewind-mysql by
grafana/provisioning/datasources) over the tables and views of schemas/mysql: rows written per minute,
provisional against final rows, corrections (`revision`: late trades folded into a row after its window
closed), rows still provisional long after their minute, asset/market consistency, and the hourly and
daily rollups (asset_1h, asset_1d) against asset_1m (view v_quality_rollups, 011_rollup_views.sql). Late and
dead-lettered trades are not stored in MySQL (they go to the trades.late and trades.dlq topics), so those
two panels read the engine's and ingest's counters from Prometheus (DS_PROMETHEUS).
scripts/check_quality_sql.py runs every SQL query of the dashboard against MariaDB in CI.
"""
import json
import os

MYSQL = {"type": "mysql", "uid": "${DS_MYSQL}"}
PROM = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

panels = []
_y = [0]
_x = [0]


def _place(w, h):
    if _x[0] + w > 24:
        _x[0] = 0
        _y[0] += h
    pos = {"h": h, "w": w, "x": _x[0], "y": _y[0]}
    _x[0] += w
    return pos


def _sql_target(ref, sql, fmt):
    return {"datasource": MYSQL, "refId": ref, "format": fmt, "rawQuery": True, "editorMode": "code",
            "rawSql": " ".join(sql.split())}


def sql_ts(title, sql, desc, unit="short", w=12, h=8, stack=False):
    """A time series panel over one SQL query returning `time` and one column per series."""
    panels.append({
        "type": "timeseries", "id": len(panels) + 1, "title": title, "description": desc,
        "datasource": MYSQL, "gridPos": _place(w, h),
        "fieldConfig": {"defaults": {"unit": unit, "custom": {
            "drawStyle": "bars" if stack else "line", "fillOpacity": 60 if stack else 10,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"}}}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}},
        "targets": [_sql_target("A", sql, "time_series")],
    })


def sql_stat(title, sql, desc, unit="short", w=6, h=5, thresholds=None):
    panels.append({
        "type": "stat", "id": len(panels) + 1, "title": title, "description": desc,
        "datasource": MYSQL, "gridPos": _place(w, h),
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": thresholds or [
            {"color": "green", "value": None}]}}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "none", "textMode": "auto"},
        "targets": [_sql_target("A", sql, "table")],
    })


def sql_table(title, sql, desc, w=24, h=9):
    panels.append({
        "type": "table", "id": len(panels) + 1, "title": title, "description": desc,
        "datasource": MYSQL, "gridPos": _place(w, h), "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
        "targets": [_sql_target("A", sql, "table")],
    })


def prom_ts(title, targets, desc, w=12, h=8):
    panels.append({
        "type": "timeseries", "id": len(panels) + 1, "title": title, "description": desc,
        "datasource": PROM, "gridPos": _place(w, h),
        "fieldConfig": {"defaults": {"unit": "short", "custom": {"fillOpacity": 10}}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"datasource": PROM, "refId": chr(65 + i), "expr": e, "legendFormat": l}
                    for i, (e, l) in enumerate(targets)],
    })


red_above = lambda v: [{"color": "green", "value": None}, {"color": "red", "value": v}]  # noqa: E731

sql_stat("Market rows in range", """
SELECT COUNT(*) AS "rows" FROM market_1m WHERE $__timeFilter(window_start)""",
         "Window rows (exchange, base, quote, minute) whose minute lies in the dashboard's time range.")
sql_stat("Provisional rows", """
SELECT COUNT(*) AS "provisional" FROM market_1m WHERE is_final = 0 AND $__timeFilter(window_start)""",
         "Rows of minutes the watermark has not closed yet (is_final = 0); normally only the forming minute.")
sql_stat("Stuck provisional rows", """
SELECT COUNT(*) AS "stuck" FROM market_1m
WHERE is_final = 0 AND window_end < UTC_TIMESTAMP(3) - INTERVAL 5 MINUTE AND $__timeFilter(window_start)""",
         "Provisional rows whose minute ended more than 5 minutes ago: the watermark is stuck (an idle "
         "partition, an engine down) or the engine lags. Should be 0.", thresholds=red_above(1))
sql_stat("Corrected rows", """
SELECT COALESCE(SUM(revision > 0), 0) AS "corrected" FROM market_1m WHERE $__timeFilter(window_start)""",
         "Final rows that late trades (within the allowed lateness) changed after their window closed.")

sql_ts("Rows written per minute", """
SELECT $__timeGroupAlias(updated_at, '1m'),
       COUNT(*) AS "market rows", SUM(is_final = 1) AS "final market rows"
FROM market_1m WHERE $__timeFilter(updated_at) GROUP BY 1 ORDER BY 1""",
       "Market rows by the minute of their last write (updated_at): provisional rows are rewritten every "
       "live interval, so this counts rows touched, each once, at its latest write.")
sql_ts("Provisional and final rows per window minute", """
SELECT $__timeGroupAlias(window_start, '1m'),
       SUM(is_final = 1) AS "final", SUM(is_final = 0) AS "provisional"
FROM market_1m WHERE $__timeFilter(window_start) GROUP BY 1 ORDER BY 1""",
       "For each window minute, how many market rows are final and how many still provisional.", stack=True)
sql_ts("Corrections per window minute", """
SELECT $__timeGroupAlias(window_start, '1m'),
       SUM(revision > 0) AS "corrected rows", SUM(revision) AS "late trades folded in"
FROM market_1m WHERE $__timeFilter(window_start) GROUP BY 1 ORDER BY 1""",
       "revision = number of late trades folded into a row after its window closed. Corrected rows are "
       "final rows with revision > 0.")
sql_ts("Trades per minute: asset_1m against market_1m", """
SELECT $__timeGroupAlias(a.window_start, '1m'), SUM(a.trades) AS "asset_1m trades",
       (SELECT COALESCE(SUM(m.trades), 0) FROM market_1m m WHERE m.window_start = a.window_start) AS "market_1m trades"
FROM asset_1m a WHERE $__timeFilter(a.window_start) GROUP BY a.window_start ORDER BY 1""",
       "The per-asset rollup must count the same trades as the per-market rows of the same minute: two "
       "lines that do not coincide mean the two tables disagree.")
# Rollups: windows overlapping the range (a day row starts up to a day before it), whole hours for totals.
ROLLUP_RANGE = "window_start > $__timeFrom() - INTERVAL 1 DAY AND window_start <= $__timeTo()"
HOUR_FLOOR = "window_start >= $__timeFrom() - INTERVAL UNIX_TIMESTAMP($__timeFrom()) MOD 3600 SECOND"
sql_stat("Rollup rows that disagree with asset_1m", f"""
SELECT COUNT(*) - COALESCE(SUM(consistent), 0) AS "disagreeing" FROM v_quality_rollups WHERE {ROLLUP_RANGE}""",
         "asset_1h and asset_1d rows whose trades, buys, sells, high, low, open/close order keys, first/last "
         "trade times, volume or notional differ from the asset_1m rows of their hour or day (each commit "
         "writes all three in one transaction, so they always agree). Should be 0.", thresholds=red_above(1))
sql_ts("Trades per hour: asset_1h against asset_1m", f"""
SELECT m.t AS "time", m.trades AS "asset_1m trades", COALESCE(h.trades, 0) AS "asset_1h trades"
FROM (SELECT UNIX_TIMESTAMP(window_start) DIV 3600 * 3600 AS t, SUM(trades) AS trades FROM asset_1m
      WHERE {HOUR_FLOOR} AND window_start <= $__timeTo() GROUP BY 1) m
LEFT JOIN (SELECT UNIX_TIMESTAMP(window_start) AS t, SUM(trades) AS trades FROM asset_1h
      WHERE {HOUR_FLOOR} AND window_start <= $__timeTo() GROUP BY 1) h ON h.t = m.t
ORDER BY 1""",
       "Trades counted by the minutes and by the hourly rollup, per hour: two lines that do not coincide "
       "mean the rollup misses rows or counts differently.", w=12)
sql_table("Rollup rows that disagree: details", f"""
SELECT rollup, base, window_start, is_final, minute_rows, rollup_trades, minute_trades, rollup_volume,
       minute_volume, rollup_notional_usd, minute_notional_usd
FROM v_quality_rollups WHERE consistent = 0 AND {ROLLUP_RANGE}
ORDER BY window_start DESC, rollup, base LIMIT 20""",
          "The rollup rows counted above, with the rollup's and the minutes' figures side by side "
          "(minute_rows = 0: a rollup row with no minutes). Windows older than the oldest asset_1m row are "
          "not compared (retention keeps minutes for less time than rollups).", w=12)
prom_ts("Late trades (engine)", [
    ('sum by (outcome) (increase(tradewind_engine_late_records_total[$__rate_interval]))', "{{outcome}}")],
    "Trades behind the watermark: `folded` into a closed row (within allowed lateness; a correction), "
    "`routed` to trades.late (beyond it; not in MySQL). From Prometheus: not stored in MySQL.")
prom_ts("Dead-lettered records", [
    ('sum by (reason) (increase(tradewind_ingest_rejected_total[$__rate_interval]))', "ingest: {{reason}}"),
    ('sum by (reason) (increase(tradewind_engine_records_rejected_total[$__rate_interval]))',
     "engine: {{reason}}")],
    "Records sent to trades.dlq by ingest (invalid frames) and by the engine (undecodable records), by "
    "reason. From Prometheus: dead letters are in Kafka, not MySQL.")
sql_table("Most corrected rows", """
SELECT market, window_start, revision, trades, vwap_usd, updated_at
FROM v_market_minute WHERE revision > 0 AND $__timeFilter(window_start)
ORDER BY revision DESC, window_start DESC LIMIT 20""",
          "The market minutes that took the most late trades after closing.")

dashboard = {
    "id": None, "uid": "tradewind-quality", "title": "tradewind data quality",
    "description": "Data quality of the MySQL output: rows written, provisional against final, corrections, "
                   "late and dead-lettered trades. Generated by scripts/gen_quality_dashboard.py.",
    "tags": ["tradewind"], "timezone": "utc", "editable": True, "schemaVersion": 39, "version": 1,
    "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [
        {"name": "DS_MYSQL", "label": "MySQL", "type": "datasource", "query": "mysql", "current": {},
         "hide": 0, "refresh": 1, "regex": "", "options": []},
        {"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
    ]},
    "annotations": {"list": []},
    "panels": panels,
}

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grafana", "data-quality.json")
    with open(out, "w") as f:
        json.dump(dashboard, f, indent=2)
        f.write("\n")
    print(f"wrote {os.path.normpath(out)}: {len(panels)} panels")
