//! What the layer answers without a tessera server to ask: never a pass.
//! (Everything that needs a real server is in
//! `crates/tessera-server/tests/it/axum_crate.rs`, where the `tessera`
//! binary is at hand.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use tessera_axum::{Authenticated, Tessera};
use tower::ServiceExt as _;

/// A base URL where nothing listens: a port the OS gave us, closed again.
fn nothing_listens() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn app(tessera: &Tessera) -> Router {
    Router::new()
        .route("/me", get(|who: Authenticated| async move { who.username }))
        .route_layer(tessera.layer())
        .route(
            "/unguarded",
            get(|who: Authenticated| async move { who.username }),
        )
}

/// A token that reaches the key lookup: a valid-looking header, a `kid`.
const TOKEN: &str = concat!(
    // {"alg":"EdDSA","typ":"at+jwt","kid":"k1"}
    "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0",
    ".eyJzdWIiOiJ1c3JfeCJ9.c2ln"
);
const TOKEN_HEADER: &str = "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0";

async fn call(app: Router, headers: &[(&str, &str)]) -> (StatusCode, String, String) {
    let mut req = Request::get("/me");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let www = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, www, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn no_credential_is_401_with_bearer_challenge_and_tessera_shaped_json() {
    let tessera = Tessera::builder(nothing_listens()).build().unwrap();
    let (status, www, body) = call(app(&tessera), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(www, "Bearer");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "unauthenticated");
    // Another scheme is no credential, as on the server.
    let (status, www, _) = call(app(&tessera), &[("authorization", "Basic YTpi")]).await;
    assert_eq!((status, www.as_str()), (StatusCode::UNAUTHORIZED, "Bearer"));
}

#[tokio::test]
async fn a_malformed_token_is_refused_without_asking_the_server() {
    let tessera = Tessera::builder(nothing_listens()).build().unwrap();
    let wrong_typ = TOKEN.replace(
        // {"alg":"EdDSA","typ":"JWT","kid":"k1"}
        TOKEN_HEADER,
        "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0",
    );
    let with_crit = TOKEN.replace(
        // {"alg":"EdDSA","typ":"at+jwt","kid":"k1","crit":["exp"]}
        TOKEN_HEADER,
        "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIiwiY3JpdCI6WyJleHAiXX0",
    );
    for token in ["junk", "a.b.c", &wrong_typ, &with_crit] {
        let (status, www, _) = call(
            app(&tessera),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(www, "Bearer error=\"invalid_token\"");
    }
    assert_eq!(tessera.jwks_fetches(), 0);
}

#[tokio::test]
async fn an_unreachable_server_is_503_for_tokens_and_sessions_never_a_pass() {
    let base = nothing_listens();
    for dev in [false, true] {
        let tessera = Tessera::builder(&base)
            .insecure_dev_cookies(dev)
            .build()
            .unwrap();
        let (status, _, body) = call(
            app(&tessera),
            &[("authorization", &format!("Bearer {TOKEN}"))],
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("\"unavailable\""), "{body}");
        // The failed fetch is not retried before the interval: still 503.
        let (status, _, _) = call(
            app(&tessera),
            &[("authorization", &format!("Bearer {TOKEN}"))],
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(tessera.jwks_fetches(), 1);

        let cookie = if dev {
            "tessera_session=tsr_ss_x"
        } else {
            "__Host-tessera_session=tsr_ss_x"
        };
        let (status, _, _) = call(app(&tessera), &[("cookie", cookie)]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{cookie}");
        // The other mode's cookie name is no credential.
        let other = if dev {
            "__Host-tessera_session=tsr_ss_x"
        } else {
            "tessera_session=tsr_ss_x"
        };
        let (status, _, _) = call(app(&tessera), &[("cookie", other)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{other}");
    }
}

#[tokio::test]
async fn the_extractor_without_the_layer_is_500_never_a_pass() {
    let tessera = Tessera::builder(nothing_listens()).build().unwrap();
    let req = Request::get("/unguarded").body(Body::empty()).unwrap();
    let res = app(&tessera).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn a_base_url_that_is_no_http_url_is_refused() {
    assert!(Tessera::builder("auth.example.com").build().is_err());
    assert!(Tessera::builder("ftp://auth.example.com").build().is_err());
    assert!(
        Tessera::builder("https://auth.example.com/")
            .build()
            .is_ok()
    );
}
