-- tradewind: read-side views (compatibility with the replaced Spark job, and Tableau).

-- Same columns as the Spark pipeline's table, final windows only (the Spark job appended only closed windows).
CREATE OR REPLACE VIEW coincap_analysis AS
SELECT
    window_start,
    window_end,
    base,
    volume      AS total_volume,
    vwap_usd    AS actual_avg,
    price_trend
FROM asset_1m
WHERE is_final = 1;

-- Every asset minute, final and provisional (the forming minute), for live dashboards.
CREATE OR REPLACE VIEW v_asset_minute AS
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
FROM asset_1m;

-- Every market (exchange, base, quote) minute, final and provisional.
CREATE OR REPLACE VIEW v_market_minute AS
SELECT
    exchange,
    base,
    quote,
    CONCAT(exchange, ':', base, '/', quote) AS market,
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
    open_price,
    high_price,
    low_price,
    close_price,
    first_trade_at,
    last_trade_at,
    price_change_pct,
    price_trend,
    is_final,
    CASE WHEN is_final = 1 THEN 'final' ELSE 'provisional' END AS window_status,
    revision,
    updated_at
FROM market_1m;
