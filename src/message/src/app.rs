//! Operations of the applications that protocols replicate.
//!
//! Protocols carry operations and results as opaque bytes; these are the
//! typed forms the apps and workloads agree on.

use serde::{Deserialize, Serialize};

/// A key-value operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOp {
    /// Read a key.
    Get(String),
    /// Overwrite a key.
    Put(String, String),
    /// Append to a key's value (an absent key reads as empty).
    Append(String, String),
}

/// The result of a [`KvOp`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvResult {
    /// The value read by a `Get` (`None` when absent).
    Value(Option<String>),
    /// A `Put` or `Append` took effect.
    Ok,
    /// The operation bytes were not a `KvOp`.
    BadOp,
}

/// Which application a replica runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AppKind {
    /// Returns an empty result; measures the protocol alone.
    Null,
    /// An in-memory key-value store.
    Kv,
}

/// What the closed-loop clients send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Workload {
    /// Operations of `op_size` zero bytes, for the null app.
    Null {
        /// Bytes per operation.
        op_size: u32,
    },
    /// Key-value operations over `keys` keys private to each client:
    /// `read_ratio` of them gets, the rest split between puts and appends.
    /// Because the keys are private, every reply is checked exactly
    /// against what the client itself wrote.
    Kv {
        /// Distinct keys per client.
        keys: u32,
        /// Fraction of gets, 0.0 ..= 1.0.
        read_ratio: f64,
        /// Bytes per written value.
        value_size: u32,
    },
}
