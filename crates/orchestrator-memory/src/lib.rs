#![doc = include_str!("../README.md")]

mod event_bus;
mod store;

pub use event_bus::InProcessEventBus;
pub use store::MemoryStore;
