//! The Sweep tab's plot (EDM fig. 2): a metric against the evaluations (NFE), one line per value
//! of the second varied setting, log axes where they fit (`run::sweep::plot`, the same layout as
//! sweep.png); a pinned baseline sweep overlaid dashed. Hovering a point shows its settings and
//! metrics; clicking one returns its row so the tab can open that run. Two numeric settings can
//! be drawn as a heatmap instead (`run::sweep::heatmap`), with a colour bar and the cell's values
//! on hover.

use egui::{Color32, Stroke, Ui};
use egui_plot::{HoverPosition, Line, Plot, PlotPoint, Points, Polygon};

use super::plot_style::{self, Key, Swatch, baseline_style, format_significant};
use crate::run::sweep::SweepMetric;
use crate::run::sweep::heatmap::{ColourScale, HeatAxis, Heatmap, colour_map};
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

/// Width of the colour bar beside the heatmap (strip and its labels).
const COLOUR_BAR_WIDTH: f32 = 90.0;

fn rgb([r, g, b]: [u8; 3]) -> Color32 {
    Color32::from_rgb(r, g, b)
}

/// The hover of cell (i, j): its settings and every metric, or why it has no value.
fn cell_summary(record: &SweepRecord, map: &Heatmap, i: usize, j: usize) -> String {
    match map.rows.get(j).and_then(|r| r.get(i)).copied().flatten() {
        Some(row) => summary(record, row),
        None => format!(
            "{}={}, {}={}: not measured yet",
            map.x.param.name(),
            map.x.values.get(i).copied().unwrap_or(f64::NAN),
            map.y.param.name(),
            map.y.values.get(j).copied().unwrap_or(f64::NAN)
        ),
    }
}

/// Draws the heatmap of two numeric settings with its colour bar; returns the row a click asked
/// to open.
pub fn show_heatmap(
    ui: &mut Ui,
    current: &SweepRecord,
    map: &Heatmap,
    metric: SweepMetric,
) -> Option<usize> {
    let scale = map.scale;
    plot_style::title_and_key(
        ui,
        &format!(
            "{} over {} and {}",
            metric.label(),
            map.x.param.name(),
            map.y.param.name()
        ),
        super::sweep_tab::SWEEP_HEATMAP,
        &[],
    );
    let axis_label = |axis: &HeatAxis| {
        format!(
            "{}{}",
            axis.param.name(),
            if axis.log { " (log)" } else { "" }
        )
    };
    let hover_map = map.clone();
    let hover_record = current.clone();
    let label = move |pos: &HoverPosition<'_>| -> Option<String> {
        let (HoverPosition::NearDataPoint { position, .. } | HoverPosition::Elsewhere { position }) =
            pos;
        let (i, j) = hover_map.cell_at(position.x, position.y)?;
        Some(cell_summary(&hover_record, &hover_map, i, j))
    };
    let mut plot = Plot::new("sweep-heatmap")
        .x_axis_label(axis_label(&map.x))
        .y_axis_label(axis_label(&map.y))
        .show_grid(false)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .label_formatter(label)
        .width((ui.available_width() - COLOUR_BAR_WIDTH).max(100.0))
        .height(ui.available_height().max(100.0));
    if map.x.log {
        plot = plot_style::log_x(plot);
    }
    if map.y.log {
        plot = plot_style::log_y(plot);
    }
    let missing = ui.visuals().weak_text_color();
    let cells: Vec<(Vec<[f64; 2]>, Option<Color32>)> = (0..map.y.values.len())
        .flat_map(|j| (0..map.x.values.len()).map(move |i| (i, j)))
        .map(|(i, j)| {
            let [x0, x1] = map.x.edges(i);
            let [y0, y1] = map.y.edges(j);
            let colour = scale.colour(map.cells[j][i]).map(rgb);
            (vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]], colour)
        })
        .collect();
    let mut response = None;
    ui.horizontal(|ui| {
        response = Some(plot_style::show(ui, plot, move |plot| {
            for (k, (corners, colour)) in cells.into_iter().enumerate() {
                let polygon = Polygon::new(format!("cell {k}"), corners);
                plot.polygon(match colour {
                    Some(c) => polygon.fill_color(c).stroke(Stroke::new(0.5, c)),
                    // Missing: an empty cell with a faint outline.
                    None => polygon
                        .fill_color(Color32::TRANSPARENT)
                        .stroke(Stroke::new(1.0, missing)),
                });
            }
        }));
        colour_bar(ui, &scale, metric);
    });
    let response = response?;
    if !response.response.clicked() {
        return None;
    }
    let pointer = response.response.interact_pointer_pos()?;
    let at = response.transform.value_from_position(pointer);
    let (i, j) = map.cell_at(at.x, at.y)?;
    map.rows.get(j)?.get(i).copied().flatten()
}

/// The colour bar: the scale from its minimum (bottom) to its maximum (top), labelled at the
/// ends and the middle, and what an empty cell means.
fn colour_bar(ui: &mut Ui, scale: &ColourScale, metric: SweepMetric) {
    let (rect, _) = ui.allocate_exact_size(
        egui::vec2(COLOUR_BAR_WIDTH - 8.0, ui.available_height()),
        egui::Sense::hover(),
    );
    let painter = ui.painter_at(rect);
    let font = egui::FontId::proportional(11.0);
    let text = ui.visuals().text_color();
    let bar = egui::Rect::from_min_max(
        rect.min + egui::vec2(4.0, 24.0),
        egui::pos2(rect.min.x + 20.0, rect.max.y - 40.0),
    );
    painter.text(
        rect.min + egui::vec2(2.0, 4.0),
        egui::Align2::LEFT_TOP,
        if scale.log {
            format!("{} (log)", metric.name())
        } else {
            metric.name().to_string()
        },
        font.clone(),
        text,
    );
    const STRIPS: usize = 64;
    for s in 0..STRIPS {
        let (t0, t1) = (s as f32 / STRIPS as f32, (s + 1) as f32 / STRIPS as f32);
        let strip = egui::Rect::from_x_y_ranges(
            bar.x_range(),
            (bar.max.y - t1 * bar.height())..=(bar.max.y - t0 * bar.height()),
        );
        let mid = 0.5 * (t0 + t1);
        painter.rect_filled(strip, 0.0, rgb(colour_map(mid as f64)));
    }
    if scale.min.is_finite() {
        for t in [0.0, 0.5, 1.0] {
            let y = bar.max.y - t as f32 * bar.height();
            painter.text(
                egui::pos2(bar.max.x + 4.0, y),
                egui::Align2::LEFT_CENTER,
                format_significant(scale.value_at(t), 3),
                font.clone(),
                text,
            );
        }
    }
    painter.text(
        egui::pos2(rect.min.x + 2.0, rect.max.y - 4.0),
        egui::Align2::LEFT_BOTTOM,
        "empty: no value",
        font,
        ui.visuals().weak_text_color(),
    );
}
