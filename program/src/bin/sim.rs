//! `sim`: seeded simulations (or the model checker) of any protocol.
//!
//! ```text
//! sim --protocol unreplicated --seeds 1000 --faults drop,dup,partition,crash
//! sim --protocol unreplicated --model-check --depth 12
//! ```
//!
//! A failing seed prints its schedule, the tail of its trace and the
//! smallest failing schedule; the last line is the summary, and the exit
//! status is non-zero when anything failed.

use clap::Parser;
use std::process::ExitCode;
use troupe::protocol::{self, PROTOCOLS};
use troupe::sim::{CheckConfig, FaultKinds, Search, SimConfig};

#[derive(Parser)]
#[command(about = "Deterministic simulation and model checking of a protocol")]
struct Args {
    /// Protocol name.
    #[arg(long)]
    protocol: String,
    /// Seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed (runs seed .. seed + seeds); `--seeds 1 --seed S` replays S.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fault kinds: drop,dup,reorder,delay,partition,crash,byzantine (or all, none).
    #[arg(long, default_value = "none")]
    faults: FaultKinds,
    /// Closed-loop clients (default 5; 2 when model checking).
    #[arg(long)]
    clients: Option<usize>,
    /// Operations per client (default 50; 1 when model checking).
    #[arg(long)]
    ops: Option<usize>,
    /// Keys the clients share (default: one per client, at least 3; 1
    /// when model checking).
    #[arg(long)]
    keys: Option<usize>,
    /// Faults tolerated (sizes replicated protocols).
    #[arg(long, default_value_t = 1)]
    f: usize,
    /// Do not shrink failing schedules.
    #[arg(long)]
    no_shrink: bool,
    /// Failing seeds printed in full.
    #[arg(long, default_value_t = 3)]
    show: usize,
    /// Run the model checker instead of seeded simulations.
    #[arg(long)]
    model_check: bool,
    /// Model checker: longest path explored.
    #[arg(long, default_value_t = 12)]
    depth: usize,
    /// Model checker: depth-first instead of breadth-first.
    #[arg(long)]
    dfs: bool,
    /// Model checker: also explore losing each message.
    #[arg(long)]
    drops: bool,
    /// Model checker: stop after this many states.
    #[arg(long, default_value_t = 2_000_000)]
    max_states: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(protocol) = protocol::find(&args.protocol) else {
        let names: Vec<_> = PROTOCOLS.iter().map(|p| p.name).collect();
        eprintln!(
            "unknown protocol {:?}; known: {}",
            args.protocol,
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    if args.model_check {
        let cfg = CheckConfig {
            clients: args.clients.unwrap_or(2),
            ops: args.ops.unwrap_or(1),
            keys: args.keys.unwrap_or(1),
            f: args.f,
            depth: args.depth,
            search: if args.dfs { Search::Dfs } else { Search::Bfs },
            drops: args.drops,
            max_states: args.max_states,
            seed: args.seed,
        };
        let outcome = (protocol.model_check)(&cfg);
        for v in &outcome.violations {
            println!("VIOLATION: {v}");
        }
        if !outcome.exhausted && outcome.violations.is_empty() {
            println!("stopped after {} states (--max-states)", outcome.states);
        }
        println!(
            "protocol={} clients={} ops={} elapsed_s={:.3} states_per_s={:.0}",
            protocol.name,
            cfg.clients,
            cfg.ops,
            outcome.elapsed.as_secs_f64(),
            outcome.states_per_s()
        );
        println!("{}", outcome.summary());
        return if outcome.violations.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let clients = args.clients.unwrap_or(5);
    let cfg = SimConfig {
        seeds: args.seeds,
        first_seed: args.seed,
        faults: args.faults,
        clients,
        ops: args.ops.unwrap_or(50),
        keys: args.keys.unwrap_or(clients.max(3)),
        f: args.f,
        shrink: !args.no_shrink,
        ..SimConfig::default()
    };
    let outcome = (protocol.simulate)(&cfg);
    for kind in &outcome.not_injected {
        println!(
            "note: {} does not claim to survive {kind} faults; none injected",
            protocol.name
        );
    }
    for failure in outcome.failed.iter().take(args.show) {
        println!("{failure}");
    }
    if outcome.failed.len() > args.show {
        let rest: Vec<String> = outcome.failed[args.show..]
            .iter()
            .map(|f| f.seed.to_string())
            .collect();
        println!("also failed: seeds {}", rest.join(" "));
    }
    println!("{}", outcome.summary(protocol.name));
    if outcome.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
