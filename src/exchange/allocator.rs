//! A worker's handle on the exchange: who it is, and channels.

use super::channel::{Receiver, Sender};
use super::error::ExchangeError;
use super::ring::{ring, Consumer, Producer};
use super::signal::PARK_SLICE;
use super::worker::WorkerCtx;
use serde::{de::DeserializeOwned, Serialize};
use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

/// Slots of the ring between two workers of one process, per channel.
pub const LOCAL_RING: usize = 4096;

/// Handed to each worker's closure by [`initialize`](super::initialize).
pub struct Allocator {
    ctx: Rc<WorkerCtx>,
    allocated: HashSet<usize>,
}

/// The in-process rings of one channel while its workers allocate it.
struct LocalChannel<T> {
    /// `to[src][dst]`: producer ends.
    to: Vec<Vec<Option<Producer<T>>>>,
    /// `from[dst][src]`: consumer ends.
    from: Vec<Vec<Option<Consumer<T>>>>,
    taken: Vec<bool>,
}

impl<T> LocalChannel<T> {
    fn new(n: usize) -> Self {
        let mut to: Vec<Vec<Option<Producer<T>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut from: Vec<Vec<Option<Consumer<T>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        for src in 0..n {
            for dst in (0..n).filter(|&d| d != src) {
                let (p, c) = ring(LOCAL_RING);
                to[src][dst] = Some(p);
                from[dst][src] = Some(c);
            }
        }
        LocalChannel {
            to,
            from,
            taken: vec![false; n],
        }
    }
}

impl Allocator {
    pub(super) fn new(ctx: Rc<WorkerCtx>) -> Self {
        Allocator {
            ctx,
            allocated: HashSet::new(),
        }
    }

    /// This worker's index among all workers of the computation.
    pub fn index(&self) -> usize {
        self.ctx.global
    }

    /// Number of workers in the computation.
    pub fn peers(&self) -> usize {
        self.ctx.process.workers * self.ctx.process.processes
    }

    /// This worker's process index.
    pub fn process(&self) -> usize {
        self.ctx.process.index
    }

    /// Allocates channel `channel`: one sender per worker (indexed by
    /// worker) and this worker's receiver. Every worker allocates the
    /// same ids with the same message type; messages between workers of
    /// one process move without serialization, messages to other
    /// processes are encoded once with bincode and batched.
    #[allow(clippy::type_complexity)]
    pub fn allocate<T>(
        &mut self,
        channel: usize,
    ) -> Result<(Vec<Sender<T>>, Receiver<T>), ExchangeError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let id = u32::try_from(channel)
            .map_err(|_| ExchangeError::Config(format!("channel id {channel} over 2^32")))?;
        if self.allocated.contains(&channel) {
            return Err(ExchangeError::ChannelTaken { channel });
        }
        let process = self.ctx.process.clone();
        let (n, me) = (process.workers, self.ctx.local);
        let (mut to, from) = {
            let mut registry = process.registry.lock().unwrap_or_else(|e| e.into_inner());
            let entry = registry
                .entry(channel)
                .or_insert_with(|| Box::new(LocalChannel::<T>::new(n)));
            let local = entry
                .downcast_mut::<LocalChannel<T>>()
                .ok_or(ExchangeError::ChannelType { channel })?;
            if local.taken[me] {
                return Err(ExchangeError::ChannelTaken { channel });
            }
            local.taken[me] = true;
            let to: Vec<_> = local.to[me].iter_mut().map(Option::take).collect();
            let from: Vec<_> = local.from[me].iter_mut().map(Option::take).collect();
            if local.taken.iter().all(|&t| t) {
                registry.remove(&channel);
            }
            (to, from)
        };
        self.allocated.insert(channel);
        let self_loop = Rc::new(RefCell::new(VecDeque::new()));
        let first_local = process.index * n;
        let mut senders = Vec::with_capacity(self.peers());
        for target in 0..self.peers() {
            let sender = if target == self.ctx.global {
                Sender::self_loop(self.ctx.clone(), id, self_loop.clone())
            } else if (first_local..first_local + n).contains(&target) {
                match to[target - first_local].take() {
                    Some(ring) => Sender::local(self.ctx.clone(), id, target, ring),
                    None => return Err(ExchangeError::ChannelTaken { channel }),
                }
            } else {
                Sender::remote(self.ctx.clone(), id, target)
            };
            senders.push(sender);
        }
        let local = from
            .into_iter()
            .enumerate()
            .filter_map(|(src, c)| c.map(|c| (src, c)))
            .collect();
        let receiver = Receiver::new(self.ctx.clone(), id, local, self_loop);
        Ok((senders, receiver))
    }

    /// Ships this worker's unshipped batches to the network without
    /// waiting (receivers do this on their own when they find nothing).
    pub fn release(&self) {
        self.ctx.release();
    }

    /// Ships this worker's batches, waiting for room if needed.
    pub fn flush(&self) -> Result<(), ExchangeError> {
        self.ctx.flush()
    }

    /// Parks this worker until another worker or the network has news
    /// for it (an item, room in a full channel, a failure) or `timeout`
    /// passes. Ships unshipped batches first. For loops built on
    /// [`Push`](super::Push)/[`Pull`](super::Pull).
    pub fn await_events(&self, timeout: Option<Duration>) {
        self.ctx.release();
        // Without a condition to re-check after announcing the sleep, a
        // wake-up just before it would be missed: park for one slice at
        // most, and let the caller's loop look again.
        let slice = timeout.map_or(PARK_SLICE, |t| t.min(PARK_SLICE));
        let signal = self.ctx.signal.clone();
        signal.prepare_sleep();
        std::thread::park_timeout(slice);
        signal.awake();
    }

    /// The first lost or misbehaving peer process, if any.
    pub fn error(&self) -> Option<ExchangeError> {
        self.ctx.process.link_error()
    }
}
