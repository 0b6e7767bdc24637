//! troupe-run: benchmark sweeps written as plain Rust.
//!
//! A sweep is a loop in `main.rs` that builds a list of [`Bench`]es and
//! hands it to a [`Sweep`]. The sweep starts the `replica` and
//! `bench_client` programs (on loopback, or on the [`Hosts`] of a hosts
//! file) through a [`Cluster`], sends them their commands over the control
//! plane with fresh keys for every run, and shows their reports on the
//! [`dashboard`] (or as plain tagged lines when stdout is not a terminal).
//! Each finished run appends a row to a CSV and writes a JSON file with
//! its full latency histogram and per-second series ([`results`]); runs
//! already in the CSV are skipped, so an interrupted sweep resumes. At the
//! end, [`plot`] draws latency against throughput and throughput over time
//! as SVG.
//!
//! This crate does not depend on the root `troupe` crate, so editing a
//! sweep recompiles in seconds.

pub mod bench;
pub mod cluster;
pub mod control;
pub mod dashboard;
pub mod events;
pub mod hosts;
pub mod keys;
pub mod plot;
pub mod program;
pub mod results;
pub mod sweep;

pub use bench::{Bench, Fault, RunResult};
pub use cluster::{Cluster, RunError};
pub use events::Event;
pub use hosts::Hosts;
pub use sweep::{Outcome, Sweep};
