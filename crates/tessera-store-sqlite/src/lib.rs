//! The embedded default backend: every tessera store in one SQLite file.
//!
//! Opened with write-ahead logging and `synchronous = FULL`, so a write that
//! tessera acknowledged survives a crash or power loss, and readers never wait
//! for the writer. Migrations embedded in the binary run on open (unless it is
//! opened read-only, which creates and writes nothing). Every
//! compare-and-set is one SQL statement (`INSERT … ON CONFLICT … RETURNING`,
//! `UPDATE … WHERE`), so concurrent requests cannot lose updates.
//!
//! Times are stored as Unix milliseconds.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use tessera_core::refresh::{SpendOutcome, classify_unspendable};
use tessera_core::throttle::FailureWindow;
use tessera_core::{SecretHash, SessionKind, SessionRecord};
use tessera_store::millis::{from_ms, opt_from_ms, to_ms as ms};
use tessera_store::{
    ChangeFeed, FeedEvent, KeyStore, Notice, Ping, RefreshRecord, RefreshStore, SessionStore,
    StoreError, StoreResult, StoredKey, ThrottleStore, UserRecord, UserStore,
};
use time::{Duration, OffsetDateTime};

/// Every store trait on one SQLite database.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// How [`SqliteStore::open_with`] treats the file: in
/// [`OpenMode::ReadOnly`] it is opened read-only.
pub use tessera_store::OpenMode;

/// Why the database could not be opened. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL is not a `sqlite:` URL sqlx understands.
    #[error("not a valid SQLite URL: {}", describe(.0))]
    BadUrl(sqlx::Error),
    /// The file could not be opened or created.
    #[error("{0}")]
    Open(CannotOpen),
    /// The file does not exist, and the mode does not create it.
    #[error("there is no database at {}", .0.display())]
    Missing(PathBuf),
    /// The file (or its directory) cannot be written.
    #[error("the database {} is read-only: {}", .path.display(), if *.by_url {
        "remove mode=ro from the URL"
    } else {
        "make the file, and the directory it is in, writable by the user tessera runs as"
    })]
    ReadOnly {
        /// The file.
        path: PathBuf,
        /// Whether the URL asked for it (`?mode=ro`).
        by_url: bool,
    },
    /// The file is an SQLite database without tessera's tables.
    #[error("{} is not a tessera database (it has none of tessera's tables)", .0.display())]
    NotTessera(PathBuf),
    /// The file was made by an older tessera and is not migrated yet (only
    /// [`OpenMode::ReadOnly`], which does not migrate).
    #[error(
        "the database {} was made by an older tessera and is not migrated yet: \
         start `tessera serve` on it once, which migrates it",
        .0.display()
    )]
    Outdated(PathBuf),
    /// A migration failed.
    #[error("cannot migrate the database {}: {}", .path.display(), describe_migrate(.error))]
    Migrate {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: sqlx::migrate::MigrateError,
    },
}

/// The file could not be opened, with the likely reason.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the database {}: {reason}", .path.display())]
pub struct CannotOpen {
    /// The file.
    pub path: PathBuf,
    /// Why, in words, with the fix where there is one.
    pub reason: String,
    /// What SQLite or the operating system said.
    pub error: sqlx::Error,
}

/// The migrations in `migrations/`, embedded in the binary.
const MIGRATIONS: tessera_store::sqlx_migrations::Embedded =
    tessera_store::sqlx_migrations::Embedded(&[
        (1, "initial", include_str!("../migrations/0001_initial.sql")),
        (2, "tokens", include_str!("../migrations/0002_tokens.sql")),
        (
            3,
            "disabled_users",
            include_str!("../migrations/0003_disabled_users.sql"),
        ),
        (4, "changes", include_str!("../migrations/0004_changes.sql")),
    ]);

/// Makes the database file readable and writable by its owner only (`0600`):
/// creates it so when it does not exist yet (SQLite gives the `-wal` and
/// `-shm` files the database's mode), and narrows the files of a database an
/// earlier version created with the umask's mode. Best effort: a file that
/// cannot be created or changed here is left to SQLite, which reports what
/// matters.
fn owner_only(path: &std::path::Path) {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        if let Ok(meta) = std::fs::metadata(&file)
            && meta.permissions().mode() & 0o077 != 0
        {
            let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// SQLite's primary result code of a database error (`SQLITE_READONLY` is 8).
fn sqlite_code(e: &sqlx::Error) -> Option<i64> {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .map(|c| c & 0xff),
        _ => None,
    }
}

/// What went wrong, once (sqlx repeats SQLite's message in its source).
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLite error {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Configuration(c) => c.to_string(),
        other => other.to_string(),
    }
}

fn describe_migrate(e: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::VersionMissing(v) => format!(
            "it was migrated by a newer tessera (migration {v} is unknown to this one); \
             run that version, or restore a backup made before it"
        ),
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => describe(e),
        other => other.to_string(),
    }
}

/// Why SQLite could not open `path`, from its result code or the file system.
fn open_reason(path: &Path, e: &sqlx::Error) -> String {
    match sqlite_code(e) {
        Some(26) => return "it is not an SQLite database".to_owned(),
        Some(11) => return format!("the file is damaged: {}", describe(e)),
        Some(13) => return "the disk is full".to_owned(),
        Some(5 | 6) => {
            return "another process kept it locked for more than 5 s".to_owned();
        }
        _ => {}
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.is_dir() {
        return "it is a directory; name a file in it, such as tessera.db".to_owned();
    }
    match std::fs::metadata(dir) {
        Err(io) if io.kind() == std::io::ErrorKind::NotFound => {
            return format!(
                "the directory {} does not exist; create it first",
                dir.display()
            );
        }
        Ok(m) if !m.is_dir() => return format!("{} is not a directory", dir.display()),
        _ => {}
    }
    match std::fs::File::open(path) {
        Err(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            "permission denied: make it readable and writable by the user tessera runs as"
                .to_owned()
        }
        Err(io) if io.kind() == std::io::ErrorKind::NotFound => format!(
            "cannot create it in {} ({}); is the directory writable by the user tessera runs as?",
            dir.display(),
            describe(e)
        ),
        _ => describe(e),
    }
}

fn in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl SqliteStore {
    /// The file a `sqlite:` URL names, as sqlx reads it; `None` for an
    /// in-memory database or a URL that is not valid.
    pub fn file_of(url: &str) -> Option<PathBuf> {
        if in_memory(url) {
            return None;
        }
        let options = SqliteConnectOptions::from_str(url).ok()?;
        Some(options.get_filename().to_path_buf())
    }

    /// Opens (creating if needed) the database at `url` (`sqlite://PATH`,
    /// `sqlite:PATH` or `sqlite::memory:`) and applies pending migrations:
    /// [`OpenMode::Create`].
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        Self::open_with(url, OpenMode::Create).await
    }

    /// Opens the database at `url` as `mode` says. An in-memory database is
    /// always created and migrated (nothing of it reaches the disk).
    pub async fn open_with(url: &str, mode: OpenMode) -> Result<Self, OpenError> {
        let options = SqliteConnectOptions::from_str(url).map_err(OpenError::BadUrl)?;
        let memory = in_memory(url);
        let mode = if memory { OpenMode::Create } else { mode };
        let path = std::path::absolute(options.get_filename())
            .unwrap_or_else(|_| options.get_filename().to_path_buf());
        let by_url = url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|p| p == "mode=ro"));
        let failed = |e: sqlx::Error| {
            if sqlite_code(&e) == Some(8) {
                OpenError::ReadOnly {
                    path: path.clone(),
                    by_url,
                }
            } else {
                OpenError::Open(CannotOpen {
                    path: path.clone(),
                    reason: open_reason(&path, &e),
                    error: e,
                })
            }
        };
        if mode != OpenMode::Create
            && let Err(e) = std::fs::metadata(&path)
            && e.kind() == std::io::ErrorKind::NotFound
        {
            return Err(OpenError::Missing(path));
        }
        if mode == OpenMode::Create && !memory && path.exists() && is_foreign(&options).await {
            // Another program's database: tessera neither adds its tables
            // nor switches the journal mode (nor, in `serve`, writes a key
            // file beside it).
            return Err(OpenError::NotTessera(path));
        }
        if mode != OpenMode::ReadOnly && !memory {
            owner_only(&path);
        }
        let options = options
            .busy_timeout(StdDuration::from_secs(5))
            .foreign_keys(true);
        let options = match mode {
            OpenMode::Create | OpenMode::Existing => options
                .create_if_missing(mode == OpenMode::Create)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full),
            OpenMode::ReadOnly => options.create_if_missing(false).read_only(true),
        };
        // An in-memory database exists per connection: keep exactly one.
        let max = if memory { 1 } else { 8 };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .acquire_timeout(StdDuration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(failed)?;
        if mode != OpenMode::Create {
            let applied = match applied_migrations(&pool).await {
                Ok(Some(applied)) => applied,
                Ok(None) => return Err(OpenError::NotTessera(path)),
                Err(e) => return Err(failed(e)),
            };
            if mode == OpenMode::ReadOnly {
                return if MIGRATIONS.pending(&applied) {
                    Err(OpenError::Outdated(path))
                } else {
                    Ok(Self { pool })
                };
            }
        }
        // SQLite opens a file it may not write read-only without a word, and
        // the first write fails much later: try one now, and roll it back.
        probe_writable(&pool).await.map_err(failed)?;
        let migrator = sqlx::migrate::Migrator::new(MIGRATIONS)
            .await
            .map_err(|error| OpenError::Migrate {
                path: path.clone(),
                error,
            })?;
        migrator.run(&pool).await.map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(e)
            | sqlx::migrate::MigrateError::ExecuteMigration(e, _)
                if sqlite_code(&e) == Some(8) =>
            {
                OpenError::ReadOnly {
                    path: path.clone(),
                    by_url,
                }
            }
            error => OpenError::Migrate {
                path: path.clone(),
                error,
            },
        })?;
        Ok(Self { pool })
    }

    /// Closes every connection, waiting for queries in flight.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The versions of the migrations applied so far, or `None` when the
/// database has no migration table (it is not tessera's).
async fn applied_migrations(pool: &SqlitePool) -> Result<Option<Vec<i64>>, sqlx::Error> {
    let exists: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let versions = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await?;
    Ok(Some(versions))
}

/// Whether an existing file is another program's database: it has tables
/// and none of tessera's migrations. Looked at read-only; a file that cannot
/// be opened that way is left to the normal open, which says why.
async fn is_foreign(options: &SqliteConnectOptions) -> bool {
    let probe = options.clone().read_only(true).create_if_missing(false);
    let Ok(pool) = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(probe)
        .await
    else {
        return false;
    };
    let tables: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1")
            .fetch_optional(&pool)
            .await;
    let foreign =
        matches!(tables, Ok(Some(_))) && matches!(applied_migrations(&pool).await, Ok(None));
    pool.close().await;
    foreign
}

/// Fails with `SQLITE_READONLY` when the database cannot be written; changes
/// nothing (the write is rolled back).
async fn probe_writable(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(&format!("PRAGMA user_version = {version}"))
        .execute(&mut *tx)
        .await?;
    tx.rollback().await
}

fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(ref db) if db.is_unique_violation() => StoreError::Conflict("unique"),
        sqlx::Error::Database(ref db)
            // SQLITE_BUSY and SQLITE_LOCKED (and their extended codes): the
            // database did not answer within the busy timeout.
            if db.code().is_some_and(|c| {
                let c = c.parse::<i64>().unwrap_or(0) & 0xff;
                c == 5 || c == 6
            }) =>
        {
            StoreError::Unavailable(Box::new(e))
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(e))
        }
        other => StoreError::Other(Box::new(other)),
    }
}

fn user_from_row(row: &SqliteRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: row.try_get("id").map_err(map_err)?,
        username: row.try_get("username").map_err(map_err)?,
        password_hash: row.try_get("password_hash").map_err(map_err)?,
        created_at: from_ms(row.try_get("created_at").map_err(map_err)?)?,
        disabled_at: opt_from_ms(row.try_get("disabled_at").map_err(map_err)?)?,
    })
}

fn session_from_row(row: &SqliteRow) -> StoreResult<SessionRecord> {
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

/// SQL condition: the session is live at `?now` (bound as the named position).
const LIVE: &str =
    "revoked_at IS NULL AND expires_at > ?1 AND (idle_expires_at IS NULL OR idle_expires_at > ?1)";

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, username, username_key, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
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
        sqlx::query("SELECT * FROM users WHERE username_key = ?")
            .bind(username.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
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
        let done = sqlx::query("UPDATE users SET disabled_at = ? WHERE id = ?")
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
        let done = sqlx::query("DELETE FROM users WHERE id = ?")
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
impl SessionStore for SqliteStore {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, secret_hash, user_id, kind, created_at, last_seen_at, expires_at, \
             idle_expires_at, user_agent, ip, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        sqlx::query("SELECT * FROM sessions WHERE secret_hash = ?")
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn session_by_id(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        sqlx::query("SELECT * FROM sessions WHERE id = ?")
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
            "UPDATE sessions SET last_seen_at = ?, idle_expires_at = COALESCE(?, idle_expires_at) WHERE id = ?",
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
            "SELECT * FROM sessions WHERE user_id = ?2 AND {LIVE} ORDER BY created_at, rowid"
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
            "UPDATE sessions SET revoked_at = ?1 WHERE id = ?2 AND user_id = ?3 AND {LIVE}"
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
            "UPDATE sessions SET revoked_at = ?1 WHERE user_id = ?2 AND id IS NOT ?3 AND {LIVE} RETURNING id"
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
             COALESCE(revoked_at, MIN(expires_at, COALESCE(idle_expires_at, expires_at))) < ?",
        )
        .bind(ms(ended_before))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl ThrottleStore for SqliteStore {
    async fn record_failure(
        &self,
        key: &str,
        now: OffsetDateTime,
        window: Duration,
    ) -> StoreResult<FailureWindow> {
        // One statement: start a window, count within it, or start over when
        // the old one is over. Concurrent failures each see their own count.
        let row = sqlx::query(
            "INSERT INTO login_failures (key, count, started_at) VALUES (?1, 1, ?2) \
             ON CONFLICT (key) DO UPDATE SET \
               count = CASE WHEN started_at + ?3 <= ?2 THEN 1 ELSE count + 1 END, \
               started_at = CASE WHEN started_at + ?3 <= ?2 THEN ?2 ELSE started_at END \
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
            "SELECT count, started_at FROM login_failures WHERE key = ? AND started_at + ? > ?",
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
        sqlx::query("DELETE FROM login_failures WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn forgive_failure(&self, key: &str) -> StoreResult<()> {
        sqlx::query("UPDATE login_failures SET count = count - 1 WHERE key = ? AND count > 0")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn purge_failures(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM login_failures WHERE started_at < ?")
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

fn refresh_from_row(row: &SqliteRow) -> StoreResult<RefreshRecord> {
    Ok(RefreshRecord {
        hash: hash_from(row.try_get("hash").map_err(map_err)?)?,
        session_id: row.try_get("session_id").map_err(map_err)?,
        user_id: row.try_get("user_id").map_err(map_err)?,
        issued_at: from_ms(row.try_get("issued_at").map_err(map_err)?)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(map_err)?)?,
        spent_at: opt_from_ms(row.try_get("spent_at").map_err(map_err)?)?,
    })
}

fn key_from_row(row: &SqliteRow) -> StoreResult<StoredKey> {
    Ok(StoredKey {
        kid: row.try_get("kid").map_err(map_err)?,
        alg: row.try_get("alg").map_err(map_err)?,
        sealed_private: row.try_get("sealed_private").map_err(map_err)?,
        created_at: from_ms(row.try_get("created_at").map_err(map_err)?)?,
        superseded_at: opt_from_ms(row.try_get("superseded_at").map_err(map_err)?)?,
    })
}

#[async_trait]
impl RefreshStore for SqliteStore {
    async fn create_refresh(&self, t: &RefreshRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (hash, session_id, user_id, issued_at, expires_at, spent_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
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
            "UPDATE refresh_tokens SET spent_at = ?1 \
             WHERE hash = ?2 AND spent_at IS NULL AND expires_at > ?1 \
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
                 VALUES (?, ?, ?, ?, ?, NULL)",
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
            "SELECT session_id, spent_at, expires_at FROM refresh_tokens WHERE hash = ?",
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
        sqlx::query("SELECT * FROM refresh_tokens WHERE hash = ?")
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(refresh_from_row)
            .transpose()
    }

    async fn purge_refresh(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < ?")
            .bind(ms(before))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
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
             VALUES (?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.sealed_private)
        .bind(ms(key.created_at))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        let row = sqlx::query("SELECT * FROM signing_keys WHERE alg = ? AND superseded_at IS NULL")
            .bind(&key.alg)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        key_from_row(&row)
    }

    async fn rotate_key(&self, key: &StoredKey) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(
            "UPDATE signing_keys SET superseded_at = ? WHERE alg = ? AND superseded_at IS NULL",
        )
        .bind(ms(key.created_at))
        .bind(&key.alg)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, sealed_private, created_at, superseded_at) VALUES (?, ?, ?, ?, NULL)",
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
            "INSERT INTO server_secrets (name, sealed) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(candidate)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        sqlx::query_scalar("SELECT sealed FROM server_secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }
}

#[async_trait]
impl Ping for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

/// How often every process reads the `changes` table: the bound on how
/// late a revocation made by another process reaches this one's cache.
pub const FEED_POLL: StdDuration = StdDuration::from_millis(50);

/// How long rows stay in the `changes` table: long enough for every
/// process to read them; one that could not read for longer is down and
/// trusts nothing it cached.
const FEED_KEEP_MS: i64 = 60 * 1000;

#[async_trait]
impl ChangeFeed for SqliteStore {
    async fn publish(&self, notice: &Notice) -> StoreResult<()> {
        sqlx::query("INSERT INTO changes (line, at_ms) VALUES (?, ?)")
            .bind(notice.encode())
            .bind(notice.at_ms)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        sqlx::query("DELETE FROM changes WHERE at_ms < ?")
            .bind(notice.at_ms - FEED_KEEP_MS)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn listen(&self, on_event: &(dyn Fn(FeedEvent) + Send + Sync)) {
        // `None` while down: the position is read again when the file answers.
        let mut last: Option<i64> = None;
        let mut tick = tokio::time::interval(FEED_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match last {
                None => {
                    let top = sqlx::query_scalar::<_, Option<i64>>("SELECT max(seq) FROM changes")
                        .fetch_one(&self.pool)
                        .await;
                    match top {
                        Ok(top) => {
                            last = Some(top.unwrap_or(0));
                            on_event(FeedEvent::Up);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "change feed: cannot read the changes table")
                        }
                    }
                }
                Some(after) => {
                    let rows = sqlx::query(
                        "SELECT seq, line FROM changes WHERE seq > ? ORDER BY seq LIMIT 1000",
                    )
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await;
                    match rows {
                        Ok(rows) => {
                            for row in rows {
                                last = Some(row.get("seq"));
                                if let Some(notice) = Notice::decode(row.get("line")) {
                                    on_event(FeedEvent::Heard(notice));
                                }
                            }
                        }
                        Err(_) => {
                            last = None;
                            on_event(FeedEvent::Down);
                        }
                    }
                }
            }
        }
    }
}
