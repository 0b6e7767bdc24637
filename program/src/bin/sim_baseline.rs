//! `sim_baseline`: the simulator's speed against the least a driver can do.
//!
//! Runs, in one process, the unreplicated protocol with C clients doing K
//! key-value operations each, twice over the same `State` code:
//!
//! - **baseline**: a hand-written loop with a FIFO of messages, no
//!   virtual time, no timers, no network model, no history;
//! - **simulator**: `troupe::sim` without faults (virtual time, an event
//!   heap, random delays, timers, history recording).
//!
//! and prints both in handler events per second and their ratio; then the
//! same simulation with every fault kind, and the checkers' cost.

use clap::Parser;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use troupe::actor::{Addr, Context, Effect, State};
use troupe::app::{encode_op, App, AppKind};
use troupe::protocol::unreplicated::sim::{SimSpec, SIM_RESEND};
use troupe::protocol::unreplicated::{Client, Message, Replica};
use troupe::sim::{run_one, FaultKinds, Schedule, SimConfig, Spec, Workload};

#[derive(Parser)]
#[command(about = "Simulator events/s against a hand-driven loop, same run")]
struct Args {
    /// Clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Operations per client.
    #[arg(long, default_value_t = 2000)]
    ops: usize,
    /// Measurements of each (the median is printed).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// Drives one server and `clients` clients by hand; returns handler
/// events and the time they took.
fn baseline(clients: usize, ops: usize, seed: u64) -> (u64, Duration) {
    let started = Instant::now();
    let mut server = Replica::new(App::new(AppKind::Kv));
    let mut server_cx = Context::new(Addr::Node(0), seed);
    let mut cs: Vec<Client> = (0..clients as u64)
        .map(|c| Client::new(c, SIM_RESEND))
        .collect();
    let mut cxs: Vec<Context<Message>> = (0..clients as u64)
        .map(|c| Context::new(Addr::Client(c), seed ^ c))
        .collect();
    let mut work: Vec<Workload> = (0..clients as u64)
        .map(|c| Workload::new(seed, c, clients))
        .collect();
    let mut done = vec![0usize; clients];
    let mut queue: VecDeque<(Addr, Addr, Message)> = VecDeque::new();
    let mut events = 0u64;
    let mut pending_invokes: Vec<usize> = (0..clients).collect();
    loop {
        for c in pending_invokes.drain(..) {
            let op = encode_op(&work[c].next_op());
            cs[c].on_invoke(op, &mut cxs[c]);
            events += 1;
            for e in cxs[c].drain() {
                if let Effect::Send { to, msg } = e {
                    queue.push_back((Addr::Client(c as u64), to, msg));
                }
            }
        }
        let Some((from, to, msg)) = queue.pop_front() else {
            break;
        };
        events += 1;
        match to {
            Addr::Node(_) => {
                server.on_message(from, msg, &mut server_cx);
                for e in server_cx.drain() {
                    if let Effect::Send { to, msg } = e {
                        queue.push_back((Addr::Node(0), to, msg));
                    }
                }
            }
            Addr::Client(c) => {
                let c = c as usize;
                cs[c].on_message(from, msg, &mut cxs[c]);
                for e in cxs[c].drain() {
                    if let Effect::Complete(_) = e {
                        done[c] += 1;
                        if done[c] < ops {
                            pending_invokes.push(c);
                        }
                    }
                }
            }
            Addr::Group(_) => {}
        }
    }
    (events, started.elapsed())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = Args::parse();
    let spec = SimSpec::new();
    let cfg = SimConfig {
        clients: args.clients,
        ops: args.ops,
        keys: args.clients,
        ..SimConfig::default()
    };
    let faulty = SimConfig {
        faults: FaultKinds::all(),
        ..cfg.clone()
    };
    let (mut base, mut sim, mut with_faults, mut checked) = (vec![], vec![], vec![], vec![]);
    let mut events = (0, 0);
    for round in 0..args.rounds as u64 {
        let (e, t) = baseline(args.clients, args.ops, round + 1);
        base.push(e as f64 / t.as_secs_f64());
        events.0 = e;

        let started = Instant::now();
        let report = run_one(&spec, &cfg, round + 1, &Schedule::default(), 0);
        let total = started.elapsed();
        assert!(!report.failed(), "{:?}", report.violations);
        sim.push(report.stats.events as f64 / report.elapsed.as_secs_f64());
        checked.push(report.stats.events as f64 / total.as_secs_f64());
        events.1 = report.stats.events;

        let schedule = Schedule::generate(round + 1, &faulty, 1, args.clients, spec.tolerance());
        let report = run_one(&spec, &faulty, round + 1, &schedule, 0);
        assert!(!report.failed(), "{:?}", report.violations);
        with_faults.push(report.stats.events as f64 / report.elapsed.as_secs_f64());
    }
    let (b, s) = (median(base), median(sim));
    println!(
        "baseline  clients={} ops={} events={} events_per_s={b:.0}",
        args.clients, args.ops, events.0
    );
    println!(
        "simulator clients={} ops={} events={} events_per_s={s:.0}",
        args.clients, args.ops, events.1
    );
    println!(
        "simulator with all faults events_per_s={:.0}; including the checkers events_per_s={:.0}",
        median(with_faults),
        median(checked)
    );
    println!("ratio simulator/baseline={:.2}", s / b);
}
