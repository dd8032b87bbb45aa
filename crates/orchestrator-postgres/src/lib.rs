#![doc = include_str!("../README.md")]

mod analytics;
mod batch;
mod creates;
mod error;
mod events;
mod group_commit;
mod idempotency;
mod leader;
mod liveness;
mod migrations;
mod prepared;
mod rows;
mod schema;
mod sql;
mod store;

pub use events::{PgEventBus, PgEventBusHandle};
pub use leader::PgLeaderElection;
pub use migrations::{MIGRATIONS, run_migrations, verify_schema};
pub use store::{PgStore, PoolSettings};
