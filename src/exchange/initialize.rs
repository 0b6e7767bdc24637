//! Starting workers: configurations, threads, and joining them.

use super::allocator::Allocator;
use super::connect::connect_cluster;
use super::error::ExchangeError;
use super::net::{self, NetLink, Wire};
use super::process::{Link, Process, IN_RING, MAX_FRAME, OUT_RING};
use super::ring::ring;
use super::signal::Signal;
use super::worker::{Inbox, Outbox, WorkerCtx};
use crate::net::{FrameLimits, FramedStream};
use crate::runtime::Poller;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the workers run.
#[derive(Clone, Debug)]
pub enum Config {
    /// One worker thread.
    Thread,
    /// `n` worker threads in this process.
    Process(usize),
    /// One process of a cluster, connected over TCP.
    Cluster(ClusterConfig),
}

/// One process's view of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Worker threads in each process.
    pub workers: usize,
    /// This process's index into `addresses`.
    pub process: usize,
    /// Every process's listening address, in process order.
    pub addresses: Vec<SocketAddr>,
    /// How long to wait for every peer before giving up with an error.
    pub connect_timeout: Duration,
}

impl ClusterConfig {
    /// A cluster configuration with a 10 s connection timeout.
    pub fn new(workers: usize, process: usize, addresses: Vec<SocketAddr>) -> Self {
        ClusterConfig {
            workers,
            process,
            addresses,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The running workers. Joining (or dropping) waits for them, and in a
/// cluster for the network to finish with every peer.
pub struct WorkerGuards<R> {
    workers: Vec<JoinHandle<R>>,
    net: Option<JoinHandle<()>>,
    setup: Duration,
}

impl<R> WorkerGuards<R> {
    /// Each worker's result, or the message of its panic.
    pub fn join(mut self) -> Vec<Result<R, String>> {
        let results = self
            .workers
            .drain(..)
            .map(|h| {
                h.join().map_err(|panic| {
                    panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "worker panicked".into())
                })
            })
            .collect();
        if let Some(net) = self.net.take() {
            let _ = net.join();
        }
        results
    }

    /// How long connecting the cluster took (zero in one process).
    pub fn setup_time(&self) -> Duration {
        self.setup
    }
}

impl<R> Drop for WorkerGuards<R> {
    fn drop(&mut self) {
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        if let Some(net) = self.net.take() {
            let _ = net.join();
        }
    }
}

/// Marks a worker finished however its closure ends, and tells the
/// network thread (which says goodbye once all have).
struct DoneGuard(Arc<Process>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort();
        }
        self.0.workers_done.fetch_add(1, Ordering::AcqRel);
        if let Some(net) = &self.0.net {
            net.notify();
        }
    }
}

/// Starts the workers of `config`, each running `worker` with its
/// [`Allocator`]. In a cluster, first connects to every peer process
/// (an error if one does not come within the timeout).
pub fn initialize<F, R>(config: Config, worker: F) -> Result<WorkerGuards<R>, ExchangeError>
where
    F: Fn(Allocator) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    let (workers, index, processes) = match &config {
        Config::Thread => (1, 0, 1),
        Config::Process(n) => (*n, 0, 1),
        Config::Cluster(c) => (c.workers, c.process, c.addresses.len()),
    };
    if workers == 0 {
        return Err(ExchangeError::Config("no workers".into()));
    }
    if index >= processes {
        return Err(ExchangeError::Config(format!(
            "process index {index} but only {processes} addresses"
        )));
    }
    if u32::try_from(workers * processes).is_err() {
        return Err(ExchangeError::Config("too many workers".into()));
    }
    let started = Instant::now();
    let streams = match &config {
        Config::Cluster(c) if processes > 1 => {
            connect_cluster(&c.addresses, index, workers, c.connect_timeout)?
        }
        _ => Vec::new(),
    };
    let setup = started.elapsed();

    let io = |e: std::io::Error| ExchangeError::Io(e.to_string());
    let poller = if streams.is_empty() {
        None
    } else {
        Some(Poller::new().map_err(io)?)
    };
    let net_signal = poller.as_ref().map(|p| Arc::new(Signal::poller(p.waker())));
    let process = Arc::new(Process {
        index,
        processes,
        workers,
        registry: Mutex::new(HashMap::new()),
        signals: (0..workers).map(|_| OnceLock::new()).collect(),
        net: net_signal.clone(),
        links: (0..processes).map(|_| Link::default()).collect(),
        workers_done: AtomicUsize::new(0),
        aborted: AtomicBool::new(false),
    });

    // Rings between each worker and the network thread, per peer.
    let mut outboxes: Vec<Vec<Option<Outbox>>> = (0..workers)
        .map(|_| (0..processes).map(|_| None).collect())
        .collect();
    let mut inboxes: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    let mut links = Vec::new();
    for (peer, stream) in streams.into_iter().enumerate() {
        let Some(stream) = stream else { continue };
        let limits = FrameLimits {
            max_frame: MAX_FRAME,
            max_write_buffer: 1 << 20,
        };
        let wire = Arc::new(Mutex::new(Wire {
            stream: FramedStream::new(stream, limits).map_err(io)?,
            pending_out: None,
            closed: false,
        }));
        let (mut from_workers, mut to_workers) = (Vec::new(), Vec::new());
        for w in 0..workers {
            let (p, c) = ring(OUT_RING);
            outboxes[w][peer] = Some(Outbox::new(p, wire.clone()));
            from_workers.push(c);
            let (p, c) = ring(IN_RING);
            to_workers.push(p);
            inboxes[w].push(c);
        }
        links.push(NetLink::new(peer, wire, from_workers, to_workers));
    }

    let worker = Arc::new(worker);
    let barrier = Arc::new(Barrier::new(workers));
    let mut handles = Vec::with_capacity(workers);
    for (local, (outboxes, inbox)) in outboxes.into_iter().zip(inboxes).enumerate() {
        let (process, worker, barrier) = (process.clone(), worker.clone(), barrier.clone());
        let handle = std::thread::Builder::new()
            .name(format!("worker-{}", index * workers + local))
            .spawn(move || {
                let signal = Arc::new(Signal::current_thread());
                let _ = process.signals[local].set(signal.clone());
                barrier.wait();
                let _done = DoneGuard(process.clone());
                let ctx = Rc::new(WorkerCtx {
                    global: process.index * process.workers + local,
                    local,
                    signal,
                    outboxes: RefCell::new(outboxes),
                    inbox: RefCell::new(Inbox::new(inbox)),
                    process,
                });
                worker(Allocator::new(ctx))
            })
            .map_err(io)?;
        handles.push(handle);
    }
    let net = match (poller, net_signal) {
        (Some(poller), Some(signal)) => {
            let process = process.clone();
            Some(
                std::thread::Builder::new()
                    .name(format!("exchange-net-{index}"))
                    .spawn(move || net::run(process, poller, signal, links))
                    .map_err(io)?,
            )
        }
        _ => None,
    };
    Ok(WorkerGuards {
        workers: handles,
        net,
        setup,
    })
}
