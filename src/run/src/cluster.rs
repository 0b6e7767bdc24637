//! The programs of a sweep: started where the hosts say (loopback by
//! default), commanded over the control plane, reused from run to run,
//! replaced when they die, and stopped when the cluster is dropped.

use crate::bench::{Bench, Fault, RunResult, Sample};
use crate::control::Tagged;
use crate::events::{plain, Event, Sink};
use crate::hosts::Hosts;
use crate::keys;
use crate::program::Program;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use troupe_message::control::{ClientAuth, Control, Keys, Report, Summary};

/// Counters whose names end like this count as errors in a result.
const ERROR_COUNTERS: [&str; 5] = [
    "malformed",
    "bad_auth",
    "wrong_results",
    "send_errors",
    "clients_table_full",
];

/// Reports and log lines queued before their readers wait for the runner
/// (which drains them all the time, also between runs).
const REPORTS_QUEUED: usize = 16 * 1024;

/// Why [`Cluster::run`] returned no result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunError {
    /// The run failed (a program died, refused, or timed out); the sweep
    /// records it and goes on.
    Failed(String),
    /// The stop flag was raised (q, Ctrl-C): nothing to record.
    Stopped,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Failed(e) => f.write_str(e),
            RunError::Stopped => f.write_str("stopped by the user"),
        }
    }
}

impl From<String> for RunError {
    fn from(e: String) -> Self {
        RunError::Failed(e)
    }
}

/// The replica and client-host programs of a sweep.
pub struct Cluster {
    bin_dir: PathBuf,
    hosts: Hosts,
    token: String,
    replicas: Vec<Option<Program>>,
    client_host: Option<Program>,
    reports_tx: SyncSender<Tagged>,
    reports: Receiver<Tagged>,
    /// Programs sent a `Run` that have not yet sent their final report.
    pending: BTreeSet<String>,
    /// What became of the program whose connection closed last.
    down: Option<String>,
    sink: Sink,
    stop: Arc<AtomicBool>,
}

impl Cluster {
    /// A loopback cluster whose programs are in `bin_dir`, with a fresh
    /// token, printing events as tagged lines.
    pub fn local(bin_dir: &Path) -> std::io::Result<Self> {
        Self::new(bin_dir, Hosts::loopback())
    }

    /// A cluster on `hosts`. The token is fresh, unless some program is
    /// started by hand: then it is TROUPE_TOKEN's.
    pub fn new(bin_dir: &Path, hosts: Hosts) -> std::io::Result<Self> {
        let token = if hosts.needs_given_token() {
            std::env::var("TROUPE_TOKEN").map_err(|_| {
                std::io::Error::other("the hosts file lists running programs: set TROUPE_TOKEN")
            })?
        } else {
            keys::token()?
        };
        let (reports_tx, reports) = sync_channel(REPORTS_QUEUED);
        Ok(Cluster {
            bin_dir: bin_dir.to_path_buf(),
            hosts,
            token,
            replicas: Vec::new(),
            client_host: None,
            reports_tx,
            reports,
            pending: BTreeSet::new(),
            down: None,
            sink: plain(),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Sends events somewhere else (a dashboard, a test).
    pub fn set_sink(&mut self, sink: Sink) {
        self.sink = sink;
    }

    /// Emits an event to the sink (the sweep shares the cluster's sink).
    pub fn emit(&mut self, event: Event) {
        (self.sink)(event);
    }

    /// The flag that, once raised, ends the current run at once.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Shares `stop` as this cluster's stop flag.
    pub fn set_stop_flag(&mut self, stop: Arc<AtomicBool>) {
        self.stop = stop;
    }

    /// The protocols the programs know, with replicas needed for f = 1.
    pub fn protocols(bin_dir: &Path) -> std::io::Result<Vec<(String, usize)>> {
        let out = Process::new(bin_dir.join("replica"))
            .arg("--list-protocols")
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other("replica --list-protocols failed"));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
            })
            .collect())
    }

    /// The replicas `bench` runs with: its own number, or what its
    /// protocol needs for f = 1.
    pub fn replicas_for(&self, bench: &Bench) -> Result<usize, String> {
        if bench.replicas > 0 {
            return Ok(bench.replicas);
        }
        Self::protocols(&self.bin_dir)
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|(p, _)| *p == bench.protocol)
            .map(|(_, n)| n)
            .ok_or_else(|| format!("unknown protocol {}", bench.protocol))
    }

    /// Runs one benchmark and returns its result. Programs are started on
    /// first need and reused; a program that died is replaced next time.
    pub fn run(&mut self, bench: &Bench) -> Result<RunResult, RunError> {
        let needed = self.replicas_for(bench)?;
        // Reports left from an earlier, abandoned run must not count for
        // this one; a program that died since is forgotten and restarted.
        while let Ok(tagged) = self.reports.try_recv() {
            self.absorb(tagged);
        }
        self.down = None;
        self.start_programs(needed)?;

        let mut addrs = Vec::with_capacity(needed);
        for program in self.replicas.iter().take(needed).flatten() {
            addrs.push(match program.data {
                Some(a) => a,
                None => free_udp_port().map_err(|e| e.to_string())?,
            });
        }
        let signing_clients = bench.client_auth == ClientAuth::Signature;
        let (replica_keys, host_keys) =
            keys::run_keys(needed, 1, bench.clients, signing_clients).map_err(|e| e.to_string())?;
        let mut result = Ok(());
        // Each replica gets its own secret and only its own.
        for (id, keys) in replica_keys.into_iter().enumerate() {
            let command = bench.replica_command(id as u16, &addrs, keys);
            result = self.command(&id.to_string(), Control::Run(Box::new(command)));
            if result.is_err() {
                break;
            }
        }
        let result = result.and_then(|()| self.drive(bench, &addrs, host_keys));
        if result.is_err() {
            // Leave no half-run behind: stop everyone and wait for their
            // last reports, so the next run starts clean.
            self.settle();
        }
        result
    }

    /// Starts whatever program of a run with `needed` replicas is missing.
    fn start_programs(&mut self, needed: usize) -> Result<(), String> {
        if self.replicas.len() < needed {
            self.replicas.resize_with(needed, || None);
        }
        for id in 0..needed {
            if self.replicas[id].is_none() {
                let program = self.start("replica", &id.to_string())?;
                self.replicas[id] = Some(program);
            }
        }
        if self.client_host.is_none() {
            self.client_host = Some(self.start("bench_client", "C")?);
        }
        Ok(())
    }

    fn start(&mut self, binary: &str, tag: &str) -> Result<Program, String> {
        let slot = match tag {
            "C" => self.hosts.clients(),
            id => self.hosts.replica(id.parse().unwrap_or(0)),
        };
        let program = Program::start(
            &self.bin_dir,
            binary,
            &slot,
            &self.token,
            tag,
            self.reports_tx.clone(),
        )
        .map_err(|e| format!("[{tag}] {e}"))?;
        self.emit(Event::ProgramUp {
            tag: tag.to_string(),
            host: program.host.clone(),
            role: if tag == "C" { "clients" } else { "replica" },
            pid: program.pid(),
        });
        Ok(program)
    }

    /// Sends `control` to the program tagged `tag`.
    fn command(&mut self, tag: &str, control: Control) -> Result<(), RunError> {
        let program = match tag {
            "C" => self.client_host.as_mut(),
            id => id
                .parse::<usize>()
                .ok()
                .and_then(|id| self.replicas.get_mut(id))
                .and_then(Option::as_mut),
        };
        let program = program.ok_or_else(|| format!("[{tag}] is not running"))?;
        let run = matches!(control, Control::Run(_));
        program
            .send(&control)
            .map_err(|e| format!("[{tag}] cannot send a command: {e}"))?;
        if run {
            self.pending.insert(tag.to_string());
        }
        Ok(())
    }

    fn drive(
        &mut self,
        bench: &Bench,
        addrs: &[SocketAddr],
        keys: Keys,
    ) -> Result<RunResult, RunError> {
        let needed = addrs.len();
        let patience = Duration::from_secs(10);
        let mut started = 0;
        let deadline = Instant::now() + patience;
        while started < needed {
            match self.next_report(deadline)? {
                (_, Report::Started) => started += 1,
                (tag, Report::Error(e)) => return Err(format!("[{tag}] {e}").into()),
                _ => {}
            }
        }
        let command = bench.client_command(addrs, self.hosts.client_bind(), keys);
        self.command("C", Control::Run(Box::new(command)))?;

        let load_start = Instant::now();
        let deadline = load_start + Duration::from_secs_f64(bench.duration_s + 30.0);
        let mut series = Vec::new();
        let mut counters: Vec<(String, u64)> = Vec::new();
        let mut fault = bench.fault;
        let summary: Summary = loop {
            if let Fault::CrashReplica { id, after_s } = fault {
                if load_start.elapsed().as_secs_f64() >= after_s {
                    fault = Fault::None;
                    self.emit(Event::Log {
                        tag: "run".into(),
                        line: format!("fault: replica {id} stops now"),
                    });
                    self.command(&id.to_string(), Control::Stop)?;
                }
            }
            match self.next_report(deadline)? {
                (tag, Report::Done(s)) if tag == "C" => break s,
                (tag, Report::Done(s)) => {
                    counters.extend(s.counters.iter().map(|(k, v)| (format!("{tag}.{k}"), *v)))
                }
                (tag, Report::Error(e)) => return Err(format!("[{tag}] {e}").into()),
                (tag, Report::Interval(i)) => series.push(Sample::from_interval(&tag, &i)),
                _ => {}
            }
        };
        counters.extend(summary.counters.iter().map(|(k, v)| (format!("C.{k}"), *v)));
        for id in 0..needed {
            if self.pending.contains(&id.to_string()) {
                self.command(&id.to_string(), Control::Stop)?;
            }
        }
        let deadline = Instant::now() + patience;
        while !self.pending.is_empty() {
            match self.next_report(deadline)? {
                (tag, Report::Done(s)) => {
                    counters.extend(s.counters.iter().map(|(k, v)| (format!("{tag}.{k}"), *v)))
                }
                (tag, Report::Error(e)) => return Err(format!("[{tag}] {e}").into()),
                _ => {}
            }
        }
        let histogram: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &summary.histogram[..])
            .map_err(|e| format!("client host sent a bad histogram: {e:?}"))?;
        let errors = counters
            .iter()
            .filter(|(k, _)| ERROR_COUNTERS.iter().any(|e| k.ends_with(e)))
            .map(|(_, v)| v)
            .sum();
        let measured_s = (summary.measured_ms as f64 / 1000.0).max(1e-3);
        Ok(RunResult {
            bench: bench.clone(),
            replicas: needed,
            ops_per_s: summary.ops as f64 / measured_s,
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            errors,
            counters,
            series,
            histogram: summary.histogram,
        })
    }

    /// The next report that is not a log line (those go to the sink);
    /// a closed connection, the deadline or the stop flag is an error.
    fn next_report(&mut self, deadline: Instant) -> Result<(String, Report), RunError> {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(RunError::Stopped);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .reports
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(tagged) => {
                    let tag = tagged.0.clone();
                    if let Some(report) = self.absorb(tagged) {
                        return Ok((tag, report));
                    }
                    if let Some(down) = self.down.take() {
                        if self.stop.load(Ordering::SeqCst) {
                            return Err(RunError::Stopped);
                        }
                        return Err(down.into());
                    }
                }
                Err(RecvTimeoutError::Timeout) if left.is_zero() => {
                    return Err(format!("timed out waiting for {:?}", self.pending).into())
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("every report channel closed".to_string().into())
                }
            }
        }
    }

    /// Takes one tagged report in: log lines and samples go to the sink,
    /// final reports clear the program's pending run, a closed connection
    /// forgets the program. Returns the report unless it was a log line.
    fn absorb(&mut self, (tag, report): Tagged) -> Option<Report> {
        match report {
            Some(Report::Log(line)) => {
                self.emit(Event::Log { tag, line });
                None
            }
            Some(report) => {
                match &report {
                    Report::Interval(i) => self.emit(Event::Sample(Sample::from_interval(&tag, i))),
                    Report::Done(_) | Report::Error(_) => {
                        self.pending.remove(&tag);
                    }
                    _ => {}
                }
                Some(report)
            }
            None => {
                self.pending.remove(&tag);
                let reason = self.forget(&tag);
                self.down = Some(format!("[{tag}] {reason}"));
                None
            }
        }
    }

    /// Drops (and kills) the program tagged `tag`, to be restarted;
    /// returns what became of it.
    fn forget(&mut self, tag: &str) -> String {
        let gone = if tag == "C" {
            self.client_host.take()
        } else {
            tag.parse::<usize>()
                .ok()
                .and_then(|id| self.replicas.get_mut(id))
                .and_then(Option::take)
        };
        let Some(mut program) = gone else {
            return "it is not running".into();
        };
        let reason = program.fate(Duration::from_millis(300));
        drop(program);
        self.emit(Event::ProgramDown {
            tag: tag.to_string(),
            reason: reason.clone(),
        });
        reason
    }

    /// Stops every program with a pending run and waits (briefly) for
    /// their final reports.
    fn settle(&mut self) {
        for tag in self.pending.clone() {
            if self.command(&tag, Control::Stop).is_err() {
                self.pending.remove(&tag);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(left) {
                Ok(tagged) => {
                    self.absorb(tagged);
                }
                Err(_) => {
                    // Whoever does not answer is restarted next run.
                    for tag in std::mem::take(&mut self.pending) {
                        self.forget(&tag);
                    }
                    self.down = None;
                }
            }
        }
    }

    /// Takes in whatever the programs reported since the last run (log
    /// lines, deaths) for up to `wait`: what a paused sweep does.
    pub fn idle(&mut self, wait: Duration) {
        if let Ok(tagged) = self.reports.recv_timeout(wait) {
            self.absorb(tagged);
            while let Ok(tagged) = self.reports.try_recv() {
                self.absorb(tagged);
            }
        }
    }

    /// Process ids of the programs this cluster started here, by tag.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut v: Vec<_> = self
            .replicas
            .iter()
            .flatten()
            .filter_map(|p| Some((p.client.tag.clone(), p.pid()?)))
            .collect();
        if let Some(pid) = self.client_host.as_ref().and_then(Program::pid) {
            v.push(("C".into(), pid));
        }
        v
    }
}

fn free_udp_port() -> std::io::Result<SocketAddr> {
    UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

/// The directory of the `replica` and `bench_client` binaries: next to
/// this program. Under `cargo run` they are (re)built first, so a sweep
/// always runs the current code.
pub fn program_dir() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Ok(cargo) = std::env::var("CARGO") {
        let profile_release = dir.ends_with("release");
        let mut build = Process::new(cargo);
        build.args([
            "build",
            "-p",
            "troupe-program",
            "--bin",
            "replica",
            "--bin",
            "bench_client",
        ]);
        if profile_release {
            build.arg("--release");
        }
        let status = build.status()?;
        if !status.success() {
            return Err(std::io::Error::other("building the programs failed"));
        }
    }
    Ok(dir)
}
