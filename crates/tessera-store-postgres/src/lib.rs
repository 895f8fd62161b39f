//! The PostgreSQL backend: every tessera store in one database that several
//! tessera instances share.
//!
//! Migrations embedded in the binary run on open (in the schema that the
//! connection's `search_path` names, so one database can hold several
//! isolated installations or test runs). Every compare-and-set is one SQL
//! statement (`INSERT … ON CONFLICT … RETURNING`, `UPDATE … WHERE … RETURNING`)
//! or one transaction whose first statement takes the row lock, so
//! concurrent instances cannot lose updates. The pool has a bounded size and
//! a bounded wait, and statements a bounded run time, so a database that
//! stops answering turns into `StoreError::Unavailable` quickly, never a hang.
//!
//! Times are stored as Unix milliseconds, as in the SQLite backend.

use std::str::FromStr;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};
use tessera_core::refresh::{SpendOutcome, classify_unspendable};
use tessera_core::throttle::FailureWindow;
use tessera_core::{SecretHash, SessionKind, SessionRecord};
use tessera_store::millis::{from_ms, opt_from_ms, to_ms as ms};
use tessera_store::{
    ChangeFeed, FeedEvent, KeyStore, Notice, Ping, RefreshRecord, RefreshStore, SessionStore,
    StoreError, StoreResult, StoredKey, ThrottleStore, UserRecord, UserStore,
};
use time::{Duration, OffsetDateTime};

/// Every store trait on one PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: Option<String>,
}

/// How [`PostgresStore::open_with`] treats the database: in
/// [`OpenMode::ReadOnly`] every transaction is read-only.
pub use tessera_store::OpenMode;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL is not a `postgres://` URL sqlx understands.
    #[error("not a valid PostgreSQL URL: {}", describe(.0))]
    BadUrl(sqlx::Error),
    /// The server could not be reached, or refused the connection or the
    /// login.
    #[error("{}", describe(.0))]
    Open(sqlx::Error),
    /// A migration failed.
    #[error("cannot create or update tessera's tables: {}", describe_migrate(.0))]
    Migrate(sqlx::migrate::MigrateError),
    /// The schema name is not a plain identifier.
    #[error("schema names are 1 to 63 characters of a-z, 0-9 and _, starting with a letter")]
    BadSchema,
    /// The schema does not exist, and the mode does not create it.
    #[error("the schema {0} does not exist in this database")]
    NoSchema(String),
    /// The schema (or the default one) has no tessera tables.
    #[error("{} has none of tessera's tables", match .0 {
        Some(schema) => format!("the schema {schema}"),
        None => "the connection's default schema".to_owned(),
    })]
    NotTessera(Option<String>),
    /// The tables were made by an older tessera and are not migrated yet
    /// (only [`OpenMode::ReadOnly`], which does not migrate).
    #[error(
        "tessera's tables were made by an older tessera and are not migrated yet: \
         start `tessera serve` on them once, which migrates them"
    )]
    Outdated,
    /// The server takes no writes.
    #[error(
        "the server accepts no writes (a standby, or default_transaction_read_only is on): \
         point the URL at the primary"
    )]
    ReadOnly,
}

/// What went wrong, in words (sqlx repeats the server's message in its
/// source, and says "pool timed out" for a refused connection).
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: is PostgreSQL running, and listening on that host and port?"
                .to_owned()
        }
        sqlx::Error::Io(io) => format!("{io}: check the host and port"),
        sqlx::Error::Tls(tls) => format!("TLS failed: {tls}"),
        sqlx::Error::Database(db) => {
            let message = db.message();
            match db.code().as_deref() {
                Some("28P01") => format!("{message}: check the user name and password in the URL"),
                Some("28000") => {
                    format!("{message}: the server does not let this user in (see its pg_hba.conf)")
                }
                Some("3D000") => format!(
                    "{message}: create it (with createdb) or fix the database name in the URL"
                ),
                Some("42501") => format!(
                    "{message}: the user needs the CREATE privilege on the database or schema"
                ),
                Some("53300") => format!(
                    "{message}: lower --database-max-connections or raise the server's max_connections"
                ),
                Some("57P03") => {
                    format!("{message}: the server is starting or stopping; try again")
                }
                Some(code) => format!("{message} (SQLSTATE {code})"),
                None => message.to_owned(),
            }
        }
        sqlx::Error::Configuration(c) => c.to_string(),
        other => other.to_string(),
    }
}

fn describe_migrate(e: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::VersionMissing(v) => format!(
            "they were migrated by a newer tessera (migration {v} is unknown to this one); \
             run that version"
        ),
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => describe(e),
        other => other.to_string(),
    }
}

/// Pool limits.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Most connections this instance opens.
    pub max_connections: u32,
    /// Longest wait for a connection (and for connecting) before a request
    /// gets `503`.
    pub acquire_timeout: StdDuration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: StdDuration::from_secs(3),
        }
    }
}

/// The migrations in `migrations/`, embedded in the binary.
const MIGRATIONS: tessera_store::sqlx_migrations::Embedded =
    tessera_store::sqlx_migrations::Embedded(&[
        (1, "initial", include_str!("../migrations/0001_initial.sql")),
        (
            2,
            "disabled_users",
            include_str!("../migrations/0002_disabled_users.sql"),
        ),
    ]);

fn valid_schema(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl PostgresStore {
    /// Connects to `url` and applies pending migrations, in `schema` when
    /// given (created if missing), else in the database's default schema:
    /// [`OpenMode::Create`].
    pub async fn open(
        url: &str,
        schema: Option<&str>,
        pool: PoolOptions,
    ) -> Result<Self, OpenError> {
        Self::open_with(url, schema, pool, OpenMode::Create).await
    }

    /// Connects to `url`, with tessera's tables in `schema` when given, else
    /// in the database's default schema, as `mode` says.
    pub async fn open_with(
        url: &str,
        schema: Option<&str>,
        pool: PoolOptions,
        mode: OpenMode,
    ) -> Result<Self, OpenError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(OpenError::BadUrl)?
            // A statement that runs longer than this is a stuck database.
            .options([("statement_timeout", "5000")]);
        if mode == OpenMode::ReadOnly {
            options = options.options([("default_transaction_read_only", "on")]);
        }
        if schema.is_some_and(|s| !valid_schema(s)) {
            return Err(OpenError::BadSchema);
        }
        // One connection first, on its own: the pool retries a refused
        // connection until its timeout, then says only "pool timed out".
        // (This connection has no time limit of its own; a caller that
        // must not wait on a host that never answers bounds the call.)
        let mut conn = sqlx::ConnectOptions::connect(&options)
            .await
            .map_err(OpenError::Open)?;
        if mode != OpenMode::ReadOnly {
            let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
                .fetch_one(&mut conn)
                .await
                .map_err(OpenError::Open)?;
            if read_only == "on" {
                return Err(OpenError::ReadOnly);
            }
        }
        if let Some(schema) = schema {
            if mode == OpenMode::Create {
                // The name is a checked identifier, so it can be spliced in.
                let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                    .execute(&mut conn)
                    .await;
                match created {
                    Ok(_) => {}
                    // Two instances starting at once both try to create it; the
                    // loser's unique violation means the schema now exists.
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {}
                    Err(e) => return Err(OpenError::Open(e)),
                }
            } else {
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                )
                .bind(schema)
                .fetch_one(&mut conn)
                .await
                .map_err(OpenError::Open)?;
                if !exists {
                    return Err(OpenError::NoSchema(schema.to_owned()));
                }
            }
            options = options.options([("search_path", schema)]);
        }
        if mode != OpenMode::Create {
            let table = match schema {
                Some(schema) => format!("{schema}._sqlx_migrations"),
                None => "_sqlx_migrations".to_owned(),
            };
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(&table)
                .fetch_one(&mut conn)
                .await
                .map_err(OpenError::Open)?;
            if !exists {
                return Err(OpenError::NotTessera(schema.map(str::to_owned)));
            }
            let applied: Vec<i64> =
                sqlx::query_scalar(&format!("SELECT version FROM {table} WHERE success"))
                    .fetch_all(&mut conn)
                    .await
                    .map_err(OpenError::Open)?;
            if mode == OpenMode::ReadOnly && MIGRATIONS.pending(&applied) {
                return Err(OpenError::Outdated);
            }
        }
        sqlx::Connection::close(conn)
            .await
            .map_err(OpenError::Open)?;
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(OpenError::Open)?;
        if mode != OpenMode::ReadOnly {
            let migrated = match sqlx::migrate::Migrator::new(MIGRATIONS).await {
                Ok(migrator) => migrator.run(&pool).await,
                Err(e) => Err(e),
            };
            migrated.map_err(OpenError::Migrate)?;
        }
        Ok(Self {
            pool,
            schema: schema.map(str::to_owned),
        })
    }

    /// Closes every connection, waiting for queries in flight.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Drops this store's schema with everything in it, then closes. For
    /// tests and throwaway installations; refuses the default schema.
    pub async fn drop_schema(&self) -> StoreResult<()> {
        let Some(schema) = &self.schema else {
            return Err(StoreError::Other(
                "refusing to drop the default schema".into(),
            ));
        };
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        self.pool.close().await;
        Ok(())
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(ref db) if db.is_unique_violation() => StoreError::Conflict("unique"),
        // Class 08 (connection exception), 53 (insufficient resources), 57
        // (operator intervention: shutdown, statement timeout): the database
        // is not answering as it should, so the request gets 503.
        sqlx::Error::Database(ref db)
            if db.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("53") || c.starts_with("57")
            }) =>
        {
            StoreError::Unavailable(Box::new(e))
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(Box::new(e)),
        other => StoreError::Other(Box::new(other)),
    }
}

fn user_from_row(row: &PgRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: row.try_get("id").map_err(map_err)?,
        username: row.try_get("username").map_err(map_err)?,
        password_hash: row.try_get("password_hash").map_err(map_err)?,
        created_at: from_ms(row.try_get("created_at").map_err(map_err)?)?,
        disabled_at: opt_from_ms(row.try_get("disabled_at").map_err(map_err)?)?,
    })
}

fn session_from_row(row: &PgRow) -> StoreResult<SessionRecord> {
    let hash: Option<Vec<u8>> = row.try_get("secret_hash").map_err(map_err)?;
    let secret_hash = hash.map(hash_from).transpose()?;
    let kind: String = row.try_get("kind").map_err(map_err)?;
    Ok(SessionRecord {
        id: row.try_get("id").map_err(map_err)?,
        secret_hash,
        user_id: row.try_get("user_id").map_err(map_err)?,
        kind: SessionKind::parse(&kind)
            .ok_or_else(|| StoreError::Other(format!("unknown session kind {kind:?}").into()))?,
        created_at: from_ms(row.try_get("created_at").map_err(map_err)?)?,
        last_seen_at: from_ms(row.try_get("last_seen_at").map_err(map_err)?)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(map_err)?)?,
        idle_expires_at: opt_from_ms(row.try_get("idle_expires_at").map_err(map_err)?)?,
        user_agent: row.try_get("user_agent").map_err(map_err)?,
        ip: row.try_get("ip").map_err(map_err)?,
        revoked_at: opt_from_ms(row.try_get("revoked_at").map_err(map_err)?)?,
    })
}

/// SQL condition: the session is live at `$1`.
const LIVE: &str =
    "revoked_at IS NULL AND expires_at > $1 AND (idle_expires_at IS NULL OR idle_expires_at > $1)";

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, username, username_key, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(user.username.to_ascii_lowercase())
        .bind(&user.password_hash)
        .bind(ms(user.created_at))
        .execute(&self.pool)
        .await
        .map_err(|e| match map_err(e) {
            StoreError::Conflict(_) => StoreError::Conflict("username_taken"),
            other => other,
        })?;
        Ok(())
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query("SELECT * FROM users WHERE username_key = $1")
            .bind(username.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn set_disabled(&self, user_id: &str, at: Option<OffsetDateTime>) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(at.map(ms))
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_user(&self, user_id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        sqlx::query("SELECT * FROM users ORDER BY created_at, username_key")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?
            .iter()
            .map(user_from_row)
            .collect()
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, secret_hash, user_id, kind, created_at, last_seen_at, expires_at, \
             idle_expires_at, user_agent, ip, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&s.id)
        .bind(s.secret_hash.map(|h| h.as_bytes().to_vec()))
        .bind(&s.user_id)
        .bind(s.kind.as_str())
        .bind(ms(s.created_at))
        .bind(ms(s.last_seen_at))
        .bind(ms(s.expires_at))
        .bind(s.idle_expires_at.map(ms))
        .bind(&s.user_agent)
        .bind(&s.ip)
        .bind(s.revoked_at.map(ms))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn session_by_secret(&self, hash: &SecretHash) -> StoreResult<Option<SessionRecord>> {
        sqlx::query("SELECT * FROM sessions WHERE secret_hash = $1")
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn session_by_id(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        sqlx::query("SELECT * FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn touch_session(
        &self,
        id: &str,
        last_seen_at: OffsetDateTime,
        idle_expires_at: Option<OffsetDateTime>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sessions SET last_seen_at = $1, idle_expires_at = COALESCE($2, idle_expires_at) WHERE id = $3",
        )
        .bind(ms(last_seen_at))
        .bind(idle_expires_at.map(ms))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<SessionRecord>> {
        sqlx::query(&format!(
            "SELECT * FROM sessions WHERE user_id = $2 AND {LIVE} ORDER BY created_at, id"
        ))
        .bind(ms(now))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?
        .iter()
        .map(session_from_row)
        .collect()
    }

    async fn revoke_session(
        &self,
        user_id: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let done = sqlx::query(&format!(
            "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND {LIVE}"
        ))
        .bind(ms(now))
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(&format!(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND id IS DISTINCT FROM $3 AND {LIVE} RETURNING id"
        ))
        .bind(ms(now))
        .bind(user_id)
        .bind(keep)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn count_live_sessions(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM sessions WHERE {LIVE}"))
            .bind(ms(now))
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(n.max(0) as u64)
    }

    async fn purge_sessions(&self, ended_before: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM sessions WHERE \
             COALESCE(revoked_at, LEAST(expires_at, COALESCE(idle_expires_at, expires_at))) < $1",
        )
        .bind(ms(ended_before))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl ThrottleStore for PostgresStore {
    async fn record_failure(
        &self,
        key: &str,
        now: OffsetDateTime,
        window: Duration,
    ) -> StoreResult<FailureWindow> {
        // One statement: start a window, count within it, or start over when
        // the old one is over. Concurrent failures each see their own count.
        let row = sqlx::query(
            "INSERT INTO login_failures (key, count, started_at) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET \
               count = CASE WHEN login_failures.started_at + $3 <= $2 THEN 1 ELSE login_failures.count + 1 END, \
               started_at = CASE WHEN login_failures.started_at + $3 <= $2 THEN $2 ELSE login_failures.started_at END \
             RETURNING count, started_at",
        )
        .bind(key)
        .bind(ms(now))
        .bind(window.whole_milliseconds() as i64)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        let count: i64 = row.try_get("count").map_err(map_err)?;
        Ok(FailureWindow {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            started_at: from_ms(row.try_get("started_at").map_err(map_err)?)?,
        })
    }

    async fn failures(
        &self,
        key: &str,
        now: OffsetDateTime,
        window: Duration,
    ) -> StoreResult<Option<FailureWindow>> {
        let row = sqlx::query(
            "SELECT count, started_at FROM login_failures WHERE key = $1 AND started_at + $2 > $3",
        )
        .bind(key)
        .bind(window.whole_milliseconds() as i64)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(|row| {
            let count: i64 = row.try_get("count").map_err(map_err)?;
            Ok(FailureWindow {
                count: u32::try_from(count).unwrap_or(u32::MAX),
                started_at: from_ms(row.try_get("started_at").map_err(map_err)?)?,
            })
        })
        .transpose()
    }

    async fn clear_failures(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn forgive_failure(&self, key: &str) -> StoreResult<()> {
        sqlx::query("UPDATE login_failures SET count = count - 1 WHERE key = $1 AND count > 0")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn purge_failures(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM login_failures WHERE started_at < $1")
            .bind(ms(before))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }
}

fn hash_from(bytes: Vec<u8>) -> StoreResult<SecretHash> {
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(SecretHash::from_bytes)
        .map_err(|e| StoreError::Other(Box::new(e)))
}

fn refresh_from_row(row: &PgRow) -> StoreResult<RefreshRecord> {
    Ok(RefreshRecord {
        hash: hash_from(row.try_get("hash").map_err(map_err)?)?,
        session_id: row.try_get("session_id").map_err(map_err)?,
        user_id: row.try_get("user_id").map_err(map_err)?,
        issued_at: from_ms(row.try_get("issued_at").map_err(map_err)?)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(map_err)?)?,
        spent_at: opt_from_ms(row.try_get("spent_at").map_err(map_err)?)?,
    })
}

fn key_from_row(row: &PgRow) -> StoreResult<StoredKey> {
    Ok(StoredKey {
        kid: row.try_get("kid").map_err(map_err)?,
        alg: row.try_get("alg").map_err(map_err)?,
        sealed_private: row.try_get("sealed_private").map_err(map_err)?,
        created_at: from_ms(row.try_get("created_at").map_err(map_err)?)?,
        superseded_at: opt_from_ms(row.try_get("superseded_at").map_err(map_err)?)?,
    })
}

#[async_trait]
impl RefreshStore for PostgresStore {
    async fn create_refresh(&self, t: &RefreshRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (hash, session_id, user_id, issued_at, expires_at, spent_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(t.hash.as_bytes().as_slice())
        .bind(&t.session_id)
        .bind(&t.user_id)
        .bind(ms(t.issued_at))
        .bind(ms(t.expires_at))
        .bind(t.spent_at.map(ms))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn spend_refresh(
        &self,
        presented: &SecretHash,
        successor: &SecretHash,
        now: OffsetDateTime,
        grace: Duration,
    ) -> StoreResult<SpendOutcome> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // The compare-and-set: only one transaction can flip spent_at from NULL.
        let won = sqlx::query(
            "UPDATE refresh_tokens SET spent_at = $1 \
             WHERE hash = $2 AND spent_at IS NULL AND expires_at > $1 \
             RETURNING session_id, user_id, expires_at",
        )
        .bind(ms(now))
        .bind(presented.as_bytes().as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(row) = won {
            let session_id: String = row.try_get("session_id").map_err(map_err)?;
            sqlx::query(
                "INSERT INTO refresh_tokens (hash, session_id, user_id, issued_at, expires_at, spent_at) \
                 VALUES ($1, $2, $3, $4, $5, NULL)",
            )
            .bind(successor.as_bytes().as_slice())
            .bind(&session_id)
            .bind(row.try_get::<String, _>("user_id").map_err(map_err)?)
            .bind(ms(now))
            .bind(row.try_get::<i64, _>("expires_at").map_err(map_err)?)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            return Ok(SpendOutcome::Rotated { session_id });
        }
        let row = sqlx::query(
            "SELECT session_id, spent_at, expires_at FROM refresh_tokens WHERE hash = $1",
        )
        .bind(presented.as_bytes().as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        let Some(row) = row else {
            return Ok(SpendOutcome::Unknown);
        };
        let session_id: String = row.try_get("session_id").map_err(map_err)?;
        let expires_at = from_ms(row.try_get("expires_at").map_err(map_err)?)?;
        let spent_at = opt_from_ms(row.try_get("spent_at").map_err(map_err)?)?;
        Ok(classify_unspendable(
            session_id, spent_at, expires_at, now, grace,
        ))
    }

    async fn refresh_by_hash(&self, hash: &SecretHash) -> StoreResult<Option<RefreshRecord>> {
        sqlx::query("SELECT * FROM refresh_tokens WHERE hash = $1")
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(refresh_from_row)
            .transpose()
    }

    async fn purge_refresh(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(ms(before))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn keys(&self) -> StoreResult<Vec<StoredKey>> {
        sqlx::query("SELECT * FROM signing_keys ORDER BY created_at DESC, kid")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?
            .iter()
            .map(key_from_row)
            .collect()
    }

    async fn ensure_current_key(&self, key: &StoredKey) -> StoreResult<StoredKey> {
        // The partial unique index allows one current key per algorithm, so
        // of several instances starting at once exactly one insert lands.
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, sealed_private, created_at, superseded_at) \
             VALUES ($1, $2, $3, $4, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.sealed_private)
        .bind(ms(key.created_at))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        let row =
            sqlx::query("SELECT * FROM signing_keys WHERE alg = $1 AND superseded_at IS NULL")
                .bind(&key.alg)
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
        key_from_row(&row)
    }

    async fn rotate_key(&self, key: &StoredKey) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(
            "UPDATE signing_keys SET superseded_at = $1 WHERE alg = $2 AND superseded_at IS NULL",
        )
        .bind(ms(key.created_at))
        .bind(&key.alg)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, sealed_private, created_at, superseded_at) VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.sealed_private)
        .bind(ms(key.created_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn server_secret(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        sqlx::query(
            "INSERT INTO server_secrets (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(candidate)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        sqlx::query_scalar("SELECT sealed FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }
}

impl PostgresStore {
    /// The `NOTIFY` channel of this store's change feed: one per schema, so
    /// that two installations in one database do not hear each other.
    fn feed_channel(&self) -> String {
        match &self.schema {
            Some(schema) => format!("tessera_changes_{schema}"),
            None => "tessera_changes".to_owned(),
        }
    }
}

/// How long the change feed waits before connecting again after a failure.
const FEED_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

#[async_trait]
impl ChangeFeed for PostgresStore {
    async fn publish(&self, notice: &Notice) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(self.feed_channel())
            .bind(notice.encode())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn listen(&self, on_event: &(dyn Fn(FeedEvent) + Send + Sync)) {
        let channel = self.feed_channel();
        // A connection of its own, outside the pool the requests use.
        let options = (*self.pool.connect_options()).clone();
        let mut up = false;
        loop {
            let single = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(std::time::Duration::from_secs(5))
                .connect_lazy_with(options.clone());
            let listening = async {
                let mut listener = sqlx::postgres::PgListener::connect_with(&single).await?;
                listener.listen(&channel).await?;
                Ok::<_, sqlx::Error>(listener)
            }
            .await;
            if let Ok(mut listener) = listening {
                on_event(FeedEvent::Up);
                up = true;
                // `Ok(None)`: the connection was lost (and notices with it).
                while let Ok(Some(n)) = listener.try_recv().await {
                    if let Some(notice) = Notice::decode(n.payload()) {
                        on_event(FeedEvent::Heard(notice));
                    }
                }
            }
            if up {
                on_event(FeedEvent::Down);
                up = false;
            }
            single.close().await;
            tokio::time::sleep(FEED_RETRY).await;
        }
    }
}

#[async_trait]
impl Ping for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["tessera", "t_1", "a"] {
            assert!(super::valid_schema(ok), "{ok}");
        }
        for bad in ["", "1a", "A", "a-b", "a;drop", "a b", &"a".repeat(64)] {
            assert!(!super::valid_schema(bad), "{bad}");
        }
    }
}
