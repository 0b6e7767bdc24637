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
            heartbeat: Duration::from_millis(20),
            member_timeout: Duration::from_millis(200),
            join_timeout: Duration::from_millis(300),
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
