//! Runs `Role::Replica`: one replica of a protocol until told to stop.

use crate::daemon::Reporter;
use std::sync::atomic::Ordering;
use std::time::Duration;
use troupe::actor::Addr;
use troupe::net::bind_udp;
use troupe::protocol::Setup;
use troupe::runtime::{process_cpu_time, HostView, Supervisor};
use troupe_message::control::{Command, Interval, Report, Role, Summary};

/// How often a replica reports.
const INTERVAL: Duration = Duration::from_secs(1);

struct ReplicaSupervisor<'a> {
    reporter: &'a Reporter,
    last_report: Duration,
    last_ops: u64,
    last_cpu: Duration,
    executed: u64,
}

impl Supervisor for ReplicaSupervisor<'_> {
    fn tick(&mut self, now: Duration, view: &HostView<'_>) -> bool {
        self.executed = view.executed;
        if now >= self.last_report + INTERVAL {
            let cpu = process_cpu_time();
            self.reporter.send(&Report::Interval(Interval {
                at_ms: now.as_millis() as u64,
                ops: view.executed - self.last_ops,
                len_ms: (now - self.last_report).as_millis() as u64,
                p50_us: 0,
                p99_us: 0,
                cpu_ms: (cpu - self.last_cpu).as_millis() as u64,
                state: view.status.clone(),
            }));
            self.last_report = now;
            self.last_ops = view.executed;
            self.last_cpu = cpu;
        }
        !self.reporter.stop.load(Ordering::Relaxed)
    }
}

/// Runs the replica the command describes; returns the final report.
pub fn run(command: &Command, reporter: &Reporter) -> Report {
    let Role::Replica { id } = command.role else {
        return Report::Error("not a replica role".into());
    };
    let Some(protocol) = troupe::protocol::find(&command.protocol) else {
        return Report::Error(format!("unknown protocol {}", command.protocol));
    };
    let socket = match bind_udp(command.replicas[id as usize]) {
        Ok(s) => s,
        Err(e) => {
            return Report::Error(format!(
                "cannot bind {}: {e}",
                command.replicas[id as usize]
            ))
        }
    };
    reporter.send(&Report::Started);
    let setup = Setup {
        command,
        me: Addr::Node(id),
        client_count: 0,
        socket,
        tick: Duration::from_millis(50),
    };
    let mut supervisor = ReplicaSupervisor {
        reporter,
        last_report: Duration::ZERO,
        last_ops: 0,
        last_cpu: process_cpu_time(),
        executed: 0,
    };
    match (protocol.run_replica)(setup, &mut supervisor) {
        Ok(counters) => Report::Done(Summary {
            ops: supervisor.executed,
            measured_ms: supervisor.last_report.as_millis() as u64,
            histogram: Vec::new(),
            counters: counters.named(),
        }),
        Err(e) => Report::Error(format!("replica {id} failed: {e}")),
    }
}
