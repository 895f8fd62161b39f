//! Token-based authentication: login, refresh with rotation, revocation,
//! introspection and the JWKS.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_core::refresh::RefreshToken;

use super::now;
use super::sessions::Credentials;
use crate::accounts::{Delivery, TokenGrant};
use crate::app::{App, AppState};
use crate::auth::{AuthFailure, AuthMethod, CheckedToken, check_access_token};
use crate::cookies;
use crate::error::{ApiError, ApiResult};
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

/// The token response: tokens in the body, or (cookie mode) in `HttpOnly`
/// cookies only.
fn token_response(app: &App, grant: TokenGrant, delivery: Delivery) -> Response {
    let mut res = if delivery == Delivery::Cookie {
        let mut res = Json(json!({
            "token_type": "Bearer",
            "expires_in": grant.expires_in,
            "refresh_expires_in": grant.refresh_expires_in,
        }))
        .into_response();
        for cookie in app.token_cookies(&grant) {
            res.headers_mut().append(header::SET_COOKIE, cookie);
        }
        res
    } else {
        Json(json!({
            "access_token": grant.access_token,
            "token_type": "Bearer",
            "expires_in": grant.expires_in,
            "refresh_token": grant.refresh_token.expose(),
            "refresh_expires_in": grant.refresh_expires_in,
        }))
        .into_response()
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// `POST /v1/tokens`: [`Tokens::log_in`](crate::accounts::Tokens::log_in).
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

#[derive(Deserialize, Default)]
struct RefreshBody {
    refresh_token: Option<String>,
}

/// `POST /v1/tokens/refresh`: [`Tokens::refresh`](crate::accounts::Tokens::refresh)
/// with the refresh token from the body, or from the refresh cookie when the
/// body has none.
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
#[derive(Deserialize)]
pub struct TokenBody {
    token: String,
}

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
        let mut res = Json(json!({})).into_response();
        for clear in app.cookies.clear_tokens() {
            res.headers_mut().append(header::SET_COOKIE, clear);
        }
        return Ok(res);
    }
    let token = token_body(&headers, &body)?.token;
    app.tokens.revoke(&token, &client, now).await?;
    Ok(Json(json!({})).into_response())
}

/// `POST /v1/tokens/introspect` (RFC 7662), behind the admin key.
pub async fn introspect(
    State(app): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let body = token_body(&headers, &body)?;
    let now = now();
    let inactive = || Ok(Json(json!({ "active": false })).into_response());
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
                Ok(Json(json!({
                    "active": true,
                    "sub": u.id,
                    "username": u.username,
                    "exp": record.expires_at.unix_timestamp(),
                    "iat": record.issued_at.unix_timestamp(),
                    "sid": s.id,
                    "token_type": "refresh_token",
                }))
                .into_response())
            }
            _ => inactive(),
        };
    }
    match check_access_token(&app, &body.token, AuthMethod::Bearer, now).await {
        Ok(CheckedToken { claims, user, .. }) => Ok(Json(json!({
            "active": true,
            "sub": claims.sub,
            "username": user.username,
            "exp": claims.exp,
            "iat": claims.iat,
            "nbf": claims.nbf,
            "jti": claims.jti,
            "sid": claims.sid,
            "iss": claims.iss,
            "aud": claims.aud,
            "client_id": claims.client_id,
            "token_type": "access_token",
        }))
        .into_response()),
        Err(AuthFailure::Refused(..) | AuthFailure::Csrf) => inactive(),
        Err(AuthFailure::Store(e)) => Err(e.into()),
    }
}

/// `GET /.well-known/jwks.json`: the public keys of current tokens.
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
