//! Tunables of a session, and the errors its users see.

use std::time::Duration;

/// What the coordinator and member states need to know about timing and
/// sizes. Both sides of a session should use the same values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    /// How often each side says it is alive.
    pub heartbeat: Duration,
    /// Silence after which the coordinator removes a member, and a member
    /// declares the coordinator gone. A dead member stalls its groups for
    /// at most this plus one heartbeat interval (the check's period).
    pub member_timeout: Duration,
    /// How long a member tries to join before giving up.
    pub join_timeout: Duration,
    /// First delay before asking again for something lost (a missing
    /// datagram, an acknowledgement, a barrier release); doubles on each
    /// retry up to the heartbeat interval.
    pub repair_timeout: Duration,
    /// Largest datagram payload a broadcast packs.
    pub datagram_size: usize,
    /// Datagrams a broadcast keeps in flight (sent but not acknowledged by
    /// every member): the sender's memory bound and its flow control.
    pub window: usize,
    /// Bytes a member delivers to its application before it stops
    /// acknowledging (so a member that does not read slows the sender
    /// instead of growing without bound).
    pub recv_buffer: usize,
    /// Most members a session admits.
    pub max_members: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            heartbeat: Duration::from_millis(100),
            member_timeout: Duration::from_millis(800),
            join_timeout: Duration::from_secs(2),
            repair_timeout: Duration::from_millis(5),
            datagram_size: 32 * 1024,
            window: 256,
            recv_buffer: 16 << 20,
            max_members: 1024,
        }
    }
}

impl Params {
    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |why: &str| Err(Error::InvalidConfig(why.to_string()));
        if self.datagram_size < 64 || self.datagram_size > 60_000 {
            return bad("datagram_size must be within 64..=60000 bytes");
        }
        if self.window < 4 {
            return bad("window must be at least 4 datagrams");
        }
        if self.heartbeat.is_zero() || self.member_timeout <= self.heartbeat {
            return bad("member_timeout must exceed a non-zero heartbeat");
        }
        if self.repair_timeout.is_zero() {
            return bad("repair_timeout must be positive");
        }
        if self.max_members == 0 || self.recv_buffer == 0 {
            return bad("max_members and recv_buffer must be positive");
        }
        Ok(())
    }

    /// The delay before retry number `attempt` (0: the first).
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let cap = self.heartbeat.max(self.repair_timeout);
        self.repair_timeout
            .saturating_mul(1 << attempt.min(20))
            .min(cap)
    }
}

/// What can go wrong in a session, as its users see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// Nobody answered at the coordinator address (no session there, or
    /// one with a different session key).
    SessionNotFound(std::net::SocketAddr),
    /// The coordinator has no group of the kind asked for with this id.
    UnknownGroup(u16),
    /// A group with this id exists already.
    GroupExists(u16),
    /// The coordinator stopped answering or closed the session.
    CoordinatorGone,
    /// The coordinator no longer counts this member (it missed its
    /// heartbeats, or the session is full).
    Removed,
    /// The session on this side was closed.
    Closed,
    /// Settings that do not fit together.
    InvalidConfig(String),
    /// A socket or thread failed.
    Io(std::io::ErrorKind, String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::SessionNotFound(a) => {
                write!(f, "no session answers at {a} (or its key differs)")
            }
            Error::UnknownGroup(g) => write!(f, "the session has no group {g}"),
            Error::GroupExists(g) => write!(f, "group {g} exists already"),
            Error::CoordinatorGone => write!(f, "the coordinator is gone"),
            Error::Removed => write!(f, "the coordinator removed this member"),
            Error::Closed => write!(f, "the session is closed"),
            Error::InvalidConfig(why) => write!(f, "invalid session config: {why}"),
            Error::Io(_, e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.kind(), e.to_string())
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::SessionNotFound(_) | Error::UnknownGroup(_) => std::io::ErrorKind::NotFound,
            Error::GroupExists(_) => std::io::ErrorKind::AlreadyExists,
            Error::CoordinatorGone | Error::Removed | Error::Closed => {
                std::io::ErrorKind::ConnectionAborted
            }
            Error::InvalidConfig(_) => std::io::ErrorKind::InvalidInput,
            Error::Io(kind, _) => *kind,
        };
        std::io::Error::new(kind, e)
    }
}
