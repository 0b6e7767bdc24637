//! The other processes of a loopback cluster: copies of the running
//! program, each told its process index, stopped by pid if they outlive
//! their use.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// `n` free loopback addresses (bound and released at once; a port may
/// in principle be taken again before the cluster binds it).
pub fn loopback_addresses(n: usize) -> io::Result<Vec<SocketAddr>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| l.local_addr()).collect()
}

/// Started copies of this program; killed (by pid) when dropped.
pub struct PeerProcesses {
    children: Vec<(usize, Child)>,
}

impl PeerProcesses {
    /// Starts this program once per index in `indices`, with the
    /// arguments `args(index)`.
    pub fn spawn(
        indices: impl IntoIterator<Item = usize>,
        args: impl Fn(usize) -> Vec<String>,
    ) -> io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut children = Vec::new();
        for i in indices {
            let child = Command::new(&exe).args(args(i)).spawn()?;
            children.push((i, child));
        }
        Ok(PeerProcesses { children })
    }

    /// Process ids, by index (tests kill one).
    pub fn pids(&self) -> Vec<(usize, u32)> {
        self.children.iter().map(|(i, c)| (*i, c.id())).collect()
    }

    /// Waits up to `timeout` for every copy to exit; an error names the
    /// ones that failed or did not exit.
    pub fn wait(mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut failures = Vec::new();
        for (i, child) in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => {
                        failures.push(format!("process {i} exited with {status}"));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Ok(None) => {
                        failures.push(format!("process {i} did not exit in {timeout:?}"));
                        break;
                    }
                    Err(e) => {
                        failures.push(format!("process {i}: {e}"));
                        break;
                    }
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

impl Drop for PeerProcesses {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// This process's peak resident memory in MiB (VmHWM), if Linux says.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
