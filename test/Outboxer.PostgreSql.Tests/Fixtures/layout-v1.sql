-- The outbox table exactly as Outboxer 0.1.0-preview.1 created it (PostgreSqlOutboxStore.GetCreateScript with NotifyOnCommit off),
-- kept as it was: migration tests start from it. {schema} and {table} are replaced by the test.
CREATE SCHEMA IF NOT EXISTS "{schema}";
CREATE TABLE IF NOT EXISTS "{schema}"."{table}" (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id uuid NOT NULL,
    payload bytea NOT NULL,
    options jsonb NULL,
    headers jsonb NULL,
    created_at timestamptz NOT NULL,
    dispatched boolean NOT NULL DEFAULT false,
    dispatched_at timestamptz NULL,
    attempts integer NOT NULL DEFAULT 0,
    locked_until timestamptz NULL,
    last_error text NULL,
    ordering_key text NULL,
    dead_lettered_at timestamptz NULL
);
CREATE INDEX IF NOT EXISTS "{table}_pending_ix" ON "{schema}"."{table}" (id) WHERE NOT dispatched AND locked_until IS NULL AND dead_lettered_at IS NULL;
CREATE INDEX IF NOT EXISTS "{table}_leased_ix" ON "{schema}"."{table}" (locked_until) WHERE NOT dispatched AND locked_until IS NOT NULL AND dead_lettered_at IS NULL;
CREATE INDEX IF NOT EXISTS "{table}_dispatched_at_ix" ON "{schema}"."{table}" (dispatched_at) WHERE dispatched;
CREATE INDEX IF NOT EXISTS "{table}_ordering_ix" ON "{schema}"."{table}" (ordering_key, id) WHERE NOT dispatched AND ordering_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS "{table}_dead_letters_ix" ON "{schema}"."{table}" (id) WHERE dead_lettered_at IS NOT NULL;
