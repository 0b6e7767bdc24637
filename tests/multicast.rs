//! Multicast sessions on loopback: barrier and broadcast groups with 1, 2
//! and 8 members, joins mid-stream, leaves, a killed member, injected
//! loss, authentication and the errors members see.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
use troupe::multicast::{Config, Coordinator, Error, Member, Params};

/// A multicast address of its own for each session, so concurrent tests
/// never hear each other.
fn multicast_addr() -> SocketAddr {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() as u16;
    let port = 20_000 + (pid.wrapping_mul(31).wrapping_add(n) % 30_000);
    format!(
        "239.{}.{}.{}:{port}",
        100 + n % 100,
        (pid >> 8) as u8,
        pid as u8
    )
    .parse()
    .unwrap()
}

fn fast_config() -> Config {
    Config {
        params: Params {
            // Generous for a loaded CI machine: a member starved of CPU
            // this long is (rightly) removed, which would fail the test.
            heartbeat: Duration::from_millis(50),
            member_timeout: Duration::from_millis(1000),
            join_timeout: Duration::from_millis(1000),
            ..Params::default()
        },
        ..Config::default()
    }
}

fn start(config: Config) -> Coordinator {
    Coordinator::start_session_with_config("127.0.0.1:0".parse().unwrap(), multicast_addr(), config)
        .unwrap()
}

fn barrier_rounds(members: usize) {
    let coordinator = start(fast_config());
    let at = coordinator.local_addr();
    let mut barrier = coordinator.create_barrier_group(Some(3)).unwrap();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..members)
        .map(|_| {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let member = Member::join_session_with_config(at, fast_config()).unwrap();
                let mut group = member.join_barrier_group(3).unwrap();
                for round in 0..50 {
                    counter.fetch_add(1, Ordering::SeqCst);
                    group.wait().unwrap();
                    // Nobody passes round r before everyone reached it.
                    assert!(counter.load(Ordering::SeqCst) >= (round + 1) * members);
                }
            })
        })
        .collect();
    for _ in 0..members {
        barrier.accept().unwrap();
    }
    for _ in 0..50 {
        barrier.wait().unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn barrier_with_1_2_and_8_members() {
    for n in [1, 2, 8] {
        barrier_rounds(n);
    }
}

fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = vec![0u8; size];
    for (k, b) in m.iter_mut().enumerate() {
        *b = (i * 31 + k) as u8;
    }
    m[..8.min(size)].copy_from_slice(&(i as u64).to_le_bytes()[..8.min(size)]);
    m
}

fn broadcast(members: usize, count: usize, config: impl Fn() -> Config) {
    let coordinator = start(config());
    let at = coordinator.local_addr();
    let mut sender = coordinator.create_broadcast_group(None).unwrap();
    let id = sender.id();
    let sizes = [0usize, 1, 64, 1000, 40_000, 100_000];
    let threads: Vec<_> = (0..members)
        .map(|_| {
            let config = config();
            std::thread::spawn(move || {
                let member = Member::join_session_with_config(at, config).unwrap();
                let mut rx = member.join_broadcast_group(id).unwrap();
                for i in 0..count {
                    let mut got = Vec::new();
                    rx.recv().unwrap().read().read_to_end(&mut got).unwrap();
                    assert_eq!(got, message(i, sizes[i % sizes.len()]), "message {i}");
                }
            })
        })
        .collect();
    for _ in 0..members {
        sender.accept().unwrap();
    }
    for i in 0..count {
        sender
            .write_message()
            .write_all(&message(i, sizes[i % sizes.len()]))
            .unwrap();
    }
    sender.wait().unwrap();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn broadcast_with_1_2_and_8_members_in_order() {
    for n in [1, 2, 8] {
        broadcast(n, 300, fast_config);
    }
}

#[test]
fn broadcast_survives_5_percent_receive_loss() {
    broadcast(3, 600, || Config {
        receive_loss: 0.05,
        ..fast_config()
    });
}

#[test]
fn unknown_session_and_group_and_gone_coordinator_are_clear_errors() {
    // Nobody listens here: bind a socket, learn its port, close it.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    match Member::join_session_with_config(dead, fast_config()) {
        Err(Error::SessionNotFound(a)) => assert_eq!(a, dead),
        other => panic!("expected SessionNotFound, got {:?}", other.err()),
    }
    let coordinator = start(fast_config());
    let _barrier = coordinator.create_barrier_group(Some(1)).unwrap();
    assert_eq!(
        coordinator.create_barrier_group(Some(1)).err(),
        Some(Error::GroupExists(1))
    );
    let member = Member::join_session_with_config(coordinator.local_addr(), fast_config()).unwrap();
    assert_eq!(
        member.join_broadcast_group(9).err(),
        Some(Error::UnknownGroup(9))
    );
    // Group 1 is a barrier, not a broadcast.
    assert_eq!(
        member.join_broadcast_group(1).err(),
        Some(Error::UnknownGroup(1))
    );
    let mut group = member.join_barrier_group(1).unwrap();
    drop(_barrier);
    drop(coordinator);
    assert_eq!(group.wait().err(), Some(Error::CoordinatorGone));
}

#[test]
fn only_key_holders_join() {
    let keyed = || Config {
        key: Some(b"session key".to_vec()),
        ..fast_config()
    };
    let coordinator = start(keyed());
    let mut barrier = coordinator.create_barrier_group(Some(0)).unwrap();
    let at = coordinator.local_addr();
    assert_eq!(
        Member::join_session_with_config(at, fast_config()).err(),
        Some(Error::SessionNotFound(at))
    );
    let wrong = Config {
        key: Some(b"guess".to_vec()),
        ..fast_config()
    };
    assert_eq!(
        Member::join_session_with_config(at, wrong).err(),
        Some(Error::SessionNotFound(at))
    );
    let t = std::thread::spawn(move || {
        let member = Member::join_session_with_config(at, keyed()).unwrap();
        member.join_barrier_group(0).unwrap().wait().unwrap();
    });
    barrier.accept().unwrap();
    barrier.wait().unwrap();
    t.join().unwrap();
}

/// Runs `f` on a thread and fails the test if it has not finished within
/// `secs` (a hang is a failure, not a stuck CI job).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("timed out (or panicked)")
}

fn recv_index(rx: &mut troupe::multicast::BroadcastGroupReceiver) -> u64 {
    let m = rx.recv().unwrap().into_bytes();
    u64::from_le_bytes(m[..8].try_into().unwrap())
}

#[test]
fn members_joining_mid_stream_get_everything_from_their_join_on() {
    within(60, || {
        let coordinator = start(fast_config());
        let at = coordinator.local_addr();
        let mut sender = coordinator.create_broadcast_group(Some(5)).unwrap();
        let early = std::thread::spawn(move || {
            let member = Member::join_session_with_config(at, fast_config()).unwrap();
            let mut rx = member.join_broadcast_group(5).unwrap();
            (0..400).map(|_| recv_index(&mut rx)).collect::<Vec<_>>()
        });
        sender.accept().unwrap();
        for i in 0..200u64 {
            sender.send(message(i as usize, 100)).unwrap();
        }
        // Everything so far is with the early member: the late one starts
        // after it.
        sender.wait().unwrap();
        let late = std::thread::spawn(move || {
            let member = Member::join_session_with_config(at, fast_config()).unwrap();
            let mut rx = member.join_broadcast_group(5).unwrap();
            (0..200).map(|_| recv_index(&mut rx)).collect::<Vec<_>>()
        });
        sender.accept().unwrap();
        for i in 200..400u64 {
            sender.send(message(i as usize, 100)).unwrap();
        }
        sender.wait().unwrap();
        assert_eq!(early.join().unwrap(), (0..400).collect::<Vec<_>>());
        assert_eq!(late.join().unwrap(), (200..400).collect::<Vec<_>>());
    });
}

#[test]
fn leaving_members_do_not_hold_the_groups_back() {
    within(60, || {
        // Slow failure detection: a leave that were not noticed would
        // stall the groups far longer than this test waits.
        let config = || Config {
            params: Params {
                member_timeout: Duration::from_secs(60),
                ..fast_config().params
            },
            ..fast_config()
        };
        let coordinator = start(config());
        let at = coordinator.local_addr();
        let mut barrier = coordinator.create_barrier_group(Some(0)).unwrap();
        let mut sender = coordinator.create_broadcast_group(Some(1)).unwrap();
        let stayer = std::thread::spawn(move || {
            let member = Member::join_session_with_config(at, config()).unwrap();
            let mut b = member.join_barrier_group(0).unwrap();
            let mut rx = member.join_broadcast_group(1).unwrap();
            for _ in 0..20 {
                b.wait().expect("barrier wait");
            }
            (0..100).map(|_| recv_index(&mut rx)).collect::<Vec<_>>()
        });
        let leaver = std::thread::spawn(move || {
            let member = Member::join_session_with_config(at, config()).unwrap();
            let mut b = member.join_barrier_group(0).unwrap();
            let mut rx = member.join_broadcast_group(1).unwrap();
            for _ in 0..10 {
                b.wait().expect("barrier wait");
            }
            // Leaves the barrier group, staying in the session.
            drop(b);
            assert_eq!(recv_index(&mut rx), 0);
            // Dropping the handles and the member leaves the session.
        });
        for _ in 0..2 {
            barrier.accept().unwrap();
            sender.accept().unwrap();
        }
        for _ in 0..20 {
            barrier.wait().unwrap();
        }
        for i in 0..100 {
            sender.send(message(i, 64)).unwrap();
        }
        sender.wait().unwrap();
        leaver.join().unwrap();
        assert_eq!(stayer.join().unwrap(), (0..100).collect::<Vec<_>>());
    });
}

/// Environment variable that makes [`killed_member_child`] act as a
/// member of the session at that address.
const CHILD_ENV: &str = "TROUPE_MULTICAST_CHILD_AT";

/// Not a test on its own: the member process that
/// `a_killed_member_is_removed_and_the_rest_carry_on` starts and kills.
#[test]
#[ignore]
fn killed_member_child() {
    let Ok(at) = std::env::var(CHILD_ENV) else {
        return;
    };
    let member = Member::join_session_with_config(at.parse().unwrap(), fast_config()).unwrap();
    let mut rx = member.join_broadcast_group(0).unwrap();
    loop {
        rx.recv().unwrap();
    }
}

/// Kills the child process when dropped, whatever happens to the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_killed_member_is_removed_and_the_rest_carry_on() {
    within(60, || {
        let coordinator = start(fast_config());
        let at = coordinator.local_addr();
        let mut sender = coordinator.create_broadcast_group(Some(0)).unwrap();
        let mut child = KillOnDrop(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "killed_member_child", "--nocapture"])
                .env(CHILD_ENV, at.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let survivor = std::thread::spawn(move || {
            let member = Member::join_session_with_config(at, fast_config()).unwrap();
            let mut rx = member.join_broadcast_group(0).unwrap();
            (0..2000).map(|_| recv_index(&mut rx)).collect::<Vec<_>>()
        });
        sender.accept().unwrap();
        sender.accept().unwrap();
        for i in 0..1000 {
            sender.send(message(i, 2000)).unwrap();
        }
        sender.wait().unwrap();
        // Mid-broadcast: kill the child with messages in flight.
        for i in 1000..1500 {
            sender.send(message(i, 2000)).unwrap();
        }
        child.0.kill().unwrap();
        let killed = std::time::Instant::now();
        for i in 1500..2000 {
            sender.send(message(i, 2000)).unwrap();
        }
        sender.wait().unwrap();
        let stall = killed.elapsed();
        eprintln!("wait() returned {stall:?} after the kill");
        assert_eq!(survivor.join().unwrap(), (0..2000).collect::<Vec<_>>());
        drop(child);
    });
}

#[test]
fn barrier_and_broadcast_survive_loss_together() {
    within(60, || {
        let lossy = || Config {
            receive_loss: 0.05,
            ..fast_config()
        };
        let coordinator = start(lossy());
        let at = coordinator.local_addr();
        let mut barrier = coordinator.create_barrier_group(Some(0)).unwrap();
        let members: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(move || {
                    let member = Member::join_session_with_config(at, lossy()).unwrap();
                    let mut b = member.join_barrier_group(0).unwrap();
                    for _ in 0..100 {
                        b.wait().expect("barrier wait");
                    }
                })
            })
            .collect();
        barrier.accept().unwrap();
        barrier.accept().unwrap();
        for _ in 0..100 {
            barrier.wait().unwrap();
        }
        for m in members {
            m.join().unwrap();
        }
    });
}
