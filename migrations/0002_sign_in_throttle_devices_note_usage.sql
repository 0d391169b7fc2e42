-- Abuse controls (issue #17): the sign-in throttle and trusted devices (accounts), and the
-- per-owner note quota (notes). Times are Unix milliseconds.

-- Untrusted sign-in attempts per account (accounts::throttle): checked and counted in one
-- statement of the sign-in's write transaction. Keyed by the SHA-256 of the email as typed, so
-- an email without an account is throttled like one with an account, and no address is stored.
CREATE TABLE sign_in_throttle (
    account_key     TEXT PRIMARY KEY,
    attempts        INTEGER NOT NULL,
    last_attempt_at INTEGER NOT NULL,
    next_allowed_at INTEGER NOT NULL
);
-- Counts untouched for a day are deleted on the next sign-in.
CREATE INDEX sign_in_throttle_by_age ON sign_in_throttle (last_attempt_at);

-- Browsers an account signed in on (accounts::device): only the SHA-256 of the cookie's token.
-- Trusted while failures stay under the limit; strangers' failures never delay them.
CREATE TABLE trusted_devices (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    failures     INTEGER NOT NULL
);
-- An account keeps its most recently used devices.
CREATE INDEX trusted_devices_by_user ON trusted_devices (user_id, last_used_at);
-- A deleted account's devices go with it, whether or not foreign keys are enforced.
CREATE TRIGGER trusted_devices_leave_with_their_user AFTER DELETE ON users
BEGIN
    DELETE FROM trusted_devices WHERE user_id = OLD.id;
END;

-- Notes and bytes (UTF-8 title + body) per owner, for the quota (notes::quota): kept current by
-- the triggers below, so checking it is one primary-key read however many notes an owner has.
CREATE TABLE note_usage (
    owner_id TEXT PRIMARY KEY,
    notes    INTEGER NOT NULL,
    bytes    INTEGER NOT NULL
);
INSERT INTO note_usage (owner_id, notes, bytes)
SELECT owner_id, count(*), sum(length(CAST(title AS BLOB)) + length(CAST(body AS BLOB))) FROM notes GROUP BY owner_id;

CREATE TRIGGER note_usage_on_insert AFTER INSERT ON notes
BEGIN
    INSERT INTO note_usage (owner_id, notes, bytes)
    VALUES (NEW.owner_id, 1, length(CAST(NEW.title AS BLOB)) + length(CAST(NEW.body AS BLOB)))
    ON CONFLICT (owner_id) DO UPDATE SET notes = notes + 1, bytes = bytes + excluded.bytes;
END;

CREATE TRIGGER note_usage_on_update AFTER UPDATE OF title, body ON notes
BEGIN
    UPDATE note_usage
    SET bytes = bytes - length(CAST(OLD.title AS BLOB)) - length(CAST(OLD.body AS BLOB))
        + length(CAST(NEW.title AS BLOB)) + length(CAST(NEW.body AS BLOB))
    WHERE owner_id = NEW.owner_id;
END;

CREATE TRIGGER note_usage_on_delete AFTER DELETE ON notes
BEGIN
    UPDATE note_usage
    SET notes = notes - 1, bytes = bytes - length(CAST(OLD.title AS BLOB)) - length(CAST(OLD.body AS BLOB))
    WHERE owner_id = OLD.owner_id;
    DELETE FROM note_usage WHERE owner_id = OLD.owner_id AND notes <= 0;
END;
