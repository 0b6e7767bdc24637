//! Each worker's own view of the exchange: its outgoing batches per peer
//! process and its incoming chunks.

use super::error::ExchangeError;
use super::net::SharedWire;
use super::process::{codec, Chunk, Process, BATCH_BYTES, MAX_MESSAGE, MAX_PENDING_BYTES};
use super::ring::{Consumer, Producer};
use super::signal::Signal;
use super::wire::{close_batch, open_batch, KIND_DATA};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

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
