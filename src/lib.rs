//! jbxd: Joe Sandbox on autopilot.
//!
//! See `ARCHITECTURE.md` for the map of this crate.

pub mod api;
pub mod app;
pub mod breaker;
pub mod cli;
pub mod config;
pub mod crashpoint;
pub mod daemon;
pub mod db;
pub mod index;
pub mod intake;
pub mod ioc;
pub mod pipeline;
pub mod simulator;
pub mod storage;
pub mod telemetry;
pub mod testing;
pub mod text;
pub mod worker;
