//! At-most-once execution: remember each client's latest request and its
//! reply.

use std::collections::HashMap;

/// What to do with a request `(client, seq)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<'a, R> {
    /// Never seen: execute it.
    Execute,
    /// The latest request, already executed: send this cached reply again.
    Resend(&'a R),
    /// The latest request, accepted but not executed yet (in the pipeline
    /// of a replicated protocol): wait.
    InProgress,
    /// Older than the latest: the client has moved on, drop it.
    Stale,
    /// A new client while the table is full: refuse (counted).
    Full,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Entry<R> {
    seq: u64,
    reply: Option<R>,
}

/// Each client's latest request number and reply. Clients keep one
/// request outstanding, so one entry per client is enough; the table is
/// bounded by `capacity` clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTable<R> {
    entries: HashMap<u64, Entry<R>>,
    capacity: usize,
}

/// Default bound on clients remembered.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

impl<R> Default for ClientTable<R> {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl<R> ClientTable<R> {
    /// A table for at most `capacity` clients.
    pub fn with_capacity(capacity: usize) -> Self {
        ClientTable {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// Classifies request `seq` of `client`.
    pub fn lookup(&self, client: u64, seq: u64) -> Lookup<'_, R> {
        match self.entries.get(&client) {
            None if self.entries.len() >= self.capacity => Lookup::Full,
            None => Lookup::Execute,
            Some(e) if seq > e.seq => Lookup::Execute,
            Some(e) if seq < e.seq => Lookup::Stale,
            Some(Entry { reply: Some(r), .. }) => Lookup::Resend(r),
            Some(Entry { reply: None, .. }) => Lookup::InProgress,
        }
    }

    /// Marks `(client, seq)` as accepted and not yet executed.
    pub fn start(&mut self, client: u64, seq: u64) {
        self.entries.insert(client, Entry { seq, reply: None });
    }

    /// Records the reply to `(client, seq)`. An older `seq` than the one
    /// recorded is ignored: the table never moves backwards.
    pub fn finish(&mut self, client: u64, seq: u64, reply: R) {
        match self.entries.get(&client) {
            Some(e) if e.seq > seq => {}
            _ => {
                self.entries.insert(
                    client,
                    Entry {
                        seq,
                        reply: Some(reply),
                    },
                );
            }
        }
    }

    /// Latest request number of `client` that was executed, if any.
    pub fn executed_seq(&self, client: u64) -> Option<u64> {
        self.entries
            .get(&client)
            .filter(|e| e.reply.is_some())
            .map(|e| e.seq)
    }

    /// Number of clients remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<R: Clone> ClientTable<R> {
    /// Every entry, sorted by client (for snapshots and state transfer).
    pub fn entries(&self) -> Vec<(u64, u64, Option<R>)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .map(|(c, e)| (*c, e.seq, e.reply.clone()))
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }

    /// Rebuilds a table from [`ClientTable::entries`].
    pub fn from_entries(capacity: usize, entries: Vec<(u64, u64, Option<R>)>) -> Self {
        ClientTable {
            entries: entries
                .into_iter()
                .map(|(c, seq, reply)| (c, Entry { seq, reply }))
                .collect(),
            capacity,
        }
    }
}

impl<R: std::hash::Hash> std::hash::Hash for ClientTable<R> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // HashMap has no order; hash the sorted entries.
        let mut v: Vec<_> = self.entries.iter().collect();
        v.sort_by_key(|(c, _)| **c);
        v.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_once_and_bounded() {
        let mut t = ClientTable::<&str>::with_capacity(2);
        assert_eq!(t.lookup(1, 1), Lookup::Execute);
        t.start(1, 1);
        assert_eq!(t.lookup(1, 1), Lookup::InProgress);
        t.finish(1, 1, "r1");
        assert_eq!(t.lookup(1, 1), Lookup::Resend(&"r1"));
        assert_eq!(t.lookup(1, 0), Lookup::Stale);
        assert_eq!(t.lookup(1, 2), Lookup::Execute);
        t.finish(1, 2, "r2");
        t.finish(1, 1, "late");
        assert_eq!(
            t.lookup(1, 2),
            Lookup::Resend(&"r2"),
            "never moves backwards"
        );
        assert_eq!(t.executed_seq(1), Some(2));
        t.finish(2, 1, "x");
        assert_eq!(t.lookup(3, 1), Lookup::Full);
        assert_eq!(
            t.lookup(2, 2),
            Lookup::Execute,
            "known clients still served"
        );
        let copy = ClientTable::from_entries(2, t.entries());
        assert_eq!(copy, t);
    }
}
