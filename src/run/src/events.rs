//! What a sweep tells whoever watches it: the dashboard, plain tagged lines
//! on stdout, or a test.

use crate::bench::Sample;
use std::time::Duration;

/// Something that happened in a sweep.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A program is up and its control connection authenticated.
    ProgramUp {
        /// "0", "1", ... for replicas, "C" for the client host.
        tag: String,
        /// Where it runs.
        host: String,
        /// "replica" or "clients".
        role: &'static str,
        /// Its process id, when this runner started it locally.
        pid: Option<u32>,
    },
    /// A program stopped or died.
    ProgramDown {
        /// Its tag.
        tag: String,
        /// Why.
        reason: String,
    },
    /// A log line from a program, or from the sweep itself (tag "run").
    Log {
        /// Who said it.
        tag: String,
        /// What.
        line: String,
    },
    /// About a second of one program's measurements.
    Sample(Sample),
    /// A run of the sweep begins.
    RunStarted {
        /// 0-based position in the sweep.
        index: usize,
        /// Runs in the sweep, including skipped ones.
        total: usize,
        /// Runs already done (skipped or finished).
        done: usize,
        /// What it runs, in a few words.
        label: String,
        /// Estimated time until the whole sweep ends.
        eta: Duration,
    },
    /// A run ended.
    RunFinished {
        /// Its position in the sweep.
        index: usize,
        /// Whether it produced a result.
        ok: bool,
        /// The result, or why it failed.
        line: String,
    },
    /// The sweep was paused (true) or resumed (false).
    Paused(bool),
    /// The sweep is over.
    SweepDone {
        /// Runs that failed.
        failed: usize,
        /// Whether the user stopped it before the end.
        interrupted: bool,
    },
}

/// Where events go.
pub type Sink = Box<dyn FnMut(Event) + Send>;

/// A sink printing every event as one tagged line on stdout (`[0] ...`,
/// `[C] ...`, `[run] ...`): what a sweep shows when stdout is not a
/// terminal.
pub fn plain() -> Sink {
    Box::new(|event| {
        if let Some(line) = plain_line(&event) {
            println!("{line}");
        }
    })
}

/// The tagged line for one event, if it deserves one.
pub fn plain_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::ProgramUp {
            tag,
            host,
            role,
            pid,
        } => {
            let pid = pid.map(|p| format!(" pid {p}")).unwrap_or_default();
            format!("[{tag}] {role} up on {host}{pid}")
        }
        Event::ProgramDown { tag, reason } => format!("[{tag}] down: {reason}"),
        Event::Log { tag, line } => format!("[{tag}] {line}"),
        Event::Sample(s) if s.tag == "C" => format!(
            "[C] {} ops/s p50 {} us p99 {} us cpu {}%",
            s.ops_per_s, s.p50_us, s.p99_us, s.cpu_pct
        ),
        Event::Sample(s) => format!(
            "[{}] {} ops/s cpu {}% {}",
            s.tag, s.ops_per_s, s.cpu_pct, s.state
        ),
        Event::RunStarted {
            index,
            total,
            done,
            label,
            eta,
        } => format!(
            "[run] {}/{total} {label} ({done} done, eta {})",
            index + 1,
            clock(*eta)
        ),
        Event::RunFinished { index, ok, line } => {
            let what = if *ok { "done" } else { "FAILED" };
            format!("[run] {} {what}: {line}", index + 1)
        }
        Event::Paused(true) => "[run] paused".into(),
        Event::Paused(false) => "[run] resumed".into(),
        Event::SweepDone {
            failed,
            interrupted,
        } => format!(
            "[run] sweep {}: {failed} failed",
            if *interrupted { "stopped" } else { "done" }
        ),
    })
}

/// `1h02m03s`, `2m03s` or `3s`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}
