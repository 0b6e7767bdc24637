//! `crunch`: chunked work distribution with heartbeats, on the Mandelbrot
//! example. One binary, three roles:
//!
//! - `crunch mandelbrot --nodes N ...`: the benchmark. Runs the server in
//!   this process, starts N node processes (this binary, role `node`) on
//!   loopback, optionally kills or freezes one mid-job, and ends with
//!   `crunch nodes=N size=S wall_s=X compute_s=C reassigned=K detect_ms=D`.
//! - `crunch server --listen ADDR ...`: a server alone, for nodes on other
//!   hosts.
//! - `crunch node --server ADDR`: a node.

use clap::{Args, Parser, Subcommand};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use troupe::crunch::mandelbrot::{kernel, MandelJob, MandelWorker, Params};
use troupe::crunch::{
    run_node, run_server, Exit, NodeConfig, NodeOptions, ServerConfig, ServerOptions,
    ServerOutcome, ServerState, Tiles, NODE, SERVER,
};
use troupe::runtime::Clock;
use troupe_program::watch::Watched;

#[derive(Parser)]
#[command(about = "Chunked work distribution with heartbeats (Mandelbrot example)")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Benchmark: server here, N node processes on loopback.
    Mandelbrot(Bench),
    /// Serve one Mandelbrot job to nodes that connect.
    Server(ServerArgs),
    /// Compute chunks for a server.
    Node(NodeArgs),
}

#[derive(Args, Clone)]
struct JobArgs {
    /// Image width and height in pixels.
    #[arg(long, default_value_t = 1024)]
    size: u32,
    /// Tile width and height in pixels.
    #[arg(long, default_value_t = 64)]
    tile: u32,
    /// Iterations before a point counts as inside.
    #[arg(long, default_value_t = 1024)]
    max_iter: u32,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Write the image here when done (.png: PNG, else binary PPM).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Give up if the job is not done after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    give_up_after: f64,
    /// No end-game backups (copies of chunks other nodes hold).
    #[arg(long)]
    no_backups: bool,
}

#[derive(Args)]
struct Bench {
    /// Node processes to start.
    #[arg(long, default_value_t = 2)]
    nodes: u32,
    #[command(flatten)]
    job: JobArgs,
    /// Chunks in flight per node.
    #[arg(long, default_value_t = 2)]
    window: u32,
    /// Kill (SIGKILL) the first node this many seconds after start.
    #[arg(long)]
    kill_node_after: Option<f64>,
    /// Freeze (SIGSTOP) the first node this many seconds after start: it
    /// keeps its connection open, so only missed heartbeats reveal it.
    #[arg(long)]
    stall_node_after: Option<f64>,
    /// Where the server listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Skip measuring the single-thread compute time (compute_s=0).
    #[arg(long)]
    skip_baseline: bool,
}

#[derive(Args)]
struct ServerArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    #[command(flatten)]
    job: JobArgs,
}

#[derive(Args)]
struct NodeArgs {
    /// The server.
    #[arg(long)]
    server: SocketAddr,
    /// Chunks in flight at this node.
    #[arg(long, default_value_t = 2)]
    window: u32,
    /// Registration attempts before giving up on the server.
    #[arg(long, default_value_t = 5)]
    attempts: u32,
    /// Milliseconds before the first retry (doubling after).
    #[arg(long, default_value_t = 200)]
    retry_ms: u64,
}

fn main() -> ExitCode {
    match Cli::parse().role {
        Role::Mandelbrot(bench) => report(bench_main(bench)),
        Role::Server(args) => report(server_main(args)),
        Role::Node(args) => node_main(args),
    }
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crunch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn node_main(args: NodeArgs) -> ExitCode {
    let mut config = NodeConfig::new(SERVER, NODE);
    config.window = args.window.max(1);
    config.attempts = args.attempts.max(1);
    config.retry_base = Duration::from_millis(args.retry_ms.max(1));
    let worker = Box::new(MandelWorker::new());
    match run_node(config, args.server, worker, NodeOptions::default()) {
        Ok((Exit::Done, stats)) => {
            eprintln!("crunch node: job done, {} results sent", stats.results);
            ExitCode::SUCCESS
        }
        Ok((exit, _)) => {
            eprintln!("crunch node: server {}: {exit}", args.server);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("crunch node: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(job: &JobArgs, listener: TcpListener, clock: Clock) -> Result<ServerOutcome, String> {
    let params = Params::classic(job.size, job.size, job.max_iter);
    let mandel = MandelJob::new(params, job.tile, job.out.clone())?;
    let mut config = ServerConfig::with_heartbeat(Duration::from_millis(job.heartbeat_ms.max(1)));
    config.backups = !job.no_backups;
    let options = ServerOptions {
        give_up_after: Some(Duration::from_secs_f64(job.give_up_after)),
        clock,
        ..ServerOptions::default()
    };
    let outcome = run_server(
        ServerState::new(Box::new(mandel), config),
        listener,
        options,
    )
    .map_err(|e| format!("server: {e}"))?;
    outcome
        .finished
        .clone()
        .map_err(|e| format!("finishing: {e}"))?;
    Ok(outcome)
}

fn server_main(args: ServerArgs) -> Result<(), String> {
    let listener = TcpListener::bind(args.listen).map_err(|e| format!("{}: {e}", args.listen))?;
    eprintln!("crunch server: listening on {}", args.listen);
    let clock = Clock::start();
    let outcome = serve(&args.job, listener, clock)?;
    let stats = outcome.state.stats();
    let wall = outcome.state.finished_at().unwrap_or_default();
    println!(
        "crunch-server size={} wall_s={:.3} registered={} dead={} reassigned={} backups={} \
         lost={} stale_results={} bad_results={} malformed={} refused={}",
        args.job.size,
        wall.as_secs_f64(),
        stats.registered,
        stats.dead,
        stats.reassigned,
        stats.backups,
        stats.lost,
        stats.stale_results,
        stats.bad_results,
        outcome.counters.malformed,
        stats.refused + outcome.counters.refused,
    );
    Ok(())
}

/// Single-thread time of the whole job, tile by tile, with the nodes'
/// kernel: the baseline the distributed wall time is judged against.
fn baseline(job: &JobArgs) -> Result<Duration, String> {
    let params = Params::classic(job.size, job.size, job.max_iter);
    let tiles = Tiles::new(job.size, job.size, job.tile, job.tile).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut checksum = 0u64;
    for rect in tiles.iter() {
        checksum += kernel(&params, rect).iter().map(|&n| n as u64).sum::<u64>();
    }
    let took = start.elapsed();
    eprintln!("crunch: baseline {took:?} (checksum {checksum})");
    Ok(took)
}

fn bench_main(bench: Bench) -> Result<(), String> {
    if bench.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let compute = if bench.skip_baseline {
        Duration::ZERO
    } else {
        baseline(&bench.job)?
    };
    let listener = TcpListener::bind(bench.listen).map_err(|e| format!("{}: {e}", bench.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let clock = Clock::start();
    let mut children = Vec::new();
    for _ in 0..bench.nodes {
        let child = Command::new(&exe)
            .args(["node", "--server", &addr.to_string()])
            .args(["--window", &bench.window.to_string()])
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
    // When the first node was hit, on the server's clock.
    let hit = fault.map(|(after, signal)| {
        nodes.signal_after(0, Duration::from_secs_f64(after), signal, clock)
    });

    let outcome = serve(&bench.job, listener, clock)?;
    let finished = outcome.state.finished_at().unwrap_or_default();
    // Nodes were told at `finished`: time until every healthy one exited.
    let victim = usize::from(fault.is_some());
    let last_exit = nodes
        .wait_exits(victim, Duration::from_secs(10))
        .ok_or("a node did not exit within 10 s of the end")?;
    let exit_ms = last_exit.saturating_sub(finished).as_secs_f64() * 1e3;
    drop(nodes);
    let wall = outcome.finished_job_at;

    let stats = outcome.state.stats();
    let hit = hit.and_then(|h| *h.lock().unwrap_or_else(|p| p.into_inner()));
    let detect_ms = match (hit, stats.deaths.first()) {
        (Some(hit), Some(death)) => death.at.saturating_sub(hit).as_secs_f64() * 1e3,
        _ => 0.0,
    };
    let startup = stats.first_assigned_at.unwrap_or_default();
    let ideal = startup + compute / bench.nodes;
    println!(
        "crunch tile={} max_iter={} heartbeat_ms={} window={} startup_s={:.3} ideal_s={:.3} \
         wall_over_ideal={:.3} nodes_exit_ms={:.1} registered={} dead={} backups={} duplicates={} lost={} \
         stale_results={} malformed={}",
        bench.job.tile,
        bench.job.max_iter,
        bench.job.heartbeat_ms,
        bench.window,
        startup.as_secs_f64(),
        ideal.as_secs_f64(),
        if compute.is_zero() {
            0.0
        } else {
            wall.as_secs_f64() / ideal.as_secs_f64()
        },
        exit_ms,
        stats.registered,
        stats.dead,
        stats.backups,
        stats.duplicates,
        stats.lost,
        stats.stale_results,
        outcome.counters.malformed,
    );
    println!(
        "crunch nodes={} size={} wall_s={:.3} compute_s={:.3} reassigned={} detect_ms={:.0}",
        bench.nodes,
        bench.job.size,
        wall.as_secs_f64(),
        compute.as_secs_f64(),
        stats.reassigned,
        detect_ms,
    );
    Ok(())
}
