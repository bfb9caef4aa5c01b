-- The statements with which a dispatcher of Outboxer 0.1.0-preview.1 claims and marks, verbatim (MySqlOutboxStore), so that a test can
-- run "a process of the old version" beside a migration. {table} is the quoted table name; {ids} the claimed ids' parameters. The claim
-- is the locking SELECT, then the lease UPDATE, in one READ COMMITTED transaction; the test splits at the markers.
SELECT c.id, c.message_id, c.payload, c.options, c.headers, c.created_at, c.attempts + 1, c.ordering_key
FROM {table} AS c
WHERE c.dispatched = 0 AND c.dead_lettered_at IS NULL AND (c.locked_until IS NULL OR c.locked_until <= @now)
  AND (c.ordering_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM {table} AS p
      WHERE p.ordering_key = c.ordering_key AND (p.id < c.id OR (p.id <> c.id AND p.locked_until > @now)) AND p.dispatched = 0 AND p.dead_lettered_at IS NULL))
ORDER BY c.id
LIMIT @limit
FOR UPDATE SKIP LOCKED
-- lease
UPDATE {table} SET locked_until = @lease_until, attempts = attempts + 1 WHERE id IN ({ids})
-- mark
UPDATE {table} SET dispatched = 1, dispatched_at = @at, locked_until = NULL WHERE id IN ({ids})
-- insert
INSERT INTO {table} (message_id, payload, options, headers, created_at, ordering_key) VALUES (@message_id, @payload, @options, @headers, @created_at, @ordering_key); SELECT LAST_INSERT_ID()
