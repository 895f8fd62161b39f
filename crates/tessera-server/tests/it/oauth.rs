//! Standard OAuth clients (issue 10, item 5): revocation (RFC 7009) and
//! introspection (RFC 7662) take the form encoding such clients send, and
//! `token_type_hint`; introspection takes HTTP Basic client authentication
//! with the admin key as the client secret.

use base64::Engine as _;
use serde_json::Value;

use crate::support::*;

const ADMIN_KEY: &str = "the admin key for oauth tests";

async fn form(server: &Server, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = server
        .client()
        .post(server.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    status_json(req.send().await.unwrap()).await
}

fn basic(id: &str, secret: &str) -> String {
    let raw = format!("{id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[tokio::test]
async fn form_encoded_revocation_and_introspection_with_basic_auth() {
    let server = start_with_args(&["--admin-key", ADMIN_KEY]).await;
    let name = unique("oauth");
    register(&server, &name).await;
    let grant = tokens(&server, &name).await;
    let access = grant["access_token"].as_str().unwrap();
    let refresh = grant["refresh_token"].as_str().unwrap();
    let client_auth = basic("my-resource-server", ADMIN_KEY);

    // Introspection as an RFC 7662 client sends it.
    let (status, body) = form(
        &server,
        "/v1/tokens/introspect",
        Some(&client_auth),
        &format!("token={access}&token_type_hint=access_token"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(body["username"], name.as_str());
    // A hint that does not match the token, or is unknown, changes nothing.
    for hint in ["refresh_token", "something_else"] {
        let (status, body) = form(
            &server,
            "/v1/tokens/introspect",
            Some(&client_auth),
            &format!("token={access}&token_type_hint={hint}"),
        )
        .await;
        assert_eq!(
            (status, body["active"].as_bool()),
            (200, Some(true)),
            "{hint}"
        );
    }
    let (status, body) = form(
        &server,
        "/v1/tokens/introspect",
        Some(&format!("Bearer {ADMIN_KEY}")),
        &format!("token={refresh}"),
    )
    .await;
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("refresh_token"))
    );
    // The wrong secret, or none: 401.
    for auth in [
        Some(basic("my-resource-server", "not the key at all")),
        Some("Basic !!not base64!!".to_owned()),
        None,
    ] {
        let (status, body) = form(
            &server,
            "/v1/tokens/introspect",
            auth.as_deref(),
            &format!("token={access}"),
        )
        .await;
        assert_error(&(status, body), 401, "unauthenticated");
    }
    // A form without a token: 400, in our words.
    let got = form(
        &server,
        "/v1/tokens/introspect",
        Some(&client_auth),
        "tok=1",
    )
    .await;
    assert_error(&got, 400, "invalid_request");

    // Revocation, form-encoded, with a hint: the family ends.
    let (status, body) = form(
        &server,
        "/v1/tokens/revoke",
        None,
        &format!("token={refresh}&token_type_hint=refresh_token"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = form(
        &server,
        "/v1/tokens/introspect",
        Some(&client_auth),
        &format!("token={access}"),
    )
    .await;
    assert_eq!((status, body["active"].as_bool()), (200, Some(false)));

    // Other encodings are still refused.
    let res = server
        .client()
        .post(server.url("/v1/tokens/revoke"))
        .header("content-type", "text/plain")
        .body(format!("token={access}"))
        .send()
        .await
        .unwrap();
    assert_error(&status_json(res).await, 415, "unsupported_media_type");
}
