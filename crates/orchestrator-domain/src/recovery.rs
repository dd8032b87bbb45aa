//! Why the orchestrator moves a task on its own (spec R7; API.md's
//! recovery rows of the state machine), and the move each reason makes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Task, TaskStatus, TaskUpdate};

/// Ordered by precedence: a task past its deadline fails even if its
/// droplet also died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryReason {
    /// Its deadline passed before it finished: it fails, with no retry.
    DeadlinePassed,
    /// Its droplet is no longer active: an assigned task goes back to
    /// pending, a running one fails (and may be retried).
    DropletInactive,
    /// Its droplet did not start it within the acknowledgement timeout.
    NotStarted,
    /// It failed with retries left: it goes back to pending after a backoff.
    RetryPending,
}

impl RecoveryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryReason::DeadlinePassed => "deadline_passed",
            RecoveryReason::DropletInactive => "droplet_inactive",
            RecoveryReason::NotStarted => "not_started",
            RecoveryReason::RetryPending => "retry_pending",
        }
    }

    /// The move this reason makes of `task`; `retry_after` is the end of the
    /// backoff for a retry. `None` when the task is no longer in a state
    /// this reason applies to.
    pub fn update(self, task: &Task, retry_after: DateTime<Utc>) -> Option<TaskUpdate> {
        use TaskStatus::{Assigned, Failed, InProgress, Pending};
        let fail = |message: String| TaskUpdate::Fail {
            error_message: Some(message),
        };
        match (self, task.status) {
            (RecoveryReason::DeadlinePassed, Pending | Assigned | InProgress) => {
                Some(fail("the deadline passed before the task finished".into()))
            }
            (RecoveryReason::DropletInactive | RecoveryReason::NotStarted, Assigned) => {
                Some(TaskUpdate::Requeue)
            }
            (RecoveryReason::DropletInactive, InProgress) => Some(fail(format!(
                "droplet {} stopped answering while running the task",
                task.assigned_droplet_id.unwrap_or_default()
            ))),
            (RecoveryReason::RetryPending, Failed) if task.can_retry() => {
                Some(TaskUpdate::Retry { retry_after })
            }
            _ => None,
        }
    }
}

impl fmt::Display for RecoveryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RecoveryReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            RecoveryReason::DeadlinePassed,
            RecoveryReason::DropletInactive,
            RecoveryReason::NotStarted,
            RecoveryReason::RetryPending,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| format!("unknown recovery reason {s}"))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;
    use crate::{NewTask, TaskDraft};

    fn task(status: TaskStatus) -> Task {
        let at = Utc.timestamp_opt(1_700_000_000, 0).single().expect("time");
        let draft = TaskDraft {
            task_type: "t".into(),
            title: Some("t".into()),
            ..TaskDraft::default()
        };
        let mut task = NewTask::parse(draft, at)
            .expect("valid")
            .into_task(1, Uuid::nil(), None, at);
        task.status = status;
        task.assigned_droplet_id = Some(8);
        task
    }

    #[test]
    fn each_reason_makes_the_move_of_the_state_machine() {
        let at = Utc::now();
        let update = |reason: RecoveryReason, status| reason.update(&task(status), at);
        assert!(matches!(
            update(RecoveryReason::DeadlinePassed, TaskStatus::Pending),
            Some(TaskUpdate::Fail { .. })
        ));
        assert!(matches!(
            update(RecoveryReason::DeadlinePassed, TaskStatus::InProgress),
            Some(TaskUpdate::Fail { .. })
        ));
        assert_eq!(
            update(RecoveryReason::DropletInactive, TaskStatus::Assigned),
            Some(TaskUpdate::Requeue)
        );
        assert!(matches!(
            update(RecoveryReason::DropletInactive, TaskStatus::InProgress),
            Some(TaskUpdate::Fail { .. })
        ));
        assert_eq!(
            update(RecoveryReason::NotStarted, TaskStatus::Assigned),
            Some(TaskUpdate::Requeue)
        );
        assert_eq!(
            update(RecoveryReason::NotStarted, TaskStatus::InProgress),
            None,
            "it started meanwhile"
        );
        assert_eq!(
            update(RecoveryReason::RetryPending, TaskStatus::Failed),
            Some(TaskUpdate::Retry { retry_after: at })
        );
        let mut spent = task(TaskStatus::Failed);
        spent.retry_count = spent.max_retries;
        assert_eq!(RecoveryReason::RetryPending.update(&spent, at), None);
        assert_eq!(
            update(RecoveryReason::DeadlinePassed, TaskStatus::Completed),
            None
        );
    }

    #[test]
    fn names_round_trip() {
        for r in [
            RecoveryReason::DeadlinePassed,
            RecoveryReason::DropletInactive,
            RecoveryReason::NotStarted,
            RecoveryReason::RetryPending,
        ] {
            assert_eq!(r.as_str().parse::<RecoveryReason>(), Ok(r));
        }
    }
}
