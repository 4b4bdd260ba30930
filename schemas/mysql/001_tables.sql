-- tradewind: window result tables and the exactly-once store (offsets + window state).
-- Applied in order by `tradewind migrate` (crates/sink); every statement is idempotent.
-- All DATETIME(3) values are UTC (the sink sets the session time_zone to '+00:00').
-- Keys use utf8mb4_bin so that keys differing only by case stay distinct, as they do in the engine.

CREATE TABLE IF NOT EXISTS market_1m (
    exchange         VARCHAR(64)  NOT NULL,
    base             VARCHAR(64)  NOT NULL,
    quote            VARCHAR(64)  NOT NULL,
    window_start     DATETIME(3)  NOT NULL,
    window_end       DATETIME(3)  NOT NULL,
    trades           BIGINT UNSIGNED NOT NULL DEFAULT 0,
    buys             BIGINT UNSIGNED NOT NULL DEFAULT 0,
    sells            BIGINT UNSIGNED NOT NULL DEFAULT 0,
    volume           DOUBLE NULL,
    buy_volume       DOUBLE NULL,
    sell_volume      DOUBLE NULL,
    notional_usd     DOUBLE NULL,
    vwap_usd         DOUBLE NULL,
    avg_price_usd    DOUBLE NULL,
    open_usd         DOUBLE NULL,
    high_usd         DOUBLE NULL,
    low_usd          DOUBLE NULL,
    close_usd        DOUBLE NULL,
    open_price       DOUBLE NULL,
    high_price       DOUBLE NULL,
    low_price        DOUBLE NULL,
    close_price      DOUBLE NULL,
    first_trade_at   DATETIME(3)  NULL,
    last_trade_at    DATETIME(3)  NULL,
    price_change_pct DOUBLE NULL,
    price_trend      ENUM('up','down','flat') NULL,
    is_final         TINYINT(1)   NOT NULL DEFAULT 0,
    revision         INT UNSIGNED NOT NULL DEFAULT 0,
    updated_at       DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (exchange, base, quote, window_start),
    KEY idx_market_1m_window_start (window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS asset_1m (
    base             VARCHAR(64)  NOT NULL,
    window_start     DATETIME(3)  NOT NULL,
    window_end       DATETIME(3)  NOT NULL,
    trades           BIGINT UNSIGNED NOT NULL DEFAULT 0,
    buys             BIGINT UNSIGNED NOT NULL DEFAULT 0,
    sells            BIGINT UNSIGNED NOT NULL DEFAULT 0,
    volume           DOUBLE NULL,
    buy_volume       DOUBLE NULL,
    sell_volume      DOUBLE NULL,
    notional_usd     DOUBLE NULL,
    vwap_usd         DOUBLE NULL,
    avg_price_usd    DOUBLE NULL,
    open_usd         DOUBLE NULL,
    high_usd         DOUBLE NULL,
    low_usd          DOUBLE NULL,
    close_usd        DOUBLE NULL,
    first_trade_at   DATETIME(3)  NULL,
    last_trade_at    DATETIME(3)  NULL,
    price_change_pct DOUBLE NULL,
    price_trend      ENUM('up','down','flat') NULL,
    is_final         TINYINT(1)   NOT NULL DEFAULT 0,
    revision         INT UNSIGNED NOT NULL DEFAULT 0,
    updated_at       DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (base, window_start),
    KEY idx_asset_1m_window_start (window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Next Kafka offset to consume per (group, topic, partition), written in the same transaction as the rows.
-- topic is ASCII: Kafka topic names are [a-zA-Z0-9._-] only, and it keeps tw_window_state's key under 3072 bytes.
CREATE TABLE IF NOT EXISTS tw_offsets (
    group_id     VARCHAR(255) NOT NULL,
    topic        VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    kpartition   INT          NOT NULL,
    next_offset  BIGINT       NOT NULL,
    max_event_ms BIGINT       NULL,
    updated_at   DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (group_id, topic, kpartition)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Open-window accumulators a restarted engine needs to resume exactly (window_start in epoch ms).
CREATE TABLE IF NOT EXISTS tw_window_state (
    group_id     VARCHAR(255) NOT NULL,
    topic        VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    kpartition   INT          NOT NULL,
    grain        TINYINT UNSIGNED NOT NULL,
    wkey         VARCHAR(255) NOT NULL,
    window_start BIGINT       NOT NULL,
    acc          VARBINARY(2048) NOT NULL,
    PRIMARY KEY (group_id, topic, kpartition, grain, wkey, window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
