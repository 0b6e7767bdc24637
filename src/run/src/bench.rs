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
    /// Seed of the run.
    pub seed: u64,
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
            client_auth: ClientAuth::None,
            seed: 1,
        }
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
    /// Per-second client throughput.
    pub series: Vec<(u64, u64)>,
    /// The latency histogram, hdrhistogram V2 serialization.
    pub histogram: Vec<u8>,
}
