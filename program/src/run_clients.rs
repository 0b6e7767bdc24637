//! Runs `Role::Clients`: thousands of closed-loop clients over a few
//! threads, each thread one socket and one cooperative loop.

use crate::daemon::Reporter;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use troupe::actor::Addr;
use troupe::net::bind_udp;
use troupe::protocol::Setup;
use troupe::runtime::{new_histogram, process_cpu_time, ClosedLoop, Counters, LiveStats};
use troupe_message::control::{Command, Interval, Report, Role, Summary};

/// What one client-host thread hands back.
struct ThreadResult {
    measured: Histogram<u64>,
    measured_ops: u64,
    wrong: u64,
    completed: u64,
    counters: Counters,
}

/// Runs the clients the command describes; returns the final report.
pub fn run(command: &Command, reporter: &Reporter) -> Report {
    let Role::Clients {
        first_id,
        count,
        threads,
        bind,
    } = command.role
    else {
        return Report::Error("not a client role".into());
    };
    let Some(protocol) = troupe::protocol::find(&command.protocol) else {
        return Report::Error(format!("unknown protocol {}", command.protocol));
    };
    let threads = (threads as u32).min(count).max(1);
    let live = Arc::new(Mutex::new(LiveStats::default()));
    let duration = Duration::from_millis(command.duration_ms);
    let warmup = Duration::from_millis(command.warmup_ms.min(command.duration_ms));
    let mut handles = Vec::new();
    for t in 0..threads {
        // Spread clients evenly: the first `count % threads` threads get one more.
        let per = count / threads + u32::from(t < count % threads);
        let first = first_id
            + (0..t)
                .map(|u| (count / threads + u32::from(u < count % threads)) as u64)
                .sum::<u64>();
        let socket = match bind_udp(std::net::SocketAddr::new(bind, 0)) {
            Ok(s) => s,
            Err(e) => return Report::Error(format!("cannot bind a client socket on {bind}: {e}")),
        };
        let command = command.clone();
        let (live, stop) = (live.clone(), reporter.stop.clone());
        handles.push(std::thread::spawn(
            move || -> Result<ThreadResult, String> {
                let mut closed_loop = ClosedLoop::new(
                    &command.workload,
                    first,
                    per as u64,
                    command.seed,
                    warmup,
                    duration,
                    live,
                    stop,
                );
                let setup = Setup {
                    command: &command,
                    me: Addr::Client(first),
                    client_count: per as u64,
                    socket,
                    tick: Duration::from_millis(20),
                };
                let counters =
                    (protocol.run_clients)(setup, &mut closed_loop).map_err(|e| e.to_string())?;
                Ok(ThreadResult {
                    measured: closed_loop.measured,
                    measured_ops: closed_loop.measured_ops,
                    wrong: closed_loop.wrong,
                    completed: closed_loop.completed,
                    counters,
                })
            },
        ));
    }
    reporter.send(&Report::Started);

    // Report each second until every thread is done, then the last part
    // second (unless it is a sliver), so the series covers the whole run.
    let start = Instant::now();
    let mut last = start;
    let mut last_cpu = process_cpu_time();
    loop {
        let done = handles.iter().all(|h| h.is_finished());
        if !done {
            std::thread::sleep(Duration::from_millis(20));
        }
        let due = if done {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        if last.elapsed() >= due {
            let interval = live.lock().map(|mut l| l.take()).unwrap_or_default();
            let cpu = process_cpu_time();
            let now = Instant::now();
            reporter.send(&Report::Interval(Interval {
                at_ms: (now - start).as_millis() as u64,
                ops: interval.ops,
                len_ms: (now - last).as_millis() as u64,
                p50_us: interval.latency.value_at_quantile(0.5),
                p99_us: interval.latency.value_at_quantile(0.99),
                cpu_ms: (cpu - last_cpu).as_millis() as u64,
                state: format!("{} wrong", interval.wrong),
            }));
            last = now;
            last_cpu = cpu;
        }
        if done {
            break;
        }
    }

    let mut total = new_histogram();
    let mut counters = Counters::default();
    let (mut ops, mut wrong, mut completed) = (0, 0, 0);
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => {
                let _ = total.add(&r.measured);
                ops += r.measured_ops;
                wrong += r.wrong;
                completed += r.completed;
                counters.merge(&r.counters);
            }
            Ok(Err(e)) => return Report::Error(format!("client thread failed: {e}")),
            Err(_) => return Report::Error("a client thread panicked".into()),
        }
    }
    let mut histogram = Vec::new();
    if let Err(e) = V2Serializer::new().serialize(&total, &mut histogram) {
        return Report::Error(format!("cannot serialize the histogram: {e}"));
    }
    let mut named = counters.named();
    named.push(("wrong_results".into(), wrong));
    named.push(("completed".into(), completed));
    Report::Done(Summary {
        ops,
        measured_ms: (duration - warmup).as_millis() as u64,
        histogram,
        counters: named,
    })
}
