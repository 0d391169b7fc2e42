-- What an account deletion made stale, kept with its tombstone: the ids of the owner's published
-- notes when the deletion first ran, as a JSON array. A redelivered deletion deletes nothing, yet
-- must invalidate their cached copies again: the first delivery's answer, and the invalidation it
-- made, may have been lost (docs/services.md). NULL in a tombstone written before this column.
ALTER TABLE deleted_owners ADD COLUMN public_note_ids TEXT;
