#!/usr/bin/env bash
# bench/run.sh - run the Outboxer benchmark: durable PostgreSQL -> Outboxer dispatcher -> RabbitMQ.
#
# Usage: bash bench/run.sh [run.sh options] [benchmark options]
#   benchmark options are passed through, e.g. --quick, --only W2,W3a, --profile, --batch 500 (see --help)
#   --own-postgres     always use a private durable PostgreSQL (see below)
#   --shared-postgres  always use the shared server on 5433, even when it is not durable (the results then say so)
#   --keep-postgres    leave the private PostgreSQL running afterwards (the next run reuses it, and then leaves it
#                      running too: only the run that started it stops it)
#
# What it does:
#   1. starts the test servers with eng/servers.sh (PostgreSQL 15 on 5433, RabbitMQ on 5673), durable: OUTBOXER_PG_FAST
#      is forced to 0. A server that is already running is left alone, as servers.sh always does.
#   2. checks `SHOW fsync` on the shared PostgreSQL. The tests start it with OUTBOXER_PG_FAST=1 (fsync off), and other
#      people's tests may be using it, so it is never restarted here: instead, when it is not durable, this script starts
#      a private PostgreSQL 15 with the durable defaults (the same preinstalled binaries, nothing installed) on
#      127.0.0.1:${OUTBOXER_BENCH_PG_PORT:-5434}, data in ${OUTBOXER_BENCH_DIR:-/tmp/outboxer-bench}/postgres, and stops it
#      (by its pid file, through pg_ctl) when the run ends.
#   3. builds the benchmark in Release into artifacts/bench-build (its own bin/obj, so it never races other builds of src/).
#   4. runs it. Results: one JSON line per workload on stdout and appended to artifacts/bench.jsonl, then a markdown table.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

readonly PG_BIN=/usr/lib/postgresql/15/bin
readonly BENCH_DIR=${OUTBOXER_BENCH_DIR:-/tmp/outboxer-bench}
readonly OWN_PG_PORT=${OUTBOXER_BENCH_PG_PORT:-5434}
readonly OWN_PG_DIR=$BENCH_DIR/postgres
# pg_stat_statements for --pg-profile (track = all: also the statements inside the notify trigger), and the trigger functions' time.
# Loaded always, reset and read only with --pg-profile; its bookkeeping costs a few microseconds per statement.
readonly PROFILING_SETTINGS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c track_functions=pl"

log() { echo "[bench/run.sh] $*" >&2; }
die() { echo "[bench/run.sh] ERROR: $*" >&2; exit 1; }

pg_mode=auto keep_pg=0
args=()
for arg in "$@"; do
  case "$arg" in
    --own-postgres) pg_mode=own ;;
    --shared-postgres) pg_mode=shared ;;
    --keep-postgres) keep_pg=1 ;;
    *) args+=("$arg") ;;
  esac
done

# 1. the servers, durable.
OUTBOXER_PG_FAST=0 bash eng/servers.sh start postgres rabbitmq
eval "$(bash eng/servers.sh env)"

# 2. a durable PostgreSQL.
show() { PGCONNECT_TIMEOUT=5 psql -X -h 127.0.0.1 -p "$1" -U postgres -d postgres -tAc "show $2"; }

as_postgres() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

own_pg_started=0
start_own_postgres() {
  mkdir -p "$OWN_PG_DIR"
  chmod 755 "$BENCH_DIR"
  if [[ $(id -u) == 0 ]]; then chown postgres:postgres "$OWN_PG_DIR"; fi
  chmod 700 "$OWN_PG_DIR"
  if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$OWN_PG_PORT" 2>/dev/null; then
    [[ -f $OWN_PG_DIR/data/postmaster.pid ]] || die "127.0.0.1:$OWN_PG_PORT is taken by something else; set OUTBOXER_BENCH_PG_PORT"
    log "private PostgreSQL already running on 127.0.0.1:$OWN_PG_PORT ($OWN_PG_DIR/data); reusing it"
    [[ $(psql -X -h 127.0.0.1 -p "$OWN_PG_PORT" -U postgres -d postgres -tAc "show shared_preload_libraries") == *pg_stat_statements* ]] ||
      log "WARNING: it was started without pg_stat_statements (an older run.sh), so --pg-profile fails; stop it to get a new one"
  else
    if [[ ! -f $OWN_PG_DIR/data/PG_VERSION ]]; then
      log "initdb $OWN_PG_DIR/data"
      as_postgres "$PG_BIN/initdb" -D "$OWN_PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$OWN_PG_DIR/initdb.log" 2>&1 || { tail -n 20 "$OWN_PG_DIR/initdb.log" >&2; die "initdb failed"; }
    fi
    log "starting a private durable PostgreSQL on 127.0.0.1:$OWN_PG_PORT (defaults: fsync=on, synchronous_commit=on)"
    as_postgres "$PG_BIN/pg_ctl" -D "$OWN_PG_DIR/data" -l "$OWN_PG_DIR/server.log" -w -t 120 start \
      -o "-c listen_addresses=127.0.0.1 -p $OWN_PG_PORT -k $OWN_PG_DIR -c max_connections=200 -c wal_level=logical -c max_replication_slots=32 -c max_wal_senders=32 $PROFILING_SETTINGS" >"$OWN_PG_DIR/pg_ctl.log" 2>&1 ||
      { tail -n 20 "$OWN_PG_DIR/pg_ctl.log" "$OWN_PG_DIR/server.log" >&2; die "the private PostgreSQL did not start"; }
    own_pg_started=1
  fi
  if [[ $(psql -X -h 127.0.0.1 -p "$OWN_PG_PORT" -U postgres -d postgres -tAc "select 1 from pg_database where datname = 'outboxer'") != 1 ]]; then
    psql -X -q -h 127.0.0.1 -p "$OWN_PG_PORT" -U postgres -d postgres -c 'create database outboxer owner postgres' >/dev/null
  fi
}

stop_own_postgres() {
  if (( own_pg_started == 1 && keep_pg == 0 )); then
    log "stopping the private PostgreSQL"
    as_postgres "$PG_BIN/pg_ctl" -D "$OWN_PG_DIR/data" -m fast -w -t 120 stop >>"$OWN_PG_DIR/pg_ctl.log" 2>&1 || true
  fi
}
trap stop_own_postgres EXIT

shared_fsync=$(show 5433 fsync) || die "cannot query the PostgreSQL on 127.0.0.1:5433"
shared_sync=$(show 5433 synchronous_commit)
use_own=0
case $pg_mode in
  own) use_own=1 ;;
  shared) use_own=0 ;;
  auto) [[ $shared_fsync == on && $shared_sync != off ]] || use_own=1 ;;
esac
if (( use_own == 1 )); then
  [[ $pg_mode == own ]] ||
    log "the shared PostgreSQL on 5433 runs with fsync=$shared_fsync, synchronous_commit=$shared_sync (OUTBOXER_PG_FAST=1, started by the tests); it is in use, so it is left alone"
  start_own_postgres
  export OUTBOXER_POSTGRES_URL="Host=127.0.0.1;Port=$OWN_PG_PORT;Username=postgres;Database=outboxer"
  export OUTBOXER_BENCH_PG_LABEL="private durable instance 127.0.0.1:$OWN_PG_PORT started by bench/run.sh"
else
  export OUTBOXER_BENCH_PG_LABEL="shared eng/servers.sh instance 127.0.0.1:5433"
  [[ $shared_fsync == on ]] || log "WARNING: using the shared PostgreSQL with fsync=$shared_fsync (--shared-postgres): the results are not durable"
fi

# 3. build.
build=$root/artifacts/bench-build
log "building the benchmark (Release) into $build"
dotnet build bench/Outboxer.Benchmarks/Outboxer.Benchmarks.csproj -c Release --artifacts-path "$build" -nologo -v q -clp:ErrorsOnly >&2

# 4. run. The results record which library they measured: the commit, and "+modified-src" when src/ had uncommitted changes.
mkdir -p artifacts
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- src 2>/dev/null || [[ -n $(git ls-files --others --exclude-standard src 2>/dev/null) ]]; then
  commit+="+modified-src"
fi
export OUTBOXER_BENCH_COMMIT=$commit
"$build/bin/Outboxer.Benchmarks/release/Outboxer.Benchmarks" --artifacts "$root/artifacts" ${args[@]+"${args[@]}"}
