//! Session-based authentication, every row of `docs/api.md`'s session routes.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn login_sets_an_httponly_lax_cookie_and_returns_the_session() {
    let server = start().await;
    let name = unique("Login");
    let user = register(&server, &name).await;
    let res = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": name.to_lowercase(), "password": PASSWORD }),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let cookies = set_cookies(&res);
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let cookie = cookies
        .iter()
        .find(|c| c.starts_with("tessera_session="))
        .unwrap();
    let device = cookies
        .iter()
        .find(|c| c.starts_with("tessera_device=dv1."))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=31536000"] {
        assert!(device.contains(attr), "{attr} missing in {device}");
    }
    let secret = cookie
        .strip_prefix("tessera_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert!(
        secret.starts_with("tsr_ss_") && secret.len() >= 7 + 43,
        "{secret}"
    );
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "dev cookies are not Secure: {cookie}"
    );
    // Not asked to be remembered: the browser drops it when it closes.
    assert!(!cookie.contains("Max-Age"), "{cookie}");
    let remembered = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": name, "password": PASSWORD, "remember": true }),
        )
        .await;
    let remembered = set_cookies(&remembered)
        .into_iter()
        .find(|c| c.starts_with("tessera_session="))
        .unwrap();
    assert!(remembered.contains("; Max-Age=86400;"), "{remembered}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user"]["id"], user["id"]);
    assert_eq!(body["user"]["username"], name.as_str());
    let session = &body["session"];
    for field in ["id", "created_at", "expires_at", "idle_expires_at"] {
        assert!(session[field].is_string(), "session.{field} in {body}");
    }
    assert_ne!(
        session["id"].as_str().unwrap(),
        secret,
        "the public id is not the secret"
    );
    assert!(body["csrf_token"].as_str().is_some_and(|t| t.len() >= 32));
}

#[tokio::test]
async fn secure_cookies_by_default_use_the_host_prefix() {
    let server = Server::start_with(
        BIN,
        Options {
            secure_cookies: true,
            ..Options::default()
        },
    )
    .await;
    let name = unique("secure");
    register(&server, &name).await;
    let res = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": name, "password": PASSWORD }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let cookies = set_cookies(&res);
    let cookie = cookies
        .iter()
        .find(|c| c.starts_with("__Host-tessera_session="))
        .unwrap();
    assert!(
        cookie.starts_with("__Host-tessera_session=tsr_ss_"),
        "{cookie}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-tessera_device=dv1.") && c.contains("; Secure")),
        "{cookies:?}"
    );
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    // The server reads it back under that name.
    let pair = cookie.split(';').next().unwrap().to_owned();
    let (status, body) = call(
        &server,
        Method::GET,
        "/v1/me",
        headers([("cookie", &pair)]),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The development name is not accepted by a secure server.
    let dev = pair.replace("__Host-tessera_session", "tessera_session");
    let (status, _) = call(
        &server,
        Method::GET,
        "/v1/me",
        headers([("cookie", &dev)]),
        None,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_identical_answers() {
    let server = start().await;
    let name = unique("ident");
    register(&server, &name).await;
    let wrong = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": name, "password": "wrong password!" }),
        )
        .await;
    let unknown = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": unique("nobody"), "password": "wrong password!" }),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let strip = |h: &HeaderMap| {
        let mut h = h.clone();
        h.remove("date");
        h
    };
    assert_eq!(strip(wrong.headers()), strip(unknown.headers()));
    assert!(set_cookies(&wrong).is_empty());
    let (w, u) = (wrong.text().await.unwrap(), unknown.text().await.unwrap());
    assert_eq!(w, u);
    let body: serde_json::Value = serde_json::from_str(&w).unwrap();
    assert_eq!(body["error"], "invalid_credentials");
}

#[tokio::test]
async fn every_login_gets_a_fresh_secret_even_when_a_cookie_is_presented() {
    let server = start().await;
    let (name, first) = user_with_session(&server, "fixation").await;
    // A login carrying an existing (or attacker-planted) cookie never reuses it.
    let res = server
        .request(
            Method::POST,
            "/v1/sessions",
            first.cookie_only(),
            Some(&json!({ "username": name, "password": PASSWORD })),
        )
        .await;
    assert_eq!(res.status(), 201);
    let second = cookie_pair(&res, "tessera_session").unwrap();
    assert_ne!(second, first.cookie);
    let planted = "tessera_session=tsr_ss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let res = server
        .request(
            Method::POST,
            "/v1/sessions",
            headers([("cookie", planted)]),
            Some(&json!({ "username": name, "password": PASSWORD })),
        )
        .await;
    assert_ne!(cookie_pair(&res, "tessera_session").unwrap(), planted);
    let (status, _) = call(
        &server,
        Method::GET,
        "/v1/me",
        headers([("cookie", planted)]),
        None,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn current_session_needs_the_cookie() {
    let server = start().await;
    let (name, login) = user_with_session(&server, "current").await;
    let res = server
        .get("/v1/sessions/current", login.cookie_only())
        .await;
    assert_eq!(res.headers()["cache-control"], "no-store");
    let (status, body) = status_json(res).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], name.as_str());
    assert_eq!(body["session"]["id"], login.session_id.as_str());
    assert_eq!(
        body["session"]["expires_at"],
        login.body["session"]["expires_at"]
    );
    assert_eq!(body["csrf_token"], login.csrf.as_str());

    let got = call(
        &server,
        Method::GET,
        "/v1/sessions/current",
        HeaderMap::new(),
        None,
    )
    .await;
    assert_error(&got, 401, "unauthenticated");
    for junk in [
        "tessera_session=",
        "tessera_session=garbage",
        "tessera_session=tsr_ss_short",
        "other=1",
    ] {
        let got = call(
            &server,
            Method::GET,
            "/v1/sessions/current",
            headers([("cookie", junk)]),
            None,
        )
        .await;
        assert_error(&got, 401, "unauthenticated");
    }
}

#[tokio::test]
async fn logout_needs_csrf_then_revokes_on_the_server() {
    let server = start().await;
    let (_, login) = user_with_session(&server, "logout").await;

    let got = call(
        &server,
        Method::DELETE,
        "/v1/sessions/current",
        login.cookie_only(),
        None,
    )
    .await;
    assert_error(&got, 403, "csrf_failed");
    let wrong = headers([
        ("cookie", &login.cookie),
        ("x-csrf-token", "bm90LXRoZS10b2tlbg"),
    ]);
    let got = call(&server, Method::DELETE, "/v1/sessions/current", wrong, None).await;
    assert_error(&got, 403, "csrf_failed");
    // Refused requests changed nothing.
    assert_eq!(
        call(&server, Method::GET, "/v1/me", login.cookie_only(), None)
            .await
            .0,
        200
    );

    let res = server
        .request(
            Method::DELETE,
            "/v1/sessions/current",
            login.with_csrf(),
            None,
        )
        .await;
    assert_eq!(res.status(), 204);
    let cleared = set_cookies(&res).pop().expect("a clearing Set-Cookie");
    assert!(cleared.starts_with("tessera_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // Replaying the old cookie is refused everywhere.
    let got = call(
        &server,
        Method::GET,
        "/v1/sessions/current",
        login.cookie_only(),
        None,
    )
    .await;
    assert_error(&got, 401, "unauthenticated");
    let got = call(&server, Method::GET, "/v1/me", login.cookie_only(), None).await;
    assert_error(&got, 401, "unauthenticated");
    let got = call(
        &server,
        Method::DELETE,
        "/v1/sessions/current",
        login.with_csrf(),
        None,
    )
    .await;
    assert_error(&got, 401, "unauthenticated");
}

#[tokio::test]
async fn the_device_list_shows_live_sessions_of_the_caller_only() {
    let server = start().await;
    let name = unique("devices");
    register(&server, &name).await;
    let laptop = login(&server, &name).await;
    let phone = server
        .request(
            Method::POST,
            "/v1/sessions",
            headers([("user-agent", "PhoneBrowser/1.0")]),
            Some(&json!({ "username": name, "password": PASSWORD })),
        )
        .await;
    assert_eq!(phone.status(), 201);
    let (_, stranger) = user_with_session(&server, "stranger").await;

    let (status, body) = call(
        &server,
        Method::GET,
        "/v1/sessions",
        laptop.cookie_only(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{body}");
    for s in sessions {
        for field in [
            "id",
            "kind",
            "created_at",
            "last_seen_at",
            "expires_at",
            "current",
        ] {
            assert!(!s[field].is_null(), "{field} in {s}");
        }
        assert_eq!(s["kind"], "cookie");
        assert_eq!(s["ip"], "127.0.0.1");
        assert_ne!(s["id"], stranger.session_id.as_str());
    }
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], laptop.session_id.as_str());
    assert!(
        sessions
            .iter()
            .any(|s| s["user_agent"] == "PhoneBrowser/1.0")
    );

    let got = call(&server, Method::GET, "/v1/sessions", HeaderMap::new(), None).await;
    assert_error(&got, 401, "unauthenticated");
}

#[tokio::test]
async fn revoking_one_device_logs_it_out_and_only_own_sessions_can_be_revoked() {
    let server = start().await;
    let name = unique("revoke");
    register(&server, &name).await;
    let mine = login(&server, &name).await;
    let stolen = login(&server, &name).await;
    let (_, other) = user_with_session(&server, "other").await;

    let path = format!("/v1/sessions/{}", stolen.session_id);
    let got = call(&server, Method::DELETE, &path, mine.cookie_only(), None).await;
    assert_error(&got, 403, "csrf_failed");

    // Another user's session is "not found", like one that never existed.
    let foreign = format!("/v1/sessions/{}", other.session_id);
    let got = call(&server, Method::DELETE, &foreign, mine.with_csrf(), None).await;
    assert_error(&got, 404, "not_found");
    assert_eq!(
        call(&server, Method::GET, "/v1/me", other.cookie_only(), None)
            .await
            .0,
        200
    );
    let got = call(
        &server,
        Method::DELETE,
        "/v1/sessions/ses_doesnotexist",
        mine.with_csrf(),
        None,
    )
    .await;
    assert_error(&got, 404, "not_found");

    let (status, _) = call(&server, Method::DELETE, &path, mine.with_csrf(), None).await;
    assert_eq!(status, 204);
    let got = call(&server, Method::GET, "/v1/me", stolen.cookie_only(), None).await;
    assert_error(&got, 401, "unauthenticated");
    assert_eq!(
        call(&server, Method::GET, "/v1/me", mine.cookie_only(), None)
            .await
            .0,
        200
    );
    // Revoking it again: it is gone.
    let got = call(&server, Method::DELETE, &path, mine.with_csrf(), None).await;
    assert_error(&got, 404, "not_found");

    let got = call(&server, Method::DELETE, &path, HeaderMap::new(), None).await;
    assert_error(&got, 401, "unauthenticated");
}

#[tokio::test]
async fn revoking_all_other_sessions_keeps_the_current_one() {
    let server = start().await;
    let name = unique("others");
    register(&server, &name).await;
    let here = login(&server, &name).await;
    let a = login(&server, &name).await;
    let b = login(&server, &name).await;

    let got = call(
        &server,
        Method::DELETE,
        "/v1/sessions",
        here.cookie_only(),
        None,
    )
    .await;
    assert_error(&got, 403, "csrf_failed");
    assert_eq!(
        call(&server, Method::GET, "/v1/me", a.cookie_only(), None)
            .await
            .0,
        200
    );

    let (status, _) = call(
        &server,
        Method::DELETE,
        "/v1/sessions",
        here.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204);
    for gone in [&a, &b] {
        assert_eq!(
            call(&server, Method::GET, "/v1/me", gone.cookie_only(), None)
                .await
                .0,
            401
        );
    }
    assert_eq!(
        call(&server, Method::GET, "/v1/me", here.cookie_only(), None)
            .await
            .0,
        200
    );
    let (_, body) = call(
        &server,
        Method::GET,
        "/v1/sessions",
        here.cookie_only(),
        None,
    )
    .await;
    assert_eq!(body["sessions"].as_array().unwrap().len(), 1);

    let got = call(
        &server,
        Method::DELETE,
        "/v1/sessions",
        HeaderMap::new(),
        None,
    )
    .await;
    assert_error(&got, 401, "unauthenticated");
}

#[tokio::test]
async fn me_answers_for_a_session() {
    let server = start().await;
    let (name, login) = user_with_session(&server, "me").await;
    let (status, body) = call(&server, Method::GET, "/v1/me", login.cookie_only(), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], name.as_str());
    assert_eq!(body["user"]["id"], login.body["user"]["id"]);
    assert_eq!(body["auth"]["method"], "session");
    assert_eq!(body["auth"]["session_id"], login.session_id.as_str());
    assert!(body["auth"]["expires_at"].is_string());

    let res = server.get("/v1/me", HeaderMap::new()).await;
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_error(&status_json(res).await, 401, "unauthenticated");
}

#[tokio::test]
async fn a_bearer_token_wins_over_the_cookie() {
    let server = start().await;
    let (_, login) = user_with_session(&server, "bearerwins").await;
    let both = headers([
        ("cookie", &login.cookie),
        ("authorization", "Bearer not.a.token"),
    ]);
    let res = server.get("/v1/me", both).await;
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    // docs/api.md: /v1/me answers 401 unauthenticated, and RFC 6750's header says why.
    assert_error(&status_json(res).await, 401, "unauthenticated");
}

#[tokio::test]
async fn credentials_in_the_url_are_ignored() {
    let server = start().await;
    let (_, login) = user_with_session(&server, "url").await;
    for query in [
        format!("?tessera_session={}", login.secret),
        format!("?session={}", login.secret),
        format!("?access_token={}", login.secret),
    ] {
        let got = call(
            &server,
            Method::GET,
            &format!("/v1/me{query}"),
            HeaderMap::new(),
            None,
        )
        .await;
        assert_error(&got, 401, "unauthenticated");
    }
}

#[tokio::test]
async fn an_idle_session_times_out_and_use_keeps_it_alive() {
    let server = start_with_args(&["--session-idle", "2s", "--session-ttl", "1h"]).await;
    let name = unique("idle");
    register(&server, &name).await;
    let active = login(&server, &name).await;
    let idle = login(&server, &name).await;
    // Use `active` every 0.5 s for 3 s: longer than the idle window in total.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, body) = call(&server, Method::GET, "/v1/me", active.cookie_only(), None).await;
        assert_eq!(status, 200, "active session died: {body}");
    }
    let got = call(&server, Method::GET, "/v1/me", idle.cookie_only(), None).await;
    assert_error(&got, 401, "unauthenticated");
}

#[tokio::test]
async fn the_absolute_lifetime_ends_even_an_active_session() {
    let server = start_with_args(&["--session-idle", "1h", "--session-ttl", "2s"]).await;
    let (_, login) = user_with_session(&server, "absolute").await;
    assert!(login.body["session"]["expires_at"].as_str().is_some());
    let mut last = 200;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = call(&server, Method::GET, "/v1/me", login.cookie_only(), None)
            .await
            .0;
    }
    assert_eq!(last, 401, "still alive after its absolute lifetime");
}

#[tokio::test]
async fn repeated_failures_are_throttled_and_success_is_not() {
    let server = start().await;
    let name = unique("throttle");
    register(&server, &name).await;
    // Successful logins never count towards the limit.
    for _ in 0..12 {
        login(&server, &name).await;
    }
    for i in 0..10 {
        let res = server
            .post_json(
                "/v1/sessions",
                &json!({ "username": name, "password": "wrong password" }),
            )
            .await;
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    // Now even the right password waits: a throttled guess learns nothing.
    let res = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": name.to_uppercase(), "password": PASSWORD }),
        )
        .await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert_error(&status_json(res).await, 429, "too_many_attempts");
    // Other users are unaffected.
    let (other, _) = user_with_session(&server, "bystander").await;
    login(&server, &other).await;
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let mut server = start().await;
    let (name, login) = user_with_session(&server, "restart").await;
    server.restart().await;
    let (status, body) = call(&server, Method::GET, "/v1/me", login.cookie_only(), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], name.as_str());
    // The CSRF token still matches too.
    let (status, _) = call(
        &server,
        Method::DELETE,
        "/v1/sessions/current",
        login.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn neither_the_database_nor_the_log_holds_a_secret_or_password() {
    let mut server = start().await;
    let name = unique("leak");
    let password = "a very unusual password 8d1f";
    let res = server
        .post_json(
            "/v1/users",
            &json!({ "username": name, "password": password }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let login = login_as(&server, &name, password).await;
    let (status, _) = call(&server, Method::GET, "/v1/me", login.cookie_only(), None).await;
    assert_eq!(status, 200);
    let bad = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": name, "password": "wrong and unusual 77q" }),
        )
        .await;
    assert_eq!(bad.status(), 401);
    // Stop so that SQLite checkpoints its write-ahead log into the file.
    server.stop().await;
    let mut everything = Vec::new();
    for entry in std::fs::read_dir(server.dir()).unwrap() {
        everything.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let haystack = String::from_utf8_lossy(&everything);
    assert!(haystack.contains(&name), "the test reads the right files");
    for needle in [
        login.secret.as_str(),
        &login.secret[7..],
        password,
        "wrong and unusual 77q",
        &login.csrf,
    ] {
        assert!(
            !haystack.contains(needle),
            "found {needle:?} in the data directory"
        );
    }
}

#[tokio::test]
async fn requests_failing_csrf_do_not_keep_a_session_alive() {
    let server = start_with_args(&["--session-idle", "2s", "--session-ttl", "1h"]).await;
    let (_, login) = user_with_session(&server, "csrfidle").await;
    // A cross-site page firing requests without the token every half second:
    // refused (403) while the session lives, and it does not keep it alive.
    let forged = || {
        call(
            &server,
            Method::DELETE,
            "/v1/sessions",
            login.cookie_only(),
            None,
        )
    };
    assert_error(&forged().await, 403, "csrf_failed");
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = forged().await;
        assert!(got.0 == 403 || got.0 == 401, "{got:?}");
    }
    let got = call(&server, Method::GET, "/v1/me", login.cookie_only(), None).await;
    assert_error(&got, 401, "unauthenticated");
}

#[tokio::test]
async fn the_client_address_comes_from_the_proxy_only_when_trusted() {
    for (trusted, expected) in [(false, "127.0.0.1"), (true, "203.0.113.7")] {
        let server = if trusted {
            start_with_args(&["--trust-forwarded-for"]).await
        } else {
            start().await
        };
        let name = unique("xff");
        register(&server, &name).await;
        let res = server
            .request(
                Method::POST,
                "/v1/sessions",
                headers([("x-forwarded-for", "6.6.6.6, 203.0.113.7")]),
                Some(&json!({ "username": name, "password": PASSWORD })),
            )
            .await;
        let cookie = cookie_pair(&res, "tessera_session").unwrap();
        let (_, body) = call(
            &server,
            Method::GET,
            "/v1/sessions",
            headers([("cookie", &cookie)]),
            None,
        )
        .await;
        assert_eq!(body["sessions"][0]["ip"], expected, "trusted: {trusted}");
    }
}

#[tokio::test]
async fn parallel_guesses_cannot_get_past_the_throttle() {
    let server = start().await;
    let name = unique("burst");
    register(&server, &name).await;
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..30 {
        let req = server
            .client()
            .post(server.url("/v1/sessions"))
            .json(&json!({ "username": name, "password": format!("wrong guess {i}") }));
        guesses.spawn(async move { req.send().await.unwrap().status().as_u16() });
    }
    let statuses = guesses.join_all().await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + throttled, 30, "{statuses:?}");
    assert!(
        checked <= 10,
        "{checked} guesses were checked: {statuses:?}"
    );
}
