//! The credential a request carries: `Cookie` headers (every cookie name the
//! server reads), `Authorization: Bearer`, `X-CSRF-Token`, through
//! `auth::credential` and `auth::authenticate` on a real app, as every
//! authenticated route does.
//!
//! Input: lines; a line `a:…` is an `Authorization` header, `x:…` an
//! `X-CSRF-Token` header, anything else a `Cookie` header. The first byte
//! picks the method. `$S`, `$C`, `$T`, `$R` stand for valid credentials
//! (see `tessera_fuzz::expand`).

#![no_main]

use axum::http::{HeaderMap, HeaderValue, Method, Request, header};
use libfuzzer_sys::fuzz_target;
use tessera_fuzz::{FIXTURE, expand, now};
use tessera_server::auth::{self, AuthMethod};
use tessera_server::cookies;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let f = &*FIXTURE;
    let method =
        [Method::GET, Method::POST, Method::DELETE, Method::HEAD][usize::from(first % 4)].clone();
    let text = expand(&String::from_utf8_lossy(rest), f);
    let mut headers = HeaderMap::new();
    for line in text.split('\n') {
        let (name, value) = if let Some(v) = line.strip_prefix("a:") {
            (header::AUTHORIZATION, v)
        } else if let Some(v) = line.strip_prefix("x:") {
            (header::HeaderName::from_static("x-csrf-token"), v)
        } else {
            (header::COOKIE, line)
        };
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(name, value);
        }
    }
    let app = &f.app;
    for name in [
        app.cookies.session_name(),
        app.cookies.access_name(),
        app.cookies.refresh_name(),
    ] {
        for value in cookies::find(&headers, name) {
            // A value is a substring of one header value, itself visible ASCII.
            assert!(value.len() <= text.len());
            let _ = tessera_core::SessionSecret::parse(value);
            let _ = tessera_core::refresh::RefreshToken::parse(value);
        }
    }
    let Some(cred) = auth::credential(&headers, app) else {
        return;
    };
    let mut req = Request::builder().method(method.clone()).uri("/v1/me");
    if let Some(h) = req.headers_mut() {
        *h = headers.clone();
    }
    let Ok(req) = req.body(()) else { return };
    let (parts, ()) = req.into_parts();
    let outcome = f.rt.block_on(auth::authenticate(app, cred, &parts, now()));
    if let Ok(principal) = outcome {
        // Only the credentials the app issued authenticate anyone.
        assert!(
            text.contains(&f.session_secret) || text.contains(&f.access_token),
            "authenticated without a credential the app issued: {text:?}"
        );
        // A cookie session on an unsafe method needs its CSRF token, in the
        // first `X-CSRF-Token` header. (Whitespace around a header value is
        // not part of it: HTTP parsers strip it, and so does the check.)
        if principal.method == AuthMethod::Session && !matches!(method, Method::GET | Method::HEAD)
        {
            let presented = headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(str::trim);
            assert_eq!(
                presented,
                Some(f.csrf.as_str()),
                "an unsafe request passed without the CSRF token: {text:?}"
            );
        }
    }
});
