//! The account pages over plain HTTP: security headers, where `?next=` may
//! lead after a login, the CSRF field of forms, and the redirects of a
//! logged-out visit. (`browser` drives the same pages in Chromium.)

use crate::support::*;

fn form(server: &Server, path: &str, cookie: Option<&str>, body: &str) -> reqwest::RequestBuilder {
    let mut req = server
        .client()
        .post(server.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn html_answers_carry_a_strict_csp_and_no_referrer() {
    let server = start().await;
    for path in ["/login", "/signup", "/account", "/"] {
        let res = server.get(path, Default::default()).await;
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(res.headers()["referrer-policy"], "no-referrer", "{path}");
    }
    let page = server
        .get("/login", Default::default())
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "{page}"
    );
    // The old demo is gone.
    assert_eq!(server.get("/demo", Default::default()).await.status(), 404);
}

#[tokio::test]
async fn a_logged_out_visit_goes_through_resume_to_the_login_page() {
    let server = start().await;
    let res = server.get("/account", Default::default()).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/v1/tokens/resume?next=%2Faccount");
    let res = server.get(&location(&res), Default::default()).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login?next=%2Faccount");
    // resume itself never leads off this origin.
    let res = server
        .get(
            "/v1/tokens/resume?next=%2F%2Fevil.example",
            Default::default(),
        )
        .await;
    assert_eq!(location(&res), "/login?next=%2Faccount");
}

#[tokio::test]
async fn next_after_login_stays_on_this_origin() {
    let server = start().await;
    let name = unique("next");
    register(&server, &name).await;
    let cases = [
        ("/account?x=1", "/account?x=1"),
        ("//evil.example", "/account"),
        ("/\\evil.example", "/account"),
        ("\\\\evil.example", "/account"),
        ("https://evil.example/", "/account"),
        ("http:evil.example", "/account"),
        ("javascript:alert(1)", "/account"),
        ("/\t/evil.example", "/account"),
        ("evil.example", "/account"),
    ];
    for (next, want) in cases {
        let body = serde_urlencoded::to_string([
            ("username", name.as_str()),
            ("password", PASSWORD),
            ("method", "session"),
            ("next", next),
        ])
        .unwrap();
        let res = form(&server, "/login", None, &body).send().await.unwrap();
        assert_eq!(res.status(), 303, "{next:?}");
        assert_eq!(location(&res), want, "{next:?}");
    }
}

#[tokio::test]
async fn account_forms_need_the_csrf_field_with_a_session_cookie() {
    let server = start().await;
    let (name, _) = user_with_session(&server, "pagecsrf").await;
    let body = serde_urlencoded::to_string([
        ("username", name.as_str()),
        ("password", PASSWORD),
        ("method", "session"),
    ])
    .unwrap();
    let res = form(&server, "/login", None, &body).send().await.unwrap();
    let cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("tessera_session=tsr_ss_"))
        .expect("a session cookie");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = server
        .client()
        .get(server.url("/account"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&name), "{page}");
    assert!(!page.contains(cookie.trim_start_matches("tessera_session=")));
    let token = page
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf_token field")
        .to_owned();
    // Without the field, or with a wrong one: 403, and nothing happens.
    for bad in ["", "csrf_token=nope"] {
        let res = form(&server, "/account/devices/end-others", Some(&cookie), bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{bad:?}");
    }
    // JSON is not a form.
    let res = server
        .client()
        .post(server.url("/account/devices/end-others"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({ "csrf_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    // The field is accepted by the pages' forms only, never by the JSON API.
    let res = form(
        &server,
        "/account/devices/end-others",
        Some(&cookie),
        &format!("csrf_token={token}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account?notice=others_ended");
    let res = server
        .client()
        .delete(server.url("/v1/sessions"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // A foreign page cannot log a browser in through the form.
    let res = form(&server, "/login", None, &body)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

/// A refresh spends a token, so `resume` refreshes only on this site's own
/// page navigations: a sibling subdomain's image or script request (which
/// carries the SameSite=Strict refresh cookie too) changes nothing.
#[tokio::test]
async fn resume_refreshes_only_on_own_navigations() {
    let server = start().await;
    let name = unique("resume");
    register(&server, &name).await;
    let res = cookie_tokens(&server, &name).await;
    assert_eq!(res.status(), 200);
    let refresh = cookie_pair(&res, "tessera_refresh").unwrap();
    let resume = |extra: [(&'static str, &'static str); 2]| {
        let mut h = headers([("cookie", refresh.as_str())]);
        for (k, v) in extra {
            h.insert(k, v.parse().unwrap());
        }
        server.get("/v1/tokens/resume?next=%2Faccount", h)
    };
    for foreign in [
        [
            ("sec-fetch-site", "same-site"),
            ("sec-fetch-mode", "no-cors"),
        ],
        [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
        ],
        [
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
        ],
    ] {
        let res = resume(foreign).await;
        assert_eq!(location(&res), "/login?next=%2Faccount", "{foreign:?}");
        assert!(cookie_pair(&res, "tessera_access").is_none(), "{foreign:?}");
    }
    // The refresh token was not spent: this site's own navigation renews it.
    let res = resume([
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "navigate"),
    ])
    .await;
    assert_eq!(location(&res), "/account");
    assert!(cookie_pair(&res, "tessera_access").is_some());
}
