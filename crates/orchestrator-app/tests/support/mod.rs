//! What the use-case tests share.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use orchestrator_app::Ports;
use orchestrator_memory::{InProcessEventBus, MemoryStore};
use orchestrator_ports::Clock;

/// Ports over one fresh in-memory store and an in-process event bus.
#[allow(dead_code, reason = "some test files need the store itself")]
pub fn memory_ports(clock: impl Clock + 'static) -> Ports {
    memory_ports_over(Arc::new(MemoryStore::new()), clock)
}

/// Ports over `store` and an in-process event bus.
pub fn memory_ports_over(store: Arc<MemoryStore>, clock: impl Clock + 'static) -> Ports {
    Ports {
        tasks: store.clone(),
        droplets: store,
        events: Arc::new(InProcessEventBus::default()),
        clock: Arc::new(clock),
    }
}

/// A clock a test moves by hand.
#[derive(Clone)]
#[allow(dead_code, reason = "not every test file moves the clock")]
pub struct MovableClock(pub Arc<Mutex<DateTime<Utc>>>);

#[allow(dead_code, reason = "not every test file moves the clock")]
impl MovableClock {
    pub fn at(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }
}

impl Clock for MovableClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
