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
}

impl<M> Context<M> {
    /// A context for the actor `me`, with randomness seeded by `seed`.
    pub fn new(me: Addr, seed: u64) -> Self {
        Context {
            me,
            now: Duration::ZERO,
            rng: Rng::new(seed),
            effects: Vec::new(),
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
