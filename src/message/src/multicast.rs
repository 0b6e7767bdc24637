//! Messages of multicast sessions: one coordinator, members that join and
//! leave, barrier and broadcast groups inside the session.
//!
//! Members are `Addr::Client(id)` (an id each member draws at random), the
//! coordinator is `Addr::Node(0)`, and `Addr::Group(0)` is the session's
//! multicast address.

use serde::{Deserialize, Serialize};

/// What kind of group a group id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupKind {
    /// `wait()` returns everywhere once everyone has arrived.
    Barrier,
    /// The coordinator writes, every member reads everything in order.
    Broadcast,
}

/// One datagram's worth of protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    // ---- member -> coordinator ----
    /// Asks where the session multicasts (answered with `SessionInfo`,
    /// joining nothing).
    Hello,
    /// Asks to join the session (resent until `Welcome`).
    Join,
    /// Leaves the session for good.
    Leave,
    /// "Still here", sent every heartbeat interval.
    Heartbeat,
    /// Asks to join a group (resent until `GroupJoined` or `UnknownGroup`).
    JoinGroup {
        /// Group id.
        group: u16,
        /// The kind the member expects (a group of the other kind is
        /// answered with `UnknownGroup`).
        kind: GroupKind,
    },
    /// Leaves a group, staying in the session.
    LeaveGroup {
        /// Group id.
        group: u16,
    },
    /// Barrier: this member reached round `round`.
    Arrive {
        /// Group id.
        group: u16,
        /// Round counter, from 0.
        round: u64,
    },
    /// Broadcast: this member holds every datagram below `next`.
    Ack {
        /// Group id.
        group: u16,
        /// Cumulative acknowledgement.
        next: u64,
    },
    /// Broadcast: these datagrams are missing (half-open ranges).
    Nack {
        /// Group id.
        group: u16,
        /// Missing `[from, to)` ranges, oldest first.
        missing: Vec<(u64, u64)>,
    },

    // ---- coordinator -> member ----
    /// The session's multicast address, as IPv4 address and port.
    SessionInfo {
        /// IPv4 address, big-endian bits.
        ip: u32,
        /// UDP port.
        port: u16,
    },
    /// The member is in the session.
    Welcome {
        /// How often the member must send a heartbeat, in milliseconds.
        heartbeat_ms: u32,
    },
    /// The member is in group `group`, starting at `start` (barrier: the
    /// round it takes part in next; broadcast: the first datagram it
    /// receives).
    GroupJoined {
        /// Group id.
        group: u16,
        /// Barrier or broadcast.
        kind: GroupKind,
        /// First round or datagram.
        start: u64,
    },
    /// No group with this id exists.
    UnknownGroup {
        /// Group id.
        group: u16,
    },
    /// The coordinator does not know the sender (never joined, left, or
    /// was removed after missing its heartbeats).
    NotMember,
    /// Barrier: round `round` is complete.
    Release {
        /// Group id.
        group: u16,
        /// Completed round.
        round: u64,
    },
    /// Broadcast: datagram `seq` of the group's stream. The payload holds
    /// pieces of messages (see the member's reassembly).
    Data {
        /// Group id.
        group: u16,
        /// Datagram sequence number.
        seq: u64,
        /// Ask every member to acknowledge now.
        ack_now: bool,
        /// Packed message pieces.
        payload: Vec<u8>,
    },
    /// Broadcast: datagrams below `next` have been sent; members missing
    /// any ask for them, everyone acknowledges. Sent when acknowledgements
    /// are overdue, so a lost tail is found.
    Poll {
        /// Group id.
        group: u16,
        /// Next datagram sequence number.
        next: u64,
    },
    /// The coordinator's heartbeat (multicast).
    Alive,
    /// The session is over.
    Closed,
}
