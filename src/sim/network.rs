//! The simulated network as the active faults make it.

use super::config::Delay;
use super::faults::{FaultKind, Schedule};
use crate::actor::{Addr, Rng};

/// Loss, duplication, delay and partitions in force right now, combined
/// from every active fault window.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    drop: f64,
    dup: f64,
    jitter: u64,
    delay_p: f64,
    delay_extra: u64,
    /// Active partitions: which actor slots are on the cut-off side, and
    /// whether only traffic leaving that side is cut.
    partitions: Vec<(Vec<bool>, bool)>,
}

impl Conditions {
    /// The conditions while the faults marked in `active` are on, for
    /// `slots` actors (`slot_of` maps addresses to them). Overlapping
    /// losses compound; jitter and delays take the largest.
    pub fn of(
        schedule: &Schedule,
        active: &[bool],
        slots: usize,
        slot_of: impl Fn(Addr) -> Option<u32>,
    ) -> Self {
        let mut c = Conditions::default();
        let (mut keep, mut single) = (1.0, 1.0);
        for (fault, _) in schedule.faults.iter().zip(active).filter(|(_, on)| **on) {
            match &fault.kind {
                FaultKind::Drop { permille } => keep *= 1.0 - *permille as f64 / 1000.0,
                FaultKind::Duplicate { permille } => single *= 1.0 - *permille as f64 / 1000.0,
                FaultKind::Reorder { jitter } => c.jitter = c.jitter.max(jitter.as_nanos() as u64),
                FaultKind::Delay { permille, extra } => {
                    c.delay_p = c.delay_p.max(*permille as f64 / 1000.0);
                    c.delay_extra = c.delay_extra.max(extra.as_nanos() as u64);
                }
                FaultKind::Partition { side, one_way } => {
                    let mut cut = vec![false; slots];
                    for s in side.iter().filter_map(|a| slot_of(*a)) {
                        cut[s as usize] = true;
                    }
                    c.partitions.push((cut, *one_way));
                }
                FaultKind::Crash { .. } | FaultKind::Byzantine { .. } => {}
            }
        }
        c.drop = 1.0 - keep;
        c.dup = 1.0 - single;
        c
    }

    /// Whether the next message is lost.
    pub fn lose(&self, rng: &mut Rng) -> bool {
        self.drop > 0.0 && rng.chance(self.drop)
    }

    /// Whether the next message is delivered twice.
    pub fn duplicate(&self, rng: &mut Rng) -> bool {
        self.dup > 0.0 && rng.chance(self.dup)
    }

    /// The next message's delay in ns: `base`, plus jitter and held-back
    /// time while those faults are on.
    pub fn delay(&self, base: &Delay, rng: &mut Rng) -> u64 {
        let mut d = base.sample(rng);
        if self.jitter > 0 {
            d += rng.below(self.jitter);
        }
        if self.delay_p > 0.0 && rng.chance(self.delay_p) {
            d += rng.below(self.delay_extra.max(1));
        }
        d
    }

    /// Whether a partition cuts slot `from` off from slot `to`.
    pub fn cut(&self, from: u32, to: u32) -> bool {
        self.partitions.iter().any(|(side, one_way)| {
            let (a, b) = (side[from as usize], side[to as usize]);
            a != b && (!one_way || a)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Fault;
    use std::time::Duration;

    #[test]
    fn losses_compound_and_partitions_cut_the_right_way() {
        let window = |kind| Fault {
            start: Duration::ZERO,
            end: None,
            kind,
        };
        let schedule = Schedule {
            faults: vec![
                window(FaultKind::Drop { permille: 500 }),
                window(FaultKind::Drop { permille: 500 }),
                window(FaultKind::Partition {
                    side: vec![Addr::Node(0)],
                    one_way: true,
                }),
            ],
        };
        let slot_of = |a: Addr| match a {
            Addr::Node(n) => Some(n as u32),
            _ => None,
        };
        let c = Conditions::of(&schedule, &[true, true, true], 3, slot_of);
        assert!((c.drop - 0.75).abs() < 1e-9);
        assert!(c.cut(0, 1) && !c.cut(1, 0) && !c.cut(1, 2));
        let calm = Conditions::of(&schedule, &[false, false, false], 3, slot_of);
        let mut rng = Rng::new(1);
        assert!(!calm.lose(&mut rng) && !calm.duplicate(&mut rng) && !calm.cut(0, 1));
        let base = Delay::Constant(Duration::from_micros(100));
        assert_eq!(calm.delay(&base, &mut rng), 100_000);
    }
}
