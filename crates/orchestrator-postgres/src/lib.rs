#![doc = include_str!("../README.md")]

mod analytics;
mod batch;
mod concurrency;
mod creates;
mod error;
mod events;
mod group_commit;
mod idempotency;
mod leader;
mod liveness;
mod migrations;
mod prepared;
mod reports;
mod rows;
mod schedules;
/// The tables as diesel sees them, generated from the migrations by
/// `diesel print-schema` (`scripts/check-schema --write`; CI checks it).
mod schema;
mod sql;
mod store;
mod views;
mod workflows;

pub use events::PgEventBus;
pub use leader::PgLeaderElection;
pub use migrations::{MIGRATIONS, run_migrations, verify_schema};
pub use store::{PgStore, PoolSettings};
