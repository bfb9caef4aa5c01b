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
OUTBOXER_PG_FAST=1 bash eng/servers.sh start postgres rabbitmq
eval "$(bash eng/servers.sh env)"
export OUTBOXER_REQUIRE_SERVERS=1

echo "[test] building"
dotnet build Outboxer.slnx -c Release -warnaserror -nologo -v minimal

status=0
echo "[test] phase 1: parallel tests"
dotnet test Outboxer.slnx -c Release --no-build -nologo \
  --filter "Category!=Disruptive" \
  --logger "trx;LogFilePrefix=tests" --results-directory "$results" || status=1

echo "[test] phase 2: tests that restart servers, alone"
dotnet test Outboxer.slnx -c Release --no-build -nologo -m:1 \
  --filter "Category=Disruptive" \
  --logger "trx;LogFilePrefix=disruptive" --results-directory "$results" || status=1

echo "[test] the sample against PostgreSQL and RabbitMQ"
dotnet run --project samples/Outboxer.Sample -c Release --no-build -- \
  --postgres "$OUTBOXER_POSTGRES_URL" --rabbitmq "$OUTBOXER_RABBITMQ_URL" || status=1

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
