//! The broadcast stream's sending side: messages packed into numbered
//! datagrams, multicast once, repaired by unicast on NACK, freed once
//! every member has acknowledged them (cumulatively).
//!
//! The window of datagrams held (sent or packed, not yet acknowledged by
//! everyone) is bounded by `Params::window`: that is both the sender's
//! memory bound and its flow control, since nothing new is packed until
//! the slowest member's acknowledgements free room.

use super::coordinator::{flush_timer, poll_timer, CoordinatorEvent, SESSION_GROUP};
use super::params::Params;
use super::pieces::pack;
use crate::actor::{Addr, Context};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use troupe_message::multicast::Message;

/// Most datagrams resent in answer to one NACK; the member asks again
/// for the rest.
const MAX_REPAIR_PER_NACK: usize = 64;

/// One broadcast group's sending state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sender {
    /// Sequence number of `window[0]`.
    base: u64,
    /// Packed datagrams `base ..`, sent or not.
    window: VecDeque<Vec<u8>>,
    /// Datagrams below this were multicast at least once.
    sent: u64,
    /// The datagram being filled.
    open: Vec<u8>,
    /// Messages not yet packed (the writer's credit bounds them), with
    /// their credit, and how much of the first one is packed.
    pending: VecDeque<(Vec<u8>, usize)>,
    offset: usize,
    /// Each member's cumulative acknowledgement.
    acks: BTreeMap<Addr, u64>,
    /// A `Wait` is satisfied once everything written is acknowledged.
    waiting: bool,
    poll_attempt: u32,
    poll_armed: bool,
    flush_armed: bool,
}

impl Sender {
    /// An empty stream.
    pub fn new() -> Self {
        Sender {
            base: 0,
            window: VecDeque::new(),
            sent: 0,
            open: Vec::new(),
            pending: VecDeque::new(),
            offset: 0,
            acks: BTreeMap::new(),
            waiting: false,
            poll_attempt: 0,
            poll_armed: false,
            flush_armed: false,
        }
    }

    /// Datagrams held.
    pub fn held(&self) -> usize {
        self.window.len()
    }

    fn next_seq(&self) -> u64 {
        self.base + self.window.len() as u64
    }

    /// Everyone's cumulative acknowledgement (everything sent, when there
    /// is no member).
    fn min_ack(&self) -> u64 {
        self.acks.values().copied().min().unwrap_or(self.sent)
    }

    /// Queues a message and sends what fills up.
    pub fn write(
        &mut self,
        group: u16,
        bytes: Vec<u8>,
        charge: usize,
        p: &Params,
        cx: &mut Context<Message>,
        events: &mut Vec<CoordinatorEvent>,
    ) {
        self.pending.push_back((bytes, charge));
        self.fill(group, p, events);
        self.transmit(group, p, cx, false);
        // What stays in the open datagram goes out once the commands queued
        // now are absorbed: a zero delay fires after them, which batches
        // small messages without a fixed linger.
        if !self.flush_armed && (!self.open.is_empty() || !self.pending.is_empty()) {
            self.flush_armed = true;
            cx.set_timer(flush_timer(group), Duration::ZERO);
        }
    }

    /// Packs pending messages while the window has room.
    fn fill(&mut self, group: u16, p: &Params, events: &mut Vec<CoordinatorEvent>) {
        while self.window.len() < p.window {
            let Some((msg, charge)) = self.pending.front() else {
                return;
            };
            match pack(&mut self.open, p.datagram_size, msg, self.offset) {
                Some(end) if end == msg.len() => {
                    events.push(CoordinatorEvent::Room {
                        group,
                        charge: *charge,
                    });
                    self.pending.pop_front();
                    self.offset = 0;
                }
                Some(end) => self.offset = end,
                None => self.seal(),
            }
        }
    }

    fn seal(&mut self) {
        if !self.open.is_empty() {
            let full = std::mem::replace(&mut self.open, Vec::with_capacity(64));
            self.window.push_back(full);
        }
    }

    /// Multicasts every packed datagram not sent yet. Asks for
    /// acknowledgements every quarter window, and on the last one when
    /// `last_asks`.
    fn transmit(&mut self, group: u16, p: &Params, cx: &mut Context<Message>, last_asks: bool) {
        let every = (p.window as u64 / 4).max(1);
        let next = self.next_seq();
        while self.sent < next {
            let seq = self.sent;
            let payload = self.window[(seq - self.base) as usize].clone();
            let ack_now = (seq + 1).is_multiple_of(every) || (last_asks && seq + 1 == next);
            cx.send(
                SESSION_GROUP,
                Message::Data {
                    group,
                    seq,
                    ack_now,
                    payload,
                },
            );
            self.sent += 1;
        }
        self.arm_poll(group, p, cx);
    }

    fn arm_poll(&mut self, group: u16, p: &Params, cx: &mut Context<Message>) {
        if !self.poll_armed && self.min_ack() < self.sent {
            self.poll_armed = true;
            self.poll_attempt = 0;
            cx.set_timer(poll_timer(group), p.retry_delay(0));
        }
    }

    /// The zero-delay flush: seal and send what is packed.
    pub fn flush(&mut self, group: u16, p: &Params, cx: &mut Context<Message>) {
        self.flush_armed = false;
        if self.window.len() < p.window {
            self.seal();
        }
        self.transmit(group, p, cx, true);
    }

    /// Adds a member from the next datagram on; returns where it starts
    /// and whether it is new.
    pub fn add(
        &mut self,
        group: u16,
        member: Addr,
        p: &Params,
        cx: &mut Context<Message>,
    ) -> (u64, bool) {
        if let Some(&at) = self.acks.get(&member) {
            return (at, false);
        }
        // Start on a datagram boundary: send what is packed first.
        self.seal();
        self.transmit(group, p, cx, true);
        let start = self.next_seq();
        self.acks.insert(member, start);
        (start, true)
    }

    /// Forgets a member (left or dead): the group carries on without it.
    pub fn remove(
        &mut self,
        group: u16,
        member: Addr,
        p: &Params,
        cx: &mut Context<Message>,
        events: &mut Vec<CoordinatorEvent>,
    ) {
        if self.acks.remove(&member).is_some() {
            self.progress(group, p, cx, events);
        }
    }

    /// A member's cumulative acknowledgement.
    pub fn on_ack(
        &mut self,
        group: u16,
        member: Addr,
        next: u64,
        p: &Params,
        cx: &mut Context<Message>,
        events: &mut Vec<CoordinatorEvent>,
    ) {
        let sent = self.sent;
        let Some(ack) = self.acks.get_mut(&member) else {
            return;
        };
        // An acknowledgement of something never sent is garbage.
        if next > *ack && next <= sent {
            *ack = next;
            self.progress(group, p, cx, events);
        }
    }

    /// Frees what everyone holds, packs and sends into the room, and
    /// answers a satisfied `Wait`.
    fn progress(
        &mut self,
        group: u16,
        p: &Params,
        cx: &mut Context<Message>,
        events: &mut Vec<CoordinatorEvent>,
    ) {
        let min = self.min_ack();
        if min > self.base {
            let freed = ((min - self.base) as usize).min(self.window.len());
            self.window.drain(..freed);
            self.base += freed as u64;
            self.fill(group, p, events);
            if self.poll_armed {
                // Progress: the next poll is a fresh one.
                self.poll_attempt = 0;
                cx.set_timer(poll_timer(group), p.retry_delay(0));
            }
        }
        if self.waiting && self.pending.is_empty() && self.window.len() < p.window {
            self.seal();
        }
        self.transmit(group, p, cx, self.pending.is_empty());
        let all_packed = self.pending.is_empty() && self.open.is_empty();
        if self.waiting && all_packed && self.min_ack() >= self.next_seq() {
            self.waiting = false;
            events.push(CoordinatorEvent::Done { group });
        }
    }

    /// Resends what a member reports missing, straight to it.
    pub fn on_nack(
        &mut self,
        group: u16,
        member: Addr,
        missing: &[(u64, u64)],
        cx: &mut Context<Message>,
    ) -> u64 {
        if !self.acks.contains_key(&member) {
            return 0;
        }
        let mut seqs = Vec::new();
        for &(from, to) in missing {
            let (from, to) = (from.max(self.base), to.min(self.sent));
            let room = MAX_REPAIR_PER_NACK - seqs.len();
            seqs.extend((from..to.max(from)).take(room));
            if seqs.len() == MAX_REPAIR_PER_NACK {
                break;
            }
        }
        let last = seqs.len().saturating_sub(1);
        for (i, &seq) in seqs.iter().enumerate() {
            cx.send(
                member,
                Message::Data {
                    group,
                    seq,
                    ack_now: i == last,
                    payload: self.window[(seq - self.base) as usize].clone(),
                },
            );
        }
        seqs.len() as u64
    }

    /// Acknowledgements are overdue: ask everyone where they are. Returns
    /// whether a poll went out.
    pub fn on_poll_timer(&mut self, group: u16, p: &Params, cx: &mut Context<Message>) -> bool {
        if self.min_ack() >= self.sent {
            self.poll_armed = false;
            return false;
        }
        cx.send(
            SESSION_GROUP,
            Message::Poll {
                group,
                next: self.sent,
            },
        );
        self.poll_attempt += 1;
        cx.set_timer(poll_timer(group), p.retry_delay(self.poll_attempt));
        true
    }

    /// `Wait`: send everything written, report once all hold it. (The
    /// writer is blocked in its wait, so nothing is added meanwhile.)
    pub fn wait(
        &mut self,
        group: u16,
        p: &Params,
        cx: &mut Context<Message>,
        events: &mut Vec<CoordinatorEvent>,
    ) {
        self.waiting = true;
        self.progress(group, p, cx, events);
    }
}

impl Default for Sender {
    fn default() -> Self {
        Self::new()
    }
}
