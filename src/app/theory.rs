//! The Theory view (Gaussian data, science.md section 7; Sun, Poor & Zhang 2026, "An Elementary
//! Approach to Scheduling in Generative Diffusion Models", arXiv 2601.13602): the exact
//! per-step state variances against the ones measured in the run, the closed-form
//! KL(p_data || p_out) against the step count N for every schedule family, and the tangent law
//! against Karras at the run's N. The KL curves need a 1-D search for the tangent c per N, so
//! they are computed once per setting on a short-lived named thread, never on the UI thread.

use std::thread::JoinHandle;

use egui::{Color32, RichText, Ui};
use egui_plot::{Line, LineStyle, Plot, Points, VLine};

use crate::core::sampler::{SamplerKind, Stochasticity};
use crate::core::schedule::{ScheduleKind, ScheduleSpec, tangent};
use crate::core::theory::{best_tangent_c, gaussian_theory, kl_gaussian};
use crate::data::DataSpec;
use crate::run::store::RunRecord;

use super::plot_style::{
    self, Key, LIVE, REFERENCE, SHOWN, Swatch, faint, format_number, format_significant,
    log10_points,
};

/// Step counts of the KL-vs-N curves.
const STEP_COUNTS: [usize; 14] = [2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64];
/// Directions drawn in the variance plot.
const MAX_DIRECTIONS: usize = 6;
/// One colour per drawn direction.
const PALETTE: [Color32; MAX_DIRECTIONS] = [
    Color32::from_rgb(255, 150, 60),
    Color32::from_rgb(70, 205, 190),
    Color32::from_rgb(230, 100, 160),
    Color32::from_rgb(160, 200, 80),
    Color32::from_rgb(240, 210, 90),
    Color32::from_rgb(170, 140, 255),
];

/// What the KL curves depend on.
#[derive(Clone, Debug, PartialEq)]
pub struct KlKey {
    pub spectrum: Vec<f64>,
    pub sampler: SamplerKind,
    pub schedule: ScheduleSpec,
    pub stochasticity: Stochasticity,
}

/// KL(p_data || p_out) against N per family.
#[derive(Clone, Debug, PartialEq)]
pub struct KlCurves {
    pub steps: Vec<usize>,
    /// (family label, KL per entry of `steps`).
    pub families: Vec<(String, Vec<f64>)>,
    /// The best tangent c per entry of `steps`.
    pub tangent_c: Vec<f64>,
}

/// The closed-form KL of each family at each N (the tangent family with its best c per N).
pub fn kl_curves(key: &KlKey) -> KlCurves {
    let mut steps: Vec<usize> = STEP_COUNTS.to_vec();
    if !steps.contains(&key.schedule.steps) && key.schedule.steps <= 256 {
        steps.push(key.schedule.steps);
        steps.sort_unstable();
    }
    let (smin, smax) = (key.schedule.sigma_min, key.schedule.sigma_max);
    let tangent_c: Vec<f64> = steps
        .iter()
        .map(|&n| best_tangent_c(&key.spectrum, n, smin, smax, key.sampler))
        .collect();
    let kl_of =
        |sigmas: &[f64]| gaussian_theory(&key.spectrum, sigmas, key.sampler, &key.stochasticity).kl;
    let mut families = Vec::new();
    for kind in [
        ScheduleKind::Karras,
        ScheduleKind::LogUniform,
        ScheduleKind::Uniform,
        ScheduleKind::Vp,
    ] {
        let values = steps
            .iter()
            .map(|&n| {
                ScheduleSpec {
                    kind,
                    steps: n,
                    ..key.schedule
                }
                .sigmas()
                .map_or(f64::NAN, |s| kl_of(&s))
            })
            .collect();
        families.push((kind.name().to_string(), values));
    }
    let tangent_kl = steps
        .iter()
        .zip(&tangent_c)
        .map(|(&n, &c)| kl_of(&tangent(n, smin, smax, c)))
        .collect();
    families.push(("tangent (best c)".to_string(), tangent_kl));
    KlCurves {
        steps,
        families,
        tangent_c,
    }
}

/// Per-direction variance of every state of a run: [state][direction].
fn measured_variances(run: &RunRecord, directions: usize) -> Vec<Vec<f64>> {
    (0..run.state_count())
        .filter_map(|s| run.state(s))
        .map(|b| {
            (0..directions.min(b.dim))
                .map(|k| {
                    let n = b.rows.max(1) as f64;
                    let mean = (0..b.rows).map(|r| b.row(r)[k]).sum::<f64>() / n;
                    (0..b.rows)
                        .map(|r| (b.row(r)[k] - mean).powi(2))
                        .sum::<f64>()
                        / n
                })
                .collect()
        })
        .collect()
}

/// The view's state: the KL job and caches.
#[derive(Default)]
pub struct TheoryPanel {
    job: Option<(KlKey, JoinHandle<KlCurves>)>,
    curves: Option<(KlKey, KlCurves)>,
    /// (generation, state count, variances) of the shown run.
    measured: Option<(u64, usize, Vec<Vec<f64>>)>,
    failed: Option<String>,
}

impl TheoryPanel {
    /// Collects a finished job and starts one for `wanted` when the curves are stale.
    fn update_job(&mut self, ui: &Ui, wanted: &KlKey) {
        if self.job.as_ref().is_some_and(|(_, h)| h.is_finished())
            && let Some((key, handle)) = self.job.take()
        {
            match handle.join() {
                Ok(curves) => self.curves = Some((key, curves)),
                Err(_) => self.failed = Some("the KL computation failed".into()),
            }
        }
        let fresh = self.curves.as_ref().is_some_and(|(k, _)| k == wanted);
        if !fresh && self.job.is_none() {
            let key = wanted.clone();
            let spawned = std::thread::Builder::new()
                .name("noisescope-theory".into())
                .spawn(move || kl_curves(&key));
            match spawned {
                Ok(handle) => self.job = Some((wanted.clone(), handle)),
                Err(e) => self.failed = Some(format!("cannot start the theory thread: {e}")),
            }
        }
        if self.job.is_some() {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(50));
        }
    }

    /// Shows the view for the live run (Gaussian data only).
    pub fn show(&mut self, ui: &mut Ui, live: &RunRecord, salt: &str) {
        let (DataSpec::Gaussian { spectrum }, Some(theory)) = (&live.spec.data, &live.theory)
        else {
            ui.label("Closed forms exist for Gaussian data: choose Data -> Gaussian spectrum.");
            ui.label(RichText::new("For N(0, diag λ) every sampler step multiplies each direction by a scalar, so the state variances, the exact noise shift and KL(p_data || p_out) follow exactly (Sun, Poor & Zhang 2026, arXiv 2601.13602).").weak());
            return;
        };
        let key = KlKey {
            spectrum: spectrum.clone(),
            sampler: live.spec.sampler,
            schedule: live.spec.schedule,
            stochasticity: live.spec.stochasticity,
        };
        self.update_job(ui, &key);
        let count = live.state_count();
        if self
            .measured
            .as_ref()
            .is_none_or(|(g, c, _)| (*g, *c) != (live.generation, count))
        {
            self.measured = Some((
                live.generation,
                count,
                measured_variances(live, spectrum.len().min(4096)),
            ));
        }
        let measured = self
            .measured
            .as_ref()
            .map(|(_, _, v)| v.as_slice())
            .unwrap_or_default();
        // The headline numbers.
        let steps = live.spec.schedule.steps;
        let exact_kl = theory.kl;
        let measured_kl = (count == steps + 1 && measured.len() == count)
            .then(|| {
                measured
                    .last()
                    .filter(|v| v.len() == spectrum.len())
                    .map(|v| kl_gaussian(spectrum, v))
            })
            .flatten();
        ui.label(RichText::new(format!(
            "exact KL(p_data || p_out) = {}{}",
            format_number(exact_kl),
            measured_kl.map_or(String::new(), |m| format!("   (from this batch's variances: {})", format_number(m)))
        )).strong())
        .on_hover_text("KL = ½ Σ_k (λ_k/v_k − 1 + ln(v_k/λ_k)) with v_N from the exact per-step recursion (Sun, Poor & Zhang 2026, arXiv 2601.13602). The batch estimate carries sampling error ~ √(2/B) per direction.");
        if let Some((_, curves)) = self.curves.as_ref().filter(|(k, _)| *k == key)
            && let Some(at) = curves.steps.iter().position(|&n| n == steps)
        {
            let karras = curves.families.first().map_or(f64::NAN, |(_, v)| v[at]);
            let tangent = curves.families.last().map_or(f64::NAN, |(_, v)| v[at]);
            ui.label(format!(
                "N = {steps}: karras KL = {}, tangent (c = {}) KL = {}: {}",
                format_number(karras),
                format_number(curves.tangent_c[at]),
                format_number(tangent),
                tangent_against_karras(karras, tangent)
            ))
            .on_hover_text("Sun, Poor & Zhang 2026 (arXiv 2601.13602): the tangent law minimises the leading term of the Gaussian KL as N grows; its advantage over Karras is largest at small N. With a wide spectrum and Heun the best tangent c can still lose to Karras at some N: the comparison says which way it goes.");
        } else if let Some(f) = &self.failed {
            ui.label(f.as_str());
        } else {
            ui.label("computing KL against N…");
        }
        ui.columns(2, |cols| {
            variance_plot(
                &mut cols[0],
                live,
                spectrum,
                &theory.variances,
                measured,
                salt,
            );
            if let Some((_, curves)) = &self.curves {
                kl_plot(&mut cols[1], curves, steps, salt);
            }
        });
    }
}

fn variance_plot(
    ui: &mut Ui,
    live: &RunRecord,
    lambdas: &[f64],
    exact: &[Vec<f64>],
    measured: &[Vec<f64>],
    salt: &str,
) {
    let directions = lambdas.len().min(MAX_DIRECTIONS);
    let mut keys: Vec<Key> = (0..directions)
        .map(|k| {
            Key::new(
                format!("λ = {}", format_number(lambdas[k])),
                PALETTE[k],
                Swatch::Line,
            )
        })
        .collect();
    keys.push(Key::new(
        "λ + σ_i² (the promise)",
        REFERENCE,
        Swatch::Dashed,
    ));
    keys.push(Key::new("this run", REFERENCE, Swatch::Dot));
    plot_style::title_and_key(
        ui,
        "state variance per direction (log): exact lines, this run's dots",
        "v_{i+1} = f_i² (v_i + churn), Heun f = 1 + h/2 (a(s_i) + a(s_{i+1})(1 + h a(s_i))), a(s) = s/(λ + s²); dashed: the promise λ_k + σ_i² (Sun, Poor & Zhang 2026, arXiv 2601.13602).",
        &keys,
    );
    let (width, radius) = (plot_style::size(ui, 1.8), plot_style::size(ui, 2.5));
    let plot = Plot::new(format!("{salt}-variance"))
        .height(ui.available_height().max(160.0))
        .x_axis_label("step i")
        .y_axis_label("variance")
        .label_formatter(plot_style::value_hover(("i", false), ("variance", true)));
    plot_style::show(ui, plot_style::log_y(plot), |plot| {
        for k in 0..directions {
            let color = PALETTE[k];
            let name = format!("λ = {}", format_number(lambdas[k]));
            let line = log10_points(
                exact
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.get(k).map(|v| (i as f64, *v))),
            );
            plot.line(
                Line::new(name.clone(), line)
                    .id(("exact", k))
                    .color(color)
                    .width(width),
            );
            let promise = log10_points(
                live.sigmas
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i as f64, lambdas[k] + s * s)),
            );
            plot.line(
                Line::new(name.clone(), promise)
                    .id(("promise", k))
                    .color(faint(color, 90))
                    .style(LineStyle::Dashed { length: 4.0 }),
            );
            let dots = log10_points(
                measured
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.get(k).map(|v| (i as f64, *v))),
            );
            plot.points(
                Points::new(name, dots)
                    .id(("measured", k))
                    .color(color)
                    .radius(radius),
            );
        }
    });
}

/// The colour of family `k` of the KL plot (the tangent law, last, in the live colour).
fn family_color(k: usize, families: usize) -> Color32 {
    if k + 1 == families {
        LIVE
    } else {
        PALETTE[(k + 1) % MAX_DIRECTIONS]
    }
}

fn kl_plot(ui: &mut Ui, curves: &KlCurves, steps: usize, salt: &str) {
    let mut keys: Vec<Key> = curves
        .families
        .iter()
        .enumerate()
        .map(|(k, (name, _))| {
            Key::new(
                name.clone(),
                family_color(k, curves.families.len()),
                Swatch::Line,
            )
        })
        .collect();
    keys.push(Key::new("this N", SHOWN, Swatch::Line));
    plot_style::title_and_key(
        ui,
        "KL(p_data || p_out) vs N, log-log",
        "Closed form per schedule family with the run's sampler; the tangent family uses its KL-optimal c at every N (Sun, Poor & Zhang 2026, arXiv 2601.13602).",
        &keys,
    );
    let emphasis = plot_style::size(ui, 1.0);
    let plot = Plot::new(format!("{salt}-kl"))
        .height(ui.available_height().max(160.0))
        .x_axis_label("N (steps)")
        .y_axis_label("KL")
        .label_formatter(plot_style::value_hover(("N", true), ("KL", true)));
    plot_style::show(ui, plot_style::log_y(plot_style::log_x(plot)), |plot| {
        for (k, (name, values)) in curves.families.iter().enumerate() {
            let points = log10_points(
                curves
                    .steps
                    .iter()
                    .zip(values)
                    .map(|(n, v)| ((*n as f64).log10(), *v)),
            );
            let tangent = k + 1 == curves.families.len();
            plot.line(
                Line::new(name.clone(), points)
                    .color(family_color(k, curves.families.len()))
                    .width(emphasis * if tangent { 2.5 } else { 1.5 }),
            );
        }
        plot.vline(
            VLine::new("this N", (steps.max(1) as f64).log10())
                .color(SHOWN)
                .width(emphasis * 1.5)
                .allow_hover(false),
        );
    });
}

/// How the tangent law compares with Karras at one N: "tangent is 3.9× lower", or, when it
/// loses, "tangent is 3.9× higher (Karras wins here)".
pub fn tangent_against_karras(karras: f64, tangent: f64) -> String {
    if !(karras.is_finite() && tangent.is_finite() && karras > 0.0 && tangent > 0.0) {
        return "no comparison (a KL is not finite)".into();
    }
    let ratio = karras / tangent;
    if ratio >= 1.0 {
        format!("tangent is {}× lower", format_significant(ratio, 2))
    } else {
        format!(
            "tangent is {}× higher (Karras wins here)",
            format_significant(1.0 / ratio, 2)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tangent_beats_karras_on_a_gaussian_at_small_n() {
        let key = KlKey {
            spectrum: vec![0.25],
            sampler: SamplerKind::Heun,
            schedule: ScheduleSpec {
                steps: 5,
                ..Default::default()
            },
            stochasticity: Stochasticity::default(),
        };
        let curves = kl_curves(&key);
        let at = curves.steps.iter().position(|&n| n == 5).unwrap_or(0);
        let karras = curves.families[0].1[at];
        let tangent = curves.families[4].1[at];
        assert!(
            tangent.is_finite() && tangent < karras,
            "tangent {tangent} vs karras {karras}"
        );
        // More steps, less KL.
        let last = curves.steps.len() - 1;
        assert!(curves.families[0].1[last] < karras);
        assert_eq!(
            tangent_against_karras(karras, tangent),
            format!(
                "tangent is {}× lower",
                format_significant(karras / tangent, 2)
            )
        );
    }

    /// The case: spectrum (9, 0.01), where the header said "0.259× lower" for a KL
    /// 3.9 times higher.
    #[test]
    fn the_header_says_higher_when_tangent_loses() {
        assert_eq!(
            tangent_against_karras(1.0, 3.9),
            "tangent is 3.9× higher (Karras wins here)"
        );
        assert_eq!(tangent_against_karras(3.9, 1.0), "tangent is 3.9× lower");
        assert_eq!(tangent_against_karras(1.0, 1.0), "tangent is 1.0× lower");
        assert!(tangent_against_karras(f64::NAN, 1.0).contains("not finite"));
    }
}
