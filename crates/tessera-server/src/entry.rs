//! What `tessera` runs: parses the command line, runs the command on a
//! tokio runtime, and maps errors to exit codes (2 for a setting or store
//! that cannot be used, 1 otherwise).
//!
//! It lives in the library, and `main.rs` only calls [`main`], so that the
//! program's generic code (the runtime driving every command's future) is
//! instantiated once, with the library, rather than again in the binary.
//! Measured without LTO, the binary's own step of a release build went from
//! 12 s to under 1 s; it is the last step, when nothing else can run.

use std::process::ExitCode;

use crate::app::StoreSetupError;
use crate::cli::{Cli, Command, ConfigCommand, KeysCommand, TokenCommand, UserCommand};
use crate::cli_keys::{self, KeySource};
use crate::error::error_chain;
use crate::settings::{SettingError, Settings};
use crate::{cli, serve, telemetry};

/// The `tessera` command.
pub fn main() -> ExitCode {
    let cli = cli::parse();
    telemetry::init_logging();
    // A misspelt variable would otherwise be ignored without a word. Names
    // only: a value may be a secret.
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    for warning in crate::settings::unknown_variables(names) {
        tracing::warn!("{warning}");
    }
    // One TLS crypto provider for every client (PostgreSQL, Redis, JWKS
    // fetches): aws-lc-rs, which already backs the JWT signatures.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessera: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<NotVerified>() => ExitCode::FAILURE,
        Err(e) if e.is::<SettingError>() || e.is::<StoreSetupError>() => {
            eprintln!("tessera: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("tessera: {}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `token decode` found the token not to be believed (exit code 1, the
/// reason already printed).
#[derive(Debug)]
struct NotVerified;

impl std::fmt::Display for NotVerified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the token is not verified")
    }
}

impl std::error::Error for NotVerified {}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(Settings::resolve(*args)?).await,
        Command::User(UserCommand::Add { name, settings }) => cli::user_add(&name, *settings).await,
        Command::User(UserCommand::List { settings }) => cli::user_list(*settings).await,
        Command::User(UserCommand::Delete { name, settings }) => {
            cli::user_delete(&name, *settings).await
        }
        Command::User(UserCommand::Disable { name, settings }) => {
            cli::user_change(&name, cli::UserChange::Disable, *settings).await
        }
        Command::User(UserCommand::Enable { name, settings }) => {
            cli::user_change(&name, cli::UserChange::Enable, *settings).await
        }
        Command::User(UserCommand::Logout { name, settings }) => {
            cli::user_change(&name, cli::UserChange::Logout, *settings).await
        }
        Command::Keys(KeysCommand::Rotate(args)) => cli_keys::rotate(*args).await,
        Command::Keys(KeysCommand::List(args)) => cli_keys::list(*args).await,
        Command::Token(TokenCommand::Decode(args)) => {
            let args = *args;
            let source = match (args.jwks, args.secret) {
                (Some(jwks), _) => KeySource::Jwks(jwks),
                (None, Some(secret)) => KeySource::Secret(secret),
                (None, None) => KeySource::Database,
            };
            let settings = args.settings;
            if cli_keys::decode(args.token, source, settings).await? {
                Ok(())
            } else {
                Err(anyhow::Error::new(NotVerified))
            }
        }
        Command::Openapi => {
            println!("{}", crate::openapi::json());
            Ok(())
        }
        Command::Config(ConfigCommand::Check(args)) => {
            let settings = Settings::resolve(*args)?;
            settings.check_serve()?;
            println!(
                "# settings are valid (the database and Redis were not contacted)\n{}",
                settings.summary()
            );
            Ok(())
        }
    }
}
