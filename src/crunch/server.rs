//! The crunch server: hands out chunks, merges results, watches heartbeats.

use super::{ChunkId, Job, Message};
use crate::actor::{Addr, Context, State, Timer};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The periodic check for silent nodes.
const SWEEP: Timer = Timer(1);

/// Deaths kept for [`ServerStats::deaths`]; later ones are only counted.
const MAX_DEATHS_KEPT: usize = 1024;

/// Heartbeats in a row that may miss an assigned chunk before it counts as
/// lost (one miss is a `Work` still on its way).
const MISSES_BEFORE_LOST: u8 = 2;

/// How the server runs a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// How often nodes send a heartbeat (told to each node on
    /// registration).
    pub heartbeat: Duration,
    /// A node silent for this long is declared dead. The silence is
    /// checked every quarter heartbeat, so a dead node is noticed at most
    /// `dead_after + heartbeat / 4` after its last heartbeat.
    pub dead_after: Duration,
    /// Registered nodes at most; further registrations are refused.
    pub max_nodes: usize,
    /// Chunks in flight per node at most, whatever the node asks for.
    pub max_window: u32,
    /// End-game backups: once no chunk is pending, a node with room also
    /// gets a copy of a chunk another node holds; the first result wins.
    /// The tail of the job then waits for the fastest holder, not for a
    /// slow or frozen one (at most one extra window of work per node).
    pub backups: bool,
}

impl ServerConfig {
    /// A configuration with heartbeats every `heartbeat`, a node declared
    /// dead after one and a half heartbeats of silence (so within two
    /// intervals of its last sign of life, sweep included).
    pub fn with_heartbeat(heartbeat: Duration) -> Self {
        ServerConfig {
            heartbeat,
            dead_after: heartbeat + heartbeat / 2,
            max_nodes: 4096,
            max_window: 64,
            backups: true,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::with_heartbeat(Duration::from_secs(1))
    }
}

/// A node the server declared dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Death {
    /// Which node.
    pub node: Addr,
    /// When it was declared dead.
    pub at: Duration,
    /// When it was last heard from.
    pub last_heard: Duration,
    /// Whether its connection closed (else it went silent).
    pub closed: bool,
}

/// What the server counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Registrations accepted.
    pub registered: u64,
    /// Registrations refused (table full).
    pub refused: u64,
    /// Chunks handed out (including reassignments and backups).
    pub assigned: u64,
    /// End-game copies of chunks another node already held.
    pub backups: u64,
    /// Results for chunks a twin had already delivered (not merged).
    pub duplicates: u64,
    /// When the first chunk went out (the end of start-up).
    pub first_assigned_at: Option<Duration>,
    /// Chunks taken back from dead or dropped nodes and queued again.
    pub reassigned: u64,
    /// Assignments found lost on the way (heartbeats never listed them).
    pub lost: u64,
    /// Results ignored: from a node declared dead, or for a chunk no
    /// longer assigned to the sender.
    pub stale_results: u64,
    /// Results the job refused (the sender was dropped).
    pub bad_results: u64,
    /// Messages that have no business reaching a server.
    pub unexpected: u64,
    /// Nodes declared dead (the first [`MAX_DEATHS_KEPT`] in `deaths`).
    pub dead: u64,
    /// The deaths, in order.
    pub deaths: Vec<Death>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Pending,
    /// At this many nodes (two once backed up).
    Assigned(u8),
    Done,
}

#[derive(Clone, Debug)]
struct Node {
    window: u32,
    last_heard: Duration,
    /// Chunks in flight at the node, with the heartbeats in a row that
    /// did not list them.
    in_flight: BTreeMap<ChunkId, u8>,
}

/// The server side of the protocol: a sans-IO [`State`] around a [`Job`].
pub struct ServerState {
    config: ServerConfig,
    job: Box<dyn Job>,
    chunks: Vec<Chunk>,
    queue: VecDeque<ChunkId>,
    nodes: BTreeMap<Addr, Node>,
    remaining: u64,
    finished_at: Option<Duration>,
    stats: ServerStats,
}

impl ServerState {
    /// A server for `job`.
    pub fn new(job: Box<dyn Job>, config: ServerConfig) -> Self {
        let count = job.chunks();
        ServerState {
            config,
            job,
            chunks: vec![Chunk::Pending; count as usize],
            queue: (0..count).collect(),
            nodes: BTreeMap::new(),
            remaining: count,
            finished_at: None,
            stats: ServerStats::default(),
        }
    }

    /// When the last result was merged (and the nodes told), if it was.
    pub fn finished_at(&self) -> Option<Duration> {
        self.finished_at
    }

    /// Chunks not merged yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Nodes registered and alive.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// What was counted so far.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// The job (to finish it, or to look at its result).
    pub fn job_mut(&mut self) -> &mut dyn Job {
        &mut *self.job
    }

    /// The job, giving up the server.
    pub fn into_job(self) -> Box<dyn Job> {
        self.job
    }

    fn register(&mut self, from: Addr, window: u32, cx: &mut Context<Message>) {
        if self.nodes.contains_key(&from) {
            // The node lost its state (it thought we were gone): what it
            // held is lost with it.
            self.take_back(from);
        } else if self.nodes.len() >= self.config.max_nodes {
            self.stats.refused += 1;
            log::warn!("refused {from}: {} nodes already", self.nodes.len());
            return;
        }
        self.stats.registered += 1;
        self.nodes.insert(
            from,
            Node {
                window: window.clamp(1, self.config.max_window),
                last_heard: cx.now(),
                in_flight: BTreeMap::new(),
            },
        );
        let heartbeat_us = self.config.heartbeat.as_micros() as u64;
        let initial = self.job.initial_data();
        cx.send(
            from,
            Message::Welcome {
                heartbeat_us,
                initial,
            },
        );
        self.fill(from, cx);
    }

    fn heartbeat(&mut self, from: Addr, held: Vec<ChunkId>, cx: &mut Context<Message>) {
        let Some(node) = self.nodes.get_mut(&from) else {
            cx.send(from, Message::Rejoin);
            return;
        };
        node.last_heard = cx.now();
        if held.len() > 2 * node.window as usize {
            log::warn!("{from} claims {} chunks in flight: dropped", held.len());
            self.declare_dead(from, false, cx);
            return;
        }
        let mut lost = Vec::new();
        for (chunk, misses) in node.in_flight.iter_mut() {
            if held.contains(chunk) {
                *misses = 0;
            } else {
                *misses += 1;
                if *misses >= MISSES_BEFORE_LOST {
                    lost.push(*chunk);
                }
            }
        }
        for chunk in &lost {
            node.in_flight.remove(chunk);
        }
        cx.send(from, Message::Alive);
        if !lost.is_empty() {
            self.stats.lost += lost.len() as u64;
            for chunk in lost.into_iter().rev() {
                self.release(chunk);
            }
            self.fill_all(cx);
        }
    }

    fn result(&mut self, from: Addr, chunk: ChunkId, data: Vec<u8>, cx: &mut Context<Message>) {
        let Some(node) = self.nodes.get_mut(&from) else {
            // Declared dead (or never registered): its work was handed
            // out again, and the late copy is ignored.
            self.stats.stale_results += 1;
            cx.send(from, Message::Rejoin);
            return;
        };
        node.last_heard = cx.now();
        if node.in_flight.remove(&chunk).is_none() {
            self.stats.stale_results += 1;
            return;
        }
        if self.chunks[chunk as usize] == Chunk::Done {
            // Its twin was faster.
            self.stats.duplicates += 1;
            self.fill(from, cx);
            return;
        }
        match self.job.merge(chunk, &data) {
            Ok(()) => {
                self.chunks[chunk as usize] = Chunk::Done;
                self.remaining -= 1;
            }
            Err(e) => {
                log::warn!("bad result for chunk {chunk} from {from}: {e}; node dropped");
                self.stats.bad_results += 1;
                self.release(chunk);
                self.declare_dead(from, false, cx);
                return;
            }
        }
        if self.remaining == 0 {
            self.finish(cx);
        } else {
            self.fill(from, cx);
        }
    }

    /// Hands `node` chunks until its window is full or none is pending.
    fn fill(&mut self, addr: Addr, cx: &mut Context<Message>) {
        while self.assign_one(addr, cx) {}
    }

    /// Shares pending chunks out one at a time round the nodes with room,
    /// so reassigned work spreads instead of piling onto one node.
    fn fill_all(&mut self, cx: &mut Context<Message>) {
        let addrs: Vec<Addr> = self.nodes.keys().copied().collect();
        loop {
            let mut any = false;
            for &addr in &addrs {
                any |= self.assign_one(addr, cx);
            }
            if !any {
                return;
            }
        }
    }

    fn assign_one(&mut self, addr: Addr, cx: &mut Context<Message>) -> bool {
        let Some(node) = self.nodes.get(&addr) else {
            return false;
        };
        if node.in_flight.len() >= node.window as usize {
            return false;
        }
        while let Some(chunk) = self.queue.pop_front() {
            if self.chunks[chunk as usize] == Chunk::Pending {
                self.assign(addr, chunk, cx);
                return true;
            }
        }
        match self.backup_for(addr) {
            Some(chunk) => {
                self.stats.backups += 1;
                self.assign(addr, chunk, cx);
                true
            }
            None => false,
        }
    }

    /// A chunk held by exactly one other node, oldest first, if backups
    /// are on.
    fn backup_for(&self, addr: Addr) -> Option<ChunkId> {
        if !self.config.backups {
            return None;
        }
        let mine = &self.nodes.get(&addr)?.in_flight;
        self.nodes
            .iter()
            .filter(|(a, _)| **a != addr)
            .flat_map(|(_, n)| n.in_flight.keys())
            .filter(|c| self.chunks[**c as usize] == Chunk::Assigned(1) && !mine.contains_key(c))
            .min()
            .copied()
    }

    fn assign(&mut self, addr: Addr, chunk: ChunkId, cx: &mut Context<Message>) {
        let Some(node) = self.nodes.get_mut(&addr) else {
            return;
        };
        node.in_flight.insert(chunk, 0);
        let state = &mut self.chunks[chunk as usize];
        *state = match *state {
            Chunk::Assigned(n) => Chunk::Assigned(n.saturating_add(1)),
            _ => Chunk::Assigned(1),
        };
        self.stats.assigned += 1;
        self.stats.first_assigned_at.get_or_insert(cx.now());
        let data = self.job.prepare(chunk);
        cx.send(addr, Message::Work { chunk, data });
    }

    /// One holder of `chunk` let it go (it died, lost it, or failed it):
    /// queued again, at the front, when no other node holds it, so a death
    /// delays the end of the job as little as possible. True if queued.
    fn release(&mut self, chunk: ChunkId) -> bool {
        let Some(state) = self.chunks.get_mut(chunk as usize) else {
            return false;
        };
        match *state {
            Chunk::Assigned(n) if n > 1 => {
                *state = Chunk::Assigned(n - 1);
                false
            }
            Chunk::Done => false,
            _ => {
                *state = Chunk::Pending;
                self.queue.push_front(chunk);
                true
            }
        }
    }

    /// Forgets `addr` and queues its chunks again; returns how many.
    fn take_back(&mut self, addr: Addr) -> Option<(Node, u64)> {
        let node = self.nodes.remove(&addr)?;
        let mut count = 0;
        for &chunk in node.in_flight.keys().rev() {
            count += u64::from(self.release(chunk));
        }
        self.stats.reassigned += count;
        Some((node, count))
    }

    fn declare_dead(&mut self, addr: Addr, closed: bool, cx: &mut Context<Message>) {
        let Some((node, count)) = self.take_back(addr) else {
            return;
        };
        let now = cx.now();
        log::info!(
            "{addr} declared dead ({}), {count} chunks reassigned",
            if closed {
                "connection closed"
            } else {
                "silent"
            }
        );
        self.stats.dead += 1;
        if self.stats.deaths.len() < MAX_DEATHS_KEPT {
            self.stats.deaths.push(Death {
                node: addr,
                at: now,
                last_heard: node.last_heard,
                closed,
            });
        }
        self.job.node_dead(addr);
        self.fill_all(cx);
    }

    fn finish(&mut self, cx: &mut Context<Message>) {
        self.finished_at = Some(cx.now());
        cx.cancel_timer(SWEEP);
        for (&addr, _) in std::mem::take(&mut self.nodes).iter() {
            cx.send(addr, Message::Done);
        }
    }
}

impl State for ServerState {
    type Message = Message;

    fn on_start(&mut self, cx: &mut Context<Message>) {
        if self.remaining == 0 {
            self.finish(cx);
            return;
        }
        cx.set_timer(SWEEP, self.config.heartbeat / 4);
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Context<Message>) {
        if self.finished_at.is_some() {
            // Whoever still talks to us missed the end.
            if msg != Message::Closed {
                cx.send(from, Message::Done);
            }
            return;
        }
        match msg {
            Message::Register { window } => self.register(from, window, cx),
            Message::Heartbeat { held } => self.heartbeat(from, held, cx),
            Message::Result { chunk, data } => self.result(from, chunk, data, cx),
            Message::Closed => self.declare_dead(from, true, cx),
            Message::Failed { chunk, error } => {
                // A node that cannot compute a chunk is of no use to this
                // job: drop it, its chunks go elsewhere.
                log::warn!("{from} failed chunk {chunk}: {error}; node dropped");
                self.declare_dead(from, false, cx);
            }
            Message::Welcome { .. }
            | Message::Work { .. }
            | Message::Alive
            | Message::Rejoin
            | Message::Done => self.stats.unexpected += 1,
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Message>) {
        if timer != SWEEP || self.finished_at.is_some() {
            return;
        }
        let now = cx.now();
        let silent: Vec<Addr> = self
            .nodes
            .iter()
            .filter(|(_, n)| now.saturating_sub(n.last_heard) > self.config.dead_after)
            .map(|(a, _)| *a)
            .collect();
        for addr in silent {
            self.declare_dead(addr, false, cx);
        }
        cx.set_timer(SWEEP, self.config.heartbeat / 4);
    }

    fn status(&self) -> String {
        format!("{} nodes, {} chunks left", self.nodes.len(), self.remaining)
    }
}
