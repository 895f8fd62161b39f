-- The change feed (tessera_store::feed): every process sharing this file
-- appends what it changed (a revoked session, a changed user) and reads what
-- the others appended, so that none serves a revoked credential from its
-- cache. Rows are kept a minute: a process reads them within 50 ms, and
-- one that could not read for longer trusts nothing it cached anyway.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    line TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX changes_at ON changes (at_ms);
