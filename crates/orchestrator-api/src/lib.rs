#![doc = include_str!("../README.md")]

pub mod droplets;
pub mod management;
pub mod messages;
pub mod metrics;
pub mod public;
pub mod tasks;
