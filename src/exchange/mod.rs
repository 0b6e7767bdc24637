//! Typed exchange channels between workers, on one thread, many threads
//! of one process, or a cluster of processes over TCP.
//!
//! [`initialize`] starts the workers and hands each an [`Allocator`];
//! [`Allocator::allocate`] returns one [`Sender`] per worker and this
//! worker's [`Receiver`]. Each sender-receiver pair is FIFO. Between
//! workers of one process an item moves through a bounded ring as it is,
//! never serialized; to another process it is encoded once (bincode)
//! into a batch that leaves in large writes. Every queue is bounded: a
//! fast sender waits. A lost or misbehaving peer process is an error on
//! the workers that talk to it, never a hang.
//!
//! ```
//! use troupe::exchange::{initialize, Config};
//!
//! let guards = initialize(Config::Process(2), |mut allocator| {
//!     let (mut senders, mut receiver) = allocator.allocate::<String>(0).unwrap();
//!     for (i, s) in senders.iter_mut().enumerate() {
//!         s.send(format!("hello, {i}")).unwrap();
//!     }
//!     drop(senders);
//!     let mut got = Vec::new();
//!     while let Some(m) = receiver.recv_blocking().unwrap() {
//!         got.push(m);
//!     }
//!     got
//! })
//! .unwrap();
//! for result in guards.join() {
//!     assert_eq!(result.unwrap().len(), 2);
//! }
//! ```

mod allocator;
mod channel;
mod connect;
mod error;
mod initialize;
mod net;
mod process;
mod ring;
mod signal;
mod wire;
mod worker;

pub use allocator::{Allocator, LOCAL_RING};
pub use channel::{Pull, Push, PushError, Receiver, Sender};
pub use error::ExchangeError;
pub use initialize::{initialize, ClusterConfig, Config, WorkerGuards};
pub use process::{BATCH_BYTES, MAX_MESSAGE};

#[cfg(test)]
mod tests;
