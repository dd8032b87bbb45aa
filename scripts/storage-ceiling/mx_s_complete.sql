-- The shipped layout's complete in the mixed run (migration 18): mx_b1_complete.sql with task_runs' column names.
SELECT :cbase + nextval('mx_complete') * 100 AS lo \gset
WITH i AS (
    SELECT g AS id, 'in_progress'::text AS expected_status, 1 + g % 50 AS expected_droplet, 1 AS expected_attempt,
           'completed'::text AS status, (now() AT TIME ZONE 'UTC') AS completed_at,
           '{"ok":true,"n":1}'::jsonb AS result, (now() AT TIME ZONE 'UTC') AS updated_at,
           'droplet'::text AS changed_by, 'completed'::text AS reason, '{"attempt":1}'::jsonb AS metadata
    FROM generate_series(:lo, :lo + 99) g
), run AS (
    DELETE FROM task_runs r USING i
    WHERE r.task_id = i.id AND r.status = i.expected_status AND r.attempt = i.expected_attempt
      AND r.assigned_droplet_id = (SELECT d.id FROM droplets d WHERE d.droplet_id = i.expected_droplet)
    RETURNING r.task_id, r.assigned_droplet_id, r.attempt, r.assigned_at, r.started_at, i.status, i.completed_at,
              i.result, i.updated_at, i.expected_status AS history_from, i.changed_by AS history_by,
              i.reason AS history_reason, i.metadata AS history_metadata
), updated AS (
    UPDATE tasks t SET
        status = run.status, assigned_droplet_id = run.assigned_droplet_id, attempt = run.attempt,
        assigned_at = run.assigned_at, started_at = run.started_at, completed_at = run.completed_at,
        result = run.result, error_message = NULL, updated_at = run.updated_at
    FROM run
    WHERE t.id = run.task_id
    RETURNING t.id, t.trace_id, t.task_type, t.title, t.description, t.payload, t.required_capability, t.status,
              t.priority, t.created_at, t.assigned_at, t.started_at, t.completed_at, t.deadline, t.result,
              t.error_message, t.retry_count, t.max_retries, t.created_by, t.updated_at, t.retry_after, t.attempt,
              t.cancel_requested_at,
              run.history_from, run.history_by, run.history_reason, run.history_metadata
), history AS (
    INSERT INTO task_state_history (task_id, from_status, to_status, changed_by, reason, metadata, changed_at)
    SELECT id, history_from, status, history_by, history_reason, history_metadata, updated_at FROM updated
)
SELECT id, trace_id, task_type, title, description, payload, required_capability, status, priority, created_at,
       assigned_at, started_at, completed_at, deadline, result, error_message, retry_count, max_retries,
       created_by, updated_at, retry_after, attempt, cancel_requested_at
FROM updated;
