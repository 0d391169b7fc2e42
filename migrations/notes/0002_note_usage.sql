-- The notes service's per-owner quota (issue #17).

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
