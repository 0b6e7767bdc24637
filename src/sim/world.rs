//! The simulated world: actors, a seeded network and virtual time that
//! jumps from one event to the next.

use super::adversary::{Adversary, Behaviour};
use super::config::SimConfig;
use super::faults::{FaultKind, Schedule};
use super::history::History;
use super::network::Conditions;
use super::timers::{Came, Timers};
use super::trace::Trace;
use super::workload::Workload;
use super::{Msg, Spec};
use crate::actor::{Addr, Context, Effect, Execution, Rng, State, Timer};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Protocol misbehaviours noticed during a run, kept at most.
const MAX_VIOLATIONS: usize = 16;

/// Something that happens at a virtual instant. Events live in a slab;
/// the heap orders small (time, sequence, slab index) keys, so sifting
/// never moves messages.
enum Event<M> {
    Free,
    Deliver {
        from: u32,
        to: u32,
        msg: M,
    },
    Timer {
        slot: u32,
        timer: Timer,
        generation: u64,
    },
    Invoke {
        client: u32,
    },
    FaultStart(u32),
    FaultEnd(u32),
    Watchdog,
}

/// What a handler is run for.
enum Input<M> {
    Start,
    Message(Addr, M),
    Timer(Timer),
    Invoke(Vec<u8>),
}

/// One actor and what the world knows about it.
struct Slot<A: State> {
    addr: Addr,
    cx: Context<A::Message>,
    up: bool,
    honest: bool,
    /// Timers armed, or with an event still in the queue.
    timers: Timers,
    /// Local clock rate (skew).
    rate: f64,
    adversary: Option<Adversary<A::Message>>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Every client finished its operations.
    Done,
    /// A client's operation outlived the liveness bound.
    Stuck { client: u64 },
    /// Nothing was left to happen while a client still waited (or, with
    /// `None`, while the protocol had not finished).
    Deadlock { client: Option<u64> },
    /// The protocol had not finished its work a liveness bound after the
    /// faults healed.
    Unfinished,
    /// The event limit was hit.
    EventLimit,
}

/// Counters of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Handlers run (deliveries, timer firings, invocations, starts).
    pub events: u64,
    /// Messages put on the network (copies counted).
    pub sent: u64,
    /// Messages lost: dropped, cut by a partition, or sent to a crashed node.
    pub lost: u64,
    /// Messages duplicated.
    pub duplicated: u64,
    /// Messages a Byzantine node held back or forged.
    pub tampered: u64,
    /// Messages sent to addresses that do not exist.
    pub unknown: u64,
}

/// One simulation run in progress.
pub(crate) struct World<'s, P: Spec> {
    spec: &'s P,
    cfg: &'s SimConfig,
    schedule: &'s Schedule,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, u32)>>,
    events: Vec<Event<Msg<P>>>,
    free: Vec<u32>,
    slots: Vec<Slot<P::Actor>>,
    /// The actors, apart from their slots so the spec can see them all.
    pub states: Vec<P::Actor>,
    nodes: usize,
    groups: Vec<(u16, Vec<u32>)>,
    rng: Rng,
    cond: Conditions,
    active: Vec<bool>,
    timer_generation: u64,
    workloads: Vec<Workload>,
    done: Vec<usize>,
    finished: usize,
    heal: u64,
    scratch: Vec<Effect<Msg<P>>>,
    targets: Vec<u32>,
    pub history: History,
    pub executed: Vec<Vec<Execution>>,
    pub violations: Vec<String>,
    pub stats: Stats,
    pub trace: Option<Trace>,
}

impl<'s, P: Spec> World<'s, P> {
    /// A world for `seed` under `schedule`, tracing the last
    /// `trace_lines` events when that is not zero.
    pub fn new(
        spec: &'s P,
        cfg: &'s SimConfig,
        seed: u64,
        schedule: &'s Schedule,
        trace_lines: usize,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let nodes = spec.nodes();
        let mut slots = Vec::with_capacity(nodes + cfg.clients);
        let mut states = Vec::with_capacity(nodes + cfg.clients);
        let addrs = (0..nodes as u16)
            .map(Addr::Node)
            .chain((0..cfg.clients as u64).map(Addr::Client));
        for addr in addrs {
            let state = match addr {
                Addr::Node(n) => spec.node(n),
                Addr::Client(c) => spec.client(c),
                Addr::Group(_) => continue,
            };
            let mut cx = Context::new(addr, rng.next_u64());
            cx.record_executions(matches!(addr, Addr::Node(_)));
            let skew = cfg.network.clock_skew;
            states.push(state);
            slots.push(Slot {
                addr,
                cx,
                up: true,
                honest: true,
                timers: Timers::default(),
                rate: 1.0 + skew * (2.0 * rng.unit() - 1.0),
                adversary: None,
            });
        }
        let mut world = World {
            spec,
            cfg,
            schedule,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            free: Vec::new(),
            slots,
            states,
            nodes,
            groups: Vec::new(),
            rng,
            cond: Conditions::default(),
            active: vec![false; schedule.faults.len()],
            timer_generation: 0,
            workloads: (0..cfg.clients as u64)
                .map(|c| Workload::new(seed, c, cfg.keys))
                .collect(),
            done: vec![0; cfg.clients],
            finished: 0,
            heal: schedule.heal_time().as_nanos() as u64,
            scratch: Vec::new(),
            targets: Vec::new(),
            history: History::new(cfg.clients),
            executed: vec![Vec::new(); nodes],
            violations: Vec::new(),
            stats: Stats::default(),
            trace: (trace_lines > 0).then(|| Trace::new(trace_lines)),
        };
        world.groups = spec
            .groups()
            .into_iter()
            .map(|(id, members)| {
                let slots = members.iter().filter_map(|a| world.slot_of(*a)).collect();
                (id, slots)
            })
            .collect();
        world
    }

    /// Runs until every client is done, a liveness bound is broken,
    /// nothing is left to happen, or the event limit is hit.
    pub fn run(&mut self) -> End {
        for (i, fault) in self.schedule.faults.iter().enumerate() {
            self.push(fault.start.as_nanos() as u64, Event::FaultStart(i as u32));
            if let Some(end) = fault.end {
                self.push(end.as_nanos() as u64, Event::FaultEnd(i as u32));
            }
        }
        for slot in 0..self.slots.len() {
            self.handle(slot, Input::Start);
        }
        if self.cfg.ops == 0 {
            self.finished = self.cfg.clients;
        } else {
            for client in 0..self.cfg.clients as u32 {
                let at = self.rng.below(1_000_000);
                self.push(at, Event::Invoke { client });
            }
        }
        if self.done() {
            return End::Done;
        }
        let bound = self.cfg.liveness_bound.as_nanos() as u64;
        self.push(self.heal + bound, Event::Watchdog);
        while let Some(Reverse((at, _, index))) = self.queue.pop() {
            self.now = at;
            let event = std::mem::replace(&mut self.events[index as usize], Event::Free);
            self.free.push(index);
            match event {
                Event::Deliver { from, to, msg } => self.deliver(from, to, msg),
                Event::Timer {
                    slot,
                    timer,
                    generation,
                } => self.fire(slot as usize, timer, generation),
                Event::Invoke { client } => self.invoke(client as usize),
                Event::FaultStart(i) => self.fault(i as usize, true),
                Event::FaultEnd(i) => self.fault(i as usize, false),
                Event::Watchdog => {
                    if let Some(end) = self.watchdog() {
                        return end;
                    }
                }
                Event::Free => {}
            }
            if self.done() {
                return End::Done;
            }
            if self.stats.events >= self.cfg.max_events {
                return End::EventLimit;
            }
        }
        End::Deadlock {
            client: (0..self.cfg.clients)
                .find(|c| self.done[*c] < self.cfg.ops)
                .map(|c| c as u64),
        }
    }

    /// Every client has finished and the protocol says its work is done.
    fn done(&self) -> bool {
        self.finished == self.cfg.clients && self.spec.finished(&self.states)
    }

    /// Virtual time now.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    /// Virtual time at which every healing fault had healed.
    pub fn heal_time(&self) -> Duration {
        Duration::from_nanos(self.heal)
    }

    /// Node ids that stayed honest, with what they executed.
    pub fn honest_executions(&self) -> Vec<(u16, &[Execution])> {
        (0..self.nodes)
            .filter(|n| self.slots[*n].honest)
            .map(|n| (n as u16, self.executed[n].as_slice()))
            .collect()
    }

    fn slot_of(&self, addr: Addr) -> Option<u32> {
        match addr {
            Addr::Node(n) if (n as usize) < self.nodes => Some(n as u32),
            Addr::Client(c) if (c as usize) < self.cfg.clients => {
                Some((self.nodes as u64 + c) as u32)
            }
            _ => None,
        }
    }

    fn push(&mut self, at: u64, event: Event<Msg<P>>) {
        let index = match self.free.pop() {
            Some(i) => {
                self.events[i as usize] = event;
                i
            }
            None => {
                self.events.push(event);
                (self.events.len() - 1) as u32
            }
        };
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, index)));
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(what);
        }
    }

    /// Runs one handler of `slot`, then carries out its effects.
    fn handle(&mut self, slot: usize, input: Input<Msg<P>>) {
        let s = &mut self.slots[slot];
        let state = &mut self.states[slot];
        s.cx.set_now(Duration::from_nanos((self.now as f64 * s.rate) as u64));
        match input {
            Input::Start => state.on_start(&mut s.cx),
            Input::Message(from, msg) => state.on_message(from, msg, &mut s.cx),
            Input::Timer(timer) => state.on_timer(timer, &mut s.cx),
            Input::Invoke(op) => state.on_invoke(op, &mut s.cx),
        }
        self.stats.events += 1;
        let mut effects = std::mem::take(&mut self.scratch);
        effects.extend(s.cx.drain());
        if slot < self.nodes {
            if s.honest {
                self.executed[slot].extend(s.cx.take_executions());
            } else {
                s.cx.take_executions();
            }
        }
        for effect in effects.drain(..) {
            match effect {
                Effect::Send { to, msg } => self.send(slot, to, msg),
                Effect::SetTimer { timer, after } => self.set_timer(slot, timer, after),
                Effect::CancelTimer(timer) => self.slots[slot].timers.cancel(timer),
                Effect::Complete(result) => self.complete(slot, result),
            }
        }
        self.scratch = effects;
    }

    fn send(&mut self, slot: usize, to: Addr, msg: Msg<P>) {
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        match to {
            Addr::Group(g) => match self.groups.iter().find(|(id, _)| *id == g) {
                Some((_, members)) => {
                    targets.extend(members.iter().filter(|m| **m as usize != slot));
                }
                None => self.stats.unknown += 1,
            },
            _ => match self.slot_of(to) {
                Some(t) => targets.push(t),
                None => self.stats.unknown += 1,
            },
        }
        let behaviour = self.slots[slot].adversary.as_ref().map(|a| a.behaviour);
        match behaviour {
            None => self.fan_out(slot, &targets, msg),
            Some(Behaviour::Silent) => self.stats.tampered += targets.len() as u64,
            Some(Behaviour::Equivocate) => {
                let forged = self.spec.forge(slot as u16, &msg, &mut self.rng);
                // Unicasts are forged half the time, multicasts for half
                // the recipients.
                let split = if targets.len() == 1 {
                    self.rng.below(2) as usize
                } else {
                    targets.len() / 2
                };
                for (k, &t) in targets.iter().enumerate() {
                    if k < split {
                        self.transmit(slot as u32, t, msg.clone());
                    } else if let Some(f) = &forged {
                        self.stats.tampered += 1;
                        self.transmit(slot as u32, t, f.clone());
                    } else {
                        self.stats.tampered += 1;
                    }
                }
            }
            Some(Behaviour::Replay) => {
                for &t in &targets {
                    if let Some(adversary) = self.slots[slot].adversary.as_mut() {
                        adversary.remember(t, &msg);
                    }
                    self.transmit(slot as u32, t, msg.clone());
                }
                let old = match self.slots[slot].adversary.as_mut() {
                    Some(adversary) => adversary.replay(&mut self.rng),
                    None => None,
                };
                if let Some((t, m)) = old {
                    self.stats.tampered += 1;
                    self.transmit(slot as u32, t, m);
                }
            }
        }
        self.targets = targets;
    }

    /// Sends `msg` to every target, cloning for all but the last.
    fn fan_out(&mut self, slot: usize, targets: &[u32], msg: Msg<P>) {
        let Some((&last, rest)) = targets.split_last() else {
            return;
        };
        for &t in rest {
            self.transmit(slot as u32, t, msg.clone());
        }
        self.transmit(slot as u32, last, msg);
    }

    /// Puts one message on the network: lost, duplicated or delayed as
    /// the active faults say.
    fn transmit(&mut self, from: u32, to: u32, msg: Msg<P>) {
        if self.cond.lose(&mut self.rng) {
            self.stats.lost += 1;
            if let Some(trace) = &mut self.trace {
                let (f, t) = (self.slots[from as usize].addr, self.slots[to as usize].addr);
                let shown = self.spec.show(&msg);
                trace.push(self.now, format_args!("{f} -> {t} LOST"), Some(&shown));
            }
            return;
        }
        if self.cond.duplicate(&mut self.rng) {
            self.stats.duplicated += 1;
            self.stats.sent += 1;
            let at = self.now + self.delay();
            self.push(
                at,
                Event::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
        self.stats.sent += 1;
        let at = self.now + self.delay();
        self.push(at, Event::Deliver { from, to, msg });
    }

    fn delay(&mut self) -> u64 {
        self.cond.delay(&self.cfg.network.delay, &mut self.rng)
    }

    fn deliver(&mut self, from: u32, to: u32, msg: Msg<P>) {
        let (f, t) = (self.slots[from as usize].addr, self.slots[to as usize].addr);
        let cut = self.cond.cut(from, to);
        let why = if !self.slots[to as usize].up {
            Some("DOWN")
        } else if cut {
            Some("CUT")
        } else {
            None
        };
        if let Some(trace) = &mut self.trace {
            let shown = self.spec.show(&msg);
            match why {
                Some(why) => trace.push(self.now, format_args!("{f} -> {t} {why}"), Some(&shown)),
                None => trace.push(self.now, format_args!("{f} -> {t}"), Some(&shown)),
            }
        }
        if why.is_some() {
            self.stats.lost += 1;
            return;
        }
        self.handle(to as usize, Input::Message(f, msg));
    }

    fn set_timer(&mut self, slot: usize, timer: Timer, after: Duration) {
        let s = &mut self.slots[slot];
        let deadline = self.now + (after.as_nanos() as f64 / s.rate) as u64;
        if s.timers.set(timer, deadline) {
            self.queue_timer(slot, timer, deadline);
        }
    }

    fn queue_timer(&mut self, slot: usize, timer: Timer, at: u64) {
        self.timer_generation += 1;
        let generation = self.timer_generation;
        self.slots[slot].timers.queued(timer, generation, at);
        self.push(
            at,
            Event::Timer {
                slot: slot as u32,
                timer,
                generation,
            },
        );
    }

    fn fire(&mut self, slot: usize, timer: Timer, generation: u64) {
        match self.slots[slot].timers.came(timer, generation, self.now) {
            Came::Stale => {}
            Came::Later(at) => self.queue_timer(slot, timer, at),
            Came::Fire => {
                if let Some(trace) = &mut self.trace {
                    let addr = self.slots[slot].addr;
                    trace.push(self.now, format_args!("{addr} timer {}", timer.0), None);
                }
                self.handle(slot, Input::Timer(timer));
            }
        }
    }

    fn invoke(&mut self, client: usize) {
        let op = self.workloads[client].next_op();
        if let Some(trace) = &mut self.trace {
            trace.push(
                self.now,
                format_args!("c{client} invokes"),
                Some(&format!("{op:?}")),
            );
        }
        let bytes = self.history.invoke(client as u64, op, self.now());
        self.handle(self.nodes + client, Input::Invoke(bytes));
    }

    fn complete(&mut self, slot: usize, result: Vec<u8>) {
        let addr = self.slots[slot].addr;
        let Addr::Client(client) = addr else {
            self.violation(format!("node {addr} completed a client operation"));
            return;
        };
        if let Some(trace) = &mut self.trace {
            let shown = format!("{:?}", crate::app::decode_result(&result));
            trace.push(self.now, format_args!("{addr} completes"), Some(&shown));
        }
        if let Err(e) = self.history.complete(client, &result, self.now()) {
            self.violation(e);
            return;
        }
        let c = client as usize;
        self.done[c] += 1;
        if self.done[c] < self.cfg.ops {
            self.push(
                self.now,
                Event::Invoke {
                    client: client as u32,
                },
            );
        } else {
            self.finished += 1;
        }
    }

    /// Checks every waiting client against its liveness deadline; wakes
    /// again at the earliest deadline still ahead.
    fn watchdog(&mut self) -> Option<End> {
        let bound = self.cfg.liveness_bound.as_nanos() as u64;
        let mut next = u64::MAX;
        for c in 0..self.cfg.clients as u64 {
            let Some(op) = self.history.outstanding(c) else {
                continue;
            };
            let deadline = (op.invoked_at.as_nanos() as u64).max(self.heal) + bound;
            if deadline <= self.now {
                return Some(End::Stuck { client: c });
            }
            next = next.min(deadline);
        }
        if next == u64::MAX && !self.spec.finished(&self.states) {
            // No client waits, but the protocol's own work is not done.
            let deadline = self.heal + bound;
            if deadline <= self.now {
                return Some(End::Unfinished);
            }
            next = deadline;
        }
        if next != u64::MAX {
            self.push(next, Event::Watchdog);
        }
        None
    }

    fn fault(&mut self, index: usize, start: bool) {
        let schedule = self.schedule;
        let kind = &schedule.faults[index].kind;
        if let Some(trace) = &mut self.trace {
            let phase = if start { "begins" } else { "heals" };
            trace.push(self.now, format_args!("FAULT {phase}: {kind}"), None);
        }
        match *kind {
            FaultKind::Crash { node } => {
                let n = node as usize;
                if start {
                    self.slots[n].up = false;
                    self.slots[n].timers.clear();
                } else {
                    let crashed = self.states[n].clone();
                    self.states[n] = self.spec.restart(node, crashed);
                    self.slots[n].up = true;
                    self.handle(n, Input::Start);
                }
            }
            FaultKind::Byzantine { node, behaviour } => {
                let s = &mut self.slots[node as usize];
                if start {
                    s.adversary = Some(Adversary::new(behaviour));
                    s.honest = false;
                } else {
                    s.adversary = None;
                }
            }
            _ => {
                self.active[index] = start;
                self.recompute_conditions();
            }
        }
    }

    fn recompute_conditions(&mut self) {
        let slots = self.slots.len();
        self.cond = Conditions::of(self.schedule, &self.active, slots, |a| self.slot_of(a));
    }
}
