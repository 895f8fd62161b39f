//! The `tessera` command line: `serve`,
//! `user add|delete|disable|enable|logout|list`,
//! `config check`, `keys rotate|list`, `token decode`. Every command takes
//! `serve`'s settings flags, and its help shows those it uses.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::{Context as _, bail};
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use tessera_core::session::ClientInfo;
use tessera_core::{Password, Username};

pub use crate::accounts::UserChange;
use crate::accounts::{Accounts, Denied, Registrar};
use crate::app::{Database, Stores};
use crate::handlers::{now, rfc3339};
use crate::settings::{Settings, SettingsArgs};
use tessera_store::OpenMode;

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
    /// Print the OpenAPI 3.1 document of the HTTP API, as `GET /openapi.json`
    /// serves it: generated from the server's code, it needs no settings,
    /// database or running server.
    Openapi,
}

/// `tessera keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key current. The old key stays in the JWKS and keeps
    /// verifying until the last token it signed has expired (access_ttl +
    /// leeway + key_refresh); running servers pick up the new key within
    /// --key-refresh.
    /// The database must exist already.
    Rotate(Box<SettingsArgs>),
    /// List the signing keys and their status. Reads the database only: it
    /// must exist, and nothing is created.
    List(Box<SettingsArgs>),
}

/// `tessera token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a JWT's header and claims with readable times, then whether to
    /// believe it: verified, or why not (bad signature, expired 3 minutes ago,
    /// unknown kid, wrong audience…). Keys come from the local database by
    /// default (read only: it must exist, and nothing is created), or from
    /// --jwks, or --secret for HS256. Exit code 0 when verified, 1 when not.
    Decode(Box<DecodeArgs>),
}

/// Arguments of `tessera token decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The token; read from standard input when absent or `-`.
    pub token: Option<String>,
    /// Verify against this JWK set: a file, or an http:// or https:// URL
    /// such as http://127.0.0.1:7480/.well-known/jwks.json.
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
    /// Creates the database if there is none yet.
    Add {
        /// The username: 3 to 64 characters of letters, digits, '_', '.', '@', '-'.
        name: String,
        /// Where the database is.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
    /// Delete a user and revoke every session and token family they have:
    /// their access tokens are refused by this server at once. The database
    /// must exist already.
    Delete {
        /// The username (any case).
        name: String,
        /// Where the database (and Redis) is.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
    /// Disable a user: every session and token family they have ends at
    /// once (their access tokens are refused by this server), and logins get
    /// the same refusal as a wrong password until `user enable`. The account
    /// and its password stay. The database must exist already.
    Disable {
        /// The username (any case).
        name: String,
        /// Where the database (and Redis) is.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
    /// Enable a disabled user again: they can log in with their password.
    Enable {
        /// The username (any case).
        name: String,
        /// Where the database is.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
    /// Log a user out everywhere: end every session and token family they
    /// have (their access tokens are refused by this server at once), and
    /// keep the account. The database must exist already.
    Logout {
        /// The username (any case).
        name: String,
        /// Where the database (and Redis) is.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
    /// List every user: id, username, creation time, and whether the account
    /// is disabled. Reads the database only: it must exist, and nothing is
    /// created.
    List {
        /// Where the database is.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
}

/// `tessera config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the settings (flags, environment, file) as `serve` would,
    /// without starting or contacting the database, and print the result
    /// with secrets hidden.
    Check(Box<SettingsArgs>),
}

/// Where the database is.
const DATABASE: &[&str] = &["config", "database", "database_schema"];
/// The database, and Redis, where a user's sessions may be.
const DATABASE_AND_REDIS: &[&str] = &[
    "config",
    "database",
    "database_schema",
    "redis",
    "redis_prefix",
];
/// What `keys list` reads: the keys, and how long superseded ones stay.
const KEYS_LIST: &[&str] = &[
    "config",
    "database",
    "database_schema",
    "jwt_alg",
    "leeway",
    "access_ttl",
    "key_refresh",
];
/// What `keys rotate` reads: as `keys list`, and the master key.
const KEYS_ROTATE: &[&str] = &[
    "config",
    "database",
    "database_schema",
    "master_key",
    "jwt_alg",
    "leeway",
    "access_ttl",
    "key_refresh",
];
/// What `token decode` checks a token against.
const TOKEN_DECODE: &[&str] = &[
    "config",
    "database",
    "database_schema",
    "master_key",
    "issuer",
    "audience",
    "jwt_alg",
    "leeway",
];

/// Hides from `cmd`'s help every settings flag but `shown`. The hidden ones
/// are still accepted (and validated), so that a script may pass the same
/// flags to every command, as to `serve`.
fn show_only(cmd: clap::Command, shown: &[&str]) -> clap::Command {
    let settings = crate::settings::known_settings().collect::<Vec<_>>();
    let hidden: Vec<clap::Id> = cmd
        .get_arguments()
        .map(clap::Arg::get_id)
        .filter(|id| settings.contains(&id.as_str()) && !shown.contains(&id.as_str()))
        .cloned()
        .collect();
    hidden
        .into_iter()
        .fold(cmd, |cmd, id| cmd.mut_arg(id, |arg| arg.hide(true)))
}

/// The command line: [`Cli`], each command's help showing the settings
/// flags it uses (`serve` and `config check` all of them).
pub fn command() -> clap::Command {
    Cli::command()
        .mut_subcommand("user", |user| {
            user.mut_subcommand("add", |c| show_only(c, DATABASE))
                .mut_subcommand("list", |c| show_only(c, DATABASE))
                .mut_subcommand("delete", |c| show_only(c, DATABASE_AND_REDIS))
                .mut_subcommand("disable", |c| show_only(c, DATABASE_AND_REDIS))
                .mut_subcommand("enable", |c| show_only(c, DATABASE))
                .mut_subcommand("logout", |c| show_only(c, DATABASE_AND_REDIS))
        })
        .mut_subcommand("keys", |keys| {
            keys.mut_subcommand("list", |c| show_only(c, KEYS_LIST))
                .mut_subcommand("rotate", |c| show_only(c, KEYS_ROTATE))
        })
        .mut_subcommand("token", |token| {
            token.mut_subcommand("decode", |c| show_only(c, TOKEN_DECODE))
        })
}

/// Parses the process's arguments with [`command`]; prints help, the
/// version or a usage error and exits as clap does.
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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
        let read = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        if read == 0 {
            bail!(
                "standard input is empty: give the password on it as one line \
                 (printf '%s\\n' \"$PASSWORD\" | tessera user add NAME), or run the command \
                 in a terminal to be asked for it"
            );
        }
        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
        let password = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        if password.is_empty() {
            bail!(
                "the first line of standard input is empty: give the password on it, \
                 or run the command in a terminal to be asked for it"
            );
        }
        Ok(password.to_owned())
    }
}

/// `tessera user add NAME`.
pub async fn user_add(name: &str, args: SettingsArgs) -> anyhow::Result<()> {
    let username = Username::parse(name).map_err(|e| anyhow::anyhow!("invalid username: {e}"))?;
    let settings = Settings::resolve(args)?;
    let password = read_password()?;
    Password::parse_new(&password, &[username.as_str()])
        .map_err(|e| anyhow::anyhow!("invalid password: {e}"))?;
    let db = Database::open(&settings, OpenMode::Create).await?;
    let accounts = Accounts::for_settings(db.with_redis(&settings).await?, &settings, 1)?;
    match accounts
        .register(
            username.as_str(),
            &password,
            Registrar::Operator,
            &command_line(),
            now(),
        )
        .await
    {
        Ok(user) => {
            let new = if db.created { " (a new database)" } else { "" };
            println!(
                "created user {} ({}) in {}{new}",
                user.username, user.id, db.shown
            );
            Ok(())
        }
        Err(Denied::UsernameTaken(name)) => {
            bail!("the username {name} is already taken in {}", db.shown)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("creating the user in {}", db.shown))),
    }
}

/// `tessera user delete NAME`: [`Accounts::remove_user`].
pub async fn user_delete(name: &str, args: SettingsArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    let stores = Stores::open_with(&settings, OpenMode::Existing).await?;
    let shown = settings.database_shown();
    let accounts = Accounts::for_settings(stores, &settings, 1)?;
    match accounts.remove_user(name, &command_line(), now()).await {
        Ok((user, revoked)) => {
            println!(
                "deleted user {} ({}) from {shown}; revoked {revoked} session(s)",
                user.username, user.id,
            );
            Ok(())
        }
        Err(Denied::NotFound(_)) => bail!("there is no user {name} in {shown}"),
        Err(e) => Err(anyhow::Error::new(e).context("deleting the user")),
    }
}

/// `tessera user disable|enable|logout NAME`:
/// [`Accounts::change_user`].
pub async fn user_change(name: &str, change: UserChange, args: SettingsArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    let stores = Stores::open_with(&settings, OpenMode::Existing).await?;
    let shown = settings.database_shown();
    let accounts = Accounts::for_settings(stores, &settings, 1)?;
    let by = command_line();
    match accounts.change_user(name, change, &by, now()).await {
        Ok((user, revoked)) => {
            let what = match change {
                UserChange::Disable => "disabled",
                UserChange::Enable => "enabled",
                UserChange::Logout => "logged out",
            };
            let ended = if change == UserChange::Enable {
                String::new()
            } else {
                format!("; revoked {revoked} session(s)")
            };
            println!(
                "{what} user {} ({}) in {shown}{ended}",
                user.username, user.id
            );
            Ok(())
        }
        Err(Denied::NotFound(_)) => bail!("there is no user {name} in {shown}"),
        Err(e) => Err(anyhow::Error::new(e).context("changing the user")),
    }
}

/// Who acts when a command does: no address, and a user agent that says so
/// in the audit trail.
pub fn command_line() -> ClientInfo {
    ClientInfo {
        user_agent: Some("tessera command line".to_owned()),
        ip: None,
    }
}

/// `tessera user list`: the users on standard output, and on standard error
/// which database they are in.
pub async fn user_list(args: SettingsArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    let db = Database::open(&settings, OpenMode::ReadOnly).await?;
    let users = db.users.list_users().await.context("listing users")?;
    println!(
        "{:<26}  {:<64}  {:<25}  STATUS",
        "ID", "USERNAME", "CREATED"
    );
    for u in &users {
        let status = match u.disabled_at {
            Some(at) => format!("disabled since {}", rfc3339(at)),
            None => "active".to_owned(),
        };
        println!(
            "{:<26}  {:<64}  {:<25}  {status}",
            u.id,
            u.username,
            rfc3339(u.created_at)
        );
    }
    match users.len() {
        0 => eprintln!(
            "no users in {}: add one with `tessera user add NAME`, or register with POST /v1/users",
            db.shown
        ),
        1 => eprintln!("1 user in {}", db.shown),
        n => eprintln!("{n} users in {}", db.shown),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory as _;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        super::command().debug_assert();
    }

    /// The variables of every command are the ones the misspelling check
    /// knows, so that it never warns about a real one.
    #[test]
    fn every_variable_is_a_known_one() {
        fn walk(cmd: &clap::Command, seen: &mut BTreeSet<String>) {
            for arg in cmd.get_arguments() {
                if let Some(env) = arg.get_env() {
                    seen.insert(env.to_string_lossy().into_owned());
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, seen);
            }
        }
        let mut seen = BTreeSet::new();
        walk(&Cli::command(), &mut seen);
        let known: BTreeSet<String> = crate::settings::known_variables()
            .map(str::to_owned)
            .collect();
        assert_eq!(seen, known);
    }
}
