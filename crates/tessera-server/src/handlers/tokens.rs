//! Token-based authentication: login, refresh with rotation, revocation,
//! introspection and the JWKS.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand_core::OsRng;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tessera_core::refresh::{RefreshToken, SpendOutcome};
use tessera_core::session::ClientInfo;
use tessera_core::{SessionKind, SessionRecord, ids};
use tessera_store::RefreshRecord;
use time::OffsetDateTime;

use super::now;
use super::sessions::Credentials;
use crate::app::{App, AppState};
use crate::auth::{AuthFailure, AuthMethod, CheckedToken, check_access_token};
use crate::cookies;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Client, JsonBody, RawBody, parse_json_body};
use crate::login;

/// Whether the query asks for cookie delivery (`?cookie=true`).
fn wants_cookies(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair, "cookie=true" | "cookie=1" | "cookie"))
    })
}

/// Signs a fresh access token for `session` and builds the token response:
/// tokens in the body, or (cookie mode) in `HttpOnly` cookies only.
fn token_response(
    app: &App,
    user_id: &str,
    username: &str,
    session: &SessionRecord,
    refresh: &RefreshToken,
    cookie_mode: bool,
    now: OffsetDateTime,
) -> ApiResult<Response> {
    let claims = app.rules.claims(
        user_id,
        username,
        &session.id,
        session.expires_at,
        now,
        &mut OsRng,
    );
    let access = app.keys.ring().sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "signing an access token failed");
        ApiError::internal()
    })?;
    // The lifetime as configured (or what is left of the session), not
    // `exp - now`, which the rounding of `exp` to whole seconds would blur.
    let expires_in = app
        .settings
        .access_ttl
        .min(session.expires_at - now)
        .whole_seconds()
        .max(0);
    let refresh_expires_in = (session.expires_at - now).whole_seconds().max(0);
    metrics::counter!("tessera_tokens_issued_total", "delivery" => if cookie_mode { "cookie" } else { "body" })
        .increment(1);
    let mut res = if cookie_mode {
        let mut res = Json(json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "refresh_expires_in": refresh_expires_in,
        }))
        .into_response();
        let h = res.headers_mut();
        h.append(
            header::SET_COOKIE,
            app.cookies
                .set_access(&access, time::Duration::seconds(expires_in)),
        );
        h.append(
            header::SET_COOKIE,
            app.cookies.set_refresh(
                refresh.expose(),
                time::Duration::seconds(refresh_expires_in),
            ),
        );
        res
    } else {
        Json(json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "refresh_token": refresh.expose(),
            "refresh_expires_in": refresh_expires_in,
        }))
        .into_response()
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// `POST /v1/tokens`: checks the password, starts a token session (a refresh
/// family) and issues an access and a refresh token.
pub async fn login(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    Client(client): Client,
    JsonBody(body): JsonBody<Credentials>,
) -> ApiResult<Response> {
    let now = now();
    let user =
        login::check_password(&app, "token", &body.username, &body.password, &client, now).await?;
    let session = new_token_session(&app, &user.id, client, now);
    app.stores.sessions.create_session(&session).await?;
    let refresh = RefreshToken::generate(&mut OsRng);
    app.stores
        .refresh
        .create_refresh(&RefreshRecord {
            hash: refresh.hash(),
            session_id: session.id.clone(),
            user_id: user.id.clone(),
            issued_at: now,
            expires_at: session.expires_at,
            spent_at: None,
        })
        .await?;
    login::confirm_session(&app, &user, &session, now).await?;
    tracing::info!(user_id = %user.id, session_id = %session.id, "token login");
    token_response(
        &app,
        &user.id,
        &user.username,
        &session,
        &refresh,
        wants_cookies(query.as_deref()),
        now,
    )
}

fn new_token_session(
    app: &App,
    user_id: &str,
    client: ClientInfo,
    now: OffsetDateTime,
) -> SessionRecord {
    SessionRecord {
        id: ids::session_id(&mut OsRng),
        secret_hash: None,
        user_id: user_id.to_owned(),
        kind: SessionKind::Token,
        created_at: now,
        last_seen_at: now,
        expires_at: now + app.settings.refresh_ttl,
        idle_expires_at: None,
        user_agent: client.user_agent.map(|ua| {
            ua.chars()
                .take(tessera_core::session::MAX_USER_AGENT_CHARS)
                .collect()
        }),
        ip: client.ip,
        revoked_at: None,
    }
}

#[derive(Deserialize, Default)]
struct RefreshBody {
    refresh_token: Option<String>,
}

/// `POST /v1/tokens/refresh`: spends the refresh token (from the body, or
/// from the refresh cookie when the body has none) and issues its successor.
pub async fn refresh(
    State(app): State<AppState>,
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
    let (raw, cookie_mode) = match parsed.refresh_token {
        Some(t) => (t, false),
        None => match cookies::find(&headers, app.cookies.refresh_name()).next() {
            Some(t) => (t.to_owned(), true),
            None => return Err(ApiError::invalid_request("The body needs a refresh_token.")),
        },
    };
    let refused = |reason: &'static str| {
        metrics::counter!("tessera_refreshes_total", "outcome" => reason).increment(1);
        ApiError::invalid_token()
    };
    let Some(presented) = RefreshToken::parse(&raw) else {
        return Err(refused("malformed"));
    };
    let successor = presented.successor(app.keys.refresh_secret());
    let outcome = app
        .stores
        .refresh
        .spend_refresh(
            &presented.hash(),
            &successor.hash(),
            now,
            app.settings.refresh_grace,
        )
        .await?;
    let (session_id, label) = match outcome {
        SpendOutcome::Rotated { session_id } => (session_id, "rotated"),
        SpendOutcome::Grace { session_id } => (session_id, "grace"),
        SpendOutcome::Reused { session_id } => {
            // Theft: someone holds a token that was already exchanged. End
            // the whole family; its access tokens die with the session.
            if let Some(s) = app.stores.sessions.session_by_id(&session_id).await? {
                app.stores
                    .sessions
                    .revoke_session(&s.user_id, &s.id, now)
                    .await?;
            }
            tracing::warn!(session_id = %session_id, "refresh token reused: family revoked");
            metrics::counter!("tessera_refreshes_total", "outcome" => "reused").increment(1);
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "refresh_token_reused",
                "This refresh token was already used; its whole session has been revoked.",
            ));
        }
        SpendOutcome::Unknown => return Err(refused("unknown")),
    };
    let Some(session) = app.stores.sessions.session_by_id(&session_id).await? else {
        return Err(refused("unknown_session"));
    };
    if !session.is_live(now) {
        return Err(refused("revoked"));
    }
    let Some(user) = app.stores.users.user_by_id(&session.user_id).await? else {
        return Err(refused("user_gone"));
    };
    metrics::counter!("tessera_refreshes_total", "outcome" => label).increment(1);
    // A refresh is the token session's use: the device list shows it.
    app.stores
        .sessions
        .touch_session(&session.id, now, None)
        .await?;
    token_response(
        &app,
        &user.id,
        &user.username,
        &session,
        &successor,
        cookie_mode,
        now,
    )
}

/// Body of `/v1/tokens/revoke` and `/v1/tokens/introspect`.
#[derive(Deserialize)]
pub struct TokenBody {
    token: String,
}

/// `POST /v1/tokens/revoke` (RFC 7009): ends the session of a refresh or
/// access token. Always `200 {}` for a well-formed request, whatever the
/// token was, so the endpoint reveals nothing.
pub async fn revoke(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let now = now();
    // A browser in cookie mode cannot read its HttpOnly tokens: with an empty
    // body, the access-token cookie names the session, and the answer clears
    // both token cookies (a logout for the hybrid).
    let from_cookie =
        body.iter().all(u8::is_ascii_whitespace) && !headers.contains_key(header::CONTENT_TYPE);
    let token = if from_cookie {
        match cookies::find(&headers, app.cookies.access_name()).next() {
            Some(t) => t.to_owned(),
            None => return Err(ApiError::invalid_request("The body needs a token.")),
        }
    } else {
        parse_json_body::<TokenBody>(&headers, &body)?.token
    };
    if let Some(s) = session_of(&app, &token, now).await? {
        let revoked = app
            .stores
            .sessions
            .revoke_session(&s.user_id, &s.id, now)
            .await?;
        if revoked {
            tracing::info!(user_id = %s.user_id, session_id = %s.id, "token family revoked");
        }
    }
    let mut res = Json(json!({})).into_response();
    if from_cookie {
        let h = res.headers_mut();
        h.append(
            header::SET_COOKIE,
            app.cookies.set_access("", time::Duration::ZERO),
        );
        h.append(
            header::SET_COOKIE,
            app.cookies.set_refresh("", time::Duration::ZERO),
        );
    }
    Ok(res)
}

/// The session a refresh or access token belongs to, if it is one of ours.
async fn session_of(
    app: &App,
    token: &str,
    now: OffsetDateTime,
) -> ApiResult<Option<SessionRecord>> {
    if let Some(refresh) = RefreshToken::parse(token) {
        let Some(record) = app.stores.refresh.refresh_by_hash(&refresh.hash()).await? else {
            return Ok(None);
        };
        return Ok(app
            .stores
            .sessions
            .session_by_id(&record.session_id)
            .await?);
    }
    // An access token must verify; an expired one may still name its
    // session (revoking it then is harmless and idempotent), so the time
    // checks are relaxed to the longest a session can live.
    let mut lax = app.rules.clone();
    lax.leeway = app.settings.refresh_ttl.max(app.settings.session_ttl);
    let claims = match app.keys.verify(&lax, token, now).await {
        Ok(v) => v.claims,
        Err(_) => return Ok(None),
    };
    Ok(app
        .stores
        .sessions
        .session_by_id(&claims.sid)
        .await?
        .filter(|s| s.user_id == claims.sub))
}

/// `POST /v1/tokens/introspect` (RFC 7662), behind the admin key.
pub async fn introspect(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let Some(admin) = &app.settings.admin_key else {
        return Err(ApiError::not_found(
            "Admin routes are off: no admin key is configured.",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .unwrap_or("");
    if !bool::from(presented.as_bytes().ct_eq(admin.expose().as_bytes())) {
        return Err(ApiError::unauthenticated());
    }
    let body: TokenBody = parse_json_body(&headers, &body)?;
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
