//! The `crunch` benchmark's Mandelbrot job on the published node_crunch
//! 0.1.0: same tiles, same kernel (troupe's, called from both), same
//! image, same heartbeat, nodes as separate processes on loopback.
//!
//! `node-crunch-compare mandelbrot --nodes N --size S --tile T ...` ends
//! with `node_crunch nodes=N size=S wall_s=X pixels_s=P reassigned=K
//! detect_ms=D nodes_exit_ms=E`: `pixels_s` when the last tile was merged,
//! `wall_s` when node_crunch called `finish_job` (the image is written
//! there), `nodes_exit_ms` how long the nodes lingered after that.

use clap::{Args, Parser, Subcommand};
use node_crunch::{
    NCConfiguration, NCError, NCJobStatus, NCNode, NCNodeStarter, NCServer, NCServerStarter,
    NodeID,
};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use troupe::crunch::mandelbrot::{MandelJob, MandelWorker, Params};
use troupe::crunch::{Job, Worker};
use troupe::runtime::Clock;
use troupe_program::watch::Watched;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Server here, N node processes on loopback.
    Mandelbrot(Bench),
    /// A node.
    Node {
        /// The server's port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Heartbeat interval in seconds (node_crunch counts whole seconds).
        #[arg(long, default_value_t = 1)]
        heartbeat: u64,
    },
}

#[derive(Args)]
struct Bench {
    #[arg(long, default_value_t = 2)]
    nodes: u32,
    #[arg(long, default_value_t = 1024)]
    size: u32,
    #[arg(long, default_value_t = 64)]
    tile: u32,
    #[arg(long, default_value_t = 1024)]
    max_iter: u32,
    /// Heartbeat interval in seconds.
    #[arg(long, default_value_t = 1)]
    heartbeat: u64,
    /// Kill (SIGKILL) the first node this many seconds after start.
    #[arg(long)]
    kill_node_after: Option<f64>,
    /// Freeze (SIGSTOP) the first node this many seconds after start.
    #[arg(long)]
    stall_node_after: Option<f64>,
    /// Write the image here (.png or PPM).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// node_crunch results carry no chunk number, so both directions start
/// with it (8 bytes, little-endian).
fn tagged(chunk: u64, body: &[u8]) -> Vec<u8> {
    let mut v = chunk.to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn untag(data: &[u8]) -> Option<(u64, &[u8])> {
    let (head, body) = data.split_at_checked(8)?;
    Some((u64::from_le_bytes(head.try_into().ok()?), body))
}

#[derive(Clone, Copy, PartialEq)]
enum Tile {
    Empty,
    Processing(NodeID),
    Done,
}

/// What the server saw, shared with `main` (the server is moved into
/// node_crunch's starter).
#[derive(Default)]
struct Seen {
    pixels_done: Option<Duration>,
    finished: Option<Duration>,
    first_dead: Option<Duration>,
    reassigned: u64,
}

struct MandelServer {
    job: MandelJob,
    tiles: Vec<Tile>,
    dead: Vec<NodeID>,
    seen: Arc<Mutex<Seen>>,
    clock: Clock,
}

impl NCServer for MandelServer {
    fn initial_data(&mut self) -> Result<Option<Vec<u8>>, NCError> {
        Ok(Some(self.job.initial_data()))
    }

    fn prepare_data_for_node(&mut self, node_id: NodeID) -> Result<NCJobStatus, NCError> {
        if let Some(i) = self.tiles.iter().position(|t| *t == Tile::Empty) {
            self.tiles[i] = Tile::Processing(node_id);
            let data = self.job.prepare(i as u64);
            return Ok(NCJobStatus::Unfinished(tagged(i as u64, &data)));
        }
        if self.tiles.iter().any(|t| matches!(t, Tile::Processing(_))) {
            Ok(NCJobStatus::Waiting)
        } else {
            Ok(NCJobStatus::Finished)
        }
    }

    fn process_data_from_node(&mut self, node_id: NodeID, data: &[u8]) -> Result<(), NCError> {
        let (chunk, body) = untag(data).ok_or(NCError::Custom(1))?;
        let Some(tile) = self.tiles.get_mut(chunk as usize) else {
            return Err(NCError::Custom(2));
        };
        if *tile != Tile::Processing(node_id) {
            return Ok(()); // a late copy of reassigned work
        }
        self.job.merge(chunk, body).map_err(|_| NCError::Custom(3))?;
        *tile = Tile::Done;
        if self.tiles.iter().all(|t| *t == Tile::Done) {
            self.seen.lock().unwrap().pixels_done = Some(self.clock.now());
        }
        Ok(())
    }

    fn heartbeat_timeout(&mut self, nodes: Vec<NodeID>) {
        // node_crunch reports a dead node again at every check.
        for node in nodes {
            if self.dead.contains(&node) {
                continue;
            }
            self.dead.push(node);
            let mut seen = self.seen.lock().unwrap();
            seen.first_dead.get_or_insert(self.clock.now());
            for tile in &mut self.tiles {
                if *tile == Tile::Processing(node) {
                    *tile = Tile::Empty;
                    seen.reassigned += 1;
                }
            }
        }
    }

    fn finish_job(&mut self) {
        if let Err(e) = self.job.finish() {
            eprintln!("node_crunch compare: writing the image: {e}");
        }
        self.seen.lock().unwrap().finished = Some(self.clock.now());
    }
}

struct MandelNode(MandelWorker);

impl NCNode for MandelNode {
    fn set_initial_data(&mut self, _: NodeID, data: Option<Vec<u8>>) -> Result<(), NCError> {
        self.0
            .init(&data.unwrap_or_default())
            .map_err(|_| NCError::Custom(4))
    }

    fn process_data_from_server(&mut self, data: &[u8]) -> Result<Vec<u8>, NCError> {
        let (chunk, body) = untag(data).ok_or(NCError::Custom(5))?;
        let result = self.0.process(body).map_err(|_| NCError::Custom(6))?;
        Ok(tagged(chunk, &result))
    }
}

fn config(port: u16, heartbeat: u64) -> NCConfiguration {
    NCConfiguration {
        port,
        heartbeat,
        // A waiting node asks again after one heartbeat (the default, 60 s,
        // would dominate every run).
        delay_request_data: heartbeat,
        ..NCConfiguration::default()
    }
}

fn main() -> ExitCode {
    match Cli::parse().role {
        Role::Node { port, heartbeat } => {
            let node = MandelNode(MandelWorker::new());
            match NCNodeStarter::new(config(port, heartbeat)).start(node) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("node_crunch node: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Role::Mandelbrot(bench) => match run(bench) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("node_crunch compare: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(bench: Bench) -> Result<(), String> {
    // node_crunch listens on 0.0.0.0 at a fixed port: find a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let params = Params::classic(bench.size, bench.size, bench.max_iter);
    let job = MandelJob::new(params, bench.tile, bench.out.clone())?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let bench_heartbeat = bench.heartbeat;
    let clock = Clock::start();
    let server = MandelServer {
        tiles: vec![Tile::Empty; job.chunks() as usize],
        job,
        dead: Vec::new(),
        seen: seen.clone(),
        clock,
    };
    // Its nodes do not retry their registration: start the server first
    // and the nodes once it listens (binding the port fails from then on).
    let server = std::thread::spawn(move || {
        NCServerStarter::new(config(port, bench_heartbeat))
            .start(server)
            .map_err(|e| e.to_string())
    });
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        if server.is_finished() {
            return Err("the node_crunch server stopped before listening".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    for _ in 0..bench.nodes {
        let child = Command::new(&exe)
            .args(["node", "--port", &port.to_string()])
            .args(["--heartbeat", &bench.heartbeat.to_string()])
            .stdin(Stdio::null())
            .spawn();
        match child {
            Ok(child) => children.push(child),
            Err(e) => {
                drop(Watched::start(children, clock));
                return Err(format!("starting a node: {e}"));
            }
        }
    }
    let nodes = Watched::start(children, clock);
    let fault = match (bench.kill_node_after, bench.stall_node_after) {
        (Some(s), _) => Some((s, libc::SIGKILL)),
        (None, Some(s)) => Some((s, libc::SIGSTOP)),
        (None, None) => None,
    };
    let hit = fault.map(|(after, signal)| {
        nodes.signal_after(0, Duration::from_secs_f64(after), signal, clock)
    });
    server.join().map_err(|_| "the server panicked")??;
    let seen = seen.lock().unwrap();
    let finished = seen.finished.ok_or("finish_job never ran")?;
    let victim = usize::from(hit.is_some());
    let last_exit = nodes
        .wait_exits(victim, Duration::from_secs(30))
        .ok_or("a node did not exit within 30 s of the end")?;
    drop(nodes);
    let hit = hit.and_then(|h| *h.lock().unwrap());
    let detect_ms = match (hit, seen.first_dead) {
        (Some(hit), Some(dead)) => dead.saturating_sub(hit).as_secs_f64() * 1e3,
        _ => 0.0,
    };
    println!(
        "node_crunch nodes={} size={} wall_s={:.3} pixels_s={:.3} reassigned={} detect_ms={:.0} \
         nodes_exit_ms={:.0}",
        bench.nodes,
        bench.size,
        finished.as_secs_f64(),
        seen.pixels_done.unwrap_or_default().as_secs_f64(),
        seen.reassigned,
        detect_ms,
        last_exit.saturating_sub(finished).as_secs_f64() * 1e3,
    );
    Ok(())
}
