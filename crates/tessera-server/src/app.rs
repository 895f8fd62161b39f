//! The application state every handler shares, and the one place where the
//! settings choose the store backends.

use std::sync::Arc;

use anyhow::Context as _;
use axum::http::{HeaderMap, HeaderValue};
use metrics_exporter_prometheus::PrometheusHandle;
use tessera_core::SessionPolicy;
use tessera_core::device::DeviceKey;
use tessera_core::jwt::TokenRules;

use tessera_store::{
    ChangeFeed, KeyStore, OpenMode, Ping, RefreshStore, SessionStore, ThrottleStore, UserStore,
};
use tessera_store_postgres::{OpenError as PostgresOpenError, PoolOptions, PostgresStore};
use tessera_store_redis::RedisStore;
use tessera_store_sqlite::{OpenError as SqliteOpenError, SqliteStore};

use crate::accounts::{Accounts, TokenGrant, TokenSettings, Tokens};
use crate::auth_cache::{Announced, AuthCache};
use crate::cookies::CookieConfig;
use crate::keys::Keys;
use crate::settings::{DatabaseUrl, Settings};
use crate::token_cache::VerifiedCache;

/// The stores, behind their traits.
#[derive(Clone)]
pub struct Stores {
    /// Accounts.
    pub users: Arc<dyn UserStore>,
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Accounts, read from the store even in a server with a cache: for the
    /// checks that must see another instance's write at once (a login
    /// racing a password change). Writes are announced as through `users`.
    pub users_uncached: Arc<dyn UserStore>,
    /// Sessions, read from the store even in a server with a cache (the
    /// refresh of a token session).
    pub sessions_uncached: Arc<dyn SessionStore>,
    /// Login-failure counters.
    pub throttle: Arc<dyn ThrottleStore>,
    /// Refresh tokens.
    pub refresh: Arc<dyn RefreshStore>,
    /// Signing keys and server secrets.
    pub keys: Arc<dyn KeyStore>,
    /// Every backend, named, for `/readyz`.
    pub health: Vec<(&'static str, Arc<dyn Ping>)>,
    /// The feed that tells every process sharing these stores what changed:
    /// Redis's if Redis is set, else the database's.
    pub feed: Arc<dyn ChangeFeed>,
}

/// Why the stores could not be opened; `main` turns it into exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreSetupError(pub String);

fn database_error(problem: impl std::fmt::Display) -> StoreSetupError {
    StoreSetupError(format!(
        "invalid setting database (--database / TESSERA_DATABASE_URL): {problem}"
    ))
}

/// Longest wait for PostgreSQL to answer while opening (its first
/// connection has no time limit of its own).
const POSTGRES_OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The database alone: users and keys always live there. (Sessions,
/// refresh tokens and failure counters may live in Redis; [`Stores`] has
/// them.)
pub struct Database {
    /// Accounts.
    pub users: Arc<dyn UserStore>,
    /// Signing keys and server secrets.
    pub keys: Arc<dyn KeyStore>,
    /// Which database, for messages (see [`Settings::database_shown`]).
    pub shown: String,
    /// Whether opening it created it (a new SQLite file).
    pub created: bool,
    all: Stores,
}

impl Database {
    /// Opens the database the settings name, as `access` allows. An error
    /// names the database, what is wrong and what to do.
    pub async fn open(settings: &Settings, access: OpenMode) -> Result<Self, StoreSetupError> {
        let shown = settings.database_shown();
        let (all, created) = match &settings.database {
            DatabaseUrl::Sqlite(url) => {
                let existed = SqliteStore::file_of(url).is_none_or(|path| path.exists());
                let store = SqliteStore::open_with(url, access)
                    .await
                    .map_err(|e| sqlite_error(e, &shown))?;
                (Stores::all_in(Arc::new(store)), !existed)
            }
            DatabaseUrl::Postgres(url) => {
                let pool = PoolOptions {
                    max_connections: settings.database_max_connections,
                    ..PoolOptions::default()
                };
                let schema = settings.database_schema.as_deref();
                let opened = tokio::time::timeout(
                    POSTGRES_OPEN_TIMEOUT,
                    PostgresStore::open_with(url, schema, pool, access),
                )
                .await
                .map_err(|_| {
                    database_error(format!(
                        "{shown}: no answer within {} s: is the host reachable, and PostgreSQL \
                         listening on that port?",
                        POSTGRES_OPEN_TIMEOUT.as_secs()
                    ))
                })?;
                let store = opened.map_err(|e| postgres_error(e, &shown))?;
                (Stores::all_in(Arc::new(store)), false)
            }
        };
        if created {
            tracing::info!(database = %shown, "created a new database");
        }
        Ok(Self {
            users: all.users.clone(),
            keys: all.keys.clone(),
            shown,
            created,
            all,
        })
    }

    /// Every store: this database's, with sessions, refresh tokens and
    /// failure counters in Redis if the settings name one; every write that
    /// can end a credential announced on the feed (see
    /// [`Stores::announced`]), so that running servers hear of it.
    pub async fn with_redis(&self, settings: &Settings) -> Result<Stores, StoreSetupError> {
        Ok(self.with_redis_unannounced(settings).await?.announced(None))
    }

    async fn with_redis_unannounced(&self, settings: &Settings) -> Result<Stores, StoreSetupError> {
        let mut stores = self.all.clone();
        if let Some(url) = &settings.redis {
            let redis = Arc::new(
                RedisStore::open(url, &settings.redis_prefix)
                    .await
                    .map_err(|e| {
                        StoreSetupError(format!(
                            "invalid setting redis (--redis / TESSERA_REDIS_URL): {}: {}",
                            crate::settings::redact_url(url),
                            crate::error::error_chain(&e)
                        ))
                    })?,
            );
            stores.sessions = redis.clone();
            stores.sessions_uncached = redis.clone();
            stores.refresh = redis.clone();
            stores.throttle = redis.clone();
            stores.feed = redis.clone();
            stores.health.push(("redis", redis));
        }
        Ok(stores)
    }
}

fn sqlite_error(e: SqliteOpenError, shown: &str) -> StoreSetupError {
    match e {
        SqliteOpenError::Missing(_) => database_error(format!(
            "there is no database at {shown}, and this command creates none: run it in the \
             directory where the server keeps its tessera.db, or name the database with \
             --database sqlite://PATH (or --config FILE)"
        )),
        SqliteOpenError::NotTessera(_) => database_error(format!(
            "{e}: is --database pointing at the file the server uses?"
        )),
        e => database_error(e),
    }
}

fn postgres_error(e: PostgresOpenError, shown: &str) -> StoreSetupError {
    match e {
        PostgresOpenError::BadSchema => StoreSetupError(format!(
            "invalid setting database_schema (--database-schema / TESSERA_DATABASE_SCHEMA): {e}"
        )),
        PostgresOpenError::NoSchema(_) | PostgresOpenError::NotTessera(_) => {
            database_error(format!(
                "{shown}: {e}, and this command creates nothing: `tessera serve` creates the \
                 schema and tables on its first start; or is --database-schema \
                 (TESSERA_DATABASE_SCHEMA) wrong?"
            ))
        }
        e => database_error(format!("{shown}: {e}")),
    }
}

impl Stores {
    /// The same stores, each call timed into
    /// `tessera_store_operation_duration_seconds` under its backend's name
    /// (`sqlite`, `postgres`, `redis`). The server's stores are; a command's
    /// are not.
    pub fn timed(self, settings: &Settings) -> Self {
        use crate::store_metrics as m;
        let database = match settings.database {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        };
        let ephemeral = if settings.redis.is_some() {
            "redis"
        } else {
            database
        };
        Self {
            users: m::users(self.users, database),
            sessions: m::sessions(self.sessions, ephemeral),
            users_uncached: m::users(self.users_uncached, database),
            sessions_uncached: m::sessions(self.sessions_uncached, ephemeral),
            throttle: m::throttle(self.throttle, ephemeral),
            refresh: m::refresh(self.refresh, ephemeral),
            keys: m::keys(self.keys, database),
            feed: self.feed,
            health: self
                .health
                .into_iter()
                .map(|(name, store)| {
                    let backend = if name == "redis" { "redis" } else { database };
                    (name, m::ping(store, backend))
                })
                .collect(),
        }
    }

    /// What `serve` runs on: the backends the settings name, the database
    /// created and migrated if needed, each call timed when `timed` (metrics
    /// are served), and the sessions and users that authenticate requests
    /// served from `cache` when there is one. This and
    /// [`Database::open`] are the only places that know which concrete
    /// stores exist: the database (SQLite or PostgreSQL) holds users and
    /// keys, and sessions, refresh tokens and failure counters unless Redis
    /// is configured for them.
    pub async fn open_for_serving(
        settings: &Settings,
        timed: bool,
        cache: Option<Arc<AuthCache>>,
    ) -> Result<Self, StoreSetupError> {
        let stores = Database::open(settings, OpenMode::Create)
            .await?
            .with_redis_unannounced(settings)
            .await?;
        let stores = if timed {
            stores.timed(settings)
        } else {
            stores
        };
        Ok(stores.announced(cache))
    }

    /// The same stores, with the user and session writes that can end a
    /// credential announced on [`Stores::feed`] before they return, and
    /// with the lookups that authenticate a request served from `cache`
    /// if there is one (`crate::auth_cache`). Every command's stores are
    /// announced (so a running server hears of `tessera user disable`);
    /// the server's also cache.
    pub fn announced(self, cache: Option<Arc<AuthCache>>) -> Self {
        let origin: Arc<str> = match &cache {
            Some(cache) => Arc::from(cache.origin()),
            None => Arc::from(crate::auth_cache::origin()),
        };
        let users = |cached_reads| -> Arc<dyn UserStore> {
            Arc::new(Announced::new(
                self.users.clone(),
                cache.clone(),
                cached_reads,
                self.feed.clone(),
                origin.clone(),
            ))
        };
        let sessions = |cached_reads| -> Arc<dyn SessionStore> {
            Arc::new(Announced::new(
                self.sessions.clone(),
                cache.clone(),
                cached_reads,
                self.feed.clone(),
                origin.clone(),
            ))
        };
        Self {
            users: users(true),
            sessions: sessions(true),
            users_uncached: users(false),
            sessions_uncached: sessions(false),
            ..self
        }
    }

    /// Opens the database as `access` allows, then Redis, if set.
    pub async fn open_with(settings: &Settings, access: OpenMode) -> Result<Self, StoreSetupError> {
        Database::open(settings, access)
            .await?
            .with_redis(settings)
            .await
    }

    /// Every store in one backend (a database).
    fn all_in<S>(store: Arc<S>) -> Self
    where
        S: UserStore
            + KeyStore
            + SessionStore
            + RefreshStore
            + ThrottleStore
            + Ping
            + ChangeFeed
            + 'static,
    {
        Self {
            feed: store.clone(),
            users_uncached: store.clone(),
            sessions_uncached: store.clone(),
            users: store.clone(),
            sessions: store.clone(),
            throttle: store.clone(),
            refresh: store.clone(),
            keys: store.clone(),
            health: vec![("database", store)],
        }
    }
}

/// Everything a request handler may need.
pub struct App {
    /// The resolved settings.
    pub settings: Settings,
    /// The stores.
    pub stores: Stores,
    /// Session lifetimes.
    pub policy: SessionPolicy,
    /// Cookie names and flags.
    pub cookies: CookieConfig,
    /// Renders `/metrics`; `None` when another recorder was installed first.
    pub metrics: Option<PrometheusHandle>,
    /// Signing keys.
    pub keys: Arc<Keys>,
    /// What access tokens must satisfy.
    pub rules: TokenRules,
    /// Access tokens whose signature was already verified.
    pub verified: VerifiedCache,
    /// The operations on accounts and sessions: every write goes through
    /// them (or through [`App::tokens`]).
    pub accounts: Accounts,
    /// The token operations.
    pub tokens: Tokens,
    /// Signs and recognises device cookies.
    pub devices: DeviceKey,
}

/// The shared state type of the router.
pub type AppState = Arc<App>;

impl App {
    /// Builds the state from settings and opened stores.
    pub fn new(
        settings: Settings,
        stores: Stores,
        keys: Keys,
        metrics: Option<PrometheusHandle>,
    ) -> anyhow::Result<AppState> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let accounts = Accounts::for_settings(stores.clone(), &settings, cores)
            .context("setting up password hashing")?;
        let policy = accounts.rules().policy;
        let rules = TokenRules {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            alg: settings.jwt_alg,
            access_ttl: settings.access_ttl,
            leeway: settings.leeway,
        };
        let devices = DeviceKey::derive(keys.refresh_secret());
        let keys = Arc::new(keys);
        let tokens = Tokens::new(
            accounts.clone(),
            keys.clone(),
            TokenSettings {
                rules: rules.clone(),
                refresh_ttl: settings.refresh_ttl,
                refresh_grace: settings.refresh_grace,
                session_ttl: settings.session_ttl,
            },
        );
        Ok(Arc::new(Self {
            policy,
            cookies: CookieConfig::new(settings.insecure_dev_cookies),
            rules,
            verified: VerifiedCache::default(),
            keys,
            settings,
            stores,
            metrics,
            accounts,
            tokens,
            devices,
        }))
    }

    /// The device id of a device cookie in `headers` that this server issued
    /// for the account `username` (see `tessera_core::device`), if any.
    pub fn known_device(&self, headers: &HeaderMap, username: &str) -> Option<String> {
        crate::cookies::find(headers, self.cookies.device_name())
            .take(4)
            .find_map(|token| self.devices.recognise(username, token))
    }

    /// `Set-Cookie` values that hand `grant`'s access and refresh tokens to
    /// the browser (cookie delivery), each living as long as its token.
    pub fn token_cookies(&self, grant: &TokenGrant) -> [HeaderValue; 2] {
        [
            self.cookies.set_access(
                &grant.access_token,
                time::Duration::seconds(grant.expires_in),
            ),
            self.cookies.set_refresh(
                grant.refresh_token.expose(),
                time::Duration::seconds(grant.refresh_expires_in),
            ),
        ]
    }

    /// `Set-Cookie` with a fresh device token for the account `username`,
    /// for the answer to a successful login.
    pub fn device_cookie(&self, username: &str) -> HeaderValue {
        self.cookies
            .set_device(&self.devices.issue(username, &mut rand_core::OsRng))
    }
}
