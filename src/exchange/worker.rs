//! State shared by a process's workers, and each worker's own view of it:
//! its outgoing batches per peer process and its incoming chunks.

use super::error::ExchangeError;
use super::net::SharedWire;
use super::ring::{Consumer, Producer};
use super::signal::Signal;
use super::wire::{close_batch, open_batch, KIND_DATA};
use serde::Serialize;
use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
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

/// Batches up to this size may be written to the socket by the worker
/// itself (see [`Wire`](super::net::Wire)); larger ones are the network
/// thread's job, so that a streaming worker keeps encoding.
pub const DIRECT_MAX: usize = 16 << 10;

/// A batch under construction for one peer process.
pub struct Outbox {
    buf: Vec<u8>,
    /// (header offset, channel, dst, count) of the batch being appended to.
    open: Option<(usize, u32, u32, u32)>,
    ring: Producer<Vec<u8>>,
    wire: SharedWire,
}

impl Outbox {
    /// An empty outbox shipping through `ring`, or straight onto `wire`.
    pub fn new(ring: Producer<Vec<u8>>, wire: SharedWire) -> Self {
        Outbox {
            buf: Vec::new(),
            open: None,
            ring,
            wire,
        }
    }

    /// True once the batch is big enough to ship.
    pub fn is_ripe(&self) -> bool {
        self.buf.len() >= BATCH_BYTES
    }

    /// Encodes `item` into the current batch.
    pub fn append<T: Serialize>(
        &mut self,
        channel: u32,
        src: u32,
        dst: u32,
        item: &T,
    ) -> Result<(), ExchangeError> {
        use bincode::Options;
        if self.buf.is_empty() {
            self.buf.reserve(BATCH_BYTES + BATCH_BYTES / 4);
            self.buf.push(KIND_DATA);
        }
        let reopened = match self.open {
            Some((_, c, d, _)) if c == channel && d == dst => false,
            _ => {
                self.close();
                let at = open_batch(&mut self.buf, channel, src, dst);
                self.open = Some((at, channel, dst, 0));
                true
            }
        };
        let mark = self.buf.len();
        let encoded = codec().serialize_into(&mut self.buf, item);
        let size = self.buf.len() - mark;
        let failure = match encoded {
            Err(e) => Some(ExchangeError::Encode(e.to_string())),
            Ok(()) if size > MAX_MESSAGE => Some(ExchangeError::MessageTooLarge {
                bytes: size,
                max: MAX_MESSAGE,
            }),
            Ok(()) => None,
        };
        if let Some(error) = failure {
            // Undo: the message, and the header if it opened one.
            self.buf.truncate(mark);
            if reopened {
                if let Some((at, ..)) = self.open.take() {
                    self.buf.truncate(at);
                }
                if self.buf.len() == 1 {
                    self.buf.clear();
                }
            }
            return Err(error);
        }
        if let Some(open) = &mut self.open {
            open.3 += 1;
        }
        Ok(())
    }

    fn close(&mut self) {
        if let Some((at, _, _, count)) = self.open.take() {
            close_batch(&mut self.buf, at, count);
        }
    }

    /// Hands the batch to the network thread; false if its ring is full
    /// (the batch stays here, closed, and more can be appended). A batch
    /// for a closed link is dropped.
    pub fn ship(&mut self, net: &Signal) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        if !self.ring.consumer_alive() {
            // The network thread closed this link: nobody will send it.
            self.buf.clear();
            self.open = None;
            return true;
        }
        self.close();
        if self.buf.len() <= DIRECT_MAX && self.write_direct(net) {
            return true;
        }
        match self.ring.push(std::mem::take(&mut self.buf)) {
            Ok(()) => {
                net.notify();
                true
            }
            Err(buf) => {
                self.buf = buf;
                false
            }
        }
    }

    /// Writes the batch to the socket if that keeps order: nothing of
    /// ours waits in the ring or as the network thread's pending batch,
    /// and nobody else holds the wire. Bytes the socket does not take
    /// stay queued in the stream for the network thread to flush.
    fn write_direct(&mut self, net: &Signal) -> bool {
        if !self.ring.is_drained() {
            return false;
        }
        let Ok(mut w) = self.wire.try_lock() else {
            return false;
        };
        if w.closed || w.pending_out.is_some() || !w.stream.can_send(self.buf.len()) {
            return false;
        }
        if !matches!(w.stream.send(&self.buf), Ok(true)) {
            return false;
        }
        self.buf.clear();
        // Unflushed bytes need the network thread to watch for room, and
        // a failed write needs it to notice the failure.
        if !matches!(w.stream.flush(), Ok(true)) {
            drop(w);
            net.notify();
        }
        true
    }

    /// Announces a wait for ring space.
    pub fn set_waiting(&self) {
        self.ring.set_waiting();
    }

    /// True if the network thread has room for another batch.
    pub fn has_room(&mut self) -> bool {
        !self.ring.is_full()
    }
}

/// Chunks that came off the network for one worker.
pub struct Inbox {
    rings: Vec<Consumer<Chunk>>,
    pending: HashMap<u32, VecDeque<Chunk>>,
    pending_chunks: usize,
    pending_bytes: usize,
}

impl Inbox {
    /// An inbox fed by one ring per peer process.
    pub fn new(rings: Vec<Consumer<Chunk>>) -> Self {
        Inbox {
            rings,
            pending: HashMap::new(),
            pending_chunks: 0,
            pending_bytes: 0,
        }
    }

    /// The next chunk for `channel`: first those set aside earlier, then
    /// off the rings (setting aside chunks of other channels, up to a
    /// bound).
    pub fn take(&mut self, channel: u32, net: Option<&Signal>) -> Option<Chunk> {
        if self.rings.is_empty() {
            return None;
        }
        if self.pending_chunks > 0 {
            if let Some(chunk) = self.pending.get_mut(&channel).and_then(|q| q.pop_front()) {
                self.pending_chunks -= 1;
                self.pending_bytes -= chunk.bytes.len();
                return Some(chunk);
            }
        }
        let mut found = None;
        for ring in &mut self.rings {
            while found.is_none() && self.pending_bytes < MAX_PENDING_BYTES {
                let Some(chunk) = ring.pop() else { break };
                if chunk.channel == channel {
                    found = Some(chunk);
                } else {
                    self.pending_chunks += 1;
                    self.pending_bytes += chunk.bytes.len();
                    self.pending
                        .entry(chunk.channel)
                        .or_default()
                        .push_back(chunk);
                }
            }
            if ring.take_producer_waiting() {
                if let Some(net) = net {
                    net.notify();
                }
            }
            if found.is_some() {
                break;
            }
        }
        found
    }

    /// True if a chunk for `channel` may be waiting: set aside, or on a
    /// ring while there is room to set chunks aside (with none, the
    /// rings are not drained, and reporting them would make a waiting
    /// receiver spin).
    pub fn may_have(&mut self, channel: u32) -> bool {
        (self.pending_chunks > 0 && self.pending.get(&channel).is_some_and(|q| !q.is_empty()))
            || (self.pending_bytes < MAX_PENDING_BYTES
                && self.rings.iter_mut().any(|r| !r.is_empty()))
    }

    /// True if no chunk for `channel` is buffered or in flight.
    pub fn is_empty_for(&mut self, channel: u32) -> bool {
        self.pending.get(&channel).is_none_or(|q| q.is_empty())
            && self.rings.iter_mut().all(|r| r.is_empty())
    }
}

/// One worker's view of the exchange: everything its senders and
/// receivers share.
pub struct WorkerCtx {
    /// The process-wide state.
    pub process: Arc<Process>,
    /// Index among this process's workers.
    pub local: usize,
    /// Index among all workers.
    pub global: usize,
    /// This worker's wake-up signal.
    pub signal: Arc<Signal>,
    /// Outgoing batches by peer process (`None` for our own process).
    pub outboxes: RefCell<Vec<Option<Outbox>>>,
    /// Incoming chunks.
    pub inbox: RefCell<Inbox>,
}

impl WorkerCtx {
    /// Ships every non-empty batch whose ring has room; never waits.
    /// Returns true if nothing is left unshipped.
    pub fn release(&self) -> bool {
        let Some(net) = &self.process.net else {
            return true;
        };
        let mut all = true;
        for ob in self.outboxes.borrow_mut().iter_mut().flatten() {
            all &= ob.ship(net);
        }
        all
    }

    /// Ships every batch, waiting for room; fails if a link is lost.
    pub fn flush(&self) -> Result<(), ExchangeError> {
        let Some(net) = self.process.net.clone() else {
            return Ok(());
        };
        let peers = self.outboxes.borrow().len();
        for p in 0..peers {
            loop {
                let mut outboxes = self.outboxes.borrow_mut();
                let Some(ob) = outboxes[p].as_mut() else {
                    break;
                };
                if ob.ship(&net) {
                    break;
                }
                if let Some(e) = self.process.links[p].error() {
                    return Err(e);
                }
                ob.set_waiting();
                let link = &self.process.links[p];
                self.signal
                    .wait_until(None, || ob.has_room() || link.error().is_some());
            }
        }
        Ok(())
    }
}

impl Drop for WorkerCtx {
    fn drop(&mut self) {
        // The last sender is gone: what it sent must still leave. After a
        // panic or a lost link there is nobody to tell, so do not wait.
        if !std::thread::panicking() && self.process.link_error().is_none() {
            let _ = self.flush();
        }
    }
}
