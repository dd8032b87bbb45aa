//! Recovery: keeps work moving when droplets die, stall or fail (spec R5,
//! R7). Silent droplets become inactive; their assigned tasks go back to
//! pending, their running tasks fail; assignments not started in time go
//! back to pending; tasks past their deadline fail; failed tasks with
//! retries left go back to pending after a backoff (at once when the
//! failure was its droplet dying rather than the task). A droplet that
//! registers again is a new process: what it held is taken back at once.
//! Runs that go longer than their timeout without progress fail. A pass
//! walks every candidate in id order, so no number of tasks it cannot move
//! stops it. Every move is a
//! compare-and-set through the state machine, so a task that moved
//! meanwhile (its droplet reported after all) is left alone.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use orchestrator_domain::{
    Actor, DomainEvent, DropletId, RecoveryLimits, RecoveryReason, RetryPolicy, Task, TaskId, TaskStatus,
    TaskUpdate,
};
use orchestrator_ports::{ChangeRecord, RecoveryQuery, StoreError, TaskFilter, Transition};

use crate::rescues::Rescue;
use crate::{AppResult, Ports, Services};

/// Tasks examined per round of a pass.
const BATCH: u32 = 500;
/// Tasks reported at risk per statement.
const DEADLINE_RISK_BATCH: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecoverySettings {
    /// A droplet without a heartbeat for this long becomes inactive.
    pub heartbeat_timeout: Duration,
    /// An assigned task not started within this goes back to pending.
    pub ack_timeout: Duration,
    pub retry: RetryPolicy,
    /// `ENABLE_AUTO_RECOVERY`: when off, tasks are never moved by the system
    /// (droplets are still marked inactive).
    pub enabled: bool,
    /// A deadline nearer than this (or than the p95 run time of the task's
    /// type, when longer) is reported at risk.
    pub deadline_risk_floor: Duration,
    /// `TASK_RUN_TIMEOUT`: how long a run of a task that names no timeout
    /// may go without progress (zero: no limit).
    pub run_timeout: Duration,
    /// `MAX_REQUEUES`: requeues in a row without a start before the next
    /// one fails the task instead.
    pub max_requeues: u32,
}

impl RecoverySettings {
    fn limits(&self) -> RecoveryLimits {
        RecoveryLimits {
            max_requeues: self.max_requeues,
            run_timeout: self.run_timeout,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    pub droplets_marked_inactive: usize,
    pub tasks_moved: usize,
}

#[derive(Debug)]
pub struct Recovery {
    ports: Ports,
    /// Changeable at run time (`reload-config`).
    settings: std::sync::RwLock<RecoverySettings>,
    /// Tasks a pass is moving: their failure events are its own, and the
    /// pass retries them itself (at once when their droplet died).
    in_hand: std::sync::Mutex<std::collections::HashSet<TaskId>>,
}

impl Recovery {
    pub fn new(ports: Ports, settings: RecoverySettings) -> Arc<Self> {
        Arc::new(Recovery {
            ports,
            settings: std::sync::RwLock::new(settings),
            in_hand: std::sync::Mutex::new(std::collections::HashSet::new()),
        })
    }

    pub fn settings(&self) -> RecoverySettings {
        *self.settings.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies new settings from the next pass on.
    pub fn set_settings(&self, settings: RecoverySettings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    /// One pass of the health monitor.
    pub async fn run_pass(&self) -> AppResult<RecoveryReport> {
        let droplets_marked_inactive = self.mark_silent_droplets().await?;
        let tasks_moved = if self.settings().enabled {
            self.recover_tasks().await?
        } else {
            0
        };
        // A warning, not a move: it is sent with or without auto-recovery.
        self.report_deadline_risks().await?;
        Ok(RecoveryReport {
            droplets_marked_inactive,
            tasks_moved,
        })
    }

    /// Publishes `task_deadline_at_risk` for each task whose deadline just
    /// came within reach, batch by batch.
    async fn report_deadline_risks(&self) -> AppResult<()> {
        let floor = self.settings().deadline_risk_floor;
        loop {
            let tasks = self
                .ports
                .tasks
                .flag_deadline_risks(floor, DEADLINE_RISK_BATCH)
                .await?;
            let full = tasks.len() == DEADLINE_RISK_BATCH as usize;
            for task in tasks {
                tracing::warn!(task_id = task.id, deadline = ?task.deadline, "task deadline at risk");
                Rescue::DeadlineAtRisk.count(&task);
                self.ports
                    .events
                    .publish(DomainEvent::TaskDeadlineAtRisk(task))
                    .await;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn mark_silent_droplets(&self) -> AppResult<usize> {
        let changes = self
            .ports
            .droplets
            .mark_silent_droplets(self.settings().heartbeat_timeout)
            .await?;
        for change in &changes {
            tracing::warn!(
                droplet_id = change.droplet.droplet_id,
                "no heartbeat in time: droplet marked inactive"
            );
            let events = [
                DomainEvent::DropletHeartbeatMissed(change.droplet.clone()),
                DomainEvent::DropletHealthChanged {
                    droplet: change.droplet.clone(),
                    previous: change.previous_status.unwrap_or(change.droplet.status),
                },
            ];
            for event in events {
                self.ports.events.publish(event).await;
            }
        }
        Ok(changes.len())
    }

    /// Moves every task recovery finds, batch by batch in id order, to
    /// the last candidate: a task that cannot be moved (it moved meanwhile)
    /// is passed over, never a reason to stop.
    pub async fn recover_tasks(&self) -> AppResult<usize> {
        let mut moved = 0;
        let mut after: TaskId = 0;
        loop {
            let settings = self.settings();
            let query = RecoveryQuery {
                ack_timeout: settings.ack_timeout,
                heartbeat_timeout: settings.heartbeat_timeout,
                run_timeout: settings.run_timeout,
                after,
                limit: BATCH,
            };
            let candidates = self.ports.tasks.tasks_to_recover(&query).await?;
            for candidate in &candidates {
                if self.recover(&candidate.task, candidate.reason).await? {
                    moved += 1;
                }
            }
            match candidates.last() {
                Some(last) if candidates.len() == BATCH as usize => after = last.task.id,
                _ => return Ok(moved),
            }
        }
    }

    /// Takes back what droplet `droplet` holds, for `reason` (a restart or a
    /// drain with requeue): its assigned tasks are requeued, its running
    /// ones failed and retried at once. With `assigned_before`, only tasks
    /// assigned before then (to the process that is gone). Returns how many
    /// moved. Works with auto-recovery off too: it is asked for.
    pub async fn take_back(
        &self,
        droplet: DropletId,
        reason: RecoveryReason,
        assigned_before: Option<DateTime<Utc>>,
    ) -> AppResult<usize> {
        let mut moved = 0;
        for status in [TaskStatus::Assigned, TaskStatus::InProgress] {
            let filter = TaskFilter {
                status: Some(status),
                assigned_droplet_id: Some(droplet),
                limit: BATCH,
                ..TaskFilter::default()
            };
            // Moved tasks leave the filter: read again until a page moves nothing.
            loop {
                let page = self.ports.tasks.list_tasks(&filter).await?;
                let mut this_page = 0;
                for task in page.tasks.iter().filter(|t| {
                    assigned_before.is_none_or(|before| t.assigned_at.is_some_and(|at| at < before))
                }) {
                    if self.recover(task, reason).await? {
                        this_page += 1;
                    }
                }
                moved += this_page;
                if this_page == 0 || page.tasks.len() < BATCH as usize {
                    break;
                }
            }
        }
        Ok(moved)
    }

    /// Makes the move `reason` calls for; false when the task moved meanwhile.
    async fn recover(&self, task: &Task, reason: RecoveryReason) -> AppResult<bool> {
        self.hands().insert(task.id);
        let outcome = self.recover_in_hand(task, reason).await;
        self.hands().remove(&task.id);
        outcome
    }

    fn hands(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<TaskId>> {
        self.in_hand.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn recover_in_hand(&self, task: &Task, reason: RecoveryReason) -> AppResult<bool> {
        let now = self.ports.clock.now();
        let settings = self.settings();
        let Some(update) = reason.update(task, now + self.backoff(task), settings.limits()) else {
            return Ok(false);
        };
        let Some(saved) = self.apply(task, update, reason).await? else {
            return Ok(false);
        };
        let started = task.status == TaskStatus::InProgress;
        match reason {
            // Its droplet is gone, not the task at fault: reroute at once.
            _ if reason.is_droplet_lost() && started && saved.status == TaskStatus::Failed => {
                self.retry_after(&saved, self.ports.clock.now()).await?;
            }
            RecoveryReason::DeadlinePassed => {}
            _ if saved.status == TaskStatus::Failed => {
                self.retry(&saved).await?;
            }
            _ => {}
        }
        Ok(true)
    }

    /// Sends a failed task with retries left back to pending after its
    /// backoff. Called right after a failure and by every pass.
    pub async fn retry(&self, task: &Task) -> AppResult<Option<Task>> {
        self.retry_after(task, self.ports.clock.now() + self.backoff(task))
            .await
    }

    async fn retry_after(&self, task: &Task, at: chrono::DateTime<chrono::Utc>) -> AppResult<Option<Task>> {
        let deadline_passed = task.deadline.is_some_and(|d| d <= self.ports.clock.now());
        if !self.settings().enabled || !task.can_retry() || deadline_passed {
            return Ok(None);
        }
        self.apply(
            task,
            TaskUpdate::Retry { retry_after: at },
            RecoveryReason::RetryPending,
        )
        .await
    }

    fn backoff(&self, task: &Task) -> chrono::Duration {
        let delay = self
            .settings()
            .retry
            .delay(task.retry_count, rand::random::<f64>());
        chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
    }

    async fn apply(
        &self,
        task: &Task,
        update: TaskUpdate,
        reason: RecoveryReason,
    ) -> AppResult<Option<Task>> {
        let now = self.ports.clock.now();
        let Ok(next) = task.apply(update, Actor::SYSTEM, now) else {
            return Ok(None);
        };
        let transition = Transition {
            expected_status: task.status,
            expected_attempt: task.attempt,
            expected_droplet: task.assigned_droplet_id,
            record: ChangeRecord {
                changed_by: Some("system:recovery".into()),
                reason: Some(describe(reason, &next)),
                metadata: Some(serde_json::json!({
                    "recovery": reason,
                    "droplet_id": task.assigned_droplet_id,
                    "retry_after": next.retry_after,
                })),
            },
            task: next,
        };
        match self.ports.tasks.apply_transition(transition).await {
            Ok(saved) => {
                tracing::info!(task_id = saved.id, reason = %reason, status = %saved.status, "task recovered");
                for rescue in Rescue::of_recovery(reason, saved.status) {
                    rescue.count(&saved);
                }
                let event = DomainEvent::for_transition(task.status, saved.clone());
                self.ports.events.publish(event).await;
                Ok(Some(saved))
            }
            Err(StoreError::Conflict(_) | StoreError::DropletUnavailable { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Retries failures as soon as they happen, on every replica (a
    /// compare-and-set lets one win); the periodic pass catches the rest.
    pub fn start(self: &Arc<Self>, services: &Services) {
        let mut events = self.ports.events.subscribe();
        let recovery = Arc::clone(self);
        services.spawn("recovery: retries on failure", async move {
            while let Some(event) = events.next().await {
                if let DomainEvent::TaskFailed(task) = event
                    && !recovery.hands().contains(&task.id)
                    && let Err(err) = recovery.retry(&task).await
                {
                    tracing::warn!(task_id = task.id, error = %err, "retry failed; the next health check retries");
                }
            }
        })
    }
}

fn describe(reason: RecoveryReason, next: &Task) -> String {
    let requeued = next.status == TaskStatus::Pending;
    let never_started = || {
        next.error_message
            .clone()
            .unwrap_or_else(|| "never started".into())
    };
    match reason {
        RecoveryReason::DeadlinePassed => "the deadline passed before the task finished".into(),
        _ if next.status == TaskStatus::Failed
            && next
                .error_message
                .as_deref()
                .is_some_and(|m| m.starts_with("never started")) =>
        {
            never_started()
        }
        RecoveryReason::DropletInactive if requeued => {
            "its droplet went inactive before starting it; requeued".into()
        }
        RecoveryReason::DropletInactive => "its droplet went inactive while running it".into(),
        RecoveryReason::DropletRestarted if requeued => {
            "its droplet restarted before starting it; requeued".into()
        }
        RecoveryReason::DropletRestarted => "its droplet restarted while running it".into(),
        RecoveryReason::DropletDeactivated if requeued => {
            "its droplet was deactivated with requeue before starting it; requeued".into()
        }
        RecoveryReason::DropletDeactivated => {
            "its droplet was deactivated with requeue while running it".into()
        }
        RecoveryReason::RunTimedOut => next
            .error_message
            .clone()
            .unwrap_or_else(|| "the run timed out".into()),
        RecoveryReason::NotStarted => {
            "its droplet did not start it within the acknowledgement timeout".into()
        }
        RecoveryReason::RetryPending => format!(
            "retry {} of {} after a backoff",
            next.retry_count, next.max_retries
        ),
    }
}
