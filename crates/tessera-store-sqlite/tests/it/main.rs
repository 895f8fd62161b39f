//! The conformance suite on the SQLite backend, plus SQLite-specific checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tessera_store_sqlite::SqliteStore;

/// A fresh store in its own database file under Cargo's per-target scratch
/// directory (`target/tmp`), which `cargo clean` removes.
async fn fresh() -> Option<Arc<SqliteStore>> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep();
    let url = format!("sqlite://{}", dir.join("conformance.db").display());
    Some(Arc::new(SqliteStore::open(&url).await.unwrap()))
}

tessera_store::conformance_tests!(fresh());

#[tokio::test]
async fn reopening_keeps_data_and_migrations_are_idempotent() {
    use tessera_store::{UserRecord, UserStore};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let s = SqliteStore::open(&url).await.unwrap();
    let u = UserRecord {
        id: "usr_1".into(),
        username: "Persist".into(),
        password_hash: "h".into(),
        created_at: tessera_store::conformance::T0,
        disabled_at: None,
    };
    s.create_user(&u).await.unwrap();
    s.close().await;
    let s = SqliteStore::open(&url).await.unwrap();
    assert_eq!(s.user_by_username("persist").await.unwrap(), Some(u));
}

#[tokio::test]
async fn a_directory_that_does_not_exist_is_an_open_error() {
    let err = SqliteStore::open("sqlite:///nonexistent-dir-tessera/x.db")
        .await
        .err();
    assert!(
        matches!(err, Some(tessera_store_sqlite::OpenError::Open(_))),
        "{err:?}"
    );
}
