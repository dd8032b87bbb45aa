//! `orchestrator_rescues_total`: a Prometheus counter of work rescued or
//! refused, by kind and by the task's required capability (`(none)` for a
//! task that requires none). Each replica counts what it did; the store's
//! `/metrics/routing` figures count it for the whole mesh.

use orchestrator_domain::{RecoveryReason, Task, TaskStatus};

/// Kinds of rescue, as the counter's `kind` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rescue {
    /// Taken from a droplet that went silent, restarted, was drained with
    /// requeue or did not start it in time.
    Reassignment,
    AckTimeout,
    /// Its run went longer than its timeout without progress.
    RunTimeout,
    StaleReportRefused,
    DeadlineFailure,
    DeadlineAtRisk,
}

impl Rescue {
    fn label(self) -> &'static str {
        match self {
            Rescue::Reassignment => "reassignment",
            Rescue::AckTimeout => "ack_timeout",
            Rescue::RunTimeout => "run_timeout",
            Rescue::StaleReportRefused => "stale_report_refused",
            Rescue::DeadlineFailure => "deadline_failure",
            Rescue::DeadlineAtRisk => "deadline_at_risk",
        }
    }

    /// The rescues a recovery move for `reason` counts as.
    pub(crate) fn of_recovery(reason: RecoveryReason, moved_to: TaskStatus) -> &'static [Rescue] {
        match (reason, moved_to) {
            (RecoveryReason::NotStarted, _) => &[Rescue::Reassignment, Rescue::AckTimeout],
            (reason, _) if reason.is_droplet_lost() => &[Rescue::Reassignment],
            (RecoveryReason::RunTimedOut, _) => &[Rescue::RunTimeout],
            (RecoveryReason::DeadlinePassed, TaskStatus::Failed) => &[Rescue::DeadlineFailure],
            _ => &[],
        }
    }

    pub(crate) fn count(self, task: &Task) {
        let capability = task
            .required_capability
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |c| c.as_str().to_owned());
        ::metrics::counter!("orchestrator_rescues_total", "kind" => self.label(), "capability" => capability)
            .increment(1);
    }
}
