-- One owner per database: the consumer group and topic whose offsets (tw_offsets) the window tables
-- reflect. A second group draining the same topic into the same tables would count every trade
-- again; the engine claims this row at start-up and refuses to run for any other group or topic.
CREATE TABLE IF NOT EXISTS tw_owner (
    id           TINYINT      NOT NULL PRIMARY KEY,
    group_id     VARCHAR(255) NOT NULL,
    topic        VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    claimed_at   DATETIME(3)  NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
