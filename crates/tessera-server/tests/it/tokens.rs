//! Token-based authentication and the hybrid, every row of the token tables.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::support::*;

const ADMIN: &str = "admin-key-for-the-tests-0123456789";

async fn me_status(server: &Server, h: HeaderMap) -> u16 {
    call(server, Method::GET, "/v1/me", h, None).await.0
}

async fn refresh(server: &Server, rt: &Value) -> (u16, Value) {
    call(
        server,
        Method::POST,
        "/v1/tokens/refresh",
        HeaderMap::new(),
        Some(&json!({ "refresh_token": rt })),
    )
    .await
}

#[tokio::test]
async fn token_login_issues_an_rfc9068_access_token_and_a_refresh_token() {
    let server = start_with_args(&["--issuer", "http://tessera.test"]).await;
    let name = unique("tok");
    let user = register(&server, &name).await;
    let body = tokens(&server, &name).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["refresh_expires_in"], 14 * 86_400);
    let rt = body["refresh_token"].as_str().unwrap();
    assert!(rt.starts_with("tsr_rt_") && rt.len() >= 7 + 43, "{rt}");
    let at = body["access_token"].as_str().unwrap();
    let header = part(at, 0);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    let claims = part(at, 1);
    assert_eq!(claims["iss"], "http://tessera.test");
    assert_eq!(claims["aud"], "http://tessera.test");
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["username"], name.as_str());
    for c in ["iat", "nbf", "exp"] {
        assert!(claims[c].is_i64(), "{c} in {claims}");
    }
    // 15 minutes, with exp rounded up to the next whole second.
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((900..=901).contains(&lifetime), "{lifetime}");
    assert!(claims["jti"].is_string() && claims["sid"].as_str().unwrap().starts_with("ses_"));

    let (_, jwks) = call(
        &server,
        Method::GET,
        "/.well-known/jwks.json",
        HeaderMap::new(),
        None,
    )
    .await;
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);

    let (status, me) = call(
        &server,
        Method::GET,
        "/v1/me",
        bearer(&body["access_token"]),
        None,
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["auth"]["method"], "bearer");
    assert_eq!(me["auth"]["session_id"], claims["sid"]);
    assert_eq!(me["user"]["username"], name.as_str());

    let wrong = server
        .post_json(
            "/v1/tokens",
            &json!({ "username": name, "password": "nope nope nope" }),
        )
        .await;
    assert_error(&status_json(wrong).await, 401, "invalid_credentials");
}

#[tokio::test]
async fn the_jwks_publishes_public_keys_only() {
    for alg in ["EdDSA", "ES256", "RS256"] {
        let server = start_with_args(&["--jwt-alg", alg]).await;
        let res = server.get("/.well-known/jwks.json", HeaderMap::new()).await;
        assert!(
            res.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age")
        );
        let jwks: Value = res.json().await.unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{jwks}");
        assert_eq!(keys[0]["alg"], alg);
        assert_eq!(keys[0]["use"], "sig");
        assert!(keys[0]["kid"].is_string());
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(keys[0].get(private).is_none(), "{alg} publishes {private}");
        }
        let name = unique("alg");
        register(&server, &name).await;
        let t = tokens(&server, &name).await;
        assert_eq!(part(t["access_token"].as_str().unwrap(), 0)["alg"], alg);
        assert_eq!(me_status(&server, bearer(&t["access_token"])).await, 200);
    }
    let hs = start_with_args(&["--jwt-alg", "HS256"]).await;
    let (_, jwks) = call(
        &hs,
        Method::GET,
        "/.well-known/jwks.json",
        HeaderMap::new(),
        None,
    )
    .await;
    assert_eq!(jwks, json!({ "keys": [] }), "nothing to publish for HS256");
    let name = unique("hs");
    register(&hs, &name).await;
    let t = tokens(&hs, &name).await;
    assert_eq!(me_status(&hs, bearer(&t["access_token"])).await, 200);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let server = start().await;
    let name = unique("rotate");
    register(&server, &name).await;
    let first = tokens(&server, &name).await;
    let (status, second) = refresh(&server, &first["refresh_token"]).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    assert!(
        second["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("tsr_rt_")
    );
    let sid = |t: &Value| part(t["access_token"].as_str().unwrap(), 1)["sid"].clone();
    assert_eq!(sid(&first), sid(&second), "one family, one session");
    assert_eq!(
        me_status(&server, bearer(&second["access_token"])).await,
        200
    );

    // The spent token again: theft. The family dies, including the new tokens.
    let got = refresh(&server, &first["refresh_token"]).await;
    assert_error(&got, 401, "refresh_token_reused");
    let got = refresh(&server, &second["refresh_token"]).await;
    assert_error(&got, 401, "invalid_token");
    assert_eq!(
        me_status(&server, bearer(&second["access_token"])).await,
        401
    );
    assert_eq!(
        me_status(&server, bearer(&first["access_token"])).await,
        401
    );

    for junk in [
        json!("tsr_rt_nope"),
        json!("not a token"),
        json!(first["access_token"]),
    ] {
        let got = refresh(&server, &junk).await;
        assert_error(&got, 401, "invalid_token");
    }
    let got = call(
        &server,
        Method::POST,
        "/v1/tokens/refresh",
        HeaderMap::new(),
        Some(&json!({})),
    )
    .await;
    assert_error(&got, 400, "invalid_request");
}

#[tokio::test]
async fn sixteen_concurrent_refreshes_of_one_token_one_succeeds() {
    let server = start().await;
    let name = unique("race");
    register(&server, &name).await;
    let t = tokens(&server, &name).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let req = server
            .client()
            .post(server.url("/v1/tokens/refresh"))
            .json(&json!({ "refresh_token": t["refresh_token"] }));
        tasks.spawn(async move { req.send().await.unwrap().status().as_u16() });
    }
    let statuses = tasks.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        15,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn within_the_grace_window_parallel_tabs_agree_and_after_it_reuse_is_theft() {
    let server = start_with_args(&["--refresh-grace", "2s"]).await;
    let name = unique("tabs");
    register(&server, &name).await;
    let t = tokens(&server, &name).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let req = server
            .client()
            .post(server.url("/v1/tokens/refresh"))
            .json(&json!({ "refresh_token": t["refresh_token"] }));
        tasks.spawn(async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        });
    }
    let results = tasks.join_all().await;
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    let successor = &results[0].1["refresh_token"];
    assert!(
        results
            .iter()
            .all(|(_, b)| &b["refresh_token"] == successor),
        "all tabs agree"
    );
    for (_, b) in &results {
        assert_eq!(me_status(&server, bearer(&b["access_token"])).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let got = refresh(&server, &t["refresh_token"]).await;
    assert_error(&got, 401, "refresh_token_reused");
    assert_error(&refresh(&server, successor).await, 401, "invalid_token");
}

#[tokio::test]
async fn revoking_either_token_ends_the_family_at_once() {
    let server = start().await;
    let name = unique("revoke");
    register(&server, &name).await;
    for which in ["refresh_token", "access_token"] {
        let t = tokens(&server, &name).await;
        assert_eq!(me_status(&server, bearer(&t["access_token"])).await, 200);
        let (status, body) = call(
            &server,
            Method::POST,
            "/v1/tokens/revoke",
            HeaderMap::new(),
            Some(&json!({ "token": t[which] })),
        )
        .await;
        assert_eq!((status, body), (200, json!({})), "{which}");
        assert_eq!(
            me_status(&server, bearer(&t["access_token"])).await,
            401,
            "{which}"
        );
        assert_error(
            &refresh(&server, &t["refresh_token"]).await,
            401,
            "invalid_token",
        );
    }
    for junk in ["tsr_rt_unknown", "garbage", ""] {
        let (status, body) = call(
            &server,
            Method::POST,
            "/v1/tokens/revoke",
            HeaderMap::new(),
            Some(&json!({ "token": junk })),
        )
        .await;
        assert_eq!((status, body), (200, json!({})), "{junk:?}");
    }
    let got = call(
        &server,
        Method::POST,
        "/v1/tokens/revoke",
        HeaderMap::new(),
        Some(&json!({})),
    )
    .await;
    assert_error(&got, 400, "invalid_request");
}

#[tokio::test]
async fn introspection_needs_the_admin_key() {
    let off = start().await;
    let got = call(
        &off,
        Method::POST,
        "/v1/tokens/introspect",
        HeaderMap::new(),
        Some(&json!({ "token": "x" })),
    )
    .await;
    assert_eq!(got.0, 404, "admin routes are off without an admin key");

    let server = start_with_args(&["--admin-key", ADMIN]).await;
    let name = unique("intro");
    register(&server, &name).await;
    let t = tokens(&server, &name).await;
    let admin = headers([("authorization", &format!("Bearer {ADMIN}"))]);
    for h in [
        HeaderMap::new(),
        headers([("authorization", "Bearer wrong-admin-key-0123456789")]),
        bearer(&t["access_token"]),
    ] {
        let got = call(
            &server,
            Method::POST,
            "/v1/tokens/introspect",
            h,
            Some(&json!({ "token": t["access_token"] })),
        )
        .await;
        assert_error(&got, 401, "unauthenticated");
    }
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/tokens/introspect",
        admin.clone(),
        Some(&json!({ "token": t["access_token"] })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["username"], name.as_str());
    assert_eq!(body["token_type"], "access_token");
    for f in ["sub", "exp", "iat", "jti", "sid"] {
        assert!(!body[f].is_null(), "{f} in {body}");
    }
    let (_, body) = call(
        &server,
        Method::POST,
        "/v1/tokens/introspect",
        admin.clone(),
        Some(&json!({ "token": t["refresh_token"] })),
    )
    .await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["token_type"], "refresh_token");

    call(
        &server,
        Method::POST,
        "/v1/tokens/revoke",
        HeaderMap::new(),
        Some(&json!({ "token": t["refresh_token"] })),
    )
    .await;
    for token in [&t["access_token"], &t["refresh_token"], &json!("junk")] {
        let (status, body) = call(
            &server,
            Method::POST,
            "/v1/tokens/introspect",
            admin.clone(),
            Some(&json!({ "token": token })),
        )
        .await;
        assert_eq!((status, body), (200, json!({ "active": false })));
    }
}

#[tokio::test]
async fn an_access_token_expires_with_zero_leeway() {
    let server = start_with_args(&["--access-ttl", "1s", "--leeway", "0s"]).await;
    let name = unique("exp");
    register(&server, &name).await;
    let t = tokens(&server, &name).await;
    assert_eq!(t["expires_in"], 1);
    assert_eq!(me_status(&server, bearer(&t["access_token"])).await, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = server.get("/v1/me", bearer(&t["access_token"])).await;
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_error(&status_json(res).await, 401, "unauthenticated");
    // The refresh token still gets a fresh one.
    let (status, fresh) = refresh(&server, &t["refresh_token"]).await;
    assert_eq!(status, 200);
    assert_eq!(
        me_status(&server, bearer(&fresh["access_token"])).await,
        200
    );
}

#[tokio::test]
async fn keys_survive_a_restart_and_a_wrong_master_key_stops_the_start() {
    let mut server = start().await;
    let name = unique("keys");
    register(&server, &name).await;
    let t = tokens(&server, &name).await;
    let key_file = server.dir().join("tessera.key");
    let meta = std::fs::metadata(&key_file).expect("tessera.key beside the database");
    #[cfg(unix)]
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    server.restart().await;
    assert_eq!(me_status(&server, bearer(&t["access_token"])).await, 200);
    let status = server.stop().await;
    assert!(status.success());

    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--master-key",
            "5e1c9a2f7b3d8e4a0c6f1b9d2e7a3c8f4b0d6e1a9c5f2b7d3e8a4c0f6b1d9e2a",
        ])
        .arg("--database")
        .arg(format!("sqlite://{}", server.db_path().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master_key"), "{stderr}");
}

#[tokio::test]
async fn rotation_reaches_a_running_server_and_old_tokens_stay_valid() {
    let server = start_with_args(&["--key-refresh", "1s", "--jwt-alg", "ES256"]).await;
    let name = unique("rot");
    register(&server, &name).await;
    let old = tokens(&server, &name).await;
    let old_kid = part(old["access_token"].as_str().unwrap(), 0)["kid"].clone();
    let out = std::process::Command::new(BIN)
        .args(["keys", "rotate", "--jwt-alg", "ES256", "--database"])
        .arg(format!("sqlite://{}", server.db_path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The documented bound is one --key-refresh interval.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let new = tokens(&server, &name).await;
    let new_kid = part(new["access_token"].as_str().unwrap(), 0)["kid"].clone();
    assert_ne!(old_kid, new_kid, "new tokens use the new key");
    assert_eq!(
        me_status(&server, bearer(&old["access_token"])).await,
        200,
        "old token still valid"
    );
    assert_eq!(me_status(&server, bearer(&new["access_token"])).await, 200);
    let (_, jwks) = call(
        &server,
        Method::GET,
        "/.well-known/jwks.json",
        HeaderMap::new(),
        None,
    )
    .await;
    let kids: Vec<&Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(
        kids.contains(&&old_kid) && kids.contains(&&new_kid),
        "{jwks}"
    );

    let out = std::process::Command::new(BIN)
        .args(["keys", "list", "--jwt-alg", "ES256", "--database"])
        .arg(format!("sqlite://{}", server.db_path().display()))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("current (signing)") && listing.contains("published until"),
        "{listing}"
    );
}

#[tokio::test]
async fn the_hybrid_keeps_tokens_in_httponly_cookies() {
    let server = start().await;
    let name = unique("hybrid");
    register(&server, &name).await;
    let res = cookie_tokens(&server, &name).await;
    assert_eq!(res.status(), 200);
    let cookies = set_cookies(&res);
    let access = cookies
        .iter()
        .find(|c| c.starts_with("tessera_access="))
        .expect("access cookie");
    let refresh_c = cookies
        .iter()
        .find(|c| c.starts_with("tessera_refresh="))
        .expect("refresh cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/;"] {
        assert!(access.contains(attr), "{attr} in {access}");
    }
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/v1/tokens;"] {
        assert!(refresh_c.contains(attr), "{attr} in {refresh_c}");
    }
    let body: Value = res.json().await.unwrap();
    assert!(
        body.get("access_token").is_none() && body.get("refresh_token").is_none(),
        "{body}"
    );
    assert_eq!(body["token_type"], "Bearer");

    let access_pair = access.split(';').next().unwrap().to_owned();
    let (status, me) = call(
        &server,
        Method::GET,
        "/v1/me",
        headers([("cookie", &access_pair)]),
        None,
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["auth"]["method"], "cookie_token");

    // The refresh route reads the cookie when the body has none.
    let refresh_pair = refresh_c.split(';').next().unwrap().to_owned();
    let res = server
        .request(
            Method::POST,
            "/v1/tokens/refresh",
            headers([("cookie", &refresh_pair)]),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let renewed = set_cookies(&res);
    assert!(renewed.iter().any(|c| c.starts_with("tessera_access=")));
    assert!(
        renewed
            .iter()
            .any(|c| c.starts_with("tessera_refresh=") && !c.starts_with(&refresh_pair))
    );
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());

    let secure = Server::start_with(
        BIN,
        Options {
            secure_cookies: true,
            ..Options::default()
        },
    )
    .await;
    register(&secure, &name).await;
    let res = cookie_tokens(&secure, &name).await;
    let cookies = set_cookies(&res);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-tessera_access=")
                && c.contains("Secure")
                && c.contains("Path=/;")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Secure-tessera_refresh=") && c.contains("Secure")),
        "{cookies:?}"
    );
}

#[tokio::test]
async fn bearer_wins_over_a_session_cookie_and_verify_serves_proxies() {
    let server = start().await;
    let (alice, alice_login) = user_with_session(&server, "alice").await;
    let bob = unique("bob");
    register(&server, &bob).await;
    let bob_tokens = tokens(&server, &bob).await;
    let both = headers([
        ("cookie", &alice_login.cookie),
        (
            "authorization",
            &format!("Bearer {}", bob_tokens["access_token"].as_str().unwrap()),
        ),
    ]);
    let (_, me) = call(&server, Method::GET, "/v1/me", both, None).await;
    assert_eq!(me["user"]["username"], bob.as_str());

    let res = server
        .get("/v1/auth/verify", alice_login.cookie_only())
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-auth-username"], alice.as_str());
    assert_eq!(res.headers()["x-auth-method"], "session");
    assert!(res.text().await.unwrap().is_empty());
    let res = server
        .get("/v1/auth/verify", bearer(&bob_tokens["access_token"]))
        .await;
    assert_eq!(res.headers()["x-auth-method"], "bearer");
    assert_eq!(
        res.headers()["x-auth-user-id"],
        part(bob_tokens["access_token"].as_str().unwrap(), 1)["sub"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        server
            .get("/v1/auth/verify", HeaderMap::new())
            .await
            .status(),
        401
    );
    // A non-bearer Authorization header is not a credential: the cookie still counts.
    let basic = headers([
        ("cookie", &alice_login.cookie),
        ("authorization", "Basic YTpi"),
    ]);
    assert_eq!(me_status(&server, basic).await, 200);
}

#[tokio::test]
async fn the_device_list_covers_both_kinds_and_bearer_needs_no_csrf() {
    let server = start().await;
    let (name, browser) = user_with_session(&server, "devices").await;
    let phone = tokens(&server, &name).await;
    let laptop = tokens(&server, &name).await;
    let (status, body) = call(
        &server,
        Method::GET,
        "/v1/sessions",
        bearer(&phone["access_token"]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{body}");
    assert_eq!(sessions.iter().filter(|s| s["kind"] == "token").count(), 2);
    assert_eq!(sessions.iter().filter(|s| s["kind"] == "cookie").count(), 1);
    let phone_sid = part(phone["access_token"].as_str().unwrap(), 1)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let laptop_sid = part(laptop["access_token"].as_str().unwrap(), 1)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], phone_sid.as_str());

    // The browser logs out the laptop's token session (cookie + CSRF).
    let path = format!("/v1/sessions/{laptop_sid}");
    assert_eq!(
        call(&server, Method::DELETE, &path, browser.with_csrf(), None)
            .await
            .0,
        204
    );
    assert_eq!(
        me_status(&server, bearer(&laptop["access_token"])).await,
        401
    );
    assert_error(
        &refresh(&server, &laptop["refresh_token"]).await,
        401,
        "invalid_token",
    );

    // The phone (bearer, no CSRF) logs out everything else.
    assert_eq!(
        call(
            &server,
            Method::DELETE,
            "/v1/sessions",
            bearer(&phone["access_token"]),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(me_status(&server, browser.cookie_only()).await, 401);
    assert_eq!(
        me_status(&server, bearer(&phone["access_token"])).await,
        200
    );
    let _ = phone_sid;
}

#[tokio::test]
async fn a_password_change_by_bearer_revokes_every_other_family_and_session() {
    let server = start().await;
    let (name, browser) = user_with_session(&server, "pw").await;
    let here = tokens(&server, &name).await;
    let other = tokens(&server, &name).await;
    let change = json!({ "current_password": PASSWORD, "new_password": "another long password" });
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/users/me/password",
        bearer(&here["access_token"]),
        Some(&change),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(me_status(&server, bearer(&here["access_token"])).await, 200);
    assert_eq!(
        me_status(&server, bearer(&other["access_token"])).await,
        401
    );
    assert_eq!(me_status(&server, browser.cookie_only()).await, 401);
    assert_error(
        &refresh(&server, &other["refresh_token"]).await,
        401,
        "invalid_token",
    );
}

#[tokio::test]
async fn token_decode_tells_what_a_token_says_and_whether_to_believe_it() {
    let server = start_with_args(&["--access-ttl", "1s", "--leeway", "0s"]).await;
    let name = unique("decode");
    register(&server, &name).await;
    let t = tokens(&server, &name).await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    let db = format!("sqlite://{}", server.db_path().display());
    let decode = |args: Vec<String>| {
        let out = std::process::Command::new(BIN).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = decode(vec![
        "token".into(),
        "decode".into(),
        at.clone(),
        "--database".into(),
        db.clone(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("verdict: verified") && out.contains(&name) && out.contains("time left"),
        "{out}"
    );

    let (code, out) = decode(vec![
        "token".into(),
        "decode".into(),
        at.clone(),
        "--jwks".into(),
        server.url("/.well-known/jwks.json"),
    ]);
    assert_eq!(code, Some(0), "{out}");

    let mut forged = at.clone();
    let flip = forged.len() - 5;
    forged.replace_range(
        flip..flip + 1,
        if &at[flip..flip + 1] == "A" { "B" } else { "A" },
    );
    let (code, out) = decode(vec![
        "token".into(),
        "decode".into(),
        forged,
        "--database".into(),
        db.clone(),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("bad signature"), "{out}");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (code, out) = decode(vec![
        "token".into(),
        "decode".into(),
        at,
        "--database".into(),
        db,
        "--leeway".into(),
        "0s".into(),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("NOT verified: expired") && out.contains("ago"),
        "{out}"
    );
}

#[tokio::test]
async fn the_database_holds_no_refresh_token_and_no_private_key_in_clear() {
    let mut server = start().await;
    let name = unique("leak");
    register(&server, &name).await;
    let t = tokens(&server, &name).await;
    let (_, next) = refresh(&server, &t["refresh_token"]).await;
    server.stop().await;
    let mut everything = Vec::new();
    for entry in std::fs::read_dir(server.dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "tessera.key") {
            everything.extend(std::fs::read(path).unwrap());
        }
    }
    let haystack = String::from_utf8_lossy(&everything);
    assert!(haystack.contains(&name));
    for secret in [
        &t["refresh_token"],
        &next["refresh_token"],
        &t["access_token"],
    ] {
        let s = secret.as_str().unwrap();
        assert!(!haystack.contains(s), "found a token in the data directory");
        assert!(
            !haystack.contains(&s[7..20]),
            "found a token prefix in the data directory"
        );
    }
}

#[tokio::test]
async fn an_instance_that_has_not_reloaded_yet_accepts_a_rotated_key_on_demand() {
    // A reloads its keys only every hour; B every second. Both share one database.
    let a = start_with_args(&["--key-refresh", "1h"]).await;
    let db = format!("sqlite://{}", a.db_path().display());
    let b = start_with_args(&["--key-refresh", "1s", "--database", &db]).await;
    let name = unique("ondemand");
    register(&a, &name).await;
    let out = std::process::Command::new(BIN)
        .args(["keys", "rotate", "--database", &db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let from_b = tokens(&b, &name).await;
    let from_a = tokens(&a, &name).await;
    let kid = |t: &Value| part(t["access_token"].as_str().unwrap(), 0)["kid"].clone();
    assert_ne!(kid(&from_b), kid(&from_a), "A still signs with the old key");
    // Revoking on A with a token of the new key works: A meets the new kid,
    // reloads once, and finds the session.
    let doomed = tokens(&b, &name).await;
    let (status, _) = call(
        &a,
        Method::POST,
        "/v1/tokens/revoke",
        HeaderMap::new(),
        Some(&json!({ "token": doomed["access_token"] })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me_status(&b, bearer(&doomed["access_token"])).await, 401);
    // And A accepts the new key's tokens.
    assert_eq!(me_status(&a, bearer(&from_b["access_token"])).await, 200);
    assert_eq!(me_status(&b, bearer(&from_a["access_token"])).await, 200);
}

#[tokio::test]
async fn a_cookie_mode_client_logs_out_through_revoke_and_loses_its_cookies() {
    let server = start().await;
    let name = unique("cookielogout");
    register(&server, &name).await;
    let res = cookie_tokens(&server, &name).await;
    let access = cookie_pair(&res, "tessera_access").unwrap();
    assert_eq!(
        me_status(&server, headers([("cookie", &access)])).await,
        200
    );
    let res = server
        .request(
            Method::POST,
            "/v1/tokens/revoke",
            headers([("cookie", &access)]),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let cleared = set_cookies(&res);
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("tessera_access=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("tessera_refresh=;") && c.contains("Path=/v1/tokens/refresh")),
        "{cleared:?}"
    );
    assert_eq!(
        me_status(&server, headers([("cookie", &access)])).await,
        401
    );
    // Without a body and without a cookie there is nothing to revoke.
    let got = call(
        &server,
        Method::POST,
        "/v1/tokens/revoke",
        HeaderMap::new(),
        None,
    )
    .await;
    assert_error(&got, 400, "invalid_request");
}

/// Issue 8, item 5: once the access token (and its cookie) expired, the
/// browser sends only the refresh cookie; the logout still ends the family
/// and clears every token cookie.
#[tokio::test]
async fn a_cookie_mode_logout_works_after_the_access_token_expired() {
    let server = start().await;
    let name = unique("expiredlogout");
    register(&server, &name).await;
    let res = cookie_tokens(&server, &name).await;
    let refresh = cookie_pair(&res, "tessera_refresh").unwrap();
    let set = set_cookies(&res);
    assert!(
        set.iter()
            .any(|c| c.starts_with("tessera_refresh=") && c.contains("Path=/v1/tokens;")),
        "the refresh cookie reaches /v1/tokens/revoke: {set:?}"
    );
    // The browser has only the refresh cookie left.
    let res = server
        .request(
            Method::POST,
            "/v1/tokens/revoke",
            headers([("cookie", &refresh)]),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let cleared = set_cookies(&res);
    for (name, path) in [
        ("tessera_access=;", "Path=/;"),
        ("tessera_refresh=;", "Path=/v1/tokens;"),
        ("tessera_refresh=;", "Path=/v1/tokens/refresh;"),
    ] {
        assert!(
            cleared
                .iter()
                .any(|c| c.starts_with(name) && c.contains(path) && c.contains("Max-Age=0")),
            "{name} {path} in {cleared:?}"
        );
    }
    // The family is over: its refresh token no longer refreshes.
    let res = server
        .request(
            Method::POST,
            "/v1/tokens/refresh",
            headers([("cookie", &refresh)]),
            None,
        )
        .await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_refresh_shows_as_the_token_sessions_last_use() {
    let server = start().await;
    let name = unique("lastseen");
    register(&server, &name).await;
    let t = tokens(&server, &name).await;
    let seen = |body: &Value| {
        body["sessions"][0]["last_seen_at"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (_, before) = call(
        &server,
        Method::GET,
        "/v1/sessions",
        bearer(&t["access_token"]),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, next) = refresh(&server, &t["refresh_token"]).await;
    let (_, after) = call(
        &server,
        Method::GET,
        "/v1/sessions",
        bearer(&next["access_token"]),
        None,
    )
    .await;
    assert!(seen(&after) > seen(&before), "{before} {after}");
}

#[tokio::test]
async fn a_deleted_user_is_refused_at_once() {
    let server = start().await;
    let db = format!("sqlite://{}", server.db_path().display());
    let (name, browser) = user_with_session(&server, "gone").await;
    let t = tokens(&server, &name).await;
    let out = std::process::Command::new(BIN)
        .args(["user", "delete", &name.to_uppercase(), "--database", &db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked 2 session(s)"));
    assert_eq!(me_status(&server, bearer(&t["access_token"])).await, 401);
    assert_eq!(me_status(&server, browser.cookie_only()).await, 401);
    assert_error(
        &refresh(&server, &t["refresh_token"]).await,
        401,
        "invalid_token",
    );

    // Even if only the user row disappears (sessions untouched), a token
    // whose sub no longer names a user is refused.
    let other = unique("vanish");
    register(&server, &other).await;
    let t = tokens(&server, &other).await;
    assert_eq!(me_status(&server, bearer(&t["access_token"])).await, 200);
    let store = tessera_store_sqlite::SqliteStore::open(&db).await.unwrap();
    let sub = part(t["access_token"].as_str().unwrap(), 1)["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        tessera_store::UserStore::delete_user(&store, &sub)
            .await
            .unwrap()
    );
    // A write behind tessera's back is not announced on the change feed:
    // the server sees it when its cached copy expires (`--auth-cache-ttl`,
    // 5 s by default).
    refused_within(
        &server,
        bearer(&t["access_token"]),
        std::time::Duration::from_secs(8),
    )
    .await;
}
