//! A bounded single-producer single-consumer ring: the queue between two
//! workers of one process, and between a worker and the network thread.
//!
//! Why not a channel crate: each side caches the other's index and only
//! reloads it when its cached copy says full (producer) or empty
//! (consumer), so in steady flow the two cores share no cache line per
//! item. The fixed capacity is the flow control: a full ring makes the
//! producer wait instead of growing memory.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Keeps a hot atomic on its own cache line (two lines, for the adjacent
/// line prefetcher), so producer and consumer do not false-share.
#[repr(align(128))]
struct Padded<T>(T);

struct Shared<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// Next slot to read; written by the consumer only.
    head: Padded<AtomicUsize>,
    /// Next slot to write; written by the producer only.
    tail: Padded<AtomicUsize>,
    /// Set by a producer about to wait for space; the consumer clears it
    /// and wakes the producer's thread.
    producer_waiting: Padded<AtomicBool>,
    producer_alive: AtomicBool,
    consumer_alive: AtomicBool,
}

// The slots are only touched by the single producer (between head and
// tail, after its acquire of head) and the single consumer (after its
// acquire of tail): the usual SPSC hand-off.
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let head = *self.head.0.get_mut();
        let tail = *self.tail.0.get_mut();
        for i in head..tail {
            // Items pushed and never popped: drop them in place.
            unsafe { (*self.slots[i & self.mask].get()).assume_init_drop() };
        }
    }
}

/// The writing end.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    tail: usize,
    cached_head: usize,
}

/// The reading end.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    head: usize,
    cached_tail: usize,
}

/// A ring of at least `capacity` slots (rounded up to a power of two).
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity.max(2).next_power_of_two();
    let slots = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        slots,
        mask: capacity - 1,
        head: Padded(AtomicUsize::new(0)),
        tail: Padded(AtomicUsize::new(0)),
        producer_waiting: Padded(AtomicBool::new(false)),
        producer_alive: AtomicBool::new(true),
        consumer_alive: AtomicBool::new(true),
    });
    (
        Producer {
            shared: shared.clone(),
            tail: 0,
            cached_head: 0,
        },
        Consumer {
            shared,
            head: 0,
            cached_tail: 0,
        },
    )
}

impl<T> Producer<T> {
    /// Appends `item`, or hands it back if the ring is full.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.is_full() {
            return Err(item);
        }
        let slot = &self.shared.slots[self.tail & self.shared.mask];
        unsafe { (*slot.get()).write(item) };
        self.tail = self.tail.wrapping_add(1);
        self.shared.tail.0.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// True if a push would fail now.
    #[inline]
    pub fn is_full(&mut self) -> bool {
        if self.tail.wrapping_sub(self.cached_head) > self.shared.mask {
            self.cached_head = self.shared.head.0.load(Ordering::Acquire);
            return self.tail.wrapping_sub(self.cached_head) > self.shared.mask;
        }
        false
    }

    /// True if the consumer has taken everything pushed so far.
    pub fn is_drained(&mut self) -> bool {
        self.cached_head = self.shared.head.0.load(Ordering::Acquire);
        self.cached_head == self.tail
    }

    /// Announces that this producer is about to sleep until space frees
    /// up; the consumer's next pop clears it and reports it.
    pub fn set_waiting(&self) {
        self.shared.producer_waiting.0.store(true, Ordering::SeqCst);
    }

    /// Marks the producer gone before it is dropped (the consumer then
    /// knows no more items come once the ring is empty).
    pub fn close(&self) {
        self.shared.producer_alive.store(false, Ordering::Release);
    }

    /// False once the consumer has been dropped: nobody will read.
    pub fn consumer_alive(&self) -> bool {
        self.shared.consumer_alive.load(Ordering::Acquire)
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.shared.producer_alive.store(false, Ordering::Release);
    }
}

impl<T> Consumer<T> {
    /// Takes the oldest item, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.cached_tail {
            self.cached_tail = self.shared.tail.0.load(Ordering::Acquire);
            if self.head == self.cached_tail {
                return None;
            }
        }
        let slot = &self.shared.slots[self.head & self.shared.mask];
        let item = unsafe { (*slot.get()).assume_init_read() };
        self.head = self.head.wrapping_add(1);
        self.shared.head.0.store(self.head, Ordering::Release);
        Some(item)
    }

    /// True if a pop would return nothing now.
    #[inline]
    pub fn is_empty(&mut self) -> bool {
        if self.head == self.cached_tail {
            self.cached_tail = self.shared.tail.0.load(Ordering::Acquire);
        }
        self.head == self.cached_tail
    }

    /// True (once) if the producer waits for space: the caller wakes it.
    #[inline]
    pub fn take_producer_waiting(&self) -> bool {
        let flag = &self.shared.producer_waiting.0;
        flag.load(Ordering::Relaxed) && flag.swap(false, Ordering::AcqRel)
    }

    /// False once the producer has been dropped; items it pushed before
    /// are still popped first.
    pub fn producer_alive(&self) -> bool {
        self.shared.producer_alive.load(Ordering::Acquire)
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.shared.consumer_alive.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo_with_wraparound() {
        let (mut p, mut c) = ring::<u32>(3); // rounds to 4
        for round in 0..10u32 {
            for i in 0..4 {
                p.push(round * 10 + i).unwrap();
            }
            assert_eq!(p.push(99), Err(99), "a full ring refuses");
            for i in 0..4 {
                assert_eq!(c.pop(), Some(round * 10 + i));
            }
            assert_eq!(c.pop(), None);
        }
    }

    #[test]
    fn unpopped_items_are_dropped_with_the_ring() {
        let item = Arc::new(());
        let (mut p, c) = ring(8);
        for _ in 0..5 {
            p.push(item.clone()).unwrap();
        }
        assert!(c.producer_alive());
        drop(p);
        assert!(!c.producer_alive());
        drop(c);
        assert_eq!(Arc::strong_count(&item), 1);
    }

    #[test]
    fn two_threads_keep_order_under_load() {
        let (mut p, mut c) = ring::<u64>(64);
        const N: u64 = 1_000_000;
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                match p.push(i) {
                    Ok(()) => i += 1,
                    Err(_) => std::hint::spin_loop(),
                }
            }
        });
        let mut next = 0;
        while next < N {
            if let Some(v) = c.pop() {
                assert_eq!(v, next);
                next += 1;
            } else if !c.producer_alive() && c.is_empty() {
                panic!("producer gone at {next}");
            }
        }
        t.join().unwrap();
        assert!(c.pop().is_none());
    }
}
