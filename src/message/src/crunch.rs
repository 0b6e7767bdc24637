//! Messages of chunked work distribution (`troupe::crunch`): a server
//! hands out chunks of a job, nodes compute them and send results back,
//! heartbeats tell the server who is still alive.
//!
//! The same enum also crosses the two hops inside a node process (node
//! protocol to its compute worker and back), so one codec and one
//! simulator network carry everything.

use serde::{Deserialize, Serialize};

/// Identifies one chunk of a job, `0..chunks`.
pub type ChunkId = u64;

/// Every message of the crunch protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// Node to server: let me join; keep up to `window` chunks in flight
    /// at me (prefetch, so I never wait a round trip for work).
    Register {
        /// Chunks the node wants in flight at once (the server caps it).
        window: u32,
    },
    /// Server to node (and node to its worker): you are in. Heartbeat
    /// every `heartbeat_us` microseconds; `initial` is the job's data
    /// common to all chunks.
    Welcome {
        /// Heartbeat interval the server expects, in microseconds.
        heartbeat_us: u64,
        /// The job's initial data.
        initial: Vec<u8>,
    },
    /// Server to node (and node to its worker): compute this chunk.
    Work {
        /// Which chunk.
        chunk: ChunkId,
        /// The chunk's input.
        data: Vec<u8>,
    },
    /// Node to server (and worker to node): the result of a chunk.
    Result {
        /// Which chunk.
        chunk: ChunkId,
        /// Its result.
        data: Vec<u8>,
    },
    /// Worker to node: computing a chunk failed.
    Failed {
        /// Which chunk.
        chunk: ChunkId,
        /// Why.
        error: String,
    },
    /// Node to server: still alive, holding these chunks (received, not
    /// yet returned). A chunk the server assigned to the node that is
    /// missing from two heartbeats in a row was lost on the way, and the
    /// server hands it out again.
    Heartbeat {
        /// Chunks in flight at the node.
        held: Vec<ChunkId>,
    },
    /// Server to node: heartbeat heard (so a node notices a silent server).
    Alive,
    /// Server to node: you are not registered (you were declared dead, or
    /// the server restarted): register again.
    Rejoin,
    /// Server to node: the job is finished, exit.
    Done,
    /// Runtime to actor, never sent by a peer on purpose: the connection
    /// to the sender closed. A peer that sends it anyway only says what
    /// closing its connection would say.
    Closed,
}
