-- tradewind: merge-on-write window rows (correct however trades are spread over partitions and
-- replicas) and a topic-wide low watermark in tw_offsets.
--
-- Each commit merges its contribution into the window rows (see crates/sink/src/merge.rs). The
-- ordering keys of open and close are DECIMAL(38,0) = event_ms * 10^19 + (partition << 44 | offset),
-- exact and deterministic, so ties between trades of the same millisecond go to the lower
-- (partition, offset) for open and the higher one for close. sum_price_usd keeps avg_price_usd
-- mergeable. revision counts late trades (within allowed lateness) folded in after the window closed.
-- price_trend compares closed windows: it is set when a row becomes final and refreshed when a final
-- row or its previous window changes (trend_stale flags those rows inside one commit).
-- The window rows hold all the state: tw_window_state is gone.

ALTER TABLE market_1m
    ADD COLUMN open_key      DECIMAL(38,0) NOT NULL DEFAULT 0 AFTER close_price,
    ADD COLUMN close_key     DECIMAL(38,0) NOT NULL DEFAULT 0 AFTER open_key,
    ADD COLUMN sum_price_usd DOUBLE NULL AFTER close_key,
    ADD COLUMN trend_stale   TINYINT(1) NOT NULL DEFAULT 0 AFTER sum_price_usd,
    ADD KEY idx_market_1m_open (is_final, window_start),
    ADD KEY idx_market_1m_trend_stale (trend_stale);

ALTER TABLE asset_1m
    ADD COLUMN open_key      DECIMAL(38,0) NOT NULL DEFAULT 0 AFTER close_usd,
    ADD COLUMN close_key     DECIMAL(38,0) NOT NULL DEFAULT 0 AFTER open_key,
    ADD COLUMN sum_price_usd DOUBLE NULL AFTER close_key,
    ADD COLUMN trend_stale   TINYINT(1) NOT NULL DEFAULT 0 AFTER sum_price_usd,
    ADD KEY idx_asset_1m_open (is_final, window_start),
    ADD KEY idx_asset_1m_trend_stale (trend_stale);

-- watermark_ms: the partition's watermark (max event time - out-of-orderness); status: 0 active
-- (holds the low watermark back), 1 idle, 2 drained; commits: bumped by every compare-and-set.
ALTER TABLE tw_offsets
    ADD COLUMN watermark_ms BIGINT NULL AFTER max_event_ms,
    ADD COLUMN status       TINYINT UNSIGNED NOT NULL DEFAULT 0 AFTER watermark_ms,
    ADD COLUMN commits      BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER status;

DROP TABLE IF EXISTS tw_window_state;
