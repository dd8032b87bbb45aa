#![doc = include_str!("../README.md")]

pub mod management;
pub mod public;
