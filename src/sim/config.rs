//! What a batch of simulations runs: clients, operations, network, faults.

use crate::actor::Rng;
use std::str::FromStr;
use std::time::Duration;

/// A distribution of one-way message delays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Delay {
    /// Always the same.
    Constant(Duration),
    /// Uniform between `min` and `max`.
    Uniform {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
    /// `min` plus an exponentially distributed part of mean `mean`
    /// (a long tail, as on a loaded network).
    Exponential {
        /// Shortest delay.
        min: Duration,
        /// Mean of the part above `min`.
        mean: Duration,
    },
}

impl Delay {
    /// Draws one delay in nanoseconds.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match *self {
            Delay::Constant(d) => d.as_nanos() as u64,
            Delay::Uniform { min, max } => {
                let (lo, hi) = (min.as_nanos() as u64, max.as_nanos() as u64);
                lo + rng.below(hi.saturating_sub(lo) + 1)
            }
            Delay::Exponential { min, mean } => {
                let u = 1.0 - rng.unit(); // in (0, 1]
                min.as_nanos() as u64 + (-u.ln() * mean.as_nanos() as f64) as u64
            }
        }
    }
}

/// The network when no fault is active.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetworkConfig {
    /// One-way delay of every message.
    pub delay: Delay,
    /// Each actor's clock runs at a rate drawn from `1 ± clock_skew`
    /// (its `now()` and its timers), as real clocks drift.
    pub clock_skew: f64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            delay: Delay::Uniform {
                min: Duration::from_micros(50),
                max: Duration::from_micros(150),
            },
            clock_skew: 0.05,
        }
    }
}

/// Which kinds of fault a run may inject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultKinds {
    /// Messages lost.
    pub drop: bool,
    /// Messages delivered twice.
    pub dup: bool,
    /// Large delay jitter, so messages overtake each other.
    pub reorder: bool,
    /// Some messages held back for long.
    pub delay: bool,
    /// The nodes split in two sides (either way or one way).
    pub partition: bool,
    /// Nodes crash and restart.
    pub crash: bool,
    /// Nodes turn Byzantine (only where the protocol tolerates it).
    pub byzantine: bool,
}

impl FaultKinds {
    /// The name of each kind, as `--faults` and [`str::parse`] take it,
    /// for running a protocol against one kind at a time.
    pub const NAMES: [&'static str; 7] = [
        "drop",
        "dup",
        "reorder",
        "delay",
        "partition",
        "crash",
        "byzantine",
    ];

    /// Every kind.
    pub fn all() -> Self {
        FaultKinds {
            drop: true,
            dup: true,
            reorder: true,
            delay: true,
            partition: true,
            crash: true,
            byzantine: true,
        }
    }

    /// Whether no fault kind is enabled.
    pub fn is_empty(&self) -> bool {
        *self == FaultKinds::default()
    }
}

impl FromStr for FaultKinds {
    type Err = String;

    /// Parses a comma-separated list such as `drop,dup,partition`
    /// (`all` and `none` too).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut kinds = FaultKinds::default();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "drop" => kinds.drop = true,
                "dup" | "duplicate" => kinds.dup = true,
                "reorder" => kinds.reorder = true,
                "delay" => kinds.delay = true,
                "partition" => kinds.partition = true,
                "crash" => kinds.crash = true,
                "byzantine" => kinds.byzantine = true,
                "all" => kinds = FaultKinds::all(),
                "none" => {}
                other => {
                    return Err(format!(
                        "unknown fault kind {other:?} (drop, dup, reorder, delay, partition, crash, byzantine, all)"
                    ))
                }
            }
        }
        Ok(kinds)
    }
}

/// A batch of seeded simulations.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How many seeds to run.
    pub seeds: u64,
    /// The first seed; the batch runs `first_seed .. first_seed + seeds`.
    pub first_seed: u64,
    /// Fault kinds to inject.
    pub faults: FaultKinds,
    /// Concurrent closed-loop clients.
    pub clients: usize,
    /// Operations per client.
    pub ops: usize,
    /// Distinct keys the clients share.
    pub keys: usize,
    /// Faults tolerated, for protocols sized by it (replicas = 3f+1, ...).
    pub f: usize,
    /// The fault-free network.
    pub network: NetworkConfig,
    /// Fault windows start and end before this virtual time.
    pub fault_horizon: Duration,
    /// Once faults stop, every operation must complete within this.
    pub liveness_bound: Duration,
    /// A run that handles more events than this fails (a livelock).
    pub max_events: u64,
    /// Shrink the fault schedule of a failing seed.
    pub shrink: bool,
    /// Lines of trace printed for a failing seed.
    pub trace_lines: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seeds: 100,
            first_seed: 1,
            faults: FaultKinds::default(),
            clients: 5,
            ops: 50,
            keys: 3,
            f: 1,
            network: NetworkConfig::default(),
            fault_horizon: Duration::from_millis(100),
            liveness_bound: Duration::from_secs(10),
            max_events: 20_000_000,
            shrink: true,
            trace_lines: 40,
        }
    }
}
