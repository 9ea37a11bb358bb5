#!/usr/bin/env bash
# Installs Debian's Chromium (browser tests) and PostgreSQL (storage tests) when missing.
# Needs root and Debian's package index; otherwise it says what is missing and the tests that
# need it skip with that reason.
set -u
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: ${need[*]} not installed and cannot install (not root or no apt-get); their tests will skip." >&2
  exit 0
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "note: apt-get install ${need[*]} failed; their tests will skip." >&2
exit 0
