//! Protect an [axum](https://docs.rs/axum) app with a tessera server.
//!
//! [`Tessera`] holds the connection to one tessera server. Its
//! [`layer`](Tessera::layer) protects a router: every request must carry a
//! credential tessera issued, or it is answered before it reaches a handler.
//! Handlers read who is calling with the [`Authenticated`] extractor.
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use tessera_axum::{Authenticated, Tessera};
//!
//! async fn me(who: Authenticated) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "user": who.user_id, "name": who.username }))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tessera = Tessera::builder("https://auth.example.com").build()?;
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .layer(tessera.layer());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # How each credential is checked
//!
//! The credential is chosen as tessera chooses it: the `Authorization:
//! Bearer` header; without one, the session cookie; without that, the
//! access-token cookie.
//!
//! - **Access tokens** (bearer header or the `tessera_access` cookie) are
//!   verified *offline*, with the public keys of the server's
//!   `/.well-known/jwks.json`: the signature (with the algorithm the key's
//!   JWK names, never the token's choice), `typ: at+jwt`, no `crit`, `iss`,
//!   `aud`, and `exp`/`nbf` with a small [leeway](Builder::leeway). The key
//!   set is fetched once and kept as long as the server's `Cache-Control:
//!   max-age` says; a token with an unknown `kid` (after a `tessera keys
//!   rotate`) makes it fetch again, at most once per
//!   [`refetch_interval`](Builder::refetch_interval), so a flood of tokens
//!   with made-up `kid`s cannot make it hammer the server.
//! - **Session cookies** cannot be checked offline: they are sent to the
//!   server's forward-auth route `GET /v1/auth/verify`, with the original
//!   method in `X-Forwarded-Method` and the `X-CSRF-Token`, `Origin` and
//!   `Sec-Fetch-Site` headers when present, so tessera applies its CSRF and
//!   cross-site rules to the original request. Only tessera's session
//!   cookies are forwarded, never the app's other cookies.
//!
//! # Offline or strict
//!
//! An access token verified offline is accepted until it expires
//! (`--access-ttl`, 15 minutes by default), even when its session was
//! revoked on the server (logout, `POST /v1/tokens/revoke`, a disabled
//! user) a moment ago: that is the price of not asking the server on every
//! request. With [`strict`](Builder::strict), a token that verified offline
//! is also sent to the forward-auth route, so a revoked session is refused
//! at once, at the cost of one request to tessera per request to the app.
//!
//! # Answers
//!
//! | what | status | body, headers |
//! |---|---|---|
//! | no credential, or a session the server refused | `401` | `{"error": "unauthenticated", …}`, `WWW-Authenticate: Bearer` |
//! | an access token that does not verify, or revoked (strict) | `401` | `{"error": "unauthenticated", …}`, `WWW-Authenticate: Bearer error="invalid_token"` |
//! | tessera refused the original request (`csrf_failed`, `cross_site_request`) | `403` | tessera's own answer |
//! | tessera does not answer (JWKS or forward-auth), or answers something unexpected | `503` | `{"error": "unavailable", …}` |
//!
//! Nothing is ever accepted without its check: an unreachable server is a
//! `503`, never a pass.
//!
//! # TLS
//!
//! Requests to tessera go through [`reqwest`] with rustls. Unless you pass
//! your own [client](Builder::http_client), [`Builder::build`] installs
//! aws-lc-rs as the process's default rustls provider if none is installed
//! yet.

mod jwks;
mod layer;
mod rejection;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, header};
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;

pub use layer::{RequireAuth, RequireAuthLayer};
pub use rejection::Rejection;

use jwks::KeyCache;
use rejection::Kind;

/// Longest token looked at; anything longer is refused unread.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Who is calling: what the layer puts in the request for handlers.
///
/// As an extractor it needs [`Tessera::layer`] on the route; without the
/// layer it answers `500`, never a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The user's id (`usr_…`).
    pub user_id: String,
    /// The username (for a token, as it was when the token was issued).
    pub username: String,
    /// Which credential the request carried.
    pub method: AuthMethod,
    /// The public id of the credential's session (`ses_…`; a token's `sid`).
    pub session_id: String,
    /// When the credential stops working: a token's `exp`. `None` for a
    /// session cookie, whose end moves with use and which the forward-auth
    /// answer does not carry.
    pub expires_at: Option<SystemTime>,
}

/// The kind of credential a request was authenticated by, as tessera names
/// it (`auth.method` of `GET /v1/me`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `Authorization: Bearer <access token>`.
    Bearer,
    /// The session cookie.
    Session,
    /// The access-token cookie.
    CookieToken,
}

impl AuthMethod {
    /// `"bearer"`, `"session"` or `"cookie_token"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Session => "session",
            Self::CookieToken => "cookie_token",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "bearer" => Some(Self::Bearer),
            "session" => Some(Self::Session),
            "cookie_token" => Some(Self::CookieToken),
            _ => None,
        }
    }
}

/// A handle on one tessera server: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Tessera {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    issuer: String,
    audience: String,
    leeway: Duration,
    strict: bool,
    session_cookie: &'static str,
    access_cookie: &'static str,
    client: reqwest::Client,
    keys: KeyCache,
}

impl std::fmt::Debug for Tessera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tessera")
            .field("base", &self.inner.base)
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("strict", &self.inner.strict)
            .finish_non_exhaustive()
    }
}

/// Settings for a [`Tessera`]; from [`Tessera::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    base: String,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    refetch_interval: Duration,
    timeout: Duration,
    strict: bool,
    insecure_dev_cookies: bool,
    client: Option<reqwest::Client>,
}

/// Why a [`Builder`] could not build.
#[derive(Debug)]
pub struct BuildError(String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

impl Builder {
    /// The `iss` tokens must carry: the server's `--issuer`. Default: the
    /// base URL. (A server without `--issuer` uses `http://127.0.0.1:7480`
    /// whatever it listens on: set this when the two differ.)
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The `aud` tokens must carry: the server's `--audience`. Default: the
    /// issuer (as on the server).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Clock skew allowed on `exp` and `nbf`. Default: 5 seconds.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The least time between two fetches of the JWKS that are not due to
    /// its `max-age` running out: a token with an unknown `kid` triggers a
    /// fetch only if the last one is at least this old, and a failed fetch
    /// is retried no sooner. Default: 10 seconds.
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// How long one request to tessera may take before the app answers
    /// `503`. Default: 5 seconds. Ignored with [`http_client`](Self::http_client).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also check every access token with the server (forward-auth), so a
    /// revoked session is refused at once rather than at the token's
    /// expiry. Default: off (tokens are verified offline only).
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Read the cookie names of a server started with
    /// `--insecure-dev-cookies` (`tessera_session`, `tessera_access`)
    /// instead of the default `__Host-` ones. For plain HTTP on localhost.
    pub fn insecure_dev_cookies(mut self, on: bool) -> Self {
        self.insecure_dev_cookies = on;
        self
    }

    /// The HTTP client for requests to tessera (it should not follow
    /// redirects and should have a timeout).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Checks the settings and builds the handle. Nothing is fetched yet:
    /// the key set is fetched by the first token that needs it.
    pub fn build(self) -> Result<Tessera, BuildError> {
        let base = self.base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| BuildError(format!("the base URL {base:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BuildError(format!(
                "the base URL {base:?} is not an http(s) URL"
            )));
        }
        let client = match self.client {
            Some(client) => client,
            None => {
                // reqwest is built with rustls and no default provider, as
                // in the rest of the workspace; tessera uses aws-lc-rs.
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(self.timeout)
                    .build()
                    .map_err(|e| BuildError(format!("building the HTTP client: {e}")))?
            }
        };
        let issuer = self.issuer.unwrap_or_else(|| base.clone());
        let audience = self.audience.unwrap_or_else(|| issuer.clone());
        let (session_cookie, access_cookie) = if self.insecure_dev_cookies {
            ("tessera_session", "tessera_access")
        } else {
            ("__Host-tessera_session", "__Host-tessera_access")
        };
        Ok(Tessera {
            inner: Arc::new(Inner {
                keys: KeyCache::new(
                    format!("{base}/.well-known/jwks.json"),
                    self.refetch_interval,
                ),
                base,
                issuer,
                audience,
                leeway: self.leeway,
                strict: self.strict,
                session_cookie,
                access_cookie,
                client,
            }),
        })
    }
}

/// The claims tessera's access tokens carry that this crate reads.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    username: String,
    exp: u64,
}

/// Which credential a request carries, chosen as tessera chooses.
enum Credential<'a> {
    Token(String, AuthMethod),
    Session(Vec<&'a str>),
    None,
}

impl Tessera {
    /// Settings for the tessera server at `base_url` (such as
    /// `https://auth.example.com`; the routes are under it).
    pub fn builder(base_url: impl Into<String>) -> Builder {
        Builder {
            base: base_url.into(),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(5),
            refetch_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            strict: false,
            insecure_dev_cookies: false,
            client: None,
        }
    }

    /// A tower layer that lets only authenticated requests through, with
    /// [`Authenticated`] in their extensions.
    pub fn layer(&self) -> RequireAuthLayer {
        RequireAuthLayer::new(self.clone())
    }

    /// How many times the JWKS has been fetched (successfully or not) since
    /// this handle was built: for metrics and tests.
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.keys.fetches()
    }

    /// Authenticates a request by its method and headers: what the layer
    /// does for every request. For use outside axum.
    pub async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Authenticated, Rejection> {
        match self.credential(headers) {
            Credential::Token(token, method_kind) => {
                let who = self.verify_token(&token, method_kind).await?;
                if self.inner.strict {
                    let mut forward = HeaderMap::new();
                    let value = HeaderValue::from_str(&format!("Bearer {token}"))
                        .map_err(|_| Rejection::new(Kind::InvalidToken))?;
                    forward.insert(header::AUTHORIZATION, value);
                    let live = self.forward_auth(method, forward).await.map_err(|r| {
                        if r.kind_is(Kind::Unauthenticated) {
                            Rejection::new(Kind::InvalidToken)
                        } else {
                            r
                        }
                    })?;
                    if live.session_id != who.session_id || live.user_id != who.user_id {
                        return Err(Rejection::new(Kind::InvalidToken));
                    }
                }
                Ok(who)
            }
            Credential::Session(values) => {
                let mut forward = HeaderMap::new();
                let cookie = values
                    .iter()
                    .map(|v| format!("{}={v}", self.inner.session_cookie))
                    .collect::<Vec<_>>()
                    .join("; ");
                let cookie = HeaderValue::from_str(&cookie)
                    .map_err(|_| Rejection::new(Kind::Unauthenticated))?;
                forward.insert(header::COOKIE, cookie);
                for name in ["x-csrf-token", "origin", "sec-fetch-site"] {
                    if let Some(v) = headers.get(name) {
                        forward.insert(name, v.clone());
                    }
                }
                self.forward_auth(method, forward).await
            }
            Credential::None => Err(Rejection::new(Kind::Unauthenticated)),
        }
    }

    fn credential<'a>(&self, headers: &'a HeaderMap) -> Credential<'a> {
        for value in headers.get_all(header::AUTHORIZATION) {
            let Ok(value) = value.to_str() else { continue };
            let Some((scheme, token)) = value.split_once(' ') else {
                continue;
            };
            if scheme.eq_ignore_ascii_case("bearer") {
                return Credential::Token(token.trim().to_owned(), AuthMethod::Bearer);
            }
        }
        let cookies: Vec<(&str, &str)> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .collect();
        let sessions: Vec<&str> = cookies
            .iter()
            .filter(|(name, _)| *name == self.inner.session_cookie)
            .map(|(_, value)| *value)
            .filter(|v| !v.is_empty())
            .collect();
        if !sessions.is_empty() {
            return Credential::Session(sessions);
        }
        // Of several access cookies, the first shaped like a JWT.
        cookies
            .iter()
            .filter(|(name, _)| *name == self.inner.access_cookie)
            .map(|(_, value)| *value)
            .find(|v| v.split('.').count() == 3)
            .map_or(Credential::None, |v| {
                Credential::Token(v.to_owned(), AuthMethod::CookieToken)
            })
    }

    /// Offline verification of an access token with the JWKS.
    async fn verify_token(
        &self,
        token: &str,
        method: AuthMethod,
    ) -> Result<Authenticated, Rejection> {
        let refused = || Rejection::new(Kind::InvalidToken);
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refused());
        }
        let header = decode_header(token).map_err(|_| refused())?;
        let typ = header.typ.as_deref().unwrap_or("");
        if !(typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")) {
            return Err(refused());
        }
        // RFC 7515 §4.1.11: extensions we do not understand are refused.
        if header.crit.is_some() {
            return Err(refused());
        }
        let kid = header.kid.as_deref().ok_or_else(refused)?;
        let key = self
            .inner
            .keys
            .key(&self.inner.client, kid)
            .await
            .map_err(|e| match e {
                jwks::Missing::UnknownKid => refused(),
                jwks::Missing::Unavailable => Rejection::new(Kind::Unavailable),
            })?;
        // The algorithm is the key's, never the token's choice.
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_audience(&[&self.inner.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.inner.leeway.as_secs();
        let claims = decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|_| refused())?
            .claims;
        Ok(Authenticated {
            user_id: claims.sub,
            username: claims.username,
            method,
            session_id: claims.sid,
            expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(claims.exp)),
        })
    }

    /// `GET {base}/v1/auth/verify` with `headers` and the original method.
    async fn forward_auth(
        &self,
        method: &Method,
        mut headers: HeaderMap,
    ) -> Result<Authenticated, Rejection> {
        if let Ok(m) = HeaderValue::from_str(method.as_str()) {
            headers.insert("x-forwarded-method", m);
        }
        let url = format!("{}/v1/auth/verify", self.inner.base);
        let res = self
            .inner
            .client
            .get(&url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "tessera forward-auth did not answer");
                Rejection::new(Kind::Unavailable)
            })?;
        let status = res.status();
        match status.as_u16() {
            200 => {
                let h = res.headers();
                let get = |name: &str| {
                    h.get(name)
                        .and_then(|v| v.to_str().ok())
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                };
                let (Some(user_id), Some(username), Some(method), Some(session_id)) = (
                    get("x-auth-user-id"),
                    get("x-auth-username"),
                    get("x-auth-method").as_deref().and_then(AuthMethod::parse),
                    get("x-auth-session-id"),
                ) else {
                    tracing::warn!("tessera forward-auth answered 200 without its X-Auth headers");
                    return Err(Rejection::new(Kind::Unavailable));
                };
                Ok(Authenticated {
                    user_id,
                    username,
                    method,
                    session_id,
                    expires_at: None,
                })
            }
            401 => Err(Rejection::new(Kind::Unauthenticated)),
            403 => {
                let content_type = res.headers().get(header::CONTENT_TYPE).cloned();
                let body = res.bytes().await.map_err(|e| {
                    tracing::warn!(error = %e, "reading tessera's 403 answer");
                    Rejection::new(Kind::Unavailable)
                })?;
                Err(Rejection::forbidden(content_type, body.to_vec()))
            }
            _ => {
                tracing::warn!(%status, "tessera forward-auth answered an unexpected status");
                Err(Rejection::new(Kind::Unavailable))
            }
        }
    }
}
