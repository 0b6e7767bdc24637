//! `wordcount`: a distributed word count on exchange channels, the
//! worked example.
//!
//! Each worker counts the words of its share of the lines, then shuffles
//! each (word, count) to the worker that owns the word (by hash), which
//! adds them up; finally every worker sends its totals to worker 0, which
//! prints the most frequent words and a checksum. With `--processes 2`
//! the program starts the second process itself on loopback:
//!
//!     cargo run --release -p troupe-program --bin wordcount -- --processes 2 --workers 2
//!
//! `--sequential` counts on one thread without any exchange: its summary
//! line must be the same.

use clap::Parser;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::Duration;
use troupe::exchange::{
    initialize, Allocator, ClusterConfig, Config, ExchangeError, Pull, Push, PushError, Receiver,
    Sender,
};
use troupe_program::peers::{loopback_addresses, PeerProcesses};

#[derive(Parser, Clone)]
#[command(about = "Distributed word count over exchange channels")]
struct Args {
    /// Worker threads per process.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Processes (started by this program on loopback).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Lines of generated text.
    #[arg(long, default_value_t = 200_000)]
    lines: usize,
    /// Count on one thread, without exchange channels.
    #[arg(long)]
    sequential: bool,
    /// This process's index (set for the processes this program starts).
    #[arg(long, hide = true)]
    process: Option<usize>,
    /// Every process's address (set for the processes this program starts).
    #[arg(long, hide = true, value_delimiter = ',')]
    addresses: Vec<SocketAddr>,
}

const WORDS: &[&str] = &[
    "actor",
    "replica",
    "quorum",
    "ballot",
    "leader",
    "commit",
    "view",
    "epoch",
    "batch",
    "ack",
    "nack",
    "timer",
    "client",
    "server",
    "worker",
    "channel",
    "message",
    "frame",
    "socket",
    "poller",
    "ring",
    "signal",
    "barrier",
    "session",
    "member",
    "chunk",
    "tile",
    "heartbeat",
];

/// Line `i` of the generated text: deterministic, skewed word choice
/// (low indices are frequent), plus a rare numbered word so that there
/// are many distinct words too.
fn line(i: usize) -> String {
    let mut x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut words = Vec::new();
    for _ in 0..8 {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51afd7ed558ccd);
        let r = (x >> 11) as usize;
        let pick = (r % WORDS.len()) * (r / WORDS.len() % WORDS.len()) / WORDS.len();
        words.push(WORDS[pick].to_string());
    }
    words.push(format!("w{}", x % 5000));
    words.join(" ")
}

fn count_lines(lines: impl Iterator<Item = usize>) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for i in lines {
        for w in line(i).split_whitespace() {
            *counts.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// The summary both modes print: total, distinct, the top five, and an
/// order-independent checksum of every (word, count).
fn summary(counts: &HashMap<String, u64>) -> String {
    let total: u64 = counts.values().sum();
    let mut top: Vec<_> = counts.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top: Vec<String> = top
        .iter()
        .take(5)
        .map(|(w, c)| format!("{w}:{c}"))
        .collect();
    let checksum = counts.iter().fold(0u64, |acc, (w, c)| {
        let mut h = DefaultHasher::new();
        (w, c).hash(&mut h);
        acc ^ h.finish()
    });
    format!(
        "wordcount total={total} distinct={} top={} checksum={checksum:016x}",
        counts.len(),
        top.join(",")
    )
}

fn owner(word: &str, peers: usize) -> usize {
    let mut h = DefaultHasher::new();
    word.hash(&mut h);
    (h.finish() % peers as u64) as usize
}

/// `None` marks the end of one worker's stream.
type Msg = Option<(String, u64)>;

/// Sends without ever blocking on a full channel: while it is full, this
/// worker takes in what others send it, so two workers shuffling to each
/// other cannot wait on each other forever.
fn send(
    a: &Allocator,
    to: &mut Sender<Msg>,
    msg: Msg,
    rx: &mut Receiver<Msg>,
    into: &mut Totals,
) -> Result<(), ExchangeError> {
    let mut msg = msg;
    loop {
        match to.try_push(msg) {
            Ok(()) => return Ok(()),
            Err(PushError::Failed(e)) => return Err(e),
            Err(PushError::Full(back)) => {
                msg = back;
                while let Some(m) = rx.try_pull()? {
                    into.take(m);
                }
                a.await_events(Some(Duration::from_millis(1)));
            }
        }
    }
}

/// What a shuffle has received so far.
#[derive(Default)]
struct Totals {
    counts: HashMap<String, u64>,
    ended: usize,
}

impl Totals {
    fn take(&mut self, m: Msg) {
        match m {
            Some((w, c)) => *self.counts.entry(w).or_insert(0) += c,
            None => self.ended += 1,
        }
    }
}

/// Sends every entry of `counts` to `route(word)`, then an end marker to
/// every worker; returns the sum of what arrives, once every worker's
/// end marker has.
fn shuffle(
    a: &mut Allocator,
    channel: usize,
    counts: HashMap<String, u64>,
    route: impl Fn(&str) -> usize,
) -> Result<HashMap<String, u64>, ExchangeError> {
    let (mut tx, mut rx) = a.allocate::<Msg>(channel)?;
    let mut totals = Totals::default();
    for (word, c) in counts {
        let to = route(&word);
        send(a, &mut tx[to], Some((word, c)), &mut rx, &mut totals)?;
    }
    for to in tx.iter_mut() {
        send(a, to, None, &mut rx, &mut totals)?;
    }
    while totals.ended < a.peers() {
        match rx.recv_blocking()? {
            Some(m) => totals.take(m),
            None => return Err(ExchangeError::Config("senders vanished".into())),
        }
    }
    Ok(totals.counts)
}

fn worker(mut a: Allocator, lines: usize) -> Result<Option<String>, ExchangeError> {
    let (me, peers) = (a.index(), a.peers());
    let local = count_lines((me..lines).step_by(peers));
    let owned = shuffle(&mut a, 0, local, |w| owner(w, peers))?;
    let all = shuffle(&mut a, 1, owned, |_| 0)?;
    Ok((me == 0).then(|| summary(&all)))
}

fn run_process(args: &Args, index: usize, addresses: Vec<SocketAddr>) -> Result<(), String> {
    let config = if args.processes > 1 {
        Config::Cluster(ClusterConfig::new(args.workers, index, addresses))
    } else {
        Config::Process(args.workers)
    };
    let lines = args.lines;
    let guards = initialize(config, move |a| worker(a, lines)).map_err(|e| e.to_string())?;
    for result in guards.join() {
        match result {
            Ok(Ok(Some(summary))) => println!("{summary}"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(panic) => return Err(format!("worker panicked: {panic}")),
        }
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let result = if args.sequential {
        println!("{}", summary(&count_lines(0..args.lines)));
        Ok(())
    } else if let Some(index) = args.process {
        run_process(&args, index, args.addresses.clone())
    } else if args.processes > 1 {
        loopback_addresses(args.processes)
            .map_err(|e| e.to_string())
            .and_then(|addresses| {
                let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
                let peers = PeerProcesses::spawn(1..args.processes, |i| {
                    vec![
                        format!("--workers={}", args.workers),
                        format!("--processes={}", args.processes),
                        format!("--lines={}", args.lines),
                        format!("--process={i}"),
                        format!("--addresses={}", list.join(",")),
                    ]
                })
                .map_err(|e| e.to_string())?;
                run_process(&args, 0, addresses)?;
                peers.wait(Duration::from_secs(60))
            })
    } else {
        run_process(&args, 0, Vec::new())
    };
    if let Err(e) = result {
        eprintln!("wordcount: {e}");
        std::process::exit(1);
    }
}
