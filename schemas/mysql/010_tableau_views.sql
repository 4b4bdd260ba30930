-- tradewind: the view behind the Tableau dashboard (tableau/tradewind.twb, tableau/tradewind.tds).
--
-- Time zones: window_start is a UTC DATETIME with no zone attached. Tableau's NOW(), TODAY() and its
-- relative-date filters use the clock and zone of the machine running Tableau, so "the last hour" computed
-- there against window_start is off by the client's UTC offset (an hour in Paris, eight in Singapore).
-- This view computes each minute's age on the database side instead, from UTC_TIMESTAMP() (independent of
-- the session time zone) and from the newest minute in the table, so the workbook filters on plain
-- integers that mean the same in every client time zone:
--   minutes_ago            whole minutes between window_start and now (UTC) on the database server;
--   minutes_before_latest  whole minutes between window_start and the newest minute stored (for replays
--                          and historical loads, whose minutes are far from now);
--   is_last_closed         1 on the rows of the newest final minute ("the last closed minute").
-- Read by the read-only user `tradewind migrate --readonly-user` creates (SELECT on views only).
CREATE OR REPLACE VIEW v_tableau_asset_minute AS
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
    TIMESTAMPDIFF(MINUTE, a.window_start, UTC_TIMESTAMP()) AS minutes_ago,
    TIMESTAMPDIFF(MINUTE, a.window_start, m.latest_start) AS minutes_before_latest,
    CASE WHEN a.window_start = m.last_closed_start THEN 1 ELSE 0 END AS is_last_closed
FROM asset_1m a
CROSS JOIN (
    SELECT
        MAX(window_start) AS latest_start,
        MAX(CASE WHEN is_final = 1 THEN window_start END) AS last_closed_start
    FROM asset_1m
) m;
