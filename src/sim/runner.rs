//! Running seeds: one run and its checks, a batch of seeds, and what a
//! failing seed prints (schedule, trace tail, shrunk schedule).

use super::agreement::check_agreement;
use super::config::SimConfig;
use super::faults::Schedule;
use super::linearizability::check_linearizable_with;
use super::world::{End, Stats, World};
use super::Spec;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// The environment variable that makes every seeded simulation run just
/// that seed (to replay a failure under `cargo test`).
pub const SEED_VAR: &str = "TROUPE_SEED";

/// What one seeded run did and what the checkers said.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Network and handler counters.
    pub stats: Stats,
    /// Operations invoked and completed.
    pub ops: (usize, usize),
    /// Virtual time at the end.
    pub virtual_time: Duration,
    /// Everything the checkers objected to; empty when the run passed.
    pub violations: Vec<String>,
    /// The last events, when the run was traced.
    pub trace: Vec<String>,
    /// Wall time the simulation took (checks not included).
    pub elapsed: Duration,
}

impl RunReport {
    /// Whether any checker objected.
    pub fn failed(&self) -> bool {
        !self.violations.is_empty()
    }
}

/// Runs `seed` under `schedule` and checks it: liveness after healing,
/// linearizability, agreement. Traces the last `trace_lines` events.
pub fn run_one<P: Spec>(
    spec: &P,
    cfg: &SimConfig,
    seed: u64,
    schedule: &Schedule,
    trace_lines: usize,
) -> RunReport {
    let mut world = World::new(spec, cfg, seed, schedule, trace_lines);
    let started = Instant::now();
    let end = world.run();
    let elapsed = started.elapsed();
    let mut violations = std::mem::take(&mut world.violations);
    let waiting = |client: u64| match world.history.outstanding(client) {
        Some(op) => format!(
            "c{client}'s {:?} invoked at {:.3}ms",
            op.op,
            op.invoked_at.as_secs_f64() * 1e3
        ),
        None => format!("c{client}"),
    };
    let heal = world.heal_time().as_secs_f64() * 1e3;
    let now = world.now().as_secs_f64() * 1e3;
    match end {
        End::Done => {}
        End::Stuck { client } => violations.push(format!(
            "liveness: {} had not completed at {now:.3}ms; faults healed at {heal:.3}ms, bound {:?}",
            waiting(client),
            cfg.liveness_bound
        )),
        End::Deadlock {
            client: Some(client),
        } => violations.push(format!(
            "liveness: nothing left to happen at {now:.3}ms but {} never completed (faults healed at {heal:.3}ms)",
            waiting(client)
        )),
        End::Deadlock { client: None } => violations.push(format!(
            "liveness: nothing left to happen at {now:.3}ms but the protocol had not finished (faults healed at {heal:.3}ms)"
        )),
        End::Unfinished => violations.push(format!(
            "liveness: the protocol had not finished at {now:.3}ms; faults healed at {heal:.3}ms, bound {:?}",
            cfg.liveness_bound
        )),
        End::EventLimit => violations.push(format!(
            "event limit of {} reached at {now:.3}ms (a livelock?)",
            cfg.max_events
        )),
    }
    // The order the busiest honest replica executed operations in guides
    // the linearizability search (only its speed, never its verdict).
    let executions = world.honest_executions();
    let mut order: HashMap<u64, u64> = HashMap::new();
    if let Some((_, log)) = executions.iter().max_by_key(|(_, log)| log.len()) {
        for (i, e) in log.iter().enumerate() {
            order.entry(e.digest).or_insert(i as u64);
        }
    }
    let hint = |op: &super::history::Op| order.get(&op.digest).copied().unwrap_or(u64::MAX);
    if let Err(e) = check_linearizable_with(&world.history, hint) {
        violations.push(format!("linearizability: {e}"));
    }
    if let Err(e) = check_agreement(&executions, &world.history) {
        violations.push(format!("agreement: {e}"));
    }
    if let Err(e) = spec.invariant(&world.states) {
        violations.push(format!("invariant: {e}"));
    }
    if let Err(e) = spec.check_end(&world.states) {
        violations.push(format!("end check: {e}"));
    }
    RunReport {
        seed,
        stats: world.stats,
        ops: (world.history.ops.len(), world.history.completed().count()),
        virtual_time: world.now(),
        violations,
        trace: world
            .trace
            .take()
            .map(|t| t.into_lines())
            .unwrap_or_default(),
        elapsed,
    }
}

/// A seed that failed, with what it takes to understand it.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// Its fault schedule.
    pub schedule: Schedule,
    /// What the checkers said.
    pub violations: Vec<String>,
    /// The tail of its trace.
    pub trace: Vec<String>,
    /// The smallest schedule found that still fails, when shrinking ran.
    pub shrunk: Option<Schedule>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} FAILED", self.seed)?;
        for v in &self.violations {
            writeln!(f, "  {}", v.trim_end().replace('\n', "\n  "))?;
        }
        writeln!(f, "fault schedule:")?;
        write!(f, "{}", self.schedule)?;
        if !self.trace.is_empty() {
            writeln!(f, "last {} events:", self.trace.len())?;
            for line in &self.trace {
                writeln!(f, "  {line}")?;
            }
        }
        if let Some(shrunk) = &self.shrunk {
            writeln!(
                f,
                "smallest failing schedule ({} of {} faults):",
                shrunk.faults.len(),
                self.schedule.faults.len()
            )?;
            write!(f, "{shrunk}")?;
        }
        let test = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        writeln!(
            f,
            "replay: {SEED_VAR}={} cargo test --release{test}",
            self.seed
        )
    }
}

/// What a batch of seeds did.
#[derive(Clone, Debug, Default)]
pub struct SimOutcome {
    /// Seeds run.
    pub seeds: u64,
    /// The seeds that failed.
    pub failed: Vec<Failure>,
    /// Handler events over all seeds.
    pub events: u64,
    /// Wall time spent simulating (not checking, not investigating
    /// failures).
    pub elapsed: Duration,
    /// Fault kinds asked for that the protocol does not claim to survive,
    /// so none were injected (e.g. Byzantine nodes for a crash-tolerant
    /// protocol).
    pub not_injected: Vec<&'static str>,
}

impl SimOutcome {
    /// Simulated events per second of wall time.
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The one-line summary the `sim` program ends with.
    pub fn summary(&self, protocol: &str) -> String {
        format!(
            "protocol={protocol} seeds={} failed={} events={} events_per_s={:.0}",
            self.seeds,
            self.failed.len(),
            self.events,
            self.events_per_s()
        )
    }
}

/// The seeds a batch runs: `TROUPE_SEED` alone when it is set (`replay`
/// is its value).
fn seeds_to_run(cfg: &SimConfig, replay: Option<String>) -> Vec<u64> {
    match replay {
        Some(v) => match v.trim().parse() {
            Ok(seed) => vec![seed],
            Err(_) => panic!("{SEED_VAR}={v:?} is not a seed (a u64)"),
        },
        None => (cfg.first_seed..cfg.first_seed.saturating_add(cfg.seeds)).collect(),
    }
}

/// Runs every seed of `cfg` (or only `TROUPE_SEED`) and investigates the
/// failures: a traced re-run and, when `cfg.shrink`, the smallest
/// failing schedule.
pub fn simulate<P: Spec>(spec: &P, cfg: &SimConfig) -> SimOutcome {
    let mut outcome = SimOutcome::default();
    let tolerance = spec.tolerance();
    if cfg.faults.crash && tolerance.faulty == 0 {
        outcome.not_injected.push("crash");
    }
    if cfg.faults.byzantine && !(tolerance.byzantine && tolerance.faulty > 0) {
        outcome.not_injected.push("byzantine");
    }
    for seed in seeds_to_run(cfg, std::env::var(SEED_VAR).ok()) {
        let schedule = Schedule::generate(seed, cfg, spec.nodes(), cfg.clients, tolerance);
        let report = run_one(spec, cfg, seed, &schedule, 0);
        outcome.elapsed += report.elapsed;
        outcome.seeds += 1;
        outcome.events += report.stats.events;
        if report.failed() {
            let traced = run_one(spec, cfg, seed, &schedule, cfg.trace_lines);
            let shrunk = cfg.shrink.then(|| shrink(spec, cfg, seed, &schedule));
            outcome.failed.push(Failure {
                seed,
                schedule,
                violations: report.violations,
                trace: traced.trace,
                shrunk,
            });
        }
    }
    outcome
}

/// Drops faults one by one while the seed still fails, until no single
/// fault can go.
pub fn shrink<P: Spec>(spec: &P, cfg: &SimConfig, seed: u64, schedule: &Schedule) -> Schedule {
    let mut current = schedule.clone();
    loop {
        let mut smaller = false;
        let mut i = 0;
        while i < current.faults.len() {
            let candidate = current.without(i);
            if run_one(spec, cfg, seed, &candidate, 0).failed() {
                current = candidate;
                smaller = true;
            } else {
                i += 1;
            }
        }
        if !smaller {
            return current;
        }
    }
}

/// Runs [`simulate`] and panics with the first failures' reports when
/// any seed failed: the one call a protocol's simulator test makes.
pub fn assert_seeds<P: Spec>(spec: &P, cfg: &SimConfig) -> SimOutcome {
    let outcome = simulate(spec, cfg);
    if !outcome.failed.is_empty() {
        let shown: Vec<String> = outcome
            .failed
            .iter()
            .take(3)
            .map(|f| f.to_string())
            .collect();
        panic!(
            "{} of {} seeds failed\n{}",
            outcome.failed.len(),
            outcome.seeds,
            shown.join("\n")
        );
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn troupe_seed_replaces_the_batch() {
        let cfg = SimConfig {
            first_seed: 10,
            seeds: 3,
            ..SimConfig::default()
        };
        assert_eq!(seeds_to_run(&cfg, None), vec![10, 11, 12]);
        assert_eq!(seeds_to_run(&cfg, Some(" 987 ".into())), vec![987]);
        let bad = std::panic::catch_unwind(|| seeds_to_run(&cfg, Some("x".into())));
        assert!(bad.is_err());
    }
}
