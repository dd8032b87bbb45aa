//! Statements about `task_state_history`.

use chrono::NaiveDateTime;
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamp};

named_statement! {
    /// A history row for the `task` that leaves its `status` as it is (a
    /// refused report), written only if the task exists: no foreign key checks
    /// it (migration 18).
    pub(crate) RECORD_FOR_TASK: RecordForTask<'a> {
        task: BigInt = i64,
        status: Text = &'a str,
        changed_by: Nullable<Text> = Option<String>,
        reason: Nullable<Text> = Option<String>,
        metadata: Nullable<Jsonb> = Option<serde_json::Value>,
        at: Timestamp = NaiveDateTime,
    } = "\
INSERT INTO task_state_history (task_id, from_status, to_status, changed_by, reason, metadata, changed_at)
SELECT id, :status, :status, :changed_by, :reason, :metadata, :at FROM tasks WHERE id = :task";
}

named_statement! {
    /// What recovery and fencing did in the window `[since, until)`, by capability:
    /// from the history rows they write (see `RescueCounts::count_history`; the
    /// partial index of migration 9 finds them) and the deadline warnings.
    pub(crate) RESCUES: Rescues {
        since: Timestamp = NaiveDateTime,
        until: Timestamp = NaiveDateTime,
    } = "\
WITH rescued AS (
    SELECT t.required_capability AS capability,
           count(*) FILTER (WHERE h.metadata->>'recovery'
                              IN ('droplet_inactive', 'droplet_restarted', 'droplet_deactivated', 'not_started'))
             AS reassignments,
           count(*) FILTER (WHERE h.metadata->>'recovery' = 'not_started') AS ack_timeouts,
           count(*) FILTER (WHERE h.metadata->>'refused' = 'true') AS stale_reports_refused,
           count(*) FILTER (WHERE h.metadata->>'recovery' = 'deadline_passed') AS deadline_failures,
           0::bigint AS deadline_at_risk
    FROM task_state_history h JOIN tasks t ON t.id = h.task_id
    WHERE h.changed_at >= :since AND h.changed_at < :until
      AND (h.metadata ? 'recovery' OR h.metadata ? 'refused')
    GROUP BY t.required_capability
    UNION ALL
    SELECT required_capability, 0, 0, 0, 0, count(*)
    FROM tasks
    WHERE deadline_risk_at >= :since AND deadline_risk_at < :until
    GROUP BY required_capability
)
SELECT capability::text AS capability,
       sum(reassignments)::bigint AS reassignments,
       sum(ack_timeouts)::bigint AS ack_timeouts,
       sum(stale_reports_refused)::bigint AS stale_reports_refused,
       sum(deadline_failures)::bigint AS deadline_failures,
       sum(deadline_at_risk)::bigint AS deadline_at_risk
FROM rescued
GROUP BY capability
ORDER BY capability NULLS FIRST";
}
