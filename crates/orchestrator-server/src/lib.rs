#![doc = include_str!("../README.md")]

pub mod auth;
pub mod cli;
pub mod dashboard;
pub mod envelope;
pub mod error;
pub mod limits;
pub mod openapi;
pub mod process_stats;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod stopping;
pub mod telemetry;

pub use auth::{JwtKeys, TokenRequest, TokenVerifier};
pub use settings::Settings;
pub use startup::Application;
