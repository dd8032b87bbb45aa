-- Variant E's complete in the mixed run: mx_s_complete.sql with the end inserted into task_ends instead
-- of written over the task's wide row.
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
    RETURNING r.task_id, r.assigned_droplet_id, r.attempt, r.assigned_at, r.started_at, r.retry_count, i.status,
              i.completed_at, i.result, i.updated_at, i.expected_status AS history_from, i.changed_by AS history_by,
              i.reason AS history_reason, i.metadata AS history_metadata
), ended AS (
    INSERT INTO task_ends (task_id, status, assigned_droplet_id, attempt, assigned_at, started_at, completed_at,
                           result, error_message, retry_count, updated_at)
    SELECT task_id, status, assigned_droplet_id, attempt, assigned_at, started_at, completed_at, result, NULL,
           retry_count, updated_at
    FROM run
    RETURNING *
), history AS (
    INSERT INTO task_state_history (task_id, from_status, to_status, changed_by, reason, metadata, changed_at)
    SELECT task_id, history_from, status, history_by, history_reason, history_metadata, updated_at FROM run
)
SELECT t.id, t.trace_id, t.task_type, t.title, t.description, t.payload, t.required_capability, e.status,
       t.priority, t.created_at, e.assigned_at, e.started_at, e.completed_at, t.deadline, e.result,
       e.error_message, e.retry_count, t.max_retries, t.created_by, e.updated_at, t.retry_after, e.attempt,
       t.cancel_requested_at
FROM ended e JOIN tasks t ON t.id = e.task_id;
