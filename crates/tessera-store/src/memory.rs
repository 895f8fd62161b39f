//! An in-memory store for unit tests and the conformance suite's reference.
//!
//! One mutex guards everything, which makes every operation trivially atomic.
//! It is not offered as a server backend: its state dies with the process.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use tessera_core::refresh::{SpendOutcome, classify_unspendable};
use tessera_core::throttle::FailureWindow;
use tessera_core::{SecretHash, SessionRecord};
use time::{Duration, OffsetDateTime};

use crate::{
    KeyStore, Ping, RefreshRecord, RefreshStore, SessionStore, StoreError, StoreResult, StoredKey,
    ThrottleStore, UserRecord, UserStore,
};

#[derive(Default)]
struct State {
    users: Vec<UserRecord>,
    sessions: Vec<SessionRecord>,
    failures: HashMap<String, FailureWindow>,
    refresh: Vec<RefreshRecord>,
    keys: Vec<StoredKey>,
    secrets: HashMap<String, Vec<u8>>,
}

/// Every store trait, in process memory.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn ended_at(s: &SessionRecord) -> OffsetDateTime {
    s.revoked_at.unwrap_or_else(|| s.effective_expiry())
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        let mut st = self.lock();
        if st
            .users
            .iter()
            .any(|u| u.id == user.id || u.username.eq_ignore_ascii_case(&user.username))
        {
            return Err(StoreError::Conflict("username_taken"));
        }
        st.users.push(user.clone());
        Ok(())
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        Ok(self
            .lock()
            .users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
            .cloned())
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        Ok(self.lock().users.iter().find(|u| u.id == id).cloned())
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        let mut st = self.lock();
        let user = st
            .users
            .iter_mut()
            .find(|u| u.id == user_id)
            .ok_or(StoreError::NotFound)?;
        password_hash.clone_into(&mut user.password_hash);
        Ok(())
    }

    async fn set_disabled(&self, user_id: &str, at: Option<OffsetDateTime>) -> StoreResult<()> {
        let mut st = self.lock();
        let user = st
            .users
            .iter_mut()
            .find(|u| u.id == user_id)
            .ok_or(StoreError::NotFound)?;
        user.disabled_at = at;
        Ok(())
    }

    async fn delete_user(&self, user_id: &str) -> StoreResult<bool> {
        let mut st = self.lock();
        let before = st.users.len();
        st.users.retain(|u| u.id != user_id);
        Ok(st.users.len() < before)
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let mut users = self.lock().users.clone();
        users.sort_by_key(|u| u.created_at);
        Ok(users)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        let mut st = self.lock();
        let dup = st.sessions.iter().any(|s| {
            s.id == session.id || (s.secret_hash.is_some() && s.secret_hash == session.secret_hash)
        });
        if dup {
            return Err(StoreError::Conflict("session_exists"));
        }
        st.sessions.push(session.clone());
        Ok(())
    }

    async fn session_by_secret(&self, hash: &SecretHash) -> StoreResult<Option<SessionRecord>> {
        Ok(self
            .lock()
            .sessions
            .iter()
            .find(|s| s.secret_hash.as_ref() == Some(hash))
            .cloned())
    }

    async fn session_by_id(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        Ok(self.lock().sessions.iter().find(|s| s.id == id).cloned())
    }

    async fn touch_session(
        &self,
        id: &str,
        last_seen_at: OffsetDateTime,
        idle_expires_at: Option<OffsetDateTime>,
    ) -> StoreResult<()> {
        let mut st = self.lock();
        if let Some(s) = st.sessions.iter_mut().find(|s| s.id == id) {
            s.last_seen_at = last_seen_at;
            if idle_expires_at.is_some() {
                s.idle_expires_at = idle_expires_at;
            }
        }
        Ok(())
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<SessionRecord>> {
        let mut out: Vec<_> = self
            .lock()
            .sessions
            .iter()
            .filter(|s| s.user_id == user_id && s.is_live(now))
            .cloned()
            .collect();
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    async fn revoke_session(
        &self,
        user_id: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut st = self.lock();
        match st
            .sessions
            .iter_mut()
            .find(|s| s.id == id && s.user_id == user_id && s.is_live(now))
        {
            Some(s) => {
                s.revoked_at = Some(now);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<String>> {
        let mut st = self.lock();
        let mut revoked = Vec::new();
        for s in st.sessions.iter_mut() {
            if s.user_id == user_id && Some(s.id.as_str()) != keep && s.is_live(now) {
                s.revoked_at = Some(now);
                revoked.push(s.id.clone());
            }
        }
        Ok(revoked)
    }

    async fn count_live_sessions(&self, now: OffsetDateTime) -> StoreResult<u64> {
        Ok(self
            .lock()
            .sessions
            .iter()
            .filter(|s| s.is_live(now))
            .count() as u64)
    }

    async fn purge_sessions(&self, ended_before: OffsetDateTime) -> StoreResult<u64> {
        let mut st = self.lock();
        let before = st.sessions.len();
        st.sessions.retain(|s| ended_at(s) >= ended_before);
        Ok((before - st.sessions.len()) as u64)
    }
}

#[async_trait]
impl ThrottleStore for MemoryStore {
    async fn record_failure(
        &self,
        key: &str,
        now: OffsetDateTime,
        window: Duration,
    ) -> StoreResult<FailureWindow> {
        let mut st = self.lock();
        let entry = st.failures.entry(key.to_owned()).or_insert(FailureWindow {
            count: 0,
            started_at: now,
        });
        if entry.started_at + window <= now {
            *entry = FailureWindow {
                count: 0,
                started_at: now,
            };
        }
        entry.count += 1;
        Ok(*entry)
    }

    async fn failures(
        &self,
        key: &str,
        now: OffsetDateTime,
        window: Duration,
    ) -> StoreResult<Option<FailureWindow>> {
        Ok(self
            .lock()
            .failures
            .get(key)
            .filter(|w| w.started_at + window > now)
            .copied())
    }

    async fn clear_failures(&self, key: &str) -> StoreResult<()> {
        self.lock().failures.remove(key);
        Ok(())
    }

    async fn forgive_failure(&self, key: &str) -> StoreResult<()> {
        if let Some(w) = self.lock().failures.get_mut(key) {
            w.count = w.count.saturating_sub(1);
        }
        Ok(())
    }

    async fn purge_failures(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let mut st = self.lock();
        let n = st.failures.len();
        st.failures.retain(|_, w| w.started_at >= before);
        Ok((n - st.failures.len()) as u64)
    }
}

#[async_trait]
impl RefreshStore for MemoryStore {
    async fn create_refresh(&self, token: &RefreshRecord) -> StoreResult<()> {
        let mut st = self.lock();
        if st.refresh.iter().any(|r| r.hash == token.hash) {
            return Err(StoreError::Conflict("refresh_exists"));
        }
        st.refresh.push(token.clone());
        Ok(())
    }

    async fn spend_refresh(
        &self,
        presented: &SecretHash,
        successor: &SecretHash,
        now: OffsetDateTime,
        grace: Duration,
    ) -> StoreResult<SpendOutcome> {
        let mut st = self.lock();
        let Some(token) = st.refresh.iter_mut().find(|r| &r.hash == presented) else {
            return Ok(SpendOutcome::Unknown);
        };
        if token.expires_at <= now {
            return Ok(SpendOutcome::Unknown);
        }
        let session_id = token.session_id.clone();
        if token.spent_at.is_none() {
            token.spent_at = Some(now);
            let next = RefreshRecord {
                hash: *successor,
                issued_at: now,
                spent_at: None,
                ..token.clone()
            };
            st.refresh.push(next);
            return Ok(SpendOutcome::Rotated { session_id });
        }
        Ok(classify_unspendable(
            session_id,
            token.spent_at,
            token.expires_at,
            now,
            grace,
        ))
    }

    async fn refresh_by_hash(&self, hash: &SecretHash) -> StoreResult<Option<RefreshRecord>> {
        Ok(self
            .lock()
            .refresh
            .iter()
            .find(|r| &r.hash == hash)
            .cloned())
    }

    async fn purge_refresh(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let mut st = self.lock();
        let n = st.refresh.len();
        st.refresh.retain(|r| r.expires_at >= before);
        Ok((n - st.refresh.len()) as u64)
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn keys(&self) -> StoreResult<Vec<StoredKey>> {
        let mut keys = self.lock().keys.clone();
        keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        Ok(keys)
    }

    async fn ensure_current_key(&self, key: &StoredKey) -> StoreResult<StoredKey> {
        let mut st = self.lock();
        if let Some(current) = st
            .keys
            .iter()
            .filter(|k| k.alg == key.alg && k.superseded_at.is_none())
            .max_by_key(|k| k.created_at)
        {
            return Ok(current.clone());
        }
        st.keys.push(key.clone());
        Ok(key.clone())
    }

    async fn rotate_key(&self, key: &StoredKey) -> StoreResult<()> {
        let mut st = self.lock();
        for k in st
            .keys
            .iter_mut()
            .filter(|k| k.alg == key.alg && k.superseded_at.is_none())
        {
            k.superseded_at = Some(key.created_at);
        }
        st.keys.push(key.clone());
        Ok(())
    }

    async fn server_secret(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        Ok(self
            .lock()
            .secrets
            .entry(name.to_owned())
            .or_insert_with(|| candidate.to_vec())
            .clone())
    }
}

#[async_trait]
impl Ping for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    crate::conformance_tests!(async { Some(std::sync::Arc::new(crate::MemoryStore::new())) });
}
