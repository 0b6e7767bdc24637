//! The one-terminal dashboard: every node's row, a live throughput chart,
//! sweep progress with ETA, and the tagged log lines of every node.
//!
//! [`Dashboard`] is the model (fed [`Event`]s), [`view::render`] draws it on
//! any ratatui backend (tests use `TestBackend`), and [`tty::spawn`] runs
//! it on the real terminal with the keys q (quit) and p (pause).

pub mod tty;
pub mod view;

use crate::events::{clock, plain_line, Event};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Log lines kept for the log pane.
const LOG_LINES: usize = 500;
/// Chart points kept (one a second: ten minutes).
const CHART_POINTS: usize = 600;

/// One node's row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeRow {
    /// "0", "1", ..., "C".
    pub tag: String,
    /// Where it runs.
    pub host: String,
    /// "replica" or "clients".
    pub role: String,
    /// up, down, or what it last reported doing.
    pub state: String,
    /// Last ops/s.
    pub ops_per_s: u64,
    /// Last median latency, microseconds (client host).
    pub p50_us: u64,
    /// Last 99th percentile, microseconds (client host).
    pub p99_us: u64,
    /// Last CPU use, percent of a core.
    pub cpu_pct: u64,
}

/// Where the sweep is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Runs done (finished, failed or skipped).
    pub done: usize,
    /// Runs in the sweep.
    pub total: usize,
    /// What runs now.
    pub current: String,
    /// Estimated time left when the current run started.
    pub eta: Duration,
    /// Failed runs so far.
    pub failed: usize,
}

/// Everything the dashboard shows.
pub struct Dashboard {
    /// Node rows by tag.
    pub nodes: BTreeMap<String, NodeRow>,
    /// Client throughput: (seconds since the dashboard started, kops/s).
    pub chart: VecDeque<(f64, f64)>,
    /// Sweep progress.
    pub progress: Progress,
    /// The newest tagged log lines, oldest first.
    pub logs: VecDeque<String>,
    /// Whether the sweep is paused.
    pub paused: bool,
    /// Set when the sweep is over.
    pub finished: Option<String>,
    started: Instant,
    run_started: Instant,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            nodes: BTreeMap::new(),
            chart: VecDeque::new(),
            progress: Progress::default(),
            logs: VecDeque::new(),
            paused: false,
            finished: None,
            started: Instant::now(),
            run_started: Instant::now(),
        }
    }
}

impl Dashboard {
    /// Takes one event in.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::ProgramUp {
                tag, host, role, ..
            } => {
                let row = self.row(tag);
                row.host = host.clone();
                row.role = role.to_string();
                row.state = "up".into();
            }
            Event::ProgramDown { tag, .. } => {
                let row = self.row(tag);
                row.state = "down".into();
                row.ops_per_s = 0;
            }
            Event::Sample(s) => {
                let row = self.row(&s.tag);
                row.ops_per_s = s.ops_per_s;
                row.p50_us = s.p50_us;
                row.p99_us = s.p99_us;
                row.cpu_pct = s.cpu_pct;
                row.state = if s.state.is_empty() {
                    "running".into()
                } else {
                    s.state.clone()
                };
                if s.tag == "C" {
                    let t = self.started.elapsed().as_secs_f64();
                    self.chart.push_back((t, s.ops_per_s as f64 / 1000.0));
                    while self.chart.len() > CHART_POINTS {
                        self.chart.pop_front();
                    }
                }
            }
            Event::RunStarted {
                total,
                done,
                label,
                eta,
                ..
            } => {
                self.progress.total = *total;
                self.progress.done = *done;
                self.progress.current = label.clone();
                self.progress.eta = *eta;
                self.run_started = Instant::now();
                // Until their first sample, nodes are idle in this run.
                for row in self.nodes.values_mut().filter(|r| r.state != "down") {
                    row.state = "idle".into();
                    row.ops_per_s = 0;
                }
            }
            Event::RunFinished { ok, .. } => {
                self.progress.done += 1;
                self.progress.failed += usize::from(!ok);
                self.progress.current.clear();
                self.progress.eta = self.progress.eta.saturating_sub(self.run_started.elapsed());
            }
            Event::Paused(p) => self.paused = *p,
            Event::SweepDone { .. } => {
                self.progress.current.clear();
                self.finished = plain_line(event);
            }
            Event::Log { .. } => {}
        }
        // Everything with a line goes to the log pane, except samples,
        // which the rows and the chart already show.
        if !matches!(event, Event::Sample(_)) {
            if let Some(line) = plain_line(event) {
                self.logs.push_back(line);
                while self.logs.len() > LOG_LINES {
                    self.logs.pop_front();
                }
            }
        }
    }

    fn row(&mut self, tag: &str) -> &mut NodeRow {
        self.nodes.entry(sort_key(tag)).or_insert_with(|| NodeRow {
            tag: tag.to_string(),
            ..NodeRow::default()
        })
    }

    /// The progress line: `run 3/10 · <label> · eta 1m20s`.
    pub fn progress_line(&self) -> String {
        let p = &self.progress;
        if let Some(done) = &self.finished {
            return done.clone();
        }
        if p.total == 0 {
            return "starting the programs...".into();
        }
        let mut line = if p.current.is_empty() {
            // Between runs (or paused after one).
            format!("{}/{} runs done · eta {}", p.done, p.total, clock(p.eta))
        } else {
            // Count down within the run so the ETA moves every second.
            let eta = p.eta.saturating_sub(self.run_started.elapsed());
            format!(
                "run {}/{} · {} · eta {}",
                (p.done + 1).min(p.total),
                p.total,
                p.current,
                clock(eta)
            )
        };
        if p.failed > 0 {
            line.push_str(&format!(" · {} failed", p.failed));
        }
        if self.paused {
            line.push_str(" · PAUSED: p resumes");
        }
        line
    }

    /// The fraction of the sweep done.
    pub fn ratio(&self) -> f64 {
        if self.progress.total == 0 {
            return 0.0;
        }
        (self.progress.done as f64 / self.progress.total as f64).clamp(0.0, 1.0)
    }
}

/// Replicas in numeric order, then the client host.
fn sort_key(tag: &str) -> String {
    match tag.parse::<u32>() {
        Ok(n) => format!("0{n:08}"),
        Err(_) => format!("1{tag}"),
    }
}
