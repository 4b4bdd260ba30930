-- The shipped pipeline: the tables tradewind always maintains. User pipelines (--pipeline FILE) add
-- views beside these, written the same way. price_trend (up/down/flat against the previous window's
-- vwap_usd) is kept for these tables by the engine; it is not SQL.

-- One row per market (exchange, base, quote) and minute.
CREATE MATERIALIZED VIEW market_1m AS
SELECT exchange, base, quote,
       date_bin(INTERVAL '1 minute', ts) AS window_start,
       count(*) AS trades,
       count(*) FILTER (WHERE direction = 'buy') AS buys,
       count(*) FILTER (WHERE direction = 'sell') AS sells,
       sum(volume) AS volume,
       coalesce(sum(volume) FILTER (WHERE direction = 'buy'), 0) AS buy_volume,
       coalesce(sum(volume) FILTER (WHERE direction = 'sell'), 0) AS sell_volume,
       sum(price_usd * volume) AS notional_usd,
       sum(price_usd) AS sum_price_usd,
       first_value(price_usd ORDER BY ts) AS open_usd,
       max(price_usd) AS high_usd,
       min(price_usd) AS low_usd,
       last_value(price_usd ORDER BY ts) AS close_usd,
       min(ts) AS first_trade_at,
       max(ts) AS last_trade_at,
       first_value(price ORDER BY ts) AS open_price,
       max(price) AS high_price,
       min(price) AS low_price,
       last_value(price ORDER BY ts) AS close_price,
       sum(price_usd * volume) / sum(volume) AS vwap_usd,
       avg(price_usd) AS avg_price_usd,
       (last_value(price_usd ORDER BY ts) - first_value(price_usd ORDER BY ts))
           / first_value(price_usd ORDER BY ts) * 100 AS price_change_pct
FROM trades
GROUP BY exchange, base, quote, date_bin(INTERVAL '1 minute', ts);

-- One row per asset and minute, across markets, in USD.
CREATE MATERIALIZED VIEW asset_1m AS
SELECT base,
       date_bin(INTERVAL '1 minute', ts) AS window_start,
       count(*) AS trades,
       count(*) FILTER (WHERE direction = 'buy') AS buys,
       count(*) FILTER (WHERE direction = 'sell') AS sells,
       sum(volume) AS volume,
       coalesce(sum(volume) FILTER (WHERE direction = 'buy'), 0) AS buy_volume,
       coalesce(sum(volume) FILTER (WHERE direction = 'sell'), 0) AS sell_volume,
       sum(price_usd * volume) AS notional_usd,
       sum(price_usd) AS sum_price_usd,
       first_value(price_usd ORDER BY ts) AS open_usd,
       max(price_usd) AS high_usd,
       min(price_usd) AS low_usd,
       last_value(price_usd ORDER BY ts) AS close_usd,
       min(ts) AS first_trade_at,
       max(ts) AS last_trade_at,
       sum(price_usd * volume) / sum(volume) AS vwap_usd,
       avg(price_usd) AS avg_price_usd,
       (last_value(price_usd ORDER BY ts) - first_value(price_usd ORDER BY ts))
           / first_value(price_usd ORDER BY ts) * 100 AS price_change_pct
FROM trades
GROUP BY base, date_bin(INTERVAL '1 minute', ts);

-- Rollup for long time ranges: one row per asset and hour, same columns as asset_1m.
CREATE MATERIALIZED VIEW asset_1h AS
SELECT base,
       date_bin(INTERVAL '1 hour', ts) AS window_start,
       count(*) AS trades,
       count(*) FILTER (WHERE direction = 'buy') AS buys,
       count(*) FILTER (WHERE direction = 'sell') AS sells,
       sum(volume) AS volume,
       coalesce(sum(volume) FILTER (WHERE direction = 'buy'), 0) AS buy_volume,
       coalesce(sum(volume) FILTER (WHERE direction = 'sell'), 0) AS sell_volume,
       sum(price_usd * volume) AS notional_usd,
       sum(price_usd) AS sum_price_usd,
       first_value(price_usd ORDER BY ts) AS open_usd,
       max(price_usd) AS high_usd,
       min(price_usd) AS low_usd,
       last_value(price_usd ORDER BY ts) AS close_usd,
       min(ts) AS first_trade_at,
       max(ts) AS last_trade_at,
       sum(price_usd * volume) / sum(volume) AS vwap_usd,
       avg(price_usd) AS avg_price_usd,
       (last_value(price_usd ORDER BY ts) - first_value(price_usd ORDER BY ts))
           / first_value(price_usd ORDER BY ts) * 100 AS price_change_pct
FROM trades
GROUP BY base, date_bin(INTERVAL '1 hour', ts);

-- Rollup for long time ranges: one row per asset and day (UTC), same columns as asset_1m.
CREATE MATERIALIZED VIEW asset_1d AS
SELECT base,
       date_bin(INTERVAL '1 day', ts) AS window_start,
       count(*) AS trades,
       count(*) FILTER (WHERE direction = 'buy') AS buys,
       count(*) FILTER (WHERE direction = 'sell') AS sells,
       sum(volume) AS volume,
       coalesce(sum(volume) FILTER (WHERE direction = 'buy'), 0) AS buy_volume,
       coalesce(sum(volume) FILTER (WHERE direction = 'sell'), 0) AS sell_volume,
       sum(price_usd * volume) AS notional_usd,
       sum(price_usd) AS sum_price_usd,
       first_value(price_usd ORDER BY ts) AS open_usd,
       max(price_usd) AS high_usd,
       min(price_usd) AS low_usd,
       last_value(price_usd ORDER BY ts) AS close_usd,
       min(ts) AS first_trade_at,
       max(ts) AS last_trade_at,
       sum(price_usd * volume) / sum(volume) AS vwap_usd,
       avg(price_usd) AS avg_price_usd,
       (last_value(price_usd ORDER BY ts) - first_value(price_usd ORDER BY ts))
           / first_value(price_usd ORDER BY ts) * 100 AS price_change_pct
FROM trades
GROUP BY base, date_bin(INTERVAL '1 day', ts);
