//! One program of a run (a `replica` or `bench_client` daemon): started
//! where its slot says, commanded over its control connection, and stopped
//! (by pid if need be) when dropped.

use crate::control::{ControlClient, Tagged};
use crate::hosts::{Launch, Slot};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use troupe_message::control::{Control, Report};

/// A running program. Dropping one this runner started asks it to exit,
/// closes its standard input (which makes a `--token-stdin` daemon exit on
/// its own, also over ssh), and kills the local process by pid if it still
/// lingers. One started by hand (`running`) is only disconnected.
pub struct Program {
    /// Its control connection.
    pub client: ControlClient,
    /// Where it runs, for display.
    pub host: String,
    /// Its data address (replicas on listed hosts), fixed for the sweep.
    pub data: Option<SocketAddr>,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// Its last stderr lines, for the story of its death.
    last_words: Arc<Mutex<VecDeque<String>>>,
}

/// Stderr lines kept per program to explain a failure.
const LAST_WORDS: usize = 3;

impl Program {
    /// Starts `binary` (from `bin_dir` here, or the remote directory over
    /// ssh) in `slot`, hands it `token` on standard input, connects, and
    /// forwards its reports and stderr lines to `reports` tagged `tag`.
    pub fn start(
        bin_dir: &Path,
        binary: &str,
        slot: &Slot,
        token: &str,
        tag: &str,
        reports: SyncSender<Tagged>,
    ) -> std::io::Result<Program> {
        let control = match slot.control.port() {
            0 => free_tcp_port(slot.control)?,
            _ => slot.control,
        };
        let local = bin_dir.join(binary).to_string_lossy().into_owned();
        let args = ["--control", &control.to_string(), "--token-stdin"].map(String::from);
        let process = match &slot.launch {
            Launch::Running => None,
            Launch::Local => Some(Process::new(&local)),
            Launch::Netns(name) => {
                let mut p = Process::new("ip");
                p.args(["netns", "exec", name, &local]);
                Some(p)
            }
            Launch::Ssh(target) => {
                let dir =
                    std::env::var("TROUPE_REMOTE_DIR").unwrap_or_else(|_| "troupe/bin".into());
                let mut p = Process::new("ssh");
                p.args(["-o", "BatchMode=yes", target, "--", "exec"])
                    .arg(format!("{dir}/{binary}"));
                Some(p)
            }
        };
        let (mut child, mut stdin) = (None, None);
        let last_words = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(mut process) = process {
            let mut c = process
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                // Its own process group: a Ctrl-C in the terminal reaches
                // only the runner, which then stops every program in order.
                .process_group(0)
                .spawn()
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot start {local} ({slot:?}): {e}"))
                })?;
            let mut input = c.stdin.take();
            if let Some(input) = input.as_mut() {
                // A program that exits at once cannot take it; that is
                // reported below with how it exited and what it said.
                let _ = writeln!(input, "{token}").and_then(|()| input.flush());
            }
            if let Some(stderr) = c.stderr.take() {
                let (tx, tag, last) = (reports.clone(), tag.to_string(), last_words.clone());
                std::thread::spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        if let Ok(mut last) = last.lock() {
                            last.push_back(line.clone());
                            if last.len() > LAST_WORDS {
                                last.pop_front();
                            }
                        }
                        if tx.send((tag.clone(), Some(Report::Log(line)))).is_err() {
                            return;
                        }
                    }
                });
            }
            child = Some(c);
            stdin = input;
        }
        // ssh needs a while to get going; a local program much less.
        let patience = match slot.launch {
            Launch::Ssh(_) => Duration::from_secs(30),
            _ => Duration::from_secs(10),
        };
        let deadline = Instant::now() + patience;
        let connected = loop {
            // A program that exits at once (a missing namespace, a bad
            // binary) fails the start at once, and is not knocked for.
            let exited = child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let said = said(&last_words);
                break Err(std::io::Error::other(format!(
                    "it {}{said}",
                    describe(status)
                )));
            }
            let attempt = Duration::from_millis(200);
            match ControlClient::connect(control, token, tag, attempt, reports.clone()) {
                Ok(client) => break Ok(client),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => break Err(e),
                Err(e) if Instant::now() >= deadline => break Err(e),
                Err(_) => {}
            }
        };
        match connected {
            Ok(client) => Ok(Program {
                client,
                host: control.ip().to_string(),
                data: slot.data,
                child,
                stdin,
                last_words,
            }),
            Err(e) => {
                if let Some(mut c) = child {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot reach {binary} at {control}: {e}"),
                ))
            }
        }
    }

    /// Its process id, when started here.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How the program ended, waiting up to `wait` for it to end (its
    /// control connection just closed, so it is probably dying).
    pub fn fate(&mut self, wait: Duration) -> String {
        let Some(child) = self.child.as_mut() else {
            return "its control connection closed".into();
        };
        let deadline = Instant::now() + wait;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return describe(status) + &said(&self.last_words),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => return "its control connection closed, the process still runs".into(),
            }
        }
    }

    /// Sends one control message.
    pub fn send(&mut self, control: &Control) -> std::io::Result<()> {
        self.client.send(control)
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // A program started by hand outlives the sweep: it just sees the
        // connection close and waits for the next one.
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let _ = self.client.send(&Control::Exit);
        // Exit, then end of input, then the pid: each gets a moment.
        for step in 0..2 {
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            match step {
                0 => drop(self.stdin.take()),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }
}

/// "exited with status 1", "was killed by signal 9".
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended ({status})"),
    }
}

/// `; it said: <last stderr lines>`, or nothing.
fn said(last_words: &Mutex<VecDeque<String>>) -> String {
    // Give the stderr reader a moment to catch the final lines.
    std::thread::sleep(Duration::from_millis(20));
    match last_words.lock() {
        Ok(last) if !last.is_empty() => {
            let last: Vec<String> = last.iter().cloned().collect();
            format!("; it said: {}", last.join(" / "))
        }
        _ => String::new(),
    }
}

/// A free TCP port on the slot's address (loopback runs).
fn free_tcp_port(on: SocketAddr) -> std::io::Result<SocketAddr> {
    TcpListener::bind(SocketAddr::new(on.ip(), 0))?.local_addr()
}
