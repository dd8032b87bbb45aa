//! Statements about tasks: routing, recovery, transitions, creation and
//! the analytics computed from them.
//!
//! A task lives in up to three tables (docs/storage-layout.md): `tasks`
//! holds every task as it was created and as it ended (and the pending
//! state of a retried or requeued one); `task_queue` one row per task
//! waiting for a droplet; `task_runs` the live state of each task a droplet
//! holds, in the [`LIVE_COLUMNS`]. `task_view` shows each task as the API
//! does, its run row over its `tasks` row.

use chrono::NaiveDateTime;
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Jsonb, Nullable, SmallInt, Text, Timestamp};

/// The columns of `tasks` that `TaskRow` reads, in its order: what a
/// statement returns of each task it reads whole.
pub(crate) const COLUMNS: &str = "id, trace_id, task_type, title, description, payload, required_capability, \
    status, priority, created_at, assigned_at, started_at, completed_at, deadline, result, error_message, \
    retry_count, max_retries, created_by, updated_at, retry_after, attempt, cancel_requested_at, timeout_seconds, \
    progress, progress_message, progress_at, requeues, run_at, concurrency_key";

/// The statuses of a task a droplet holds, which occupy its slots, as an
/// SQL list: `TaskStatus::occupies_droplet`, which a test holds it to.
/// `task_runs` holds the tasks in these statuses (its `CHECK`, migration
/// 18, checked by the same test).
pub(crate) const HELD: &str = "'assigned', 'in_progress'";

/// The columns of [`COLUMNS`] that a transition or a progress report
/// changes: a task's `task_runs` row holds them, under these names, while a
/// droplet holds the task.
pub(crate) const LIVE_COLUMNS: &str = "status, assigned_at, started_at, completed_at, result, error_message, \
    retry_count, updated_at, retry_after, attempt, cancel_requested_at, progress, progress_message, progress_at, \
    requeues";

/// The columns of [`COLUMNS`] written once, when the task is created.
pub(crate) const FIXED_COLUMNS: &str = "id, trace_id, task_type, title, description, payload, \
    required_capability, priority, created_at, deadline, max_retries, created_by, timeout_seconds, run_at, \
    concurrency_key";

/// A held task's columns as its run row `r` and its row `t` give them.
const RUN_OVER_TASK: &str = statement!(
    qualified!(FIXED_COLUMNS, "t."),
    ", ",
    qualified!(LIVE_COLUMNS, "r.")
);

/// The queue rows a pick may take: no lease running, requiring no
/// capability when `unconstrained`, or one of `capabilities`, and with no
/// concurrency key of [`FULL_KEYS`] (a task without a key reads nothing
/// more). The keys are an array computed once per pick, whatever the
/// queue holds, rather than a subquery for each keyed row.
const TAKEABLE: &str = "(q.routing_lease_until IS NULL OR q.routing_lease_until < (now() AT TIME ZONE 'UTC'))
  AND ((q.required_capability IS NULL AND :unconstrained) OR q.required_capability = ANY(:capabilities))
  AND (q.concurrency_key IS NULL OR q.concurrency_key <> ALL(ARRAY(SELECT key FROM full_keys)))";

/// The concurrency keys at their limit (`ConcurrencyLimit::has_room`: the
/// key's runs below `max_running`), as `full_keys`: the limits of 0, and
/// those of keys whose runs reach theirs, read from the run rows of keyed
/// tasks (so it costs what runs with a key, not how many keys have limits).
const FULL_KEYS: &str = "full_keys AS MATERIALIZED (
SELECT l.key FROM concurrency_limits l WHERE l.max_running = 0
UNION
SELECT r.concurrency_key FROM task_runs r JOIN concurrency_limits l ON l.key = r.concurrency_key
WHERE r.concurrency_key IS NOT NULL
GROUP BY r.concurrency_key, l.max_running
HAVING count(*) >= l.max_running
)";

/// Locks (`SKIP LOCKED`) the queued tasks ready to route, at most `limit`,
/// as `picked`, in routing order. Two walks of one index each, so that
/// neither reads a task still waiting, however many wait:
/// - `ready`: tasks that wait for nothing, in routing order, down
///   `idx_task_queue_order` (which holds only them) from its head;
/// - `come`: tasks whose `not_before` has passed, earliest first, down
///   `idx_task_queue_waiting`.
///
/// Of the two, the first `limit` in routing order are picked; a row
/// locked but not picked waits for the round's commit, and the next pick.
/// Among tasks whose wait has ended, those due first are taken first.
const PICK_ROUTABLE: &str = statement!(
    "WITH ",
    FULL_KEYS,
    ", ready AS (
SELECT q.task_id, q.priority, q.deadline, q.created_at
FROM task_queue q
WHERE q.not_before IS NULL AND ",
    TAKEABLE,
    "
ORDER BY q.priority, q.deadline, q.created_at, q.task_id
LIMIT :limit
FOR UPDATE SKIP LOCKED
), come AS (
SELECT q.task_id, q.priority, q.deadline, q.created_at
FROM task_queue q
WHERE q.not_before <= (now() AT TIME ZONE 'UTC') AND ",
    TAKEABLE,
    "
ORDER BY q.not_before
LIMIT :limit
FOR UPDATE SKIP LOCKED
), picked AS (
SELECT * FROM ready UNION ALL SELECT * FROM come
ORDER BY priority, deadline, created_at, task_id
LIMIT :limit
)"
);

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

named_statement! {
    /// Locks a batch of [`PICK_ROUTABLE`] queue rows for the length of one routing
    /// round's transaction and reads their tasks. `SKIP LOCKED` lets other
    /// replicas' rounds pass over them; a cancel or a deadline failure of one
    /// of them waits for the round, whose assignment deletes the row. A lease
    /// still running (set by [`CLAIM_PENDING`]) is respected.
    pub(crate) LOCK_ROUTABLE: LockRoutable {
        unconstrained: Bool = bool,
        capabilities: Array<Text> = Vec<String>,
        limit: Integer = i32,
    } = statement!(PICK_ROUTABLE, PICKED_TASKS);
}

/// Run in a round's transaction before [`LOCK_ROUTABLE`]: the pick reads
/// the queue by its ordering index. Walking it from the head and stopping
/// after the batch is the one good plan for a queue, but the planner
/// judges it by its estimate of how many rows pass the pick's filter, and
/// on a queue not yet analysed (a new database, or autovacuum behind) it
/// reads and sorts the whole queue instead: 16.8 against 0.8 ms for
/// 20,000 queued tasks, and 306 µs of each task in W1. Since the index
/// holds only the tasks that wait for nothing (migration 23), it would
/// read it whole as a bitmap instead: both are turned off, in one
/// statement, after their values are kept (the subquery runs first: its
/// volatile calls keep it from being merged into the outer query).
///
/// JIT compilation is turned off too: with the sequential scans off, the
/// one left in the pick (the limits of 0 in [`FULL_KEYS`], a table of a
/// few rows) is costed at 10^10, far past `jit_above_cost`, and compiling
/// the pick took 250 ms a round; a pick of one batch never gains from it.
pub(crate) const PICK_BY_QUEUE_ORDER: &str = "\
SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
       set_config('jit', 'off', true)
FROM (SELECT set_config('orchestrator.enable_seqscan', current_setting('enable_seqscan'), true),
             set_config('orchestrator.enable_bitmapscan', current_setting('enable_bitmapscan'), true),
             set_config('orchestrator.jit', current_setting('jit'), true)) kept";

/// Run after [`LOCK_ROUTABLE`]: the rest of the round is planned as usual,
/// with the values [`PICK_BY_QUEUE_ORDER`] kept. (Reading `pg_settings`
/// for their defaults cost 0.9 ms a round.)
pub(crate) const PLAN_AS_USUAL: &str = "\
SELECT set_config('enable_seqscan', current_setting('orchestrator.enable_seqscan'), true),
       set_config('enable_bitmapscan', current_setting('orchestrator.enable_bitmapscan'), true),
       set_config('jit', current_setting('orchestrator.jit'), true)";

/// Set in a round's transaction once its tasks are locked: a round whose
/// assignments fail together goes back here and makes them one by one.
/// Sent with the pick, it costs no round trip of its own; it is never
/// released, which the commit does not need.
pub(crate) const ROUND_SAVEPOINT: &str = "SAVEPOINT routing_round";

/// Undoes a round's failed assignments, keeping its tasks locked.
pub(crate) const BACK_TO_ROUND_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT routing_round";

named_statement! {
    /// Claims a batch of [`PICK_ROUTABLE`] tasks for a lease of `lease_seconds`
    /// measured on the database's clock. `SKIP LOCKED` lets concurrent claims
    /// on other replicas pass over rows being claimed here instead of waiting
    /// for them.
    pub(crate) CLAIM_PENDING: ClaimPending {
        unconstrained: Bool = bool,
        capabilities: Array<Text> = Vec<String>,
        limit: Integer = i32,
        lease_seconds: Double = f64,
    } = statement!(
    PICK_ROUTABLE,
    ", leased AS (
UPDATE task_queue SET routing_lease_until = (now() AT TIME ZONE 'UTC') + make_interval(secs => :lease_seconds)
WHERE task_id IN (SELECT task_id FROM picked)
RETURNING task_id
)",
    PICKED_TASKS
);
}

named_statement! {
    /// Releases the leases of those of the `tasks` still queued.
    pub(crate) RELEASE_CLAIMS: ReleaseClaims<'a> {
        tasks: Array<BigInt> = &'a [i64],
    } = "UPDATE task_queue SET routing_lease_until = NULL WHERE task_id = ANY(:tasks)";
}

named_statement! {
    /// Tasks recovery must move, with the first reason that applies, on the
    /// database's clock: at most `limit`, with ids above `after`, in id
    /// order. `ack_timeout` is the acknowledgement timeout,
    /// `heartbeat_timeout` the one after which a drained droplet's work is
    /// taken too, `run_timeout` the default run timeout (0: none), all in
    /// seconds. Each condition is written once (`judged`) and
    /// both picks and names the candidates; tasks recovery cannot move (a
    /// failed task asked to stop, or past its deadline) are never candidates,
    /// so that a pass never stalls on them.
    pub(crate) TO_RECOVER: ToRecover {
        ack_timeout: Double = f64,
        heartbeat_timeout: Double = f64,
        run_timeout: Double = f64,
        after: BigInt = i64,
        limit: Integer = i32,
    } = statement!(
    "\
WITH clock AS (SELECT now() AT TIME ZONE 'UTC' AS now),
judged AS (
SELECT t.id, d.droplet_id AS external_droplet_id,
       CASE
         WHEN t.deadline < c.now AND t.status IN ('pending', 'assigned', 'in_progress') THEN 'deadline_passed'
         WHEN t.status IN (",
    HELD,
    ") AND (
              d.id IS NULL OR d.status = 'error'
              OR (d.status = 'inactive' AND (NOT d.manually_deactivated OR d.last_heartbeat IS NULL
                  OR d.last_heartbeat < c.now - make_interval(secs => :heartbeat_timeout))))
           THEN 'droplet_inactive'
         WHEN t.status IN (",
    HELD,
    ") AND t.assigned_at < d.session_started_at
           THEN 'droplet_restarted'
         WHEN t.status = 'in_progress' AND coalesce(t.timeout_seconds, :run_timeout) > 0
              AND greatest(t.started_at, t.progress_at)
                  < c.now - make_interval(secs => coalesce(t.timeout_seconds, :run_timeout))
           THEN 'run_timed_out'
         WHEN t.status = 'assigned' AND t.assigned_at < c.now - make_interval(secs => :ack_timeout) THEN 'not_started'
         WHEN t.status = 'failed' AND coalesce(t.retry_count, 0) < coalesce(t.max_retries, 3)
              AND t.cancel_requested_at IS NULL AND (t.deadline IS NULL OR t.deadline >= c.now)
           THEN 'retry_pending'
       END AS reason
FROM task_view t
LEFT JOIN droplets d ON d.id = t.assigned_droplet_id
CROSS JOIN clock c
WHERE t.id IN (
    SELECT task_id FROM task_runs WHERE task_id > :after
    UNION ALL
    SELECT id FROM tasks WHERE status = 'failed' AND id > :after
    UNION ALL
    SELECT task_id FROM task_queue WHERE deadline < (SELECT now FROM clock) AND task_id > :after
)
)
SELECT ",
    qualified!(COLUMNS, "t."),
    ", j.external_droplet_id, j.reason
FROM judged j JOIN task_view t ON t.id = j.id
WHERE j.reason IS NOT NULL
ORDER BY t.id
LIMIT :limit"
);
}

named_statement! {
    /// Records a progress report (`percent`, `message`, at `at`) on the
    /// running `task` while it is still on `attempt` of the droplet with
    /// external id `droplet`; returns the task and its droplet's name. No history
    /// row: progress is not a change of state. It is a heap-only update of the
    /// run row.
    pub(crate) RECORD_PROGRESS: RecordProgress<'a> {
        task: BigInt = i64,
        attempt: Integer = i32,
        droplet: Integer = i32,
        percent: Nullable<SmallInt> = Option<i16>,
        message: Nullable<Text> = Option<&'a str>,
        at: Timestamp = NaiveDateTime,
    } = statement!(
    "\
WITH r AS (
UPDATE task_runs SET progress = :percent, progress_message = :message, progress_at = :at, updated_at = :at
WHERE task_id = :task AND status = 'in_progress' AND attempt = :attempt
  AND assigned_droplet_id = (SELECT d.id FROM droplets d WHERE d.droplet_id = :droplet)
RETURNING *
)
SELECT ",
    RUN_OVER_TASK,
    ", d.name AS droplet_name
FROM r JOIN tasks t ON t.id = r.task_id JOIN droplets d ON d.id = r.assigned_droplet_id"
);
}

named_statement! {
    /// Unfinished tasks whose deadline is nearer than `floor_seconds` or the
    /// p95 run time of their type over the last day, not reported before: marked
    /// and returned, at most `limit`, on the database's clock. An unfinished
    /// task's row says `pending`, whatever holds it.
    pub(crate) FLAG_DEADLINE_RISKS: FlagDeadlineRisks {
        floor_seconds: Double = f64,
        limit: Integer = i32,
    } = statement!(
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
      AND t.deadline < c.now + make_interval(secs => greatest(:floor_seconds, coalesce(r.p95, 0)))
    ORDER BY t.deadline, t.id
    LIMIT :limit
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
}

named_statement! {
    /// Deletes at most `limit` tasks finished for good (`Task::is_finished`, a
    /// deadline judged by the database's clock) that completed before `before`,
    /// with their history and their rows of workflows (a workflow goes with
    /// its last task). It reads finished rows only (the partial index of
    /// migration 15) and skips those another transaction holds, so that live
    /// work never waits on it. The history goes in the same statement, in one
    /// pass, before the cascade of its foreign key would look for it task by task.
    pub(crate) DELETE_FINISHED: DeleteFinished {
        before: Timestamp = NaiveDateTime,
        limit: Integer = i32,
    } = "\
WITH old AS (
    SELECT id FROM tasks
    WHERE status IN ('completed', 'cancelled', 'failed') AND completed_at < :before
      AND (status <> 'failed'
           OR coalesce(retry_count, 0) >= coalesce(max_retries, 3)
           OR cancel_requested_at IS NOT NULL
           OR deadline < (now() AT TIME ZONE 'UTC'))
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), history AS (
    DELETE FROM task_state_history WHERE task_id IN (SELECT id FROM old)
), dependencies AS (
    DELETE FROM task_dependencies WHERE task_id IN (SELECT id FROM old)
), members AS (
    DELETE FROM workflow_tasks WHERE task_id IN (SELECT id FROM old) RETURNING workflow_id
), emptied AS (
    DELETE FROM workflows w WHERE w.id IN (SELECT workflow_id FROM members)
      AND NOT EXISTS (SELECT 1 FROM workflow_tasks m
                      WHERE m.workflow_id = w.id AND m.task_id NOT IN (SELECT id FROM old))
)
DELETE FROM tasks WHERE id IN (SELECT id FROM old)";
}

/// Pending and held tasks: the queue and the run rows, so the read does not
/// grow with the finished tasks kept.
pub(crate) const COUNT_LIVE: &str = "\
SELECT (SELECT count(*) FROM task_queue) AS pending, (SELECT count(*) FROM task_runs) AS held";

named_statement! {
    /// Marks a cancel request, at `at`, on the running `task` of the droplet
    /// with external id `droplet`.
    pub(crate) MARK_CANCEL_REQUESTED: MarkCancelRequested {
        task: BigInt = i64,
        at: Timestamp = NaiveDateTime,
        droplet: Nullable<Integer> = Option<i32>,
    } = "\
UPDATE task_runs SET cancel_requested_at = :at, updated_at = :at
WHERE task_id = :task AND status = 'in_progress' AND cancel_requested_at IS NULL
  AND assigned_droplet_id = (SELECT d.id FROM droplets d WHERE d.droplet_id = :droplet)";
}

named_statement! {
    /// The tasks holding a slot of each of the `droplets` (external ids), by
    /// external id. Sent with [`super::droplets::LOCK_TARGETS`] in one round
    /// trip: being a statement of its own that runs after the locks are held,
    /// it sees the assignments of any transaction that held them before.
    pub(crate) COUNT_HELD: CountHeld<'a> { droplets: Array<Integer> = &'a [i32] } = "\
SELECT d.droplet_id AS droplet, count(*) AS held
FROM droplets d JOIN task_runs r ON r.assigned_droplet_id = d.id
WHERE d.droplet_id = ANY(:droplets)
GROUP BY d.droplet_id";
}

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

named_statement! {
    /// The tasks of the droplet with external id `droplet` (those it ended, in
    /// `tasks`, and those it holds, in `task_runs`: a held task's `tasks` row
    /// has no droplet), in status `status` or any when NULL; each part by its
    /// table's droplet index. `key` is unused.
    pub(crate) COUNT_OF_DROPLET: CountOfDroplet<'a> {
        droplet: Integer = i32,
        status: Nullable<Text> = Option<&'a str>,
    } = "\
WITH d AS (SELECT id FROM droplets WHERE droplet_id = :droplet)
SELECT '' AS key,
       (SELECT count(*) FROM tasks t, d WHERE t.assigned_droplet_id = d.id AND (:status::text IS NULL OR t.status = :status))
     + (SELECT count(*) FROM task_runs r, d WHERE r.assigned_droplet_id = d.id AND (:status::text IS NULL OR r.status = :status))
       AS n";
}

named_statement! {
    /// The `tasks` as a droplet's report reads them: whole, with their
    /// droplet's external id and name.
    pub(crate) READ_FOR_REPORTS: ReadForReports<'a> {
        tasks: Array<BigInt> = &'a [i64],
    } = statement!(
    "SELECT ",
    qualified!(COLUMNS, "v."),
    ", d.droplet_id AS external_droplet_id, d.name AS droplet_name
FROM task_view v LEFT JOIN droplets d ON d.id = v.assigned_droplet_id
WHERE v.id = ANY(:tasks)"
);
}

named_statement! {
    /// The status of each task in `tasks`.
    pub(crate) STATUSES: Statuses<'a> {
        tasks: Array<BigInt> = &'a [i64],
    } = "SELECT id, status::text FROM task_view WHERE id = ANY(:tasks)";
}

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

named_statement! {
    /// The compare-and-set of a batch of transitions, one array per column,
    /// and the history rows of those it applied, in one statement.
    /// `expected_droplet` and `droplet` are external droplet ids, looked up
    /// here; `droplet_key` carries the internal id where the batch already
    /// knows it (a locked target).
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
    pub(crate) APPLY_TRANSITIONS: #[derive(Default)] ApplyTransitions {
        id: Array<BigInt> = Vec<i64>,
        expected_status: Array<Text> = Vec<String>,
        expected_droplet: Array<Nullable<Integer>> = Vec<Option<i32>>,
        status: Array<Text> = Vec<String>,
        droplet: Array<Nullable<Integer>> = Vec<Option<i32>>,
        droplet_key: Array<Nullable<BigInt>> = Vec<Option<i64>>,
        assigned_at: Array<Nullable<Timestamp>> = Vec<Option<NaiveDateTime>>,
        started_at: Array<Nullable<Timestamp>> = Vec<Option<NaiveDateTime>>,
        completed_at: Array<Nullable<Timestamp>> = Vec<Option<NaiveDateTime>>,
        result: Array<Nullable<Jsonb>> = Vec<Option<serde_json::Value>>,
        error_message: Array<Nullable<Text>> = Vec<Option<String>>,
        retry_count: Array<Nullable<Integer>> = Vec<Option<i32>>,
        updated_at: Array<Timestamp> = Vec<NaiveDateTime>,
        retry_after: Array<Nullable<Timestamp>> = Vec<Option<NaiveDateTime>>,
        attempt: Array<Integer> = Vec<i32>,
        changed_by: Array<Nullable<Text>> = Vec<Option<String>>,
        reason: Array<Nullable<Text>> = Vec<Option<String>>,
        metadata: Array<Nullable<Jsonb>> = Vec<Option<serde_json::Value>>,
        expected_attempt: Array<Integer> = Vec<i32>,
        cancel_requested_at: Array<Nullable<Timestamp>> = Vec<Option<NaiveDateTime>>,
        requeues: Array<Integer> = Vec<i32>,
        progress: Array<Nullable<SmallInt>> = Vec<Option<i16>>,
        progress_message: Array<Nullable<Text>> = Vec<Option<String>>,
        progress_at: Array<Nullable<Timestamp>> = Vec<Option<NaiveDateTime>>,
    } = statement!(
    "\
WITH i AS (
SELECT * FROM unnest(:id::int8[], :expected_status::text[], :expected_droplet::int4[], :status::text[], :droplet::int4[], :droplet_key::int8[], :assigned_at::timestamp[],
            :started_at::timestamp[], :completed_at::timestamp[], :result::jsonb[], :error_message::text[], :retry_count::int4[], :updated_at::timestamp[],
            :retry_after::timestamp[], :attempt::int4[], :changed_by::text[], :reason::text[], :metadata::jsonb[], :expected_attempt::int4[],
            :cancel_requested_at::timestamp[], :requeues::int4[], :progress::int2[], :progress_message::text[], :progress_at::timestamp[])
     AS i(id, expected_status, expected_droplet, status, droplet, droplet_key, assigned_at, started_at,
          completed_at, result, error_message, retry_count, updated_at, retry_after, attempt,
          changed_by, reason, metadata, expected_attempt, cancel_requested_at, requeues, progress,
          progress_message, progress_at)
), dequeued AS (
DELETE FROM task_queue q USING i
WHERE q.task_id = i.id AND i.expected_status = 'pending' AND q.attempt = i.expected_attempt
RETURNING q.task_id AS id, q.concurrency_key
), run_kept AS (
UPDATE task_runs r SET",
    SET_LIVE,
    "
FROM i
WHERE r.task_id = i.id AND i.status IN (",
    HELD,
    ")
  AND r.status = i.expected_status AND r.attempt = i.expected_attempt AND r.assigned_droplet_id = ",
    EXPECTED_DROPLET,
    "
RETURNING r.*
), run_ended AS (
DELETE FROM task_runs r USING i
WHERE r.task_id = i.id AND i.status NOT IN (",
    HELD,
    ")
  AND r.status = i.expected_status AND r.attempt = i.expected_attempt AND r.assigned_droplet_id = ",
    EXPECTED_DROPLET,
    "
RETURNING r.task_id AS id
), run_started AS (
INSERT INTO task_runs (task_id, assigned_droplet_id, concurrency_key, ",
    LIVE_COLUMNS,
    ")
SELECT i.id, ",
    NEW_DROPLET,
    ", dequeued.concurrency_key, ",
    qualified!(LIVE_COLUMNS, "i."),
    "
FROM i JOIN dequeued USING (id)
WHERE i.status IN (",
    HELD,
    ")
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
WHERE t.id = i.id AND i.status NOT IN (",
    HELD,
    ")
  AND (t.id IN (SELECT id FROM dequeued) OR t.id IN (SELECT id FROM run_ended)
       OR (i.expected_status IN ('completed', 'failed', 'cancelled') AND t.status = i.expected_status
           AND t.attempt = i.expected_attempt AND t.assigned_droplet_id IS NOT DISTINCT FROM ",
    EXPECTED_DROPLET,
    "))
RETURNING t.id, t.priority, t.deadline, t.created_at, t.required_capability, t.run_at, t.concurrency_key, ",
    qualified!(LIVE_COLUMNS, "t."),
    "
), enqueued AS (
INSERT INTO task_queue (task_id, priority, deadline, created_at, required_capability, attempt, not_before,
                        concurrency_key)
SELECT id, priority, deadline, coalesce(created_at, updated_at), required_capability, attempt,
       greatest(run_at, retry_after), concurrency_key
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
}

/// Queues tasks just made pending, from the rows `created` returned; a
/// new task waits for its `run_at` alone (`Task::not_before`).
const QUEUE_CREATED: &str = "
), queued AS (
    INSERT INTO task_queue (task_id, priority, deadline, created_at, required_capability, attempt, not_before,
                            concurrency_key)
    SELECT id, priority, deadline, created_at, required_capability, attempt, run_at, concurrency_key FROM created";

named_statement! {
    /// Creates tasks with their first history rows. The tasks arrive as
    /// parallel arrays, one element per task; the history row of each is
    /// joined back to its task by its unique `trace_id`.
    pub(crate) INSERT_WITH_HISTORY: #[derive(Default)] InsertWithHistory {
        trace_id: Array<diesel::sql_types::Uuid> = Vec<uuid::Uuid>,
        task_type: Array<Text> = Vec<String>,
        title: Array<Text> = Vec<String>,
        description: Array<Nullable<Text>> = Vec<Option<String>>,
        payload: Array<Jsonb> = Vec<serde_json::Value>,
        required_capability: Array<Nullable<Text>> = Vec<Option<String>>,
        priority: Array<Integer> = Vec<i32>,
        created_at: Array<Timestamp> = Vec<NaiveDateTime>,
        deadline: Array<Nullable<Timestamp>> = Vec<Option<NaiveDateTime>>,
        max_retries: Array<Integer> = Vec<i32>,
        created_by: Array<Nullable<Text>> = Vec<Option<String>>,
        reason: Array<Nullable<Text>> = Vec<Option<String>>,
        metadata: Array<Nullable<Jsonb>> = Vec<Option<serde_json::Value>>,
        timeout_seconds: Array<Nullable<Integer>> = Vec<Option<i32>>,
        run_at: Array<Nullable<Timestamp>> = Vec<Option<NaiveDateTime>>,
        concurrency_key: Array<Nullable<Text>> = Vec<Option<String>>,
    } = statement!(
    r"
WITH input AS (
    SELECT * FROM unnest(:trace_id::uuid[], :task_type::text[], :title::text[], :description::text[], :payload::jsonb[], :required_capability::text[],
                         :priority::int4[], :created_at::timestamp[], :deadline::timestamp[], :max_retries::int4[], :created_by::text[],
                         :reason::text[], :metadata::jsonb[], :timeout_seconds::int4[], :run_at::timestamp[],
                         :concurrency_key::text[])
        AS i(trace_id, task_type, title, description, payload, required_capability,
             priority, created_at, deadline, max_retries, created_by, reason, metadata, timeout_seconds, run_at,
             concurrency_key)
), created AS (
    INSERT INTO tasks (trace_id, task_type, title, description, payload, required_capability, status,
                       priority, created_at, deadline, retry_count, max_retries, created_by, updated_at,
                       timeout_seconds, run_at, concurrency_key)
    SELECT trace_id, task_type, title, description, payload, required_capability, 'pending',
           priority, created_at, deadline, 0, max_retries, created_by, created_at, timeout_seconds, run_at,
           concurrency_key
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
}

/// When the first queued task not yet due becomes due, by the database's
/// clock, as `PICK_ROUTABLE` judges it; `idx_task_queue_waiting` holds only the
/// waiting ones. A task held for its dependencies ('infinity') has no time.
pub(crate) const NEXT_DUE: &str = "\
SELECT min(not_before) AS at FROM task_queue
WHERE not_before > (now() AT TIME ZONE 'UTC') AND not_before < 'infinity'";

/// Queued tasks by priority.
pub(crate) const PENDING_BY_PRIORITY: &str = "\
SELECT coalesce(priority, 5)::text AS key, count(*) AS n
FROM task_queue
GROUP BY coalesce(priority, 5)";

named_statement! {
    /// Tasks created and finished in the window `[since, until)`; each count by
    /// its own index.
    pub(crate) THROUGHPUT: Throughput {
        since: Timestamp = NaiveDateTime,
        until: Timestamp = NaiveDateTime,
    } = "\
SELECT (SELECT count(*) FROM tasks WHERE created_at >= :since AND created_at < :until) AS created,
       (SELECT count(*) FROM tasks
        WHERE status IN ('completed', 'failed') AND completed_at >= :since AND completed_at < :until) AS finished";
}

/// What the window statements read of each task that may lie in the
/// window starting at `since`, as `w`: the finished tasks from the range of
/// `idx_tasks_finished_completed_at` that starts at `since`, and the held
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
WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at >= :since
UNION ALL
SELECT t.id, t.task_type, r.status, r.assigned_droplet_id, t.created_at, r.assigned_at, r.started_at,
       r.completed_at
FROM task_runs r JOIN tasks t ON t.id = r.task_id
) w";

/// Outcomes and percentiles of queue wait and run time in the window
/// `[:since, :until)`, over the lifecycles between its two parts. `:task_type`: the task
/// type or NULL; `:droplet`: the droplet's external id or NULL.
const PERFORMANCE_OF: (&str, &str) = (
    "\
SELECT count(*) FILTER (WHERE status IN ('completed', 'failed') AND completed_at >= :since AND completed_at < :until)
         AS finished,
       count(*) FILTER (WHERE status = 'completed' AND completed_at >= :since AND completed_at < :until) AS completed,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
         WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - created_at)::float8)
         FILTER (WHERE assigned_at >= :since AND assigned_at < :until) AS queue_wait,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
         WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at)::float8)
         FILTER (WHERE status = 'completed' AND completed_at >= :since AND completed_at < :until
                 AND started_at IS NOT NULL) AS run_time
FROM ",
    "
WHERE (:task_type::text IS NULL OR task_type = :task_type)
  AND (:droplet::int4 IS NULL OR assigned_droplet_id = (SELECT id FROM droplets WHERE droplet_id = :droplet))
  AND ((completed_at >= :since AND completed_at < :until) OR (assigned_at >= :since AND assigned_at < :until))",
);

named_statement! {
    pub(crate) PERFORMANCE: Performance<'a> {
        since: Timestamp = NaiveDateTime,
        until: Timestamp = NaiveDateTime,
        task_type: Nullable<Text> = Option<&'a str>,
        droplet: Nullable<Integer> = Option<i32>,
    } = statement!(PERFORMANCE_OF.0, LIFECYCLES_SINCE, PERFORMANCE_OF.1);
}

named_statement! {
    /// Tasks created in the window `[:since, :until)`, by type and status.
    pub(crate) BY_TYPE: ByType {
        since: Timestamp = NaiveDateTime,
        until: Timestamp = NaiveDateTime,
    } = "\
SELECT task_type::text, status::text, count(*) AS n
FROM task_view
WHERE created_at >= :since AND created_at < :until
GROUP BY task_type, status";
}

/// Percentiles of the wait for a droplet of the tasks assigned in `[:since, :until)`.
const TIME_TO_ASSIGN_OF: (&str, &str) = (
    "\
SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
         WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - created_at)::float8) AS wait
FROM ",
    "
WHERE assigned_at >= :since AND assigned_at < :until",
);

named_statement! {
    pub(crate) TIME_TO_ASSIGN: TimeToAssign {
        since: Timestamp = NaiveDateTime,
        until: Timestamp = NaiveDateTime,
    } = statement!(TIME_TO_ASSIGN_OF.0, LIFECYCLES_SINCE, TIME_TO_ASSIGN_OF.1);
}

/// Assignments in `[:since, :until)` by the droplet's external id.
const ASSIGNMENTS_OF: (&str, &str) = (
    "\
SELECT d.droplet_id::text AS key, count(*) AS n
FROM ",
    " JOIN droplets d ON d.id = w.assigned_droplet_id
WHERE w.assigned_at >= :since AND w.assigned_at < :until
GROUP BY d.droplet_id",
);

named_statement! {
    pub(crate) ASSIGNMENTS_PER_DROPLET: AssignmentsPerDroplet {
        since: Timestamp = NaiveDateTime,
        until: Timestamp = NaiveDateTime,
    } = statement!(ASSIGNMENTS_OF.0, LIFECYCLES_SINCE, ASSIGNMENTS_OF.1);
}

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

    /// The statuses that occupy a droplet's slot, as the domain defines them.
    fn held_by_the_domain() -> BTreeSet<&'static str> {
        orchestrator_domain::TaskStatus::ALL
            .into_iter()
            .filter(|s| s.occupies_droplet())
            .map(|s| s.as_str())
            .collect()
    }

    /// The statuses an SQL list like `'a', 'b'` names.
    fn listed(sql: &str) -> BTreeSet<&str> {
        sql.split(',').map(|s| s.trim().trim_matches('\'')).collect()
    }

    #[test]
    fn the_statements_hold_a_slot_for_the_statuses_the_domain_does() {
        assert_eq!(listed(super::HELD), held_by_the_domain());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_rows_take_the_statuses_the_domain_holds_a_slot_for() {
        let database = TestDatabase::create().await;
        run_migrations(&database.url).await.expect("migrations");
        let mut conn = AsyncPgConnection::establish(&database.url)
            .await
            .expect("connect");
        #[derive(diesel::QueryableByName)]
        struct Check {
            #[diesel(sql_type = diesel::sql_types::Text)]
            definition: String,
        }
        let check: Check = diesel::sql_query(
            "SELECT pg_get_constraintdef(c.oid) AS definition FROM pg_constraint c
             WHERE c.conrelid = 'task_runs'::regclass AND c.contype = 'c'
               AND pg_get_constraintdef(c.oid) LIKE '%status%'",
        )
        .get_result(&mut conn)
        .await
        .expect("the CHECK of task_runs.status");
        // CHECK (((status)::text = ANY ((ARRAY['assigned'::character varying, ...])::text[])))
        let named: BTreeSet<&str> = check.definition.split('\'').skip(1).step_by(2).collect();
        assert_eq!(named, held_by_the_domain(), "{}", check.definition);
    }

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
        // The plans a prepared statement runs with: its first runs are
        // planned for the values bound, later ones may keep a generic plan.
        for mode in ["force_custom_plan", "force_generic_plan"] {
            let plan = plan_of_pick(&database.url, mode, "EXECUTE pick(true, '{echo}', 100)").await;
            assert!(
                plan.contains("Index Scan using idx_task_queue_order"),
                "{mode}: {plan}"
            );
            assert!(!plan.contains("Seq Scan on task_queue"), "{mode}: {plan}");
        }
    }

    /// The plan of `execute`, a call of the prepared pick `pick`, in a
    /// round's transaction with `plan_cache_mode` set to `mode`.
    async fn plan_of_pick(url: &str, mode: &str, execute: &str) -> String {
        let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
        let prepare = format!("PREPARE pick(bool, text[], int4) AS {}", super::LOCK_ROUTABLE);
        diesel::sql_query(prepare)
            .execute(&mut conn)
            .await
            .expect("prepare");
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            diesel::sql_query(format!("SET LOCAL plan_cache_mode = {mode}"))
                .execute(conn)
                .await?;
            diesel::sql_query(super::PICK_BY_QUEUE_ORDER)
                .execute(conn)
                .await?;
            explain(conn, execute).await
        })
        .await
        .expect("explain")
    }

    /// However many tasks wait ahead in the routing order, a pick reads
    /// none of them: each of its walks has an index of its own rows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pick_reads_no_task_still_waiting() {
        let database = TestDatabase::create().await;
        run_migrations(&database.url).await.expect("migrations");
        let queue = |ids: &str, priority: i32, not_before: &str| {
            format!(
                "WITH q AS (INSERT INTO task_queue (task_id, priority, created_at, attempt, not_before)
                 SELECT g, {priority}, now(), 0, {not_before} FROM generate_series({ids}) g RETURNING 1)
                 SELECT count(*) FROM q"
            )
        };
        let waiting = queue("1, 20000", 1, "now() + interval '1 hour'");
        assert_eq!(database.count(&waiting).await, 20_000);
        assert_eq!(database.count(&queue("20001, 20005", 5, "NULL")).await, 5);
        assert_eq!(
            database
                .count(&queue("20006, 20007", 9, "now() - interval '1 second'"))
                .await,
            2
        );
        let plan = plan_of_pick(&database.url, "auto", "EXECUTE pick(true, '{}', 100)").await;
        assert!(
            plan.contains("Index Scan using idx_task_queue_order")
                && plan.contains("Index Scan using idx_task_queue_waiting"),
            "{plan}"
        );
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
