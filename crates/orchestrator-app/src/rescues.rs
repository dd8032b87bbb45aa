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
            .map_or_else(|| "(none)".to_owned(), |c| capability_label(c.as_str()));
        ::metrics::counter!("orchestrator_rescues_total", "kind" => self.label(), "capability" => capability)
            .increment(1);
    }
}

/// Capabilities with a label of their own; the rest are counted as `other`.
static LABELLED: std::sync::Mutex<Option<std::collections::HashSet<String>>> = std::sync::Mutex::new(None);
static MOST_LABELLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(100);

/// Gives at most `most` capabilities a label of their own in the counters
/// (`MAX_LABELLED_CAPABILITIES`): a client invents capabilities at will,
/// and each label value is a series kept for the life of the process.
pub fn limit_capability_labels(most: usize) {
    MOST_LABELLED.store(most, std::sync::atomic::Ordering::Relaxed);
}

/// `capability` as a label: itself while it is among the first ones seen,
/// `other` past the limit.
pub(crate) fn capability_label(capability: &str) -> String {
    let mut labelled = LABELLED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let labelled = labelled.get_or_insert_with(Default::default);
    if labelled.contains(capability) {
        return capability.to_owned();
    }
    if labelled.len() < MOST_LABELLED.load(std::sync::atomic::Ordering::Relaxed) {
        labelled.insert(capability.to_owned());
        return capability.to_owned();
    }
    "other".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_past_the_limit_share_one_label() {
        limit_capability_labels(3);
        let labels: Vec<String> = (0..10)
            .map(|n| capability_label(&format!("invented-{n}")))
            .collect();
        let own = labels.iter().filter(|l| l.starts_with("invented-")).count();
        assert!(own <= 3, "{labels:?}");
        assert_eq!(labels.last().map(String::as_str), Some("other"));
        let first = labels.iter().find(|l| l.starts_with("invented-")).cloned();
        if let Some(first) = first {
            assert_eq!(capability_label(&first), first, "a labelled one keeps its label");
        }
    }
}
