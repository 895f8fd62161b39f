#!/usr/bin/env python3
"""Verifies a tessera access token with PyJWT, an independent JOSE library,
from the published JWK set alone, as any other service would.

    verify.py JWKS_URL TOKEN ISSUER ALG

Fetches the JWK set over HTTP, picks the key named by the token's `kid`,
checks the header (`alg` as given, `typ` at+jwt), verifies the signature and
`iss`, `aud` (= ISSUER), `exp`, `nbf` and `iat`, and prints the claims as JSON.
Then it shows that tampered tokens fail: a flipped character in the claims
part, the claims of another user under the same signature, and a wrong
audience. Exit code 0 when all of that holds, 1 otherwise.
"""

import base64
import json
import sys
import urllib.request

import jwt
from jwt import PyJWKSet

REQUIRED = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"]
LEEWAY = 5


def fail(message):
    print(f"verify.py: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode(token, key, alg, issuer, audience=None):
    return jwt.decode(
        token,
        key=key,
        algorithms=[alg],
        audience=issuer if audience is None else audience,
        issuer=issuer,
        leeway=LEEWAY,
        options={"require": REQUIRED, "verify_signature": True},
    )


def must_fail(what, token, key, alg, issuer, audience=None, expected=jwt.PyJWTError):
    try:
        decode(token, key, alg, issuer, audience)
    except expected as e:
        print(f"{what}: refused ({type(e).__name__}: {e})")
        return
    except jwt.PyJWTError as e:
        fail(f"{what}: refused for the wrong reason ({type(e).__name__}: {e})")
    fail(f"{what}: VERIFIED, but it must not")


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    jwks_url, token, issuer, alg = argv[1:]

    try:
        with urllib.request.urlopen(jwks_url, timeout=10) as res:
            jwks = json.load(res)
    except (OSError, ValueError) as e:
        fail(f"cannot fetch the JWK set from {jwks_url}: {e}")
    for k in jwks.get("keys", []):
        if "d" in k or "p" in k or "k" in k:
            fail(f"private or secret material in the JWK set: {sorted(k)}")
    keyset = PyJWKSet.from_dict(jwks)

    header = jwt.get_unverified_header(token)
    if header.get("alg") != alg:
        fail(f"header alg {header.get('alg')!r}, expected {alg!r}")
    if header.get("typ") != "at+jwt":
        fail(f"header typ {header.get('typ')!r}, expected 'at+jwt'")
    kid = header.get("kid")
    matches = [k for k in keyset.keys if k.key_id == kid]
    if len(matches) != 1:
        fail(f"kid {kid!r}: {len(matches)} matching keys in {jwks_url}")
    jwk = matches[0]
    if jwk.algorithm_name != alg:
        fail(f"JWK alg {jwk.algorithm_name!r}, expected {alg!r}")
    if jwk.public_key_use not in (None, "sig"):
        fail(f"JWK use {jwk.public_key_use!r}")

    try:
        claims = decode(token, jwk.key, alg, issuer)
    except jwt.PyJWTError as e:
        fail(f"the token does not verify: {type(e).__name__}: {e}")
    for name in ("sid", "username"):
        if not isinstance(claims.get(name), str) or not claims[name]:
            fail(f"claim {name!r} missing: {claims}")

    h, c, s = token.split(".")
    # One character of the claims part flipped.
    i = len(c) // 2
    flipped = c[:i] + ("A" if c[i] != "A" else "B") + c[i + 1 :]
    must_fail("flipped claims character", f"{h}.{flipped}.{s}", jwk.key, alg, issuer)
    # Well-formed claims of someone else, same signature.
    other = dict(json.loads(unb64(c)), sub="usr_someone_else", username="mallory")
    forged = b64(json.dumps(other, separators=(",", ":")).encode())
    must_fail(
        "claims of another user",
        f"{h}.{forged}.{s}",
        jwk.key,
        alg,
        issuer,
        expected=jwt.InvalidSignatureError,
    )
    # The signature's last byte changed.
    sig = bytearray(unb64(s))
    sig[-1] ^= 1
    must_fail(
        "flipped signature bit",
        f"{h}.{c}.{b64(bytes(sig))}",
        jwk.key,
        alg,
        issuer,
        expected=jwt.InvalidSignatureError,
    )
    # The untouched token for another audience.
    must_fail(
        "wrong audience",
        token,
        jwk.key,
        alg,
        issuer,
        audience="https://someone-else.example",
        expected=jwt.InvalidAudienceError,
    )

    print(f"verified with PyJWT {jwt.__version__} ({alg}, kid {kid})")
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
