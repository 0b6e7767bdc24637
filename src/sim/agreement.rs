//! Agreement: replicas never execute different operations at one
//! position, and clients only accept results of executed operations.

use super::history::History;
use crate::actor::Execution;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Checks what honest replicas reported executing (node id, its
/// executions in order) against each other and against the results the
/// clients accepted in `history`.
///
/// - No two honest replicas (nor one replica twice, e.g. across a
///   restart) execute different operations at the same position.
/// - For every operation, at least as many clients accepted a result for
///   it as some honest replica executed it at distinct positions. (Ops
///   are compared by digest; identical operations of different clients
///   are counted, not told apart.)
pub fn check_agreement(executed: &[(u16, &[Execution])], history: &History) -> Result<(), String> {
    let mut at: BTreeMap<u64, (u16, u64)> = BTreeMap::new();
    for (node, log) in executed {
        for e in log.iter() {
            match at.get(&e.position) {
                Some((other, digest)) if *digest != e.digest => {
                    return Err(format!(
                        "agreement violated at position {}: n{other} executed op {:016x}, n{node} executed op {:016x}",
                        e.position, digest, e.digest
                    ));
                }
                Some(_) => {}
                None => {
                    at.insert(e.position, (*node, e.digest));
                }
            }
        }
    }
    // How many times each op was executed, by the replica that executed
    // it most (distinct positions only: a restarted replica re-executing
    // its log is not a second execution).
    let mut most: HashMap<u64, usize> = HashMap::new();
    for (_, log) in executed {
        let distinct: HashSet<(u64, u64)> = log.iter().map(|e| (e.position, e.digest)).collect();
        let mut count: HashMap<u64, usize> = HashMap::new();
        for (_, digest) in distinct {
            *count.entry(digest).or_default() += 1;
        }
        for (digest, n) in count {
            let m = most.entry(digest).or_default();
            *m = (*m).max(n);
        }
    }
    let mut accepted: HashMap<u64, (usize, &super::history::Op)> = HashMap::new();
    for op in history.completed() {
        accepted.entry(op.digest).or_insert((0, op)).0 += 1;
    }
    let mut digests: Vec<_> = accepted.into_iter().collect();
    digests.sort_by_key(|(d, _)| *d);
    for (digest, (n, example)) in digests {
        let done = most.get(&digest).copied().unwrap_or(0);
        if n > done {
            return Err(format!(
                "clients accepted {n} result(s) of {:?} (op {digest:016x}, e.g. c{}) but no honest replica executed it more than {done} time(s)",
                example.op, example.client
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::op_digest;
    use crate::app::{encode_result, KvOp, KvResult};
    use std::time::Duration;

    fn ex(position: u64, digest: u64) -> Execution {
        Execution { position, digest }
    }

    #[test]
    fn conflicting_positions_and_unexecuted_results_are_caught() {
        let a = [ex(1, 10), ex(2, 20)];
        let b = [ex(1, 10)];
        let empty = History::new(1);
        assert_eq!(check_agreement(&[(0, &a), (1, &b)], &empty), Ok(()));
        let c = [ex(1, 11)];
        assert!(check_agreement(&[(0, &a), (2, &c)], &empty)
            .unwrap_err()
            .contains("position 1"));

        let mut h = History::new(1);
        let bytes = h.invoke(0, KvOp::Get("k".into()), Duration::ZERO);
        h.complete(0, &encode_result(&KvResult::Value(None)), Duration::ZERO)
            .unwrap();
        assert!(check_agreement(&[(0, &a)], &h).is_err(), "never executed");
        let d = [ex(1, op_digest(&bytes)), ex(1, op_digest(&bytes))];
        assert_eq!(check_agreement(&[(0, &d)], &h), Ok(()));
    }
}
