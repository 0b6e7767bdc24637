//! The programs of a run: started on loopback, commanded over the control
//! plane, stopped by pid when the cluster is dropped.

use crate::bench::{Bench, RunResult};
use crate::control::{ControlClient, Tagged};
use crate::keys;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};
use troupe_message::control::{Control, Keys, Report, Summary};

/// A program this cluster started; killed (by pid) when dropped.
struct Program {
    child: Child,
    client: ControlClient,
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.client.send(&Control::Exit);
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the cluster's log lines and reports go: a function of the tag and
/// the line, so that a dashboard or plain stdout can show them.
pub type LogSink = Box<dyn FnMut(&str, &str) + Send>;

/// The replica and client-host programs of a sweep, on loopback.
pub struct Cluster {
    bin_dir: PathBuf,
    token: String,
    replicas: Vec<Program>,
    client_host: Option<Program>,
    reports_tx: Sender<Tagged>,
    reports: Receiver<Tagged>,
    sink: LogSink,
}

impl Cluster {
    /// A cluster whose programs are in `bin_dir`, with a fresh token.
    /// Log lines and live reports are printed as `[tag] line`.
    pub fn local(bin_dir: &Path) -> std::io::Result<Self> {
        let (reports_tx, reports) = channel();
        Ok(Cluster {
            bin_dir: bin_dir.to_path_buf(),
            token: keys::token()?,
            replicas: Vec::new(),
            client_host: None,
            reports_tx,
            reports,
            sink: Box::new(|tag, line| println!("[{tag}] {line}")),
        })
    }

    /// Sends log lines somewhere else (a dashboard, a test).
    pub fn set_sink(&mut self, sink: LogSink) {
        self.sink = sink;
    }

    fn spawn(&self, binary: &str, tag: &str) -> std::io::Result<Program> {
        let control = free_tcp_port()?;
        let mut child = Process::new(self.bin_dir.join(binary))
            .arg("--control")
            .arg(control.to_string())
            .env("TROUPE_TOKEN", &self.token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", self.bin_dir.join(binary).display()),
                )
            })?;
        if let Some(stderr) = child.stderr.take() {
            let (tx, tag) = (self.reports_tx.clone(), tag.to_string());
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if tx.send((tag.clone(), Some(Report::Log(line)))).is_err() {
                        return;
                    }
                }
            });
        }
        match ControlClient::connect(
            control,
            &self.token,
            tag,
            Duration::from_secs(10),
            self.reports_tx.clone(),
        ) {
            Ok(client) => Ok(Program { child, client }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Asks the first replica program how many replicas `protocol` needs
    /// for f = 1, and which protocols exist.
    pub fn protocols(bin_dir: &Path) -> std::io::Result<Vec<(String, usize)>> {
        let out = Process::new(bin_dir.join("replica"))
            .arg("--list-protocols")
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
            })
            .collect())
    }

    /// Runs one benchmark and returns its result. Programs are started on
    /// first need and reused; a program that died is replaced next time.
    pub fn run(&mut self, bench: &Bench) -> Result<RunResult, String> {
        let needed = if bench.replicas > 0 {
            bench.replicas
        } else {
            Self::protocols(&self.bin_dir)
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|(p, _)| *p == bench.protocol)
                .map(|(_, n)| n)
                .ok_or_else(|| format!("unknown protocol {}", bench.protocol))?
        };
        while self.replicas.len() < needed {
            let tag = self.replicas.len().to_string();
            self.replicas
                .push(self.spawn("replica", &tag).map_err(|e| e.to_string())?);
        }
        if self.client_host.is_none() {
            self.client_host = Some(self.spawn("bench_client", "C").map_err(|e| e.to_string())?);
        }
        // Reports of an earlier, abandoned run must not count for this one.
        while self.reports.try_recv().is_ok() {}

        let addrs: Vec<SocketAddr> = (0..needed)
            .map(|_| free_udp_port())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let key_pairs = keys::replica_keys(needed).map_err(|e| e.to_string())?;
        let public: Vec<Vec<u8>> = key_pairs.iter().map(|k| k.1.clone()).collect();
        let client_seed = keys::random_bytes(32).map_err(|e| e.to_string())?;
        for (id, (secret, _)) in key_pairs.into_iter().enumerate() {
            let keys = Keys {
                secret,
                replica_public: public.clone(),
                client_seed: client_seed.clone(),
            };
            let command = bench.replica_command(id as u16, &addrs, keys);
            self.replicas[id]
                .client
                .send(&Control::Run(Box::new(command)))
                .map_err(|e| format!("replica {id}: {e}"))?;
        }
        let result = self.drive(bench, needed, &addrs, public, client_seed);
        if result.is_err() {
            // Leave no half-run behind: stop everyone; dead programs are
            // dropped (and killed) so the next run starts fresh ones.
            self.stop_all(needed);
        }
        result
    }

    fn drive(
        &mut self,
        bench: &Bench,
        needed: usize,
        addrs: &[SocketAddr],
        public: Vec<Vec<u8>>,
        client_seed: Vec<u8>,
    ) -> Result<RunResult, String> {
        let patience = Duration::from_secs(10);
        let mut started = 0;
        let deadline = Instant::now() + patience;
        while started < needed {
            match self.next_report(deadline)? {
                (_, Report::Started) => started += 1,
                (tag, Report::Error(e)) => return Err(format!("[{tag}] {e}")),
                _ => {}
            }
        }
        let keys = Keys {
            secret: Vec::new(),
            replica_public: public,
            client_seed,
        };
        let command = bench.client_command(addrs, IpAddr::V4(Ipv4Addr::LOCALHOST), keys);
        let host = self.client_host.as_mut().ok_or("no client host")?;
        host.client
            .send(&Control::Run(Box::new(command)))
            .map_err(|e| format!("client host: {e}"))?;

        let deadline =
            Instant::now() + Duration::from_secs_f64(bench.duration_s) + Duration::from_secs(30);
        let mut series = Vec::new();
        let summary: Summary = loop {
            match self.next_report(deadline)? {
                (tag, Report::Done(s)) if tag == "C" => break s,
                (tag, Report::Error(e)) => return Err(format!("[{tag}] {e}")),
                (tag, Report::Interval(i)) if tag == "C" => {
                    series.push((i.at_ms, i.ops * 1000 / i.len_ms.max(1)))
                }
                _ => {}
            }
        };
        let mut counters: Vec<(String, u64)> = summary
            .counters
            .iter()
            .map(|(k, v)| (format!("C.{k}"), *v))
            .collect();
        for id in 0..needed {
            self.replicas[id]
                .client
                .send(&Control::Stop)
                .map_err(|e| format!("replica {id}: {e}"))?;
        }
        let mut done = 0;
        let deadline = Instant::now() + patience;
        while done < needed {
            if let (tag, Report::Done(s)) = self.next_report(deadline)? {
                done += 1;
                counters.extend(s.counters.iter().map(|(k, v)| (format!("{tag}.{k}"), *v)));
            }
        }
        let histogram: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &summary.histogram[..])
            .map_err(|e| format!("client host sent a bad histogram: {e:?}"))?;
        let error_kinds = [
            "malformed",
            "bad_auth",
            "wrong_results",
            "send_errors",
            "clients_table_full",
        ];
        let errors = counters
            .iter()
            .filter(|(k, _)| error_kinds.iter().any(|e| k.ends_with(e)))
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
    /// a closed connection or the deadline is an error.
    fn next_report(&mut self, deadline: Instant) -> Result<(String, Report), String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(left) {
                Ok((tag, Some(Report::Log(line)))) => (self.sink)(&tag, &line),
                Ok((tag, Some(Report::Interval(i)))) => {
                    let line = if tag == "C" {
                        format!(
                            "{} ops/s p50 {} us p99 {} us cpu {} ms {}",
                            i.ops * 1000 / i.len_ms.max(1),
                            i.p50_us,
                            i.p99_us,
                            i.cpu_ms,
                            i.state
                        )
                    } else {
                        format!(
                            "{} ops/s cpu {} ms {}",
                            i.ops * 1000 / i.len_ms.max(1),
                            i.cpu_ms,
                            i.state
                        )
                    };
                    (self.sink)(&tag, &line);
                    return Ok((tag, Report::Interval(i)));
                }
                Ok((tag, Some(report))) => return Ok((tag, report)),
                Ok((tag, None)) => {
                    self.forget(&tag);
                    return Err(format!(
                        "[{tag}] the program's control connection closed (did it die?)"
                    ));
                }
                Err(_) => return Err("timed out waiting for the programs".into()),
            }
        }
    }

    /// Drops (and kills) the program tagged `tag`, to be restarted.
    fn forget(&mut self, tag: &str) {
        if tag == "C" {
            self.client_host = None;
        } else if let Ok(id) = tag.parse::<usize>() {
            // Drop every replica from `id` on, keeping ids dense.
            self.replicas.truncate(id);
        }
    }

    fn stop_all(&mut self, needed: usize) {
        for id in 0..needed.min(self.replicas.len()) {
            let _ = self.replicas[id].client.send(&Control::Stop);
        }
        if let Some(host) = self.client_host.as_mut() {
            let _ = host.client.send(&Control::Stop);
        }
    }

    /// Process ids of the programs this cluster started (tests kill them).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut v: Vec<_> = self
            .replicas
            .iter()
            .map(|p| (p.client.tag.clone(), p.child.id()))
            .collect();
        if let Some(h) = &self.client_host {
            v.push(("C".into(), h.child.id()));
        }
        v
    }
}

fn free_tcp_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
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
