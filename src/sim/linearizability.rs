//! Linearizability of key-value histories: the Wing & Gong search with
//! Lowe's memoisation, one key at a time.
//!
//! Linearizability is compositional: a history is linearizable exactly
//! when its restriction to each key is. Checking keys apart turns one
//! search over thousands of operations into many small ones.
//!
//! For one key the search walks the history's invocation and return events
//! in real-time order, tries to linearize each pending call against the
//! sequential model, backtracks at a return whose operation it could not
//! place, and remembers every (set of linearized operations, model state)
//! it has explored so it never explores one twice. Operations that never
//! returned may take effect at any point after their call, or never.

use super::history::{History, Op};
use crate::app::{KvOp, KvResult};
use std::collections::{BTreeMap, HashSet};
use std::hash::Hasher;

/// Search steps after which a key's check gives up (reported as a
/// failure, so it is never silently skipped).
const STEP_BUDGET: u64 = 10_000_000;

/// Checks that `history` is linearizable with respect to a key-value
/// store; the error names the key and lists its operations.
pub fn check_linearizable(history: &History) -> Result<(), String> {
    check_linearizable_with(history, |_| u64::MAX)
}

/// [`check_linearizable`] with a hint: at each point the search first
/// tries the operations with the smallest `hint` (e.g. the order in which
/// a replica executed them). The verdict does not depend on the hint, only
/// the time to reach it: a correct protocol's execution order is a
/// linearization, so the search walks straight through it, where
/// concurrent appends would otherwise make it try their orders one by one.
pub fn check_linearizable_with(history: &History, hint: impl Fn(&Op) -> u64) -> Result<(), String> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &history.ops {
        // A read that never returned constrains nothing.
        if op.returned.is_none() && matches!(op.op, KvOp::Get(_)) {
            continue;
        }
        by_key.entry(key_of(&op.op)).or_default().push(op);
    }
    for (key, ops) in by_key {
        let ranks: Vec<u64> = ops.iter().map(|o| hint(o)).collect();
        check_key(&ops, &ranks).map_err(|(why, stuck)| describe(key, &ops, &why, stuck))?;
    }
    Ok(())
}

fn key_of(op: &KvOp) -> &str {
    match op {
        KvOp::Get(k) | KvOp::Put(k, _) | KvOp::Append(k, _) => k,
    }
}

/// A value's fingerprint: its polynomial hash modulo 2^61 - 1 under two
/// bases. Appending is arithmetic on fingerprints, so the model state is
/// two words however long the value grows, and comparing a read against
/// it costs nothing.
type Fp = (u64, u64);

const MODULUS: u64 = (1 << 61) - 1;
const BASES: (u64, u64) = (
    0x1f3d_5b79_a2c4_e681 % MODULUS,
    0x0765_4321_89ab_cdef % MODULUS,
);

fn mul_mod(a: u64, b: u64) -> u64 {
    let p = a as u128 * b as u128;
    let r = (p as u64 & MODULUS) + (p >> 61) as u64;
    if r >= MODULUS {
        r - MODULUS
    } else {
        r
    }
}

fn add_mod(a: u64, b: u64) -> u64 {
    let r = a + b;
    if r >= MODULUS {
        r - MODULUS
    } else {
        r
    }
}

/// The fingerprint of `s` and `BASE^len(s)` (what appending `s` shifts by).
fn fingerprint(s: &str) -> (Fp, Fp) {
    let (mut h, mut shift) = ((0, 0), (1, 1));
    for b in s.bytes() {
        h.0 = add_mod(mul_mod(h.0, BASES.0), b as u64 + 1);
        h.1 = add_mod(mul_mod(h.1, BASES.1), b as u64 + 1);
        shift = (mul_mod(shift.0, BASES.0), mul_mod(shift.1, BASES.1));
    }
    (h, shift)
}

/// One operation as the sequential model of a key sees it. The model
/// state is the fingerprint of the key's value (`None`: absent).
#[derive(Clone, Copy)]
enum Step {
    /// A read that returned this.
    Read(Option<Fp>),
    /// A read with no result to match (never returned).
    ReadAny,
    /// Overwrite with the value of this fingerprint.
    Write(Fp),
    /// Append a value of this fingerprint and shift.
    Append(Fp, Fp),
    /// Its result fits no state (e.g. a put that answered a value).
    Never,
}

impl Step {
    fn of(op: &Op) -> Step {
        match (&op.op, &op.result) {
            (KvOp::Get(_), None) => Step::ReadAny,
            (KvOp::Get(_), Some(KvResult::Value(v))) => {
                Step::Read(v.as_deref().map(|v| fingerprint(v).0))
            }
            (KvOp::Put(_, v), None | Some(KvResult::Ok)) => Step::Write(fingerprint(v).0),
            (KvOp::Append(_, v), None | Some(KvResult::Ok)) => {
                let (h, shift) = fingerprint(v);
                Step::Append(h, shift)
            }
            _ => Step::Never,
        }
    }

    /// The state after this step from `state`, or `None` when the step's
    /// result is impossible there.
    fn apply(self, state: Option<Fp>) -> Option<Option<Fp>> {
        match self {
            Step::Read(seen) => (seen == state).then_some(state),
            Step::ReadAny => Some(state),
            Step::Write(v) => Some(Some(v)),
            Step::Append(v, shift) => {
                let s = state.unwrap_or((0, 0));
                Some(Some((
                    add_mod(mul_mod(s.0, shift.0), v.0),
                    add_mod(mul_mod(s.1, shift.1), v.1),
                )))
            }
            Step::Never => None,
        }
    }
}

const NIL: usize = usize::MAX;

/// Invocation and return events of one key as a doubly linked list
/// (node 0 is the head), so that linearized operations can be lifted out
/// and put back in LIFO order.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each node: the operation and whether it is the call.
    what: Vec<(usize, bool)>,
    call: Vec<usize>,
    ret: Vec<usize>,
}

impl Events {
    fn new(ops: &[&Op]) -> Self {
        let mut stamps: Vec<(u64, usize, bool)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            stamps.push((op.invoked, i, true));
            if let Some((at, _)) = op.returned {
                stamps.push((at, i, false));
            }
        }
        stamps.sort_unstable();
        let n = stamps.len() + 1;
        let mut e = Events {
            next: (1..=n).collect(),
            prev: (0..n).map(|i| i.wrapping_sub(1)).collect(),
            what: vec![(NIL, false); n],
            call: vec![NIL; ops.len()],
            ret: vec![NIL; ops.len()],
        };
        e.next[n - 1] = NIL;
        for (k, (_, op, is_call)) in stamps.into_iter().enumerate() {
            e.what[k + 1] = (op, is_call);
            if is_call {
                e.call[op] = k + 1;
            } else {
                e.ret[op] = k + 1;
            }
        }
        e
    }

    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n != NIL {
            self.prev[n] = x;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call[op]);
        if self.ret[op] != NIL {
            self.unlink(self.ret[op]);
        }
    }

    fn unlift(&mut self, op: usize) {
        if self.ret[op] != NIL {
            self.relink(self.ret[op]);
        }
        self.relink(self.call[op]);
    }
}

/// A cheap hasher for the memo table, whose keys are already random
/// words.
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type Memo = HashSet<(u64, u64, Option<Fp>), std::hash::BuildHasherDefault<WordHasher>>;

/// The operations that may be linearized next (calls before the first
/// pending return), best hint first.
fn candidates(events: &Events, ranks: &[u64], out: &mut Vec<usize>) {
    out.clear();
    let mut c = events.next[0];
    while c != NIL && events.what[c].1 {
        out.push(events.what[c].0);
        c = events.next[c];
    }
    out.sort_unstable_by_key(|op| (ranks[*op], *op));
}

/// The first return still in the list: the operation the search could
/// not place at its deepest point.
fn frontier(events: &Events) -> Option<usize> {
    let mut c = events.next[0];
    while c != NIL {
        if !events.what[c].1 {
            return Some(events.what[c].0);
        }
        c = events.next[c];
    }
    None
}

/// Why a key failed: the reason and the operation the search got stuck on.
type Stuck = (String, Option<usize>);

fn check_key(ops: &[&Op], ranks: &[u64]) -> Result<(), Stuck> {
    let steps: Vec<Step> = ops.iter().map(|o| Step::of(o)).collect();
    let mut events = Events::new(ops);
    let mut remaining = ops.iter().filter(|o| o.returned.is_some()).count();
    // The set of linearized operations, as a Zobrist hash: a random
    // 128-bit key per operation, XORed in and out.
    let mut rng = crate::actor::Rng::new(ops.len() as u64);
    let keys: Vec<(u64, u64)> = ops
        .iter()
        .map(|_| (rng.next_u64(), rng.next_u64()))
        .collect();
    let mut set = (0u64, 0u64);
    let mut seen = Memo::default();
    let mut stack: Vec<(usize, Option<Fp>, bool)> = Vec::new();
    let mut state: Option<Fp> = None;
    let mut cands = Vec::new();
    candidates(&events, ranks, &mut cands);
    let mut next_cand = 0;
    let mut budget = STEP_BUDGET;
    let (mut deepest, mut stuck) = (0, frontier(&events));
    loop {
        if remaining == 0 {
            return Ok(());
        }
        budget -= 1;
        if budget == 0 {
            return Err((format!("search gave up after {STEP_BUDGET} steps"), stuck));
        }
        let Some(&op) = cands.get(next_cand) else {
            // Every candidate failed here: undo the latest choice and try
            // the candidate after it. A forced read had no alternative
            // worth trying, so undo past it too.
            loop {
                let Some((op, old, forced)) = stack.pop() else {
                    return Err(("no linearization exists".into(), stuck));
                };
                state = old;
                set = (set.0 ^ keys[op].0, set.1 ^ keys[op].1);
                if ops[op].returned.is_some() {
                    remaining += 1;
                }
                events.unlift(op);
                candidates(&events, ranks, &mut cands);
                next_cand = cands
                    .iter()
                    .position(|c| *c == op)
                    .map_or(cands.len(), |i| i + 1);
                if !forced {
                    break;
                }
            }
            continue;
        };
        next_cand += 1;
        let Some(next) = steps[op].apply(state) else {
            continue;
        };
        // A read that fits the current state is linearized here and now
        // without branching: it changes nothing, and every operation that
        // must precede it already has been placed, so if any linearization
        // exists, one with the read here does.
        let forced = matches!(steps[op], Step::Read(_) | Step::ReadAny);
        let with = (set.0 ^ keys[op].0, set.1 ^ keys[op].1);
        if seen.insert((with.0, with.1, next)) {
            stack.push((op, state, forced));
            state = next;
            set = with;
            events.lift(op);
            if ops[op].returned.is_some() {
                remaining -= 1;
            }
            candidates(&events, ranks, &mut cands);
            next_cand = 0;
            if stack.len() > deepest {
                deepest = stack.len();
                stuck = frontier(&events);
            }
        }
    }
}

/// The failure report: the operations of the key around the one the
/// search could not place (marked), in invocation order.
fn describe(key: &str, ops: &[&Op], why: &str, stuck: Option<usize>) -> String {
    const BEFORE: usize = 25;
    const AFTER: usize = 10;
    let at = stuck.unwrap_or(0);
    let (from, to) = (at.saturating_sub(BEFORE), (at + AFTER + 1).min(ops.len()));
    let mut out = format!("not linearizable on key {key:?} ({why})");
    if let Some(i) = stuck {
        let o = ops[i];
        out.push_str(&format!(
            "; no order explains c{}'s {:?} -> {:?}",
            o.client, o.op, o.result
        ));
    }
    out.push_str(&format!(
        "\n  its operations {}..{} of {}:\n",
        from + 1,
        to,
        ops.len()
    ));
    for (i, op) in ops.iter().enumerate().take(to).skip(from) {
        let returned = match (&op.returned, &op.result) {
            (Some((_, at)), Some(r)) => format!("{:.3}ms -> {r:?}", at.as_secs_f64() * 1e3),
            _ => "never returned".to_string(),
        };
        let mark = if Some(i) == stuck { ">>" } else { "  " };
        out.push_str(&format!(
            "  {mark}c{:<4} {:>9.3}ms .. {returned:<30} {:?}\n",
            op.client,
            op.invoked_at.as_secs_f64() * 1e3,
            op.op
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::encode_result;
    use std::time::Duration;

    fn put(k: &str, v: &str) -> KvOp {
        KvOp::Put(k.into(), v.into())
    }
    fn get(k: &str) -> KvOp {
        KvOp::Get(k.into())
    }
    fn value(v: Option<&str>) -> Vec<u8> {
        encode_result(&KvResult::Value(v.map(String::from)))
    }
    fn ok() -> Vec<u8> {
        encode_result(&KvResult::Ok)
    }

    /// Runs a script of (client, Some(op) to invoke | None to return with
    /// result) steps into a history.
    fn history(clients: usize, script: &[(u64, Result<KvOp, Vec<u8>>)]) -> History {
        let mut h = History::new(clients);
        for (t, (c, step)) in script.iter().enumerate() {
            let now = Duration::from_micros(t as u64);
            match step {
                Ok(op) => {
                    h.invoke(*c, op.clone(), now);
                }
                Err(result) => h.complete(*c, result, now).unwrap(),
            }
        }
        h
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // c0 puts x while c1 reads: either value is fine.
        for seen in [None, Some("x")] {
            let h = history(
                2,
                &[
                    (0, Ok(put("a", "x"))),
                    (1, Ok(get("a"))),
                    (1, Err(value(seen))),
                    (0, Err(ok())),
                ],
            );
            assert_eq!(check_linearizable(&h), Ok(()));
        }
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let h = history(
            2,
            &[
                (0, Ok(put("a", "x"))),
                (0, Err(ok())),
                (1, Ok(get("a"))),
                (1, Err(value(None))),
            ],
        );
        let err = check_linearizable(&h).unwrap_err();
        assert!(err.contains("\"a\""), "{err}");
    }

    #[test]
    fn a_doubly_applied_append_is_caught_and_keys_are_independent() {
        let append = KvOp::Append("a".into(), "x;".into());
        let h = history(
            2,
            &[
                (0, Ok(append)),
                (1, Ok(put("b", "y"))),
                (0, Err(ok())),
                (1, Err(ok())),
                (0, Ok(get("a"))),
                (0, Err(value(Some("x;x;")))),
                (1, Ok(get("b"))),
                (1, Err(value(Some("y")))),
            ],
        );
        assert!(check_linearizable(&h).unwrap_err().contains("\"a\""));
    }

    #[test]
    fn a_pending_write_may_or_may_not_have_happened() {
        for seen in [None, Some("x")] {
            let h = history(
                2,
                &[
                    (0, Ok(put("a", "x"))),
                    (1, Ok(get("a"))),
                    (1, Err(value(seen))),
                ],
            );
            assert_eq!(check_linearizable(&h), Ok(()));
        }
        // But a value nobody wrote cannot be read.
        let h = history(
            2,
            &[
                (0, Ok(put("a", "x"))),
                (1, Ok(get("a"))),
                (1, Err(value(Some("z")))),
            ],
        );
        assert!(check_linearizable(&h).is_err());
    }

    #[test]
    fn thousands_of_concurrent_operations_check_quickly() {
        // 50 clients, 40 rounds each, over a sequential store: every
        // round all clients invoke, then all return in reverse order.
        let mut kv = crate::app::KvStore::default();
        let mut h = History::new(50);
        let mut w: Vec<_> = (0..50)
            .map(|c| super::super::Workload::new(7, c, 4))
            .collect();
        let mut t = 0;
        for _ in 0..40 {
            let mut results = Vec::new();
            for c in 0..50u64 {
                let op = w[c as usize].next_op();
                let bytes = h.invoke(c, op, Duration::from_micros(t));
                results.push((c, kv.execute(&bytes)));
                t += 1;
            }
            for (c, r) in results.into_iter().rev() {
                h.complete(c, &r, Duration::from_micros(t)).unwrap();
                t += 1;
            }
        }
        assert_eq!(h.ops.len(), 2000);
        assert_eq!(check_linearizable(&h), Ok(()));
    }
}
