-- Accounts. `username_key` is the lowercased name: the uniqueness rule is
-- case-insensitive while `username` keeps what the user typed.
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL,
    username_key  TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL -- Unix milliseconds, as every time here
) STRICT;

-- One row per login. `secret_hash` is the SHA-256 of the session secret;
-- the secret itself is never stored.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY NOT NULL,
    secret_hash     BLOB UNIQUE,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('cookie', 'token')),
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    idle_expires_at INTEGER,
    user_agent      TEXT,
    ip              TEXT,
    revoked_at      INTEGER
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Login-failure counters in fixed windows.
CREATE TABLE login_failures (
    key        TEXT PRIMARY KEY NOT NULL,
    count      INTEGER NOT NULL,
    started_at INTEGER NOT NULL
) STRICT;
