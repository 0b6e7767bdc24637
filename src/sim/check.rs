//! The model checker: every interleaving of deliveries, timer firings,
//! client invocations and (optionally) drops of a small configuration,
//! breadth-first or depth-first, with visited-state hashing, a depth
//! bound, and the checkers as invariants in every state.
//!
//! The model is untimed: every message in flight may be delivered next
//! and every armed timer may fire next, which includes every order a real
//! network and real clocks could produce. `now()` reads zero.

use super::agreement::check_agreement;
use super::history::History;
use super::linearizability::check_linearizable;
use super::workload::Workload;
use super::{Msg, Spec};
use crate::actor::{Addr, Context, Effect, Execution, Rng, State, Timer};
use crate::app::{encode_op, KvOp};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// Order of exploration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// Breadth-first: the first violation found has a shortest path.
    Bfs,
    /// Depth-first: reaches deep states sooner, with less memory.
    Dfs,
}

/// A model-checking run.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// Clients.
    pub clients: usize,
    /// Operations per client.
    pub ops: usize,
    /// Keys the clients share.
    pub keys: usize,
    /// Faults tolerated, for protocols sized by it.
    pub f: usize,
    /// Longest path explored (steps from the initial state).
    pub depth: usize,
    /// Breadth- or depth-first.
    pub search: Search,
    /// Also explore losing each message in flight.
    pub drops: bool,
    /// Stop after this many distinct states.
    pub max_states: u64,
    /// Seed of the clients' operations and the actors' randomness.
    pub seed: u64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            clients: 2,
            ops: 1,
            keys: 1,
            f: 1,
            depth: 12,
            search: Search::Bfs,
            drops: false,
            max_states: 2_000_000,
            seed: 1,
        }
    }
}

/// What the model checker found.
#[derive(Clone, Debug, Default)]
pub struct CheckOutcome {
    /// Distinct states reached.
    pub states: u64,
    /// Deepest path explored.
    pub max_depth: usize,
    /// The first violation with the path to it (at most one: the search
    /// stops there).
    pub violations: Vec<String>,
    /// Whether every reachable state within the depth bound was explored
    /// (false when `max_states` stopped the search).
    pub exhausted: bool,
    /// Wall time.
    pub elapsed: Duration,
}

impl CheckOutcome {
    /// Distinct states per second of wall time.
    pub fn states_per_s(&self) -> f64 {
        self.states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The one-line summary the `sim` program ends with.
    pub fn summary(&self) -> String {
        format!(
            "states={} max_depth={} violations={}",
            self.states,
            self.max_depth,
            self.violations.len()
        )
    }
}

/// A history event, as the model keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Happened {
    Invoke(u32),
    Return(u32, Vec<u8>),
}

/// One global state: every actor, what is in flight, what is armed, and
/// what the clients saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node<A, M> {
    actors: Vec<A>,
    rngs: Vec<Rng>,
    timers: Vec<Vec<Timer>>,
    /// In flight: (recipient slot, sender slot, message hash, message),
    /// kept sorted so that the same multiset hashes the same.
    network: Vec<(u32, u32, u64, M)>,
    invoked: Vec<u32>,
    history: Vec<Happened>,
    executed: Vec<Vec<Execution>>,
    /// A protocol misbehaviour seen on the way here.
    error: Option<String>,
}

impl<A, M> Node<A, M> {
    /// How far the history and the executions have grown: when a step
    /// leaves this unchanged, the checkers' verdict is the parent's.
    fn progress(&self) -> (usize, usize) {
        (self.history.len(), self.executed.iter().map(Vec::len).sum())
    }
}

/// One step from a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Deliver(usize),
    Drop(usize),
    Fire(u32, Timer),
    Invoke(u32),
}

/// A fast 64-bit hash for state fingerprints: each word is folded in
/// with a 64x64->128 multiply (the mixing of foldhash and wyhash). A
/// fingerprint collision would hide a state, so quality matters; at a
/// million states the chance of one is about 3e-8.
#[derive(Default)]
struct FoldHasher {
    state: u64,
}

const FOLD_SEED: u64 = 0x243f_6a88_85a3_08d3;

impl FoldHasher {
    fn fold(&mut self, word: u64) {
        let p = (self.state ^ word) as u128 * (FOLD_SEED ^ 0x9e37_79b9_7f4a_7c15) as u128;
        self.state = (p as u64) ^ ((p >> 64) as u64);
    }
}

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        let p = self.state as u128 * 0x94d0_49bb_1331_11eb_u128;
        (p as u64) ^ ((p >> 64) as u64)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.fold(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        // The length keeps "ab" + "" apart from "a" + "b".
        self.fold(u64::from_le_bytes(w) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, n: u8) {
        self.fold(n as u64);
    }
    fn write_u16(&mut self, n: u16) {
        self.fold(n as u64);
    }
    fn write_u32(&mut self, n: u32) {
        self.fold(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.fold(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.fold(n as u64);
    }
}

fn fingerprint<T: Hash>(t: &T) -> u64 {
    let mut h = FoldHasher { state: FOLD_SEED };
    t.hash(&mut h);
    h.finish()
}

/// The model of one configuration.
struct Model<'s, P: Spec> {
    spec: &'s P,
    addrs: Vec<Addr>,
    nodes: usize,
    groups: Vec<(u16, Vec<u32>)>,
    ops: Vec<Vec<(KvOp, Vec<u8>)>>,
}

type State2<P> = Node<<P as Spec>::Actor, Msg<P>>;

impl<'s, P: Spec> Model<'s, P>
where
    Msg<P>: Hash + Eq,
{
    fn new(spec: &'s P, cfg: &CheckConfig) -> Self {
        let nodes = spec.nodes();
        let addrs: Vec<Addr> = (0..nodes as u16)
            .map(Addr::Node)
            .chain((0..cfg.clients as u64).map(Addr::Client))
            .collect();
        let slot_of = |a: &Addr| addrs.iter().position(|x| x == a).map(|i| i as u32);
        let groups = spec
            .groups()
            .into_iter()
            .map(|(id, members)| (id, members.iter().filter_map(slot_of).collect()))
            .collect();
        let ops = (0..cfg.clients as u64)
            .map(|c| {
                let mut w = Workload::new(cfg.seed, c, cfg.keys);
                (0..cfg.ops)
                    .map(|_| {
                        let op = w.next_op();
                        let bytes = encode_op(&op);
                        (op, bytes)
                    })
                    .collect()
            })
            .collect();
        Model {
            spec,
            addrs,
            nodes,
            groups,
            ops,
        }
    }

    fn slot_of(&self, addr: Addr) -> Option<u32> {
        self.addrs.iter().position(|a| *a == addr).map(|i| i as u32)
    }

    fn initial(&self, seed: u64) -> State2<P> {
        let mut rng = Rng::new(seed);
        let mut node = Node {
            actors: self
                .addrs
                .iter()
                .map(|a| match *a {
                    Addr::Node(n) => self.spec.node(n),
                    Addr::Client(c) => self.spec.client(c),
                    Addr::Group(_) => unreachable!("groups are not actors"),
                })
                .collect(),
            rngs: self.addrs.iter().map(|_| rng.fork()).collect(),
            timers: vec![Vec::new(); self.addrs.len()],
            network: Vec::new(),
            invoked: vec![0; self.ops.len()],
            history: Vec::new(),
            executed: vec![Vec::new(); self.nodes],
            error: None,
        };
        for slot in 0..self.addrs.len() {
            self.run(&mut node, slot, |a, cx| a.on_start(cx));
        }
        node.network.sort_by_key(|e| (e.0, e.1, e.2));
        node
    }

    fn actions(&self, node: &State2<P>, drops: bool) -> Vec<Action> {
        let mut out = Vec::new();
        for i in 0..node.network.len() {
            // Identical copies in flight lead to the same states: try one.
            if i > 0 && node.network[i - 1] == node.network[i] {
                continue;
            }
            out.push(Action::Deliver(i));
            if drops {
                out.push(Action::Drop(i));
            }
        }
        for (slot, timers) in node.timers.iter().enumerate() {
            for t in timers {
                out.push(Action::Fire(slot as u32, *t));
            }
        }
        for (c, ops) in self.ops.iter().enumerate() {
            let n = node.invoked[c] as usize;
            let returned = node
                .history
                .iter()
                .filter(|h| matches!(h, Happened::Return(x, _) if *x as usize == c))
                .count();
            if n < ops.len() && returned == n {
                out.push(Action::Invoke(c as u32));
            }
        }
        out
    }

    fn describe(&self, node: &State2<P>, action: Action) -> String {
        match action {
            Action::Deliver(i) | Action::Drop(i) => {
                let (to, from, _, msg) = &node.network[i];
                let verb = if matches!(action, Action::Drop(_)) {
                    "drop"
                } else {
                    "deliver"
                };
                format!(
                    "{verb} {} -> {}  {msg:?}",
                    self.addrs[*from as usize], self.addrs[*to as usize]
                )
            }
            Action::Fire(slot, t) => format!("{} timer {}", self.addrs[slot as usize], t.0),
            Action::Invoke(c) => format!(
                "c{c} invokes {:?}",
                self.ops[c as usize][node.invoked[c as usize] as usize].0
            ),
        }
    }

    fn step(&self, node: &State2<P>, action: Action) -> State2<P> {
        let mut next = node.clone();
        match action {
            Action::Deliver(i) => {
                let (to, from, _, msg) = next.network.remove(i);
                let from = self.addrs[from as usize];
                self.run(&mut next, to as usize, |a, cx| a.on_message(from, msg, cx));
            }
            Action::Drop(i) => {
                next.network.remove(i);
            }
            Action::Fire(slot, timer) => {
                next.timers[slot as usize].retain(|t| *t != timer);
                self.run(&mut next, slot as usize, |a, cx| a.on_timer(timer, cx));
            }
            Action::Invoke(c) => {
                let k = next.invoked[c as usize] as usize;
                next.invoked[c as usize] += 1;
                next.history.push(Happened::Invoke(c));
                let op = self.ops[c as usize][k].1.clone();
                self.run(&mut next, self.nodes + c as usize, |a, cx| {
                    a.on_invoke(op, cx)
                });
            }
        }
        next.network.sort_by_key(|e| (e.0, e.1, e.2));
        next
    }

    /// Runs one handler of `slot` and applies its effects to `node`.
    fn run(
        &self,
        node: &mut State2<P>,
        slot: usize,
        handler: impl FnOnce(&mut P::Actor, &mut Context<Msg<P>>),
    ) {
        let addr = self.addrs[slot];
        let mut cx = Context::new(addr, 0);
        *cx.rng() = node.rngs[slot].clone();
        cx.record_executions(slot < self.nodes);
        handler(&mut node.actors[slot], &mut cx);
        node.rngs[slot] = cx.rng().clone();
        if slot < self.nodes {
            node.executed[slot].extend(cx.take_executions());
        }
        let effects: Vec<_> = cx.drain().collect();
        for effect in effects {
            match effect {
                Effect::Send { to, msg } => {
                    let targets: Vec<u32> = match to {
                        Addr::Group(g) => self
                            .groups
                            .iter()
                            .find(|(id, _)| *id == g)
                            .map(|(_, m)| {
                                m.iter().copied().filter(|m| *m as usize != slot).collect()
                            })
                            .unwrap_or_default(),
                        _ => self.slot_of(to).into_iter().collect(),
                    };
                    let hash = fingerprint(&msg);
                    for t in targets {
                        node.network.push((t, slot as u32, hash, msg.clone()));
                    }
                }
                Effect::SetTimer { timer, .. } => {
                    if let Err(i) = node.timers[slot].binary_search(&timer) {
                        node.timers[slot].insert(i, timer);
                    }
                }
                Effect::CancelTimer(timer) => node.timers[slot].retain(|t| *t != timer),
                Effect::Complete(result) => {
                    let c = (slot - self.nodes) as u32;
                    let returned = node
                        .history
                        .iter()
                        .filter(|h| matches!(h, Happened::Return(x, _) if *x == c))
                        .count();
                    if slot < self.nodes || returned >= node.invoked[c as usize] as usize {
                        node.error.get_or_insert(format!(
                            "{addr} completed an operation it never invoked"
                        ));
                    } else {
                        node.history.push(Happened::Return(c, result));
                    }
                }
            }
        }
    }

    /// The checkers, as invariants of one state. `changed`: whether the
    /// history or the executions differ from the (passing) parent's; if
    /// not, only the protocol's own invariant runs.
    fn invariants(&self, node: &State2<P>, changed: bool) -> Result<(), String> {
        if let Some(e) = &node.error {
            return Err(e.clone());
        }
        if !changed {
            return self.spec.invariant(&node.actors);
        }
        let mut history = History::new(self.ops.len());
        let mut next = vec![0usize; self.ops.len()];
        for h in &node.history {
            match h {
                Happened::Invoke(c) => {
                    let op = self.ops[*c as usize][next[*c as usize]].0.clone();
                    next[*c as usize] += 1;
                    history.invoke(*c as u64, op, Duration::ZERO);
                }
                Happened::Return(c, result) => {
                    history.complete(*c as u64, result, Duration::ZERO)?;
                }
            }
        }
        check_linearizable(&history).map_err(|e| format!("linearizability: {e}"))?;
        let executed: Vec<(u16, &[Execution])> = node
            .executed
            .iter()
            .enumerate()
            .map(|(n, log)| (n as u16, log.as_slice()))
            .collect();
        check_agreement(&executed, &history).map_err(|e| format!("agreement: {e}"))?;
        self.spec.invariant(&node.actors)
    }
}

/// Model-checks `spec` under `cfg`.
pub fn model_check<P: Spec>(spec: &P, cfg: &CheckConfig) -> CheckOutcome
where
    Msg<P>: Hash + Eq,
{
    let started = Instant::now();
    let model = Model::new(spec, cfg);
    let root = model.initial(cfg.seed);
    let root_fp = fingerprint(&root);
    let mut parents: HashMap<u64, Option<(u64, Action)>> = HashMap::new();
    parents.insert(root_fp, None);
    let mut outcome = CheckOutcome {
        states: 1,
        exhausted: true,
        ..CheckOutcome::default()
    };
    let mut frontier: VecDeque<(State2<P>, u64, usize)> = VecDeque::new();
    let mut violation = model.invariants(&root, true).err().map(|e| (e, root_fp));
    if violation.is_none() {
        frontier.push_back((root, root_fp, 0));
    }
    'search: while let Some((node, fp, depth)) = match cfg.search {
        Search::Bfs => frontier.pop_front(),
        Search::Dfs => frontier.pop_back(),
    } {
        outcome.max_depth = outcome.max_depth.max(depth);
        if depth >= cfg.depth {
            continue;
        }
        for action in model.actions(&node, cfg.drops) {
            let next = model.step(&node, action);
            let next_fp = fingerprint(&next);
            if parents.contains_key(&next_fp) {
                continue;
            }
            parents.insert(next_fp, Some((fp, action)));
            outcome.states += 1;
            outcome.max_depth = outcome.max_depth.max(depth + 1);
            if let Err(e) = model.invariants(&next, next.progress() != node.progress()) {
                violation = Some((e, next_fp));
                break 'search;
            }
            if outcome.states >= cfg.max_states {
                outcome.exhausted = false;
                break 'search;
            }
            frontier.push_back((next, next_fp, depth + 1));
        }
    }
    if let Some((why, at)) = violation {
        outcome.exhausted = false;
        outcome
            .violations
            .push(path_to(&model, cfg.seed, &parents, at, &why));
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// The readable path from the initial state to the state `at`.
fn path_to<P: Spec>(
    model: &Model<'_, P>,
    seed: u64,
    parents: &HashMap<u64, Option<(u64, Action)>>,
    at: u64,
    why: &str,
) -> String
where
    Msg<P>: Hash + Eq,
{
    let mut actions = Vec::new();
    let mut cur = at;
    while let Some(Some((parent, action))) = parents.get(&cur) {
        actions.push(*action);
        cur = *parent;
    }
    actions.reverse();
    let mut out = format!("{why}\npath of {} steps:\n", actions.len());
    let mut node = model.initial(seed);
    for (i, action) in actions.into_iter().enumerate() {
        out.push_str(&format!(
            "  {:>3}. {}\n",
            i + 1,
            model.describe(&node, action)
        ));
        node = model.step(&node, action);
    }
    out
}
