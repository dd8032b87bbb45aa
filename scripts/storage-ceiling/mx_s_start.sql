-- The shipped layout's start in the mixed run (migration 18): mx_b1_start.sql with task_runs' column names.
SELECT :base + nextval('mx_start') * 100 AS lo \gset
WITH i AS (
    SELECT g AS id, 'assigned'::text AS expected_status, 1 + g % 50 AS expected_droplet, 1 AS expected_attempt,
           'in_progress'::text AS status, (now() AT TIME ZONE 'UTC') AS started_at,
           (now() AT TIME ZONE 'UTC') AS updated_at,
           'droplet'::text AS changed_by, 'started'::text AS reason, '{"attempt":1}'::jsonb AS metadata
    FROM generate_series(:lo, :lo + 99) g
), updated AS (
    UPDATE task_runs r SET status = i.status, started_at = i.started_at, updated_at = i.updated_at
    FROM i
    WHERE r.task_id = i.id AND r.status = i.expected_status AND r.attempt = i.expected_attempt
      AND r.assigned_droplet_id = (SELECT d.id FROM droplets d WHERE d.droplet_id = i.expected_droplet)
    RETURNING r.*, i.expected_status AS history_from, i.changed_by AS history_by, i.reason AS history_reason,
              i.metadata AS history_metadata
), history AS (
    INSERT INTO task_state_history (task_id, from_status, to_status, changed_by, reason, metadata, changed_at)
    SELECT task_id, history_from, status, history_by, history_reason, history_metadata, updated_at FROM updated
)
SELECT t.id, t.trace_id, t.task_type, t.title, t.description, t.payload, t.required_capability, u.status,
       t.priority, t.created_at, u.assigned_at, u.started_at, t.completed_at, t.deadline, t.result,
       t.error_message, t.retry_count, t.max_retries, t.created_by, u.updated_at, t.retry_after, u.attempt,
       u.cancel_requested_at, u.assigned_droplet_id
FROM updated u JOIN tasks t ON t.id = u.task_id;
