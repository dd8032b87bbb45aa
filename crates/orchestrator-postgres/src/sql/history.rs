//! Statements about `task_state_history`.

/// A history row for task `$1` that leaves its status `$2` as it is (a
/// refused report), written only if the task exists: no foreign key checks
/// it (migration 18).
pub(crate) const RECORD_FOR_TASK: &str = "\
INSERT INTO task_state_history (task_id, from_status, to_status, changed_by, reason, metadata, changed_at)
SELECT id, $2, $2, $3, $4, $5, $6 FROM tasks WHERE id = $1";

/// What recovery and fencing did in the window `[$1, $2)`, by capability:
/// from the history rows they write (see `RescueCounts::count_history`; the
/// partial index of migration 9 finds them) and the deadline warnings.
pub(crate) const RESCUES: &str = "\
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
    WHERE h.changed_at >= $1 AND h.changed_at < $2
      AND (h.metadata ? 'recovery' OR h.metadata ? 'refused')
    GROUP BY t.required_capability
    UNION ALL
    SELECT required_capability, 0, 0, 0, 0, count(*)
    FROM tasks
    WHERE deadline_risk_at >= $1 AND deadline_risk_at < $2
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
