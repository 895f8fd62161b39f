//! A small app protected by a tessera server.
//!
//! `GET /` is public; `GET /me` and `POST /notes` need a tessera credential
//! (a bearer token, the access-token cookie, or the session cookie, whose
//! unsafe requests also need the session's `X-CSRF-Token`).
//!
//! ```sh
//! tessera serve --insecure-dev-cookies &          # http://127.0.0.1:7480
//! TESSERA_URL=http://127.0.0.1:7480 TESSERA_DEV_COOKIES=1 \
//!     cargo run -p tessera-axum --example protected
//! curl -s localhost:3000/me -H "Authorization: Bearer $ACCESS_TOKEN"
//! ```
//!
//! Settings (environment): `TESSERA_URL` (default `http://127.0.0.1:7480`),
//! `TESSERA_ISSUER` (default: the URL; it must equal the server's
//! `--issuer`, whose own default is `http://127.0.0.1:7480` whatever
//! `--listen` says, so set it when tessera listens elsewhere and has no
//! `--issuer`; otherwise every token is refused), `TESSERA_STRICT=1` (check every
//! token with the server, so revocations apply at once),
//! `TESSERA_DEV_COOKIES=1` (the server runs with `--insecure-dev-cookies`),
//! `APP_LISTEN` (default `127.0.0.1:3000`).
//!
//! `crates/tessera-server/tests/it/axum_crate.rs` runs [`app`] against a
//! real tessera server.

use std::time::UNIX_EPOCH;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tessera_axum::{Authenticated, Tessera};

/// The app: `/` for everyone, `/me` and `POST /notes` behind tessera.
pub fn app(tessera: &Tessera) -> Router {
    Router::new()
        .route("/me", get(me))
        .route("/notes", post(add_note))
        .route_layer(tessera.layer())
        .route(
            "/",
            get(|| async { "Public page: try GET /me with a tessera credential.\n" }),
        )
}

/// Who is calling, as the layer found it.
async fn me(who: Authenticated) -> Json<Value> {
    let expires_at = who
        .expires_at
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    Json(json!({
        "user_id": who.user_id,
        "username": who.username,
        "method": who.method.as_str(),
        "session_id": who.session_id,
        "expires_at": expires_at,
    }))
}

/// An unsafe request: with a session cookie it passed tessera's CSRF rule.
async fn add_note(who: Authenticated, note: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({ "by": who.username, "note": note })),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let base = env("TESSERA_URL").unwrap_or_else(|| "http://127.0.0.1:7480".to_owned());
    let mut builder = Tessera::builder(&base)
        .strict(env("TESSERA_STRICT").as_deref() == Some("1"))
        .insecure_dev_cookies(env("TESSERA_DEV_COOKIES").as_deref() == Some("1"));
    if let Some(issuer) = env("TESSERA_ISSUER") {
        builder = builder.issuer(issuer);
    }
    let tessera = builder.build()?;
    let listen = env("APP_LISTEN").unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "app listening on http://{}, protected by {base}",
        listener.local_addr()?
    );
    axum::serve(listener, app(&tessera)).await?;
    Ok(())
}
