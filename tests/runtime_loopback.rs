//! The epoll runtime runs the unreplicated protocol over loopback: a
//! replica host and a client host on two threads, every reply checked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use troupe::actor::{Addr, Deploy};
use troupe::app::{App, AppKind, OpSource, Workload};
use troupe::net::{bind_udp, BincodeCodec, Directory};
use troupe::protocol::unreplicated::{Client, Message, Replica};
use troupe::runtime::{run_host, HostConfig, HostView, Supervisor};

struct UntilFlag(Arc<AtomicBool>);

impl Supervisor for UntilFlag {
    fn tick(&mut self, _now: Duration, _view: &HostView<'_>) -> bool {
        !self.0.load(Ordering::SeqCst)
    }
}

struct Checked {
    sources: Vec<OpSource>,
    remaining: Vec<u32>,
    completed: u64,
    wrong: u64,
}

impl Supervisor for Checked {
    fn next_op(&mut self, slot: usize, _now: Duration) -> Option<Vec<u8>> {
        if self.remaining[slot] == 0 {
            return None;
        }
        self.remaining[slot] -= 1;
        Some(self.sources[slot].next_op())
    }
    fn completed(&mut self, slot: usize, _now: Duration, result: &[u8]) {
        self.completed += 1;
        if !self.sources[slot].check(result) {
            self.wrong += 1;
        }
    }
    fn tick(&mut self, _now: Duration, _view: &HostView<'_>) -> bool {
        self.remaining.iter().any(|r| *r > 0) || self.completed < self.sources.len() as u64 * 200
    }
}

fn run(shared_threads: usize) {
    let server = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = server.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let replica = std::thread::spawn(move || {
        let config = HostConfig {
            socket: server,
            directory: Directory::new(vec![server_addr]),
            deploy: Deploy {
                shared_threads,
                spin: false,
            },
            tick: Duration::from_millis(10),
            seed: 1,
        };
        let actors = vec![(Addr::Node(0), Replica::new(App::new(AppKind::Kv)))];
        run_host(
            actors,
            Arc::new(BincodeCodec::<Message>::new()),
            config,
            &mut UntilFlag(stop2),
        )
        .unwrap()
    });
    let clients = 50;
    let workload = Workload::Kv {
        keys: 3,
        read_ratio: 0.4,
        value_size: 8,
    };
    let mut checked = Checked {
        sources: (0..clients)
            .map(|c| OpSource::new(workload.clone(), c, 9))
            .collect(),
        remaining: vec![200; clients as usize],
        completed: 0,
        wrong: 0,
    };
    let config = HostConfig {
        socket: bind_udp("127.0.0.1:0".parse().unwrap()).unwrap(),
        directory: Directory::new(vec![server_addr]),
        deploy: Deploy::default(),
        tick: Duration::from_millis(10),
        seed: 2,
    };
    let actors = (0..clients)
        .map(|c| (Addr::Client(c), Client::new(c, Duration::from_millis(50))))
        .collect();
    let out = run_host(
        actors,
        Arc::new(BincodeCodec::<Message>::new()),
        config,
        &mut checked,
    )
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let server_out = replica.join().unwrap();
    assert_eq!(checked.completed, clients * 200);
    assert_eq!(checked.wrong, 0);
    assert_eq!(out.counters.malformed, 0);
    // At most once: the server executed each operation exactly once, even
    // if some were resent.
    use troupe::actor::State;
    assert_eq!(server_out.actors[0].executed(), clients * 200);
}

#[test]
fn unreplicated_kv_over_loopback_inline() {
    run(0);
}

#[test]
fn unreplicated_kv_over_loopback_with_a_shared_pool() {
    run(2);
}
