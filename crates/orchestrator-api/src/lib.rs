#![doc = include_str!("../README.md")]

pub mod concurrency;
pub mod droplets;
pub mod envelope;
pub mod error;
pub mod feeds;
pub mod management;
pub mod messages;
pub mod metrics;
pub mod public;
pub mod schedules;
pub mod tasks;
mod time;
pub mod tokens;
pub mod workflows;
