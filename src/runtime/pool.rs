//! The shared stage on a pool of threads: they read the socket, decode and
//! verify, and hand envelopes to the core; they take the core's outgoing
//! messages, encode and sign them, and write them out.

use super::poller::{Poller, Waker};
use super::stats::Counters;
use crate::actor::{Envelope, SharedState};
use crate::net::UdpBatch;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Decoded messages waiting for the core, at most. A core that falls this
/// far behind sheds load (counted) instead of growing a queue.
const INBOUND_CAPACITY: usize = 1 << 16;
/// Messages waiting for the pool to encode, at most.
const OUTBOUND_CAPACITY: usize = 1 << 16;

/// One message for the pool to encode once and send to every address.
pub struct Outbound<M> {
    /// Socket addresses of the recipients.
    pub to: Vec<SocketAddr>,
    /// What to encode.
    pub envelope: Envelope<M>,
}

/// The running pool, as the core thread sees it.
pub struct SharedPool<M> {
    inbound: Receiver<(SocketAddr, Envelope<M>)>,
    outbound: Sender<Outbound<M>>,
    wakers: Vec<Waker>,
    next_waker: Cell<usize>,
    pending_wake: Cell<bool>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Counters>>,
}

impl<M: Send + 'static> SharedPool<M> {
    /// Starts `threads` threads over clones of `socket`, waking
    /// `core_waker` when decoded messages arrive.
    pub fn start<C>(
        codec: Arc<C>,
        socket: &UdpSocket,
        threads: usize,
        core_waker: Waker,
    ) -> io::Result<Self>
    where
        C: SharedState<Message = M> + 'static,
    {
        let (in_tx, in_rx) = bounded(INBOUND_CAPACITY);
        let (out_tx, out_rx) = bounded(OUTBOUND_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        let mut wakers = Vec::new();
        for i in 0..threads {
            let poller = Poller::new()?;
            poller.register(socket.as_fd(), 0, true)?;
            wakers.push(poller.waker());
            let worker = Worker {
                codec: codec.clone(),
                net: UdpBatch::new(socket.try_clone()?),
                poller,
                to_core: in_tx.clone(),
                core_waker: core_waker.clone(),
                outbound: out_rx.clone(),
                stop: stop.clone(),
                dropped: dropped.clone(),
                counters: Counters::default(),
                buf: Vec::new(),
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("shared-{i}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(SharedPool {
            inbound: in_rx,
            outbound: out_tx,
            wakers,
            next_waker: Cell::new(0),
            pending_wake: Cell::new(false),
            stop,
            dropped,
            threads: handles,
        })
    }
}

impl<M> SharedPool<M> {
    /// Moves every decoded message that is waiting into `into`.
    pub fn drain_inbound(&self, into: &mut Vec<(SocketAddr, Envelope<M>)>) {
        into.extend(self.inbound.try_iter());
    }

    /// Queues a message for encoding; the pool is woken at the next
    /// [`SharedPool::flush`], once per loop turn rather than per message.
    pub fn send(&self, outbound: Outbound<M>) {
        match self.outbound.try_send(outbound) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.pending_wake.set(true);
    }

    /// Wakes one pool thread if messages were queued since the last call.
    pub fn flush(&self) {
        if !self.pending_wake.replace(false) || self.wakers.is_empty() {
            return;
        }
        let i = self.next_waker.get();
        self.next_waker.set((i + 1) % self.wakers.len());
        self.wakers[i].wake();
    }

    /// Stops the threads and returns what they counted.
    pub fn stop(self) -> Counters {
        self.stop.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            w.wake();
        }
        let mut total = Counters::default();
        for t in self.threads {
            if let Ok(c) = t.join() {
                total.merge(&c);
            }
        }
        total.send_errors += self.dropped.load(Ordering::Relaxed);
        total
    }
}

struct Worker<C: SharedState> {
    codec: Arc<C>,
    net: UdpBatch,
    poller: Poller,
    to_core: Sender<(SocketAddr, Envelope<C::Message>)>,
    core_waker: Waker,
    outbound: Receiver<Outbound<C::Message>>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    counters: Counters,
    buf: Vec<u8>,
}

impl<C: SharedState> Worker<C> {
    fn run(mut self) -> Counters {
        while !self.stop.load(Ordering::Relaxed) {
            let mut busy = false;
            match self.net.recv_batch() {
                Ok(n) => {
                    busy |= n > 0;
                    for i in 0..n {
                        let (source, bytes) = self.net.received(i);
                        match self.codec.decode(bytes) {
                            Ok(env) => {
                                if self.to_core.try_send((source, env)).is_err() {
                                    self.dropped.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(e) => self.counters.count_wire_error(&e),
                        }
                    }
                    if n > 0 {
                        self.core_waker.wake();
                    }
                }
                Err(e) => {
                    log::warn!("shared-stage receive failed: {e}");
                    break;
                }
            }
            for out in self.outbound.try_iter().take(256) {
                busy = true;
                self.codec.encode(&out.envelope, &mut self.buf);
                for at in out.to {
                    let mut b = self.net.next_buffer();
                    b.clear();
                    b.extend_from_slice(&self.buf);
                    self.net.push(at, b);
                }
            }
            self.net.flush();
            if !busy && self.poller.wait(None).is_err() {
                break;
            }
        }
        self.counters.send_errors += self.net.send_errors;
        self.counters
    }
}
