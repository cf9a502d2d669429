//! The Training tab's live plots, drawn from the training record (run/training_record.rs): the
//! loss curve (raw and smoothed), the loss per sigma on log axes (unweighted mmse/dim and
//! EDM-weighted, the exact denoiser's as the floor), the preview of samples from the EMA weights
//! (made on the trainer thread), and the information profile with the allocation of training
//! noise levels over ln sigma (log-normal against InfoNoise). Only cheap closed forms are
//! computed here (the log-normal density, EDM's weight).

use egui::{TextureHandle, Ui};
use egui_plot::{Line, Plot, Points};

use super::plot_style::{
    self, BASELINE, DATA, DENOISED, Key, LIVE, REFERENCE, Swatch, baseline_style, faint,
    log10_points,
};
use super::tips;
use crate::run::training::PreviewSamples;
use crate::run::training_record::TrainingRecord;
use crate::train::sigma_dist::SigmaDistribution;

/// Points drawn per curve at most: longer curves are thinned evenly.
const MAX_CURVE_POINTS: usize = 2000;

/// Every `k`-th point so that at most `MAX_CURVE_POINTS` remain (the last one always kept).
fn thinned<T: Copy>(values: &[T]) -> Vec<T> {
    let stride = values.len().div_ceil(MAX_CURVE_POINTS).max(1);
    let mut out: Vec<T> = values.iter().step_by(stride).copied().collect();
    if let Some(last) = values.last()
        && !(values.len() - 1).is_multiple_of(stride)
    {
        out.push(*last);
    }
    out
}

/// EDM's loss weight lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (EDM
/// Table 1): the weighted loss is lambda * mmse.
fn edm_weight(sigma: f64, sigma_data: f64) -> f64 {
    (sigma * sigma + sigma_data * sigma_data) / (sigma * sigma_data).powi(2)
}

/// The log-normal density of ln sigma ~ N(mean, std^2), per d ln sigma.
fn lognormal_density(sigma: f64, mean: f64, std: f64) -> f64 {
    let z = (sigma.ln() - mean) / std;
    (-0.5 * z * z).exp() / (std * (2.0 * std::f64::consts::PI).sqrt())
}

/// The four plots: loss and per-sigma loss above, preview and information profile below.
pub fn show(ui: &mut Ui, record: &TrainingRecord, texture: Option<&TextureHandle>) {
    let height = ui.available_height();
    let half = (0.5 * height - 30.0).max(140.0);
    ui.columns(2, |cols| {
        cols[0].allocate_ui(egui::vec2(cols[0].available_width(), half), |ui| {
            loss_curve(ui, record)
        });
        cols[1].allocate_ui(egui::vec2(cols[1].available_width(), half), |ui| {
            per_sigma(ui, record)
        });
    });
    ui.columns(2, |cols| {
        cols[0].allocate_ui(egui::vec2(cols[0].available_width(), half), |ui| {
            preview(ui, record, texture)
        });
        cols[1].allocate_ui(egui::vec2(cols[1].available_width(), half), |ui| {
            information(ui, record)
        });
    });
}

fn loss_curve(ui: &mut Ui, record: &TrainingRecord) {
    // An estimator's NLL in ln sigma goes below 0 once it is sure: a linear axis.
    let linear = record.start.as_ref().is_some_and(|s| s.estimator);
    let points = |values: Vec<(usize, f64)>| -> Vec<[f64; 2]> {
        let values = values.into_iter().map(|(s, l)| (s as f64, l));
        if linear {
            values
                .filter(|(_, l)| l.is_finite())
                .map(|(s, l)| [s, l])
                .collect()
        } else {
            log10_points(values)
        }
    };
    plot_style::title_and_key(
        ui,
        if linear {
            "training loss (linear scale)"
        } else {
            "training loss (log scale)"
        },
        tips::TRAIN_LOSS_PLOT,
        &[
            Key::new("per step", faint(LIVE, 90), Swatch::Line),
            Key::new("smoothed", LIVE, Swatch::Line),
        ],
    );
    let raw = points(thinned(&record.losses));
    let smoothed: Vec<(usize, f64)> = record
        .losses
        .iter()
        .zip(&record.smoothed)
        .map(|((s, _), m)| (*s, *m))
        .collect();
    let smoothed = points(thinned(&smoothed));
    let w = plot_style::size(ui, 1.0);
    let plot = Plot::new("training-loss")
        .height(ui.available_height().max(100.0))
        .x_axis_label("step")
        .y_axis_label("loss")
        .label_formatter(plot_style::value_hover(("step", false), ("loss", !linear)));
    let plot = if linear {
        plot
    } else {
        plot_style::log_y(plot)
    };
    plot_style::show(ui, plot, |plot| {
        plot.line(Line::new("per step", raw).color(faint(LIVE, 90)).width(w));
        plot.line(Line::new("smoothed", smoothed).color(LIVE).width(2.0 * w));
    });
}

fn per_sigma(ui: &mut Ui, record: &TrainingRecord) {
    let sigma_data = record.start.as_ref().map_or(0.5, |s| s.sigma_data);
    let mut keys = vec![
        Key::new("mmse/dim", LIVE, Swatch::Line),
        Key::new("EDM-weighted", DENOISED, Swatch::Line),
    ];
    if record.exact.is_some() {
        keys.push(Key::new(
            "exact mmse/dim (floor)",
            REFERENCE,
            Swatch::Dashed,
        ));
        keys.push(Key::new("exact, weighted", BASELINE, Swatch::Dashed));
    }
    let title = match &record.binned {
        Some((step, _)) => format!("loss per σ at step {step} (log-log)"),
        None => "loss per σ (log-log)".to_string(),
    };
    plot_style::title_and_key(ui, &title, tips::TRAIN_PER_SIGMA_PLOT, &keys);
    let w = plot_style::size(ui, 1.0);
    let plot = Plot::new("training-per-sigma")
        .height(ui.available_height().max(100.0))
        .x_axis_label("σ")
        .y_axis_label("loss")
        .label_formatter(plot_style::value_hover(("σ", true), ("loss", true)));
    plot_style::show(ui, plot_style::log_y(plot_style::log_x(plot)), |plot| {
        if let Some((_, b)) = &record.binned {
            let centres: Vec<f64> = b
                .ln_sigma_edges
                .windows(2)
                .map(|e| (0.5 * (e[0] + e[1])).exp())
                .collect();
            let log_both = |values: &[f64]| -> Vec<[f64; 2]> {
                log10_points(centres.iter().zip(values).map(|(s, v)| (*s, *v)))
                    .into_iter()
                    .map(|[s, v]| [s.log10(), v])
                    .collect()
            };
            plot.line(
                Line::new("mmse/dim", log_both(&b.mmse_per_dim))
                    .color(LIVE)
                    .width(2.0 * w),
            );
            plot.line(
                Line::new("EDM-weighted", log_both(&b.weighted))
                    .color(DENOISED)
                    .width(2.0 * w),
            );
        }
        if let Some(floor) = &record.exact {
            let p = &floor.profile;
            let exact: Vec<[f64; 2]> =
                log10_points(p.sigmas.iter().zip(&p.mmse).map(|(s, m)| (s.log10(), *m)));
            let weighted: Vec<[f64; 2]> = log10_points(
                p.sigmas
                    .iter()
                    .zip(&p.mmse)
                    .map(|(s, m)| (s.log10(), m * edm_weight(*s, sigma_data))),
            );
            plot.line(
                Line::new("exact mmse/dim (floor)", exact)
                    .color(REFERENCE)
                    .width(1.5 * w)
                    .style(baseline_style()),
            );
            plot.line(
                Line::new("exact, weighted", weighted)
                    .color(BASELINE)
                    .width(1.5 * w)
                    .style(baseline_style()),
            );
        }
    });
}

fn preview(ui: &mut Ui, record: &TrainingRecord, texture: Option<&TextureHandle>) {
    let title = match &record.preview {
        Some(p) => format!("samples of the EMA weights at step {}", p.step),
        None => "samples of the EMA weights (none yet)".to_string(),
    };
    let mut keys = Vec::new();
    if let Some(PreviewSamples::Points(_)) = record.preview.as_ref().map(|p| &p.samples) {
        keys.push(Key::new("samples", LIVE, Swatch::Dot));
        keys.push(Key::new("data", DATA, Swatch::Dot));
    }
    plot_style::title_and_key(ui, &title, tips::TRAIN_PREVIEW_PLOT, &keys);
    let Some(p) = &record.preview else {
        return;
    };
    match &p.samples {
        PreviewSamples::Grid(_) => {
            if let Some(t) = texture {
                let size = t.size_vec2();
                let scale = (ui.available_width() / size.x)
                    .min((ui.available_height() - 8.0).max(64.0) / size.y);
                ui.add(
                    egui::Image::from_texture(t)
                        .fit_to_exact_size(size * scale.max(0.1))
                        .alt_text("preview samples as an image grid"),
                );
            }
        }
        PreviewSamples::Points(x) => {
            let rows = |b: &crate::core::Batch| -> Vec<[f64; 2]> {
                (0..b.rows).map(|r| [b.row(r)[0], b.row(r)[1]]).collect()
            };
            let data = record.start.as_ref().and_then(|s| s.points.clone());
            let r = plot_style::size(ui, 1.5);
            let plot = Plot::new("training-preview")
                .height(ui.available_height().max(100.0))
                .data_aspect(1.0);
            plot_style::show(ui, plot, |plot| {
                if let Some(d) = data {
                    plot.points(Points::new("data", rows(&d)).color(DATA).radius(r));
                }
                plot.points(Points::new("samples", rows(x)).color(LIVE).radius(r));
            });
        }
    }
}

/// The information profile (m_hat as it evolves, the exact one) above, the allocation of
/// training noise levels over ln sigma below.
fn information(ui: &mut Ui, record: &TrainingRecord) {
    let half = (0.5 * ui.available_height() - 24.0).max(80.0);
    let w = plot_style::size(ui, 1.0);
    let mut keys = vec![Key::new("estimate m_hat", LIVE, Swatch::Line)];
    if record.profiles.len() > 1 {
        keys.push(Key::new("earlier", faint(LIVE, 80), Swatch::Line));
    }
    if record.exact.is_some() {
        keys.push(Key::new("exact", REFERENCE, Swatch::Dashed));
    }
    plot_style::title_and_key(
        ui,
        "information profile mmse(σ)/dim",
        tips::TRAIN_PROFILE_PLOT,
        &keys,
    );
    // Without InfoNoise the latest per-sigma mmse is the estimate.
    let latest_binned: Option<Vec<[f64; 2]>> = record.binned.as_ref().map(|(_, b)| {
        log10_points(
            b.ln_sigma_edges
                .windows(2)
                .zip(&b.mmse_per_dim)
                .map(|(e, m)| ((0.5 * (e[0] + e[1])).exp().log10(), *m)),
        )
    });
    let plot = Plot::new("training-profile")
        .height(half)
        .y_axis_label("mmse/dim")
        .label_formatter(plot_style::value_hover(("σ", true), ("mmse", true)));
    plot_style::show(ui, plot_style::log_y(plot_style::log_x(plot)), |plot| {
        let n = record.profiles.len();
        for (k, (step, p)) in record.profiles.iter().enumerate() {
            let points = log10_points(p.sigmas.iter().zip(&p.mmse).map(|(s, m)| (s.log10(), *m)));
            let (color, width) = if k + 1 == n {
                (LIVE, 2.0)
            } else {
                (faint(LIVE, 50 + (120 * k / n.max(1)) as u8), 1.0)
            };
            plot.line(
                Line::new(format!("m_hat at step {step}"), points)
                    .color(color)
                    .width(w * width),
            );
        }
        if n == 0
            && let Some(points) = latest_binned
        {
            plot.line(
                Line::new("estimate m_hat", points)
                    .color(LIVE)
                    .width(2.0 * w),
            );
        }
        if let Some(floor) = &record.exact {
            let p = &floor.profile;
            plot.line(
                Line::new(
                    "exact",
                    log10_points(p.sigmas.iter().zip(&p.mmse).map(|(s, m)| (s.log10(), *m))),
                )
                .color(REFERENCE)
                .width(1.5 * w)
                .style(baseline_style()),
            );
        }
    });
    allocation(ui, record, w);
}

/// Densities per d ln sigma: the log-normal, InfoNoise's current one, InfoNoise's from the
/// exact profile.
fn allocation(ui: &mut Ui, record: &TrainingRecord, w: f32) {
    let (mean, std) = match record.start.as_ref().map(|s| &s.sigma) {
        Some(SigmaDistribution::LogNormal { p_mean, p_std }) => (*p_mean, *p_std),
        Some(SigmaDistribution::InfoNoise(c)) => (c.p_mean, c.p_std),
        _ => (-1.2, 1.2),
    };
    let current = record
        .profiles
        .last()
        .and_then(|(_, p)| Some((p.sigmas.clone(), p.density.clone()?)));
    let mut keys = vec![Key::new("log-normal", DENOISED, Swatch::Line)];
    if current.is_some() {
        keys.push(Key::new("InfoNoise (learned)", LIVE, Swatch::Line));
    }
    if record
        .exact
        .as_ref()
        .is_some_and(|f| f.infonoise_density.is_some())
    {
        keys.push(Key::new(
            "InfoNoise (exact profile)",
            REFERENCE,
            Swatch::Dashed,
        ));
    }
    plot_style::title_and_key(
        ui,
        "training σ allocation per d ln σ",
        tips::TRAIN_ALLOCATION_PLOT,
        &keys,
    );
    let grid = crate::core::information::log_sigma_grid(0.002, 80.0, 200);
    let lognormal: Vec<[f64; 2]> = grid
        .iter()
        .map(|s| [s.log10(), lognormal_density(*s, mean, std)])
        .collect();
    let plot = Plot::new("training-allocation")
        .height(ui.available_height().max(80.0))
        .x_axis_label("σ")
        .y_axis_label("density")
        .label_formatter(plot_style::value_hover(("σ", true), ("density", false)));
    plot_style::show(ui, plot_style::log_x(plot), |plot| {
        plot.line(
            Line::new("log-normal", lognormal)
                .color(DENOISED)
                .width(2.0 * w),
        );
        if let Some((sigmas, density)) = current {
            let points: Vec<[f64; 2]> = sigmas
                .iter()
                .zip(&density)
                .filter(|(_, d)| d.is_finite())
                .map(|(s, d)| [s.log10(), *d])
                .collect();
            plot.line(
                Line::new("InfoNoise (learned)", points)
                    .color(LIVE)
                    .width(2.0 * w),
            );
        }
        if let Some(floor) = &record.exact
            && let Some(density) = &floor.infonoise_density
        {
            let points: Vec<[f64; 2]> = floor
                .profile
                .sigmas
                .iter()
                .zip(density)
                .filter(|(_, d)| d.is_finite())
                .map(|(s, d)| [s.log10(), *d])
                .collect();
            plot.line(
                Line::new("InfoNoise (exact profile)", points)
                    .color(REFERENCE)
                    .width(1.5 * w)
                    .style(baseline_style()),
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_bounds_the_count() {
        let v: Vec<usize> = (0..10_001).collect();
        let t = thinned(&v);
        assert!(t.len() <= MAX_CURVE_POINTS + 1, "{}", t.len());
        assert_eq!((t[0], t[t.len() - 1]), (0, 10_000));
        let short = [1, 2, 3];
        assert_eq!(thinned(&short), vec![1, 2, 3]);
    }

    #[test]
    fn the_weight_and_the_lognormal_match_their_closed_forms() {
        // lambda(sigma_data) = 2 / sigma_data^2; the density integrates to 1 over ln sigma.
        assert!((edm_weight(0.5, 0.5) - 8.0).abs() < 1e-12);
        let grid = crate::core::information::log_sigma_grid(1e-6, 1e6, 4001);
        let mass: f64 = grid
            .windows(2)
            .map(|p| {
                let (a, b) = (p[0], p[1]);
                0.5 * (lognormal_density(a, -1.2, 1.2) + lognormal_density(b, -1.2, 1.2))
                    * (b.ln() - a.ln())
            })
            .sum();
        assert!((mass - 1.0).abs() < 1e-6, "{mass}");
    }
}
