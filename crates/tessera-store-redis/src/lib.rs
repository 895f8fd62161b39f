//! The Redis backend for the hot, expiring state: sessions, refresh tokens
//! and login-failure counters. Users and signing keys stay in the database.
//!
//! Key layout, under a configurable prefix `P` (default `tessera`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{u:USER}:s:SID` | hash | one session |
//! | `P:{u:USER}:ss` | set | the user's session ids |
//! | `P:sh:HASH` | string | `USER SID` of the session whose secret hashes to HASH |
//! | `P:sid:SID` | string | the session's user |
//! | `P:ends` | sorted set | `USER SID` scored by when the session ended or ends |
//! | `P:rt:HASH` | hash | one refresh token (and, once spent, its successor's hash) |
//! | `P:rt-expiry` | sorted set | refresh-token hashes scored by expiry |
//! | `P:thr:KEY` | hash | a failure window |
//!
//! The `{u:USER}` hash tag keeps all of one user's session keys in one
//! Cluster slot, so the per-user scripts (revoke, revoke all) are atomic on a
//! single Redis and on Redis Cluster alike. Every compare-and-set is one Lua
//! script on one key or one slot (spending a refresh token, counting a
//! failure, revoking). Every key carries a native expiry (`PEXPIREAT`), so
//! dead state disappears by itself; `purge_sessions` only tidies the indexes.
//!
//! The connection is a `ConnectionManager` with connect and response
//! timeouts: when Redis stops answering, calls fail fast with
//! `StoreError::Unavailable` (a `503`), and the manager reconnects by itself
//! when Redis is back.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use tessera_core::refresh::SpendOutcome;
use tessera_core::throttle::FailureWindow;
use tessera_core::{SecretHash, SessionKind, SessionRecord};
use tessera_store::millis::{from_ms, to_ms as ms};
use tessera_store::{
    ChangeFeed, FeedEvent, Notice, Ping, RefreshRecord, RefreshStore, SessionStore, StoreError,
    StoreResult, ThrottleStore,
};
use time::{Duration, OffsetDateTime};

/// How long ended sessions and spent tokens linger before Redis drops them:
/// long enough for the device list and reuse detection to make sense of them.
const LINGER_MS: i64 = 24 * 3600 * 1000;

/// Sessions, refresh tokens and failure counters in Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    /// For the change feed's own connection (`SUBSCRIBE` takes one over).
    client: redis::Client,
}

/// Why Redis could not be used.
#[derive(Debug)]
pub struct OpenError(redis::RedisError);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot connect to Redis: {}", self.0)
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn map_err(e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Other(Box::new(e))
    }
}

fn hex(hash: &SecretHash) -> String {
    hash.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> StoreResult<SecretHash> {
    let bad = || StoreError::Other(format!("bad hash {s:?}").into());
    if s.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(SecretHash::from_bytes(out))
}

/// Revokes one session if it is live: `KEYS[1]` the session hash; `ARGV`
/// now (ms). Returns 1 when it revoked.
const REVOKE: &str = r"
local s = redis.call('HMGET', KEYS[1], 'revoked_at', 'expires_at', 'idle_expires_at')
if not s[2] then return 0 end
local now = tonumber(ARGV[1])
if s[1] or tonumber(s[2]) <= now or (s[3] and tonumber(s[3]) <= now) then return 0 end
redis.call('HSET', KEYS[1], 'revoked_at', ARGV[1])
return 1
";

/// Records a use of an existing session: `KEYS[1]` the session hash; `ARGV`
/// last seen, new idle expiry or 0 to keep it (ms). Returns 1 when it did;
/// never recreates a session Redis has already dropped.
const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_seen_at', ARGV[1])
if ARGV[2] ~= '0' then redis.call('HSET', KEYS[1], 'idle_expires_at', ARGV[2]) end
return 1
";

/// Revokes every live session of a user but one: `KEYS` the session hashes
/// (all under the user's hash tag, hence one Cluster slot); `ARGV` now and,
/// in the same order as `KEYS`, the session ids. Returns the ids revoked.
const REVOKE_ALL: &str = r"
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local s = redis.call('HMGET', key, 'revoked_at', 'expires_at', 'idle_expires_at')
  if s[2] and not s[1] and tonumber(s[2]) > now and (not s[3] or tonumber(s[3]) > now) then
    redis.call('HSET', key, 'revoked_at', ARGV[1])
    table.insert(out, ARGV[i + 1])
  end
end
return out
";

/// Spends a refresh token: `KEYS[1]` its hash; `ARGV` now, grace (ms), the
/// successor's hash. The successor's hash is kept in the spent token, so a
/// grace presentation can make sure that very successor exists.
const SPEND: &str = r"
local t = redis.call('HMGET', KEYS[1], 'session_id', 'expires_at', 'spent_at', 'user_id', 'successor')
if not t[1] then return {'unknown'} end
local now = tonumber(ARGV[1])
if tonumber(t[2]) <= now then return {'unknown'} end
if not t[3] then
  redis.call('HSET', KEYS[1], 'spent_at', ARGV[1], 'successor', ARGV[3])
  return {'rotated', t[1], t[4], t[2], ARGV[3]}
end
local grace = tonumber(ARGV[2])
if grace > 0 and now - tonumber(t[3]) <= grace then return {'grace', t[1], t[4], t[2], t[5]} end
return {'reused', t[1]}
";

/// Stores a successor refresh token unless it exists: `KEYS[1]`; `ARGV`
/// session, user, issued, expires, expire-at (ms).
const CREATE_SUCCESSOR: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'session_id', ARGV[1], 'user_id', ARGV[2], 'issued_at', ARGV[3], 'expires_at', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
return 1
";

/// Counts a failure: `KEYS[1]`; `ARGV` now, window (ms). Returns count, start.
const FAIL: &str = r"
local c = redis.call('HMGET', KEYS[1], 'count', 'started')
local now = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
if (not c[1]) or tonumber(c[2]) + w <= now then
  redis.call('HSET', KEYS[1], 'count', 1, 'started', ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], now + w)
  return {1, now}
end
return {redis.call('HINCRBY', KEYS[1], 'count', 1), tonumber(c[2])}
";

const FORGIVE: &str = r"
local c = redis.call('HGET', KEYS[1], 'count')
if c and tonumber(c) > 0 then
  return redis.call('HINCRBY', KEYS[1], 'count', -1)
end
return 0
";

/// The scripts, hashed once: `Script::new` computes the SHA-1 that EVALSHA
/// sends, which the hot paths (spend, touch, revoke) should not redo.
struct Scripts {
    create_successor: Script,
    touch: Script,
    revoke: Script,
    revoke_all: Script,
    spend: Script,
    fail: Script,
    forgive: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::LazyLock<Scripts> = std::sync::LazyLock::new(|| Scripts {
        create_successor: Script::new(CREATE_SUCCESSOR),
        touch: Script::new(TOUCH),
        revoke: Script::new(REVOKE),
        revoke_all: Script::new(REVOKE_ALL),
        spend: Script::new(SPEND),
        fail: Script::new(FAIL),
        forgive: Script::new(FORGIVE),
    });
    &SCRIPTS
}

impl RedisStore {
    /// Connects to `url` (`redis://…`) with keys under `prefix`. Fails if
    /// Redis does not answer within the connect timeout.
    pub async fn open(url: &str, prefix: &str) -> Result<Self, OpenError> {
        let client = redis::Client::open(url).map_err(OpenError)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(StdDuration::from_secs(2)))
            .set_response_timeout(Some(StdDuration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(StdDuration::from_millis(500));
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(OpenError)?;
        let store = Self {
            conn,
            prefix: prefix.to_owned(),
            client,
        };
        let mut c = store.conn.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut c)
            .await
            .map_err(OpenError)?;
        Ok(store)
    }

    fn session_key(&self, user_id: &str, sid: &str) -> String {
        format!("{}:{{u:{user_id}}}:s:{sid}", self.prefix)
    }

    fn user_set(&self, user_id: &str) -> String {
        format!("{}:{{u:{user_id}}}:ss", self.prefix)
    }

    fn secret_key(&self, hash: &SecretHash) -> String {
        format!("{}:sh:{}", self.prefix, hex(hash))
    }

    fn sid_key(&self, sid: &str) -> String {
        format!("{}:sid:{sid}", self.prefix)
    }

    fn ends_key(&self) -> String {
        format!("{}:ends", self.prefix)
    }

    fn refresh_key(&self, hash: &SecretHash) -> String {
        format!("{}:rt:{}", self.prefix, hex(hash))
    }

    fn refresh_index(&self) -> String {
        format!("{}:rt-expiry", self.prefix)
    }

    /// Stores a refresh token unless one with its hash exists, and indexes
    /// its expiry. Returns whether it stored.
    async fn store_refresh(&self, t: &RefreshRecord) -> StoreResult<bool> {
        let mut c = self.conn.clone();
        let created: i64 = scripts()
            .create_successor
            .key(self.refresh_key(&t.hash))
            .arg(&t.session_id)
            .arg(&t.user_id)
            .arg(ms(t.issued_at))
            .arg(ms(t.expires_at))
            .arg(ms(t.expires_at) + LINGER_MS)
            .invoke_async(&mut c)
            .await
            .map_err(map_err)?;
        if created == 1 {
            c.zadd::<_, _, _, ()>(self.refresh_index(), hex(&t.hash), ms(t.expires_at))
                .await
                .map_err(map_err)?;
        }
        Ok(created == 1)
    }

    fn throttle_key(&self, key: &str) -> String {
        format!("{}:thr:{key}", self.prefix)
    }

    /// Deletes every key under this store's prefix (tests use their own prefix).
    pub async fn delete_all(&self) -> StoreResult<()> {
        let keys = self.scan(&format!("{}:*", self.prefix)).await?;
        let mut c = self.conn.clone();
        for batch in keys.chunks(500) {
            c.del::<_, ()>(batch).await.map_err(map_err)?;
        }
        Ok(())
    }

    /// Every key matching `pattern`, by SCAN (never the blocking KEYS).
    async fn scan(&self, pattern: &str) -> StoreResult<Vec<String>> {
        let mut c = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut all = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut c)
                .await
                .map_err(map_err)?;
            all.extend(keys);
            if next == 0 {
                return Ok(all);
            }
            cursor = next;
        }
    }

    /// The members of the sorted set `key` scored strictly before `before`.
    async fn scored_before(&self, key: &str, before: OffsetDateTime) -> StoreResult<Vec<String>> {
        let mut c = self.conn.clone();
        redis::cmd("ZRANGEBYSCORE")
            .arg(key)
            .arg("-inf")
            .arg(format!("({}", ms(before)))
            .query_async(&mut c)
            .await
            .map_err(map_err)
    }

    async fn load_session(&self, user_id: &str, sid: &str) -> StoreResult<Option<SessionRecord>> {
        let mut c = self.conn.clone();
        let map: HashMap<String, String> = c
            .hgetall(self.session_key(user_id, sid))
            .await
            .map_err(map_err)?;
        if map.is_empty() {
            return Ok(None);
        }
        session_from_map(&map).map(Some)
    }

    /// The end of a session for the `ends` index: revocation, else its
    /// earlier expiry.
    fn end_of(s: &SessionRecord) -> i64 {
        ms(s.revoked_at.unwrap_or_else(|| s.effective_expiry()))
    }
}

fn field<'a>(map: &'a HashMap<String, String>, name: &str) -> StoreResult<&'a str> {
    map.get(name)
        .map(String::as_str)
        .ok_or_else(|| StoreError::Other(format!("session field {name} missing").into()))
}

fn opt_time(map: &HashMap<String, String>, name: &str) -> StoreResult<Option<OffsetDateTime>> {
    map.get(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>()
                .map_err(|e| StoreError::Other(Box::new(e)))
                .and_then(from_ms)
        })
        .transpose()
}

fn time_field(map: &HashMap<String, String>, name: &str) -> StoreResult<OffsetDateTime> {
    opt_time(map, name)?.ok_or_else(|| StoreError::Other(format!("field {name} missing").into()))
}

fn session_from_map(map: &HashMap<String, String>) -> StoreResult<SessionRecord> {
    let kind = field(map, "kind")?;
    Ok(SessionRecord {
        id: field(map, "id")?.to_owned(),
        secret_hash: map
            .get("secret_hash")
            .filter(|h| !h.is_empty())
            .map(|h| unhex(h))
            .transpose()?,
        user_id: field(map, "user_id")?.to_owned(),
        kind: SessionKind::parse(kind)
            .ok_or_else(|| StoreError::Other(format!("unknown kind {kind:?}").into()))?,
        created_at: time_field(map, "created_at")?,
        last_seen_at: time_field(map, "last_seen_at")?,
        expires_at: time_field(map, "expires_at")?,
        idle_expires_at: opt_time(map, "idle_expires_at")?,
        user_agent: map.get("user_agent").cloned(),
        ip: map.get("ip").cloned(),
        revoked_at: opt_time(map, "revoked_at")?,
    })
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        let mut c = self.conn.clone();
        let expire_at = ms(s.expires_at) + LINGER_MS;
        // The indexes double as the uniqueness checks (SET NX).
        let sid_ok: bool = redis::cmd("SET")
            .arg(self.sid_key(&s.id))
            .arg(&s.user_id)
            .arg("NX")
            .arg("PXAT")
            .arg(expire_at)
            .query_async::<Option<String>>(&mut c)
            .await
            .map_err(map_err)?
            .is_some();
        if !sid_ok {
            return Err(StoreError::Conflict("session_exists"));
        }
        if let Some(hash) = &s.secret_hash {
            let ok = redis::cmd("SET")
                .arg(self.secret_key(hash))
                .arg(format!("{} {}", s.user_id, s.id))
                .arg("NX")
                .arg("PXAT")
                .arg(expire_at)
                .query_async::<Option<String>>(&mut c)
                .await
                .map_err(map_err)?
                .is_some();
            if !ok {
                c.del::<_, ()>(self.sid_key(&s.id)).await.map_err(map_err)?;
                return Err(StoreError::Conflict("session_exists"));
            }
        }
        let key = self.session_key(&s.user_id, &s.id);
        let mut fields: Vec<(&str, String)> = vec![
            ("id", s.id.clone()),
            ("user_id", s.user_id.clone()),
            ("kind", s.kind.as_str().to_owned()),
            ("created_at", ms(s.created_at).to_string()),
            ("last_seen_at", ms(s.last_seen_at).to_string()),
            ("expires_at", ms(s.expires_at).to_string()),
        ];
        if let Some(h) = &s.secret_hash {
            fields.push(("secret_hash", hex(h)));
        }
        if let Some(t) = s.idle_expires_at {
            fields.push(("idle_expires_at", ms(t).to_string()));
        }
        if let Some(ua) = &s.user_agent {
            fields.push(("user_agent", ua.clone()));
        }
        if let Some(ip) = &s.ip {
            fields.push(("ip", ip.clone()));
        }
        if let Some(t) = s.revoked_at {
            fields.push(("revoked_at", ms(t).to_string()));
        }
        let set = self.user_set(&s.user_id);
        redis::pipe()
            .atomic()
            .hset_multiple(&key, &fields)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&key)
            .arg(expire_at)
            .ignore()
            .sadd(&set, &s.id)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&set)
            .arg(expire_at)
            .arg("GT")
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(map_err)?;
        // `PEXPIREAT … GT` only lengthens; a new set has no expiry to compare.
        let _: i64 = redis::cmd("PEXPIREAT")
            .arg(&set)
            .arg(expire_at)
            .arg("NX")
            .query_async(&mut c)
            .await
            .map_err(map_err)?;
        c.zadd::<_, _, _, ()>(
            self.ends_key(),
            format!("{} {}", s.user_id, s.id),
            Self::end_of(s),
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn session_by_secret(&self, hash: &SecretHash) -> StoreResult<Option<SessionRecord>> {
        let mut c = self.conn.clone();
        let Some(entry): Option<String> = c.get(self.secret_key(hash)).await.map_err(map_err)?
        else {
            return Ok(None);
        };
        let Some((user_id, sid)) = entry.split_once(' ') else {
            return Ok(None);
        };
        self.load_session(user_id, sid).await
    }

    async fn session_by_id(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let mut c = self.conn.clone();
        let Some(user_id): Option<String> = c.get(self.sid_key(id)).await.map_err(map_err)? else {
            return Ok(None);
        };
        self.load_session(&user_id, id).await
    }

    async fn touch_session(
        &self,
        id: &str,
        last_seen_at: OffsetDateTime,
        idle_expires_at: Option<OffsetDateTime>,
    ) -> StoreResult<()> {
        let mut c = self.conn.clone();
        let Some(user_id): Option<String> = c.get(self.sid_key(id)).await.map_err(map_err)? else {
            return Ok(());
        };
        let touched: i64 = scripts()
            .touch
            .key(self.session_key(&user_id, id))
            .arg(ms(last_seen_at))
            .arg(idle_expires_at.map(ms).unwrap_or(0))
            .invoke_async(&mut c)
            .await
            .map_err(map_err)?;
        // Keep the ends index in step with a live session's new idle expiry.
        if touched == 1
            && idle_expires_at.is_some()
            && let Some(s) = self.load_session(&user_id, id).await?
            && s.revoked_at.is_none()
        {
            c.zadd::<_, _, _, ()>(self.ends_key(), format!("{user_id} {id}"), Self::end_of(&s))
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<SessionRecord>> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = c.smembers(self.user_set(user_id)).await.map_err(map_err)?;
        let mut out = Vec::new();
        for sid in ids {
            match self.load_session(user_id, &sid).await? {
                Some(s) if s.is_live(now) => out.push(s),
                Some(_) => {}
                // Expired by Redis itself: drop it from the index.
                None => c
                    .srem::<_, _, ()>(self.user_set(user_id), &sid)
                    .await
                    .map_err(map_err)?,
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    async fn revoke_session(
        &self,
        user_id: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut c = self.conn.clone();
        let done: i64 = scripts()
            .revoke
            .key(self.session_key(user_id, id))
            .arg(ms(now))
            .invoke_async(&mut c)
            .await
            .map_err(map_err)?;
        if done == 1 {
            c.zadd::<_, _, _, ()>(self.ends_key(), format!("{user_id} {id}"), ms(now))
                .await
                .map_err(map_err)?;
        }
        Ok(done == 1)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<String>> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = c.smembers(self.user_set(user_id)).await.map_err(map_err)?;
        let ids: Vec<String> = ids
            .into_iter()
            .filter(|sid| Some(sid.as_str()) != keep)
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Every key the script touches is declared, as Redis Cluster wants.
        let mut call = scripts().revoke_all.prepare_invoke();
        call.arg(ms(now));
        for sid in &ids {
            call.key(self.session_key(user_id, sid)).arg(sid);
        }
        let revoked: Vec<String> = call.invoke_async(&mut c).await.map_err(map_err)?;
        for sid in &revoked {
            c.zadd::<_, _, _, ()>(self.ends_key(), format!("{user_id} {sid}"), ms(now))
                .await
                .map_err(map_err)?;
        }
        Ok(revoked)
    }

    async fn count_live_sessions(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let mut c = self.conn.clone();
        let n: u64 = redis::cmd("ZCOUNT")
            .arg(self.ends_key())
            .arg(format!("({}", ms(now)))
            .arg("+inf")
            .query_async(&mut c)
            .await
            .map_err(map_err)?;
        Ok(n)
    }

    async fn purge_sessions(&self, ended_before: OffsetDateTime) -> StoreResult<u64> {
        let mut c = self.conn.clone();
        let ended = self.scored_before(&self.ends_key(), ended_before).await?;
        let mut purged = 0;
        for member in ended {
            if let Some((user_id, sid)) = member.split_once(' ') {
                if let Some(s) = self.load_session(user_id, sid).await? {
                    if let Some(h) = &s.secret_hash {
                        c.del::<_, ()>(self.secret_key(h)).await.map_err(map_err)?;
                    }
                    purged += 1;
                }
                c.del::<_, ()>(self.session_key(user_id, sid))
                    .await
                    .map_err(map_err)?;
                c.del::<_, ()>(self.sid_key(sid)).await.map_err(map_err)?;
                c.srem::<_, _, ()>(self.user_set(user_id), sid)
                    .await
                    .map_err(map_err)?;
            }
            c.zrem::<_, _, ()>(self.ends_key(), &member)
                .await
                .map_err(map_err)?;
        }
        Ok(purged)
    }
}

#[async_trait]
impl RefreshStore for RedisStore {
    async fn create_refresh(&self, t: &RefreshRecord) -> StoreResult<()> {
        if !self.store_refresh(t).await? {
            return Err(StoreError::Conflict("refresh_exists"));
        }
        let mut c = self.conn.clone();
        if let Some(spent) = t.spent_at {
            c.hset::<_, _, _, ()>(self.refresh_key(&t.hash), "spent_at", ms(spent))
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }

    async fn spend_refresh(
        &self,
        presented: &SecretHash,
        successor: &SecretHash,
        now: OffsetDateTime,
        grace: Duration,
    ) -> StoreResult<SpendOutcome> {
        let mut c = self.conn.clone();
        let reply: Vec<String> = scripts()
            .spend
            .key(self.refresh_key(presented))
            .arg(ms(now))
            .arg(grace.whole_milliseconds() as i64)
            .arg(hex(successor))
            .invoke_async(&mut c)
            .await
            .map_err(map_err)?;
        let kind = reply.first().map(String::as_str).unwrap_or("unknown");
        let session_id = reply.get(1).cloned().unwrap_or_default();
        if let (true, Some(next)) = (matches!(kind, "rotated" | "grace"), reply.get(4)) {
            // The successor lives under its own hash (another slot): a second
            // step. Creating it only if missing lets a grace presentation
            // repair a rotation whose second step was interrupted.
            let record = RefreshRecord {
                hash: unhex(next)?,
                session_id: session_id.clone(),
                user_id: reply.get(2).cloned().unwrap_or_default(),
                issued_at: now,
                expires_at: from_ms(
                    reply
                        .get(3)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_default(),
                )?,
                spent_at: None,
            };
            self.store_refresh(&record).await?;
        }
        Ok(match kind {
            "rotated" => SpendOutcome::Rotated { session_id },
            "grace" => SpendOutcome::Grace { session_id },
            "reused" => SpendOutcome::Reused { session_id },
            _ => SpendOutcome::Unknown,
        })
    }

    async fn refresh_by_hash(&self, hash: &SecretHash) -> StoreResult<Option<RefreshRecord>> {
        let mut c = self.conn.clone();
        let map: HashMap<String, String> =
            c.hgetall(self.refresh_key(hash)).await.map_err(map_err)?;
        if map.is_empty() {
            return Ok(None);
        }
        Ok(Some(RefreshRecord {
            hash: *hash,
            session_id: field(&map, "session_id")?.to_owned(),
            user_id: field(&map, "user_id")?.to_owned(),
            issued_at: time_field(&map, "issued_at")?,
            expires_at: time_field(&map, "expires_at")?,
            spent_at: opt_time(&map, "spent_at")?,
        }))
    }

    async fn purge_refresh(&self, before: OffsetDateTime) -> StoreResult<u64> {
        // Every token also carries a native expiry; this sweeps by the index.
        let mut c = self.conn.clone();
        let expired = self.scored_before(&self.refresh_index(), before).await?;
        let mut purged = 0;
        for h in expired {
            purged += c
                .del::<_, u64>(self.refresh_key(&unhex(&h)?))
                .await
                .map_err(map_err)?;
            c.zrem::<_, _, ()>(self.refresh_index(), &h)
                .await
                .map_err(map_err)?;
        }
        Ok(purged)
    }
}

#[async_trait]
impl ThrottleStore for RedisStore {
    async fn record_failure(
        &self,
        key: &str,
        now: OffsetDateTime,
        window: Duration,
    ) -> StoreResult<FailureWindow> {
        let mut c = self.conn.clone();
        let (count, started): (i64, i64) = scripts()
            .fail
            .key(self.throttle_key(key))
            .arg(ms(now))
            .arg(window.whole_milliseconds() as i64)
            .invoke_async(&mut c)
            .await
            .map_err(map_err)?;
        Ok(FailureWindow {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            started_at: from_ms(started)?,
        })
    }

    async fn failures(
        &self,
        key: &str,
        now: OffsetDateTime,
        window: Duration,
    ) -> StoreResult<Option<FailureWindow>> {
        let mut c = self.conn.clone();
        let (count, started): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(self.throttle_key(key))
            .arg("count")
            .arg("started")
            .query_async(&mut c)
            .await
            .map_err(map_err)?;
        let (Some(count), Some(started)) = (count, started) else {
            return Ok(None);
        };
        let started_at = from_ms(started)?;
        Ok((started_at + window > now).then_some(FailureWindow {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            started_at,
        }))
    }

    async fn clear_failures(&self, key: &str) -> StoreResult<()> {
        let mut c = self.conn.clone();
        c.del::<_, ()>(self.throttle_key(key))
            .await
            .map_err(map_err)
    }

    async fn forgive_failure(&self, key: &str) -> StoreResult<()> {
        let mut c = self.conn.clone();
        scripts()
            .forgive
            .key(self.throttle_key(key))
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn purge_failures(&self, before: OffsetDateTime) -> StoreResult<u64> {
        // Windows expire natively; this sweeps those that started before
        // `before` (for a clock that is not Redis's, as in tests).
        let mut c = self.conn.clone();
        let mut purged = 0;
        for key in self.scan(&format!("{}:thr:*", self.prefix)).await? {
            let started: Option<i64> = c.hget(&key, "started").await.map_err(map_err)?;
            if started.is_some_and(|s| s < ms(before)) {
                c.del::<_, ()>(&key).await.map_err(map_err)?;
                purged += 1;
            }
        }
        Ok(purged)
    }
}

#[async_trait]
impl Ping for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        let mut c = self.conn.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut c)
            .await
            .map_err(map_err)
    }
}

/// How often the change feed pings its connection: a connection that stopped
/// answering (not only one that closed) is noticed within about this long
/// plus [`FEED_PING_TIMEOUT`].
const FEED_PING_EVERY: StdDuration = StdDuration::from_secs(1);
/// How long the change feed waits for an answer before it calls itself down.
const FEED_PING_TIMEOUT: StdDuration = StdDuration::from_secs(2);
/// How long the change feed waits before connecting again after a failure.
const FEED_RETRY: StdDuration = StdDuration::from_millis(250);

impl RedisStore {
    fn feed_channel(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    /// Connects and subscribes: the feed is up once this returns.
    async fn subscribe(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let connect = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(self.feed_channel()).await?;
            Ok(pubsub)
        };
        tokio::time::timeout(FEED_PING_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )))
            })
    }
}

#[async_trait]
impl ChangeFeed for RedisStore {
    async fn publish(&self, notice: &Notice) -> StoreResult<()> {
        let mut c = self.conn.clone();
        c.publish::<_, _, ()>(self.feed_channel(), notice.encode())
            .await
            .map_err(map_err)
    }

    async fn listen(&self, on_event: &(dyn Fn(FeedEvent) + Send + Sync)) {
        loop {
            if let Ok(pubsub) = self.subscribe().await {
                on_event(FeedEvent::Up);
                let (mut sink, mut messages) = pubsub.split();
                let mut ping = tokio::time::interval(FEED_PING_EVERY);
                ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => {
                                let notice = message
                                    .get_payload::<String>()
                                    .ok()
                                    .and_then(|line| Notice::decode(&line));
                                if let Some(notice) = notice {
                                    on_event(FeedEvent::Heard(notice));
                                }
                            }
                            None => break,
                        },
                        _ = ping.tick() => {
                            let answered =
                                tokio::time::timeout(FEED_PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                            if !matches!(answered, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                on_event(FeedEvent::Down);
            }
            tokio::time::sleep(FEED_RETRY).await;
        }
    }
}
