//! The router of API.md and the middleware every route shares.

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{MAX_BODY_BYTES, payload_too_large};
use crate::handlers::{me, ops, sessions, tokens, users};
use crate::telemetry::REQUEST_DURATION;

/// The route template a request matched, passed from the inner middleware to
/// the outer one (which runs before routing and cannot see it otherwise).
#[derive(Clone)]
struct Route(String);

/// Builds the whole application. Tests and `main` both call this.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/v1/users", post(users::register))
        .route("/v1/users/me/password", post(users::change_password))
        .route("/v1/sessions", post(sessions::login).get(sessions::list).delete(sessions::revoke_others))
        .route("/v1/sessions/current", get(sessions::current).delete(sessions::logout))
        .route("/v1/sessions/{id}", delete(sessions::revoke))
        .route("/v1/me", get(me::me))
        .route("/v1/auth/verify", get(me::verify))
        .route("/v1/tokens", post(tokens::login))
        .route("/v1/tokens/refresh", post(tokens::refresh))
        .route("/v1/tokens/revoke", post(tokens::revoke))
        .route("/v1/tokens/introspect", post(tokens::introspect))
        .route("/.well-known/jwks.json", get(tokens::jwks))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/demo", get(ops::demo_page))
        .route("/demo/demo.js", get(ops::demo_script))
        .route_layer(middleware::from_fn(remember_route))
        .fallback(|| async { ApiError::not_found("No such route.") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This route does not accept that method.",
            )
        })
        // Inside `common`, so that a panic's 500 gets the common headers and metrics.
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        .layer(middleware::from_fn(common))
        // Every body-reading extractor stops at 64 KiB, whatever it is.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            TraceLayer::new_for_http()
                // Method and path only: headers and query strings may carry secrets.
                .make_span_with(|req: &Request| {
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(app)
}

async fn remember_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut res = next.run(req).await;
    if let Some(route) = route {
        res.extensions_mut().insert(Route(route));
    }
    res
}

/// Limits and headers for every route, and the request metrics.
async fn common(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let mut res = if too_large {
        payload_too_large().into_response()
    } else {
        next.run(req).await
    };
    let headers = res.headers_mut();
    // Authentication answers are personal: no shared cache may keep them.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let route = res
        .extensions()
        .get::<Route>()
        .map_or_else(|| "unmatched".to_owned(), |r| r.0.clone());
    let status = res.status().as_u16().to_string();
    metrics::counter!("tessera_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(REQUEST_DURATION, "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    res
}
