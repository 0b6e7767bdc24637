//! Messages of PBFT (Castro and Liskov, OSDI 1999), signature variant.
//!
//! Replica-to-replica statements are [`Signed`]: the body names its author
//! and the signature is filled in by the sender's shared stage on the way
//! out, so statements can be carried inside others (prepared certificates
//! in a view change, view changes in a new view, checkpoint proofs) and
//! still be checked by whoever receives them. Client requests and replies
//! carry an [`Auth`]: a MAC per replica, a signature, or nothing.

use serde::{Deserialize, Serialize};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// A statement and its author's signature over it (empty until the
/// author's shared stage signs it; a receiver's shared stage drops any
/// message with a signature that does not verify).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signed<T> {
    /// The statement; it names its author.
    pub body: T,
    /// Compact secp256k1 signature by the author.
    pub sig: Vec<u8>,
}

impl<T> Signed<T> {
    /// An unsigned statement, to be signed on the way out.
    pub fn new(body: T) -> Self {
        Signed {
            body,
            sig: Vec::new(),
        }
    }
}

/// How a client request or a reply is authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Auth {
    /// Not at all (measuring the protocol without client authentication).
    None,
    /// MACs: for a request one per replica (an authenticator), for a
    /// reply the one for its client.
    Macs(Vec<Digest>),
    /// A secp256k1 signature by the client (requests) or the replica
    /// (replies).
    Signature(Vec<u8>),
}

/// A client's operation. `(client, seq)` names it; a resend carries the
/// same `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Request {
    /// Client id.
    pub client: u64,
    /// Per-client sequence number, from 1.
    pub seq: u64,
    /// Application operation.
    pub op: Vec<u8>,
    /// The client's authentication of `(client, seq, op)`.
    pub auth: Auth,
}

/// A replica's answer to request `seq` of a client.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reply {
    /// View the replica is in (tells the client who the primary is).
    pub view: u64,
    /// The request's sequence number.
    pub seq: u64,
    /// Answering replica.
    pub replica: u16,
    /// Application result.
    pub result: Vec<u8>,
    /// The replica's authentication of `(view, seq, replica, result)`
    /// for this client.
    pub auth: Auth,
}

/// The primary's proposal of the batch with `digest` at sequence number
/// `seq` in `view`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Proposal {
    /// View.
    pub view: u64,
    /// Sequence number.
    pub seq: u64,
    /// Digest of the batch.
    pub digest: Digest,
    /// Author (the primary of `view`).
    pub replica: u16,
}

/// The primary's pre-prepare: a signed proposal and the batch itself
/// (checked against the proposal's digest, so it needs no signature).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrePrepare {
    /// The proposal.
    pub proposal: Signed<Proposal>,
    /// The requests, in the order they execute.
    pub batch: Vec<Request>,
}

/// A vote in the prepare or the commit phase for `digest` at `seq` in
/// `view`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Vote {
    /// Which phase.
    pub phase: Phase,
    /// View.
    pub view: u64,
    /// Sequence number.
    pub seq: u64,
    /// Digest of the batch.
    pub digest: Digest,
    /// Author.
    pub replica: u16,
}

/// The two voting phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// "I accept the proposal."
    Prepare,
    /// "I saw a quorum prepare it."
    Commit,
}

/// "My state after executing through `seq` has `digest`."
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Sequence number the state is after.
    pub seq: u64,
    /// Digest of the application state and the client table.
    pub digest: Digest,
    /// Author.
    pub replica: u16,
}

/// Proof that a batch prepared: the primary's proposal and 2f prepare
/// votes from distinct backups, all for the same view, seq and digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Prepared {
    /// The proposal.
    pub proposal: Signed<Proposal>,
    /// The prepare votes.
    pub prepares: Vec<Signed<Vote>>,
}

/// "I leave my view for `view`": the sender's stable checkpoint with its
/// proof, and every batch above it that it prepared.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ViewChange {
    /// The view the sender moves to.
    pub view: u64,
    /// The sender's stable checkpoint (seq 0, empty proof: the start).
    pub stable: u64,
    /// Its state digest.
    pub stable_digest: Digest,
    /// 2f+1 matching checkpoint messages (empty for seq 0).
    pub proof: Vec<Signed<Checkpoint>>,
    /// Prepared certificates for sequence numbers above `stable`.
    pub prepared: Vec<Prepared>,
    /// Author.
    pub replica: u16,
}

/// The new primary's announcement of `view`: 2f+1 view changes, and the
/// proposals they force, re-issued in the new view (every replica
/// recomputes them from the view changes and checks).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NewView {
    /// The view that starts.
    pub view: u64,
    /// The view changes it is built from, from distinct replicas.
    pub view_changes: Vec<Signed<ViewChange>>,
    /// Proposals for every sequence number between the highest stable
    /// checkpoint and the highest prepared batch in them.
    pub proposals: Vec<Signed<Proposal>>,
    /// Author (the primary of `view`).
    pub replica: u16,
}

/// A batch whose proposal committed: 2f+1 commit votes and the batch,
/// sent to a replica that is catching up.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Committed {
    /// The commit votes, from distinct replicas, all for one view, seq and
    /// digest.
    pub commits: Vec<Signed<Vote>>,
    /// The batch (checked against the votes' digest).
    pub batch: Vec<Request>,
}

/// One piece of a checkpoint's state, sent to a replica that fell behind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateChunk {
    /// 2f+1 matching checkpoint messages naming the state.
    pub proof: Vec<Signed<Checkpoint>>,
    /// Index of this chunk.
    pub index: u32,
    /// Chunks in the whole snapshot.
    pub total: u32,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Every message of PBFT.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// Client to replicas (or forwarded by a backup to the primary).
    Request(Request),
    /// Replica to client.
    Reply(Reply),
    /// Primary to backups.
    PrePrepare(PrePrepare),
    /// Prepare or commit vote, to every replica.
    Vote(Signed<Vote>),
    /// Checkpoint, to every replica.
    Checkpoint(Signed<Checkpoint>),
    /// View change, to every replica.
    ViewChange(Signed<ViewChange>),
    /// New view, from the new primary to every replica.
    NewView(Signed<NewView>),
    /// "I have executed through `executed`; send me what follows", from a
    /// replica that fell behind.
    Fetch {
        /// Highest sequence number the sender executed.
        executed: u64,
        /// Digests of batches the sender has agreed on but lacks.
        batches: Vec<Digest>,
        /// The sender.
        replica: u16,
    },
    /// A batch by digest, answering a fetch.
    Batch(Vec<Request>),
    /// A committed batch, answering a fetch.
    Committed(Committed),
    /// A piece of checkpoint state, answering a fetch.
    State(StateChunk),
}
