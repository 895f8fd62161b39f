//! Cookie names and `Set-Cookie` values.
//!
//! The session cookie is `HttpOnly` (no script can read it), `SameSite=Lax`
//! and `Path=/`; unless the server runs with `--insecure-dev-cookies` it is
//! also `Secure` and named with the `__Host-` prefix, which browsers accept
//! only from HTTPS, for the whole host, without a `Domain` — so a sibling
//! subdomain cannot plant or overwrite it.

use axum::http::{HeaderMap, HeaderValue, header};
use time::Duration;

/// The path the refresh-token cookie is sent to: the token routes, so that
/// both `/v1/tokens/refresh` and `/v1/tokens/revoke` (a cookie-mode logout
/// once the access token has expired) get it. No other route reads it, and
/// no page or API route outside `/v1/tokens` ever receives it.
pub const REFRESH_PATH: &str = "/v1/tokens";

/// Where earlier versions scoped the refresh cookie; a logout clears it there
/// too, or a browser would keep that copy until it expired.
pub const OLD_REFRESH_PATH: &str = "/v1/tokens/refresh";

/// How this server names and flags its cookies.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    secure: bool,
}

impl CookieConfig {
    /// Secure cookies unless `insecure_dev` is set.
    pub fn new(insecure_dev: bool) -> Self {
        Self {
            secure: !insecure_dev,
        }
    }

    /// The session cookie's name.
    pub fn session_name(&self) -> &'static str {
        if self.secure {
            "__Host-tessera_session"
        } else {
            "tessera_session"
        }
    }

    /// The access-token cookie's name (`POST /v1/tokens?cookie=true`).
    pub fn access_name(&self) -> &'static str {
        if self.secure {
            "__Host-tessera_access"
        } else {
            "tessera_access"
        }
    }

    /// The refresh-token cookie's name.
    pub fn refresh_name(&self) -> &'static str {
        if self.secure {
            "__Secure-tessera_refresh"
        } else {
            "tessera_refresh"
        }
    }

    /// The device cookie's name (see `tessera_core::device`).
    pub fn device_name(&self) -> &'static str {
        if self.secure {
            "__Host-tessera_device"
        } else {
            "tessera_device"
        }
    }

    /// `Set-Cookie` for a new session secret. With `max_age` (a login that
    /// asked to be remembered) the cookie outlives the browser session;
    /// without, the browser drops it when it closes.
    pub fn set_session(&self, secret: &str, max_age: Option<Duration>) -> HeaderValue {
        self.build(self.session_name(), secret, max_age, "/", "Lax")
    }

    /// `Set-Cookie` for a device token: a year, `SameSite=Strict`, for the
    /// whole site (the login routes and pages read it).
    pub fn set_device(&self, token: &str) -> HeaderValue {
        self.build(
            self.device_name(),
            token,
            Some(Duration::days(365)),
            "/",
            "Strict",
        )
    }

    /// `Set-Cookie` that makes the browser drop the session cookie.
    pub fn clear_session(&self) -> HeaderValue {
        self.build(self.session_name(), "", Some(Duration::ZERO), "/", "Lax")
    }

    /// `Set-Cookie` for an access token kept by the browser (`SameSite=Strict`).
    pub fn set_access(&self, token: &str, max_age: Duration) -> HeaderValue {
        self.build(self.access_name(), token, Some(max_age), "/", "Strict")
    }

    /// `Set-Cookie` for a refresh token, sent only to the token routes.
    pub fn set_refresh(&self, token: &str, max_age: Duration) -> HeaderValue {
        self.build(
            self.refresh_name(),
            token,
            Some(max_age),
            REFRESH_PATH,
            "Strict",
        )
    }

    /// `Set-Cookie` values that make the browser drop both token cookies
    /// (the refresh cookie at its current and its earlier path).
    pub fn clear_tokens(&self) -> [HeaderValue; 3] {
        let refresh = self.refresh_name();
        [
            self.set_access("", Duration::ZERO),
            self.build(refresh, "", Some(Duration::ZERO), REFRESH_PATH, "Strict"),
            self.build(
                refresh,
                "",
                Some(Duration::ZERO),
                OLD_REFRESH_PATH,
                "Strict",
            ),
        ]
    }

    fn build(
        &self,
        name: &str,
        value: &str,
        max_age: Option<Duration>,
        path: &str,
        same_site: &str,
    ) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let max_age = max_age
            .map(|d| format!("; Max-Age={}", d.whole_seconds().max(0)))
            .unwrap_or_default();
        let raw =
            format!("{name}={value}; Path={path}{max_age}; HttpOnly; SameSite={same_site}{secure}");
        // Names are constants and values are base64url or JWTs, so this always holds.
        HeaderValue::from_str(&raw).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Values of every cookie called `name` in the request's `Cookie` headers, in order.
pub fn find<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_cookie_attributes() {
        let c = CookieConfig::new(false);
        let v = c.set_session("tsr_ss_abc", Some(Duration::hours(24)));
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-tessera_session=tsr_ss_abc; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax; Secure"
        );
        // Not remembered: a browser-session cookie, without Max-Age.
        let v = c.set_session("tsr_ss_abc", None);
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-tessera_session=tsr_ss_abc; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            c.set_device("dv1.a.b").to_str().unwrap(),
            "__Host-tessera_device=dv1.a.b; Path=/; Max-Age=31536000; HttpOnly; SameSite=Strict; Secure"
        );
    }

    #[test]
    fn dev_cookie_has_no_prefix_and_no_secure() {
        let c = CookieConfig::new(true);
        let v = c.clear_session();
        assert_eq!(
            v.to_str().unwrap(),
            "tessera_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn token_cookies_are_strict_and_the_refresh_one_is_path_bound() {
        let c = CookieConfig::new(false);
        assert_eq!(
            c.set_access("a.b.c", Duration::minutes(15))
                .to_str()
                .unwrap(),
            "__Host-tessera_access=a.b.c; Path=/; Max-Age=900; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            c.set_refresh("tsr_rt_x", Duration::days(14))
                .to_str()
                .unwrap(),
            "__Secure-tessera_refresh=tsr_rt_x; Path=/v1/tokens; Max-Age=1209600; HttpOnly; SameSite=Strict; Secure"
        );
    }

    #[test]
    fn finds_cookies_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; tessera_session=x; b=2"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("tessera_session=y"),
        );
        assert_eq!(
            find(&h, "tessera_session").collect::<Vec<_>>(),
            vec!["x", "y"]
        );
        assert_eq!(find(&h, "nope").count(), 0);
    }
}
