//! Request extractors shared by the handlers: a JSON body with the limits
//! and errors of `docs/api.md`, and what the server learns about the client.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq as _;
use tessera_core::session::ClientInfo;

use crate::app::AppState;
use crate::error::ApiError;

/// Largest request body accepted anywhere.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body: `415` unless the `Content-Type` is JSON (so no
/// cross-site HTML form can reach a JSON route), `413` over 64 KiB, `400`
/// when it does not parse. Unknown fields are ignored.
pub struct JsonBody<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        check_json_content_type(&parts.headers)?;
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| payload_too_large())?;
        parse_json_body(&parts.headers, &bytes).map(JsonBody)
    }
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json);
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "The body must be JSON, with Content-Type: application/json.",
        ))
    }
}

/// Parses a body already read (by a handler that takes `Bytes`, for example
/// because the body is optional), with [`JsonBody`]'s rules.
pub fn parse_json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<T, ApiError> {
    check_json_content_type(headers)?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(payload_too_large());
    }
    // serde would also accept a JSON array for a struct (by position):
    // the API speaks objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid_request("The body must be a JSON object."));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ApiError::invalid_request(body_problem(&e)))?;
    de.end()
        .map_err(|_| ApiError::invalid_request("The body is not valid JSON."))?;
    Ok(value)
}

/// What is wrong with a body, in our words: which field, and what it should
/// be. Never the value sent (it may be a password) nor serde's own text.
fn body_problem(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = e.inner();
    if inner.is_syntax() || inner.is_eof() {
        return "The body is not valid JSON.".to_owned();
    }
    let text = inner.to_string();
    // serde names a missing field as "missing field `name`".
    if let Some(rest) = text.strip_prefix("missing field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        return format!("The field \"{field}\" is missing.");
    }
    let field = e.path().to_string();
    if field == "." {
        return "The body does not have the fields this request needs.".to_owned();
    }
    // serde ends a type mismatch with what it expected ("a string",
    // "a boolean"): that part names our own type, never the client's value.
    let expected = text
        .rsplit_once(", expected ")
        .map(|(_, what)| what.split(" at line ").next().unwrap_or(what).trim())
        .filter(|what| what.len() <= 40 && !what.contains('`'));
    match expected {
        Some(what) => format!("The field \"{field}\" must be {what}."),
        None => format!("The field \"{field}\" has a value this request cannot take."),
    }
}

/// A raw request body, for routes whose body is optional: read up to
/// 64 KiB, else `413` as JSON (axum's own `Bytes` answers in plain text).
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map(RawBody)
            .map_err(|_| payload_too_large())
    }
}

/// `413 payload_too_large`. The rest of the body is never read, so the
/// connection cannot be reused: `Connection: close` tells the client so.
pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "The request body is larger than 64 KiB.",
    )
    .with_header(header::CONNECTION, HeaderValue::from_static("close"))
}

/// The client's `User-Agent` and address, kept with a new session.
pub struct Client(pub ClientInfo);

/// The address a trusted proxy reported: the last `X-Forwarded-For` entry
/// (the one the proxy itself appended; earlier ones are the client's word).
fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|v| !v.is_empty())?;
    last.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Bounded here, once: it is kept with sessions and written to the
        // audit trail.
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| {
                ua.chars()
                    .take(tessera_core::session::MAX_USER_AGENT_CHARS)
                    .collect()
            });
        let peer = || {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string())
        };
        let ip = if app.settings.trust_forwarded_for {
            forwarded_for(&parts.headers).or_else(peer)
        } else {
            peer()
        };
        Ok(Self(ClientInfo { user_agent, ip }))
    }
}

/// A request that presents the admin key, compared in constant time: as
/// `Authorization: Bearer KEY`, or as HTTP Basic client authentication with
/// the key as the password (`Basic base64(client_id:KEY)`, any client id),
/// which is how RFC 7662 introspection clients authenticate. Without an admin
/// key configured the admin routes do not exist (`404`); a missing or wrong
/// key is `401`.
pub struct Admin;

/// The admin key a request presents, if any: a bearer token, or the password
/// of HTTP Basic credentials.
fn presented_admin_key(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let (scheme, value) = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(value.to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_client_id, secret) = decoded.split_once(':')?;
    Some(secret.to_owned())
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Some(admin) = &app.settings.admin_key else {
            return Err(ApiError::not_found(
                "Admin routes are off: no admin key is configured.",
            ));
        };
        let presented = presented_admin_key(&parts.headers).unwrap_or_default();
        if bool::from(presented.as_bytes().ct_eq(admin.expose().as_bytes())) {
            Ok(Self)
        } else {
            Err(ApiError::unauthenticated())
        }
    }
}

#[cfg(test)]
mod body_tests {
    use super::*;

    fn problem(body: &str) -> String {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Login {
            username: String,
            password: String,
            #[serde(default)]
            remember: bool,
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let err = parse_json_body::<Login>(&headers, body.as_bytes()).unwrap_err();
        err.message().to_owned()
    }

    #[test]
    fn bad_bodies_are_explained_without_echoing_them() {
        assert_eq!(
            problem(r#"{"username": "a""#),
            "The body is not valid JSON."
        );
        assert_eq!(
            problem(r#"{"username": "a"}"#),
            "The field \"password\" is missing."
        );
        assert_eq!(
            problem(r#"{"username": 42, "password": "hunter22"}"#),
            "The field \"username\" must be a string."
        );
        assert_eq!(
            problem(r#"{"username": "a", "password": "x", "remember": "yes-secret"}"#),
            "The field \"remember\" must be a boolean."
        );
        assert!(!problem(r#"{"username": "a", "password": 12345678}"#).contains("12345678"));
        assert_eq!(
            problem(r#"{"username": "a", "password": "b"} trailing"#),
            "The body is not valid JSON."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_forwarded_address_counts() {
        let mut h = HeaderMap::new();
        assert_eq!(forwarded_for(&h), None);
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 10.0.0.1"),
        );
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        assert_eq!(forwarded_for(&h).as_deref(), Some("203.0.113.7"));
        let mut junk = HeaderMap::new();
        junk.append("x-forwarded-for", HeaderValue::from_static("not-an-ip"));
        assert_eq!(forwarded_for(&junk), None);
    }
}
