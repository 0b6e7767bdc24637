//! The broadcast stream's receiving side: datagrams put back in order,
//! gaps reported by NACK, messages reassembled and delivered exactly once,
//! cumulative acknowledgements when the sender asks.

use super::coordinator::COORDINATOR;
use super::params::Params;
use super::pieces::{Pieces, END, START};
use crate::actor::Context;
use std::collections::BTreeMap;
use troupe_message::multicast::Message;

/// Most gap ranges one NACK lists.
const MAX_NACK_RANGES: usize = 32;

/// One broadcast group's receiving state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Receiver {
    /// The next datagram to deliver.
    next: u64,
    /// Whether a message start was seen (a member that joins mid-message
    /// skips that message's tail).
    started: bool,
    /// Datagrams that arrived ahead of `next`, at most two windows' worth.
    ahead: BTreeMap<u64, Vec<u8>>,
    /// The message being reassembled.
    partial: Vec<u8>,
    /// Bytes delivered that the application has not consumed yet.
    unconsumed: usize,
    /// A NACK is outstanding (its retry timer armed), with its attempt.
    pub(super) nack_attempt: Option<u32>,
    /// Datagrams dropped because they lay beyond the reorder buffer.
    pub dropped_ahead: u64,
    /// Datagrams whose pieces did not parse.
    pub malformed: u64,
}

/// What a datagram or a command changed, for the member to act on.
#[derive(Default)]
pub struct Outcome {
    /// Messages now deliverable, in order.
    pub messages: Vec<Vec<u8>>,
    /// A gap is open and no NACK is outstanding: arm the retry timer.
    pub arm_nack: bool,
}

impl Receiver {
    /// A stream whose first datagram is `start`.
    pub fn new(start: u64) -> Self {
        Receiver {
            next: start,
            started: false,
            ahead: BTreeMap::new(),
            partial: Vec::new(),
            unconsumed: 0,
            nack_attempt: None,
            dropped_ahead: 0,
            malformed: 0,
        }
    }

    /// The next datagram expected (everything before it is delivered).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// A data datagram.
    #[allow(clippy::too_many_arguments)]
    pub fn on_data(
        &mut self,
        group: u16,
        seq: u64,
        ack_now: bool,
        payload: Vec<u8>,
        p: &Params,
        cx: &mut Context<Message>,
        out: &mut Outcome,
    ) {
        if seq >= self.next {
            if seq - self.next >= 2 * p.window as u64 {
                self.dropped_ahead += 1;
            } else {
                self.ahead.entry(seq).or_insert(payload);
            }
            self.drain(p, out);
        }
        self.after(group, None, ack_now, cx, out);
    }

    /// The sender's poll: everything below `sent` went out.
    pub fn on_poll(&mut self, group: u16, sent: u64, cx: &mut Context<Message>, out: &mut Outcome) {
        self.after(group, Some(sent), true, cx, out);
    }

    /// The application consumed `bytes`.
    pub fn consumed(
        &mut self,
        group: u16,
        bytes: usize,
        p: &Params,
        cx: &mut Context<Message>,
        out: &mut Outcome,
    ) {
        let blocked = self.unconsumed >= p.recv_buffer;
        self.unconsumed = self.unconsumed.saturating_sub(bytes);
        let before = self.next;
        self.drain(p, out);
        // A sender stalled on this member learns it can go on.
        let ack = blocked && self.next > before;
        self.after(group, None, ack, cx, out);
    }

    /// The retry timer of an outstanding NACK fired: ask again while a gap
    /// remains. Returns whether to re-arm it.
    pub fn on_nack_timer(&mut self, group: u16, cx: &mut Context<Message>) -> bool {
        let missing = self.missing(None);
        if missing.is_empty() {
            self.nack_attempt = None;
            return false;
        }
        cx.send(COORDINATOR, Message::Nack { group, missing });
        self.nack_attempt = Some(self.nack_attempt.unwrap_or(0) + 1);
        true
    }

    /// Delivers in-order datagrams while the application keeps up.
    fn drain(&mut self, p: &Params, out: &mut Outcome) {
        while self.unconsumed < p.recv_buffer {
            let Some(payload) = self.ahead.remove(&self.next) else {
                return;
            };
            self.next += 1;
            for piece in Pieces::new(&payload) {
                let Ok((flags, bytes)) = piece else {
                    self.malformed += 1;
                    log::warn!("broadcast datagram {} is malformed", self.next - 1);
                    break;
                };
                if flags & START != 0 {
                    self.partial.clear();
                    self.started = true;
                } else if !self.started {
                    continue;
                }
                self.partial.extend_from_slice(bytes);
                if flags & END != 0 {
                    let msg = std::mem::take(&mut self.partial);
                    self.unconsumed += msg.len();
                    out.messages.push(msg);
                }
            }
        }
    }

    /// Acknowledges when asked, reports gaps.
    fn after(
        &mut self,
        group: u16,
        sent: Option<u64>,
        ack: bool,
        cx: &mut Context<Message>,
        out: &mut Outcome,
    ) {
        if ack {
            cx.send(
                COORDINATOR,
                Message::Ack {
                    group,
                    next: self.next,
                },
            );
        }
        // A poll's NACK goes out at once; otherwise one NACK per gap until
        // its timer says the repair is overdue.
        if self.nack_attempt.is_none() || sent.is_some() {
            let missing = self.missing(sent);
            if !missing.is_empty() {
                cx.send(COORDINATOR, Message::Nack { group, missing });
                if self.nack_attempt.is_none() {
                    self.nack_attempt = Some(0);
                    out.arm_nack = true;
                }
            }
        }
    }

    /// Gaps below the highest datagram seen (or `sent`, if higher).
    fn missing(&self, sent: Option<u64>) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = self.next;
        for &seq in self.ahead.keys() {
            if seq > at {
                gaps.push((at, seq));
                if gaps.len() == MAX_NACK_RANGES {
                    return gaps;
                }
            }
            at = seq + 1;
        }
        if let Some(sent) = sent {
            if sent > at {
                gaps.push((at, sent));
            }
        }
        gaps
    }
}
