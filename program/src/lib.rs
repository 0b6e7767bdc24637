//! The long-running troupe programs share this library: a daemon that
//! waits on a TCP control address for a [`Command`], runs it, streams
//! [`Report`]s back, and waits for the next.
//!
//! [`Command`]: troupe_message::control::Command
//! [`Report`]: troupe_message::control::Report

pub mod daemon;
pub mod peers;
pub mod run_clients;
pub mod run_replica;
pub mod watch;
