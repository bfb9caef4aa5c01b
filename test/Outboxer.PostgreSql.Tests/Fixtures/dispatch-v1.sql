-- The statements with which a dispatcher of Outboxer 0.1.0-preview.1 claims and marks, verbatim (PostgreSqlOutboxStore), so that a
-- test can run "a process of the old version" beside a migration. {table} is the qualified table name; the test splits at the marker.
WITH fresh AS MATERIALIZED (
    SELECT c.id FROM {table} AS c
    WHERE NOT c.dispatched AND c.dead_lettered_at IS NULL AND c.locked_until IS NULL
      AND (c.ordering_key IS NULL OR NOT EXISTS (
          SELECT FROM {table} AS p
          WHERE p.ordering_key = c.ordering_key AND (p.id < c.id OR (p.id <> c.id AND p.locked_until > @now)) AND NOT p.dispatched AND p.dead_lettered_at IS NULL))
    ORDER BY c.id
    LIMIT @limit
    FOR UPDATE SKIP LOCKED),
due AS MATERIALIZED (
    SELECT c.id FROM {table} AS c
    WHERE NOT c.dispatched AND c.dead_lettered_at IS NULL AND c.locked_until IS NOT NULL AND c.locked_until <= @now
      AND (c.ordering_key IS NULL OR NOT EXISTS (
          SELECT FROM {table} AS p
          WHERE p.ordering_key = c.ordering_key AND (p.id < c.id OR (p.id <> c.id AND p.locked_until > @now)) AND NOT p.dispatched AND p.dead_lettered_at IS NULL))
    ORDER BY c.locked_until
    LIMIT @limit
    FOR UPDATE SKIP LOCKED),
claimable AS (SELECT id FROM fresh UNION ALL SELECT id FROM due ORDER BY id LIMIT @limit)
UPDATE {table} AS o SET locked_until = @lease_until, attempts = o.attempts + 1
FROM claimable
WHERE o.id = claimable.id
RETURNING o.id, o.message_id, o.payload, o.options::text, o.headers::text, o.created_at, o.attempts, o.ordering_key
-- mark
UPDATE {table} SET dispatched = true, dispatched_at = @at, locked_until = NULL WHERE id = ANY(CAST(@ids AS bigint[]))
-- insert
INSERT INTO {table} (message_id, payload, options, headers, created_at, ordering_key) VALUES (@message_id, @payload, @options, @headers, @created_at, @ordering_key) RETURNING id
