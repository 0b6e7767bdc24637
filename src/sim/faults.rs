//! Fault schedules: which faults happen when, drawn from a seed, and
//! shrunk by dropping faults one at a time.

use super::adversary::Behaviour;
use super::config::SimConfig;
use super::Tolerance;
use crate::actor::{Addr, Rng};
use std::fmt;
use std::time::Duration;

/// One kind of fault with its parameters. Probabilities are in per mille
/// so that a schedule is plain, comparable data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Each message is lost with this probability.
    Drop {
        /// Probability, per mille.
        permille: u32,
    },
    /// Each message is delivered twice with this probability.
    Duplicate {
        /// Probability, per mille.
        permille: u32,
    },
    /// Each message gets up to this much extra delay, uniformly, so later
    /// messages overtake earlier ones.
    Reorder {
        /// Largest extra delay.
        jitter: Duration,
    },
    /// Each message is, with this probability, held back for up to
    /// `extra`.
    Delay {
        /// Probability, per mille.
        permille: u32,
        /// Largest extra delay.
        extra: Duration,
    },
    /// Messages between `side` and everyone else are lost (only those from
    /// `side` to the rest when `one_way`).
    Partition {
        /// One side of the split.
        side: Vec<Addr>,
        /// Only traffic leaving `side` is cut.
        one_way: bool,
    },
    /// The node is down: it loses pending timers and every message sent to
    /// it, then restarts.
    Crash {
        /// Which node.
        node: u16,
    },
    /// The node is Byzantine from `start` on.
    Byzantine {
        /// Which node.
        node: u16,
        /// What it does.
        behaviour: Behaviour,
    },
}

/// A fault active from `start` until `end` (`None`: to the end of the run).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// When it begins (virtual time).
    pub start: Duration,
    /// When it heals.
    pub end: Option<Duration>,
    /// What it is.
    pub kind: FaultKind,
}

/// The faults of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Schedule {
    /// In no particular order; windows may overlap.
    pub faults: Vec<Fault>,
}

impl Schedule {
    /// The schedule seed `seed` gives under `cfg`, for a configuration of
    /// `nodes` nodes and `clients` clients tolerating `tolerance`.
    pub fn generate(
        seed: u64,
        cfg: &SimConfig,
        nodes: usize,
        clients: usize,
        tolerance: Tolerance,
    ) -> Schedule {
        let mut rng = Rng::new(seed ^ 0x5eed_fa17_5c4e_d01e);
        let kinds = &cfg.faults;
        let mut menu: Vec<&str> = Vec::new();
        for (on, name) in [
            (kinds.drop, "drop"),
            (kinds.dup, "dup"),
            (kinds.reorder, "reorder"),
            (kinds.delay, "delay"),
            (kinds.partition, "partition"),
            (kinds.crash && tolerance.faulty > 0, "crash"),
            (
                kinds.byzantine && tolerance.byzantine && tolerance.faulty > 0,
                "byzantine",
            ),
        ] {
            if on {
                menu.push(name);
            }
        }
        let mut schedule = Schedule::default();
        if menu.is_empty() {
            return schedule;
        }
        let horizon = cfg.fault_horizon.as_micros().max(10) as u64;
        let ms = |us: u64| Duration::from_micros(us);
        let count = 1 + rng.below(6);
        for _ in 0..count {
            let start = rng.below(horizon * 4 / 5);
            let length = 500 + rng.below(horizon / 3);
            let end = (start + length).min(horizon);
            let kind = match menu[rng.below(menu.len() as u64) as usize] {
                "drop" => FaultKind::Drop {
                    permille: 50 + rng.below(450) as u32,
                },
                "dup" => FaultKind::Duplicate {
                    permille: 50 + rng.below(450) as u32,
                },
                "reorder" => FaultKind::Reorder {
                    jitter: ms(1_000 + rng.below(10_000)),
                },
                "delay" => FaultKind::Delay {
                    permille: 50 + rng.below(300) as u32,
                    extra: ms(5_000 + rng.below(50_000)),
                },
                "partition" => {
                    let everyone: Vec<Addr> = (0..nodes as u16)
                        .map(Addr::Node)
                        .chain((0..clients as u64).map(Addr::Client))
                        .collect();
                    let mut side: Vec<Addr> = everyone
                        .iter()
                        .copied()
                        .filter(|_| rng.chance(0.5))
                        .collect();
                    if side.is_empty() || side.len() == everyone.len() {
                        // A split needs two sides: cut off one node.
                        side = vec![Addr::Node(rng.below(nodes as u64) as u16)];
                    }
                    FaultKind::Partition {
                        side,
                        one_way: rng.chance(0.3),
                    }
                }
                "crash" => {
                    let node = rng.below(nodes as u64) as u16;
                    if !schedule.may_fail(node, start, end, tolerance) {
                        continue;
                    }
                    FaultKind::Crash { node }
                }
                _ => {
                    let node = rng.below(nodes as u64) as u16;
                    if !schedule.may_turn_byzantine(node, tolerance) {
                        continue;
                    }
                    let behaviour = Behaviour::ALL[rng.below(3) as usize];
                    schedule.faults.push(Fault {
                        start: ms(start),
                        end: None,
                        kind: FaultKind::Byzantine { node, behaviour },
                    });
                    continue;
                }
            };
            schedule.faults.push(Fault {
                start: ms(start),
                end: Some(ms(end)),
                kind,
            });
        }
        schedule
    }

    /// Byzantine nodes and crashes, ever, on nodes other than `node`, plus
    /// `node` itself: the most that can be faulty together.
    fn faulty_with(&self, node: u16) -> usize {
        let mut nodes: Vec<u16> = self
            .faults
            .iter()
            .filter_map(|f| match f.kind {
                FaultKind::Crash { node } | FaultKind::Byzantine { node, .. } => Some(node),
                _ => None,
            })
            .collect();
        nodes.push(node);
        nodes.sort_unstable();
        nodes.dedup();
        nodes.len()
    }

    fn may_fail(&self, node: u16, start: u64, end: u64, tolerance: Tolerance) -> bool {
        let overlaps = self.faults.iter().any(|f| {
            matches!(f.kind, FaultKind::Crash { node: n } if n == node)
                && (f.start.as_micros() as u64) < end
                && f.end.is_none_or(|e| (e.as_micros() as u64) > start)
        });
        let byzantine = self
            .faults
            .iter()
            .any(|f| matches!(f.kind, FaultKind::Byzantine { node: n, .. } if n == node));
        !overlaps && !byzantine && self.faulty_with(node) <= tolerance.faulty
    }

    fn may_turn_byzantine(&self, node: u16, tolerance: Tolerance) -> bool {
        let taken = self.faults.iter().any(|f| {
            matches!(f.kind, FaultKind::Crash { node: n } | FaultKind::Byzantine { node: n, .. } if n == node)
        });
        !taken && self.faulty_with(node) <= tolerance.faulty
    }

    /// When the last fault that heals has healed: liveness is judged from
    /// here (Byzantine nodes never heal, and the protocol must live with
    /// them).
    pub fn heal_time(&self) -> Duration {
        self.faults
            .iter()
            .filter_map(|f| f.end)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// This schedule without fault `index`.
    pub fn without(&self, index: usize) -> Schedule {
        let mut faults = self.faults.clone();
        faults.remove(index);
        Schedule { faults }
    }

    /// Whether there are no faults.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Drop { permille } => write!(f, "drop {:.1}%", *permille as f64 / 10.0),
            FaultKind::Duplicate { permille } => {
                write!(f, "duplicate {:.1}%", *permille as f64 / 10.0)
            }
            FaultKind::Reorder { jitter } => write!(f, "reorder jitter {jitter:?}"),
            FaultKind::Delay { permille, extra } => write!(
                f,
                "delay {:.1}% of messages by up to {extra:?}",
                *permille as f64 / 10.0
            ),
            FaultKind::Partition { side, one_way } => {
                let names: Vec<String> = side.iter().map(|a| a.to_string()).collect();
                let arrow = if *one_way { "->|" } else { "<-|->" };
                write!(f, "partition {{{}}} {arrow} rest", names.join(","))
            }
            FaultKind::Crash { node } => write!(f, "crash n{node}"),
            FaultKind::Byzantine { node, behaviour } => {
                write!(f, "byzantine n{node} ({behaviour:?})")
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.faults.is_empty() {
            return writeln!(f, "  (no faults)");
        }
        let mut faults: Vec<&Fault> = self.faults.iter().collect();
        faults.sort_by_key(|x| x.start);
        for fault in faults {
            let end = match fault.end {
                Some(e) => format!("{:.3}ms", e.as_secs_f64() * 1e3),
                None => "end".to_string(),
            };
            writeln!(
                f,
                "  {:>9.3}ms .. {:>9}  {}",
                fault.start.as_secs_f64() * 1e3,
                end,
                fault.kind
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::FaultKinds;

    #[test]
    fn schedules_are_seeded_and_respect_the_tolerance() {
        let cfg = SimConfig {
            faults: FaultKinds::all(),
            ..SimConfig::default()
        };
        let tol = Tolerance {
            faulty: 1,
            byzantine: true,
        };
        let a = Schedule::generate(3, &cfg, 4, 2, tol);
        assert_eq!(a, Schedule::generate(3, &cfg, 4, 2, tol));
        for seed in 0..500 {
            let s = Schedule::generate(seed, &cfg, 4, 2, tol);
            let mut faulty: Vec<u16> = s
                .faults
                .iter()
                .filter_map(|f| match f.kind {
                    FaultKind::Crash { node } | FaultKind::Byzantine { node, .. } => Some(node),
                    _ => None,
                })
                .collect();
            faulty.dedup();
            assert!(faulty.len() <= 1, "seed {seed}: {s}");
            assert!(s
                .faults
                .iter()
                .all(|f| f.end.is_none_or(|e| e <= cfg.fault_horizon)));
        }
        let none = Schedule::generate(3, &cfg, 1, 2, Tolerance::none());
        assert!(none.faults.iter().all(|f| !matches!(
            f.kind,
            FaultKind::Crash { .. } | FaultKind::Byzantine { .. }
        )));
    }
}
