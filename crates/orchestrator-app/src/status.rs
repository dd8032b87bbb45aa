//! What `/state` and `/health` report about the work and the store.

use orchestrator_domain::{DropletStatus, TaskStatus};

use crate::{AppResult, Ports};

/// Counts of tasks and droplets right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusSnapshot {
    pub tasks_pending: u64,
    /// Tasks held by droplets: `assigned` plus `in_progress`.
    pub tasks_active: u64,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    pub droplets_active: u64,
    pub droplets_total: u64,
}

#[derive(Debug, Clone)]
pub struct StatusService {
    ports: Ports,
}

impl StatusService {
    pub fn new(ports: Ports) -> Self {
        Self { ports }
    }

    pub async fn snapshot(&self) -> AppResult<StatusSnapshot> {
        let tasks = self.ports.tasks.count_tasks_by_status().await?;
        let droplets = self.ports.droplets.count_droplets_by_status().await?;
        let task = |s: TaskStatus| tasks.get(&s).copied().unwrap_or(0);
        Ok(StatusSnapshot {
            tasks_pending: task(TaskStatus::Pending),
            tasks_active: task(TaskStatus::Assigned) + task(TaskStatus::InProgress),
            tasks_completed: task(TaskStatus::Completed),
            tasks_failed: task(TaskStatus::Failed),
            droplets_active: droplets.get(&DropletStatus::Active).copied().unwrap_or(0),
            droplets_total: droplets.values().sum(),
        })
    }

    /// True while the store answers.
    pub async fn store_is_up(&self) -> bool {
        self.ports.droplets.count_droplets_by_status().await.is_ok()
    }
}
