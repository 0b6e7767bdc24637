//! Where actor ids live on the network.

use crate::actor::Addr;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Maps [`Addr`]s to socket addresses.
///
/// Nodes and groups are fixed by the run's configuration. Clients are
/// learned from the source of their (decoded, and where the protocol
/// authenticates, verified) datagrams; that table is bounded so a flood of
/// fake client ids cannot grow it without end.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    nodes: Vec<SocketAddr>,
    groups: HashMap<u16, Vec<Addr>>,
    clients: HashMap<u64, SocketAddr>,
    client_hosts: Vec<(u64, u64, SocketAddr)>,
    max_clients: usize,
}

/// Default bound on learned client addresses.
pub const MAX_LEARNED_CLIENTS: usize = 1 << 20;

impl Directory {
    /// A directory of `nodes` (node `i` at `nodes[i]`), where group 0 is
    /// every node.
    pub fn new(nodes: Vec<SocketAddr>) -> Self {
        let all = (0..nodes.len() as u16).map(Addr::Node).collect();
        let mut groups = HashMap::new();
        groups.insert(0, all);
        Directory {
            nodes,
            groups,
            clients: HashMap::new(),
            client_hosts: Vec::new(),
            max_clients: MAX_LEARNED_CLIENTS,
        }
    }

    /// Defines (or replaces) group `id`.
    pub fn set_group(&mut self, id: u16, members: Vec<Addr>) {
        self.groups.insert(id, members);
    }

    /// Declares that clients `first .. first + count` live at `at`.
    pub fn add_client_range(&mut self, first: u64, count: u64, at: SocketAddr) {
        self.client_hosts.push((first, first + count, at));
    }

    /// Remembers where client `id` sent from. Returns false when the table
    /// is full and `id` is new (the reply then has nowhere to go; counted
    /// by the caller).
    pub fn learn_client(&mut self, id: u64, at: SocketAddr) -> bool {
        if let Some(known) = self.clients.get_mut(&id) {
            *known = at;
            return true;
        }
        if self.clients.len() >= self.max_clients {
            return false;
        }
        self.clients.insert(id, at);
        true
    }

    /// The socket address of a node or client, if known.
    pub fn lookup(&self, addr: Addr) -> Option<SocketAddr> {
        match addr {
            Addr::Node(n) => self.nodes.get(n as usize).copied(),
            Addr::Client(c) => self.clients.get(&c).copied().or_else(|| {
                self.client_hosts
                    .iter()
                    .find(|(lo, hi, _)| (*lo..*hi).contains(&c))
                    .map(|h| h.2)
            }),
            Addr::Group(_) => None,
        }
    }

    /// The members of a group (empty when unknown).
    pub fn group(&self, id: u16) -> &[Addr] {
        self.groups.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Sets the bound on learned clients (tests use a small one).
    pub fn set_max_clients(&mut self, max: usize) {
        self.max_clients = max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_clients_are_bounded() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut d = Directory::new(vec![a]);
        d.set_max_clients(2);
        assert!(d.learn_client(1, a));
        assert!(d.learn_client(2, a));
        assert!(!d.learn_client(3, a));
        assert!(d.learn_client(1, b), "a known client may move");
        assert_eq!(d.lookup(Addr::Client(1)), Some(b));
        assert_eq!(d.lookup(Addr::Client(3)), None);
        assert_eq!(d.lookup(Addr::Node(0)), Some(a));
        assert_eq!(d.group(0), &[Addr::Node(0)]);
        d.add_client_range(100, 10, b);
        assert_eq!(d.lookup(Addr::Client(105)), Some(b));
    }
}
