//! UDP-multicast sessions: a coordinator, members that join and leave at
//! any time, and groups inside the session: barrier groups (`wait()`
//! returns everywhere once everyone arrived) and broadcast groups (the
//! coordinator writes messages of any size; every member reads all of
//! them, in order, exactly once, over lossy multicast).
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use troupe::multicast::{Coordinator, Member};
//!
//! # fn main() -> Result<(), troupe::multicast::Error> {
//! let coordinator = Coordinator::start_session(
//!     "127.0.0.1:12345".parse().unwrap(),
//!     "239.1.2.3:55555".parse().unwrap(),
//! )?;
//! let mut sender = coordinator.create_broadcast_group(Some(0))?;
//!
//! let member = Member::join_session("127.0.0.1:12345".parse().unwrap())?;
//! let mut receiver = member.join_broadcast_group(0)?;
//! sender.accept()?;
//!
//! sender.write_message().write_all(b"SOME DATA").unwrap();
//! sender.wait()?;
//! let mut text = String::new();
//! receiver.recv()?.read().read_to_string(&mut text).unwrap();
//! assert_eq!(text, "SOME DATA");
//! # Ok(()) }
//! ```
//!
//! How it works: the coordinator ([`CoordinatorState`]) and each member
//! ([`MemberState`]) are sans-IO states, each driven by an epoll loop on a
//! thread of its own (the simulator drives the same states). Multicast
//! sockets name their interface explicitly, so loopback works with no
//! multicast route. Broadcasts pack messages into numbered datagrams;
//! members acknowledge cumulatively when asked (every quarter window, and
//! at the end of a burst), report gaps by NACK and get them resent by
//! unicast; a poll after silence finds a lost tail. The window of
//! unacknowledged datagrams bounds the sender's memory and paces it to
//! the slowest member. A member whose heartbeats stop is removed after
//! `Params::member_timeout`, and the groups carry on without it.

mod broadcast;
mod codec;
mod coordinator;
mod endpoint;
mod member;
mod member_api;
mod params;
mod pieces;
mod receiver;
mod session;
pub mod sim;
#[cfg(test)]
mod tests;

pub use codec::SessionCodec;
pub use coordinator::{
    CoordinatorCommand, CoordinatorEvent, CoordinatorState, CoordinatorStats, COORDINATOR,
    SESSION_GROUP,
};
pub use member::{MemberCommand, MemberEvent, MemberState};
pub use params::{Error, Params};
pub use session::{
    BarrierGroupCoordinator, BarrierGroupMember, BroadcastGroupReceiver, BroadcastGroupSender,
    BroadcastMessage, Config, Coordinator, Member, MessageWriter,
};
pub use troupe_message::multicast::{GroupKind, Message};

/// A member's id in its session (drawn at random when it joins).
pub type MemberId = u64;
