//! The applications protocols replicate, behind one interface, and the
//! workloads that closed-loop clients run against them.
//!
//! Protocols see operations and results as bytes; they call
//! [`App::execute`] in their agreed order, and [`App::snapshot`] /
//! [`App::restore`] for checkpoints and state transfer.

mod kv;
mod workload;

pub use kv::{decode_result, encode_op, encode_result, KvStore};
pub use troupe_message::app::{AppKind, KvOp, KvResult, Workload};
pub use workload::OpSource;

/// A replicated application. An enum rather than a trait object so that
/// replicas stay `Clone + Hash + Eq` for the model checker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum App {
    /// Answers every operation with an empty result.
    Null,
    /// An in-memory key-value store.
    Kv(KvStore),
}

impl App {
    /// A fresh application of `kind`.
    pub fn new(kind: AppKind) -> Self {
        match kind {
            AppKind::Null => App::Null,
            AppKind::Kv => App::Kv(KvStore::default()),
        }
    }

    /// Executes one operation and returns its result. Must be
    /// deterministic: every replica executing the same sequence reaches the
    /// same state.
    pub fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        match self {
            App::Null => Vec::new(),
            App::Kv(kv) => kv.execute(op),
        }
    }

    /// The whole state as bytes (for checkpoints and state transfer).
    pub fn snapshot(&self) -> Vec<u8> {
        match self {
            App::Null => Vec::new(),
            App::Kv(kv) => kv.snapshot(),
        }
    }

    /// Replaces the state by a snapshot; a malformed snapshot is an error
    /// and leaves the state as it was.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        match self {
            App::Null => Ok(()),
            App::Kv(kv) => kv.restore(snapshot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_app_answers_empty() {
        let mut app = App::new(AppKind::Null);
        assert!(app.execute(b"anything").is_empty());
        assert!(app.restore(b"").is_ok());
    }
}
