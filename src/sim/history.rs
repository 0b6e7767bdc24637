//! What clients did: every operation with its invocation and return.

use crate::actor::op_digest;
use crate::app::{decode_result, encode_op, KvOp, KvResult};
use std::time::Duration;

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Which client.
    pub client: u64,
    /// What it asked.
    pub op: KvOp,
    /// [`op_digest`] of the bytes the protocol carried.
    pub digest: u64,
    /// Position of the invocation in the run's order of history events.
    pub invoked: u64,
    /// Virtual time of the invocation.
    pub invoked_at: Duration,
    /// Position and virtual time of the return, if it returned.
    pub returned: Option<(u64, Duration)>,
    /// The result the client accepted (`BadOp` when the bytes were not a
    /// result at all).
    pub result: Option<KvResult>,
}

/// Every operation of a run in invocation order. Real-time order is the
/// order of history events (`invoked` / `returned`), which is finer than
/// virtual time: two events at the same instant still happen one after
/// the other.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The operations.
    pub ops: Vec<Op>,
    clock: u64,
    outstanding: Vec<Option<usize>>,
}

impl History {
    /// An empty history for `clients` clients.
    pub fn new(clients: usize) -> Self {
        History {
            ops: Vec::new(),
            clock: 0,
            outstanding: vec![None; clients],
        }
    }

    /// Client `client` invokes `op` at `now`; returns the bytes to hand
    /// the protocol.
    pub fn invoke(&mut self, client: u64, op: KvOp, now: Duration) -> Vec<u8> {
        let bytes = encode_op(&op);
        self.clock += 1;
        self.outstanding[client as usize] = Some(self.ops.len());
        self.ops.push(Op {
            client,
            op,
            digest: op_digest(&bytes),
            invoked: self.clock,
            invoked_at: now,
            returned: None,
            result: None,
        });
        bytes
    }

    /// Client `client` accepted `result` at `now`. An error when it had no
    /// operation outstanding (a protocol bug).
    pub fn complete(&mut self, client: u64, result: &[u8], now: Duration) -> Result<(), String> {
        let Some(index) = self.outstanding[client as usize].take() else {
            return Err(format!(
                "client c{client} completed an operation it never invoked"
            ));
        };
        self.clock += 1;
        let op = &mut self.ops[index];
        op.returned = Some((self.clock, now));
        op.result = Some(decode_result(result).unwrap_or(KvResult::BadOp));
        Ok(())
    }

    /// The operation `client` has outstanding.
    pub fn outstanding(&self, client: u64) -> Option<&Op> {
        self.outstanding[client as usize].map(|i| &self.ops[i])
    }

    /// Operations that returned.
    pub fn completed(&self) -> impl Iterator<Item = &Op> {
        self.ops.iter().filter(|o| o.returned.is_some())
    }
}
