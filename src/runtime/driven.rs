//! One actor on a thread of its own, steered by commands from other
//! threads: the engine under blocking APIs (multicast sessions, and any
//! other service whose users call plain functions rather than run actors).
//!
//! The actor stays sans-IO: commands reach it through
//! [`Driven::on_command`] with a [`Context`], and what it has to say to
//! its users it queues as events, which the loop hands to a callback
//! after each turn. The loop reads several sockets (for example a unicast
//! one and a multicast one), sends through the first, and resolves
//! `Addr::Group(g)` to a multicast address.

use super::poller::{Clock, Poller, Waker};
use super::stats::Counters;
use super::timers::TimerQueue;
use crate::actor::{Addr, Context, Effect, Envelope, Rng, SharedState, State};
use crate::net::{Directory, UdpBatch, RECV_BATCH};
use crossbeam_channel::{Receiver, TryRecvError};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

/// How long the loop keeps polling without sleeping after it last did
/// something: a reply is usually microseconds away, and sleeping and
/// waking cost more than a few empty non-blocking reads.
const SPIN_AFTER_WORK: Duration = Duration::from_micros(0);
/// Commands taken per turn, so a flood of them cannot starve the sockets.
const COMMANDS_PER_TURN: usize = 1024;
/// Receive batches per socket per turn.
const BATCHES_PER_TURN: usize = 8;

/// An actor that users steer through commands and that answers them
/// through events.
pub trait Driven: State {
    /// What users ask of it.
    type Command: Send + 'static;
    /// What it tells its users.
    type Event: Send + 'static;

    /// A user's command.
    fn on_command(&mut self, command: Self::Command, cx: &mut Context<Self::Message>);

    /// Moves the events queued since the last call into `out`.
    fn drain_events(&mut self, out: &mut Vec<Self::Event>);

    /// Whether the actor is finished (the loop then returns it).
    fn finished(&self) -> bool;
}

/// Where a driven actor lives on the network.
pub struct DriveConfig {
    /// The actor's own address.
    pub me: Addr,
    /// Sockets to read (bound, non-blocking); the first one also sends.
    pub sockets: Vec<UdpSocket>,
    /// Where nodes are; clients are learned from their datagrams.
    pub directory: Directory,
    /// Multicast address of each group the actor sends to.
    pub multicast: HashMap<u16, SocketAddr>,
    /// Seed of the actor's randomness (and of injected loss).
    pub seed: u64,
    /// Fault injection for tests and benchmarks: the fraction of received
    /// datagrams dropped before decoding (0 in normal use).
    pub receive_loss: f64,
}

/// A loop's thread-side pieces, made before the thread starts so the
/// caller can hold the waker.
pub struct DriveLoop {
    poller: Poller,
}

impl DriveLoop {
    /// A new loop.
    pub fn new() -> io::Result<Self> {
        Ok(DriveLoop {
            poller: Poller::new()?,
        })
    }

    /// Wakes the loop; call after each command sent.
    pub fn waker(&self) -> Waker {
        self.poller.waker()
    }

    /// Runs `actor` until it is finished or the command channel is closed,
    /// calling `on_event` with each event it queues. Returns the actor and
    /// what was counted.
    pub fn run<A, C>(
        mut self,
        mut actor: A,
        codec: &C,
        config: DriveConfig,
        commands: Receiver<A::Command>,
        on_event: &mut dyn FnMut(A::Event),
    ) -> io::Result<(A, Counters)>
    where
        A: Driven,
        C: SharedState<Message = A::Message>,
    {
        let DriveConfig {
            me,
            sockets,
            mut directory,
            multicast,
            seed,
            receive_loss,
        } = config;
        for (i, s) in sockets.iter().enumerate() {
            self.poller.register(s.as_fd(), i as u64, false)?;
        }
        let mut nets: Vec<UdpBatch> = sockets.into_iter().map(UdpBatch::new).collect();
        if nets.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no socket"));
        }
        let mut cx = Context::new(me, seed);
        let mut loss = Rng::new(seed ^ 0x5eed_1055);
        let clock = Clock::start();
        let mut timers = TimerQueue::new();
        let mut counters = Counters::default();
        let mut events = Vec::new();
        let mut out = Out {
            me,
            codec,
            multicast: &multicast,
            counters: &mut counters,
        };
        cx.set_now(clock.now());
        actor.on_start(&mut cx);
        out.apply(&mut cx, &mut nets[0], &directory, &mut timers, clock.now());
        let mut last_work = Duration::ZERO;
        loop {
            let mut busy = false;
            let now = clock.now();
            while let Some((_, timer)) = timers.pop_due(now) {
                cx.set_now(now);
                actor.on_timer(timer, &mut cx);
                out.apply(&mut cx, &mut nets[0], &directory, &mut timers, now);
            }
            let mut closed = false;
            for _ in 0..COMMANDS_PER_TURN {
                match commands.try_recv() {
                    Ok(command) => {
                        busy = true;
                        let now = clock.now();
                        cx.set_now(now);
                        actor.on_command(command, &mut cx);
                        out.apply(&mut cx, &mut nets[0], &directory, &mut timers, now);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            for i in 0..nets.len() {
                for _ in 0..BATCHES_PER_TURN {
                    let n = nets[i].recv_batch()?;
                    if n == 0 {
                        break;
                    }
                    busy = true;
                    out.counters.received += n as u64;
                    let now = clock.now();
                    cx.set_now(now);
                    for k in 0..n {
                        if receive_loss > 0.0 && loss.chance(receive_loss) {
                            continue;
                        }
                        let (source, bytes) = nets[i].received(k);
                        let envelope = match codec.decode(bytes) {
                            Ok(e) => e,
                            Err(e) => {
                                log::debug!("dropped datagram from {source}: {e}");
                                out.counters.count_wire_error(&e);
                                continue;
                            }
                        };
                        // Multicasts carry the group as their recipient.
                        if envelope.to != me && !matches!(envelope.to, Addr::Group(_)) {
                            out.counters.not_for_us += 1;
                            continue;
                        }
                        if let Addr::Client(c) = envelope.from {
                            if !directory.learn_client(c, source) {
                                out.counters.clients_table_full += 1;
                            }
                        }
                        actor.on_message(envelope.from, envelope.body, &mut cx);
                        out.apply(&mut cx, &mut nets[0], &directory, &mut timers, now);
                    }
                    if n < RECV_BATCH {
                        break;
                    }
                }
            }
            nets[0].flush();
            actor.drain_events(&mut events);
            for event in events.drain(..) {
                on_event(event);
            }
            if closed || actor.finished() {
                nets[0].flush();
                counters.send_errors += nets[0].send_errors;
                return Ok((actor, counters));
            }
            let now = clock.now();
            if busy {
                last_work = now;
                continue;
            }
            if now < last_work + SPIN_AFTER_WORK {
                continue;
            }
            let deadline = timers.next_deadline().map(|d| clock.instant(d));
            self.poller.wait(deadline)?;
        }
    }
}

/// Carries out an actor's effects.
struct Out<'a, C> {
    me: Addr,
    codec: &'a C,
    multicast: &'a HashMap<u16, SocketAddr>,
    counters: &'a mut Counters,
}

impl<C: SharedState> Out<'_, C> {
    fn apply(
        &mut self,
        cx: &mut Context<C::Message>,
        net: &mut UdpBatch,
        directory: &Directory,
        timers: &mut TimerQueue,
        now: Duration,
    ) {
        for effect in cx.drain() {
            match effect {
                Effect::Send { to, msg } => {
                    let at = match to {
                        Addr::Group(g) => self.multicast.get(&g).copied(),
                        _ => directory.lookup(to),
                    };
                    let Some(at) = at else {
                        self.counters.unknown_destination += 1;
                        continue;
                    };
                    let mut buf = net.next_buffer();
                    let envelope = Envelope {
                        from: self.me,
                        to,
                        body: msg,
                    };
                    self.codec.encode(&envelope, &mut buf);
                    self.counters.sent += 1;
                    net.push(at, buf);
                }
                Effect::SetTimer { timer, after } => timers.set(0, timer, now + after),
                Effect::CancelTimer(timer) => timers.cancel(0, timer),
                // A driven actor answers through events, not completions.
                Effect::Complete(_) => {}
            }
        }
    }
}
