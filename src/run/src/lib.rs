//! troupe-run: benchmark sweeps written as plain Rust.
//!
//! A sweep is a loop in `main.rs` over [`Bench`] settings; each
//! [`Cluster::run`] starts (or reuses) the `replica` and `bench_client`
//! programs, sends them their [`Command`]s over the control plane,
//! streams their reports as tagged lines, and returns a [`RunResult`] that
//! [`results`] appends to a CSV. This crate does not depend on the root
//! `troupe` crate, so editing a sweep recompiles in seconds.
//!
//! [`Command`]: troupe_message::control::Command

pub mod bench;
pub mod cluster;
pub mod control;
pub mod keys;
pub mod results;

pub use bench::{Bench, RunResult};
pub use cluster::Cluster;
