//! Why the orchestrator moves a task on its own (spec R7; API.md's
//! recovery rows of the state machine), and the move each reason makes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Droplet, DropletStatus, Task, TaskStatus, TaskUpdate};

/// Limits recovery applies when it moves a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryLimits {
    /// `MAX_REQUEUES`: once a task was requeued this many times without
    /// being started, the next droplet that does not start it fails it.
    pub max_requeues: u32,
    /// `TASK_RUN_TIMEOUT`: the timeout of a run whose task names none.
    pub run_timeout: std::time::Duration,
}

impl Default for RecoveryLimits {
    fn default() -> Self {
        RecoveryLimits {
            max_requeues: 5,
            run_timeout: std::time::Duration::from_secs(3600),
        }
    }
}

/// The timeouts recovery judges tasks by (`ACK_TIMEOUT`,
/// `HEARTBEAT_TIMEOUT`, `TASK_RUN_TIMEOUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryTimeouts {
    /// How long an assigned task may wait for its droplet to start it.
    pub ack: std::time::Duration,
    /// How long a drained droplet may stay silent and keep its work.
    pub heartbeat: std::time::Duration,
    /// The timeout of a run whose task names none (zero: none).
    pub run: std::time::Duration,
}

/// Ordered by precedence: a task past its deadline fails even if its
/// droplet also died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryReason {
    /// Its deadline passed before it finished: it fails, with no retry.
    DeadlinePassed,
    /// Its droplet missed its heartbeats or reported `error`: an assigned
    /// task goes back to pending, a running one fails (and may be retried).
    DropletInactive,
    /// Its droplet registered again (a new process) without `resume`: the
    /// old process's work is gone, moved as for `DropletInactive`.
    DropletRestarted,
    /// An admin deactivated its droplet asking for its work back
    /// (`?requeue=true`): moved as for `DropletInactive`.
    DropletDeactivated,
    /// It ran longer than its timeout without a progress report: it fails
    /// and is retried by its budget.
    RunTimedOut,
    /// Its droplet did not start it within the acknowledgement timeout.
    NotStarted,
    /// It failed with retries left: it goes back to pending after a backoff.
    RetryPending,
}

impl RecoveryReason {
    pub const ALL: [RecoveryReason; 7] = [
        RecoveryReason::DeadlinePassed,
        RecoveryReason::DropletInactive,
        RecoveryReason::DropletRestarted,
        RecoveryReason::DropletDeactivated,
        RecoveryReason::RunTimedOut,
        RecoveryReason::NotStarted,
        RecoveryReason::RetryPending,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryReason::DeadlinePassed => "deadline_passed",
            RecoveryReason::DropletInactive => "droplet_inactive",
            RecoveryReason::DropletRestarted => "droplet_restarted",
            RecoveryReason::DropletDeactivated => "droplet_deactivated",
            RecoveryReason::RunTimedOut => "run_timed_out",
            RecoveryReason::NotStarted => "not_started",
            RecoveryReason::RetryPending => "retry_pending",
        }
    }

    /// Why recovery must move `task` at `now`, held (or last held) by
    /// `droplet` (`None`: no such droplet): the first reason that applies,
    /// in the order of precedence, or `None`. `DropletDeactivated` is never
    /// judged: an admin's request gives it. The one definition: the memory
    /// store applies it, and the store contract holds PostgreSQL's read of
    /// the tasks to recover to it.
    pub fn judge(
        task: &Task,
        droplet: Option<&Droplet>,
        timeouts: &RecoveryTimeouts,
        now: DateTime<Utc>,
    ) -> Option<RecoveryReason> {
        let ack = chrono::Duration::from_std(timeouts.ack).unwrap_or(chrono::Duration::MAX);
        let deadline_passed = task.deadline.is_some_and(|d| d < now);
        let held = task.status.occupies_droplet();
        if deadline_passed && !task.status.is_terminal() && task.status != TaskStatus::Failed {
            Some(RecoveryReason::DeadlinePassed)
        } else if held && droplet.is_none_or(|d| is_gone(d, timeouts.heartbeat, now)) {
            Some(RecoveryReason::DropletInactive)
        } else if held && droplet.is_some_and(|d| restarted_since(d, task)) {
            Some(RecoveryReason::DropletRestarted)
        } else if task.run_timed_out(timeouts.run, now) {
            Some(RecoveryReason::RunTimedOut)
        } else if task.status == TaskStatus::Assigned && task.assigned_at.is_some_and(|a| a < now - ack) {
            Some(RecoveryReason::NotStarted)
        } else if task.can_retry() && !deadline_passed {
            Some(RecoveryReason::RetryPending)
        } else {
            None
        }
    }

    /// True for the reasons that take a task from a droplet that can no
    /// longer run it: a running task failed for them is retried at once,
    /// since the task itself did nothing wrong.
    pub fn is_droplet_lost(self) -> bool {
        matches!(
            self,
            RecoveryReason::DropletInactive
                | RecoveryReason::DropletRestarted
                | RecoveryReason::DropletDeactivated
        )
    }

    /// The move this reason makes of `task`; `retry_after` is the end of the
    /// backoff for a retry. `None` when the task is no longer in a state
    /// this reason applies to.
    pub fn update(
        self,
        task: &Task,
        retry_after: DateTime<Utc>,
        limits: RecoveryLimits,
    ) -> Option<TaskUpdate> {
        use TaskStatus::{Assigned, Failed, InProgress, Pending};
        let fail = |message: String| TaskUpdate::Fail {
            error_message: Some(message),
        };
        let droplet = task.assigned_droplet_id.unwrap_or_default();
        match (self, task.status) {
            (RecoveryReason::DeadlinePassed, Pending | Assigned | InProgress) => {
                Some(fail("the deadline passed before the task finished".into()))
            }
            (RecoveryReason::RunTimedOut, InProgress) => {
                let timeout = task.run_timeout(limits.run_timeout).unwrap_or_default();
                Some(fail(format!(
                    "the run timed out: no progress from droplet {droplet} for {} s",
                    timeout.as_secs()
                )))
            }
            (RecoveryReason::NotStarted, Assigned) => Some(requeue_or_fail(task, limits)),
            (reason, Assigned) if reason.is_droplet_lost() => Some(requeue_or_fail(task, limits)),
            (RecoveryReason::DropletInactive, InProgress) => Some(fail(format!(
                "droplet {droplet} stopped answering while running the task"
            ))),
            (RecoveryReason::DropletRestarted, InProgress) => Some(fail(format!(
                "droplet {droplet} restarted while running the task"
            ))),
            (RecoveryReason::DropletDeactivated, InProgress) => Some(fail(format!(
                "droplet {droplet} was deactivated and its work taken back"
            ))),
            (RecoveryReason::RetryPending, Failed) if task.can_retry() => {
                Some(TaskUpdate::Retry { retry_after })
            }
            _ => None,
        }
    }
}

/// A droplet whose work recovery takes: one that reported `error`, went
/// silent, or was deactivated by an admin and then went silent too (a
/// drained droplet that still beats keeps its work).
fn is_gone(droplet: &Droplet, heartbeat_timeout: std::time::Duration, now: DateTime<Utc>) -> bool {
    let silent_since = now - chrono::Duration::from_std(heartbeat_timeout).unwrap_or(chrono::Duration::MAX);
    match droplet.status {
        DropletStatus::Active => false,
        DropletStatus::Error => true,
        DropletStatus::Inactive => {
            !droplet.manually_deactivated || droplet.last_heartbeat.is_none_or(|beat| beat < silent_since)
        }
    }
}

/// True when `droplet` registered as a new process after `task` was assigned to it.
fn restarted_since(droplet: &Droplet, task: &Task) -> bool {
    matches!((task.assigned_at, droplet.session_started_at), (Some(assigned), Some(session)) if assigned < session)
}

/// Back to pending, or failed once `limits.max_requeues` droplets in a row
/// did not start it: a task no droplet starts is not bounced for ever.
fn requeue_or_fail(task: &Task, limits: RecoveryLimits) -> TaskUpdate {
    if task.requeues >= limits.max_requeues {
        TaskUpdate::Fail {
            error_message: Some(format!("never started by {} droplets", task.requeues + 1)),
        }
    } else {
        TaskUpdate::Requeue
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
        RecoveryReason::ALL
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
        let limits = RecoveryLimits::default();
        let update = |reason: RecoveryReason, status| reason.update(&task(status), at, limits);
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
        assert_eq!(RecoveryReason::RetryPending.update(&spent, at, limits), None);
        assert_eq!(
            update(RecoveryReason::DeadlinePassed, TaskStatus::Completed),
            None
        );
    }

    #[test]
    fn a_restart_or_a_drain_moves_work_as_a_dead_droplet_does() {
        let (at, limits) = (Utc::now(), RecoveryLimits::default());
        for reason in [
            RecoveryReason::DropletRestarted,
            RecoveryReason::DropletDeactivated,
        ] {
            assert_eq!(
                reason.update(&task(TaskStatus::Assigned), at, limits),
                Some(TaskUpdate::Requeue)
            );
            assert!(matches!(
                reason.update(&task(TaskStatus::InProgress), at, limits),
                Some(TaskUpdate::Fail { .. })
            ));
            assert!(reason.is_droplet_lost());
        }
        assert!(!RecoveryReason::RunTimedOut.is_droplet_lost());
    }

    #[test]
    fn a_timed_out_run_fails_and_names_its_timeout() {
        let limits = RecoveryLimits {
            max_requeues: 5,
            run_timeout: std::time::Duration::from_secs(90),
        };
        let update = RecoveryReason::RunTimedOut.update(&task(TaskStatus::InProgress), Utc::now(), limits);
        let Some(TaskUpdate::Fail {
            error_message: Some(message),
        }) = update
        else {
            panic!("a timed-out run fails, got {update:?}");
        };
        assert!(message.contains("90 s"), "{message}");
        assert_eq!(
            RecoveryReason::RunTimedOut.update(&task(TaskStatus::Completed), Utc::now(), limits),
            None,
            "it finished meanwhile"
        );
    }

    #[test]
    fn after_max_requeues_the_next_droplet_that_does_not_start_it_fails_it() {
        let limits = RecoveryLimits {
            max_requeues: 2,
            ..RecoveryLimits::default()
        };
        let mut assigned = task(TaskStatus::Assigned);
        assigned.requeues = 1;
        assert_eq!(
            RecoveryReason::NotStarted.update(&assigned, Utc::now(), limits),
            Some(TaskUpdate::Requeue)
        );
        assigned.requeues = 2;
        assert_eq!(
            RecoveryReason::NotStarted.update(&assigned, Utc::now(), limits),
            Some(TaskUpdate::Fail {
                error_message: Some("never started by 3 droplets".into())
            })
        );
    }

    #[test]
    fn names_round_trip() {
        for r in RecoveryReason::ALL {
            assert_eq!(r.as_str().parse::<RecoveryReason>(), Ok(r));
        }
    }
}
