//! PBFT in the simulator and the model checker: replicas and clients as
//! one actor enum, timeouts scaled to the simulated network, and what an
//! equivocating replica sends instead of the truth.

use super::{batch_digest, Client, Config, Replica};
use crate::actor::{Addr, Context, Rng, State, Timer};
use crate::app::{App, AppKind};
use crate::sim::{Spec, Tolerance};
use std::time::Duration;
use troupe_message::pbft::{Message, Phase};

/// Every participant of PBFT, as the simulator drives them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A replica.
    Replica(Box<Replica>),
    /// A client.
    Client(Client),
}

impl State for Actor {
    type Message = Message;

    fn on_start(&mut self, cx: &mut Context<Message>) {
        match self {
            Actor::Replica(r) => r.on_start(cx),
            Actor::Client(c) => c.on_start(cx),
        }
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Context<Message>) {
        match self {
            Actor::Replica(r) => r.on_message(from, msg, cx),
            Actor::Client(c) => c.on_message(from, msg, cx),
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Message>) {
        match self {
            Actor::Replica(r) => r.on_timer(timer, cx),
            Actor::Client(c) => c.on_timer(timer, cx),
        }
    }

    fn on_invoke(&mut self, op: Vec<u8>, cx: &mut Context<Message>) {
        if let Actor::Client(c) = self {
            c.on_invoke(op, cx);
        }
    }
}

/// The simulator's view of PBFT: 3f+1 key-value replicas (a crashed one
/// restarts with its state, as if logged) and closed-loop clients.
#[derive(Clone, Debug)]
pub struct SimSpec {
    /// The replicas' knobs.
    pub config: Config,
    /// Client resend timeout.
    pub resend: Duration,
}

impl SimSpec {
    /// `3f+1` replicas with small batches and windows, frequent
    /// checkpoints, and timeouts of a few simulated round trips.
    pub fn new(f: usize) -> Self {
        let n = 3 * f.max(1) + 1;
        SimSpec {
            config: Config {
                max_batch: 4,
                window: 4,
                checkpoint_period: 4,
                view_change_timeout: Duration::from_millis(10),
                ..Config::new(n)
            },
            resend: Duration::from_millis(5),
        }
    }
}

impl Spec for SimSpec {
    type Actor = Actor;

    fn nodes(&self) -> usize {
        self.config.n
    }

    fn tolerance(&self) -> Tolerance {
        Tolerance {
            faulty: self.config.f,
            byzantine: true,
        }
    }

    fn node(&self, id: u16) -> Actor {
        Actor::Replica(Box::new(Replica::new(
            id,
            App::new(AppKind::Kv),
            self.config.clone(),
        )))
    }

    fn client(&self, id: u64) -> Actor {
        Actor::Client(Client::new(id, self.config.n, self.config.f, self.resend))
    }

    /// Proposals of another batch for the same number, votes and
    /// checkpoints for another digest: what a lying replica can sign.
    fn forge(&self, from: u16, msg: &Message, rng: &mut Rng) -> Option<Message> {
        let mut msg = msg.clone();
        let other = |rng: &mut Rng| {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
            d
        };
        match &mut msg {
            Message::PrePrepare(pp) if pp.proposal.body.replica == from => {
                if pp.batch.len() > 1 && rng.chance(0.5) {
                    pp.batch.reverse();
                } else {
                    pp.batch.pop();
                }
                pp.proposal.body.digest = batch_digest(&pp.batch);
            }
            Message::Vote(v) if v.body.replica == from => {
                v.body.digest = other(rng);
                if rng.chance(0.2) {
                    v.body.phase = match v.body.phase {
                        Phase::Prepare => Phase::Commit,
                        Phase::Commit => Phase::Prepare,
                    };
                }
            }
            Message::Checkpoint(c) if c.body.replica == from => c.body.digest = other(rng),
            Message::Reply(r) if r.replica == from => r.result = b"forged".to_vec(),
            _ => return None,
        }
        Some(msg)
    }

    fn invariant(&self, actors: &[Actor]) -> Result<(), String> {
        let replicas: Vec<&Replica> = actors
            .iter()
            .filter_map(|a| match a {
                Actor::Replica(r) => Some(&**r),
                Actor::Client(_) => None,
            })
            .collect();
        let top = replicas
            .iter()
            .map(|r| r.last_executed())
            .max()
            .unwrap_or(0);
        for seq in 1..=top + self.config.log_window() {
            let mut decided = replicas.iter().filter_map(|r| r.decided(seq));
            if let Some(first) = decided.next() {
                if decided.any(|d| d != first) {
                    return Err(format!("replicas decided different batches at {seq}"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{
        assert_seeds, model_check, run_one, Behaviour, CheckConfig, Fault, FaultKind, FaultKinds,
        Schedule, SimConfig,
    };

    fn config(faults: &str, seeds: u64) -> SimConfig {
        SimConfig {
            seeds,
            faults: faults.parse().unwrap(),
            clients: 4,
            ops: 30,
            keys: 3,
            ..SimConfig::default()
        }
    }

    #[test]
    fn survives_every_fault_kind() {
        for kind in FaultKinds::NAMES {
            assert_seeds(&SimSpec::new(1), &config(kind, 40));
        }
    }

    #[test]
    fn survives_all_faults_together() {
        let out = assert_seeds(&SimSpec::new(1), &config("all", 200));
        assert_eq!(out.seeds, 200);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs a few seeds of one hand-written schedule; every checker must
    /// pass (liveness once faults heal, linearizability, agreement).
    fn survives(schedule: Schedule, ops: usize) {
        let cfg = SimConfig {
            ops,
            ..config("", 1)
        };
        for seed in 1..=5 {
            let report = run_one(&SimSpec::new(1), &cfg, seed, &schedule, 30);
            assert!(
                !report.failed(),
                "seed {seed}: {:?}\n{}",
                report.violations,
                report.trace.join("\n")
            );
            assert_eq!(report.ops.0, report.ops.1, "every operation completed");
        }
    }

    fn fault(start: u64, end: Option<u64>, kind: FaultKind) -> Fault {
        Fault {
            start: ms(start),
            end: end.map(ms),
            kind,
        }
    }

    #[test]
    fn a_crashed_primary_is_replaced_and_clients_finish() {
        // The primary of view 0 never comes back: only a view change lets
        // the clients finish.
        survives(
            Schedule {
                faults: vec![fault(2, None, FaultKind::Crash { node: 0 })],
            },
            30,
        );
    }

    #[test]
    fn an_equivocating_primary_splits_no_honest_replicas() {
        survives(
            Schedule {
                faults: vec![fault(
                    0,
                    None,
                    FaultKind::Byzantine {
                        node: 0,
                        behaviour: Behaviour::Equivocate,
                    },
                )],
            },
            30,
        );
    }

    #[test]
    fn a_silent_backup_changes_nothing_for_clients() {
        survives(
            Schedule {
                faults: vec![fault(
                    0,
                    None,
                    FaultKind::Byzantine {
                        node: 2,
                        behaviour: Behaviour::Silent,
                    },
                )],
            },
            30,
        );
    }

    #[test]
    fn a_partitioned_replica_rejoins_and_is_needed() {
        // Replica 3 misses several checkpoints; then the primary crashes
        // for good, so the clients can only finish if replica 3 caught up
        // (by state transfer) and takes part in the view change and after.
        survives(
            Schedule {
                faults: vec![
                    fault(
                        0,
                        Some(40),
                        FaultKind::Partition {
                            side: vec![Addr::Node(3)],
                            one_way: false,
                        },
                    ),
                    fault(60, None, FaultKind::Crash { node: 0 }),
                ],
            },
            150,
        );
    }

    #[test]
    fn model_checker_finds_no_disagreement_in_a_tiny_configuration() {
        let cfg = CheckConfig {
            clients: 1,
            ops: 1,
            depth: 7,
            ..CheckConfig::default()
        };
        let out = model_check(&SimSpec::new(1), &cfg);
        assert!(out.violations.is_empty(), "{:?}", out.violations);
        assert!(out.exhausted && out.states > 1000, "{}", out.summary());
    }
}
