//! The coordinator and member states on a deterministic, seeded network
//! that drops, duplicates, delays and reorders datagrams, in virtual time.

use super::*;
use crate::actor::{Addr, Context, Rng, State, Timer};
use crate::runtime::Driven;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

enum Peer {
    Coordinator(CoordinatorState),
    Member(MemberState),
}

enum Event {
    Deliver(Addr, Addr, Message),
    Timer(Addr, Timer, u64),
}

#[derive(Clone, Copy)]
struct Faults {
    drop: f64,
    dup: f64,
    /// Delay drawn from 0..jitter microseconds (so later datagrams can
    /// overtake earlier ones).
    jitter: u64,
}

struct Net {
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    peers: BTreeMap<Addr, (Peer, Context<Message>)>,
    timers: BTreeMap<(Addr, Timer), u64>,
    crashed: Vec<Addr>,
    rng: Rng,
    faults: Faults,
    coordinator_events: Vec<CoordinatorEvent>,
    member_events: BTreeMap<Addr, Vec<MemberEvent>>,
    max_held: usize,
}

fn params() -> Params {
    Params {
        datagram_size: 300,
        window: 16,
        recv_buffer: 4000,
        ..Params::default()
    }
}

impl Net {
    fn new(seed: u64, faults: Faults) -> Self {
        let mut net = Net {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            peers: BTreeMap::new(),
            timers: BTreeMap::new(),
            crashed: Vec::new(),
            rng: Rng::new(seed),
            faults,
            coordinator_events: Vec::new(),
            member_events: BTreeMap::new(),
            max_held: 0,
        };
        let c = CoordinatorState::new(params(), (0, 0));
        net.add(COORDINATOR, Peer::Coordinator(c));
        net
    }

    fn add(&mut self, addr: Addr, peer: Peer) {
        let cx = Context::new(addr, self.rng.next_u64());
        self.peers.insert(addr, (peer, cx));
        self.step(addr, |p, cx| match p {
            Peer::Coordinator(s) => s.on_start(cx),
            Peer::Member(s) => s.on_start(cx),
        });
    }

    fn add_member(&mut self, id: u64) -> Addr {
        let addr = Addr::Client(id);
        self.add(addr, Peer::Member(MemberState::new(params())));
        addr
    }

    fn schedule(&mut self, after: u64, event: Event) {
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((self.now + after, self.seq)));
    }

    /// Runs a handler of `addr`, then carries out its effects.
    fn step(&mut self, addr: Addr, f: impl FnOnce(&mut Peer, &mut Context<Message>)) {
        let now = Duration::from_micros(self.now);
        let Some((peer, cx)) = self.peers.get_mut(&addr) else {
            return;
        };
        cx.set_now(now);
        f(peer, cx);
        let effects: Vec<_> = cx.drain().collect();
        match peer {
            Peer::Coordinator(s) => {
                s.drain_events(&mut self.coordinator_events);
                for g in 0..4 {
                    let held = s.unacknowledged(g).unwrap_or(0);
                    self.max_held = self.max_held.max(held);
                }
            }
            Peer::Member(s) => s.drain_events(self.member_events.entry(addr).or_default()),
        }
        for effect in effects {
            match effect {
                crate::actor::Effect::Send { to, msg } => {
                    let targets: Vec<Addr> = match to {
                        Addr::Group(_) => self
                            .peers
                            .keys()
                            .copied()
                            .filter(|a| *a != COORDINATOR)
                            .collect(),
                        _ => vec![to],
                    };
                    for target in targets {
                        if self.rng.chance(self.faults.drop) {
                            continue;
                        }
                        let copies = 1 + usize::from(self.rng.chance(self.faults.dup));
                        for _ in 0..copies {
                            let delay = 10 + self.rng.below(self.faults.jitter.max(1));
                            self.schedule(delay, Event::Deliver(addr, target, msg.clone()));
                        }
                    }
                }
                crate::actor::Effect::SetTimer { timer, after } => {
                    self.seq += 1;
                    let generation = self.seq;
                    self.timers.insert((addr, timer), generation);
                    self.schedule(
                        after.as_micros() as u64,
                        Event::Timer(addr, timer, generation),
                    );
                }
                crate::actor::Effect::CancelTimer(timer) => {
                    self.timers.remove(&(addr, timer));
                }
                _ => {}
            }
        }
    }

    fn coordinator(&mut self, command: CoordinatorCommand) {
        self.step(COORDINATOR, |p, cx| {
            if let Peer::Coordinator(s) = p {
                s.on_command(command, cx)
            }
        });
    }

    fn member(&mut self, addr: Addr, command: MemberCommand) {
        self.step(addr, |p, cx| {
            if let Peer::Member(s) = p {
                s.on_command(command, cx)
            }
        });
    }

    /// Runs events until `done` holds; false if virtual `limit` passes.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + limit.as_micros() as u64;
        while !done(self) {
            let Some(&Reverse((at, seq))) = self.queue.peek() else {
                return false;
            };
            if at > end {
                self.now = end;
                return false;
            }
            self.queue.pop();
            self.now = at;
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            match event {
                Event::Deliver(from, to, msg) => {
                    if self.crashed.contains(&to) {
                        continue;
                    }
                    self.step(to, |p, cx| match p {
                        Peer::Coordinator(s) => s.on_message(from, msg, cx),
                        Peer::Member(s) => s.on_message(from, msg, cx),
                    });
                }
                Event::Timer(addr, timer, generation) => {
                    if self.crashed.contains(&addr)
                        || self.timers.get(&(addr, timer)) != Some(&generation)
                    {
                        continue;
                    }
                    self.timers.remove(&(addr, timer));
                    self.step(addr, |p, cx| match p {
                        Peer::Coordinator(s) => s.on_timer(timer, cx),
                        Peer::Member(s) => s.on_timer(timer, cx),
                    });
                }
            }
        }
        true
    }

    fn take_done(&mut self, group: u16) -> bool {
        let at = self
            .coordinator_events
            .iter()
            .position(|e| *e == CoordinatorEvent::Done { group });
        at.map(|i| self.coordinator_events.remove(i)).is_some()
    }

    fn joined_group(&self, member: Addr, group: u16) -> bool {
        self.member_events.get(&member).is_some_and(|es| {
            es.iter()
                .any(|e| matches!(e, MemberEvent::GroupJoined { group: g, result: Ok(_) } if *g == group))
        })
    }

    fn messages(&self, member: Addr, group: u16) -> Vec<Vec<u8>> {
        self.member_events
            .get(&member)
            .into_iter()
            .flatten()
            .filter_map(|e| match e {
                MemberEvent::Message { group: g, bytes } if *g == group => Some(bytes.clone()),
                _ => None,
            })
            .collect()
    }

    /// Members join the session and `group`.
    fn join(&mut self, ids: std::ops::Range<u64>, group: u16, kind: GroupKind) -> Vec<Addr> {
        let addrs: Vec<Addr> = ids.map(|i| self.add_member(i)).collect();
        let all = addrs.clone();
        assert!(self.run_until(Duration::from_secs(5), |n| {
            all.iter().all(|a| match &n.peers[a].0 {
                Peer::Member(m) => m.joined(),
                _ => false,
            })
        }));
        for &a in &addrs {
            self.member(a, MemberCommand::JoinGroup { group, kind });
        }
        let all = addrs.clone();
        assert!(self.run_until(Duration::from_secs(5), |n| all
            .iter()
            .all(|&a| n.joined_group(a, group))));
        addrs
    }
}

const LOSSY: Faults = Faults {
    drop: 0.1,
    dup: 0.05,
    jitter: 300,
};

fn payload(i: usize) -> Vec<u8> {
    let size = [0, 1, 50, 290, 700, 2000][i % 6];
    (0..size).map(|k| (k * 7 + i) as u8).collect()
}

#[test]
fn broadcast_is_ordered_and_exactly_once_under_drops_dups_and_reordering() {
    for seed in 0..20 {
        let mut net = Net::new(seed, LOSSY);
        net.coordinator(CoordinatorCommand::CreateGroup {
            group: 1,
            kind: GroupKind::Broadcast,
        });
        let members = net.join(10..13, 1, GroupKind::Broadcast);
        let written: Vec<Vec<u8>> = (0..200).map(payload).collect();
        for (i, bytes) in written.iter().enumerate() {
            net.coordinator(CoordinatorCommand::Write {
                group: 1,
                bytes: bytes.clone(),
                charge: 0,
            });
            // Consume as the application would, so flow control opens.
            if i % 10 == 0 {
                for &m in &members {
                    net.member(
                        m,
                        MemberCommand::Consumed {
                            group: 1,
                            bytes: 1 << 20,
                        },
                    );
                }
                net.run_until(Duration::from_millis(1), |_| false);
            }
        }
        net.coordinator(CoordinatorCommand::Wait { group: 1 });
        let ok = net.run_until(Duration::from_secs(30), |n| {
            for &m in &members {
                n.member(
                    m,
                    MemberCommand::Consumed {
                        group: 1,
                        bytes: 1 << 20,
                    },
                );
            }
            n.take_done(1)
        });
        if !ok {
            for (a, (p, _)) in &net.peers {
                match p {
                    Peer::Coordinator(c) => eprintln!("{a}: {c:?}"),
                    Peer::Member(m) => eprintln!("{a}: {m:?}"),
                }
            }
        }
        assert!(ok, "seed {seed}: wait never completed");
        for &m in &members {
            assert_eq!(net.messages(m, 1), written, "seed {seed}, member {m}");
        }
        assert!(
            net.max_held <= params().window,
            "seed {seed}: held {}",
            net.max_held
        );
        let Peer::Coordinator(c) = &net.peers[&COORDINATOR].0 else {
            unreachable!()
        };
        assert!(c.stats.retransmits > 0, "seed {seed}: the faults never bit");
    }
}

#[test]
fn barrier_releases_only_when_all_arrived_under_faults() {
    for seed in 0..20 {
        let mut net = Net::new(seed, LOSSY);
        net.coordinator(CoordinatorCommand::CreateGroup {
            group: 2,
            kind: GroupKind::Barrier,
        });
        let members = net.join(20..24, 2, GroupKind::Barrier);
        for round in 0..10 {
            // Everyone but the last member arrives: nobody is released.
            net.coordinator(CoordinatorCommand::Wait { group: 2 });
            for &m in &members[..3] {
                net.member(m, MemberCommand::Arrive { group: 2 });
            }
            net.run_until(Duration::from_millis(50), |_| false);
            assert!(
                !net.take_done(2),
                "seed {seed} round {round}: released early"
            );
            net.member(members[3], MemberCommand::Arrive { group: 2 });
            let released = |n: &Net| {
                members.iter().all(|m| {
                    n.member_events[m]
                        .iter()
                        .filter(|e| matches!(e, MemberEvent::Released { .. }))
                        .count()
                        == round + 1
                })
            };
            assert!(
                net.run_until(Duration::from_secs(10), |n| released(n)),
                "seed {seed}"
            );
            assert!(net.take_done(2), "seed {seed} round {round}");
        }
    }
}

#[test]
fn a_crashed_member_is_removed_and_the_broadcast_completes() {
    for seed in 0..5 {
        let mut net = Net::new(seed, LOSSY);
        net.coordinator(CoordinatorCommand::CreateGroup {
            group: 0,
            kind: GroupKind::Broadcast,
        });
        let members = net.join(1..4, 0, GroupKind::Broadcast);
        net.crashed.push(members[0]);
        let crashed_at = net.now;
        for i in 0..50 {
            net.coordinator(CoordinatorCommand::Write {
                group: 0,
                bytes: payload(i),
                charge: 0,
            });
        }
        net.coordinator(CoordinatorCommand::Wait { group: 0 });
        let live = members[1..].to_vec();
        assert!(net.run_until(Duration::from_secs(10), |n| {
            for &m in &live {
                n.member(
                    m,
                    MemberCommand::Consumed {
                        group: 0,
                        bytes: 1 << 20,
                    },
                );
            }
            n.take_done(0)
        }));
        let stalled = Duration::from_micros(net.now - crashed_at);
        assert!(
            stalled <= params().member_timeout + 2 * params().heartbeat,
            "seed {seed}: stalled {stalled:?}"
        );
        for &m in &members[1..] {
            assert_eq!(net.messages(m, 0), (0..50).map(payload).collect::<Vec<_>>());
        }
    }
}

#[test]
fn a_member_that_does_not_read_holds_the_sender_within_its_window() {
    let mut net = Net::new(
        7,
        Faults {
            drop: 0.0,
            dup: 0.0,
            jitter: 50,
        },
    );
    net.coordinator(CoordinatorCommand::CreateGroup {
        group: 0,
        kind: GroupKind::Broadcast,
    });
    let members = net.join(1..2, 0, GroupKind::Broadcast);
    // Far more than the member's receive buffer.
    for _ in 0..100 {
        net.coordinator(CoordinatorCommand::Write {
            group: 0,
            bytes: vec![1; 1000],
            charge: 0,
        });
    }
    net.coordinator(CoordinatorCommand::Wait { group: 0 });
    assert!(!net.run_until(Duration::from_secs(5), |n| n.take_done(0)));
    let delivered = net.messages(members[0], 0).len();
    assert!(
        delivered * 1000 <= params().recv_buffer + 1000,
        "{delivered}"
    );
    assert!(net.max_held <= params().window);
    // Once the application reads, everything arrives.
    assert!(net.run_until(Duration::from_secs(30), |n| {
        n.member(
            members[0],
            MemberCommand::Consumed {
                group: 0,
                bytes: 1000,
            },
        );
        n.take_done(0)
    }));
    assert_eq!(net.messages(members[0], 0).len(), 100);
}

#[test]
fn strangers_and_garbage_are_ignored_and_counted() {
    let mut net = Net::new(
        1,
        Faults {
            drop: 0.0,
            dup: 0.0,
            jitter: 10,
        },
    );
    net.coordinator(CoordinatorCommand::CreateGroup {
        group: 0,
        kind: GroupKind::Broadcast,
    });
    let stranger = Addr::Client(99);
    net.step(COORDINATOR, |p, cx| {
        if let Peer::Coordinator(s) = p {
            s.on_message(
                stranger,
                Message::Ack {
                    group: 0,
                    next: u64::MAX,
                },
                cx,
            );
            s.on_message(
                stranger,
                Message::Nack {
                    group: 0,
                    missing: vec![(0, u64::MAX)],
                },
                cx,
            );
            s.on_message(Addr::Group(3), Message::Join, cx);
            assert_eq!(s.stats.ignored, 3);
            assert_eq!(s.members().count(), 0);
        }
    });
}
