//! The two ends of an exchange channel: one [`Sender`] per destination
//! worker and one [`Receiver`] per worker, with the blocking convenience
//! calls on top of the non-blocking [`Push`] / [`Pull`] interface.

use super::error::ExchangeError;
use super::process::{codec, Chunk};
use super::ring::{Consumer, Producer};
use super::signal::Signal;
use super::worker::WorkerCtx;
use serde::{de::DeserializeOwned, Serialize};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a non-blocking push did not take an item.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// No room now (flow control): the item is handed back. Receive
    /// something, or wait ([`Allocator::await_events`](super::Allocator::await_events)),
    /// then offer it again.
    Full(T),
    /// The destination cannot be reached any more.
    Failed(ExchangeError),
}

/// The lower-level sending interface: never waits, so a caller that
/// manages its own buffers decides what to do when the channel is full.
pub trait Push<T> {
    /// Offers one item.
    fn try_push(&mut self, item: T) -> Result<(), PushError<T>>;
    /// Hands items buffered for another process to the network without
    /// waiting; true if none is left behind.
    fn try_flush(&mut self) -> bool;
}

/// The lower-level receiving interface: never waits.
pub trait Pull<T> {
    /// The next item, if one has arrived.
    fn try_pull(&mut self) -> Result<Option<T>, ExchangeError>;

    /// Moves up to `max` arrived items into `out`; returns how many.
    fn pull_into(&mut self, out: &mut Vec<T>, max: usize) -> Result<usize, ExchangeError> {
        let mut n = 0;
        while n < max {
            match self.try_pull()? {
                Some(item) => {
                    out.push(item);
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }
}

/// Where a sender's items go.
enum Route<T> {
    /// Another worker of this process: straight into its ring, no
    /// serialization.
    Local {
        ring: Producer<T>,
        wake: Arc<Signal>,
    },
    /// This very worker: a plain queue (a bounded one could only
    /// deadlock, since the waiting sender is also the only reader).
    SelfLoop(Rc<RefCell<VecDeque<T>>>),
    /// A worker of another process: encoded into that process's batch.
    Remote { process: usize },
}

/// Sends items to one worker. FIFO: items arrive in the order sent.
pub struct Sender<T> {
    route: Route<T>,
    channel: u32,
    target: usize,
    ctx: Rc<WorkerCtx>,
}

impl<T: Serialize> Sender<T> {
    pub(super) fn local(
        ctx: Rc<WorkerCtx>,
        channel: u32,
        target: usize,
        ring: Producer<T>,
    ) -> Self {
        let wake = ctx.process.signal(target % ctx.process.workers).clone();
        Sender {
            route: Route::Local { ring, wake },
            channel,
            target,
            ctx,
        }
    }

    pub(super) fn self_loop(
        ctx: Rc<WorkerCtx>,
        channel: u32,
        queue: Rc<RefCell<VecDeque<T>>>,
    ) -> Self {
        let target = ctx.global;
        Sender {
            route: Route::SelfLoop(queue),
            channel,
            target,
            ctx,
        }
    }

    pub(super) fn remote(ctx: Rc<WorkerCtx>, channel: u32, target: usize) -> Self {
        let process = ctx.process.process_of(target);
        Sender {
            route: Route::Remote { process },
            channel,
            target,
            ctx,
        }
    }

    /// The worker this sender reaches (global index).
    pub fn target(&self) -> usize {
        self.target
    }

    /// Sends `item`, waiting while the channel is full (flow control: a
    /// fast sender waits, it does not grow a queue). Items for another
    /// process are batched; they leave when the batch is large, when this
    /// worker runs out of input (a receive finds nothing, or it waits),
    /// or on [`flush`](Self::flush).
    ///
    /// Waiting can deadlock if the receiver waits for this worker in
    /// turn; workers that exchange a lot both ways use
    /// [`try_push`](Push::try_push) and receive while full.
    pub fn send(&mut self, item: T) -> Result<(), ExchangeError> {
        let mut item = item;
        loop {
            match self.try_push(item) {
                Ok(()) => return Ok(()),
                Err(PushError::Failed(e)) => return Err(e),
                Err(PushError::Full(back)) => {
                    item = back;
                    self.wait_for_room();
                }
            }
        }
    }

    /// Hands buffered items for another process to the network, waiting
    /// for room if needed.
    pub fn flush(&mut self) -> Result<(), ExchangeError> {
        self.ctx.flush()
    }

    fn wait_for_room(&mut self) {
        // Our own unshipped batches may be what the others wait for.
        self.ctx.release();
        let signal = self.ctx.signal.clone();
        match &mut self.route {
            Route::Local { ring, .. } => {
                ring.set_waiting();
                signal.wait_until(None, || !ring.is_full() || !ring.consumer_alive());
            }
            Route::Remote { process } => {
                let link = &self.ctx.process.links[*process];
                let mut outboxes = self.ctx.outboxes.borrow_mut();
                if let Some(ob) = outboxes[*process].as_mut() {
                    ob.set_waiting();
                    signal.wait_until(None, || ob.has_room() || link.error().is_some());
                }
            }
            Route::SelfLoop(_) => {}
        }
    }
}

impl<T: Serialize> Push<T> for Sender<T> {
    fn try_push(&mut self, item: T) -> Result<(), PushError<T>> {
        match &mut self.route {
            Route::Local { ring, wake } => {
                if !ring.consumer_alive() {
                    // The receiving worker has finished: as in any
                    // exchange, items for a finished worker are dropped.
                    return Ok(());
                }
                match ring.push(item) {
                    Ok(()) => {
                        wake.notify();
                        Ok(())
                    }
                    Err(item) => {
                        ring.set_waiting();
                        Err(PushError::Full(item))
                    }
                }
            }
            Route::SelfLoop(queue) => {
                queue.borrow_mut().push_back(item);
                Ok(())
            }
            Route::Remote { process } => {
                let p = *process;
                let ctx = &self.ctx;
                if let Some(e) = ctx.process.links[p].error() {
                    return Err(PushError::Failed(e));
                }
                let mut outboxes = ctx.outboxes.borrow_mut();
                let Some(ob) = outboxes[p].as_mut() else {
                    return Err(PushError::Failed(ExchangeError::Config(format!(
                        "no connection to process {p}"
                    ))));
                };
                if ob.is_ripe() {
                    let shipped = ctx.process.net.as_ref().is_some_and(|net| ob.ship(net));
                    if !shipped {
                        ob.set_waiting();
                        return Err(PushError::Full(item));
                    }
                }
                ob.append(self.channel, ctx.global as u32, self.target as u32, &item)
                    .map_err(PushError::Failed)
            }
        }
    }

    fn try_flush(&mut self) -> bool {
        match self.route {
            Route::Remote { .. } => self.ctx.release(),
            _ => true,
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Route::Local { ring, wake } = &self.route {
            ring.close();
            wake.notify();
        }
    }
}

/// An incoming chunk being decoded.
struct Decoding {
    chunk: Chunk,
    offset: usize,
    left: u32,
}

/// Receives the items every worker sends this worker on one channel.
pub struct Receiver<T> {
    channel: u32,
    /// Rings from the other local workers, with their local index.
    local: Vec<(usize, Consumer<T>)>,
    self_loop: Rc<RefCell<VecDeque<T>>>,
    next: usize,
    decoding: Option<Decoding>,
    ctx: Rc<WorkerCtx>,
}

impl<T: DeserializeOwned> Receiver<T> {
    pub(super) fn new(
        ctx: Rc<WorkerCtx>,
        channel: u32,
        local: Vec<(usize, Consumer<T>)>,
        self_loop: Rc<RefCell<VecDeque<T>>>,
    ) -> Self {
        Receiver {
            channel,
            local,
            self_loop,
            next: 0,
            decoding: None,
            ctx,
        }
    }

    /// The next item if one has arrived; never waits. When nothing has
    /// arrived, this worker's unshipped batches leave (it is idle), and a
    /// lost peer process is reported.
    pub fn recv(&mut self) -> Result<Option<T>, ExchangeError> {
        self.try_pull()
    }

    /// Waits for the next item. `Ok(None)` once every sender is gone:
    /// the other local workers dropped theirs and every other process
    /// finished.
    pub fn recv_blocking(&mut self) -> Result<Option<T>, ExchangeError> {
        self.recv_deadline(None)
    }

    /// Waits at most `timeout` for the next item (`Ok(None)` on timeout
    /// or when every sender is gone).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<T>, ExchangeError> {
        self.recv_deadline(Some(Instant::now() + timeout))
    }

    fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<Option<T>, ExchangeError> {
        loop {
            if let Some(item) = self.try_pull()? {
                return Ok(Some(item));
            }
            if self.is_closed() {
                return Ok(None);
            }
            let signal = self.ctx.signal.clone();
            let woke = signal.wait_until(deadline, || self.may_have_input());
            if !woke {
                return self.try_pull();
            }
        }
    }

    /// True if something may be there to pull (an item, a chunk, a
    /// failure), or nothing ever will be.
    fn may_have_input(&mut self) -> bool {
        self.local.iter_mut().any(|(_, c)| !c.is_empty())
            || !self.self_loop.borrow().is_empty()
            || self.decoding.is_some()
            || self.ctx.inbox.borrow_mut().may_have(self.channel)
            || self.ctx.process.link_error().is_some()
            || self.is_closed()
    }

    /// True when no item can arrive any more.
    pub fn is_closed(&mut self) -> bool {
        let process = &self.ctx.process;
        self.local
            .iter_mut()
            .all(|(_, c)| !c.producer_alive() && c.is_empty())
            && Rc::strong_count(&self.self_loop) == 1
            && self.self_loop.borrow().is_empty()
            && self.decoding.is_none()
            && (0..process.processes).all(|p| p == process.index || process.links[p].is_finished())
            && self.ctx.inbox.borrow_mut().is_empty_for(self.channel)
    }

    fn decode_next(&mut self) -> Result<Option<T>, ExchangeError> {
        use bincode::Options;
        loop {
            if let Some(d) = &mut self.decoding {
                let len = d.chunk.bytes.len();
                let error = if d.left > 0 {
                    let mut rest = &d.chunk.bytes[d.offset..];
                    let before = rest.len();
                    match codec()
                        .with_limit(before as u64)
                        .deserialize_from::<_, T>(&mut rest)
                    {
                        Ok(item) => {
                            d.offset += before - rest.len();
                            d.left -= 1;
                            return Ok(Some(item));
                        }
                        Err(e) => Some(e.to_string()),
                    }
                } else if d.offset != len {
                    Some(format!("{} bytes after the last message", len - d.offset))
                } else {
                    None
                };
                if let Some(reason) = error {
                    let src = d.chunk.src as usize;
                    return Err(self.malformed(src, reason));
                }
                self.decoding = None;
            }
            let net = self.ctx.process.net.clone();
            let chunk = self
                .ctx
                .inbox
                .borrow_mut()
                .take(self.channel, net.as_deref());
            match chunk {
                Some(chunk) => {
                    self.decoding = Some(Decoding {
                        left: chunk.count,
                        offset: 0,
                        chunk,
                    })
                }
                None => return Ok(None),
            }
        }
    }

    /// Records undecodable input from worker `src`: its process's link
    /// is failed for every worker, since nothing after it can be trusted.
    fn malformed(&mut self, src: usize, reason: String) -> ExchangeError {
        let process = &self.ctx.process;
        let p = process.process_of(src);
        let error = ExchangeError::Malformed {
            process: p,
            reason: format!("channel {} from worker {src}: {reason}", self.channel),
        };
        self.decoding = None;
        if let Some(link) = process.links.get(p) {
            link.fail(error.clone());
        }
        process.notify_all();
        if let Some(net) = &process.net {
            net.notify();
        }
        error
    }
}

impl<T: DeserializeOwned> Pull<T> for Receiver<T> {
    fn try_pull(&mut self) -> Result<Option<T>, ExchangeError> {
        let sources = self.local.len() + 2;
        for k in 0..sources {
            let i = (self.next + k) % sources;
            let item = if i < self.local.len() {
                let (src, ring) = &mut self.local[i];
                let item = ring.pop();
                if ring.take_producer_waiting() {
                    self.ctx.process.signal(*src).notify();
                }
                item
            } else if i == self.local.len() {
                self.self_loop.borrow_mut().pop_front()
            } else {
                self.decode_next()?
            };
            if let Some(item) = item {
                self.next = i + 1;
                return Ok(Some(item));
            }
        }
        // Idle: let our own batches go, then report a lost peer.
        self.ctx.release();
        match self.ctx.process.link_error() {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }
}
