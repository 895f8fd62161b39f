//! Migrations embedded in the binary for the sqlx backends, without
//! `sqlx::migrate!`.
//!
//! That macro needs sqlx's `macros` feature, which builds every sqlx driver
//! (SQLite's C code and aws-lc included) a second time, for the compiler:
//! about a third of a clean release build. A backend lists its files here
//! instead, by version, description and contents — exactly what the macro
//! reads from `NNNN_description.sql` — so the checksums recorded in existing
//! databases still match.

use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType};

/// Migrations as `(version, description, sql)`, typically
/// `(1, "initial", include_str!("../migrations/0001_initial.sql"))`.
#[derive(Debug, Clone, Copy)]
pub struct Embedded(pub &'static [(i64, &'static str, &'static str)]);

impl Embedded {
    /// Whether any of these migrations is missing from `applied`, the
    /// versions a database records as done (so it is not fully migrated).
    pub fn pending(&self, applied: &[i64]) -> bool {
        self.0
            .iter()
            .any(|(version, _, _)| !applied.contains(version))
    }
}

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into(),
                    // As sqlx's own reader: a first line opts out of the transaction.
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}
