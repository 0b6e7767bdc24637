//! One program of a run (a `replica` or `bench_client` daemon): started
//! where its slot says, commanded over its control connection, and stopped
//! (by pid if need be) when dropped.

use crate::control::{ControlClient, Tagged};
use crate::hosts::{Launch, Slot};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::mpsc::SyncSender;
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
}

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
                writeln!(input, "{token}")?;
                input.flush()?;
            }
            if let Some(stderr) = c.stderr.take() {
                let (tx, tag) = (reports.clone(), tag.to_string());
                std::thread::spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
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
        match ControlClient::connect(control, token, tag, patience, reports) {
            Ok(client) => Ok(Program {
                client,
                host: control.ip().to_string(),
                data: slot.data,
                child,
                stdin,
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

/// A free TCP port on the slot's address (loopback runs).
fn free_tcp_port(on: SocketAddr) -> std::io::Result<SocketAddr> {
    TcpListener::bind(SocketAddr::new(on.ip(), 0))?.local_addr()
}
