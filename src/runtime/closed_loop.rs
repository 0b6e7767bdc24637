//! Closed-loop clients: each keeps one operation outstanding, issues the
//! next when it completes, and every latency lands in an HDR histogram.

use super::host::{HostView, Supervisor};
use crate::app::{OpSource, Workload};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latencies are recorded in microseconds, up to a minute, at 3
/// significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Measurements since the last time someone took them: what a live
/// report shows for one interval. Shared by every client-host thread.
#[derive(Debug)]
pub struct LiveStats {
    /// Operations completed.
    pub ops: u64,
    /// Their latencies, microseconds.
    pub latency: Histogram<u64>,
    /// Results that did not check.
    pub wrong: u64,
}

impl Default for LiveStats {
    fn default() -> Self {
        LiveStats {
            ops: 0,
            latency: new_histogram(),
            wrong: 0,
        }
    }
}

impl LiveStats {
    /// Takes the interval's measurements, leaving an empty interval.
    pub fn take(&mut self) -> LiveStats {
        std::mem::take(self)
    }

    fn absorb(&mut self, other: &mut LiveStats) {
        self.ops += other.ops;
        self.wrong += other.wrong;
        // Both histograms have the same bounds; adding cannot fail.
        let _ = self.latency.add(&other.latency);
        other.ops = 0;
        other.wrong = 0;
        other.latency.reset();
    }
}

/// The [`Supervisor`] of one client-host thread.
pub struct ClosedLoop {
    sources: Vec<OpSource>,
    started: Vec<Duration>,
    warmup: Duration,
    end: Duration,
    local: LiveStats,
    live: Arc<Mutex<LiveStats>>,
    stop: Arc<AtomicBool>,
    /// Latencies after warm-up, microseconds.
    pub measured: Histogram<u64>,
    /// Operations completed after warm-up.
    pub measured_ops: u64,
    /// Results that did not check, over the whole run.
    pub wrong: u64,
    /// Operations completed over the whole run.
    pub completed: u64,
}

impl ClosedLoop {
    /// Clients `first .. first + count` running `workload` for `duration`
    /// (measured after `warmup`), publishing into `live`, stopping early
    /// when `stop` is set.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        workload: &Workload,
        first: u64,
        count: u64,
        seed: u64,
        warmup: Duration,
        duration: Duration,
        live: Arc<Mutex<LiveStats>>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        ClosedLoop {
            sources: (first..first + count)
                .map(|c| OpSource::new(workload.clone(), c, seed))
                .collect(),
            started: vec![Duration::ZERO; count as usize],
            warmup,
            end: duration,
            local: LiveStats::default(),
            live,
            stop,
            measured: new_histogram(),
            measured_ops: 0,
            wrong: 0,
            completed: 0,
        }
    }

    fn publish(&mut self) {
        if let Ok(mut live) = self.live.lock() {
            live.absorb(&mut self.local);
        }
    }
}

impl Supervisor for ClosedLoop {
    fn next_op(&mut self, slot: usize, now: Duration) -> Option<Vec<u8>> {
        if now >= self.end || self.stop.load(Ordering::Relaxed) {
            return None;
        }
        self.started[slot] = now;
        Some(self.sources[slot].next_op())
    }

    fn completed(&mut self, slot: usize, now: Duration, result: &[u8]) {
        let micros = (now - self.started[slot]).as_micros() as u64;
        self.completed += 1;
        self.local.ops += 1;
        self.local.latency.saturating_record(micros.max(1));
        if !self.sources[slot].check(result) {
            self.wrong += 1;
            self.local.wrong += 1;
        }
        if now >= self.warmup {
            self.measured_ops += 1;
            self.measured.saturating_record(micros.max(1));
        }
    }

    fn tick(&mut self, now: Duration, _view: &HostView<'_>) -> bool {
        self.publish();
        now < self.end && !self.stop.load(Ordering::Relaxed)
    }
}
