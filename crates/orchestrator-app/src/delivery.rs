//! Push delivery: when a task is assigned, its droplet is sent a
//! `task_assignment` message, off the router's path; when a running task's
//! cancel is requested, a `task_cancel_requested` message. A failed delivery is
//! retried with backoff while the task is still assigned to that droplet;
//! a droplet that never accepts is handled by the acknowledgement timeout,
//! and one without a `/message` endpoint is expected to pull instead.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use orchestrator_domain::{DomainEvent, RetryPolicy, Task};
use orchestrator_ports::{Dispatcher, TaskNotice};

use crate::{Ports, Services};

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

    /// Pushes every assignment and cancel request made in this process, as
    /// a service.
    pub fn start(self: &Arc<Self>, services: &Services) {
        let mut events = self.ports.events.subscribe();
        let delivery = Arc::clone(self);
        services.spawn("delivery: push to droplets", async move {
            while let Some(event) = events.next().await {
                let (task, notice) = match event {
                    DomainEvent::TaskAssigned(task) => (task, TaskNotice::Assignment),
                    DomainEvent::TaskCancelRequested(task) => (task, TaskNotice::CancelRequest),
                    _ => continue,
                };
                let delivery = Arc::clone(&delivery);
                tokio::spawn(async move { delivery.deliver(task, notice).await });
            }
        })
    }

    /// Delivers one notice; true when the droplet accepted it. Retries
    /// while the task is still where the notice found it. Each delivery is
    /// counted once it is over, by how it ended.
    pub async fn deliver(&self, task: Task, notice: TaskNotice) -> bool {
        let ended = self.try_deliver(&task, notice).await;
        ::metrics::counter!(
            "orchestrator_push_deliveries_total",
            "message_type" => notice.message_type(),
            "outcome" => ended.label(),
        )
        .increment(1);
        ended == Ended::Delivered
    }

    async fn try_deliver(&self, task: &Task, notice: TaskNotice) -> Ended {
        let Some(droplet_id) = task.assigned_droplet_id else {
            return Ended::NoDroplet;
        };
        let Ok(droplet) = self.ports.droplets.get_droplet(droplet_id).await else {
            return Ended::NoDroplet;
        };
        let kind = notice.message_type();
        for attempt in 0..ATTEMPTS {
            match self.dispatcher.deliver(&droplet, task, notice).await {
                Ok(()) => {
                    tracing::debug!(task_id = task.id, droplet_id, kind, "delivered");
                    return Ended::Delivered;
                }
                Err(err) if !err.retryable => {
                    tracing::info!(task_id = task.id, droplet_id, kind, error = %err, "droplet takes no pushes; it may pull");
                    return Ended::NotTaken;
                }
                Err(err) => {
                    tracing::warn!(task_id = task.id, droplet_id, kind, attempt, error = %err, "delivery failed; retrying");
                    tokio::time::sleep(BACKOFF.delay(attempt, rand::random::<f64>())).await;
                    if !self.still_where_it_was(task).await {
                        return Ended::Moved;
                    }
                }
            }
        }
        match notice {
            TaskNotice::Assignment => tracing::warn!(
                task_id = task.id,
                droplet_id,
                "delivery abandoned; the acknowledgement timeout takes the task back"
            ),
            TaskNotice::CancelRequest => tracing::warn!(
                task_id = task.id,
                droplet_id,
                "cancel request not delivered; it stays in the task's record and feed"
            ),
        }
        Ended::Abandoned
    }

    /// True while the task has the status and droplet it had when the
    /// notice was made.
    async fn still_where_it_was(&self, task: &Task) -> bool {
        self.ports
            .tasks
            .get_task(task.id)
            .await
            .is_ok_and(|now| now.status == task.status && now.assigned_droplet_id == task.assigned_droplet_id)
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Delivered,
    /// A final refusal: the droplet takes no pushes.
    NotTaken,
    /// The task moved on before a retry.
    Moved,
    /// Every attempt failed.
    Abandoned,
    /// The task has no droplet, or its droplet is gone.
    NoDroplet,
}

impl Ended {
    fn label(self) -> &'static str {
        match self {
            Ended::Delivered => "delivered",
            Ended::NotTaken => "not_taken",
            Ended::Moved => "moved",
            Ended::Abandoned => "abandoned",
            Ended::NoDroplet => "no_droplet",
        }
    }
}
