"""Checks the gateway's signed identity assertion in a Python app.

`verify(header_value)` is what a middleware calls on every request (see
docs/ASSERTION.md); run as a script it checks one assertion, which is how
tests/assertion.rs drives it. Needs PyJWT and cryptography.

    JWKS_URL=http://gateway-admin:9090/.well-known/jwks.json \
    ASSERTION_ISSUER=https://gateway.example.com \
    ASSERTION_AUDIENCE=http://app:3000 \
    python verify.py "$ASSERTION"
"""

import json
import os
import sys

import jwt

JWKS_URL = os.environ["JWKS_URL"]
ISSUER = os.environ["ASSERTION_ISSUER"]
AUDIENCE = os.environ["ASSERTION_AUDIENCE"]
# Pinned: never take the algorithm from the token's own header.
ALGORITHM = os.environ.get("ASSERTION_ALG", "ES256")
# Clock skew allowed between the gateway and the app, in seconds.
LEEWAY = float(os.environ.get("LEEWAY", "5"))

# Fetches the JWKS once, keeps it, and fetches again for an unknown kid
# (a key rotation).
_keys = jwt.PyJWKClient(JWKS_URL, cache_jwk_set=True, lifespan=60)


def verify(header_value):
    """The assertion's claims, or an exception (jwt.PyJWTError) to answer 401."""
    key = _keys.get_signing_key_from_jwt(header_value)
    return jwt.decode(
        header_value,
        key.key,
        algorithms=[ALGORITHM],
        issuer=ISSUER,
        audience=AUDIENCE,
        leeway=LEEWAY,
        options={"require": ["iss", "aud", "sub", "iat", "exp"]},
    )


if __name__ == "__main__":
    try:
        claims = verify(sys.argv[1])
    except Exception as e:  # every failure is a rejection
        print(f"rejected: {type(e).__name__}: {e}")
        sys.exit(1)
    print(json.dumps(claims))
