//! The Curvature view (EDM section 3, science.md section 6): the turning angle between the slope
//! d_i and the slope d'_i at the Euler predictor, the local error |h| ||d'_i - d_i|| / 2 per step,
//! and a histogram of each trajectory's straightness ||x_N - x_0|| / sum ||x_{i+1} - x_i||.

use egui::{RichText, Ui};
use egui_plot::{Bar, BarChart, Line, Plot, Points};

use crate::run::store::RunRecord;

use super::plot_style::{self, BASELINE, DENOISED, LIVE, baseline_style, faint, log10_points};

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
pub fn show(
    ui: &mut Ui,
    live: &RunRecord,
    baseline: Option<&RunRecord>,
    compact: bool,
    salt: &str,
) {
    let height = ui.available_height();
    // Leave room for each plot's title row and axis label.
    let plot_height = if compact {
        (height - 28.0).max(100.0)
    } else {
        (height * 0.55).max(140.0)
    };
    ui.columns(2, |cols| {
        angle_plot(&mut cols[0], live, baseline, plot_height, salt);
        error_plot(&mut cols[1], live, baseline, plot_height, salt);
    });
    if !compact {
        histogram(ui, live, baseline, salt);
    }
}

fn angle_plot(
    ui: &mut Ui,
    live: &RunRecord,
    baseline: Option<&RunRecord>,
    height: f32,
    salt: &str,
) {
    ui.label(RichText::new("turning angle θ_i (degrees)").strong())
        .on_hover_text("θ_i = angle(d_i, d'_i), d = (x − D(x; σ))/σ, d' at the Euler predictor; 0 = straight (EDM §3, science.md §6). Samplers without a corrector use the next step's slope.");
    let series = |run: &RunRecord| -> Vec<[f64; 2]> {
        run.records
            .iter()
            .filter(|r| r.angle_deg.is_finite())
            .map(|r| [r.step as f64, r.angle_deg])
            .collect()
    };
    plot_style::show(
        ui,
        Plot::new(format!("{salt}-angle"))
            .height(height)
            .x_axis_label("step i")
            .include_y(0.0),
        |plot| {
            let points = series(live);
            plot.line(
                Line::new("θ", points.clone())
                    .id("angle-line")
                    .color(LIVE)
                    .width(2.0),
            );
            plot.points(
                Points::new("θ", points)
                    .id("angle-points")
                    .color(LIVE)
                    .radius(2.5),
            );
            if let Some(b) = baseline {
                plot.line(
                    Line::new("baseline θ", series(b))
                        .color(BASELINE)
                        .style(baseline_style()),
                );
            }
        },
    );
}

fn error_plot(
    ui: &mut Ui,
    live: &RunRecord,
    baseline: Option<&RunRecord>,
    height: f32,
    salt: &str,
) {
    ui.label(RichText::new("local error e_i (log)").strong())
        .on_hover_text("e_i = |σ_{i+1} − σ_i| ||d'_i − d_i|| / 2, RMS per dimension: Heun minus Euler (EDM §3, science.md §6).");
    let series =
        |run: &RunRecord| log10_points(run.records.iter().map(|r| (r.step as f64, r.local_error)));
    plot_style::show(
        ui,
        Plot::new(format!("{salt}-error"))
            .height(height)
            .x_axis_label("step i")
            .y_axis_formatter(plot_style::log_axis_label),
        |plot| {
            let points = series(live);
            plot.line(
                Line::new("e", points.clone())
                    .id("error-line")
                    .color(DENOISED)
                    .width(2.0),
            );
            plot.points(
                Points::new("e", points)
                    .id("error-points")
                    .color(DENOISED)
                    .radius(2.5),
            );
            if let Some(b) = baseline {
                plot.line(
                    Line::new("baseline e", series(b))
                        .color(BASELINE)
                        .style(baseline_style()),
                );
            }
        },
    );
}

fn histogram(ui: &mut Ui, live: &RunRecord, baseline: Option<&RunRecord>, salt: &str) {
    ui.label(
        RichText::new("straightness ||x_N − x_0|| / Σ||x_{i+1} − x_i|| (1 = straight line)")
            .strong(),
    )
    .on_hover_text(
        "Per trajectory over the diagnostics subset, at the end of the run (science.md §6).",
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
