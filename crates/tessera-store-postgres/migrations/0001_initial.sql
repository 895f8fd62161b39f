-- The same schema as the SQLite backend; times are Unix milliseconds.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    username_key  TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    secret_hash     BYTEA UNIQUE,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('cookie', 'token')),
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    idle_expires_at BIGINT,
    user_agent      TEXT,
    ip              TEXT,
    revoked_at      BIGINT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE login_failures (
    key        TEXT PRIMARY KEY,
    count      BIGINT NOT NULL,
    started_at BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    hash       BYTEA PRIMARY KEY,
    session_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at   BIGINT
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    sealed_private BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    superseded_at  BIGINT
);
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (alg) WHERE superseded_at IS NULL;

CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL
);
