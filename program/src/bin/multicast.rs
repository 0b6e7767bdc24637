//! `multicast`: barrier latency and broadcast throughput of troupe's
//! multicast sessions on loopback, coordinator and members as threads of
//! this process.
//!
//!     multicast barrier --members 2 --rounds 10000
//!     multicast broadcast --members 2 --size 1024 --count 100000 [--loss 0.05]
//!
//! The last line is the result, e.g.
//! `barrier members=2 rounds=10000 mean_us=40.1 p99_us=80`.
//! `scripts/compare-camure.sh` runs the same workloads against the
//! published camure crate in the same run.

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use troupe::multicast::{Config, Coordinator, Error, Member};

#[derive(Parser)]
#[command(about = "Barrier latency and broadcast throughput of multicast sessions")]
struct Args {
    #[command(subcommand)]
    workload: Workload,
    /// Coordinator address.
    #[arg(long, global = true, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Session multicast address.
    #[arg(long, global = true, default_value = "239.10.20.30:45678")]
    multicast: SocketAddr,
}

#[derive(Subcommand)]
enum Workload {
    /// Rounds of a barrier across the coordinator and N members.
    Barrier {
        /// Members.
        #[arg(long, default_value_t = 2)]
        members: usize,
        /// Rounds timed (after 100 warm-up rounds).
        #[arg(long, default_value_t = 10_000)]
        rounds: usize,
    },
    /// K messages of BYTES each from the coordinator to N members.
    Broadcast {
        /// Members.
        #[arg(long, default_value_t = 2)]
        members: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Messages.
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Fraction of datagrams each member drops on receipt.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
    },
    /// An idle session: the coordinator and N joined members doing
    /// nothing for a while; prints the CPU the process used.
    Idle {
        /// Members.
        #[arg(long, default_value_t = 2)]
        members: usize,
        /// Seconds idle.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Across hosts (see scripts/multicast-netns.sh): runs a session's
    /// coordinator through barrier rounds and a checked broadcast.
    CheckCoordinator {
        /// Members to wait for.
        #[arg(long)]
        members: usize,
    },
    /// Across hosts: a member of the `check-coordinator` session.
    CheckMember {
        /// The coordinator's address.
        #[arg(long)]
        coordinator: SocketAddr,
    },
}

fn idle(args: &Args, members: usize, seconds: f64) -> Result<(), Error> {
    let coordinator = Coordinator::start_session(args.bind, args.multicast)?;
    let mut barrier = coordinator.create_barrier_group(Some(0))?;
    let mut sender = coordinator.create_broadcast_group(Some(1))?;
    let at = coordinator.local_addr();
    let joined: Vec<_> = (0..members)
        .map(|_| {
            let member = Member::join_session(at)?;
            let b = member.join_barrier_group(0)?;
            let r = member.join_broadcast_group(1)?;
            Ok((member, b, r))
        })
        .collect::<Result<_, Error>>()?;
    for _ in 0..members {
        barrier.accept()?;
        sender.accept()?;
    }
    let cpu = troupe::runtime::process_cpu_time();
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let used = troupe::runtime::process_cpu_time() - cpu;
    let percent = 100.0 * used.as_secs_f64() / wall.elapsed().as_secs_f64();
    drop(joined);
    println!("idle members={members} seconds={seconds} cpu_percent={percent:.2}");
    Ok(())
}

/// Rounds and messages of the cross-host check.
const CHECK_ROUNDS: usize = 100;
const CHECK_MESSAGES: usize = 2000;

/// Message `i` of the cross-host check: sizes from 0 to ~100 KB, bytes
/// that depend on `i`, so any loss, reordering or corruption shows.
fn check_message(i: usize) -> Vec<u8> {
    let size = (i * 7919) % 100_000;
    (0..size).map(|k| (k ^ i) as u8).collect()
}

fn check_coordinator(args: &Args, members: usize) -> Result<(), Error> {
    let coordinator = Coordinator::start_session(args.bind, args.multicast)?;
    let mut barrier = coordinator.create_barrier_group(Some(0))?;
    let mut sender = coordinator.create_broadcast_group(Some(1))?;
    for _ in 0..members {
        barrier.accept()?;
        sender.accept()?;
    }
    for _ in 0..CHECK_ROUNDS {
        barrier.wait()?;
    }
    for i in 0..CHECK_MESSAGES {
        sender.send(check_message(i))?;
    }
    sender.wait()?;
    // The members confirm they checked everything by a last round.
    barrier.wait()?;
    println!("check-coordinator: {members} members passed {CHECK_ROUNDS} rounds and {CHECK_MESSAGES} messages");
    Ok(())
}

fn check_member(coordinator: SocketAddr) -> Result<(), Error> {
    let member = Member::join_session(coordinator)?;
    let mut barrier = member.join_barrier_group(0)?;
    let mut rx = member.join_broadcast_group(1)?;
    for _ in 0..CHECK_ROUNDS {
        barrier.wait()?;
    }
    for i in 0..CHECK_MESSAGES {
        if rx.recv()?.into_bytes() != check_message(i) {
            eprintln!("check-member: message {i} differs");
            std::process::exit(1);
        }
    }
    barrier.wait()?;
    println!(
        "check-member {:x}: all rounds and messages arrived intact",
        member.id()
    );
    Ok(())
}

const WARMUP: usize = 100;

fn barrier(args: &Args, members: usize, rounds: usize) -> Result<(), Error> {
    let coordinator = Coordinator::start_session(args.bind, args.multicast)?;
    let at = coordinator.local_addr();
    let mut group = coordinator.create_barrier_group(Some(0))?;
    let threads: Vec<_> = (0..members)
        .map(|_| {
            std::thread::spawn(move || -> Result<(), Error> {
                let member = Member::join_session(at)?;
                let mut g = member.join_barrier_group(0)?;
                for _ in 0..WARMUP + rounds {
                    g.wait()?;
                }
                Ok(())
            })
        })
        .collect();
    for _ in 0..members {
        group.accept()?;
    }
    for _ in 0..WARMUP {
        group.wait()?;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        group.wait()?;
        hist.saturating_record(t.elapsed().as_micros().max(1) as u64);
    }
    let total = start.elapsed();
    for t in threads {
        t.join().expect("member thread panicked")?;
    }
    println!(
        "barrier members={members} rounds={rounds} mean_us={:.1} p99_us={}",
        total.as_secs_f64() * 1e6 / rounds as f64,
        hist.value_at_quantile(0.99)
    );
    Ok(())
}

fn broadcast(
    args: &Args,
    members: usize,
    size: usize,
    count: usize,
    loss: f64,
) -> Result<(), Error> {
    let coordinator = Coordinator::start_session(args.bind, args.multicast)?;
    let at = coordinator.local_addr();
    let mut sender = coordinator.create_broadcast_group(Some(0))?;
    let threads: Vec<_> = (0..members)
        .map(|_| {
            std::thread::spawn(move || -> Result<(), Error> {
                let config = Config {
                    receive_loss: loss,
                    ..Config::default()
                };
                let member = Member::join_session_with_config(at, config)?;
                let mut rx = member.join_broadcast_group(0)?;
                let mut buf = Vec::with_capacity(size);
                for i in 0..count {
                    buf.clear();
                    let n = rx.recv()?.read().read_to_end(&mut buf).unwrap_or(0);
                    let tag = (i as u64).to_le_bytes();
                    let k = size.min(8);
                    if n != size || buf[..k] != tag[..k] {
                        panic!("message {i} arrived wrong ({n} bytes)");
                    }
                }
                Ok(())
            })
        })
        .collect();
    for _ in 0..members {
        sender.accept()?;
    }
    let mut msg = vec![0x5au8; size];
    let start = Instant::now();
    for i in 0..count {
        let k = size.min(8);
        msg[..k].copy_from_slice(&(i as u64).to_le_bytes()[..k]);
        sender
            .write_message()
            .write_all(&msg)
            .map_err(Error::from)?;
    }
    sender.wait()?;
    let elapsed = start.elapsed().max(Duration::from_nanos(1));
    for t in threads {
        t.join().expect("member thread panicked")?;
    }
    let per_s = count as f64 / elapsed.as_secs_f64();
    println!(
        "broadcast members={members} size={size} count={count} msgs_per_s={per_s:.0} mib_per_s={:.1}",
        per_s * size as f64 / (1 << 20) as f64
    );
    Ok(())
}

fn main() {
    let args = Args::parse();
    let result = match args.workload {
        Workload::Barrier { members, rounds } => barrier(&args, members, rounds),
        Workload::Broadcast {
            members,
            size,
            count,
            loss,
        } => broadcast(&args, members, size, count, loss),
        Workload::Idle { members, seconds } => idle(&args, members, seconds),
        Workload::CheckCoordinator { members } => check_coordinator(&args, members),
        Workload::CheckMember { coordinator } => check_member(coordinator),
    };
    if let Err(e) = result {
        eprintln!("multicast: {e}");
        std::process::exit(1);
    }
}
