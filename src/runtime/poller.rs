//! A thin layer over epoll, timerfd and eventfd: one thread's way to
//! sleep until a socket is readable, a deadline passes, or another thread
//! wakes it.

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Token of the poller's own timer.
const TIMER_TOKEN: u64 = u64::MAX;
/// Token of the poller's own waker.
const WAKE_TOKEN: u64 = u64::MAX - 1;

/// Wakes a [`Poller`] from another thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Waker {
    fd: Arc<EventFd>,
}

impl Waker {
    /// Makes the poller's current or next wait return.
    pub fn wake(&self) {
        // A full counter (2^64 - 2 wakes pending) still wakes: ignore it.
        let _ = self.fd.write(1);
    }
}

/// The clock a runtime hands to actors: time since the runtime started.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Time since the start.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The instant at `at` on this clock.
    pub fn instant(&self, at: Duration) -> Instant {
        self.epoch + at
    }
}

/// What woke a wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wakeup {
    /// A registered source with this token is ready (the lowest one).
    pub ready: bool,
    /// The waker fired.
    pub woken: bool,
}

/// What a registered descriptor is watched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// Readable (or hung up).
    Read,
    /// Writable (or hung up).
    Write,
    /// Either.
    ReadWrite,
}

impl Interest {
    fn flags(self) -> EpollFlags {
        match self {
            Interest::Read => EpollFlags::EPOLLIN,
            Interest::Write => EpollFlags::EPOLLOUT,
            Interest::ReadWrite => EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT,
        }
    }
}

/// epoll plus a timerfd for sub-millisecond deadlines plus an eventfd for
/// cross-thread wake-ups.
pub struct Poller {
    epoll: Epoll,
    timer: TimerFd,
    armed: Option<Instant>,
    waker: Arc<EventFd>,
    events: Vec<EpollEvent>,
    ready: Vec<u64>,
}

impl Poller {
    /// A new poller with its timer and waker registered.
    pub fn new() -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        let waker = Arc::new(EventFd::from_value_and_flags(
            0,
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        epoll.add(
            timer.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TIMER_TOKEN),
        )?;
        epoll.add(
            waker.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN),
        )?;
        Ok(Poller {
            epoll,
            timer,
            armed: None,
            waker,
            events: vec![EpollEvent::empty(); 64],
            ready: Vec::new(),
        })
    }

    /// Watches `fd` for readability; it is reported with `token`.
    /// `exclusive` sets EPOLLEXCLUSIVE, so that of several threads waiting
    /// on one socket only one wakes per datagram burst.
    pub fn register(&self, fd: BorrowedFd<'_>, token: u64, exclusive: bool) -> io::Result<()> {
        let mut flags = EpollFlags::EPOLLIN;
        if exclusive {
            flags |= EpollFlags::EPOLLEXCLUSIVE;
        }
        self.epoll.add(fd, EpollEvent::new(flags, token))?;
        Ok(())
    }

    /// Watches `fd` for the readiness in `interest` (level-triggered); it is
    /// reported with `token` whichever kind fired, and also on hang-up or
    /// error, so the owner simply tries its non-blocking reads and writes.
    pub fn register_interest(
        &self,
        fd: BorrowedFd<'_>,
        token: u64,
        interest: Interest,
    ) -> io::Result<()> {
        self.epoll
            .add(fd, EpollEvent::new(interest.flags(), token))?;
        Ok(())
    }

    /// Changes what a registered `fd` is watched for: a connection asks
    /// for write readiness only while its write buffer is non-empty, since
    /// a level-triggered EPOLLOUT on an idle socket would fire forever.
    pub fn reregister(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        self.epoll
            .modify(fd, &mut EpollEvent::new(interest.flags(), token))?;
        Ok(())
    }

    /// Stops watching `fd`.
    pub fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.epoll.delete(fd)?;
        Ok(())
    }

    /// A handle that wakes this poller.
    pub fn waker(&self) -> Waker {
        Waker {
            fd: self.waker.clone(),
        }
    }

    /// Sleeps until a registered source is ready, the waker fires, or
    /// `deadline` passes (`None`: no deadline; a deadline in the past: do
    /// not sleep). Tokens of ready sources are in [`Poller::ready`].
    pub fn wait(&mut self, deadline: Option<Instant>) -> io::Result<Wakeup> {
        let timeout = match deadline {
            Some(d) if d <= Instant::now() => EpollTimeout::ZERO,
            Some(d) => {
                self.arm(d)?;
                EpollTimeout::NONE
            }
            None => EpollTimeout::NONE,
        };
        self.poll(timeout)
    }

    /// Checks readiness without sleeping (spin mode).
    pub fn poll_now(&mut self) -> io::Result<Wakeup> {
        self.poll(EpollTimeout::ZERO)
    }

    /// Tokens found ready by the last wait.
    pub fn ready(&self) -> &[u64] {
        &self.ready
    }

    fn poll(&mut self, timeout: EpollTimeout) -> io::Result<Wakeup> {
        self.ready.clear();
        let n = match self.epoll.wait(&mut self.events, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let mut wakeup = Wakeup::default();
        for event in &self.events[..n] {
            match event.data() {
                TIMER_TOKEN => {
                    let _ = self.timer.wait(); // consume the expiration
                    self.armed = None;
                }
                WAKE_TOKEN => {
                    let _ = self.waker.read();
                    wakeup.woken = true;
                }
                token => {
                    wakeup.ready = true;
                    self.ready.push(token);
                }
            }
        }
        Ok(wakeup)
    }

    fn arm(&mut self, deadline: Instant) -> io::Result<()> {
        // Already armed for the same time or earlier: that firing wakes us
        // no later than needed, and the loop re-arms then. Skipping the
        // syscall matters: clients push their resend deadline forward on
        // every request.
        if self.armed.is_some_and(|armed| armed <= deadline) {
            return Ok(());
        }
        // timerfd wants an absolute CLOCK_MONOTONIC time; Instant is that
        // clock on Linux, but opaque, so go through a relative offset.
        let rel = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_micros(1));
        let spec = TimeSpec::from_duration(rel);
        self.timer
            .set(Expiration::OneShot(spec), TimerSetTimeFlags::empty())?;
        self.armed = Some(deadline);
        Ok(())
    }

    /// Raw fd of the epoll instance (for diagnostics).
    pub fn raw_fd(&self) -> i32 {
        self.epoll.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_millisecond_deadline_wakes_one_wait_on_time() {
        let mut p = Poller::new().unwrap();
        for _ in 0..20 {
            let deadline = Instant::now() + Duration::from_micros(300);
            // One wait must return, and not before the deadline: the
            // timerfd carries microseconds where epoll's own timeout would
            // round to whole milliseconds.
            let woke = p.wait(Some(deadline)).unwrap();
            assert!(!woke.ready && !woke.woken);
            assert!(Instant::now() >= deadline);
        }
    }

    #[test]
    fn waker_wakes_another_thread() {
        let mut p = Poller::new().unwrap();
        let w = p.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.wake();
        });
        let woke = p.wait(None).unwrap();
        assert!(woke.woken);
        t.join().unwrap();
    }
}
