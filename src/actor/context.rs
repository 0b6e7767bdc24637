//! The context: everything an actor may ask of the world.

use super::{Addr, Rng, Timer};
use std::time::Duration;

/// One thing an actor asked for. Runtimes drain these after each handler
/// and carry them out in their own way.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Effect<M> {
    /// Send `msg` to `to` (a node, a client or a group).
    Send {
        /// Recipient.
        to: Addr,
        /// Message.
        msg: M,
    },
    /// Fire `timer` after `after`, replacing any pending firing of it.
    SetTimer {
        /// Which timer.
        timer: Timer,
        /// Delay from now.
        after: Duration,
    },
    /// Forget a pending `timer` (no effect when none is pending).
    CancelTimer(Timer),
    /// A client operation finished with this result (clients only).
    Complete(Vec<u8>),
}

/// What a handler gets instead of sockets, clocks and random sources.
///
/// Effects are collected, not performed: a handler's outputs happen after
/// it returns, in the order it asked for them.
#[derive(Clone, Debug)]
pub struct Context<M> {
    me: Addr,
    now: Duration,
    rng: Rng,
    effects: Vec<Effect<M>>,
    record_executions: bool,
    executions: Vec<Execution>,
}

/// One operation a replica reports as executed at a log position, for the
/// simulator's agreement checker (see [`Context::executed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Execution {
    /// Where in the replica's agreed order the operation ran.
    pub position: u64,
    /// [`op_digest`] of the operation's bytes.
    pub digest: u64,
}

/// A 64-bit digest of an operation's bytes (FNV-1a): stable across runs
/// and platforms, cheap, and enough to tell operations apart in a checker.
pub fn op_digest(op: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in op {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl<M> Context<M> {
    /// A context for the actor `me`, with randomness seeded by `seed`.
    pub fn new(me: Addr, seed: u64) -> Self {
        Context {
            me,
            now: Duration::ZERO,
            rng: Rng::new(seed),
            effects: Vec::new(),
            record_executions: false,
            executions: Vec::new(),
        }
    }

    /// This actor's own address.
    pub fn me(&self) -> Addr {
        self.me
    }

    /// The current time, measured from the runtime's start (virtual in the
    /// simulator, skewed per node when the simulator says so).
    pub fn now(&self) -> Duration {
        self.now
    }

    /// This actor's random source.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Sends `msg` to `to`. Datagram semantics: it may be lost,
    /// duplicated or reordered; protocols that need more resend.
    pub fn send(&mut self, to: Addr, msg: M) {
        self.effects.push(Effect::Send { to, msg });
    }

    /// Arms `timer` to fire once after `after`, replacing a pending one.
    pub fn set_timer(&mut self, timer: Timer, after: Duration) {
        self.effects.push(Effect::SetTimer { timer, after });
    }

    /// Disarms `timer`.
    pub fn cancel_timer(&mut self, timer: Timer) {
        self.effects.push(Effect::CancelTimer(timer));
    }

    /// Reports that the client operation in progress finished with
    /// `result`. Only client actors call this.
    pub fn complete(&mut self, result: Vec<u8>) {
        self.effects.push(Effect::Complete(result));
    }

    /// Reports that this replica executed `op` at `position` of its agreed
    /// order (positions are unique per operation, e.g. `seq << 16 | index`
    /// for batches). Only the simulator listens, to check that no two
    /// replicas execute different operations at one position and that every
    /// result a client accepted was executed; the real runtimes leave
    /// recording off and this costs a branch.
    pub fn executed(&mut self, position: u64, op: &[u8]) {
        if self.record_executions {
            self.executions.push(Execution {
                position,
                digest: op_digest(op),
            });
        }
    }

    /// Runtime side: turns recording of [`Context::executed`] on or off.
    pub fn record_executions(&mut self, on: bool) {
        self.record_executions = on;
    }

    /// Runtime side: takes the executions reported since the last call.
    pub fn take_executions(&mut self) -> std::vec::Drain<'_, Execution> {
        self.executions.drain(..)
    }

    /// Runtime side: sets the clock before a handler runs.
    pub fn set_now(&mut self, now: Duration) {
        self.now = now;
    }

    /// Runtime side: takes the effects a handler produced, oldest first.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Effect<M>> {
        self.effects.drain(..)
    }

    /// Runtime side: whether any effect waits to be drained.
    pub fn has_effects(&self) -> bool {
        !self.effects.is_empty()
    }
}
