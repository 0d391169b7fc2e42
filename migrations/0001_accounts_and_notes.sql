-- Users, their sessions, and their notes. Times are Unix milliseconds; ids are random
-- URL-safe strings made by the worker, so they reveal neither order nor count.

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
-- Sign-out everywhere and password change end all of a user's sessions.
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE notes (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    published_at INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- "My notes", newest first, paged by (created_at, id).
CREATE INDEX notes_by_owner ON notes (owner_id, created_at DESC, id DESC);
-- The public feed, newest publication first, paged by (published_at, id).
CREATE INDEX notes_published ON notes (published_at DESC, id DESC) WHERE published_at IS NOT NULL;
