//! What a process's workers and its network thread share: the cluster's
//! shape, the channel registry, wake-up signals, the state of each link,
//! and the limits that bound every queue.

use super::error::ExchangeError;
use super::signal::Signal;
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A worker ships its batch to the network thread once it holds this
/// many bytes (or when the worker runs out of work, whichever is first).
pub const BATCH_BYTES: usize = 64 << 10;
/// Largest frame on an exchange connection; one message may take almost
/// all of it.
pub const MAX_FRAME: usize = 8 << 20;
/// Largest encoded message.
pub const MAX_MESSAGE: usize = MAX_FRAME - BATCH_BYTES - 64;
/// Batches in flight from one worker to one peer process.
pub const OUT_RING: usize = 8;
/// Chunks in flight from one peer process to one worker.
pub const IN_RING: usize = 64;
/// Bytes a worker holds for channels nobody is reading at the moment;
/// past it, it stops taking chunks off the network (which then stops
/// reading the socket, which stops the sender).
pub const MAX_PENDING_BYTES: usize = 16 << 20;

/// The bincode options used on both ends: fixed-width integers, since
/// they encode and decode fastest and u64 ids stay 8 bytes.
pub fn codec() -> impl bincode::Options + Copy {
    use bincode::Options;
    bincode::options()
        .with_fixint_encoding()
        .allow_trailing_bytes()
}

/// One peer process's connection, as workers see it.
#[derive(Default)]
pub struct Link {
    failed: AtomicBool,
    error: Mutex<Option<ExchangeError>>,
    /// The peer said goodbye: everything it will ever send has arrived.
    finished: AtomicBool,
}

impl Link {
    /// Records the first failure.
    pub fn fail(&self, error: ExchangeError) {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(error);
        }
        self.failed.store(true, Ordering::Release);
    }

    /// The failure, if the link failed.
    pub fn error(&self) -> Option<ExchangeError> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Marks the peer finished.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    /// True once the peer finished.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

/// A batch of encoded messages for one worker on one channel, as it came
/// off the network.
pub struct Chunk {
    /// Channel id.
    pub channel: u32,
    /// Sending worker (global index).
    pub src: u32,
    /// Messages in `bytes`.
    pub count: u32,
    /// The encodings.
    pub bytes: Vec<u8>,
}

/// What a process's workers and network thread share.
pub struct Process {
    /// This process's index.
    pub index: usize,
    /// Processes in the cluster.
    pub processes: usize,
    /// Workers per process.
    pub workers: usize,
    /// Channels being allocated: the in-process rings of each channel id,
    /// until every local worker has taken its part.
    pub registry: Mutex<HashMap<usize, Box<dyn Any + Send>>>,
    /// Each local worker's wake-up signal (set as it starts).
    pub signals: Vec<OnceLock<Arc<Signal>>>,
    /// The network thread's signal, in a cluster.
    pub net: Option<Arc<Signal>>,
    /// Links by peer process index (our own entry is never used).
    pub links: Vec<Link>,
    /// Local workers that have finished.
    pub workers_done: AtomicUsize,
    /// A local worker panicked: peers are told at once.
    pub aborted: AtomicBool,
}

impl Process {
    /// Local worker `local`'s signal.
    pub fn signal(&self, local: usize) -> &Arc<Signal> {
        // Workers set their signal before the start barrier, and nothing
        // can reach a worker before that barrier: always set here.
        self.signals[local]
            .get()
            .expect("worker signals are set before workers start")
    }

    /// Wakes local worker `local` if it has started (one that has not
    /// yet looks at its rings before it ever sleeps).
    pub fn notify_worker(&self, local: usize) {
        if let Some(s) = self.signals.get(local).and_then(|s| s.get()) {
            s.notify();
        }
    }

    /// Wakes every local worker (a link failed or finished).
    pub fn notify_all(&self) {
        for s in self.signals.iter().filter_map(|s| s.get()) {
            s.notify();
        }
    }

    /// The first failed link's error.
    pub fn link_error(&self) -> Option<ExchangeError> {
        self.links.iter().find_map(|l| l.error())
    }

    /// Records a panicked local worker: an error for the other local
    /// workers (through our own entry in `links`) and, through the
    /// network thread, for every peer process.
    pub fn abort(&self) {
        self.links[self.index].fail(ExchangeError::PeerLost {
            process: self.index,
            reason: "a worker of this process panicked".into(),
        });
        self.aborted.store(true, Ordering::Release);
        self.notify_all();
        if let Some(net) = &self.net {
            net.notify();
        }
    }

    /// Which process a global worker index lives in.
    pub fn process_of(&self, worker: usize) -> usize {
        worker / self.workers
    }
}
