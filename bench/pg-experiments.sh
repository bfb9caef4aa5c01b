#!/usr/bin/env bash
# bench/pg-experiments.sh - the measurements behind "where PostgreSQL's time goes" (issue 16), outside the benchmark:
# EXPLAIN (ANALYZE, BUFFERS) of Outboxer's claim and mark (layout v3, copied from src/Outboxer.PostgreSql/PostgreSqlDialect.cs)
# and of the minimal relay's, HOT updates of the claim with and without indexed lease columns, and pgbench per-statement
# latencies of the inserts, the notify trigger and SET LOCAL. Needs a PostgreSQL to experiment on (default: the private
# benchmark instance on 127.0.0.1:${OUTBOXER_BENCH_PG_PORT:-5434}, database outboxer; start it with
# `bash bench/run.sh --keep-postgres --only W5`). Everything lives in the schema outboxer_experiments, dropped at the end.
set -euo pipefail
port=${OUTBOXER_BENCH_PG_PORT:-5434}
bin=/usr/lib/postgresql/15/bin
psql() { command psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d outboxer "$@"; }
rows=${ROWS:-50000}
work=$(mktemp -d)
trap 'rm -rf "$work"; psql -c "DROP SCHEMA IF EXISTS outboxer_experiments CASCADE" >/dev/null 2>&1 || true' EXIT

# 1. the tables: Outboxer's layout v3 (with its quiet notify trigger), the relay's, and a variant of Outboxer's whose claim can be HOT.
psql <<SQL
DROP SCHEMA IF EXISTS outboxer_experiments CASCADE;
CREATE SCHEMA outboxer_experiments;
SET search_path = outboxer_experiments;
CREATE TABLE outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, message_id uuid NOT NULL, payload bytea NOT NULL, options jsonb NULL,
    headers jsonb NULL, created_at timestamptz NOT NULL, dispatched boolean NOT NULL DEFAULT false, dispatched_at timestamptz NULL,
    attempts integer NOT NULL DEFAULT 0, locked_until timestamptz NULL, last_error text NULL, ordering_key text NULL,
    dead_lettered_at timestamptz NULL, destination text NULL, lease_token bigint NULL);
CREATE INDEX outbox_pending_ix ON outbox (id) WHERE NOT dispatched AND locked_until IS NULL AND dead_lettered_at IS NULL;
CREATE INDEX outbox_leased_ix ON outbox (locked_until) WHERE NOT dispatched AND locked_until IS NOT NULL AND dead_lettered_at IS NULL;
CREATE INDEX outbox_dispatched_at_ix ON outbox (dispatched_at) WHERE dispatched;
CREATE INDEX outbox_ordering_ix ON outbox (ordering_key, id) WHERE NOT dispatched AND ordering_key IS NOT NULL;
CREATE INDEX outbox_dead_letters_ix ON outbox (id) WHERE dead_lettered_at IS NOT NULL;
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF current_setting('outboxer.quiet', true) IS DISTINCT FROM 'on' THEN PERFORM pg_notify('outboxer_experiments', ''); END IF;
    RETURN NULL;
END \$\$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
CREATE TABLE relay (id bigserial PRIMARY KEY, payload bytea NOT NULL, dispatched boolean NOT NULL DEFAULT false);
CREATE INDEX relay_pending ON relay (id) WHERE NOT dispatched;
-- HOT variant: fillfactor 85, and no index or index predicate mentions the lease columns (locked_until, attempts, lease_token).
CREATE TABLE outbox_hot (LIKE outbox INCLUDING DEFAULTS INCLUDING IDENTITY) WITH (fillfactor = 85);
ALTER TABLE outbox_hot ADD PRIMARY KEY (id);
CREATE INDEX outbox_hot_pending_ix ON outbox_hot (id) WHERE NOT dispatched AND dead_lettered_at IS NULL;
CREATE INDEX outbox_hot_dispatched_at_ix ON outbox_hot (dispatched_at) WHERE dispatched;
INSERT INTO outbox (message_id, payload, options, created_at)
  SELECT gen_random_uuid(), int8send(g) || decode(repeat('78', 248), 'hex'), '{"rabbitmq.exchange":"outboxer.bench","rabbitmq.routing_key":"bench.w2"}', now()
  FROM generate_series(1, $rows) g;
INSERT INTO outbox_hot (message_id, payload, options, created_at) SELECT message_id, payload, options, created_at FROM outbox ORDER BY id;
INSERT INTO relay (payload) SELECT payload FROM outbox ORDER BY id;
VACUUM ANALYZE outbox; VACUUM ANALYZE outbox_hot; VACUUM ANALYZE relay;
SQL

claim() { # table, extra
cat <<SQL
WITH fresh AS MATERIALIZED (
    SELECT c.id FROM $1 AS c
    WHERE NOT c.dispatched AND c.dead_lettered_at IS NULL AND c.locked_until IS NULL
      AND (c.ordering_key IS NULL OR NOT EXISTS (SELECT FROM $1 AS p WHERE p.ordering_key = c.ordering_key AND (p.id < c.id OR (p.id <> c.id AND p.locked_until > now())) AND NOT p.dispatched AND p.dead_lettered_at IS NULL))
    ORDER BY c.id LIMIT 100 FOR UPDATE SKIP LOCKED),
due AS MATERIALIZED (
    SELECT c.id FROM $1 AS c
    WHERE NOT c.dispatched AND c.dead_lettered_at IS NULL AND c.locked_until IS NOT NULL AND c.locked_until <= now()
      AND (c.ordering_key IS NULL OR NOT EXISTS (SELECT FROM $1 AS p WHERE p.ordering_key = c.ordering_key AND (p.id < c.id OR (p.id <> c.id AND p.locked_until > now())) AND NOT p.dispatched AND p.dead_lettered_at IS NULL))
    ORDER BY c.locked_until LIMIT 100 FOR UPDATE SKIP LOCKED),
claimable AS (SELECT id FROM fresh UNION ALL SELECT id FROM due ORDER BY id LIMIT 100)
UPDATE $1 AS o SET locked_until = now() + interval '30 s', attempts = o.attempts + 1, lease_token = 42
FROM claimable WHERE o.id = claimable.id
RETURNING o.id, o.message_id, o.payload, o.options::text, o.headers::text, o.created_at, o.attempts, o.ordering_key, o.destination
SQL
}

echo "## EXPLAIN (ANALYZE, BUFFERS): Outboxer's claim (batch 100) on $rows pending rows, after 4 batches already claimed"
psql -c "SET search_path = outboxer_experiments; SET jit = off; $(claim outbox | sed 's/LIMIT 100/LIMIT 400/g');" >/dev/null
psql -c "SET search_path = outboxer_experiments; SET jit = off; EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) $(claim outbox);"
echo "## EXPLAIN (ANALYZE, BUFFERS): Outboxer's mark of those 100"
psql -c "SET search_path = outboxer_experiments; EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) UPDATE outbox SET dispatched = true, dispatched_at = now(), locked_until = NULL WHERE id = ANY(CAST('{$(seq -s, 401 500)}' AS bigint[])) AND lease_token = 42;"
echo "## EXPLAIN (ANALYZE, BUFFERS): the relay's claim (500) and mark, after 400 rows were dispatched"
psql <<SQL
SET search_path = outboxer_experiments;
UPDATE relay SET dispatched = true WHERE id <= 400;
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT id, payload FROM relay WHERE NOT dispatched ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) UPDATE relay SET dispatched = true WHERE id = ANY(CAST('{$(seq -s, 401 900)}' AS bigint[]));
ROLLBACK;
SQL

echo "## HOT: 20 claims of 100 + their marks, Outboxer layout v3 vs the variant without indexed lease columns (fillfactor 85)"
for t in outbox outbox_hot; do
  psql -c "SELECT pg_stat_reset_single_table_counters('outboxer_experiments.$t'::regclass)" >/dev/null
  for i in $(seq 1 20); do
    psql -c "SET search_path = outboxer_experiments; SET jit = off; $(claim "$t" | sed 's/RETURNING .*/RETURNING o.id/')" >/dev/null
  done
  psql -c "UPDATE outboxer_experiments.$t SET dispatched = true, dispatched_at = now(), locked_until = NULL WHERE lease_token = 42 AND NOT dispatched" >/dev/null
  sleep 1.2
  psql -tAc "SELECT '$t: updates ' || n_tup_upd || ', HOT ' || n_tup_hot_upd || ' (claims and marks of 2,000 rows + the earlier 400)' FROM pg_stat_user_tables WHERE relid = 'outboxer_experiments.$t'::regclass"
done

echo "## pgbench, per-statement latency (ms), 1 client, prepared, synchronous_commit=off (CPU, not the flush); 2,000 transactions each"
echo "## (outboxer-insert-two-indexes: the HOT variant's table, primary key + 2 partial indexes, no trigger)"
cat >"$work/outboxer-insert.sql" <<'SQL'
BEGIN;
SELECT set_config('outboxer.quiet', 'on', true);
INSERT INTO outboxer_experiments.outbox (message_id, payload, options, headers, created_at, ordering_key, destination) VALUES (gen_random_uuid(), '\x0000000000000001787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878', '{"rabbitmq.exchange":"outboxer.bench","rabbitmq.routing_key":"bench.w1"}', NULL, now(), NULL, NULL) RETURNING id;
COMMIT;
SQL
sed 's/outboxer_experiments.outbox /outboxer_experiments.outbox_hot /' "$work/outboxer-insert.sql" >"$work/outboxer-insert-two-indexes.sql"
cat >"$work/relay-insert.sql" <<'SQL'
BEGIN;
INSERT INTO outboxer_experiments.relay (payload) VALUES ('\x0000000000000001787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878');
COMMIT;
SQL
cat >"$work/set-local.sql" <<'SQL'
BEGIN;
SET LOCAL jit = off;
SET LOCAL synchronous_commit = off;
SELECT 1;
COMMIT;
SQL
cat >"$work/no-set-local.sql" <<'SQL'
BEGIN;
SELECT 1;
COMMIT;
SQL
cp "$work/outboxer-insert.sql" "$work/outboxer-insert-trigger-disabled.sql"
for script in outboxer-insert outboxer-insert-trigger-disabled outboxer-insert-two-indexes relay-insert set-local no-set-local; do
  echo "### $script"
  case $script in
    outboxer-insert-trigger-disabled) psql -c "ALTER TABLE outboxer_experiments.outbox DISABLE TRIGGER outbox_notify" ;;
    outboxer-insert-two-indexes) psql -c "ALTER TABLE outboxer_experiments.outbox ENABLE TRIGGER outbox_notify" ;;
  esac
  PGOPTIONS="-c synchronous_commit=off" "$bin/pgbench" -n -M prepared -r -t 2000 -h 127.0.0.1 -p "$port" -U postgres -f "$work/$script.sql" outboxer 2>&1 |
    sed -n '/^latency average/p;/statement latencies/,$p'
done
