//! The PBFT client: one request outstanding; the first goes to every
//! replica (so each learns where the client is), later ones to the
//! primary it believes in; on timeout it resends to every replica. It
//! accepts a result once f+1 replicas sent the same one.

use crate::actor::{Addr, Context, State, Timer};
use crate::protocol::common::{Backoff, ReplyMatcher};
use std::time::Duration;
use troupe_message::pbft::{Auth, Message, Request};
use troupe_message::ALL_REPLICAS;

const RESEND: Timer = Timer(0);

/// A PBFT client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    id: u64,
    n: usize,
    view: u64,
    seq: u64,
    pending: Option<Vec<u8>>,
    introduced: bool,
    matcher: ReplyMatcher<Vec<u8>>,
    backoff: Backoff,
    /// Requests resent after a timeout.
    pub resends: u64,
}

impl Client {
    /// Client `id` of a group of `n` replicas tolerating `f` faults,
    /// resending after `resend_after` (doubling while unanswered).
    pub fn new(id: u64, n: usize, f: usize, resend_after: Duration) -> Self {
        Client {
            id,
            n,
            view: 0,
            seq: 0,
            pending: None,
            introduced: false,
            matcher: ReplyMatcher::new(f + 1),
            backoff: Backoff::new(resend_after),
            resends: 0,
        }
    }

    /// Whether an operation is outstanding.
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// The view this client believes the replicas are in.
    pub fn view(&self) -> u64 {
        self.view
    }

    fn send(&mut self, to_all: bool, cx: &mut Context<Message>, after: Duration) {
        let Some(op) = &self.pending else { return };
        let request = Message::Request(Request {
            client: self.id,
            seq: self.seq,
            op: op.clone(),
            auth: Auth::None, // filled in by the shared stage
        });
        if to_all || !self.introduced {
            self.introduced = true;
            cx.send(ALL_REPLICAS, request);
        } else {
            let primary = (self.view % self.n as u64) as u16;
            cx.send(Addr::Node(primary), request);
        }
        cx.set_timer(RESEND, after);
    }
}

impl State for Client {
    type Message = Message;

    fn on_start(&mut self, cx: &mut Context<Message>) {
        if self.pending.is_some() {
            let after = self.backoff.first();
            cx.set_timer(RESEND, after);
        }
    }

    fn on_invoke(&mut self, op: Vec<u8>, cx: &mut Context<Message>) {
        self.seq += 1;
        self.pending = Some(op);
        self.matcher.start(self.seq);
        let after = self.backoff.first();
        self.send(false, cx, after);
    }

    fn on_message(&mut self, _from: Addr, msg: Message, cx: &mut Context<Message>) {
        let Message::Reply(r) = msg else { return };
        if self.pending.is_none() {
            return;
        }
        let view = r.view;
        if let Some(result) = self.matcher.insert(r.replica, r.seq, r.result) {
            // The view of the reply that completed the match: replicas
            // report the view they executed in, so the next request goes
            // to that view's primary.
            self.view = self.view.max(view);
            self.pending = None;
            cx.cancel_timer(RESEND);
            cx.complete(result);
        }
    }

    fn on_timer(&mut self, _timer: Timer, cx: &mut Context<Message>) {
        if self.pending.is_some() {
            self.resends += 1;
            let after = self.backoff.after_resend();
            self.send(true, cx, after);
        }
    }
}
