//! Exchange channels across real processes on loopback: the word count
//! example agrees with a sequential count, and a process killed mid-run
//! is an error for its peer, not a hang.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use troupe_program::peers::loopback_addresses;

/// Kills the child by pid when dropped, also when the test fails.
struct Guard(Option<Child>);

impl Guard {
    fn spawn(cmd: &mut Command) -> Guard {
        Guard(Some(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ))
    }

    fn kill(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
        }
    }

    /// Reads stdout until a line starting with `prefix` (bounded: a
    /// reader thread hands lines over a channel).
    fn wait_for_line(&mut self, prefix: &str, limit: Duration) {
        let stdout = self.0.as_mut().unwrap().stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => {}
                Err(e) => panic!("no line starting with {prefix:?}: {e}"),
            }
        }
    }

    /// Waits (bounded) for the exit and returns the output.
    fn output_within(&mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let child = self.0.as_mut().unwrap();
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "process did not exit: a hang");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn wordcount_over_two_processes_of_two_workers_matches_a_sequential_count() {
    let bin = env!("CARGO_BIN_EXE_wordcount");
    let run = |args: &[&str]| {
        let out = Guard::spawn(Command::new(bin).args(args)).output_within(Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let lines = "--lines=50000";
    let sequential = run(&["--sequential", lines]);
    let distributed = run(&["--processes=2", "--workers=2", lines]);
    assert!(
        sequential.starts_with("wordcount total=450000 "),
        "{sequential}"
    );
    assert_eq!(distributed, sequential);
}

/// Starts both processes of an `exchange` benchmark that would run for
/// hours, kills `victim` once they are exchanging, and returns the
/// survivor's output.
fn kill_mid_run(victim: usize) -> Output {
    let bin = env!("CARGO_BIN_EXE_exchange");
    let addrs = loopback_addresses(2).unwrap();
    let list = format!("{},{}", addrs[0], addrs[1]);
    let mut procs: Vec<Guard> = (0..2)
        .map(|i| {
            Guard::spawn(Command::new(bin).args([
                "--workers=1",
                "--processes=2",
                "--messages=1000000000000",
                &format!("--process={i}"),
                &format!("--addresses={list}"),
            ]))
        })
        .collect();
    // Once both say they are connected, they stream for hours.
    for p in &mut procs {
        p.wait_for_line("exchange-connected", Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_millis(50));
    procs[victim].kill();
    procs[1 - victim].output_within(Duration::from_secs(30))
}

#[test]
fn killing_the_receiving_process_is_an_error_for_the_sender() {
    let out = kill_mid_run(1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("lost process 1"), "{err}");
}

#[test]
fn killing_the_sending_process_is_an_error_for_the_receiver() {
    let out = kill_mid_run(0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("lost process 0"), "{err}");
}
