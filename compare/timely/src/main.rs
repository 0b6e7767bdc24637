//! `compare-timely`: the `exchange` benchmark (same phases, same
//! arguments, same output line) on timely_communication 0.32, so that
//! scripts/compare-timely.sh can print same-run ratios.
//!
//! Workers park in `await_events` when idle, as timely's own workers do;
//! spinning instead starves its network threads on a 2-core machine.

use clap::Parser;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use timely_bytes::arc::Bytes;
use timely_communication::{initialize, Allocator, Bytesable, Config, Pull, Push};
use troupe_program::peers::{loopback_addresses, peak_rss_mib, PeerProcesses};

#[derive(Parser, Clone)]
struct Args {
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 1)]
    processes: usize,
    #[arg(long, default_value_t = 10_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 20_000)]
    rounds: u64,
    #[arg(long, hide = true)]
    process: Option<usize>,
    #[arg(long, hide = true, value_delimiter = ',')]
    addresses: Vec<SocketAddr>,
}

/// A u64 in timely's byte format: 8 little-endian bytes.
struct U64(u64);

impl Bytesable for U64 {
    fn from_bytes(bytes: Bytes) -> Self {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[..8]);
        U64(u64::from_le_bytes(word))
    }
    fn length_in_bytes(&self) -> usize {
        8
    }
    fn into_bytes<W: std::io::Write>(&self, writer: &mut W) {
        writer
            .write_all(&self.0.to_le_bytes())
            .expect("write to a Vec");
    }
}

struct Report {
    msgs_per_s: f64,
    pingpong_us: f64,
    pingpong_p99_us: f64,
}

fn main() {
    let args = Args::parse();
    let result = match args.process {
        Some(index) => run_process(&args, index, args.addresses.clone()),
        None if args.processes > 1 => run_cluster(&args),
        None => run_process(&args, 0, Vec::new()),
    };
    if let Err(e) = result {
        eprintln!("compare-timely: {e}");
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
    .map_err(|e| e.to_string())?;
    run_process(args, 0, addresses)?;
    peers.wait(Duration::from_secs(60))
}

fn run_process(args: &Args, index: usize, addresses: Vec<SocketAddr>) -> Result<(), String> {
    let config = if args.processes > 1 {
        Config::Cluster {
            threads: args.workers,
            process: index,
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            report: false,
            zerocopy: false,
        }
    } else {
        Config::Process(args.workers)
    };
    let (messages, rounds) = (args.messages, args.rounds);
    let started = Instant::now();
    let guards = initialize(config, move |a| bench_worker(a, messages, rounds))?;
    let setup = started.elapsed();
    let mut report = None;
    for r in guards.join() {
        if let Some(r) = r? {
            report = Some(r);
        }
    }
    let rss = peak_rss_mib().unwrap_or(f64::NAN);
    println!(
        "timely-process process={index} initialize_ms={:.1} peak_rss_mib={rss:.1}",
        setup.as_secs_f64() * 1e3
    );
    if let Some(r) = report {
        println!(
            "timely-latency pingpong_median_us={:.1} pingpong_p99_us={:.1} rounds={rounds}",
            r.pingpong_us, r.pingpong_p99_us
        );
        println!(
            "timely workers={} processes={} msgs_per_s={:.0} pingpong_us={:.1}",
            args.workers, args.processes, r.msgs_per_s, r.pingpong_us
        );
    }
    Ok(())
}

/// Receives `n` messages, parking when none are there. The channel
/// events are drained as timely's own worker does in each step; left
/// undrained, `await_events` never parks and the worker spins.
fn receive(a: &mut Allocator, rx: &mut dyn Pull<U64>, n: u64, mut each: impl FnMut(u64)) {
    let mut got = 0;
    while got < n {
        a.receive();
        a.events().borrow_mut().clear();
        while let Some(m) = rx.recv() {
            each(m.0);
            got += 1;
        }
        a.release();
        if got < n {
            a.await_events(None);
        }
    }
}

fn barrier(a: &mut Allocator, channel: usize) {
    let (mut tx, mut rx) = a.allocate::<U64>(channel);
    for s in tx.iter_mut() {
        s.send(U64(0));
        s.done();
    }
    a.release();
    let peers = a.peers() as u64;
    receive(a, &mut *rx, peers, |_| {});
}

fn bench_worker(mut a: Allocator, messages: u64, rounds: u64) -> Option<Report> {
    let (peers, me) = (a.peers(), a.index());
    let pairs = peers / 2;
    let per_sender = messages / pairs as u64;
    let (mut data_tx, mut data_rx) = a.allocate::<U64>(1);
    let (mut result_tx, mut result_rx) = a.allocate::<U64>(2);
    let (mut ping_tx, mut ping_rx) = a.allocate::<U64>(3);
    barrier(&mut a, 10);

    let start = Instant::now();
    if me < pairs {
        let to = &mut data_tx[me + pairs];
        for i in 0..per_sender {
            to.send(U64(i));
        }
        to.done();
        a.release();
    } else if me < 2 * pairs {
        let mut expect = 0;
        receive(&mut a, &mut *data_rx, per_sender, |v| {
            assert_eq!(v, expect);
            expect += 1;
        });
        result_tx[0].send(U64(start.elapsed().as_nanos() as u64));
        result_tx[0].done();
        a.release();
    }
    let mut slowest = 0;
    if me == 0 {
        receive(&mut a, &mut *result_rx, pairs as u64, |ns| {
            slowest = slowest.max(ns)
        });
    }
    barrier(&mut a, 11);

    let last = peers - 1;
    let mut rtts = Vec::with_capacity(rounds as usize);
    if me == 0 {
        for r in 0..rounds {
            let t = Instant::now();
            ping_tx[last].send(U64(r));
            ping_tx[last].done();
            a.release();
            receive(&mut a, &mut *ping_rx, 1, |v| assert_eq!(v, r));
            rtts.push(t.elapsed());
        }
    } else if me == last {
        for _ in 0..rounds {
            let mut v = 0;
            receive(&mut a, &mut *ping_rx, 1, |x| v = x);
            ping_tx[0].send(U64(v));
            ping_tx[0].done();
            a.release();
        }
    }
    barrier(&mut a, 12);
    if me != 0 {
        return None;
    }
    rtts.sort();
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    Some(Report {
        msgs_per_s: (per_sender * pairs as u64) as f64 / (slowest as f64 / 1e9),
        pingpong_us: at(0.5),
        pingpong_p99_us: at(0.99),
    })
}
