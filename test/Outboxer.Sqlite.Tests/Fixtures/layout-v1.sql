-- The outbox table exactly as Outboxer 0.1.0-preview.1 created it (SqliteOutboxStore.GetCreateScript), kept as it was: migration tests
-- start from it. {table} is replaced by the test.
CREATE TABLE IF NOT EXISTS "{table}" (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    options TEXT NULL,
    headers TEXT NULL,
    created_at INTEGER NOT NULL,
    dispatched INTEGER NOT NULL DEFAULT 0,
    dispatched_at INTEGER NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NULL,
    last_error TEXT NULL,
    ordering_key TEXT NULL,
    dead_lettered_at INTEGER NULL
);
CREATE INDEX IF NOT EXISTS "{table}_pending" ON "{table}" (id) WHERE dispatched = 0;
CREATE INDEX IF NOT EXISTS "{table}_ordering" ON "{table}" (ordering_key, id) WHERE dispatched = 0 AND ordering_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS "{table}_dead_letters" ON "{table}" (id) WHERE dead_lettered_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS "{table}_dispatched_at" ON "{table}" (dispatched_at) WHERE dispatched = 1;
