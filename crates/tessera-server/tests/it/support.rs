//! Helpers shared by the end-to-end tests.

use std::sync::atomic::{AtomicU32, Ordering};

use reqwest::header::HeaderMap;
use reqwest::{Method, Response};
use serde_json::{Value, json};
pub use tessera_testkit::{Options, Server, cookie_pair, headers, set_cookies};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// A password every test user gets unless it says otherwise.
pub const PASSWORD: &str = "correct horse battery staple";

/// A started server with default options.
pub async fn start() -> Server {
    Server::start(BIN).await
}

/// A started server with extra flags.
pub async fn start_with_args(args: &[&str]) -> Server {
    Server::start_with(
        BIN,
        Options {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            ..Options::default()
        },
    )
    .await
}

/// A username no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Registers `username` with [`PASSWORD`] and returns the body.
pub async fn register(server: &Server, username: &str) -> Value {
    let res = server
        .post_json(
            "/v1/users",
            &json!({ "username": username, "password": PASSWORD }),
        )
        .await;
    assert_eq!(res.status(), 201, "registering {username}");
    res.json().await.unwrap()
}

/// A logged-in cookie session.
#[derive(Debug, Clone)]
pub struct Login {
    /// `tessera_session=tsr_ss_…`
    pub cookie: String,
    /// The session secret alone.
    pub secret: String,
    /// The CSRF token.
    pub csrf: String,
    /// Public session id.
    pub session_id: String,
    /// The whole login response body.
    pub body: Value,
}

impl Login {
    /// Headers carrying the cookie only.
    pub fn cookie_only(&self) -> HeaderMap {
        headers([("cookie", &self.cookie)])
    }

    /// Headers carrying the cookie and the CSRF token.
    pub fn with_csrf(&self) -> HeaderMap {
        headers([("cookie", &self.cookie), ("x-csrf-token", &self.csrf)])
    }
}

/// Logs in with a password and returns the session.
pub async fn login_as(server: &Server, username: &str, password: &str) -> Login {
    let res = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": username, "password": password }),
        )
        .await;
    assert_eq!(res.status(), 201, "login as {username}");
    let cookie = cookie_pair(&res, "tessera_session").expect("a session cookie");
    let body: Value = res.json().await.unwrap();
    Login {
        secret: cookie.split_once('=').unwrap().1.to_owned(),
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        session_id: body["session"]["id"].as_str().unwrap().to_owned(),
        body,
    }
}

/// Logs in with [`PASSWORD`].
pub async fn login(server: &Server, username: &str) -> Login {
    login_as(server, username, PASSWORD).await
}

/// A fresh user, logged in.
pub async fn user_with_session(server: &Server, prefix: &str) -> (String, Login) {
    let name = unique(prefix);
    register(server, &name).await;
    let l = login(server, &name).await;
    (name, l)
}

/// Sends a request and returns status and JSON body (Null when empty).
pub async fn call(
    server: &Server,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: Option<&Value>,
) -> (u16, Value) {
    let res = server.request(method, path, headers, body).await;
    status_json(res).await
}

/// Status and JSON body (Null when empty) of a response.
pub async fn status_json(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, body)
}

/// Asserts a `docs/api.md` error body with this status and code.
pub fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "status of {}", got.1);
    assert_eq!(got.1["error"], code, "error code of {}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message of {}",
        got.1
    );
}

/// Logs in for tokens (`POST /v1/tokens`) and returns the body.
pub async fn tokens(server: &Server, name: &str) -> Value {
    let res = server
        .post_json(
            "/v1/tokens",
            &json!({ "username": name, "password": PASSWORD }),
        )
        .await;
    assert_eq!(res.status(), 200, "token login as {name}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

/// Logs in for tokens in cookies (`POST /v1/tokens?cookie=true`) and returns
/// the response, whose `Set-Cookie` headers carry them.
pub async fn cookie_tokens(server: &Server, name: &str) -> reqwest::Response {
    server
        .post_json(
            "/v1/tokens?cookie=true",
            &json!({ "username": name, "password": PASSWORD }),
        )
        .await
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &Value) -> HeaderMap {
    let t = token
        .as_str()
        .unwrap_or_else(|| panic!("not a token: {token}"));
    headers([("authorization", &format!("Bearer {t}"))])
}

/// Part `i` of a JWT (0 header, 1 claims), decoded, unverified.
pub fn part(token: &str, i: usize) -> Value {
    use base64::Engine;
    let p = token.split('.').nth(i).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Polls `GET /v1/me` with `h` until it answers `401`, and returns how long
/// that took; fails if it still answers after `bound`. For changes made by
/// another process, which reach a server's cache through the change feed.
pub async fn refused_within(
    server: &Server,
    h: HeaderMap,
    bound: std::time::Duration,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    loop {
        let status = server.get("/v1/me", h.clone()).await.status().as_u16();
        if status == 401 {
            return start.elapsed();
        }
        assert_eq!(status, 200, "{}: /v1/me", server.base());
        assert!(
            start.elapsed() < bound,
            "{}: still accepted {bound:?} after the change",
            server.base()
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// `POST path` with the admin key `key` as a bearer credential, for the
/// admin routes; status and JSON body.
pub async fn admin(server: &Server, key: &str, path: &str) -> (u16, Value) {
    let res = server
        .request(
            Method::POST,
            path,
            headers([("authorization", &format!("Bearer {key}"))]),
            None,
        )
        .await;
    status_json(res).await
}
