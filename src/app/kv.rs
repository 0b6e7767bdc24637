//! The key-value application.

use std::collections::BTreeMap;
use troupe_message::app::{KvOp, KvResult};

/// An in-memory key-value store with get, put and append. A `BTreeMap`
/// so that snapshots and hashes are deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvStore {
    map: BTreeMap<String, String>,
}

impl KvStore {
    /// Executes an encoded [`KvOp`]; bytes that are not one yield
    /// [`KvResult::BadOp`] (a Byzantine client cannot crash a replica).
    pub fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        let result = match bincode::deserialize::<KvOp>(op) {
            Ok(op) => self.apply(op),
            Err(_) => KvResult::BadOp,
        };
        encode_result(&result)
    }

    /// Applies a typed operation.
    pub fn apply(&mut self, op: KvOp) -> KvResult {
        match op {
            KvOp::Get(k) => KvResult::Value(self.map.get(&k).cloned()),
            KvOp::Put(k, v) => {
                self.map.insert(k, v);
                KvResult::Ok
            }
            KvOp::Append(k, v) => {
                self.map.entry(k).or_default().push_str(&v);
                KvResult::Ok
            }
        }
    }

    /// The store as bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        bincode::serialize(&self.map).unwrap_or_default()
    }

    /// Replaces the store by a snapshot.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        use bincode::Options;
        let map = bincode::options()
            .with_fixint_encoding()
            .with_limit(snapshot.len() as u64 + 64)
            .deserialize(snapshot)
            .map_err(|e| format!("malformed key-value snapshot: {e}"))?;
        self.map = map;
        Ok(())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Encodes a key-value operation for a protocol to carry.
pub fn encode_op(op: &KvOp) -> Vec<u8> {
    bincode::serialize(op).unwrap_or_default()
}

/// Encodes a result.
pub fn encode_result(result: &KvResult) -> Vec<u8> {
    bincode::serialize(result).unwrap_or_default()
}

/// Decodes a result; `None` for bytes that are not one.
pub fn decode_result(bytes: &[u8]) -> Option<KvResult> {
    bincode::deserialize(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_put_append_snapshot() {
        let mut kv = KvStore::default();
        let run = |kv: &mut KvStore, op: KvOp| decode_result(&kv.execute(&encode_op(&op))).unwrap();
        assert_eq!(run(&mut kv, KvOp::Get("a".into())), KvResult::Value(None));
        assert_eq!(
            run(&mut kv, KvOp::Append("a".into(), "x".into())),
            KvResult::Ok
        );
        assert_eq!(
            run(&mut kv, KvOp::Append("a".into(), "y".into())),
            KvResult::Ok
        );
        assert_eq!(
            run(&mut kv, KvOp::Get("a".into())),
            KvResult::Value(Some("xy".into()))
        );
        assert_eq!(
            run(&mut kv, KvOp::Put("a".into(), "z".into())),
            KvResult::Ok
        );
        assert_eq!(
            decode_result(&kv.execute(b"\xff\xff")),
            Some(KvResult::BadOp)
        );

        let snap = kv.snapshot();
        let mut other = KvStore::default();
        other.restore(&snap).unwrap();
        assert_eq!(other, kv);
        assert!(other.restore(&[0xff; 9]).is_err());
        assert_eq!(other, kv, "a bad snapshot leaves the state alone");
    }
}
