#!/usr/bin/env bash
# eng/test.sh - the project's test command (the README's second Quick start line; .ci/run calls it).
#
# Installs and starts the servers the tests need on 127.0.0.1 (eng/servers.sh), builds with warnings as
# errors, runs every test project, and writes TRX results for each test assembly under
# artifacts/test-results/. Tests that stop or restart servers (trait Category=Disruptive) run in a
# second phase, alone, so they cannot disturb the parallel ones. A missing server fails the tests;
# nothing is skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

results=artifacts/test-results
rm -rf "$results"
mkdir -p "$results"

echo "[test] starting servers"
OUTBOXER_PG_FAST=1 bash eng/servers.sh start postgres rabbitmq mariadb kinesalite fauxqs redis nats
# The Pub/Sub emulator comes only with the machine image (no registry serves it). Without it the Pub/Sub
# tests fail as "server missing" and the run fails: they are never counted as passed.
if ! bash eng/servers.sh start pubsub; then
  echo "[test] ************************************************************************" >&2
  echo "[test] PUB/SUB EMULATOR NOT AVAILABLE: the Pub/Sub tests cannot run and will fail" >&2
  echo "[test] ************************************************************************" >&2
fi
eval "$(bash eng/servers.sh env)"
export OUTBOXER_REQUIRE_SERVERS=1

# The dashboard's tests drive a real browser: Debian's chromium and chromedriver (installed once; a missing one fails those tests).
echo "[test] browser"
bash eng/browser.sh install || echo "[test] CHROMIUM NOT AVAILABLE: the dashboard tests cannot run and will fail" >&2
eval "$(bash eng/browser.sh env)"

echo "[test] building"
dotnet build Outboxer.slnx -c Release -warnaserror -nologo -v minimal

# Every test project (a folder under test/ whose project references a test SDK), one TRX file each.
projects=()
for csproj in test/*/*.csproj; do
  grep -q 'Microsoft.NET.Test.Sdk' "$csproj" && projects+=("$csproj")
done

status=0
# The packages from that build: license, symbols, pinned siblings, floors, the CLI tool under 10 MB (eng/pack.sh says what).
echo "[test] packing and checking the packages"
bash eng/pack.sh --no-build || status=1

# The README's install path: a fresh app outside the repository gets those packages with `dotnet add package` and runs the
# README's snippets against PostgreSQL and RabbitMQ (eng/install-test.sh says how).
echo "[test] installing the packages into a fresh app, as the README says"
bash eng/install-test.sh artifacts/packages || status=1

echo "[test] phase 1: the tests that may run in parallel"
for csproj in "${projects[@]}"; do
  name=$(basename "$csproj" .csproj)
  dotnet test "$csproj" -c Release --no-build -nologo \
    --filter "Category!=Disruptive" \
    --logger "trx;LogFileName=$name.trx" --results-directory "$results" || status=1
done

echo "[test] phase 2: the tests that stop and restart servers, alone"
for csproj in "${projects[@]}"; do
  grep -rqs --include='*.cs' '"Category", "Disruptive"' "$(dirname "$csproj")" || continue
  name=$(basename "$csproj" .csproj)
  dotnet test "$csproj" -c Release --no-build -nologo \
    --filter "Category=Disruptive" \
    --logger "trx;LogFileName=$name.Disruptive.trx" --results-directory "$results" || status=1
done

# One line per TRX file, then the totals.
total=0 passed=0 failed=0 skipped=0
for trx in "$results"/*.trx; do
  [ -e "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  get() { printf '%s' "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
  t=$(get total) p=$(get passed) f=$(get failed) n=$(get notExecuted)
  printf '[test] %-60s total %4s  passed %4s  failed %3s  not run %3s\n' "$(basename "$trx")" "$t" "$p" "$f" "$n"
  total=$((total + t)) passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + n))
done
echo "[test] all: total $total, passed $passed, failed $failed, not run $skipped"
if [ "$skipped" -gt 0 ] || [ "$failed" -gt 0 ] || [ "$total" -eq 0 ]; then
  status=1
fi
exit "$status"
