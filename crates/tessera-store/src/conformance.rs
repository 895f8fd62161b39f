//! The one conformance suite every store backend runs.
//!
//! Each check is a public async function taking the store under test; the
//! [`conformance_tests!`](crate::conformance_tests) macro turns them into one
//! `#[tokio::test]` each for a backend, given an expression that builds a fresh
//! store. The checks assume they own the store (counts and purges are exact),
//! so the factory must hand each test its own database, schema or key prefix.
//!
//! Times are whole milliseconds: that is the precision every backend keeps.

// Test support: a failed expectation panics, which is how a check fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tessera_core::session::ClientInfo;
use tessera_core::{SecretHash, SessionKind, SessionPolicy, SessionRecord};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use tessera_core::refresh::SpendOutcome;

use crate::{
    KeyStore, Ping, RefreshRecord, RefreshStore, SessionStore, StoreError, StoredKey,
    ThrottleStore, UserRecord, UserStore,
};

/// The fixed "now" of the checks.
pub const T0: OffsetDateTime = datetime!(2030-06-01 12:00:00.000 UTC);

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}{nanos:x}{}", N.fetch_add(1, Ordering::Relaxed))
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        id: unique("usr_"),
        username: name.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        created_at: T0,
        disabled_at: None,
    }
}

fn session(user_id: &str, at: OffsetDateTime) -> SessionRecord {
    let policy = SessionPolicy::default();
    policy.new_cookie_session(
        unique("ses_"),
        SecretHash::of(&unique("tsr_ss_")),
        user_id.to_owned(),
        ClientInfo {
            user_agent: Some("conformance/1.0".into()),
            ip: Some("127.0.0.1".into()),
        },
        at,
    )
}

/// Creating a user makes it findable by id and by name in any case.
pub async fn users_create_and_find<S: UserStore + 'static>(s: Arc<S>) {
    let name = unique("Ada_");
    let u = user(&name);
    s.create_user(&u).await.unwrap();
    assert_eq!(s.user_by_id(&u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(s.user_by_username(&name).await.unwrap(), Some(u.clone()));
    assert_eq!(
        s.user_by_username(&name.to_uppercase()).await.unwrap(),
        Some(u.clone())
    );
    assert_eq!(
        s.user_by_username(&name.to_lowercase()).await.unwrap(),
        Some(u.clone())
    );
    assert_eq!(s.user_by_username("nobody_here").await.unwrap(), None);
    assert_eq!(s.user_by_id("usr_nobody").await.unwrap(), None);
    assert!(s.list_users().await.unwrap().contains(&u));
}

/// A username taken in another case is a conflict, and changes nothing.
pub async fn users_conflict_ignores_case<S: UserStore + 'static>(s: Arc<S>) {
    let name = unique("Bob_");
    let first = user(&name);
    s.create_user(&first).await.unwrap();
    let second = user(&name.to_uppercase());
    assert!(matches!(
        s.create_user(&second).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.user_by_id(&second.id).await.unwrap(), None);
    assert_eq!(s.user_by_username(&name).await.unwrap(), Some(first));
}

/// Sixteen concurrent registrations of one name: exactly one wins.
pub async fn users_concurrent_create_one_wins<S: UserStore + 'static>(s: Arc<S>) {
    let name = unique("race_");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let s = s.clone();
        let u = user(&name);
        tasks.spawn(async move { s.create_user(&u).await });
    }
    let (mut ok, mut conflict) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict(_)) => conflict += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((ok, conflict), (1, 15));
}

/// The password hash can be replaced; an unknown user is `NotFound`.
pub async fn users_set_password_hash<S: UserStore + 'static>(s: Arc<S>) {
    let u = user(&unique("carol_"));
    s.create_user(&u).await.unwrap();
    s.set_password_hash(&u.id, "$argon2id$new").await.unwrap();
    let got = s.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(got.password_hash, "$argon2id$new");
    assert!(matches!(
        s.set_password_hash("usr_missing", "x").await,
        Err(StoreError::NotFound)
    ));
}

/// Disabling is kept and undone; an unknown user is `NotFound`.
pub async fn users_disable<S: UserStore + 'static>(s: Arc<S>) {
    let u = user(&unique("erin_"));
    s.create_user(&u).await.unwrap();
    let at = T0 + Duration::minutes(5);
    s.set_disabled(&u.id, Some(at)).await.unwrap();
    let got = s.user_by_username(&u.username).await.unwrap().unwrap();
    assert_eq!(got.disabled_at, Some(at));
    s.set_disabled(&u.id, None).await.unwrap();
    assert_eq!(
        s.user_by_id(&u.id).await.unwrap().unwrap().disabled_at,
        None
    );
    assert!(matches!(
        s.set_disabled("usr_missing", Some(at)).await,
        Err(StoreError::NotFound)
    ));
}

/// A deleted user is gone, and its name is free again.
pub async fn users_delete<S: UserStore + 'static>(s: Arc<S>) {
    let name = unique("dave_");
    let u = user(&name);
    s.create_user(&u).await.unwrap();
    assert!(s.delete_user(&u.id).await.unwrap());
    assert!(!s.delete_user(&u.id).await.unwrap());
    assert_eq!(s.user_by_id(&u.id).await.unwrap(), None);
    assert_eq!(s.user_by_username(&name).await.unwrap(), None);
    s.create_user(&user(&name)).await.unwrap();
}

/// A session comes back unchanged by secret hash and by id.
pub async fn sessions_round_trip<S: SessionStore + 'static>(s: Arc<S>) {
    let mut sess = session("usr_round", T0);
    sess.ip = None;
    s.create_session(&sess).await.unwrap();
    let hash = sess.secret_hash.unwrap();
    assert_eq!(
        s.session_by_secret(&hash).await.unwrap(),
        Some(sess.clone())
    );
    assert_eq!(s.session_by_id(&sess.id).await.unwrap(), Some(sess.clone()));
    assert_eq!(
        s.session_by_secret(&SecretHash::of("tsr_ss_other"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.session_by_id("ses_missing").await.unwrap(), None);

    let token = SessionRecord {
        id: unique("ses_"),
        secret_hash: None,
        kind: SessionKind::Token,
        idle_expires_at: None,
        ..sess.clone()
    };
    s.create_session(&token).await.unwrap();
    assert_eq!(s.session_by_id(&token.id).await.unwrap(), Some(token));
}

/// A duplicate id or secret hash is a conflict.
pub async fn sessions_duplicates_conflict<S: SessionStore + 'static>(s: Arc<S>) {
    let sess = session("usr_dup", T0);
    s.create_session(&sess).await.unwrap();
    let same_id = SessionRecord {
        secret_hash: Some(SecretHash::of(&unique("tsr_ss_"))),
        ..sess.clone()
    };
    assert!(matches!(
        s.create_session(&same_id).await,
        Err(StoreError::Conflict(_))
    ));
    let same_secret = SessionRecord {
        id: unique("ses_"),
        ..sess.clone()
    };
    assert!(matches!(
        s.create_session(&same_secret).await,
        Err(StoreError::Conflict(_))
    ));
}

/// Touching moves `last_seen_at` and the idle expiry.
pub async fn sessions_touch<S: SessionStore + 'static>(s: Arc<S>) {
    let sess = session("usr_touch", T0);
    s.create_session(&sess).await.unwrap();
    let seen = T0 + Duration::minutes(5);
    let idle = T0 + Duration::minutes(35);
    s.touch_session(&sess.id, seen, Some(idle)).await.unwrap();
    let got = s.session_by_id(&sess.id).await.unwrap().unwrap();
    assert_eq!(got.last_seen_at, seen);
    assert_eq!(got.idle_expires_at, Some(idle));
    assert_eq!(got.expires_at, sess.expires_at);
    // Without an idle expiry (a token session's use), only last_seen_at moves.
    let later = seen + Duration::minutes(1);
    s.touch_session(&sess.id, later, None).await.unwrap();
    let got = s.session_by_id(&sess.id).await.unwrap().unwrap();
    assert_eq!((got.last_seen_at, got.idle_expires_at), (later, Some(idle)));
    // An unknown or purged session is not brought back.
    s.touch_session("ses_never_was", later, Some(idle))
        .await
        .unwrap();
    assert_eq!(s.session_by_id("ses_never_was").await.unwrap(), None);
}

/// Listing shows only the user's live sessions.
pub async fn sessions_list_only_live_and_own<S: SessionStore + 'static>(s: Arc<S>) {
    let uid = unique("usr_");
    let live1 = session(&uid, T0 - Duration::minutes(2));
    let live2 = session(&uid, T0 - Duration::minutes(1));
    let idle_out = session(&uid, T0 - Duration::hours(1));
    let expired = session(&uid, T0 - Duration::days(2));
    let revoked = session(&uid, T0);
    let other = session("usr_someone_else", T0);
    for x in [&live1, &live2, &idle_out, &expired, &revoked, &other] {
        s.create_session(x).await.unwrap();
    }
    assert!(s.revoke_session(&uid, &revoked.id, T0).await.unwrap());
    let listed: Vec<String> = s
        .list_sessions(&uid, T0)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(listed, vec![live1.id, live2.id]);
}

/// Revoking needs the right owner, and works once.
pub async fn sessions_revoke_own_only<S: SessionStore + 'static>(s: Arc<S>) {
    let sess = session("usr_owner", T0);
    s.create_session(&sess).await.unwrap();
    assert!(
        !s.revoke_session("usr_intruder", &sess.id, T0)
            .await
            .unwrap()
    );
    assert!(
        s.session_by_id(&sess.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(s.revoke_session("usr_owner", &sess.id, T0).await.unwrap());
    assert!(!s.revoke_session("usr_owner", &sess.id, T0).await.unwrap());
    let got = s
        .session_by_secret(&sess.secret_hash.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.revoked_at, Some(T0));
    assert!(
        !s.revoke_session("usr_owner", "ses_missing", T0)
            .await
            .unwrap()
    );
}

/// Revoking all but one leaves exactly that one, and other users alone.
pub async fn sessions_revoke_all_but_one<S: SessionStore + 'static>(s: Arc<S>) {
    let uid = unique("usr_");
    let keep = session(&uid, T0);
    let a = session(&uid, T0);
    let b = session(&uid, T0);
    let other = session("usr_bystander", T0);
    for x in [&keep, &a, &b, &other] {
        s.create_session(x).await.unwrap();
    }
    let mut revoked = s
        .revoke_user_sessions(&uid, Some(&keep.id), T0)
        .await
        .unwrap();
    revoked.sort();
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(revoked, expected);
    let left: Vec<String> = s
        .list_sessions(&uid, T0)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(left, vec![keep.id.clone()]);
    assert_eq!(s.list_sessions("usr_bystander", T0).await.unwrap().len(), 1);
    // Without a session to keep, everything goes.
    assert_eq!(
        s.revoke_user_sessions(&uid, None, T0).await.unwrap(),
        vec![keep.id]
    );
    assert!(s.list_sessions(&uid, T0).await.unwrap().is_empty());
}

/// Counting sees live sessions; purging removes only those that ended before the cut.
pub async fn sessions_count_and_purge<S: SessionStore + 'static>(s: Arc<S>) {
    let live = session("usr_p", T0);
    let old = session("usr_p", T0 - Duration::days(3));
    let revoked = session("usr_p", T0);
    for x in [&live, &old, &revoked] {
        s.create_session(x).await.unwrap();
    }
    s.revoke_session("usr_p", &revoked.id, T0).await.unwrap();
    assert_eq!(s.count_live_sessions(T0).await.unwrap(), 1);
    // Cut before the revocation: only the long-expired one goes.
    assert_eq!(
        s.purge_sessions(T0 - Duration::minutes(1)).await.unwrap(),
        1
    );
    assert_eq!(s.session_by_id(&old.id).await.unwrap(), None);
    assert!(s.session_by_id(&revoked.id).await.unwrap().is_some());
    assert_eq!(
        s.purge_sessions(T0 + Duration::seconds(1)).await.unwrap(),
        1
    );
    assert_eq!(s.session_by_id(&revoked.id).await.unwrap(), None);
    assert!(s.session_by_id(&live.id).await.unwrap().is_some());
}

/// Failures count up within a window and start over after it.
pub async fn throttle_windows<S: ThrottleStore + 'static>(s: Arc<S>) {
    let key = unique("user:");
    let w = Duration::minutes(15);
    assert_eq!(s.failures(&key, T0, w).await.unwrap(), None);
    for n in 1..=3 {
        let got = s
            .record_failure(&key, T0 + Duration::seconds(n.into()), w)
            .await
            .unwrap();
        assert_eq!((got.count, got.started_at), (n, T0 + Duration::seconds(1)));
    }
    let got = s
        .failures(&key, T0 + Duration::minutes(10), w)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.count, 3);
    // The window started at T0+1s; at T0+15m01s it is over.
    let later = T0 + Duration::minutes(15) + Duration::seconds(1);
    assert_eq!(s.failures(&key, later, w).await.unwrap(), None);
    let got = s.record_failure(&key, later, w).await.unwrap();
    assert_eq!((got.count, got.started_at), (1, later));
    s.clear_failures(&key).await.unwrap();
    assert_eq!(s.failures(&key, later, w).await.unwrap(), None);
}

/// A forgiven attempt no longer counts; forgiving never goes below zero nor
/// creates a window.
pub async fn throttle_forgive<S: ThrottleStore + 'static>(s: Arc<S>) {
    let key = unique("ip:");
    let w = Duration::minutes(15);
    s.forgive_failure(&key).await.unwrap();
    assert_eq!(s.failures(&key, T0, w).await.unwrap(), None);
    s.record_failure(&key, T0, w).await.unwrap();
    s.record_failure(&key, T0, w).await.unwrap();
    s.forgive_failure(&key).await.unwrap();
    let got = s.failures(&key, T0, w).await.unwrap().unwrap();
    assert_eq!((got.count, got.started_at), (1, T0));
    for _ in 0..3 {
        s.forgive_failure(&key).await.unwrap();
    }
    let got = s.failures(&key, T0, w).await.unwrap().unwrap();
    assert_eq!(got.count, 0);
    let got = s.record_failure(&key, T0, w).await.unwrap();
    assert_eq!(got.count, 1);
}

/// Sixteen concurrent failures are all counted, each seeing its own count.
pub async fn throttle_concurrent_failures_all_count<S: ThrottleStore + 'static>(s: Arc<S>) {
    let key = unique("ip:");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let s = s.clone();
        let key = key.clone();
        tasks.spawn(async move { s.record_failure(&key, T0, Duration::minutes(15)).await });
    }
    let mut counts = Vec::new();
    while let Some(r) = tasks.join_next().await {
        counts.push(r.unwrap().unwrap().count);
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=16).collect::<Vec<u32>>());
}

/// Old windows are purged, current ones kept.
pub async fn throttle_purge<S: ThrottleStore + 'static>(s: Arc<S>) {
    let old = unique("user:");
    let new = unique("user:");
    let w = Duration::minutes(15);
    s.record_failure(&old, T0 - Duration::hours(1), w)
        .await
        .unwrap();
    s.record_failure(&new, T0, w).await.unwrap();
    assert_eq!(
        s.purge_failures(T0 - Duration::minutes(15)).await.unwrap(),
        1
    );
    assert!(s.failures(&new, T0, w).await.unwrap().is_some());
}

fn refresh(session_id: &str) -> RefreshRecord {
    RefreshRecord {
        hash: SecretHash::of(&unique("tsr_rt_")),
        session_id: session_id.to_owned(),
        user_id: "usr_r".to_owned(),
        issued_at: T0,
        expires_at: T0 + Duration::days(14),
        spent_at: None,
    }
}

/// Spending rotates once; a second presentation is grace, then reuse.
pub async fn refresh_rotation_grace_and_reuse<S: RefreshStore + 'static>(s: Arc<S>) {
    let first = refresh("ses_fam");
    s.create_refresh(&first).await.unwrap();
    let next = SecretHash::of(&unique("tsr_rt_"));
    let grace = Duration::seconds(10);
    let fam = || "ses_fam".to_owned();
    assert_eq!(
        s.spend_refresh(&first.hash, &next, T0, grace)
            .await
            .unwrap(),
        SpendOutcome::Rotated { session_id: fam() }
    );
    let spent = s.refresh_by_hash(&first.hash).await.unwrap().unwrap();
    assert_eq!(spent.spent_at, Some(T0));
    let succ = s.refresh_by_hash(&next).await.unwrap().unwrap();
    assert_eq!(
        (
            succ.session_id.as_str(),
            succ.user_id.as_str(),
            succ.issued_at,
            succ.expires_at,
            succ.spent_at
        ),
        ("ses_fam", "usr_r", T0, first.expires_at, None)
    );
    // Within the grace window: the same successor stands, nothing new is stored.
    let other = SecretHash::of(&unique("tsr_rt_"));
    assert_eq!(
        s.spend_refresh(&first.hash, &other, T0 + Duration::seconds(10), grace)
            .await
            .unwrap(),
        SpendOutcome::Grace { session_id: fam() }
    );
    assert_eq!(s.refresh_by_hash(&other).await.unwrap(), None);
    assert_eq!(
        s.spend_refresh(&first.hash, &other, T0 + Duration::seconds(11), grace)
            .await
            .unwrap(),
        SpendOutcome::Reused { session_id: fam() }
    );
    // The successor still rotates normally.
    assert_eq!(
        s.spend_refresh(&next, &other, T0 + Duration::seconds(12), Duration::ZERO)
            .await
            .unwrap(),
        SpendOutcome::Rotated { session_id: fam() }
    );
}

/// Unknown and expired tokens are `Unknown`.
pub async fn refresh_unknown_and_expired<S: RefreshStore + 'static>(s: Arc<S>) {
    let any = SecretHash::of(&unique("tsr_rt_"));
    assert_eq!(
        s.spend_refresh(&any, &any, T0, Duration::ZERO)
            .await
            .unwrap(),
        SpendOutcome::Unknown
    );
    let t = refresh("ses_exp");
    s.create_refresh(&t).await.unwrap();
    assert_eq!(
        s.spend_refresh(&t.hash, &any, t.expires_at, Duration::ZERO)
            .await
            .unwrap(),
        SpendOutcome::Unknown
    );
    assert_eq!(
        s.purge_refresh(t.expires_at + Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.refresh_by_hash(&t.hash).await.unwrap(), None);
}

/// Sixteen concurrent spends of one token: exactly one rotates.
pub async fn refresh_concurrent_spends_one_wins<S: RefreshStore + 'static>(s: Arc<S>) {
    for grace in [Duration::ZERO, Duration::minutes(1)] {
        let t = refresh("ses_race");
        s.create_refresh(&t).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let s = s.clone();
            let succ = SecretHash::of(&unique("tsr_rt_"));
            tasks.spawn(async move { s.spend_refresh(&t.hash, &succ, T0, grace).await.unwrap() });
        }
        let outcomes = tasks.join_all().await;
        let rotated = outcomes
            .iter()
            .filter(|o| matches!(o, SpendOutcome::Rotated { .. }))
            .count();
        assert_eq!(rotated, 1, "{outcomes:?}");
        // Strict mode (zero grace): every other presentation is reuse, even
        // within the same millisecond. With a window: every other one is grace.
        let others_ok = outcomes.iter().all(|o| match o {
            SpendOutcome::Rotated { .. } => true,
            SpendOutcome::Grace { .. } => grace > Duration::ZERO,
            SpendOutcome::Reused { .. } => grace == Duration::ZERO,
            SpendOutcome::Unknown => false,
        });
        assert!(others_ok, "{outcomes:?}");
    }
}

fn key(alg: &str, at: OffsetDateTime) -> StoredKey {
    StoredKey {
        kid: unique("kid_"),
        alg: alg.to_owned(),
        sealed_private: vec![1, 2, 3],
        created_at: at,
        superseded_at: None,
    }
}

/// The first current key wins; rotation supersedes it.
pub async fn keys_ensure_and_rotate<S: KeyStore + 'static>(s: Arc<S>) {
    let a = key("EdDSA", T0);
    assert_eq!(s.ensure_current_key(&a).await.unwrap(), a);
    let b = key("EdDSA", T0 + Duration::seconds(1));
    assert_eq!(
        s.ensure_current_key(&b).await.unwrap(),
        a,
        "the existing key stays current"
    );
    let other_alg = key("ES256", T0);
    assert_eq!(s.ensure_current_key(&other_alg).await.unwrap(), other_alg);

    let c = key("EdDSA", T0 + Duration::hours(1));
    s.rotate_key(&c).await.unwrap();
    let keys = s.keys().await.unwrap();
    let find = |kid: &str| keys.iter().find(|k| k.kid == kid).cloned().unwrap();
    assert_eq!(find(&a.kid).superseded_at, Some(c.created_at));
    assert_eq!(find(&c.kid).superseded_at, None);
    assert_eq!(find(&other_alg.kid).superseded_at, None);
    assert_eq!(find(&c.kid).sealed_private, vec![1, 2, 3]);
    assert!(keys.iter().all(|k| k.kid != b.kid));
    assert_eq!(keys[0].created_at, c.created_at, "newest first");
}

/// Concurrent first starts agree on one key and one secret.
pub async fn keys_and_secrets_concurrent_first_start<S: KeyStore + 'static>(s: Arc<S>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8u8 {
        let s = s.clone();
        tasks.spawn(async move {
            let k = s.ensure_current_key(&key("RS256", T0)).await.unwrap();
            let secret = s.server_secret("refresh-hmac", &[i; 4]).await.unwrap();
            (k.kid, secret)
        });
    }
    let results = tasks.join_all().await;
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    let current: Vec<_> = s
        .keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.alg == "RS256" && k.superseded_at.is_none())
        .collect();
    assert_eq!(current.len(), 1);
}

/// A reachable store answers its ping.
pub async fn ping_answers<S: Ping + 'static>(s: Arc<S>) {
    s.ping().await.unwrap();
}

/// Generates one `#[tokio::test]` per conformance check.
///
/// The first argument is an expression (usually an `async` block) giving
/// `Some(Arc<store>)`, fresh for each test, or `None` when the backend is not
/// configured (the factory says so loudly; the test then passes without
/// checking anything). The optional second argument is an async function
/// taking the `Arc<store>` that cleans up after the check, pass or fail.
///
/// ```text
/// tessera_store::conformance_tests!(async { Some(std::sync::Arc::new(MyStore::open_temp().await)) });
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!($factory, |_store| async {});
    };
    ($factory:expr, $teardown:expr) => {
        $crate::conformance_tests!(@each $factory, $teardown;
            users_create_and_find,
            users_conflict_ignores_case,
            users_concurrent_create_one_wins,
            users_set_password_hash,
            users_disable,
            users_delete,
            keys_ensure_and_rotate,
            keys_and_secrets_concurrent_first_start,
        );
        $crate::conformance_tests!(ephemeral: $factory, $teardown);
    };
    // The state that may live in a cache-like store (Redis): sessions,
    // refresh tokens, failure counters.
    (ephemeral: $factory:expr, $teardown:expr) => {
        $crate::conformance_tests!(@each $factory, $teardown;
            sessions_round_trip,
            sessions_duplicates_conflict,
            sessions_touch,
            sessions_list_only_live_and_own,
            sessions_revoke_own_only,
            sessions_revoke_all_but_one,
            sessions_count_and_purge,
            throttle_windows,
            throttle_concurrent_failures_all_count,
            throttle_purge,
            throttle_forgive,
            refresh_rotation_grace_and_reuse,
            refresh_unknown_and_expired,
            refresh_concurrent_spends_one_wins,
            ping_answers,
        );
    };
    (@each $factory:expr, $teardown:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(store) = $factory.await else { return };
                let outcome = tokio::spawn($crate::conformance::$check(store.clone())).await;
                ($teardown)(store).await;
                if let Err(e) = outcome {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        )+
    };
}

/// The values of the environment variables `vars` that name the servers a
/// backend test runs against, or `None` when the test is to be skipped.
///
/// A skip must never look like a pass. So when a variable is unset:
///
/// - with `TESSERA_TEST_REQUIRE_BACKENDS` set (CI sets it), the test fails:
///   a CI run is meant to test every backend;
/// - otherwise the skip is printed, and recorded as a file in the folder
///   `TESSERA_TEST_SKIPS` names, if set: `scripts/test` sets it and ends
///   with "N backend tests skipped: set … to run them".
///
/// `test` names the test in that record.
pub fn backend_urls(vars: &[&str], test: &str) -> Option<Vec<String>> {
    let missing: Vec<&str> = vars
        .iter()
        .copied()
        .filter(|v| std::env::var_os(v).is_none_or(|x| x.is_empty()))
        .collect();
    if missing.is_empty() {
        return Some(
            vars.iter()
                .map(|v| std::env::var(v).unwrap_or_default())
                .collect(),
        );
    }
    let missing = missing.join(" and ");
    if std::env::var_os("TESSERA_TEST_REQUIRE_BACKENDS").is_some() {
        panic!(
            "{test}: {missing} must be set: TESSERA_TEST_REQUIRE_BACKENDS says this run tests every backend"
        );
    }
    eprintln!("\n*** SKIPPED {test}: {missing} not set ***\n");
    if let Some(dir) = std::env::var_os("TESSERA_TEST_SKIPS") {
        static N: AtomicU64 = AtomicU64::new(0);
        let file = std::path::Path::new(&dir).join(format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = std::fs::write(&file, format!("{missing}\t{test}\n")) {
            panic!("{test}: cannot record the skip in {}: {e}", file.display());
        }
    }
    None
}

/// The name of the running test, as libtest names its thread.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("a backend test")
        .to_owned()
}
