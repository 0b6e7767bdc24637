//! Child processes watched by a thread: when each exits, and a kill (by
//! pid) of whichever still run when the watch ends. Benchmarks that start
//! their own node processes use it.

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use troupe::runtime::Clock;

/// Child processes, watched by a thread that notes when each exits and
/// kills (by pid) whichever still run when the watch ends, whatever
/// happened to the run.
pub struct Watched {
    /// The children's pids, in order.
    pub pids: Vec<u32>,
    /// When each exited (on the watch's clock), once it has.
    pub exits: Arc<Mutex<Vec<Option<Duration>>>>,
    stop: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Watched {
    /// Starts watching `children` (times on `clock`).
    pub fn start(mut children: Vec<Child>, clock: Clock) -> Self {
        let pids = children.iter().map(|c| c.id()).collect();
        let exits = Arc::new(Mutex::new(vec![None; children.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (exits.clone(), stop.clone());
        let watcher = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let mut exits = seen.lock().unwrap_or_else(|p| p.into_inner());
                for (child, exit) in children.iter_mut().zip(exits.iter_mut()) {
                    if exit.is_none() && matches!(child.try_wait(), Ok(Some(_))) {
                        *exit = Some(clock.now());
                    }
                }
                if exits.iter().all(Option::is_some) {
                    return;
                }
                drop(exits);
                std::thread::sleep(Duration::from_micros(200));
            }
            // Under the lock, so that `signal` never targets a reaped pid.
            let mut exits = seen.lock().unwrap_or_else(|p| p.into_inner());
            for (child, exit) in children.iter_mut().zip(exits.iter_mut()) {
                let _ = child.kill();
                let _ = child.wait();
                exit.get_or_insert(clock.now());
            }
        });
        Watched {
            pids,
            exits,
            stop,
            watcher: Some(watcher),
        }
    }

    /// Sends `signal` to node `i` unless it has exited (and been reaped,
    /// which happens only under the same lock, so the pid is still ours).
    fn signal(exits: &Mutex<Vec<Option<Duration>>>, i: usize, pid: u32, signal: i32) -> bool {
        let exits = exits.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: kill(2) with a valid signal on our own unreaped child.
        exits[i].is_none() && unsafe { libc::kill(pid as libc::pid_t, signal) } == 0
    }

    /// Sends `signal` to child `i` after `after`, from a thread; the cell
    /// returned gets the time it was sent (on `clock`).
    pub fn signal_after(
        &self,
        i: usize,
        after: Duration,
        signal: i32,
        clock: Clock,
    ) -> Arc<Mutex<Option<Duration>>> {
        let hit = Arc::new(Mutex::new(None));
        let (pid, exits, noted) = (self.pids[i], self.exits.clone(), hit.clone());
        std::thread::spawn(move || {
            std::thread::sleep(after);
            if Self::signal(&exits, i, pid, signal) {
                *noted.lock().unwrap_or_else(|p| p.into_inner()) = Some(clock.now());
            }
        });
        hit
    }

    /// Waits (at most `limit`) until nodes `from..` exited; returns when
    /// the last of them did.
    pub fn wait_exits(&self, from: usize, limit: Duration) -> Option<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            let exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
            if exits[from..].iter().all(Option::is_some) {
                return exits[from..].iter().flatten().max().copied();
            }
            drop(exits);
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}
