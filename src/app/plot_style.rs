//! Shared plot conventions: colours (live vs pinned baseline), the dashed baseline style, a key
//! row above each plot instead of a legend inside it (a legend covers the data it names), log
//! axes with nice tick marks (egui_plot's axes are linear: log plots draw log10 values, and
//! `log_x` / `log_y` place and label their marks), line and marker sizes that presenter mode
//! scales, and the hover text and click-to-jump of plots whose x axis is a step.

use egui::{Color32, Id, Pos2, Sense, Stroke, StrokeKind, Ui, Vec2};
use egui_plot::{GridInput, GridMark, HoverPosition, LineStyle, Plot, PlotResponse, PlotUi};

use crate::run::store::RunRecord;

/// The live run's states and curves.
pub const LIVE: Color32 = Color32::from_rgb(255, 150, 60);
/// D(x_i) and the live run's second curve.
pub const DENOISED: Color32 = Color32::from_rgb(70, 205, 190);
/// The pinned baseline (always dashed in line plots).
pub const BASELINE: Color32 = Color32::from_rgb(130, 160, 255);
/// The data set behind the run.
pub const DATA: Color32 = Color32::from_rgba_premultiplied(150, 150, 150, 90);
/// Reference lines (the diagonal, zero, the data).
pub const REFERENCE: Color32 = Color32::from_gray(140);
/// The marker of the shown step: bright, so it reads on a projector.
pub const SHOWN: Color32 = Color32::from_rgb(250, 225, 110);
/// Samples that left the data's range (a diverged run).
pub const DIVERGED: Color32 = Color32::from_rgb(255, 80, 80);

/// How the baseline's curves are drawn: dashed, so A/B reads at a glance.
pub fn baseline_style() -> LineStyle {
    LineStyle::Dashed { length: 8.0 }
}

/// Closest and widest on-screen spacing of grid lines, points. egui_plot fades lines in from 8 points;
/// from 20 the grid reads the same with about half the lines (each a long, feathered strip).
const GRID_SPACING: std::ops::RangeInclusive<f32> = 20.0..=300.0;

/// Shows `plot` the house way: outlined, without its filled background (the panel colour shows
/// through; a software rasteriser pays for every filled pixel), with a sparser grid and without
/// a legend (the key row above the plot names the curves). Every plot of the app goes through
/// here.
pub fn show<'a, R>(
    ui: &mut Ui,
    plot: Plot<'a>,
    build: impl FnOnce(&mut PlotUi<'a>) -> R + 'a,
) -> PlotResponse<R> {
    let response = plot
        .show_background(false)
        .grid_spacing(GRID_SPACING)
        .show(ui, build);
    ui.painter().rect_stroke(
        *response.transform.frame(),
        2.0,
        ui.visuals().widgets.noninteractive.bg_stroke,
        StrokeKind::Inside,
    );
    response
}

/// How much thicker lines and bigger markers are drawn (presenter mode sets more than 1).
pub fn emphasis(ctx: &egui::Context) -> f32 {
    ctx.data(|d| d.get_temp::<f32>(emphasis_id()))
        .unwrap_or(1.0)
}

/// Sets the factor `emphasis` returns.
pub fn set_emphasis(ctx: &egui::Context, factor: f32) {
    ctx.data_mut(|d| d.insert_temp(emphasis_id(), factor));
}

fn emphasis_id() -> Id {
    Id::unique("noisescope-plot-emphasis")
}

/// A line width or marker radius scaled by `emphasis`.
pub fn size(ui: &Ui, base: f32) -> f32 {
    base * emphasis(ui.ctx())
}

/// How an entry of a plot's key is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Swatch {
    Line,
    Dashed,
    Dotted,
    /// A filled band (10-90%).
    Band,
    /// A marker without a line.
    Dot,
}

/// One entry of a plot's key: a swatch and a name.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub color: Color32,
    pub swatch: Swatch,
}

impl Key {
    pub fn new(name: impl Into<String>, color: Color32, swatch: Swatch) -> Self {
        Key {
            name: name.into(),
            color,
            swatch,
        }
    }
}

/// A plot's title and its key on one wrapped row above the plot: the key never covers data.
pub fn title_and_key(ui: &mut Ui, title: &str, tip: &str, keys: &[Key]) {
    ui.horizontal_wrapped(|ui| {
        ui.label(egui::RichText::new(title).strong())
            .on_hover_text(tip);
        ui.add_space(8.0);
        for key in keys {
            swatch(ui, key);
            ui.label(egui::RichText::new(&key.name).small());
            ui.add_space(4.0);
        }
    });
}

fn swatch(ui: &mut Ui, key: &Key) {
    let (rect, _) = ui.allocate_exact_size(Vec2::new(22.0, 12.0), Sense::hover());
    let painter = ui.painter();
    let (left, right) = (
        Pos2::new(rect.left() + 1.0, rect.center().y),
        Pos2::new(rect.right() - 1.0, rect.center().y),
    );
    let stroke = Stroke::new(2.0, key.color);
    match key.swatch {
        Swatch::Line => {
            painter.line_segment([left, right], stroke);
        }
        Swatch::Dashed | Swatch::Dotted => {
            let (dash, gap) = if key.swatch == Swatch::Dashed {
                (6.0, 3.0)
            } else {
                (2.0, 3.0)
            };
            painter.add(egui::Shape::dashed_line(&[left, right], stroke, dash, gap));
        }
        Swatch::Band => {
            painter.rect_filled(rect.shrink2(Vec2::new(1.0, 2.0)), 0.0, key.color);
        }
        Swatch::Dot => {
            painter.circle_filled(rect.center(), 3.5, key.color);
        }
    }
}

/// A colour with its alpha scaled (for bands and faint families).
pub fn faint(color: Color32, alpha: u8) -> Color32 {
    Color32::from_rgba_unmultiplied(color.r(), color.g(), color.b(), alpha)
}

/// A number in few characters: 2e-3, 0.35, 1.5, 80, 1e4.
pub fn format_number(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        String::new()
    } else if a == 0.0 {
        "0".into()
    } else if !(1e-2..1e4).contains(&a) {
        format!("{x:.0e}")
    } else if a >= 10.0 {
        format!("{x:.0}")
    } else {
        let text = format!("{x:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// `x` with `digits` significant digits, in the style of `format_number`: plain between 0.01
/// and 10^4, else 2.5e-10.
pub fn format_significant(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return String::new();
    }
    if x == 0.0 {
        return "0".into();
    }
    let digits = digits.max(1);
    let exponent = x.abs().log10().floor() as i32;
    if (1e-2..1e4).contains(&x.abs()) {
        let decimals = (digits as i32 - 1 - exponent).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        // Rust writes 2.5e-10 for {:.1e}; a rounding carry (9.96 -> 1.0e1) is Rust's to print.
        format!("{x:.prec$e}", prec = digits - 1)
    }
}

/// The fewest significant digits (at most 6) that write `x` exactly (to 1e-9 relative).
fn significant_digits(x: f64) -> usize {
    (1..=6)
        .find(|&d| {
            let scale = 10f64.powi(d as i32 - 1 - x.abs().log10().floor() as i32);
            ((x * scale).round() / scale - x).abs() <= 1e-9 * x.abs()
        })
        .unwrap_or(6)
}

/// The label of a mark on a log10 axis: its value 10^v, with the digits the value needs (marks
/// sit on nice values, so two marks never share a label).
pub fn log_axis_label(mark: GridMark, _range: &std::ops::RangeInclusive<f64>) -> String {
    let x = 10f64.powf(mark.value);
    format_significant(x, significant_digits(x))
}

/// Least on-screen distance between two labelled marks of a log x axis, points (labels such as
/// "2.5e-10" are wide).
pub const LOG_X_GAP: f64 = 64.0;
/// The same for a log y axis (labels are one text line high).
pub const LOG_Y_GAP: f64 = 24.0;

/// Decade strides tried for wide ranges, each a "nice" number of decades.
const DECADE_STRIDES: [i64; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

/// Mantissas of one significant digit in the order they are added after the decades: 1-2-5
/// first, then the rest.
const ONE_DIGIT: [f64; 8] = [5.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0];

/// Most candidate values of one digit level considered (a level beyond it is not tried).
const MAX_CANDIDATES: usize = 400;

/// The marks of a log10 axis over `bounds` (log10 values), `points_per_unit` points per decade,
/// labelled marks at least `min_gap` points apart. Decades come first (every k-th decade when
/// decades are too close), then 5 and 2, then the other one-digit mantissas, then, for ranges
/// narrower than a decade, two- and more-digit mantissas: every mark is a round number and no
/// two marks share a label. There is at least one mark whenever the range is not empty.
pub fn log_marks(bounds: (f64, f64), points_per_unit: f64, min_gap: f64) -> Vec<GridMark> {
    let (lo, hi) = (bounds.0.min(bounds.1), bounds.0.max(bounds.1));
    if !(lo.is_finite() && hi.is_finite() && hi > lo && points_per_unit > 0.0) {
        return Vec::new();
    }
    let ppu = points_per_unit;
    // The step size egui_plot sees decides how strong a line is and whether its label shows:
    // labelled marks claim at least 100 points (labels shown), decades 300 (strong lines).
    let minor_step = 100.0 / ppu;
    let stride = DECADE_STRIDES
        .iter()
        .copied()
        .find(|&k| k as f64 * ppu >= min_gap)
        .unwrap_or(1000);
    let mut chosen: Vec<f64> = Vec::new();
    let (first, last) = (lo.ceil() as i64, hi.floor() as i64);
    for e in first..=last {
        if e.rem_euclid(stride) == 0 {
            chosen.push(e as f64);
        }
    }
    let mut marks: Vec<GridMark> = chosen
        .iter()
        .map(|&v| GridMark {
            value: v,
            step_size: (stride as f64).max(300.0 / ppu),
        })
        .collect();
    if stride == 1 {
        let span = hi - lo;
        for digits in 1..=6u32 {
            // Two or more digits only inside a narrow range: a decade or more reads with one.
            if digits > 1 && span >= 0.5 {
                break;
            }
            let Some(candidates) = mantissa_candidates(lo, hi, digits) else {
                break;
            };
            for v in candidates {
                if chosen.iter().all(|c| (c - v).abs() * ppu >= min_gap) {
                    chosen.push(v);
                    marks.push(GridMark {
                        value: v,
                        step_size: minor_step,
                    });
                }
            }
        }
    }
    if marks.is_empty() {
        // A range between two nice values of every level tried: its middle, rounded to the
        // digits that land inside it.
        let mid = 10f64.powf(0.5 * (lo + hi));
        let value = (1..=12)
            .map(|d| {
                let scale = 10f64.powi(d - 1 - mid.log10().floor() as i32);
                ((mid * scale).round() / scale).log10()
            })
            .find(|v| (lo..=hi).contains(v))
            .unwrap_or(0.5 * (lo + hi));
        marks.push(GridMark {
            value,
            step_size: minor_step,
        });
    }
    marks.sort_by(|a, b| a.value.total_cmp(&b.value));
    marks
}

/// The log10 values in [lo, hi] of numbers with exactly `digits` significant digits (decades
/// excluded), rounder ones first: 5, 2, then the other digits at one digit; x.5 before the rest
/// at more. `None` when there would be more than `MAX_CANDIDATES`.
fn mantissa_candidates(lo: f64, hi: f64, digits: u32) -> Option<Vec<f64>> {
    let unit = 10i64.pow(digits - 1);
    let mut ranked: Vec<(usize, f64)> = Vec::new();
    for e in (lo.floor() as i64)..=(hi.floor() as i64) {
        let scale = unit as f64 * 10f64.powi(-(e as i32));
        let first = ((10f64.powf(lo) * scale - 1e-9).ceil() as i64).max(unit);
        let last = ((10f64.powf(hi) * scale + 1e-9).floor() as i64).min(10 * unit - 1);
        if last - first > MAX_CANDIDATES as i64 {
            return None;
        }
        for j in first..=last {
            // Values with fewer digits belong to a coarser level (or are decades).
            if j % 10 == 0 || (digits == 1 && j == 1) {
                continue;
            }
            let rank = if digits == 1 {
                ONE_DIGIT
                    .iter()
                    .position(|&m| m == j as f64)
                    .unwrap_or(ONE_DIGIT.len())
            } else {
                usize::from(j % 5 != 0)
            };
            let v = (j as f64 / unit as f64).log10() + e as f64;
            if (lo..=hi).contains(&v) {
                ranked.push((rank, v));
            }
        }
        if ranked.len() > MAX_CANDIDATES {
            return None;
        }
    }
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    Some(ranked.into_iter().map(|(_, v)| v).collect())
}

/// A grid spacer for a log10 axis whose labels need `min_gap` points.
fn log_spacer(min_gap: f64) -> impl Fn(GridInput) -> Vec<GridMark> {
    move |input: GridInput| {
        // base_step_size is the value span of the grid's closest spacing (GRID_SPACING's start).
        let ppu = f64::from(*GRID_SPACING.start()) / input.base_step_size.max(f64::MIN_POSITIVE);
        log_marks(input.bounds, ppu, min_gap)
    }
}

/// A plot whose x values are log10 of the quantity: nice marks labelled with the quantity.
pub fn log_x(plot: Plot<'_>) -> Plot<'_> {
    plot.x_grid_spacer(log_spacer(LOG_X_GAP))
        .x_axis_formatter(log_axis_label)
}

/// A plot whose y values are log10 of the quantity: nice marks labelled with the quantity.
pub fn log_y(plot: Plot<'_>) -> Plot<'_> {
    plot.y_grid_spacer(log_spacer(LOG_Y_GAP))
        .y_axis_formatter(log_axis_label)
}

/// Least on-screen distance between two labelled marks of a linear y axis, points (egui_plot
/// shows a y label at full strength from 30 points apart).
pub const LINEAR_Y_GAP: f64 = 30.0;

/// The marks of a linear axis over `bounds`, `points_per_unit` points per unit: multiples of the
/// finest 1-2-5 step whose marks stay `min_gap` points apart, each carrying that step (so
/// egui_plot labels every one). egui_plot's own spacer steps by powers of ten only, which leaves
/// a short plot over 0-180 degrees with two labels.
pub fn linear_marks(bounds: (f64, f64), points_per_unit: f64, min_gap: f64) -> Vec<GridMark> {
    let (lo, hi) = (bounds.0.min(bounds.1), bounds.0.max(bounds.1));
    if !(lo.is_finite() && hi.is_finite() && hi > lo && points_per_unit > 0.0 && min_gap > 0.0) {
        return Vec::new();
    }
    let least = min_gap / points_per_unit;
    let decade = 10f64.powf(least.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * decade)
        .find(|&s| s >= least * (1.0 - 1e-12))
        .unwrap_or(10.0 * decade);
    let (first, last) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
    (first..=last)
        .map(|k| GridMark {
            // k * step, rounded to the step's digits (no 0.30000000000000004).
            value: round_to_step(k as f64 * step, step),
            step_size: step,
        })
        .collect()
}

/// `x` rounded to the decimals that `step` needs.
fn round_to_step(x: f64, step: f64) -> f64 {
    let decimals = step_decimals(step) as i32;
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// Decimals a 1-2-5 step's marks need: 0 for steps of 1 and up, 1 for 0.5 / 0.2 / 0.1, ...
fn step_decimals(step: f64) -> usize {
    (-(step.log10() + 1e-9).floor()).max(0.0) as usize
}

/// A y axis with `linear_marks` labelled to their step's decimals.
pub fn linear_y(plot: Plot<'_>) -> Plot<'_> {
    plot.y_grid_spacer(|input: GridInput| {
        let ppu = f64::from(*GRID_SPACING.start()) / input.base_step_size.max(f64::MIN_POSITIVE);
        linear_marks(input.bounds, ppu, LINEAR_Y_GAP)
    })
    .y_axis_formatter(|mark: GridMark, _| {
        format!("{:.*}", step_decimals(mark.step_size), mark.value)
    })
}

/// The shown state on a plot over step indices: a bright vertical line at x = `shown`.
pub fn shown_step_marker(plot: &mut PlotUi<'_>, shown: usize, width: f32) {
    plot.vline(
        egui_plot::VLine::new("shown step", shown as f64)
            .color(SHOWN)
            .width(0.75 * width)
            .allow_hover(false),
    );
}

/// (x, log10 y) pairs where both are finite and y > 0.
pub fn log10_points(points: impl IntoIterator<Item = (f64, f64)>) -> Vec<[f64; 2]> {
    points
        .into_iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
        .map(|(x, y)| [x, y.log10()])
        .collect()
}

/// What a plot's x axis counts, so a hover or a click finds its step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepAxis {
    /// x = the step index i.
    Index,
    /// x = log10 sigma_i.
    LogSigma,
}

/// The state index (0 ..= N) a plot x value points at; `None` off the run's steps.
pub fn step_at(run: &RunRecord, axis: StepAxis, x: f64) -> Option<usize> {
    let last = run.state_count().checked_sub(1)?;
    match axis {
        StepAxis::Index => {
            let i = x.round();
            (i >= -0.5 && i <= last as f64 + 0.5).then(|| (i.max(0.0) as usize).min(last))
        }
        StepAxis::LogSigma => run
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.sigma > 0.0)
            .min_by(|a, b| {
                (a.1.sigma.log10() - x)
                    .abs()
                    .total_cmp(&(b.1.sigma.log10() - x).abs())
            })
            .map(|(i, _)| i),
    }
}

/// What a hover over step `step` shows: i, sigma_i and the step's diagnostics.
pub fn step_summary(run: &RunRecord, step: usize) -> String {
    let mut lines = vec![format!("step i = {step}")];
    match run.steps.get(step) {
        Some(s) => lines.push(format!("σ_i = {}", format_significant(s.sigma, 3))),
        None => lines.push("σ = 0 (the final samples)".into()),
    }
    if let Some(r) = run.records.iter().find(|r| r.step == step) {
        let fields = [
            ("σ_hat (median)", r.sigma_hat.median),
            ("δ = ln(σ_hat/σ_i)", r.delta.median),
            ("θ_i (degrees)", r.angle_deg),
            ("local error e_i", r.local_error),
        ];
        for (name, value) in fields {
            if value.is_finite() {
                lines.push(format!("{name} = {}", format_significant(value, 3)));
            }
        }
    }
    lines.join("\n")
}

/// A hover label for plots over a run's steps: the nearest step's numbers, with the hovered
/// curve's name first.
pub fn step_hover<'a>(
    run: &'a RunRecord,
    axis: StepAxis,
) -> impl Fn(&HoverPosition<'_>) -> Option<String> + 'a {
    move |pos| match pos {
        HoverPosition::NearDataPoint {
            plot_name,
            position,
            ..
        } => {
            step_at(run, axis, position.x).map(|s| format!("{plot_name}\n{}", step_summary(run, s)))
        }
        HoverPosition::Elsewhere { .. } => None,
    }
}

/// A hover label naming the nearest curve and its point, with log10 axes read back as values:
/// `x` and `y` are (name, whether the axis is log10).
pub fn value_hover(
    x: (&'static str, bool),
    y: (&'static str, bool),
) -> impl Fn(&HoverPosition<'_>) -> Option<String> {
    move |pos| match pos {
        HoverPosition::NearDataPoint {
            plot_name,
            position,
            ..
        } => {
            let read = |(name, log): (&str, bool), v: f64| {
                let value = if log { 10f64.powf(v) } else { v };
                format!("{name} = {}", format_significant(value, 3))
            };
            Some(format!(
                "{plot_name}\n{}\n{}",
                read(x, position.x),
                read(y, position.y)
            ))
        }
        HoverPosition::Elsewhere { .. } => None,
    }
}

/// The state a click on a step plot asks for (`None` without a click).
pub fn clicked_step<R>(
    response: &PlotResponse<R>,
    run: &RunRecord,
    axis: StepAxis,
) -> Option<usize> {
    if !response.response.clicked() {
        return None;
    }
    let pos = response.response.interact_pointer_pos()?;
    let value = response.transform.value_from_position(pos);
    step_at(run, axis, value.x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn numbers_are_short_and_readable() {
        assert_eq!(format_number(0.002), "2e-3");
        assert_eq!(format_number(80.0), "80");
        assert_eq!(format_number(1.5), "1.5");
        assert_eq!(format_number(1.0), "1");
        assert_eq!(format_number(0.35), "0.35");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(f64::NAN), "");
        assert_eq!(
            log10_points([(1.0, 10.0), (2.0, 0.0), (3.0, f64::NAN)]),
            vec![[1.0, 1.0]]
        );
        assert_eq!(format_significant(2.5e-10, 2), "2.5e-10");
        assert_eq!(format_significant(0.25, 2), "0.25");
        assert_eq!(format_significant(2500.0, 2), "2500");
        assert_eq!(format_significant(20000.0, 1), "2e4");
        assert_eq!(format_significant(0.002, 1), "2e-3");
        assert_eq!(format_significant(5.0, 1), "5");
    }

    fn label(v: f64) -> String {
        log_axis_label(
            GridMark {
                value: v,
                step_size: 1.0,
            },
            &(0.0..=1.0),
        )
    }

    #[test]
    fn log_labels_read_back_their_round_values() {
        assert_eq!(label(4.0), "1e4");
        assert_eq!(label(-10.0), "1e-10");
        assert_eq!(label(2f64.log10()), "2");
        assert_eq!(label(0.5f64.log10()), "0.5");
        assert_eq!(label(2.5e-10f64.log10()), "2.5e-10");
        assert_eq!(label(20000f64.log10()), "2e4");
        assert_eq!(label(80f64.log10()), "80");
    }

    /// Every range a plot can show, at every plot size: the labels are distinct, round, inside
    /// the range, far enough apart to be read, and there is always at least one.
    #[test]
    fn log_ticks_never_repeat_a_label_over_a_sweep_of_ranges() {
        let mut checked = 0;
        let mut lo = -14.0;
        while lo < 6.0 {
            for span in [
                1e-4, 1e-3, 0.004, 0.02, 0.07, 0.2, 0.45, 0.7, 1.0, 1.3, 2.3, 3.7, 5.0, 9.0, 17.0,
                40.0, 300.0,
            ] {
                for pixels in [60.0, 100.0, 180.0, 400.0, 900.0, 2000.0] {
                    for gap in [LOG_X_GAP, LOG_Y_GAP] {
                        let ppu = pixels / span;
                        let marks = log_marks((lo, lo + span), ppu, gap);
                        let case = format!("[{lo}, {}] at {pixels} px, gap {gap}", lo + span);
                        assert!(!marks.is_empty(), "{case}: no mark");
                        let labels: Vec<String> = marks.iter().map(|m| label(m.value)).collect();
                        let distinct: HashSet<&String> = labels.iter().collect();
                        assert_eq!(distinct.len(), labels.len(), "{case}: {labels:?}");
                        for (m, l) in marks.iter().zip(&labels) {
                            assert!(
                                m.value >= lo - 1e-12 && m.value <= lo + span + 1e-12,
                                "{case}: {l} outside"
                            );
                            assert!(m.step_size * ppu >= 99.0, "{case}: {l} would be hidden");
                            if span >= 1.0 {
                                // A range of a decade or more: one significant digit, 1-9.
                                let x = 10f64.powf(m.value);
                                assert_eq!(significant_digits(x), 1, "{case}: {l} is odd");
                            }
                        }
                        for pair in marks.windows(2) {
                            let apart = (pair[1].value - pair[0].value) * ppu;
                            assert!(apart >= gap - 1e-9, "{case}: {labels:?} overlap");
                            // At least one label every few decades whenever five fit.
                            if 5.0 * ppu >= gap {
                                assert!(pair[1].value - pair[0].value <= 5.0 + 1e-9, "{case}");
                            }
                        }
                        checked += 1;
                    }
                }
            }
            lo += 0.37;
        }
        assert!(checked > 10_000);
    }

    #[test]
    fn decades_come_first_then_two_and_five() {
        // Three decades over 750 points: every decade and the 2s and 5s between them.
        let marks = log_marks((-3.0, 0.0), 250.0, LOG_X_GAP);
        let labels: Vec<String> = marks.iter().map(|m| label(m.value)).collect();
        for want in ["1e-3", "0.01", "0.1", "1", "2e-3", "5e-3", "0.05", "0.5"] {
            assert!(labels.iter().any(|l| l == want), "{want} in {labels:?}");
        }
        // Twelve decades in a short plot: every other (or fifth) decade, never odd values.
        let marks = log_marks((-10.0, 2.0), 150.0 / 12.0, LOG_Y_GAP);
        assert!(marks.iter().all(|m| m.value.fract() == 0.0), "{marks:?}");
        assert!(marks.len() >= 3);
    }

    /// Over a sweep of ranges and plot heights: marks 1-2-5 apart, at least `LINEAR_Y_GAP` points
    /// apart, labels distinct, and at least three whenever three of the largest steps fit.
    #[test]
    fn linear_ticks_carry_three_labels_when_they_fit() {
        let mut checked = 0;
        for (lo, hi) in [
            (0.0, 180.0),
            (0.0, 175.3),
            (-3.0, 95.0),
            (0.0, 0.7),
            (0.02, 0.031),
            (-1e-3, 2e-3),
            (10.0, 10.5),
            (0.0, 12_345.0),
        ] {
            for pixels in [60.0, 100.0, 150.0, 240.0, 600.0, 1400.0] {
                let ppu = pixels / (hi - lo);
                let marks = linear_marks((lo, hi), ppu, LINEAR_Y_GAP);
                let case = format!("[{lo}, {hi}] at {pixels} px");
                let labels: Vec<String> = marks
                    .iter()
                    .map(|m| format!("{:.*}", step_decimals(m.step_size), m.value))
                    .collect();
                let distinct: HashSet<&String> = labels.iter().collect();
                assert_eq!(distinct.len(), labels.len(), "{case}: {labels:?}");
                // A 1-2-5 step is at most 2.5 gaps: three steps fit in 7.5 gaps, two in 5.
                let least = if pixels >= 7.5 * LINEAR_Y_GAP {
                    3
                } else if pixels >= 5.0 * LINEAR_Y_GAP {
                    2
                } else {
                    1
                };
                assert!(labels.len() >= least, "{case}: {labels:?}");
                for m in &marks {
                    assert!(m.value >= lo - 1e-12 && m.value <= hi + 1e-12, "{case}");
                    assert!(m.step_size * ppu >= LINEAR_Y_GAP * (1.0 - 1e-9), "{case}");
                    let mantissa = m.step_size / 10f64.powf(m.step_size.log10().floor());
                    assert!(
                        [1.0, 2.0, 5.0].iter().any(|n| (mantissa - n).abs() < 1e-6),
                        "{case}: step {}",
                        m.step_size
                    );
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 48);
        // The case seen in the app: 0-180 degrees in a 150-point plot reads 0, 50, 100, 150.
        let marks = linear_marks((0.0, 180.0), 150.0 / 180.0, LINEAR_Y_GAP);
        let values: Vec<f64> = marks.iter().map(|m| m.value).collect();
        assert_eq!(values, vec![0.0, 50.0, 100.0, 150.0]);
    }
}
