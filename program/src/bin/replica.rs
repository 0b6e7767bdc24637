//! `replica`: waits on a control address for commands that run one replica.

use troupe_program::daemon::{daemon_main, Kind};

fn main() {
    daemon_main(Kind::Replica, troupe_program::run_replica::run);
}
