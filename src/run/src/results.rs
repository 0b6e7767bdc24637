//! Results on disk: one CSV row per finished run.

use crate::bench::RunResult;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

/// The CSV header.
pub const HEADER: &str =
    "protocol,replicas,clients,batch,duration_s,ops_per_s,p50_us,p99_us,p999_us,errors,commit,date";

/// Appends one row to `path`, writing the header first when the file is
/// new or empty.
pub fn append_csv(path: &Path, result: &RunResult) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let fresh = std::fs::metadata(path)
        .map(|m| m.len() == 0)
        .unwrap_or(true);
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    if fresh {
        writeln!(file, "{HEADER}")?;
    }
    let b = &result.bench;
    writeln!(
        file,
        "{},{},{},{},{},{:.1},{},{},{},{},{},{}",
        b.protocol,
        result.replicas,
        b.clients,
        b.batch,
        b.duration_s,
        result.ops_per_s,
        result.p50_us,
        result.p99_us,
        result.p999_us,
        result.errors,
        git_commit(),
        today()
    )
}

/// The short commit of the working tree, or "unknown".
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Today's UTC date as YYYY-MM-DD.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
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
    }
}
