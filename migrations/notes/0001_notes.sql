-- The notes service's database (Level 5). `owner_id` is an accounts user id: no foreign key
-- crosses services; the owner is proven by an identity the accounts service signed.

CREATE TABLE notes (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    published_at INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX notes_by_owner ON notes (owner_id, created_at DESC, id DESC);
CREATE INDEX notes_published ON notes (published_at DESC, id DESC) WHERE published_at IS NOT NULL;

-- Accounts deleted in the accounts service: an identity signed before the deletion is still
-- valid for up to a minute, and must not create notes for an owner who no longer exists.
CREATE TABLE deleted_owners (
    user_id    TEXT PRIMARY KEY,
    deleted_at INTEGER NOT NULL
);
