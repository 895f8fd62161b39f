//! Every JSON request body, through `extract::parse_json_body` into the
//! struct its handler uses, then validated as the operations validate it
//! (`Username::parse`, `Password::parse`, `RefreshToken::parse`, the JWT
//! reader).
//!
//! The first byte picks the body type (and whether the `Content-Type` is
//! JSON); the rest is the body.

#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tessera_core::refresh::RefreshToken;
use tessera_core::{Password, Username, jwt};
use tessera_server::extract::parse_json_body;
use tessera_server::handlers::sessions::Credentials;
use tessera_server::handlers::tokens::TokenBody;
use tessera_server::handlers::users::{NewUser, PasswordChange};

/// A string field of a body that already parsed into its struct. (`NewUser`,
/// `PasswordChange` and `TokenBody` keep their fields private to the
/// handlers; the object they parsed from has the same strings.)
fn field<'a>(body: &'a Value, name: &str) -> &'a str {
    body.get(name).and_then(Value::as_str).unwrap_or_default()
}

fn username_and_password(username: &str, password: &str) {
    if let Ok(u) = Username::parse(username) {
        // What the stores match on: the lowercased key, still a username.
        let key = u.key();
        assert!(Username::parse(&key).is_ok(), "{key:?}");
        assert_eq!(key, tessera_core::account::key_of(u.as_str()));
    }
    if let Ok(p) = Password::parse(password) {
        assert_eq!(p.expose(), password);
    }
}

fn token(raw: &str) {
    if let Some(t) = RefreshToken::parse(raw) {
        assert_eq!(t.expose(), raw);
        let _ = t.hash();
    }
    let _ = jwt::peek(raw);
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let content_type = match first >> 4 {
        0 => "text/plain",
        1 => "application/json; charset=utf-8",
        2 => "Application/JSON",
        _ => "application/json",
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let value = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    match first % 5 {
        // POST /v1/users
        0 => {
            if parse_json_body::<NewUser>(&headers, body).is_ok() {
                let v = value();
                username_and_password(field(&v, "username"), field(&v, "password"));
            }
        }
        // POST /v1/sessions and POST /v1/tokens
        1 => {
            if let Ok(c) = parse_json_body::<Credentials>(&headers, body) {
                username_and_password(&c.username, &c.password);
            }
        }
        // POST /v1/users/me/password
        2 => {
            if parse_json_body::<PasswordChange>(&headers, body).is_ok() {
                let v = value();
                let _ = Password::parse(field(&v, "current_password"));
                username_and_password("", field(&v, "new_password"));
            }
        }
        // POST /v1/tokens/revoke and /v1/tokens/introspect
        3 => {
            if parse_json_body::<TokenBody>(&headers, body).is_ok() {
                token(field(&value(), "token"));
            }
        }
        // POST /v1/tokens/refresh: `{"refresh_token": …}`, optional. Its
        // struct is private to the handler; this is its shape.
        _ => {
            #[derive(serde::Deserialize)]
            struct RefreshBody {
                refresh_token: Option<String>,
            }
            if let Ok(b) = parse_json_body::<RefreshBody>(&headers, body)
                && let Some(t) = b.refresh_token
            {
                token(&t);
            }
        }
    }
});
