//! Small pure helpers of the account pages: where a `?next=` may lead, and
//! a person's name for a `User-Agent`.

/// `next` when it is a path on this origin, else `None`. Only an absolute
/// path is accepted (`/account`, `/account?x=1`): no scheme, no host, no
/// `//host` or `/\host` (which browsers read as another host), no
/// backslash or control character anywhere, at most 1024 bytes.
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.len() <= 1024
        && next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then_some(next)
}

/// Where to go after a form: `next` if it is one of this origin's paths
/// ([`safe_next`]), the account page otherwise.
pub fn next_or_account(next: Option<&str>) -> &str {
    next.and_then(safe_next).unwrap_or("/account")
}

/// A person's name for a browser's `User-Agent`: "Firefox on Linux",
/// "Chrome on Android", "Safari on iOS"; a program's own name for a
/// non-browser client ("curl"); "Unknown device" when there is none.
pub fn describe_user_agent(ua: Option<&str>) -> String {
    let Some(ua) = ua.map(str::trim).filter(|ua| !ua.is_empty()) else {
        return "Unknown device".to_owned();
    };
    let browser = if ua.contains("Edg/") || ua.contains("Edge/") {
        Some("Edge")
    } else if ua.contains("OPR/") || ua.contains("Opera") {
        Some("Opera")
    } else if ua.contains("Firefox/") || ua.contains("FxiOS/") {
        Some("Firefox")
    } else if ua.contains("HeadlessChrome/") {
        Some("Headless Chrome")
    } else if ua.contains("Chromium/") {
        Some("Chromium")
    } else if ua.contains("Chrome/") || ua.contains("CriOS/") {
        Some("Chrome")
    } else if ua.contains("Safari/") && ua.contains("Version/") {
        Some("Safari")
    } else {
        None
    };
    let os = if ua.contains("Android") {
        Some("Android")
    } else if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iPod") {
        Some("iOS")
    } else if ua.contains("Windows") {
        Some("Windows")
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        Some("macOS")
    } else if ua.contains("CrOS") {
        Some("ChromeOS")
    } else if ua.contains("Linux") || ua.contains("X11") {
        Some("Linux")
    } else {
        None
    };
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(o)) => format!("A browser on {o}"),
        // A program: its product name, the part before the first '/' or space.
        (None, None) => ua
            .split(['/', ' '])
            .next()
            .filter(|p| !p.is_empty())
            .map(|p| p.chars().take(40).collect())
            .unwrap_or_else(|| "Unknown device".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_origin() {
        for good in ["/account", "/account?x=1#y", "/", "/a/b%2Fc"] {
            assert_eq!(safe_next(good), Some(good), "{good}");
        }
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/x\\y",
            "https://evil.example/",
            "http:/evil.example",
            "javascript:alert(1)",
            "evil.example",
            " /account",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(2000))), None);
    }

    #[test]
    fn user_agents_read_as_people_say_them() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/140.0.0.0 Safari/537.36",
                "Headless Chrome on Linux",
            ),
            ("curl/8.5.0", "curl"),
            ("", "Unknown device"),
        ];
        for (ua, want) in cases {
            assert_eq!(describe_user_agent(Some(ua)), want, "{ua}");
        }
        assert_eq!(describe_user_agent(None), "Unknown device");
    }
}
