//! Agreement: replicas never execute different operations at one
//! position, and clients only accept results of executed operations.

use super::history::History;
use crate::actor::Execution;

/// Checks what honest replicas reported executing (node id, its
/// executions in order) against each other and against the results the
/// clients accepted in `history`.
///
/// - No two honest replicas (nor one replica twice, e.g. across a
///   restart) execute different operations at the same position.
/// - For every operation, at least as many clients accepted a result for
///   it as honest replicas executed it at distinct positions. (Ops
///   are compared by digest; identical operations of different clients
///   are counted, not told apart.)
pub fn check_agreement(executed: &[(u16, &[Execution])], history: &History) -> Result<(), String> {
    // Sorting instead of hashing: every execution as (position, digest,
    // node), so conflicts at one position sit side by side.
    let mut all: Vec<(u64, u64, u16)> = executed
        .iter()
        .flat_map(|(node, log)| log.iter().map(|e| (e.position, e.digest, *node)))
        .collect();
    all.sort_unstable();
    for w in all.windows(2) {
        let ((p, d1, n1), (q, d2, n2)) = (w[0], w[1]);
        if p == q && d1 != d2 {
            return Err(format!(
                "agreement violated at position {p}: n{n1} executed op {d1:016x}, n{n2} executed op {d2:016x}"
            ));
        }
    }
    // How many times each op was executed: at how many distinct positions
    // of the one agreed order (checked above) any honest replica executed
    // it. Not per replica: one that caught up by state transfer executed
    // nothing its checkpoint covers, and a restarted one re-executing its
    // log is not a second execution.
    let mut distinct: Vec<(u64, u64)> = all.iter().map(|(p, d, _)| (*d, *p)).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let most = runs(distinct.iter().map(|(d, _)| *d));
    let mut accepted: Vec<u64> = history.completed().map(|op| op.digest).collect();
    accepted.sort_unstable();
    for (digest, n) in runs(accepted.into_iter()) {
        let done = match most.binary_search_by_key(&digest, |(d, _)| *d) {
            Ok(i) => most[i].1,
            Err(_) => 0,
        };
        if n > done {
            let example = history.completed().find(|op| op.digest == digest);
            let (op, client) =
                example.map_or((String::new(), 0), |o| (format!("{:?}", o.op), o.client));
            return Err(format!(
                "clients accepted {n} result(s) of {op} (op {digest:016x}, e.g. c{client}) but honest replicas executed it only {done} time(s)"
            ));
        }
    }
    Ok(())
}

/// Lengths of runs of equal values in a sorted sequence.
fn runs(sorted: impl Iterator<Item = u64>) -> Vec<(u64, usize)> {
    let mut out: Vec<(u64, usize)> = Vec::new();
    for x in sorted {
        match out.last_mut() {
            Some((y, n)) if *y == x => *n += 1,
            _ => out.push((x, 1)),
        }
    }
    out
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

        // Two clients ran the same op, executed at positions 1 and 2; each
        // replica skipped one of the two by a state transfer. Both count,
        // but not a third.
        let mut h = History::new(3);
        let mut bytes = Vec::new();
        for c in 0..2 {
            bytes = h.invoke(c, KvOp::Get("k".into()), Duration::ZERO);
            h.complete(c, &encode_result(&KvResult::Value(None)), Duration::ZERO)
                .unwrap();
        }
        let (x, y) = ([ex(1, op_digest(&bytes))], [ex(2, op_digest(&bytes))]);
        assert_eq!(check_agreement(&[(0, &x), (1, &y)], &h), Ok(()));
        h.invoke(2, KvOp::Get("k".into()), Duration::ZERO);
        h.complete(2, &encode_result(&KvResult::Value(None)), Duration::ZERO)
            .unwrap();
        assert!(check_agreement(&[(0, &x), (1, &y)], &h).is_err());
    }
}
