//! The Sweep tab's plot (EDM fig. 2): a metric against the evaluations (NFE), one line per value
//! of the second varied setting, log axes where they fit (`run::sweep::plot`, the same layout as
//! sweep.png); a pinned baseline sweep overlaid dashed. Hovering a point shows its settings and
//! metrics; clicking one returns its row so the tab can open that run.

use egui::{Color32, Ui};
use egui_plot::{HoverPosition, Line, Plot, PlotPoint, Points};

use super::plot_style::{self, Key, Swatch, baseline_style, format_significant};
use crate::run::sweep::SweepMetric;
use crate::run::sweep::plot::{PALETTE, XAxis, lines, log_axes};
use crate::run::sweep::thread::SweepRecord;

/// How near (pixels) a click must be to a point to open it.
const CLICK_RADIUS: f32 = 14.0;

/// The line colours: the sweep.png palette, with light grey for its black (dark theme).
fn color(k: usize) -> Color32 {
    let [r, g, b] = PALETTE[k % PALETTE.len()];
    if [r, g, b] == [0, 0, 0] {
        Color32::from_gray(220)
    } else {
        Color32::from_rgb(r, g, b)
    }
}

/// One drawn point: plot coordinates, the row it is, and what hovering it says.
struct Marker {
    at: [f64; 2],
    row: usize,
    summary: String,
}

/// The point's settings and every metric, for the hover.
fn summary(record: &SweepRecord, row: usize) -> String {
    let Some(r) = record.rows.get(row) else {
        return String::new();
    };
    let mut lines = vec![format!(
        "{} (point {})",
        record
            .spec
            .vary
            .iter()
            .zip(&r.values)
            .map(|(a, v)| format!("{}={v}", a.param.name()))
            .collect::<Vec<_>>()
            .join(", "),
        r.index
    )];
    lines.push(format!("evaluations (NFE) = {}", r.evaluations));
    for (m, v) in &r.metrics {
        if v.is_finite() {
            lines.push(format!("{} = {}", m.label(), format_significant(*v, 4)));
        }
    }
    if let Some(e) = &r.error {
        lines.push(format!("failed: {e}"));
    }
    lines.push(format!("{:.2} s; click to open this run", r.wall_s));
    lines.join("\n")
}

/// Draws the plot; returns the row a click asked to open.
pub fn show(
    ui: &mut Ui,
    current: &SweepRecord,
    baseline: Option<&SweepRecord>,
    metric: SweepMetric,
) -> Option<usize> {
    let x_axis = XAxis::of(&current.spec);
    let now = lines(&current.spec, &current.rows, metric);
    let before = baseline
        .map(|b| lines(&b.spec, &b.rows, metric))
        .unwrap_or_default();
    let all: Vec<_> = now.iter().chain(&before).cloned().collect();
    let (x_log, y_log) = log_axes(&x_axis, &all);
    let place = |x: f64, y: f64| {
        [
            if x_log { x.log10() } else { x },
            if y_log { y.log10() } else { y },
        ]
    };
    let mut keys: Vec<Key> = now
        .iter()
        .enumerate()
        .map(|(k, l)| Key::new(l.label.clone(), color(k), Swatch::Line))
        .collect();
    if let Some(b) = baseline {
        keys.push(Key::new(
            format!("baseline: {} (dashed)", b.spec.name),
            Color32::GRAY,
            Swatch::Line,
        ));
    }
    plot_style::title_and_key(
        ui,
        &format!("{} against {}", metric.label(), x_axis.label()),
        super::sweep_tab::SWEEP_PLOT,
        &keys,
    );
    let markers: Vec<Marker> = now
        .iter()
        .flat_map(|l| l.points.iter())
        .map(|&(x, y, row)| Marker {
            at: place(x, y),
            row,
            summary: summary(current, row),
        })
        .collect();
    let hover_markers: Vec<([f64; 2], String)> =
        markers.iter().map(|m| (m.at, m.summary.clone())).collect();
    let label = move |pos: &HoverPosition<'_>| -> Option<String> {
        let HoverPosition::NearDataPoint { position, .. } = pos else {
            return None;
        };
        hover_markers
            .iter()
            .min_by(|a, b| {
                let d = |p: &[f64; 2]| (p[0] - position.x).powi(2) + (p[1] - position.y).powi(2);
                d(&a.0).total_cmp(&d(&b.0))
            })
            .map(|(_, s)| s.clone())
    };
    let mut plot = Plot::new("sweep-plot")
        .x_axis_label(format!(
            "{}{}",
            x_axis.label(),
            if x_log { " (log)" } else { "" }
        ))
        .y_axis_label(format!(
            "{}{}",
            metric.label(),
            if y_log { " (log)" } else { "" }
        ))
        .label_formatter(label);
    if x_log {
        plot = plot_style::log_x(plot);
    }
    if y_log {
        plot = plot_style::log_y(plot);
    }
    if let XAxis::Choice(_, names) = &x_axis {
        let names = names.clone();
        plot = plot.x_axis_formatter(move |mark, _| {
            let k = mark.value.round();
            if (mark.value - k).abs() < 1e-6 && k >= 0.0 {
                names.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        });
    }
    let (width, radius) = (plot_style::size(ui, 2.0), plot_style::size(ui, 3.5));
    let response = plot_style::show(ui, plot, |plot| {
        for (k, line) in before.iter().enumerate() {
            let points: Vec<[f64; 2]> = line.points.iter().map(|p| place(p.0, p.1)).collect();
            plot.line(
                Line::new(format!("baseline {}", line.label), points)
                    .color(plot_style::faint(color(k), 160))
                    .width(0.75 * width)
                    .style(baseline_style()),
            );
        }
        for (k, line) in now.iter().enumerate() {
            let points: Vec<[f64; 2]> = line.points.iter().map(|p| place(p.0, p.1)).collect();
            plot.line(
                Line::new(line.label.clone(), points.clone())
                    .color(color(k))
                    .width(width),
            );
            plot.points(
                Points::new(line.label.clone(), points)
                    .color(color(k))
                    .radius(radius),
            );
        }
    });
    if !response.response.clicked() {
        return None;
    }
    let pointer = response.response.interact_pointer_pos()?;
    markers
        .iter()
        .map(|m| {
            let at = response
                .transform
                .position_from_point(&PlotPoint::new(m.at[0], m.at[1]));
            (at.distance(pointer), m.row)
        })
        .filter(|(d, _)| *d <= CLICK_RADIUS)
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, row)| row)
}
