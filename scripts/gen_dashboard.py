#!/usr/bin/env python3
"""Generate grafana/tradewind.json (the tradewind Grafana dashboard) from this file.

The dashboard is code: edit the panel list below and run `python3 scripts/gen_dashboard.py`; the JSON is
committed so Grafana provisioning (grafana/provisioning) and Kubernetes (grafana/kustomization.yaml,
a ConfigMap labelled grafana_dashboard: "1") use it without running anything. Stdlib only.
"""
import json
import os

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# One deployment at a time: Kubernetes namespace (kube-prometheus-stack adds it to every target; empty
# locally, which `=~".*"` still matches) and job.
SEL = 'namespace=~"$namespace", job=~"$job"'

panels = []
_next_id = [1]
_y = [0]


def _id():
    i = _next_id[0]
    _next_id[0] += 1
    return i


def row(title):
    panels.append({"type": "row", "title": title, "id": _id(), "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": _y[0]}, "panels": []})
    _y[0] += 1


_x = [0]


def _place(w, h):
    if _x[0] + w > 24:
        _x[0] = 0
        _y[0] += h
    pos = {"h": h, "w": w, "x": _x[0], "y": _y[0]}
    _x[0] += w
    return pos


def _newline(h=8):
    if _x[0] != 0:
        _x[0] = 0
        _y[0] += h


def ts(title, targets, unit="short", w=8, h=8, desc="", stack=False):
    """A time series panel; targets = [(expr, legend)]."""
    panels.append({
        "type": "timeseries", "id": _id(), "title": title, "description": desc, "datasource": DS,
        "gridPos": _place(w, h),
        "fieldConfig": {"defaults": {"unit": unit, "custom": {
            "lineWidth": 1, "fillOpacity": 10,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"}}}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"datasource": DS, "refId": chr(65 + i), "expr": e, "legendFormat": l}
                    for i, (e, l) in enumerate(targets)],
    })


def stat(title, expr, unit="short", w=4, h=4, desc="", thresholds=None, mappings=None):
    panels.append({
        "type": "stat", "id": _id(), "title": title, "description": desc, "datasource": DS,
        "gridPos": _place(w, h),
        "fieldConfig": {"defaults": {"unit": unit, "mappings": mappings or [],
                                     "thresholds": {"mode": "absolute", "steps": thresholds or [
                                         {"color": "green", "value": None}]}}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "area", "textMode": "auto"},
        "targets": [{"datasource": DS, "refId": "A", "expr": expr, "legendFormat": ""}],
    })


def quantiles(metric, by=""):
    grp = f"le{',' + by if by else ''}"
    out = []
    for q in ("0.5", "0.99"):
        out.append((f'histogram_quantile({q}, sum by ({grp}) (rate({metric}_bucket{{{SEL}}}[$__rate_interval])))',
                    f"p{int(float(q) * 100)}" + (f" {{{{{by}}}}}" if by else "")))
    return out


# ------------------------------------------------------------------ overview
row("Overview")
stat("Engines ready", f"sum(tradewind_engine_ready{{{SEL}}})", w=4,
     desc="Engine replicas whose /readyz is true (tradewind_engine_ready).",
     thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}])
stat("Ingest rate", f"sum(rate(tradewind_ingest_produced_total{{{SEL}}}[$__rate_interval]))", unit="reqps", w=4,
     desc="Trades produced to Kafka per second.")
stat("Engine rate", f"sum(rate(tradewind_engine_records_in_total{{{SEL}}}[$__rate_interval]))", unit="reqps", w=4,
     desc="Records consumed by the engines per second.")
stat("Consumer lag", f"sum(tradewind_engine_consumer_lag{{{SEL}}})", w=4, desc="Records behind the log end, all partitions.",
     thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 100000}, {"color": "red", "value": 500000}])
stat("Watermark lag", f"max(tradewind_engine_event_time_lag_seconds{{{SEL}}})", unit="s", w=4,
     desc="Wall clock minus the engine watermark.",
     thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 120}, {"color": "red", "value": 300}])
stat("Open windows", f"sum(tradewind_engine_open_windows{{{SEL}}})", w=4, desc="Windows held in memory, not final yet.")
_newline(4)

# ------------------------------------------------------------------ ingest
row("Ingest (websocket -> Kafka)")
ts("Ingest rate", [
    (f"sum(rate(tradewind_ingest_frames_total{{{SEL}}}[$__rate_interval]))", "frames"),
    (f"sum(rate(tradewind_ingest_produced_total{{{SEL}}}[$__rate_interval]))", "produced"),
], unit="reqps", desc="Frames read from the feeds and trades produced to Kafka per second.")
ts("Ingest rejects by reason", [
    (f"sum by (reason) (rate(tradewind_ingest_rejected_total{{{SEL}}}[$__rate_interval]))", "{{reason}}"),
], unit="reqps", stack=True, desc="Frames sent to the dead-letter topic, by tw-reason.")
ts("Reconnects and delivery errors", [
    (f"sum(increase(tradewind_ingest_reconnects_total{{{SEL}}}[$__rate_interval]))", "reconnects"),
    (f"sum(increase(tradewind_ingest_delivery_errors_total{{{SEL}}}[$__rate_interval]))", "delivery errors"),
], desc="Feed reconnects (idle timeout / disconnect) and Kafka delivery failures per interval.")
ts("Delivery latency", quantiles("tradewind_ingest_delivery_latency_seconds"), unit="s",
   desc="Produce call to broker acknowledgement.")
ts("In-flight records", [(f"sum by (instance) (tradewind_ingest_inflight{{{SEL}}})", "{{instance}}")],
   desc="Handed to Kafka, not yet acknowledged (backpressure when full).")
_newline()

# ------------------------------------------------------------------ engine
row("Engine (Kafka -> windows -> MySQL)")
ts("Records in / decoded / rejected", [
    (f"sum(rate(tradewind_engine_records_in_total{{{SEL}}}[$__rate_interval]))", "in"),
    (f"sum(rate(tradewind_engine_records_decoded_total{{{SEL}}}[$__rate_interval]))", "decoded"),
    (f"sum(rate(tradewind_engine_records_rejected_total{{{SEL}}}[$__rate_interval]))", "rejected"),
], unit="reqps")
ts("Engine rejects by reason", [
    (f"sum by (reason) (rate(tradewind_engine_records_rejected_total{{{SEL}}}[$__rate_interval]))", "{{reason}}"),
], unit="reqps", stack=True)
ts("Late records", [
    (f"sum by (outcome) (rate(tradewind_engine_late_records_total{{{SEL}}}[$__rate_interval]))", "{{outcome}}"),
], unit="reqps", desc="corrected: within allowed lateness, the written window was revised; routed: sent to trades.late.")
ts("Windows emitted", [
    (f"sum by (grain, kind) (rate(tradewind_engine_windows_emitted_total{{{SEL}}}[$__rate_interval]))",
     "{{grain}} {{kind}}"),
], unit="reqps")
ts("Rows written", [
    (f"sum by (table) (rate(tradewind_engine_rows_written_total{{{SEL}}}[$__rate_interval]))", "{{table}}"),
], unit="reqps")
ts("Sink errors", [
    (f"sum by (instance) (increase(tradewind_engine_sink_errors_total{{{SEL}}}[$__rate_interval]))", "{{instance}}"),
])
ts("Batch duration", quantiles("tradewind_engine_batch_duration_seconds"), unit="s",
   desc="One micro-batch: decode, window, emit.")
ts("Sink duration", quantiles("tradewind_engine_sink_duration_seconds"), unit="s",
   desc="One MySQL transaction: rows, offsets and window state.")
ts("Final-to-commit latency", quantiles("tradewind_engine_final_to_commit_seconds"), unit="s",
   desc="From a window becoming final (watermark past its end) to its row committed in MySQL.")
ts("Consumer lag per partition", [
    (f"max by (partition) (tradewind_engine_consumer_lag{{{SEL}}})", "p{{partition}}"),
], stack=True)
ts("Watermark lag", [
    (f"max by (instance) (tradewind_engine_event_time_lag_seconds{{{SEL}}})", "{{instance}}"),
], unit="s", desc="Wall clock minus watermark.")
ts("Watermark", [
    (f"max by (instance) (tradewind_engine_watermark_seconds{{{SEL}}}) * 1000", "{{instance}}"),
], unit="dateTimeAsIso", desc="Event-time watermark (epoch).")
ts("Open windows", [(f"sum by (instance) (tradewind_engine_open_windows{{{SEL}}})", "{{instance}}")])
ts("Readiness", [(f"max by (instance) (tradewind_engine_ready{{{SEL}}})", "{{instance}}")],
   desc="1 = ready (/readyz).")
_newline()

# ------------------------------------------------------------------ process
row("Process")
ts("CPU", [(f"rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])", "{{instance}}")], unit="percentunit", w=12)
ts("Resident memory", [(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")], unit="bytes", w=12)
ts("Open file descriptors", [(f"process_open_fds{{{SEL}}}", "{{instance}}")], w=12)
ts("Build", [(f"tradewind_build_info{{{SEL}}}", "{{instance}} {{version}}")], w=12)
_newline()

dashboard = {
    "id": None,
    "uid": "tradewind-main",
    "title": "tradewind",
    "description": "tradewind: ingest (websocket -> Kafka) and engine (Kafka -> 1-minute windows -> MySQL).",
    "tags": ["tradewind", "streaming", "kafka"],
    "timezone": "utc",
    "editable": True,
    "graphTooltip": 1,
    "refresh": "10s",
    "schemaVersion": 39,
    "version": 1,
    "time": {"from": "now-1h", "to": "now"},
    "timepicker": {},
    "annotations": {"list": []},
    "links": [],
    "templating": {"list": [
        {"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        {"name": "namespace", "label": "Namespace", "type": "query", "datasource": DS,
         "query": {"query": "label_values(tradewind_build_info, namespace)", "refId": "namespace"},
         "definition": "label_values(tradewind_build_info, namespace)",
         "includeAll": True, "multi": False, "allValue": ".*", "current": {}, "refresh": 2, "sort": 1,
         "hide": 0, "options": [], "regex": ""},
        {"name": "job", "label": "Job", "type": "query", "datasource": DS,
         "query": {"query": "label_values(tradewind_build_info{namespace=~\"$namespace\"}, job)",
                   "refId": "job"},
         "definition": "label_values(tradewind_build_info{namespace=~\"$namespace\"}, job)",
         "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "refresh": 2, "sort": 1,
         "hide": 0, "options": [], "regex": ""},
    ]},
    "panels": panels,
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grafana", "tradewind.json")
with open(out, "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
print(f"wrote {os.path.normpath(out)}: {len([p for p in panels if p['type'] != 'row'])} panels")
