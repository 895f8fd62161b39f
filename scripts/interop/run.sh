#!/usr/bin/env bash
# Verifies a tessera access token with an independent JOSE implementation
# (PyJWT), from the JWK set alone.
#
#   scripts/interop/run.sh JWKS_URL TOKEN ISSUER ALG
#
# Creates (once) a Python virtual environment in target/interop-venv at the
# repository root (TESSERA_INTEROP_VENV overrides), installs pinned PyJWT and
# cryptography into it, then runs verify.py. Exit code: verify.py's, or 127
# when python3 is missing, 3 when the environment cannot be set up.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${TESSERA_INTEROP_VENV:-$root/target/interop-venv}"
requirements=("PyJWT[crypto]==2.10.1" "cryptography==44.0.3")

if [ "$#" -ne 4 ]; then
    echo "usage: $0 JWKS_URL TOKEN ISSUER ALG" >&2
    exit 2
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "run.sh: python3 is required (with the venv module) but was not found on PATH" >&2
    exit 127
fi

ready() {
    "$venv/bin/python" -c 'import jwt, cryptography, sys; sys.exit(jwt.__version__ != "2.10.1")' \
        >/dev/null 2>&1
}

if ! ready; then
    mkdir -p "$(dirname "$venv")"
    # Several runs may start at once (tests run in parallel): one sets up.
    lock="$venv.lock"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$lock"
        flock -w 600 9
    else
        for _ in $(seq 600); do
            mkdir "$lock.d" 2>/dev/null && break
            sleep 1
        done
        trap 'rmdir "$lock.d" 2>/dev/null || true' EXIT
    fi
    if ! ready; then
        echo "run.sh: setting up $venv (PyJWT, cryptography)" >&2
        if [ ! -x "$venv/bin/python" ]; then
            python3 -m venv --clear "$venv" >&2 || {
                echo "run.sh: python3 -m venv failed (is the venv module installed?)" >&2
                exit 3
            }
        fi
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --no-input "${requirements[@]}" >&2 || {
            echo "run.sh: pip install ${requirements[*]} failed" >&2
            exit 3
        }
        ready || { echo "run.sh: PyJWT still not importable in $venv" >&2; exit 3; }
    fi
fi

exec "$venv/bin/python" "$here/verify.py" "$@"
