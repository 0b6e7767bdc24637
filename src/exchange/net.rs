//! The network thread of a cluster process: one epoll loop over the
//! connections to every peer process. It writes the batches workers hand
//! it, reads frames, splits them into per-worker chunks, and turns every
//! connection failure into an error the workers see.

use super::error::ExchangeError;
use super::process::{Chunk, Process};
use super::ring::{Consumer, Producer};
use super::signal::{Signal, PARK_SLICE};
use super::wire::{Batches, KIND_ABORT, KIND_DATA, KIND_GOODBYE};
use crate::net::{FramedStream, StreamError};
use crate::runtime::{Interest, Poller};
use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The sending side of a connection. The network thread owns it, but a
/// worker with a small batch, nothing of its own queued and an idle lock
/// writes it to the socket itself: one thread hand-off less on the way
/// out, which is most of a round trip's latency on a busy machine.
pub struct Wire {
    /// The connection.
    pub stream: FramedStream,
    /// A batch taken from a worker's ring that the socket could not take
    /// yet (it goes before anything else from any worker).
    pub pending_out: Option<Vec<u8>>,
    /// The goodbye went out or the link failed: no more data.
    pub closed: bool,
}

/// A [`Wire`] shared by the network thread and the workers.
pub type SharedWire = Arc<Mutex<Wire>>;

/// Locks a wire; a panic while holding it leaves plain bytes behind, so
/// a poisoned lock is still usable.
pub fn lock(wire: &SharedWire) -> MutexGuard<'_, Wire> {
    wire.lock().unwrap_or_else(|e| e.into_inner())
}

/// One connection to a peer process and the rings that feed and drain it.
pub struct NetLink {
    peer: usize,
    wire: SharedWire,
    watching: Option<Interest>,
    /// Batches from each local worker.
    from_workers: Vec<Consumer<Vec<u8>>>,
    /// Chunks for each local worker.
    to_workers: Vec<Producer<Chunk>>,
    next_out: usize,
    /// Chunks of the current frame that wait for room in a worker's ring
    /// (at most one frame's worth: no reading while this is non-empty).
    stalled: VecDeque<(usize, Chunk)>,
    goodbye_sent: bool,
    write_closed: bool,
    peer_finished: bool,
    read_closed: bool,
    done: bool,
}

impl NetLink {
    /// A link to process `peer` over `wire`.
    pub fn new(
        peer: usize,
        wire: SharedWire,
        from_workers: Vec<Consumer<Vec<u8>>>,
        to_workers: Vec<Producer<Chunk>>,
    ) -> Self {
        NetLink {
            peer,
            wire,
            watching: None,
            from_workers,
            to_workers,
            next_out: 0,
            stalled: VecDeque::new(),
            goodbye_sent: false,
            write_closed: false,
            peer_finished: false,
            read_closed: false,
            done: false,
        }
    }

    fn lost(&self, e: StreamError) -> ExchangeError {
        match e {
            StreamError::FrameTooLarge { .. } => ExchangeError::Malformed {
                process: self.peer,
                reason: e.to_string(),
            },
            StreamError::Closed if !self.peer_finished => ExchangeError::PeerLost {
                process: self.peer,
                reason: "connection closed before the process finished".into(),
            },
            e => ExchangeError::PeerLost {
                process: self.peer,
                reason: e.to_string(),
            },
        }
    }

    /// Moves whatever can move; true if anything did.
    fn service(&mut self, process: &Process, workers_done: bool) -> Result<bool, ExchangeError> {
        if let Some(e) = process.links[self.peer].error() {
            return Err(e); // a worker found our data malformed
        }
        let mut progress = self.deliver_stalled(process);
        let wire = self.wire.clone();
        let mut w = lock(&wire);
        if self.stalled.is_empty() && !self.read_closed {
            progress |= w.stream.fill().map_err(|e| self.lost(e))? > 0;
            loop {
                let frame = match w.stream.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(StreamError::Closed) if self.peer_finished => {
                        self.read_closed = true;
                        break;
                    }
                    Err(e) => return Err(self.lost(e)),
                };
                progress = true;
                route(
                    frame,
                    self.peer,
                    process,
                    &mut self.to_workers,
                    &mut self.stalled,
                    &mut self.peer_finished,
                )?;
                if !self.stalled.is_empty() {
                    break;
                }
            }
        }
        // Outbound: take workers' batches round-robin while the socket
        // buffer has room; a flush that empties the buffer makes room for
        // the batch that did not fit.
        loop {
            loop {
                let batch = match w.pending_out.take() {
                    Some(b) => b,
                    None => match self.pop_batch(process) {
                        Some(b) => b,
                        None => break,
                    },
                };
                if !w.stream.send(&batch).map_err(|e| self.lost(e))? {
                    w.pending_out = Some(batch);
                    break;
                }
                progress = true;
            }
            // A panicked worker is announced at once (workers elsewhere
            // may wait for it); a clean end after everything was sent.
            let aborted = process.aborted.load(Ordering::Acquire);
            let last = if aborted { KIND_ABORT } else { KIND_GOODBYE };
            if !self.goodbye_sent
                && w.pending_out.is_none()
                && (aborted || (workers_done && self.outbound_empty()))
                && w.stream.send(&[last]).map_err(|e| self.lost(e))?
            {
                self.goodbye_sent = true;
                w.closed = true;
                progress = true;
            }
            let flushed = w.stream.flush().map_err(|e| self.lost(e))?;
            if !flushed || w.pending_out.is_none() {
                break;
            }
        }
        if self.goodbye_sent && !self.write_closed && !w.stream.wants_write() {
            w.stream.shutdown_write().map_err(|e| self.lost(e))?;
            self.write_closed = true;
        }
        if self.write_closed && self.read_closed {
            self.done = true;
        }
        Ok(progress)
    }

    fn pop_batch(&mut self, process: &Process) -> Option<Vec<u8>> {
        let n = self.from_workers.len();
        for k in 0..n {
            let i = (self.next_out + k) % n;
            let ring = &mut self.from_workers[i];
            if let Some(batch) = ring.pop() {
                if ring.take_producer_waiting() {
                    process.notify_worker(i); // it waits for room it now has
                }
                self.next_out = i + 1;
                return Some(batch);
            }
        }
        None
    }

    fn outbound_empty(&mut self) -> bool {
        self.from_workers.iter_mut().all(|r| r.is_empty())
    }

    fn deliver_stalled(&mut self, process: &Process) -> bool {
        let mut progress = false;
        while let Some((local, chunk)) = self.stalled.pop_front() {
            let ring = &mut self.to_workers[local];
            if !ring.consumer_alive() {
                continue; // the worker finished: drop
            }
            match ring.push(chunk) {
                Ok(()) => {
                    progress = true;
                    process.notify_worker(local);
                }
                Err(chunk) => {
                    ring.set_waiting();
                    self.stalled.push_front((local, chunk));
                    break;
                }
            }
        }
        progress
    }

    /// True if a pass would move something (checked before sleeping).
    fn has_work(&mut self, process: &Process, workers_done: bool) -> bool {
        if self.done {
            return false;
        }
        let wire = self.wire.clone();
        let w = lock(&wire);
        (w.pending_out.is_none() && !self.outbound_empty())
            || (w.pending_out.is_some() && !w.stream.wants_write())
            || self.stalled.front().is_some_and(|(local, _)| {
                let ring = &mut self.to_workers[*local];
                !ring.is_full() || !ring.consumer_alive()
            })
            || ((workers_done || process.aborted.load(Ordering::Acquire))
                && !self.goodbye_sent
                && w.pending_out.is_none()
                && !w.stream.wants_write())
            || process.links[self.peer].error().is_some()
    }

    /// Watches the socket for exactly what the link waits for: reading
    /// until the peer closed, writing while bytes are queued. Watching
    /// a closed read side or an idle write side would wake us forever.
    fn watch(&mut self, poller: &Poller) -> std::io::Result<()> {
        let wire = self.wire.clone();
        let w = lock(&wire);
        let want = match (
            !self.read_closed && !self.done,
            w.stream.wants_write() && !self.done,
        ) {
            (true, false) => Some(Interest::Read),
            (true, true) => Some(Interest::ReadWrite),
            (false, true) => Some(Interest::Write),
            (false, false) => None,
        };
        if want == self.watching {
            return Ok(());
        }
        let fd = w.stream.stream().as_fd();
        let token = self.peer as u64;
        match (self.watching, want) {
            (None, Some(i)) => poller.register_interest(fd, token, i)?,
            (Some(_), Some(i)) => poller.reregister(fd, token, i)?,
            (Some(_), None) => poller.deregister(fd)?,
            (None, None) => {}
        }
        self.watching = want;
        Ok(())
    }

    /// Gives up on the link: every worker learns why, and nobody waits
    /// on its rings any more.
    fn fail(&mut self, process: &Process, error: ExchangeError) {
        process.links[self.peer].fail(error);
        self.done = true;
        self.from_workers.clear();
        self.to_workers.clear();
        self.stalled.clear();
        let mut w = lock(&self.wire);
        w.pending_out = None;
        w.closed = true;
        let _ = w.stream.stream().shutdown(std::net::Shutdown::Both);
        drop(w);
        process.notify_all();
    }
}

/// Splits one frame from `peer` into chunks for local workers.
fn route(
    frame: &[u8],
    peer: usize,
    process: &Process,
    to_workers: &mut [Producer<Chunk>],
    stalled: &mut VecDeque<(usize, Chunk)>,
    peer_finished: &mut bool,
) -> Result<(), ExchangeError> {
    let malformed = |reason: String| ExchangeError::Malformed {
        process: peer,
        reason,
    };
    let Some((&kind, body)) = frame.split_first() else {
        return Err(malformed("empty frame".into()));
    };
    if *peer_finished {
        return Err(malformed("data after the goodbye".into()));
    }
    match kind {
        KIND_DATA => {
            for batch in Batches::new(body) {
                let batch = batch.map_err(|e| malformed(e.0))?;
                let (src, dst) = (batch.src as usize, batch.dst as usize);
                if process.process_of(src) != peer || process.process_of(dst) != process.index {
                    return Err(malformed(format!(
                        "batch from worker {src} to worker {dst} on the link to process {peer}"
                    )));
                }
                let local = dst % process.workers;
                let chunk = Chunk {
                    channel: batch.channel,
                    src: batch.src,
                    count: batch.count,
                    bytes: batch.bytes.to_vec(),
                };
                if !stalled.is_empty() {
                    stalled.push_back((local, chunk));
                    continue;
                }
                let ring = &mut to_workers[local];
                if !ring.consumer_alive() {
                    continue; // the worker finished: drop
                }
                match ring.push(chunk) {
                    Ok(()) => process.notify_worker(local),
                    Err(chunk) => {
                        ring.set_waiting();
                        stalled.push_back((local, chunk));
                    }
                }
            }
            Ok(())
        }
        KIND_ABORT => Err(ExchangeError::PeerLost {
            process: peer,
            reason: format!("a worker of process {peer} panicked"),
        }),
        KIND_GOODBYE if body.is_empty() => {
            *peer_finished = true;
            process.links[peer].finish();
            process.notify_all();
            Ok(())
        }
        kind => Err(malformed(format!("unknown frame kind {kind}"))),
    }
}

/// The loop: runs until every link has closed or failed.
pub fn run(
    process: Arc<Process>,
    mut poller: Poller,
    signal: Arc<Signal>,
    mut links: Vec<NetLink>,
) {
    loop {
        let workers_done = process.workers_done.load(Ordering::Acquire) == process.workers;
        let mut progress = false;
        for link in links.iter_mut().filter(|l| !l.done) {
            match link.service(&process, workers_done) {
                Ok(p) => progress |= p,
                Err(e) => {
                    link.fail(&process, e);
                    progress = true;
                }
            }
            if let Err(e) = link.watch(&poller) {
                link.fail(&process, ExchangeError::Io(e.to_string()));
            }
        }
        if links.iter().all(|l| l.done) {
            return;
        }
        if progress {
            continue;
        }
        signal.prepare_sleep();
        let workers_done = process.workers_done.load(Ordering::Acquire) == process.workers;
        if links.iter_mut().any(|l| l.has_work(&process, workers_done)) {
            signal.awake();
            continue;
        }
        // A chunk waiting for room is re-offered after one slice even if
        // the wake-up for freed room was lost (see PARK_SLICE).
        let stalled = links.iter().any(|l| !l.stalled.is_empty());
        let deadline = stalled.then(|| Instant::now() + PARK_SLICE);
        if poller.wait(deadline).is_err() {
            // epoll itself failed: nothing can be waited for any more.
            for link in links.iter_mut().filter(|l| !l.done) {
                link.fail(&process, ExchangeError::Io("epoll_wait failed".into()));
            }
            return;
        }
        signal.awake();
    }
}
