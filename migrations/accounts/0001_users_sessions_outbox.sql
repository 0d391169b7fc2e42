-- The accounts service's database (Level 5). Times are Unix milliseconds; ids are random
-- URL-safe strings made by the worker. Notes live in the notes service's own database.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Only the SHA-256 of a session token is stored.
CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Deleted accounts whose notes the notes service has not yet acknowledged removing. Written in
-- the deletion's own transaction; a row leaves only when notes answered 2xx.
CREATE TABLE deletion_outbox (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_error      TEXT
);
CREATE INDEX deletion_outbox_by_age ON deletion_outbox (created_at);
