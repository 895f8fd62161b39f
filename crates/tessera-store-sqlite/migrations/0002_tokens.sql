-- Refresh tokens, by the SHA-256 of the token. A family is a session:
-- `session_id` names it. `spent_at` is set once, by a compare-and-set.
CREATE TABLE refresh_tokens (
    hash       BLOB PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    spent_at   INTEGER
) STRICT;
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

-- Signing keys; the private part is sealed (AES-256-GCM) under the master key.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY NOT NULL,
    alg            TEXT NOT NULL,
    sealed_private BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    superseded_at  INTEGER
) STRICT;
-- At most one current key per algorithm.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (alg) WHERE superseded_at IS NULL;

-- Named server secrets (for example the refresh-token HMAC key), sealed.
CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY NOT NULL,
    sealed BLOB NOT NULL
) STRICT;
