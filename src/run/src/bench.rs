//! One benchmark configuration and its result.

use std::net::SocketAddr;
use troupe_message::app::{AppKind, Workload};
use troupe_message::control::{ClientAuth, Command, Keys, Params, Role, ThreadPlan};

/// Everything that defines one run. Build one with [`Bench::new`] and
/// change what the sweep varies.
#[derive(Clone, Debug, PartialEq)]
pub struct Bench {
    /// Protocol name (as `replica --list-protocols` prints it).
    pub protocol: String,
    /// Replicas (0: as many as the protocol needs for f = 1).
    pub replicas: usize,
    /// Closed-loop clients.
    pub clients: u32,
    /// Client-host threads.
    pub client_threads: u16,
    /// Largest batch.
    pub batch: u32,
    /// Seconds of load, including warm-up.
    pub duration_s: f64,
    /// Seconds of warm-up not measured.
    pub warmup_s: f64,
    /// Replicated application.
    pub app: AppKind,
    /// What clients send.
    pub workload: Workload,
    /// Shared-stage threads per replica.
    pub shared_threads: u16,
    /// Client authentication for BFT protocols.
    pub client_auth: ClientAuth,
    /// A fault injected during the run.
    pub fault: Fault,
    /// Seed of the run.
    pub seed: u64,
}

/// A fault the runner injects while clients are running.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// No fault.
    None,
    /// Replica `id` stops (crash-stop) `after_s` seconds into the load.
    CrashReplica {
        /// Which replica.
        id: u16,
        /// Seconds after the clients start.
        after_s: f64,
    },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::None => write!(f, "none"),
            Fault::CrashReplica { id, after_s } => write!(f, "crash{id}@{after_s}s"),
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = String;

    /// Parses what `Display` writes: `none` or `crash<id>@<secs>s`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(Fault::None);
        }
        let bad = || format!("not a fault: {s:?} (none, or crash<id>@<secs>s)");
        let rest = s.strip_prefix("crash").ok_or_else(bad)?;
        let (id, at) = rest.split_once('@').ok_or_else(bad)?;
        Ok(Fault::CrashReplica {
            id: id.parse().map_err(|_| bad())?,
            after_s: at
                .strip_suffix('s')
                .unwrap_or(at)
                .parse()
                .map_err(|_| bad())?,
        })
    }
}

impl Bench {
    /// A run of `protocol` with `clients` clients on the null app, 3
    /// seconds with 1 of warm-up.
    pub fn new(protocol: &str, clients: u32) -> Self {
        Bench {
            protocol: protocol.to_string(),
            replicas: 0,
            clients,
            client_threads: 1,
            batch: 1,
            duration_s: 3.0,
            warmup_s: 1.0,
            app: AppKind::Null,
            workload: Workload::Null { op_size: 16 },
            shared_threads: 0,
            // Byzantine protocols need authenticated clients; crash-fault
            // ones ignore this.
            client_auth: ClientAuth::Mac,
            fault: Fault::None,
            seed: 1,
        }
    }

    /// The same run with `seconds` of load, a third of it warm-up.
    pub fn seconds(mut self, seconds: f64) -> Self {
        self.duration_s = seconds;
        self.warmup_s = seconds / 3.0;
        self
    }

    /// The same run with `fault` injected.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    /// The same run with batches of up to `batch` requests.
    pub fn batch(mut self, batch: u32) -> Self {
        self.batch = batch;
        self
    }

    /// The key-value app with a checked workload.
    pub fn kv(mut self) -> Self {
        self.app = AppKind::Kv;
        self.workload = Workload::Kv {
            keys: 4,
            read_ratio: 0.5,
            value_size: 16,
        };
        self
    }

    fn params(&self) -> Params {
        Params {
            batch: self.batch.max(1),
            client_auth: self.client_auth,
            ..Params::default()
        }
    }

    /// The command for replica `id`.
    pub fn replica_command(&self, id: u16, replicas: &[SocketAddr], keys: Keys) -> Command {
        Command {
            protocol: self.protocol.clone(),
            role: Role::Replica { id },
            replicas: replicas.to_vec(),
            params: self.params(),
            threads: ThreadPlan {
                shared: self.shared_threads,
                spin: false,
            },
            app: self.app,
            workload: self.workload.clone(),
            duration_ms: (self.duration_s * 1000.0) as u64,
            warmup_ms: (self.warmup_s * 1000.0) as u64,
            keys,
            seed: self.seed,
        }
    }

    /// The command for a client host running every client of the run.
    pub fn client_command(
        &self,
        replicas: &[SocketAddr],
        bind: std::net::IpAddr,
        keys: Keys,
    ) -> Command {
        Command {
            role: Role::Clients {
                first_id: 1,
                count: self.clients,
                threads: self.client_threads,
                bind,
            },
            threads: ThreadPlan {
                shared: 0,
                spin: false,
            },
            ..self.replica_command(0, replicas, keys)
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// The configuration.
    pub bench: Bench,
    /// Replicas actually used.
    pub replicas: usize,
    /// Operations per second after warm-up.
    pub ops_per_s: f64,
    /// Latency percentiles after warm-up, microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Wrong results plus dropped datagrams counted anywhere.
    pub errors: u64,
    /// Every counter of every program, tagged.
    pub counters: Vec<(String, u64)>,
    /// Every program's per-second measurements, in arrival order.
    pub series: Vec<Sample>,
    /// The latency histogram, hdrhistogram V2 serialization.
    pub histogram: Vec<u8>,
}

/// One program's measurements over about a second.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Which program: "0", "1", ... for replicas, "C" for the client host.
    pub tag: String,
    /// End of the interval, milliseconds since that program's run started.
    pub at_ms: u64,
    /// Operations completed (clients) or executed (replicas) per second.
    pub ops_per_s: u64,
    /// Median latency in the interval, microseconds (clients only).
    pub p50_us: u64,
    /// 99th percentile latency in the interval, microseconds (clients only).
    pub p99_us: u64,
    /// CPU used, percent of one core.
    pub cpu_pct: u64,
    /// What the program said it was doing.
    pub state: String,
}

impl Sample {
    /// The sample a program's interval report describes.
    pub fn from_interval(tag: &str, i: &troupe_message::control::Interval) -> Self {
        let len = i.len_ms.max(1);
        Sample {
            tag: tag.to_string(),
            at_ms: i.at_ms,
            ops_per_s: i.ops * 1000 / len,
            p50_us: i.p50_us,
            p99_us: i.p99_us,
            cpu_pct: i.cpu_ms * 100 / len,
            state: i.state.clone(),
        }
    }
}
