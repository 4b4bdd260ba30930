-- tradewind: hourly and daily rollups of asset_1m, for long time ranges (Tableau's long-range sheets,
-- the data-quality rollup checks, and retention that keeps them longer than the minutes).
--
-- asset_1h and asset_1d have exactly asset_1m's structure (as migration 003 left it): the same
-- columns, types, primary key (base, window_start) and secondary indexes, including the
-- (is_final, window_start) index that finalization and retention range over and the trend_stale
-- index the trend refresh is driven by. CREATE TABLE ... LIKE copies all of it, so the three tables
-- cannot drift apart here; the index names are copied as they are (idx_asset_1m_*), which is harmless
-- (index names are per table). The engine merges into them with asset_1m's rules, over 1-hour and
-- 1-day tumbling windows aligned to the epoch in UTC (window_start on a whole UTC hour / midnight UTC).
-- price_change_pct and price_trend compare with the previous hour / day.

CREATE TABLE IF NOT EXISTS asset_1h LIKE asset_1m;

CREATE TABLE IF NOT EXISTS asset_1d LIKE asset_1m;
