//! Statements about tasks: routing, recovery, transitions, creation and
//! the analytics computed from them.
//!
//! A task lives in up to three tables (docs/storage-layout.md): `tasks`
//! holds every task as it was created and as it ended (and the pending
//! state of a retried or requeued one); `task_queue` one row per task
//! waiting for a droplet; `task_runs` the live state of each task a droplet
//! holds, in the [`LIVE_COLUMNS`]. `task_view` shows each task as the API
//! does, its run row over its `tasks` row.

/// The columns of `tasks` that `TaskRow` reads, in its order: what a
/// statement returns of each task it reads whole.
pub(crate) const COLUMNS: &str = "id, trace_id, task_type, title, description, payload, required_capability, \
    status, priority, created_at, assigned_at, started_at, completed_at, deadline, result, error_message, \
    retry_count, max_retries, created_by, updated_at, retry_after, attempt, cancel_requested_at, timeout_seconds, \
    progress, progress_message, progress_at, requeues";

/// The columns of [`COLUMNS`] that a transition or a progress report
/// changes: a task's `task_runs` row holds them, under these names, while a
/// droplet holds the task.
pub(crate) const LIVE_COLUMNS: &str = "status, assigned_at, started_at, completed_at, result, error_message, \
    retry_count, updated_at, retry_after, attempt, cancel_requested_at, progress, progress_message, progress_at, \
    requeues";

/// The columns of [`COLUMNS`] written once, when the task is created.
pub(crate) const FIXED_COLUMNS: &str = "id, trace_id, task_type, title, description, payload, \
    required_capability, priority, created_at, deadline, max_retries, created_by, timeout_seconds";

/// A held task's columns as its run row `r` and its row `t` give them.
const RUN_OVER_TASK: &str = statement!(
    qualified!(FIXED_COLUMNS, "t."),
    ", ",
    qualified!(LIVE_COLUMNS, "r.")
);

/// Queued tasks ready to route, in routing order, at most `$3`: those
/// requiring no capability when `$1`, and those requiring one of `$2`. The
/// order is `idx_task_queue_order`'s, so the pick walks the index from its
/// head and stops after the batch.
const ROUTABLE: &str = "
FROM task_queue q
WHERE (q.routing_lease_until IS NULL OR q.routing_lease_until < (now() AT TIME ZONE 'UTC'))
  AND (q.retry_after IS NULL OR q.retry_after <= (now() AT TIME ZONE 'UTC'))
  AND ((q.required_capability IS NULL AND $1) OR q.required_capability = ANY($2))
ORDER BY q.priority, q.deadline, q.created_at, q.task_id
LIMIT $3";

/// The picked queue rows' tasks, in routing order. A queued task has no
/// run row: its `tasks` row is its state.
const PICKED_TASKS: &str = statement!(
    "
SELECT ",
    qualified!(COLUMNS, "t."),
    "
FROM picked p JOIN tasks t ON t.id = p.task_id
ORDER BY p.priority, p.deadline, p.created_at, p.task_id"
);

/// Locks a batch of [`ROUTABLE`] queue rows for the length of one routing
/// round's transaction and reads their tasks. `SKIP LOCKED` lets other
/// replicas' rounds pass over them; a cancel or a deadline failure of one
/// of them waits for the round, whose assignment deletes the row. A lease
/// still running (set by [`CLAIM_PENDING`]) is respected.
pub(crate) const LOCK_ROUTABLE: &str = statement!(
    "WITH picked AS (
SELECT q.task_id, q.priority, q.deadline, q.created_at",
    ROUTABLE,
    "
FOR UPDATE SKIP LOCKED
)",
    PICKED_TASKS
);

/// Run in a round's transaction before [`LOCK_ROUTABLE`]: the pick reads
/// the queue by its ordering index. Walking it from the head and stopping
/// after the batch is the one good plan for a queue, but the planner
/// judges it by its estimate of how many rows pass the pick's filter, and
/// on a queue not yet analysed (a new database, or autovacuum behind) it
/// reads and sorts the whole queue instead: 16.8 against 0.8 ms for
/// 20,000 queued tasks, and 306 µs of each task in W1.
pub(crate) const PICK_BY_QUEUE_ORDER: &str = "SET LOCAL enable_seqscan = off";

/// Run after [`LOCK_ROUTABLE`]: the rest of the round is planned as usual.
pub(crate) const PLAN_AS_USUAL: &str = "SET LOCAL enable_seqscan TO DEFAULT";

/// Set in a round's transaction once its tasks are locked: a round whose
/// assignments fail together goes back here and makes them one by one.
/// Sent with the pick, it costs no round trip of its own; it is never
/// released, which the commit does not need.
pub(crate) const ROUND_SAVEPOINT: &str = "SAVEPOINT routing_round";

/// Undoes a round's failed assignments, keeping its tasks locked.
pub(crate) const BACK_TO_ROUND_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT routing_round";

/// Claims a batch of [`ROUTABLE`] tasks for a lease of `$4` seconds
/// measured on the database's clock. `SKIP LOCKED` lets concurrent claims
/// on other replicas pass over rows being claimed here instead of waiting
/// for them.
pub(crate) const CLAIM_PENDING: &str = statement!(
    "\
WITH picked AS (
UPDATE task_queue SET routing_lease_until = (now() AT TIME ZONE 'UTC') + make_interval(secs => $4)
WHERE task_id IN (SELECT q.task_id",
    ROUTABLE,
    "
FOR UPDATE SKIP LOCKED)
RETURNING task_id, priority, deadline, created_at
)",
    PICKED_TASKS
);

/// Releases the leases of the tasks in `$1` still queued.
pub(crate) const RELEASE_CLAIMS: &str =
    "UPDATE task_queue SET routing_lease_until = NULL WHERE task_id = ANY($1)";

/// Tasks recovery must move, with the first reason that applies, on the
/// database's clock: at most `$5`, with ids above `$4`, in id order. `$1`
/// is the acknowledgement timeout, `$2` the heartbeat timeout after which a
/// drained droplet's work is taken too, `$3` the default run timeout (0:
/// none), all in seconds. Each condition is written once (`judged`) and
/// both picks and names the candidates; tasks recovery cannot move (a
/// failed task asked to stop, or past its deadline) are never candidates,
/// so that a pass never stalls on them.
pub(crate) const TO_RECOVER: &str = statement!(
    "\
WITH clock AS (SELECT now() AT TIME ZONE 'UTC' AS now),
judged AS (
SELECT t.id, d.droplet_id AS external_droplet_id,
       CASE
         WHEN t.deadline < c.now AND t.status IN ('pending', 'assigned', 'in_progress') THEN 'deadline_passed'
         WHEN t.status IN ('assigned', 'in_progress') AND (
              d.id IS NULL OR d.status = 'error'
              OR (d.status = 'inactive' AND (NOT d.manually_deactivated OR d.last_heartbeat IS NULL
                  OR d.last_heartbeat < c.now - make_interval(secs => $2))))
           THEN 'droplet_inactive'
         WHEN t.status IN ('assigned', 'in_progress') AND t.assigned_at < d.session_started_at
           THEN 'droplet_restarted'
         WHEN t.status = 'in_progress' AND coalesce(t.timeout_seconds, $3) > 0
              AND greatest(t.started_at, t.progress_at)
                  < c.now - make_interval(secs => coalesce(t.timeout_seconds, $3))
           THEN 'run_timed_out'
         WHEN t.status = 'assigned' AND t.assigned_at < c.now - make_interval(secs => $1) THEN 'not_started'
         WHEN t.status = 'failed' AND coalesce(t.retry_count, 0) < coalesce(t.max_retries, 3)
              AND t.cancel_requested_at IS NULL AND (t.deadline IS NULL OR t.deadline >= c.now)
           THEN 'retry_pending'
       END AS reason
FROM task_view t
LEFT JOIN droplets d ON d.id = t.assigned_droplet_id
CROSS JOIN clock c
WHERE t.id IN (
    SELECT task_id FROM task_runs WHERE task_id > $4
    UNION ALL
    SELECT id FROM tasks WHERE status = 'failed' AND id > $4
    UNION ALL
    SELECT task_id FROM task_queue WHERE deadline < (SELECT now FROM clock) AND task_id > $4
)
)
SELECT ",
    qualified!(COLUMNS, "t."),
    ", j.external_droplet_id, j.reason
FROM judged j JOIN task_view t ON t.id = j.id
WHERE j.reason IS NOT NULL
ORDER BY t.id
LIMIT $5"
);

/// Records a progress report on a running task (`$1`) while it is still on
/// attempt `$2` of the droplet with external id `$3`: `$4` percent, `$5`
/// message, at `$6`; returns the task and its droplet's name. No history
/// row: progress is not a change of state. It is a heap-only update of the
/// run row.
pub(crate) const RECORD_PROGRESS: &str = statement!(
    "\
WITH r AS (
UPDATE task_runs SET progress = $4, progress_message = $5, progress_at = $6, updated_at = $6
WHERE task_id = $1 AND status = 'in_progress' AND attempt = $2
  AND assigned_droplet_id = (SELECT d.id FROM droplets d WHERE d.droplet_id = $3)
RETURNING *
)
SELECT ",
    RUN_OVER_TASK,
    ", d.name AS droplet_name
FROM r JOIN tasks t ON t.id = r.task_id JOIN droplets d ON d.id = r.assigned_droplet_id"
);

/// Unfinished tasks whose deadline is nearer than `$1` seconds or the p95
/// run time of their type over the last day, not reported before: marked
/// and returned, at most `$2`, on the database's clock. An unfinished
/// task's row says `pending`, whatever holds it.
pub(crate) const FLAG_DEADLINE_RISKS: &str = statement!(
    "\
WITH clock AS (SELECT now() AT TIME ZONE 'UTC' AS now),
runs AS (
    SELECT task_type,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at)::float8) AS p95
    FROM tasks, clock
    WHERE status = 'completed' AND started_at IS NOT NULL AND completed_at >= clock.now - interval '24 hours'
    GROUP BY task_type
),
due AS (
    SELECT t.id FROM tasks t
    CROSS JOIN clock c
    LEFT JOIN runs r ON r.task_type = t.task_type
    WHERE t.status = 'pending'
      AND t.deadline IS NOT NULL AND t.deadline_risk_at IS NULL
      AND t.deadline < c.now + make_interval(secs => greatest($1, coalesce(r.p95, 0)))
    ORDER BY t.deadline, t.id
    LIMIT $2
    FOR UPDATE OF t SKIP LOCKED
), flagged AS (
UPDATE tasks SET deadline_risk_at = (SELECT now FROM clock)
FROM due
WHERE tasks.id = due.id
RETURNING tasks.id
)
SELECT ",
    qualified!(COLUMNS, "v."),
    ",
       (SELECT d.droplet_id FROM droplets d WHERE d.id = v.assigned_droplet_id) AS external_droplet_id
FROM task_view v
WHERE v.id IN (SELECT id FROM flagged)"
);

/// Deletes at most `$2` tasks finished for good (`Task::is_finished`, a
/// deadline judged by the database's clock) that completed before `$1`,
/// with their history. It reads finished rows only (the partial index of
/// migration 15) and skips those another transaction holds, so that live
/// work never waits on it. The history goes in the same statement, in one
/// pass, before the cascade of its foreign key would look for it task by task.
pub(crate) const DELETE_FINISHED: &str = "\
WITH old AS (
    SELECT id FROM tasks
    WHERE status IN ('completed', 'cancelled', 'failed') AND completed_at < $1
      AND (status <> 'failed'
           OR coalesce(retry_count, 0) >= coalesce(max_retries, 3)
           OR cancel_requested_at IS NOT NULL
           OR deadline < (now() AT TIME ZONE 'UTC'))
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), history AS (
    DELETE FROM task_state_history WHERE task_id IN (SELECT id FROM old)
)
DELETE FROM tasks WHERE id IN (SELECT id FROM old)";

/// Pending and held tasks: the queue and the run rows, so the read does not
/// grow with the finished tasks kept.
pub(crate) const COUNT_LIVE: &str = "\
SELECT (SELECT count(*) FROM task_queue) AS pending, (SELECT count(*) FROM task_runs) AS held";

/// `$1` task, `$2` time, `$3` the external id of the droplet running it.
pub(crate) const MARK_CANCEL_REQUESTED: &str = "\
UPDATE task_runs SET cancel_requested_at = $2, updated_at = $2
WHERE task_id = $1 AND status = 'in_progress' AND cancel_requested_at IS NULL
  AND assigned_droplet_id = (SELECT d.id FROM droplets d WHERE d.droplet_id = $3)";

/// The tasks holding a slot of each droplet in `$1` (external ids), by
/// external id. Sent with [`super::droplets::LOCK_TARGETS`] in one round
/// trip: being a statement of its own that runs after the locks are held,
/// it sees the assignments of any transaction that held them before.
pub(crate) const COUNT_HELD: &str = "\
SELECT d.droplet_id AS droplet, count(*) AS held
FROM droplets d JOIN task_runs r ON r.assigned_droplet_id = d.id
WHERE d.droplet_id = ANY($1)
GROUP BY d.droplet_id";

/// The tasks holding a slot of each droplet that holds any, by the
/// droplet's external id.
pub(crate) const COUNT_HELD_BY_ALL: &str = "\
SELECT d.droplet_id AS droplet, count(*) AS held
FROM task_runs r JOIN droplets d ON d.id = r.assigned_droplet_id
GROUP BY d.droplet_id";

/// Tasks by status: the kept counts of `tasks` rows by their status
/// (migration 19), less the held ones (whose row says `pending`), and the
/// run rows by theirs. It reads a few dozen rows however many tasks there
/// are.
pub(crate) const COUNT_BY_STATUS: &str = "\
SELECT status::text AS key, sum(n)::int8 AS n FROM (
    SELECT status, sum(n) AS n FROM task_counts GROUP BY status
    UNION ALL
    SELECT 'pending', -count(*) FROM task_runs
    UNION ALL
    SELECT status, count(*) FROM task_runs GROUP BY status
) counted
GROUP BY status
HAVING sum(n) > 0";

/// The tasks of the droplet with external id `$1` (those it ended, in
/// `tasks`, and those it holds, in `task_runs`: a held task's `tasks` row
/// has no droplet), in status `$2` or any when NULL; each part by its
/// table's droplet index. `key` is unused.
pub(crate) const COUNT_OF_DROPLET: &str = "\
WITH d AS (SELECT id FROM droplets WHERE droplet_id = $1)
SELECT '' AS key,
       (SELECT count(*) FROM tasks t, d WHERE t.assigned_droplet_id = d.id AND ($2::text IS NULL OR t.status = $2))
     + (SELECT count(*) FROM task_runs r, d WHERE r.assigned_droplet_id = d.id AND ($2::text IS NULL OR r.status = $2))
       AS n";

/// Tasks `$1` as a droplet's report reads them: whole, with their
/// droplet's external id and name.
pub(crate) const READ_FOR_REPORTS: &str = statement!(
    "SELECT ",
    qualified!(COLUMNS, "v."),
    ", d.droplet_id AS external_droplet_id, d.name AS droplet_name
FROM task_view v LEFT JOIN droplets d ON d.id = v.assigned_droplet_id
WHERE v.id = ANY($1)"
);

/// The status of each task in `$1`.
pub(crate) const STATUSES: &str = "SELECT id, status::text FROM task_view WHERE id = ANY($1)";

/// The live columns of a changed task, from the transition `i`.
const SET_LIVE: &str = "
    status = i.status, assigned_at = i.assigned_at, started_at = i.started_at, completed_at = i.completed_at,
    result = i.result, error_message = i.error_message, retry_count = i.retry_count, updated_at = i.updated_at,
    retry_after = i.retry_after, attempt = i.attempt, cancel_requested_at = i.cancel_requested_at,
    requeues = i.requeues, progress = i.progress, progress_message = i.progress_message,
    progress_at = i.progress_at";

/// The internal id of the droplet `i` expects to hold the task.
const EXPECTED_DROPLET: &str = "(SELECT d.id FROM droplets d WHERE d.droplet_id = i.expected_droplet)";

/// The internal id of the droplet `i` gives the task.
const NEW_DROPLET: &str =
    "coalesce(i.droplet_key, (SELECT d.id FROM droplets d WHERE d.droplet_id = i.droplet))";

/// The compare-and-set of a batch of transitions, one array per column,
/// and the history rows of those it applied, in one statement. `$3`/`$5`
/// are external droplet ids, looked up here; `$6` carries the internal id
/// where the batch already knows it (a locked target).
///
/// Each task's compare-and-set is on the row that holds its state, which
/// is also its lock: a queued task's queue row (deleted when it leaves the
/// queue), a held task's run row (updated while the droplet keeps it,
/// deleted when it leaves the droplet), a finished task's `tasks` row.
/// `tasks` is written only when a task becomes pending again or ends.
///
/// Each droplet given work records when it last got some (the least
/// recently assigned droplet wins ties in routing). Its row is already
/// locked by [`super::droplets::LOCK_TARGETS`], which every batch with
/// assignments runs first, so this takes no lock in another order.
///
/// It returns the [`LIVE_COLUMNS`] of each task it changed, as written:
/// the others never change after creation, and the caller has them in the
/// task it read to make the transition. Returning the whole row read back
/// every held task's wide `tasks` row, payload included.
pub(crate) const APPLY_TRANSITIONS: &str = statement!(
    "\
WITH i AS (
SELECT * FROM unnest($1::int8[], $2::text[], $3::int4[], $4::text[], $5::int4[], $6::int8[], $7::timestamp[],
            $8::timestamp[], $9::timestamp[], $10::jsonb[], $11::text[], $12::int4[], $13::timestamp[],
            $14::timestamp[], $15::int4[], $16::text[], $17::text[], $18::jsonb[], $19::int4[],
            $20::timestamp[], $21::int4[], $22::int2[], $23::text[], $24::timestamp[])
     AS i(id, expected_status, expected_droplet, status, droplet, droplet_key, assigned_at, started_at,
          completed_at, result, error_message, retry_count, updated_at, retry_after, attempt,
          changed_by, reason, metadata, expected_attempt, cancel_requested_at, requeues, progress,
          progress_message, progress_at)
), dequeued AS (
DELETE FROM task_queue q USING i
WHERE q.task_id = i.id AND i.expected_status = 'pending' AND q.attempt = i.expected_attempt
RETURNING q.task_id AS id
), run_kept AS (
UPDATE task_runs r SET",
    SET_LIVE,
    "
FROM i
WHERE r.task_id = i.id AND i.status IN ('assigned', 'in_progress')
  AND r.status = i.expected_status AND r.attempt = i.expected_attempt AND r.assigned_droplet_id = ",
    EXPECTED_DROPLET,
    "
RETURNING r.*
), run_ended AS (
DELETE FROM task_runs r USING i
WHERE r.task_id = i.id AND i.status NOT IN ('assigned', 'in_progress')
  AND r.status = i.expected_status AND r.attempt = i.expected_attempt AND r.assigned_droplet_id = ",
    EXPECTED_DROPLET,
    "
RETURNING r.task_id AS id
), run_started AS (
INSERT INTO task_runs (task_id, assigned_droplet_id, ",
    LIVE_COLUMNS,
    ")
SELECT i.id, ",
    NEW_DROPLET,
    ", ",
    qualified!(LIVE_COLUMNS, "i."),
    "
FROM i JOIN dequeued USING (id)
WHERE i.status IN ('assigned', 'in_progress')
RETURNING *
), touched AS (
UPDATE droplets d SET last_assigned_at = GREATEST(d.last_assigned_at, s.at)
FROM (SELECT assigned_droplet_id, max(updated_at) AS at FROM run_started
      WHERE status = 'assigned' GROUP BY assigned_droplet_id) s
WHERE d.id = s.assigned_droplet_id
), stored AS (
UPDATE tasks t SET assigned_droplet_id = ",
    NEW_DROPLET,
    ",",
    SET_LIVE,
    "
FROM i
WHERE t.id = i.id AND i.status NOT IN ('assigned', 'in_progress')
  AND (t.id IN (SELECT id FROM dequeued) OR t.id IN (SELECT id FROM run_ended)
       OR (i.expected_status IN ('completed', 'failed', 'cancelled') AND t.status = i.expected_status
           AND t.attempt = i.expected_attempt AND t.assigned_droplet_id IS NOT DISTINCT FROM ",
    EXPECTED_DROPLET,
    "))
RETURNING t.id, t.priority, t.deadline, t.created_at, t.required_capability, ",
    qualified!(LIVE_COLUMNS, "t."),
    "
), enqueued AS (
INSERT INTO task_queue (task_id, priority, deadline, created_at, required_capability, attempt, retry_after)
SELECT id, priority, deadline, coalesce(created_at, updated_at), required_capability, attempt, retry_after
FROM stored WHERE status = 'pending'
), changed AS (
SELECT id, ",
    LIVE_COLUMNS,
    " FROM stored
UNION ALL
SELECT task_id, ",
    LIVE_COLUMNS,
    " FROM run_kept
UNION ALL
SELECT task_id, ",
    LIVE_COLUMNS,
    " FROM run_started
), history AS (
INSERT INTO task_state_history (task_id, from_status, to_status, changed_by, reason, metadata, changed_at)
SELECT i.id, i.expected_status, c.status, i.changed_by, i.reason, i.metadata, c.updated_at
FROM changed c JOIN i USING (id)
)
SELECT id, ",
    LIVE_COLUMNS,
    "
FROM changed"
);

/// Queues tasks just made pending, from the rows `created` returned.
const QUEUE_CREATED: &str = "
), queued AS (
    INSERT INTO task_queue (task_id, priority, deadline, created_at, required_capability, attempt, retry_after)
    SELECT id, priority, deadline, created_at, required_capability, attempt, retry_after FROM created";

/// Creates tasks with their first history rows. The tasks arrive as
/// parallel arrays, one element per task; the history row of each is
/// joined back to its task by its unique `trace_id`.
pub(crate) const INSERT_WITH_HISTORY: &str = statement!(
    r"
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[],
                         $7::int4[], $8::timestamp[], $9::timestamp[], $10::int4[], $11::text[],
                         $12::text[], $13::jsonb[], $14::int4[])
        AS i(trace_id, task_type, title, description, payload, required_capability,
             priority, created_at, deadline, max_retries, created_by, reason, metadata, timeout_seconds)
), created AS (
    INSERT INTO tasks (trace_id, task_type, title, description, payload, required_capability, status,
                       priority, created_at, deadline, retry_count, max_retries, created_by, updated_at,
                       timeout_seconds)
    SELECT trace_id, task_type, title, description, payload, required_capability, 'pending',
           priority, created_at, deadline, 0, max_retries, created_by, created_at, timeout_seconds
    FROM input
    RETURNING ",
    COLUMNS,
    r"
), history AS (
    INSERT INTO task_state_history (task_id, from_status, to_status, changed_by, reason, metadata, changed_at)
    SELECT created.id, NULL, 'pending', input.created_by, input.reason, input.metadata, input.created_at
    FROM created JOIN input USING (trace_id)",
    QUEUE_CREATED,
    r"
)
SELECT * FROM created"
);

/// Queued tasks by priority.
pub(crate) const PENDING_BY_PRIORITY: &str = "\
SELECT coalesce(priority, 5)::text AS key, count(*) AS n
FROM task_queue
GROUP BY coalesce(priority, 5)";

/// Tasks created and finished in the window `[$1, $2)`; each count by
/// its own index.
pub(crate) const THROUGHPUT: &str = "\
SELECT (SELECT count(*) FROM tasks WHERE created_at >= $1 AND created_at < $2) AS created,
       (SELECT count(*) FROM tasks
        WHERE status IN ('completed', 'failed') AND completed_at >= $1 AND completed_at < $2) AS finished";

/// What the window statements read of each task that may lie in the
/// window starting at `$1`, as `w`: the finished tasks from the range of
/// `idx_tasks_finished_completed_at` that starts at `$1`, and the held
/// tasks from their run rows.
///
/// A finished task assigned or finished in a window finished at or after
/// its start, whatever its end; a task no droplet holds that has not
/// finished (queued, or made pending again) has no `assigned_at` nor
/// `completed_at` in its `tasks` row, so it is in no window. The range is
/// tight because every window ends within the last hour. The index
/// carries every column read here (migration 21): a day of tasks is an
/// index-only range, however many tasks are kept.
const LIFECYCLES_SINCE: &str = "(
SELECT id, task_type, status, assigned_droplet_id, created_at, assigned_at, started_at, completed_at
FROM tasks
WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at >= $1
UNION ALL
SELECT t.id, t.task_type, r.status, r.assigned_droplet_id, t.created_at, r.assigned_at, r.started_at,
       r.completed_at
FROM task_runs r JOIN tasks t ON t.id = r.task_id
) w";

/// Outcomes and percentiles of queue wait and run time in the window
/// `[$1, $2)`, over the lifecycles between its two parts. `$3`: the task
/// type or NULL; `$4`: the droplet's external id or NULL.
const PERFORMANCE_OF: (&str, &str) = (
    "\
SELECT count(*) FILTER (WHERE status IN ('completed', 'failed') AND completed_at >= $1 AND completed_at < $2)
         AS finished,
       count(*) FILTER (WHERE status = 'completed' AND completed_at >= $1 AND completed_at < $2) AS completed,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
         WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - created_at)::float8)
         FILTER (WHERE assigned_at >= $1 AND assigned_at < $2) AS queue_wait,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
         WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at)::float8)
         FILTER (WHERE status = 'completed' AND completed_at >= $1 AND completed_at < $2
                 AND started_at IS NOT NULL) AS run_time
FROM ",
    "
WHERE ($3::text IS NULL OR task_type = $3)
  AND ($4::int4 IS NULL OR assigned_droplet_id = (SELECT id FROM droplets WHERE droplet_id = $4))
  AND ((completed_at >= $1 AND completed_at < $2) OR (assigned_at >= $1 AND assigned_at < $2))",
);

pub(crate) const PERFORMANCE: &str = statement!(PERFORMANCE_OF.0, LIFECYCLES_SINCE, PERFORMANCE_OF.1);

/// Tasks created in the window `[$1, $2)`, by type and status.
pub(crate) const BY_TYPE: &str = "\
SELECT task_type::text, status::text, count(*) AS n
FROM task_view
WHERE created_at >= $1 AND created_at < $2
GROUP BY task_type, status";

/// Percentiles of the wait for a droplet of the tasks assigned in `[$1, $2)`.
const TIME_TO_ASSIGN_OF: (&str, &str) = (
    "\
SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
         WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - created_at)::float8) AS wait
FROM ",
    "
WHERE assigned_at >= $1 AND assigned_at < $2",
);

pub(crate) const TIME_TO_ASSIGN: &str =
    statement!(TIME_TO_ASSIGN_OF.0, LIFECYCLES_SINCE, TIME_TO_ASSIGN_OF.1);

/// Assignments in `[$1, $2)` by the droplet's external id.
const ASSIGNMENTS_OF: (&str, &str) = (
    "\
SELECT d.droplet_id::text AS key, count(*) AS n
FROM ",
    " JOIN droplets d ON d.id = w.assigned_droplet_id
WHERE w.assigned_at >= $1 AND w.assigned_at < $2
GROUP BY d.droplet_id",
);

pub(crate) const ASSIGNMENTS_PER_DROPLET: &str =
    statement!(ASSIGNMENTS_OF.0, LIFECYCLES_SINCE, ASSIGNMENTS_OF.1);

/// Pending tasks, by capability, that no active droplet offers.
pub(crate) const PENDING_WITHOUT_CAPABLE_DROPLET: &str = "\
SELECT t.required_capability::text AS key, count(*) AS n
FROM task_queue t
WHERE t.required_capability IS NOT NULL
  AND NOT EXISTS (
    SELECT 1 FROM droplets d
    WHERE d.status = 'active' AND d.capabilities @> jsonb_build_array(t.required_capability)
  )
GROUP BY t.required_capability";

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use orchestrator_testkit::pg::TestDatabase;

    use crate::run_migrations;
    use crate::sql::plans::explain;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pick_walks_the_queue_index_on_a_queue_never_analysed() {
        let database = TestDatabase::create().await;
        run_migrations(&database.url).await.expect("migrations");
        let queued = "WITH t AS (
            INSERT INTO tasks (task_type, title, payload, required_capability, status, priority, attempt)
            SELECT 'pick', 'task ' || g, '{}', 'echo', 'pending', 5, 0 FROM generate_series(1, 20000) g
            RETURNING *
        ), q AS (
            INSERT INTO task_queue (task_id, priority, created_at, required_capability, attempt)
            SELECT id, priority, created_at, required_capability, attempt FROM t RETURNING 1
        ) SELECT count(*) FROM q";
        assert_eq!(database.count(queued).await, 20_000);
        let mut conn = AsyncPgConnection::establish(&database.url)
            .await
            .expect("connect");
        let prepare = format!("PREPARE pick(bool, text[], int4) AS {}", super::LOCK_ROUTABLE);
        diesel::sql_query(prepare)
            .execute(&mut conn)
            .await
            .expect("prepare");
        // The plans a prepared statement runs with: its first runs are
        // planned for the values bound, later ones may keep a generic plan.
        for mode in ["force_custom_plan", "force_generic_plan"] {
            let plan = conn
                .transaction::<_, diesel::result::Error, _>(async |conn| {
                    diesel::sql_query(format!("SET LOCAL plan_cache_mode = {mode}"))
                        .execute(conn)
                        .await?;
                    diesel::sql_query(super::PICK_BY_QUEUE_ORDER)
                        .execute(conn)
                        .await?;
                    explain(conn, "EXECUTE pick(true, '{echo}', 100)").await
                })
                .await
                .expect("explain");
            assert!(
                plan.contains("Index Scan using idx_task_queue_order"),
                "{mode}: {plan}"
            );
            assert!(!plan.contains("Seq Scan on task_queue"), "{mode}: {plan}");
        }
    }

    fn names(list: &str) -> BTreeSet<&str> {
        list.split(", ").map(str::trim).collect()
    }

    #[test]
    fn the_fixed_and_live_columns_are_the_row_types_columns_once_each() {
        let fixed = names(super::FIXED_COLUMNS);
        let live = names(super::LIVE_COLUMNS);
        assert!(fixed.is_disjoint(&live));
        let all: BTreeSet<&str> = fixed.union(&live).copied().collect();
        assert_eq!(all, names(super::COLUMNS));
    }
}
