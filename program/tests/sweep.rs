//! Sweeps end to end: real programs, results on disk, resume, a program
//! killed mid-run, and a run across namespaced hosts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use troupe_run::events::Event;
use troupe_run::results::{json_path, load_rows, read_json};
use troupe_run::{Bench, Cluster, Hosts, Sweep};

fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_replica")).parent().unwrap()
}

/// A fresh scratch directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("troupe-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sink that keeps every event.
fn recorder() -> (Arc<Mutex<Vec<Event>>>, troupe_run::events::Sink) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (events, Box::new(move |e| sink.lock().unwrap().push(e)))
}

/// Two protocols when the programs know two; until then, two
/// configurations of the one there is.
fn two_configurations() -> Vec<Bench> {
    let protocols = Cluster::protocols(bin_dir()).unwrap();
    match &protocols[..] {
        [a, b, ..] => vec![Bench::new(&a.0, 1), Bench::new(&b.0, 1)],
        [a] => vec![Bench::new(&a.0, 1), Bench::new(&a.0, 1).kv()],
        [] => panic!("the programs know no protocol"),
    }
}

#[test]
fn a_short_sweep_writes_rows_json_and_a_plot_then_resumes() {
    let scratch = Scratch::new("sweep");
    let csv = scratch.0.join("short.csv");
    let mut plan = Vec::new();
    for config in two_configurations() {
        for clients in [1, 8] {
            let mut bench = config.clone().seconds(1.5);
            bench.clients = clients;
            plan.push(bench);
        }
    }
    let (events, sink) = recorder();
    let outcome = Sweep::new(&csv)
        .programs(bin_dir())
        .sink(sink)
        .run(plan.clone())
        .unwrap();
    assert_eq!(
        (outcome.finished, outcome.skipped, outcome.failed),
        (4, 0, 0),
        "{:?}",
        outcome.rows
    );
    assert!(!outcome.interrupted);

    let rows = load_rows(&csv).unwrap();
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert!(row.is_ok(), "{row:?}");
        assert!(row.ops_per_s > 0.0, "{row:?}");
        assert!(row.p50_us > 0 && row.p50_us <= row.p99_us && row.p99_us <= row.p999_us);
        assert_eq!(row.errors, 0, "{row:?}");
        assert!(row.replicas >= 1 && !row.commit.is_empty() && row.date.len() == 20);
        let record = read_json(&json_path(&csv, &row.key())).unwrap();
        assert_eq!(&record.row, row);
        let measured: u64 = record.histogram.iter().map(|b| b.1).sum();
        let ops = row.ops_per_s * (row.duration_s - row.warmup_s);
        assert!(
            (measured as f64 - ops).abs() <= ops * 0.01 + 1.0,
            "the histogram counts every measured operation: {measured} vs {ops}"
        );
        assert!(record.histogram.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(!record.client_series().is_empty(), "{:?}", record.series);
    }
    let svg = std::fs::read_to_string(csv.with_extension("svg")).unwrap();
    assert!(svg.contains(&rows[0].protocol) && svg.contains("median latency"));

    let events = events.lock().unwrap();
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::RunStarted { total, .. } => Some(*total),
            _ => None,
        })
        .collect();
    assert_eq!(started, [4, 4, 4, 4]);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ProgramUp { tag, .. } if tag == "C")));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Sample(s) if s.tag == "C" && s.ops_per_s > 0)));
    drop(events);

    // Run again: everything is there already.
    let again = Sweep::new(&csv)
        .programs(bin_dir())
        .sink(Box::new(|_| {}))
        .run(plan.clone())
        .unwrap();
    assert_eq!((again.finished, again.skipped), (0, 4));

    // Lose the last row (as if interrupted there): only that run reruns.
    let text = std::fs::read_to_string(&csv).unwrap();
    let kept: Vec<&str> = text.lines().take(4).collect();
    std::fs::write(&csv, kept.join("\n") + "\n").unwrap();
    let resumed = Sweep::new(&csv)
        .programs(bin_dir())
        .sink(Box::new(|_| {}))
        .run(plan)
        .unwrap();
    assert_eq!((resumed.finished, resumed.skipped), (1, 3));
    assert_eq!(resumed.rows[0].key(), rows[3].key());
    assert_eq!(load_rows(&csv).unwrap().len(), 4);
}

#[test]
fn a_program_killed_mid_run_is_reported_and_the_sweep_goes_on() {
    let scratch = Scratch::new("kill");
    let csv = scratch.0.join("kill.csv");
    let plan = vec![
        Bench::new("unreplicated", 4).seconds(5.0),
        Bench::new("unreplicated", 8).seconds(1.2),
    ];
    // Kill replica 0 by pid on its first report of the first run.
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let mut replica_pid = None;
    let mut run = 0;
    let mut killed = false;
    let sink = Box::new(move |e: Event| {
        match &e {
            Event::ProgramUp { tag, pid, .. } if tag == "0" => replica_pid = *pid,
            Event::RunStarted { index, .. } => run = *index,
            Event::Sample(s) if s.tag == "0" && run == 0 && !killed => {
                let pid = replica_pid.expect("the replica's pid");
                // SAFETY: kill(2) on a pid this sweep started and still holds.
                assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
                killed = true;
            }
            _ => {}
        }
        seen.lock().unwrap().push(e);
    });
    let outcome = Sweep::new(&csv)
        .programs(bin_dir())
        .sink(sink)
        .run(plan)
        .unwrap();
    assert_eq!(
        (outcome.finished, outcome.failed),
        (1, 1),
        "{:?}",
        outcome.rows
    );
    let rows = load_rows(&csv).unwrap();
    assert_eq!(rows[0].status, "failed");
    assert!(
        rows[0].failure.contains("[0] was killed by signal 9"),
        "{}",
        rows[0].failure
    );
    assert!(rows[1].is_ok() && rows[1].ops_per_s > 0.0, "{:?}", rows[1]);

    let events = events.lock().unwrap();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ProgramDown { tag, .. } if tag == "0")));
    let replica_pids: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::ProgramUp { tag, pid, .. } if tag == "0" => *pid,
            _ => None,
        })
        .collect();
    assert_eq!(
        replica_pids.len(),
        2,
        "a fresh replica replaced the dead one"
    );
    assert_ne!(replica_pids[0], replica_pids[1]);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::RunFinished {
            index: 0,
            ok: false,
            ..
        }
    )));
}

#[test]
fn stopping_a_sweep_mid_run_records_nothing_and_stops_every_program() {
    let scratch = Scratch::new("stop");
    let csv = scratch.0.join("stop.csv");
    let plan = vec![
        Bench::new("unreplicated", 4).seconds(1.2),
        Bench::new("unreplicated", 4).seconds(5.0),
        Bench::new("unreplicated", 8).seconds(1.2),
    ];
    let sweep = Sweep::new(&csv).programs(bin_dir());
    // What q on the dashboard (or Ctrl-C) does: raise the stop flag.
    let stop = sweep.stop_flag();
    let pids = Arc::new(Mutex::new(Vec::new()));
    let seen = pids.clone();
    let mut run = 0;
    let sweep = sweep.sink(Box::new(move |e: Event| match e {
        Event::ProgramUp { pid: Some(pid), .. } => seen.lock().unwrap().push(pid),
        Event::RunStarted { index, .. } => run = index,
        Event::Sample(s) if s.tag == "C" && run == 1 => {
            stop.store(true, std::sync::atomic::Ordering::SeqCst)
        }
        _ => {}
    }));
    let outcome = sweep.run(plan).unwrap();
    assert!(outcome.interrupted);
    assert_eq!((outcome.finished, outcome.failed), (1, 0));
    assert_eq!(
        load_rows(&csv).unwrap().len(),
        1,
        "the stopped run is not recorded"
    );
    let pids = pids.lock().unwrap();
    assert_eq!(pids.len(), 2);
    for pid in pids.iter() {
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(*pid as i32, 0) } == 0;
        assert!(!alive, "program {pid} outlived the sweep");
    }
}

/// Removes the namespaced hosts when dropped.
struct Namespaces {
    script: PathBuf,
    prefix: String,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(&self.script)
            .args(["down", &self.prefix])
            .status();
    }
}

#[test]
fn a_sweep_runs_across_three_namespaced_hosts() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns.sh");
    let prefix = format!("tr{}", std::process::id() % 100_000);
    let subnet = format!("10.77.{}", std::process::id() % 200 + 20);
    let up = std::process::Command::new("bash")
        .arg(&script)
        .args(["up", "3", &prefix, &subnet])
        .output();
    let hosts = match up {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap(),
        Ok(out) => {
            let _ = Namespaces {
                script: script.clone(),
                prefix: prefix.clone(),
            };
            eprintln!(
                "SKIPPED: network namespaces are not available here ({}); \
                 scripts/netns.sh needs root and iproute2",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot run scripts/netns.sh: {e}");
            return;
        }
    };
    let _namespaces = Namespaces { script, prefix };
    let hosts = Hosts::parse(&hosts).unwrap();
    assert_eq!(hosts.hosts.len(), 3);

    // The protocol with the most replicas spreads over both replica hosts.
    let protocols = Cluster::protocols(bin_dir()).unwrap();
    let (protocol, _) = protocols.iter().max_by_key(|p| p.1).unwrap();
    let scratch = Scratch::new("netns");
    let (events, sink) = recorder();
    let outcome = Sweep::new(scratch.0.join("netns.csv"))
        .programs(bin_dir())
        .hosts(hosts)
        .sink(sink)
        .run(vec![Bench::new(protocol, 8).seconds(1.2)])
        .unwrap();
    assert_eq!(outcome.finished, 1, "{:?}", outcome.rows);
    assert!(outcome.rows[0].ops_per_s > 0.0 && outcome.rows[0].errors == 0);
    let events = events.lock().unwrap();
    let host_of = |want: &str| {
        events.iter().find_map(|e| match e {
            Event::ProgramUp { tag, host, .. } if tag == want => Some(host.clone()),
            _ => None,
        })
    };
    assert_eq!(host_of("0"), Some(format!("{subnet}.1")));
    assert_eq!(host_of("C"), Some(format!("{subnet}.3")));
}

#[test]
fn a_program_exits_when_its_runner_goes_even_with_stderr_gone() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench_client"))
        .args(["--control", "127.0.0.1:0", "--token-stdin"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "a-token").unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    // The runner dies: its end of both pipes closes.
    drop(stderr);
    drop(stdin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the program outlived its runner");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
}
