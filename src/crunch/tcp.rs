//! The real runtime of crunch: the server and node [`State`]s driven by
//! one epoll loop each over framed TCP connections
//! ([`FramedStream`]), with the node's [`Worker`] on a thread of its own.
//!
//! A frame carries one bincode [`Message`]; the connection says who sent
//! it (the server names each accepted connection `Addr::Client(n)`, never
//! reusing a number, so a late frame from a dead node's connection can
//! never pass for a live node's). A frame that does not decode, or a
//! broken connection, closes the connection and the actor hears
//! [`Message::Closed`] from that peer.

use super::{Exit, Message, NodeConfig, NodeState, NodeStats, ServerState, Worker, WorkerState};
use crate::actor::{Addr, Context, Effect, State};
use crate::net::{decode_bincode, FrameLimits, FramedStream, StreamError};
use crate::runtime::{Clock, Interest, Poller, TimerQueue, Waker};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server's address in its nodes' eyes.
pub const SERVER: Addr = Addr::Node(0);
/// A node process's own address (never on the wire).
pub const NODE: Addr = Addr::Node(1);
/// A node's worker thread.
pub const WORKER: Addr = Addr::Node(u16::MAX);

/// Poller token of the server's listening socket.
const LISTEN_TOKEN: u64 = 0;
/// How long a finished loop keeps flushing its last frames (Done) to peers
/// that read slowly, and waiting for them to close.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// What the TCP layer counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused (too many).
    pub refused: u64,
    /// Frames received and decoded.
    pub frames_in: u64,
    /// Frames queued for sending.
    pub frames_out: u64,
    /// Frames that did not decode (their connection was closed).
    pub malformed: u64,
    /// Connections that broke or closed.
    pub closed: u64,
    /// Messages dropped: the peer's write buffer was full, the peer was
    /// gone, or the server could not be reached.
    pub dropped: u64,
}

/// One framed connection and the interest it is registered with.
struct Link {
    stream: FramedStream,
    token: u64,
    writing: bool,
}

/// Why a link can go on no longer.
enum LinkError {
    Stream(StreamError),
    Malformed(String),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Stream(e) => write!(f, "{e}"),
            LinkError::Malformed(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl Link {
    fn new(tcp: TcpStream, token: u64, limits: FrameLimits, poller: &Poller) -> io::Result<Self> {
        let stream = FramedStream::new(tcp, limits)?;
        poller.register_interest(stream.stream().as_fd(), token, Interest::Read)?;
        Ok(Link {
            stream,
            token,
            writing: false,
        })
    }

    /// Queues `msg`; false when the peer is not reading and its buffer is
    /// full (the message is dropped: the protocol copes with loss).
    fn queue(&mut self, msg: &Message, scratch: &mut Vec<u8>) -> bool {
        scratch.clear();
        if bincode::serialize_into(&mut *scratch, msg).is_err() {
            return false;
        }
        matches!(self.stream.send(scratch), Ok(true))
    }

    /// Writes what the socket takes; asks for write readiness while bytes
    /// remain.
    fn flush(&mut self, poller: &Poller) -> Result<bool, LinkError> {
        let done = self.stream.flush().map_err(LinkError::Stream)?;
        if done == self.writing {
            let interest = if done {
                Interest::Read
            } else {
                Interest::ReadWrite
            };
            poller
                .reregister(self.stream.stream().as_fd(), self.token, interest)
                .map_err(|e| LinkError::Stream(StreamError::Io(e)))?;
            self.writing = !done;
        }
        Ok(done)
    }

    /// Reads and decodes every complete frame into `out`.
    fn read(&mut self, out: &mut Vec<Message>) -> Result<(), LinkError> {
        self.stream.fill().map_err(LinkError::Stream)?;
        loop {
            match self.stream.next_frame() {
                Ok(Some(frame)) => {
                    let msg = decode_bincode::<Message>(frame)
                        .map_err(|e| LinkError::Malformed(e.to_string()))?;
                    out.push(msg);
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(LinkError::Stream(e)),
            }
        }
    }

    fn close(self, poller: &Poller) {
        let _ = poller.deregister(self.stream.stream().as_fd());
    }
}

/// How the server runs.
#[derive(Clone, Copy, Debug)]
pub struct ServerOptions {
    /// Frame size limits per connection.
    pub limits: FrameLimits,
    /// Connections at most (beyond: accepted and closed at once).
    pub max_connections: usize,
    /// Give up (an error) if the job is not finished by then.
    pub give_up_after: Option<Duration>,
    /// The clock the server's times are measured on (so a caller can
    /// relate them to its own events).
    pub clock: Clock,
    /// Seed of the server's randomness.
    pub seed: u64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            limits: FrameLimits {
                max_frame: 8 << 20,
                max_write_buffer: 16 << 20,
            },
            max_connections: 4096,
            give_up_after: None,
            clock: Clock::start(),
            seed: 1,
        }
    }
}

/// A finished server.
pub struct ServerOutcome {
    /// The server in its final state (its job, stats, finish time).
    pub state: ServerState,
    /// What the TCP layer counted.
    pub counters: LinkCounters,
    /// What [`Job::finish`](super::Job::finish) returned.
    pub finished: Result<(), String>,
    /// When `finish` returned (on [`ServerOptions::clock`]): the job's
    /// result is complete (the image written) from then on.
    pub finished_job_at: Duration,
}

/// Runs `state` on this thread, serving nodes that connect to `listener`,
/// until the job is finished; then tells every node, closes, and calls the
/// job's `finish`.
pub fn run_server(
    mut state: ServerState,
    listener: TcpListener,
    options: ServerOptions,
) -> io::Result<ServerOutcome> {
    listener.set_nonblocking(true)?;
    let mut poller = Poller::new()?;
    poller.register_interest(listener.as_fd(), LISTEN_TOKEN, Interest::Read)?;
    let clock = options.clock;
    let give_up = options.give_up_after.map(|d| clock.now() + d);
    let mut loop_ = Loop::new(clock, options.seed, SERVER);
    let mut links: HashMap<u64, Link> = HashMap::new();
    let mut next_id = 1u64;
    let mut inbox = Vec::new();
    let mut counters = LinkCounters::default();

    loop_.start(&mut state);
    loop_.apply_server(&mut links, &poller, &mut counters);
    while state.finished_at().is_none() {
        if give_up.is_some_and(|g| clock.now() >= g) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("job not finished: {}", state.status()),
            ));
        }
        loop_.fire_timers(&mut state);
        loop_.apply_server(&mut links, &poller, &mut counters);
        let deadline = [loop_.timers.next_deadline(), give_up]
            .into_iter()
            .flatten()
            .min();
        poller.wait(deadline.map(|d| clock.instant(d)))?;
        let ready: Vec<u64> = poller.ready().to_vec();
        for token in ready {
            if token == LISTEN_TOKEN {
                accept_all(
                    &listener,
                    &mut links,
                    &mut next_id,
                    &poller,
                    &options,
                    &mut counters,
                );
                continue;
            }
            let Some(link) = links.get_mut(&token) else {
                continue;
            };
            inbox.clear();
            let result = link.read(&mut inbox);
            counters.frames_in += inbox.len() as u64;
            let from = Addr::Client(token);
            for msg in inbox.drain(..) {
                loop_.deliver(&mut state, from, msg);
            }
            let flushed = link.flush(&poller);
            if let Err(e) = result.and(flushed.map(|_| ())) {
                drop_link(&mut links, token, &e, &poller, &mut counters);
                loop_.deliver(&mut state, from, Message::Closed);
            }
            loop_.apply_server(&mut links, &poller, &mut counters);
        }
    }
    // Done goes out before the job's (possibly slow) finish, so nodes
    // exit at once; then the peers get time to close.
    for link in links.values_mut() {
        if let Ok(true) = link.flush(&poller) {
            let _ = link.stream.shutdown_write();
        }
    }
    let finished = state.job_mut().finish();
    let finished_job_at = clock.now();
    close_all(links, &mut poller, clock);
    Ok(ServerOutcome {
        state,
        counters,
        finished,
        finished_job_at,
    })
}

fn accept_all(
    listener: &TcpListener,
    links: &mut HashMap<u64, Link>,
    next_id: &mut u64,
    poller: &Poller,
    options: &ServerOptions,
    counters: &mut LinkCounters,
) {
    loop {
        match listener.accept() {
            Ok((tcp, peer)) => {
                if links.len() >= options.max_connections {
                    counters.refused += 1;
                    continue; // dropping `tcp` closes it
                }
                let token = *next_id;
                *next_id += 1;
                match Link::new(tcp, token, options.limits, poller) {
                    Ok(link) => {
                        log::debug!("connection {token} from {peer}");
                        counters.accepted += 1;
                        links.insert(token, link);
                    }
                    Err(e) => log::warn!("connection from {peer} unusable: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors and the like: try again on the next
                // readiness rather than end the job.
                log::warn!("accept failed: {e}");
                return;
            }
        }
    }
}

fn drop_link(
    links: &mut HashMap<u64, Link>,
    token: u64,
    why: &LinkError,
    poller: &Poller,
    counters: &mut LinkCounters,
) {
    if let Some(link) = links.remove(&token) {
        match why {
            LinkError::Malformed(_) => counters.malformed += 1,
            LinkError::Stream(StreamError::Closed) => {}
            LinkError::Stream(_) => log::info!("connection {token}: {why}"),
        }
        if let LinkError::Malformed(_) = why {
            log::warn!("connection {token} dropped: {why}");
        }
        counters.closed += 1;
        link.close(poller);
    }
}

/// Flushes the last frames, closes our side, and waits (briefly) for the
/// peers to close theirs, so that no unread byte turns our close into a
/// reset that could destroy the frames the peer has not read yet.
fn close_all(mut links: HashMap<u64, Link>, poller: &mut Poller, clock: Clock) {
    let deadline = clock.now() + CLOSE_GRACE;
    let mut shut = Vec::new();
    let mut sink = Vec::new();
    while !links.is_empty() && clock.now() < deadline {
        let tokens: Vec<u64> = links.keys().copied().collect();
        for token in tokens {
            let Some(link) = links.get_mut(&token) else {
                continue;
            };
            let alive = match link.flush(poller) {
                Ok(true) => {
                    if !shut.contains(&token) {
                        shut.push(token);
                        let _ = link.stream.shutdown_write();
                    }
                    sink.clear();
                    link.read(&mut sink).is_ok()
                }
                Ok(false) => true,
                Err(_) => false,
            };
            if !alive {
                if let Some(link) = links.remove(&token) {
                    link.close(poller);
                }
            }
        }
        if !links.is_empty() {
            let _ = poller.wait(Some(clock.instant(deadline)));
        }
    }
    for (_, link) in links {
        link.close(poller);
    }
}

/// The parts of an actor loop both sides share: clock, timers, context,
/// and the effects of the last handler.
struct Loop {
    clock: Clock,
    timers: TimerQueue,
    cx: Context<Message>,
    sends: Vec<(Addr, Message)>,
    scratch: Vec<u8>,
}

impl Loop {
    fn new(clock: Clock, seed: u64, me: Addr) -> Self {
        Loop {
            clock,
            timers: TimerQueue::new(),
            cx: Context::new(me, seed),
            sends: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn start<S: State<Message = Message>>(&mut self, state: &mut S) {
        self.cx.set_now(self.clock.now());
        state.on_start(&mut self.cx);
        self.collect();
    }

    fn deliver<S: State<Message = Message>>(&mut self, state: &mut S, from: Addr, msg: Message) {
        self.cx.set_now(self.clock.now());
        state.on_message(from, msg, &mut self.cx);
        self.collect();
    }

    fn fire_timers<S: State<Message = Message>>(&mut self, state: &mut S) {
        let now = self.clock.now();
        while let Some((_, timer)) = self.timers.pop_due(now) {
            self.cx.set_now(now);
            state.on_timer(timer, &mut self.cx);
            self.collect();
        }
    }

    /// Takes the handler's effects: timers are set here, sends are kept
    /// for the side-specific transport.
    fn collect(&mut self) {
        let now = self.clock.now();
        for effect in self.cx.drain() {
            match effect {
                Effect::Send { to, msg } => self.sends.push((to, msg)),
                Effect::SetTimer { timer, after } => self.timers.set(0, timer, now + after),
                Effect::CancelTimer(timer) => self.timers.cancel(0, timer),
                Effect::Complete(_) => {}
            }
        }
    }

    /// Server side: every send goes to the connection it names.
    fn apply_server(
        &mut self,
        links: &mut HashMap<u64, Link>,
        poller: &Poller,
        counters: &mut LinkCounters,
    ) {
        let mut touched = Vec::new();
        for (to, msg) in self.sends.drain(..) {
            let link = match to {
                Addr::Client(token) => links.get_mut(&token),
                _ => None,
            };
            let Some(link) = link else {
                counters.dropped += 1;
                continue;
            };
            if link.queue(&msg, &mut self.scratch) {
                counters.frames_out += 1;
                if !touched.contains(&link.token) {
                    touched.push(link.token);
                }
            } else {
                counters.dropped += 1;
            }
        }
        for token in touched {
            if let Some(link) = links.get_mut(&token) {
                if let Err(e) = link.flush(poller) {
                    // Its read side reports the break on the next turn.
                    log::debug!("connection {token}: {e}");
                }
            }
        }
    }
}

/// How a node process runs.
#[derive(Clone, Copy, Debug)]
pub struct NodeOptions {
    /// Frame size limits of the server connection.
    pub limits: FrameLimits,
    /// Longest wait for one connection attempt to the server.
    pub connect_timeout: Duration,
    /// Seed of the node's randomness.
    pub seed: u64,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            limits: ServerOptions::default().limits,
            connect_timeout: Duration::from_millis(500),
            seed: 2,
        }
    }
}

/// Runs a node of the server at `server` until the job is done (or the
/// server is gone, or the worker fails), computing on a second thread.
/// `config`'s addresses are set here ([`SERVER`], [`WORKER`]).
pub fn run_node(
    mut config: NodeConfig,
    server: SocketAddr,
    worker: Box<dyn Worker>,
    options: NodeOptions,
) -> io::Result<(Exit, NodeStats)> {
    config.server = SERVER;
    config.worker = WORKER;
    let mut state = NodeState::new(config);
    let mut poller = Poller::new()?;
    let pool = WorkerThread::start(worker, poller.waker())?;
    let clock = Clock::start();
    let mut loop_ = Loop::new(clock, options.seed, NODE);
    let mut link: Option<Link> = None;
    let mut inbox = Vec::new();
    let mut counters = LinkCounters::default();
    const SERVER_TOKEN: u64 = 1;

    loop_.start(&mut state);
    let exit = loop {
        node_sends(
            &mut loop_,
            &mut link,
            &pool,
            server,
            &poller,
            &options,
            &mut counters,
        );
        if let Some(exit) = state.exit() {
            break exit.clone();
        }
        poller.wait(loop_.timers.next_deadline().map(|d| clock.instant(d)))?;
        if poller.ready().contains(&SERVER_TOKEN) {
            if let Some(l) = link.as_mut() {
                inbox.clear();
                let result = l.read(&mut inbox);
                for msg in inbox.drain(..) {
                    loop_.deliver(&mut state, SERVER, msg);
                }
                if let Err(e) = result.and(l.flush(&poller).map(|_| ())) {
                    log::info!("server connection: {e}");
                    if let Some(l) = link.take() {
                        l.close(&poller);
                    }
                    loop_.deliver(&mut state, SERVER, Message::Closed);
                }
            }
        }
        while let Ok(msg) = pool.results.try_recv() {
            loop_.deliver(&mut state, WORKER, msg);
        }
        loop_.fire_timers(&mut state);
    };
    pool.stop();
    if let Some(l) = link {
        let mut links = HashMap::from([(SERVER_TOKEN, l)]);
        close_all(std::mem::take(&mut links), &mut poller, clock);
    }
    Ok((exit, state.stats().clone()))
}

fn node_sends(
    loop_: &mut Loop,
    link: &mut Option<Link>,
    pool: &WorkerThread,
    server: SocketAddr,
    poller: &Poller,
    options: &NodeOptions,
    counters: &mut LinkCounters,
) {
    const SERVER_TOKEN: u64 = 1;
    let mut wrote = false;
    for (to, msg) in loop_.sends.drain(..) {
        if to == WORKER {
            let _ = pool.work.send(msg);
            continue;
        }
        if link.is_none() {
            // (Re)connect on demand: registering is what sends first, and
            // the node's retry timer paces the attempts.
            match TcpStream::connect_timeout(&server, options.connect_timeout)
                .and_then(|tcp| Link::new(tcp, SERVER_TOKEN, options.limits, poller))
            {
                Ok(l) => *link = Some(l),
                Err(e) => {
                    log::info!("cannot reach the server at {server}: {e}");
                    counters.dropped += 1;
                    continue;
                }
            }
        }
        if let Some(l) = link.as_mut() {
            if l.queue(&msg, &mut loop_.scratch) {
                wrote = true;
            } else {
                counters.dropped += 1;
            }
        }
    }
    if wrote {
        if let Some(l) = link.as_mut() {
            // A failed write shows up as a read error on the next turn.
            let _ = l.flush(poller);
        }
    }
}

/// The node's compute thread: a [`WorkerState`] fed through a channel,
/// waking the node's loop with each result.
struct WorkerThread {
    work: crossbeam_channel::Sender<Message>,
    results: crossbeam_channel::Receiver<Message>,
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

impl WorkerThread {
    fn start(worker: Box<dyn Worker>, waker: Waker) -> io::Result<Self> {
        let (work, inbox) = crossbeam_channel::unbounded::<Message>();
        let (outbox, results) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = std::thread::Builder::new()
            .name("crunch-worker".into())
            .spawn(move || {
                let mut state = WorkerState::new(NODE, worker);
                let mut cx = Context::new(WORKER, 0);
                while let Ok(msg) = inbox.recv() {
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    state.on_message(NODE, msg, &mut cx);
                    for effect in cx.drain() {
                        if let Effect::Send { msg, .. } = effect {
                            if outbox.send(msg).is_err() {
                                return;
                            }
                            waker.wake();
                        }
                    }
                }
            })?;
        Ok(WorkerThread {
            work,
            results,
            stop,
            handle,
        })
    }

    /// Stops after the chunk in progress (queued ones are dropped).
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.work);
        let started = Instant::now();
        let _ = self.handle.join();
        log::debug!("worker stopped in {:?}", started.elapsed());
    }
}
