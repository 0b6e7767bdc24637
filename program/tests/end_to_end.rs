//! Real processes on loopback: `replica` and `bench_client` started and
//! commanded through the control plane.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;
use troupe_message::app::{AppKind, Workload};
use troupe_message::control::{read_frame, write_frame, Control, Hello, Report, Role};
use troupe_run::{Bench, Cluster};

fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_replica")).parent().unwrap()
}

/// Kills the child by pid when dropped, also when the test fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kv_clients_through_the_control_plane_get_every_reply_right() {
    let mut cluster = Cluster::local(bin_dir()).unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    cluster.set_sink(Box::new(move |event| {
        if let Some(line) = troupe_run::events::plain_line(&event) {
            sink.lock().unwrap().push(line)
        }
    }));
    let mut bench = Bench::new("unreplicated", 50).kv();
    bench.duration_s = 2.0;
    bench.warmup_s = 0.5;
    let result = cluster.run(&bench).unwrap();
    let counter = |name: &str| {
        result
            .counters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    };
    assert!(result.ops_per_s > 0.0);
    assert!(
        counter("C.completed").unwrap() > 100,
        "{:?}",
        result.counters
    );
    assert_eq!(counter("C.wrong_results"), Some(0), "every KV reply checks");
    assert_eq!(result.errors, 0, "{:?}", result.counters);
    assert!(result.p50_us > 0 && result.p50_us <= result.p99_us);
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("[C]") && l.contains("ops/s")));

    // The same programs serve a second run (daemons wait for the next
    // command).
    bench.clients = 5;
    let again = cluster.run(&bench).unwrap();
    assert_eq!(
        again
            .counters
            .iter()
            .find(|(k, _)| k == "C.wrong_results")
            .map(|(_, v)| *v),
        Some(0)
    );
}

fn control(addr: SocketAddr, token: &str) -> TcpStream {
    for _ in 0..500 {
        if let Ok(mut s) = TcpStream::connect(addr) {
            write_frame(
                &mut s,
                &Hello {
                    token: token.into(),
                },
            )
            .unwrap();
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("replica never listened on {addr}");
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn bad_tokens_bad_commands_and_bad_datagrams_are_refused_and_counted() {
    let control_addr = free_port();
    let _replica = Guard(
        Process::new(env!("CARGO_BIN_EXE_replica"))
            .args(["--control", &control_addr.to_string()])
            .env("TROUPE_TOKEN", "right")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // A wrong token is refused.
    let mut wrong = control(control_addr, "wrong");
    assert_eq!(read_frame::<Report>(&mut wrong).unwrap(), Report::Refused);
    drop(wrong);

    let mut c = control(control_addr, "right");
    assert_eq!(read_frame::<Report>(&mut c).unwrap(), Report::Ready);

    // Garbage in a well-formed frame: an error, and the connection lives.
    c.write_all(&5u32.to_le_bytes()).unwrap();
    c.write_all(&[0xde, 0xad, 0xbe, 0xef, 0xff]).unwrap();
    assert!(
        matches!(read_frame::<Report>(&mut c).unwrap(), Report::Error(e) if e.contains("malformed"))
    );

    // A command for an unknown protocol, or a role this program cannot play.
    let data: SocketAddr = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut bench = Bench::new("no-such-protocol", 1).kv();
    let keys = Default::default();
    write_frame(
        &mut c,
        &Control::Run(Box::new(bench.replica_command(0, &[data], keys))),
    )
    .unwrap();
    assert!(
        matches!(read_frame::<Report>(&mut c).unwrap(), Report::Error(e) if e.contains("unknown protocol"))
    );
    bench.protocol = "unreplicated".into();
    let mut as_client =
        bench.client_command(&[data], "127.0.0.1".parse().unwrap(), Default::default());
    as_client.role = Role::Clients {
        first_id: 1,
        count: 1,
        threads: 1,
        bind: "127.0.0.1".parse().unwrap(),
    };
    write_frame(&mut c, &Control::Run(Box::new(as_client))).unwrap();
    assert!(
        matches!(read_frame::<Report>(&mut c).unwrap(), Report::Error(e) if e.contains("cannot play"))
    );

    // A good command runs.
    let mut command = bench.replica_command(0, &[data], Default::default());
    command.app = AppKind::Kv;
    command.workload = Workload::Kv {
        keys: 2,
        read_ratio: 0.5,
        value_size: 4,
    };
    write_frame(&mut c, &Control::Run(Box::new(command))).unwrap();
    assert_eq!(read_frame::<Report>(&mut c).unwrap(), Report::Started);

    // Malformed datagrams are dropped and counted; the replica still serves.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    for garbage in [
        &b""[..],
        b"\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        &[0x01; 300],
    ] {
        probe.send_to(garbage, data).unwrap();
    }
    use troupe::net::{decode_envelope, encode_envelope};
    use troupe::protocol::unreplicated::{Message, Request};
    use troupe_message::{Addr, Envelope};
    let request = Envelope {
        from: Addr::Client(77),
        to: Addr::Node(0),
        body: Message::Request(Request {
            client: 77,
            seq: 1,
            op: vec![],
        }),
    };
    let mut bytes = Vec::new();
    encode_envelope(&request, &mut bytes);
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let reply = (0..50).find_map(|_| {
        probe.send_to(&bytes, data).unwrap();
        probe
            .recv_from(&mut buf)
            .ok()
            .map(|(n, _)| decode_envelope::<Message>(&buf[..n]).unwrap())
    });
    assert!(
        matches!(
            reply,
            Some(Envelope {
                body: Message::Reply(_),
                ..
            })
        ),
        "{reply:?}"
    );

    write_frame(&mut c, &Control::Stop).unwrap();
    let summary = loop {
        match read_frame::<Report>(&mut c).unwrap() {
            Report::Done(s) => break s,
            Report::Error(e) => panic!("{e}"),
            _ => {}
        }
    };
    let malformed = summary
        .counters
        .iter()
        .find(|(k, _)| k == "malformed")
        .map(|(_, v)| *v);
    assert_eq!(malformed, Some(4), "{:?}", summary.counters);
    write_frame(&mut c, &Control::Exit).unwrap();
}
