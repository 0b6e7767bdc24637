//! Where the programs of a sweep run: everything on loopback by default, or
//! on the machines a hosts file (or the sweep code) lists.
//!
//! A hosts file has one host per line, `#` starts a comment:
//!
//! ```text
//! # role     address     how to start programs there
//! replicas   10.0.0.2    ssh alice@node2
//! replicas   10.0.0.3    ssh alice@node3
//! clients    10.0.0.4    ssh alice@node4
//! ```
//!
//! Replicas go round-robin over the `replicas` hosts, the client host on the
//! first `clients` host. The k-th replica on a host listens for control on
//! port 7000 + 2k and for data on 7001 + 2k; the client host on 7100. The
//! last column is `local`, `netns NAME` (a network namespace on this
//! machine, see `scripts/netns.sh`), `ssh [USER@]HOST` (binaries copied by
//! `scripts/deploy.sh`), or `running` (started by hand with the sweep's
//! token in TROUPE_TOKEN, which the sweep then reads too).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

/// First control port of replicas on a listed host.
pub const REPLICA_PORT: u16 = 7000;
/// Control port of the client host on a listed host.
pub const CLIENT_PORT: u16 = 7100;

/// How a program gets started on its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// A child process of this runner.
    Local,
    /// A child process inside the named network namespace.
    Netns(String),
    /// Over ssh to `[user@]host`, binaries in `$TROUPE_REMOTE_DIR`
    /// (default `troupe/bin` under the remote home).
    Ssh(String),
    /// Already running: the runner only connects.
    Running,
}

/// What a host is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostRole {
    /// Runs replicas.
    Replicas,
    /// Runs the client host.
    Clients,
}

/// One machine of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// What runs there.
    pub role: HostRole,
    /// Its address: programs bind here, peers reach it here.
    pub addr: IpAddr,
    /// How its programs are started.
    pub launch: Launch,
}

/// Where one program of a run lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// How to start it.
    pub launch: Launch,
    /// Its control address.
    pub control: SocketAddr,
    /// Its data address (replicas), `None` when any free loopback port
    /// will do, picked afresh for every run.
    pub data: Option<SocketAddr>,
}

/// The hosts of a sweep. Empty means loopback, ports chosen freely.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosts {
    /// The listed hosts, in file order.
    pub hosts: Vec<Host>,
}

impl Hosts {
    /// Everything on loopback (the default).
    pub fn loopback() -> Self {
        Hosts::default()
    }

    /// Reads a hosts file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read hosts file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the text of a hosts file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut hosts = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
            let words: Vec<&str> = line.split_whitespace().collect();
            let role = match words[0] {
                "replicas" | "replica" => HostRole::Replicas,
                "clients" | "client" => HostRole::Clients,
                _ => return Err(bad("role must be replicas or clients")),
            };
            let addr: IpAddr = words
                .get(1)
                .ok_or_else(|| bad("missing address"))?
                .parse()
                .map_err(|_| bad("not an IP address"))?;
            let launch = match (words.get(2).copied(), words.get(3)) {
                (None | Some("local"), None) => Launch::Local,
                (Some("netns"), Some(name)) => Launch::Netns(name.to_string()),
                (Some("ssh"), Some(target)) => Launch::Ssh(target.to_string()),
                (Some("running"), None) => Launch::Running,
                _ => return Err(bad("start with local, netns NAME, ssh HOST or running")),
            };
            if words.len() > 4 {
                return Err(bad("too many words"));
            }
            hosts.push(Host { role, addr, launch });
        }
        let hosts = Hosts { hosts };
        if !hosts.hosts.is_empty() {
            if hosts.of(HostRole::Replicas).next().is_none() {
                return Err("no replicas host listed".into());
            }
            if hosts.of(HostRole::Clients).next().is_none() {
                return Err("no clients host listed".into());
            }
        }
        Ok(hosts)
    }

    /// Whether everything runs on loopback with free ports.
    pub fn is_loopback(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Whether some program is started by hand, so the token comes from
    /// the environment rather than being fresh.
    pub fn needs_given_token(&self) -> bool {
        self.hosts.iter().any(|h| h.launch == Launch::Running)
    }

    fn of(&self, role: HostRole) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.role == role)
    }

    /// Where replica `id` runs.
    pub fn replica(&self, id: usize) -> Slot {
        let hosts: Vec<&Host> = self.of(HostRole::Replicas).collect();
        if hosts.is_empty() {
            return loopback_slot();
        }
        let host = hosts[id % hosts.len()];
        let k = (id / hosts.len()) as u16;
        let control = SocketAddr::new(host.addr, REPLICA_PORT + 2 * k);
        Slot {
            launch: host.launch.clone(),
            control,
            data: Some(SocketAddr::new(host.addr, control.port() + 1)),
        }
    }

    /// Where the client host runs.
    pub fn clients(&self) -> Slot {
        match self.of(HostRole::Clients).next() {
            None => loopback_slot(),
            Some(host) => Slot {
                launch: host.launch.clone(),
                control: SocketAddr::new(host.addr, CLIENT_PORT),
                data: None,
            },
        }
    }

    /// The address client sockets bind to.
    pub fn client_bind(&self) -> IpAddr {
        self.of(HostRole::Clients)
            .next()
            .map(|h| h.addr)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }
}

/// A loopback slot; the control port is chosen when the program starts.
fn loopback_slot() -> Slot {
    Slot {
        launch: Launch::Local,
        control: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        data: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_file_places_replicas_round_robin_and_clients_apart() {
        let hosts = Hosts::parse(
            "# comment\n\
             replicas 10.1.0.1 netns h1\n\
             replicas 10.1.0.2 ssh me@node2   # trailing comment\n\
             clients  10.1.0.3\n",
        )
        .unwrap();
        assert_eq!(hosts.replica(0).control, "10.1.0.1:7000".parse().unwrap());
        assert_eq!(hosts.replica(0).launch, Launch::Netns("h1".into()));
        assert_eq!(
            hosts.replica(1).data,
            Some("10.1.0.2:7001".parse().unwrap())
        );
        assert_eq!(hosts.replica(1).launch, Launch::Ssh("me@node2".into()));
        assert_eq!(hosts.replica(2).control, "10.1.0.1:7002".parse().unwrap());
        assert_eq!(hosts.clients().control, "10.1.0.3:7100".parse().unwrap());
        assert_eq!(hosts.clients().launch, Launch::Local);
        assert_eq!(hosts.client_bind(), "10.1.0.3".parse::<IpAddr>().unwrap());
        assert!(!hosts.needs_given_token());
    }

    #[test]
    fn bad_hosts_files_say_which_line_is_wrong() {
        for (text, says) in [
            ("replicas nowhere", "line 1: not an IP address"),
            ("replicas 10.0.0.1\nservers 10.0.0.2", "line 2: role"),
            ("replicas 10.0.0.1 telnet x", "line 1: start with"),
            ("replicas 10.0.0.1", "no clients host"),
        ] {
            let err = Hosts::parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        assert!(Hosts::parse("").unwrap().is_loopback());
    }
}
