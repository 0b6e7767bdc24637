//! The real runtime: epoll loops over non-blocking UDP sockets, timers
//! and cross-thread wake-ups, driving the same actors the simulator
//! drives.
//!
//! - [`run_host`] runs one or many actors on the calling thread over one
//!   socket: a replica (one actor, optionally with a pool of threads for
//!   its [`SharedState`](crate::actor::SharedState)) or a client host
//!   (thousands of light client actors, steered by a [`Supervisor`]).
//! - [`Poller`] is the thin epoll/timerfd/eventfd layer underneath, for
//!   other loops (multicast sessions, exchange channels, work distribution).

mod closed_loop;
mod driven;
mod host;
mod poller;
mod pool;
mod stats;
mod timers;

pub use closed_loop::{new_histogram, ClosedLoop, LiveStats};
pub use driven::{DriveConfig, DriveLoop, Driven};
pub use host::{run_host, HostConfig, HostOutcome, HostView, Supervisor};
pub use poller::{Clock, Interest, Poller, Waker, Wakeup};
pub use stats::{process_cpu_time, Counters};
pub use timers::TimerQueue;
