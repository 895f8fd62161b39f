#!/usr/bin/env bash
# Runs the browser test against a running tessera (plain-HTTP dev cookies):
#
#   scripts/browser/run.sh BASE_URL
#
# Installs what it needs when missing: Debian's chromium (never a browser
# downloaded by a test tool) and playwright-core from package-lock.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$#" -ne 1 ]; then
  echo "usage: $0 BASE_URL" >&2
  exit 2
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "run.sh: installing Debian's chromium" >&2
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_ apt-get install -y -q chromium >&2 || { $sudo_ apt-get update -q >&2 && $sudo_ apt-get install -y -q chromium >&2; }
fi
if ! command -v node >/dev/null 2>&1; then
  echo "run.sh: node is required for the browser test" >&2
  exit 127
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  echo "run.sh: installing playwright-core" >&2
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2)
fi
exec node "$here/test.mjs" "$1"
