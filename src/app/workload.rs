//! What closed-loop clients send, and how they check the answers.

use super::kv::{decode_result, encode_op};
use crate::actor::Rng;
use std::collections::HashMap;
use troupe_message::app::{KvOp, KvResult, Workload};

/// The operations of one client, and the checker of their results.
///
/// For the key-value workload each client owns its keys (`c<id>-k<i>`),
/// so it knows exactly what every get must return: a lost, duplicated or
/// reordered execution shows up as a wrong result.
#[derive(Clone, Debug)]
pub struct OpSource {
    workload: Workload,
    client: u64,
    rng: Rng,
    model: HashMap<u32, String>,
    outstanding: Option<(KvOp, u32)>,
    counter: u64,
}

impl OpSource {
    /// The source of client `client`'s operations.
    pub fn new(workload: Workload, client: u64, seed: u64) -> Self {
        OpSource {
            workload,
            client,
            rng: Rng::new(seed ^ client.wrapping_mul(0x2545_f491_4f6c_dd1d)),
            model: HashMap::new(),
            outstanding: None,
            counter: 0,
        }
    }

    /// The next operation, as bytes for the protocol.
    pub fn next_op(&mut self) -> Vec<u8> {
        match self.workload {
            Workload::Null { op_size } => vec![0u8; op_size as usize],
            Workload::Kv {
                keys,
                read_ratio,
                value_size,
            } => {
                let key = self.rng.below(keys.max(1) as u64) as u32;
                let name = format!("c{}-k{}", self.client, key);
                self.counter += 1;
                let op = if self.rng.chance(read_ratio) {
                    KvOp::Get(name)
                } else {
                    let mut value = format!("{}.", self.counter);
                    while value.len() < value_size as usize {
                        value.push('v');
                    }
                    if self.rng.chance(0.5) {
                        KvOp::Put(name, value)
                    } else {
                        KvOp::Append(name, value)
                    }
                };
                let bytes = encode_op(&op);
                self.outstanding = Some((op, key));
                bytes
            }
        }
    }

    /// Checks the result of the last operation; `false` when it is not
    /// what a correct, linearizable service must answer.
    pub fn check(&mut self, result: &[u8]) -> bool {
        let Some((op, key)) = self.outstanding.take() else {
            return matches!(self.workload, Workload::Null { .. }) && result.is_empty();
        };
        let Some(result) = decode_result(result) else {
            return false;
        };
        match op {
            KvOp::Get(_) => result == KvResult::Value(self.model.get(&key).cloned()),
            KvOp::Put(_, v) => {
                self.model.insert(key, v);
                result == KvResult::Ok
            }
            KvOp::Append(_, v) => {
                self.model.entry(key).or_default().push_str(&v);
                result == KvResult::Ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::KvStore;

    #[test]
    fn a_correct_store_passes_and_a_lost_write_fails() {
        let workload = Workload::Kv {
            keys: 2,
            read_ratio: 0.5,
            value_size: 4,
        };
        let mut src = OpSource::new(workload.clone(), 7, 1);
        let mut kv = KvStore::default();
        for _ in 0..200 {
            let op = src.next_op();
            assert!(src.check(&kv.execute(&op)));
        }
        // Now drop a write on the floor: a later read must notice.
        let mut src = OpSource::new(workload, 7, 1);
        let mut kv = KvStore::default();
        let mut failed = false;
        for i in 0..200 {
            let op = src.next_op();
            let result = if i == 3 {
                crate::app::encode_result(&KvResult::Ok)
            } else {
                kv.execute(&op)
            };
            failed |= !src.check(&result);
        }
        assert!(failed);
    }
}
