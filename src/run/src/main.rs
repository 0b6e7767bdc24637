//! The sweep: edit this file, `cargo run --release -p troupe-run`, watch.
//!
//! With no arguments it runs the default comparison of every protocol and
//! writes `results/default.csv`. `bench` runs one configuration:
//!
//! ```text
//! troupe-run bench --protocol unreplicated --clients 100 --duration 5 --csv results/one.csv
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use troupe_run::cluster::program_dir;
use troupe_run::results::append_csv;
use troupe_run::{Bench, Cluster, RunResult};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        None => default_comparison(),
        Some("bench") => bench(&args[1..]),
        Some("-h") | Some("--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("troupe-run: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str =
    "usage: troupe-run                      run the default comparison into results/default.csv
       troupe-run bench --protocol P [--replicas N] [--clients C] [--client-threads T]
                        [--batch B] [--duration SECS] [--warmup SECS] [--app null|kv]
                        [--shared-threads S] [--csv FILE]";

/// Every protocol, a few client counts, one CSV.
fn default_comparison() -> Result<(), String> {
    let dir = program_dir().map_err(|e| e.to_string())?;
    let protocols = Cluster::protocols(&dir).map_err(|e| e.to_string())?;
    let csv = PathBuf::from("results/default.csv");
    let _ = std::fs::remove_file(&csv);
    let mut cluster = Cluster::local(&dir).map_err(|e| e.to_string())?;
    let mut failures = 0;
    for (protocol, _) in &protocols {
        for clients in [10, 100] {
            let bench = Bench::new(protocol, clients);
            failures += record(&mut cluster, &bench, &csv);
        }
    }
    println!("wrote {}", csv.display());
    if failures > 0 {
        return Err(format!("{failures} runs failed"));
    }
    Ok(())
}

/// Runs one bench, prints and records it; returns 1 when it failed.
fn record(cluster: &mut Cluster, bench: &Bench, csv: &Path) -> usize {
    match cluster.run(bench) {
        Ok(result) => {
            print_result(&result);
            if let Err(e) = append_csv(csv, &result) {
                eprintln!("cannot write {}: {e}", csv.display());
                return 1;
            }
            0
        }
        Err(e) => {
            eprintln!(
                "run {} with {} clients failed: {e}",
                bench.protocol, bench.clients
            );
            1
        }
    }
}

fn print_result(r: &RunResult) {
    println!(
        "protocol={} replicas={} clients={} batch={} ops_per_s={:.0} p50_us={} p99_us={} p999_us={} errors={}",
        r.bench.protocol, r.replicas, r.bench.clients, r.bench.batch, r.ops_per_s, r.p50_us, r.p99_us, r.p999_us, r.errors
    );
}

fn bench(args: &[String]) -> Result<(), String> {
    let mut bench = Bench::new("unreplicated", 10);
    let mut csv = None;
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
    let mut cluster = Cluster::local(&dir).map_err(|e| e.to_string())?;
    let result = cluster.run(&bench)?;
    print_result(&result);
    if let Some(csv) = csv {
        append_csv(&csv, &result).map_err(|e| format!("cannot write {}: {e}", csv.display()))?;
    }
    Ok(())
}
