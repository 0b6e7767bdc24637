//! `echo_baseline`: the ratio that keeps the runtime honest.
//!
//! Runs, in one process and one run, a bare UDP echo (a server thread in
//! blocking `recv_from`/`send_to`, a client thread keeping C requests in
//! flight on one socket) and the unreplicated protocol on the epoll
//! runtime (a replica host thread, a client host thread with C
//! closed-loop clients), with the same C and the same duration, and
//! prints both and their ratio.

use clap::Parser;
use hdrhistogram::Histogram;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use troupe::actor::{Addr, Deploy};
use troupe::app::{App, AppKind, Workload};
use troupe::net::{bind_udp, BincodeCodec, Directory};
use troupe::protocol::unreplicated::{Client, Message, Replica};
use troupe::runtime::{
    new_histogram, run_host, ClosedLoop, HostConfig, HostView, LiveStats, Supervisor,
};

#[derive(Parser)]
#[command(about = "Bare UDP echo against the unreplicated protocol, same run")]
struct Args {
    /// Client counts to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    clients: Vec<u32>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Request payload bytes.
    #[arg(long, default_value_t = 16)]
    size: usize,
}

struct Measured {
    ops_per_s: f64,
    p50_us: u64,
    p99_us: u64,
}

fn echo(clients: u32, duration: Duration, size: usize) -> std::io::Result<Measured> {
    let server = UdpSocket::bind("127.0.0.1:0")?;
    let server_addr = server.local_addr()?;
    server.set_read_timeout(Some(Duration::from_millis(100)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_server = stop.clone();
    let server_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop_server.load(Ordering::Relaxed) {
            if let Ok((n, from)) = server.recv_from(&mut buf) {
                let _ = server.send_to(&buf[..n], from);
            }
        }
    });
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut sent_at = vec![Instant::now(); clients as usize];
    let mut payload = vec![0u8; size.max(4)];
    for id in 0..clients {
        payload[..4].copy_from_slice(&id.to_le_bytes());
        sent_at[id as usize] = Instant::now();
        socket.send_to(&payload, server_addr)?;
    }
    let mut hist = new_histogram();
    let start = Instant::now();
    let mut ops = 0u64;
    let mut buf = [0u8; 2048];
    while start.elapsed() < duration {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) if n >= 4 => {
                let id = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if id < sent_at.len() {
                    hist.saturating_record(sent_at[id].elapsed().as_micros() as u64);
                    ops += 1;
                    sent_at[id] = Instant::now();
                    socket.send_to(&buf[..n], server_addr)?;
                }
            }
            Ok(_) => {}
            // A datagram lost on loopback (buffer overflow): resend all.
            Err(_) => {
                for id in 0..clients {
                    payload[..4].copy_from_slice(&id.to_le_bytes());
                    sent_at[id as usize] = Instant::now();
                    socket.send_to(&payload, server_addr)?;
                }
            }
        }
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = server_thread.join();
    Ok(summarize(ops, elapsed, &hist))
}

fn summarize(ops: u64, elapsed: Duration, hist: &Histogram<u64>) -> Measured {
    Measured {
        ops_per_s: ops as f64 / elapsed.as_secs_f64(),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
    }
}

struct UntilStopped(Arc<AtomicBool>);

impl Supervisor for UntilStopped {
    fn tick(&mut self, _now: Duration, _view: &HostView<'_>) -> bool {
        !self.0.load(Ordering::Relaxed)
    }
}

fn unreplicated(clients: u32, duration: Duration, size: usize) -> std::io::Result<Measured> {
    let server = bind_udp("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?;
    let server_addr = server.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_replica = stop.clone();
    let replica = std::thread::spawn(move || {
        let config = HostConfig {
            socket: server,
            directory: Directory::new(vec![server_addr]),
            deploy: Deploy::default(),
            tick: Duration::from_millis(50),
            seed: 1,
        };
        let actors = vec![(Addr::Node(0), Replica::new(App::new(AppKind::Null)))];
        run_host(
            actors,
            Arc::new(BincodeCodec::<Message>::new()),
            config,
            &mut UntilStopped(stop_replica),
        )
    });
    let workload = Workload::Null {
        op_size: size as u32,
    };
    let live = Arc::new(Mutex::new(LiveStats::default()));
    let mut closed_loop = ClosedLoop::new(
        &workload,
        1,
        clients as u64,
        1,
        Duration::ZERO,
        duration,
        live,
        Arc::new(AtomicBool::new(false)),
    );
    let config = HostConfig {
        socket: bind_udp("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?,
        directory: Directory::new(vec![server_addr]),
        deploy: Deploy::default(),
        tick: Duration::from_millis(10),
        seed: 2,
    };
    let actors = (1..=clients as u64)
        .map(|c| (Addr::Client(c), Client::new(c, Duration::from_millis(200))))
        .collect();
    let start = Instant::now();
    run_host(
        actors,
        Arc::new(BincodeCodec::<Message>::new()),
        config,
        &mut closed_loop,
    )?;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    replica
        .join()
        .map_err(|_| std::io::Error::other("replica thread panicked"))??;
    Ok(summarize(
        closed_loop.measured_ops,
        elapsed,
        &closed_loop.measured,
    ))
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let duration = Duration::from_secs_f64(args.duration);
    for &clients in &args.clients {
        let e = echo(clients, duration, args.size)?;
        let u = unreplicated(clients, duration, args.size)?;
        println!(
            "echo         clients={clients} ops_per_s={:.0} p50_us={} p99_us={}",
            e.ops_per_s, e.p50_us, e.p99_us
        );
        println!(
            "unreplicated clients={clients} ops_per_s={:.0} p50_us={} p99_us={}",
            u.ops_per_s, u.p50_us, u.p99_us
        );
        println!(
            "ratio        clients={clients} throughput={:.2} p50={:.2}",
            u.ops_per_s / e.ops_per_s.max(1.0),
            u.p50_us as f64 / e.p50_us.max(1) as f64
        );
    }
    Ok(())
}
