#![doc = include_str!("../README.md")]

pub mod droplets;
pub mod management;
pub mod public;
pub mod tasks;
pub mod tokens;
