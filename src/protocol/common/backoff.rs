//! Client resend timing.

use std::time::Duration;

/// Resend delays that double on each resend of the same request, up to a
/// cap, and start over when the request completes. Without the doubling,
/// thousands of clients behind a briefly overloaded service all resend at
/// the same rate they gave up, and the duplicates keep it overloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backoff {
    base: Duration,
    current: Duration,
}

/// The longest delay between two resends.
pub const MAX_RESEND_DELAY: Duration = Duration::from_secs(2);

impl Backoff {
    /// Delays starting at `base`.
    pub fn new(base: Duration) -> Self {
        Backoff {
            base,
            current: base,
        }
    }

    /// The delay before the first send's timeout.
    pub fn first(&mut self) -> Duration {
        self.current = self.base;
        self.current
    }

    /// The delay after one more resend.
    pub fn after_resend(&mut self) -> Duration {
        self.current = (self.current * 2).min(MAX_RESEND_DELAY.max(self.base));
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_restarts() {
        let mut b = Backoff::new(Duration::from_millis(300));
        assert_eq!(b.first(), Duration::from_millis(300));
        assert_eq!(b.after_resend(), Duration::from_millis(600));
        assert_eq!(b.after_resend(), Duration::from_millis(1200));
        assert_eq!(b.after_resend(), MAX_RESEND_DELAY);
        assert_eq!(b.after_resend(), MAX_RESEND_DELAY);
        assert_eq!(b.first(), Duration::from_millis(300));
    }
}
