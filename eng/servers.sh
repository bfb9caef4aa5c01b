#!/usr/bin/env bash
# eng/servers.sh - start, stop and inspect the real servers the Outboxer tests use.
#
# Usage:
#   eng/servers.sh start  [name...]   install what is missing, start, wait until each answers
#   eng/servers.sh stop   [name...]   stop (by pid) what this script started
#   eng/servers.sh status [name...]   print each server's state (exit 3 if one is not running)
#   eng/servers.sh env    [name...]   print `export OUTBOXER_...=...` lines: eval "$(eng/servers.sh env)"
#
# Names: postgres rabbitmq mariadb kinesalite fauxqs pubsub redis nats, or `all`.
# Without names, start/stop/status act on `postgres rabbitmq`; env prints every variable.
#
# Everything binds to 127.0.0.1 only:
#   postgres    5433   PostgreSQL 15 (preinstalled), trust auth, database `outboxer`
#   rabbitmq    5673   RabbitMQ 3.10 (apt), user outboxer/outboxer, Erlang dist port 25673
#   mariadb     3307   MariaDB 10.11 (apt), database and user `outboxer`
#   kinesalite  4567   Kinesis emulator (npm kinesalite 3.3.3)
#   fauxqs      4566   SQS emulator (npm fauxqs 1.9.2)
#   pubsub      8085   Google Pub/Sub emulator (preinstalled with the Google Cloud SDK)
#   redis       6380   Redis 7 (apt redis-server), append-only file on; 6380 so a system Redis on 6379 does not clash
#   nats        4223   NATS 2.9 with JetStream (apt nats-server), file storage in the state dir
#
# State (data, logs, pid files, npm installs) lives in
# ${OUTBOXER_SERVERS_DIR:-/tmp/outboxer-servers}/<name>.
#
# Environment knobs:
#   OUTBOXER_SERVERS_DIR      state root (default /tmp/outboxer-servers); the postgres and mysql
#                             users must be able to traverse it
#   OUTBOXER_SERVERS_TIMEOUT  seconds to wait for a server to answer / stop (default 120)
#   OUTBOXER_PG_FAST=1        start PostgreSQL with fsync=off, synchronous_commit=off,
#                             full_page_writes=off (tests only; benchmarks keep the durable default).
#                             Only applies when this script actually starts PostgreSQL.
#
# `start` is idempotent: a server whose port already answers is left alone. apt-get update runs
# at most once per invocation and only when a package must be installed. Installs run in
# parallel, then the servers start in parallel. Processes are started with setsid/nohup, their
# pids are kept in the state dir, and `stop` only ever signals those pids.
set -euo pipefail

readonly STATE_ROOT="${OUTBOXER_SERVERS_DIR:-/tmp/outboxer-servers}"
readonly TIMEOUT="${OUTBOXER_SERVERS_TIMEOUT:-120}"
readonly ALL_SERVERS=(postgres rabbitmq mariadb kinesalite fauxqs pubsub redis nats)
readonly DEFAULT_SERVERS=(postgres rabbitmq)

readonly PG_BIN=/usr/lib/postgresql/15/bin
readonly RABBITMQ_BIN=/usr/lib/rabbitmq/bin
readonly PUBSUB_BIN=/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator
readonly KINESALITE_VERSION=3.3.3
readonly FAUXQS_VERSION=1.9.2   # 2.x needs Node 22

# ---------------------------------------------------------------------------------------------
# small helpers

log() { echo "[servers] $*" >&2; }
warn() { echo "[servers] WARNING: $*" >&2; }
err() { echo "[servers] ERROR: $*" >&2; }
die() { err "$*"; exit 1; }

now_ms() { date +%s%3N; }
elapsed() { local ms=$(( $(now_ms) - $1 )); printf '%d.%01ds' $((ms / 1000)) $(((ms % 1000) / 100)); }

state_dir() { echo "$STATE_ROOT/$1"; }

port_of() {
  case "$1" in
    postgres) echo 5433 ;;
    rabbitmq) echo 5673 ;;
    mariadb) echo 3307 ;;
    kinesalite) echo 4567 ;;
    fauxqs) echo 4566 ;;
    pubsub) echo 8085 ;;
    redis) echo 6380 ;;
    nats) echo 4223 ;;
    *) die "unknown server '$1' (known: ${ALL_SERVERS[*]} all)" ;;
  esac
}

# True when something accepts TCP connections on 127.0.0.1:<port>.
port_answers() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# True when <pid> is a live process. A zombie counts as gone: detached servers are reparented to
# pid 1, which may reap them late, and `kill -0` succeeds on a zombie.
pid_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }            # drop "pid (comm) "; the state letter comes next
  [[ -n $stat && ${stat:0:1} != Z ]]
}

# Reads a pid file; prints the pid only if that process is alive and its command line contains
# <expect> (guards against a stale pid file whose pid was reused by an unrelated process).
live_pid() {
  local file=$1 expect=$2 pid
  [[ -f $file ]] || return 1
  pid=$(head -n 1 "$file" 2>/dev/null | tr -dc 0-9)
  [[ -n $pid ]] && pid_running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$expect" || return 1
  echo "$pid"
}

# The pid files / command-line markers that identify each server's main process.
pid_file_of() {
  local d; d=$(state_dir "$1")
  case "$1" in
    postgres) echo "$d/data/postmaster.pid" ;;
    rabbitmq) echo "$d/rabbitmq.pid" ;;     # written by the Erlang VM itself
    mariadb) echo "$d/mysqld.pid" ;;
    *) echo "$d/server.pid" ;;
  esac
}
pid_marker_of() {
  case "$1" in
    postgres) echo "postgres" ;;
    rabbitmq) echo "beam" ;;
    mariadb) echo "mariadbd" ;;
    kinesalite) echo "kinesalite-server.js" ;;
    fauxqs) echo "fauxqs-server.mjs" ;;
    pubsub) echo "java" ;;
    redis) echo "redis-server" ;;
    nats) echo "nats-server" ;;
  esac
}
server_pid() { live_pid "$(pid_file_of "$1")" "$(pid_marker_of "$1")"; }

show_log_tail() {
  local f
  for f in "$@"; do
    [[ -f $f ]] || continue
    err "---- last lines of $f ----"
    tail -n 25 "$f" | sed 's/^/[servers]   | /' >&2
  done
}

# wait_until <name> <launcher-pid or ""> <check command...>; logs are shown on failure by caller.
wait_until() {
  local name=$1 pid=$2; shift 2
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    if [[ -n $pid ]] && ! pid_running "$pid"; then
      err "$name: process $pid exited before answering"
      return 1
    fi
    if (( $(date +%s) >= deadline )); then
      err "$name: did not answer within ${TIMEOUT}s"
      return 1
    fi
    sleep 0.1
  done
}

# stop_pid <name> <pid> [extra pid to wait for]: SIGTERM, wait, SIGKILL (loudly) after timeout.
stop_pid() {
  local name=$1 pid=$2 other=${3:-}
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$(( $(date +%s) + TIMEOUT ))
  while pid_running "$pid" || { [[ -n $other ]] && pid_running "$other"; }; do
    if (( $(date +%s) >= deadline )); then
      warn "$name: pid $pid ${other:+/ $other }still alive after ${TIMEOUT}s: sending SIGKILL"
      kill -KILL "$pid" ${other:+"$other"} 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.1
  done
}

# Starts "$@" detached (own session, stdin closed, output to <log>) and writes its pid.
# fd 9 (the start/stop lock) is closed so that the server does not hold the lock.
launch() {
  local pidfile=$1 logfile=$2; shift 2
  echo "==== $(date '+%F %T') eng/servers.sh: $*" >>"$logfile"
  setsid nohup "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
  echo $! >"$pidfile"
}

# ---------------------------------------------------------------------------------------------
# installation

apt_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

apt_packages_of() {
  case "$1" in
    rabbitmq) echo rabbitmq-server ;;
    mariadb) echo mariadb-server mariadb-client ;;
    redis) echo redis-server ;;
    nats) echo nats-server ;;
  esac
}

npm_version_of() {
  case "$1" in
    kinesalite) echo "$KINESALITE_VERSION" ;;
    fauxqs) echo "$FAUXQS_VERSION" ;;
  esac
}

npm_installed() {
  local name=$1 want; want=$(npm_version_of "$1")
  local pj; pj="$(state_dir "$name")/npm/node_modules/$name/package.json"
  [[ -f $pj ]] && [[ $(node -p "require('$pj').version" 2>/dev/null) == "$want" ]]
}

# Installs the pinned npm package into <state>/npm (a project-local prefix with its own lock file).
npm_install() {
  local name=$1 version; version=$(npm_version_of "$1")
  local dir; dir="$(state_dir "$name")/npm"
  local t0; t0=$(now_ms)
  mkdir -p "$dir"
  cat >"$dir/package.json" <<EOF
{ "name": "outboxer-$name-server", "private": true, "dependencies": { "$name": "$version" } }
EOF
  log "$name: npm install $name@$version into $dir"
  if ! (cd "$dir" && npm install --no-audit --no-fund --loglevel=error) >"$dir/install.log" 2>&1; then
    show_log_tail "$dir/install.log"
    die "$name: npm install failed"
  fi
  npm_installed "$name" || die "$name: npm install finished but $name@$version is not in $dir"
  log "$name: installed $name@$version in $(elapsed "$t0")"
}

apt_install() {
  local log_file="$STATE_ROOT/apt.log" t0; t0=$(now_ms)
  [[ $(id -u) == 0 ]] || die "installing $* needs root"
  log "apt-get update, then install: $*"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get -q update && apt-get install -y -q --no-install-recommends \
           -o DPkg::Lock::Timeout=300 "$@"; } >"$log_file" 2>&1; then
    show_log_tail "$log_file"
    die "apt-get install $* failed"
  fi
  log "apt packages installed in $(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL 15

postgres_start() {
  local d; d=$(state_dir postgres)
  mkdir -p "$d"
  chown postgres:postgres "$d"
  chmod 700 "$d"
  runuser -u postgres -- test -w "$d" ||
    die "postgres: the postgres user cannot write $d (is a parent of $STATE_ROOT not traversable?)"

  if [[ ! -f $d/data/PG_VERSION ]]; then
    [[ ! -e $d/data ]] || die "postgres: $d/data exists but holds no cluster (PG_VERSION missing); remove it"
    log "postgres: initdb $d/data"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 \
      --locale=C.UTF-8 >"$d/initdb.log" 2>&1 || { show_log_tail "$d/initdb.log"; die "postgres: initdb failed"; }
  fi

  # wal_level=logical: the log mode (pg_logical_emit_message relayed from a replication slot) needs it;
  # it costs the table mode nothing measurable.
  local opts="-c listen_addresses=127.0.0.1 -p 5433 -k $d -c max_connections=200"
  opts+=" -c wal_level=logical -c max_replication_slots=32 -c max_wal_senders=32"
  if [[ ${OUTBOXER_PG_FAST:-0} == 1 ]]; then
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    log "postgres: OUTBOXER_PG_FAST=1: fsync, synchronous_commit and full_page_writes are off"
  fi
  # pg_ctl -w waits until the server accepts connections; its own output goes to pg_ctl.log,
  # the server's to server.log.
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t "$TIMEOUT" \
    start -o "$opts" >"$d/pg_ctl.log" 2>&1 9>&- || { show_log_tail "$d/pg_ctl.log" "$d/server.log"; return 1; }
  wait_until postgres "" port_answers 5433 || { show_log_tail "$d/server.log"; return 1; }

  local psql=("$PG_BIN/psql" -X -q -h 127.0.0.1 -p 5433 -U postgres -d postgres -v ON_ERROR_STOP=1)
  if [[ $("${psql[@]}" -tAc "select 1 from pg_database where datname = 'outboxer'") != 1 ]]; then
    "${psql[@]}" -c 'create database outboxer owner postgres' >/dev/null || return 1
    log "postgres: created database outboxer"
  fi
}

postgres_stop() {
  local d; d=$(state_dir postgres)
  # pg_ctl signals the pid recorded in data/postmaster.pid and waits for the shutdown.
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d/data" -m fast -w -t "$TIMEOUT" stop >>"$d/pg_ctl.log" 2>&1 ||
    { show_log_tail "$d/pg_ctl.log"; return 1; }
}

# Tells whether an already-running PostgreSQL matches the requested OUTBOXER_PG_FAST mode.
postgres_check_mode() {
  local fsync want=on
  [[ ${OUTBOXER_PG_FAST:-0} == 1 ]] && want=off
  fsync=$(PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -h 127.0.0.1 -p 5433 -U postgres -d postgres -tAc 'show fsync' 2>/dev/null) || return 0
  [[ $fsync == "$want" ]] ||
    warn "postgres: the running server has fsync=$fsync (OUTBOXER_PG_FAST=${OUTBOXER_PG_FAST:-0} asks for fsync=$want); restart it to change"
  local wal
  wal=$(PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -h 127.0.0.1 -p 5433 -U postgres -d postgres -tAc 'show wal_level' 2>/dev/null) || return 0
  [[ $wal == logical ]] ||
    warn "postgres: the running server has wal_level=$wal; the log-mode tests need logical: restart it (bash eng/servers.sh stop postgres)"
}

# ---------------------------------------------------------------------------------------------
# RabbitMQ 3.10, run from /usr/lib/rabbitmq/bin directly (the /usr/sbin wrapper switches user and
# writes to /var/lib and /var/log). Everything it writes goes under the state dir.

# Sets RABBITMQ_ENV: the environment for rabbitmq-server and rabbitmqctl (same HOME, same cookie).
rabbitmq_env() {
  local d; d=$(state_dir rabbitmq)
  RABBITMQ_ENV=(HOME="$d" \
    RABBITMQ_NODENAME=rabbit@localhost \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=5673 \
    RABBITMQ_DIST_PORT=25673 \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
    RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_PID_FILE="$d/rabbitmq.pid" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    ERL_EPMD_ADDRESS=127.0.0.1)
}

rabbitmq_start() {
  local d; d=$(state_dir rabbitmq)
  mkdir -p "$d/mnesia" "$d/log"
  chmod 700 "$d"
  # The listener is defined only by RABBITMQ_NODE_IP_ADDRESS/RABBITMQ_NODE_PORT: defining it here
  # too makes boot fail with eaddrinuse. default_* only take effect when the node's database is
  # created (first boot of a fresh state dir).
  cat >"$d/rabbitmq.conf" <<'EOF'
# written by eng/servers.sh
loopback_users = none
default_vhost = /
default_user = outboxer
default_pass = outboxer
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
log.console = false
log.file.level = info
EOF
  echo '[].' >"$d/enabled_plugins"
  if [[ ! -s $d/.erlang.cookie ]]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -dc 0-9a-f >"$d/.erlang.cookie")
    chmod 400 "$d/.erlang.cookie"
  fi
  rm -f "$d/rabbitmq.pid"
  # The launcher (a sh script) runs the Erlang VM as a child and turns SIGTERM into a clean stop.
  rabbitmq_env
  (cd "$d" && launch "$d/launcher.pid" "$d/log/console.log" env "${RABBITMQ_ENV[@]}" "$RABBITMQ_BIN/rabbitmq-server")
  local launcher; launcher=$(<"$d/launcher.pid")
  wait_until rabbitmq "$launcher" port_answers 5673 || { show_log_tail "$d/log/console.log" "$d/log/rabbit@localhost.log"; return 1; }
  # The port answers once the listener is up; await_startup confirms the node finished booting.
  if ! env "${RABBITMQ_ENV[@]}" "$RABBITMQ_BIN/rabbitmqctl" -q -n rabbit@localhost await_startup --timeout "$TIMEOUT" >"$d/log/ctl.log" 2>&1; then
    show_log_tail "$d/log/ctl.log" "$d/log/rabbit@localhost.log"
    return 1
  fi
}

rabbitmq_stop() {
  local d; d=$(state_dir rabbitmq)
  local beam launcher
  beam=$(server_pid rabbitmq) || beam=""
  launcher=$(live_pid "$d/launcher.pid" rabbitmq-server) || launcher=""
  if [[ -n $launcher ]]; then
    stop_pid rabbitmq "$launcher" "$beam"        # the launcher forwards SIGTERM to the VM
  elif [[ -n $beam ]]; then
    stop_pid rabbitmq "$beam"
  fi
  rm -f "$d/rabbitmq.pid" "$d/launcher.pid"
  # The VM started epmd (the Erlang port mapper, on 127.0.0.1:4369). Ask it to exit, but only
  # when no Erlang node is registered with it any more.
  local epmd=""
  if command -v epmd >/dev/null; then epmd=$(command -v epmd)
  else for epmd in /usr/lib/erlang/erts-*/bin/epmd; do [[ -x $epmd ]] && break; epmd=""; done; fi
  if [[ -n $epmd ]] && "$epmd" -names 2>/dev/null | grep -q 'up and running' &&
     ! "$epmd" -names 2>/dev/null | grep -q '^name '; then
    "$epmd" -kill >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------------------------------------
# MariaDB 10.11. --no-defaults is essential: /etc/mysql would force port 3306 and /run/mysqld.

mariadb_start() {
  local d; d=$(state_dir mariadb)
  mkdir -p "$d"
  chown mysql:mysql "$d"
  chmod 750 "$d"
  if [[ ! -d $d/data/mysql ]]; then
    log "mariadb: mariadb-install-db $d/data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$d/data" \
      --auth-root-authentication-method=socket --skip-test-db >"$d/install-db.log" 2>&1 ||
      { show_log_tail "$d/install-db.log"; die "mariadb: mariadb-install-db failed"; }
  fi
  rm -f "$d/mysqld.pid"
  launch "$d/launcher.pid" "$d/console.log" \
    /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$d/data" \
      --bind-address=127.0.0.1 --port=3307 --socket="$d/mysqld.sock" --pid-file="$d/mysqld.pid" \
      --log-error="$d/error.log" --skip-name-resolve \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci
  local pid; pid=$(<"$d/launcher.pid")
  wait_until mariadb "$pid" mariadb-admin --no-defaults --socket="$d/mysqld.sock" -uroot ping ||
    { show_log_tail "$d/console.log" "$d/error.log"; return 1; }
  wait_until mariadb "$pid" port_answers 3307 || { show_log_tail "$d/error.log"; return 1; }
  # root authenticates over the unix socket (unix_socket plugin); tests use outboxer@127.0.0.1.
  mariadb --no-defaults --socket="$d/mysqld.sock" -uroot <<'EOF'
CREATE DATABASE IF NOT EXISTS outboxer CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'outboxer'@'127.0.0.1' IDENTIFIED BY 'outboxer';
GRANT ALL PRIVILEGES ON outboxer.* TO 'outboxer'@'127.0.0.1';
EOF
}

mariadb_stop() {
  local pid; pid=$(server_pid mariadb) || return 0
  stop_pid mariadb "$pid"
}

# ---------------------------------------------------------------------------------------------
# kinesalite (Kinesis emulator). Its CLI has no host option and binds every interface, so it is
# started from a small node script that listens on 127.0.0.1 only. Streams live in memory.

kinesalite_start() {
  local d; d=$(state_dir kinesalite)
  cat >"$d/kinesalite-server.js" <<'EOF'
// written by eng/servers.sh: kinesalite on 127.0.0.1:4567, in-memory, streams ready at once
const kinesalite = require(__dirname + '/npm/node_modules/kinesalite');
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000 });
server.listen(4567, '127.0.0.1', (err) => {
  if (err) throw err;
  console.log('kinesalite listening on 127.0.0.1:4567');
});
EOF
  (cd "$d" && launch "$d/server.pid" "$d/server.log" node "$d/kinesalite-server.js")
  wait_until kinesalite "$(<"$d/server.pid")" port_answers 4567 || { show_log_tail "$d/server.log"; return 1; }
}

# ---------------------------------------------------------------------------------------------
# fauxqs (SQS emulator, JSON protocol).
#
# - startFauxqs() binds 0.0.0.0, so the script uses buildApp() + app.listen({host: '127.0.0.1'}).
# - Queue URLs: fauxqs builds them in SqsStore.buildQueueUrl(name, port, requestHost, region) as
#   `http://sqs.<region>.<store.host>:<port>/000000000000/<name>` with store.host = "localhost"
#   by default, which .NET cannot resolve. buildApp() accepts `stores: { sqsStore }`, but SqsStore
#   is not exported through the package's "exports" map, so the script imports it by file path
#   (dist/sqs/sqsStore.js) and replaces buildQueueUrl on that one instance so that every queue URL
#   is `http://127.0.0.1:4566/000000000000/<name>`, whatever Host header the client sent. Queues
#   are looked up by exact URL, so clients must use the URL that CreateQueue/GetQueueUrl return.
#   (Checked against fauxqs 1.9.2; revisit when changing the pinned version.)

fauxqs_start() {
  local d; d=$(state_dir fauxqs)
  cat >"$d/fauxqs-server.mjs" <<'EOF'
// written by eng/servers.sh: fauxqs on 127.0.0.1:4566 with queue URLs
// http://127.0.0.1:4566/000000000000/<queue> (see the comment in eng/servers.sh)
import { buildApp } from './npm/node_modules/fauxqs/dist/app.js';
import { SqsStore } from './npm/node_modules/fauxqs/dist/sqs/sqsStore.js';
import { DEFAULT_ACCOUNT_ID } from './npm/node_modules/fauxqs/dist/common/types.js';

const host = '127.0.0.1';
const port = 4566;
const sqsStore = new SqsStore();
sqsStore.buildQueueUrl = (queueName) => `http://${host}:${port}/${DEFAULT_ACCOUNT_ID}/${queueName}`;
const app = buildApp({ logger: { level: 'warn' }, stores: { sqsStore } });
await app.listen({ port, host });
console.log(`fauxqs listening on ${host}:${port}`);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => app.close().then(() => process.exit(0)));
}
EOF
  (cd "$d" && launch "$d/server.pid" "$d/server.log" node "$d/fauxqs-server.mjs")
  wait_until fauxqs "$(<"$d/server.pid")" port_answers 4566 || { show_log_tail "$d/server.log"; return 1; }
}

# ---------------------------------------------------------------------------------------------
# Google Pub/Sub emulator (gRPC and REST on one port; in-memory). Preinstalled in the machine
# image; it cannot be installed from any registry reachable here.

pubsub_available() {
  [[ -x $PUBSUB_BIN ]] && command -v java >/dev/null
}

pubsub_unavailable() {
  {
    echo "[servers] ############################################################"
    echo "[servers] PUBSUB EMULATOR NOT AVAILABLE"
    echo "[servers]   expected: $PUBSUB_BIN (and java on PATH)"
    echo "[servers]   Pub/Sub tests cannot run on this machine: they must show as NOT RUN."
    echo "[servers] ############################################################"
  } >&2
}

pubsub_start() {
  local d; d=$(state_dir pubsub)
  # The launcher script execs java, so the recorded pid is the JVM's.
  (cd "$d" && launch "$d/server.pid" "$d/server.log" "$PUBSUB_BIN" --host=127.0.0.1 --port=8085)
  wait_until pubsub "$(<"$d/server.pid")" curl -sf -o /dev/null --max-time 2 http://127.0.0.1:8085/ ||
    { show_log_tail "$d/server.log"; return 1; }
}

# ---------------------------------------------------------------------------------------------
# Redis 7 (apt redis-server; apt starts no service of its own here). Run in the foreground
# (--daemonize no) so that the recorded pid is the server's; the append-only file (fsync every
# second, Redis's default) goes to the state dir; RDB snapshots are off. SIGTERM flushes and exits.

redis_start() {
  local d; d=$(state_dir redis)
  mkdir -p "$d/data"
  chmod 700 "$d"
  (cd "$d" && launch "$d/server.pid" "$d/server.log" /usr/bin/redis-server \
    --bind 127.0.0.1 --port 6380 --protected-mode yes --dir "$d/data" \
    --appendonly yes --appendfsync everysec --daemonize no --save '' --logfile '')
  wait_until redis "$(<"$d/server.pid")" redis-cli -h 127.0.0.1 -p 6380 ping ||
    { show_log_tail "$d/server.log"; return 1; }
}

# NATS with JetStream (apt nats-server; apt starts no service of its own). Port 4223, not NATS's
# 4222, as the other servers here avoid their defaults. Streams are kept as files under
# <state>/jetstream, so they survive a restart like a production server's. The server writes
# "Server is ready" once JetStream and the client listener are up.

# nats_ready <log> <first line>: the log has said "Server is ready" since <first line> (the log is
# appended to across restarts, so an earlier start's line must not count).
nats_ready() { tail -n "+$2" "$1" | grep -q "Server is ready"; }

nats_start() {
  local d; d=$(state_dir nats)
  mkdir -p "$d/jetstream"
  local from=1
  [[ -f $d/server.log ]] && from=$(( $(wc -l <"$d/server.log") + 1 ))
  (cd "$d" && launch "$d/server.pid" "$d/server.log" \
    nats-server -js -a 127.0.0.1 -p 4223 -sd "$d/jetstream" -n outboxer-test)
  local pid; pid=$(<"$d/server.pid")
  wait_until nats "$pid" port_answers 4223 || { show_log_tail "$d/server.log"; return 1; }
  wait_until nats "$pid" nats_ready "$d/server.log" "$from" || { show_log_tail "$d/server.log"; return 1; }
}

# Generic stop for the servers whose only process is the one in server.pid.
simple_stop() {
  local pid; pid=$(server_pid "$1") || return 0
  stop_pid "$1" "$pid"
}
kinesalite_stop() { simple_stop kinesalite; }
fauxqs_stop() { simple_stop fauxqs; }
pubsub_stop() { simple_stop pubsub; }
redis_stop() { simple_stop redis; }
nats_stop() { simple_stop nats; }

# ---------------------------------------------------------------------------------------------
# commands

# start_one <name>: runs in a background subshell; exit status tells success.
start_one() {
  local name=$1 t0; t0=$(now_ms)
  local port; port=$(port_of "$name")
  log "$name: starting (127.0.0.1:$port, state $(state_dir "$name"))"
  # run in a subshell with errexit on (an `if` around the call would disable errexit inside it)
  local rc
  set +e; (set -e; "${name}_start"); rc=$?; set -e
  if (( rc == 0 )); then
    local pid; pid=$(server_pid "$name") || pid="?"
    log "$name: ready on 127.0.0.1:$port (pid $pid) in $(elapsed "$t0")"
  else
    err "$name: FAILED to start (state and logs in $(state_dir "$name"))"
    return 1
  fi
}

stop_one() {
  local name=$1 t0 pid; t0=$(now_ms)
  local port; port=$(port_of "$name")
  if pid=$(server_pid "$name"); then
    log "$name: stopping pid $pid"
    local rc
    set +e; (set -e; "${name}_stop"); rc=$?; set -e
    (( rc == 0 )) || { err "$name: stop failed"; return 1; }
    log "$name: stopped in $(elapsed "$t0")"
  elif port_answers "$port"; then
    warn "$name: port $port answers but no process started by this script is known; leaving it alone"
  else
    [[ $name == rabbitmq ]] && rabbitmq_stop   # tidies a leftover launcher/epmd, if any
    log "$name: not running"
  fi
}

# Runs "<fn> <name>" for every name in parallel; prints the names that failed.
run_parallel() {
  local fn=$1; shift
  local -A pids=()
  local name failed=()
  for name in "$@"; do
    "$fn" "$name" &
    pids[$name]=$!
  done
  for name in "$@"; do
    wait "${pids[$name]}" || failed+=("$name")
  done
  echo "${failed[*]}"
}

cmd_start() {
  local t0; t0=$(now_ms)
  local name to_start=() failed=()
  for name in "$@"; do
    if port_answers "$(port_of "$name")"; then
      local pid; pid=$(server_pid "$name") || pid=""
      log "$name: already answering on 127.0.0.1:$(port_of "$name")${pid:+ (pid $pid)}; nothing to do"
      [[ $name == postgres ]] && postgres_check_mode
      continue
    fi
    if [[ $name == pubsub ]] && ! pubsub_available; then
      pubsub_unavailable
      failed+=(pubsub)
      continue
    fi
    to_start+=("$name")
  done
  if (( ${#to_start[@]} == 0 )); then
    (( ${#failed[@]} == 0 )) || die "not started: ${failed[*]}"
    log "all requested servers already running"
    return 0
  fi

  mkdir -p "$STATE_ROOT"
  for name in "${to_start[@]}"; do mkdir -p "$(state_dir "$name")"; done

  # 1. installs: one apt transaction (a single apt-get update) and the npm installs, in parallel
  local apt_pkgs=() pkg install_pids=()
  for name in "${to_start[@]}"; do
    for pkg in $(apt_packages_of "$name"); do
      apt_installed "$pkg" || apt_pkgs+=("$pkg")
    done
  done
  if (( ${#apt_pkgs[@]} > 0 )); then
    apt_install "${apt_pkgs[@]}" &
    install_pids+=($!)
  fi
  for name in "${to_start[@]}"; do
    if [[ -n $(npm_version_of "$name") ]] && ! npm_installed "$name"; then
      npm_install "$name" &
      install_pids+=($!)
    fi
  done
  local p install_failed=0
  for p in ${install_pids[@]+"${install_pids[@]}"}; do wait "$p" || install_failed=1; done
  (( install_failed == 0 )) || die "installation failed (see above); nothing started"

  # 2. starts, in parallel; each waits until its server answers
  local start_failed
  start_failed=$(run_parallel start_one "${to_start[@]}")
  [[ -z $start_failed ]] || read -r -a failed <<<"${failed[*]} $start_failed"

  if (( ${#failed[@]} > 0 )); then
    err "not started: ${failed[*]} (total $(elapsed "$t0"))"
    exit 1
  fi
  log "started ${to_start[*]} in $(elapsed "$t0")"
}

cmd_stop() {
  local failed
  failed=$(run_parallel stop_one "$@")
  [[ -z $failed ]] || die "failed to stop: $failed"
}

cmd_status() {
  local name port pid rc=0
  for name in "$@"; do
    port=$(port_of "$name")
    pid=$(server_pid "$name") || pid=""
    if [[ -n $pid ]] && port_answers "$port"; then
      echo "$name: running (pid $pid, 127.0.0.1:$port answering)"
    elif [[ -n $pid ]]; then
      echo "$name: starting or unhealthy (pid $pid alive, 127.0.0.1:$port not answering)"; rc=3
    elif port_answers "$port"; then
      echo "$name: 127.0.0.1:$port answering, but not started by this script (no live pid in $(state_dir "$name"))"
    elif [[ $name == pubsub ]] && ! pubsub_available; then
      echo "$name: NOT AVAILABLE on this machine ($PUBSUB_BIN missing)"; rc=3
    else
      echo "$name: stopped"; rc=3
    fi
  done
  return $rc
}

cmd_env() {
  local name
  for name in "$@"; do
    case "$name" in
      postgres) echo "export OUTBOXER_POSTGRES_URL='Host=127.0.0.1;Port=5433;Username=postgres;Database=outboxer'" ;;
      rabbitmq) echo "export OUTBOXER_RABBITMQ_URL='amqp://outboxer:outboxer@127.0.0.1:5673/'" ;;
      mariadb) echo "export OUTBOXER_MYSQL_URL='Server=127.0.0.1;Port=3307;User ID=outboxer;Password=outboxer;Database=outboxer'" ;;
      kinesalite) echo "export OUTBOXER_KINESIS_URL='http://127.0.0.1:4567'" ;;
      fauxqs) echo "export OUTBOXER_SQS_URL='http://127.0.0.1:4566'" ;;
      pubsub) echo "export OUTBOXER_PUBSUB_HOST='127.0.0.1:8085'" ;;
      redis) echo "export OUTBOXER_REDIS_URL='127.0.0.1:6380'" ;;
      nats) echo "export OUTBOXER_NATS_URL='nats://127.0.0.1:4223'" ;;
    esac
  done
}

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

main() {
  (( $# >= 1 )) || usage
  local cmd=$1; shift
  local names=() name
  for name in "$@"; do
    if [[ $name == all ]]; then names+=("${ALL_SERVERS[@]}"); else port_of "$name" >/dev/null; names+=("$name"); fi
  done
  if (( ${#names[@]} == 0 )); then
    if [[ $cmd == env ]]; then names=("${ALL_SERVERS[@]}"); else names=("${DEFAULT_SERVERS[@]}"); fi
  fi
  # drop duplicates, keep order
  local -A seen=(); local unique=()
  for name in "${names[@]}"; do [[ -n ${seen[$name]:-} ]] || { seen[$name]=1; unique+=("$name"); }; done

  case "$cmd" in
    start|stop)
      # one start/stop at a time per state root
      mkdir -p "$STATE_ROOT"
      exec 9>"$STATE_ROOT/.lock"
      flock -w "$TIMEOUT" 9 || die "another eng/servers.sh start/stop holds $STATE_ROOT/.lock"
      "cmd_$cmd" "${unique[@]}"
      ;;
    status) cmd_status "${unique[@]}" ;;
    env) cmd_env "${unique[@]}" ;;
    -h|--help|help) usage ;;
    *) err "unknown command '$cmd'"; usage ;;
  esac
}

main "$@"
