//! Messages of the unreplicated baseline: one server, at-most-once RPC.

use serde::{Deserialize, Serialize};

/// A client request. `(client, seq)` names the operation uniquely;
/// a resend carries the same `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Request {
    /// Client id.
    pub client: u64,
    /// Per-client sequence number, starting at 1.
    pub seq: u64,
    /// Application operation, encoded by the app (see [`crate::app`]).
    pub op: Vec<u8>,
}

/// The server's answer to the request `(client, seq)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reply {
    /// Sequence number of the request this answers.
    pub seq: u64,
    /// Application result.
    pub result: Vec<u8>,
}

/// Every message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// Client to server.
    Request(Request),
    /// Server to client.
    Reply(Reply),
}
