#!/usr/bin/env bash
# Runs the browser test against a running tessera (plain-HTTP dev cookies):
#
#   scripts/browser/run.sh BASE_URL session|token SCREENSHOT_DIR
#
# Installs nothing: scripts/setup-test-deps installs Debian's chromium (never
# a browser downloaded by a test tool), playwright-core and @axe-core/playwright.
# When one is missing this fails with exit code 3 and a message naming that
# script. Screenshots of every page, at desktop and phone width, go to
# SCREENSHOT_DIR (the test prints it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$#" -ne 3 ]; then
  echo "usage: $0 BASE_URL session|token SCREENSHOT_DIR" >&2
  exit 2
fi
need() {
  echo "run.sh: $1 is missing; run scripts/setup-test-deps to install the test programs" >&2
  exit 3
}
[ -x /usr/bin/chromium ] || need "Debian's chromium (/usr/bin/chromium)"
command -v node >/dev/null 2>&1 || need "node"
[ -d "$here/node_modules/playwright-core" ] || need "playwright-core (scripts/browser/node_modules)"
[ -d "$here/node_modules/@axe-core/playwright" ] || need "@axe-core/playwright (scripts/browser/node_modules)"
exec node "$here/test.mjs" "$1" "$2" "$3"
