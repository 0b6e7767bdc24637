//! The published camure crate under the workloads of troupe's `multicast`
//! benchmark, with the same command line and the same result lines, so
//! `scripts/compare-camure.sh` can compare the two in one run.
//!
//! camure joins its multicast group on "any interface", so on loopback it
//! needs `224.0.0.0/4` routed to `lo`: the script runs it inside a private
//! network namespace it creates, never on the host's routing table.

use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    workload: Workload,
    /// Coordinator address.
    #[arg(long, global = true, default_value = "127.0.0.1:45677")]
    bind: SocketAddr,
    /// Session multicast address.
    #[arg(long, global = true, default_value = "239.10.20.31:45679")]
    multicast: SocketAddr,
}

#[derive(Subcommand)]
enum Workload {
    Barrier {
        #[arg(long, default_value_t = 2)]
        members: usize,
        #[arg(long, default_value_t = 10_000)]
        rounds: usize,
    },
    Broadcast {
        #[arg(long, default_value_t = 2)]
        members: usize,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 100_000)]
        count: usize,
    },
}

const WARMUP: usize = 100;

fn main() {
    let args = Args::parse();
    let coordinator = camure::session::Coordinator::start_session(args.bind, args.multicast)
        .expect("start session");
    let at = args.bind;
    match args.workload {
        Workload::Barrier { members, rounds } => {
            let mut group = coordinator.create_barrier_group(Some(0)).expect("create");
            let threads: Vec<_> = (0..members)
                .map(|_| {
                    std::thread::spawn(move || {
                        let member = camure::session::Member::join_session(at).expect("join");
                        let mut g = member.join_barrier_group(0).expect("join group");
                        for _ in 0..WARMUP + rounds {
                            g.wait().expect("wait");
                        }
                    })
                })
                .collect();
            for _ in 0..members {
                group.accept().expect("accept");
            }
            for _ in 0..WARMUP {
                group.wait().expect("wait");
            }
            let mut samples = Vec::with_capacity(rounds);
            let start = Instant::now();
            for _ in 0..rounds {
                let t = Instant::now();
                group.wait().expect("wait");
                samples.push(t.elapsed().as_micros() as u64);
            }
            let total = start.elapsed();
            for t in threads {
                t.join().expect("member");
            }
            samples.sort_unstable();
            let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
            println!(
                "barrier members={members} rounds={rounds} mean_us={:.1} p99_us={p99}",
                total.as_secs_f64() * 1e6 / rounds as f64
            );
        }
        Workload::Broadcast {
            members,
            size,
            count,
        } => {
            let mut sender = coordinator.create_broadcast_group(Some(0)).expect("create");
            let threads: Vec<_> = (0..members)
                .map(|_| {
                    std::thread::spawn(move || {
                        let member = camure::session::Member::join_session(at).expect("join");
                        let mut rx = member.join_broadcast_group(0).expect("join group");
                        let mut buf = Vec::with_capacity(size);
                        for i in 0..count {
                            buf.clear();
                            let msg = rx.recv().expect("recv");
                            let n = msg.read().read_to_end(&mut buf).expect("read");
                            let k = size.min(8);
                            assert!(n == size && buf[..k] == (i as u64).to_le_bytes()[..k]);
                        }
                    })
                })
                .collect();
            for _ in 0..members {
                sender.accept().expect("accept");
            }
            let mut msg = vec![0x5au8; size];
            let start = Instant::now();
            for i in 0..count {
                let k = size.min(8);
                msg[..k].copy_from_slice(&(i as u64).to_le_bytes()[..k]);
                sender.write_message().write_all(&msg).expect("write");
            }
            sender.wait().expect("wait");
            let elapsed = start.elapsed();
            for t in threads {
                t.join().expect("member");
            }
            let per_s = count as f64 / elapsed.as_secs_f64();
            println!(
                "broadcast members={members} size={size} count={count} msgs_per_s={per_s:.0} mib_per_s={:.1}",
                per_s * size as f64 / (1 << 20) as f64
            );
        }
    }
}
