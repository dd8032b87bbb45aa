//! What the use-case tests share.

use std::sync::Arc;

use orchestrator_app::Ports;
use orchestrator_memory::{InProcessEventBus, MemoryStore};
use orchestrator_ports::Clock;

/// Ports over one fresh in-memory store and an in-process event bus.
pub fn memory_ports(clock: impl Clock + 'static) -> Ports {
    let store = Arc::new(MemoryStore::new());
    Ports {
        tasks: store.clone(),
        droplets: store,
        events: Arc::new(InProcessEventBus::default()),
        clock: Arc::new(clock),
    }
}
