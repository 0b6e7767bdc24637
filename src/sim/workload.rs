//! The operations simulated clients issue.

use crate::actor::Rng;
use crate::app::KvOp;

/// One client's stream of key-value operations over `keys` keys shared by
/// every client. Half are gets; the rest put or append a value that no
/// other operation writes, which keeps linearizability checking sharp and
/// fast (a read names the write it saw).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    rng: Rng,
    client: u64,
    /// Key names, made once.
    keys: Vec<String>,
    counter: u64,
}

impl Workload {
    /// The operations of `client`, fixed by `seed`.
    pub fn new(seed: u64, client: u64, keys: usize) -> Self {
        Workload {
            rng: Rng::new(seed ^ client.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x0bad_cafe),
            client,
            keys: (0..keys.max(1)).map(|k| format!("k{k}")).collect(),
            counter: 0,
        }
    }

    /// The next operation.
    pub fn next_op(&mut self) -> KvOp {
        self.counter += 1;
        let key = self.keys[self.rng.below(self.keys.len() as u64) as usize].clone();
        match self.rng.below(4) {
            0 | 1 => KvOp::Get(key),
            2 => KvOp::Put(key, format!("{}.{};", self.client, self.counter)),
            _ => KvOp::Append(key, format!("{}.{};", self.client, self.counter)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_seeded_and_written_values_unique() {
        let mut a = Workload::new(1, 0, 3);
        let mut b = Workload::new(1, 0, 3);
        let mut c = Workload::new(1, 1, 3);
        let mut written = std::collections::HashSet::new();
        for _ in 0..100 {
            let op = a.next_op();
            assert_eq!(op, b.next_op());
            for op in [op, c.next_op()] {
                if let KvOp::Put(_, v) | KvOp::Append(_, v) = op {
                    assert!(written.insert(v), "a value written twice");
                }
            }
        }
    }
}
