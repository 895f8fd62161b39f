//! Accounts: registration and password change.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn registration_returns_the_new_account() {
    let server = start().await;
    let name = unique("Ada.Lovelace@x-1");
    let res = server
        .post_json(
            "/v1/users",
            &json!({ "username": name, "password": PASSWORD, "extra": [1, 2] }),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(body["username"], name.as_str(), "stored as given");
    let created = body["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());
}

#[tokio::test]
async fn invalid_registrations_get_400_and_change_nothing() {
    let server = start().await;
    let cases = [
        json!({ "username": "ab", "password": PASSWORD }),
        json!({ "username": "a".repeat(65), "password": PASSWORD }),
        json!({ "username": "has space", "password": PASSWORD }),
        json!({ "username": "semi;colon", "password": PASSWORD }),
        json!({ "username": "caf\u{e9}user", "password": PASSWORD }),
        json!({ "username": "shortpw", "password": "1234567" }),
        json!({ "username": "longpw", "password": "x".repeat(1025) }),
        json!({ "username": "nopw" }),
        json!({ "password": PASSWORD }),
        json!({ "username": 42, "password": PASSWORD }),
        json!(["username", "password"]),
        // Guessable: refused with a reason (ASVS 6.2.4).
        json!({ "username": "weak1", "password": "password" }),
        json!({ "username": "weak2", "password": "12345678" }),
        json!({ "username": "weak3", "password": "        " }),
        json!({ "username": "weak4", "password": "weak41234" }),
    ];
    for case in &cases {
        let got = call(
            &server,
            Method::POST,
            "/v1/users",
            HeaderMap::new(),
            Some(case),
        )
        .await;
        assert_error(&got, 400, "invalid_request");
    }
    let weak = server
        .post_json(
            "/v1/users",
            &json!({ "username": "weak5", "password": "qwertyuiop" }),
        )
        .await;
    let body = status_json(weak).await;
    assert_error(&body, 400, "invalid_request");
    assert!(
        body.1["message"]
            .as_str()
            .unwrap()
            .contains("too easy to guess"),
        "{body:?}"
    );
    // Limits are in characters: 8 two-byte characters are a valid password,
    // 1024 characters too.
    let long: String = (0..1024u32)
        .map(|i| char::from(b'!' + u8::try_from(i * 37 % 94).unwrap()))
        .collect();
    for (name, pw) in [
        (
            "eightchars",
            "\u{e7}\u{e0}\u{e9}\u{ee}\u{f5}\u{fc}\u{df}\u{f8}".to_owned(),
        ),
        ("maxlen", long),
    ] {
        let res = server
            .post_json("/v1/users", &json!({ "username": name, "password": pw }))
            .await;
        assert_eq!(res.status(), 201, "{name}");
    }
    // Nothing was created by the refused attempts: the names are still free.
    for name in ["shortpw", "longpw", "nopw", "weak1", "weak5"] {
        register(&server, name).await;
    }
}

#[tokio::test]
async fn usernames_are_unique_ignoring_case() {
    let server = start().await;
    let name = unique("Case");
    register(&server, &name).await;
    for variant in [name.clone(), name.to_uppercase(), name.to_lowercase()] {
        let got = call(
            &server,
            Method::POST,
            "/v1/users",
            HeaderMap::new(),
            Some(&json!({ "username": variant, "password": PASSWORD })),
        )
        .await;
        assert_error(&got, 409, "username_taken");
    }
    // And the original password still works (the conflict changed nothing).
    login(&server, &name.to_uppercase()).await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_create_one_user() {
    let server = start().await;
    let body = json!({ "username": unique("race"), "password": PASSWORD });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let req = server.client().post(server.url("/v1/users")).json(&body);
        tasks.spawn(async move { req.send().await.unwrap().status().as_u16() });
    }
    let mut statuses = tasks.join_all().await;
    statuses.sort_unstable();
    assert_eq!(statuses, vec![201, 409, 409, 409, 409, 409]);
}

#[tokio::test]
async fn registration_can_be_closed() {
    let server = start_with_args(&["--disable-registration"]).await;
    let got = call(
        &server,
        Method::POST,
        "/v1/users",
        HeaderMap::new(),
        Some(&json!({ "username": "closed", "password": PASSWORD })),
    )
    .await;
    assert_error(&got, 403, "registration_closed");
}

#[tokio::test]
async fn changing_the_password_revokes_every_other_session() {
    let server = start().await;
    let name = unique("pwchange");
    register(&server, &name).await;
    let here = login(&server, &name).await;
    let elsewhere = login(&server, &name).await;
    let new_password = "a brand new password";
    let change = json!({ "current_password": PASSWORD, "new_password": new_password });

    let got = call(
        &server,
        Method::POST,
        "/v1/users/me/password",
        HeaderMap::new(),
        Some(&change),
    )
    .await;
    assert_error(&got, 401, "unauthenticated");
    let got = call(
        &server,
        Method::POST,
        "/v1/users/me/password",
        here.cookie_only(),
        Some(&change),
    )
    .await;
    assert_error(&got, 403, "csrf_failed");
    let wrong = json!({ "current_password": "not my password", "new_password": new_password });
    let got = call(
        &server,
        Method::POST,
        "/v1/users/me/password",
        here.with_csrf(),
        Some(&wrong),
    )
    .await;
    assert_error(&got, 401, "invalid_credentials");
    let short = json!({ "current_password": PASSWORD, "new_password": "short" });
    let got = call(
        &server,
        Method::POST,
        "/v1/users/me/password",
        here.with_csrf(),
        Some(&short),
    )
    .await;
    assert_error(&got, 400, "invalid_request");
    // None of that changed anything.
    assert_eq!(
        call(
            &server,
            Method::GET,
            "/v1/me",
            elsewhere.cookie_only(),
            None
        )
        .await
        .0,
        200
    );

    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/users/me/password",
        here.with_csrf(),
        Some(&change),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        call(&server, Method::GET, "/v1/me", here.cookie_only(), None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(
            &server,
            Method::GET,
            "/v1/me",
            elsewhere.cookie_only(),
            None
        )
        .await
        .0,
        401
    );

    let old = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": name, "password": PASSWORD }),
        )
        .await;
    assert_eq!(old.status(), 401);
    login_as(&server, &name, new_password).await;
}

#[tokio::test]
async fn logins_racing_a_password_change_do_not_survive_it() {
    let server = start().await;
    let name = unique("race_pw");
    register(&server, &name).await;
    let here = login(&server, &name).await;
    let change = json!({ "current_password": PASSWORD, "new_password": "the new password 123" });
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..16u64 {
        let req = server
            .client()
            .post(server.url("/v1/tokens"))
            .json(&json!({ "username": name, "password": PASSWORD }));
        logins.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(i * 8)).await;
            let res = req.send().await.unwrap();
            (
                res.status().as_u16(),
                res.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/users/me/password",
        here.with_csrf(),
        Some(&change),
    )
    .await;
    assert_eq!(status, 204);
    let results = logins.join_all().await;
    // Whatever a login with the old password got, it does not outlive the change.
    for (status, body) in results {
        if status == 200 {
            let bearer = headers([(
                "authorization",
                &format!("Bearer {}", body["access_token"].as_str().unwrap()),
            )]);
            assert_eq!(
                call(&server, Method::GET, "/v1/me", bearer, None).await.0,
                401,
                "{body}"
            );
        } else {
            assert!(status == 401 || status == 429, "{status} {body}");
        }
    }
}

/// Issue 7: attempts still being checked counted as failures, so parallel
/// correct logins throttled their own owner.
#[tokio::test]
async fn parallel_correct_logins_are_never_throttled() {
    let server = start().await;
    let name = unique("tabs");
    register(&server, &name).await;
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..16 {
        let path = if i % 2 == 0 {
            "/v1/sessions"
        } else {
            "/v1/tokens"
        };
        let req = server
            .client()
            .post(server.url(path))
            .json(&json!({ "username": name, "password": PASSWORD }));
        logins.spawn(async move { req.send().await.unwrap().status().as_u16() });
    }
    let statuses = logins.join_all().await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "{statuses:?}"
    );
    // The failures of a guesser still count, and only those.
    for i in 0..10 {
        let res = server
            .post_json(
                "/v1/sessions",
                &json!({ "username": name, "password": format!("wrong guess {i}") }),
            )
            .await;
        assert_eq!(res.status(), 401);
    }
    let res = server
        .post_json(
            "/v1/sessions",
            &json!({ "username": name, "password": PASSWORD }),
        )
        .await;
    assert_eq!(res.status(), 429);
}
