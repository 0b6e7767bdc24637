//! The epoll loop: one thread running one or many actors over one UDP
//! socket, optionally with a pool of threads for the shared stage.

use super::poller::{Clock, Poller};
use super::pool::{Outbound, SharedPool};
use super::stats::Counters;
use super::timers::TimerQueue;
use crate::actor::{Addr, Context, Deploy, Effect, Envelope, SharedState, State};
use crate::net::{Directory, UdpBatch, RECV_BATCH};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

/// Token of the host's data socket in its poller.
const SOCKET_TOKEN: u64 = 0;
/// Datagram batches read per loop turn before timers get a look.
const RECV_BATCHES_PER_TURN: usize = 8;

/// How long a host keeps polling without sleeping after it last received
/// something.
const SPIN_AFTER_WORK: Duration = Duration::from_micros(50);

/// What a receive found.
#[derive(PartialEq, Eq)]
enum Received {
    /// Nothing arrived.
    Nothing,
    /// Something arrived and the socket (or pool queue) was then empty.
    Drained,
    /// It may hold more.
    MaybeMore,
}

/// What the code that started a host hears from it, and how it steers
/// closed-loop clients.
pub trait Supervisor {
    /// The next operation client actor `slot` should invoke now, or
    /// `None` to leave it idle. Called once per client at start and after
    /// each completion.
    fn next_op(&mut self, slot: usize, now: Duration) -> Option<Vec<u8>> {
        let _ = (slot, now);
        None
    }

    /// Client actor `slot` completed its operation with `result`.
    fn completed(&mut self, slot: usize, now: Duration, result: &[u8]) {
        let _ = (slot, now, result);
    }

    /// Called every [`HostConfig::tick`]; return `false` to stop the host.
    fn tick(&mut self, now: Duration, view: &HostView<'_>) -> bool;
}

/// A read-only look at a running host, for [`Supervisor::tick`].
pub struct HostView<'a> {
    /// The host's counters so far.
    pub counters: &'a Counters,
    /// Operations executed by all actors (replicas) so far.
    pub executed: u64,
    /// Status of the first actor.
    pub status: String,
}

/// How to run a host.
pub struct HostConfig {
    /// The data socket (bound, non-blocking). Binding before the host
    /// starts lets the caller learn an OS-chosen port.
    pub socket: UdpSocket,
    /// Where everyone else is.
    pub directory: Directory,
    /// Threads for the shared stage, spinning.
    pub deploy: Deploy,
    /// How often [`Supervisor::tick`] runs (and the longest an idle host
    /// sleeps).
    pub tick: Duration,
    /// Seed for the actors' randomness.
    pub seed: u64,
}

/// What a finished host hands back.
pub struct HostOutcome<S> {
    /// The actors, in their final state.
    pub actors: Vec<S>,
    /// Everything counted.
    pub counters: Counters,
}

struct Slot<S: State> {
    addr: Addr,
    state: S,
    cx: Context<S::Message>,
}

/// One thread's loop. Built and consumed by [`run_host`].
struct Host<S: State, C> {
    slots: Vec<Slot<S>>,
    index: HashMap<Addr, usize>,
    dense_clients: Option<(u64, usize)>,
    codec: Arc<C>,
    net: UdpBatch,
    directory: Directory,
    timers: TimerQueue,
    clock: Clock,
    counters: Counters,
    local: VecDeque<(Addr, usize, S::Message)>,
    effects: Vec<Effect<S::Message>>,
    invokes: Vec<(usize, Vec<u8>)>,
    inbound: Vec<(SocketAddr, Envelope<S::Message>)>,
    pool: Option<SharedPool<S::Message>>,
    tick: Duration,
    spin: bool,
}

/// Runs `actors` on this thread until the supervisor says stop.
///
/// Datagrams are read and written in batches (`recvmmsg`/`sendmmsg`);
/// timers fire with microsecond precision through a timerfd; an idle host
/// sleeps in `epoll_wait` (or busy-polls when `deploy.spin`). With
/// `deploy.shared_threads > 0`, decoding and encoding run on that many
/// extra threads and the actors on this one.
pub fn run_host<S, C>(
    actors: Vec<(Addr, S)>,
    codec: Arc<C>,
    config: HostConfig,
    supervisor: &mut dyn Supervisor,
) -> io::Result<HostOutcome<S>>
where
    S: State,
    C: SharedState<Message = S::Message> + 'static,
{
    let mut poller = Poller::new()?;
    let pool = if config.deploy.shared_threads > 0 {
        Some(SharedPool::start(
            codec.clone(),
            &config.socket,
            config.deploy.shared_threads,
            poller.waker(),
        )?)
    } else {
        poller.register(config.socket.as_fd(), SOCKET_TOKEN, false)?;
        None
    };
    let mut host = Host::new(actors, codec, config, pool);
    let result = host.run(&mut poller, supervisor);
    let pool_counters = host.pool.take().map(SharedPool::stop).unwrap_or_default();
    result?;
    host.counters.merge(&pool_counters);
    host.counters.send_errors += host.net.send_errors;
    Ok(HostOutcome {
        actors: host.slots.into_iter().map(|s| s.state).collect(),
        counters: host.counters,
    })
}

impl<S, C> Host<S, C>
where
    S: State,
    C: SharedState<Message = S::Message> + 'static,
{
    fn new(
        actors: Vec<(Addr, S)>,
        codec: Arc<C>,
        config: HostConfig,
        pool: Option<SharedPool<S::Message>>,
    ) -> Self {
        let index: HashMap<Addr, usize> = actors
            .iter()
            .enumerate()
            .map(|(i, (a, _))| (*a, i))
            .collect();
        // Client hosts hold a dense id range: index it by subtraction.
        let dense_clients = match actors.first() {
            Some((Addr::Client(first), _))
                if actors
                    .iter()
                    .enumerate()
                    .all(|(i, (a, _))| *a == Addr::Client(first + i as u64)) =>
            {
                Some((*first, actors.len()))
            }
            _ => None,
        };
        let slots = actors
            .into_iter()
            .map(|(addr, state)| Slot {
                addr,
                state,
                cx: Context::new(addr, seed_for(config.seed, addr)),
            })
            .collect();
        Host {
            slots,
            index,
            dense_clients,
            codec,
            net: UdpBatch::new(config.socket),
            directory: config.directory,
            timers: TimerQueue::new(),
            clock: Clock::start(),
            counters: Counters::default(),
            local: VecDeque::new(),
            effects: Vec::new(),
            invokes: Vec::new(),
            inbound: Vec::new(),
            pool,
            tick: config.tick,
            spin: config.deploy.spin,
        }
    }

    fn run(&mut self, poller: &mut Poller, supervisor: &mut dyn Supervisor) -> io::Result<()> {
        for slot in 0..self.slots.len() {
            let now = self.clock.now();
            let s = &mut self.slots[slot];
            s.cx.set_now(now);
            s.state.on_start(&mut s.cx);
            self.apply_effects(slot, supervisor);
        }
        let now = self.clock.now();
        for slot in 0..self.slots.len() {
            if let Some(op) = supervisor.next_op(slot, now) {
                self.invokes.push((slot, op));
            }
        }
        let mut next_tick = self.clock.now() + self.tick;
        let mut last_work = Duration::ZERO;
        loop {
            let mut busy = false;
            let now = self.clock.now();
            while let Some((slot, timer)) = self.timers.pop_due(now) {
                let s = &mut self.slots[slot];
                s.cx.set_now(now);
                s.state.on_timer(timer, &mut s.cx);
                self.apply_effects(slot, supervisor);
            }
            // A partly filled batch means the socket was drained: no need
            // to ask it again before sleeping (epoll is level-triggered, so
            // anything that arrived since wakes the wait at once).
            let received = self.receive(supervisor)?;
            if received != Received::Nothing {
                last_work = now;
            }
            busy |= received == Received::MaybeMore;
            busy |= self.run_local(supervisor);
            // Operations that completions just made due go out in the same
            // flush as everything else.
            self.run_invokes(supervisor);
            self.flush();
            let now = self.clock.now();
            if now >= next_tick {
                let view = HostView {
                    counters: &self.counters,
                    executed: self.slots.iter().map(|s| s.state.executed()).sum(),
                    status: self
                        .slots
                        .first()
                        .map(|s| s.state.status())
                        .unwrap_or_default(),
                };
                if !supervisor.tick(now, &view) {
                    return Ok(());
                }
                next_tick = now + self.tick;
            }
            if busy || !self.invokes.is_empty() || !self.local.is_empty() {
                continue;
            }
            if self.spin {
                poller.poll_now()?;
            } else if self.pool.is_none() && self.clock.now() < last_work + SPIN_AFTER_WORK {
                // Just busy: the next datagram is likely microseconds away,
                // and a sleep and wake-up cost more than a few non-blocking
                // reads, which the next turn does. An idle host stops
                // polling after this short window.
                continue;
            } else {
                let deadline = self
                    .timers
                    .next_deadline()
                    .map_or(next_tick, |t| t.min(next_tick));
                poller.wait(Some(self.clock.instant(deadline)))?;
            }
        }
    }

    /// Hands queued operations to their client actors.
    fn run_invokes(&mut self, supervisor: &mut dyn Supervisor) {
        if self.invokes.is_empty() {
            return;
        }
        let now = self.clock.now();
        let invokes = std::mem::take(&mut self.invokes);
        for (slot, op) in invokes {
            let s = &mut self.slots[slot];
            s.cx.set_now(now);
            s.state.on_invoke(op, &mut s.cx);
            self.apply_effects(slot, supervisor);
        }
    }

    /// Reads and delivers datagrams (from the socket, or decoded by the
    /// pool).
    fn receive(&mut self, supervisor: &mut dyn Supervisor) -> io::Result<Received> {
        if let Some(pool) = &self.pool {
            let mut inbound = std::mem::take(&mut self.inbound);
            pool.drain_inbound(&mut inbound);
            let any = !inbound.is_empty();
            for (source, envelope) in inbound.drain(..) {
                self.counters.received += 1;
                self.deliver(source, envelope, supervisor);
            }
            self.inbound = inbound;
            return Ok(if any {
                Received::MaybeMore
            } else {
                Received::Nothing
            });
        }
        for turn in 0..RECV_BATCHES_PER_TURN {
            let n = self.net.recv_batch()?;
            if n == 0 && turn == 0 {
                return Ok(Received::Nothing);
            }
            self.counters.received += n as u64;
            for i in 0..n {
                let (source, bytes) = self.net.received(i);
                match self.codec.decode(bytes) {
                    Ok(envelope) => self.deliver(source, envelope, supervisor),
                    Err(e) => {
                        log::debug!("dropped datagram from {source}: {e}");
                        self.counters.count_wire_error(&e);
                    }
                }
            }
            if n < RECV_BATCH {
                return Ok(Received::Drained);
            }
        }
        Ok(Received::MaybeMore)
    }

    fn deliver(
        &mut self,
        source: SocketAddr,
        envelope: Envelope<S::Message>,
        supervisor: &mut dyn Supervisor,
    ) {
        let Envelope { from, to, body } = envelope;
        if let Addr::Client(c) = from {
            if !self.directory.learn_client(c, source) {
                self.counters.clients_table_full += 1;
            }
        }
        match to {
            Addr::Group(g) => {
                let members: Vec<usize> = self
                    .directory
                    .group(g)
                    .iter()
                    .filter_map(|a| self.slot_of(*a))
                    .collect();
                if members.is_empty() {
                    self.counters.not_for_us += 1;
                }
                for slot in members {
                    self.handle(from, slot, body.clone(), supervisor);
                }
            }
            _ => match self.slot_of(to) {
                Some(slot) => self.handle(from, slot, body, supervisor),
                None => self.counters.not_for_us += 1,
            },
        }
    }

    fn handle(
        &mut self,
        from: Addr,
        slot: usize,
        msg: S::Message,
        supervisor: &mut dyn Supervisor,
    ) {
        let now = self.clock.now();
        let s = &mut self.slots[slot];
        s.cx.set_now(now);
        s.state.on_message(from, msg, &mut s.cx);
        self.apply_effects(slot, supervisor);
    }

    /// Delivers messages between actors of this host.
    fn run_local(&mut self, supervisor: &mut dyn Supervisor) -> bool {
        let mut any = false;
        // Bounded per turn so a chatty pair of local actors cannot starve
        // the socket and the timers.
        for _ in 0..1024 {
            let Some((from, slot, msg)) = self.local.pop_front() else {
                break;
            };
            any = true;
            self.handle(from, slot, msg, supervisor);
        }
        any
    }

    fn slot_of(&self, addr: Addr) -> Option<usize> {
        if let (Addr::Client(c), Some((first, n))) = (addr, self.dense_clients) {
            return c
                .checked_sub(first)
                .filter(|i| *i < n as u64)
                .map(|i| i as usize);
        }
        self.index.get(&addr).copied()
    }

    fn apply_effects(&mut self, slot: usize, supervisor: &mut dyn Supervisor) {
        let mut effects = std::mem::take(&mut self.effects);
        effects.extend(self.slots[slot].cx.drain());
        let from = self.slots[slot].addr;
        let now = self.clock.now();
        for effect in effects.drain(..) {
            match effect {
                Effect::Send { to, msg } => self.route(from, to, msg),
                Effect::SetTimer { timer, after } => self.timers.set(slot, timer, now + after),
                Effect::CancelTimer(timer) => self.timers.cancel(slot, timer),
                Effect::Complete(result) => {
                    supervisor.completed(slot, now, &result);
                    if let Some(op) = supervisor.next_op(slot, now) {
                        self.invokes.push((slot, op));
                    }
                }
            }
        }
        self.effects = effects;
    }

    /// Sends `msg` on its way: to local actors through the local queue, to
    /// remote ones encoded once and written to every socket address.
    fn route(&mut self, from: Addr, to: Addr, msg: S::Message) {
        let mut remote: Vec<SocketAddr> = Vec::new();
        match to {
            Addr::Group(g) => {
                for &member in self.directory.group(g) {
                    if member == from {
                        continue;
                    }
                    if let Some(slot) = self.slot_of(member) {
                        self.local.push_back((from, slot, msg.clone()));
                    } else if let Some(at) = self.directory.lookup(member) {
                        remote.push(at);
                    } else {
                        self.counters.unknown_destination += 1;
                    }
                }
            }
            _ => {
                if let Some(slot) = self.slot_of(to) {
                    self.local.push_back((from, slot, msg));
                    return;
                }
                match self.directory.lookup(to) {
                    Some(at) => remote.push(at),
                    None => {
                        self.counters.unknown_destination += 1;
                        return;
                    }
                }
            }
        }
        if remote.is_empty() {
            return;
        }
        let envelope = Envelope {
            from,
            to,
            body: msg,
        };
        self.counters.sent += remote.len() as u64;
        if let Some(pool) = &self.pool {
            pool.send(Outbound {
                to: remote,
                envelope,
            });
            return;
        }
        let mut buf = self.net.next_buffer();
        self.codec.encode(&envelope, &mut buf);
        let last = remote.len() - 1;
        for (i, at) in remote.into_iter().enumerate() {
            if i == last {
                self.net.push(at, std::mem::take(&mut buf));
            } else {
                self.net.push(at, buf.clone());
            }
        }
    }

    fn flush(&mut self) {
        if let Some(pool) = &self.pool {
            pool.flush();
        }
        if self.net.has_pending() {
            self.net.flush();
        }
    }
}

fn seed_for(seed: u64, addr: Addr) -> u64 {
    let tag = match addr {
        Addr::Node(n) => n as u64,
        Addr::Client(c) => c.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 1,
        Addr::Group(g) => (g as u64) << 48,
    };
    seed ^ tag.rotate_left(17)
}
