#!/usr/bin/env bash
# eng/browser.sh - the real browser the dashboard tests drive (test/Outboxer.Dashboard.Tests).
#
# Usage:
#   eng/browser.sh install   install Debian's chromium and chromium-driver when either is missing (idempotent)
#   eng/browser.sh env       print `export OUTBOXER_CHROMIUM=... OUTBOXER_CHROMEDRIVER=...` lines
#   eng/browser.sh status    print both versions (exit 3 when one is missing)
#
# The tests run chromium headless (--headless=new --no-sandbox) through chromedriver with Selenium. Nothing is
# downloaded at test time: a missing browser fails the tests, it is never skipped.
set -euo pipefail

chromium_bin() { command -v chromium || command -v chromium-browser || true; }
driver_bin() { command -v chromedriver || { [ -x /usr/lib/chromium/chromedriver ] && echo /usr/lib/chromium/chromedriver; } || true; }

case "${1:-install}" in
  install)
    if [ -n "$(chromium_bin)" ] && [ -n "$(driver_bin)" ]; then
      echo "[browser] chromium and chromedriver already installed"
      exit 0
    fi
    echo "[browser] installing chromium and chromium-driver (apt)"
    sudo_cmd=""
    if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null
    [ -n "$(chromium_bin)" ] && [ -n "$(driver_bin)" ] || { echo "[browser] chromium or chromedriver still missing" >&2; exit 1; }
    echo "[browser] $("$(chromium_bin)" --version 2>/dev/null || true)"
    ;;
  env)
    echo "export OUTBOXER_CHROMIUM=$(chromium_bin)"
    echo "export OUTBOXER_CHROMEDRIVER=$(driver_bin)"
    ;;
  status)
    c=$(chromium_bin); d=$(driver_bin)
    [ -n "$c" ] && "$c" --version 2>/dev/null || echo "chromium: missing"
    [ -n "$d" ] && "$d" --version 2>/dev/null || echo "chromedriver: missing"
    [ -n "$c" ] && [ -n "$d" ] || exit 3
    ;;
  *)
    echo "usage: eng/browser.sh install|env|status" >&2
    exit 2
    ;;
esac
