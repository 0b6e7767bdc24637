//! `exchange`: throughput and ping-pong latency of the exchange channels.
//!
//! Workers are split in two halves; each worker of the first half sends
//! `messages / pairs` u64s to its partner in the second half (with one
//! worker per process and two processes, that is process to process).
//! Then worker 0 and the last worker bounce a u64 `rounds` times. With
//! `--processes P > 1` the program starts the other P-1 processes itself
//! on loopback. The last line is
//! `exchange workers=W processes=P msgs_per_s=X pingpong_us=Y`
//! (Y: the median round trip).

use clap::Parser;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use troupe::exchange::{initialize, Allocator, ClusterConfig, Config, ExchangeError};
use troupe_program::peers::{loopback_addresses, peak_rss_mib, PeerProcesses};

#[derive(Parser, Clone)]
#[command(about = "Exchange channel throughput and ping-pong latency")]
struct Args {
    /// Worker threads per process.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Processes (started by this program on loopback).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// u64 messages in the throughput phase, over all sending workers.
    #[arg(long, default_value_t = 10_000_000)]
    messages: u64,
    /// Round trips in the ping-pong phase.
    #[arg(long, default_value_t = 20_000)]
    rounds: u64,
    /// This process's index (set for the processes this program starts).
    #[arg(long, hide = true)]
    process: Option<usize>,
    /// Every process's address (set for the processes this program starts).
    #[arg(long, hide = true, value_delimiter = ',')]
    addresses: Vec<SocketAddr>,
}

/// What worker 0 measured.
struct Report {
    msgs_per_s: f64,
    pingpong_us: f64,
    pingpong_p99_us: f64,
}

fn main() {
    let args = Args::parse();
    if args.workers * args.processes < 2 {
        eprintln!("exchange: need at least 2 workers in all");
        std::process::exit(2);
    }
    let result = match args.process {
        Some(index) => run_process(&args, index, args.addresses.clone()),
        None if args.processes > 1 => run_cluster(&args),
        None => run_process(&args, 0, Vec::new()),
    };
    if let Err(e) = result {
        eprintln!("exchange: {e}");
        std::process::exit(1);
    }
}

fn run_cluster(args: &Args) -> Result<(), String> {
    let addresses = loopback_addresses(args.processes).map_err(|e| e.to_string())?;
    let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    let peers = PeerProcesses::spawn(1..args.processes, |i| {
        vec![
            format!("--workers={}", args.workers),
            format!("--processes={}", args.processes),
            format!("--messages={}", args.messages),
            format!("--rounds={}", args.rounds),
            format!("--process={i}"),
            format!("--addresses={}", list.join(",")),
        ]
    })
    .map_err(|e| format!("starting peer processes: {e}"))?;
    run_process(args, 0, addresses)?;
    peers.wait(Duration::from_secs(60))
}

fn run_process(args: &Args, index: usize, addresses: Vec<SocketAddr>) -> Result<(), String> {
    let config = if args.processes > 1 {
        Config::Cluster(ClusterConfig::new(args.workers, index, addresses))
    } else {
        Config::Process(args.workers)
    };
    let (messages, rounds) = (args.messages, args.rounds);
    let guards = initialize(config, move |a| bench_worker(a, messages, rounds))
        .map_err(|e| e.to_string())?;
    let setup = guards.setup_time();
    println!(
        "exchange-connected process={index} connect_ms={:.1}",
        setup.as_secs_f64() * 1e3
    );
    let mut report = None;
    for result in guards.join() {
        match result {
            Ok(Ok(Some(r))) => report = Some(r),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(panic) => return Err(format!("worker panicked: {panic}")),
        }
    }
    let rss = peak_rss_mib().unwrap_or(f64::NAN);
    println!(
        "exchange-process process={index} connect_ms={:.1} peak_rss_mib={rss:.1}",
        setup.as_secs_f64() * 1e3
    );
    if let Some(r) = report {
        println!(
            "exchange-latency pingpong_median_us={:.1} pingpong_p99_us={:.1} rounds={rounds}",
            r.pingpong_us, r.pingpong_p99_us
        );
        println!(
            "exchange workers={} processes={} msgs_per_s={:.0} pingpong_us={:.1}",
            args.workers, args.processes, r.msgs_per_s, r.pingpong_us
        );
    }
    Ok(())
}

/// Every worker sends a token to every worker and waits for all tokens.
fn barrier(a: &mut Allocator, channel: usize) -> Result<(), ExchangeError> {
    let (mut tx, mut rx) = a.allocate::<u8>(channel)?;
    for s in tx.iter_mut() {
        s.send(0)?;
    }
    for _ in 0..a.peers() {
        if rx.recv_blocking()?.is_none() {
            return Err(ExchangeError::Config("barrier: senders vanished".into()));
        }
    }
    Ok(())
}

fn bench_worker(
    mut a: Allocator,
    messages: u64,
    rounds: u64,
) -> Result<Option<Report>, ExchangeError> {
    let (peers, me) = (a.peers(), a.index());
    let pairs = peers / 2;
    let per_sender = messages / pairs as u64;
    let (mut data_tx, mut data_rx) = a.allocate::<u64>(1)?;
    let (mut result_tx, mut result_rx) = a.allocate::<u64>(2)?;
    let (mut ping_tx, mut ping_rx) = a.allocate::<u64>(3)?;
    barrier(&mut a, 10)?;

    // Throughput: the first half sends, the second half receives and
    // reports its elapsed time to worker 0.
    let start = Instant::now();
    if me < pairs {
        let to = &mut data_tx[me + pairs];
        for i in 0..per_sender {
            to.send(i)?;
        }
        to.flush()?;
    } else if me < 2 * pairs {
        for expect in 0..per_sender {
            match data_rx.recv_blocking()? {
                Some(v) if v == expect => {}
                other => {
                    return Err(ExchangeError::Config(format!(
                        "expected {expect}, got {other:?}"
                    )))
                }
            }
        }
        result_tx[0].send(start.elapsed().as_nanos() as u64)?;
    }
    let mut slowest = 0;
    if me == 0 {
        for _ in 0..pairs {
            let ns = result_rx.recv_blocking()?.unwrap_or(u64::MAX);
            slowest = slowest.max(ns);
        }
    }
    barrier(&mut a, 11)?;

    // Ping-pong between worker 0 and the last worker.
    let last = peers - 1;
    let mut rtts = Vec::with_capacity(rounds as usize);
    if me == 0 {
        for r in 0..rounds {
            let t = Instant::now();
            ping_tx[last].send(r)?;
            if ping_rx.recv_blocking()? != Some(r) {
                return Err(ExchangeError::Config("ping-pong out of step".into()));
            }
            rtts.push(t.elapsed());
        }
    } else if me == last {
        for _ in 0..rounds {
            match ping_rx.recv_blocking()? {
                Some(v) => ping_tx[0].send(v)?,
                None => return Err(ExchangeError::Config("ping-pong partner left".into())),
            }
        }
    }
    barrier(&mut a, 12)?;
    if me != 0 {
        return Ok(None);
    }
    rtts.sort();
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    Ok(Some(Report {
        msgs_per_s: (per_sender * pairs as u64) as f64 / (slowest as f64 / 1e9),
        pingpong_us: at(0.5),
        pingpong_p99_us: at(0.99),
    }))
}
