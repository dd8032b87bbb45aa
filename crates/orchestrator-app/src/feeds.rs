//! The live feeds behind `/ws/tasks` and `/ws/droplets`: every committed
//! change, fanned out to the clients watching it.
//!
//! Each event is serialised once and handed to every matching client's
//! bounded queue without waiting. A client whose queue is full is too slow
//! to follow: it is disconnected (and told why), so that it never holds up
//! the others or the publisher.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytestring::ByteString;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use orchestrator_domain::{Caller, Capability, DomainEvent, DropletId};
use tokio::sync::mpsc;

use crate::Ports;

/// The two feeds of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feed {
    Tasks,
    Droplets,
}

impl Feed {
    /// The feed an event belongs to.
    pub fn of(event: &DomainEvent) -> Feed {
        match event {
            DomainEvent::DropletRegistered(_)
            | DomainEvent::DropletHealthChanged { .. }
            | DomainEvent::DropletHeartbeatMissed(_) => Feed::Droplets,
            _ => Feed::Tasks,
        }
    }
}

/// What a client asked to see when it connected; an empty filter sees everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedFilter {
    pub task_type: Option<String>,
    /// Tasks requiring it, or droplets offering it.
    pub capability: Option<Capability>,
    /// Tasks assigned to it, or that droplet's own events.
    pub droplet_id: Option<DropletId>,
}

impl FeedFilter {
    pub fn matches(&self, event: &DomainEvent) -> bool {
        if let Some(d) = event.droplet() {
            return self.capability.as_ref().is_none_or(|c| d.has_capability(c))
                && self.droplet_id.is_none_or(|id| d.droplet_id == id);
        }
        event.task().is_some_and(|t| {
            self.task_type.as_ref().is_none_or(|tt| &t.task_type == tt)
                && self
                    .capability
                    .as_ref()
                    .is_none_or(|c| t.required_capability.as_ref() == Some(c))
                && self.droplet_id.is_none_or(|id| t.assigned_droplet_id == Some(id))
        })
    }
}

/// What the connection of a client is told to do.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedMessage {
    /// A text frame to send as it is; clones share one buffer.
    Frame(ByteString),
    /// Time to check the client is alive (the `websocket_ping` job).
    Ping,
}

/// Limits of the feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedSettings {
    /// Connections one caller (token subject) may hold at once (`WS_MAX_PER_DROPLET`).
    pub max_per_caller: usize,
    /// Connections this replica holds at most, all callers together
    /// (`MAX_WS_CONNECTIONS`): memory and file descriptors are bounded.
    pub max_total: usize,
    /// Messages queued for one client before it counts as too slow.
    pub client_buffer: usize,
}

/// The text of an event's frame at the moment it was published: the
/// wire's business, so the server gives it.
pub type FrameText = fn(&DomainEvent, DateTime<Utc>) -> String;

/// Whose connections a feed client counts against (`WS_MAX_PER_DROPLET`):
/// a droplet's, by its `droplet_id` claim, whatever subject its token
/// names; any other caller's, by subject. The count is this replica's: each
/// replica caps the sockets it holds itself.
pub fn feed_owner(caller: &Caller) -> String {
    match caller.droplet_id {
        Some(id) => format!("droplet-{id}"),
        None => caller.subject.clone(),
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error("{caller} already holds {limit} feed connections, the most allowed; close one first")]
    TooManyConnections { caller: String, limit: usize },
    #[error("the orchestrator already holds {limit} feed connections, the most it allows; retry shortly")]
    Full { limit: usize },
}

/// The feeds' figures (`GET /ws/status`).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedStatus {
    pub connections: BTreeMap<Feed, usize>,
    pub total_connections: usize,
    pub connections_per_caller: BTreeMap<String, usize>,
    pub messages_sent: u64,
    /// Clients disconnected because they fell too far behind.
    pub dropped_slow_clients: u64,
    /// Clients disconnected because they stopped answering pings.
    pub dropped_unresponsive_clients: u64,
}

struct Client {
    feed: Feed,
    caller: String,
    filter: FeedFilter,
    sender: mpsc::Sender<FeedMessage>,
    overflowed: Arc<AtomicBool>,
}

pub struct FeedHub {
    settings: FeedSettings,
    clients: Mutex<HashMap<u64, Client>>,
    next_id: AtomicU64,
    sent: AtomicU64,
    dropped_slow: AtomicU64,
    dropped_unresponsive: AtomicU64,
}

impl std::fmt::Debug for FeedHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedHub")
            .field("settings", &self.settings)
            .finish()
    }
}

impl FeedHub {
    pub fn new(settings: FeedSettings) -> Arc<Self> {
        Arc::new(FeedHub {
            settings,
            clients: Mutex::default(),
            next_id: AtomicU64::new(1),
            sent: AtomicU64::new(0),
            dropped_slow: AtomicU64::new(0),
            dropped_unresponsive: AtomicU64::new(0),
        })
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Client>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fans out every event of the bus, as a service, each written once by `frame`.
    pub fn start(self: &Arc<Self>, ports: &Ports, services: &crate::Services, frame: FrameText) {
        let mut events = ports.events.subscribe_all_replicas();
        let (hub, clock) = (Arc::clone(self), ports.clock.clone());
        services.spawn("feeds: fan-out", async move {
            while let Some(event) = events.next().await {
                let frame = ByteString::from(frame(&event, clock.now()));
                hub.fan_out(&event, &frame);
            }
        })
    }

    /// Hands `frame` to every client of the event's feed whose filter matches.
    pub fn fan_out(&self, event: &DomainEvent, frame: &ByteString) {
        let feed = Feed::of(event);
        let mut clients = self.clients();
        let slow: Vec<u64> = clients
            .iter()
            .filter(|(_, c)| c.feed == feed && c.filter.matches(event))
            .filter(|(_, c)| c.sender.try_send(FeedMessage::Frame(frame.clone())).is_err())
            .map(|(id, _)| *id)
            .collect();
        self.drop_slow(&mut clients, &slow);
    }

    /// Asks every connection to ping its client.
    pub fn ping_all(&self) {
        let mut clients = self.clients();
        let slow: Vec<u64> = clients
            .iter()
            .filter(|(_, c)| c.sender.try_send(FeedMessage::Ping).is_err())
            .map(|(id, _)| *id)
            .collect();
        self.drop_slow(&mut clients, &slow);
    }

    /// Disconnects clients whose queue is full; a closed queue (the
    /// connection is ending) is simply forgotten.
    fn drop_slow(&self, clients: &mut HashMap<u64, Client>, ids: &[u64]) {
        for id in ids {
            if let Some(client) = clients.remove(id)
                && !client.sender.is_closed()
            {
                client.overflowed.store(true, Ordering::SeqCst);
                self.dropped_slow.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(caller = %client.caller, feed = ?client.feed, "feed client too slow; disconnected");
            }
        }
    }

    /// True when this replica holds as many connections as it allows: a new
    /// one would be refused.
    pub fn is_full(&self) -> bool {
        self.clients().len() >= self.settings.max_total
    }

    /// Registers a client, unless its caller already holds the most
    /// connections allowed, or the replica does.
    pub fn connect(
        self: &Arc<Self>,
        feed: Feed,
        caller: &str,
        filter: FeedFilter,
    ) -> Result<Subscription, FeedError> {
        let mut clients = self.clients();
        if clients.len() >= self.settings.max_total {
            return Err(FeedError::Full {
                limit: self.settings.max_total,
            });
        }
        let held = clients.values().filter(|c| c.caller == caller).count();
        if held >= self.settings.max_per_caller {
            return Err(FeedError::TooManyConnections {
                caller: caller.to_owned(),
                limit: self.settings.max_per_caller,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(self.settings.client_buffer.max(1));
        let overflowed = Arc::new(AtomicBool::new(false));
        clients.insert(
            id,
            Client {
                feed,
                caller: caller.to_owned(),
                filter,
                sender,
                overflowed: Arc::clone(&overflowed),
            },
        );
        Ok(Subscription {
            id,
            receiver,
            overflowed,
            hub: Arc::downgrade(self),
        })
    }

    pub fn status(&self) -> FeedStatus {
        let clients = self.clients();
        let mut connections = BTreeMap::from([(Feed::Tasks, 0), (Feed::Droplets, 0)]);
        let mut per_caller = BTreeMap::new();
        for client in clients.values() {
            *connections.entry(client.feed).or_default() += 1;
            *per_caller.entry(client.caller.clone()).or_default() += 1;
        }
        FeedStatus {
            connections,
            total_connections: clients.len(),
            connections_per_caller: per_caller,
            messages_sent: self.sent.load(Ordering::Relaxed),
            dropped_slow_clients: self.dropped_slow.load(Ordering::Relaxed),
            dropped_unresponsive_clients: self.dropped_unresponsive.load(Ordering::Relaxed),
        }
    }
}

/// A connected client's end of the feed; dropping it disconnects the client.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    receiver: mpsc::Receiver<FeedMessage>,
    overflowed: Arc<AtomicBool>,
    hub: Weak<FeedHub>,
}

impl Subscription {
    /// The next message, or `None` once the client is disconnected.
    pub async fn next(&mut self) -> Option<FeedMessage> {
        self.receiver.recv().await
    }

    /// True when the hub disconnected this client for falling behind.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::SeqCst)
    }

    /// Counts a frame written to the client.
    pub fn record_sent(&self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a client dropped for not answering a ping.
    pub fn record_unresponsive(&self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.dropped_unresponsive.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.clients().remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: usize, buffer: usize) -> FeedSettings {
        FeedSettings {
            max_per_caller: max,
            max_total: 10_000,
            client_buffer: buffer,
        }
    }

    /// A frame naming the event, as the server's would.
    fn frame(event: &DomainEvent, _at: DateTime<Utc>) -> ByteString {
        ByteString::from(format!("{{\"event\":\"{}\"}}", event.name()))
    }

    fn droplet_event() -> DomainEvent {
        DomainEvent::DropletHeartbeatMissed(orchestrator_domain::Droplet {
            droplet_id: 7,
            name: "seven".into(),
            steward: None,
            endpoint: "http://localhost:1".into(),
            capabilities: vec![Capability::new("x").expect("capability")],
            status: orchestrator_domain::DropletStatus::Inactive,
            max_concurrent_tasks: 1,
            manually_deactivated: false,
            last_heartbeat: None,
            last_assigned_at: None,
            registered_at: chrono::DateTime::UNIX_EPOCH,
            updated_at: chrono::DateTime::UNIX_EPOCH,
            service_id: None,
            session_started_at: None,
        })
    }

    #[tokio::test]
    async fn a_caller_may_hold_only_so_many_connections() {
        let hub = FeedHub::new(settings(2, 8));
        let first = hub.connect(Feed::Tasks, "alice", FeedFilter::default());
        let second = hub.connect(Feed::Droplets, "alice", FeedFilter::default());
        assert!(first.is_ok() && second.is_ok());
        assert!(matches!(
            hub.connect(Feed::Tasks, "alice", FeedFilter::default()),
            Err(FeedError::TooManyConnections { limit: 2, .. })
        ));
        assert!(hub.connect(Feed::Tasks, "bob", FeedFilter::default()).is_ok());
        drop(first);
        assert!(hub.connect(Feed::Tasks, "alice", FeedFilter::default()).is_ok());
    }

    #[tokio::test]
    async fn a_full_queue_disconnects_only_that_client() {
        let hub = FeedHub::new(settings(10, 2));
        let mut slow = hub
            .connect(Feed::Droplets, "slow", FeedFilter::default())
            .expect("slow");
        let mut quick = hub
            .connect(Feed::Droplets, "quick", FeedFilter::default())
            .expect("quick");
        let event = droplet_event();
        for _ in 0..3 {
            hub.fan_out(&event, &frame(&event, Utc::now()));
            assert!(matches!(quick.next().await, Some(FeedMessage::Frame(_))));
        }
        assert!(slow.overflowed());
        assert!(!quick.overflowed());
        // What was queued before the overflow is still delivered, then the end.
        assert!(slow.next().await.is_some() && slow.next().await.is_some());
        assert_eq!(slow.next().await, None);
        assert_eq!(hub.status().dropped_slow_clients, 1);
        assert_eq!(hub.status().total_connections, 1);
    }

    #[tokio::test]
    async fn filters_pick_the_events_a_client_asked_for() {
        let hub = FeedHub::new(settings(10, 8));
        let wanted = FeedFilter {
            droplet_id: Some(7),
            ..FeedFilter::default()
        };
        let other = FeedFilter {
            droplet_id: Some(8),
            ..FeedFilter::default()
        };
        let mut seven = hub.connect(Feed::Droplets, "a", wanted).expect("a");
        let mut eight = hub.connect(Feed::Droplets, "b", other).expect("b");
        let mut tasks = hub.connect(Feed::Tasks, "c", FeedFilter::default()).expect("c");
        let event = droplet_event();
        hub.fan_out(&event, &frame(&event, Utc::now()));
        assert!(
            matches!(seven.next().await, Some(FeedMessage::Frame(f)) if f.contains("\"droplet_heartbeat_missed\""))
        );
        assert!(eight.receiver.try_recv().is_err());
        assert!(tasks.receiver.try_recv().is_err());
    }
}
