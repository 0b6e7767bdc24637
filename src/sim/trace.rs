//! The readable tail of a run: who sent what to whom, when.

use std::collections::VecDeque;
use std::fmt::Display;
use std::time::Duration;

/// Longest message text kept per line.
const MAX_LINE: usize = 160;

/// The last `capacity` events of a run as text. Only a failing seed's
/// re-run records one, so a passing run pays nothing for it.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    lines: VecDeque<String>,
    capacity: usize,
}

impl Trace {
    pub fn new(capacity: usize) -> Self {
        Trace {
            lines: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds a line for an event at `now`: `what` then an optional payload.
    pub fn push(&mut self, now: u64, what: std::fmt::Arguments<'_>, payload: Option<&dyn Display>) {
        if self.capacity == 0 {
            return;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        let at = Duration::from_nanos(now).as_secs_f64() * 1e3;
        let mut line = format!("{at:>11.6}ms  {what}");
        if let Some(p) = payload {
            line.push_str(&format!("  {p}"));
        }
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" ...");
        }
        self.lines.push_back(line);
    }

    pub fn into_lines(self) -> Vec<String> {
        self.lines.into()
    }
}
