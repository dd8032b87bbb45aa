-- A client's Idempotency-Key for one creation request (POST /tasks,
-- POST /tasks/batch, the create_task message): written in the same
-- transaction as the tasks it created, so that a request repeated after a
-- lost answer finds them instead of creating them again. `fingerprint` is a
-- hash of the request's tasks: the same key with another body is refused.
-- Keys older than a day no longer count and are deleted by the
-- idempotency_cleanup job.
CREATE TABLE idempotency_keys (
    caller      TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    task_ids    INTEGER[] NOT NULL DEFAULT '{}',
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (caller, key)
);
CREATE INDEX idx_idempotency_keys_created_at ON idempotency_keys(created_at);
