//! The unreplicated protocol in the simulator and the model checker, and
//! a deliberately broken server that proves the checkers can fail.

use super::{Client, Message, Replica};
use crate::actor::{Addr, Context, State, Timer};
use crate::app::{decode_result, App, AppKind, KvOp};
use crate::protocol::common::Lookup;
use crate::sim::{Spec, Tolerance};
use std::time::Duration;

/// Client resend timeout in simulations: a few network round trips.
pub const SIM_RESEND: Duration = Duration::from_millis(5);

/// Every participant of the protocol, as the simulator drives them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The server.
    Replica(Replica),
    /// A client.
    Client(Client),
    /// A broken server that skips the at-most-once client table: it
    /// executes every request it receives, resends and duplicates too.
    Forgetful(Replica),
}

impl State for Actor {
    type Message = Message;

    fn on_start(&mut self, cx: &mut Context<Message>) {
        match self {
            Actor::Replica(r) | Actor::Forgetful(r) => r.on_start(cx),
            Actor::Client(c) => c.on_start(cx),
        }
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Context<Message>) {
        match self {
            Actor::Replica(r) => r.on_message(from, msg, cx),
            Actor::Client(c) => c.on_message(from, msg, cx),
            Actor::Forgetful(r) => forgetful(r, msg, cx),
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Message>) {
        match self {
            Actor::Replica(r) | Actor::Forgetful(r) => r.on_timer(timer, cx),
            Actor::Client(c) => c.on_timer(timer, cx),
        }
    }

    fn on_invoke(&mut self, op: Vec<u8>, cx: &mut Context<Message>) {
        if let Actor::Client(c) = self {
            c.on_invoke(op, cx);
        }
    }
}

/// The bug: a request is executed whenever it is not stale, even when it
/// was executed already.
fn forgetful(r: &mut Replica, msg: Message, cx: &mut Context<Message>) {
    let Message::Request(req) = msg else { return };
    if let Lookup::Stale | Lookup::Full = r.table.lookup(req.client, req.seq) {
        return;
    }
    let result = r.app.execute(&req.op);
    r.executed += 1;
    cx.executed(r.executed, &req.op);
    let reply = super::Reply {
        seq: req.seq,
        result,
    };
    r.table.finish(req.client, req.seq, reply.clone());
    cx.send(Addr::Client(req.client), Message::Reply(reply));
}

/// The simulator's view of the protocol: one key-value server (which may
/// crash and restart with its state, as if on stable storage) and
/// closed-loop clients.
#[derive(Clone, Debug)]
pub struct SimSpec {
    /// Run the broken [`Actor::Forgetful`] server instead.
    pub broken: bool,
    /// Client resend timeout.
    pub resend: Duration,
}

impl SimSpec {
    /// The correct protocol.
    pub fn new() -> Self {
        SimSpec {
            broken: false,
            resend: SIM_RESEND,
        }
    }

    /// The protocol with the broken server.
    pub fn broken() -> Self {
        SimSpec {
            broken: true,
            ..SimSpec::new()
        }
    }
}

impl Default for SimSpec {
    fn default() -> Self {
        Self::new()
    }
}

impl Spec for SimSpec {
    type Actor = Actor;

    fn nodes(&self) -> usize {
        1
    }

    fn tolerance(&self) -> Tolerance {
        // The server may crash: it restarts with its state, and clients
        // resend. A Byzantine server cannot be survived by anyone.
        Tolerance {
            faulty: 1,
            byzantine: false,
        }
    }

    fn node(&self, _id: u16) -> Actor {
        let replica = Replica::new(App::new(AppKind::Kv));
        if self.broken {
            Actor::Forgetful(replica)
        } else {
            Actor::Replica(replica)
        }
    }

    fn client(&self, id: u64) -> Actor {
        Actor::Client(Client::new(id, self.resend))
    }

    fn show(&self, msg: &Message) -> String {
        match msg {
            Message::Request(r) => match bincode::deserialize::<KvOp>(&r.op) {
                Ok(op) => format!("request c{}#{} {op:?}", r.client, r.seq),
                Err(_) => format!("request c{}#{} ({} bytes)", r.client, r.seq, r.op.len()),
            },
            Message::Reply(r) => match decode_result(&r.result) {
                Some(result) => format!("reply #{} {result:?}", r.seq),
                None => format!("reply #{} ({} bytes)", r.seq, r.result.len()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{assert_seeds, simulate, FaultKinds, SimConfig};

    fn config(faults: &str, seeds: u64) -> SimConfig {
        SimConfig {
            seeds,
            faults: faults.parse().unwrap(),
            clients: 5,
            ops: 40,
            keys: 3,
            ..SimConfig::default()
        }
    }

    #[test]
    fn survives_every_fault_kind() {
        for kind in FaultKinds::NAMES {
            let out = assert_seeds(&SimSpec::new(), &config(kind, 100));
            assert!(out.events > 0);
        }
    }

    #[test]
    fn survives_all_faults_together() {
        let out = assert_seeds(&SimSpec::new(), &config("all", 300));
        assert_eq!(out.seeds, 300);
        // More clients than keys, so operations on a key overlap.
        let crowded = SimConfig {
            clients: 20,
            keys: 4,
            ..config("all", 50)
        };
        assert_seeds(&SimSpec::new(), &crowded);
        let byzantine = simulate(&SimSpec::new(), &config("byzantine", 3));
        assert_eq!(byzantine.not_injected, vec!["byzantine"]);
    }

    #[test]
    fn a_seed_replays_event_for_event() {
        let cfg = config("all", 1);
        let spec = SimSpec::new();
        for seed in [3, 17] {
            let schedule =
                crate::sim::Schedule::generate(seed, &cfg, 1, cfg.clients, spec.tolerance());
            let a = crate::sim::run_one(&spec, &cfg, seed, &schedule, 50);
            let b = crate::sim::run_one(&spec, &cfg, seed, &schedule, 50);
            assert_eq!(a.stats, b.stats);
            assert_eq!(a.trace, b.trace);
            assert_eq!(a.virtual_time, b.virtual_time);
        }
    }

    #[test]
    fn the_broken_server_is_caught_and_its_schedule_shrunk() {
        let cfg = SimConfig {
            faults: FaultKinds {
                dup: true,
                reorder: true,
                drop: true,
                ..FaultKinds::default()
            },
            ..config("", 30)
        };
        let out = simulate(&SimSpec::broken(), &cfg);
        assert!(
            !out.failed.is_empty(),
            "the checkers missed a double execution"
        );
        let failure = &out.failed[0];
        assert!(
            failure.violations.iter().any(|v| v.contains("linearizab")),
            "{failure}"
        );
        let shrunk = failure.shrunk.as_ref().unwrap();
        assert!(shrunk.faults.len() <= failure.schedule.faults.len());
        assert!(!failure.trace.is_empty());
        let text = failure.to_string();
        assert!(text.contains("smallest failing schedule") && text.contains("TROUPE_SEED="));
        // The correct server passes the very same seeds.
        assert!(simulate(&SimSpec::new(), &cfg).failed.is_empty());
    }

    /// A seed whose client 0 appends and then reads the one key, so a
    /// double execution shows.
    fn append_then_get_seed() -> u64 {
        use crate::app::KvOp;
        (0..1000)
            .find(|seed| {
                let mut w = crate::sim::Workload::new(*seed, 0, 1);
                matches!((w.next_op(), w.next_op()), (KvOp::Append(..), KvOp::Get(_)))
            })
            .unwrap()
    }

    #[test]
    fn model_checker_passes_the_server_and_finds_the_broken_one() {
        use crate::sim::{model_check, CheckConfig, Search};
        let cfg = CheckConfig {
            clients: 1,
            ops: 2,
            depth: 10,
            seed: append_then_get_seed(),
            ..CheckConfig::default()
        };
        for search in [Search::Bfs, Search::Dfs] {
            let cfg = CheckConfig {
                search,
                ..cfg.clone()
            };
            let good = model_check(&SimSpec::new(), &cfg);
            assert!(good.violations.is_empty(), "{:?}", good.violations);
            assert!(good.exhausted && good.states > 100);
            assert_eq!(good.max_depth, 10);

            let bad = model_check(&SimSpec::broken(), &cfg);
            assert_eq!(bad.violations.len(), 1, "the double append was missed");
            let report = &bad.violations[0];
            assert!(report.contains("linearizability"), "{report}");
            assert!(
                report.contains("c0 timer 0"),
                "the path shows the resend: {report}"
            );
            if search == Search::Bfs {
                // Breadth-first finds a shortest path: invoke, resend,
                // two deliveries, a reply, invoke, request, reply.
                assert!(report.contains("path of 8 steps"), "{report}");
            }
        }
    }

    #[test]
    fn model_checker_with_drops_and_two_clients_stays_safe() {
        use crate::sim::{model_check, CheckConfig};
        let cfg = CheckConfig {
            clients: 2,
            ops: 1,
            depth: 8,
            drops: true,
            ..CheckConfig::default()
        };
        let out = model_check(&SimSpec::new(), &cfg);
        assert!(out.violations.is_empty(), "{:?}", out.violations);
        assert!(out.exhausted);
        let without = model_check(
            &SimSpec::new(),
            &CheckConfig {
                drops: false,
                ..cfg
            },
        );
        assert!(out.states > without.states, "drops add states");
    }
}
