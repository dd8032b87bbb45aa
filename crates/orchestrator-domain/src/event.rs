//! Domain events: what happened, published after the change is committed.

use serde::Serialize;

use crate::{Droplet, DropletStatus, Task, TaskStatus};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DomainEvent {
    TaskCreated(Task),
    TaskAssigned(Task),
    TaskStarted(Task),
    TaskCompleted(Task),
    TaskFailed(Task),
    TaskCancelled(Task),
    /// A failed task went back to `pending` to be tried again.
    TaskRetried(Task),
    /// An assigned task went back to `pending` because its droplet could not run it.
    TaskRequeued(Task),
    /// A task of a workflow whose dependencies all finished: it is
    /// routable now, its payload carrying their results.
    TaskReleased(Task),
    /// An unfinished task's deadline is nearer than its type usually takes
    /// to run (or the configured floor); sent once per task.
    TaskDeadlineAtRisk(Task),
    /// Its creator or an admin asked the droplet running it to stop.
    TaskCancelRequested(Task),
    /// The droplet running it reported progress (no status change).
    TaskProgress(Task),
    DropletRegistered(Droplet),
    DropletHealthChanged {
        droplet: Droplet,
        previous: DropletStatus,
    },
    DropletHeartbeatMissed(Droplet),
}

impl DomainEvent {
    /// The event for a task that just moved from `from` to its current status.
    pub fn for_transition(from: TaskStatus, task: Task) -> DomainEvent {
        match task.status {
            TaskStatus::Assigned => DomainEvent::TaskAssigned(task),
            TaskStatus::InProgress => DomainEvent::TaskStarted(task),
            TaskStatus::Completed => DomainEvent::TaskCompleted(task),
            TaskStatus::Failed => DomainEvent::TaskFailed(task),
            TaskStatus::Cancelled => DomainEvent::TaskCancelled(task),
            TaskStatus::Pending if from == TaskStatus::Failed => DomainEvent::TaskRetried(task),
            TaskStatus::Pending => DomainEvent::TaskRequeued(task),
        }
    }

    /// The task a task event is about.
    pub fn task(&self) -> Option<&Task> {
        match self {
            DomainEvent::TaskCreated(t)
            | DomainEvent::TaskAssigned(t)
            | DomainEvent::TaskStarted(t)
            | DomainEvent::TaskCompleted(t)
            | DomainEvent::TaskFailed(t)
            | DomainEvent::TaskCancelled(t)
            | DomainEvent::TaskRetried(t)
            | DomainEvent::TaskRequeued(t)
            | DomainEvent::TaskReleased(t)
            | DomainEvent::TaskDeadlineAtRisk(t)
            | DomainEvent::TaskCancelRequested(t)
            | DomainEvent::TaskProgress(t) => Some(t),
            DomainEvent::DropletRegistered(_)
            | DomainEvent::DropletHealthChanged { .. }
            | DomainEvent::DropletHeartbeatMissed(_) => None,
        }
    }

    /// The droplet a droplet event is about, as it is after the event.
    pub fn droplet(&self) -> Option<&Droplet> {
        match self {
            DomainEvent::DropletRegistered(d)
            | DomainEvent::DropletHealthChanged { droplet: d, .. }
            | DomainEvent::DropletHeartbeatMissed(d) => Some(d),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            DomainEvent::TaskCreated(_) => "task_created",
            DomainEvent::TaskAssigned(_) => "task_assigned",
            DomainEvent::TaskStarted(_) => "task_started",
            DomainEvent::TaskCompleted(_) => "task_completed",
            DomainEvent::TaskFailed(_) => "task_failed",
            DomainEvent::TaskCancelled(_) => "task_cancelled",
            DomainEvent::TaskRetried(_) => "task_retried",
            DomainEvent::TaskRequeued(_) => "task_requeued",
            DomainEvent::TaskReleased(_) => "task_released",
            DomainEvent::TaskDeadlineAtRisk(_) => "task_deadline_at_risk",
            DomainEvent::TaskCancelRequested(_) => "task_cancel_requested",
            DomainEvent::TaskProgress(_) => "task_progress",
            DomainEvent::DropletRegistered(_) => "droplet_registered",
            DomainEvent::DropletHealthChanged { .. } => "droplet_health_changed",
            DomainEvent::DropletHeartbeatMissed(_) => "droplet_heartbeat_missed",
        }
    }

    /// True when the event can make a pending task routable: new work, a
    /// freed slot or a droplet that can take work again.
    pub fn may_unblock_routing(&self) -> bool {
        match self {
            DomainEvent::TaskCreated(_)
            | DomainEvent::TaskCompleted(_)
            | DomainEvent::TaskFailed(_)
            | DomainEvent::TaskCancelled(_)
            | DomainEvent::TaskRetried(_)
            | DomainEvent::TaskRequeued(_)
            | DomainEvent::TaskReleased(_)
            | DomainEvent::DropletRegistered(_) => true,
            DomainEvent::DropletHealthChanged { droplet, .. } => droplet.status == DropletStatus::Active,
            DomainEvent::TaskAssigned(_)
            | DomainEvent::TaskStarted(_)
            | DomainEvent::TaskDeadlineAtRisk(_)
            | DomainEvent::TaskCancelRequested(_)
            | DomainEvent::TaskProgress(_)
            | DomainEvent::DropletHeartbeatMissed(_) => false,
        }
    }
}
