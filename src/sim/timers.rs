//! One actor's timers in the simulator.

use crate::actor::Timer;

/// One timer. At most one queue event per timer is live (`queued`):
/// re-arming a timer later than its queued event (a client that resends
/// after 5 ms, answered in 0.3 ms, then sends again) queues nothing; the
/// event, when it comes, moves itself to the deadline. This keeps
/// cancelled timers from piling up in the event heap.
#[derive(Clone, Copy, Debug)]
struct Entry {
    timer: Timer,
    armed: bool,
    deadline: u64,
    /// Generation of this timer's event in the queue, if any.
    queued: Option<u64>,
    /// When that event comes.
    queued_at: u64,
}

/// What a timer event that came means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Came {
    /// Nothing: cancelled, superseded, or forgotten in a crash.
    Stale,
    /// Re-armed later since it was queued: queue it again for this time.
    Later(u64),
    /// The timer fires now.
    Fire,
}

/// The timers of one actor (few, so a vector).
#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    entries: Vec<Entry>,
}

impl Timers {
    /// Arms `timer` for `deadline`; true when the caller must queue an
    /// event for it (then tell [`Timers::queued`]).
    pub fn set(&mut self, timer: Timer, deadline: u64) -> bool {
        let entry = match self.entries.iter_mut().position(|e| e.timer == timer) {
            Some(i) => &mut self.entries[i],
            None => {
                self.entries.push(Entry {
                    timer,
                    armed: false,
                    deadline,
                    queued: None,
                    queued_at: 0,
                });
                let last = self.entries.len() - 1;
                &mut self.entries[last]
            }
        };
        entry.armed = true;
        entry.deadline = deadline;
        // An event queued no later than the deadline will follow it when
        // it comes; otherwise a new one supersedes it.
        entry.queued.is_none() || entry.queued_at > deadline
    }

    /// Records that an event of `generation` was queued for `timer` at `at`.
    pub fn queued(&mut self, timer: Timer, generation: u64, at: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.timer == timer) {
            e.queued = Some(generation);
            e.queued_at = at;
        }
    }

    /// Disarms `timer`.
    pub fn cancel(&mut self, timer: Timer) {
        if let Some(i) = self.entries.iter().position(|e| e.timer == timer) {
            if self.entries[i].queued.is_some() {
                self.entries[i].armed = false; // its event finds it disarmed
            } else {
                self.entries.swap_remove(i);
            }
        }
    }

    /// The event of `generation` for `timer` came at `now`.
    pub fn came(&mut self, timer: Timer, generation: u64, now: u64) -> Came {
        let Some(i) = self.entries.iter().position(|e| e.timer == timer) else {
            return Came::Stale;
        };
        let e = self.entries[i];
        if e.queued != Some(generation) {
            return Came::Stale;
        }
        if e.armed && e.deadline > now {
            return Came::Later(e.deadline);
        }
        self.entries.swap_remove(i);
        if e.armed {
            Came::Fire
        } else {
            Came::Stale
        }
    }

    /// Forgets every timer (a crash).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rearming_later_follows_the_queued_event_and_cancel_wins() {
        let mut t = Timers::default();
        let x = Timer(1);
        assert!(t.set(x, 100));
        t.queued(x, 1, 100);
        assert!(!t.set(x, 150), "later: the queued event follows");
        assert_eq!(t.came(x, 1, 100), Came::Later(150));
        t.queued(x, 2, 150);
        assert!(t.set(x, 120), "earlier: a new event supersedes");
        t.queued(x, 3, 120);
        assert_eq!(t.came(x, 2, 150), Came::Stale);
        assert_eq!(t.came(x, 3, 120), Came::Fire);
        assert_eq!(t.came(x, 3, 120), Came::Stale, "fires once");
        assert!(t.set(x, 200));
        t.queued(x, 4, 200);
        t.cancel(x);
        assert_eq!(t.came(x, 4, 200), Came::Stale);
        assert!(t.entries.is_empty());
    }
}
