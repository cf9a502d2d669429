//! The Noise level view: the estimated noise level sigma_hat(x_i) against the scheduled sigma_i
//! on log-log axes with the diagonal (median and 10-90% band over the diagnostics subset), and
//! the noise shift delta_i = ln(sigma_hat / sigma_i) per step (science.md section 5; the
//! noise-shift picture of the NAG paper, Zhong et al. 2025, arXiv 2510.12497).

use egui::{RichText, Ui};
use egui_plot::{FilledArea, HLine, Line, Plot, Points, VLine};

use crate::core::diagnostics::StepRecord;
use crate::run::store::RunRecord;

use super::plot_style::{self, BASELINE, LIVE, REFERENCE, baseline_style, faint, log10_points};

/// Records with a usable sigma_hat (diagnostics on, finite).
fn usable(run: &RunRecord) -> Vec<&StepRecord> {
    run.records
        .iter()
        .filter(|r| r.sigma > 0.0 && r.sigma_hat.median.is_finite() && r.sigma_hat.median > 0.0)
        .collect()
}

/// Shows both plots in the available space; `shown_sigma` marks the replay cursor.
pub fn show(
    ui: &mut Ui,
    live: &RunRecord,
    baseline: Option<&RunRecord>,
    shown_sigma: f64,
    salt: &str,
) {
    if !live.spec.diagnostics.enabled {
        ui.label("Diagnostics are off for this run (Run -> diagnostics).");
        return;
    }
    let height = ui.available_height();
    let records = usable(live);
    let base = baseline.map(usable).unwrap_or_default();
    let (lo, hi) = (
        live.spec.schedule.sigma_min.log10() - 0.3,
        live.spec.schedule.sigma_max.log10() + 0.3,
    );
    ui.label(RichText::new("σ_hat(x_i) vs σ_i, log-log; diagonal = no shift").strong())
        .on_hover_text("σ_hat = exp E[ln σ | x] under the exact posterior p(σ|x) prop. to p(x; σ) π(σ) (log-sum-exp on a log grid); median and 10–90% band over the diagnostics subset (science.md §5). Below the data's own scale a low-dimensional state says little about σ: the posterior falls back on the prior and σ_hat levels off.");
    if live.state(0).is_some_and(|x| x.dim <= 16) {
        ui.label(RichText::new("low dimension: below the data's own scale σ_hat levels off at the prior (not a shift)").weak().small());
    }
    plot_style::show(
        ui,
        Plot::new(format!("{salt}-sigma"))
            .height((height * 0.58).max(120.0))
            .x_axis_label("σ_i")
            .y_axis_label("σ_hat")
            .x_axis_formatter(plot_style::log_axis_label)
            .y_axis_formatter(plot_style::log_axis_label)
            .invert_x(true),
        |plot| {
            plot.line(
                Line::new("diagonal σ_hat = σ", vec![[lo, lo], [hi, hi]])
                    .color(REFERENCE)
                    .style(egui_plot::LineStyle::Dotted { spacing: 6.0 }),
            );
            let xs: Vec<f64> = records.iter().map(|r| r.sigma.log10()).collect();
            let band: Vec<(f64, f64)> = records
                .iter()
                .map(|r| {
                    (
                        r.sigma_hat.p10.max(1e-300).log10(),
                        r.sigma_hat.p90.max(1e-300).log10(),
                    )
                })
                .collect();
            if xs.len() >= 2 && band.iter().all(|(a, b)| a.is_finite() && b.is_finite()) {
                let (p10, p90): (Vec<f64>, Vec<f64>) = band.into_iter().unzip();
                plot.add(
                    FilledArea::new("σ_hat 10–90%", &xs, &p10, &p90).fill_color(faint(LIVE, 50)),
                );
            }
            let median = log10_points(
                records
                    .iter()
                    .map(|r| (r.sigma.log10(), r.sigma_hat.median)),
            );
            plot.line(
                Line::new("median σ_hat", median.clone())
                    .id("median-line")
                    .color(LIVE)
                    .width(2.0),
            );
            plot.points(
                Points::new("median σ_hat", median)
                    .id("median-points")
                    .color(LIVE)
                    .radius(2.5),
            );
            if !base.is_empty() {
                let b = log10_points(base.iter().map(|r| (r.sigma.log10(), r.sigma_hat.median)));
                plot.line(
                    Line::new("baseline σ_hat", b)
                        .color(BASELINE)
                        .style(baseline_style())
                        .width(1.5),
                );
            }
            if shown_sigma > 0.0 {
                plot.vline(
                    VLine::new("shown step", shown_sigma.log10()).color(faint(REFERENCE, 80)),
                );
            }
        },
    );
    ui.label(RichText::new("δ_i = ln(σ_hat / σ_i) per step").strong())
        .on_hover_text("The noise shift of x_i (science.md §5): > 0 means the state looks noisier than scheduled. Accumulated error e ~ N(0, s_e²) gives σ_eff = √(σ² + s_e²), so δ ≥ 0 in that model (seed 000).");
    plot_style::show(
        ui,
        Plot::new(format!("{salt}-delta"))
            .height(ui.available_height().max(100.0))
            .x_axis_label("step i")
            .y_axis_label("δ"),
        |plot| {
            plot.hline(HLine::new("δ = 0", 0.0).color(REFERENCE));
            let finite: Vec<&&StepRecord> = records
                .iter()
                .filter(|r| r.delta.median.is_finite())
                .collect();
            let xs: Vec<f64> = finite.iter().map(|r| r.step as f64).collect();
            let p10: Vec<f64> = finite.iter().map(|r| r.delta.p10).collect();
            let p90: Vec<f64> = finite.iter().map(|r| r.delta.p90).collect();
            if xs.len() >= 2 && p10.iter().chain(&p90).all(|v| v.is_finite()) {
                plot.add(FilledArea::new("δ 10–90%", &xs, &p10, &p90).fill_color(faint(LIVE, 50)));
            }
            let median: Vec<[f64; 2]> = finite
                .iter()
                .map(|r| [r.step as f64, r.delta.median])
                .collect();
            plot.line(
                Line::new("median δ", median.clone())
                    .id("delta-line")
                    .color(LIVE)
                    .width(2.0),
            );
            plot.points(
                Points::new("median δ", median)
                    .id("delta-points")
                    .color(LIVE)
                    .radius(2.5),
            );
            if !base.is_empty() {
                let b: Vec<[f64; 2]> = base
                    .iter()
                    .filter(|r| r.delta.median.is_finite())
                    .map(|r| [r.step as f64, r.delta.median])
                    .collect();
                plot.line(
                    Line::new("baseline δ", b)
                        .color(BASELINE)
                        .style(baseline_style())
                        .width(1.5),
                );
            }
        },
    );
}
