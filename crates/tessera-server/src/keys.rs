//! Signing keys at run time: the master key, the key ring, its reload.
//!
//! Keys live in the database, their private parts sealed under the master key
//! (`--master-key`, or with SQLite a `0600` file `tessera.key` beside the
//! database, created only for a database that holds no keys yet: a database
//! whose key file is missing is an error naming both, never a new key). On start the server makes sure a current key of the configured
//! algorithm exists (one insert wins across instances), then loads the ring:
//! the current key, which signs, plus every key superseded less than
//! `access_ttl + leeway + key_refresh` ago, which still verifies and stays in
//! the JWKS until the last token it signed has expired (the extra
//! `key_refresh` covers an instance that signed with it before reloading). A background task reloads the ring
//! every `--key-refresh` (10 s by default), so `tessera keys rotate` reaches a
//! running server within that bound, without a restart.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use rand_core::OsRng;
use tessera_core::Refusal;
use tessera_core::jwt::{Alg, KeyMaterial, KeyRing, TokenRules, Verified};
use tessera_core::sealed::MasterKey;
use tessera_store::millis::to_ms;
use tessera_store::{KeyStore, StoredKey};
use time::{Duration, OffsetDateTime};

use crate::settings::{DatabaseUrl, SettingError, Settings};

/// Name of the refresh-token HMAC secret in the server-secret store.
const REFRESH_SECRET: &str = "refresh-token-hmac";

fn master_key_error(problem: impl Into<String>) -> SettingError {
    SettingError {
        name: "master_key",
        flag: "master-key",
        env: "TESSERA_MASTER_KEY",
        problem: problem.into(),
    }
}

/// The file that holds the master key of an SQLite database without
/// `--master-key`: `tessera.key` in the database's directory.
fn key_file_for(sqlite_url: &str) -> Option<PathBuf> {
    let path = tessera_store_sqlite::SqliteStore::file_of(sqlite_url)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Some(dir.join("tessera.key"))
}

/// Where the master key comes from.
enum KeySource {
    /// `--master-key` / `TESSERA_MASTER_KEY` (or the file's `master_key`).
    Setting(MasterKey),
    /// The key file beside an SQLite database.
    File(PathBuf),
    /// An in-memory database: a key that lives as long as the process.
    Throwaway,
}

fn key_source(settings: &Settings) -> Result<KeySource, SettingError> {
    if let Some(hex) = &settings.master_key {
        return MasterKey::from_hex(hex.expose())
            .map(KeySource::Setting)
            .map_err(|e| master_key_error(e.to_string()));
    }
    let url = match &settings.database {
        DatabaseUrl::Sqlite(url) => url,
        DatabaseUrl::Postgres(_) => {
            return Err(master_key_error(
                "required with PostgreSQL, and the same on every instance: \
                 make one with `openssl rand -hex 32` and set it in TESSERA_MASTER_KEY",
            ));
        }
    };
    Ok(match key_file_for(url) {
        Some(path) => KeySource::File(std::path::absolute(&path).unwrap_or(path)),
        None => KeySource::Throwaway,
    })
}

fn throwaway() -> Result<MasterKey, SettingError> {
    tracing::warn!(
        "in-memory database without --master-key: keys are sealed with a throwaway master key"
    );
    MasterKey::from_hex(&MasterKey::generate_hex(&mut OsRng))
        .map_err(|e| master_key_error(e.to_string()))
}

/// Reads the key file; `None` when it does not exist.
fn read_key_file(path: &Path) -> Result<Option<MasterKey>, SettingError> {
    let shown = path.display();
    match std::fs::read_to_string(path) {
        Ok(hex) => MasterKey::from_hex(&hex)
            .map(Some)
            .map_err(|e| master_key_error(format!("{shown}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(master_key_error(format!("cannot read {shown}: {e}"))),
    }
}

/// Finds the master key and creates nothing: the setting, else (SQLite
/// only) the key file, which must exist. For commands that only read.
pub fn master_key(settings: &Settings) -> Result<MasterKey, SettingError> {
    match key_source(settings)? {
        KeySource::Setting(key) => Ok(key),
        KeySource::Throwaway => throwaway(),
        KeySource::File(path) => read_key_file(&path)?.ok_or_else(|| {
            master_key_error(format!(
                "there is no master key: {} does not exist beside the database {}, and \
                 without it the signing keys in the database cannot be opened; restore \
                 tessera.key from the backup kept with the database, or give the key with \
                 --master-key",
                path.display(),
                settings.database_shown()
            ))
        }),
    }
}

/// Finds the master key for a command that writes keys (`serve`, `keys
/// rotate`): as [`master_key`], but a missing key file is created (mode
/// `0600`) when the database holds no keys yet. A database that holds keys
/// without its key file is an error naming both: a new key could not open
/// them.
pub async fn master_key_for_writing(
    settings: &Settings,
    store: &dyn KeyStore,
) -> Result<MasterKey, KeyLoadError> {
    let path = match key_source(settings)? {
        KeySource::Setting(key) => return Ok(key),
        KeySource::Throwaway => return Ok(throwaway()?),
        KeySource::File(path) => path,
    };
    if let Some(key) = read_key_file(&path)? {
        return Ok(key);
    }
    if !store.keys().await?.is_empty() {
        return Err(master_key_error(format!(
            "the database {} holds signing keys sealed under a master key, but {}, where that \
             key is kept, does not exist; restore tessera.key from the backup kept \
             with the database, or give the key with --master-key (a new key could not open \
             them, so tessera makes none)",
            settings.database_shown(),
            path.display()
        ))
        .into());
    }
    Ok(create_key_file(&path)?)
}

fn create_key_file(path: &Path) -> Result<MasterKey, SettingError> {
    let shown = path.display();
    let hex = MasterKey::generate_hex(&mut OsRng);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(file) => file,
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return read_key_file(path)?
                .ok_or_else(|| master_key_error(format!("cannot read {shown}")));
        }
        Err(e) => return Err(master_key_error(format!("cannot create {shown}: {e}"))),
    };
    file.write_all(hex.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| master_key_error(format!("cannot write {shown}: {e}")))?;
    tracing::warn!(
        path = %shown,
        "created a master key file; keep it with the database, or set --master-key in production"
    );
    MasterKey::from_hex(&hex).map_err(|e| master_key_error(e.to_string()))
}

/// Where the master key came from, for a message about a key that does not
/// decrypt.
fn key_origin(settings: &Settings) -> String {
    match &settings.database {
        _ if settings.master_key.is_some() => "the key from --master-key".to_owned(),
        DatabaseUrl::Sqlite(url) => match key_file_for(url) {
            Some(path) => format!(
                "the key in {}",
                std::path::absolute(&path).unwrap_or(path).display()
            ),
            None => "a throwaway key".to_owned(),
        },
        DatabaseUrl::Postgres(_) => "the key given".to_owned(),
    }
}

/// Where a key that does not decrypt was looked for, for the message:
/// "in the database X (the key in Y; was another master key used?)".
pub fn decrypt_context(settings: &Settings) -> String {
    format!(
        "in the database {} ({}; was another master key used?)",
        settings.database_shown(),
        key_origin(settings)
    )
}

/// The error for a master key that does not open `what`; `context` from
/// [`decrypt_context`].
pub fn does_not_decrypt(what: &str, context: &str) -> SettingError {
    master_key_error(format!("it does not decrypt {what} {context}"))
}

/// Why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    /// The store failed.
    #[error("reading signing keys")]
    Store(#[from] tessera_store::StoreError),
    /// The master key does not open what is stored.
    #[error(transparent)]
    Master(#[from] SettingError),
    /// Key material is broken.
    #[error(transparent)]
    Key(#[from] tessera_core::jwt::KeyError),
}

impl KeyLoadError {
    /// As an `anyhow` error whose setting errors `main` recognises (exit 2).
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            Self::Master(setting) => anyhow::Error::new(setting),
            other => anyhow::Error::new(other),
        }
    }
}

fn unseal(
    master: &MasterKey,
    stored: &StoredKey,
    context: &str,
) -> Result<KeyMaterial, KeyLoadError> {
    let private = master
        .open(&stored.kid, &stored.sealed_private)
        .map_err(|_| does_not_decrypt(&format!("signing key {}", stored.kid), context))?;
    let alg = Alg::parse(&stored.alg).ok_or_else(|| {
        tessera_core::jwt::KeyError::from_message(format!("unknown algorithm {}", stored.alg))
    })?;
    Ok(KeyMaterial {
        kid: stored.kid.clone(),
        alg,
        private,
    })
}

/// A new key of `alg`, sealed for storage.
pub fn new_stored_key(
    master: &MasterKey,
    alg: Alg,
    now: OffsetDateTime,
) -> Result<StoredKey, KeyLoadError> {
    let key = KeyMaterial::generate(alg, &mut OsRng)?;
    Ok(StoredKey {
        sealed_private: master.seal(&key.kid, &key.private, &mut OsRng),
        kid: key.kid,
        alg: alg.as_str().to_owned(),
        created_at: now,
        superseded_at: None,
    })
}

/// Whether a stored key is still published at `now`: current, or superseded
/// less than `keep` ago.
pub fn is_published(key: &StoredKey, now: OffsetDateTime, keep: Duration) -> bool {
    key.superseded_at.is_none_or(|at| now < at + keep)
}

/// The keys of a running server.
pub struct Keys {
    store: Arc<dyn KeyStore>,
    master: MasterKey,
    alg: Alg,
    keep: Duration,
    ring: RwLock<Arc<KeyRing>>,
    refresh_secret: Vec<u8>,
    /// Unix milliseconds of the last reload, to rate-limit on-demand reloads.
    last_reload: AtomicI64,
    /// Where the keys and the master key are, for a key that does not open.
    context: String,
}

/// The least time between two reloads triggered by an unknown `kid`, so a
/// flood of forged kids costs at most one key read a second.
const ON_DEMAND_RELOAD_EVERY_MS: i64 = 1000;

impl Keys {
    /// Makes sure a current key exists, loads the ring and the refresh
    /// secret. Creates the master key file (SQLite without `--master-key`)
    /// only for a database that holds no keys yet.
    pub async fn open(
        store: Arc<dyn KeyStore>,
        settings: &Settings,
        now: OffsetDateTime,
    ) -> Result<Self, KeyLoadError> {
        let master = master_key_for_writing(settings, store.as_ref()).await?;
        let context = decrypt_context(settings);
        // The server secret doubles as the master-key check: a mismatched
        // master key cannot open it, and the start stops with a clear error.
        let mut candidate = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut candidate);
        let sealed = store
            .server_secret(
                REFRESH_SECRET,
                &master.seal(REFRESH_SECRET, &candidate, &mut OsRng),
            )
            .await?;
        let refresh_secret = master
            .open(REFRESH_SECRET, &sealed)
            .map_err(|_| does_not_decrypt("the secrets", &context))?;
        let alg = settings.jwt_alg;
        store
            .ensure_current_key(&new_stored_key(&master, alg, now)?)
            .await?;
        let keep = settings.key_publication();
        let ring = load_ring(store.as_ref(), &master, alg, keep, now, &context).await?;
        Ok(Self {
            store,
            master,
            alg,
            keep,
            ring: RwLock::new(Arc::new(ring)),
            refresh_secret,
            last_reload: AtomicI64::new(to_ms(now)),
            context,
        })
    }

    /// A new key of the configured algorithm, sealed under this master key,
    /// for `tessera keys rotate`.
    pub fn new_key(&self, now: OffsetDateTime) -> Result<StoredKey, KeyLoadError> {
        new_stored_key(&self.master, self.alg, now)
    }

    /// The current ring.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring
            .read()
            .map_or_else(|p| p.into_inner().clone(), |r| r.clone())
    }

    /// The HMAC key that derives refresh-token successors.
    pub fn refresh_secret(&self) -> &[u8] {
        &self.refresh_secret
    }

    /// Re-reads the keys (after a rotation by another process, or to drop
    /// keys whose last tokens have expired).
    pub async fn reload(&self, now: OffsetDateTime) -> Result<(), KeyLoadError> {
        self.last_reload.store(to_ms(now), Ordering::Relaxed);
        let ring = load_ring(
            self.store.as_ref(),
            &self.master,
            self.alg,
            self.keep,
            now,
            &self.context,
        )
        .await
        .inspect_err(|_| {
            metrics::counter!("tessera_key_reloads_total", "outcome" => "failed").increment(1);
        })?;
        let mut slot = self.ring.write().unwrap_or_else(|p| p.into_inner());
        // "rotated": the current key is another one than before (a rotation
        // by `tessera keys rotate` or another instance reached this one).
        let outcome = if slot.current_kid() == ring.current_kid() {
            "unchanged"
        } else {
            "rotated"
        };
        metrics::counter!("tessera_key_reloads_total", "outcome" => outcome).increment(1);
        *slot = Arc::new(ring);
        Ok(())
    }

    /// Verifies an access token against the ring. An unknown kid may be a
    /// key another instance rotated to before this one reloaded: the ring is
    /// reloaded once (rate-limited) and the token checked again.
    pub async fn verify(
        &self,
        rules: &TokenRules,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Verified, Refusal> {
        let result = self.ring().verify(rules, token, now);
        if result.as_ref().is_err_and(|r| *r == Refusal::UnknownKey)
            && self.reload_for_unknown_kid(now).await
        {
            return self.ring().verify(rules, token, now);
        }
        result
    }

    /// Reloads now if the last reload is at least a second old; for a token
    /// with an unknown `kid`, which may come from an instance that saw a
    /// rotation first. Returns whether it reloaded.
    async fn reload_for_unknown_kid(&self, now: OffsetDateTime) -> bool {
        let last = self.last_reload.load(Ordering::Relaxed);
        if to_ms(now) - last < ON_DEMAND_RELOAD_EVERY_MS {
            return false;
        }
        match self.reload(now).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "reloading keys for an unknown kid failed");
                false
            }
        }
    }
}

async fn load_ring(
    store: &dyn KeyStore,
    master: &MasterKey,
    alg: Alg,
    keep: Duration,
    now: OffsetDateTime,
    context: &str,
) -> Result<KeyRing, KeyLoadError> {
    let stored: Vec<StoredKey> = store
        .keys()
        .await?
        .into_iter()
        .filter(|k| k.alg == alg.as_str() && is_published(k, now, keep))
        .collect();
    let current = stored
        .iter()
        .find(|k| k.superseded_at.is_none())
        .ok_or_else(|| {
            tessera_core::jwt::KeyError::from_message(format!("no current {} key", alg.as_str()))
        })?;
    let current = unseal(master, current, context)?;
    let others = stored
        .iter()
        .filter(|k| k.kid != current.kid)
        .map(|k| unseal(master, k, context))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KeyRing::new(&current, &others)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_sits_beside_the_database() {
        assert_eq!(
            key_file_for("sqlite://tessera.db"),
            Some(PathBuf::from("tessera.key"))
        );
        assert_eq!(
            key_file_for("sqlite:///var/lib/t/x.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/t/tessera.key"))
        );
        assert_eq!(
            key_file_for("sqlite:data/x.db"),
            Some(PathBuf::from("data/tessera.key"))
        );
        assert_eq!(key_file_for("sqlite::memory:"), None);
    }

    #[test]
    fn published_until_the_last_token_expires() {
        let now = time::macros::datetime!(2030-01-01 00:00 UTC);
        let mut k = StoredKey {
            kid: "k".into(),
            alg: "EdDSA".into(),
            sealed_private: vec![],
            created_at: now,
            superseded_at: None,
        };
        assert!(is_published(&k, now, Duration::minutes(15)));
        k.superseded_at = Some(now);
        assert!(is_published(
            &k,
            now + Duration::minutes(14),
            Duration::minutes(15)
        ));
        assert!(!is_published(
            &k,
            now + Duration::minutes(15),
            Duration::minutes(15)
        ));
    }
}
