//! The `crunch` program on loopback: real server and node processes, a
//! node killed mid-job, nodes that send garbage or fall silent, a node
//! whose server is gone.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use troupe::crunch::mandelbrot::{MandelJob, MandelWorker, Params};
use troupe::crunch::{Job, Worker};
use troupe::net::{connect_with_retry, read_frame_blocking, write_frame_blocking};
use troupe_message::crunch::Message;

/// Kills the child by pid when dropped, also when the test fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn crunch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crunch"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("troupe-crunch-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The PPM the job must produce, computed in this process tile by tile.
fn reference_ppm(size: u32, tile: u32, max_iter: u32, dir: &Path) -> Vec<u8> {
    let path = dir.join("reference.ppm");
    let params = Params::classic(size, size, max_iter);
    let mut job = MandelJob::new(params, tile, Some(path.clone())).unwrap();
    let mut worker = MandelWorker::new();
    worker.init(&job.initial_data()).unwrap();
    for chunk in 0..job.chunks() {
        let result = worker.process(&job.prepare(chunk)).unwrap();
        job.merge(chunk, &result).unwrap();
    }
    job.finish().unwrap();
    std::fs::read(path).unwrap()
}

/// Runs a command to completion (killed after `limit`), returning its
/// output.
fn run(mut command: Command, limit: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    let start = Instant::now();
    while guard.0.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < limit,
            "{command:?} still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = guard.0.wait().unwrap();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    guard
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    guard
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// The value of `key=` in the last line of `stdout` that has it.
fn field(output: &Output, key: &str) -> f64 {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let prefix = format!("{key}=");
    stdout
        .lines()
        .rev()
        .flat_map(|l| l.split_whitespace())
        .find_map(|w| w.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
}

fn bench(nodes: u32, size: u32, max_iter: u32, out: &Path, extra: &[&str]) -> Output {
    let mut c = crunch();
    c.args(["mandelbrot", "--skip-baseline", "--tile", "16"])
        .args(["--nodes", &nodes.to_string(), "--size", &size.to_string()])
        .args(["--max-iter", &max_iter.to_string(), "--heartbeat-ms", "200"])
        .arg("--out")
        .arg(out)
        .args(extra);
    let output = run(c, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn one_and_three_node_processes_give_the_same_image() {
    let dir = temp_dir("same");
    let reference = reference_ppm(160, 16, 512, &dir);
    let one = bench(1, 160, 512, &dir.join("one.ppm"), &[]);
    let three = bench(3, 160, 512, &dir.join("three.ppm"), &[]);
    let last = String::from_utf8_lossy(&three.stdout);
    let last = last.lines().last().unwrap();
    assert!(
        last.starts_with("crunch nodes=3 size=160 wall_s=")
            && last.contains(" compute_s=0.000 reassigned=0 detect_ms=0"),
        "{last}"
    );
    assert_eq!(std::fs::read(dir.join("one.ppm")).unwrap(), reference);
    assert_eq!(std::fs::read(dir.join("three.ppm")).unwrap(), reference);
    assert_eq!(field(&one, "reassigned"), 0.0);
    // Every node that took part is told the job is done and exits at once.
    // A node whose process started after this small job ended never
    // registers and exits only after its connection retries run out, so
    // the bound holds for runs where all three registered.
    if field(&three, "registered") == 3.0 {
        assert!(field(&three, "nodes_exit_ms") < 5000.0);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_node_killed_mid_job_leaves_the_image_intact() {
    let dir = temp_dir("kill");
    // About half a second of computing for two nodes; one dies at 0.1 s.
    let out = dir.join("killed.ppm");
    let killed = bench(2, 256, 20_000, &out, &["--kill-node-after", "0.1"]);
    assert!(
        field(&killed, "reassigned") >= 1.0,
        "the victim held chunks"
    );
    assert_eq!(field(&killed, "dead"), 1.0);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        reference_ppm(256, 16, 20_000, &dir)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn send(stream: &mut TcpStream, msg: &Message) {
    write_frame_blocking(stream, &bincode::serialize(msg).unwrap()).unwrap();
}

fn recv(stream: &mut TcpStream) -> Message {
    let frame = read_frame_blocking(stream, 1 << 20, Duration::from_secs(10)).unwrap();
    bincode::deserialize(&frame).unwrap()
}

/// True once the server has closed `stream` (EOF or reset).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}

#[test]
fn garbage_and_silent_nodes_are_dropped_and_the_job_completes() {
    let dir = temp_dir("garbage");
    let out = dir.join("garbage.ppm");
    let listen = free_port();
    let mut server = crunch();
    server
        .args(["server", "--listen", &listen.to_string(), "--size", "128"])
        .args(["--tile", "16", "--max-iter", "256", "--heartbeat-ms", "100"])
        .arg("--out")
        .arg(&out);
    let server = std::thread::spawn(move || run(server, Duration::from_secs(60)));
    let connect = || connect_with_retry(listen, Duration::from_secs(10)).unwrap();

    // Bytes that are no message, and a frame announcing a gigabyte.
    let mut junk = connect();
    write_frame_blocking(&mut junk, &[0xde, 0xad, 0xbe, 0xef, 0xff]).unwrap();
    let mut huge = connect();
    std::io::Write::write_all(&mut huge, &(1u32 << 30).to_le_bytes()).unwrap();
    // A node that registers, takes four chunks and never speaks again.
    let mut silent = connect();
    send(&mut silent, &Message::Register { window: 4 });
    assert!(matches!(recv(&mut silent), Message::Welcome { .. }));
    let mut held = Vec::new();
    for _ in 0..4 {
        match recv(&mut silent) {
            Message::Work { chunk, .. } => held.push(chunk),
            other => panic!("expected work, got {other:?}"),
        }
    }
    // A node that returns a result of the wrong size.
    let mut liar = connect();
    send(&mut liar, &Message::Register { window: 1 });
    assert!(matches!(recv(&mut liar), Message::Welcome { .. }));
    let Message::Work { chunk, .. } = recv(&mut liar) else {
        panic!("expected work");
    };
    send(
        &mut liar,
        &Message::Result {
            chunk,
            data: vec![1, 2, 3],
        },
    );
    // Dropped: what it says next is answered with "register again".
    send(&mut liar, &Message::Heartbeat { held: vec![] });
    assert_eq!(recv(&mut liar), Message::Rejoin);
    assert!(closed_by_server(&mut junk));
    assert!(closed_by_server(&mut huge));

    // A real node does the rest, including the silent node's chunks once
    // it is declared dead.
    let node = run(
        {
            let mut c = crunch();
            c.args(["node", "--server", &listen.to_string()]);
            c
        },
        Duration::from_secs(60),
    );
    assert!(node.status.success());
    assert!(String::from_utf8_lossy(&node.stderr).contains("job done"));
    let server = server.join().unwrap();
    assert!(
        server.status.success(),
        "{}",
        String::from_utf8_lossy(&server.stderr)
    );
    assert_eq!(field(&server, "malformed"), 1.0);
    assert_eq!(field(&server, "bad_results"), 1.0);
    // The silent node's chunks were done by the real node: as backups, or
    // reassigned once it was declared dead.
    assert!(field(&server, "dead") >= 1.0, "the liar at least");
    assert!(field(&server, "reassigned") + field(&server, "backups") >= held.len() as f64);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        reference_ppm(128, 16, 256, &dir)
    );
    // The server closed every connection it still had at the end.
    assert!(closed_by_server(&mut silent));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_node_whose_server_is_gone_retries_then_exits_clearly() {
    let nowhere = free_port();
    let start = Instant::now();
    let mut c = crunch();
    c.args(["node", "--server", &nowhere.to_string()]).args([
        "--attempts",
        "3",
        "--retry-ms",
        "20",
    ]);
    let output = run(c, Duration::from_secs(30));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("server unreachable: gave up after 3 registration attempts"),
        "{stderr}"
    );
    // Each of the 3 attempts waited for its answer: 20 + 40 + 80 ms.
    assert!(start.elapsed() >= Duration::from_millis(140));
}
