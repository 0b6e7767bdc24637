//! Sleeping and waking: a worker parks when it has nothing to do, the
//! network thread sleeps in epoll; whoever gives either of them work
//! wakes it, and only if it is actually asleep (so a busy exchange makes
//! no system calls for wake-ups).

use crate::runtime::Waker;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How a sleeper is woken.
#[derive(Debug)]
enum Wake {
    /// A parked worker thread.
    Thread(Thread),
    /// The network thread, asleep in its poller.
    Poller(Waker),
}

/// One sleeper's wake-up flag.
#[derive(Debug)]
pub struct Signal {
    sleeping: AtomicBool,
    wake: Wake,
}

/// Longest single park: a safety net only. Wake-ups for new data cannot
/// be lost (see [`Signal::notify`]); a wake-up for freed space can, in a
/// rare race, and then costs at most this long.
pub const PARK_SLICE: Duration = Duration::from_millis(2);

/// Polls before parking: a reply that comes within a few microseconds
/// is caught without the cost of a park and an unpark.
const SPINS: u32 = 64;

impl Signal {
    /// A signal for the calling thread.
    pub fn current_thread() -> Self {
        Signal {
            sleeping: AtomicBool::new(false),
            wake: Wake::Thread(std::thread::current()),
        }
    }

    /// A signal that wakes a poller.
    pub fn poller(waker: Waker) -> Self {
        Signal {
            sleeping: AtomicBool::new(false),
            wake: Wake::Poller(waker),
        }
    }

    /// Wakes the sleeper if it sleeps. Call after publishing the work:
    /// the fence orders our publication before the read of `sleeping`,
    /// and the sleeper sets `sleeping` before its last look for work, so
    /// one of the two always sees the other.
    #[inline]
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            match &self.wake {
                Wake::Thread(t) => t.unpark(),
                Wake::Poller(w) => w.wake(),
            }
        }
    }

    /// Announces that the owner is about to sleep. Follow with a last
    /// look for work, then sleep, then [`awake`](Self::awake).
    pub fn prepare_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
    }

    /// The owner is running again.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// On the owning worker thread: returns once `ready()` holds or
    /// `deadline` passes (returning `ready()`'s last value). Spins
    /// briefly, then parks.
    pub fn wait_until(&self, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
        for i in 0..SPINS {
            if ready() {
                return true;
            }
            if i % 8 == 7 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        loop {
            self.prepare_sleep();
            if ready() {
                self.awake();
                return true;
            }
            let slice = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.awake();
                        return false;
                    }
                    left.min(PARK_SLICE)
                }
                None => PARK_SLICE,
            };
            std::thread::park_timeout(slice);
            self.awake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn notify_wakes_a_parked_waiter_and_deadlines_expire() {
        let signal = Arc::new(Signal::current_thread());
        let flag = Arc::new(AtomicU64::new(0));
        let (s, f) = (signal.clone(), flag.clone());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            f.store(1, Ordering::Release);
            s.notify();
        });
        assert!(signal.wait_until(None, || flag.load(Ordering::Acquire) == 1));
        t.join().unwrap();
        let soon = Instant::now() + Duration::from_millis(5);
        assert!(!signal.wait_until(Some(soon), || false));
        assert!(Instant::now() >= soon);
    }
}
