//! The change feed: how one process tells every other process sharing its
//! stores that a session or a user changed, so that what they cached about
//! it is no longer trusted.
//!
//! A server keeps the sessions and users it authenticates with in memory
//! (the server crate's `auth_cache`). A write through tessera — a logout, a
//! revocation, a password change, disabling or deleting a user — reaches
//! that process's cache directly, and every other process through the feed
//! of the store that all of them share:
//!
//! | stores | feed |
//! |---|---|
//! | SQLite | rows in the `changes` table, read by every process every 50 ms |
//! | PostgreSQL | `NOTIFY` on a channel named after the schema |
//! | PostgreSQL + Redis | Redis `PUBLISH` on `PREFIX:changes` |
//!
//! A feed reports when it is connected ([`FeedEvent::Up`]) and when it lost
//! its connection ([`FeedEvent::Down`]): while it is down a listener may
//! have missed changes, so it must not trust anything it cached.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::StoreResult;
use crate::millis::to_ms;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One session (by public id): it was revoked.
    Session(String),
    /// A user (by id): their record changed (password, disabled, deleted),
    /// and perhaps every one of their sessions (revoked together).
    User(String),
}

/// A change as a feed delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The process that published it (see [`Notice::encode`]).
    pub origin: String,
    /// When it was published, in Unix milliseconds (the publisher's clock).
    pub at_ms: i64,
    /// What changed.
    pub change: Change,
}

impl Notice {
    /// A notice of `change` published by `origin` at `at`.
    pub fn new(origin: &str, change: Change, at: OffsetDateTime) -> Self {
        Self {
            origin: origin.to_owned(),
            at_ms: to_ms(at),
            change,
        }
    }

    /// The one-line form every feed carries: `ORIGIN AT_MS s|u ID`.
    /// Origins and ids never contain spaces.
    pub fn encode(&self) -> String {
        let (kind, id) = match &self.change {
            Change::Session(id) => ("s", id),
            Change::User(id) => ("u", id),
        };
        format!("{} {} {kind} {id}", self.origin, self.at_ms)
    }

    /// Reads [`Notice::encode`]'s form; `None` for anything else.
    pub fn decode(line: &str) -> Option<Self> {
        let mut parts = line.split(' ');
        let origin = parts.next().filter(|o| !o.is_empty())?.to_owned();
        let at_ms = parts.next()?.parse().ok()?;
        let kind = parts.next()?;
        let id = parts.next().filter(|i| !i.is_empty())?.to_owned();
        if parts.next().is_some() {
            return None;
        }
        let change = match kind {
            "s" => Change::Session(id),
            "u" => Change::User(id),
            _ => return None,
        };
        Some(Self {
            origin,
            at_ms,
            change,
        })
    }
}

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// Connected (again): changes from now on will be delivered.
    Up,
    /// The connection was lost: changes may be missed until the next `Up`.
    Down,
    /// A change.
    Heard(Notice),
}

/// A channel that reaches every process sharing the stores.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Announces `notice` to every listener, this process's included.
    async fn publish(&self, notice: &Notice) -> StoreResult<()>;
    /// Listens until the process ends: reports [`FeedEvent::Up`] once
    /// connected, each change, [`FeedEvent::Down`] when the connection is
    /// lost, and reconnects by itself. Never returns.
    async fn listen(&self, on_event: &(dyn Fn(FeedEvent) + Send + Sync));
}

/// The feed of a store no other process shares (the in-memory store): it
/// is always up and carries nothing.
pub struct LocalFeed;

#[async_trait]
impl ChangeFeed for LocalFeed {
    async fn publish(&self, _notice: &Notice) -> StoreResult<()> {
        Ok(())
    }

    async fn listen(&self, on_event: &(dyn Fn(FeedEvent) + Send + Sync)) {
        on_event(FeedEvent::Up);
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_junk_is_refused() {
        let t = time::macros::datetime!(2030-06-01 12:00:00.123 UTC);
        for change in [
            Change::Session("ses_a".into()),
            Change::User("usr_b".into()),
        ] {
            let n = Notice::new("p1", change, t);
            assert_eq!(Notice::decode(&n.encode()), Some(n));
        }
        for junk in [
            "",
            "p1",
            "p1 12",
            "p1 x s ses_a",
            "p1 12 z ses_a",
            "p1 12 s",
            "p1 12 s ses_a extra",
            " 12 s ses_a",
        ] {
            assert_eq!(Notice::decode(junk), None, "{junk:?}");
        }
    }
}
