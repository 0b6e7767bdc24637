//! What can go wrong in an exchange, as values.

use std::fmt;

/// An exchange failure. Cloneable, because one lost peer is reported to
/// every worker that talks to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExchangeError {
    /// The cluster could not be set up: a peer never came, or disagreed
    /// about the cluster's shape.
    Connect(String),
    /// The connection to a peer process broke before it finished.
    PeerLost {
        /// The peer's process index.
        process: usize,
        /// What happened.
        reason: String,
    },
    /// A peer process sent bytes that are not a valid exchange frame or
    /// message of the expected type.
    Malformed {
        /// The peer's process index.
        process: usize,
        /// What was wrong.
        reason: String,
    },
    /// The channel id was already allocated with another message type.
    ChannelType {
        /// The channel id.
        channel: usize,
    },
    /// This worker already allocated the channel id.
    ChannelTaken {
        /// The channel id.
        channel: usize,
    },
    /// A message's encoding exceeds the largest frame.
    MessageTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A message could not be encoded.
    Encode(String),
    /// A bad configuration (no workers, index out of range, ...).
    Config(String),
    /// An operating-system failure outside any one connection.
    Io(String),
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::Connect(s) => write!(f, "cluster set-up failed: {s}"),
            ExchangeError::PeerLost { process, reason } => {
                write!(f, "lost process {process}: {reason}")
            }
            ExchangeError::Malformed { process, reason } => {
                write!(f, "malformed data from process {process}: {reason}")
            }
            ExchangeError::ChannelType { channel } => write!(
                f,
                "channel {channel} was allocated with a different message type"
            ),
            ExchangeError::ChannelTaken { channel } => {
                write!(f, "channel {channel} was already allocated by this worker")
            }
            ExchangeError::MessageTooLarge { bytes, max } => {
                write!(f, "message of {bytes} bytes exceeds the limit of {max}")
            }
            ExchangeError::Encode(s) => write!(f, "message could not be encoded: {s}"),
            ExchangeError::Config(s) => write!(f, "bad configuration: {s}"),
            ExchangeError::Io(s) => write!(f, "I/O failure: {s}"),
        }
    }
}

impl std::error::Error for ExchangeError {}
