//! The Express example (`examples/express`), run with node against a real
//! tessera: access tokens verified with jose from the JWKS (across a key
//! rotation), cookie sessions read through forward-auth.
//!
//! Node.js and the example's node_modules (`npm ci`) are required;
//! `scripts/setup-test-deps` installs them, and without them these tests
//! fail with a message naming that script.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::support::*;

/// The issuer (and audience) tessera is given, and the app expects.
const ISSUER: &str = "http://127.0.0.1:7480";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/express")
}

/// The Express app, killed by its process id when dropped.
struct App {
    base: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    client: Client,
}

impl App {
    /// Starts `node server.mjs` against `tessera`, with `cooldown_ms` between
    /// JWKS fetches.
    async fn start(tessera: &Server, cooldown_ms: u64) -> Self {
        let node = crate::proxies::find_program("node").unwrap_or_else(|| {
            panic!("node is required by the Express example test; run scripts/setup-test-deps")
        });
        let dir = example_dir();
        assert!(
            dir.join("node_modules/express").is_dir() && dir.join("node_modules/jose").is_dir(),
            "examples/express/node_modules lacks express or jose; run scripts/setup-test-deps \
             (it runs npm ci there)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("express.log");
        let mut child = Command::new(node)
            .arg(dir.join("server.mjs"))
            .current_dir(&dir)
            .env("TESSERA_URL", tessera.base())
            .env("TESSERA_ISSUER", ISSUER)
            .env_remove("TESSERA_AUDIENCE")
            .env("JWKS_COOLDOWN_MS", cooldown_ms.to_string())
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("starting node examples/express/server.mjs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the Express app did not say where it listens within 60 s; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .unwrap();
        let Some(line) = line else {
            let status = child.wait().await.unwrap();
            panic!(
                "the Express app exited ({status}) at start; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let base = line
            .strip_prefix("express example listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            base,
            child,
            log,
            _dir: tmp,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request to the app: status and JSON body.
    async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if method == Method::POST {
            req = req.json(&json!({ "text": "hello" }));
        }
        let res = req.send().await.expect("a request to the Express app");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "the Express app answered {status} with no JSON ({e}): {text}\nits log:\n{}",
                self.log()
            )
        });
        (status, body)
    }

    async fn me_with_bearer(&self, token: &Value) -> (u16, Value) {
        let auth = format!("Bearer {}", token.as_str().unwrap());
        self.call(Method::GET, "/api/me", &[("authorization", &auth)])
            .await
    }

    async fn stop(mut self) {
        self.child.start_kill().expect("killing node by its pid");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("node did not exit within 30 s of SIGKILL")
            .unwrap();
    }
}

#[tokio::test]
async fn express_verifies_tokens_with_jose_and_sessions_through_forward_auth() {
    let server = start_with_args(&["--issuer", ISSUER]).await;
    let app = App::start(&server, 30_000).await;
    let name = unique("express");
    let user = register(&server, &name).await;

    // An access token, verified from the JWKS alone.
    let t = tokens(&server, &name).await;
    let (status, body) = app.me_with_bearer(&t["access_token"]).await;
    assert_eq!(status, 200, "bearer: {body}\n{}", app.log());
    assert_eq!(body["user"]["id"], user["id"]);
    assert_eq!(body["user"]["username"], name.as_str());
    assert_eq!(body["user"]["method"], "bearer");

    // Garbage, a tampered token, a refresh token, and none at all: 401.
    let access = t["access_token"].as_str().unwrap();
    let tampered = {
        let (rest, sig) = access.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
        format!("{rest}.{flipped}{}", &sig[1..])
    };
    for bad in [
        json!("garbage"),
        json!("eyJhbGciOiJub25lIn0.e30."),
        json!(tampered),
        t["refresh_token"].clone(),
    ] {
        let (status, body) = app.me_with_bearer(&bad).await;
        assert_eq!(status, 401, "{bad}: {body}");
        assert_eq!(body["error"], "unauthenticated", "{bad}");
    }
    let (status, _) = app.call(Method::GET, "/api/me", &[]).await;
    assert_eq!(status, 401);

    // A token of the same user from a tessera with another issuer (and key).
    let other = start_with_args(&["--issuer", "http://127.0.0.1:7481"]).await;
    register(&other, &name).await;
    let foreign = tokens(&other, &name).await;
    let (status, body) = app.me_with_bearer(&foreign["access_token"]).await;
    assert_eq!(status, 401, "a foreign tessera's token: {body}");

    // A session cookie, read through tessera's forward-auth.
    let l = login(&server, &name).await;
    let (status, body) = app
        .call(Method::GET, "/api/me", &[("cookie", &l.cookie)])
        .await;
    assert_eq!(status, 200, "session cookie: {body}\n{}", app.log());
    assert_eq!(body["user"]["id"], user["id"]);
    assert_eq!(body["user"]["username"], name.as_str());
    assert_eq!(body["user"]["method"], "session");
    assert_eq!(body["user"]["sessionId"], l.session_id.as_str());
    // An unsafe method by cookie needs the CSRF token: the app passes the
    // original method and the token to tessera.
    let (status, body) = app
        .call(Method::POST, "/api/notes", &[("cookie", &l.cookie)])
        .await;
    assert_eq!(status, 403, "cookie POST without CSRF: {body}");
    assert_eq!(body["error"], "csrf_failed");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/notes",
            &[("cookie", &l.cookie), ("x-csrf-token", &l.csrf)],
        )
        .await;
    assert_eq!(status, 201, "cookie POST with CSRF: {body}");
    assert_eq!(body["note"]["author"], name.as_str());
    // A bearer POST needs none.
    let (status, body) = app
        .call(
            Method::POST,
            "/api/notes",
            &[(
                "authorization",
                &format!("Bearer {}", t["access_token"].as_str().unwrap()),
            )],
        )
        .await;
    assert_eq!(status, 201, "bearer POST: {body}");

    // After logout the cookie is refused.
    let (status, _) = call(
        &server,
        Method::DELETE,
        "/v1/sessions/current",
        l.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = app
        .call(Method::GET, "/api/me", &[("cookie", &l.cookie)])
        .await;
    assert_eq!(status, 401, "ended session: {body}");
    assert_eq!(body["error"], "unauthenticated");
    app.stop().await;
}

/// How many times the JWKS was served, from tessera's metrics.
async fn jwks_fetches(server: &Server) -> u64 {
    let text = server
        .client()
        .get(server.metrics_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("tessera_http_requests_total{")
                && l.contains(r#"route="/.well-known/jwks.json""#)
                && l.contains(r#"status="200""#)
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn express_accepts_a_rotated_key_after_refetching_the_jwks() {
    let server = start_with_args(&[
        "--issuer",
        ISSUER,
        "--key-refresh",
        "1s",
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .await;
    // No cooldown: jose refetches the JWKS whenever it meets an unknown kid
    // (the app's default is 30 s, which would only make this test slower).
    let app = App::start(&server, 0).await;
    let name = unique("rotation");
    register(&server, &name).await;
    let kid = |t: &Value| part(t["access_token"].as_str().unwrap(), 0)["kid"].clone();

    let old = tokens(&server, &name).await;
    let (status, body) = app.me_with_bearer(&old["access_token"]).await;
    assert_eq!(status, 200, "before the rotation: {body}\n{}", app.log());
    assert_eq!(jwks_fetches(&server).await, 1, "jose fetched the JWKS once");
    // Cached: no other fetch for a known kid.
    let (status, _) = app.me_with_bearer(&old["access_token"]).await;
    assert_eq!(status, 200);
    assert_eq!(jwks_fetches(&server).await, 1);

    // Rotate while both run, in the server's own database.
    let db = format!("sqlite://{}", server.db_path().display());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["keys", "rotate", "--database", &db])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "tessera keys rotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The server signs with the new key within --key-refresh.
    let started = Instant::now();
    let new = loop {
        let t = tokens(&server, &name).await;
        if kid(&t) != kid(&old) {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "tessera still signs with the old key 60 s after the rotation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The app has never seen the new kid: jose refetches the JWKS and accepts.
    let (status, body) = app.me_with_bearer(&new["access_token"]).await;
    assert_eq!(status, 200, "after the rotation: {body}\n{}", app.log());
    assert_eq!(body["user"]["username"], name.as_str());
    assert_eq!(
        jwks_fetches(&server).await,
        2,
        "jose refetched the JWKS once"
    );
    // The old key stays published: its tokens still pass.
    let (status, body) = app.me_with_bearer(&old["access_token"]).await;
    assert_eq!(status, 200, "an old-key token after the rotation: {body}");
    app.stop().await;
}
