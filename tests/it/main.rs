//! The integration tests, in one binary with a module per area (as ripgrep and zero2prod do):
//! the crate is linked once instead of once per file. Two suites stay binaries of their own:
//! `tests/config.rs`, whose `figment::Jail` changes the process environment and working
//! directory, and `tests/memory.rs`, which measures the peak memory of the children of its
//! process. Run one area with a filter: `cargo test --test it intake::`.
//!
//! Modules that run the real binary share `common` (the scrubbed host environment, config
//! writing); the crash tests share `crash_harness`. `crash_points` and `torture` need the
//! test-only crash points: `cargo test --features fault-injection --test it -- crash_points::
//! torture::`.

mod common;
mod crash_harness;

mod cli;
mod client;
#[cfg(feature = "fault-injection")]
mod crash_points;
mod crash_recovery;
mod daemon_lifecycle;
mod encrypted;
mod http_faults;
mod import;
mod index_cli;
mod index_e2e;
mod index_ingest;
mod index_properties;
mod index_queries;
mod intake;
mod interop;
mod log_text;
mod operator_cli;
mod pipeline;
mod properties;
mod query_plans;
mod reliability_b;
mod report_parse;
mod scale;
mod secrets;
mod sim_reports;
mod simulator;
mod structure;
#[cfg(feature = "fault-injection")]
mod torture;
mod vault;
mod xpath;
