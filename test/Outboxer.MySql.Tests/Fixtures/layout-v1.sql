-- The outbox table exactly as Outboxer 0.1.0-preview.1 created it (MySqlOutboxStore.GetCreateScript), kept as it was: migration tests
-- start from it. {table} is replaced by the test.
CREATE TABLE IF NOT EXISTS `{table}` (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    message_id CHAR(36) CHARACTER SET ascii NOT NULL,
    payload LONGBLOB NOT NULL,
    options JSON NULL,
    headers JSON NULL,
    created_at DATETIME(6) NOT NULL,
    dispatched TINYINT(1) NOT NULL DEFAULT 0,
    dispatched_at DATETIME(6) NULL,
    attempts INT NOT NULL DEFAULT 0,
    locked_until DATETIME(6) NULL,
    last_error TEXT NULL,
    ordering_key VARCHAR(255) NULL,
    dead_lettered_at DATETIME(6) NULL,
    INDEX `{table}_pending_ix` (dispatched, id),
    INDEX `{table}_dispatched_at_ix` (dispatched, dispatched_at),
    INDEX `{table}_ordering_ix` (ordering_key, dispatched, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
