//! `bench_client`: waits on a control address for commands that run closed-loop clients.

use troupe_program::daemon::{daemon_main, Kind};

fn main() {
    daemon_main(Kind::Clients, troupe_program::run_clients::run);
}
