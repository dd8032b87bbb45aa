//! `PgEventBus`: events cross the replicas that share one database by
//! `LISTEN/NOTIFY`.
//!
//! A replica's own events reach its subscribers at once, in the order it
//! publishes them. They are also sent on the `orchestrator_events` channel,
//! many per statement, so that every other replica can hand them to its
//! feeds. An event too large for a notification (8000 bytes) travels as a
//! reference, and the receiving replica reads the task or droplet back
//! from the store. Notifications are best-effort: an event sent while a
//! replica's listening connection is down does not reach that replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use orchestrator_domain::{DomainEvent, Droplet, DropletId, DropletStatus, Task, TaskId};
use orchestrator_ports::{DropletStore, EventBus, EventStream, Spawner, TaskStore};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

use crate::PgStore;
use crate::sql::notifications::{ASYNC_COMMIT, CHANNEL, LISTEN, NotifyAll};

/// PostgreSQL refuses notification payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7_900;
/// Events a slow subscriber may fall behind by before it misses some.
const BUFFERED_EVENTS: usize = 4096;
/// Notifications sent by one statement at most.
const NOTIFY_BATCH: usize = 500;
/// How long a start waits for the listening connection.
const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// Wait before reconnecting a notifying or listening connection.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// An event as it travels between replicas.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    origin: Uuid,
    /// Makes every payload distinct: PostgreSQL folds identical ones sent together.
    seq: u64,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task: Option<Box<Task>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    droplet: Option<Box<Droplet>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<DropletStatus>,
    /// Set instead of `task` or `droplet` when they would not fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task_id: Option<TaskId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    droplet_id: Option<DropletId>,
}

impl Wire {
    fn of(event: &DomainEvent, origin: Uuid, seq: u64) -> Wire {
        let mut wire = Wire {
            origin,
            seq,
            name: event.name().to_owned(),
            task: None,
            droplet: None,
            previous: None,
            task_id: None,
            droplet_id: None,
        };
        wire.task = event.task().map(|t| Box::new(t.clone()));
        wire.droplet = event.droplet().map(|d| Box::new(d.clone()));
        if let DomainEvent::DropletHealthChanged { previous, .. } = event {
            wire.previous = Some(*previous);
        }
        wire
    }

    /// The notification payload: the whole event, or a reference when too large.
    fn payload(mut self) -> Option<String> {
        let full = serde_json::to_string(&self).ok()?;
        if full.len() <= MAX_PAYLOAD {
            return Some(full);
        }
        self.task_id = self.task.take().map(|t| t.id);
        self.droplet_id = self.droplet.take().map(|d| d.droplet_id);
        serde_json::to_string(&self).ok()
    }

    /// The event again, reading a referenced task or droplet back from the store.
    async fn into_event(self, store: &PgStore) -> Option<DomainEvent> {
        let task = match (self.task, self.task_id) {
            (Some(task), _) => Some(*task),
            (None, Some(id)) => store.get_task(id).await.ok(),
            (None, None) => None,
        };
        let droplet = match (self.droplet, self.droplet_id) {
            (Some(droplet), _) => Some(*droplet),
            (None, Some(id)) => store.get_droplet(id).await.ok(),
            (None, None) => None,
        };
        Some(match (self.name.as_str(), task, droplet) {
            ("task_created", Some(t), _) => DomainEvent::TaskCreated(t),
            ("task_assigned", Some(t), _) => DomainEvent::TaskAssigned(t),
            ("task_started", Some(t), _) => DomainEvent::TaskStarted(t),
            ("task_completed", Some(t), _) => DomainEvent::TaskCompleted(t),
            ("task_failed", Some(t), _) => DomainEvent::TaskFailed(t),
            ("task_cancelled", Some(t), _) => DomainEvent::TaskCancelled(t),
            ("task_retried", Some(t), _) => DomainEvent::TaskRetried(t),
            ("task_requeued", Some(t), _) => DomainEvent::TaskRequeued(t),
            ("task_released", Some(t), _) => DomainEvent::TaskReleased(t),
            ("task_deadline_at_risk", Some(t), _) => DomainEvent::TaskDeadlineAtRisk(t),
            ("task_cancel_requested", Some(t), _) => DomainEvent::TaskCancelRequested(t),
            ("task_progress", Some(t), _) => DomainEvent::TaskProgress(t),
            ("droplet_registered", _, Some(d)) => DomainEvent::DropletRegistered(d),
            ("droplet_heartbeat_missed", _, Some(d)) => DomainEvent::DropletHeartbeatMissed(d),
            ("droplet_health_changed", _, Some(d)) => DomainEvent::DropletHealthChanged {
                droplet: d,
                previous: self.previous?,
            },
            _ => return None,
        })
    }
}

/// The event bus of a replica on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgEventBus {
    origin: Uuid,
    seq: Arc<AtomicU64>,
    /// This replica's own events.
    local: broadcast::Sender<DomainEvent>,
    /// Every replica's events, this one's included.
    all: broadcast::Sender<DomainEvent>,
    outbox: mpsc::UnboundedSender<String>,
}

impl PgEventBus {
    /// A bus that notifies and listens over its own two connections to
    /// `url`, each a service of `services` (so they are listed and stop
    /// with the process's others). Returns once it listens (or after
    /// `LISTEN_WAIT`, when the database is slow to answer: it then keeps
    /// trying in the background).
    pub async fn start(url: &str, store: PgStore, services: &dyn Spawner) -> PgEventBus {
        let (outbox, pending) = mpsc::unbounded_channel();
        let bus = PgEventBus {
            origin: Uuid::new_v4(),
            seq: Arc::new(AtomicU64::new(0)),
            local: broadcast::channel(BUFFERED_EVENTS).0,
            all: broadcast::channel(BUFFERED_EVENTS).0,
            outbox,
        };
        services.spawn_service(
            "events: notify other replicas".into(),
            Box::pin(notify_forever(url.to_owned(), pending)),
        );
        let (ready, listening) = oneshot::channel();
        services.spawn_service(
            "events: listen to other replicas".into(),
            Box::pin(listen_forever(url.to_owned(), bus.clone(), store, ready)),
        );
        if tokio::time::timeout(LISTEN_WAIT, listening).await.is_err() {
            tracing::warn!("not yet listening for other replicas' events; still trying");
        }
        bus
    }
}

#[async_trait]
impl EventBus for PgEventBus {
    async fn publish(&self, event: DomainEvent) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        if let Some(payload) = Wire::of(&event, self.origin, seq).payload() {
            // The notifier has stopped only if the runtime is going down.
            let _ = self.outbox.send(payload);
        }
        // No subscriber is not an error: nobody is listening yet.
        let _ = self.all.send(event.clone());
        let _ = self.local.send(event);
    }

    fn subscribe(&self) -> EventStream {
        stream(&self.local)
    }

    fn subscribe_all_replicas(&self) -> EventStream {
        stream(&self.all)
    }
}

fn stream(sender: &broadcast::Sender<DomainEvent>) -> EventStream {
    Box::pin(BroadcastStream::new(sender.subscribe()).filter_map(|e| std::future::ready(e.ok())))
}

/// Sends queued events, all that are waiting in one statement, on a
/// connection of its own; reconnects after a failure.
async fn notify_forever(url: String, mut pending: mpsc::UnboundedReceiver<String>) {
    let mut connection: Option<AsyncPgConnection> = None;
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while batch.len() < NOTIFY_BATCH
            && let Ok(next) = pending.try_recv()
        {
            batch.push(next);
        }
        if connection.is_none() {
            connection = connect_notifier(&url).await;
        }
        let Some(conn) = connection.as_mut() else {
            tracing::warn!(
                events = batch.len(),
                "cannot reach PostgreSQL; other replicas miss these events"
            );
            tokio::time::sleep(RECONNECT_AFTER).await;
            continue;
        };
        let sent = NotifyAll {
            channel: CHANNEL,
            payloads: &batch,
        }
        .planned_per_call()
        .execute(conn)
        .await;
        if let Err(err) = sent {
            tracing::warn!(error = %err, events = batch.len(), "could not notify other replicas");
            connection = None;
        }
    }
}

async fn connect_notifier(url: &str) -> Option<AsyncPgConnection> {
    let mut conn = AsyncPgConnection::establish(url).await.ok()?;
    // A notification lost in a crash is acceptable; waiting for the disk on
    // every one is not.
    diesel::sql_query(ASYNC_COMMIT).execute(&mut conn).await.ok()?;
    Some(conn)
}

/// Hands other replicas' events to this one's subscribers, reconnecting
/// after a failure.
async fn listen_forever(url: String, bus: PgEventBus, store: PgStore, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    loop {
        if let Err(err) = listen(&url, &bus, &store, &mut ready).await {
            tracing::warn!(error = %err, "lost the event connection to PostgreSQL; reconnecting");
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

async fn listen(
    url: &str,
    bus: &PgEventBus,
    store: &PgStore,
    ready: &mut Option<oneshot::Sender<()>>,
) -> Result<(), diesel::result::Error> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| diesel::result::Error::QueryBuilderError(e.into()))?;
    diesel::sql_query(LISTEN).execute(&mut conn).await?;
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    while let Some(notification) = notifications.next().await {
        let notification = notification?;
        let Ok(wire) = serde_json::from_str::<Wire>(&notification.payload) else {
            tracing::warn!("ignored a malformed event notification");
            continue;
        };
        if wire.origin == bus.origin {
            continue;
        }
        if let Some(event) = wire.into_event(store).await {
            let _ = bus.all.send(event);
        }
    }
    Ok(())
}
