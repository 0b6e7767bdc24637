//! A sweep: a list of [`Bench`]es run one after another on one cluster,
//! each result written as it finishes, runs already in the CSV skipped,
//! watched on the dashboard (or as plain tagged lines), plotted at the end.

use crate::bench::{Bench, Fault};
use crate::cluster::{program_dir, Cluster, RunError};
use crate::events::{plain, Event, Sink};
use crate::hosts::Hosts;
use crate::results::{append_row, json_path, key, load_rows, write_json, Row, RunRecord};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a sweep did.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Runs that finished now.
    pub finished: usize,
    /// Runs skipped because the CSV already had them.
    pub skipped: usize,
    /// Runs that failed (recorded, and the sweep went on).
    pub failed: usize,
    /// Whether q or Ctrl-C ended the sweep early.
    pub interrupted: bool,
    /// The rows this sweep wrote, in order.
    pub rows: Vec<Row>,
}

/// A sweep's settings; [`Sweep::run`] runs a plan with them.
pub struct Sweep {
    csv: PathBuf,
    svg: Option<PathBuf>,
    hosts: Hosts,
    bin_dir: Option<PathBuf>,
    fresh: bool,
    sink: Option<Sink>,
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
}

impl Sweep {
    /// A sweep writing its rows to `csv`, one JSON per run in the folder of
    /// the same name, and the plot to the same name with `.svg`:
    /// `results/default.csv`, `results/default/`, `results/default.svg`.
    pub fn new(csv: impl AsRef<Path>) -> Self {
        let csv = csv.as_ref().to_path_buf();
        Sweep {
            svg: Some(csv.with_extension("svg")),
            csv,
            hosts: Hosts::loopback(),
            bin_dir: None,
            fresh: false,
            sink: None,
            stop: Arc::new(AtomicBool::new(false)),
            pause: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs the programs on these hosts instead of loopback.
    pub fn hosts(mut self, hosts: Hosts) -> Self {
        self.hosts = hosts;
        self
    }

    /// Takes the programs from `dir` (default: built next to this binary).
    pub fn programs(mut self, dir: &Path) -> Self {
        self.bin_dir = Some(dir.to_path_buf());
        self
    }

    /// Forgets earlier results instead of resuming.
    pub fn fresh(mut self, fresh: bool) -> Self {
        self.fresh = fresh;
        self
    }

    /// Sends events to `sink` instead of the dashboard or stdout (and
    /// leaves Ctrl-C alone).
    pub fn sink(mut self, sink: Sink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The flag that stops the sweep (what q and Ctrl-C raise).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The flag that pauses the sweep between runs (what p toggles).
    pub fn pause_flag(&self) -> Arc<AtomicBool> {
        self.pause.clone()
    }

    /// Runs every bench of `plan` that the CSV does not have yet. Every
    /// program is stopped when this returns, however it returns.
    pub fn run(mut self, plan: Vec<Bench>) -> Result<Outcome, String> {
        let bin_dir = match self.bin_dir.take() {
            Some(d) => d,
            None => program_dir().map_err(|e| format!("cannot build the programs: {e}"))?,
        };
        let mut ui = None;
        let sink = match self.sink.take() {
            Some(sink) => sink,
            None => {
                catch_ctrl_c(&self.stop);
                if std::io::stdout().is_terminal() {
                    let (sink, handle) =
                        crate::dashboard::tty::spawn(self.stop.clone(), self.pause.clone())
                            .map_err(|e| format!("cannot start the dashboard: {e}"))?;
                    ui = Some(handle);
                    sink
                } else {
                    plain()
                }
            }
        };
        let outcome = self.run_with(&bin_dir, plan, sink);
        if let Some(ui) = ui {
            let _ = ui.join();
        }
        outcome
    }

    fn run_with(
        &mut self,
        bin_dir: &Path,
        plan: Vec<Bench>,
        sink: Sink,
    ) -> Result<Outcome, String> {
        let mut cluster = Cluster::new(bin_dir, self.hosts.clone()).map_err(|e| e.to_string())?;
        cluster.set_sink(sink);
        cluster.set_stop_flag(self.stop.clone());
        let protocols = Cluster::protocols(bin_dir)
            .map_err(|e| format!("cannot ask the programs for protocols: {e}"))?;
        let mut plan = plan;
        for bench in &mut plan {
            if bench.replicas == 0 {
                bench.replicas = protocols
                    .iter()
                    .find(|(p, _)| *p == bench.protocol)
                    .map(|(_, n)| *n)
                    .ok_or_else(|| format!("unknown protocol {:?}", bench.protocol))?;
            }
        }
        if self.fresh {
            let _ = std::fs::remove_file(&self.csv);
            let _ = std::fs::remove_dir_all(self.csv.with_extension(""));
        }
        let have: HashSet<String> = load_rows(&self.csv)
            .map_err(|e| format!("cannot read {}: {e}", self.csv.display()))?
            .into_iter()
            .filter(Row::is_ok)
            .map(|r| r.key())
            .collect();
        let todo: Vec<bool> = plan.iter().map(|b| !have.contains(&key(b))).collect();
        let mut outcome = Outcome {
            finished: 0,
            skipped: todo.iter().filter(|t| !**t).count(),
            failed: 0,
            interrupted: false,
            rows: Vec::new(),
        };
        if outcome.skipped > 0 {
            cluster.emit(Event::Log {
                tag: "run".into(),
                line: format!(
                    "{} of {} runs already in {} (--fresh reruns them)",
                    outcome.skipped,
                    plan.len(),
                    self.csv.display()
                ),
            });
        }
        // Seconds runs took beyond their load (starting, settling,
        // writing), to estimate the time left.
        let mut overhead = Overhead::default();
        for (index, bench) in plan.iter().enumerate() {
            if !todo[index] {
                continue;
            }
            if self.wait_while_paused(&mut cluster) {
                outcome.interrupted = true;
                break;
            }
            cluster.emit(Event::RunStarted {
                index,
                total: plan.len(),
                done: outcome.skipped + outcome.finished + outcome.failed,
                label: label(bench),
                eta: overhead.eta(&plan[index..], &todo[index..]),
            });
            let started = Instant::now();
            let row = match cluster.run(bench) {
                Ok(result) => {
                    let record = RunRecord::of(&result).map_err(|e| e.to_string())?;
                    let json = json_path(&self.csv, &record.row.key());
                    write_json(&json, &record)
                        .map_err(|e| format!("cannot write {}: {e}", json.display()))?;
                    outcome.finished += 1;
                    record.row
                }
                Err(RunError::Stopped) => {
                    outcome.interrupted = true;
                    break;
                }
                Err(RunError::Failed(e)) => {
                    outcome.failed += 1;
                    Row::failed(bench, &e)
                }
            };
            append_row(&self.csv, &row)
                .map_err(|e| format!("cannot write {}: {e}", self.csv.display()))?;
            overhead.add(started.elapsed().as_secs_f64() - bench.duration_s);
            cluster.emit(Event::RunFinished {
                index,
                ok: row.is_ok(),
                line: summary(&row),
            });
            outcome.rows.push(row);
        }

        if let Some(svg) = &self.svg {
            let rows = load_rows(&self.csv).map_err(|e| e.to_string())?;
            if rows.iter().any(Row::is_ok) {
                crate::plot::write_svg(svg, &self.csv, &rows)?;
                cluster.emit(Event::Log {
                    tag: "run".into(),
                    line: format!("wrote {} and {}", self.csv.display(), svg.display()),
                });
            }
        }
        cluster.emit(Event::SweepDone {
            failed: outcome.failed,
            interrupted: outcome.interrupted,
        });
        Ok(outcome)
    }

    /// Waits while the pause flag is up; returns whether to stop.
    fn wait_while_paused(&self, cluster: &mut Cluster) -> bool {
        if self.pause.load(Ordering::SeqCst) {
            cluster.emit(Event::Paused(true));
            while self.pause.load(Ordering::SeqCst) && !self.stop.load(Ordering::SeqCst) {
                cluster.idle(Duration::from_millis(50));
            }
            cluster.emit(Event::Paused(false));
        }
        self.stop.load(Ordering::SeqCst)
    }
}

/// What runs cost beyond their load, on average so far.
#[derive(Default)]
struct Overhead {
    total_s: f64,
    runs: u32,
}

impl Overhead {
    fn add(&mut self, seconds: f64) {
        self.total_s += seconds.max(0.0);
        self.runs += 1;
    }

    /// Time left for the runs of `plan` still to do.
    fn eta(&self, plan: &[Bench], todo: &[bool]) -> Duration {
        // Before any run finished, guess a second each.
        let each = if self.runs == 0 {
            1.0
        } else {
            self.total_s / f64::from(self.runs)
        };
        let secs: f64 = plan
            .iter()
            .zip(todo)
            .filter(|(_, todo)| **todo)
            .map(|(b, _)| b.duration_s + each)
            .sum();
        Duration::from_secs_f64(secs)
    }
}

/// A run in a few words: `pbft replicas=4 clients=32`, plus whatever is
/// not the default.
pub fn label(b: &Bench) -> String {
    let mut s = format!(
        "{} replicas={} clients={}",
        b.protocol, b.replicas, b.clients
    );
    if b.batch > 1 {
        s.push_str(&format!(" batch={}", b.batch));
    }
    if b.fault != Fault::None {
        s.push_str(&format!(" fault={}", b.fault));
    }
    s.push_str(&format!(" {}s", b.duration_s));
    s
}

/// A finished row in one line.
pub fn summary(r: &Row) -> String {
    let mut what = format!(
        "{} replicas={} clients={}",
        r.protocol, r.replicas, r.clients
    );
    if r.batch > 1 {
        what.push_str(&format!(" batch={}", r.batch));
    }
    if r.fault != "none" {
        what.push_str(&format!(" fault={}", r.fault));
    }
    if !r.is_ok() {
        return format!("{what}: {}", r.failure);
    }
    format!(
        "{what}: {:.0} ops/s, p50 {} us, p99 {} us, p999 {} us, {} errors",
        r.ops_per_s, r.p50_us, r.p99_us, r.p999_us, r.errors
    )
}

/// The flag Ctrl-C (and SIGTERM) raise. The handler is installed once per
/// process; each sweep points it at its own flag.
fn catch_ctrl_c(stop: &Arc<AtomicBool>) {
    static CURRENT: Mutex<Option<Arc<AtomicBool>>> = Mutex::new(None);
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    if let Ok(mut current) = CURRENT.lock() {
        *current = Some(stop.clone());
    }
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if let Ok(current) = CURRENT.lock() {
                if let Some(flag) = current.as_ref() {
                    // A second Ctrl-C does not wait for the clean stop; the
                    // programs still exit, as their standard input closes.
                    if flag.swap(true, Ordering::SeqCst) {
                        std::process::exit(130);
                    }
                }
            }
        });
    });
}
