// An Express API that trusts tessera, two ways:
//
// - Access tokens (`Authorization: Bearer …`) are verified here, with jose,
//   from tessera's JWKS: signature, `iss`, `aud`, `exp` and the `at+jwt`
//   type. No call to tessera per request; a token whose key id is unknown
//   makes jose fetch the JWKS again (at most once per cooldown), so a key
//   rotation needs nothing from this app.
// - Cookie sessions are read through tessera's forward-auth: the incoming
//   Cookie (and the CSRF and Origin headers) go to `GET /v1/auth/verify`
//   with the original method, and tessera answers who it is, or 401/403.
//
// Settings, from the environment:
//   TESSERA_URL        where this app reaches tessera (required), e.g. http://127.0.0.1:8080
//   TESSERA_ISSUER     the `iss` (and, unless TESSERA_AUDIENCE, `aud`) tessera
//                      puts in tokens: its --issuer (default: TESSERA_URL)
//   TESSERA_AUDIENCE   the expected `aud` (default: TESSERA_ISSUER)
//   JWKS_COOLDOWN_MS   the least time between two JWKS fetches (default 30000)
//   HOST, PORT         where to listen (default 127.0.0.1 and 3000; PORT=0
//                      picks a free port)
//
// The first line on standard output is `express example listening on
// http://HOST:PORT`.
import express from "express";
import { createRemoteJWKSet, jwtVerify } from "jose";

const tesseraUrl = process.env.TESSERA_URL?.replace(/\/+$/, "");
if (!tesseraUrl) {
  console.error("server.mjs: set TESSERA_URL to tessera's address, e.g. http://127.0.0.1:8080");
  process.exit(2);
}
const issuer = process.env.TESSERA_ISSUER ?? tesseraUrl;
const audience = process.env.TESSERA_AUDIENCE ?? issuer;
const cooldownDuration = Number(process.env.JWKS_COOLDOWN_MS ?? 30000);
const jwks = createRemoteJWKSet(new URL(`${tesseraUrl}/.well-known/jwks.json`), {
  cooldownDuration,
});

// The asymmetric algorithms tessera signs with (--jwt-alg); HS256 tokens
// cannot be verified outside tessera, and "none" never.
const algorithms = ["EdDSA", "ES256", "RS256"];

async function fromBearer(token) {
  const { payload } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    algorithms,
    typ: "at+jwt",
    requiredClaims: ["sub", "sid", "exp"],
  });
  return {
    id: payload.sub,
    username: payload.username,
    method: "bearer",
    sessionId: payload.sid,
  };
}

// Headers tessera's forward-auth judges: the credential, the CSRF token, and
// what tells a cross-site request.
const forwarded = ["cookie", "x-csrf-token", "origin", "sec-fetch-site"];

async function fromForwardAuth(req) {
  const headers = { "x-forwarded-method": req.method, accept: "application/json" };
  for (const name of forwarded) {
    const value = req.get(name);
    if (value !== undefined) headers[name] = value;
  }
  const res = await fetch(`${tesseraUrl}/v1/auth/verify`, {
    headers,
    signal: AbortSignal.timeout(10000),
  });
  if (res.status !== 200) {
    return { refused: { status: res.status, body: await res.text() } };
  }
  return {
    user: {
      id: res.headers.get("x-auth-user-id"),
      username: res.headers.get("x-auth-username"),
      method: res.headers.get("x-auth-method"),
      sessionId: res.headers.get("x-auth-session-id"),
    },
  };
}

// jose's errors that mean "this token is no good" (malformed, forged,
// expired, wrong issuer, audience or type, a key tessera does not publish);
// the others (ERR_JWKS_TIMEOUT, ERR_JWKS_INVALID, a failed fetch) mean the
// JWKS could not be had.
function refusedToken(err) {
  const code = String(err?.code ?? "");
  return (
    code.startsWith("ERR_JWT_") ||
    code.startsWith("ERR_JWS_") ||
    code === "ERR_JOSE_ALG_NOT_ALLOWED" ||
    code === "ERR_JOSE_NOT_SUPPORTED" ||
    code === "ERR_JWKS_NO_MATCHING_KEY" ||
    code === "ERR_JWKS_MULTIPLE_MATCHING_KEYS"
  );
}

function unauthenticated(res, message) {
  res
    .status(401)
    .set("www-authenticate", 'Bearer error="invalid_token"')
    .json({ error: "unauthenticated", message });
}

// Sets req.user, or answers 401 (or tessera's refusal) itself.
async function requireUser(req, res, next) {
  try {
    const auth = req.get("authorization");
    if (auth !== undefined) {
      const match = /^Bearer\s+(\S+)$/i.exec(auth);
      if (!match) return unauthenticated(res, "Authorization must be a Bearer token.");
      try {
        req.user = await fromBearer(match[1]);
      } catch (err) {
        // An invalid token is the client's fault; anything else (tessera
        // unreachable for the JWKS) is ours.
        if (refusedToken(err)) {
          return unauthenticated(res, `The access token was refused (${err.code}).`);
        }
        throw err;
      }
      return next();
    }
    if (req.get("cookie") !== undefined) {
      const got = await fromForwardAuth(req);
      if (got.refused) {
        return res.status(got.refused.status).type("application/json").send(got.refused.body);
      }
      req.user = got.user;
      return next();
    }
    res.set("www-authenticate", "Bearer");
    return res.status(401).json({ error: "unauthenticated", message: "No credentials." });
  } catch (err) {
    return next(err);
  }
}

const app = express();
app.disable("x-powered-by");

app.get("/healthz", (_req, res) => res.json({ status: "ok" }));

// Who is calling, as this app sees it.
app.get("/api/me", requireUser, (req, res) => res.json({ user: req.user }));

// An unsafe method: by session cookie it needs the session's X-CSRF-Token,
// which tessera checks through forward-auth.
app.post("/api/notes", requireUser, express.json({ limit: "16kb" }), (req, res) => {
  res.status(201).json({ note: { author: req.user.username, text: String(req.body?.text ?? "") } });
});

app.use((err, _req, res, _next) => {
  console.error("express example:", err);
  res.status(502).json({ error: "bad_gateway", message: "Could not check the credential with tessera." });
});

const host = process.env.HOST ?? "127.0.0.1";
const server = app.listen(Number(process.env.PORT ?? 3000), host, () => {
  const { port } = server.address();
  console.log(`express example listening on http://${host}:${port}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
