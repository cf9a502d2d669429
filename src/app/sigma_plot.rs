//! The Noise level view: the estimated noise level sigma_hat(x_i) against the scheduled sigma_i
//! on log-log axes with the diagonal (median and 10-90% band over the diagnostics subset), and
//! the noise shift delta_i = ln(sigma_hat / sigma_i) per step (science.md section 5; the
//! noise-shift picture of the NAG paper, Zhong et al. 2025, arXiv 2510.12497). Hovering a point
//! shows the step's numbers; clicking one shows that step's state. Beside the per-sample median,
//! the batch's pooled maximum-likelihood sigma_hat, which carries the picture where the
//! per-sample posteriors fall back on their prior (low dimension, small sigma): those steps are
//! marked. With a learned noise-level estimator g(sigma | x) loaded (`RunSpec::estimator`), its
//! sigma_hat (median and band over the same subset, computed on the worker) is drawn beside the
//! exact posterior's.

use egui::{Color32, RichText, Ui};
use egui_plot::{FilledArea, HLine, Line, Plot, Points, VLine};

use crate::core::diagnostics::{StepRecord, prior_dominated_width};
use crate::run::spec::DenoiserSpec;
use crate::run::store::RunRecord;

use super::plot_style::{
    self, BASELINE, Key, LIVE, REFERENCE, SHOWN, StepAxis, Swatch, baseline_style, faint,
    log10_points,
};

/// Records with a usable sigma_hat (diagnostics on, finite).
fn usable(run: &RunRecord) -> Vec<&StepRecord> {
    run.records
        .iter()
        .filter(|r| r.sigma > 0.0 && r.sigma_hat.median.is_finite() && r.sigma_hat.median > 0.0)
        .collect()
}

const SIGMA_TIP: &str = "σ_hat = exp E[ln σ | x] under the exact posterior p(σ|x) prop. to p(x; σ) π(σ) (log-sum-exp on a log grid); median and 10–90% band over the diagnostics subset. Noise-level estimation as in San-Roman et al. 2021 (arXiv 2104.02600) and the noise-shift analysis of Zhong et al. 2025 (NAG, arXiv 2510.12497). Below the data's own scale a low-dimensional state says little about σ: the posterior falls back on the prior and σ_hat levels off. Hover a point for its numbers, click it to show that step.";

const POOLED_TIP: &str = "Pooled σ_hat = argmax_σ Σ_b ln p(x_b; σ): the noise level under which the whole diagnostics subset is most likely. One sample of a low-dimensional state says little about a small σ; the batch together does. Steps whose per-sample posteriors are wider than twice a D-dimensional noise measurement (std of ln σ > 2/√(2D)) are marked: there the per-sample σ_hat is the prior's, and the pooled one is the estimate to read.";

/// The pooled estimate's colour, and the marker of prior-dominated steps.
const POOLED: Color32 = Color32::from_rgb(110, 215, 110);
const PRIOR_DOMINATED: Color32 = Color32::from_rgb(200, 120, 220);

const LEARNED_TIP: &str = "σ_hat of the learned noise-level estimator g(σ | x) (a network trained by the Training tab or `noisescope train --estimator` to predict the mean and log-variance of ln σ from x: the g_phi of Zhong et al. 2025, arXiv 2510.12497, and the P_theta of San-Roman et al. 2021, arXiv 2104.02600): exp of its mean, median and 10–90% band over the same diagnostics subset, computed on the worker. Where it follows the exact posterior, the network has learned to read the noise level; outside its trained σ range it extrapolates.";

/// The learned estimator's colour.
const LEARNED: Color32 = Color32::from_rgb(235, 95, 200);

/// Records with a finite learned sigma_hat (median and band).
fn with_learned<'a>(records: &[&'a StepRecord]) -> Vec<&'a StepRecord> {
    records
        .iter()
        .copied()
        .filter(|r| {
            let s = &r.learned_sigma_hat;
            [s.median, s.p10, s.p90]
                .iter()
                .all(|v| v.is_finite() && *v > 0.0)
        })
        .collect()
}

/// The learned estimator's file name, for the key.
fn estimator_name(run: &RunRecord) -> String {
    run.spec.estimator.as_deref().map_or_else(String::new, |p| {
        p.file_stem().map_or_else(
            || p.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        )
    })
}

/// Records with a finite pooled sigma_hat.
fn pooled(records: &[&StepRecord]) -> Vec<[f64; 2]> {
    records
        .iter()
        .filter(|r| r.sigma_hat_pooled.is_finite() && r.sigma_hat_pooled > 0.0)
        .map(|r| [r.sigma.log10(), r.sigma_hat_pooled.log10()])
        .collect()
}

const DELTA_TIP: &str = "The noise shift of x_i: > 0 means the state looks noisier than scheduled. Accumulated error e ~ N(0, s_e²) gives σ_eff = √(σ² + s_e²), so δ ≥ 0 in that model (Zhong et al. 2025, NAG, arXiv 2510.12497); with the exact denoiser the sign is the discretisation's.";

/// The keys of both plots: the live curves, the baseline when there is one, the shown step.
fn keys(first: &str, band: &str, with_baseline: bool, reference: &str) -> Vec<Key> {
    let mut keys = vec![
        Key::new(reference, REFERENCE, Swatch::Dotted),
        Key::new(band, faint(LIVE, 90), Swatch::Band),
        Key::new(first, LIVE, Swatch::Line),
    ];
    if with_baseline {
        keys.push(Key::new("baseline", BASELINE, Swatch::Dashed));
    }
    keys.push(Key::new("shown step", SHOWN, Swatch::Line));
    keys
}

/// Shows both plots in the available space; `shown` is the state the views show. Returns the
/// step a click asked for.
pub fn show(
    ui: &mut Ui,
    live: &RunRecord,
    baseline: Option<&RunRecord>,
    shown: usize,
    salt: &str,
) -> Option<usize> {
    if !live.spec.diagnostics.enabled {
        ui.label("Diagnostics are off for this run (Run -> diagnostics).");
        return None;
    }
    let height = ui.available_height();
    let records = usable(live);
    let base = baseline.map(usable).unwrap_or_default();
    let (lo, hi) = (
        live.spec.schedule.sigma_min.log10() - 0.3,
        live.spec.schedule.sigma_max.log10() + 0.3,
    );
    let width = plot_style::size(ui, 2.0);
    let radius = plot_style::size(ui, 2.5);
    let shown_sigma = live.steps.get(shown).map_or(0.0, |s| s.sigma);
    let shown_record = records.iter().find(|r| r.step == shown).copied();
    let learned = with_learned(&records);
    let mut sigma_keys = keys("median σ_hat", "10–90%", !base.is_empty(), "σ_hat = σ");
    if !learned.is_empty() {
        sigma_keys.push(Key::new("learned σ_hat (g)", LEARNED, Swatch::Line));
    }
    plot_style::title_and_key(ui, "σ_hat(x_i) vs σ_i, log-log", SIGMA_TIP, &sigma_keys);
    if live.spec.denoiser != DenoiserSpec::Exact {
        ui.label(
            RichText::new(format!(
                "a learned denoiser ({}): σ_hat is the exact posterior of the data, so δ is the network's true noise shift",
                live.spec.denoiser.label()
            ))
            .weak()
            .small(),
        );
    }
    let dim = live.state(0).map_or(1, |x| x.dim);
    let dominated: Vec<&StepRecord> = records
        .iter()
        .copied()
        .filter(|r| r.prior_dominated(dim))
        .collect();
    let pooled_points = pooled(&records);
    ui.horizontal_wrapped(|ui| {
        if !pooled_points.is_empty() {
            ui.label(RichText::new("pooled σ_hat (green)").color(POOLED))
                .on_hover_text(POOLED_TIP);
        }
        if !learned.is_empty() {
            ui.label(
                RichText::new(format!(
                    "learned σ_hat, g(σ|x) {} (magenta)",
                    estimator_name(live)
                ))
                .color(LEARNED),
            )
            .on_hover_text(LEARNED_TIP);
        }
        if let (Some(first), Some(last)) = (dominated.first(), dominated.last()) {
            let (hi_sigma, lo_sigma) = (
                first.sigma.max(last.sigma),
                first.sigma.min(last.sigma),
            );
            ui.label(
                RichText::new(format!(
                    "per-sample σ_hat prior-dominated (violet diamonds) at {} of {} steps (σ_i {}–{}, posterior std of ln σ > {:.2}): read the pooled σ_hat there",
                    dominated.len(),
                    records.len(),
                    plot_style::format_number(lo_sigma),
                    plot_style::format_number(hi_sigma),
                    prior_dominated_width(dim)
                ))
                .color(PRIOR_DOMINATED),
            )
            .on_hover_text(POOLED_TIP);
        }
    });
    let plot = Plot::new(format!("{salt}-sigma"))
        .height((height * 0.56).max(120.0))
        .x_axis_label("σ_i (noise level scheduled)")
        .y_axis_label("σ_hat")
        .invert_x(true)
        .label_formatter(plot_style::step_hover(live, StepAxis::LogSigma));
    let top = plot_style::show(ui, plot_style::log_y(plot_style::log_x(plot)), |plot| {
        plot.line(
            Line::new("σ_hat = σ", vec![[lo, lo], [hi, hi]])
                .color(REFERENCE)
                .allow_hover(false)
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
            plot.add(FilledArea::new("σ_hat 10–90%", &xs, &p10, &p90).fill_color(faint(LIVE, 50)));
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
                .width(width),
        );
        plot.points(
            Points::new("median σ_hat", median)
                .id("median-points")
                .color(LIVE)
                .radius(radius),
        );
        if learned.len() >= 2 {
            let xs: Vec<f64> = learned.iter().map(|r| r.sigma.log10()).collect();
            let p10: Vec<f64> = learned
                .iter()
                .map(|r| r.learned_sigma_hat.p10.log10())
                .collect();
            let p90: Vec<f64> = learned
                .iter()
                .map(|r| r.learned_sigma_hat.p90.log10())
                .collect();
            plot.add(
                FilledArea::new("learned σ_hat 10–90%", &xs, &p10, &p90)
                    .fill_color(faint(LEARNED, 40)),
            );
        }
        if !learned.is_empty() {
            let median = log10_points(
                learned
                    .iter()
                    .map(|r| (r.sigma.log10(), r.learned_sigma_hat.median)),
            );
            plot.line(
                Line::new("learned σ_hat (g)", median)
                    .id("learned-line")
                    .color(LEARNED)
                    .width(width),
            );
        }
        if !pooled_points.is_empty() {
            plot.line(
                Line::new("pooled σ_hat", pooled_points.clone())
                    .id("pooled-line")
                    .color(POOLED)
                    .width(width),
            );
        }
        if !dominated.is_empty() {
            let marks = log10_points(
                dominated
                    .iter()
                    .map(|r| (r.sigma.log10(), r.sigma_hat.median)),
            );
            plot.points(
                Points::new("per-sample σ_hat prior-dominated", marks)
                    .id("prior-dominated")
                    .color(PRIOR_DOMINATED)
                    .shape(egui_plot::MarkerShape::Diamond)
                    .filled(false)
                    .radius(1.8 * radius),
            );
        }
        if !base.is_empty() {
            let b = log10_points(base.iter().map(|r| (r.sigma.log10(), r.sigma_hat.median)));
            plot.line(
                Line::new("baseline σ_hat", b)
                    .color(BASELINE)
                    .style(baseline_style())
                    .width(0.75 * width),
            );
        }
        if shown_sigma > 0.0 {
            plot.vline(
                VLine::new("shown step", shown_sigma.log10())
                    .color(SHOWN)
                    .width(0.75 * width)
                    .allow_hover(false),
            );
        }
        if let Some(r) = shown_record {
            plot.points(
                Points::new(
                    "shown step",
                    vec![[r.sigma.log10(), r.sigma_hat.median.max(1e-300).log10()]],
                )
                .id("shown-sigma")
                .color(SHOWN)
                .filled(false)
                .radius(2.2 * radius),
            );
        }
    });
    let clicked = plot_style::clicked_step(&top, live, StepAxis::LogSigma);
    plot_style::title_and_key(
        ui,
        "δ_i = ln(σ_hat / σ_i) per step",
        DELTA_TIP,
        &keys("median δ", "10–90%", !base.is_empty(), "δ = 0"),
    );
    // The key row and the axis label above leave this much for the plot.
    // Every step in range from the start: moving the shown-step marker never rescales the axis.
    let plot = Plot::new(format!("{salt}-delta"))
        .include_x(0.0)
        .include_x(live.spec.schedule.steps as f64)
        .height(ui.available_height().max(100.0))
        .x_axis_label("step i")
        .y_axis_label("δ")
        .label_formatter(plot_style::step_hover(live, StepAxis::Index));
    let bottom = plot_style::show(ui, plot, |plot| {
        plot.hline(HLine::new("δ = 0", 0.0).color(REFERENCE).allow_hover(false));
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
                .width(width),
        );
        plot.points(
            Points::new("median δ", median)
                .id("delta-points")
                .color(LIVE)
                .radius(radius),
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
                    .width(0.75 * width),
            );
        }
        let pooled_delta: Vec<[f64; 2]> = records
            .iter()
            .filter(|r| r.sigma_hat_pooled.is_finite() && r.sigma_hat_pooled > 0.0)
            .map(|r| [r.step as f64, (r.sigma_hat_pooled / r.sigma).ln()])
            .collect();
        let learned_delta: Vec<[f64; 2]> = learned
            .iter()
            .map(|r| [r.step as f64, (r.learned_sigma_hat.median / r.sigma).ln()])
            .collect();
        if !learned_delta.is_empty() {
            plot.line(
                Line::new("learned δ (g)", learned_delta)
                    .id("learned-delta")
                    .color(LEARNED)
                    .width(width),
            );
        }
        if !pooled_delta.is_empty() {
            plot.line(
                Line::new("pooled δ", pooled_delta)
                    .id("pooled-delta")
                    .color(POOLED)
                    .width(width),
            );
        }
        plot_style::shown_step_marker(plot, shown, width);
        if let Some(r) = shown_record.filter(|r| r.delta.median.is_finite()) {
            plot.points(
                Points::new("shown step", vec![[r.step as f64, r.delta.median]])
                    .id("shown-delta")
                    .color(SHOWN)
                    .filled(false)
                    .radius(2.2 * radius),
            );
        }
    });
    clicked.or(plot_style::clicked_step(&bottom, live, StepAxis::Index))
}
