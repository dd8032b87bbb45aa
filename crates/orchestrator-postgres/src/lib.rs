#![doc = include_str!("../README.md")]

mod error;
mod leader;
mod migrations;
mod rows;
mod schema;
mod store;

pub use leader::PgLeaderElection;
pub use migrations::{MIGRATIONS, run_migrations, verify_schema};
pub use store::{PgStore, PoolSettings};
