//! The sessions and users that authenticate requests, kept in memory, with
//! revocation still immediate.
//!
//! Every authenticated request needs a session and its user. Read from the
//! store, that is two round trips per request; here they are read once and
//! then served from memory, bounded by `quick_cache` (S3-FIFO, like the
//! verified-token cache). What makes it safe is one rule: *a revoked
//! credential is never served from the cache*. It holds because
//!
//! - every write through tessera that can end a credential (revoking a
//!   session, revoking a user's sessions, changing a password, disabling or
//!   deleting a user) goes through [`Announced`], which marks the session or
//!   user changed in this process's cache *before the write is
//!   acknowledged*, then publishes the change on the stores' feed
//!   ([`tessera_store::feed`]) for every other process (another instance,
//!   the CLI);
//! - a change is a *cut*, not a removal: an entry is trusted only if it was
//!   fetched after the last cut of its session, of its user and of the whole
//!   cache, so a read that raced the write (started before it, finished
//!   after) cannot put the old record back;
//! - while the feed is down, changes may be missed, so nothing cached is
//!   trusted (every request reads the store), and when the feed is back
//!   everything cached before is cut;
//! - every entry is trusted for `--auth-cache-ttl` at most (5 s by default),
//!   whatever the feed says: the bound on staleness in every case, for
//!   example a change written into the database by hand.
//!
//! Uses are still coalesced: the write of `last_seen_at` that
//! `SessionPolicy::touch` asks for updates the cached record too, so the
//! next request does not write again. A cached session whose idle window
//! seems to have passed is read again rather than refused (another instance
//! may have extended it).
//!
//! How late a change made elsewhere arrives is measured on every notice and
//! exported as `tessera_auth_cache_invalidation_lag_seconds`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use quick_cache::sync::Cache;
use tessera_core::{SecretHash, SessionRecord};
use tessera_store::{
    Change, ChangeFeed, FeedEvent, Notice, SessionStore, StoreResult, UserRecord, UserStore,
};
use time::OffsetDateTime;

/// Name of the histogram of how late changes made elsewhere arrive.
pub const LAG: &str = "tessera_auth_cache_invalidation_lag_seconds";

const PUBLISH_FAILURES: &str = "tessera_auth_cache_publish_failures_total";

/// Sessions (and as many users) kept at most.
pub const CAPACITY: usize = 100_000;

/// Cuts kept before the old ones are dropped: a cut older than the TTL
/// can no longer matter, since every entry fetched before it has expired.
const CUTS_BEFORE_PRUNE: usize = 4096;

#[derive(Clone)]
struct Entry<T> {
    value: T,
    /// When the read that produced it started.
    fetched: Instant,
}

struct Cuts {
    all: Instant,
    sessions: HashMap<String, Instant>,
    users: HashMap<String, Instant>,
}

impl Cuts {
    fn prune(&mut self, ttl: Duration) {
        if self.sessions.len() + self.users.len() > CUTS_BEFORE_PRUNE {
            self.sessions.retain(|_, at| at.elapsed() < ttl);
            self.users.retain(|_, at| at.elapsed() < ttl);
        }
    }
}

/// The cache of one process.
pub struct AuthCache {
    ttl: Duration,
    sessions: Cache<String, Entry<SessionRecord>>,
    by_secret: Cache<[u8; 32], String>,
    users: Cache<String, Entry<UserRecord>>,
    cuts: RwLock<Cuts>,
    /// Whether the feed is connected; nothing is trusted while it is not.
    feed_up: AtomicBool,
    /// This process's name on the feed, to tell its own notices apart.
    origin: String,
    hits: metrics::Counter,
    misses: metrics::Counter,
    lag: metrics::Histogram,
    feed_gauge: metrics::Gauge,
}

impl AuthCache {
    /// A cache trusting entries for `ttl`; untrusted until the feed is up.
    pub fn new(ttl: Duration, origin: String) -> Self {
        let requests = "tessera_auth_cache_requests_total";
        metrics::describe_counter!(
            requests,
            "Lookups of a session or user for authentication, by outcome (hit: served from memory)."
        );
        metrics::describe_histogram!(
            LAG,
            metrics::Unit::Seconds,
            "How late a change made by another process (a revocation, a disabled user) reached this one's cache."
        );
        metrics::describe_gauge!(
            "tessera_auth_cache_feed_up",
            "1 while the change feed is connected and the cache is trusted, else 0."
        );
        metrics::describe_counter!(
            PUBLISH_FAILURES,
            "Changes written but not published on the feed (other instances see them when their entries expire)."
        );
        Self {
            ttl,
            sessions: Cache::new(CAPACITY),
            by_secret: Cache::new(CAPACITY),
            users: Cache::new(CAPACITY),
            cuts: RwLock::new(Cuts {
                all: Instant::now(),
                sessions: HashMap::new(),
                users: HashMap::new(),
            }),
            feed_up: AtomicBool::new(false),
            origin,
            hits: metrics::counter!(requests, "outcome" => "hit"),
            misses: metrics::counter!(requests, "outcome" => "miss"),
            lag: metrics::histogram!(LAG),
            feed_gauge: metrics::gauge!("tessera_auth_cache_feed_up"),
        }
    }

    /// Whether an entry fetched at `fetched`, of session `session` (if a
    /// session) and user `user`, may be served.
    fn trusted(&self, fetched: Instant, session: Option<&str>, user: &str) -> bool {
        if !self.feed_up.load(Ordering::Acquire) || fetched.elapsed() >= self.ttl {
            return false;
        }
        let cuts = self.cuts.read().unwrap_or_else(|e| e.into_inner());
        let after = |cut: Option<&Instant>| cut.is_none_or(|at| fetched > *at);
        fetched > cuts.all
            && after(cuts.users.get(user))
            && session.is_none_or(|id| after(cuts.sessions.get(id)))
    }

    /// `hit` if the cache had it, else what `read` finds in the store,
    /// remembered by `put` with the instant the read started; counted as a
    /// hit or a miss.
    async fn read_through<T, Read, Found>(
        &self,
        hit: Option<T>,
        read: Read,
        put: fn(&Self, &T, Instant),
    ) -> StoreResult<Option<T>>
    where
        Read: FnOnce() -> Found,
        Found: Future<Output = StoreResult<Option<T>>>,
    {
        if hit.is_some() {
            self.hits.increment(1);
            return Ok(hit);
        }
        self.misses.increment(1);
        let fetched = Instant::now();
        let found = read().await?;
        if let Some(value) = &found {
            put(self, value, fetched);
        }
        Ok(found)
    }

    fn session(&self, id: &str, now: OffsetDateTime) -> Option<SessionRecord> {
        let entry = self.sessions.get(id)?;
        let s = &entry.value;
        let idle_passed = s.revoked_at.is_none() && s.idle_expires_at.is_some_and(|i| now >= i);
        (!idle_passed && self.trusted(entry.fetched, Some(&s.id), &s.user_id))
            .then_some(entry.value)
    }

    fn put_session(&self, session: &SessionRecord, fetched: Instant) {
        if !self.feed_up.load(Ordering::Acquire) {
            return;
        }
        if let Some(hash) = &session.secret_hash {
            self.by_secret.insert(*hash.as_bytes(), session.id.clone());
        }
        self.sessions.insert(
            session.id.clone(),
            Entry {
                value: session.clone(),
                fetched,
            },
        );
    }

    fn user(&self, id: &str) -> Option<UserRecord> {
        let entry = self.users.get(id)?;
        self.trusted(entry.fetched, None, &entry.value.id)
            .then_some(entry.value)
    }

    fn put_user(&self, user: &UserRecord, fetched: Instant) {
        if self.feed_up.load(Ordering::Acquire) {
            self.users.insert(
                user.id.clone(),
                Entry {
                    value: user.clone(),
                    fetched,
                },
            );
        }
    }

    /// Records a use of a cached session, as `touch_session` wrote it.
    fn touched(&self, id: &str, seen: OffsetDateTime, idle: Option<OffsetDateTime>) {
        if let Some(mut entry) = self.sessions.get(id) {
            entry.value.last_seen_at = seen;
            if idle.is_some() {
                entry.value.idle_expires_at = idle;
            }
            self.sessions.insert(id.to_owned(), entry);
        }
    }

    /// Stops trusting what is cached about `change`.
    pub fn cut(&self, change: &Change) {
        let now = Instant::now();
        let mut cuts = self.cuts.write().unwrap_or_else(|e| e.into_inner());
        match change {
            Change::Session(id) => cuts.sessions.insert(id.clone(), now),
            Change::User(id) => cuts.users.insert(id.clone(), now),
        };
        cuts.prune(self.ttl);
    }

    fn cut_all(&self) {
        let mut cuts = self.cuts.write().unwrap_or_else(|e| e.into_inner());
        cuts.all = Instant::now();
        cuts.sessions.clear();
        cuts.users.clear();
    }

    /// Takes in what the feed reports.
    pub fn on_event(&self, event: FeedEvent) {
        match event {
            FeedEvent::Up => {
                // Whatever happened while it was down is unknown.
                self.cut_all();
                self.feed_up.store(true, Ordering::Release);
                self.feed_gauge.set(1.0);
                tracing::info!("change feed connected; the session cache is in use");
            }
            FeedEvent::Down => {
                self.feed_up.store(false, Ordering::Release);
                self.feed_gauge.set(0.0);
                tracing::warn!("change feed lost; every request reads the store until it is back");
            }
            FeedEvent::Heard(notice) => {
                self.cut(&notice.change);
                if notice.origin != self.origin {
                    let now_ms = tessera_store::millis::to_ms(OffsetDateTime::now_utc());
                    self.lag
                        .record((now_ms - notice.at_ms).max(0) as f64 / 1000.0);
                }
            }
        }
    }

    /// This process's name on the feed.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether the feed is connected (and the cache trusted).
    pub fn feed_up(&self) -> bool {
        self.feed_up.load(Ordering::Acquire)
    }
}

/// A name for this process on the feed: random, so that two instances
/// never share one.
pub fn origin() -> String {
    use rand_core::RngCore as _;
    format!("p{:016x}", rand_core::OsRng.next_u64())
}

/// Runs the feed listener for `cache` until the process ends, and says so
/// in the log if the feed is not up five seconds after the start.
pub async fn listen(feed: Arc<dyn ChangeFeed>, cache: Arc<AuthCache>) {
    let watch = cache.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if !watch.feed_up() {
            tracing::warn!(
                "the change feed is not connected; every request reads the store until it is"
            );
        }
    });
    feed.listen(&|event| cache.on_event(event)).await;
}

/// A user or session store whose writes are announced: the change is cut
/// from this process's cache (if it has one), then published on the feed,
/// before the write returns; and whose reads of what authenticates a
/// request come from the cache.
pub struct Announced<T: ?Sized> {
    inner: Arc<T>,
    cache: Option<Arc<AuthCache>>,
    /// Whether reads are served from `cache` (else only writes cut it).
    cached_reads: bool,
    feed: Arc<dyn ChangeFeed>,
    origin: Arc<str>,
}

impl<T: ?Sized> Announced<T> {
    /// `inner`, announcing its writes on `feed` (with `origin`), cutting
    /// them from `cache`, and serving reads from `cache` if `cached_reads`.
    pub fn new(
        inner: Arc<T>,
        cache: Option<Arc<AuthCache>>,
        cached_reads: bool,
        feed: Arc<dyn ChangeFeed>,
        origin: Arc<str>,
    ) -> Self {
        Self {
            inner,
            cache,
            cached_reads,
            feed,
            origin,
        }
    }

    /// The cache reads are served from, if any.
    fn reads(&self) -> Option<&AuthCache> {
        self.cache.as_deref().filter(|_| self.cached_reads)
    }

    /// Cuts `change` here, then tells every other process. A write that
    /// was made but could not be published is still a write: it is
    /// acknowledged, and other processes stop trusting their copy when
    /// their TTL ends.
    async fn announce(&self, change: Change) {
        if let Some(cache) = &self.cache {
            cache.cut(&change);
        }
        let notice = Notice::new(&self.origin, change, OffsetDateTime::now_utc());
        if let Err(e) = self.feed.publish(&notice).await {
            metrics::counter!(PUBLISH_FAILURES).increment(1);
            tracing::warn!(
                error = %crate::error::error_chain(&e),
                "could not publish a change on the feed; other instances see it when their \
                 cache entries expire (--auth-cache-ttl)"
            );
        }
    }
}

#[async_trait]
impl<T: UserStore + ?Sized> UserStore for Announced<T> {
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        self.inner.create_user(user).await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        self.inner.user_by_username(username).await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let Some(cache) = self.reads() else {
            return self.inner.user_by_id(id).await;
        };
        cache
            .read_through(
                cache.user(id),
                || self.inner.user_by_id(id),
                AuthCache::put_user,
            )
            .await
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        self.inner.set_password_hash(user_id, password_hash).await?;
        self.announce(Change::User(user_id.to_owned())).await;
        Ok(())
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.inner.list_users().await
    }

    async fn delete_user(&self, user_id: &str) -> StoreResult<bool> {
        let deleted = self.inner.delete_user(user_id).await?;
        if deleted {
            self.announce(Change::User(user_id.to_owned())).await;
        }
        Ok(deleted)
    }

    async fn set_disabled(&self, user_id: &str, at: Option<OffsetDateTime>) -> StoreResult<()> {
        self.inner.set_disabled(user_id, at).await?;
        self.announce(Change::User(user_id.to_owned())).await;
        Ok(())
    }
}

#[async_trait]
impl<T: SessionStore + ?Sized> SessionStore for Announced<T> {
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        self.inner.create_session(session).await
    }

    async fn session_by_secret(&self, hash: &SecretHash) -> StoreResult<Option<SessionRecord>> {
        let Some(cache) = self.reads() else {
            return self.inner.session_by_secret(hash).await;
        };
        let now = OffsetDateTime::now_utc();
        let cached = cache
            .by_secret
            .get(hash.as_bytes())
            .and_then(|id| cache.session(&id, now));
        cache
            .read_through(
                cached,
                || self.inner.session_by_secret(hash),
                AuthCache::put_session,
            )
            .await
    }

    async fn session_by_id(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let Some(cache) = self.reads() else {
            return self.inner.session_by_id(id).await;
        };
        cache
            .read_through(
                cache.session(id, OffsetDateTime::now_utc()),
                || self.inner.session_by_id(id),
                AuthCache::put_session,
            )
            .await
    }

    async fn touch_session(
        &self,
        id: &str,
        last_seen_at: OffsetDateTime,
        idle_expires_at: Option<OffsetDateTime>,
    ) -> StoreResult<()> {
        self.inner
            .touch_session(id, last_seen_at, idle_expires_at)
            .await?;
        if let Some(cache) = &self.cache {
            cache.touched(id, last_seen_at, idle_expires_at);
        }
        Ok(())
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<SessionRecord>> {
        self.inner.list_sessions(user_id, now).await
    }

    async fn revoke_session(
        &self,
        user_id: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let revoked = self.inner.revoke_session(user_id, id, now).await?;
        if revoked {
            self.announce(Change::Session(id.to_owned())).await;
        }
        Ok(revoked)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<String>> {
        let revoked = self.inner.revoke_user_sessions(user_id, keep, now).await?;
        if !revoked.is_empty() {
            self.announce(Change::User(user_id.to_owned())).await;
        }
        Ok(revoked)
    }

    async fn count_live_sessions(&self, now: OffsetDateTime) -> StoreResult<u64> {
        self.inner.count_live_sessions(now).await
    }

    async fn purge_sessions(&self, ended_before: OffsetDateTime) -> StoreResult<u64> {
        self.inner.purge_sessions(ended_before).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::SessionPolicy;
    use tessera_core::session::ClientInfo;
    use tessera_store::{LocalFeed, MemoryStore};

    fn policy() -> SessionPolicy {
        SessionPolicy {
            idle: time::Duration::minutes(30),
            absolute: time::Duration::hours(24),
        }
    }

    fn user(id: &str) -> UserRecord {
        UserRecord {
            id: id.into(),
            username: format!("name-{id}"),
            password_hash: "x".into(),
            created_at: OffsetDateTime::now_utc(),
            disabled_at: None,
        }
    }

    struct Fixture {
        store: Arc<MemoryStore>,
        cache: Arc<AuthCache>,
        sessions: Announced<MemoryStore>,
        users: Announced<MemoryStore>,
    }

    async fn fixture() -> Fixture {
        let store = Arc::new(MemoryStore::default());
        let cache = Arc::new(AuthCache::new(Duration::from_secs(60), origin()));
        cache.on_event(FeedEvent::Up);
        let feed: Arc<dyn ChangeFeed> = Arc::new(LocalFeed);
        let origin: Arc<str> = Arc::from("test");
        let f = Fixture {
            sessions: Announced::new(
                store.clone(),
                Some(cache.clone()),
                true,
                feed.clone(),
                origin.clone(),
            ),
            users: Announced::new(store.clone(), Some(cache.clone()), true, feed, origin),
            store,
            cache,
        };
        f.users.create_user(&user("usr_1")).await.unwrap();
        f
    }

    fn session(id: &str, secret: &str) -> SessionRecord {
        policy().new_cookie_session(
            id.into(),
            SecretHash::of(secret),
            "usr_1".into(),
            ClientInfo::default(),
            OffsetDateTime::now_utc(),
        )
    }

    #[tokio::test]
    async fn a_revocation_through_the_wrapper_is_never_served_from_the_cache() {
        let f = fixture().await;
        let s = session("ses_1", "tsr_ss_a");
        f.sessions.create_session(&s).await.unwrap();
        let hash = SecretHash::of("tsr_ss_a");
        assert!(f.sessions.session_by_secret(&hash).await.unwrap().is_some());
        // Cached now: a revocation behind the wrapper's back is not seen...
        f.store
            .revoke_session("usr_1", "ses_1", OffsetDateTime::now_utc())
            .await
            .unwrap();
        let stale = f.sessions.session_by_secret(&hash).await.unwrap().unwrap();
        assert!(stale.revoked_at.is_none(), "served from the cache");
        // ...but one through it is, by secret and by id.
        f.store
            .create_session(&session("ses_2", "tsr_ss_b"))
            .await
            .unwrap();
        let hash2 = SecretHash::of("tsr_ss_b");
        assert!(
            f.sessions
                .session_by_secret(&hash2)
                .await
                .unwrap()
                .is_some()
        );
        assert!(f.sessions.session_by_id("ses_2").await.unwrap().is_some());
        f.sessions
            .revoke_session("usr_1", "ses_2", OffsetDateTime::now_utc())
            .await
            .unwrap();
        let by_secret = f.sessions.session_by_secret(&hash2).await.unwrap().unwrap();
        let by_id = f.sessions.session_by_id("ses_2").await.unwrap().unwrap();
        assert!(by_secret.revoked_at.is_some() && by_id.revoked_at.is_some());
    }

    #[tokio::test]
    async fn user_changes_cut_the_user_and_every_session_of_theirs() {
        let f = fixture().await;
        f.sessions
            .create_session(&session("ses_1", "tsr_ss_a"))
            .await
            .unwrap();
        assert!(f.sessions.session_by_id("ses_1").await.unwrap().is_some());
        assert!(f.users.user_by_id("usr_1").await.unwrap().is_some());
        f.users
            .set_disabled("usr_1", Some(OffsetDateTime::now_utc()))
            .await
            .unwrap();
        let u = f.users.user_by_id("usr_1").await.unwrap().unwrap();
        assert!(u.disabled_at.is_some());
        f.sessions
            .revoke_user_sessions("usr_1", None, OffsetDateTime::now_utc())
            .await
            .unwrap();
        let s = f.sessions.session_by_id("ses_1").await.unwrap().unwrap();
        assert!(s.revoked_at.is_some());
        assert!(f.users.delete_user("usr_1").await.unwrap());
        assert!(f.users.user_by_id("usr_1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_read_that_raced_a_cut_is_not_trusted() {
        let f = fixture().await;
        let s = session("ses_1", "tsr_ss_a");
        // A read started, then the change was cut, then the read finished.
        let started = Instant::now();
        f.cache.cut(&Change::Session("ses_1".into()));
        f.cache.put_session(&s, started);
        assert!(
            f.cache
                .session("ses_1", OffsetDateTime::now_utc())
                .is_none()
        );
        f.cache.put_session(&s, Instant::now());
        assert!(
            f.cache
                .session("ses_1", OffsetDateTime::now_utc())
                .is_some()
        );
    }

    #[tokio::test]
    async fn nothing_is_trusted_while_the_feed_is_down_nor_after_the_ttl() {
        let f = fixture().await;
        let s = session("ses_1", "tsr_ss_a");
        f.cache.put_session(&s, Instant::now());
        f.cache.on_event(FeedEvent::Down);
        assert!(
            f.cache
                .session("ses_1", OffsetDateTime::now_utc())
                .is_none()
        );
        f.cache.put_session(&s, Instant::now());
        f.cache.on_event(FeedEvent::Up);
        // Cached before the feed came back: cut.
        assert!(
            f.cache
                .session("ses_1", OffsetDateTime::now_utc())
                .is_none()
        );
        let short = AuthCache::new(Duration::from_millis(1), origin());
        short.on_event(FeedEvent::Up);
        short.put_session(&s, Instant::now());
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.session("ses_1", OffsetDateTime::now_utc()).is_none());
    }

    #[tokio::test]
    async fn a_touch_updates_the_cached_copy_and_a_passed_idle_window_is_read_again() {
        let f = fixture().await;
        let s = session("ses_1", "tsr_ss_a");
        f.sessions.create_session(&s).await.unwrap();
        assert!(f.sessions.session_by_id("ses_1").await.unwrap().is_some());
        let later = s.last_seen_at + time::Duration::minutes(5);
        let idle = later + time::Duration::minutes(30);
        f.sessions
            .touch_session("ses_1", later, Some(idle))
            .await
            .unwrap();
        let cached = f.cache.session("ses_1", OffsetDateTime::now_utc()).unwrap();
        assert_eq!(cached.last_seen_at, later);
        assert_eq!(cached.idle_expires_at, Some(idle));
        // Seen from the future, the cached idle window has passed: not served.
        assert!(f.cache.session("ses_1", idle).is_none());
    }
}
