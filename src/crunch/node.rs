//! The crunch node: registers, keeps heartbeats going, passes chunks to
//! its worker and results back, and knows when to stop.

use super::{ChunkId, Message, Worker};
use crate::actor::{Addr, Context, State, Timer};
use crate::protocol::common::Backoff;
use std::collections::BTreeSet;
use std::time::Duration;

/// Resends `Register` while no `Welcome` came.
const RETRY: Timer = Timer(1);
/// Sends a heartbeat and checks the server is still there.
const HEARTBEAT: Timer = Timer(2);

/// How a node behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The server.
    pub server: Addr,
    /// Where chunks are computed (the node's worker thread, or a worker
    /// actor in the simulator).
    pub worker: Addr,
    /// Chunks to keep in flight (prefetch): with 2 or more the next chunk
    /// is already here when one finishes.
    pub window: u32,
    /// Registration attempts before giving up on the server.
    pub attempts: u32,
    /// Delay before the first retry; doubles on each (capped at 2 s).
    pub retry_base: Duration,
    /// Heartbeat intervals without a word from the server after which the
    /// node takes it for gone and registers again.
    pub silent_heartbeats: u32,
}

impl NodeConfig {
    /// Defaults for a node of `server` whose worker is `worker`: two
    /// chunks in flight, 5 attempts 200 ms apart and doubling (about 3 s
    /// in all), the server gone after 3 silent heartbeats.
    pub fn new(server: Addr, worker: Addr) -> Self {
        NodeConfig {
            server,
            worker,
            window: 2,
            attempts: 5,
            retry_base: Duration::from_millis(200),
            silent_heartbeats: 3,
        }
    }
}

/// Why a node stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The server said the job is done.
    Done,
    /// The server could not be reached in `attempts` registrations.
    ServerGone {
        /// Registrations tried.
        attempts: u32,
    },
    /// The worker could not compute a chunk (or take the initial data).
    WorkerFailed(String),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Done => write!(f, "job done"),
            Exit::ServerGone { attempts } => write!(
                f,
                "server unreachable: gave up after {attempts} registration attempts"
            ),
            Exit::WorkerFailed(e) => write!(f, "worker failed: {e}"),
        }
    }
}

/// What a node counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Results sent to the server.
    pub results: u64,
    /// Times the node (re)registered.
    pub registrations: u64,
    /// Chunks or results dropped (not registered, over the window, or
    /// for a chunk the node no longer holds).
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Registering { attempt: u32 },
    Working,
    Finished(Exit),
}

/// The node side of the protocol, a sans-IO [`State`]. Computing happens
/// at [`NodeConfig::worker`], so heartbeats never wait for a chunk.
#[derive(Clone, Debug)]
pub struct NodeState {
    config: NodeConfig,
    phase: Phase,
    heartbeat: Duration,
    last_from_server: Duration,
    held: BTreeSet<ChunkId>,
    backoff: Backoff,
    stats: NodeStats,
}

impl NodeState {
    /// A node that will register with `config.server` when started.
    pub fn new(config: NodeConfig) -> Self {
        NodeState {
            config,
            phase: Phase::Registering { attempt: 0 },
            heartbeat: Duration::from_secs(1),
            last_from_server: Duration::ZERO,
            held: BTreeSet::new(),
            backoff: Backoff::new(config.retry_base),
            stats: NodeStats::default(),
        }
    }

    /// Why the node stopped, once it has: the runtime then exits.
    pub fn exit(&self) -> Option<&Exit> {
        match &self.phase {
            Phase::Finished(exit) => Some(exit),
            _ => None,
        }
    }

    /// What was counted so far.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    fn register(&mut self, attempt: u32, cx: &mut Context<Message>) {
        self.phase = Phase::Registering { attempt };
        self.held.clear();
        cx.cancel_timer(HEARTBEAT);
        cx.send(
            self.config.server,
            Message::Register {
                window: self.config.window,
            },
        );
        let delay = if attempt == 0 {
            self.backoff.first()
        } else {
            self.backoff.after_resend()
        };
        cx.set_timer(RETRY, delay);
    }

    fn finish(&mut self, exit: Exit, cx: &mut Context<Message>) {
        match &exit {
            Exit::Done => log::info!("job done"),
            other => log::warn!("{other}"),
        }
        self.phase = Phase::Finished(exit);
        self.held.clear();
        cx.cancel_timer(RETRY);
        cx.cancel_timer(HEARTBEAT);
    }

    fn on_server(&mut self, msg: Message, cx: &mut Context<Message>) {
        self.last_from_server = cx.now();
        match msg {
            Message::Welcome {
                heartbeat_us,
                initial,
            } => {
                // Also when already working: the server registered us
                // afresh and forgot what we held.
                self.phase = Phase::Working;
                self.stats.registrations += 1;
                self.held.clear();
                self.heartbeat = Duration::from_micros(heartbeat_us).max(Duration::from_millis(1));
                cx.cancel_timer(RETRY);
                cx.set_timer(HEARTBEAT, self.heartbeat);
                cx.send(
                    self.config.worker,
                    Message::Welcome {
                        heartbeat_us,
                        initial,
                    },
                );
            }
            Message::Work { chunk, data } => {
                let room = 2 * self.config.window as usize;
                if self.phase != Phase::Working || self.held.len() >= room {
                    self.stats.dropped += 1;
                    return;
                }
                if self.held.insert(chunk) {
                    cx.send(self.config.worker, Message::Work { chunk, data });
                }
            }
            Message::Rejoin if self.phase == Phase::Working => self.register(0, cx),
            Message::Done => self.finish(Exit::Done, cx),
            Message::Closed if self.phase == Phase::Working => {
                log::warn!("connection to the server closed: registering again");
                self.register(0, cx);
            }
            // While registering, a closed connection is the failed
            // attempt the retry timer already covers.
            _ => {}
        }
    }

    fn on_worker(&mut self, msg: Message, cx: &mut Context<Message>) {
        match msg {
            Message::Result { chunk, data } => {
                if self.phase == Phase::Working && self.held.remove(&chunk) {
                    self.stats.results += 1;
                    cx.send(self.config.server, Message::Result { chunk, data });
                } else {
                    self.stats.dropped += 1;
                }
            }
            Message::Failed { chunk, error } => {
                let error = format!("chunk {chunk}: {error}");
                self.finish(Exit::WorkerFailed(error), cx);
            }
            _ => {}
        }
    }
}

impl State for NodeState {
    type Message = Message;

    fn on_start(&mut self, cx: &mut Context<Message>) {
        self.register(0, cx);
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Context<Message>) {
        if self.exit().is_some() {
            return;
        }
        if from == self.config.server {
            self.on_server(msg, cx);
        } else if from == self.config.worker {
            self.on_worker(msg, cx);
        } else {
            self.stats.dropped += 1;
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Message>) {
        match (timer, &self.phase) {
            (RETRY, &Phase::Registering { attempt }) => {
                if attempt + 1 >= self.config.attempts {
                    let attempts = attempt + 1;
                    self.finish(Exit::ServerGone { attempts }, cx);
                } else {
                    self.register(attempt + 1, cx);
                }
            }
            (HEARTBEAT, Phase::Working) => {
                let silence = cx.now().saturating_sub(self.last_from_server);
                if silence > self.heartbeat * self.config.silent_heartbeats {
                    log::warn!("server silent for {silence:?}: registering again");
                    self.register(0, cx);
                    return;
                }
                let held = self.held.iter().copied().collect();
                cx.send(self.config.server, Message::Heartbeat { held });
                cx.set_timer(HEARTBEAT, self.heartbeat);
            }
            _ => {}
        }
    }

    fn status(&self) -> String {
        match &self.phase {
            Phase::Registering { attempt } => format!("registering (attempt {})", attempt + 1),
            Phase::Working => format!("working, {} chunks held", self.held.len()),
            Phase::Finished(exit) => format!("finished: {exit}"),
        }
    }
}

/// Runs a [`Worker`] behind messages: `Welcome` hands it the initial data,
/// each `Work` becomes a `Result` (or `Failed`) sent back to the node.
pub struct WorkerState {
    node: Addr,
    worker: Box<dyn Worker>,
    ready: bool,
}

impl WorkerState {
    /// The worker of the node at `node`.
    pub fn new(node: Addr, worker: Box<dyn Worker>) -> Self {
        WorkerState {
            node,
            worker,
            ready: false,
        }
    }
}

impl State for WorkerState {
    type Message = Message;

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Context<Message>) {
        if from != self.node {
            return;
        }
        match msg {
            Message::Welcome { initial, .. } => match self.worker.init(&initial) {
                Ok(()) => self.ready = true,
                Err(error) => {
                    self.ready = false;
                    let error = format!("initial data: {error}");
                    cx.send(self.node, Message::Failed { chunk: 0, error });
                }
            },
            Message::Work { chunk, data } => {
                let reply = if !self.ready {
                    Message::Failed {
                        chunk,
                        error: "work before initial data".into(),
                    }
                } else {
                    match self.worker.process(&data) {
                        Ok(data) => Message::Result { chunk, data },
                        Err(error) => Message::Failed { chunk, error },
                    }
                };
                cx.send(self.node, reply);
            }
            _ => {}
        }
    }
}
