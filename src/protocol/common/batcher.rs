//! Adaptive batching at a leader: requests queue while the pipeline is
//! full and leave as one batch as soon as it has room.

use std::collections::{BTreeMap, VecDeque};

/// Requests waiting to be ordered, at most one per client (clients keep
/// one request outstanding), bounded by `capacity`. A batch closes when
/// it is full or when the pipeline has room, whichever comes first: under
/// light load every request goes out alone at once, under heavy load
/// batches grow to the maximum by themselves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Batcher<T> {
    queue: VecDeque<(u64, u64, T)>,
    /// Latest sequence number queued or in flight, per client.
    known: BTreeMap<u64, u64>,
    capacity: usize,
    max_batch: usize,
}

impl<T> Batcher<T> {
    /// Batches of at most `max_batch`, at most `capacity` waiting.
    pub fn new(max_batch: usize, capacity: usize) -> Self {
        Batcher {
            queue: VecDeque::new(),
            known: BTreeMap::new(),
            capacity,
            max_batch: max_batch.max(1),
        }
    }

    /// Queues request `seq` of `client`; returns false when it is already
    /// queued or in flight, older than one that is, or the queue is full.
    pub fn push(&mut self, client: u64, seq: u64, item: T) -> bool {
        if self.known.get(&client).is_some_and(|s| *s >= seq) || self.queue.len() >= self.capacity {
            return false;
        }
        self.known.insert(client, seq);
        self.queue.push_back((client, seq, item));
        true
    }

    /// The next batch if the pipeline has room and anything waits. Its
    /// requests stay known (in flight) until [`Batcher::done`].
    pub fn next(&mut self, pipeline_has_room: bool) -> Option<Vec<T>> {
        if !pipeline_has_room || self.queue.is_empty() {
            return None;
        }
        let n = self.queue.len().min(self.max_batch);
        Some(self.queue.drain(..n).map(|(_, _, item)| item).collect())
    }

    /// Request `seq` of `client` executed (or became stale): forget it
    /// once nothing newer is queued.
    pub fn done(&mut self, client: u64, seq: u64) {
        if self.known.get(&client).is_some_and(|s| *s <= seq)
            && !self.queue.iter().any(|(c, _, _)| *c == client)
        {
            self.known.remove(&client);
        }
    }

    /// Forgets what is in flight (its batches were abandoned, e.g. in a
    /// view change), keeping what is queued.
    pub fn forget_in_flight(&mut self) {
        let queued: BTreeMap<u64, u64> = self.queue.iter().map(|(c, s, _)| (*c, *s)).collect();
        self.known = queued;
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The largest batch.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_close_when_full_or_when_the_pipeline_has_room() {
        let mut b = Batcher::new(3, 5);
        assert!(b.push(1, 1, "a"));
        assert!(!b.push(1, 1, "a"), "queued already");
        assert_eq!(b.next(true), Some(vec!["a"]), "room: goes out alone");
        assert!(!b.push(1, 1, "a"), "in flight");
        for c in 2..7 {
            assert!(b.push(c, 1, "x"));
        }
        assert!(!b.push(9, 1, "y"), "bounded");
        assert_eq!(b.next(false), None, "pipeline full: keep waiting");
        assert_eq!(b.next(true).map(|v| v.len()), Some(3), "full batch");
        assert_eq!(b.len(), 2);
        b.done(1, 1);
        assert!(b.push(1, 2, "next"));
        b.forget_in_flight();
        assert!(b.push(2, 1, "re-proposed after a view change"));
        assert!(!b.push(1, 2, "still queued"));
    }
}
