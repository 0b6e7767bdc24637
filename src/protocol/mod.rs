//! The protocols, each one file or folder, all listed in [`PROTOCOLS`].
//!
//! Adding a protocol: write its message enum in `troupe-message`, its
//! actors here (a module with a `PROTOCOL` constant), and add that
//! constant to [`PROTOCOLS`]. The programs, `troupe-run` and the
//! simulator find it by name.

pub mod common;
pub mod pbft;
pub mod unreplicated;

use crate::actor::{Addr, Deploy};
use crate::net::Directory;
use crate::runtime::{Counters, HostConfig, Supervisor};
use crate::sim::{CheckConfig, CheckOutcome, SimConfig, SimOutcome};
use std::net::UdpSocket;
use std::time::Duration;
use troupe_message::control::Command;

/// Every protocol troupe knows, by name.
pub const PROTOCOLS: &[Protocol] = &[unreplicated::PROTOCOL, pbft::PROTOCOL];

/// Finds a protocol by name.
pub fn find(name: &str) -> Option<&'static Protocol> {
    PROTOCOLS.iter().find(|p| p.name == name)
}

/// A protocol's entry points for the real runtime.
pub struct Protocol {
    /// The name used on command lines and in results.
    pub name: &'static str,
    /// Replicas needed to tolerate `f` faults.
    pub replicas: fn(f: usize) -> usize,
    /// Runs one replica until the supervisor stops it.
    pub run_replica: fn(Setup, &mut dyn Supervisor) -> std::io::Result<Counters>,
    /// Runs a range of closed-loop clients on this thread.
    pub run_clients: fn(Setup, &mut dyn Supervisor) -> std::io::Result<Counters>,
    /// Runs seeded simulations with faults and checks them; usually
    /// `|cfg| crate::sim::simulate(&MySpec::new(cfg), cfg)` (see [`crate::sim`]).
    pub simulate: fn(&SimConfig) -> SimOutcome,
    /// Model-checks a small configuration; usually
    /// `|cfg| crate::sim::model_check(&MySpec::new(..), cfg)`.
    pub model_check: fn(&CheckConfig) -> CheckOutcome,
}

/// What a protocol needs to start its part of a run.
pub struct Setup<'a> {
    /// The run.
    pub command: &'a Command,
    /// This actor's address (replicas) or the first client's.
    pub me: Addr,
    /// Clients on this thread (clients only).
    pub client_count: u64,
    /// The bound data socket.
    pub socket: UdpSocket,
    /// How often the supervisor is called.
    pub tick: Duration,
}

impl Setup<'_> {
    /// Where the replicas are.
    pub fn directory(&self) -> Directory {
        Directory::new(self.command.replicas.clone())
    }

    /// Host configuration for this setup.
    pub fn host_config(self) -> HostConfig {
        let directory = self.directory();
        let deploy = Deploy {
            shared_threads: self.command.threads.shared as usize,
            spin: self.command.threads.spin,
        };
        HostConfig {
            socket: self.socket,
            directory,
            deploy,
            tick: self.tick,
            seed: self.command.seed,
        }
    }

    /// Ids of the clients on this thread.
    pub fn client_ids(&self) -> impl Iterator<Item = u64> {
        let first = match self.me {
            Addr::Client(c) => c,
            _ => 0,
        };
        first..first + self.client_count
    }
}
