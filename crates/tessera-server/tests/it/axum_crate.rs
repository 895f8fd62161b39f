//! `tessera-axum` against the real server: the example app of
//! `crates/tessera-axum/examples/protected.rs`, served over HTTP or called
//! in-process, with every kind of credential tessera issues.
//!
//! JWKS fetches are counted on the wire by a TCP pass-through in front of
//! the server, so the count does not depend on the library reporting itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand_core::RngCore as _;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tessera_axum::Tessera;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

use crate::support::*;

#[path = "../../../tessera-axum/examples/protected.rs"]
#[allow(dead_code)] // its `main` is not run here, only its `app`
mod protected;

const ISSUER: &str = "http://tessera.test";

async fn server(extra: &[&str]) -> Server {
    let mut args = vec!["--issuer", ISSUER];
    args.extend_from_slice(extra);
    start_with_args(&args).await
}

fn handle(base: &str) -> tessera_axum::Builder {
    Tessera::builder(base)
        .issuer(ISSUER)
        .insecure_dev_cookies(true)
}

/// Serves the example app on 127.0.0.1:0; returns its base URL.
async fn serve_example(tessera: &Tessera) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = protected::app(tessera);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A request to the example app over HTTP: status, `WWW-Authenticate`, JSON.
async fn to_app(
    server: &Server,
    method: Method,
    url: String,
    headers: HeaderMap,
) -> (u16, String, Value) {
    let mut req = server
        .client()
        .request(method.clone(), url)
        .headers(headers);
    if method == Method::POST {
        req = req.body("a note");
    }
    let res = req.send().await.unwrap();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let (status, body) = status_json(res).await;
    (status, www, body)
}

/// A TCP pass-through that counts the JWKS requests it forwards.
struct CountingProxy {
    base: String,
    jwks: Arc<AtomicUsize>,
}

impl CountingProxy {
    async fn start(upstream: &str) -> Self {
        let upstream = upstream.strip_prefix("http://").unwrap().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let jwks = Arc::new(AtomicUsize::new(0));
        let count = jwks.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(client, server, count.clone()));
            }
        });
        Self { base, jwks }
    }

    fn jwks_requests(&self) -> usize {
        self.jwks.load(Ordering::SeqCst)
    }
}

async fn pipe(client: TcpStream, server: TcpStream, count: Arc<AtomicUsize>) {
    const NEEDLE: &[u8] = b"GET /.well-known/jwks.json HTTP/1.1\r\n";
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
    let mut buf = vec![0u8; 16 * 1024];
    // The last bytes of the previous read, so a request line split across
    // two reads is still seen once.
    let mut window: Vec<u8> = Vec::new();
    loop {
        let n = match from_client.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        window.extend_from_slice(&buf[..n]);
        let seen = window
            .windows(NEEDLE.len())
            .filter(|w| *w == NEEDLE)
            .count();
        count.fetch_add(seen, Ordering::SeqCst);
        let keep = window.len().min(NEEDLE.len() - 1);
        window.drain(..window.len() - keep);
        if to_server.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to_server.shutdown().await;
}

/// `GET /me` on the example app in-process: status and JSON body.
async fn me_in_process(app: axum::Router, token: &str) -> (u16, Value) {
    let req = axum::http::Request::get("/me")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_example_app_takes_every_credential_and_refuses_after_logout() {
    let mut server = server(&[]).await;
    let name = unique("axumapp");
    let user = register(&server, &name).await;
    let tessera = handle(server.base()).build().unwrap();
    let app = serve_example(&tessera).await;
    let me = || format!("{app}/me");
    let notes = || format!("{app}/notes");

    // Public route: no credential needed.
    let res = server.client().get(format!("{app}/")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // No credential: 401 with the plain challenge.
    let (status, www, body) = to_app(&server, Method::GET, me(), HeaderMap::new()).await;
    assert_eq!((status, www.as_str()), (401, "Bearer"));
    assert_eq!(body["error"], "unauthenticated");

    // Bearer token from POST /v1/tokens, verified offline.
    let t = tokens(&server, &name).await;
    let access = t["access_token"].as_str().unwrap();
    let claims = part(access, 1);
    let (status, _, body) = to_app(&server, Method::GET, me(), bearer(&t["access_token"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "bearer");
    assert_eq!(body["user_id"], user["id"]);
    assert_eq!(body["username"], name.as_str());
    assert_eq!(body["session_id"], claims["sid"]);
    assert_eq!(body["expires_at"], claims["exp"]);

    // The same token with one signature character changed is refused.
    let mut forged = access.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, www, body) = to_app(&server, Method::GET, me(), bearer(&json!(forged))).await;
    assert_eq!(
        (status, www.as_str()),
        (401, "Bearer error=\"invalid_token\"")
    );
    assert_eq!(body["error"], "unauthenticated");

    // Token cookie from POST /v1/tokens?cookie=true.
    let res = cookie_tokens(&server, &name).await;
    assert_eq!(res.status(), 200);
    let access_cookie = cookie_pair(&res, "tessera_access").unwrap();
    let (status, _, body) = to_app(
        &server,
        Method::GET,
        me(),
        headers([("cookie", &format!("theme=dark; {access_cookie}"))]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "cookie_token");
    assert_eq!(body["user_id"], user["id"]);

    // Session cookie, checked by the server's forward-auth route.
    let login = login(&server, &name).await;
    let (status, _, body) = to_app(&server, Method::GET, me(), login.cookie_only()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "session");
    assert_eq!(body["session_id"], login.session_id.as_str());
    assert_eq!(body["expires_at"], Value::Null);

    // An unsafe request by session cookie: tessera's CSRF rule applies to
    // the original method, and its 403 passes through.
    let got = to_app(&server, Method::POST, notes(), login.cookie_only()).await;
    assert_error(&(got.0, got.2), 403, "csrf_failed");
    let (status, _, body) = to_app(&server, Method::POST, notes(), login.with_csrf()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, json!({"by": name, "note": "a note"}));
    // And its cross-site rule: a foreign Origin is refused even with CSRF.
    let mut foreign = login.with_csrf();
    foreign.insert("origin", "https://evil.example".parse().unwrap());
    let got = to_app(&server, Method::POST, notes(), foreign).await;
    assert_error(&(got.0, got.2), 403, "cross_site_request");
    // A bearer request needs no CSRF token.
    let (status, _, _) = to_app(&server, Method::POST, notes(), bearer(&t["access_token"])).await;
    assert_eq!(status, 201);

    // Logout: the session cookie is refused from then on.
    let (status, _) = call(
        &server,
        Method::DELETE,
        "/v1/sessions/current",
        login.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, www, body) = to_app(&server, Method::GET, me(), login.cookie_only()).await;
    assert_eq!((status, www.as_str()), (401, "Bearer"));
    assert_eq!(body["error"], "unauthenticated");

    // tessera gone: what needs it is 503, never a pass; a token whose key is
    // already cached still verifies offline (that is what offline means).
    let login = crate::support::login(&server, &name).await;
    let strict = handle(server.base()).strict(true).build().unwrap();
    let strict_app = serve_example(&strict).await;
    let (status, _, _) = to_app(
        &server,
        Method::GET,
        format!("{strict_app}/me"),
        bearer(&t["access_token"]),
    )
    .await;
    assert_eq!(status, 200);
    assert!(server.stop().await.success());
    let (status, _, body) = to_app(&server, Method::GET, me(), login.cookie_only()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    let (status, _, _) = to_app(
        &server,
        Method::GET,
        format!("{strict_app}/me"),
        bearer(&t["access_token"]),
    )
    .await;
    assert_eq!(status, 503);
    let (status, _, _) = to_app(&server, Method::GET, me(), bearer(&t["access_token"])).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_revoked_token_is_refused_in_strict_mode_and_accepted_offline_until_it_expires() {
    let server = server(&["--access-ttl", "3s", "--leeway", "0s"]).await;
    let name = unique("axumstrict");
    register(&server, &name).await;
    let offline = handle(server.base())
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    let strict = handle(server.base()).strict(true).build().unwrap();
    let offline_app = serve_example(&offline).await;
    let strict_app = serve_example(&strict).await;

    let t = tokens(&server, &name).await;
    for app in [&offline_app, &strict_app] {
        let (status, _, body) = to_app(
            &server,
            Method::GET,
            format!("{app}/me"),
            bearer(&t["access_token"]),
        )
        .await;
        assert_eq!(status, 200, "{app}: {body}");
    }
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/tokens/revoke",
        HeaderMap::new(),
        Some(&json!({ "token": t["access_token"] })),
    )
    .await;
    assert_eq!(status, 200);

    // Strict asks the server: refused at once.
    let (status, www, body) = to_app(
        &server,
        Method::GET,
        format!("{strict_app}/me"),
        bearer(&t["access_token"]),
    )
    .await;
    assert_eq!(
        (status, www.as_str()),
        (401, "Bearer error=\"invalid_token\""),
        "{body}"
    );
    // Offline does not: the revoked token still works until its exp.
    let (status, _, _) = to_app(
        &server,
        Method::GET,
        format!("{offline_app}/me"),
        bearer(&t["access_token"]),
    )
    .await;
    assert_eq!(status, 200);
    let exp = part(t["access_token"].as_str().unwrap(), 1)["exp"]
        .as_u64()
        .unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let past_exp = Duration::from_secs(exp + 1).saturating_sub(now);
    tokio::time::sleep(past_exp).await;
    let (status, www, _) = to_app(
        &server,
        Method::GET,
        format!("{offline_app}/me"),
        bearer(&t["access_token"]),
    )
    .await;
    assert_eq!(
        (status, www.as_str()),
        (401, "Bearer error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn ten_thousand_unknown_kids_fetch_the_jwks_at_most_twice() {
    let server = server(&[]).await;
    let proxy = CountingProxy::start(server.base()).await;
    let name = unique("axumflood");
    register(&server, &name).await;
    // The default refetch interval (10 s).
    let tessera = handle(&proxy.base).build().unwrap();
    let app = protected::app(&tessera);

    let t = tokens(&server, &name).await;
    let access = t["access_token"].as_str().unwrap().to_owned();
    let (status, body) = me_in_process(app.clone(), &access).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.jwks_requests(), 1);

    // The real token's claims and signature under headers naming kids the
    // server never had, all sent at once.
    let (_, rest) = access.split_once('.').unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10_000 {
        let kid = format!("{:016x}", rand_core::OsRng.next_u64());
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
        let token = format!("{}.{rest}", b64.encode(header.to_string()));
        let app = app.clone();
        tasks.spawn(async move { me_in_process(app, &token).await.0 });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 401);
    }
    let fetched = proxy.jwks_requests();
    assert!(
        fetched <= 2,
        "{fetched} JWKS fetches for 10 000 unknown kids"
    );
    // The library's own count agrees with the wire.
    assert_eq!(tessera.jwks_fetches(), u64::try_from(fetched).unwrap());
    // The real token still passes, from the cache.
    assert_eq!(me_in_process(app, &access).await.0, 200);
    assert_eq!(proxy.jwks_requests(), fetched);
}

#[tokio::test]
async fn a_key_rotation_is_survived_by_one_refetch_on_the_new_kid() {
    let server = server(&["--key-refresh", "1s"]).await;
    let proxy = CountingProxy::start(server.base()).await;
    let name = unique("axumrotate");
    register(&server, &name).await;
    let tessera = handle(&proxy.base)
        .refetch_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let app = protected::app(&tessera);

    let old = tokens(&server, &name).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(me_in_process(app.clone(), &old).await.0, 200);
    assert_eq!(proxy.jwks_requests(), 1);

    let out = std::process::Command::new(BIN)
        .args(["keys", "rotate", "--database"])
        .arg(format!("sqlite://{}", server.db_path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server picks the new key up within --key-refresh.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let new = tokens(&server, &name).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(part(&new, 0)["kid"], part(&old, 0)["kid"], "not rotated");

    let (status, body) = me_in_process(app.clone(), &new).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.jwks_requests(), 2, "the unknown kid refetched once");
    // The old key is still published, so its tokens still pass, from cache.
    assert_eq!(me_in_process(app, &old).await.0, 200);
    assert_eq!(proxy.jwks_requests(), 2);
}
