//! Accounts: registration and password change.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{now, rfc3339};
use crate::accounts::{self, Registrar};
use crate::app::AppState;
use crate::auth::Authenticated;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Client, JsonBody};

/// `POST /v1/users` body.
#[derive(Deserialize, ToSchema)]
pub struct NewUser {
    /// 3 to 64 characters of `A–Z a–z 0–9 _ . @ -`, compared without case.
    #[schema(pattern = "^[A-Za-z0-9_.@-]{3,64}$")]
    username: String,
    /// 8 to 1024 characters, hard enough to guess (zxcvbn score 2 of 4).
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

/// The account `POST /v1/users` created.
#[derive(Serialize, ToSchema)]
pub struct User {
    /// `usr_…`.
    pub id: String,
    /// As given at registration.
    pub username: String,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
}

/// `POST /v1/users`: [`Accounts::register`](crate::accounts::Accounts::register).
#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "accounts",
    request_body = NewUser,
    responses(
        (status = 201, description = "The account is created.", body = User),
        (status = 400, description = "`invalid_request`: username or password out of bounds, a password too easy to guess, or a malformed body.", body = ErrorBody),
        (status = 403, description = "`registration_closed`: the server runs with `--disable-registration`.", body = ErrorBody),
        (status = 409, description = "`username_taken`: the username exists, in any case.", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: this address made 20 registration attempts in 15 minutes.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`unavailable`: a store does not answer.", body = ErrorBody),
    )
)]
pub async fn register(
    State(app): State<AppState>,
    Client(client): Client,
    JsonBody(body): JsonBody<NewUser>,
) -> ApiResult<impl IntoResponse> {
    let user = app
        .accounts
        .register(
            &body.username,
            &body.password,
            Registrar::Public,
            &client,
            now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(User {
            id: user.id,
            username: user.username,
            created_at: rfc3339(user.created_at),
        }),
    ))
}

/// `POST /v1/users/me/password` body.
#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    /// The password now; a wrong one counts as a failed login.
    current_password: String,
    /// The new password, under the rules of `POST /v1/users`.
    new_password: String,
}

/// `POST /v1/users/me/password`:
/// [`Accounts::change_password`](crate::accounts::Accounts::change_password),
/// which ends every other session of the user, of either kind.
#[utoipa::path(
    post,
    path = "/v1/users/me/password",
    tag = "accounts",
    request_body = PasswordChange,
    security(("sessionCookie" = [], "csrfToken" = []), ("bearer" = []), ("accessCookie" = [])),
    responses(
        (status = 204, description = "Changed; every other session of the user is revoked, the calling one stays."),
        (status = 400, description = "`invalid_request`: `new_password` out of bounds or too easy to guess, or a malformed body.", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: `current_password` is wrong.", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: the login throttle holds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn change_password(
    State(app): State<AppState>,
    Authenticated(principal): Authenticated,
    Client(client): Client,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PasswordChange>,
) -> ApiResult<StatusCode> {
    let change = accounts::PasswordChange {
        user_id: &principal.user_id,
        keep_session: &principal.session.id,
        current: accounts::Attempt {
            username: &principal.username,
            password: &body.current_password,
            client,
            device: app.known_device(&headers, &principal.username),
        },
        new: &body.new_password,
    };
    app.accounts.change_password(change, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
