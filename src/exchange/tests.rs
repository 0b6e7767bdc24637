//! Exchange tests: thread, process and cluster configurations (a cluster
//! here is several `initialize` calls in one test, each its own process
//! as far as the exchange can tell: separate state, TCP between them).

use super::wire::{close_batch, open_batch, Hello, KIND_DATA};
use super::*;
use crate::net::{read_frame_blocking, write_frame_blocking};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// Messages received per sender, checked to arrive in order.
struct Tally {
    next: Vec<u64>,
    received: u64,
}

impl Tally {
    fn take(&mut self, (src, seq, text): (u32, u64, String)) {
        assert_eq!(
            seq, self.next[src as usize],
            "out of order from worker {src}"
        );
        assert_eq!(text, format!("{src}:{seq}"));
        self.next[src as usize] += 1;
        self.received += 1;
    }
}

/// Every worker sends `per_peer` numbered messages to every worker
/// (itself included) and checks that each sender's arrive in order.
/// Sends never wait blindly: when a channel is full the worker receives.
fn all_to_all(mut a: Allocator, per_peer: u64) -> Result<Vec<u64>, ExchangeError> {
    let (mut senders, mut rx) = a.allocate::<(u32, u64, String)>(7)?;
    let me = a.index() as u32;
    let peers = a.peers();
    let mut tally = Tally {
        next: vec![0; peers],
        received: 0,
    };
    for seq in 0..per_peer {
        for s in senders.iter_mut() {
            let mut item = (me, seq, format!("{me}:{seq}"));
            loop {
                match s.try_push(item) {
                    Ok(()) => break,
                    Err(PushError::Full(back)) => {
                        item = back;
                        while let Some(m) = rx.try_pull()? {
                            tally.take(m);
                        }
                        a.await_events(Some(Duration::from_millis(1)));
                    }
                    Err(PushError::Failed(e)) => return Err(e),
                }
            }
        }
    }
    drop(senders);
    while tally.received < per_peer * peers as u64 {
        match rx.recv_timeout(Duration::from_secs(30))? {
            Some(m) => tally.take(m),
            None => panic!("stalled at {}", tally.received),
        }
    }
    Ok(tally.next)
}

#[test]
fn one_thread_sends_to_itself_in_order() {
    let guards = initialize(Config::Thread, |a| all_to_all(a, 10_000)).unwrap();
    let results = guards.join();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].as_ref().unwrap().as_ref().unwrap(),
        &vec![10_000]
    );
}

#[test]
fn threads_of_one_process_keep_fifo_under_load() {
    // 20k per pair is five times a ring: flow control is exercised.
    let guards = initialize(Config::Process(3), |a| all_to_all(a, 20_000)).unwrap();
    for r in guards.join() {
        assert_eq!(r.unwrap().unwrap(), vec![20_000; 3]);
    }
}

#[test]
fn receivers_see_the_end_when_every_local_sender_is_gone() {
    let guards = initialize(Config::Process(2), |mut a| {
        let (senders, mut rx) = a.allocate::<u64>(0).unwrap();
        let target = (a.index() + 1) % 2;
        for (i, mut s) in senders.into_iter().enumerate() {
            if i == target {
                for v in 0..100 {
                    s.send(v).unwrap();
                }
            }
        }
        let mut got = Vec::new();
        while let Some(v) = rx.recv_blocking().unwrap() {
            got.push(v);
        }
        got
    })
    .unwrap();
    for r in guards.join() {
        assert_eq!(r.unwrap(), (0..100).collect::<Vec<u64>>());
    }
}

#[test]
fn allocation_errors_are_reported() {
    let guards = initialize(Config::Process(2), |mut a| {
        let _first = a.allocate::<u64>(1).unwrap();
        let again = a.allocate::<u64>(1).err();
        let other_type = if a.index() == 0 {
            a.allocate::<String>(2).err()
        } else {
            a.allocate::<u32>(2).err()
        };
        (again, other_type)
    })
    .unwrap();
    let results: Vec<_> = guards.join().into_iter().map(Result::unwrap).collect();
    for (again, _) in &results {
        assert_eq!(again, &Some(ExchangeError::ChannelTaken { channel: 1 }));
    }
    // Whichever worker came second with the other type is refused.
    let refused = results.iter().filter(|(_, t)| t.is_some()).count();
    assert_eq!(refused, 1);
}

fn run_cluster<R, F>(workers: usize, processes: usize, f: F) -> Vec<Vec<Result<R, String>>>
where
    F: Fn(Allocator) -> R + Send + Sync + Clone + 'static,
    R: Send + 'static,
{
    let addrs = free_addrs(processes);
    let handles: Vec<_> = (0..processes)
        .map(|p| {
            let (addrs, f) = (addrs.clone(), f.clone());
            std::thread::spawn(move || {
                let config = ClusterConfig::new(workers, p, addrs);
                initialize(Config::Cluster(config), f).unwrap().join()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn a_cluster_of_two_processes_keeps_fifo_under_load() {
    let results = run_cluster(2, 2, |a| all_to_all(a, 30_000));
    for process in results {
        for r in process {
            assert_eq!(r.unwrap().unwrap(), vec![30_000; 4]);
        }
    }
}

#[test]
fn a_fast_sender_to_a_stalled_receiver_is_held_back() {
    let go = Arc::new(AtomicBool::new(false));
    let results = run_cluster(1, 2, move |mut a| {
        let (mut senders, mut rx) = a.allocate::<u64>(0).unwrap();
        if a.index() == 0 {
            // Push until flow control says stop: the queues in between
            // are bounded, so that happens after a bounded number.
            let mut pushed = 0u64;
            while senders[1].try_push(pushed).is_ok() {
                pushed += 1;
                assert!(pushed < 20_000_000, "no back-pressure");
            }
            go.store(true, Ordering::Release);
            senders[1].send(pushed).unwrap();
            senders[1].send(u64::MAX).unwrap();
            senders[1].flush().unwrap();
            pushed
        } else {
            while !go.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut expect = 0;
            loop {
                let v = rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
                if v == u64::MAX {
                    break expect;
                }
                assert_eq!(v, expect);
                expect += 1;
            }
        }
    });
    let pushed = results[0][0].as_ref().unwrap();
    let received = results[1][0].as_ref().unwrap();
    assert_eq!(*received, pushed + 1);
}

#[test]
fn a_peer_that_never_comes_is_a_connect_error() {
    let addrs = free_addrs(2);
    let mut config = ClusterConfig::new(1, 0, addrs);
    config.connect_timeout = Duration::from_millis(100);
    match initialize(Config::Cluster(config), |_| ()) {
        Err(ExchangeError::Connect(msg)) => assert!(msg.contains("did not connect"), "{msg}"),
        other => panic!("expected a connect error, got {:?}", other.err()),
    }
}

/// Process 0 is real (one worker, receiving `String`s); process 1 is
/// this test, speaking the wire format by hand.
fn with_fake_peer(
    peer: impl FnOnce(TcpStream) + Send + 'static,
) -> Result<Option<String>, ExchangeError> {
    let addrs = free_addrs(2);
    let peer_addr = addrs[0];
    let fake = std::thread::spawn(move || {
        let mut s = crate::net::connect_with_retry(peer_addr, Duration::from_secs(10)).unwrap();
        let hello = Hello {
            process: 1,
            processes: 2,
            workers: 1,
        };
        write_frame_blocking(&mut s, &hello.encode()).unwrap();
        read_frame_blocking(&mut s, 64, Duration::from_secs(10)).unwrap();
        peer(s);
    });
    let config = ClusterConfig::new(1, 0, addrs);
    let guards = initialize(Config::Cluster(config), |mut a| {
        let (_senders, mut rx) = a.allocate::<String>(0)?;
        rx.recv_timeout(Duration::from_secs(30))
    })
    .unwrap();
    let mut results = guards.join();
    fake.join().unwrap();
    results.pop().unwrap().unwrap()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[test]
fn a_peer_that_vanishes_is_an_error_not_a_hang() {
    let r = with_fake_peer(drop);
    assert!(
        matches!(r, Err(ExchangeError::PeerLost { process: 1, .. })),
        "{r:?}"
    );
}

#[test]
fn garbage_frames_are_errors() {
    use std::io::Write;
    // A frame of an unknown kind.
    let r = with_fake_peer(|mut s| {
        s.write_all(&frame(&[9, 1, 2, 3])).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    });
    assert!(
        matches!(r, Err(ExchangeError::Malformed { process: 1, .. })),
        "{r:?}"
    );

    // A batch header whose length runs past the frame.
    let r = with_fake_peer(|mut s| {
        let mut body = vec![KIND_DATA];
        let at = open_batch(&mut body, 0, 1, 0);
        close_batch(&mut body, at, 1);
        body[at + 16] = 200;
        s.write_all(&frame(&body)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    });
    assert!(
        matches!(r, Err(ExchangeError::Malformed { process: 1, .. })),
        "{r:?}"
    );

    // A well-formed batch whose message does not decode as a String
    // (a length prefix far past the bytes).
    let r = with_fake_peer(|mut s| {
        let mut body = vec![KIND_DATA];
        let at = open_batch(&mut body, 0, 1, 0);
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        close_batch(&mut body, at, 1);
        s.write_all(&frame(&body)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    });
    assert!(
        matches!(r, Err(ExchangeError::Malformed { process: 1, .. })),
        "{r:?}"
    );

    // A frame announcing 4 GiB.
    let r = with_fake_peer(|mut s| {
        s.write_all(&u32::MAX.to_le_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    });
    assert!(
        matches!(r, Err(ExchangeError::Malformed { process: 1, .. })),
        "{r:?}"
    );

    // And a good message from the fake peer does arrive, for contrast.
    let r = with_fake_peer(|mut s| {
        let mut body = vec![KIND_DATA];
        let at = open_batch(&mut body, 0, 1, 0);
        body.extend_from_slice(&bincode::serialize("hi").unwrap());
        close_batch(&mut body, at, 1);
        s.write_all(&frame(&body)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    });
    assert_eq!(r, Ok(Some("hi".to_string())));
}

#[test]
fn a_panicked_worker_is_an_error_for_the_other_processes() {
    let results = run_cluster(1, 2, |mut a| {
        let (_tx, mut rx) = a.allocate::<u64>(0).unwrap();
        if a.index() == 1 {
            panic!("worker 1 fails");
        }
        rx.recv_timeout(Duration::from_secs(30))
    });
    assert!(results[1][0]
        .as_ref()
        .unwrap_err()
        .contains("worker 1 fails"));
    match results[0][0].as_ref().unwrap() {
        Err(ExchangeError::PeerLost { process: 1, reason }) => {
            assert!(reason.contains("panicked"), "{reason}")
        }
        other => panic!("expected a lost peer, got {other:?}"),
    }
}

#[test]
fn a_handshake_with_another_shape_is_refused() {
    let addrs = free_addrs(2);
    let peer_addr = addrs[0];
    let fake = std::thread::spawn(move || {
        let mut s = crate::net::connect_with_retry(peer_addr, Duration::from_secs(10)).unwrap();
        let hello = Hello {
            process: 1,
            processes: 2,
            workers: 3,
        };
        write_frame_blocking(&mut s, &hello.encode()).unwrap();
    });
    let r = initialize(Config::Cluster(ClusterConfig::new(1, 0, addrs)), |_| ());
    fake.join().unwrap();
    match r {
        Err(ExchangeError::Connect(msg)) => assert!(msg.contains("expects"), "{msg}"),
        other => panic!("expected a connect error, got {:?}", other.err()),
    }
}
