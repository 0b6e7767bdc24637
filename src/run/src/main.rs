//! The sweep: edit this file, `cargo run --release -p troupe-run`, watch.
//!
//! With no arguments it runs the default comparison of every protocol the
//! programs know and writes `results/default.csv` and `results/default.svg`
//! (and a JSON per run in `results/default/`). Runs already in the CSV are
//! skipped, so an interrupted sweep resumes; `--fresh` starts over.
//!
//! ```text
//! troupe-run [--hosts FILE] [--fresh]        the default comparison
//! troupe-run faults [--hosts FILE] [--fresh] a crash during load, per protocol
//! troupe-run batching [--hosts FILE] [--fresh] batch sizes under light and heavy load
//! troupe-run bench --protocol unreplicated --clients 100 --duration 5 --csv results/one.csv
//! troupe-run plot results/default.csv        redraw results/default.svg
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use troupe_message::control::ClientAuth;
use troupe_run::cluster::program_dir;
use troupe_run::{Bench, Cluster, Fault, Hosts, Sweep};

/// Client counts of the default comparison: from idle to saturated, so
/// each protocol draws a full latency-throughput curve.
const CLIENTS: [u32; 5] = [1, 8, 32, 128, 512];
/// Seconds of load the whole default comparison may take, so that it ends
/// within five minutes on two cores however many protocols there are.
const BUDGET_S: f64 = 240.0;

/// Every protocol the programs know, every client count, one CSV.
fn default_comparison(opts: &Opts) -> Result<(), String> {
    let dir = program_dir().map_err(|e| e.to_string())?;
    let protocols = Cluster::protocols(&dir).map_err(|e| e.to_string())?;
    // Each run also spends about a second starting and stopping.
    let runs = (protocols.len() * CLIENTS.len()).max(1) as f64;
    // Whole half seconds, so the runs of the next sweep match these.
    let seconds = ((BUDGET_S / runs - 1.0) * 2.0).floor().clamp(4.0, 10.0) / 2.0;
    let mut plan = Vec::new();
    for (protocol, _replicas) in protocols {
        for clients in CLIENTS {
            let mut bench = Bench::new(&protocol, clients).seconds(seconds);
            // Protocols that batch get to; the others ignore it.
            bench.batch = 16;
            plan.push(bench);
        }
    }
    sweep("results/default.csv", opts, plan)
}

/// What a crash does: each replicated protocol loses replica 1 halfway
/// through; watch the throughput-over-time panel.
fn faults(opts: &Opts) -> Result<(), String> {
    let dir = program_dir().map_err(|e| e.to_string())?;
    let mut plan = Vec::new();
    for (protocol, replicas) in Cluster::protocols(&dir).map_err(|e| e.to_string())? {
        if replicas < 2 {
            continue;
        }
        for fault in [
            Fault::None,
            Fault::CrashReplica {
                id: 1,
                after_s: 3.0,
            },
        ] {
            plan.push(Bench::new(&protocol, 32).seconds(6.0).fault(fault));
        }
    }
    sweep("results/faults.csv", opts, plan)
}

/// What batching buys: every protocol at a few batch sizes, light and
/// heavy load.
fn batching(opts: &Opts) -> Result<(), String> {
    let dir = program_dir().map_err(|e| e.to_string())?;
    let mut plan = Vec::new();
    for (protocol, _replicas) in Cluster::protocols(&dir).map_err(|e| e.to_string())? {
        for batch in [1, 8, 32] {
            for clients in [32, 256] {
                plan.push(Bench::new(&protocol, clients).batch(batch).seconds(4.0));
            }
        }
    }
    sweep("results/batching.csv", opts, plan)
}

fn sweep(csv: &str, opts: &Opts, plan: Vec<Bench>) -> Result<(), String> {
    if plan.is_empty() {
        return Err("nothing to run: no protocol fits this sweep".into());
    }
    let outcome = Sweep::new(csv)
        .hosts(opts.hosts.clone())
        .fresh(opts.fresh)
        .run(plan)?;
    for row in &outcome.rows {
        println!("{}", troupe_run::sweep::summary(row));
    }
    println!(
        "{} finished, {} skipped (already in {csv}), {} failed{}",
        outcome.finished,
        outcome.skipped,
        outcome.failed,
        if outcome.interrupted {
            "; run again to resume"
        } else {
            ""
        }
    );
    let base = csv.trim_end_matches(".csv");
    println!("results: {csv}, {base}.svg, {base}/ (a JSON per run)");
    if outcome.interrupted {
        return Err("stopped before the end".into());
    }
    if outcome.failed > 0 {
        return Err(format!("{} runs failed (see {csv})", outcome.failed));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("bench") => bench(&args[1..]),
        Some("plot") => plot(&args[1..]),
        Some("faults") => Opts::parse(&args[1..]).and_then(|o| faults(&o)),
        Some("batching") => Opts::parse(&args[1..]).and_then(|o| batching(&o)),
        Some("-h") | Some("--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Opts::parse(&args).and_then(|o| default_comparison(&o)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("troupe-run: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: troupe-run [--hosts FILE] [--fresh]   the default comparison into results/default.csv
       troupe-run faults [--hosts FILE] [--fresh]   a replica crash under load, into results/faults.csv
       troupe-run batching [--hosts FILE] [--fresh] batch sizes 1, 8, 32, into results/batching.csv
       troupe-run bench --protocol P [--replicas N] [--clients C] [--client-threads T]
                        [--batch B] [--duration SECS] [--warmup SECS] [--app null|kv]
                        [--shared-threads S] [--client-auth mac|signature|none]
                        [--fault crash<ID>@<SECS>s] [--hosts FILE] [--csv FILE]
       troupe-run plot FILE.csv                      redraw FILE.svg from FILE.csv and its JSON";

/// Options every sweep takes.
struct Opts {
    hosts: Hosts,
    fresh: bool,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut opts = Opts {
            hosts: Hosts::loopback(),
            fresh: false,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--fresh" => opts.fresh = true,
                "--hosts" => {
                    let file = it.next().ok_or("--hosts needs a file")?;
                    opts.hosts = Hosts::load(file.as_ref())?;
                }
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(opts)
    }
}

fn plot(args: &[String]) -> Result<(), String> {
    let csv = PathBuf::from(args.first().ok_or("plot needs a CSV file")?);
    let rows = troupe_run::results::load_rows(&csv).map_err(|e| e.to_string())?;
    let svg = csv.with_extension("svg");
    troupe_run::plot::write_svg(&svg, &csv, &rows)?;
    println!("wrote {}", svg.display());
    Ok(())
}

fn bench(args: &[String]) -> Result<(), String> {
    let mut bench = Bench::new("unreplicated", 10);
    let mut csv = None;
    let mut hosts = Hosts::loopback();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let num = |v: String| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--protocol" => bench.protocol = value()?,
            "--replicas" => bench.replicas = num(value()?)? as usize,
            "--clients" => bench.clients = num(value()?)? as u32,
            "--client-threads" => bench.client_threads = num(value()?)? as u16,
            "--batch" => bench.batch = num(value()?)? as u32,
            "--duration" => bench.duration_s = num(value()?)?,
            "--warmup" => bench.warmup_s = num(value()?)?,
            "--shared-threads" => bench.shared_threads = num(value()?)? as u16,
            "--fault" => bench.fault = value()?.parse()?,
            "--hosts" => hosts = Hosts::load(value()?.as_ref())?,
            "--client-auth" => {
                bench.client_auth = match value()?.as_str() {
                    "mac" => ClientAuth::Mac,
                    "signature" => ClientAuth::Signature,
                    "none" => ClientAuth::None,
                    other => return Err(format!("unknown client auth {other}")),
                }
            }
            "--app" => match value()?.as_str() {
                "kv" => bench = bench.kv(),
                "null" => {}
                other => return Err(format!("unknown app {other}")),
            },
            "--csv" => csv = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if bench.warmup_s >= bench.duration_s {
        bench.warmup_s = bench.duration_s / 3.0;
    }
    let dir = program_dir().map_err(|e| e.to_string())?;
    let mut cluster = Cluster::new(&dir, hosts).map_err(|e| e.to_string())?;
    bench.replicas = cluster.replicas_for(&bench)?;
    let result = cluster.run(&bench).map_err(|e| e.to_string())?;
    let row = troupe_run::results::Row::ok(&result);
    println!("{}", troupe_run::sweep::summary(&row));
    if let Some(csv) = csv {
        troupe_run::results::append_row(&csv, &row)
            .map_err(|e| format!("cannot write {}: {e}", csv.display()))?;
    }
    Ok(())
}
