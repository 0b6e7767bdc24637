//! The coordinator and member states in the simulator.
//!
//! The simulator judges protocols by the histories of key-value clients,
//! so the states run here as a replicated key-value service built the
//! obvious way on a broadcast group: clients send requests to the
//! coordinator, which broadcasts them; every member applies the broadcast
//! in order (each request once, by the at-most-once client table) and
//! answers the client. The agreement checker then verifies exactly what
//! broadcast promises (every member holds the same messages in the same
//! order, each once), the linearizability checker that the order respects
//! real time, and the liveness check that nothing stalls once the faults
//! (drops, duplicates, reordering, delays, partitions) heal.

use super::coordinator::{CoordinatorCommand, CoordinatorEvent, CoordinatorState};
use super::member::{MemberCommand, MemberEvent, MemberState};
use super::params::Params;
use crate::actor::{Addr, Context, Effect, State, Timer};
use crate::app::{App, AppKind};
use crate::protocol::common::{ClientTable, Lookup};
use crate::protocol::unreplicated::{self, Client, Reply, Request};
use crate::runtime::Driven;
use crate::sim::{Spec, Tolerance};
use std::time::Duration;
use troupe_message::multicast::{GroupKind, Message};

/// The broadcast group requests travel in.
const GROUP: u16 = 0;
/// Client resend timeout in simulations.
const RESEND: Duration = Duration::from_millis(20);

/// Session datagrams and client requests, on one simulated network.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SimMessage {
    /// Between coordinator and members.
    Session(Message),
    /// Between clients and the service.
    Client(unreplicated::Message),
}

/// Every participant, as the simulator drives it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SimActor {
    /// Node 0: sequences client requests into the broadcast.
    Coordinator {
        /// The coordinator proper.
        state: CoordinatorState,
        /// Members in the group so far; requests wait for all of them.
        joined: usize,
        /// Members expected.
        members: usize,
    },
    /// Nodes 1..: apply the broadcast, answer clients.
    Member {
        /// The member proper.
        state: MemberState,
        /// The replicated store.
        app: App,
        /// At-most-once execution.
        table: ClientTable<Reply>,
        /// Requests applied.
        applied: u64,
    },
    /// A closed-loop key-value client (the unreplicated protocol's).
    Client(Client),
}

/// Runs `f` on an inner state with a context of its own message type,
/// then carries its effects over to the outer context.
fn inner<M>(
    cx: &mut Context<SimMessage>,
    wrap: fn(M) -> SimMessage,
    f: impl FnOnce(&mut Context<M>),
) {
    let mut inner = Context::new(cx.me(), 0);
    inner.set_now(cx.now());
    f(&mut inner);
    for effect in inner.drain() {
        match effect {
            Effect::Send { to, msg } => cx.send(to, wrap(msg)),
            Effect::SetTimer { timer, after } => cx.set_timer(timer, after),
            Effect::CancelTimer(timer) => cx.cancel_timer(timer),
            Effect::Complete(result) => cx.complete(result),
        }
    }
}

fn request_bytes(req: &Request) -> Vec<u8> {
    bincode::serialize(req).unwrap_or_default()
}

impl SimActor {
    /// Acts on what the wrapped state reported.
    fn after(&mut self, cx: &mut Context<SimMessage>) {
        match self {
            SimActor::Coordinator { state, joined, .. } => {
                let mut events = Vec::new();
                state.drain_events(&mut events);
                for e in events {
                    if let CoordinatorEvent::Joined { .. } = e {
                        *joined += 1;
                    }
                }
            }
            SimActor::Member {
                state,
                app,
                table,
                applied,
            } => {
                let mut events = Vec::new();
                state.drain_events(&mut events);
                for e in events {
                    match e {
                        MemberEvent::Joined => inner(cx, SimMessage::Session, |icx| {
                            state.on_command(
                                MemberCommand::JoinGroup {
                                    group: GROUP,
                                    kind: GroupKind::Broadcast,
                                },
                                icx,
                            )
                        }),
                        MemberEvent::Message { bytes, .. } => {
                            let consumed = bytes.len();
                            apply(&bytes, app, table, applied, cx);
                            inner(cx, SimMessage::Session, |icx| {
                                state.on_command(
                                    MemberCommand::Consumed {
                                        group: GROUP,
                                        bytes: consumed,
                                    },
                                    icx,
                                )
                            });
                        }
                        _ => {}
                    }
                }
            }
            SimActor::Client(_) => {}
        }
    }
}

/// Applies one broadcast request, at most once per `(client, seq)`, and
/// answers the client.
fn apply(
    bytes: &[u8],
    app: &mut App,
    table: &mut ClientTable<Reply>,
    applied: &mut u64,
    cx: &mut Context<SimMessage>,
) {
    let Ok(req) = bincode::deserialize::<Request>(bytes) else {
        return;
    };
    let reply = match table.lookup(req.client, req.seq) {
        Lookup::Execute => {
            let result = app.execute(&req.op);
            *applied += 1;
            cx.executed(*applied, &req.op);
            let reply = Reply {
                seq: req.seq,
                result,
            };
            table.finish(req.client, req.seq, reply.clone());
            reply
        }
        Lookup::Resend(reply) => reply.clone(),
        Lookup::InProgress | Lookup::Stale | Lookup::Full => return,
    };
    cx.send(
        Addr::Client(req.client),
        SimMessage::Client(unreplicated::Message::Reply(reply)),
    );
}

impl State for SimActor {
    type Message = SimMessage;

    fn on_start(&mut self, cx: &mut Context<SimMessage>) {
        match self {
            SimActor::Coordinator { state, .. } => inner(cx, SimMessage::Session, |icx| {
                state.on_start(icx);
                state.on_command(
                    CoordinatorCommand::CreateGroup {
                        group: GROUP,
                        kind: GroupKind::Broadcast,
                    },
                    icx,
                );
            }),
            SimActor::Member { state, .. } => {
                inner(cx, SimMessage::Session, |icx| state.on_start(icx))
            }
            SimActor::Client(c) => inner(cx, SimMessage::Client, |icx| c.on_start(icx)),
        }
        self.after(cx);
    }

    fn on_message(&mut self, from: Addr, msg: SimMessage, cx: &mut Context<SimMessage>) {
        match (&mut *self, msg) {
            (SimActor::Coordinator { state, .. }, SimMessage::Session(m)) => {
                inner(cx, SimMessage::Session, |icx| {
                    state.on_message(from, m, icx)
                })
            }
            (
                SimActor::Coordinator {
                    state,
                    joined,
                    members,
                },
                SimMessage::Client(unreplicated::Message::Request(req)),
            ) if *joined >= *members => {
                // Until every member is in, a request would reach only
                // some of them: it is dropped (below) and the client
                // resends.
                let bytes = request_bytes(&req);
                inner(cx, SimMessage::Session, |icx| {
                    state.on_command(
                        CoordinatorCommand::Write {
                            group: GROUP,
                            bytes,
                            charge: 0,
                        },
                        icx,
                    )
                });
            }
            (SimActor::Member { state, .. }, SimMessage::Session(m)) => {
                inner(cx, SimMessage::Session, |icx| {
                    state.on_message(from, m, icx)
                })
            }
            (SimActor::Client(c), SimMessage::Client(m)) => {
                inner(cx, SimMessage::Client, |icx| c.on_message(from, m, icx))
            }
            _ => {}
        }
        self.after(cx);
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<SimMessage>) {
        match self {
            SimActor::Coordinator { state, .. } => {
                inner(cx, SimMessage::Session, |icx| state.on_timer(timer, icx))
            }
            SimActor::Member { state, .. } => {
                inner(cx, SimMessage::Session, |icx| state.on_timer(timer, icx))
            }
            SimActor::Client(c) => inner(cx, SimMessage::Client, |icx| c.on_timer(timer, icx)),
        }
        self.after(cx);
    }

    fn on_invoke(&mut self, op: Vec<u8>, cx: &mut Context<SimMessage>) {
        if let SimActor::Client(c) = self {
            inner(cx, SimMessage::Client, |icx| c.on_invoke(op, icx));
        }
    }
}

/// A coordinator (node 0), `members` members (nodes 1..=members) and the
/// simulator's clients.
#[derive(Clone, Debug)]
pub struct SimSpec {
    /// Members in the broadcast group.
    pub members: usize,
    /// Protocol parameters (small datagrams and windows exercise
    /// fragmentation and flow control).
    pub params: Params,
}

impl SimSpec {
    /// `members` members with small datagrams and a small window.
    pub fn new(members: usize) -> Self {
        SimSpec {
            members,
            params: Params {
                datagram_size: 128,
                window: 8,
                ..Params::default()
            },
        }
    }
}

impl Spec for SimSpec {
    type Actor = SimActor;

    fn nodes(&self) -> usize {
        1 + self.members
    }

    fn tolerance(&self) -> Tolerance {
        // Network faults only: a crashed member is removed for good (the
        // loopback tests cover that), which the service built here does
        // not model.
        Tolerance::none()
    }

    fn node(&self, id: u16) -> SimActor {
        if id == 0 {
            SimActor::Coordinator {
                state: CoordinatorState::new(self.params.clone(), (0, 0)),
                joined: 0,
                members: self.members,
            }
        } else {
            SimActor::Member {
                state: MemberState::new(self.params.clone()),
                app: App::new(AppKind::Kv),
                table: ClientTable::default(),
                applied: 0,
            }
        }
    }

    fn client(&self, id: u64) -> SimActor {
        SimActor::Client(Client::new(id, RESEND))
    }

    fn groups(&self) -> Vec<(u16, Vec<Addr>)> {
        vec![(0, (1..=self.members as u16).map(Addr::Node).collect())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{assert_seeds, SimConfig};

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
    fn broadcast_agrees_under_each_network_fault() {
        for kind in ["drop", "dup", "reorder", "delay", "partition"] {
            let out = assert_seeds(&SimSpec::new(3), &config(kind, 20));
            assert!(out.events > 0);
        }
    }

    #[test]
    fn broadcast_agrees_under_all_network_faults_together() {
        let out = assert_seeds(
            &SimSpec::new(2),
            &config("drop,dup,reorder,delay,partition", 40),
        );
        assert_eq!(out.seeds, 40);
    }
}
