//! Results on disk: one CSV row per finished run, appended as soon as the
//! run ends (so an interrupted sweep keeps what it has and resumes), and a
//! JSON file per run with the full latency histogram and every program's
//! per-second series.

use crate::bench::{Bench, RunResult, Sample};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The CSV header, in [`Row`]'s field order.
pub const HEADER: &str = "protocol,replicas,clients,client_threads,batch,app,shared_threads,\
client_auth,fault,duration_s,warmup_s,seed,status,ops_per_s,p50_us,p99_us,p999_us,errors,\
failure,commit,date";

/// One CSV row: every parameter of the run, then what it measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Protocol name.
    pub protocol: String,
    /// Replicas used.
    pub replicas: usize,
    /// Closed-loop clients.
    pub clients: u32,
    /// Client-host threads.
    pub client_threads: u16,
    /// Largest batch.
    pub batch: u32,
    /// Replicated application (`null`, `kv`).
    pub app: String,
    /// Shared-stage threads per replica.
    pub shared_threads: u16,
    /// Client authentication (`none`, `mac`, `signature`).
    pub client_auth: String,
    /// Injected fault (`none`, `crash<id>@<secs>s`).
    pub fault: String,
    /// Seconds of load.
    pub duration_s: f64,
    /// Seconds of warm-up.
    pub warmup_s: f64,
    /// Seed.
    pub seed: u64,
    /// `ok`, or `failed` (then `failure` says why).
    pub status: String,
    /// Operations per second after warm-up.
    pub ops_per_s: f64,
    /// Median latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, microseconds.
    pub p99_us: u64,
    /// 99.9th percentile latency, microseconds.
    pub p999_us: u64,
    /// Wrong results, malformed or unauthenticated packets, send errors.
    pub errors: u64,
    /// Why the run failed (empty when it did not).
    pub failure: String,
    /// Commit of the working tree.
    pub commit: String,
    /// When the run ended, UTC.
    pub date: String,
}

impl Row {
    /// The row of a run that could not finish.
    pub fn failed(bench: &Bench, failure: &str) -> Self {
        let mut row = Self::params(bench);
        row.status = "failed".into();
        row.failure = failure.replace(['\n', '\r'], " ");
        row
    }

    /// The row of a finished run.
    pub fn ok(result: &RunResult) -> Self {
        let mut row = Self::params(&result.bench);
        row.replicas = result.replicas;
        row.ops_per_s = (result.ops_per_s * 10.0).round() / 10.0;
        row.p50_us = result.p50_us;
        row.p99_us = result.p99_us;
        row.p999_us = result.p999_us;
        row.errors = result.errors;
        row
    }

    fn params(b: &Bench) -> Self {
        Row {
            protocol: b.protocol.clone(),
            replicas: b.replicas,
            clients: b.clients,
            client_threads: b.client_threads,
            batch: b.batch,
            app: format!("{:?}", b.app).to_lowercase(),
            shared_threads: b.shared_threads,
            client_auth: format!("{:?}", b.client_auth).to_lowercase(),
            fault: b.fault.to_string(),
            duration_s: millis(b.duration_s),
            warmup_s: millis(b.warmup_s),
            seed: b.seed,
            status: "ok".into(),
            ops_per_s: 0.0,
            p50_us: 0,
            p99_us: 0,
            p999_us: 0,
            errors: 0,
            failure: String::new(),
            commit: git_commit(),
            date: now_utc(),
        }
    }

    /// Every parameter, as one string: two rows with the same key are the
    /// same run.
    pub fn key(&self) -> String {
        format!(
            "{}_r{}_c{}_t{}_b{}_{}_s{}_{}_{}_d{}_w{}_seed{}",
            self.protocol,
            self.replicas,
            self.clients,
            self.client_threads,
            self.batch,
            self.app,
            self.shared_threads,
            self.client_auth,
            self.fault,
            self.duration_s,
            self.warmup_s,
            self.seed
        )
    }

    /// Whether the run produced a result.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Seconds rounded to milliseconds, so that a third of 1.2 s reads back
/// from CSV and JSON as the same number it was written as.
fn millis(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// The key of `bench` (with its replicas already resolved).
pub fn key(bench: &Bench) -> String {
    Row::params(bench).key()
}

/// Appends `row` to `path`, writing the header first when the file is new
/// or empty.
pub fn append_row(path: &Path, row: &Row) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let fresh = std::fs::metadata(path)
        .map(|m| m.len() == 0)
        .unwrap_or(true);
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut writer = csv::WriterBuilder::new()
        .has_headers(fresh)
        .from_writer(file);
    writer.serialize(row).map_err(io::Error::other)?;
    writer.flush()
}

/// Appends the row of a finished run to `path`.
pub fn append_csv(path: &Path, result: &RunResult) -> io::Result<()> {
    append_row(path, &Row::ok(result))
}

/// The rows already in `path` (none when it does not exist). A file with
/// another header (an older format) is moved aside to `<path>.old`, so the
/// sweep starts afresh rather than mixing formats.
pub fn load_rows(path: &Path) -> io::Result<Vec<Row>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if text.lines().next().is_some_and(|h| h.trim() != HEADER) {
        let old = path.with_extension("csv.old");
        std::fs::rename(path, &old)?;
        return Ok(Vec::new());
    }
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .deserialize()
        .collect::<Result<Vec<Row>, _>>()
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
}

/// Everything about one run: its row, the full latency histogram as
/// `(microseconds, count)` buckets, every program's per-second series and
/// every counter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The CSV row.
    pub row: Row,
    /// The latency histogram after warm-up: `(value_us, count)` for every
    /// recorded bucket, ascending.
    pub histogram: Vec<(u64, u64)>,
    /// Per-second samples of every program.
    pub series: Vec<Sample>,
    /// Every counter, `<tag>.<name>`.
    pub counters: Vec<(String, u64)>,
}

impl RunRecord {
    /// The record of a finished run.
    pub fn of(result: &RunResult) -> io::Result<Self> {
        let histogram: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &result.histogram[..])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
        Ok(RunRecord {
            row: Row::ok(result),
            histogram: histogram
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
            series: result.series.clone(),
            counters: result.counters.clone(),
        })
    }

    /// Client throughput per second: `(seconds since start, ops/s)`.
    pub fn client_series(&self) -> Vec<(f64, f64)> {
        self.series
            .iter()
            .filter(|s| s.tag == "C")
            .map(|s| (s.at_ms as f64 / 1000.0, s.ops_per_s as f64))
            .collect()
    }
}

/// Where the JSON of the run with `key` goes, beside the CSV at `csv`:
/// `results/default.csv` keeps them in `results/default/`.
pub fn json_path(csv: &Path, key: &str) -> PathBuf {
    let slug: String = key
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' | '@' => c,
            _ => '-',
        })
        .collect();
    csv.with_extension("").join(format!("{slug}.json"))
}

/// Writes the JSON of a run.
pub fn write_json(path: &Path, record: &RunRecord) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(record).map_err(io::Error::other)?;
    let mut file = std::fs::File::create(path)?;
    file.write_all(text.as_bytes())
}

/// Reads the JSON of a run.
pub fn read_json(path: &Path) -> io::Result<RunRecord> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The short commit of the working tree, or "unknown".
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Today's UTC date as YYYY-MM-DD.
pub fn today() -> String {
    now_utc()[..10].to_string()
}

/// The time now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Howard Hinnant's days-to-civil conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
        assert_eq!(now_utc().len(), 20);
    }

    #[test]
    fn rows_round_trip_with_awkward_failures_and_old_files_move_aside() {
        let dir = std::env::temp_dir().join(format!("troupe-rows-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let csv = dir.join("r.csv");
        let bench = Bench::new("unreplicated", 10);
        let failed = Row::failed(&bench, "[0] died, \"badly\"\nreally");
        append_row(&csv, &failed).unwrap();
        let mut ok = Row::failed(&bench, "");
        ok.status = "ok".into();
        ok.clients = 20;
        append_row(&csv, &ok).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(text.lines().next(), Some(HEADER));
        assert_eq!(text.lines().count(), 3, "{text}");
        let rows = load_rows(&csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].failure, "[0] died, \"badly\" really");
        assert!(!rows[0].is_ok() && rows[1].is_ok());
        assert_eq!(rows[0].key(), key(&bench));
        assert_ne!(rows[1].key(), key(&bench));
        assert!(json_path(&csv, &rows[0].key()).starts_with(dir.join("r")));

        std::fs::write(&csv, "protocol,clients\nx,1\n").unwrap();
        assert!(load_rows(&csv).unwrap().is_empty());
        assert!(dir.join("r.csv.old").exists() && !csv.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
