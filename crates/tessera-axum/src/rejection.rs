//! The answers to a request that is not let through.

use axum_core::body::Body;
use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No credential, or a session tessera refused: `401`, `Bearer`.
    Unauthenticated,
    /// An access token that was refused: `401`, `Bearer error="invalid_token"`.
    InvalidToken,
    /// tessera refused the original request (CSRF, cross-site): its `403`.
    Forbidden,
    /// tessera could not be asked: `503`.
    Unavailable,
    /// The extractor was used without the layer: `500`.
    NoLayer,
}

/// Why a request was not let through; answers as tessera itself would.
///
/// | cause | status | `error` |
/// |---|---|---|
/// | no credential, a refused session | `401` | `unauthenticated`, `WWW-Authenticate: Bearer` |
/// | a refused access token | `401` | `unauthenticated`, `WWW-Authenticate: Bearer error="invalid_token"` |
/// | tessera's `403` (CSRF, cross-site) | `403` | tessera's body, unchanged |
/// | tessera unreachable | `503` | `unavailable` |
/// | [`Authenticated`](crate::Authenticated) extracted on a route without the layer | `500` | `internal_error` |
#[derive(Debug, Clone)]
pub struct Rejection {
    kind: Kind,
    forbidden: Option<(Option<HeaderValue>, Vec<u8>)>,
}

impl Rejection {
    pub(crate) fn new(kind: Kind) -> Self {
        Self {
            kind,
            forbidden: None,
        }
    }

    pub(crate) fn forbidden(content_type: Option<HeaderValue>, body: Vec<u8>) -> Self {
        Self {
            kind: Kind::Forbidden,
            forbidden: Some((content_type, body)),
        }
    }

    pub(crate) fn kind_is(&self, kind: Kind) -> bool {
        self.kind == kind
    }

    /// The status this rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::Unauthenticated | Kind::InvalidToken => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::NoLayer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_and_message(&self) -> (&'static str, &'static str) {
        match self.kind {
            Kind::Unauthenticated => (
                "unauthenticated",
                "This request needs a valid tessera session or access token.",
            ),
            Kind::InvalidToken => (
                "unauthenticated",
                "The access token was refused (bad signature, wrong claims, expired or revoked).",
            ),
            Kind::Forbidden => (
                "forbidden",
                "The authentication server refused this request.",
            ),
            Kind::Unavailable => (
                "unavailable",
                "The authentication server did not answer; try again shortly.",
            ),
            Kind::NoLayer => (
                "internal_error",
                "This route reads the caller but is not behind the tessera layer.",
            ),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (error, message) = self.error_and_message();
        write!(f, "{} {error}: {message}", self.status().as_u16())
    }
}

impl std::error::Error for Rejection {}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = self.status();
        let (mut content_type, body) = match self.forbidden {
            Some((content_type, body)) => (content_type, body),
            None => {
                let (error, message) = self.error_and_message();
                let body = serde_json::json!({ "error": error, "message": message });
                (None, body.to_string().into_bytes())
            }
        };
        if content_type.is_none() {
            content_type = Some(HeaderValue::from_static("application/json"));
        }
        let mut res = Response::new(Body::from(body));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, ct);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self.kind {
            Kind::Unauthenticated => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Kind::InvalidToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Kind::Forbidden | Kind::Unavailable | Kind::NoLayer => {}
        }
        res
    }
}
