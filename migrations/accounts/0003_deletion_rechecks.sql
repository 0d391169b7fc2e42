-- Deletions notes acknowledged, to be delivered once more (app::outbox): notes acknowledges on its
-- primary while its replicas may lag, and a failover to a replica that had not applied the
-- deletion loses it (docs/failover.md). `id` is the outbox row's; `due_at` (Unix ms) when the
-- delivery is next tried: the acknowledgement plus the replica lag the stack is sized for, and,
-- after a failed try, that try's time (so rows that keep failing do not hold later ones back).
CREATE TABLE deletion_rechecks (
    id      TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    due_at  INTEGER NOT NULL
);
CREATE INDEX deletion_rechecks_by_due ON deletion_rechecks (due_at);
