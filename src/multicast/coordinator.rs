//! The coordinator: admits members, watches their heartbeats, runs the
//! barrier rounds and sends the broadcast streams. Sans-IO: the epoll
//! driver, the simulator and unit tests all drive it the same way.

use super::broadcast::Sender;
use super::params::{Error, Params};
use crate::actor::{Addr, Context, State, Timer};
use crate::runtime::Driven;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use troupe_message::multicast::{GroupKind, Message};

/// The coordinator's address inside a session.
pub const COORDINATOR: Addr = Addr::Node(0);
/// The session's multicast address.
pub const SESSION_GROUP: Addr = Addr::Group(0);

const HEARTBEAT: Timer = Timer(0);

/// The timer of broadcast group `group`'s acknowledgement poll.
pub(super) fn poll_timer(group: u16) -> Timer {
    Timer(1 << 16 | group as u64)
}
/// The timer that sends what a broadcast group has packed so far.
pub(super) fn flush_timer(group: u16) -> Timer {
    Timer(2 << 16 | group as u64)
}

/// What the coordinator's users ask of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorCommand {
    /// Creates a group.
    CreateGroup {
        /// Group id.
        group: u16,
        /// Barrier or broadcast.
        kind: GroupKind,
    },
    /// Broadcasts a message to a broadcast group.
    Write {
        /// Group id.
        group: u16,
        /// The message.
        bytes: Vec<u8>,
        /// Send-buffer credit the writer took for it, handed back in
        /// [`CoordinatorEvent::Room`] once the message is packed.
        charge: usize,
    },
    /// Barrier: the coordinator arrives. Broadcast: report once every
    /// member holds everything written so far.
    Wait {
        /// Group id.
        group: u16,
    },
    /// Ends the session.
    Close,
}

/// What the coordinator tells its users.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CoordinatorEvent {
    /// The answer to a `CreateGroup`.
    Created {
        /// Group id.
        group: u16,
        /// `Err(GroupExists)` when the id was taken.
        result: Result<(), Error>,
    },
    /// A member joined the group.
    Joined {
        /// Group id.
        group: u16,
        /// Who (a member's address: `Addr::Client(id)` over the network).
        member: Addr,
    },
    /// A barrier round completed, or a broadcast `Wait` is satisfied.
    Done {
        /// Group id.
        group: u16,
    },
    /// A written message is packed: its credit is free again.
    Room {
        /// Group id.
        group: u16,
        /// The credit taken for it.
        charge: usize,
    },
}

/// Counts of what the coordinator did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CoordinatorStats {
    /// Datagrams sent again after a NACK.
    pub retransmits: u64,
    /// Acknowledgement polls multicast.
    pub polls: u64,
    /// Members removed after missing their heartbeats.
    pub timed_out: u64,
    /// Members that left.
    pub left: u64,
    /// Messages from strangers or for groups they are not in.
    pub ignored: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Barrier {
    round: u64,
    members: BTreeSet<Addr>,
    arrived: BTreeSet<Addr>,
    waiting: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Group {
    Barrier(Barrier),
    Broadcast(Sender),
}

impl Group {
    fn kind(&self) -> GroupKind {
        match self {
            Group::Barrier(_) => GroupKind::Barrier,
            Group::Broadcast(_) => GroupKind::Broadcast,
        }
    }
}

/// The coordinator's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CoordinatorState {
    params: Params,
    multicast: (u32, u16),
    members: BTreeMap<Addr, Duration>,
    groups: BTreeMap<u16, Group>,
    events: Vec<CoordinatorEvent>,
    closed: bool,
    /// What happened so far.
    pub stats: CoordinatorStats,
}

impl CoordinatorState {
    /// A coordinator whose session multicasts to `multicast` (IPv4 address
    /// bits and port, told to members that ask).
    pub fn new(params: Params, multicast: (u32, u16)) -> Self {
        CoordinatorState {
            params,
            multicast,
            members: BTreeMap::new(),
            groups: BTreeMap::new(),
            events: Vec::new(),
            closed: false,
            stats: CoordinatorStats::default(),
        }
    }

    /// Members of the session now.
    pub fn members(&self) -> impl Iterator<Item = Addr> + '_ {
        self.members.keys().copied()
    }

    /// Datagrams broadcast group `group` holds unacknowledged (its memory).
    pub fn unacknowledged(&self, group: u16) -> Option<usize> {
        match self.groups.get(&group) {
            Some(Group::Broadcast(s)) => Some(s.held()),
            _ => None,
        }
    }

    fn remove_member(&mut self, member: Addr, cx: &mut Context<Message>) {
        if self.members.remove(&member).is_none() {
            return;
        }
        let groups: Vec<u16> = self.groups.keys().copied().collect();
        for group in groups {
            self.leave_group(member, group, cx);
        }
    }

    fn leave_group(&mut self, member: Addr, group: u16, cx: &mut Context<Message>) {
        match self.groups.get_mut(&group) {
            Some(Group::Barrier(b)) => {
                b.members.remove(&member);
                b.arrived.remove(&member);
                check_barrier(group, b, cx, &mut self.events);
            }
            Some(Group::Broadcast(s)) => {
                s.remove(group, member, &self.params, cx, &mut self.events)
            }
            None => {}
        }
    }

    fn join_group(&mut self, member: Addr, group: u16, want: GroupKind, cx: &mut Context<Message>) {
        let to = member;
        let (kind, start, new) = match self.groups.get_mut(&group) {
            Some(g) if g.kind() != want => {
                cx.send(to, Message::UnknownGroup { group });
                return;
            }
            None => {
                cx.send(to, Message::UnknownGroup { group });
                return;
            }
            Some(Group::Barrier(b)) => (GroupKind::Barrier, b.round, b.members.insert(member)),
            Some(Group::Broadcast(s)) => {
                let (start, new) = s.add(group, member, &self.params, cx);
                (GroupKind::Broadcast, start, new)
            }
        };
        if new {
            log::debug!("member {member} joined group {group}");
            self.events.push(CoordinatorEvent::Joined { group, member });
        }
        cx.send(to, Message::GroupJoined { group, kind, start });
    }

    fn arrive(&mut self, member: Addr, group: u16, round: u64, cx: &mut Context<Message>) {
        let Some(Group::Barrier(b)) = self.groups.get_mut(&group) else {
            self.stats.ignored += 1;
            return;
        };
        if !b.members.contains(&member) {
            self.stats.ignored += 1;
        } else if round < b.round {
            // Its release was lost.
            cx.send(member, Message::Release { group, round });
        } else if round == b.round {
            b.arrived.insert(member);
            check_barrier(group, b, cx, &mut self.events);
        }
    }
}

/// Releases the round once the coordinator and every member arrived.
fn check_barrier(
    group: u16,
    b: &mut Barrier,
    cx: &mut Context<Message>,
    events: &mut Vec<CoordinatorEvent>,
) {
    if !b.waiting || !b.members.is_subset(&b.arrived) {
        return;
    }
    cx.send(
        SESSION_GROUP,
        Message::Release {
            group,
            round: b.round,
        },
    );
    b.round += 1;
    b.arrived.clear();
    b.waiting = false;
    events.push(CoordinatorEvent::Done { group });
}

impl State for CoordinatorState {
    type Message = Message;

    fn on_start(&mut self, cx: &mut Context<Message>) {
        cx.set_timer(HEARTBEAT, self.params.heartbeat);
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Context<Message>) {
        if msg == Message::Hello {
            let (ip, port) = self.multicast;
            cx.send(from, Message::SessionInfo { ip, port });
            return;
        }
        // Members are whoever is not the coordinator or a group (clients
        // over the network, nodes in the simulator).
        if from == COORDINATOR || matches!(from, Addr::Group(_)) {
            self.stats.ignored += 1;
            return;
        }
        let member = from;
        let now = cx.now();
        if msg == Message::Join {
            if self.members.contains_key(&member) || self.members.len() < self.params.max_members {
                if self.members.insert(member, now).is_none() {
                    log::debug!("member {member} joined the session");
                }
                let heartbeat_ms = self.params.heartbeat.as_millis().max(1) as u32;
                cx.send(from, Message::Welcome { heartbeat_ms });
            } else {
                log::info!("session full: turned member {member} away");
                cx.send(from, Message::NotMember);
            }
            return;
        }
        let Some(last_heard) = self.members.get_mut(&member) else {
            self.stats.ignored += 1;
            cx.send(from, Message::NotMember);
            return;
        };
        *last_heard = now;
        match msg {
            Message::Leave => {
                self.stats.left += 1;
                log::debug!("member {member} left");
                self.remove_member(member, cx);
            }
            Message::JoinGroup { group, kind } => self.join_group(member, group, kind, cx),
            Message::LeaveGroup { group } => self.leave_group(member, group, cx),
            Message::Arrive { group, round } => self.arrive(member, group, round, cx),
            Message::Ack { group, next } => match self.groups.get_mut(&group) {
                Some(Group::Broadcast(s)) => {
                    s.on_ack(group, member, next, &self.params, cx, &mut self.events)
                }
                _ => self.stats.ignored += 1,
            },
            Message::Nack { group, missing } => match self.groups.get_mut(&group) {
                Some(Group::Broadcast(s)) => {
                    self.stats.retransmits += s.on_nack(group, member, &missing, cx);
                }
                _ => self.stats.ignored += 1,
            },
            Message::Heartbeat => {}
            _ => self.stats.ignored += 1,
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Message>) {
        if timer == HEARTBEAT {
            cx.send(SESSION_GROUP, Message::Alive);
            let now = cx.now();
            let timeout = self.params.member_timeout;
            let dead: Vec<Addr> = self
                .members
                .iter()
                .filter(|(_, &heard)| now.saturating_sub(heard) > timeout)
                .map(|(&m, _)| m)
                .collect();
            for member in dead {
                log::info!("member {member} missed its heartbeats: removed");
                self.stats.timed_out += 1;
                self.remove_member(member, cx);
            }
            cx.set_timer(HEARTBEAT, self.params.heartbeat);
            return;
        }
        let (kind, group) = (timer.0 >> 16, timer.0 as u16);
        if let Some(Group::Broadcast(s)) = self.groups.get_mut(&group) {
            match kind {
                1 => self.stats.polls += s.on_poll_timer(group, &self.params, cx) as u64,
                2 => s.flush(group, &self.params, cx),
                _ => {}
            }
        }
    }

    fn status(&self) -> String {
        format!(
            "{} members, {} groups",
            self.members.len(),
            self.groups.len()
        )
    }
}

impl Driven for CoordinatorState {
    type Command = CoordinatorCommand;
    type Event = CoordinatorEvent;

    fn on_command(&mut self, command: CoordinatorCommand, cx: &mut Context<Message>) {
        match command {
            CoordinatorCommand::CreateGroup { group, kind } => {
                let result = match self.groups.entry(group) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        Err(Error::GroupExists(group))
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(match kind {
                            GroupKind::Barrier => Group::Barrier(Barrier {
                                round: 0,
                                members: BTreeSet::new(),
                                arrived: BTreeSet::new(),
                                waiting: false,
                            }),
                            GroupKind::Broadcast => Group::Broadcast(Sender::new()),
                        });
                        Ok(())
                    }
                };
                self.events
                    .push(CoordinatorEvent::Created { group, result });
            }
            CoordinatorCommand::Write {
                group,
                bytes,
                charge,
            } => {
                if let Some(Group::Broadcast(s)) = self.groups.get_mut(&group) {
                    s.write(group, bytes, charge, &self.params, cx, &mut self.events);
                }
            }
            CoordinatorCommand::Wait { group } => match self.groups.get_mut(&group) {
                Some(Group::Barrier(b)) => {
                    b.waiting = true;
                    check_barrier(group, b, cx, &mut self.events);
                }
                Some(Group::Broadcast(s)) => s.wait(group, &self.params, cx, &mut self.events),
                None => {}
            },
            CoordinatorCommand::Close => {
                cx.send(SESSION_GROUP, Message::Closed);
                self.closed = true;
            }
        }
    }

    fn drain_events(&mut self, out: &mut Vec<CoordinatorEvent>) {
        out.append(&mut self.events);
    }

    fn finished(&self) -> bool {
        self.closed
    }
}
