//! Adaptive batching at a leader: requests queue while a batch is out and
//! leave together as soon as the pipeline has room.

use std::collections::{BTreeMap, VecDeque};

/// Requests waiting to be ordered, at most one per client (clients keep
/// one request outstanding), bounded by `capacity`. A batch closes when
/// it is full or when the pipeline has room, whichever comes first (see
/// [`Batcher::next`]).
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

    /// The next batch, given `in_flight` batches proposed and not yet
    /// done and room for `window`: a full batch whenever the window has
    /// room, a partial one only when nothing is in flight. Under light
    /// load each request goes out at once; as load grows, requests gather
    /// while one batch is out, so each batch (and each signature on it)
    /// carries more of them, and only full batches fill the pipeline.
    /// Its requests stay known (in flight) until [`Batcher::done`].
    pub fn next(&mut self, in_flight: u64, window: u64) -> Option<Vec<T>> {
        let full = self.queue.len() >= self.max_batch;
        let room = in_flight < window && (full || in_flight == 0);
        if !room || self.queue.is_empty() {
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
        assert_eq!(
            b.next(0, 4),
            Some(vec!["a"]),
            "idle pipeline: goes out alone"
        );
        assert!(!b.push(1, 1, "a"), "in flight");
        assert!(b.push(2, 1, "b"));
        assert_eq!(b.next(1, 4), None, "a batch is out: gather");
        for c in 3..7 {
            assert!(b.push(c, 1, "x"));
        }
        assert!(!b.push(9, 1, "y"), "bounded");
        assert_eq!(b.next(4, 4), None, "pipeline full: keep waiting");
        assert_eq!(b.next(1, 4).map(|v| v.len()), Some(3), "full batch");
        assert_eq!(b.next(2, 4), None, "the rest is not a full batch");
        assert_eq!(b.next(0, 4).map(|v| v.len()), Some(2), "pipeline drained");
        b.done(1, 1);
        assert!(b.push(1, 2, "next"));
        b.forget_in_flight();
        assert!(b.push(2, 1, "re-proposed after a view change"));
        assert!(!b.push(1, 2, "still queued"));
    }
}
