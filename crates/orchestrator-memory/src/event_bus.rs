//! An event bus within one process, over a tokio broadcast channel.

use async_trait::async_trait;
use orchestrator_domain::DomainEvent;
use orchestrator_ports::{EventBus, EventStream};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

/// Events a slow subscriber may fall behind by before it misses some.
const BUFFERED_EVENTS: usize = 4096;

/// Fans each event out to every current subscriber. A subscriber that falls
/// more than the buffer behind skips the oldest events rather than slowing
/// the publisher.
#[derive(Debug, Clone)]
pub struct InProcessEventBus {
    sender: broadcast::Sender<DomainEvent>,
}

impl Default for InProcessEventBus {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(BUFFERED_EVENTS);
        Self { sender }
    }
}

#[async_trait]
impl EventBus for InProcessEventBus {
    async fn publish(&self, event: DomainEvent) {
        // No subscriber is not an error: nobody is listening yet.
        let _ = self.sender.send(event);
    }

    fn subscribe(&self) -> EventStream {
        Box::pin(BroadcastStream::new(self.sender.subscribe()).filter_map(Result::ok))
    }
}
