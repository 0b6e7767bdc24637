//! Draws a [`Dashboard`] on any ratatui backend.

use super::Dashboard;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Dataset, Gauge, GraphType, Paragraph, Row, Table,
};
use ratatui::Frame;

/// Draws the whole screen: progress, nodes, chart, logs.
pub fn render(frame: &mut Frame, dash: &Dashboard) {
    let node_height = dash.nodes.len() as u16 + 3;
    let [top, nodes, chart, logs] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(node_height),
        Constraint::Min(8),
        Constraint::Min(6),
    ])
    .areas(frame.area());

    let title = if dash.paused {
        " troupe sweep · PAUSED · p resume · q quit "
    } else {
        " troupe sweep · p pause · q quit "
    };
    frame.render_widget(
        Gauge::default()
            .block(Block::default().borders(Borders::ALL).title(title))
            .gauge_style(Style::default().fg(Color::Green))
            .ratio(dash.ratio())
            .label(dash.progress_line()),
        top,
    );

    let header = Row::new(
        [
            "node", "host", "role", "state", "ops/s", "p50", "p99", "CPU",
        ]
        .map(|h| Cell::from(h).style(Style::default().add_modifier(Modifier::BOLD))),
    );
    let rows = dash.nodes.values().map(|n| {
        let state_style = match n.state.as_str() {
            "down" => Style::default().fg(Color::Red),
            _ => Style::default(),
        };
        let latency = |us: u64| {
            if n.role == "clients" {
                micros(us)
            } else {
                "-".into()
            }
        };
        Row::new([
            Cell::from(format!("[{}]", n.tag)),
            Cell::from(n.host.clone()),
            Cell::from(n.role.clone()),
            Cell::from(n.state.clone()).style(state_style),
            Cell::from(n.ops_per_s.to_string()),
            Cell::from(latency(n.p50_us)),
            Cell::from(latency(n.p99_us)),
            Cell::from(format!("{}%", n.cpu_pct)),
        ])
    });
    let widths = [
        Constraint::Length(6),
        Constraint::Length(16),
        Constraint::Length(8),
        Constraint::Min(10),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(6),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::default().borders(Borders::ALL).title(" nodes ")),
        nodes,
    );

    let points: Vec<(f64, f64)> = dash.chart.iter().copied().collect();
    let (t0, t1) = match (points.first(), points.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (a.0, b.0),
        (Some(a), _) => (a.0, a.0 + 1.0),
        _ => (0.0, 1.0),
    };
    let top_ops = points.iter().map(|p| p.1).fold(0.0f64, f64::max).max(0.001) * 1.1;
    let dataset = Dataset::default()
        .name("client kops/s")
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::default().fg(Color::Cyan))
        .data(&points);
    frame.render_widget(
        Chart::new(vec![dataset])
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" throughput (kops/s) "),
            )
            .x_axis(
                Axis::default()
                    .bounds([t0, t1])
                    .labels([format!("{t0:.0}s"), format!("{t1:.0}s")]),
            )
            .y_axis(
                Axis::default()
                    .bounds([0.0, top_ops])
                    .labels(["0".to_string(), format!("{top_ops:.1}")]),
            ),
        chart,
    );

    let visible = logs.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = dash
        .logs
        .iter()
        .skip(dash.logs.len().saturating_sub(visible))
        .map(|l| tagged(l))
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" log ")),
        logs,
    );
}

/// A log line with its `[tag]` coloured by node.
fn tagged(line: &str) -> Line<'_> {
    let Some(end) = line.find(']').filter(|_| line.starts_with('[')) else {
        return Line::raw(line);
    };
    let (tag, rest) = line.split_at(end + 1);
    let color = match &tag[1..end] {
        "C" => Color::Cyan,
        "run" => Color::Yellow,
        n => [Color::Green, Color::Magenta, Color::Blue, Color::LightRed]
            [n.parse::<usize>().unwrap_or(0) % 4],
    };
    Line::from(vec![
        Span::styled(tag, Style::default().fg(color)),
        Span::raw(rest),
    ])
}

/// Microseconds, readable: `850us`, `12.3ms`.
fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Sample;
    use crate::events::Event;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use std::time::Duration;

    fn screen(dash: &Dashboard) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(100, 32)).unwrap();
        terminal.draw(|f| render(f, dash)).unwrap();
        let buffer = terminal.backend().buffer();
        buffer
            .content()
            .chunks(buffer.area.width as usize)
            .map(|row| row.iter().map(|c| c.symbol()).collect())
            .collect()
    }

    fn sample(tag: &str, ops: u64, p50: u64) -> Event {
        Event::Sample(Sample {
            tag: tag.into(),
            at_ms: 1000,
            ops_per_s: ops,
            p50_us: p50,
            p99_us: p50 * 3,
            cpu_pct: 42,
            state: if tag == "C" {
                String::new()
            } else {
                "view 0".into()
            },
        })
    }

    #[test]
    fn the_dashboard_shows_every_node_progress_chart_and_logs() {
        let mut dash = Dashboard::default();
        for (tag, role) in [("1", "replica"), ("0", "replica"), ("C", "clients")] {
            dash.apply(&Event::ProgramUp {
                tag: tag.into(),
                host: "127.0.0.1".into(),
                role,
                pid: Some(7),
            });
        }
        dash.apply(&Event::RunStarted {
            index: 2,
            total: 8,
            done: 2,
            label: "pbft clients=32".into(),
            eta: Duration::from_secs(75),
        });
        dash.apply(&sample("0", 5100, 0));
        dash.apply(&sample("C", 5000, 850));
        dash.apply(&sample("C", 7000, 12_345));
        dash.apply(&Event::Log {
            tag: "1".into(),
            line: "view change to view 1".into(),
        });
        dash.apply(&Event::ProgramDown {
            tag: "1".into(),
            reason: "its control connection closed".into(),
        });
        let lines = screen(&dash);
        let text = lines.join("\n");
        let row_of = |tag: &str| {
            let pos = lines.iter().position(|l| l.contains(tag));
            pos.unwrap_or_else(|| panic!("no row {tag}:\n{text}"))
        };
        // Rows in node order, with their numbers.
        assert!(row_of("[0]") < row_of("[1]") && row_of("[1]") < row_of("[C]"));
        let c = &lines[row_of("[C]")];
        for cell in ["clients", "7000", "12.3ms", "37.0ms", "42%"] {
            assert!(c.contains(cell), "{cell} missing in {c:?}");
        }
        assert!(lines[row_of("[0]")].contains("view 0"));
        assert!(lines[row_of("[1]")].contains("down"));
        assert!(
            text.contains("run 3/8 · pbft clients=32 · eta 1m1"),
            "{text}"
        );
        assert!(text.contains("throughput (kops/s)"));
        assert!(text.contains("[1] view change to view 1"), "{text}");
        assert!(text.contains("[1] down: its control connection closed"));

        dash.apply(&Event::RunFinished {
            index: 2,
            ok: false,
            line: "[1] died".into(),
        });
        dash.apply(&Event::Paused(true));
        let text = screen(&dash).join("\n");
        assert!(text.contains("3/8 runs done · eta 1m1"), "{text}");
        assert!(text.contains("1 failed · PAUSED"), "{text}");
        dash.apply(&Event::SweepDone {
            failed: 1,
            interrupted: true,
        });
        assert!(screen(&dash)[1].contains("sweep stopped: 1 failed"));
    }

    #[test]
    fn the_log_pane_keeps_a_bounded_tail() {
        let mut dash = Dashboard::default();
        for i in 0..2000 {
            dash.apply(&Event::Log {
                tag: "C".into(),
                line: format!("line {i}"),
            });
        }
        assert_eq!(dash.logs.len(), super::super::LOG_LINES);
        let text = screen(&dash).join("\n");
        assert!(text.contains("[C] line 1999") && !text.contains("line 1000 "));
    }
}
