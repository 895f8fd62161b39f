//! The account pages a person signs in with (`/`, `/signup`, `/login`,
//! `/account`), server-rendered HTML with forms that work without script.
//!
//! Like the JSON handlers, every `POST` here translates a form into one
//! call of an operation in `crate::accounts` (`Accounts::register`,
//! `log_in`, `end_session`, `end_other_sessions`, `change_password`;
//! `Tokens::log_in`, `refresh`, `revoke`) and the outcome into a redirect
//! or a page; reads (the device list) go to the stores as `GET /v1/sessions`
//! does. Forms are `application/x-www-form-urlencoded` ([`FormBody`]); an
//! unsafe cookie-session request carries its CSRF token in the hidden field
//! `csrf_token` ([`crate::auth::authenticate_page`]). Every HTML answer has
//! a strict Content-Security-Policy (no inline script or style) and
//! `Referrer-Policy: no-referrer`; the only script, `pages.js`, counts down
//! and never touches a credential (the cookies are `HttpOnly`).

mod util;
mod view;

use axum::extract::{FromRequest, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tessera_core::Refusal;
use utoipa::{IntoParams, ToSchema};

use crate::accounts::{self, Attempt, Delivery, Ending, Registrar};
use crate::app::{App, AppState};
use crate::auth::{
    AuthFailure, AuthMethod, Credential, Principal, authenticate, authenticate_page,
    check_access_token,
};
use crate::cookies;
use crate::error::ApiError;
use crate::extract::{Client, MAX_BODY_BYTES, payload_too_large};
use crate::handlers::now;

pub use util::{describe_user_agent, next_or_account, safe_next};

/// The pages' Content-Security-Policy: everything from this origin only, no
/// inline script or style, no plugins, never framed, no `<base>`, forms
/// post only here.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The route a page sends the browser through when its access token has
/// expired: under `/v1/tokens`, the refresh cookie's path, so the refresh
/// token reaches it and no other page.
pub const RESUME: &str = "/v1/tokens/resume";

/// The security headers of every HTML answer.
fn secure_headers(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut res = (status, axum::response::Html(markup.into_string())).into_response();
    secure_headers(&mut res);
    res
}

/// `303 See Other` to `to`, a path on this origin.
fn see_other(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut res);
    res
}

/// `?next=` for a redirect to `path`'s login, percent-encoded.
fn with_next(base: &str, next: &str) -> String {
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    format!("{base}?{query}")
}

/// A form body: `application/x-www-form-urlencoded` (else `415`), at most
/// 64 KiB (else `413`), decoded with `serde_urlencoded` (else `400`).
pub struct FormBody<T>(pub Parts, pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for FormBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "This form must be sent as application/x-www-form-urlencoded.",
            )
            .into_response());
        }
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| payload_too_large().into_response())?;
        let value = serde_urlencoded::from_bytes(&bytes).map_err(|_| {
            ApiError::invalid_request("The form's fields could not be read.").into_response()
        })?;
        Ok(Self(parts, value))
    }
}

/// The notices a redirect may ask a page to show, by a fixed key (never
/// text from the URL).
fn notice(key: Option<&str>) -> Option<&'static str> {
    Some(match key? {
        "registered" => "Your account is ready. Log in to continue.",
        "signed_out" => "You are signed out.",
        "device_ended" => "That device is signed out.",
        "others_ended" => "Every other device is signed out.",
        "password_changed" => "Your password is changed, and every other device is signed out.",
        "expired" => "Your sign-in has ended. Log in again.",
        "retry" => "Your access token had expired and was renewed: please try that again.",
        _ => return None,
    })
}

/// The query of the pages: where to go after logging in, and a notice.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Where to go afterwards: a path on this origin, else `/account`.
    next: Option<String>,
    /// A notice to show, by key (`registered`, `signed_out`, …); any other
    /// key shows nothing.
    notice: Option<String>,
}

/// `GET /`: the account page, or logging in first.
#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    responses(
        (status = 303, description = "To `/account`.", headers(("Location" = String))),
    )
)]
pub async fn home() -> Response {
    see_other("/account")
}

/// `GET /signup`.
#[utoipa::path(
    get,
    path = "/signup",
    tag = "pages",
    params(PageQuery),
    responses(
        (status = 200, description = "The sign-up form.", content_type = "text/html", body = String),
    )
)]
pub async fn signup_page(Query(q): Query<PageQuery>) -> Response {
    let next = next_or_account(q.next.as_deref());
    html(StatusCode::OK, view::signup(next, "", None))
}

/// The sign-up form.
#[derive(Deserialize, ToSchema)]
pub struct SignupForm {
    /// As for `POST /v1/users`.
    username: String,
    /// As for `POST /v1/users`.
    password: String,
    /// Where to go after logging in.
    #[serde(default)]
    next: String,
}

/// `POST /signup`: [`Accounts::register`](crate::accounts::Accounts::register),
/// then the login page.
#[utoipa::path(
    post,
    path = "/signup",
    tag = "pages",
    request_body(content = SignupForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Registered: to `/login?notice=registered&next=…`.", headers(("Location" = String))),
        (status = 400, description = "The form again, with the message: username or password out of bounds, or a password too easy to guess.", content_type = "text/html", body = String),
        (status = 403, description = "The form again: registration is closed.", content_type = "text/html", body = String),
        (status = 409, description = "The form again: the username is taken.", content_type = "text/html", body = String),
        (status = 429, description = "The form again: the registration throttle holds.", content_type = "text/html", body = String,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "A store does not answer: a page saying so.", content_type = "text/html", body = String),
    )
)]
pub async fn signup(
    State(app): State<AppState>,
    Client(client): Client,
    FormBody(_, form): FormBody<SignupForm>,
) -> Response {
    let next = next_or_account(Some(&form.next));
    match app
        .accounts
        .register(
            &form.username,
            &form.password,
            Registrar::Public,
            &client,
            now(),
        )
        .await
    {
        Ok(_) => {
            let q = serde_urlencoded::to_string([("notice", "registered"), ("next", next)])
                .unwrap_or_default();
            see_other(&format!("/login?{q}"))
        }
        Err(denied) => {
            let e = ApiError::from(denied);
            let mut res = html(
                e.status(),
                view::signup(next, &form.username, Some(e.message())),
            );
            if let Some(retry) = e.retry_after() {
                res.headers_mut().insert(header::RETRY_AFTER, retry);
            }
            res
        }
    }
}

/// `GET /login`.
#[utoipa::path(
    get,
    path = "/login",
    tag = "pages",
    params(PageQuery),
    responses(
        (status = 200, description = "The login form, with the notice of `notice` if it names one.", content_type = "text/html", body = String),
    )
)]
pub async fn login_page(Query(q): Query<PageQuery>) -> Response {
    let next = next_or_account(q.next.as_deref());
    html(
        StatusCode::OK,
        view::login(next, "", false, notice(q.notice.as_deref()), None),
    )
}

/// The login form.
#[derive(Deserialize, ToSchema)]
pub struct LoginForm {
    /// The username, in any case.
    username: String,
    /// The password.
    password: String,
    /// `session` (a session cookie) or `token` (tokens in cookies).
    #[serde(default)]
    method: String,
    /// A checkbox: present when ticked.
    remember: Option<String>,
    /// Where to go after logging in.
    #[serde(default)]
    next: String,
}

/// `POST /login`: [`Accounts::log_in`](crate::accounts::Accounts::log_in)
/// (a session cookie) or [`Tokens::log_in`](crate::accounts::Tokens::log_in)
/// (tokens in cookies, as `POST /v1/tokens?cookie=true`), then `next`.
#[utoipa::path(
    post,
    path = "/login",
    tag = "pages",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Logged in: to `next`, with the session cookie or the token cookies and the device cookie.",
            headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, description = "The form again: the username or password is incorrect.", content_type = "text/html", body = String),
        (status = 429, description = "The form again: the login throttle holds.", content_type = "text/html", body = String,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "A store does not answer: a page saying so.", content_type = "text/html", body = String),
    )
)]
pub async fn login(
    State(app): State<AppState>,
    Client(client): Client,
    FormBody(parts, form): FormBody<LoginForm>,
) -> Response {
    let next = next_or_account(Some(&form.next));
    let attempt = Attempt {
        username: &form.username,
        password: &form.password,
        client,
        device: app.known_device(&parts.headers, &form.username),
    };
    let mut res = see_other(next);
    let h = res.headers_mut();
    if form.method == "token" {
        match app.tokens.log_in(attempt, Delivery::Cookie, now()).await {
            Ok(grant) => {
                for cookie in app.token_cookies(&grant) {
                    h.append(header::SET_COOKIE, cookie);
                }
                h.append(header::SET_COOKIE, app.cookies.clear_session());
                h.append(header::SET_COOKIE, app.device_cookie(&grant.username));
            }
            Err(denied) => return login_failed(&form, next, denied),
        }
    } else {
        match app.accounts.log_in(attempt, now()).await {
            Ok(login) => {
                let max_age = form.remember.is_some().then_some(app.policy.absolute);
                h.append(
                    header::SET_COOKIE,
                    app.cookies.set_session(login.secret.expose(), max_age),
                );
                for clear in app.cookies.clear_tokens() {
                    h.append(header::SET_COOKIE, clear);
                }
                h.append(header::SET_COOKIE, app.device_cookie(&login.user.username));
            }
            Err(denied) => return login_failed(&form, next, denied),
        }
    }
    res
}

fn login_failed(form: &LoginForm, next: &str, denied: accounts::Denied) -> Response {
    let e = ApiError::from(denied);
    let mut res = html(
        e.status(),
        view::login(
            next,
            &form.username,
            form.method == "token",
            None,
            Some(e.message()),
        ),
    );
    if let Some(retry) = e.retry_after() {
        res.headers_mut().insert(header::RETRY_AFTER, retry);
    }
    res
}

/// Where a request whose credential is missing or ended goes: through
/// [`RESUME`], which renews an expired access token from the refresh cookie
/// and otherwise leads to the login page.
fn signed_out(next: &str) -> Response {
    see_other(&with_next(RESUME, next))
}

/// What a page request authenticated as, or the answer to give instead.
async fn principal(
    app: &App,
    parts: &Parts,
    form_token: Option<&str>,
    next: &str,
) -> Result<Principal, Response> {
    match authenticate_page(app, parts, form_token, now()).await {
        Ok(p) => Ok(p),
        Err(AuthFailure::Refused(..)) => Err(signed_out(next)),
        Err(AuthFailure::Csrf) => Err(html(
            StatusCode::FORBIDDEN,
            view::problem(
                "This form has expired",
                "The form was not sent by this page, or your sign-in changed since it was shown. \
                 Go back to your account and try again.",
            ),
        )),
        Err(AuthFailure::Store(e)) => Err(store_problem(e.into())),
    }
}

fn store_problem(e: ApiError) -> Response {
    html(
        e.status(),
        view::problem("Something went wrong", e.message()),
    )
}

/// The account page's data, gathered for [`view::account`].
pub struct AccountData<'a> {
    principal: &'a Principal,
    devices: Vec<tessera_core::SessionRecord>,
    csrf_token: Option<String>,
    notice: Option<&'static str>,
    error: Option<String>,
    /// The decoded header of the access token (token methods).
    token_header: Option<Value>,
    /// What the browser holds: cookie names and attributes, never values.
    cookies: Vec<(String, String)>,
    tamper: Option<Tampered>,
    access_ttl: i64,
    idle_secs: i64,
}

/// The outcome of the tamper demonstration.
pub struct Tampered {
    /// What was changed, in words.
    what: String,
    /// The claims as altered (tokens), for display.
    claims: Option<Value>,
    /// The server's verdict.
    verdict: String,
    /// Whether the server refused it (it always should).
    refused: bool,
}

/// A cookie as `Set-Cookie` would describe it, its value replaced.
fn cookie_shape(set_cookie: &HeaderValue, placeholder: &str) -> (String, String) {
    let raw = set_cookie.to_str().unwrap_or("");
    let (pair, attrs) = raw.split_once("; ").unwrap_or((raw, ""));
    let name = pair.split('=').next().unwrap_or("").to_owned();
    (name, format!("{placeholder}; {attrs}"))
}

async fn account_page(
    app: &App,
    p: &Principal,
    parts: &Parts,
    notice: Option<&'static str>,
    error: Option<(StatusCode, String)>,
    tamper: Option<Tampered>,
) -> Response {
    let devices = match app.stores.sessions.list_sessions(&p.user_id, now()).await {
        Ok(d) => d,
        Err(e) => return store_problem(e.into()),
    };
    let (token_header, cookie_list) = if p.method == AuthMethod::Session {
        let c = &app.cookies;
        (
            None,
            vec![cookie_shape(
                &c.set_session("(the session secret)", None),
                "(the session secret)",
            )],
        )
    } else {
        let raw = cookies::find(&parts.headers, app.cookies.access_name())
            .next()
            .unwrap_or("");
        let header = raw
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let c = &app.cookies;
        (
            header,
            vec![
                cookie_shape(
                    &c.set_access("x", app.rules.access_ttl),
                    "(the access token)",
                ),
                cookie_shape(
                    &c.set_refresh("x", app.settings.refresh_ttl),
                    "(the refresh token)",
                ),
            ],
        )
    };
    let (status, error) = match error {
        Some((s, e)) => (s, Some(e)),
        None => (StatusCode::OK, None),
    };
    let data = AccountData {
        principal: p,
        devices,
        csrf_token: p.csrf_token(),
        notice,
        error,
        token_header,
        cookies: cookie_list,
        tamper,
        access_ttl: app.rules.access_ttl.whole_seconds(),
        idle_secs: app.policy.idle.whole_seconds(),
    };
    html(status, view::account(&data, now()))
}

/// `GET /account`: who you are, how this request authenticated, your
/// devices, the password form, and "under the hood".
#[utoipa::path(
    get,
    path = "/account",
    tag = "pages",
    params(PageQuery),
    security((), ("sessionCookie" = []), ("accessCookie" = [])),
    responses(
        (status = 200, description = "The account page of the credential in the cookies.", content_type = "text/html", body = String),
        (status = 303, description = "No credential that works: through `/v1/tokens/resume` to the login page.", headers(("Location" = String))),
        (status = 503, description = "A store does not answer: a page saying so.", content_type = "text/html", body = String),
    )
)]
pub async fn account(
    State(app): State<AppState>,
    Query(q): Query<PageQuery>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    match principal(&app, &parts, None, "/account").await {
        Ok(p) => account_page(&app, &p, &parts, notice(q.notice.as_deref()), None, None).await,
        Err(res) => res,
    }
}

/// A form of the account page: its CSRF token, and maybe more.
#[derive(Deserialize, ToSchema)]
pub struct AccountForm {
    /// The session's CSRF token (session cookies; or `X-CSRF-Token`).
    #[serde(default)]
    csrf_token: String,
    /// `POST /account/devices/end`: the session to end.
    #[serde(default)]
    session_id: String,
    /// `POST /account/password`: the password now.
    #[serde(default)]
    current_password: String,
    /// `POST /account/password`: the new password.
    #[serde(default)]
    new_password: String,
    /// `POST /account/tamper`: the `sub` to forge (default `"1"`).
    #[serde(default)]
    sub: String,
}

/// The principal of an account-page form, or where to go instead: an
/// expired access token goes through [`RESUME`] back to the account page,
/// which says to try again.
async fn form_principal(
    app: &App,
    parts: &Parts,
    form: &AccountForm,
) -> Result<Principal, Response> {
    let had_token = cookies::find(&parts.headers, app.cookies.access_name())
        .next()
        .is_some()
        || cookies::find(&parts.headers, app.cookies.session_name())
            .next()
            .is_none();
    principal(app, parts, Some(&form.csrf_token), "/account?notice=retry")
        .await
        .map_err(|res| {
            if res.status() == StatusCode::SEE_OTHER && !had_token {
                // A session cookie that no longer works: log in again.
                see_other("/login?notice=expired")
            } else {
                res
            }
        })
}

/// `POST /account/devices/end`:
/// [`Accounts::end_session`](crate::accounts::Accounts::end_session) for one
/// of your devices; ending this one signs you out here.
#[utoipa::path(
    post,
    path = "/account/devices/end",
    tag = "pages",
    request_body(content = AccountForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("sessionCookie" = []), ("accessCookie" = [])),
    responses(
        (status = 303, description = "Done (to `/account?notice=…`, or `/login?notice=signed_out`), or without a working credential through `/v1/tokens/resume` or to the login page.", headers(("Location" = String))),
        (status = 403, description = "The form was not sent by this page (a missing or wrong CSRF token): a page saying so.", content_type = "text/html", body = String),
        (status = 404, description = "The account page with the message: no such session of yours.", content_type = "text/html", body = String),
        (status = 503, description = "A store does not answer: a page saying so.", content_type = "text/html", body = String),
    )
)]
pub async fn end_device(
    State(app): State<AppState>,
    Client(client): Client,
    FormBody(parts, form): FormBody<AccountForm>,
) -> Response {
    let p = match form_principal(&app, &parts, &form).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    match app
        .accounts
        .end_session(
            &p.user_id,
            &form.session_id,
            Ending::Revoked,
            &client,
            now(),
        )
        .await
    {
        Ok(()) if form.session_id == p.session.id => {
            let mut res = see_other("/login?notice=signed_out");
            clear_credentials(&app, res.headers_mut());
            res
        }
        Ok(()) => see_other("/account?notice=device_ended"),
        Err(denied) => {
            let e = ApiError::from(denied);
            let err = Some((e.status(), e.message().to_owned()));
            account_page(&app, &p, &parts, None, err, None).await
        }
    }
}

/// `POST /account/devices/end-others`:
/// [`Accounts::end_other_sessions`](crate::accounts::Accounts::end_other_sessions).
#[utoipa::path(
    post,
    path = "/account/devices/end-others",
    tag = "pages",
    request_body(content = AccountForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("sessionCookie" = []), ("accessCookie" = [])),
    responses(
        (status = 303, description = "Done (to `/account?notice=…`, or `/login?notice=signed_out`), or without a working credential through `/v1/tokens/resume` or to the login page.", headers(("Location" = String))),
        (status = 403, description = "The form was not sent by this page (a missing or wrong CSRF token): a page saying so.", content_type = "text/html", body = String),
        (status = 503, description = "A store does not answer: a page saying so.", content_type = "text/html", body = String),
    )
)]
pub async fn end_others(
    State(app): State<AppState>,
    Client(client): Client,
    FormBody(parts, form): FormBody<AccountForm>,
) -> Response {
    let p = match form_principal(&app, &parts, &form).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    match app
        .accounts
        .end_other_sessions(&p.user_id, &p.session.id, &client, now())
        .await
    {
        Ok(_) => see_other("/account?notice=others_ended"),
        Err(denied) => store_problem(denied.into()),
    }
}

/// `POST /account/password`:
/// [`Accounts::change_password`](crate::accounts::Accounts::change_password),
/// which signs out every other device.
#[utoipa::path(
    post,
    path = "/account/password",
    tag = "pages",
    request_body(content = AccountForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("sessionCookie" = []), ("accessCookie" = [])),
    responses(
        (status = 303, description = "Done (to `/account?notice=…`, or `/login?notice=signed_out`), or without a working credential through `/v1/tokens/resume` or to the login page.", headers(("Location" = String))),
        (status = 400, description = "The account page with the message: the new password is out of bounds or too easy to guess.", content_type = "text/html", body = String),
        (status = 401, description = "The account page with the message: the current password is not right.", content_type = "text/html", body = String),
        (status = 403, description = "The form was not sent by this page (a missing or wrong CSRF token): a page saying so.", content_type = "text/html", body = String),
        (status = 429, description = "The account page with the message: the login throttle holds.", content_type = "text/html", body = String),
        (status = 503, description = "A store does not answer: a page saying so.", content_type = "text/html", body = String),
    )
)]
pub async fn change_password(
    State(app): State<AppState>,
    Client(client): Client,
    FormBody(parts, form): FormBody<AccountForm>,
) -> Response {
    let p = match form_principal(&app, &parts, &form).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let change = accounts::PasswordChange {
        user_id: &p.user_id,
        keep_session: &p.session.id,
        current: Attempt {
            username: &p.username,
            password: &form.current_password,
            client,
            device: app.known_device(&parts.headers, &p.username),
        },
        new: &form.new_password,
    };
    match app.accounts.change_password(change, now()).await {
        Ok(()) => see_other("/account?notice=password_changed"),
        Err(denied) => {
            let e = ApiError::from(denied);
            let message = if e.code() == "invalid_credentials" {
                "Your current password is not right.".to_owned()
            } else {
                e.message().to_owned()
            };
            account_page(&app, &p, &parts, None, Some((e.status(), message)), None).await
        }
    }
}

/// Words for a refusal, as the tamper demonstration shows it.
fn verdict(r: Refusal) -> String {
    let why = match r {
        Refusal::BadSignature => "bad signature",
        Refusal::Unknown => "no such session",
        Refusal::Malformed => "malformed",
        Refusal::Expired => "expired",
        other => other.label(),
    };
    format!("refused: {why}")
}

/// `POST /account/tamper`: the server alters your own credential as an
/// attacker would and verifies the result with the real checks. A token:
/// its claims re-encoded with another `sub` (the form's, or `"1"`) under
/// the original signature. A session cookie: the secret with one character
/// changed, as a guess at someone else's. The altered credential never
/// leaves the server; the page shows the altered claims and the verdict.
#[utoipa::path(
    post,
    path = "/account/tamper",
    tag = "pages",
    request_body(content = AccountForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("sessionCookie" = []), ("accessCookie" = [])),
    responses(
        (status = 200, description = "The account page with the altered credential and the server's verdict.", content_type = "text/html", body = String),
        (status = 303, description = "Without a working credential: through `/v1/tokens/resume` or to the login page.", headers(("Location" = String))),
        (status = 403, description = "The form was not sent by this page (a missing or wrong CSRF token): a page saying so.", content_type = "text/html", body = String),
        (status = 503, description = "A store does not answer: a page saying so.", content_type = "text/html", body = String),
    )
)]
pub async fn tamper(
    State(app): State<AppState>,
    FormBody(parts, form): FormBody<AccountForm>,
) -> Response {
    let p = match form_principal(&app, &parts, &form).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let now = now();
    let tampered = if p.method == AuthMethod::Session {
        let secret = cookies::find(&parts.headers, app.cookies.session_name())
            .find(|v| tessera_core::SessionSecret::parse(v).is_some())
            .unwrap_or("");
        let mut altered: Vec<char> = secret.chars().collect();
        if let Some(last) = altered.last_mut() {
            *last = if *last == 'A' { 'B' } else { 'A' };
        }
        let altered: String = altered.into_iter().collect();
        let outcome = authenticate(&app, Credential::SessionCookie(altered), &parts, now).await;
        let (verdict, refused) = match outcome {
            Ok(_) => ("accepted".to_owned(), false),
            Err(AuthFailure::Refused(_, r)) => (verdict(r), true),
            Err(AuthFailure::Csrf) => ("refused: CSRF check failed".to_owned(), true),
            Err(AuthFailure::Store(e)) => return store_problem(e.into()),
        };
        Tampered {
            what: "the last character of your session secret".to_owned(),
            claims: None,
            verdict,
            refused,
        }
    } else {
        let raw = cookies::find(&parts.headers, app.cookies.access_name())
            .next()
            .unwrap_or("");
        let sub = match form.sub.trim() {
            "" => "1".to_owned(),
            s => s.chars().take(64).collect(),
        };
        let mut pieces = raw.splitn(3, '.');
        let (Some(head), Some(payload), Some(signature)) =
            (pieces.next(), pieces.next(), pieces.next())
        else {
            return signed_out("/account");
        };
        let mut claims: Value = match URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(v) => v,
            None => return signed_out("/account"),
        };
        claims["sub"] = Value::String(sub.clone());
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let forged = format!("{head}.{body}.{signature}");
        let outcome = check_access_token(&app, &forged, AuthMethod::CookieToken, now).await;
        let (verdict, refused) = match outcome {
            Ok(_) => ("accepted".to_owned(), false),
            Err(AuthFailure::Refused(_, r)) => (verdict(r), true),
            Err(AuthFailure::Csrf) => ("refused".to_owned(), true),
            Err(AuthFailure::Store(e)) => return store_problem(e.into()),
        };
        Tampered {
            what: format!("sub to \"{sub}\", keeping the original signature"),
            claims: Some(claims),
            verdict,
            refused,
        }
    };
    account_page(&app, &p, &parts, None, None, Some(tampered)).await
}

/// `Set-Cookie`s that drop every credential cookie of this browser.
fn clear_credentials(app: &App, h: &mut HeaderMap) {
    h.append(header::SET_COOKIE, app.cookies.clear_session());
    for clear in app.cookies.clear_tokens() {
        h.append(header::SET_COOKIE, clear);
    }
}

/// `POST /logout` and `POST /v1/tokens/logout`: signs this browser out.
/// A session cookie (with the form's CSRF token):
/// [`Accounts::end_session`](crate::accounts::Accounts::end_session). Token
/// cookies: [`Tokens::revoke`](crate::accounts::Tokens::revoke) of each,
/// the refresh cookie included, which only the `/v1/tokens` path receives
/// (so the token page's form posts there: it ends the family even after
/// the access token expired). Then every credential cookie is cleared.
#[utoipa::path(
    post,
    path = "/logout",
    tag = "pages",
    request_body(content = AccountForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("sessionCookie" = []), ("accessCookie" = [])),
    responses(
        (status = 303, description = "Signed out: every credential cookie cleared, to `/login?notice=signed_out`.",
            headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 403, description = "The form was not sent by this page (a missing or wrong CSRF token): a page saying so.", content_type = "text/html", body = String),
        (status = 503, description = "A store does not answer: a page saying so.", content_type = "text/html", body = String),
    )
)]
pub async fn logout(
    State(app): State<AppState>,
    Client(client): Client,
    FormBody(parts, form): FormBody<AccountForm>,
) -> Response {
    let now = now();
    let has_session = cookies::find(&parts.headers, app.cookies.session_name())
        .next()
        .is_some_and(|v| !v.is_empty());
    if has_session {
        match authenticate_page(&app, &parts, Some(&form.csrf_token), now).await {
            Ok(p) if p.method == AuthMethod::Session => {
                if let Err(denied) = app
                    .accounts
                    .end_session(&p.user_id, &p.session.id, Ending::Logout, &client, now)
                    .await
                {
                    return store_problem(denied.into());
                }
            }
            Ok(_) | Err(AuthFailure::Refused(..)) => {}
            Err(AuthFailure::Csrf) => {
                return html(
                    StatusCode::FORBIDDEN,
                    view::problem(
                        "This form has expired",
                        "The sign-out form was not sent by this page. Go back to your account \
                         and sign out there.",
                    ),
                );
            }
            Err(AuthFailure::Store(e)) => return store_problem(e.into()),
        }
    }
    let tokens: Vec<String> = cookies::find(&parts.headers, app.cookies.access_name())
        .chain(cookies::find(&parts.headers, app.cookies.refresh_name()))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    for token in tokens {
        if let Err(denied) = app.tokens.revoke(&token, &client, now).await {
            return store_problem(denied.into());
        }
    }
    let mut res = see_other("/login?notice=signed_out");
    clear_credentials(&app, res.headers_mut());
    res
}

/// `POST /v1/tokens/logout`: [`logout`] under `/v1/tokens`, where the
/// browser sends the refresh cookie too.
#[utoipa::path(
    post,
    path = "/v1/tokens/logout",
    tag = "pages",
    request_body(content = AccountForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("accessCookie" = []), ("refreshCookie" = [])),
    responses(
        (status = 303, description = "Signed out: every credential cookie cleared, to `/login?notice=signed_out`.",
            headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 403, description = "The form was not sent by this page (a missing or wrong CSRF token): a page saying so.", content_type = "text/html", body = String),
        (status = 503, description = "A store does not answer: a page saying so.", content_type = "text/html", body = String),
    )
)]
pub async fn token_logout(
    state: State<AppState>,
    client: Client,
    form: FormBody<AccountForm>,
) -> Response {
    logout(state, client, form).await
}

/// `GET /v1/tokens/resume?next=PATH`: where a page sends a browser whose
/// access-token cookie has expired (or which has no credential at all). With
/// a refresh cookie (sent only to `/v1/tokens`),
/// [`Tokens::refresh`](crate::accounts::Tokens::refresh) sets fresh token
/// cookies and the browser goes back to `next`; without one, or when the
/// refresh is refused, the token cookies are cleared and the browser goes
/// to the login page (with `next`). `next` must be a path on this origin.
#[utoipa::path(
    get,
    path = "/v1/tokens/resume",
    tag = "pages",
    params(PageQuery),
    security((), ("refreshCookie" = [])),
    responses(
        (status = 303, description = "To `next` with new token cookies, or to the login page (clearing the token cookies if there were any).",
            headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 503, description = "A store does not answer: a page saying so.", content_type = "text/html", body = String),
    )
)]
pub async fn resume(
    State(app): State<AppState>,
    Client(client): Client,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let next = next_or_account(q.next.as_deref());
    // A refresh spends a token: only for this site's own page navigations.
    // A sibling subdomain's <img src=…/v1/tokens/resume> carries the
    // (SameSite=Strict) refresh cookie too, and a burst of those would race
    // the rotation into reuse and end the family; browsers mark it
    // `Sec-Fetch-Site: same-site`, `Sec-Fetch-Mode: no-cors`.
    let fetch = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let own_navigation = fetch("sec-fetch-site")
        .is_none_or(|s| matches!(s, "same-origin" | "none"))
        && fetch("sec-fetch-mode").is_none_or(|m| m == "navigate");
    let refresh = cookies::find(&headers, app.cookies.refresh_name())
        .find(|t| !t.is_empty() && own_navigation)
        .map(str::to_owned);
    if let Some(raw) = &refresh {
        match app
            .tokens
            .refresh(raw, Delivery::Cookie, &client, now())
            .await
        {
            Ok(grant) => {
                let mut res = see_other(next);
                for cookie in app.token_cookies(&grant) {
                    res.headers_mut().append(header::SET_COOKIE, cookie);
                }
                return res;
            }
            Err(accounts::Denied::Store(e)) => return store_problem(e.into()),
            Err(_) => {}
        }
    }
    let login = with_next("/login", next.split('?').next().unwrap_or("/account"));
    let mut res = see_other(&login);
    if refresh.is_some() {
        for clear in app.cookies.clear_tokens() {
            res.headers_mut().append(header::SET_COOKIE, clear);
        }
    }
    res
}

/// `GET /assets/pages.css`.
#[utoipa::path(
    get,
    path = "/assets/pages.css",
    tag = "pages",
    responses(
        (status = 200, description = "The pages' stylesheet.", content_type = "text/css", body = String),
    )
)]
pub async fn stylesheet() -> Response {
    asset(include_str!("assets/pages.css"), "text/css; charset=utf-8")
}

/// `GET /assets/pages.js`: the countdowns (a file, so the CSP forbids
/// inline script).
#[utoipa::path(
    get,
    path = "/assets/pages.js",
    tag = "pages",
    responses(
        (status = 200, description = "The account page's countdown script.", content_type = "text/javascript", body = String),
    )
)]
pub async fn script() -> Response {
    asset(
        include_str!("assets/pages.js"),
        "text/javascript; charset=utf-8",
    )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    res
}
