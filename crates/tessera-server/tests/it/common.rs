//! What every route shares: JSON errors, body limits, operations endpoints.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let server = start().await;
    let got = call(&server, Method::GET, "/nope", HeaderMap::new(), None).await;
    assert_error(&got, 404, "not_found");
    let got = call(&server, Method::GET, "/v1/users", HeaderMap::new(), None).await;
    assert_error(&got, 405, "method_not_allowed");
    let got = call(&server, Method::PUT, "/v1/me", HeaderMap::new(), None).await;
    assert_error(&got, 405, "method_not_allowed");
}

#[tokio::test]
async fn json_routes_refuse_other_media_types_malformed_and_oversized_bodies() {
    let server = start().await;
    let client = server.client();
    for route in ["/v1/users", "/v1/sessions"] {
        // An HTML form cannot reach a JSON route.
        let res = client
            .post(server.url(route))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=mallory&password=12345678")
            .send()
            .await
            .unwrap();
        assert_error(&status_json(res).await, 415, "unsupported_media_type");
        let res = client
            .post(server.url(route))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_error(&status_json(res).await, 415, "unsupported_media_type");
        let res = client
            .post(server.url(route))
            .header("content-type", "text/plain")
            .body(r#"{"username":"a","password":"b"}"#)
            .send()
            .await
            .unwrap();
        assert_error(&status_json(res).await, 415, "unsupported_media_type");

        for malformed in [
            "{",
            "",
            "null",
            "{\"username\": \"x\" \"password\": 1}",
            "\u{0}",
        ] {
            let res = client
                .post(server.url(route))
                .header("content-type", "application/json")
                .body(malformed)
                .send()
                .await
                .unwrap();
            assert_error(&status_json(res).await, 400, "invalid_request");
        }

        let big = json!({ "username": "big", "password": "x".repeat(70 * 1024) });
        let got = call(&server, Method::POST, route, HeaderMap::new(), Some(&big)).await;
        assert_error(&got, 413, "payload_too_large");
    }
    // A charset parameter is fine.
    let res = client
        .post(server.url("/v1/users"))
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({ "username": unique("charset"), "password": PASSWORD }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn an_oversized_body_is_refused_on_any_route() {
    let server = start().await;
    let res = server
        .client()
        .delete(server.url("/v1/sessions/current"))
        .body(vec![b'x'; 65 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_error(&status_json(res).await, 413, "payload_too_large");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = start_with_args(&["--metrics-listen", "127.0.0.1:0"]).await;
    let (status, body) = call(&server, Method::GET, "/healthz", HeaderMap::new(), None).await;
    assert_eq!((status, body), (200, json!({ "status": "ok" })));
    let (status, body) = call(&server, Method::GET, "/readyz", HeaderMap::new(), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["database"], "ok");

    let (_, login) = user_with_session(&server, "metrics").await;
    let bad = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": "nobody_at_all", "password": "whatever123" }),
        )
        .await;
    assert_eq!(bad.status(), 401);
    assert_eq!(
        call(&server, Method::GET, "/v1/me", login.cookie_only(), None)
            .await
            .0,
        200
    );

    // The metrics have their own listener: the API's answers 404…
    let got = call(&server, Method::GET, "/metrics", HeaderMap::new(), None).await;
    assert_error(&got, 404, "not_found");
    // …and the metrics listener serves nothing of the API.
    let res = server
        .client()
        .get(server.metrics_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = server
        .client()
        .get(server.metrics_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    for needle in [
        r#"tessera_http_requests_total{route="/v1/me",method="GET",status="200"} 1"#,
        r#"tessera_logins_total{method="session",outcome="success"} 1"#,
        r#"tessera_logins_total{method="session",outcome="invalid_credentials"} 1"#,
        r#"tessera_authentications_total{method="session",outcome="ok"} 1"#,
        "tessera_active_sessions 1",
        "tessera_http_request_duration_seconds_bucket{",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(!text.contains(&login.secret));
}

#[tokio::test]
async fn metrics_are_off_by_default_and_never_on_the_api_listener() {
    let server = start().await;
    let got = call(&server, Method::GET, "/metrics", HeaderMap::new(), None).await;
    assert_error(&got, 404, "not_found");
    // The variable turns them on as the flag does: the address is printed,
    // and the API listener still has no metrics.
    let server = Server::start_with(
        BIN,
        Options {
            env: vec![("TESSERA_METRICS_LISTEN".into(), "127.0.0.1:0".into())],
            ..Options::default()
        },
    )
    .await;
    let got = call(&server, Method::GET, "/metrics", HeaderMap::new(), None).await;
    assert_error(&got, 404, "not_found");
    let text = server
        .client()
        .get(server.metrics_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# TYPE tessera_http_requests_total counter"),
        "{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let server = start().await;
    let res = server.get("/openapi.json", HeaderMap::new()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: serde_json::Value = res.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    // Every route of `docs/api.md` is documented…
    for (method, path) in [
        ("post", "/v1/users"),
        ("post", "/v1/users/me/password"),
        ("post", "/v1/sessions"),
        ("get", "/v1/sessions"),
        ("delete", "/v1/sessions"),
        ("get", "/v1/sessions/current"),
        ("delete", "/v1/sessions/current"),
        ("delete", "/v1/sessions/{id}"),
        ("post", "/v1/tokens"),
        ("post", "/v1/tokens/refresh"),
        ("post", "/v1/tokens/revoke"),
        ("post", "/v1/tokens/introspect"),
        ("get", "/.well-known/jwks.json"),
        ("get", "/v1/me"),
        ("get", "/v1/auth/verify"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/openapi.json"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} undocumented"
        );
    }
    // …and every documented operation exists on the server (no 404/405).
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "ses_x");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = server.request(m, &concrete, HeaderMap::new(), None).await;
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            assert!(
                body["error"] != "method_not_allowed"
                    && !(status == 404 && body["message"] == "No such route."),
                "{method} {path}: {status} {body}"
            );
        }
    }
}

#[tokio::test]
async fn body_and_path_errors_are_json_too() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = start().await;
    // A chunked body (no Content-Length) over 64 KiB on a route that reads it raw.
    let addr = server.base().trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/tokens/refresh HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
    for _ in 0..8 {
        // The server may answer and close before it has read everything.
        if conn.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("\"error\":\"payload_too_large\""),
        "{response}"
    );

    let name = unique("pathjson");
    register(&server, &name).await;
    let t = server
        .post_json(
            "/v1/tokens",
            &json!({ "username": name, "password": PASSWORD }),
        )
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let bearer = headers([(
        "authorization",
        &format!("Bearer {}", t["access_token"].as_str().unwrap()),
    )]);
    let got = call(&server, Method::DELETE, "/v1/sessions/%FF", bearer, None).await;
    assert_error(&got, 404, "not_found");
}
