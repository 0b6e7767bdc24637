//! `replica`: waits on a control address for commands that run one replica.

use clap::Parser;
use troupe_program::daemon::{list_protocols, serve, token_from_env, Kind};

/// A troupe replica daemon.
#[derive(Parser)]
#[command(about = "Runs troupe replicas as the control plane commands (token in TROUPE_TOKEN)")]
struct Args {
    /// TCP address to accept control connections on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    control: std::net::SocketAddr,
    /// Print the known protocols (name and replicas for f = 1) and exit.
    #[arg(long)]
    list_protocols: bool,
}

fn main() {
    let args = Args::parse();
    if args.list_protocols {
        print!("{}", list_protocols());
        return;
    }
    let result = token_from_env().and_then(|token| {
        serve(
            args.control,
            &token,
            Kind::Replica,
            troupe_program::run_replica::run,
        )
        .map_err(|e| e.to_string())
    });
    if let Err(e) = result {
        eprintln!("replica: {e}");
        std::process::exit(1);
    }
}
