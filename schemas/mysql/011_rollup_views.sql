-- tradewind: views over the hourly and daily rollups (asset_1h, asset_1d; migration 004), for long
-- time ranges, and the data-quality view that checks the rollups against asset_1m.
-- A new file rather than an edit of 010: migrate applies each version once (tw_schema_migrations),
-- so a database that already recorded 010 would never see an edit of it.

-- Every asset hour / day, final and provisional, for live dashboards (as v_asset_minute).
CREATE OR REPLACE VIEW v_asset_hour AS
SELECT
    base,
    window_start,
    window_end,
    trades,
    buys,
    sells,
    volume,
    buy_volume,
    sell_volume,
    notional_usd,
    vwap_usd,
    avg_price_usd,
    open_usd,
    high_usd,
    low_usd,
    close_usd,
    first_trade_at,
    last_trade_at,
    price_change_pct,
    price_trend,
    is_final,
    CASE WHEN is_final = 1 THEN 'final' ELSE 'provisional' END AS window_status,
    revision,
    updated_at
FROM asset_1h;

CREATE OR REPLACE VIEW v_asset_day AS
SELECT
    base,
    window_start,
    window_end,
    trades,
    buys,
    sells,
    volume,
    buy_volume,
    sell_volume,
    notional_usd,
    vwap_usd,
    avg_price_usd,
    open_usd,
    high_usd,
    low_usd,
    close_usd,
    first_trade_at,
    last_trade_at,
    price_change_pct,
    price_trend,
    is_final,
    CASE WHEN is_final = 1 THEN 'final' ELSE 'provisional' END AS window_status,
    revision,
    updated_at
FROM asset_1d;

-- Tableau's long-range sheets (tableau/tradewind.twb). As v_tableau_asset_minute (010), ages are
-- computed by the database from UTC_TIMESTAMP(), so time filters mean the same in every client time
-- zone: hours_ago / days_ago (whole hours / days between window_start and now, UTC), hours_before_latest
-- / days_before_latest (before the newest window stored, for replays) and is_last_closed (the rows of
-- the newest final hour / day). window_start is a whole UTC hour, or midnight UTC.
CREATE OR REPLACE VIEW v_tableau_asset_hour AS
SELECT
    a.base,
    a.window_start,
    a.window_end,
    a.trades,
    a.buys,
    a.sells,
    a.volume,
    a.buy_volume,
    a.sell_volume,
    a.notional_usd,
    a.vwap_usd,
    a.open_usd,
    a.high_usd,
    a.low_usd,
    a.close_usd,
    a.price_change_pct,
    a.price_trend,
    a.is_final,
    CASE WHEN a.is_final = 1 THEN 'final' ELSE 'provisional' END AS window_status,
    a.revision,
    TIMESTAMPDIFF(HOUR, a.window_start, UTC_TIMESTAMP()) AS hours_ago,
    TIMESTAMPDIFF(HOUR, a.window_start, m.latest_start) AS hours_before_latest,
    CASE WHEN a.window_start = m.last_closed_start THEN 1 ELSE 0 END AS is_last_closed
FROM asset_1h a
CROSS JOIN (
    SELECT
        MAX(window_start) AS latest_start,
        MAX(CASE WHEN is_final = 1 THEN window_start END) AS last_closed_start
    FROM asset_1h
) m;

CREATE OR REPLACE VIEW v_tableau_asset_day AS
SELECT
    a.base,
    a.window_start,
    a.window_end,
    a.trades,
    a.buys,
    a.sells,
    a.volume,
    a.buy_volume,
    a.sell_volume,
    a.notional_usd,
    a.vwap_usd,
    a.open_usd,
    a.high_usd,
    a.low_usd,
    a.close_usd,
    a.price_change_pct,
    a.price_trend,
    a.is_final,
    CASE WHEN a.is_final = 1 THEN 'final' ELSE 'provisional' END AS window_status,
    a.revision,
    TIMESTAMPDIFF(DAY, a.window_start, UTC_TIMESTAMP()) AS days_ago,
    TIMESTAMPDIFF(DAY, a.window_start, m.latest_start) AS days_before_latest,
    CASE WHEN a.window_start = m.last_closed_start THEN 1 ELSE 0 END AS is_last_closed
FROM asset_1d a
CROSS JOIN (
    SELECT
        MAX(window_start) AS latest_start,
        MAX(CASE WHEN is_final = 1 THEN window_start END) AS last_closed_start
    FROM asset_1d
) m;

-- Data quality: each rollup row against the asset_1m rows of its hour / day. Every commit merges a
-- batch's trades into asset_1m and the rollups in the same transaction, so at any consistent read
-- (one statement) they agree, final or provisional: trades, buys and sells are the sums of the
-- minutes', high/low their max/min, the open/close order keys and first/last trade times their
-- min/max (so open and close come from the same trade), and volume and notional the sums up to
-- 1e-9 relative (doubles summed in another order differ in the last bits). `revision` is not
-- compared: a trade late for its minute may be on time for its hour. consistent = 0 flags a row
-- that disagrees, or a rollup row with no minutes (minute_rows = 0).
-- Only windows that start after the oldest asset_1m row are compared: retention (`run --retention`)
-- keeps minutes for less time than rollups and deletes them oldest first (a batch may stop halfway
-- through the oldest minute), so every later window still has all its minutes. A rollup row missing altogether does not show here;
-- the data-quality dashboard compares trade totals per hour for that.
-- Driven by the rollup rows: a filter on window_start uses the rollup's index, and the minutes are
-- read by primary key range (base, window_start).
CREATE OR REPLACE VIEW v_quality_rollups AS
SELECT
    'asset_1h' AS rollup,
    r.base,
    r.window_start,
    MIN(r.is_final) AS is_final,
    COUNT(m.base) AS minute_rows,
    MIN(r.trades) AS rollup_trades,
    SUM(m.trades) AS minute_trades,
    MIN(r.volume) AS rollup_volume,
    SUM(m.volume) AS minute_volume,
    MIN(r.notional_usd) AS rollup_notional_usd,
    SUM(m.notional_usd) AS minute_notional_usd,
    CASE WHEN COUNT(m.base) > 0
          AND MIN(r.trades) = SUM(m.trades)
          AND MIN(r.buys) = SUM(m.buys)
          AND MIN(r.sells) = SUM(m.sells)
          AND MIN(r.high_usd) <=> MAX(m.high_usd)
          AND MIN(r.low_usd) <=> MIN(m.low_usd)
          AND MIN(r.open_key) = MIN(m.open_key)
          AND MIN(r.close_key) = MAX(m.close_key)
          AND MIN(r.first_trade_at) <=> MIN(m.first_trade_at)
          AND MIN(r.last_trade_at) <=> MAX(m.last_trade_at)
          AND (MIN(r.volume) <=> SUM(m.volume)
               OR ABS(MIN(r.volume) - SUM(m.volume)) <= 1e-9 * ABS(SUM(m.volume)))
          AND (MIN(r.notional_usd) <=> SUM(m.notional_usd)
               OR ABS(MIN(r.notional_usd) - SUM(m.notional_usd)) <= 1e-9 * ABS(SUM(m.notional_usd)))
         THEN 1 ELSE 0 END AS consistent
FROM asset_1h r
LEFT JOIN asset_1m m
    ON m.base = r.base AND m.window_start >= r.window_start AND m.window_start < r.window_end
WHERE r.window_start > (SELECT MIN(o.window_start) FROM asset_1m o)
GROUP BY r.base, r.window_start
UNION ALL
SELECT
    'asset_1d' AS rollup,
    r.base,
    r.window_start,
    MIN(r.is_final) AS is_final,
    COUNT(m.base) AS minute_rows,
    MIN(r.trades) AS rollup_trades,
    SUM(m.trades) AS minute_trades,
    MIN(r.volume) AS rollup_volume,
    SUM(m.volume) AS minute_volume,
    MIN(r.notional_usd) AS rollup_notional_usd,
    SUM(m.notional_usd) AS minute_notional_usd,
    CASE WHEN COUNT(m.base) > 0
          AND MIN(r.trades) = SUM(m.trades)
          AND MIN(r.buys) = SUM(m.buys)
          AND MIN(r.sells) = SUM(m.sells)
          AND MIN(r.high_usd) <=> MAX(m.high_usd)
          AND MIN(r.low_usd) <=> MIN(m.low_usd)
          AND MIN(r.open_key) = MIN(m.open_key)
          AND MIN(r.close_key) = MAX(m.close_key)
          AND MIN(r.first_trade_at) <=> MIN(m.first_trade_at)
          AND MIN(r.last_trade_at) <=> MAX(m.last_trade_at)
          AND (MIN(r.volume) <=> SUM(m.volume)
               OR ABS(MIN(r.volume) - SUM(m.volume)) <= 1e-9 * ABS(SUM(m.volume)))
          AND (MIN(r.notional_usd) <=> SUM(m.notional_usd)
               OR ABS(MIN(r.notional_usd) - SUM(m.notional_usd)) <= 1e-9 * ABS(SUM(m.notional_usd)))
         THEN 1 ELSE 0 END AS consistent
FROM asset_1d r
LEFT JOIN asset_1m m
    ON m.base = r.base AND m.window_start >= r.window_start AND m.window_start < r.window_end
WHERE r.window_start > (SELECT MIN(o.window_start) FROM asset_1m o)
GROUP BY r.base, r.window_start;
