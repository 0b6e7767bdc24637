//! Plots as SVG: latency against throughput (one curve per protocol, the
//! classic BFT evaluation figure) beside throughput over time.

use crate::results::{json_path, read_json, Row};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// One curve: runs that differ only in their client count.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// Legend: the protocol, plus the parameters that set it apart.
    pub label: String,
    /// `(kops/s, p50 ms)` points, by increasing client count.
    pub points: Vec<(f64, f64)>,
    /// The key of its busiest run (for the throughput-over-time panel).
    pub busiest: String,
}

/// Groups the successful rows into curves, in first-seen order.
pub fn curves(rows: &[Row]) -> Vec<Curve> {
    let ok: Vec<&Row> = rows.iter().filter(|r| r.is_ok()).collect();
    // The last row of a run wins (a rerun replaces an older result).
    let mut latest: BTreeMap<String, &Row> = BTreeMap::new();
    for r in &ok {
        latest.insert(r.key(), r);
    }
    let varying = varying_params(&ok);
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in &ok {
        let label = label(r, &varying);
        if !order.contains(&label) {
            order.push(label.clone());
        }
        if latest.get(&r.key()) == Some(r) {
            groups.entry(label).or_default().push(r);
        }
    }
    order
        .into_iter()
        .map(|label| {
            let mut runs = groups.remove(&label).unwrap_or_default();
            runs.sort_by_key(|r| r.clients);
            let busiest = runs
                .iter()
                .max_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s))
                .map(|r| r.key())
                .unwrap_or_default();
            Curve {
                points: runs
                    .iter()
                    .map(|r| (r.ops_per_s / 1000.0, r.p50_us as f64 / 1000.0))
                    .collect(),
                label,
                busiest,
            }
        })
        .collect()
}

/// A parameter's name and how to read it from a row.
type Param = (&'static str, fn(&Row) -> String);

/// The parameters (other than protocol and clients) that take more than
/// one value among the rows of one protocol, as `(name, value of a row)`
/// functions. What differs only between protocols (their replica count)
/// the protocol's name already says.
fn varying_params(rows: &[&Row]) -> Vec<Param> {
    let params: [Param; 9] = [
        ("replicas", |r| r.replicas.to_string()),
        ("threads", |r| r.client_threads.to_string()),
        ("batch", |r| r.batch.to_string()),
        ("app", |r| r.app.clone()),
        ("shared", |r| r.shared_threads.to_string()),
        ("auth", |r| r.client_auth.clone()),
        ("fault", |r| r.fault.clone()),
        ("duration", |r| r.duration_s.to_string()),
        ("seed", |r| r.seed.to_string()),
    ];
    params
        .into_iter()
        .filter(|(_, get)| {
            rows.iter().any(|a| {
                rows.iter()
                    .any(|b| a.protocol == b.protocol && get(a) != get(b))
            })
        })
        .collect()
}

fn label(row: &Row, varying: &[Param]) -> String {
    let mut label = row.protocol.clone();
    for (name, get) in varying {
        label.push_str(&format!(" {name}={}", get(row)));
    }
    label
}

/// Writes the figure for the rows of `csv` (their JSON files beside it)
/// to `svg`.
pub fn write_svg(svg: &Path, csv: &Path, rows: &[Row]) -> Result<(), String> {
    let curves = curves(rows);
    let over_time: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .filter_map(|c| {
            let record = read_json(&json_path(csv, &c.busiest)).ok()?;
            let clients = record.row.clients;
            let series = record
                .client_series()
                .into_iter()
                .map(|(t, ops)| (t, ops / 1000.0))
                .collect();
            Some((format!("{} clients={clients}", c.label), series))
        })
        .collect();
    if let Some(dir) = svg.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    draw(svg, &curves, &over_time).map_err(|e| format!("cannot draw {}: {e}", svg.display()))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(svg: &Path, curves: &[Curve], over_time: &[(String, Vec<(f64, f64)>)]) -> DrawResult {
    let root = SVGBackend::new(svg, (1280, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(640);

    latency_panel(&left, curves)?;

    let t_max = over_time
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.0))
        .fold(0.0f64, f64::max);
    let ops_max = over_time
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let mut chart = ChartBuilder::on(&right)
        .caption("Throughput over time (busiest run)", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        // Headroom above the lines for the legend.
        .build_cartesian_2d(0.0..nice(t_max), 0.0..nice(ops_max) * 1.3)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("throughput (kops/s)")
        .light_line_style(WHITE)
        .draw()?;
    for (i, (label, series)) in over_time.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                series.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if !over_time.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// How an axis spans its values: from zero, or logarithmically when they
/// cover more than a factor of [`LOG_SPAN`] (a BFT protocol's latency next
/// to an unreplicated one's would otherwise flatten the latter).
enum Scale {
    Linear(f64),
    Log(f64, f64),
}

/// Values spanning more than this factor get a log axis.
const LOG_SPAN: f64 = 20.0;

impl Scale {
    fn of(values: impl Iterator<Item = f64>) -> Scale {
        let (lo, hi) = values
            .filter(|v| *v > 0.0)
            .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if hi > 0.0 && hi / lo > LOG_SPAN {
            Scale::Log(lo / 1.5, hi * 1.5)
        } else {
            Scale::Linear(nice(hi))
        }
    }

    fn is_log(&self) -> bool {
        matches!(self, Scale::Log(..))
    }
}

/// The latency-throughput panel, each axis linear or logarithmic as its
/// values need.
fn latency_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, curves: &[Curve]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let points = || curves.iter().flat_map(|c| c.points.iter());
    let x = Scale::of(points().map(|p| p.0));
    let y = Scale::of(points().map(|p| p.1));
    let labels = (
        axis_label("throughput (kops/s)", &x),
        axis_label("median latency (ms)", &y),
    );
    // Log axes cannot show zero: such points (a run that completed
    // nothing) are left out of them.
    let keep = |p: &(f64, f64)| (!x.is_log() || p.0 > 0.0) && (!y.is_log() || p.1 > 0.0);
    let curves: Vec<Curve> = curves
        .iter()
        .map(|c| Curve {
            points: c.points.iter().copied().filter(keep).collect(),
            ..c.clone()
        })
        .collect();
    match (x, y) {
        (Scale::Linear(x), Scale::Linear(y)) => {
            latency_chart(area, &curves, 0.0..x, 0.0..y, labels)
        }
        (Scale::Linear(x), Scale::Log(a, b)) => {
            latency_chart(area, &curves, 0.0..x, (a..b).log_scale(), labels)
        }
        (Scale::Log(a, b), Scale::Linear(y)) => {
            latency_chart(area, &curves, (a..b).log_scale(), 0.0..y, labels)
        }
        (Scale::Log(a, b), Scale::Log(c, d)) => latency_chart(
            area,
            &curves,
            (a..b).log_scale(),
            (c..d).log_scale(),
            labels,
        ),
    }
}

fn axis_label(what: &str, scale: &Scale) -> String {
    match scale {
        Scale::Linear(_) => what.to_string(),
        Scale::Log(..) => format!("{what}, log scale"),
    }
}

fn latency_chart<DB, X, Y>(
    area: &DrawingArea<DB, Shift>,
    curves: &[Curve],
    x: X,
    y: Y,
    (x_desc, y_desc): (String, String),
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption("Latency vs throughput", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(WHITE)
        .draw()?;
    for (i, curve) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                curve.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(curve.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(
            curve
                .points
                .iter()
                .map(|p| Circle::new(*p, 4, color.filled())),
        )?;
    }
    if !curves.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// An axis end a little above `max` (and never an empty range).
fn nice(max: f64) -> f64 {
    if max > 0.0 {
        max * 1.1
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Bench;

    fn row(protocol: &str, clients: u32, batch: u32, ops: f64, p50: u64) -> Row {
        let mut r = Row::failed(&Bench::new(protocol, clients).batch(batch), "");
        r.status = "ok".into();
        r.ops_per_s = ops;
        r.p50_us = p50;
        r
    }

    #[test]
    fn curves_group_by_everything_but_clients_and_name_what_differs() {
        let mut rows = vec![
            row("a", 10, 1, 1000.0, 100),
            row("a", 1, 1, 500.0, 50),
            row("b", 1, 1, 300.0, 70),
            row("a", 1, 8, 900.0, 40),
        ];
        rows.push(row("x", 1, 1, 0.0, 0));
        rows.last_mut().unwrap().status = "failed".into();
        let c = curves(&rows);
        let labels: Vec<&str> = c.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["a batch=1", "b batch=1", "a batch=8"]);
        assert_eq!(c[0].points, vec![(0.5, 0.05), (1.0, 0.1)]);
        assert_eq!(c[0].busiest, rows[0].key());

        // What only differs between protocols goes unsaid.
        let mut pbft = row("pbft", 1, 1, 100.0, 900);
        pbft.replicas = 4;
        let two = curves(&[row("a", 1, 1, 500.0, 50), pbft]);
        let labels: Vec<&str> = two.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["a", "pbft"]);

        // A rerun of the same run replaces the older point.
        rows.push(row("b", 1, 1, 600.0, 20));
        assert_eq!(curves(&rows)[1].points, vec![(0.6, 0.02)]);
    }

    #[test]
    fn an_svg_names_every_curve() {
        let dir = std::env::temp_dir().join(format!("troupe-plot-{}", std::process::id()));
        let svg = dir.join("p.svg");
        let rows = [row("alpha", 1, 1, 500.0, 50), row("beta", 2, 1, 900.0, 60)];
        write_svg(&svg, &dir.join("p.csv"), &rows).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..80.min(text.len())]);
        assert!(text.contains("alpha") && text.contains("beta"));
        assert!(text.contains("median latency (ms)") && !text.contains("log scale"));

        // Latencies a hundredfold apart get a log axis.
        let rows = [row("fast", 1, 1, 500.0, 50), row("slow", 1, 1, 400.0, 9000)];
        write_svg(&svg, &dir.join("p.csv"), &rows).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("median latency (ms), log scale"));
        assert!(!text.contains("throughput (kops/s), log scale"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
