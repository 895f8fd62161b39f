//! Criterion benchmarks of the pure primitives on the request path
//! (`docs/profile-healthz.md`, "Benchmarks"): access-token sign and verify
//! for every algorithm, the session secret check, the refresh successor, and
//! an argon2id hash and verify with the server's default parameters.
//!
//! `cargo bench -p tessera-core --bench primitives` (add `-- --quick` for a
//! short run, or a filter such as `-- jwt/verify`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration as StdDuration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand_core::OsRng;
use tessera_core::jwt::{Alg, KeyMaterial, KeyRing, TokenRules};
use tessera_core::password::{HashCost, Hasher};
use tessera_core::refresh::RefreshToken;
use tessera_core::{Password, SessionPolicy, SessionSecret};
use time::{Duration, OffsetDateTime};

fn rules(alg: Alg) -> TokenRules {
    TokenRules {
        issuer: "http://127.0.0.1:7480".into(),
        audience: "tessera".into(),
        alg,
        access_ttl: Duration::minutes(15),
        leeway: Duration::seconds(60),
    }
}

/// Sign and full verification (header, signature, claims) per algorithm.
fn jwt(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let mut group = c.benchmark_group("jwt");
    for alg in [Alg::Hs256, Alg::EdDsa, Alg::Es256, Alg::Rs256] {
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
        ring.verify(&rules, &token, now).unwrap();
        group.bench_function(format!("sign/{}", alg.as_str()), |b| {
            b.iter(|| ring.sign(black_box(&claims)).unwrap());
        });
        group.bench_function(format!("verify/{}", alg.as_str()), |b| {
            b.iter(|| ring.verify(&rules, black_box(&token), now).unwrap());
        });
    }
    group.finish();
}

/// What the cookie path does before the store: parse the cookie's secret,
/// hash it (the store key), and check the record the store returned.
fn session(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let secret = SessionSecret::generate(&mut OsRng);
    let raw = secret.expose().to_owned();
    let record = SessionPolicy::default().new_cookie_session(
        "ses_0123456789abcdef0123456789abcdef".into(),
        secret.hash(),
        "usr_0123456789abcdef0123456789abcdef".into(),
        Default::default(),
        now,
    );
    c.bench_function("session/parse_hash_check", |b| {
        b.iter(|| {
            let secret = SessionSecret::parse(black_box(&raw)).unwrap();
            let hash = secret.hash();
            record.check(now).unwrap();
            hash
        });
    });
}

/// The successor of a refresh token (HMAC-SHA256) and its hash (the store key).
fn refresh(c: &mut Criterion) {
    let token = RefreshToken::generate(&mut OsRng);
    let key = [7u8; 32];
    c.bench_function("refresh/successor_and_hash", |b| {
        b.iter(|| {
            let next = black_box(&token).successor(&key);
            (next.hash(), token.hash())
        });
    });
}

/// argon2id at the server's default cost (OWASP: 19 MiB, 2 passes, 1 lane):
/// tens of milliseconds, so few samples.
fn password(c: &mut Criterion) {
    let hasher = Hasher::new(HashCost::default()).unwrap();
    let password = Password::parse("correct horse battery staple").unwrap();
    let stored = hasher.hash(&password, &mut OsRng).unwrap();
    let mut group = c.benchmark_group("password");
    group
        .sample_size(10)
        .warm_up_time(StdDuration::from_millis(500))
        .measurement_time(StdDuration::from_secs(3));
    group.bench_function("hash/argon2id-owasp", |b| {
        b.iter(|| hasher.hash(black_box(&password), &mut OsRng).unwrap());
    });
    group.bench_function("verify/argon2id-owasp", |b| {
        b.iter(|| hasher.verify(black_box(&stored), "correct horse battery staple"));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(StdDuration::from_millis(500))
        .measurement_time(StdDuration::from_secs(2));
    targets = jwt, session, refresh, password
}
criterion_main!(benches);
