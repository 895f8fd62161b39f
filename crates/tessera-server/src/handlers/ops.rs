//! Operations: liveness, readiness and metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, json};

use crate::app::AppState;

/// How long `/readyz` waits for each store.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process runs. Touches no store. The body is
/// `{"status":"ok"}`, written out rather than built as a JSON value on every
/// call.
pub async fn healthz() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
}

/// `GET /readyz`: `200` when every configured store answers, else `503`
/// naming the ones that did not.
pub async fn readyz(State(app): State<AppState>) -> Response {
    let mut checks = Map::new();
    let mut ready = true;
    for (name, store) in &app.stores.health {
        let ok = matches!(
            tokio::time::timeout(PING_TIMEOUT, store.ping()).await,
            Ok(Ok(()))
        );
        ready &= ok;
        checks.insert(
            (*name).to_owned(),
            json!(if ok { "ok" } else { "unavailable" }),
        );
    }
    if ready {
        Json(json!({ "status": "ready", "checks": checks })).into_response()
    } else {
        let body = json!({
            "error": "unavailable",
            "message": "A backing store does not answer.",
            "checks": checks,
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// The OpenAPI 3.1 document of this API, written by hand beside the code
/// (`src/openapi.json`); a test checks it names every route of the router.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    let mut res = OPENAPI.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<AppState>) -> Response {
    let Some(handle) = &app.metrics else {
        return crate::error::ApiError::not_found("Metrics are not recorded in this process.")
            .into_response();
    };
    match app
        .stores
        .sessions
        .count_live_sessions(crate::handlers::now())
        .await
    {
        Ok(n) => metrics::gauge!("tessera_active_sessions").set(n as f64),
        Err(e) => {
            tracing::warn!(error = %crate::error::error_chain(&e), "cannot count sessions for metrics")
        }
    }
    let mut res = handle.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}
