//! A member: joins the session, keeps its heartbeat, takes part in
//! barrier rounds and receives broadcast streams. Sans-IO.

use super::coordinator::COORDINATOR;
use super::params::{Error, Params};
use super::receiver::{Outcome, Receiver};
use crate::actor::{Addr, Context, State, Timer};
use crate::runtime::Driven;
use std::collections::BTreeMap;
use std::time::Duration;
use troupe_message::multicast::{GroupKind, Message};

const JOIN: Timer = Timer(0);
const HEARTBEAT: Timer = Timer(1);

/// The retry timer of group `group` (joining it, a barrier arrival, a
/// broadcast NACK: one at a time).
fn group_timer(group: u16) -> Timer {
    Timer(1 << 16 | group as u64)
}

/// What a member's user asks of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberCommand {
    /// Joins a group.
    JoinGroup {
        /// Group id.
        group: u16,
        /// The kind expected.
        kind: GroupKind,
    },
    /// Leaves a group.
    LeaveGroup {
        /// Group id.
        group: u16,
    },
    /// Barrier: arrive at the current round.
    Arrive {
        /// Group id.
        group: u16,
    },
    /// Broadcast: the application consumed this many bytes of messages.
    Consumed {
        /// Group id.
        group: u16,
        /// Bytes.
        bytes: usize,
    },
    /// Leaves the session.
    Leave,
}

/// What a member tells its user.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MemberEvent {
    /// The member is in the session.
    Joined,
    /// The answer to `JoinGroup`.
    GroupJoined {
        /// Group id.
        group: u16,
        /// What kind it is, or why joining failed.
        result: Result<GroupKind, Error>,
    },
    /// Barrier: the round this member arrived at is complete.
    Released {
        /// Group id.
        group: u16,
    },
    /// Broadcast: the next message.
    Message {
        /// Group id.
        group: u16,
        /// The message.
        bytes: Vec<u8>,
    },
    /// The member is out of the session for good.
    Failed(Error),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Joining { attempt: u32 },
    Joined,
    Over,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Group {
    Joining { attempt: u32, kind: GroupKind },
    Barrier { round: u64, attempt: Option<u32> },
    Broadcast(Receiver),
}

/// A member's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemberState {
    params: Params,
    phase: Phase,
    started: Duration,
    last_heard: Duration,
    groups: BTreeMap<u16, Group>,
    events: Vec<MemberEvent>,
}

impl MemberState {
    /// A member that joins when started.
    pub fn new(params: Params) -> Self {
        MemberState {
            params,
            phase: Phase::Joining { attempt: 0 },
            started: Duration::ZERO,
            last_heard: Duration::ZERO,
            groups: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// Whether the member is in the session.
    pub fn joined(&self) -> bool {
        self.phase == Phase::Joined
    }

    /// Broadcast group `group`'s next expected datagram.
    pub fn broadcast_next(&self, group: u16) -> Option<u64> {
        match self.groups.get(&group) {
            Some(Group::Broadcast(r)) => Some(r.next()),
            _ => None,
        }
    }

    fn fail(&mut self, error: Error) {
        if self.phase != Phase::Over {
            log::info!("member leaves the session: {error}");
            self.phase = Phase::Over;
            self.events.push(MemberEvent::Failed(error));
        }
    }

    fn deliver(&mut self, group: u16, out: Outcome, cx: &mut Context<Message>) {
        for bytes in out.messages {
            self.events.push(MemberEvent::Message { group, bytes });
        }
        if out.arm_nack {
            cx.set_timer(group_timer(group), self.params.retry_delay(0));
        }
    }

    fn on_group_message(&mut self, msg: Message, cx: &mut Context<Message>) {
        let p = &self.params;
        match msg {
            Message::GroupJoined { group, kind, start } => {
                if !matches!(self.groups.get(&group), Some(Group::Joining { .. })) {
                    return;
                }
                cx.cancel_timer(group_timer(group));
                let g = match kind {
                    GroupKind::Barrier => Group::Barrier {
                        round: start,
                        attempt: None,
                    },
                    GroupKind::Broadcast => Group::Broadcast(Receiver::new(start)),
                };
                self.groups.insert(group, g);
                self.events.push(MemberEvent::GroupJoined {
                    group,
                    result: Ok(kind),
                });
            }
            Message::UnknownGroup { group } => {
                if matches!(self.groups.get(&group), Some(Group::Joining { .. })) {
                    cx.cancel_timer(group_timer(group));
                    self.groups.remove(&group);
                    self.events.push(MemberEvent::GroupJoined {
                        group,
                        result: Err(Error::UnknownGroup(group)),
                    });
                }
            }
            Message::Release { group, round } => {
                if let Some(Group::Barrier { round: r, attempt }) = self.groups.get_mut(&group) {
                    if attempt.is_some() && round == *r {
                        *r += 1;
                        *attempt = None;
                        cx.cancel_timer(group_timer(group));
                        self.events.push(MemberEvent::Released { group });
                    }
                }
            }
            Message::Data {
                group,
                seq,
                ack_now,
                payload,
            } => {
                if let Some(Group::Broadcast(r)) = self.groups.get_mut(&group) {
                    let mut out = Outcome::default();
                    r.on_data(group, seq, ack_now, payload, p, cx, &mut out);
                    self.deliver(group, out, cx);
                }
            }
            Message::Poll { group, next } => {
                if let Some(Group::Broadcast(r)) = self.groups.get_mut(&group) {
                    let mut out = Outcome::default();
                    r.on_poll(group, next, cx, &mut out);
                    self.deliver(group, out, cx);
                }
            }
            _ => {}
        }
    }
}

impl State for MemberState {
    type Message = Message;

    fn on_start(&mut self, cx: &mut Context<Message>) {
        self.started = cx.now();
        cx.send(COORDINATOR, Message::Join);
        cx.set_timer(JOIN, self.params.retry_delay(0));
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Context<Message>) {
        if from != COORDINATOR || self.phase == Phase::Over {
            return;
        }
        self.last_heard = cx.now();
        match msg {
            Message::Welcome { .. } => {
                if let Phase::Joining { .. } = self.phase {
                    self.phase = Phase::Joined;
                    cx.cancel_timer(JOIN);
                    cx.set_timer(HEARTBEAT, self.params.heartbeat);
                    self.events.push(MemberEvent::Joined);
                }
            }
            Message::NotMember => self.fail(Error::Removed),
            Message::Closed => self.fail(Error::CoordinatorGone),
            msg if self.phase == Phase::Joined => self.on_group_message(msg, cx),
            _ => {}
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Message>) {
        let now = cx.now();
        match (timer, &mut self.phase) {
            (_, Phase::Over) => {}
            (JOIN, Phase::Joining { attempt }) => {
                if now.saturating_sub(self.started) >= self.params.join_timeout {
                    // The user maps this to the address it tried.
                    self.fail(Error::SessionNotFound(([0, 0, 0, 0], 0).into()));
                    return;
                }
                *attempt += 1;
                cx.send(COORDINATOR, Message::Join);
                cx.set_timer(JOIN, self.params.retry_delay(*attempt));
            }
            (HEARTBEAT, Phase::Joined) => {
                if now.saturating_sub(self.last_heard) > self.params.member_timeout {
                    self.fail(Error::CoordinatorGone);
                    return;
                }
                cx.send(COORDINATOR, Message::Heartbeat);
                cx.set_timer(HEARTBEAT, self.params.heartbeat);
            }
            (timer, Phase::Joined) if timer.0 >> 16 == 1 => {
                let group = timer.0 as u16;
                let delay = |attempt| self.params.retry_delay(attempt);
                match self.groups.get_mut(&group) {
                    Some(Group::Joining { attempt, kind }) => {
                        *attempt += 1;
                        let kind = *kind;
                        cx.send(COORDINATOR, Message::JoinGroup { group, kind });
                        cx.set_timer(timer, delay(*attempt));
                    }
                    Some(Group::Barrier {
                        round,
                        attempt: Some(attempt),
                    }) => {
                        *attempt += 1;
                        let round = *round;
                        cx.send(COORDINATOR, Message::Arrive { group, round });
                        cx.set_timer(timer, delay(*attempt));
                    }
                    Some(Group::Broadcast(r)) => {
                        let again = r.on_nack_timer(group, cx);
                        if again {
                            cx.set_timer(timer, delay(r.nack_attempt.unwrap_or(0)));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

impl Driven for MemberState {
    type Command = MemberCommand;
    type Event = MemberEvent;

    fn on_command(&mut self, command: MemberCommand, cx: &mut Context<Message>) {
        if self.phase == Phase::Over {
            return;
        }
        match command {
            MemberCommand::JoinGroup { group, kind } => {
                if self.groups.contains_key(&group) {
                    return;
                }
                self.groups
                    .insert(group, Group::Joining { attempt: 0, kind });
                cx.send(COORDINATOR, Message::JoinGroup { group, kind });
                cx.set_timer(group_timer(group), self.params.retry_delay(0));
            }
            MemberCommand::LeaveGroup { group } => {
                if self.groups.remove(&group).is_some() {
                    cx.cancel_timer(group_timer(group));
                    cx.send(COORDINATOR, Message::LeaveGroup { group });
                }
            }
            MemberCommand::Arrive { group } => {
                if let Some(Group::Barrier { round, attempt }) = self.groups.get_mut(&group) {
                    if attempt.is_none() {
                        *attempt = Some(0);
                        let round = *round;
                        cx.send(COORDINATOR, Message::Arrive { group, round });
                        cx.set_timer(group_timer(group), self.params.retry_delay(0));
                    }
                }
            }
            MemberCommand::Consumed { group, bytes } => {
                if let Some(Group::Broadcast(r)) = self.groups.get_mut(&group) {
                    let mut out = Outcome::default();
                    r.consumed(group, bytes, &self.params, cx, &mut out);
                    self.deliver(group, out, cx);
                }
            }
            MemberCommand::Leave => {
                // Twice: a lost Leave would stall the groups until the
                // coordinator times this member out.
                cx.send(COORDINATOR, Message::Leave);
                cx.send(COORDINATOR, Message::Leave);
                self.phase = Phase::Over;
            }
        }
    }

    fn drain_events(&mut self, out: &mut Vec<MemberEvent>) {
        out.append(&mut self.events);
    }

    fn finished(&self) -> bool {
        self.phase == Phase::Over
    }
}
