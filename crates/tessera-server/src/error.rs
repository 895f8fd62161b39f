//! The one conversion from failures to HTTP: the error body of `docs/api.md`,
//! `{"error": "snake_case_code", "message": "…"}`, with a fitting status.
//!
//! Handlers return [`ApiError`]; store errors convert into it here, with the
//! internal detail going to the log and only a generic sentence to the client.

use std::borrow::Cow;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_store::StoreError;

use crate::accounts::Denied;

/// The body of every error response, on every route (`docs/api.md`,
/// Conventions). Named `Error` in the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// A stable `snake_case` code (docs/api.md, Error codes): clients decide
    /// on the status and this code.
    pub error: String,
    /// A sentence for people; it may change.
    pub message: String,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// The sentence for humans.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// An error with a status, a code and a sentence for humans.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The `Retry-After` header this error carries, if any.
    pub fn retry_after(&self) -> Option<HeaderValue> {
        self.headers
            .iter()
            .find(|(name, _)| name == header::RETRY_AFTER)
            .map(|(_, v)| v.clone())
    }

    /// `400 invalid_request`.
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// `401 unauthenticated`, with `WWW-Authenticate: Bearer` so that token
    /// clients know how to authenticate.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication is required.",
        )
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    /// `401 unauthenticated` for a bad access token on a protected route,
    /// with RFC 6750's `WWW-Authenticate: Bearer error="invalid_token"`.
    pub fn bad_bearer() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "The access token is invalid, expired or revoked.",
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        )
    }

    /// `401 invalid_token` of the token endpoints (a bad refresh token).
    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The token is invalid, expired or revoked.",
        )
    }

    /// `401 invalid_credentials`: the same for an unknown user and a wrong password.
    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "The username or password is incorrect.",
        )
    }

    /// `403 csrf_failed`.
    pub fn csrf_failed() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "This request needs the session's CSRF token in the X-CSRF-Token header.",
        )
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `429 too_many_attempts` with `Retry-After` in seconds.
    pub fn too_many_attempts(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "Too many failed attempts; try again later.",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_secs))
    }

    /// `503 unavailable`: a store did not answer.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "A backing store is unavailable; try again shortly.",
        )
    }

    /// `500 internal_error`: a bug or corrupt data; the detail is in the log.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "An internal error occurred.",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %error_chain(&e), "store unavailable");
                Self::unavailable()
            }
            other => {
                tracing::error!(error = %error_chain(&other), "store error");
                Self::internal()
            }
        }
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::InvalidCredentials => Self::invalid_credentials(),
            Denied::Throttled { retry_after } => Self::too_many_attempts(retry_after),
            Denied::RegistrationClosed => Self::new(
                StatusCode::FORBIDDEN,
                "registration_closed",
                "Registration is closed on this server.",
            ),
            Denied::UsernameTaken(_) => Self::new(
                StatusCode::CONFLICT,
                "username_taken",
                "That username is already taken.",
            ),
            Denied::Invalid(message) => Self::invalid_request(message),
            Denied::NotFound(what) => Self::not_found(match what {
                "session" => "No such session.",
                _ => "Not found.",
            }),
            Denied::UserGone => Self::unauthenticated(),
            Denied::InvalidToken => Self::invalid_token(),
            Denied::RefreshReused => Self::new(
                StatusCode::UNAUTHORIZED,
                "refresh_token_reused",
                "This refresh token was already used; its whole session has been revoked.",
            ),
            Denied::Store(e) => e.into(),
            denied @ Denied::Internal(_) => {
                tracing::error!(error = %denied, "operation failed");
                Self::internal()
            }
        }
    }
}

/// An error and its sources on one line, for the log and for the command
/// line. A cause whose text is already in the line is left out: sqlx, for
/// one, repeats a database's message in its source.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_owned(),
            message: self.message.into_owned(),
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            res.headers_mut().append(name, value);
        }
        res
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
