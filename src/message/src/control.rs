//! The control plane: how `troupe-run` tells a program what to run and how
//! the program reports back.
//!
//! Every program listens on a TCP control address. A session is: the
//! runner sends [`Hello`] with the run's shared token; the program answers
//! [`Report::Ready`] or [`Report::Refused`] and closes. Then the runner
//! sends [`Control::Run`], the program streams [`Report`]s until the run
//! ends (its duration passes or [`Control::Stop`] arrives), and waits for
//! the next [`Control`]. Frames are a 4-byte little-endian length and a
//! bincode body, see [`write_frame`] / [`read_frame`].

use crate::app::{AppKind, Workload};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// Largest control frame accepted, so a bad peer cannot make us allocate
/// without bound.
pub const MAX_FRAME: usize = 16 << 20;

/// First frame on every control connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The run's shared secret; a program refuses any other.
    pub token: String,
}

/// What a runner asks of a program after [`Hello`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Control {
    /// Run this and stream reports.
    Run(Box<Command>),
    /// End the current run now (its final report still follows).
    Stop,
    /// Exit the program.
    Exit,
}

/// Which part of a run a program plays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Replica number `id` (its data-plane address is `replicas[id]`).
    Replica {
        /// Index into [`Command::replicas`].
        id: u16,
    },
    /// A client host running `count` closed-loop clients with ids
    /// `first_id ..`, spread over `threads` threads.
    Clients {
        /// Id of the first client.
        first_id: u64,
        /// Number of clients.
        count: u32,
        /// Client-host threads (each with its own socket).
        threads: u16,
        /// Local IP the client sockets bind to (port chosen by the OS).
        bind: std::net::IpAddr,
    },
}

/// How a client authenticates its requests to BFT replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientAuth {
    /// No authentication (crash-fault protocols).
    None,
    /// A MAC with a key shared between the client and each replica.
    Mac,
    /// A secp256k1 signature.
    Signature,
}

/// Protocol knobs. Every protocol reads the ones it understands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Largest batch of requests ordered as one (1 = no batching).
    pub batch: u32,
    /// Batches in flight at once.
    pub window: u32,
    /// Operations between checkpoints.
    pub checkpoint_interval: u64,
    /// How long a client waits before resending, in microseconds.
    pub resend_us: u64,
    /// How long a backup waits for progress before suspecting the primary.
    pub view_change_us: u64,
    /// How client requests are authenticated.
    pub client_auth: ClientAuth,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            batch: 1,
            window: 8,
            checkpoint_interval: 1000,
            resend_us: 200_000,
            view_change_us: 500_000,
            client_auth: ClientAuth::None,
        }
    }
}

/// Secret material for one program: its own secret key and everyone's
/// public keys, never another node's secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    /// This replica's secret key (empty for programs that sign nothing).
    pub secret: Vec<u8>,
    /// Public key of every replica, by replica id.
    pub replica_public: Vec<Vec<u8>>,
    /// A replica's own MAC seed, from which it derives the key it shares
    /// with each client (empty for client hosts).
    pub client_seed: Vec<u8>,
    /// Every replica's MAC seed, by replica id (client hosts only: a
    /// replica never learns another's seed).
    pub replica_mac_seeds: Vec<Vec<u8>>,
    /// Public keys of clients `first_client ..` (replicas, when clients
    /// sign their requests).
    pub client_public: Vec<Vec<u8>>,
    /// Secret keys of clients `first_client ..` (client hosts, when
    /// clients sign their requests).
    pub client_secret: Vec<Vec<u8>>,
    /// Id of the client whose keys come first in the two lists above.
    pub first_client: u64,
}

/// How a program spreads a run over its threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadPlan {
    /// Threads for the protocol's shared stage (decode, verify, sign);
    /// 0 runs it inline on the core thread.
    pub shared: u16,
    /// Spin instead of sleeping in epoll when idle (lowest latency, one
    /// core per thread burnt).
    pub spin: bool,
}

/// One run, as sent to one program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Protocol name, as listed in the root crate's protocol registry.
    pub protocol: String,
    /// What this program plays.
    pub role: Role,
    /// Data-plane address of every replica, by id.
    pub replicas: Vec<SocketAddr>,
    /// Protocol knobs.
    pub params: Params,
    /// Thread layout.
    pub threads: ThreadPlan,
    /// Replicated application.
    pub app: AppKind,
    /// Client workload (client hosts only).
    pub workload: Workload,
    /// How long clients issue operations, in milliseconds. Replicas run
    /// until [`Control::Stop`].
    pub duration_ms: u64,
    /// Measurements start after this warm-up, in milliseconds.
    pub warmup_ms: u64,
    /// Keys for this program.
    pub keys: Keys,
    /// Seed for all randomness of the run.
    pub seed: u64,
}

/// A named counter, for errors and events a program counts.
pub type Counter = (String, u64);

/// What a program streams back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Report {
    /// Token accepted.
    Ready,
    /// Token refused; the connection closes.
    Refused,
    /// The run started; data-plane sockets are bound.
    Started,
    /// One interval of the run (about a second).
    Interval(Interval),
    /// The run ended.
    Done(Summary),
    /// A command could not be run, or a frame was malformed.
    Error(String),
    /// A log line from the program.
    Log(String),
}

/// One interval of measurements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// End of the interval, milliseconds since the run started.
    pub at_ms: u64,
    /// Operations completed (clients) or executed (replicas) in it.
    pub ops: u64,
    /// Its length in milliseconds.
    pub len_ms: u64,
    /// Median latency in it, microseconds (clients only).
    pub p50_us: u64,
    /// 99th percentile latency in it, microseconds (clients only).
    pub p99_us: u64,
    /// CPU time used by the program in it, in milliseconds.
    pub cpu_ms: u64,
    /// What the node is doing, in a word or two (e.g. "view 3").
    pub state: String,
}

/// The whole run, measured after warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Operations completed after warm-up.
    pub ops: u64,
    /// Measured span in milliseconds.
    pub measured_ms: u64,
    /// Latency histogram in microseconds, hdrhistogram V2 serialization.
    pub histogram: Vec<u8>,
    /// Counters: malformed packets, resends, wrong results, ...
    pub counters: Vec<Counter>,
}

/// Writes one length-prefixed bincode frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, value: &T) -> io::Result<()> {
    let body =
        bincode::serialize(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "control frame too large",
        ));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    w.flush()
}

/// Reads one raw frame body. A length above [`MAX_FRAME`] is an error.
pub fn read_frame_bytes(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("control frame of {len} bytes exceeds the limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Reads one frame and decodes it. A frame that does not decode is an
/// `InvalidData` error (the connection stays usable: the frame was whole).
pub fn read_frame<T: serde::de::DeserializeOwned>(r: &mut impl Read) -> io::Result<T> {
    let body = read_frame_bytes(r)?;
    decode_frame(&body)
}

/// Decodes a frame body read by [`read_frame_bytes`].
pub fn decode_frame<T: serde::de::DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    bincode::deserialize(body).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed control frame: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Control::Stop).unwrap();
        write_frame(&mut buf, &Hello { token: "t".into() }).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame::<Control>(&mut r).unwrap(), Control::Stop);
        assert_eq!(
            read_frame::<Hello>(&mut r).unwrap(),
            Hello { token: "t".into() }
        );

        let mut bad = Vec::new();
        bad.extend_from_slice(&3u32.to_le_bytes());
        bad.extend_from_slice(&[0xff, 0xff, 0xff]);
        let err = read_frame::<Control>(&mut &bad[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let huge = (MAX_FRAME as u32 + 1).to_le_bytes();
        assert!(read_frame_bytes(&mut &huge[..]).is_err());
    }
}
