//! Criterion benchmarks of the store-bound and cached steps of the
//! authentication path (`docs/profile-healthz.md`, "Benchmarks"):
//!
//! - `token_check/*`: an access token checked the way `auth.rs` does it,
//!   from the verified-token cache (`token_cache::VerifiedCache`, then the
//!   claims) and without it (`KeyRing::verify`), for HS256 and EdDSA;
//! - `session_check/sqlite_miss`: a cookie session looked up in SQLite by its
//!   secret's hash, then its user, on a file holding 10 000 sessions: what a
//!   request pays when no in-process cache holds the session;
//! - `session_check/cache_hit`: the same, answered by the in-process session
//!   and user cache (`auth_cache`);
//! - `refresh/rotate_sqlite`: one refresh-token rotation (`spend_refresh`).
//!
//! `cargo bench -p tessera-server --bench auth_path` (add `-- --quick` for a
//! short run).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand_core::OsRng;
use tessera_core::SessionSecret;
use tessera_core::jwt::{Alg, KeyMaterial, KeyRing, TokenRules, check_claims};
use tessera_core::refresh::RefreshToken;
use tessera_core::session::{ClientInfo, SessionPolicy};

use tessera_server::auth_cache::{Announced, AuthCache, origin};
use tessera_server::token_cache::VerifiedCache;
use tessera_store::{
    ChangeFeed, FeedEvent, LocalFeed, RefreshRecord, RefreshStore, SessionStore, UserRecord,
    UserStore,
};
use tessera_store_sqlite::SqliteStore;
use time::{Duration, OffsetDateTime};

/// Sessions (and users, one per ten sessions) in the SQLite file.
const SESSIONS: usize = 10_000;

fn rules(alg: Alg) -> TokenRules {
    TokenRules {
        issuer: "http://127.0.0.1:7480".into(),
        audience: "tessera".into(),
        alg,
        access_ttl: Duration::minutes(15),
        leeway: Duration::seconds(60),
    }
}

/// Cached: the cache lookup (SHA-256 of the token), the kid still in the
/// ring, the claims. Uncached: the full verification.
fn token_check(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let mut group = c.benchmark_group("token_check");
    for alg in [Alg::Hs256, Alg::EdDsa] {
        let key = KeyMaterial::generate(alg, &mut OsRng).unwrap();
        let ring = KeyRing::new(&key, &[]).unwrap();
        let rules = rules(alg);
        let claims = rules.claims(
            "usr_0123456789abcdef0123456789abcdef",
            "alice",
            "ses_0123456789abcdef0123456789abcdef",
            now + Duration::days(30),
            now,
            &mut OsRng,
        );
        let token = ring.sign(&claims).unwrap();
        let cache = VerifiedCache::default();
        cache.insert(&token, ring.verify(&rules, &token, now).unwrap());
        group.bench_function(format!("cached/{}", alg.as_str()), |b| {
            b.iter(|| {
                let v = cache.get(black_box(&token)).unwrap();
                assert!(ring.knows(&v.kid));
                check_claims(&rules, &v.claims, now).unwrap();
                v
            });
        });
        group.bench_function(format!("uncached/{}", alg.as_str()), |b| {
            b.iter(|| ring.verify(&rules, black_box(&token), now).unwrap());
        });
    }
    group.finish();
}

struct Sqlite {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    secrets: Vec<SessionSecret>,
}

/// A SQLite file with [`SESSIONS`] cookie sessions of `SESSIONS / 10` users.
async fn sqlite() -> Sqlite {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let policy = SessionPolicy::default();
    let users = SESSIONS / 10;
    for u in 0..users {
        store
            .create_user(&UserRecord {
                id: format!("usr_{u:032x}"),
                username: format!("user{u}"),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
                created_at: now,
                disabled_at: None,
            })
            .await
            .unwrap();
    }
    let mut secrets = Vec::with_capacity(SESSIONS);
    for s in 0..SESSIONS {
        let secret = SessionSecret::generate(&mut OsRng);
        let record = policy.new_cookie_session(
            format!("ses_{s:032x}"),
            secret.hash(),
            format!("usr_{:032x}", s % users),
            ClientInfo::default(),
            now,
        );
        store.create_session(&record).await.unwrap();
        secrets.push(secret);
    }
    Sqlite {
        _dir: dir,
        store,
        secrets,
    }
}

/// The session and its user from SQLite, as a request does when no cache
/// holds them (the secret's hash, two indexed reads, the record's checks).
fn session_check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(sqlite());
    let now = OffsetDateTime::now_utc();
    let mut group = c.benchmark_group("session_check");
    let mut i = 0usize;
    group.bench_function("sqlite_miss", |b| {
        b.iter(|| {
            i = (i + 7919) % SESSIONS;
            let hash = db.secrets[i].hash();
            rt.block_on(async {
                let session = db.store.session_by_secret(&hash).await.unwrap().unwrap();
                session.check(now).unwrap();
                db.store
                    .user_by_id(&session.user_id)
                    .await
                    .unwrap()
                    .unwrap()
            })
        });
    });
    session_cache_hit(&rt, &db, &mut group);
    group.finish();
}

/// `session_check/cache_hit`: the same check answered by the in-process
/// session and user cache (`auth_cache`), every session of [`sqlite`]
/// cached first, so it reads beside `sqlite_miss` as a ratio.
fn session_cache_hit(
    rt: &tokio::runtime::Runtime,
    db: &Sqlite,
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
) {
    let cache = Arc::new(AuthCache::new(StdDuration::from_secs(300), origin()));
    cache.on_event(FeedEvent::Up);
    let inner = Arc::new(db.store.clone());
    let feed: Arc<dyn ChangeFeed> = Arc::new(LocalFeed);
    let origin: Arc<str> = Arc::from(cache.origin());
    let sessions = Announced::new(
        inner.clone(),
        Some(cache.clone()),
        true,
        feed.clone(),
        origin.clone(),
    );
    let users = Announced::new(inner, Some(cache), true, feed, origin);
    let now = OffsetDateTime::now_utc();
    let check = |i: usize| {
        let hash = db.secrets[i].hash();
        rt.block_on(async {
            let session = sessions.session_by_secret(&hash).await.unwrap().unwrap();
            session.check(now).unwrap();
            users.user_by_id(&session.user_id).await.unwrap().unwrap()
        })
    };
    for i in 0..SESSIONS {
        check(i);
    }
    let mut i = 0usize;
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % SESSIONS;
            black_box(check(i))
        });
    });
}

/// One rotation: spend a live refresh token and store its successor, in one
/// SQLite transaction. Each iteration spends a fresh token of its own family.
fn refresh(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(sqlite());
    let now = OffsetDateTime::now_utc();
    let key = [7u8; 32];
    let mut n = 0usize;
    c.bench_function("refresh/rotate_sqlite", |b| {
        b.iter_batched(
            || {
                n += 1;
                let token = RefreshToken::generate(&mut OsRng);
                let record = RefreshRecord {
                    hash: token.hash(),
                    session_id: format!("ses_{:032x}", n % SESSIONS),
                    user_id: format!("usr_{:032x}", n % (SESSIONS / 10)),
                    issued_at: now,
                    expires_at: now + Duration::days(30),
                    spent_at: None,
                };
                rt.block_on(db.store.create_refresh(&record)).unwrap();
                token
            },
            |token| {
                let successor = token.successor(&key);
                rt.block_on(db.store.spend_refresh(
                    &token.hash(),
                    &successor.hash(),
                    now,
                    Duration::seconds(10),
                ))
                .unwrap()
            },
            BatchSize::SmallInput,
        );
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(StdDuration::from_millis(500))
        .measurement_time(StdDuration::from_secs(2));
    targets = token_check, session_check, refresh
}
criterion_main!(benches);
