//! Token-based authentication: login, refresh with rotation, revocation,
//! introspection and the JWKS.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_core::refresh::RefreshToken;
use utoipa::ToSchema;

use super::now;
use super::sessions::Credentials;
use crate::accounts::{Delivery, TokenGrant};
use crate::app::{App, AppState};
use crate::auth::{AuthFailure, AuthMethod, CheckedToken, check_access_token};
use crate::cookies;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, Client, JsonBody, RawBody, parse_json_body};

/// Cookie delivery when the query asks for it (`?cookie=true`).
fn delivery(query: Option<&str>) -> Delivery {
    let cookies = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair, "cookie=true" | "cookie=1" | "cookie"))
    });
    if cookies {
        Delivery::Cookie
    } else {
        Delivery::Body
    }
}

/// The answer of a token login or refresh with the tokens in the body.
#[derive(Serialize, ToSchema)]
pub struct Tokens {
    /// A JWT (RFC 9068, `typ: at+jwt`): `Authorization: Bearer` it.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// The access token's lifetime in seconds (`--access-ttl`).
    pub expires_in: i64,
    /// `tsr_rt_…`: spend it at `POST /v1/tokens/refresh`.
    pub refresh_token: String,
    /// What is left of the family, in seconds.
    pub refresh_expires_in: i64,
}

/// The same in cookie mode (`?cookie=true`, or a refresh that read the
/// refresh cookie): the tokens are in `HttpOnly` cookies only.
#[derive(Serialize, ToSchema)]
pub struct CookieTokens {
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// The access token's lifetime in seconds.
    pub expires_in: i64,
    /// What is left of the family, in seconds.
    pub refresh_expires_in: i64,
}

/// A token grant: [`Tokens`] in the body, or [`CookieTokens`] in cookie mode.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum TokenResponse {
    /// The tokens in the body.
    Body(Tokens),
    /// The tokens in cookies.
    Cookie(CookieTokens),
}

/// The token response: tokens in the body, or (cookie mode) in `HttpOnly`
/// cookies only.
fn token_response(app: &App, grant: TokenGrant, delivery: Delivery) -> Response {
    let mut res = if delivery == Delivery::Cookie {
        let mut res = Json(TokenResponse::Cookie(CookieTokens {
            token_type: "Bearer",
            expires_in: grant.expires_in,
            refresh_expires_in: grant.refresh_expires_in,
        }))
        .into_response();
        for cookie in app.token_cookies(&grant) {
            res.headers_mut().append(header::SET_COOKIE, cookie);
        }
        res
    } else {
        Json(TokenResponse::Body(Tokens {
            access_token: grant.access_token,
            token_type: "Bearer",
            expires_in: grant.expires_in,
            refresh_token: grant.refresh_token.expose().to_owned(),
            refresh_expires_in: grant.refresh_expires_in,
        }))
        .into_response()
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// `POST /v1/tokens`: [`Tokens::log_in`](crate::accounts::Tokens::log_in).
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body(content = Credentials, description = "`remember` is accepted and changes nothing here."),
    params(("cookie" = Option<bool>, Query, description = "`?cookie=true` (also `?cookie=1` or `?cookie`): the tokens go into `HttpOnly` cookies and the body is `CookieTokens`, without either token.")),
    responses(
        (status = 200, description = "Logged in: `Tokens`, or with `?cookie=true` `CookieTokens` and the token cookies. Also sets the device cookie.", body = TokenResponse,
            headers(("Set-Cookie" = String, description = "The device cookie; with `?cookie=true` also the access-token and refresh-token cookies."))),
        (status = 401, description = "`invalid_credentials`: unknown username, wrong password, or a disabled user.", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: throttled.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`unavailable`: a store does not answer.", body = ErrorBody),
    )
)]
pub async fn login(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    Client(client): Client,
    headers: HeaderMap,
    JsonBody(creds): JsonBody<Credentials>,
) -> ApiResult<Response> {
    let delivery = delivery(query.as_deref());
    let grant = app
        .tokens
        .log_in(creds.attempt(&app, &headers, client), delivery, now())
        .await?;
    let device = app.device_cookie(&grant.username);
    let mut res = token_response(&app, grant, delivery);
    res.headers_mut().append(header::SET_COOKIE, device);
    Ok(res)
}

/// Body of `POST /v1/tokens/refresh`: optional, like the field.
#[derive(Deserialize, Default, ToSchema)]
#[schema(as = RefreshRequest)]
pub struct RefreshBody {
    /// `tsr_rt_…`. Without it (or with no body and no `Content-Type`), the
    /// refresh-token cookie is used, and the answer is in cookie mode.
    refresh_token: Option<String>,
}

/// `POST /v1/tokens/refresh`: [`Tokens::refresh`](crate::accounts::Tokens::refresh)
/// with the refresh token from the body, or from the refresh cookie when the
/// body has none.
#[utoipa::path(
    post,
    path = "/v1/tokens/refresh",
    tag = "tokens",
    request_body(content = Option<RefreshBody>, description = "Optional: with no body and no `Content-Type`, the refresh-token cookie is used."),
    security((), ("refreshCookie" = [])),
    responses(
        (status = 200, description = "A new pair, in the body for a token from the body, in cookies (`CookieTokens`) for the cookie's; the presented refresh token is spent.", body = TokenResponse,
            headers(("Set-Cookie" = String, description = "In cookie mode, the token cookies anew."))),
        (status = 400, description = "`invalid_request`: no refresh token in the body or the cookie, or a malformed body.", body = ErrorBody),
        (status = 401, description = "`invalid_token`: unknown, malformed, expired, or its session or user ended; `refresh_token_reused`: a spent refresh token again, whose family is now revoked.", body = ErrorBody),
        (status = 503, description = "`unavailable`: a store does not answer.", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(app): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let now = now();
    let parsed: RefreshBody = if body.iter().all(u8::is_ascii_whitespace)
        && !headers.contains_key(header::CONTENT_TYPE)
    {
        RefreshBody::default()
    } else {
        parse_json_body(&headers, &body)?
    };
    let (raw, delivery) = match parsed.refresh_token {
        Some(t) => (t, Delivery::Body),
        None => match cookies::find(&headers, app.cookies.refresh_name()).next() {
            Some(t) => (t.to_owned(), Delivery::Cookie),
            None => return Err(ApiError::invalid_request("The body needs a refresh_token.")),
        },
    };
    let grant = app.tokens.refresh(&raw, delivery, &client, now).await?;
    Ok(token_response(&app, grant, delivery))
}

/// Body of `/v1/tokens/revoke` (RFC 7009) and `/v1/tokens/introspect`
/// (RFC 7662), as JSON or as the form encoding standard OAuth clients send.
///
/// `token_type_hint` (`access_token`, `refresh_token`) is accepted and, as
/// RFC 7009 allows, not needed: tessera's two kinds of token are told apart
/// by their form, so the search always finds the token whatever the hint
/// says, and an unknown hint changes nothing.
#[derive(Deserialize, ToSchema)]
#[schema(as = TokenRequest)]
pub struct TokenBody {
    /// A refresh token or an access token.
    token: String,
    /// `access_token` or `refresh_token`: accepted, never needed.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    #[allow(dead_code)]
    token_type_hint: Option<IgnoredAny>,
}

/// The answer of `POST /v1/tokens/revoke`: always empty.
#[derive(Serialize, ToSchema)]
pub struct Empty {}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The token body, JSON or form-encoded (`token=…&token_type_hint=…`).
fn token_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<TokenBody> {
    if !is_form(headers) {
        return parse_json_body(headers, body);
    }
    serde_urlencoded::from_bytes::<TokenBody>(body).map_err(|_| {
        ApiError::invalid_request("The form needs a token field (token=…), once, in UTF-8.")
    })
}

/// `POST /v1/tokens/revoke` (RFC 7009): ends the session of a refresh or
/// access token. Always `200 {}` for a well-formed request, whatever the
/// token was, so the endpoint reveals nothing.
#[utoipa::path(
    post,
    path = "/v1/tokens/revoke",
    tag = "tokens",
    request_body(content(
        (TokenBody = "application/json"),
        (TokenBody = "application/x-www-form-urlencoded"),
    ), description = "Optional: with no body and no `Content-Type`, the token cookies name the session (cookie-mode logout)."),
    security((), ("accessCookie" = []), ("refreshCookie" = [])),
    responses(
        (status = 200, description = "`{}`, whatever the token was; its session is revoked. A cookie-mode logout also clears the token cookies.", body = Empty,
            headers(("Set-Cookie" = String, description = "Clears the token cookies (cookie-mode logout)."))),
        (status = 400, description = "`invalid_request`: no `token`, or a malformed body; with no body, neither token cookie.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body that is neither JSON nor form-encoded.", body = ErrorBody),
        (status = 503, description = "`unavailable`: a store does not answer.", body = ErrorBody),
    )
)]
pub async fn revoke(
    State(app): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let now = now();
    // A browser in cookie mode cannot read its HttpOnly tokens: with an empty
    // body, its token cookies name the session, and the answer clears them
    // (a logout for the hybrid). The refresh cookie is there even after the
    // access token (and its cookie) expired, so such a logout always ends
    // the family.
    let from_cookie =
        body.iter().all(u8::is_ascii_whitespace) && !headers.contains_key(header::CONTENT_TYPE);
    if from_cookie {
        let tokens: Vec<&str> = cookies::find(&headers, app.cookies.access_name())
            .chain(cookies::find(&headers, app.cookies.refresh_name()))
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.is_empty() {
            return Err(ApiError::invalid_request(
                "The body needs a token (or, in cookie mode, the token cookies).",
            ));
        }
        for token in tokens {
            app.tokens.revoke(token, &client, now).await?;
        }
        let mut res = Json(Empty {}).into_response();
        for clear in app.cookies.clear_tokens() {
            res.headers_mut().append(header::SET_COOKIE, clear);
        }
        return Ok(res);
    }
    let token = token_body(&headers, &body)?.token;
    app.tokens.revoke(&token, &client, now).await?;
    Ok(Json(Empty {}).into_response())
}

/// An active access token, as introspection describes it.
#[derive(Serialize, ToSchema)]
pub struct ActiveAccessToken {
    /// `true`.
    pub active: bool,
    /// The user's id.
    pub sub: String,
    /// The username now.
    pub username: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Token id.
    pub jti: String,
    /// The session (`ses_…`).
    pub sid: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The client id the token names.
    pub client_id: String,
    /// `access_token`.
    pub token_type: &'static str,
}

/// A live, unspent refresh token, as introspection describes it.
#[derive(Serialize, ToSchema)]
pub struct ActiveRefreshToken {
    /// `true`.
    pub active: bool,
    /// The user's id.
    pub sub: String,
    /// The username now.
    pub username: String,
    /// The family's end, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// The session (`ses_…`).
    pub sid: String,
    /// `refresh_token`.
    pub token_type: &'static str,
}

/// Anything else: expired, revoked, spent, forged, unknown.
#[derive(Serialize, ToSchema)]
pub struct InactiveToken {
    /// `false`.
    pub active: bool,
}

/// The answer of `POST /v1/tokens/introspect` (RFC 7662).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Introspection {
    /// A live access token.
    Access(ActiveAccessToken),
    /// A live refresh token.
    Refresh(ActiveRefreshToken),
    /// Not active.
    Inactive(InactiveToken),
}

/// `POST /v1/tokens/introspect` (RFC 7662), behind the admin key.
#[utoipa::path(
    post,
    path = "/v1/tokens/introspect",
    tag = "tokens",
    request_body(content(
        (TokenBody = "application/json"),
        (TokenBody = "application/x-www-form-urlencoded"),
    )),
    security(("adminKey" = []), ("adminBasic" = [])),
    responses(
        (status = 200, description = "Whether the token is active now, and what it is.", body = Introspection),
        (status = 503, description = "`unavailable`: a store does not answer.", body = ErrorBody),
    )
)]
pub async fn introspect(
    State(app): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let body = token_body(&headers, &body)?;
    let now = now();
    let inactive =
        || Ok(Json(Introspection::Inactive(InactiveToken { active: false })).into_response());
    if let Some(refresh) = RefreshToken::parse(&body.token) {
        let Some(record) = app.stores.refresh.refresh_by_hash(&refresh.hash()).await? else {
            return inactive();
        };
        let session = app
            .stores
            .sessions
            .session_by_id(&record.session_id)
            .await?;
        let user = app.stores.users.user_by_id(&record.user_id).await?;
        return match (session, user) {
            (Some(s), Some(u))
                if record.spent_at.is_none() && record.expires_at > now && s.is_live(now) =>
            {
                Ok(Json(Introspection::Refresh(ActiveRefreshToken {
                    active: true,
                    sub: u.id,
                    username: u.username,
                    exp: record.expires_at.unix_timestamp(),
                    iat: record.issued_at.unix_timestamp(),
                    sid: s.id,
                    token_type: "refresh_token",
                }))
                .into_response())
            }
            _ => inactive(),
        };
    }
    match check_access_token(&app, &body.token, AuthMethod::Bearer, now).await {
        Ok(CheckedToken { claims, user, .. }) => {
            Ok(Json(Introspection::Access(ActiveAccessToken {
                active: true,
                sub: claims.sub,
                username: user.username,
                exp: claims.exp,
                iat: claims.iat,
                nbf: claims.nbf,
                jti: claims.jti,
                sid: claims.sid,
                iss: claims.iss,
                aud: claims.aud,
                client_id: claims.client_id,
                token_type: "access_token",
            }))
            .into_response())
        }
        Err(AuthFailure::Refused(..) | AuthFailure::Csrf) => inactive(),
        Err(AuthFailure::Store(e)) => Err(e.into()),
    }
}

/// A public JWK: `kty` with its public parameters, never private material.
#[derive(Serialize, ToSchema)]
pub struct Jwk {
    /// `OKP`, `EC` or `RSA`.
    pub kty: String,
    /// Key id, as in the token header.
    pub kid: String,
    /// `EdDSA`, `ES256` or `RS256`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// `GET /.well-known/jwks.json`.
#[derive(Serialize, ToSchema)]
pub struct Jwks {
    /// The current key and superseded keys that may still have live tokens;
    /// empty with `--jwt-alg HS256`.
    pub keys: Vec<Jwk>,
}

/// `GET /.well-known/jwks.json`: the public keys of current tokens.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "tokens",
    responses(
        (status = 200, description = "The public keys that verify access tokens.", body = Jwks,
            headers(("Cache-Control" = String, description = "`public, max-age=60`"))),
    )
)]
pub async fn jwks(State(app): State<AppState>) -> Response {
    let mut res = Json::<Value>(app.keys.ring().jwks()).into_response();
    // Short enough that a rotation reaches caches quickly; verifiers refetch
    // on an unknown kid anyway.
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    res
}
