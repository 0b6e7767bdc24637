//! The control-plane server every program runs.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use troupe_message::control::{
    decode_frame, read_frame_bytes, write_frame, Command, Control, Hello, Report,
};

/// Environment variable that carries the run's shared token.
pub const TOKEN_ENV: &str = "TROUPE_TOKEN";

/// Which commands a program accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `replica`: runs `Role::Replica`.
    Replica,
    /// `bench_client`: runs `Role::Clients`.
    Clients,
}

/// Where a running command sends its reports. Clones share one
/// connection; a write error (the runner went away) stops the run.
#[derive(Clone)]
pub struct Reporter {
    stream: Arc<Mutex<TcpStream>>,
    /// Set when the run should end: Stop received, or the runner is gone.
    pub stop: Arc<AtomicBool>,
}

impl Reporter {
    /// Sends one report; on failure asks the run to stop.
    pub fn send(&self, report: &Report) {
        let ok = match self.stream.lock() {
            Ok(mut s) => write_frame(&mut *s, report).is_ok(),
            Err(_) => false,
        };
        if !ok {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    /// Sends a log line, also printed on this program's stderr.
    pub fn log(&self, line: impl Into<String>) {
        let line = line.into();
        eprintln!("{line}");
        self.send(&Report::Log(line));
    }
}

/// What runs a command: given the command and a reporter, runs to the end
/// and returns the final report (`Done` or `Error`).
pub type Runner = fn(&Command, &Reporter) -> Report;

/// Serves control connections on `listen`, one at a time, forever (until
/// a `Control::Exit`).
pub fn serve(listen: SocketAddr, token: &str, kind: Kind, runner: Runner) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    eprintln!(
        "listening for control connections on {}",
        listener.local_addr()?
    );
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        match session(stream, token, kind, runner) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => eprintln!("control connection ended: {e}"),
        }
    }
    Ok(())
}

/// One control connection. Returns whether the program should exit.
fn session(mut stream: TcpStream, token: &str, kind: Kind, runner: Runner) -> io::Result<bool> {
    stream.set_nodelay(true)?;
    // A peer that connects and says nothing must not hold the program.
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let hello: Hello = match read_frame_bytes(&mut stream).and_then(|b| decode_frame(&b)) {
        Ok(h) => h,
        Err(e) => {
            let _ = write_frame(
                &mut stream,
                &Report::Error(format!("expected a Hello frame: {e}")),
            );
            return Ok(false);
        }
    };
    if !constant_time_eq(hello.token.as_bytes(), token.as_bytes()) {
        eprintln!("refused a control peer with a wrong token");
        let _ = write_frame(&mut stream, &Report::Refused);
        return Ok(false);
    }
    write_frame(&mut stream, &Report::Ready)?;
    stream.set_read_timeout(None)?;

    let reporter = Reporter {
        stream: Arc::new(Mutex::new(stream.try_clone()?)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let mut running: Option<std::thread::JoinHandle<()>> = None;
    let finish = |running: &mut Option<std::thread::JoinHandle<()>>, reporter: &Reporter| {
        if let Some(run) = running.take() {
            reporter.stop.store(true, Ordering::SeqCst);
            let _ = run.join();
        }
    };
    loop {
        let body = match read_frame_bytes(&mut stream) {
            Ok(b) => b,
            Err(e) => {
                // The runner went away: stop whatever runs, wait for the next.
                finish(&mut running, &reporter);
                return if e.kind() == io::ErrorKind::UnexpectedEof {
                    Ok(false)
                } else {
                    Err(e)
                };
            }
        };
        let control: Control = match decode_frame(&body) {
            Ok(c) => c,
            Err(e) => {
                reporter.send(&Report::Error(e.to_string()));
                continue;
            }
        };
        match control {
            Control::Run(command) => {
                if running.as_ref().is_some_and(|r| !r.is_finished()) {
                    reporter.send(&Report::Error(
                        "a run is already in progress; send Stop first".into(),
                    ));
                    continue;
                }
                if let Err(e) = validate(&command, kind) {
                    reporter.send(&Report::Error(e));
                    continue;
                }
                finish(&mut running, &reporter);
                reporter.stop.store(false, Ordering::SeqCst);
                let r = reporter.clone();
                running = Some(std::thread::spawn(move || {
                    let done = runner(&command, &r);
                    r.send(&done);
                }));
            }
            Control::Stop => finish(&mut running, &reporter),
            Control::Exit => {
                finish(&mut running, &reporter);
                let _ = stream.flush();
                return Ok(true);
            }
        }
    }
}

/// Checks a command before running it, so a bad one gets a clear error.
pub fn validate(command: &Command, kind: Kind) -> Result<(), String> {
    use troupe_message::control::Role;
    if troupe::protocol::find(&command.protocol).is_none() {
        let known: Vec<_> = troupe::protocol::PROTOCOLS.iter().map(|p| p.name).collect();
        return Err(format!(
            "unknown protocol {:?}; known: {}",
            command.protocol,
            known.join(", ")
        ));
    }
    if command.replicas.is_empty() {
        return Err("the command lists no replicas".into());
    }
    match (&command.role, kind) {
        (Role::Replica { id }, Kind::Replica) if (*id as usize) < command.replicas.len() => Ok(()),
        (Role::Replica { id }, Kind::Replica) => Err(format!(
            "replica id {id} but only {} replicas",
            command.replicas.len()
        )),
        (Role::Clients { count, threads, .. }, Kind::Clients) if *count > 0 && *threads > 0 => {
            Ok(())
        }
        (Role::Clients { .. }, Kind::Clients) => {
            Err("a client role needs at least one client and one thread".into())
        }
        (role, kind) => Err(format!("this program ({kind:?}) cannot play {role:?}")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the token from the environment; refuses to start without one.
pub fn token_from_env() -> Result<String, String> {
    match std::env::var(TOKEN_ENV) {
        Ok(t) if !t.is_empty() => Ok(t),
        _ => Err(format!("set {TOKEN_ENV} to the run's shared token")),
    }
}

/// Reads the token from the first line of standard input, then watches
/// standard input in the background and exits the process when it closes
/// (the runner that started this program is gone).
pub fn token_from_stdin() -> Result<String, String> {
    use std::io::{BufRead, Read, Write};
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
    let token = line.trim().to_string();
    if token.is_empty() {
        return Err("standard input gave no token".into());
    }
    std::thread::spawn(|| {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        // Anything after the token is ignored; end of input means exit.
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        // Not eprintln!: with the runner gone, stderr may be a broken pipe,
        // and a panic here would leave the program running.
        let _ = writeln!(
            std::io::stderr(),
            "standard input closed (the runner is gone): exiting"
        );
        std::process::exit(0);
    });
    Ok(token)
}

/// Names of the protocols this build knows, one per line.
pub fn list_protocols() -> String {
    troupe::protocol::PROTOCOLS
        .iter()
        .map(|p| format!("{} {}\n", p.name, (p.replicas)(1)))
        .collect()
}

/// The command line both daemons share.
#[derive(clap::Parser)]
struct DaemonArgs {
    /// TCP address to accept control connections on (default: 127.0.0.1:7000
    /// for `replica`, 127.0.0.1:7100 for `bench_client`).
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Print the known protocols (name and replicas for f = 1) and exit.
    #[arg(long)]
    list_protocols: bool,
    /// Read the token from the first line of standard input instead of
    /// TROUPE_TOKEN, and exit when standard input closes. A runner that
    /// starts the program this way (locally, in a namespace, over ssh)
    /// keeps the token out of every process listing, and the program
    /// cannot outlive the runner, however the runner ends.
    #[arg(long)]
    token_stdin: bool,
}

/// The whole `main` of a daemon program: parse the command line, then
/// serve commands of `kind` with `runner` until killed; exits 1 with the
/// reason when it cannot start.
pub fn daemon_main(kind: Kind, runner: Runner) {
    use clap::{CommandFactory, FromArgMatches};
    let (name, about, default_port) = match kind {
        Kind::Replica => (
            "replica",
            "Runs troupe replicas as the control plane commands (token in TROUPE_TOKEN)",
            7000,
        ),
        Kind::Clients => (
            "bench_client",
            "Runs troupe closed-loop clients as the control plane commands (token in TROUPE_TOKEN)",
            7100,
        ),
    };
    let matches = DaemonArgs::command().name(name).about(about).get_matches();
    let args = match DaemonArgs::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    if args.list_protocols {
        print!("{}", list_protocols());
        return;
    }
    let control = args
        .control
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)));
    let token = if args.token_stdin {
        token_from_stdin()
    } else {
        token_from_env()
    };
    let result =
        token.and_then(|token| serve(control, &token, kind, runner).map_err(|e| e.to_string()));
    if let Err(e) = result {
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
}
