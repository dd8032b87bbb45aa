//! Push delivery: when a task is assigned, its droplet is sent a
//! `task_assignment` message, off the router's path. A failed delivery is
//! retried with backoff while the task is still assigned to that droplet;
//! a droplet that never accepts is handled by the acknowledgement timeout,
//! and one without a `/message` endpoint is expected to pull instead.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use orchestrator_domain::{DomainEvent, RetryPolicy, Task, TaskStatus};
use orchestrator_ports::Dispatcher;
use tokio::task::JoinHandle;

use crate::Ports;

/// Deliveries tried per assignment.
const ATTEMPTS: u32 = 5;
/// Backoff between deliveries: 0.25 to 0.5 s, then doubling, at most 8 s.
const BACKOFF: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(500),
    max: Duration::from_secs(8),
};

pub struct Delivery {
    ports: Ports,
    dispatcher: Arc<dyn Dispatcher>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delivery")
    }
}

impl Delivery {
    pub fn new(ports: Ports, dispatcher: Arc<dyn Dispatcher>) -> Arc<Self> {
        Arc::new(Delivery { ports, dispatcher })
    }

    /// Pushes every assignment made in this process until the handle is aborted.
    pub fn start(self: &Arc<Self>) -> JoinHandle<()> {
        let mut events = self.ports.events.subscribe();
        let delivery = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let DomainEvent::TaskAssigned(task) = event {
                    let delivery = Arc::clone(&delivery);
                    tokio::spawn(async move { delivery.deliver(task).await });
                }
            }
        })
    }

    /// Delivers one assignment; true when the droplet accepted it.
    pub async fn deliver(&self, task: Task) -> bool {
        let Some(droplet_id) = task.assigned_droplet_id else {
            return false;
        };
        let Ok(droplet) = self.ports.droplets.get_droplet(droplet_id).await else {
            return false;
        };
        for attempt in 0..ATTEMPTS {
            match self.dispatcher.deliver_assignment(&droplet, &task).await {
                Ok(()) => {
                    tracing::debug!(task_id = task.id, droplet_id, "assignment delivered");
                    return true;
                }
                Err(err) if !err.retryable => {
                    tracing::info!(task_id = task.id, droplet_id, error = %err, "droplet takes no pushes; it may pull");
                    return false;
                }
                Err(err) => {
                    tracing::warn!(task_id = task.id, droplet_id, attempt, error = %err, "delivery failed; retrying");
                    tokio::time::sleep(BACKOFF.delay(attempt, rand::random::<f64>())).await;
                    if !self.still_assigned(&task).await {
                        return false;
                    }
                }
            }
        }
        tracing::warn!(
            task_id = task.id,
            droplet_id,
            "delivery abandoned; the acknowledgement timeout takes the task back"
        );
        false
    }

    async fn still_assigned(&self, task: &Task) -> bool {
        self.ports.tasks.get_task(task.id).await.is_ok_and(|now| {
            now.status == TaskStatus::Assigned && now.assigned_droplet_id == task.assigned_droplet_id
        })
    }
}
