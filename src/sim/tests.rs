//! The simulator's fault machinery, exercised with explicit schedules: every
//! fault has an effect, and the checkers catch the protocols each fault
//! breaks.

use super::*;
use crate::actor::{Addr, Context, State};
use crate::app::{encode_result, App, AppKind, KvResult};
use crate::protocol::unreplicated::sim::SimSpec;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn one(start: u64, end: Option<u64>, kind: FaultKind) -> Schedule {
    Schedule {
        faults: vec![Fault {
            start: ms(start),
            end: end.map(ms),
            kind,
        }],
    }
}

fn cfg() -> SimConfig {
    SimConfig {
        clients: 4,
        ops: 30,
        keys: 2,
        ..SimConfig::default()
    }
}

#[test]
fn network_faults_take_effect_and_the_server_survives_them() {
    let spec = SimSpec::new();
    let calm = run_one(&spec, &cfg(), 9, &Schedule::default(), 0);
    assert!(!calm.failed(), "{:?}", calm.violations);
    assert_eq!(calm.stats.lost + calm.stats.duplicated, 0);
    assert_eq!(calm.ops, (120, 120));

    let lossy = run_one(
        &spec,
        &cfg(),
        9,
        &one(0, Some(20), FaultKind::Drop { permille: 1000 }),
        0,
    );
    assert!(!lossy.failed(), "{:?}", lossy.violations);
    assert!(lossy.stats.lost > 0 && lossy.virtual_time > ms(20));

    let dup = run_one(
        &spec,
        &cfg(),
        9,
        &one(0, Some(20), FaultKind::Duplicate { permille: 1000 }),
        0,
    );
    assert!(!dup.failed() && dup.stats.duplicated > 0);

    // Replies cannot leave the server: requests execute, clients resend.
    let side = vec![Addr::Node(0)];
    let cut = FaultKind::Partition {
        side,
        one_way: true,
    };
    let one_way = run_one(&spec, &cfg(), 9, &one(1, Some(30), cut), 50);
    assert!(!one_way.failed(), "{:?}", one_way.violations);
    assert!(one_way.trace.iter().any(|l| l.contains("FAULT")) || one_way.stats.lost > 0);
    assert!(one_way.stats.lost > 0);

    let crash = run_one(
        &spec,
        &cfg(),
        9,
        &one(1, Some(30), FaultKind::Crash { node: 0 }),
        0,
    );
    assert!(!crash.failed(), "{:?}", crash.violations);
    assert!(crash.stats.lost > 0 && crash.virtual_time > ms(30));
}

/// The unreplicated server, but a crash wipes its memory.
struct Amnesiac(SimSpec);

impl Spec for Amnesiac {
    type Actor = <SimSpec as Spec>::Actor;
    fn nodes(&self) -> usize {
        1
    }
    fn tolerance(&self) -> Tolerance {
        self.0.tolerance()
    }
    fn node(&self, id: u16) -> Self::Actor {
        self.0.node(id)
    }
    fn client(&self, id: u64) -> Self::Actor {
        self.0.client(id)
    }
    fn restart(&self, id: u16, _crashed: Self::Actor) -> Self::Actor {
        self.0.node(id)
    }
}

#[test]
fn a_server_that_forgets_on_restart_loses_writes_and_is_caught() {
    let crash = one(5, Some(8), FaultKind::Crash { node: 0 });
    let spec = Amnesiac(SimSpec::new());
    let failed = (1..20).any(|seed| run_one(&spec, &cfg(), seed, &crash, 0).failed());
    assert!(failed, "lost state after a restart went unnoticed");
}

#[test]
fn liveness_is_judged_after_healing() {
    // A partition that never heals within the bound: clients starve.
    let cfg = SimConfig {
        liveness_bound: ms(500),
        ..cfg()
    };
    let side = vec![Addr::Node(0)];
    let forever = one(
        1,
        Some(10_000),
        FaultKind::Partition {
            side,
            one_way: false,
        },
    );
    let report = run_one(&SimSpec::new(), &cfg, 3, &forever, 0);
    assert!(
        report.violations.iter().any(|v| v.starts_with("liveness")),
        "{:?}",
        report.violations
    );
    // The same partition healing early is fine.
    let side = vec![Addr::Node(0)];
    let brief = one(
        1,
        Some(100),
        FaultKind::Partition {
            side,
            one_way: false,
        },
    );
    assert!(!run_one(&SimSpec::new(), &cfg, 3, &brief, 0).failed());
}

// A three-node service for Byzantine tests: one client sends each
// operation to every node, each node executes it (one client, so all
// execute the same sequence) and replies; the client accepts after
// `quorum` matching replies for its current request.

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Msg {
    Request { seq: u64, op: Vec<u8> },
    Reply { seq: u64, result: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Actor {
    Node {
        app: App,
        done: u64,
    },
    Client {
        seq: u64,
        waiting: bool,
        quorum: usize,
        check_seq: bool,
        votes: Vec<(Addr, Vec<u8>)>,
    },
}

impl State for Actor {
    type Message = Msg;

    fn on_message(&mut self, from: Addr, msg: Msg, cx: &mut Context<Msg>) {
        match (self, msg) {
            (Actor::Node { app, done }, Msg::Request { seq, op }) if seq == *done + 1 => {
                *done = seq;
                cx.executed(seq, &op);
                cx.send(
                    from,
                    Msg::Reply {
                        seq,
                        result: app.execute(&op),
                    },
                );
            }
            (
                Actor::Client {
                    seq,
                    waiting,
                    quorum,
                    check_seq,
                    votes,
                },
                Msg::Reply { seq: s, result },
            ) if *waiting && (s == *seq || !*check_seq) => {
                if votes.iter().any(|(a, _)| *a == from) {
                    return;
                }
                votes.push((from, result.clone()));
                if votes.iter().filter(|(_, r)| *r == result).count() >= *quorum {
                    *waiting = false;
                    votes.clear();
                    cx.complete(result);
                }
            }
            _ => {}
        }
    }

    fn on_invoke(&mut self, op: Vec<u8>, cx: &mut Context<Msg>) {
        if let Actor::Client { seq, waiting, .. } = self {
            *seq += 1;
            *waiting = true;
            cx.send(crate::actor::Addr::Group(0), Msg::Request { seq: *seq, op });
        }
    }
}

struct Trio {
    quorum: usize,
    check_seq: bool,
}

impl Spec for Trio {
    type Actor = Actor;
    fn nodes(&self) -> usize {
        3
    }
    fn tolerance(&self) -> Tolerance {
        Tolerance {
            faulty: 1,
            byzantine: true,
        }
    }
    fn node(&self, _id: u16) -> Actor {
        Actor::Node {
            app: App::new(AppKind::Kv),
            done: 0,
        }
    }
    fn client(&self, _id: u64) -> Actor {
        Actor::Client {
            seq: 0,
            waiting: false,
            quorum: self.quorum,
            check_seq: self.check_seq,
            votes: Vec::new(),
        }
    }
    fn forge(&self, _from: u16, msg: &Msg, _rng: &mut Rng) -> Option<Msg> {
        match msg {
            Msg::Reply { seq, .. } => Some(Msg::Reply {
                seq: *seq,
                result: encode_result(&KvResult::Value(Some("forged".into()))),
            }),
            Msg::Request { .. } => None,
        }
    }
}

fn byzantine(behaviour: Behaviour) -> Schedule {
    one(0, None, FaultKind::Byzantine { node: 2, behaviour })
}

fn trio_fails(spec: &Trio, schedule: &Schedule) -> bool {
    let cfg = SimConfig {
        clients: 1,
        ops: 40,
        keys: 1,
        ..SimConfig::default()
    };
    (1..10).any(|seed| run_one(spec, &cfg, seed, schedule, 0).failed())
}

#[test]
fn an_equivocating_node_fools_a_trusting_client_but_not_a_quorum() {
    let forged = byzantine(Behaviour::Equivocate);
    let trusting = Trio {
        quorum: 1,
        check_seq: true,
    };
    assert!(
        trio_fails(&trusting, &forged),
        "forged replies went unnoticed"
    );
    let careful = Trio {
        quorum: 2,
        check_seq: true,
    };
    assert!(!trio_fails(&careful, &forged));
}

#[test]
fn a_replaying_node_sends_old_messages_that_sequence_numbers_defuse() {
    let cfg = SimConfig {
        clients: 1,
        ops: 40,
        keys: 1,
        ..SimConfig::default()
    };
    let careful = Trio {
        quorum: 2,
        check_seq: true,
    };
    let honest = run_one(&careful, &cfg, 4, &Schedule::default(), 0);
    let replayed = run_one(&careful, &cfg, 4, &byzantine(Behaviour::Replay), 0);
    assert!(
        !honest.failed() && !replayed.failed(),
        "{:?}",
        replayed.violations
    );
    assert!(replayed.stats.tampered > 0);
    assert!(
        replayed.stats.sent > honest.stats.sent,
        "replays are extra sends"
    );
}

#[test]
fn a_silent_node_stalls_a_client_that_waits_for_everyone() {
    let silent = byzantine(Behaviour::Silent);
    assert!(!trio_fails(
        &Trio {
            quorum: 2,
            check_seq: true
        },
        &silent
    ));
    let cfg = SimConfig {
        clients: 1,
        ops: 5,
        liveness_bound: ms(100),
        ..SimConfig::default()
    };
    let report = run_one(
        &Trio {
            quorum: 3,
            check_seq: true,
        },
        &cfg,
        1,
        &silent,
        0,
    );
    assert!(report.violations.iter().any(|v| v.starts_with("liveness")));
    assert!(report.stats.tampered > 0);
}

// A protocol without key-value clients: nodes 1.. pull a value from node
// 0, asking again every millisecond (or, broken, only once), and the run
// lasts until every node has it.

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Pull {
    Ask,
    Value(u64),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Puller {
    id: u16,
    value: Option<u64>,
    retry: bool,
}

const ASK_AGAIN: crate::actor::Timer = crate::actor::Timer(1);

impl State for Puller {
    type Message = Pull;

    fn on_start(&mut self, cx: &mut Context<Pull>) {
        if self.value.is_none() {
            cx.send(Addr::Node(0), Pull::Ask);
            if self.retry {
                cx.set_timer(ASK_AGAIN, ms(1));
            }
        }
    }

    fn on_message(&mut self, from: Addr, msg: Pull, cx: &mut Context<Pull>) {
        match msg {
            Pull::Ask => {
                if let Some(v) = self.value {
                    cx.send(from, Pull::Value(v));
                }
            }
            Pull::Value(v) => {
                self.value = Some(v);
                cx.cancel_timer(ASK_AGAIN);
            }
        }
    }

    fn on_timer(&mut self, _timer: crate::actor::Timer, cx: &mut Context<Pull>) {
        self.on_start(cx);
    }
}

struct Spread {
    retry: bool,
}

impl Spec for Spread {
    type Actor = Puller;
    fn nodes(&self) -> usize {
        4
    }
    fn tolerance(&self) -> Tolerance {
        Tolerance::none()
    }
    fn node(&self, id: u16) -> Puller {
        Puller {
            id,
            value: (id == 0).then_some(42),
            retry: self.retry,
        }
    }
    fn client(&self, id: u64) -> Puller {
        Puller {
            id: 1000 + id as u16,
            value: Some(0),
            retry: false,
        }
    }
    fn finished(&self, actors: &[Puller]) -> bool {
        actors.iter().all(|p| p.value.is_some())
    }
    fn check_end(&self, actors: &[Puller]) -> Result<(), String> {
        match actors.iter().find(|p| p.value != Some(42)) {
            Some(p) => Err(format!("n{} ended with {:?}", p.id, p.value)),
            None => Ok(()),
        }
    }
}

#[test]
fn protocols_without_clients_run_until_finished_and_are_checked_at_the_end() {
    let cfg = SimConfig {
        clients: 0,
        ops: 0,
        seeds: 40,
        faults: "drop,partition,delay".parse().unwrap(),
        liveness_bound: ms(200),
        ..SimConfig::default()
    };
    let out = simulate(&Spread { retry: true }, &cfg);
    assert!(out.failed.is_empty(), "{}", out.failed[0]);
    assert!(out.events > 40 * 4);
    // Asking once is not enough when messages get lost.
    let out = simulate(&Spread { retry: false }, &cfg);
    assert!(!out.failed.is_empty());
    assert!(
        out.failed[0].violations[0].starts_with("liveness"),
        "{}",
        out.failed[0]
    );
}
