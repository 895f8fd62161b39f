//! The OpenAPI 3.1 document of `GET /openapi.json`, generated from the code
//! and never written by hand: each handler's `#[utoipa::path]` annotation
//! (its route, parameters, bodies, statuses and security), the `ToSchema`
//! of the types the handlers read and write, and the rules below, which add
//! what `docs/api.md` says of every route of a kind (a route that reads a
//! body also fails with `400`, `408`, `413` and `415`; an authenticated one
//! with `401` and `503`; a cookie route's unsafe request with `403
//! csrf_failed`; any unsafe request with `403 cross_site_request`).
//!
//! Every JSON error response names its codes in its description, as
//! `` `code` ``; the rules turn those into the schema's `error` enum, so a
//! client (and schemathesis, `tests/it/schemathesis.rs`) can tell an
//! undocumented code from a documented one. [`problems`] lists what is
//! inconsistent (a code under the wrong status, an error response without a
//! code); a test keeps it empty. The document is built once per process.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use crate::handlers::{admin, me, ops, sessions, tokens, users};
use crate::origin::FORWARD_AUTH;
use crate::pages;

#[derive(OpenApi)]
#[openapi(
    paths(
        users::register,
        users::change_password,
        sessions::login,
        sessions::list,
        sessions::revoke_others,
        sessions::current,
        sessions::logout,
        sessions::revoke,
        me::me,
        me::verify,
        tokens::login,
        tokens::refresh,
        tokens::revoke,
        tokens::introspect,
        tokens::jwks,
        admin::disable,
        admin::enable,
        admin::logout,
        ops::healthz,
        ops::readyz,
        ops::openapi,
        pages::home,
        pages::signup_page,
        pages::signup,
        pages::login_page,
        pages::login,
        pages::logout,
        pages::account,
        pages::end_device,
        pages::end_others,
        pages::change_password,
        pages::tamper,
        pages::resume,
        pages::token_logout,
        pages::stylesheet,
        pages::script,
    ),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

/// Every error code, its status, and what it means in a route's answer.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_request",
        400,
        "a body that is not a JSON object (or form) of the expected shape",
    ),
    (
        "unauthenticated",
        401,
        "no usable credential, or one that was refused",
    ),
    (
        "invalid_credentials",
        401,
        "unknown username, wrong password, or a disabled user",
    ),
    (
        "invalid_token",
        401,
        "a refresh token that is unknown, malformed, expired or ended",
    ),
    (
        "refresh_token_reused",
        401,
        "a spent refresh token presented again",
    ),
    (
        "csrf_failed",
        403,
        "a session-cookie request without the session's `X-CSRF-Token`",
    ),
    (
        "cross_site_request",
        403,
        "sent from another site's page, with cookies or to log in",
    ),
    (
        "registration_closed",
        403,
        "registration is closed on this server",
    ),
    (
        "not_found",
        404,
        "no such thing; on admin routes also: no admin key is configured",
    ),
    (
        "method_not_allowed",
        405,
        "a known path with a method it does not accept",
    ),
    (
        "request_timeout",
        408,
        "the body did not arrive within `--body-read-timeout`",
    ),
    ("username_taken", 409, "the username exists, in any case"),
    ("payload_too_large", 413, "a body over 64 KiB"),
    (
        "unsupported_media_type",
        415,
        "a body whose `Content-Type` this route does not read",
    ),
    (
        "too_many_attempts",
        429,
        "a throttle holds; `Retry-After` says how long",
    ),
    ("internal_error", 500, "a bug or corrupt data"),
    ("unavailable", 503, "a store does not answer"),
];

/// The schemas of request bodies: they stay open (unknown fields are
/// ignored, `docs/api.md`), where every response schema is closed.
const REQUEST_SCHEMAS: &[&str] = &[
    "NewUser",
    "PasswordChange",
    "Credentials",
    "RefreshRequest",
    "TokenRequest",
    "SignupForm",
    "LoginForm",
    "AccountForm",
    // A JWK carries the parameters of its key type besides these.
    "Jwk",
];

const ERROR_REF: &str = "#/components/schemas/Error";

/// The document, built once.
static DOCUMENT: LazyLock<(String, Vec<String>)> = LazyLock::new(|| {
    let (doc, problems) = build();
    (doc.to_string(), problems)
});

/// The OpenAPI document, as served at `GET /openapi.json`.
pub fn json() -> &'static str {
    &DOCUMENT.0
}

/// The OpenAPI document, parsed.
pub fn document() -> Value {
    serde_json::from_str(json()).unwrap_or_default()
}

/// What is inconsistent in the document's error responses; empty when all is well.
pub fn problems() -> &'static [String] {
    &DOCUMENT.1
}

fn build() -> (Value, Vec<String>) {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let mut problems = Vec::new();
    doc["info"] = json!({
        "title": "tessera",
        "version": "1",
        "description": "Sessions and tokens, done properly: server-side sessions with an opaque id \
            in an HttpOnly cookie, signed JWT access tokens with rotating refresh tokens, or both. \
            Every error is {\"error\", \"message\"}, `error` a stable code. Times are RFC 3339 in UTC \
            with milliseconds. Generated from the server's code; docs/api.md is the reference.",
        "license": { "name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0" },
    });
    doc["components"]["securitySchemes"] = security_schemes();
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (name, schema) in schemas.iter_mut() {
            if !REQUEST_SCHEMAS.contains(&name.as_str()) && schema.get("properties").is_some() {
                schema["additionalProperties"] = json!(false);
            }
        }
    }
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                op["operationId"] = json!(operation_id(method, path));
                for (status, code) in common_errors(path, method, op) {
                    add_error(op, status, code);
                }
                finish_errors(method, path, op, &mut problems);
            }
        }
    }
    (doc, problems)
}

/// `post /v1/sessions/{id}` → `post_v1_sessions_id`: unique, where the
/// handlers' names (`login`, `logout`) are not.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for word in path.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !word.is_empty() {
            id.push('_');
            id.push_str(word);
        }
    }
    if path == "/" {
        id.push_str("_root");
    }
    id
}

fn security_schemes() -> Value {
    json!({
        "sessionCookie": {
            "type": "apiKey", "in": "cookie", "name": "__Host-tessera_session",
            "description": "The session secret (`tsr_ss_…`) set by `POST /v1/sessions`; \
                `tessera_session` with `--insecure-dev-cookies`. An unsafe request needs `csrfToken` too."
        },
        "csrfToken": {
            "type": "apiKey", "in": "header", "name": "X-CSRF-Token",
            "description": "The session's CSRF token (`csrf_token` of the login answer or of \
                `GET /v1/sessions/current`): with the session cookie on POST, PUT, PATCH and DELETE."
        },
        "bearer": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT (RFC 9068, typ at+jwt)",
            "description": "An access token of `POST /v1/tokens` or `POST /v1/tokens/refresh`."
        },
        "accessCookie": {
            "type": "apiKey", "in": "cookie", "name": "__Host-tessera_access",
            "description": "The access token in a cookie, set by `POST /v1/tokens?cookie=true` \
                (`tessera_access` with `--insecure-dev-cookies`). No CSRF token: it is SameSite=Strict."
        },
        "refreshCookie": {
            "type": "apiKey", "in": "cookie", "name": "__Secure-tessera_refresh",
            "description": "The refresh token in a cookie (`Path=/v1/tokens`), set with the access cookie \
                (`tessera_refresh` with `--insecure-dev-cookies`)."
        },
        "adminKey": {
            "type": "http", "scheme": "bearer",
            "description": "The `--admin-key`, as `Authorization: Bearer <admin key>`."
        },
        "adminBasic": {
            "type": "http", "scheme": "basic",
            "description": "Any client id and the `--admin-key` as the client secret (RFC 7662 client authentication)."
        },
    })
}

/// The names of each security requirement of an operation.
fn requirements(op: &Value) -> Vec<BTreeSet<String>> {
    op.get("security")
        .and_then(Value::as_array)
        .map(|reqs| {
            reqs.iter()
                .map(|r| {
                    r.as_object()
                        .map(|o| o.keys().cloned().collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The errors `docs/api.md` gives every route of a kind.
fn common_errors(path: &str, method: &str, op: &Value) -> Vec<(u16, &'static str)> {
    let mut errors = Vec::new();
    let reqs = requirements(op);
    // A route whose every way in needs a credential (no anonymous `{}`).
    let required = !reqs.is_empty() && reqs.iter().all(|r| !r.is_empty());
    let admin = required
        && reqs
            .iter()
            .all(|r| r.contains("adminKey") || r.contains("adminBasic"));
    if op.get("requestBody").is_some() {
        errors.extend([
            (400, "invalid_request"),
            (408, "request_timeout"),
            (413, "payload_too_large"),
            (415, "unsupported_media_type"),
        ]);
    }
    if admin {
        errors.extend([(401, "unauthenticated"), (404, "not_found")]);
    } else if required {
        errors.extend([(401, "unauthenticated"), (503, "unavailable")]);
    }
    if reqs.iter().any(|r| r.contains("csrfToken")) {
        errors.push((403, "csrf_failed"));
    }
    let unsafe_method = !matches!(method, "get" | "head" | "options" | "trace");
    if unsafe_method || path == FORWARD_AUTH {
        errors.push((403, "cross_site_request"));
    }
    errors
}

fn meaning(code: &str) -> &'static str {
    ERROR_CODES
        .iter()
        .find(|(c, ..)| *c == code)
        .map_or("", |(_, _, m)| m)
}

/// Adds `code` to the JSON error answer of `status`, creating it if needed.
fn add_error(op: &mut Value, status: u16, code: &str) {
    let Some(responses) = op["responses"].as_object_mut() else {
        return;
    };
    let response = responses
        .entry(status.to_string())
        .or_insert_with(|| json!({ "description": "" }));
    let content = response
        .as_object_mut()
        .map(|r| r.entry("content").or_insert_with(|| json!({})));
    let Some(content) = content.and_then(Value::as_object_mut) else {
        return;
    };
    let json_body = content
        .entry("application/json")
        .or_insert_with(|| json!({ "schema": { "$ref": ERROR_REF } }));
    if json_body["schema"]["$ref"] != ERROR_REF {
        return;
    }
    let mentioned = codes_in(response["description"].as_str().unwrap_or(""));
    if !mentioned.contains(code) {
        let line = format!("`{code}`: {}.", meaning(code));
        let description = response["description"].as_str().unwrap_or("");
        response["description"] = if description.is_empty() {
            json!(line)
        } else {
            json!(format!("{description}\n\n{line}"))
        };
    }
    if code == "unauthenticated" {
        response["headers"]["WWW-Authenticate"] = json!({
            "description": "`Bearer`, or `Bearer error=\"invalid_token\"` for a refused access token.",
            "schema": { "type": "string" }
        });
    }
}

/// The known error codes a description names in backticks.
fn codes_in(description: &str) -> BTreeSet<&str> {
    description
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| ERROR_CODES.iter().any(|(c, ..)| c == w))
        .collect()
}

/// Closes each JSON error answer's `error` to the codes its description
/// names, and notes what does not add up.
fn finish_errors(method: &str, path: &str, op: &mut Value, problems: &mut Vec<String>) {
    let Some(responses) = op["responses"].as_object_mut() else {
        problems.push(format!("{method} {path}: no responses"));
        return;
    };
    if !responses
        .keys()
        .any(|s| s.starts_with('2') || s.starts_with('3'))
    {
        problems.push(format!("{method} {path}: no success answer"));
    }
    for (status, response) in responses.iter_mut() {
        let description = response["description"].as_str().unwrap_or("").to_owned();
        let Some(body) = response
            .get_mut("content")
            .and_then(|c| c.get_mut("application/json"))
        else {
            continue;
        };
        if body["schema"]["$ref"] != ERROR_REF {
            continue;
        }
        let codes = codes_in(&description);
        if codes.is_empty() {
            problems.push(format!(
                "{method} {path}: the {status} error answer names no error code"
            ));
        }
        for code in &codes {
            let expected = ERROR_CODES
                .iter()
                .find(|(c, ..)| c == code)
                .map(|(_, s, _)| s.to_string());
            if expected.as_deref() != Some(status.as_str()) {
                problems.push(format!("{method} {path}: `{code}` is not a {status} code"));
            }
        }
        let mut properties = Map::new();
        properties.insert("error".to_owned(), json!({ "enum": codes }));
        body["schema"] = json!({
            "allOf": [{ "$ref": ERROR_REF }],
            "properties": properties,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_consistent() {
        assert_eq!(problems(), &[] as &[String]);
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
    }

    #[test]
    fn operation_ids_are_unique_words() {
        assert_eq!(
            operation_id("delete", "/v1/sessions/{id}"),
            "delete_v1_sessions_id"
        );
        assert_eq!(
            operation_id("get", "/.well-known/jwks.json"),
            "get_well_known_jwks_json"
        );
        assert_eq!(operation_id("get", "/"), "get_root");
    }
}
