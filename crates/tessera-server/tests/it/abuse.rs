//! Holding under abuse (issue 8): the throttle stops guessers and never the
//! owner, registration is throttled, old refresh tokens are reuse even within
//! the grace window, operators disable and log out users, and every
//! security-relevant operation leaves one audit event without a secret.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::support::*;

/// A login from `address` (the server trusts `X-Forwarded-For`), with the
/// device cookie `device` if any; returns status, `Retry-After` and the
/// device cookie the answer set.
async fn login_from(
    server: &Server,
    address: &str,
    username: &str,
    password: &str,
    device: Option<&str>,
) -> (u16, Option<u64>, Option<String>) {
    let mut req = server
        .client()
        .post(server.url("/v1/sessions"))
        .header("x-forwarded-for", address)
        .json(&json!({ "username": username, "password": password }));
    if let Some(device) = device {
        req = req.header("cookie", device);
    }
    let res = req.send().await.unwrap();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (
        res.status().as_u16(),
        retry,
        cookie_pair(&res, "tessera_device"),
    )
}

/// Item 1: 300 parallel failed logins from one address, each for another
/// username, get at most the address's 100 password checks; the rest are
/// `429` before any hashing. (Check-then-count let 904 of 1000 through.)
#[tokio::test]
async fn a_flood_from_one_address_gets_at_most_its_limit_of_checks() {
    flood_is_counted_first(start().await).await;
}

/// The same with the counters in Redis.
#[tokio::test]
async fn a_flood_gets_at_most_its_limit_of_checks_on_postgres_and_redis() {
    let Some(shared) = crate::scale::Shared::new("flood_on_postgres_and_redis") else {
        return;
    };
    shared
        .run(|shared| async move { flood_is_counted_first(start_on(shared.args()).await).await })
        .await;
}

async fn flood_is_counted_first(server: Server) {
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..300 {
        let req = server
            .client()
            .post(server.url("/v1/sessions"))
            .json(&json!({ "username": format!("nobody{i}"), "password": "wrong password" }));
        tries.spawn(async move { req.send().await.unwrap().status().as_u16() });
    }
    let statuses = tries.join_all().await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + throttled, 300, "{statuses:?}");
    assert!(checked <= 100, "{checked} attempts were checked");
    assert!(throttled >= 200, "{throttled} were throttled");
}

/// Item 2: after 100 failures for an account from ten other addresses, each
/// guesser is stopped, while the owner logs in at once from a device that
/// logged in before (in any case of the name), and from a new device through
/// the account's gate, whose delay is bounded (60 s at most, docs/api.md).
#[tokio::test]
async fn guessers_never_lock_the_owner_out() {
    guessers_cannot_lock_out(start_with_args(&["--trust-forwarded-for"]).await).await;
}

/// The same on PostgreSQL and Redis, where the counters live in Redis.
#[tokio::test]
async fn guessers_never_lock_the_owner_out_on_postgres_and_redis() {
    let Some(shared) = crate::scale::Shared::new("guessers_on_postgres_and_redis") else {
        return;
    };
    shared
        .run(|shared| async move {
            let args = [shared.args(), vec!["--trust-forwarded-for".to_owned()]].concat();
            guessers_cannot_lock_out(start_on(args).await).await;
        })
        .await;
}

/// A server with exactly `args` (the backends among them).
async fn start_on(args: Vec<String>) -> Server {
    Server::start_with(
        BIN,
        Options {
            args,
            ..Options::default()
        },
    )
    .await
}

async fn guessers_cannot_lock_out(server: Server) {
    let name = unique("Dave");
    register(&server, &name).await;
    let (status, _, device) = login_from(&server, "10.0.0.1", &name, PASSWORD, None).await;
    assert_eq!(status, 201);
    let device = device.expect("a device cookie");

    for guesser in 0..10 {
        let address = format!("10.1.0.{guesser}");
        for i in 0..10 {
            let (status, ..) =
                login_from(&server, &address, &name, &format!("guess {i}"), None).await;
            assert_eq!(status, 401, "guess {i} from {address}");
        }
        // This guesser is stopped, even with the right password.
        let (status, retry, _) = login_from(&server, &address, &name, PASSWORD, None).await;
        assert_eq!(status, 429, "{address}");
        assert!(retry.is_some_and(|r| (1..=900).contains(&r)), "{retry:?}");
    }

    // The owner's known device, from yet another address, in another case.
    let (status, ..) = login_from(
        &server,
        "10.2.0.1",
        &name.to_uppercase(),
        PASSWORD,
        Some(&device),
    )
    .await;
    assert_eq!(status, 201, "a known device is never locked out");
    // A device cookie of another account is no help.
    let other = unique("Eve");
    register(&server, &other).await;
    let (_, _, eve_device) = login_from(&server, "10.9.0.1", &other, PASSWORD, None).await;

    // The owner on a new device gets through the gate at once; the gate
    // then stays shut for a bounded delay for every unknown device.
    let (status, ..) = login_from(&server, "10.3.0.1", &name.to_lowercase(), PASSWORD, None).await;
    assert_eq!(status, 201, "a new device passes the gate");
    let (status, retry, _) = login_from(
        &server,
        "10.4.0.1",
        &name,
        "another guess",
        eve_device.as_deref(),
    )
    .await;
    assert_eq!(status, 429, "the gate is shut right after an attempt");
    let retry = retry.unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    let (status, ..) = login_from(&server, "10.4.0.2", &name, PASSWORD, None).await;
    assert_eq!(status, 201, "after the delay a new device gets in");
    // Other accounts never noticed.
    let (status, ..) = login_from(&server, "10.1.0.0", &other, PASSWORD, None).await;
    assert_eq!(status, 201);

    // Someone behind the owner's address (a NAT, a proxy) spends the
    // address's 100 attempts on other names: the owner's known device still
    // gets in from there, a new device there does not.
    for i in 0..100 {
        login_from(&server, "10.7.0.1", &format!("sprayed{i}"), "guess", None).await;
    }
    let (status, ..) = login_from(&server, "10.7.0.1", &other, PASSWORD, None).await;
    assert_eq!(status, 429, "the address is spent for unknown devices");
    let (status, ..) = login_from(&server, "10.7.0.1", &name, PASSWORD, Some(&device)).await;
    assert_eq!(
        status, 201,
        "a known device is not held by its address's limit"
    );
}

/// Item 9: registration is throttled per address (20 per 15 minutes).
#[tokio::test]
async fn registration_is_throttled_per_address() {
    let server = start_with_args(&["--trust-forwarded-for"]).await;
    let taken = unique("taken");
    register(&server, &taken).await;
    let mut statuses = Vec::new();
    for _ in 0..25 {
        let res = server
            .client()
            .post(server.url("/v1/users"))
            .header("x-forwarded-for", "10.5.0.1")
            .json(&json!({ "username": taken, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses[..20], [409; 20], "{statuses:?}");
    assert_eq!(statuses[20..], [429; 5], "{statuses:?}");
    // Another address still registers.
    let res = server
        .client()
        .post(server.url("/v1/users"))
        .header("x-forwarded-for", "10.5.0.2")
        .json(&json!({ "username": unique("fresh"), "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

async fn refresh(server: &Server, token: &Value) -> (u16, Value) {
    let res = server
        .post_json("/v1/tokens/refresh", &json!({ "refresh_token": token }))
        .await;
    status_json(res).await
}

/// Item 6: within the grace window only the direct predecessor of the live
/// refresh token gets its successor again; an older ancestor is reuse, and
/// ends the family.
#[tokio::test]
async fn grace_covers_only_the_direct_predecessor() {
    grace_only_for_the_predecessor(start_with_args(&["--refresh-grace", "10s"]).await).await;
}

/// The same with the refresh tokens in Redis.
#[tokio::test]
async fn grace_covers_only_the_direct_predecessor_on_postgres_and_redis() {
    let Some(shared) = crate::scale::Shared::new("grace_on_postgres_and_redis") else {
        return;
    };
    shared
        .run(|shared| async move {
            let args = [
                shared.args(),
                vec!["--refresh-grace".to_owned(), "10s".to_owned()],
            ]
            .concat();
            grace_only_for_the_predecessor(start_on(args).await).await;
        })
        .await;
}

async fn grace_only_for_the_predecessor(server: Server) {
    let name = unique("grace");
    register(&server, &name).await;
    let rt1 = tokens(&server, &name).await["refresh_token"].clone();
    let (status, body) = refresh(&server, &rt1).await;
    assert_eq!(status, 200, "{body}");
    let rt2 = body["refresh_token"].clone();
    let (status, body) = refresh(&server, &rt2).await;
    assert_eq!(status, 200, "{body}");
    let rt3 = body["refresh_token"].clone();
    let access = body["access_token"].clone();

    // RT2 lost its answer: within grace it gets RT3 again.
    let (status, body) = refresh(&server, &rt2).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refresh_token"], rt3);

    // RT1 is an older ancestor: reuse, the family ends.
    let got = refresh(&server, &rt1).await;
    assert_error(&got, 401, "refresh_token_reused");
    let got = refresh(&server, &rt3).await;
    assert_eq!(got.0, 401, "{}", got.1);
    let (status, _) = call(&server, Method::GET, "/v1/me", bearer(&access), None).await;
    assert_eq!(status, 401, "the family's access tokens die with it");
}

const ADMIN_KEY: &str = "an admin key of some length";

/// Item 11: an operator disables a user (their cookie sessions, token
/// families and access tokens stop at once; the right password gets the same
/// refusal as a wrong one), enables them again, and logs them out everywhere.
/// Through the admin route and the command line.
#[tokio::test]
async fn operators_disable_enable_and_log_out_users() {
    let server = start_with_args(&["--admin-key", ADMIN_KEY]).await;
    let db = vec![
        "--database".to_owned(),
        format!("sqlite://{}", server.db_path().display()),
    ];
    operators_manage_users(server, db).await;
}

/// The same on PostgreSQL and Redis: the commands end sessions kept in Redis.
#[tokio::test]
async fn operators_disable_enable_and_log_out_users_on_postgres_and_redis() {
    let Some(shared) = crate::scale::Shared::new("operators_on_postgres_and_redis") else {
        return;
    };
    shared
        .run(|shared| async move {
            let args = [
                shared.args(),
                vec!["--admin-key".to_owned(), ADMIN_KEY.to_owned()],
            ]
            .concat();
            operators_manage_users(start_on(args).await, shared.args()).await;
        })
        .await;
}

/// `db`: the flags that name the server's stores, for the commands.
async fn operators_manage_users(server: Server, db: Vec<String>) {
    let cli = |command: &[&str]| {
        let args: Vec<&str> = command
            .iter()
            .copied()
            .chain(db.iter().map(String::as_str))
            .collect();
        crate::cli::run(&args, &[], None)
    };
    let (name, session) = user_with_session(&server, "Mallory").await;
    let grant = tokens(&server, &name).await;
    let me = |h: HeaderMap| call(&server, Method::GET, "/v1/me", h, None);
    assert_eq!(me(session.cookie_only()).await.0, 200);
    assert_eq!(me(bearer(&grant["access_token"])).await.0, 200);

    // Without the key, or with a wrong one: refused.
    let res = server
        .request(
            Method::POST,
            &format!("/v1/admin/users/{name}/disable"),
            headers([("authorization", "Bearer wrong key of some length")]),
            None,
        )
        .await;
    assert_error(&status_json(res).await, 401, "unauthenticated");
    assert_eq!(me(session.cookie_only()).await.0, 200);

    let (status, body) = admin(
        &server,
        ADMIN_KEY,
        &format!("/v1/admin/users/{}/disable", name.to_lowercase()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_sessions"], 2);
    assert!(body["user"]["disabled_at"].is_string(), "{body}");
    assert_eq!(me(session.cookie_only()).await.0, 401);
    assert_eq!(me(bearer(&grant["access_token"])).await.0, 401);
    assert_eq!(refresh(&server, &grant["refresh_token"]).await.0, 401);
    let right = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": name, "password": PASSWORD }),
        )
        .await;
    let right = status_json(right).await;
    let wrong = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": name, "password": "wrong password" }),
        )
        .await;
    let wrong = status_json(wrong).await;
    assert_error(&right, 401, "invalid_credentials");
    assert_eq!(
        right, wrong,
        "a disabled user's login looks like a wrong password"
    );

    let (status, body) = admin(
        &server,
        ADMIN_KEY,
        &format!("/v1/admin/users/{name}/enable"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["user"]["disabled_at"].is_null(), "{body}");
    let again = login(&server, &name).await;
    let grant = tokens(&server, &name).await;

    let (status, body) = admin(
        &server,
        ADMIN_KEY,
        &format!("/v1/admin/users/{name}/logout"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_sessions"], 2);
    assert_eq!(me(again.cookie_only()).await.0, 401);
    assert_eq!(me(bearer(&grant["access_token"])).await.0, 401);
    login(&server, &name).await;

    let (status, body) = admin(&server, ADMIN_KEY, "/v1/admin/users/nobody_here/disable").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    // The same from the command line, on the running server's database.
    let live = login(&server, &name).await;
    let (code, out, err) = cli(&["user", "disable", &name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("disabled user"), "{out}");
    assert_eq!(me(live.cookie_only()).await.0, 401);
    let (code, out, _) = cli(&["user", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.contains(&name) && l.contains("disabled since")),
        "{out}"
    );
    let refused = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": name, "password": PASSWORD }),
        )
        .await;
    assert_eq!(refused.status(), 401);
    let (code, out, err) = cli(&["user", "enable", &name]);
    assert_eq!(code, 0, "{out}{err}");
    let live = login(&server, &name).await;
    let (code, out, err) = cli(&["user", "logout", &name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("revoked 1 session"), "{out}");
    assert_eq!(me(live.cookie_only()).await.0, 401);
    login(&server, &name).await;
}

/// Item 10: a scripted run leaves every audit event in the log, with the
/// user id and client, and none of the secrets it used.
#[tokio::test]
async fn every_security_event_is_audited_without_secrets() {
    let server = start_with_args(&["--admin-key", ADMIN_KEY, "--refresh-grace", "0s"]).await;
    let name = unique("audited");
    let user = register(&server, &name).await;
    let user_id = user["id"].as_str().unwrap().to_owned();
    let mut secrets = vec![PASSWORD.to_owned(), ADMIN_KEY.to_owned()];

    let wrong = "a wrong password of mine";
    secrets.push(wrong.to_owned());
    for _ in 0..11 {
        server
            .post_json(
                "/v1/sessions",
                &json!({ "username": name, "password": wrong }),
            )
            .await;
    }
    let other = unique("audited_other");
    register(&server, &other).await;
    let first = login(&server, &other).await;
    secrets.push(first.secret.clone());
    secrets.push(first.csrf.clone());
    let second = login(&server, &other).await;
    secrets.push(second.secret.clone());
    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/v1/sessions/{}", second.session_id),
        first.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &server,
        Method::DELETE,
        "/v1/sessions",
        first.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let new_password = "a new password for the audit";
    secrets.push(new_password.to_owned());
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/users/me/password",
        first.with_csrf(),
        Some(&json!({ "current_password": PASSWORD, "new_password": new_password })),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = call(
        &server,
        Method::DELETE,
        "/v1/sessions/current",
        first.with_csrf(),
        None,
    )
    .await;
    assert_eq!(status, 204);

    let third = unique("audited_tokens");
    register(&server, &third).await;
    let grant = tokens(&server, &third).await;
    let rt1 = grant["refresh_token"].as_str().unwrap().to_owned();
    secrets.push(rt1.clone());
    secrets.push(grant["access_token"].as_str().unwrap().to_owned());
    let (status, body) = refresh(&server, &grant["refresh_token"]).await;
    assert_eq!(status, 200);
    secrets.push(body["refresh_token"].as_str().unwrap().to_owned());
    assert_eq!(refresh(&server, &grant["refresh_token"]).await.0, 401);
    let grant = tokens(&server, &third).await;
    secrets.push(grant["access_token"].as_str().unwrap().to_owned());
    let res = server
        .post_json(
            "/v1/tokens/revoke",
            &json!({ "token": grant["access_token"] }),
        )
        .await;
    assert_eq!(res.status(), 200);

    for op in ["disable", "enable", "logout"] {
        assert_eq!(
            admin(&server, ADMIN_KEY, &format!("/v1/admin/users/{third}/{op}"))
                .await
                .0,
            200
        );
    }
    let db = format!("sqlite://{}", server.db_path().display());
    // A command writes its audit event to its own standard error.
    for (args, event) in [
        (vec!["keys", "rotate"], "keys_rotated"),
        (vec!["user", "delete", &third], "user_deleted"),
    ] {
        let args = [&args[..], &["--database", db.as_str()]].concat();
        let (code, out, err) = crate::cli::run(&args, &[], None);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            err.contains(&format!("event=\"{event}\""))
                && err.contains("user_agent=\"tessera command line\""),
            "{err}"
        );
    }

    let log = server.log();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tessera::audit"))
        .collect();
    for event in [
        "user_registered",
        "login_succeeded",
        "login_failed",
        "login_throttled",
        "session_revoked",
        "other_sessions_revoked",
        "password_changed",
        "logout",
        "refresh_reused",
        "token_revoked",
        "user_disabled",
        "user_enabled",
        "user_logged_out",
    ] {
        let line = audit
            .iter()
            .find(|l| l.contains(&format!("event=\"{event}\"")))
            .unwrap_or_else(|| panic!("no {event} event in the log:\n{}", audit.join("\n")));
        assert!(line.contains("ip=\"127.0.0.1\""), "{line}");
    }
    assert!(
        audit
            .iter()
            .any(|l| l.contains("event=\"refresh_reused\"") && l.contains("WARN")),
        "reuse is a warning"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("event=\"login_failed\"") && l.contains(&user_id)),
        "a failed login names the user"
    );
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
}

/// Item 8: logins, registrations and cookie-authenticated writes from a
/// foreign page are refused even before the CSRF token is looked at; the
/// server's own origin and the trusted ones pass, and so do clients that are
/// not browsers. Forward-auth judges the original request's method.
#[tokio::test]
async fn cross_site_requests_are_refused() {
    let server = start_with_args(&[
        "--trusted-origins",
        "https://app.example.com/",
        "--issuer",
        "https://auth.example.com/",
    ])
    .await;
    let name = unique("origin");
    register(&server, &name).await;
    let own = server.base().trim_end_matches('/').to_owned();
    let login_with = |extra: HeaderMap| {
        server
            .client()
            .post(server.url("/v1/sessions"))
            .headers(extra)
            .json(&json!({ "username": name, "password": PASSWORD }))
            .send()
    };
    for foreign in [
        headers([("origin", "https://evil.example")]),
        headers([("origin", "null")]),
        // X-Forwarded-Host counts only behind a trusted proxy.
        headers([
            ("origin", "https://proxied.example"),
            ("x-forwarded-host", "proxied.example"),
        ]),
        headers([("sec-fetch-site", "cross-site")]),
        headers([
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "same-origin"),
        ]),
    ] {
        let got = status_json(login_with(foreign.clone()).await.unwrap()).await;
        assert_error(&got, 403, "cross_site_request");
    }
    let res = server
        .client()
        .post(server.url("/v1/users"))
        .header("origin", "https://evil.example")
        .json(&json!({ "username": unique("planted"), "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_error(&status_json(res).await, 403, "cross_site_request");
    for fine in [
        headers([("origin", own.as_str())]),
        headers([("origin", "https://app.example.com")]),
        headers([("origin", "https://auth.example.com")]),
        headers([("sec-fetch-site", "same-origin")]),
        HeaderMap::new(),
    ] {
        assert_eq!(login_with(fine).await.unwrap().status(), 201);
    }

    // A cookie-authenticated write from a foreign page: refused even with
    // the CSRF token; from the own origin it works.
    let session = login(&server, &name).await;
    let mut evil = session.with_csrf();
    evil.insert("origin", "https://evil.example".parse().unwrap());
    let got = call(&server, Method::DELETE, "/v1/sessions/current", evil, None).await;
    assert_error(&got, 403, "cross_site_request");
    assert_eq!(
        call(&server, Method::GET, "/v1/me", session.cookie_only(), None)
            .await
            .0,
        200
    );
    // A bearer client without cookies is no browser's victim.
    let grant = tokens(&server, &name).await;
    let mut bearer_evil = bearer(&grant["access_token"]);
    bearer_evil.insert("origin", "https://evil.example".parse().unwrap());
    let got = call(
        &server,
        Method::DELETE,
        &format!("/v1/sessions/{}", session.session_id),
        bearer_evil,
        None,
    )
    .await;
    assert_eq!(got.0, 204, "{}", got.1);

    // Forward-auth applies the CSRF rule to the original method.
    let session = login(&server, &name).await;
    let verify = |extra: &[(&'static str, &str)]| {
        let mut h = session.cookie_only();
        for (k, v) in extra {
            h.insert(*k, v.parse().unwrap());
        }
        call(&server, Method::GET, "/v1/auth/verify", h, None)
    };
    assert_eq!(verify(&[]).await.0, 200);
    assert_eq!(verify(&[("x-forwarded-method", "GET")]).await.0, 200);
    assert_error(
        &verify(&[("x-forwarded-method", "POST")]).await,
        403,
        "csrf_failed",
    );
    assert_error(
        &verify(&[("x-original-method", "delete")]).await,
        403,
        "csrf_failed",
    );
    assert_error(
        &verify(&[("x-forwarded-method", "P O S T")]).await,
        403,
        "csrf_failed",
    );
    assert_eq!(
        verify(&[
            ("x-forwarded-method", "POST"),
            ("x-csrf-token", &session.csrf)
        ])
        .await
        .0,
        200
    );
    assert_error(
        &verify(&[
            ("x-forwarded-method", "POST"),
            ("x-csrf-token", &session.csrf),
            ("origin", "https://evil.example"),
        ])
        .await,
        403,
        "cross_site_request",
    );
}

/// Item 9: HSTS whenever cookies are Secure (unless turned off), the login
/// page's headers, data files readable by their owner only, and no
/// predictable master key.
#[tokio::test]
async fn deployment_defaults_are_strict() {
    use std::os::unix::fs::PermissionsExt as _;

    let secure = Server::start_with(
        BIN,
        Options {
            secure_cookies: true,
            ..Options::default()
        },
    )
    .await;
    let res = secure.get("/healthz", HeaderMap::new()).await;
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let off = Server::start_with(
        BIN,
        Options {
            secure_cookies: true,
            args: vec!["--disable-hsts".to_owned()],
            ..Options::default()
        },
    )
    .await;
    let res = off.get("/healthz", HeaderMap::new()).await;
    assert!(res.headers().get("strict-transport-security").is_none());
    let dev = start().await;
    let res = dev.get("/login", HeaderMap::new()).await;
    assert!(res.headers().get("strict-transport-security").is_none());
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    for part in [
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }

    user_with_session(&dev, "files").await;
    for suffix in ["", "-wal"] {
        let mut path = dev.db_path().into_os_string();
        path.push(suffix);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path:?}");
    }

    for weak in ["00".repeat(32), "0123456789abcdef".repeat(4)] {
        let (code, out, err) = crate::cli::run(
            &[
                "config",
                "check",
                "--master-key",
                &weak,
                "--database",
                "postgres://h/db",
            ],
            &[],
            None,
        );
        let _ = out;
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("too predictable"), "{err}");
    }
}
