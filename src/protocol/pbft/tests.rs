//! Unit tests that look inside the replicas (log truncation, checkpoint
//! and state-transfer counters, memory bounds under hostile input), on a
//! small in-memory network: every message delivered in order unless a
//! test cuts it, timers fired in virtual time when nothing else is left.
//! Behaviour under faults, with the checkers, is tested in the simulator
//! (`sim.rs`).

use super::*;
use crate::actor::{Context, Effect, State, Timer};
use crate::app::{AppKind, OpSource};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use troupe_message::app::Workload;

struct Net {
    replicas: Vec<Replica>,
    rcx: Vec<Context<Message>>,
    clients: Vec<Client>,
    ccx: Vec<Context<Message>>,
    sources: Vec<OpSource>,
    remaining: Vec<u32>,
    queue: VecDeque<(Addr, Addr, Message)>,
    timers: BTreeMap<(Addr, Timer), Duration>,
    now: Duration,
    completed: u64,
    wrong: u64,
    cut: BTreeSet<u16>,
}

impl Net {
    fn new(n: usize, clients: u64, ops: u32, cfg: Config) -> Self {
        let workload = Workload::Kv {
            keys: 2,
            read_ratio: 0.3,
            value_size: 4,
        };
        let mut net = Net {
            replicas: (0..n as u16)
                .map(|i| Replica::new(i, App::new(AppKind::Kv), cfg.clone()))
                .collect(),
            rcx: (0..n as u16)
                .map(|i| Context::new(Addr::Node(i), i as u64))
                .collect(),
            clients: (0..clients)
                .map(|c| Client::new(c, n, cfg.f, Duration::from_millis(50)))
                .collect(),
            ccx: (0..clients)
                .map(|c| Context::new(Addr::Client(c), 100 + c))
                .collect(),
            sources: (0..clients)
                .map(|c| OpSource::new(workload.clone(), c, 5))
                .collect(),
            remaining: vec![ops; clients as usize],
            queue: VecDeque::new(),
            timers: BTreeMap::new(),
            now: Duration::ZERO,
            completed: 0,
            wrong: 0,
            cut: BTreeSet::new(),
        };
        for c in 0..clients as usize {
            net.invoke(c);
        }
        net
    }

    fn invoke(&mut self, c: usize) {
        if self.remaining[c] == 0 {
            return;
        }
        self.remaining[c] -= 1;
        let op = self.sources[c].next_op();
        self.ccx[c].set_now(self.now);
        self.clients[c].on_invoke(op, &mut self.ccx[c]);
        self.drain(Addr::Client(c as u64));
    }

    fn drain(&mut self, who: Addr) {
        let effects: Vec<Effect<Message>> = match who {
            Addr::Node(i) => self.rcx[i as usize].drain().collect(),
            Addr::Client(c) => self.ccx[c as usize].drain().collect(),
            Addr::Group(_) => Vec::new(),
        };
        for e in effects {
            match e {
                Effect::Send {
                    to: Addr::Group(_),
                    msg,
                } => {
                    for i in 0..self.replicas.len() as u16 {
                        if Addr::Node(i) != who {
                            self.queue.push_back((who, Addr::Node(i), msg.clone()));
                        }
                    }
                }
                Effect::Send { to, msg } => self.queue.push_back((who, to, msg)),
                Effect::SetTimer { timer, after } => {
                    self.timers.insert((who, timer), self.now + after);
                }
                Effect::CancelTimer(timer) => {
                    self.timers.remove(&(who, timer));
                }
                Effect::Complete(result) => {
                    let Addr::Client(c) = who else { continue };
                    self.completed += 1;
                    if !self.sources[c as usize].check(&result) {
                        self.wrong += 1;
                    }
                    self.invoke(c as usize);
                }
            }
        }
    }

    fn deliver(&mut self, from: Addr, to: Addr, msg: Message) {
        let node_cut = |a: Addr| matches!(a, Addr::Node(i) if self.cut.contains(&i));
        if node_cut(from) || node_cut(to) {
            return;
        }
        match to {
            Addr::Node(i) => {
                let i = i as usize;
                self.rcx[i].set_now(self.now);
                self.replicas[i].on_message(from, msg, &mut self.rcx[i]);
            }
            Addr::Client(c) => {
                let c = c as usize;
                self.ccx[c].set_now(self.now);
                self.clients[c].on_message(from, msg, &mut self.ccx[c]);
            }
            Addr::Group(_) => {}
        }
        self.drain(to);
    }

    /// Runs until `done` holds or `limit` of virtual time passes; returns
    /// whether `done` held.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if let Some((from, to, msg)) = self.queue.pop_front() {
                self.deliver(from, to, msg);
                continue;
            }
            let Some((&(who, timer), &at)) = self.timers.iter().min_by_key(|(_, at)| **at) else {
                return false;
            };
            if at > limit {
                return false;
            }
            self.timers.remove(&(who, timer));
            self.now = self.now.max(at);
            match who {
                Addr::Node(i) if !self.cut.contains(&i) => {
                    let i = i as usize;
                    self.rcx[i].set_now(self.now);
                    self.replicas[i].on_timer(timer, &mut self.rcx[i]);
                }
                Addr::Client(c) => {
                    let c = c as usize;
                    self.ccx[c].set_now(self.now);
                    self.clients[c].on_timer(timer, &mut self.ccx[c]);
                }
                _ => continue,
            }
            self.drain(who);
        }
    }

    fn all_done(&self) -> bool {
        self.remaining.iter().all(|r| *r == 0) && self.clients.iter().all(|c| !c.busy())
    }

    /// No two replicas outside `faulty` decided different batches at one
    /// sequence number.
    fn assert_agreement(&self, faulty: &[u16]) {
        let honest: Vec<&Replica> = self
            .replicas
            .iter()
            .filter(|r| !faulty.contains(&r.id))
            .collect();
        let top = honest.iter().map(|r| r.last_executed()).max().unwrap_or(0);
        for seq in 1..=top + 64 {
            let decided: BTreeSet<_> = honest.iter().filter_map(|r| r.decided(seq)).collect();
            assert!(decided.len() <= 1, "replicas decided differently at {seq}");
        }
    }
}

fn config(batch: usize) -> Config {
    Config {
        max_batch: batch,
        window: 4,
        checkpoint_period: 4,
        view_change_timeout: Duration::from_millis(200),
        ..Config::new(4)
    }
}

#[test]
fn normal_case_executes_everything_once_and_truncates_the_log() {
    let mut net = Net::new(4, 6, 40, config(3));
    assert!(net.run_until(Duration::from_secs(5), Net::all_done));
    assert_eq!(net.completed, 240);
    assert_eq!(net.wrong, 0, "every result checks");
    let exec: Vec<u64> = net.replicas.iter().map(|r| r.executed()).collect();
    assert!(
        exec.iter().all(|e| *e == 240),
        "executed once each: {exec:?}"
    );
    let apps: Vec<_> = net.replicas.iter().map(|r| r.app().clone()).collect();
    assert!(apps.windows(2).all(|w| w[0] == w[1]));
    for r in &net.replicas {
        assert_eq!(r.view(), 0);
        assert!(r.stable_checkpoint() > 0, "checkpoints became stable");
        assert!(r.log_len() as u64 <= r.cfg.log_window(), "log truncated");
        assert_eq!(r.counters.rejected, 0);
    }
    // Batching happened: fewer sequence numbers than operations.
    assert!(net.replicas[0].last_executed() < 240);
    net.assert_agreement(&[]);
}

#[test]
fn a_partitioned_replica_catches_up_by_state_transfer() {
    let mut net = Net::new(4, 4, 60, config(2));
    net.cut.insert(3);
    assert!(net.run_until(Duration::from_secs(10), |n| n.completed >= 120));
    assert_eq!(net.replicas[3].last_executed(), 0);
    net.cut.clear();
    assert!(net.run_until(Duration::from_secs(20), Net::all_done));
    // Let the stragglers' fetches finish once clients are done.
    net.run_until(Duration::from_secs(25), |_| false);
    let r3 = &net.replicas[3];
    assert!(r3.counters.state_transfers >= 1, "{:?}", r3.counters);
    assert_eq!(r3.last_executed(), net.replicas[0].last_executed());
    assert_eq!(r3.app(), net.replicas[0].app());
    net.assert_agreement(&[]);
    // It is a full member again: with the primary gone, it is needed.
    let mut more = Net {
        remaining: vec![10; 4],
        ..net
    };
    more.cut.insert(0);
    for c in 0..4 {
        more.invoke(c);
    }
    assert!(more.run_until(Duration::from_secs(60), Net::all_done));
    assert_eq!(more.wrong, 0);
    more.assert_agreement(&[0]);
}

/// Random, mostly wrong messages of every kind, as a Byzantine replica or
/// a buggy peer could send (signatures are the codec's business; this
/// is about what is left: views, numbers, quorums, certificates).
fn junk(rng: &mut crate::actor::Rng, author: Option<u16>) -> Message {
    use troupe_message::pbft::*;
    let num = |rng: &mut crate::actor::Rng| match rng.below(4) {
        0 => u64::MAX - rng.below(3),
        _ => rng.below(40),
    };
    let digest = |rng: &mut crate::actor::Rng| [rng.below(3) as u8; 32];
    let replica = |rng: &mut crate::actor::Rng| author.unwrap_or(rng.below(6) as u16);
    let vote = |rng: &mut crate::actor::Rng| {
        Signed::new(Vote {
            phase: if rng.chance(0.5) {
                Phase::Prepare
            } else {
                Phase::Commit
            },
            view: num(rng),
            seq: num(rng),
            digest: digest(rng),
            replica: replica(rng),
        })
    };
    let proposal = |rng: &mut crate::actor::Rng| {
        Signed::new(Proposal {
            view: num(rng),
            seq: num(rng),
            digest: digest(rng),
            replica: replica(rng),
        })
    };
    let checkpoint = |rng: &mut crate::actor::Rng| {
        Signed::new(Checkpoint {
            seq: num(rng) * 4,
            digest: digest(rng),
            replica: replica(rng),
        })
    };
    let request = |rng: &mut crate::actor::Rng| Request {
        client: rng.below(4),
        seq: num(rng),
        op: vec![rng.below(256) as u8; rng.below(4) as usize],
        auth: Auth::None,
    };
    let view_change = |rng: &mut crate::actor::Rng| {
        Signed::new(ViewChange {
            view: num(rng),
            stable: num(rng),
            stable_digest: digest(rng),
            proof: (0..rng.below(4)).map(|_| checkpoint(rng)).collect(),
            prepared: (0..rng.below(3))
                .map(|_| Prepared {
                    proposal: proposal(rng),
                    prepares: (0..rng.below(4)).map(|_| vote(rng)).collect(),
                })
                .collect(),
            replica: replica(rng),
        })
    };
    match rng.below(10) {
        0 => Message::Request(request(rng)),
        1 => Message::PrePrepare(PrePrepare {
            proposal: proposal(rng),
            batch: (0..rng.below(3)).map(|_| request(rng)).collect(),
        }),
        2 => Message::Vote(vote(rng)),
        3 => Message::Checkpoint(checkpoint(rng)),
        4 => Message::ViewChange(view_change(rng)),
        5 => Message::NewView(Signed::new(NewView {
            view: num(rng),
            view_changes: (0..rng.below(4)).map(|_| view_change(rng)).collect(),
            proposals: (0..rng.below(3)).map(|_| proposal(rng)).collect(),
            replica: replica(rng),
        })),
        6 => Message::Fetch {
            executed: num(rng),
            batches: vec![digest(rng)],
            replica: replica(rng),
        },
        7 => Message::Committed(Committed {
            commits: (0..rng.below(4)).map(|_| vote(rng)).collect(),
            batch: vec![],
        }),
        8 => Message::State(StateChunk {
            proof: (0..rng.below(4)).map(|_| checkpoint(rng)).collect(),
            index: rng.below(3) as u32,
            total: rng.below(3) as u32,
            bytes: vec![1; rng.below(8) as usize],
        }),
        _ => Message::Batch(vec![request(rng)]),
    }
}

#[test]
fn hostile_messages_never_panic_and_memory_stays_bounded() {
    let mut net = Net::new(4, 3, 10, config(2));
    let mut rng = crate::actor::Rng::new(11);
    // Replica 3 gets junk that claims any author (the codec would drop
    // most of it for its signatures; the core must survive it anyway).
    // Replicas 0..2 get junk that replica 3 signed itself.
    for round in 0..30_000u32 {
        let to = rng.below(4) as usize;
        let (from, msg) = if to == 3 {
            (Addr::Node(rng.below(5) as u16), junk(&mut rng, None))
        } else {
            (Addr::Node(3), junk(&mut rng, Some(3)))
        };
        net.rcx[to].set_now(net.now);
        net.replicas[to].on_message(from, msg, &mut net.rcx[to]);
        net.rcx[to].drain().for_each(drop);
        if round % 500 == 0 {
            let timer = super::replica::FETCH_TIMER;
            net.replicas[to].on_timer(timer, &mut net.rcx[to]);
            net.rcx[to].drain().for_each(drop);
        }
    }
    for r in &net.replicas {
        assert!(
            r.log.len() as u64 <= r.cfg.log_window() + 1,
            "log {}",
            r.log.len()
        );
        assert!(r.checkpoints.len() <= 17, "slots {}", r.checkpoints.len());
        assert!(r.view_changes.len() <= 6);
        assert!(r.counters.rejected > 0, "junk was noticed");
    }
    // The honest replicas still serve, without replica 3.
    net.cut.insert(3);
    assert!(net.run_until(Duration::from_secs(60), Net::all_done));
    assert_eq!(net.wrong, 0);
    net.assert_agreement(&[3]);
}
