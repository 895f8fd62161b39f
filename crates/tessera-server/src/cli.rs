//! The `tessera` command line: `serve`, `user add|list`, `config check`.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use rand_core::OsRng;
use tessera_core::password::{HashCost, Hasher};
use tessera_core::{Password, Username, ids};
use tessera_store::{StoreError, UserRecord};

use crate::app::Stores;
use crate::handlers::rfc3339;
use crate::settings::{Settings, SettingsArgs};

/// tessera: sessions and tokens, done properly.
///
/// An authentication server for web applications: server-side sessions with an
/// opaque id in an HttpOnly cookie, signed JWT access tokens with rotating
/// refresh tokens, or both for the same user. Every setting can be given as a
/// flag, an environment variable or in a TOML file (--config); flags win over
/// the environment, the environment over the file.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (SQLite in ./tessera.db, 127.0.0.1:7480 by default).
    ///
    /// Prints `tessera listening on http://ADDR` when ready; stops gracefully on
    /// SIGINT and SIGTERM. An invalid setting stops the start with one line
    /// naming it and exit code 2.
    Serve(Box<SettingsArgs>),
    /// Manage user accounts in the database.
    #[command(subcommand)]
    User(UserCommand),
    /// Work with settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the JWT signing keys in the database.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `tessera keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key current. The old key stays in the JWKS and keeps
    /// verifying until the last token it signed has expired (access_ttl +
    /// leeway); running servers pick up the new key within --key-refresh.
    Rotate(Box<SettingsArgs>),
    /// List the signing keys and their status.
    List(Box<SettingsArgs>),
}

/// `tessera token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a JWT's header and claims with readable times, then whether to
    /// believe it: verified, or why not (bad signature, expired 3 minutes ago,
    /// unknown kid, wrong audience…). Keys come from the local database by
    /// default, or from --jwks, or --secret for HS256. Exit code 0 when
    /// verified, 1 when not.
    Decode(Box<DecodeArgs>),
}

/// Arguments of `tessera token decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The token; read from standard input when absent or `-`.
    pub token: Option<String>,
    /// Verify against this JWK set: a file, or an http:// URL such as
    /// http://127.0.0.1:7480/.well-known/jwks.json.
    #[arg(long, value_name = "FILE_OR_URL", conflicts_with = "secret")]
    pub jwks: Option<String>,
    /// Verify an HS256 token with this shared secret (its bytes as given).
    #[arg(long, value_name = "SECRET")]
    pub secret: Option<String>,
    /// Issuer, audience, leeway, database and master key to check against.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// `tessera user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from standard input (one line), or
    /// asked for twice when standard input is a terminal; never from a flag.
    Add {
        /// The username: 3 to 64 characters of letters, digits, '_', '.', '@', '-'.
        name: String,
        /// Where the database is.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
    /// Delete a user and revoke every session and token family they have:
    /// their access tokens are refused by this server at once.
    Delete {
        /// The username (any case).
        name: String,
        /// Where the database is.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
    /// List every user: id, username, creation time.
    List {
        /// Where the database is.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
}

/// `tessera config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the settings (flags, environment, file) without starting, and
    /// print the result with secrets hidden.
    Check(Box<SettingsArgs>),
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again =
            rpassword::prompt_password("Password again: ").context("reading the password")?;
        if first != again {
            bail!("the two passwords differ");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
        Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
    }
}

/// `tessera user add NAME`.
pub async fn user_add(name: &str, settings: SettingsArgs) -> anyhow::Result<()> {
    let username = Username::parse(name).map_err(|e| anyhow::anyhow!("invalid username: {e}"))?;
    let password =
        Password::parse(&read_password()?).map_err(|e| anyhow::anyhow!("invalid password: {e}"))?;
    let stores = Stores::open(&Settings::resolve(settings)?).await?;
    let hasher = Hasher::new(HashCost::OWASP)?;
    let user = UserRecord {
        id: ids::user_id(&mut OsRng),
        username: username.as_str().to_owned(),
        password_hash: hasher.hash(&password, &mut OsRng)?,
        created_at: crate::handlers::now(),
    };
    match stores.users.create_user(&user).await {
        Ok(()) => {
            println!("created user {} ({})", user.username, user.id);
            Ok(())
        }
        Err(StoreError::Conflict(_)) => bail!("the username {} is already taken", user.username),
        Err(e) => Err(anyhow::Error::new(e).context("creating the user")),
    }
}

/// `tessera user delete NAME`.
pub async fn user_delete(name: &str, settings: SettingsArgs) -> anyhow::Result<()> {
    let stores = Stores::open(&Settings::resolve(settings)?).await?;
    let Some(user) = stores
        .users
        .user_by_username(name)
        .await
        .context("finding the user")?
    else {
        bail!("there is no user {name}");
    };
    // Sessions first: if deleting the user then fails, nothing stays usable.
    let revoked = stores
        .sessions
        .revoke_user_sessions(&user.id, None, crate::handlers::now())
        .await
        .context("revoking the user's sessions")?;
    stores
        .users
        .delete_user(&user.id)
        .await
        .context("deleting the user")?;
    println!(
        "deleted user {} ({}); revoked {} session(s)",
        user.username,
        user.id,
        revoked.len()
    );
    Ok(())
}

/// `tessera user list`.
pub async fn user_list(settings: SettingsArgs) -> anyhow::Result<()> {
    let stores = Stores::open(&Settings::resolve(settings)?).await?;
    let users = stores.users.list_users().await.context("listing users")?;
    println!("{:<26}  {:<64}  CREATED", "ID", "USERNAME");
    for u in users {
        println!(
            "{:<26}  {:<64}  {}",
            u.id,
            u.username,
            rfc3339(u.created_at)
        );
    }
    Ok(())
}
