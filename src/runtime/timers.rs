//! Pending timers of the actors on one thread.

use crate::actor::Timer;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

/// Timers keyed by (actor slot, [`Timer`]): setting one that is pending
/// replaces it, cancelling forgets it. A binary heap orders deadlines;
/// replaced and cancelled entries are skipped lazily when they surface,
/// and the heap is rebuilt when such dead entries outnumber live ones, so
/// its size stays bounded by the number of live timers.
#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Duration, u64, usize, Timer)>>,
    live: HashMap<(usize, Timer), u64>,
    next_generation: u64,
}

impl TimerQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms `timer` of actor `slot` to fire at `deadline`.
    pub fn set(&mut self, slot: usize, timer: Timer, deadline: Duration) {
        self.next_generation += 1;
        let generation = self.next_generation;
        self.live.insert((slot, timer), generation);
        self.heap.push(Reverse((deadline, generation, slot, timer)));
        self.compact();
    }

    /// Disarms `timer` of actor `slot`.
    pub fn cancel(&mut self, slot: usize, timer: Timer) {
        self.live.remove(&(slot, timer));
        self.compact();
    }

    /// The earliest live deadline.
    pub fn next_deadline(&mut self) -> Option<Duration> {
        while let Some(Reverse((deadline, generation, slot, timer))) = self.heap.peek() {
            if self.live.get(&(*slot, *timer)) == Some(generation) {
                return Some(*deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns one timer due at or before `now`.
    pub fn pop_due(&mut self, now: Duration) -> Option<(usize, Timer)> {
        let deadline = self.next_deadline()?;
        if deadline > now {
            return None;
        }
        let Reverse((_, _, slot, timer)) = self.heap.pop()?;
        self.live.remove(&(slot, timer));
        Some((slot, timer))
    }

    /// Number of live timers.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no timer is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn compact(&mut self) {
        if self.heap.len() > 64 && self.heap.len() > 2 * self.live.len() {
            let live = &self.live;
            self.heap.retain(|Reverse((_, generation, slot, timer))| {
                live.get(&(*slot, *timer)) == Some(generation)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_in_order_and_honours_replace_and_cancel() {
        let mut q = TimerQueue::new();
        q.set(0, Timer(1), ms(30));
        q.set(1, Timer(1), ms(10));
        q.set(0, Timer(2), ms(20));
        q.set(0, Timer(1), ms(40)); // replaces the 30 ms firing
        q.cancel(0, Timer(2));
        assert_eq!(q.next_deadline(), Some(ms(10)));
        assert_eq!(q.pop_due(ms(5)), None);
        assert_eq!(q.pop_due(ms(100)), Some((1, Timer(1))));
        assert_eq!(q.pop_due(ms(35)), None, "the replaced 30 ms firing is gone");
        assert_eq!(q.pop_due(ms(40)), Some((0, Timer(1))));
        assert_eq!(q.pop_due(ms(1000)), None);
        assert!(q.is_empty());
    }

    #[test]
    fn heap_stays_bounded_under_constant_rearming() {
        let mut q = TimerQueue::new();
        for i in 0..100_000u64 {
            q.set((i % 10) as usize, Timer(0), ms(i));
        }
        assert_eq!(q.len(), 10);
        assert!(q.heap.len() <= 200, "heap grew to {}", q.heap.len());
    }
}
