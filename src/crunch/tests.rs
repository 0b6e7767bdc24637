//! The server and node states driven by hand, one input at a time.

use super::*;
use crate::actor::{Context, Effect, State, Timer};
use std::time::Duration;

/// A job whose chunk `i` must come back as `[i, i]` (one byte each).
struct Echo {
    chunks: u64,
    merged: Vec<Option<u8>>,
    dead: Vec<Addr>,
}

impl Echo {
    fn boxed(chunks: u64) -> Box<dyn Job> {
        Box::new(Echo {
            chunks,
            merged: vec![None; chunks as usize],
            dead: Vec::new(),
        })
    }
}

impl Job for Echo {
    fn chunks(&self) -> u64 {
        self.chunks
    }
    fn initial_data(&mut self) -> Vec<u8> {
        b"init".to_vec()
    }
    fn prepare(&mut self, chunk: ChunkId) -> Vec<u8> {
        vec![chunk as u8]
    }
    fn merge(&mut self, chunk: ChunkId, result: &[u8]) -> Result<(), String> {
        match result {
            [a, b] if *a == chunk as u8 && a == b => {
                assert!(self.merged[chunk as usize].is_none(), "merged twice");
                self.merged[chunk as usize] = Some(*a);
                Ok(())
            }
            _ => Err(format!("bad result {result:?}")),
        }
    }
    fn node_dead(&mut self, node: Addr) {
        self.dead.push(node);
    }
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

const HB: Duration = Duration::from_millis(100);
const A: Addr = Addr::Client(1);
const B: Addr = Addr::Client(2);

fn at(cx: &mut Context<Message>, ms: u64) -> &mut Context<Message> {
    cx.set_now(Duration::from_millis(ms));
    cx
}

fn sends(cx: &mut Context<Message>) -> Vec<(Addr, Message)> {
    cx.drain()
        .filter_map(|e| match e {
            Effect::Send { to, msg } => Some((to, msg)),
            _ => None,
        })
        .collect()
}

/// Chunks sent as work to `to` among `sent`.
fn work_for(sent: &[(Addr, Message)], to: Addr) -> Vec<ChunkId> {
    sent.iter()
        .filter_map(|(a, m)| match m {
            Message::Work { chunk, .. } if *a == to => Some(*chunk),
            _ => None,
        })
        .collect()
}

fn answer(chunk: ChunkId) -> Message {
    Message::Result {
        chunk,
        data: vec![chunk as u8; 2],
    }
}

fn server(chunks: u64) -> (ServerState, Context<Message>) {
    let mut s = ServerState::new(Echo::boxed(chunks), ServerConfig::with_heartbeat(HB));
    let mut cx = Context::new(SERVER, 1);
    s.on_start(&mut cx);
    cx.drain().for_each(drop);
    (s, cx)
}

#[test]
fn nodes_get_a_window_of_chunks_and_a_refill_per_result_then_done() {
    let (mut s, mut cx) = server(5);
    s.on_message(A, Message::Register { window: 2 }, at(&mut cx, 0));
    let sent = sends(&mut cx);
    assert_eq!(
        sent[0],
        (
            A,
            Message::Welcome {
                heartbeat_us: 100_000,
                initial: b"init".to_vec()
            }
        )
    );
    assert_eq!(work_for(&sent, A), vec![0, 1]);
    s.on_message(B, Message::Register { window: 3 }, at(&mut cx, 1));
    assert_eq!(work_for(&sends(&mut cx), B), vec![2, 3, 4], "the rest");
    s.on_message(A, answer(0), at(&mut cx, 2));
    // Nothing is pending: A backs up the oldest chunk only B holds.
    assert_eq!(work_for(&sends(&mut cx), A), vec![2]);
    // A duplicate is ignored, not merged twice.
    s.on_message(A, answer(0), at(&mut cx, 3));
    assert_eq!(s.stats().stale_results, 1);
    s.on_message(A, answer(1), at(&mut cx, 4));
    assert_eq!(work_for(&sends(&mut cx), A), vec![3]);
    // B wins chunk 2; A's copy arrives second and is not merged.
    s.on_message(B, answer(2), at(&mut cx, 4));
    s.on_message(A, answer(2), at(&mut cx, 4));
    assert_eq!(s.stats().duplicates, 1);
    assert_eq!(work_for(&sends(&mut cx), A), vec![4]);
    for c in [3, 4] {
        s.on_message(B, answer(c), at(&mut cx, 5));
    }
    assert_eq!(s.stats().backups, 3);
    assert_eq!(s.finished_at(), Some(Duration::from_millis(5)));
    let mut done = sends(&mut cx);
    done.sort_by_key(|(a, _)| *a);
    assert_eq!(done, vec![(A, Message::Done), (B, Message::Done)]);
    // Whoever talks to a finished server hears it is over.
    s.on_message(B, Message::Heartbeat { held: vec![] }, at(&mut cx, 6));
    assert_eq!(sends(&mut cx), vec![(B, Message::Done)]);
    assert_eq!(s.stats().registered, 2);
    assert_eq!(s.stats().first_assigned_at, Some(Duration::ZERO));
}

#[test]
fn a_silent_node_is_declared_dead_and_its_late_result_ignored() {
    let (mut s, mut cx) = server(4);
    s.on_message(A, Message::Register { window: 2 }, at(&mut cx, 0));
    s.on_message(B, Message::Register { window: 2 }, at(&mut cx, 0));
    sends(&mut cx);
    // B keeps its heartbeats, A falls silent after t = 0.
    for t in [25u64, 50, 75, 100, 125, 150, 175] {
        if t % 50 == 0 {
            s.on_message(B, Message::Heartbeat { held: vec![2, 3] }, at(&mut cx, t));
        }
        s.on_timer(Timer(1), at(&mut cx, t));
    }
    // Silence of 175 ms > 150 ms: dead, found by the sweep at 175 ms,
    // within two heartbeat intervals.
    assert_eq!(s.stats().dead, 1);
    let death = s.stats().deaths[0];
    assert_eq!((death.node, death.closed), (A, false));
    assert!(death.at <= 2 * HB);
    assert_eq!(s.stats().reassigned, 2);
    // B finishes its own, then gets A's chunks, oldest first.
    s.on_message(B, answer(2), at(&mut cx, 180));
    s.on_message(B, answer(3), at(&mut cx, 181));
    let sent = sends(&mut cx);
    assert_eq!(work_for(&sent, B), vec![0, 1]);
    // A's late result: ignored, and A is told to register again.
    s.on_message(A, answer(0), at(&mut cx, 182));
    assert_eq!(sends(&mut cx), vec![(A, Message::Rejoin)]);
    assert_eq!(s.stats().stale_results, 1);
    s.on_message(B, answer(0), at(&mut cx, 183));
    s.on_message(B, answer(1), at(&mut cx, 184));
    // Each chunk was merged exactly once (Echo asserts it).
    assert!(s.finished_at().is_some());
}

#[test]
fn closed_liars_and_boasters_are_dropped_and_their_work_redone() {
    let (mut s, mut cx) = server(6);
    for (i, node) in [A, B, Addr::Client(3)].into_iter().enumerate() {
        s.on_message(node, Message::Register { window: 2 }, at(&mut cx, i as u64));
    }
    sends(&mut cx);
    // A's connection closes: dead at once.
    s.on_message(A, Message::Closed, at(&mut cx, 10));
    assert!(s.stats().deaths[0].closed);
    // B returns garbage for chunk 2: dropped, 2 and 3 go back.
    s.on_message(
        B,
        Message::Result {
            chunk: 2,
            data: vec![9],
        },
        at(&mut cx, 11),
    );
    assert_eq!(s.stats().bad_results, 1);
    // Node 3 claims more chunks than its window allows.
    let c = Addr::Client(3);
    s.on_message(
        c,
        Message::Heartbeat {
            held: (0..50).collect(),
        },
        at(&mut cx, 12),
    );
    assert_eq!(s.stats().dead, 3);
    assert_eq!(s.nodes(), 0);
    // A fresh node does everything, each chunk merged once.
    let d = Addr::Client(4);
    s.on_message(d, Message::Register { window: 64 }, at(&mut cx, 20));
    let mut todo = work_for(&sends(&mut cx), d);
    todo.sort();
    assert_eq!(todo, vec![0, 1, 2, 3, 4, 5]);
    for chunk in todo {
        s.on_message(d, answer(chunk), at(&mut cx, 21));
    }
    assert!(s.finished_at().is_some());
}

#[test]
fn work_lost_on_the_way_is_handed_out_again() {
    let (mut s, mut cx) = server(3);
    s.on_message(A, Message::Register { window: 2 }, at(&mut cx, 0));
    assert_eq!(work_for(&sends(&mut cx), A), vec![0, 1]);
    // The node never got chunk 1; one heartbeat may miss it (in flight)...
    s.on_message(A, Message::Heartbeat { held: vec![0] }, at(&mut cx, 100));
    assert_eq!(work_for(&sends(&mut cx), A), Vec::<ChunkId>::new());
    // ...two in a row mean it is lost.
    s.on_message(A, Message::Heartbeat { held: vec![0] }, at(&mut cx, 200));
    assert_eq!(work_for(&sends(&mut cx), A), vec![1]);
    assert_eq!(s.stats().lost, 1);
}

#[test]
fn registrations_beyond_the_limit_are_refused() {
    let mut config = ServerConfig::with_heartbeat(HB);
    config.max_nodes = 1;
    let mut s = ServerState::new(Echo::boxed(2), config);
    let mut cx = Context::new(SERVER, 1);
    s.on_message(A, Message::Register { window: 1 }, &mut cx);
    s.on_message(B, Message::Register { window: 1 }, &mut cx);
    assert!(sends(&mut cx).iter().all(|(to, _)| *to == A));
    assert_eq!(s.stats().refused, 1);
}

fn node() -> (NodeState, Context<Message>) {
    let mut config = NodeConfig::new(SERVER, WORKER);
    config.attempts = 3;
    config.retry_base = Duration::from_millis(10);
    let mut n = NodeState::new(config);
    let mut cx = Context::new(NODE, 1);
    n.on_start(&mut cx);
    (n, cx)
}

fn welcome() -> Message {
    Message::Welcome {
        heartbeat_us: 100_000,
        initial: vec![7],
    }
}

#[test]
fn a_node_retries_with_growing_pauses_then_gives_up() {
    let (mut n, mut cx) = node();
    let first: Vec<_> = cx.drain().collect();
    assert!(first.contains(&Effect::Send {
        to: SERVER,
        msg: Message::Register { window: 2 }
    }));
    assert!(first.contains(&Effect::SetTimer {
        timer: Timer(1),
        after: Duration::from_millis(10)
    }));
    n.on_timer(Timer(1), &mut cx);
    assert!(cx.drain().any(|e| e
        == Effect::SetTimer {
            timer: Timer(1),
            after: Duration::from_millis(20)
        }));
    // A refused connection changes nothing: the timer paces the retries.
    n.on_message(SERVER, Message::Closed, &mut cx);
    assert!(!cx.has_effects());
    n.on_timer(Timer(1), &mut cx);
    assert_eq!(n.exit(), None, "the third attempt gets its time too");
    n.on_timer(Timer(1), &mut cx);
    assert_eq!(n.exit(), Some(&Exit::ServerGone { attempts: 3 }));
    assert_eq!(
        n.exit().unwrap().to_string(),
        "server unreachable: gave up after 3 registration attempts"
    );
}

#[test]
fn a_node_passes_work_to_its_worker_and_results_to_the_server() {
    let (mut n, mut cx) = node();
    cx.drain().for_each(drop);
    n.on_message(SERVER, welcome(), at(&mut cx, 1));
    assert_eq!(sends(&mut cx), vec![(WORKER, welcome())]);
    let work = Message::Work {
        chunk: 4,
        data: vec![4],
    };
    n.on_message(SERVER, work.clone(), at(&mut cx, 2));
    assert_eq!(sends(&mut cx), vec![(WORKER, work)]);
    n.on_timer(Timer(2), at(&mut cx, 100));
    assert_eq!(
        sends(&mut cx),
        vec![(SERVER, Message::Heartbeat { held: vec![4] })]
    );
    n.on_message(WORKER, answer(4), at(&mut cx, 101));
    assert_eq!(sends(&mut cx), vec![(SERVER, answer(4))]);
    // A result for a chunk it no longer holds goes nowhere.
    n.on_message(WORKER, answer(4), at(&mut cx, 102));
    assert!(sends(&mut cx).is_empty());
    assert_eq!(n.stats().dropped, 1);
    n.on_message(SERVER, Message::Done, at(&mut cx, 103));
    assert_eq!(n.exit(), Some(&Exit::Done));
}

#[test]
fn a_node_registers_again_when_the_server_falls_silent_closes_or_forgets_it() {
    let (mut n, mut cx) = node();
    n.on_message(SERVER, welcome(), at(&mut cx, 0));
    cx.drain().for_each(drop);
    // Three silent heartbeat intervals: registering again.
    for t in [100, 200, 300] {
        n.on_timer(Timer(2), at(&mut cx, t));
        assert!(matches!(
            sends(&mut cx)[..],
            [(SERVER, Message::Heartbeat { .. })]
        ));
    }
    n.on_timer(Timer(2), at(&mut cx, 400));
    assert_eq!(
        sends(&mut cx),
        vec![(SERVER, Message::Register { window: 2 })]
    );
    n.on_message(SERVER, welcome(), at(&mut cx, 410));
    sends(&mut cx);
    n.on_message(SERVER, Message::Rejoin, at(&mut cx, 420));
    assert_eq!(
        sends(&mut cx),
        vec![(SERVER, Message::Register { window: 2 })]
    );
    n.on_message(SERVER, welcome(), at(&mut cx, 430));
    sends(&mut cx);
    n.on_message(SERVER, Message::Closed, at(&mut cx, 440));
    assert_eq!(
        sends(&mut cx),
        vec![(SERVER, Message::Register { window: 2 })]
    );
    assert_eq!(n.stats().registrations, 3);
}

#[test]
fn a_worker_turns_chunks_into_results_or_failures() {
    struct Double;
    impl Worker for Double {
        fn init(&mut self, initial: &[u8]) -> Result<(), String> {
            (initial == [7]).then_some(()).ok_or("wrong init".into())
        }
        fn process(&mut self, chunk: &[u8]) -> Result<Vec<u8>, String> {
            match chunk {
                [c] => Ok(vec![*c, *c]),
                _ => Err("one byte please".into()),
            }
        }
    }
    let mut w = WorkerState::new(NODE, Box::new(Double));
    let mut cx = Context::new(WORKER, 1);
    let work = |data: Vec<u8>| Message::Work { chunk: 4, data };
    w.on_message(NODE, work(vec![4]), &mut cx);
    assert!(matches!(
        sends(&mut cx)[..],
        [(NODE, Message::Failed { .. })]
    ));
    w.on_message(NODE, welcome(), &mut cx);
    w.on_message(NODE, work(vec![4]), &mut cx);
    assert_eq!(sends(&mut cx), vec![(NODE, answer(4))]);
    w.on_message(NODE, work(vec![]), &mut cx);
    let failed = sends(&mut cx);
    assert!(matches!(
        &failed[..],
        [(NODE, Message::Failed { chunk: 4, .. })]
    ));
    // The node gives up on a failing worker with the reason.
    let (mut n, mut ncx) = node();
    n.on_message(SERVER, welcome(), &mut ncx);
    n.on_message(WORKER, failed[0].1.clone(), &mut ncx);
    assert_eq!(
        n.exit(),
        Some(&Exit::WorkerFailed("chunk 4: one byte please".into()))
    );
}
