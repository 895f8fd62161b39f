//! Crashes: SIGKILL in the middle of mixed load, on SQLite, on PostgreSQL and
//! on PostgreSQL + Redis. Whatever the server acknowledged (a `2xx`) before
//! it died holds after a restart on the same database; what it did not
//! acknowledge may have happened or not, and is not checked.
//!
//! Every worker runs the same cycle on a user of its own: register, three
//! cookie logins, two token logins, a refresh, a logout, a revocation by id
//! (`DELETE /v1/sessions/{id}`), a token revocation, a second refresh. Each
//! request's entity is marked unknown before it is sent and set from the
//! answer, so a request cut by the kill leaves it unknown.

use std::os::unix::process::ExitStatusExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{Value, json};

use crate::scale::Shared;
use crate::support::*;

/// Concurrent workers.
const WORKERS: usize = 4;
/// Completed cycles (all workers together) before the kill, so that every
/// kind of request has been acknowledged a few times.
const CYCLES_BEFORE_KILL: usize = 6;

/// What the server acknowledged about a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Created, and nothing since that could have ended it.
    Live,
    /// Its end (logout, revocation) was acknowledged.
    Ended,
    /// A request that may have ended it got no answer (or a `503`).
    Unknown,
}

#[derive(Debug)]
struct CookieSession {
    cookie: String,
    state: Known,
}

#[derive(Debug)]
struct Family {
    access: String,
    /// The newest refresh token, while it is known to be unspent.
    refresh: Option<String>,
    /// Refresh tokens whose rotation was acknowledged: spent for good.
    spent: Vec<String>,
    state: Known,
}

/// Everything one worker was told.
#[derive(Debug, Default)]
struct Ledger {
    users: Vec<String>,
    cookies: Vec<CookieSession>,
    families: Vec<Family>,
    refused_503: usize,
}

/// A worker's view of the server: its address at the start, and a client.
struct Load {
    client: Client,
    base: String,
}

/// Why a request did not get an acknowledgement.
enum NoAck {
    /// The connection failed: the server is gone.
    Gone,
    /// `503`: a store did not answer; the state is unknown.
    Unavailable,
}

impl Load {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<Value>,
    ) -> Result<(HeaderMap, Value), NoAck> {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .headers(headers);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let res = req.send().await.map_err(|_| NoAck::Gone)?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.map_err(|_| NoAck::Gone)?;
        if status == 503 {
            return Err(NoAck::Unavailable);
        }
        assert!(
            (200..300).contains(&status),
            "{method} {path} under load got {status}: {text}"
        );
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((headers, value))
    }
}

fn cookie_of(headers: &HeaderMap) -> String {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tessera_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

fn str_of(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_owned()
}

/// One cycle on a new user. Returns `Err(Gone)` once the server is gone.
async fn cycle(load: &Load, ledger: &mut Ledger) -> Result<(), NoAck> {
    let name = unique("crash");
    let creds = json!({ "username": name, "password": PASSWORD });
    let post = |path: &'static str, body: Value| {
        load.send(Method::POST, path, HeaderMap::new(), Some(body))
    };

    post("/v1/users", creds.clone()).await?;
    ledger.users.push(name.clone());

    // Three cookie sessions: one ends by logout, one by revocation by id,
    // one stays.
    let mut cookie_sessions = Vec::new();
    for _ in 0..3 {
        let (h, body) = post("/v1/sessions", creds.clone()).await?;
        ledger.cookies.push(CookieSession {
            cookie: cookie_of(&h),
            state: Known::Live,
        });
        cookie_sessions.push((
            ledger.cookies.len() - 1,
            str_of(&body, "csrf_token"),
            str_of(&body["session"], "id"),
        ));
    }

    // Two token sessions: one is refreshed twice, one revoked.
    let mut families = Vec::new();
    for _ in 0..2 {
        let (_, body) = post("/v1/tokens", creds.clone()).await?;
        ledger.families.push(Family {
            access: str_of(&body, "access_token"),
            refresh: Some(str_of(&body, "refresh_token")),
            spent: Vec::new(),
            state: Known::Live,
        });
        families.push(ledger.families.len() - 1);
    }
    let refresh = |ledger: &mut Ledger, i: usize| {
        let family = &mut ledger.families[i];
        let presented = family.refresh.take().expect("an unspent refresh token");
        family.state = Known::Unknown;
        (presented.clone(), json!({ "refresh_token": presented }))
    };

    let (presented, body) = refresh(ledger, families[0]);
    let (_, got) = post("/v1/tokens/refresh", body).await?;
    let family = &mut ledger.families[families[0]];
    family.spent.push(presented);
    family.refresh = Some(str_of(&got, "refresh_token"));
    family.access = str_of(&got, "access_token");
    family.state = Known::Live;

    // Logout of the first cookie session.
    let (i, csrf, _) = &cookie_sessions[0];
    ledger.cookies[*i].state = Known::Unknown;
    let h = headers([
        ("cookie", ledger.cookies[*i].cookie.as_str()),
        ("x-csrf-token", csrf.as_str()),
    ]);
    load.send(Method::DELETE, "/v1/sessions/current", h, None)
        .await?;
    ledger.cookies[*i].state = Known::Ended;

    // The second, revoked by id from a token session of the same user.
    let (i, _, id) = &cookie_sessions[1];
    ledger.cookies[*i].state = Known::Unknown;
    let h = bearer(&json!(ledger.families[families[0]].access));
    load.send(Method::DELETE, &format!("/v1/sessions/{id}"), h, None)
        .await?;
    ledger.cookies[*i].state = Known::Ended;

    // The second token session, revoked with its refresh token.
    let family = &mut ledger.families[families[1]];
    family.state = Known::Unknown;
    let token = family.refresh.clone().expect("unspent");
    post("/v1/tokens/revoke", json!({ "token": token })).await?;
    ledger.families[families[1]].state = Known::Ended;

    let (presented, body) = refresh(ledger, families[0]);
    let (_, got) = post("/v1/tokens/refresh", body).await?;
    let family = &mut ledger.families[families[0]];
    family.spent.push(presented);
    family.refresh = Some(str_of(&got, "refresh_token"));
    family.access = str_of(&got, "access_token");
    family.state = Known::Live;
    Ok(())
}

async fn worker(load: Load, cycles: Arc<AtomicUsize>) -> Ledger {
    let mut ledger = Ledger::default();
    loop {
        match cycle(&load, &mut ledger).await {
            Ok(()) => {
                cycles.fetch_add(1, Ordering::Relaxed);
            }
            Err(NoAck::Unavailable) => ledger.refused_503 += 1,
            Err(NoAck::Gone) => return ledger,
        }
    }
}

/// Runs the load on `server`, SIGKILLs it mid-load, starts it again on the
/// same database and checks every acknowledgement.
async fn kill_under_load(server: &mut Server) {
    let cycles = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let load = Load {
            client: server.client().clone(),
            base: server.base().to_owned(),
        };
        workers.spawn(worker(load, cycles.clone()));
    }
    let started = Instant::now();
    while cycles.load(Ordering::Relaxed) < CYCLES_BEFORE_KILL {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "only {} cycles in 180 s; log:\n{}",
            cycles.load(Ordering::Relaxed),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = server.kill().await;
    assert_eq!(status.signal(), Some(9), "tessera was not killed: {status}");
    let ledgers = tokio::time::timeout(Duration::from_secs(60), workers.join_all())
        .await
        .expect("the workers did not notice the kill within 60 s");
    server.start_again().await;

    let mut ledger = Ledger::default();
    for l in ledgers {
        ledger.users.extend(l.users);
        ledger.cookies.extend(l.cookies);
        ledger.families.extend(l.families);
        ledger.refused_503 += l.refused_503;
    }
    let cookies = |k| ledger.cookies.iter().filter(|c| c.state == k).count();
    let families = |k| ledger.families.iter().filter(|f| f.state == k).count();
    let (live_cookies, ended_cookies) = (cookies(Known::Live), cookies(Known::Ended));
    let (live_families, ended_families) = (families(Known::Live), families(Known::Ended));
    let spent: usize = ledger.families.iter().map(|f| f.spent.len()).sum();
    eprintln!(
        "acknowledged before the kill: {} users, cookie sessions {live_cookies} live and \
         {ended_cookies} ended, token sessions {live_families} live and {ended_families} \
         ended, {spent} rotations; {} cycles cut by a 503",
        ledger.users.len(),
        ledger.refused_503
    );
    assert!(
        ledger.users.len() >= CYCLES_BEFORE_KILL
            && live_cookies
                .min(ended_cookies)
                .min(live_families)
                .min(ended_families)
                > 0
            && spent >= 2 * CYCLES_BEFORE_KILL,
        "too little was acknowledged to check anything"
    );

    for name in &ledger.users {
        let res = server
            .post_json(
                "/v1/tokens",
                &json!({ "username": name, "password": PASSWORD }),
            )
            .await;
        assert_eq!(
            res.status(),
            200,
            "{name}, whose registration was acknowledged, cannot log in"
        );
    }
    for c in &ledger.cookies {
        let (status, body) = call(
            server,
            Method::GET,
            "/v1/me",
            headers([("cookie", &c.cookie)]),
            None,
        )
        .await;
        match c.state {
            Known::Live => assert_eq!(status, 200, "a live cookie session: {body}"),
            Known::Ended => assert_eq!(status, 401, "an ended cookie session: {body}"),
            Known::Unknown => assert!(status == 200 || status == 401, "{status} {body}"),
        }
    }
    for f in &ledger.families {
        let me = call(
            server,
            Method::GET,
            "/v1/me",
            bearer(&json!(f.access)),
            None,
        )
        .await;
        let refreshed = match &f.refresh {
            Some(token) => Some(
                call(
                    server,
                    Method::POST,
                    "/v1/tokens/refresh",
                    HeaderMap::new(),
                    Some(&json!({ "refresh_token": token })),
                )
                .await,
            ),
            None => None,
        };
        match f.state {
            Known::Live => {
                assert_eq!(me.0, 200, "a live token session: {}", me.1);
                let (status, body) = refreshed.expect("a live family has a refresh token");
                assert_eq!(status, 200, "its unspent refresh token: {body}");
            }
            Known::Ended => {
                assert_eq!(me.0, 401, "a revoked token session: {}", me.1);
                if let Some((status, body)) = refreshed {
                    assert_eq!(status, 401, "a revoked family's refresh token: {body}");
                }
            }
            Known::Unknown => {}
        }
        // Whatever else happened, a rotation that was acknowledged spent its
        // token: presented again, it is refused (and, as reuse, ends the
        // family, which is why this comes last).
        for token in &f.spent {
            let (status, body) = call(
                server,
                Method::POST,
                "/v1/tokens/refresh",
                HeaderMap::new(),
                Some(&json!({ "refresh_token": token })),
            )
            .await;
            assert_eq!(status, 401, "a spent refresh token was accepted: {body}");
        }
    }
}

#[tokio::test]
async fn sigkill_under_load_loses_nothing_acknowledged_on_sqlite() {
    let mut server = start().await;
    kill_under_load(&mut server).await;
}

#[tokio::test]
async fn sigkill_under_load_loses_nothing_acknowledged_on_postgres() {
    let Some(shared) = Shared::new("sigkill_postgres") else {
        return;
    };
    shared
        .run(|shared| async move {
            let mut server = Server::start_with(
                BIN,
                Options {
                    args: shared.args_without_redis(),
                    ..Options::default()
                },
            )
            .await;
            kill_under_load(&mut server).await;
        })
        .await;
}

#[tokio::test]
async fn sigkill_under_load_loses_nothing_acknowledged_on_postgres_and_redis() {
    let Some(shared) = Shared::new("sigkill_postgres_redis") else {
        return;
    };
    shared
        .run(|shared| async move {
            let mut server = Server::start_with(
                BIN,
                Options {
                    args: shared.args(),
                    ..Options::default()
                },
            )
            .await;
            kill_under_load(&mut server).await;
        })
        .await;
}
