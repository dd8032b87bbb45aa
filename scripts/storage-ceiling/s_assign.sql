-- The shipped layout's assign (migration 18): b1_assign.sql with task_runs' column names.
WITH picked AS (
    SELECT task_id, attempt FROM task_queue
    WHERE (routing_lease_until IS NULL OR routing_lease_until < (now() AT TIME ZONE 'UTC'))
      AND (retry_after IS NULL OR retry_after <= (now() AT TIME ZONE 'UTC'))
      AND ((required_capability IS NULL AND true) OR required_capability = ANY('{echo}'::text[]))
    ORDER BY priority, deadline, created_at, task_id
    LIMIT 100
    FOR UPDATE SKIP LOCKED
), dequeued AS (
    DELETE FROM task_queue q USING picked p WHERE q.task_id = p.task_id
    RETURNING q.task_id, q.attempt
), runs AS (
    INSERT INTO task_runs (task_id, status, assigned_droplet_id, attempt, assigned_at, updated_at, requeues)
    SELECT task_id, 'assigned', (SELECT d.id FROM droplets d WHERE d.droplet_id = 1 + task_id % 50),
           attempt + 1, (now() AT TIME ZONE 'UTC'), (now() AT TIME ZONE 'UTC'), 0
    FROM dequeued
    RETURNING *
), history AS (
    INSERT INTO task_state_history (task_id, from_status, to_status, changed_by, reason, metadata, changed_at)
    SELECT task_id, 'pending', 'assigned', 'router', 'least loaded', jsonb_build_object('attempt', attempt),
           assigned_at
    FROM runs
)
SELECT t.id, t.trace_id, t.task_type, t.title, t.description, t.payload, t.required_capability, r.status,
       t.priority, t.created_at, r.assigned_at, r.started_at, t.completed_at, t.deadline, t.result,
       t.error_message, t.retry_count, t.max_retries, t.created_by, r.updated_at, t.retry_after, r.attempt,
       r.cancel_requested_at, r.assigned_droplet_id
FROM runs r JOIN tasks t ON t.id = r.task_id;
