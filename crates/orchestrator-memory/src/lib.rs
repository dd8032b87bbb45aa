#![doc = include_str!("../README.md")]

mod event_bus;
mod store;

pub use event_bus::InProcessEventBus;
pub use store::MemoryStore;

/// The only process of an in-memory deployment is always the leader.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoleLeader;

#[async_trait::async_trait]
impl orchestrator_ports::LeaderElection for SoleLeader {
    async fn is_leader(&self) -> bool {
        true
    }
}
