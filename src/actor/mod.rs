//! The actor core: the [`State`] and [`SharedState`] traits and the
//! [`Context`] through which actors reach the world.
//!
//! A protocol participant is a `State`: plain data plus handlers that
//! never open a socket, read a clock, sleep, spawn, or draw randomness
//! themselves. Each handler gets a [`Context`]; what it wants done goes
//! into the context as an [`Effect`] and the runtime (epoll loop, client
//! host, simulator, model checker) carries it out its own way.
//!
//! # A worked example: ping-pong
//!
//! ```
//! use std::time::Duration;
//! use troupe::actor::{Addr, Context, Effect, State, Timer};
//!
//! #[derive(Clone, Debug, PartialEq, Eq, Hash)]
//! enum Msg { Ping(u32), Pong(u32) }
//!
//! /// Sends a ping to `peer` and again every 10 ms until the pong arrives.
//! #[derive(Clone, Debug, PartialEq, Eq, Hash)]
//! struct Pinger { peer: Addr, round: u32, done: bool }
//!
//! const RESEND: Timer = Timer(0);
//!
//! impl State for Pinger {
//!     type Message = Msg;
//!     fn on_start(&mut self, cx: &mut Context<Msg>) {
//!         cx.send(self.peer, Msg::Ping(self.round));
//!         cx.set_timer(RESEND, Duration::from_millis(10));
//!     }
//!     fn on_message(&mut self, _from: Addr, msg: Msg, cx: &mut Context<Msg>) {
//!         if msg == Msg::Pong(self.round) {
//!             self.done = true;
//!             cx.cancel_timer(RESEND);
//!         }
//!     }
//!     fn on_timer(&mut self, _timer: Timer, cx: &mut Context<Msg>) {
//!         cx.send(self.peer, Msg::Ping(self.round));
//!         cx.set_timer(RESEND, Duration::from_millis(10));
//!     }
//! }
//!
//! /// Answers every ping.
//! struct Ponger;
//!
//! impl State for Ponger {
//!     type Message = Msg;
//!     fn on_message(&mut self, from: Addr, msg: Msg, cx: &mut Context<Msg>) {
//!         if let Msg::Ping(n) = msg {
//!             cx.send(from, Msg::Pong(n));
//!         }
//!     }
//! }
//!
//! // Drive both by hand, as a runtime would: run a handler, then carry
//! // out its effects.
//! let (a, b) = (Addr::Node(0), Addr::Node(1));
//! let mut pinger = Pinger { peer: b, round: 1, done: false };
//! let mut ponger = Ponger;
//! let (mut cx_a, mut cx_b) = (Context::new(a, 1), Context::new(b, 2));
//! pinger.on_start(&mut cx_a);
//! let ping = cx_a.drain().find_map(|e| match e {
//!     Effect::Send { msg, .. } => Some(msg),
//!     _ => None,
//! });
//! ponger.on_message(a, ping.unwrap(), &mut cx_b);
//! let Some(Effect::Send { to, msg }) = cx_b.drain().next() else { panic!() };
//! assert_eq!(to, a);
//! pinger.on_message(b, msg, &mut cx_a);
//! assert!(pinger.done);
//! assert_eq!(cx_a.drain().collect::<Vec<_>>(), vec![Effect::CancelTimer(RESEND)]);
//! ```
//!
//! The same two actors run unchanged on the epoll runtime
//! ([`crate::runtime`]) and in the simulator.

mod context;
mod rng;

pub use context::{op_digest, Context, Effect, Execution};
pub use rng::Rng;
pub use troupe_message::{Addr, Envelope};

use std::fmt::Debug;

/// A timer an actor names itself. Setting a timer that is already pending
/// replaces it, so a protocol needs no table of timer handles: it uses a
/// fixed id per purpose (or encodes a sequence number into one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer(pub u64);

/// The sequential part of a participant: plain data plus handlers, owned
/// by one thread (`&mut self`).
pub trait State {
    /// The protocol's message enum (from `troupe-message`).
    type Message: Clone + Debug + Send + 'static;

    /// Called once before anything else.
    fn on_start(&mut self, cx: &mut Context<Self::Message>) {
        let _ = cx;
    }

    /// A message from `from` arrived (already decoded and, where the
    /// protocol authenticates, verified by its [`SharedState`]).
    fn on_message(&mut self, from: Addr, msg: Self::Message, cx: &mut Context<Self::Message>);

    /// A timer this actor set has fired.
    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Self::Message>) {
        let _ = (timer, cx);
    }

    /// A client operation to perform (client actors only; the answer comes
    /// back through [`Context::complete`]). Other actors never get one, so
    /// the default ignores it.
    fn on_invoke(&mut self, op: Vec<u8>, cx: &mut Context<Self::Message>) {
        let _ = (op, cx);
    }

    /// Operations this actor has executed so far (replicas), for
    /// throughput reports.
    fn executed(&self) -> u64 {
        0
    }

    /// A word or two about what the actor is doing (e.g. "view 2"),
    /// shown on the dashboard.
    fn status(&self) -> String {
        String::new()
    }
}

/// Why an incoming datagram was dropped. Every one is counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The bytes do not decode.
    Malformed(String),
    /// A signature or MAC does not verify.
    BadAuth,
    /// The datagram is not for anyone here.
    NotForUs,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Malformed(e) => write!(f, "malformed datagram: {e}"),
            WireError::BadAuth => write!(f, "authentication failed"),
            WireError::NotForUs => write!(f, "datagram for an unknown recipient"),
        }
    }
}

impl std::error::Error for WireError {}

/// The part of a heavy actor that many threads run at once through
/// `&self`: decoding and verifying on the way in, signing and encoding on
/// the way out. It keeps no state between messages beyond keys and
/// configuration, which is what lets a pool of threads share it.
///
/// The runtime runs it on the threads a [`Deploy`] gives it, or inline on
/// the core's thread (and in the simulator) when it gives none.
pub trait SharedState: Send + Sync {
    /// The message type the core [`State`] consumes and produces.
    type Message;

    /// Decodes (and verifies) one datagram.
    fn decode(&self, bytes: &[u8]) -> Result<Envelope<Self::Message>, WireError>;

    /// Encodes (and signs) one outgoing message into `out` (cleared first).
    fn encode(&self, envelope: &Envelope<Self::Message>, out: &mut Vec<u8>);
}

/// How a heavy actor is spread over threads: its core [`State`] always on
/// one thread of its own, its [`SharedState`] on `shared_threads` more (0:
/// inline on the core thread, best when the shared stage is cheap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deploy {
    /// Threads running the shared stage.
    pub shared_threads: usize,
    /// Busy-poll instead of sleeping when idle.
    pub spin: bool,
}
