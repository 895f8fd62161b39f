//! Accounts: registration and password change.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::{now, rfc3339};
use crate::accounts::{self, Registrar};
use crate::app::AppState;
use crate::auth::Authenticated;
use crate::error::ApiResult;
use crate::extract::{Client, JsonBody};

/// `POST /v1/users` body.
#[derive(Deserialize)]
pub struct NewUser {
    username: String,
    password: String,
}

/// `POST /v1/users`: [`Accounts::register`](crate::accounts::Accounts::register).
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
        Json(json!({
            "id": user.id,
            "username": user.username,
            "created_at": rfc3339(user.created_at),
        })),
    ))
}

/// `POST /v1/users/me/password` body.
#[derive(Deserialize)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `POST /v1/users/me/password`:
/// [`Accounts::change_password`](crate::accounts::Accounts::change_password),
/// which ends every other session of the user, of either kind.
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
