//! PBFT on real processes over loopback: four `replica` programs, clients
//! in this process; the primary's process is killed halfway and the
//! clients must still finish, every key-value result checked.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use troupe::actor::{Addr, Deploy};
use troupe::app::OpSource;
use troupe::crypto::ClientKeys;
use troupe::net::{bind_udp, Directory};
use troupe::protocol::pbft::{Client, PbftCodec};
use troupe::runtime::{run_host, HostConfig, HostView, Supervisor};
use troupe_message::control::{read_frame, write_frame, ClientAuth, Control, Hello, Report};
use troupe_run::keys::run_keys;
use troupe_run::Bench;

/// Kills the child by pid when dropped, also when the test fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_tcp() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn control(addr: SocketAddr, token: &str) -> TcpStream {
    for _ in 0..500 {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let hello = Hello {
                token: token.into(),
            };
            write_frame(&mut s, &hello).unwrap();
            assert_eq!(read_frame::<Report>(&mut s).unwrap(), Report::Ready);
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("replica never listened on {addr}");
}

/// Clients that each run `ops` checked operations; replica 0's process is
/// killed once `kill_after` operations completed.
struct Driver {
    sources: Vec<OpSource>,
    remaining: Vec<u32>,
    completed: u64,
    wrong: u64,
    kill_after: u64,
    primary: Option<Guard>,
    deadline: Instant,
}

impl Supervisor for Driver {
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
        if self.completed == self.kill_after {
            self.primary = None; // dropping the guard kills the process
        }
    }

    fn tick(&mut self, _now: Duration, _view: &HostView<'_>) -> bool {
        let busy = self.remaining.iter().any(|r| *r > 0)
            || self.completed < self.sources.len() as u64 * OPS as u64;
        busy && Instant::now() < self.deadline
    }
}

const CLIENTS: u64 = 8;
const OPS: u32 = 60;

#[test]
fn clients_finish_after_the_primary_process_is_killed() {
    let token = "pbft-test-token";
    let addrs: Vec<SocketAddr> = (0..4).map(|_| free_udp()).collect();
    let (replica_keys, host_keys) = run_keys(4, 1, CLIENTS as u32, false).unwrap();
    let mut bench = Bench::new("pbft", CLIENTS as u32).kv();
    bench.batch = 4;
    let mut processes = Vec::new();
    let mut controls = Vec::new();
    for (id, keys) in replica_keys.into_iter().enumerate() {
        let at = free_tcp();
        processes.push(Guard(
            Process::new(env!("CARGO_BIN_EXE_replica"))
                .args(["--control", &at.to_string()])
                .env("TROUPE_TOKEN", token)
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
        let mut c = control(at, token);
        let mut command = bench.replica_command(id as u16, &addrs, keys);
        command.params.view_change_us = 300_000;
        command.params.client_auth = ClientAuth::Mac;
        write_frame(&mut c, &Control::Run(Box::new(command))).unwrap();
        assert_eq!(read_frame::<Report>(&mut c).unwrap(), Report::Started);
        controls.push(c);
    }

    let workload = bench.workload.clone();
    let mut driver = Driver {
        sources: (1..=CLIENTS)
            .map(|c| OpSource::new(workload.clone(), c, 3))
            .collect(),
        remaining: vec![OPS; CLIENTS as usize],
        completed: 0,
        wrong: 0,
        kill_after: CLIENTS * OPS as u64 / 3,
        primary: Some(processes.remove(0)),
        deadline: Instant::now() + Duration::from_secs(60),
    };
    let config = HostConfig {
        socket: bind_udp("127.0.0.1:0".parse().unwrap()).unwrap(),
        directory: Directory::new(addrs),
        deploy: Deploy::default(),
        tick: Duration::from_millis(10),
        seed: 1,
    };
    let codec = PbftCodec::clients(
        ClientKeys::from_command(&host_keys).unwrap(),
        ClientAuth::Mac,
    );
    let actors = (1..=CLIENTS)
        .map(|c| {
            (
                Addr::Client(c),
                Client::new(c, 4, 1, Duration::from_millis(100)),
            )
        })
        .collect();
    let out = run_host(actors, Arc::new(codec), config, &mut driver).unwrap();

    assert!(driver.primary.is_none(), "the primary was killed");
    assert_eq!(
        driver.completed,
        CLIENTS * OPS as u64,
        "every operation finished"
    );
    assert_eq!(driver.wrong, 0, "every result checks");
    assert_eq!(out.counters.bad_auth + out.counters.malformed, 0);
    assert!(
        out.actors.iter().any(|c| c.view() >= 1),
        "clients learned of the new view"
    );
    // The survivors report a later view and no rejected messages.
    for mut c in controls.into_iter().skip(1) {
        write_frame(&mut c, &Control::Stop).unwrap();
        loop {
            match read_frame::<Report>(&mut c).unwrap() {
                Report::Done(s) => {
                    let get = |k: &str| s.counters.iter().find(|(n, _)| n == k).map(|c| c.1);
                    assert_eq!(get("bad_auth"), Some(0), "{:?}", s.counters);
                    assert_eq!(get("malformed"), Some(0));
                    break;
                }
                Report::Error(e) => panic!("{e}"),
                _ => {}
            }
        }
    }
}
