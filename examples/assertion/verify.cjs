// Checks the gateway's signed identity assertion in a Node app, with the
// `jose` package. `verify(headerValue)` is what a middleware calls on every
// request (see docs/ASSERTION.md); run as a script it checks one assertion,
// which is how tests/assertion.rs drives it.
//
//   JWKS_URL=http://gateway-admin:9090/.well-known/jwks.json \
//   ASSERTION_ISSUER=https://gateway.example.com \
//   ASSERTION_AUDIENCE=http://app:3000 \
//   node verify.cjs "$ASSERTION"
'use strict';

const { createRemoteJWKSet, jwtVerify } = require('jose');

const env = process.env;
// Fetched once and kept; fetched again for an unknown kid (a rotation).
const keys = createRemoteJWKSet(new URL(env.JWKS_URL), { cacheMaxAge: 60_000 });
const options = {
  issuer: env.ASSERTION_ISSUER,
  audience: env.ASSERTION_AUDIENCE,
  // Pinned: never take the algorithm from the token's own header.
  algorithms: [env.ASSERTION_ALG || 'ES256'],
  // Clock skew allowed between the gateway and the app, in seconds.
  clockTolerance: Number(env.LEEWAY || 5),
  requiredClaims: ['iss', 'aud', 'sub', 'iat', 'exp'],
};

/** The assertion's claims; throws (answer 401) when it does not check out. */
async function verify(headerValue) {
  const { payload } = await jwtVerify(headerValue, keys, options);
  return payload;
}

module.exports = { verify };

if (require.main === module) {
  verify(process.argv[2]).then(
    (claims) => console.log(JSON.stringify(claims)),
    (e) => {
      console.log(`rejected: ${e.code || e.name}: ${e.message}`);
      process.exit(1);
    },
  );
}
