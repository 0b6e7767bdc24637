//! The unreplicated baseline: one server executes requests in arrival
//! order, at most once each. Every other protocol is measured against it.

pub mod sim;

use super::common::{Backoff, ClientTable, Lookup};
use super::{Protocol, Setup};
use crate::actor::{Addr, Context, State, Timer};
use crate::app::App;
use crate::net::BincodeCodec;
use crate::runtime::{run_host, Counters, Supervisor};
use std::sync::Arc;
use std::time::Duration;
pub use troupe_message::unreplicated::{Message, Reply, Request};

/// The registry entry.
pub const PROTOCOL: Protocol = Protocol {
    name: "unreplicated",
    replicas: |_| 1,
    run_replica,
    run_clients,
    simulate: |cfg| crate::sim::simulate(&sim::SimSpec::new(), cfg),
    model_check: |cfg| crate::sim::model_check(&sim::SimSpec::new(), cfg),
};

/// The server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica {
    app: App,
    table: ClientTable<Reply>,
    executed: u64,
    /// Requests dropped because the client table was full.
    pub refused: u64,
}

impl Replica {
    /// A server running `app`.
    pub fn new(app: App) -> Self {
        Replica {
            app,
            table: ClientTable::default(),
            executed: 0,
            refused: 0,
        }
    }

    /// A server whose client table holds at most `capacity` clients.
    pub fn with_table_capacity(app: App, capacity: usize) -> Self {
        Replica {
            table: ClientTable::with_capacity(capacity),
            ..Replica::new(app)
        }
    }

    /// The application, for checks.
    pub fn app(&self) -> &App {
        &self.app
    }
}

impl State for Replica {
    type Message = Message;

    fn on_message(&mut self, _from: Addr, msg: Message, cx: &mut Context<Message>) {
        let Message::Request(req) = msg else { return };
        match self.table.lookup(req.client, req.seq) {
            Lookup::Execute => {
                let result = self.app.execute(&req.op);
                self.executed += 1;
                cx.executed(self.executed, &req.op);
                let reply = Reply {
                    seq: req.seq,
                    result,
                };
                self.table.finish(req.client, req.seq, reply.clone());
                cx.send(Addr::Client(req.client), Message::Reply(reply));
            }
            Lookup::Resend(reply) => {
                cx.send(Addr::Client(req.client), Message::Reply(reply.clone()))
            }
            Lookup::Full => self.refused += 1,
            Lookup::InProgress | Lookup::Stale => {}
        }
    }

    fn executed(&self) -> u64 {
        self.executed
    }

    fn status(&self) -> String {
        format!("{} executed", self.executed)
    }
}

const RESEND: Timer = Timer(0);

/// A client: one request outstanding, resent (with backoff) until
/// answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    id: u64,
    seq: u64,
    pending: Option<Vec<u8>>,
    backoff: Backoff,
    /// Requests resent after a timeout.
    pub resends: u64,
}

impl Client {
    /// Client `id`, resending after `resend_after` (doubling while unanswered).
    pub fn new(id: u64, resend_after: Duration) -> Self {
        Client {
            id,
            seq: 0,
            pending: None,
            backoff: Backoff::new(resend_after),
            resends: 0,
        }
    }

    fn send(&self, cx: &mut Context<Message>, resend_after: Duration) {
        if let Some(op) = &self.pending {
            cx.send(
                Addr::Node(0),
                Message::Request(Request {
                    client: self.id,
                    seq: self.seq,
                    op: op.clone(),
                }),
            );
            cx.set_timer(RESEND, resend_after);
        }
    }
}

impl State for Client {
    type Message = Message;

    fn on_invoke(&mut self, op: Vec<u8>, cx: &mut Context<Message>) {
        self.seq += 1;
        self.pending = Some(op);
        let after = self.backoff.first();
        self.send(cx, after);
    }

    fn on_message(&mut self, _from: Addr, msg: Message, cx: &mut Context<Message>) {
        let Message::Reply(reply) = msg else { return };
        if self.pending.is_none() || reply.seq != self.seq {
            return; // a duplicate or a late answer to an earlier request
        }
        self.pending = None;
        cx.cancel_timer(RESEND);
        cx.complete(reply.result);
    }

    fn on_timer(&mut self, _timer: Timer, cx: &mut Context<Message>) {
        if self.pending.is_some() {
            self.resends += 1;
            let after = self.backoff.after_resend();
            self.send(cx, after);
        }
    }
}

fn run_replica(setup: Setup, supervisor: &mut dyn Supervisor) -> std::io::Result<Counters> {
    let replica = Replica::new(App::new(setup.command.app));
    let actors = vec![(setup.me, replica)];
    let outcome = run_host(
        actors,
        Arc::new(BincodeCodec::<Message>::new()),
        setup.host_config(),
        supervisor,
    )?;
    Ok(outcome.counters)
}

fn run_clients(setup: Setup, supervisor: &mut dyn Supervisor) -> std::io::Result<Counters> {
    let resend = Duration::from_micros(setup.command.params.resend_us);
    let actors = setup
        .client_ids()
        .map(|id| (Addr::Client(id), Client::new(id, resend)))
        .collect();
    let outcome = run_host(
        actors,
        Arc::new(BincodeCodec::<Message>::new()),
        setup.host_config(),
        supervisor,
    )?;
    let mut counters = outcome.counters;
    counters.resends = outcome.actors.iter().map(|c| c.resends).sum();
    Ok(counters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::Effect;

    fn reply_of(cx: &mut Context<Message>) -> Vec<Reply> {
        cx.drain()
            .filter_map(|e| match e {
                Effect::Send {
                    msg: Message::Reply(r),
                    ..
                } => Some(r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_resent_request_gets_the_cached_reply_and_is_not_executed_twice() {
        use crate::app::{encode_op, KvOp};
        let mut r = Replica::new(App::new(crate::app::AppKind::Kv));
        let mut cx = Context::new(Addr::Node(0), 0);
        let append = Request {
            client: 1,
            seq: 1,
            op: encode_op(&KvOp::Append("k".into(), "x".into())),
        };
        r.on_message(Addr::Client(1), Message::Request(append.clone()), &mut cx);
        r.on_message(Addr::Client(1), Message::Request(append), &mut cx);
        assert_eq!(reply_of(&mut cx).len(), 2, "the resend is answered");
        assert_eq!(r.executed, 1, "but executed once");
        let get = Request {
            client: 1,
            seq: 2,
            op: encode_op(&KvOp::Get("k".into())),
        };
        r.on_message(Addr::Client(1), Message::Request(get), &mut cx);
        let replies = reply_of(&mut cx);
        assert_eq!(
            crate::app::decode_result(&replies[0].result),
            Some(crate::app::KvResult::Value(Some("x".into())))
        );
    }

    #[test]
    fn client_resends_until_answered_and_ignores_stale_replies() {
        let mut c = Client::new(5, Duration::from_millis(10));
        let mut cx = Context::new(Addr::Client(5), 0);
        c.on_invoke(vec![1], &mut cx);
        assert_eq!(cx.drain().count(), 2); // request + timer
        c.on_timer(RESEND, &mut cx);
        assert_eq!(c.resends, 1);
        assert!(matches!(
            cx.drain().next(),
            Some(Effect::Send {
                to: Addr::Node(0),
                ..
            })
        ));
        c.on_message(
            Addr::Node(0),
            Message::Reply(Reply {
                seq: 0,
                result: vec![],
            }),
            &mut cx,
        );
        assert!(!cx.has_effects(), "stale reply ignored");
        c.on_message(
            Addr::Node(0),
            Message::Reply(Reply {
                seq: 1,
                result: vec![9],
            }),
            &mut cx,
        );
        let effects: Vec<_> = cx.drain().collect();
        assert!(effects.contains(&Effect::Complete(vec![9])));
    }
}
