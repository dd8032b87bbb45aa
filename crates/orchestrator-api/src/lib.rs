#![doc = include_str!("../README.md")]

pub mod droplets;
pub mod management;
pub mod metrics;
pub mod public;
pub mod tasks;
