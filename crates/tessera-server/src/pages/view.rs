//! The pages' HTML, written with maud: markup checked by the compiler, and
//! every `(value)` escaped unless wrapped in `PreEscaped` (which this file
//! never does).

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use tessera_core::session::SessionKind;
use time::OffsetDateTime;

use super::{AccountData, describe_user_agent};
use crate::auth::AuthMethod;

fn layout(title: &str, with_script: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tessera" }
                link rel="stylesheet" href="/assets/pages.css";
                @if with_script {
                    script src="/assets/pages.js" defer {}
                }
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "tessera" }
                }
                (body)
            }
        }
    }
}

fn messages(notice: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(n) = notice {
            p.notice role="status" { (n) }
        }
        @if let Some(e) = error {
            p.error role="alert" { (e) }
        }
    }
}

/// The sign-up page.
pub fn signup(next: &str, username: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign up",
        false,
        html! {
            main #main .narrow {
                h1 { "Create your account" }
                (messages(None, error))
                form.card method="post" action="/signup" {
                    input type="hidden" name="next" value=(next);
                    label for="username" { "Username" }
                    input #username type="text" name="username" value=(username)
                        autocomplete="username" required minlength="3" maxlength="64"
                        aria-describedby="username-hint";
                    p #username-hint .hint { "3 to 64 letters, digits, or . _ @ -" }
                    label for="password" { "Password" }
                    input #password type="password" name="password"
                        autocomplete="new-password" required minlength="8"
                        aria-describedby="password-hint";
                    p #password-hint .hint {
                        "At least 8 characters, and hard to guess: a few unrelated words work well."
                    }
                    button.primary type="submit" { "Create account" }
                }
                p { "Already have an account? " a href=(super::with_next("/login", next)) { "Log in" } }
            }
        },
    )
}

/// The login page.
pub fn login(
    next: &str,
    username: &str,
    token: bool,
    notice: Option<&str>,
    error: Option<&str>,
) -> Markup {
    layout(
        "Log in",
        false,
        html! {
            main #main .narrow {
                h1 { "Log in" }
                (messages(notice, error))
                form.card method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    label for="username" { "Username" }
                    input #username type="text" name="username" value=(username)
                        autocomplete="username" required;
                    label for="password" { "Password" }
                    input #password type="password" name="password"
                        autocomplete="current-password" required;
                    fieldset {
                        legend { "Keep me signed in with" }
                        div.choice {
                            input #method-session type="radio" name="method" value="session" checked[!token];
                            label for="method-session" {
                                "A session cookie"
                                span.hint { " — the server keeps the state" }
                            }
                        }
                        div.choice {
                            input #method-token type="radio" name="method" value="token" checked[token];
                            label for="method-token" {
                                "A token in a cookie"
                                span.hint { " — a signed, short-lived JWT, renewed as you go" }
                            }
                        }
                    }
                    div.choice {
                        input #remember type="checkbox" name="remember" value="yes";
                        label for="remember" {
                            "Remember me on this device"
                            span.hint { " (a session cookie that outlasts the browser)" }
                        }
                    }
                    button.primary type="submit" { "Log in" }
                }
                p { "New here? " a href=(super::with_next("/signup", next)) { "Create an account" } }
            }
        },
    )
}

/// A page that says what went wrong.
pub fn problem(title: &str, message: &str) -> Markup {
    layout(
        title,
        false,
        html! {
            main #main .narrow {
                h1 { (title) }
                p { (message) }
                p { a href="/account" { "Back to your account" } }
            }
        },
    )
}

fn when(t: OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}

/// "1h 02m 03s" from `secs` seconds (or "expired").
fn left(secs: i64) -> String {
    if secs <= 0 {
        return "expired".to_owned();
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

fn time_cell(t: OffsetDateTime) -> Markup {
    html! { time datetime=(crate::handlers::rfc3339(t)) { (when(t)) } }
}

/// A countdown to `t`, kept live by `pages.js`.
fn countdown(t: OffsetDateTime, now: OffsetDateTime) -> Markup {
    html! {
        (time_cell(t)) " "
        span.countdown data-until=(t.unix_timestamp()) {
            "(" (left((t - now).whole_seconds())) " left)"
        }
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn csrf_field(data: &AccountData<'_>) -> Markup {
    html! {
        @if let Some(t) = &data.csrf_token {
            input type="hidden" name="csrf_token" value=(t);
        }
    }
}

/// The account page.
pub fn account(data: &AccountData<'_>, now: OffsetDateTime) -> Markup {
    let p = data.principal;
    let token = p.method != AuthMethod::Session;
    // Token pages sign out through the refresh cookie's path, so the whole
    // family ends even when the access token has already expired.
    let logout = if token {
        "/v1/tokens/logout"
    } else {
        "/logout"
    };
    let how = match p.method {
        AuthMethod::Session => "a session cookie",
        AuthMethod::CookieToken => "an access token in a cookie",
        AuthMethod::Bearer => "a bearer token",
    };
    layout(
        "Your account",
        true,
        html! {
            main #main .account {
                div.primary-col {
                    div.title-row {
                        h1 { "Your account" }
                        form method="post" action=(logout) {
                            (csrf_field(data))
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                    (messages(data.notice, data.error.as_deref()))
                    section.card aria-labelledby="who-h" {
                        h2 #who-h { "Who you are" }
                        dl.facts {
                            dt { "Username" } dd #username { (p.username) }
                            dt { "User id" } dd { code { (p.user_id) } }
                            dt { "This request was authenticated by" }
                            dd #method data-method=(p.method.as_str()) { (how) }
                        }
                    }
                    section.card aria-labelledby="devices-h" {
                        h2 #devices-h { "Your devices" }
                        p.hint { "Every place you are signed in, by session cookie or by token." }
                        ul.devices {
                            @for d in &data.devices {
                                @let name = describe_user_agent(d.user_agent.as_deref());
                                @let current = d.id == p.session.id;
                                li.device data-session=(d.id) {
                                    div.device-head {
                                        strong { (name) }
                                        @if current { " " span.badge { "This device" } }
                                    }
                                    dl.facts.small {
                                        dt { "Signed in with" }
                                        dd { @match d.kind { SessionKind::Cookie => "session cookie", SessionKind::Token => "tokens" } }
                                        dt { "Signed in" } dd { (time_cell(d.created_at)) }
                                        dt { "Last seen" } dd { (time_cell(d.last_seen_at)) }
                                        dt { "Address" } dd { (d.ip.as_deref().unwrap_or("unknown")) }
                                    }
                                    form method="post" action="/account/devices/end" {
                                        (csrf_field(data))
                                        input type="hidden" name="session_id" value=(d.id);
                                        button.secondary type="submit"
                                            aria-label={ "Sign out " (name) @if current { " (this device)" } " signed in " (when(d.created_at)) } {
                                            "Sign out"
                                        }
                                    }
                                }
                            }
                        }
                        form method="post" action="/account/devices/end-others" {
                            (csrf_field(data))
                            button.secondary type="submit" { "Sign out everywhere else" }
                        }
                    }
                    section.card aria-labelledby="password-h" {
                        h2 #password-h { "Change password" }
                        form method="post" action="/account/password" {
                            (csrf_field(data))
                            input type="text" name="username" value=(p.username) autocomplete="username" hidden;
                            label for="current-password" { "Current password" }
                            input #current-password type="password" name="current_password"
                                autocomplete="current-password" required;
                            label for="new-password" { "New password" }
                            input #new-password type="password" name="new_password"
                                autocomplete="new-password" required minlength="8"
                                aria-describedby="new-password-hint";
                            p #new-password-hint .hint {
                                "Changing it signs out every other device."
                            }
                            button.primary type="submit" { "Change password" }
                        }
                    }
                }
                aside.hood aria-labelledby="hood-h" {
                    h2 #hood-h { "Under the hood" }
                    @if token { (token_hood(data, now)) } @else { (session_hood(data, now)) }
                    (why(token))
                }
            }
        },
    )
}

fn browser_holds(data: &AccountData<'_>, token: bool) -> Markup {
    html! {
        h3 { "What your browser holds" }
        ul.cookies {
            @for (name, attrs) in &data.cookies {
                li { code.cookie-name { (name) } " = " code { (attrs) } }
            }
        }
        @if !token {
            p.hint {
                "With \"Remember me\" the cookie also has a Max-Age and outlasts the browser; without, the browser drops it when it closes."
            }
        }
        p.hint {
            "The value is never shown here, and no script on this page can read it: "
            code { "document.cookie" } " is empty."
        }
    }
}

fn verdict(data: &AccountData<'_>) -> Markup {
    html! {
        @if let Some(t) = &data.tamper {
            div.verdict role="status" {
                p { "The server changed " (t.what) ", then verified it as it verifies every request." }
                @if let Some(claims) = &t.claims {
                    p { "Claims as altered:" }
                    pre { code { (pretty(claims)) } }
                }
                p {
                    "Verdict: "
                    strong #verdict .{ @if t.refused { "refused" } @else { "accepted" } } { (t.verdict) }
                }
            }
        }
    }
}

fn session_hood(data: &AccountData<'_>, now: OffsetDateTime) -> Markup {
    let s = &data.principal.session;
    html! {
        section aria-labelledby="stored-h" {
            h3 #stored-h { "What the server stores" }
            dl.facts.small {
                dt { "Session id (public)" } dd { code { (s.id) } }
                dt { "Created" } dd { (time_cell(s.created_at)) }
                dt { "Last seen" } dd { (time_cell(s.last_seen_at)) }
                @if let Some(idle) = s.idle_expires_at {
                    dt { "Ends if idle" } dd #idle-expiry { (countdown(idle, now)) }
                }
                dt { "Ends at the latest" } dd { (countdown(s.expires_at, now)) }
                dt { "The secret" }
                dd { "Only its SHA-256 hash. The secret itself exists in your browser's cookie and nowhere else." }
            }
            p.hint {
                "Every page view moves the idle end forward by "
                (left(data.idle_secs)) " (written back at most once a minute)."
            }
        }
        (browser_holds(data, false))
        section aria-labelledby="tamper-h" {
            h3 #tamper-h { "Can someone guess their way into another session?" }
            p {
                "The cookie holds no user id to change, only 256 random bits. Ask the server to
                 change one character of yours and look it up:"
            }
            form method="post" action="/account/tamper" {
                (csrf_field(data))
                button.secondary #tamper type="submit" { "Tamper with my cookie" }
            }
            (verdict(data))
        }
    }
}

fn token_hood(data: &AccountData<'_>, now: OffsetDateTime) -> Markup {
    let p = data.principal;
    let kid = data
        .token_header
        .as_ref()
        .and_then(|h| h.get("kid"))
        .and_then(Value::as_str)
        .unwrap_or("");
    html! {
        section aria-labelledby="token-h" {
            h3 #token-h { "Your access token, decoded" }
            p.hint {
                "A JWT: a header and claims in plain base64url, and a signature over both. "
                "Lives " (left(data.access_ttl)) "; this one ends in "
                span.countdown #token-left data-until=(p.expires_at.unix_timestamp()) {
                    (left((p.expires_at - now).whole_seconds()))
                } "."
            }
            @if let Some(h) = &data.token_header {
                p { "Header" }
                pre { code { (pretty(h)) } }
            }
            @if let Some(c) = &p.claims {
                p { "Claims" }
                pre { code { (pretty(&serde_json::to_value(c).unwrap_or_default())) } }
            }
            p {
                "Signed with the key " code { (kid) } ", published in the "
                a href="/.well-known/jwks.json" { "JWKS" }
                " so other services can verify it without asking this server."
            }
            p.hint {
                "Its session (" code { (p.session.id) } ") is checked on every request too, so
                 signing out ends the token at once. When it expires, the page goes through "
                code { "/v1/tokens/resume" } ", the one page route the refresh cookie reaches, for a new one."
            }
        }
        (browser_holds(data, true))
        section aria-labelledby="tamper-h" {
            h3 #tamper-h { "Can the client change its user id to 1?" }
            form.inline method="post" action="/account/tamper" {
                label for="sub" { "Change " code { "sub" } " to" }
                input #sub type="text" name="sub" value="1" maxlength="64";
                button.secondary #tamper type="submit" { "Tamper and verify" }
            }
            p.hint {
                "The server re-encodes your token's claims with that "
                code { "sub" } ", keeps the original signature, and runs the real verification."
            }
            (verdict(data))
        }
    }
}

fn why(token: bool) -> Markup {
    html! {
        section.why aria-labelledby="why-h" {
            h3 #why-h { "Why it works this way" }
            dl {
                dt { "Where the state lives" }
                dd {
                    @if token {
                        "The token carries who you are, signed; the server still keeps your session
                         (the refresh family), so it can end it before the token expires."
                    } @else {
                        "On the server: your session is a row there. The cookie is only a random key
                         to it, so signing out ends it everywhere at once."
                    }
                }
                dt { "Why HttpOnly" }
                dd { "Scripts cannot read the cookie, not even one injected by an attacker. The browser only sends it back to this server." }
                dt { "Why not localStorage" }
                dd { "Any script on the page can read localStorage, so one injected script would carry your credential away. A cookie no script can read cannot be stolen that way." }
                dt { "Why HTTPS" }
                dd { "Anyone on the network path could copy a cookie sent in the clear. Production cookies are Secure: the browser sends them over HTTPS only." }
            }
        }
    }
}
