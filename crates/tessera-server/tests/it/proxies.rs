//! Forward-auth behind real proxies: Debian's nginx (`auth_request`) and
//! Caddy (`forward_auth` written out), each run on loopback from the
//! configuration in `deploy/` (placeholders replaced), in front of a small
//! app that echoes the headers it receives.
//!
//! `scripts/setup-test-deps` installs nginx and caddy; when one is missing
//! its test fails with a message naming that script. Each proxy runs as the
//! current user with every file in a temporary directory (no /etc, no system
//! service), on a free port picked here, and is stopped by its process id.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::support::*;

/// Where browsers without a session are sent (the configurable login page).
const LOGIN_URL: &str = "/login?from=proxy";

/// How long a proxy may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository's `deploy/` directory.
fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

/// The path of `name` on `PATH` (or in /usr/sbin, where Debian puts nginx).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn require(name: &str, package: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!(
            "{name} is required by this test (Debian package {package}) but was not found on \
             PATH or in /usr/sbin; run scripts/setup-test-deps"
        )
    })
}

/// A template from `deploy/` with every `@NAME@` replaced; panics if one is
/// left, so that a new placeholder cannot go untested.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(deploy(template))
        .unwrap_or_else(|e| panic!("reading deploy/{template}: {e}"));
    for (name, value) in values {
        let placeholder = format!("@{name}@");
        assert!(
            text.contains(&placeholder),
            "deploy/{template} has no {placeholder}"
        );
        text = text.replace(&placeholder, value);
    }
    let left: Vec<&str> = text
        .match_indices('@')
        .filter_map(|(i, _)| {
            let rest = &text[i + 1..];
            let end = rest.find(|c: char| !(c.is_ascii_uppercase() || c == '_'))?;
            (end > 0 && rest[end..].starts_with('@')).then(|| &rest[..end])
        })
        .collect();
    assert!(
        left.is_empty(),
        "deploy/{template}: placeholders left: {left:?}"
    );
    text
}

/// A port that was free a moment ago (nginx cannot listen on port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The app behind the proxy: answers every request with what it received.
#[derive(Clone)]
struct Echo {
    base: String,
    served: Arc<AtomicUsize>,
}

impl Echo {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let count = count.clone();
                tokio::spawn(async move {
                    let _ = echo_one(conn, &count).await;
                });
            }
        });
        Self { base, served }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// Reads one HTTP/1 request and answers `{"method", "path", "headers", "body"}`
/// (header names in lower case, each with every value it had).
async fn echo_one(mut conn: tokio::net::TcpStream, served: &AtomicUsize) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let mut headers = serde_json::Map::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let entry = headers
                .entry(name.trim().to_ascii_lowercase())
                .or_insert_with(|| json!([]));
            entry
                .as_array_mut()
                .unwrap()
                .push(json!(value.trim().to_owned()));
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v[0].as_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    served.fetch_add(1, Ordering::SeqCst);
    let answer = json!({
        "method": method,
        "path": path,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{answer}",
        answer.len()
    );
    conn.write_all(response.as_bytes()).await?;
    conn.shutdown().await
}

/// A running proxy: killed by its process id when dropped.
struct Proxy {
    name: &'static str,
    base: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the proxy by its process id and waits for it.
    async fn stop(mut self) {
        self.child
            .start_kill()
            .expect("killing the proxy by its pid");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the proxy did not exit within 30 s of SIGKILL")
            .unwrap();
    }
}

/// Starts the proxy `config` builds (from a port and the temporary
/// directory) with `command`, on a free port: a port taken by someone else
/// in the meantime means another try on another port.
async fn start_proxy(name: &'static str, config: impl Fn(u16, &Path) -> Vec<String>) -> Proxy {
    let mut last_log = String::new();
    for _attempt in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let args = config(port, dir.path());
        let log = dir.path().join("proxy.log");
        let stderr = std::fs::File::create(&log).unwrap();
        let stdout = stderr.try_clone().unwrap();
        let mut child = Command::new(&args[0])
            .args(&args[1..])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", args[0]));
        let base = format!("http://127.0.0.1:{port}");
        let client = Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let started = Instant::now();
        let exited = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            // Ours answers 401 (no credential), and something else that took
            // the port in the meantime would hardly: then the proxy exits.
            let answer = client.get(format!("{base}/ready")).send().await;
            if answer.is_ok_and(|r| r.status() == 401) {
                break None;
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "{name} did not answer on {base} within {READY_TIMEOUT:?}; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        last_log = std::fs::read_to_string(&log).unwrap_or_default();
        match exited {
            None => {
                return Proxy {
                    name,
                    base,
                    child,
                    log,
                    _dir: dir,
                };
            }
            Some(_) if last_log.contains("in use") => continue,
            Some(status) => panic!("{name} exited ({status}) at start; its log:\n{last_log}"),
        }
    }
    panic!("{name} found no free port in 5 tries; its last log:\n{last_log}");
}

async fn start_nginx(tessera: &Server, app: &Echo) -> Proxy {
    let nginx = require("nginx", "nginx");
    let tessera_url = tessera.base().to_owned();
    let app_url = format!("http://{}", app.base);
    start_proxy("nginx", move |port, dir| {
        let site = fill(
            "nginx/tessera.conf",
            &[
                ("LISTEN", &format!("127.0.0.1:{port}")),
                ("TESSERA", &tessera_url),
                ("APP", &app_url),
                ("LOGIN_URL", LOGIN_URL),
            ],
        );
        std::fs::write(dir.join("tessera.conf"), site).unwrap();
        // What a system's nginx.conf gives: here everything is in `dir`, and
        // one process (no workers to leave behind if the test fails).
        let d = dir.display();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/proxy.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/tessera.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        vec![
            nginx.display().to_string(),
            "-p".into(),
            d.to_string(),
            "-c".into(),
            format!("{d}/nginx.conf"),
            "-e".into(),
            format!("{d}/proxy.log"),
        ]
    })
    .await
}

async fn start_caddy(tessera: &Server, app: &Echo) -> Proxy {
    let caddy = require("caddy", "caddy");
    let tessera_addr = tessera.base().trim_start_matches("http://").to_owned();
    let app_addr = app.base.clone();
    start_proxy("caddy", move |port, dir| {
        let site = fill(
            "caddy/tessera.caddy",
            &[
                ("SITE", &format!("http://127.0.0.1:{port}")),
                ("TESSERA", &tessera_addr),
                ("APP", &app_addr),
                ("LOGIN_URL", LOGIN_URL),
            ],
        );
        std::fs::write(dir.join("tessera.caddy"), site).unwrap();
        // No admin endpoint (its fixed port would clash between tests), no
        // certificates, loopback only.
        let d = dir.display();
        let main = format!(
            "{{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\t\
             storage file_system {d}/data\n}}\nimport {d}/tessera.caddy\n"
        );
        std::fs::write(dir.join("Caddyfile"), main).unwrap();
        vec![
            caddy.display().to_string(),
            "run".into(),
            "--adapter".into(),
            "caddyfile".into(),
            "--config".into(),
            format!("{d}/Caddyfile"),
        ]
    })
    .await
}

/// A request through the proxy: status, body as text, and `Location`.
async fn send(
    client: &Client,
    method: Method,
    url: String,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, String, Option<String>) {
    let mut req = client.request(method, url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("a request through the proxy");
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, res.text().await.unwrap(), location)
}

/// What the app received, from its echo.
fn echoed(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not the app's echo ({e}): {body}"))
}

/// The values the app received for `header`.
fn seen(echo: &Value, header: &str) -> Value {
    echo["headers"][header].clone()
}

/// Every check, through the proxy `p` at `base`.
async fn forward_auth_through(p: &'static str, base: String, app: Echo) {
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = |path: &str| format!("{base}{path}");
    let before = app.served();

    // No credentials: 401 for an API client, the login page for a browser;
    // the app sees neither.
    let (status, body, _) = send(
        &client,
        Method::GET,
        url("/app/data"),
        &[("accept", "application/json")],
        None,
    )
    .await;
    assert_eq!(status, 401, "{p}: no credentials, JSON: {body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap_or_default()["error"],
        "unauthenticated",
        "{p}: {body}"
    );
    let (status, body, location) = send(
        &client,
        Method::GET,
        url("/app/page"),
        &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
        None,
    )
    .await;
    assert_eq!(status, 302, "{p}: no credentials, HTML: {body}");
    assert_eq!(location.as_deref(), Some(LOGIN_URL), "{p}");
    // Identity headers of the client's own making are no credential.
    let (status, _, _) = send(
        &client,
        Method::GET,
        url("/app/data"),
        &[
            ("x-auth-user-id", "usr_forged"),
            ("x-auth-username", "root"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 401, "{p}: forged identity headers alone");
    assert_eq!(app.served(), before, "{p}: the app saw a refused request");

    // A user registers and logs in through the proxy: the cookie is the app's.
    let name = unique(&format!("proxy_{p}"));
    let (status, body, _) = send(
        &client,
        Method::POST,
        url("/v1/users"),
        &[],
        Some(json!({ "username": name, "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, 201, "{p}: register through the proxy: {body}");
    let user_id = echoed(&body)["id"].as_str().unwrap().to_owned();
    let res = client
        .post(url("/v1/sessions"))
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{p}: login through the proxy");
    let cookie = cookie_pair(&res, "tessera_session").expect("a session cookie");
    let login: Value = res.json().await.unwrap();
    let csrf = login["csrf_token"].as_str().unwrap().to_owned();
    let session_id = login["session"]["id"].as_str().unwrap().to_owned();

    // The session cookie: the app sees who it is, not who the client says.
    let (status, body, _) = send(
        &client,
        Method::GET,
        url("/app/data?x=1"),
        &[
            ("cookie", &cookie),
            ("x-auth-user-id", "usr_forged"),
            ("x-auth-username", "root"),
            ("x-auth-method", "bearer"),
            ("x-auth-session-id", "ses_forged"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{p}: session cookie: {body}");
    let echo = echoed(&body);
    assert_eq!(echo["path"], "/app/data?x=1", "{p}");
    assert_eq!(seen(&echo, "x-auth-user-id"), json!([user_id]), "{p}");
    assert_eq!(seen(&echo, "x-auth-username"), json!([name]), "{p}");
    assert_eq!(seen(&echo, "x-auth-method"), json!(["session"]), "{p}");
    assert_eq!(seen(&echo, "x-auth-session-id"), json!([session_id]), "{p}");

    // A cookie-authenticated POST: the original method reaches tessera, so
    // without the CSRF token it is refused before the app…
    let served = app.served();
    let (status, body, _) = send(
        &client,
        Method::POST,
        url("/app/notes"),
        &[("cookie", &cookie)],
        Some(json!({ "text": "no csrf" })),
    )
    .await;
    assert_eq!(status, 403, "{p}: cookie POST without a CSRF token: {body}");
    // …and also from another site's page, even with the token (the proxy
    // passes Origin and Sec-Fetch-Site on)…
    for cross_site in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let (status, body, _) = send(
            &client,
            Method::POST,
            url("/app/notes"),
            &[("cookie", &cookie), ("x-csrf-token", &csrf), cross_site],
            Some(json!({ "text": "cross-site" })),
        )
        .await;
        assert_eq!(status, 403, "{p}: cross-site {cross_site:?}: {body}");
    }
    assert_eq!(app.served(), served, "{p}: the app saw a refused POST");
    // …while the same POST from the app's own page, with the token, passes
    // with its body.
    let origin = base.clone();
    let (status, body, _) = send(
        &client,
        Method::POST,
        url("/app/notes"),
        &[
            ("cookie", &cookie),
            ("x-csrf-token", &csrf),
            ("origin", &origin),
        ],
        Some(json!({ "text": "hello" })),
    )
    .await;
    assert_eq!(status, 200, "{p}: same-site cookie POST with CSRF: {body}");
    let echo = echoed(&body);
    assert_eq!(echo["method"], "POST", "{p}");
    assert_eq!(echo["body"], r#"{"text":"hello"}"#, "{p}");
    assert_eq!(seen(&echo, "x-auth-username"), json!([name]), "{p}");

    // A bearer token (no CSRF token needed for a POST)…
    let (status, body, _) = send(
        &client,
        Method::POST,
        url("/v1/tokens"),
        &[],
        Some(json!({ "username": name, "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, 200, "{p}: token login through the proxy: {body}");
    let access = echoed(&body)["access_token"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {access}");
    for method in [Method::GET, Method::POST] {
        let (status, body, _) = send(
            &client,
            method.clone(),
            url("/app/data"),
            &[("authorization", &auth), ("x-auth-username", "root")],
            None,
        )
        .await;
        assert_eq!(status, 200, "{p}: bearer {method}: {body}");
        let echo = echoed(&body);
        assert_eq!(seen(&echo, "x-auth-username"), json!([name]), "{p}");
        assert_eq!(seen(&echo, "x-auth-method"), json!(["bearer"]), "{p}");
    }
    // …refused once revoked, and the app sees nothing of it.
    let (status, body, _) = send(
        &client,
        Method::POST,
        url("/v1/tokens/revoke"),
        &[],
        Some(json!({ "token": access })),
    )
    .await;
    assert_eq!(status, 200, "{p}: revoke through the proxy: {body}");
    let served = app.served();
    let (status, body, _) = send(
        &client,
        Method::GET,
        url("/app/data"),
        &[("authorization", &auth), ("accept", "application/json")],
        None,
    )
    .await;
    assert_eq!(status, 401, "{p}: revoked bearer token: {body}");
    // The session logs out through the proxy; its cookie is refused too.
    let (status, body, _) = send(
        &client,
        Method::DELETE,
        url("/v1/sessions/current"),
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        None,
    )
    .await;
    assert_eq!(status, 204, "{p}: logout through the proxy: {body}");
    let (status, body, _) = send(
        &client,
        Method::GET,
        url("/app/data"),
        &[("cookie", &cookie), ("accept", "application/json")],
        None,
    )
    .await;
    assert_eq!(status, 401, "{p}: ended session: {body}");
    assert_eq!(app.served(), served, "{p}: the app saw a refused request");
}

/// Starts tessera, the app and the proxy `start` makes, and runs the checks;
/// a failure shows the proxy's and tessera's logs.
async fn run(start: impl AsyncFnOnce(&Server, &Echo) -> Proxy) {
    let tessera = start_with_args(&["--trust-forwarded-for"]).await;
    let app = Echo::start().await;
    let proxy = start(&tessera, &app).await;
    let checks = tokio::spawn(forward_auth_through(
        proxy.name,
        proxy.base.clone(),
        app.clone(),
    ))
    .await;
    if let Err(e) = checks {
        panic!(
            "{}: {e}\n{} log:\n{}\ntessera log:\n{}",
            proxy.name,
            proxy.name,
            proxy.log(),
            tessera.log()
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn nginx_auth_request_guards_an_app() {
    run(start_nginx).await;
}

#[tokio::test]
async fn caddy_forward_auth_guards_an_app() {
    run(start_caddy).await;
}
