#!/usr/bin/env bash
# Verifies a tessera access token with an independent JOSE implementation
# (PyJWT), from the JWK set alone.
#
#   scripts/interop/run.sh JWKS_URL TOKEN ISSUER ALG
#
# Uses the Python virtual environment in target/interop-venv at the
# repository root (TESSERA_INTEROP_VENV overrides), with pinned PyJWT and
# cryptography, which scripts/setup-test-deps creates; this script installs
# nothing. Exit code: verify.py's, or 3 when the environment is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${TESSERA_INTEROP_VENV:-$root/target/interop-venv}"

if [ "$#" -ne 4 ]; then
    echo "usage: $0 JWKS_URL TOKEN ISSUER ALG" >&2
    exit 2
fi
if ! "$venv/bin/python" -c 'import jwt, cryptography, sys; sys.exit(jwt.__version__ != "2.10.1")' \
    >/dev/null 2>&1; then
    echo "run.sh: PyJWT 2.10.1 is missing from $venv; run scripts/setup-test-deps to install the test programs" >&2
    exit 3
fi

exec "$venv/bin/python" "$here/verify.py" "$@"
