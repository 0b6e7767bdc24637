//! PBFT (Castro and Liskov, OSDI 1999 / TOCS 2002), whole: batching with
//! a bounded pipeline, checkpoints and log truncation, view changes that
//! carry prepared certificates, state transfer, secp256k1 signatures on
//! every replica statement (made and checked by the shared stage, on a
//! pool of threads when the deployment gives it some), and client
//! requests authenticated by MACs or signatures.
//!
//! - `replica`: the state and dispatch; `normal`: request to reply;
//!   `checkpoint`; `view_change`; `state_transfer`.
//! - `client`: f+1 matching replies, resend to all.
//! - `codec`: the [`SharedState`](crate::actor::SharedState) that signs
//!   and verifies.

mod checkpoint;
mod client;
mod codec;
mod normal;
mod replica;
pub mod sim;
mod state_transfer;
mod view_change;

#[cfg(test)]
mod tests;

pub use client::Client;
pub use codec::{request_bytes, verify_request, PbftCodec, Statement};
pub use replica::{batch_digest, Replica, ReplicaCounters};
pub use troupe_message::pbft::Message;

use super::{Protocol, Setup};
use crate::actor::Addr;
use crate::app::App;
use crate::crypto::{ClientKeys, ReplicaKeys};
use crate::runtime::{run_host, Counters, Supervisor};
use std::sync::Arc;
use std::time::Duration;
use troupe_message::control::Params;

/// The registry entry.
pub const PROTOCOL: Protocol = Protocol {
    name: "pbft",
    replicas: |f| 3 * f + 1,
    run_replica,
    run_clients,
    simulate: |cfg| crate::sim::simulate(&sim::SimSpec::new(cfg.f), cfg),
    model_check: |cfg| crate::sim::model_check(&sim::SimSpec::new(cfg.f), cfg),
};

/// Most sequence numbers between two checkpoints. A view change carries a
/// certificate per prepared batch above the stable checkpoint, and a new
/// view 2f+1 view changes; this keeps them inside one datagram.
pub const MAX_CHECKPOINT_PERIOD: u64 = 16;

/// A PBFT deployment's knobs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Replicas (3f+1).
    pub n: usize,
    /// Faults tolerated.
    pub f: usize,
    /// Most requests per batch.
    pub max_batch: usize,
    /// Most batches proposed and not yet executed.
    pub window: u64,
    /// Sequence numbers between checkpoints.
    pub checkpoint_period: u64,
    /// How long a backup waits for a request it saw to execute (or for a
    /// new view) before moving to the next view.
    pub view_change_timeout: Duration,
    /// Most requests waiting at the primary.
    pub queue_capacity: usize,
}

impl Config {
    /// `n` replicas with default knobs.
    pub fn new(n: usize) -> Self {
        Self::from_params(n, &Params::default())
    }

    /// `n` replicas with the run's knobs: checkpoints every
    /// `checkpoint_interval` operations at full batches (at most
    /// [`MAX_CHECKPOINT_PERIOD`] batches apart).
    pub fn from_params(n: usize, p: &Params) -> Self {
        let batch = p.batch.max(1) as u64;
        Config {
            n,
            f: n.saturating_sub(1) / 3,
            max_batch: batch as usize,
            window: p.window.max(1) as u64,
            checkpoint_period: (p.checkpoint_interval / batch).clamp(1, MAX_CHECKPOINT_PERIOD),
            view_change_timeout: Duration::from_micros(p.view_change_us.max(1)),
            queue_capacity: 1 << 16,
        }
    }

    /// Sequence numbers held above the stable checkpoint (high watermark
    /// minus low): room for the pipeline while a checkpoint stabilizes.
    pub fn log_window(&self) -> u64 {
        (2 * self.checkpoint_period).max(self.window + self.checkpoint_period)
    }

    /// How long a replica waits for an answer to a fetch before asking
    /// another replica.
    pub fn fetch_timeout(&self) -> Duration {
        (self.view_change_timeout / 4).max(Duration::from_millis(1))
    }
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn run_replica(setup: Setup, supervisor: &mut dyn Supervisor) -> std::io::Result<Counters> {
    let Addr::Node(id) = setup.me else {
        return Err(other("a replica needs a node address"));
    };
    let command = setup.command;
    let n = command.replicas.len();
    let keys = ReplicaKeys::from_command(id, &command.keys).map_err(other)?;
    if keys.replicas() != n {
        return Err(other(format!(
            "{} replica public keys for {n} replicas",
            keys.replicas()
        )));
    }
    let codec = PbftCodec::replica(keys, command.params.client_auth);
    let replica = Replica::new(
        id,
        App::new(command.app),
        Config::from_params(n, &command.params),
    );
    let outcome = run_host(
        vec![(setup.me, replica)],
        Arc::new(codec),
        setup.host_config(),
        supervisor,
    )?;
    if let Some(r) = outcome.actors.first() {
        let c = &r.counters;
        eprintln!(
            "pbft replica {id}: view {}, executed through {}, {} view changes started, {} state transfers, {} batches fetched, {} messages rejected",
            r.view(), r.last_executed(), c.view_changes, c.state_transfers, c.fetched, c.rejected
        );
    }
    Ok(outcome.counters)
}

fn run_clients(setup: Setup, supervisor: &mut dyn Supervisor) -> std::io::Result<Counters> {
    let command = setup.command;
    let n = command.replicas.len();
    let f = n.saturating_sub(1) / 3;
    let keys = ClientKeys::from_command(&command.keys).map_err(other)?;
    let codec = PbftCodec::clients(keys, command.params.client_auth);
    let resend = Duration::from_micros(command.params.resend_us);
    let first = setup.client_ids().next().unwrap_or(0);
    let actors = setup
        .client_ids()
        .map(|id| (Addr::Client(id), Client::new(id, n, f, resend)))
        .collect();
    let outcome = run_host(actors, Arc::new(codec), setup.host_config(), supervisor)?;
    let mut counters = outcome.counters;
    counters.resends = outcome.actors.iter().map(|c| c.resends).sum();
    if counters.resends > 0 {
        eprintln!(
            "pbft clients {first}..: {} requests resent after a timeout",
            counters.resends
        );
    }
    Ok(counters)
}
