//! Cross-site requests refused before any handler: defence in depth beside
//! the CSRF token and `SameSite` cookies.
//!
//! A request is judged when a browser could have been made to send it by
//! another site's page: an unsafe method (judged, for forward-auth, by the
//! original request's method) that carries cookies, and every login and
//! registration (whose cookie it would set — a foreign page must not even log
//! a victim into the attacker's account). Such a request is refused with
//! `403 cross_site_request` when its `Origin` is neither this server's own
//! (the `Host` it was sent to, `X-Forwarded-Host` behind a trusted proxy, or
//! the origin of `--issuer`) nor one of `--trusted-origins`, or, without an
//! `Origin`, when the browser marks it `Sec-Fetch-Site: cross-site`. An
//! opaque `Origin: null` passes only with `Sec-Fetch-Site: same-origin`
//! (Chromium sends `null` for a form post from a page whose
//! `Referrer-Policy` is `no-referrer`, as the account pages' is). A
//! request with neither header (curl, a server-side client) is not a
//! browser's, and passes.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::app::AppState;
use crate::error::ApiError;

/// The forward-auth route, whose method is the proxy's, not the request's.
pub const FORWARD_AUTH: &str = "/v1/auth/verify";

/// Routes that set a credential cookie or create an account (the JSON
/// API's and the account pages' forms).
const LOGIN_ROUTES: [&str; 5] = [
    "/v1/sessions",
    "/v1/tokens",
    "/v1/users",
    "/login",
    "/signup",
];

fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The method whose safety the CSRF rules judge: the request's own or, for
/// forward-auth, the original request's as the proxy reports it
/// (`X-Forwarded-Method`, as Traefik and Caddy send it, or
/// `X-Original-Method`, as nginx configurations do). An original method that
/// does not parse is judged unsafe.
pub fn judged_method(method: &Method, path: &str, headers: &HeaderMap) -> Method {
    if path != FORWARD_AUTH {
        return method.clone();
    }
    let original = ["x-forwarded-method", "x-original-method"]
        .iter()
        .find_map(|name| headers.get(*name));
    match original {
        None => method.clone(),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|m| Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).ok())
            .unwrap_or(Method::POST),
    }
}

/// Whether the judged method of this request is unsafe.
pub fn judged_unsafe(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    is_unsafe(&judged_method(method, path, headers))
}

/// The origin (`scheme://host[:port]`, lowercase) of an absolute URL.
fn origin_of(url: &str) -> Option<String> {
    let url = url.trim().to_ascii_lowercase();
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// Whether `origin` is this server's own: the host (and port) the request
/// was sent to — the `Host` header, or behind a trusted proxy
/// (`--trust-forwarded-for`) its `X-Forwarded-Host` — or the origin of the
/// configured issuer, the server's public URL.
fn own_origin(app: &AppState, origin: &str, headers: &HeaderMap) -> bool {
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let Some(authority) = authority else {
        return false;
    };
    let mut hosts = vec![headers.get(header::HOST)];
    if app.settings.trust_forwarded_for {
        hosts.push(headers.get("x-forwarded-host"));
    }
    let sent_to = hosts
        .into_iter()
        .flatten()
        .filter_map(|v| v.to_str().ok())
        .any(|host| host.trim().eq_ignore_ascii_case(authority));
    sent_to || origin_of(&app.settings.issuer).is_some_and(|own| own == origin)
}

/// `Some(why)` when a browser sent this request from a foreign site.
fn foreign(app: &AppState, headers: &HeaderMap) -> Option<&'static str> {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if origin == "null" {
            // An opaque origin: a sandboxed frame, or (Chromium) a form post
            // from a page with `Referrer-Policy: no-referrer`, as the
            // account pages are. Only the browser's own word that the page
            // was this origin's lets it pass.
            return (!fetch_site.eq_ignore_ascii_case("same-origin")).then_some("origin");
        }
        let trusted =
            own_origin(app, &origin, headers) || app.settings.trusted_origins.contains(&origin);
        return (!trusted).then_some("origin");
    }
    fetch_site
        .eq_ignore_ascii_case("cross-site")
        .then_some("sec_fetch_site")
}

/// The middleware: refuses the cross-site requests described above.
pub async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    match refusal(&app, &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// The `403` for a request the rules above refuse, `None` for one they let
/// pass.
pub fn refusal(app: &AppState, req: &Request) -> Option<Response> {
    let path = req.uri().path();
    let judged = (judged_unsafe(req.method(), path, req.headers())
        && req.headers().contains_key(header::COOKIE))
        || (req.method() == Method::POST && LOGIN_ROUTES.contains(&path));
    let why = if judged {
        foreign(app, req.headers())?
    } else {
        return None;
    };
    metrics::counter!("tessera_cross_site_refusals_total", "by" => why).increment(1);
    Some(
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "This request came from another site's page; only this server's own pages and \
             the trusted origins may send it.",
        )
        .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origins_of_urls() {
        assert_eq!(
            origin_of("https://Auth.Example.com/path?q#f").as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:7480").as_deref(),
            Some("http://127.0.0.1:7480")
        );
        assert_eq!(origin_of("no scheme"), None);
        assert_eq!(origin_of("https:///x"), None);
    }
}
