//! Wire types of troupe.
//!
//! Everything that crosses a socket is defined here, apart from the code
//! that acts on it: protocol messages, application operations, and the
//! control-plane [`control::Command`] / [`control::Report`]. Keeping the
//! serde derives in their own crate means tweaking a protocol does not
//! regenerate them, and lets `troupe-run` speak the control plane without
//! depending on the (large) root crate.

pub mod app;
pub mod control;
pub mod crunch;
pub mod multicast;
pub mod pbft;
pub mod unreplicated;

use serde::{Deserialize, Serialize};

/// Who a message is from or for: a small id, never a socket address.
///
/// The runtime maps ids to sockets; protocol code only ever sees these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Addr {
    /// A replica, server or other long-lived node, numbered from 0.
    Node(u16),
    /// A client. Ids are unique per run; a client host owns a dense range.
    Client(u64),
    /// Every member of a group (for example all replicas): a multicast.
    Group(u16),
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Node(n) => write!(f, "n{n}"),
            Addr::Client(c) => write!(f, "c{c}"),
            Addr::Group(g) => write!(f, "g{g}"),
        }
    }
}

/// The group that every replica of a replicated service belongs to.
pub const ALL_REPLICAS: Addr = Addr::Group(0);

/// One datagram: who sent it, who it is for, and the protocol message.
///
/// `to` lets one socket serve many light actors (thousands of clients on
/// a client host) by demultiplexing on the id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<M> {
    /// Sender.
    pub from: Addr,
    /// Recipient (never a group once on the wire: groups are expanded).
    pub to: Addr,
    /// Payload.
    pub body: M,
}
