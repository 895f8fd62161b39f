//! Store latency by backend and operation: every store call of the server
//! timed into `tessera_store_operation_duration_seconds{backend, operation}`.
//!
//! [`Timed`] wraps a store and implements the same trait by delegating each
//! method, timing it. The histogram handles are looked up once, when the
//! wrapper is made, so a call costs a clock read and a record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tessera_core::refresh::SpendOutcome;
use tessera_core::throttle::FailureWindow;
use tessera_core::{SecretHash, SessionRecord};
use tessera_store::{
    KeyStore, Ping, RefreshRecord, RefreshStore, SessionStore, StoreResult, StoredKey,
    ThrottleStore, UserRecord, UserStore,
};
use time::{Duration, OffsetDateTime};

/// Name of the store latency histogram.
pub const STORE_DURATION: &str = "tessera_store_operation_duration_seconds";

/// A store whose every call is timed.
pub struct Timed<T: ?Sized> {
    inner: Arc<T>,
    histograms: HashMap<&'static str, metrics::Histogram>,
}

impl<T: ?Sized> Timed<T> {
    fn new(inner: Arc<T>, backend: &'static str, operations: &[&'static str]) -> Self {
        let histograms = operations
            .iter()
            .map(|op| {
                let h =
                    metrics::histogram!(STORE_DURATION, "backend" => backend, "operation" => *op);
                (*op, h)
            })
            .collect();
        Self { inner, histograms }
    }

    fn record(&self, operation: &'static str, start: Instant) {
        if let Some(h) = self.histograms.get(operation) {
            h.record(start.elapsed().as_secs_f64());
        }
    }
}

/// Implements `$trait` for `Timed<T>` by timing each listed method, and a
/// constructor listing the operations.
macro_rules! timed {
    ($trait:ident, $make:ident { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )* }) => {
        #[async_trait]
        impl<T: $trait + ?Sized> $trait for Timed<T> {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    let start = Instant::now();
                    let result = self.inner.$name($($arg),*).await;
                    self.record(stringify!($name), start);
                    result
                }
            )*
        }

        /// `store`, timed under the backend label `backend`.
        pub fn $make(store: Arc<dyn $trait>, backend: &'static str) -> Arc<dyn $trait> {
            Arc::new(Timed::new(store, backend, &[$(stringify!($name)),*]))
        }
    };
}

timed!(UserStore, users {
    fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()>;
    fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    fn delete_user(&self, user_id: &str) -> StoreResult<bool>;
    fn set_disabled(&self, user_id: &str, at: Option<OffsetDateTime>) -> StoreResult<()>;
});

timed!(SessionStore, sessions {
    fn create_session(&self, session: &SessionRecord) -> StoreResult<()>;
    fn session_by_secret(&self, hash: &SecretHash) -> StoreResult<Option<SessionRecord>>;
    fn session_by_id(&self, id: &str) -> StoreResult<Option<SessionRecord>>;
    fn touch_session(&self, id: &str, last_seen_at: OffsetDateTime, idle_expires_at: Option<OffsetDateTime>) -> StoreResult<()>;
    fn list_sessions(&self, user_id: &str, now: OffsetDateTime) -> StoreResult<Vec<SessionRecord>>;
    fn revoke_session(&self, user_id: &str, id: &str, now: OffsetDateTime) -> StoreResult<bool>;
    fn revoke_user_sessions(&self, user_id: &str, keep: Option<&str>, now: OffsetDateTime) -> StoreResult<Vec<String>>;
    fn count_live_sessions(&self, now: OffsetDateTime) -> StoreResult<u64>;
    fn purge_sessions(&self, ended_before: OffsetDateTime) -> StoreResult<u64>;
});

timed!(ThrottleStore, throttle {
    fn record_failure(&self, key: &str, now: OffsetDateTime, window: Duration) -> StoreResult<FailureWindow>;
    fn failures(&self, key: &str, now: OffsetDateTime, window: Duration) -> StoreResult<Option<FailureWindow>>;
    fn clear_failures(&self, key: &str) -> StoreResult<()>;
    fn forgive_failure(&self, key: &str) -> StoreResult<()>;
    fn purge_failures(&self, before: OffsetDateTime) -> StoreResult<u64>;
});

timed!(RefreshStore, refresh {
    fn create_refresh(&self, token: &RefreshRecord) -> StoreResult<()>;
    fn spend_refresh(&self, presented: &SecretHash, successor: &SecretHash, now: OffsetDateTime, grace: Duration) -> StoreResult<SpendOutcome>;
    fn refresh_by_hash(&self, hash: &SecretHash) -> StoreResult<Option<RefreshRecord>>;
    fn purge_refresh(&self, before: OffsetDateTime) -> StoreResult<u64>;
});

timed!(KeyStore, keys {
    fn keys(&self) -> StoreResult<Vec<StoredKey>>;
    fn ensure_current_key(&self, key: &StoredKey) -> StoreResult<StoredKey>;
    fn rotate_key(&self, key: &StoredKey) -> StoreResult<()>;
    fn server_secret(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>>;
});

timed!(Ping, ping {
    fn ping(&self) -> StoreResult<()>;
});
