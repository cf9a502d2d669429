//! The Curvature view (EDM section 3, science.md section 6): the turning angle between the slope
//! d_i and the slope d'_i at the Euler predictor, the local error |h| ||d'_i - d_i|| / 2 per step,
//! and a histogram of each trajectory's straightness ||x_N - x_0|| / sum ||x_{i+1} - x_i||.

use egui::Ui;
use egui_plot::{Bar, BarChart, Line, Plot, Points};

use crate::run::store::RunRecord;

use super::plot_style::{
    self, BASELINE, DENOISED, Key, LIVE, SHOWN, StepAxis, Swatch, baseline_style, faint,
    log10_points,
};

/// Bins of the straightness histogram over [0, 1].
const BINS: usize = 20;

/// Counts of values in `BINS` equal bins over [0, 1], as fractions of all values.
pub fn straightness_histogram(values: &[f64]) -> Vec<f64> {
    let mut counts = [0.0; BINS];
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    for v in &finite {
        let bin = ((v.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1);
        counts[bin] += 1.0;
    }
    let total = finite.len().max(1) as f64;
    counts.iter().map(|c| c / total).collect()
}

/// Angle and local error side by side, then the straightness histogram (unless `compact`).
/// `shown` is the state the views show; returns the step a click asked for.
pub fn show(
    ui: &mut Ui,
    live: &RunRecord,
    baseline: Option<&RunRecord>,
    shown: usize,
    compact: bool,
    salt: &str,
) -> Option<usize> {
    let height = ui.available_height();
    // Each plot's share of the height, its title row included.
    let share = if compact { height } else { height * 0.55 };
    let mut clicked = None;
    ui.columns(2, |cols| {
        clicked = angle_plot(&mut cols[0], live, baseline, shown, share, salt);
        clicked = error_plot(&mut cols[1], live, baseline, shown, share, salt).or(clicked);
    });
    if !compact {
        histogram(ui, live, baseline, salt);
    }
    clicked
}

/// The keys of a per-step plot.
fn step_keys(name: &str, color: egui::Color32, with_baseline: bool) -> Vec<Key> {
    let mut keys = vec![Key::new(name, color, Swatch::Line)];
    if with_baseline {
        keys.push(Key::new("baseline", BASELINE, Swatch::Dashed));
    }
    keys.push(Key::new("shown step", SHOWN, Swatch::Line));
    keys
}

/// The plot height left in a share of `share` points once the title row is drawn.
fn plot_height(ui: &Ui, top: f32, share: f32) -> f32 {
    (share - (ui.cursor().top() - top)).max(100.0)
}

/// The turning-angle plot's id: from its salt alone, not its place in the layout, so that its
/// memory (`egui_plot::PlotMemory`, the axes' transform) can be found from outside.
pub fn angle_plot_id(salt: &str) -> egui::Id {
    egui::Id::unique(("angle-plot", salt))
}

fn angle_plot(
    ui: &mut Ui,
    live: &RunRecord,
    baseline: Option<&RunRecord>,
    shown: usize,
    share: f32,
    salt: &str,
) -> Option<usize> {
    let top = ui.cursor().top();
    plot_style::title_and_key(
        ui,
        "turning angle θ_i (degrees)",
        "θ_i = angle(d_i, d'_i), d = (x − D(x; σ))/σ, d' at the Euler predictor; 0 = straight (EDM, Karras et al. 2022, arXiv 2206.00364, §3). Samplers without a corrector use the next step's slope. Hover a point for its numbers, click it to show that step.",
        &step_keys("θ", LIVE, baseline.is_some()),
    );
    let series = |run: &RunRecord| -> Vec<[f64; 2]> {
        run.records
            .iter()
            .filter(|r| r.angle_deg.is_finite())
            .map(|r| [r.step as f64, r.angle_deg])
            .collect()
    };
    let (width, radius) = (plot_style::size(ui, 2.0), plot_style::size(ui, 2.5));
    let response = plot_style::show(
        ui,
        plot_style::linear_y(Plot::new(format!("{salt}-angle")))
            .id(angle_plot_id(salt))
            // Every step in range: moving the shown-step marker never rescales the axis.
            .include_x(0.0)
            .include_x(live.spec.schedule.steps as f64)
            .height(plot_height(ui, top, share))
            .x_axis_label("step i")
            .include_y(0.0)
            .label_formatter(plot_style::step_hover(live, StepAxis::Index)),
        |plot| {
            let points = series(live);
            plot.line(
                Line::new("θ", points.clone())
                    .id("angle-line")
                    .color(LIVE)
                    .width(width),
            );
            plot.points(
                Points::new("θ", points)
                    .id("angle-points")
                    .color(LIVE)
                    .radius(radius),
            );
            if let Some(b) = baseline {
                plot.line(
                    Line::new("baseline θ", series(b))
                        .color(BASELINE)
                        .width(0.75 * width)
                        .style(baseline_style()),
                );
            }
            plot_style::shown_step_marker(plot, shown, width);
        },
    );
    plot_style::clicked_step(&response, live, StepAxis::Index)
}

fn error_plot(
    ui: &mut Ui,
    live: &RunRecord,
    baseline: Option<&RunRecord>,
    shown: usize,
    share: f32,
    salt: &str,
) -> Option<usize> {
    let top = ui.cursor().top();
    plot_style::title_and_key(
        ui,
        "local error e_i (log)",
        "e_i = |σ_{i+1} − σ_i| ||d'_i − d_i|| / 2, RMS per dimension: Heun minus Euler (EDM, Karras et al. 2022, arXiv 2206.00364, §3). Hover a point for its numbers, click it to show that step.",
        &step_keys("e", DENOISED, baseline.is_some()),
    );
    let series =
        |run: &RunRecord| log10_points(run.records.iter().map(|r| (r.step as f64, r.local_error)));
    let (width, radius) = (plot_style::size(ui, 2.0), plot_style::size(ui, 2.5));
    let plot = Plot::new(format!("{salt}-error"))
        .include_x(0.0)
        .include_x(live.spec.schedule.steps as f64)
        .height(plot_height(ui, top, share))
        .x_axis_label("step i")
        .label_formatter(plot_style::step_hover(live, StepAxis::Index));
    let response = plot_style::show(ui, plot_style::log_y(plot), |plot| {
        let points = series(live);
        plot.line(
            Line::new("e", points.clone())
                .id("error-line")
                .color(DENOISED)
                .width(width),
        );
        plot.points(
            Points::new("e", points)
                .id("error-points")
                .color(DENOISED)
                .radius(radius),
        );
        if let Some(b) = baseline {
            plot.line(
                Line::new("baseline e", series(b))
                    .color(BASELINE)
                    .width(0.75 * width)
                    .style(baseline_style()),
            );
        }
        plot_style::shown_step_marker(plot, shown, width);
    });
    plot_style::clicked_step(&response, live, StepAxis::Index)
}

fn histogram(ui: &mut Ui, live: &RunRecord, baseline: Option<&RunRecord>, salt: &str) {
    let mut keys = vec![Key::new("trajectories", faint(LIVE, 180), Swatch::Band)];
    if baseline.is_some() {
        keys.push(Key::new("baseline", BASELINE, Swatch::Dashed));
    }
    plot_style::title_and_key(
        ui,
        "straightness ||x_N − x_0|| / Σ||x_{i+1} − x_i|| (1 = straight line)",
        "Per trajectory over the diagnostics subset, at the end of the run (EDM, Karras et al. 2022, arXiv 2206.00364, §3: straighter trajectories need fewer steps).",
        &keys,
    );
    if live.straightness.is_empty() {
        ui.label("(when the run finishes)");
        return;
    }
    let width = 1.0 / BINS as f64;
    let bars: Vec<Bar> = straightness_histogram(&live.straightness)
        .into_iter()
        .enumerate()
        .map(|(k, f)| Bar::new((k as f64 + 0.5) * width, f).width(width * 0.9))
        .collect();
    let base_line: Option<Vec<[f64; 2]>> =
        baseline.filter(|b| !b.straightness.is_empty()).map(|b| {
            // A step outline so it reads against the bars.
            straightness_histogram(&b.straightness)
                .into_iter()
                .enumerate()
                .flat_map(|(k, f)| [[k as f64 * width, f], [(k + 1) as f64 * width, f]])
                .collect()
        });
    plot_style::show(
        ui,
        Plot::new(format!("{salt}-straightness"))
            .height(ui.available_height().max(100.0))
            .x_axis_label("straightness")
            .y_axis_label("fraction")
            .include_x(0.0)
            .include_x(1.0)
            .include_y(0.0),
        |plot| {
            plot.bar_chart(BarChart::new("trajectories", bars).color(faint(LIVE, 180)));
            if let Some(b) = base_line {
                plot.line(
                    Line::new("baseline", b)
                        .color(BASELINE)
                        .style(baseline_style())
                        .width(1.5),
                );
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_fractions_sum_to_one_and_clamp() {
        let h = straightness_histogram(&[0.0, 0.5, 1.0, 1.2, f64::NAN]);
        assert_eq!(h.len(), BINS);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(
            h[BINS - 1],
            0.5,
            "1.0 and the clamped 1.2 share the top bin"
        );
        assert_eq!(h[0], 0.25);
    }
}
