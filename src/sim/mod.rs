//! The deterministic simulator, the model checker, and the checkers that
//! judge what happened.
//!
//! Both drive the very `State`s the epoll runtime runs. The simulator is
//! one thread with virtual time that jumps to the next event; one seeded
//! generator decides every delay, drop, duplicate, partition, crash and
//! Byzantine choice, so a seed replays a run event for event. The model
//! checker explores every order of deliveries, timer firings and
//! (optionally) drops of a small configuration.
//!
//! # Plugging in a protocol
//!
//! A protocol implements [`Spec`]: one enum over all its participants
//! (the `Actor`, `Clone + Hash + Eq` so the model checker can store and
//! compare states), and constructors for node `i` and client `c`. Clients
//! receive key-value operations through `State::on_invoke` and answer with
//! `Context::complete`; replicas report each operation they execute with
//! [`Context::executed`](crate::actor::Context::executed), which the
//! agreement checker reads (the real runtime ignores it). Then two lines
//! in the protocol's registry entry make `sim --protocol <name>` find it:
//!
//! ```text
//! pub const PROTOCOL: Protocol = Protocol {
//!     // ...
//!     simulate: |cfg| crate::sim::simulate(&MySpec::new(cfg.f), cfg),
//!     model_check: |cfg| crate::sim::model_check(&MySpec::new(cfg.f), cfg),
//! };
//! ```
//!
//! A whole protocol, small enough to read here: an echo "service" whose
//! single node executes operations in arrival order (it has no at-most-once
//! table, so it relies on clients never resending).
//!
//! ```
//! use std::time::Duration;
//! use troupe::actor::{Addr, Context, State, Timer};
//! use troupe::app::App;
//! use troupe::sim::{self, SimConfig, Spec, Tolerance};
//!
//! #[derive(Clone, Debug, PartialEq, Eq, Hash)]
//! enum Msg { Op(Vec<u8>), Result(Vec<u8>) }
//!
//! #[derive(Clone, Debug, PartialEq, Eq, Hash)]
//! enum Actor { Server { app: App, done: u64 }, Client { waiting: bool } }
//!
//! impl State for Actor {
//!     type Message = Msg;
//!     fn on_message(&mut self, from: Addr, msg: Msg, cx: &mut Context<Msg>) {
//!         match (self, msg) {
//!             (Actor::Server { app, done }, Msg::Op(op)) => {
//!                 *done += 1;
//!                 cx.executed(*done, &op); // for the agreement checker
//!                 cx.send(from, Msg::Result(app.execute(&op)));
//!             }
//!             (Actor::Client { waiting }, Msg::Result(r)) if *waiting => {
//!                 *waiting = false;
//!                 cx.complete(r);
//!             }
//!             _ => {}
//!         }
//!     }
//!     fn on_invoke(&mut self, op: Vec<u8>, cx: &mut Context<Msg>) {
//!         if let Actor::Client { waiting } = self {
//!             *waiting = true;
//!             cx.send(Addr::Node(0), Msg::Op(op));
//!         }
//!     }
//! }
//!
//! struct Echo;
//!
//! impl Spec for Echo {
//!     type Actor = Actor;
//!     fn nodes(&self) -> usize { 1 }
//!     fn tolerance(&self) -> Tolerance { Tolerance::none() }
//!     fn node(&self, _id: u16) -> Actor {
//!         Actor::Server { app: App::new(troupe::app::AppKind::Kv), done: 0 }
//!     }
//!     fn client(&self, _id: u64) -> Actor { Actor::Client { waiting: false } }
//! }
//!
//! // Without faults the echo service is linearizable...
//! let cfg = SimConfig { seeds: 5, clients: 4, ops: 20, ..SimConfig::default() };
//! assert_eq!(sim::simulate(&Echo, &cfg).failed.len(), 0);
//! // ...with duplicated messages it executes appends twice, and the
//! // checkers say so.
//! let cfg = SimConfig { faults: "dup".parse().unwrap(), seeds: 20, ..cfg };
//! assert!(!sim::simulate(&Echo, &cfg).failed.is_empty());
//! ```
//!
//! # Design decisions
//!
//! - **Channels are authenticated.** A message carries the sender the
//!   network saw; a Byzantine node cannot speak for another. That is what
//!   signatures and MACs give a real deployment, so the simulator hands
//!   typed messages over without encoding them.
//! - **Byzantine nodes** are honest `State`s behind an adversary that
//!   filters what they send ([`Behaviour`]): silent (sends nothing),
//!   equivocate (half the recipients get what [`Spec::forge`] makes of the
//!   message instead, or nothing when the protocol cannot forge), or replay
//!   (old messages sent again at random). Their executions are left out of
//!   the agreement check.
//! - **Crash and restart**: a crashed node loses its pending timers and
//!   every message sent to it; on restart it gets [`Spec::restart`] (by
//!   default the state it had, as if logged to stable storage) and
//!   `on_start` runs again.
//! - **The model checker** needs `Clone + Hash + Eq` actors and messages
//!   and is untimed: any armed timer may fire at any step, which covers
//!   every timing a real network could produce.
//! - **Workload**: clients run closed-loop key-value operations over a few
//!   shared keys with unique written values, which is what makes the
//!   linearizability check sharp.

mod adversary;
mod agreement;
mod check;
mod config;
mod faults;
mod history;
mod linearizability;
mod network;
mod runner;
#[cfg(test)]
mod tests;
mod timers;
mod trace;
mod workload;
mod world;

pub use adversary::Behaviour;
pub use agreement::check_agreement;
pub use check::{model_check, CheckConfig, CheckOutcome, Search};
pub use config::{Delay, FaultKinds, NetworkConfig, SimConfig};
pub use faults::{Fault, FaultKind, Schedule};
pub use history::{History, Op};
pub use linearizability::{check_linearizable, check_linearizable_with};
pub use runner::{
    assert_seeds, run_one, shrink, simulate, Failure, RunReport, SimOutcome, SEED_VAR,
};
pub use workload::Workload;
pub use world::Stats;

use crate::actor::{Addr, Rng, State};
use std::fmt::Debug;
use std::hash::Hash;

/// The message type of a spec's actors.
pub type Msg<P> = <<P as Spec>::Actor as State>::Message;

/// How many nodes a protocol tolerates being faulty at once, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tolerance {
    /// Nodes that may be crashed or Byzantine at the same time.
    pub faulty: usize,
    /// Whether faulty nodes may be Byzantine (otherwise they only crash).
    pub byzantine: bool,
}

impl Tolerance {
    /// No node may fail.
    pub fn none() -> Self {
        Tolerance {
            faulty: 0,
            byzantine: false,
        }
    }
}

/// What a protocol tells the simulator and the model checker: its
/// participants and how to build them.
pub trait Spec {
    /// Every participant (replica, client, ...) as one enum. `Clone +
    /// Hash + Eq` lets the model checker store and compare states; keep big
    /// caches out of the hashed part.
    type Actor: State + Clone + Debug + Hash + Eq;

    /// Nodes (replicas) in the configuration: `Addr::Node(0 .. nodes)`.
    fn nodes(&self) -> usize;

    /// Faults the protocol claims to survive; the simulator injects no
    /// more than this.
    fn tolerance(&self) -> Tolerance;

    /// Node `id` as it starts.
    fn node(&self, id: u16) -> Self::Actor;

    /// Client `id` as it starts (ids are `0 .. clients`).
    fn client(&self, id: u64) -> Self::Actor;

    /// The groups messages may be multicast to; by default group 0 is
    /// every node ([`crate::actor::Addr`]'s `ALL_REPLICAS`).
    fn groups(&self) -> Vec<(u16, Vec<Addr>)> {
        vec![(0, (0..self.nodes() as u16).map(Addr::Node).collect())]
    }

    /// The state node `id` comes back with after a crash. The default
    /// keeps everything (state on stable storage); a protocol that keeps
    /// state in memory only returns a fresh node that must catch up.
    fn restart(&self, id: u16, crashed: Self::Actor) -> Self::Actor {
        let _ = id;
        crashed
    }

    /// For an equivocating Byzantine node `from`: a message that conflicts
    /// with `msg` (e.g. a proposal of a different batch for the same
    /// sequence number), or `None` when there is nothing to forge.
    fn forge(&self, from: u16, msg: &Msg<Self>, rng: &mut Rng) -> Option<Msg<Self>> {
        let _ = (from, msg, rng);
        None
    }

    /// A message as a failing seed's trace shows it (e.g. with operation
    /// bytes decoded); `Debug` by default.
    fn show(&self, msg: &Msg<Self>) -> String {
        format!("{msg:?}")
    }

    /// A protocol-specific invariant over all actors (nodes first, then
    /// clients), checked by the model checker in every state it reaches
    /// and by the simulator at the end of every run.
    fn invariant(&self, actors: &[Self::Actor]) -> Result<(), String> {
        let _ = actors;
        Ok(())
    }

    /// Whether the protocol's own work is done, asked once every client
    /// has finished its operations. By default there is no such work. A
    /// protocol without key-value clients (work distribution, multicast)
    /// runs with `ops: 0` until this holds, and fails liveness when it
    /// does not hold a bound after the faults heal.
    fn finished(&self, actors: &[Self::Actor]) -> bool {
        let _ = actors;
        true
    }

    /// A check of the final state of a simulation run (e.g. the job's
    /// result is complete and right).
    fn check_end(&self, actors: &[Self::Actor]) -> Result<(), String> {
        let _ = actors;
        Ok(())
    }
}
