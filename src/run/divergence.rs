//! Whether a finished run diverged, and why. A run that leaves the data's range still ends
//! "finished", with saturated noise where samples should be: this names it, counts the samples,
//! says the likely cause from the spec (NAG's stiff exact correction, too few steps, a large CFG
//! weight) and a fix, so the app can show a banner instead of silent nonsense.

use crate::core::Batch;
use crate::core::diagnostics::StepRecord;
use crate::core::guidance::{NagForm, NagStep};
use crate::data::DataSet;

use super::spec::RunSpec;
use crate::core::schedule::ScheduleKind;

/// A sample is outside when one of its coordinates lies more than this many data widths beyond
/// the data's range in that coordinate (the widest coordinate range, so constant pixels do not
/// count as narrow).
const OUTSIDE_WIDTHS: f64 = 1.0;

/// sigma_hat counts as "far above" sigma_i beyond this factor of max(sigma_i, the data's spread):
/// a low-dimensional exact posterior levels off near the prior below the data's scale (a factor of
/// a few above sigma_i), never above the spread of the data itself.
const SATURATION: f64 = 4.0;

/// The NAG weight above which the exact model's correction is known to overshoot (README).
const STABLE_NAG: f64 = 0.5;

/// The last step whose states looked far noisier than scheduled.
#[derive(Clone, Debug, PartialEq)]
pub struct NoisyStep {
    pub step: usize,
    pub sigma: f64,
    pub sigma_hat: f64,
}

/// A step at least this many times shorter in σ at its end than at its start is a jump that a
/// corrector (Heun's slope at σ_{i+1}) cannot follow: 4.7 -> 0.002 is the uniform schedule's last.
const JUMP_RATIO: f64 = 50.0;

/// The step with the largest ratio σ_i / σ_{i+1} (σ_{i+1} > 0).
#[derive(Clone, Debug, PartialEq)]
pub struct LongStep {
    pub step: usize,
    pub sigma: f64,
    pub sigma_next: f64,
}

/// What went wrong in a diverged run.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// Rows of the final batch far outside the data's range (or not finite), ascending.
    pub samples: Vec<usize>,
    /// Rows of the final batch.
    pub rows: usize,
    /// The largest |coordinate| among the final samples (infinite when one is not finite).
    pub max_abs: f64,
    /// The widest coordinate range of the data.
    pub data_width: f64,
    /// The last step whose median sigma_hat was far above both sigma_i and the data's spread.
    pub noisy_step: Option<NoisyStep>,
    /// The run's longest step in ratio (None when no step ends above σ = 0).
    pub longest_step: Option<LongStep>,
}

/// The banner's text: what happened, the likely cause, the fix, and the spec with the fix.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    pub what: String,
    pub cause: String,
    pub fix: String,
    /// The spec with the fix applied (None when no single setting is to blame).
    pub fixed: Option<RunSpec>,
}

/// Where the data lies.
struct Extent {
    /// Per-coordinate (min, max).
    range: Vec<(f64, f64)>,
    /// The widest coordinate range.
    width: f64,
    /// The RMS spread per coordinate.
    spread: f64,
}

fn data_extent(data: &DataSet) -> Option<Extent> {
    if data.n == 0 || data.dim == 0 || data.values.len() < data.n * data.dim {
        return None;
    }
    let mut range = vec![(f64::INFINITY, f64::NEG_INFINITY); data.dim];
    let mut sum = vec![0.0; data.dim];
    let mut sum_sq = vec![0.0; data.dim];
    for row in data.values.chunks_exact(data.dim).take(data.n) {
        for (k, &v) in row.iter().enumerate() {
            range[k] = (range[k].0.min(v), range[k].1.max(v));
            sum[k] += v;
            sum_sq[k] += v * v;
        }
    }
    let n = data.n as f64;
    let width = range.iter().map(|(lo, hi)| hi - lo).fold(0.0f64, f64::max);
    let variance = (0..data.dim)
        .map(|k| (sum_sq[k] / n - (sum[k] / n).powi(2)).max(0.0))
        .sum::<f64>()
        / data.dim as f64;
    Some(Extent {
        range,
        width,
        spread: variance.sqrt(),
    })
}

/// Looks for divergence in a run's final samples `x_final` (against the `data` it should match)
/// and in its per-step noise levels; `None` when the run stayed in range.
pub fn detect(data: &DataSet, x_final: &Batch, records: &[StepRecord]) -> Option<Divergence> {
    let Extent {
        range,
        width,
        spread,
    } = data_extent(data)?;
    if x_final.dim != data.dim || x_final.rows == 0 {
        return None;
    }
    // A point data set (one value) has no width: its own scale, 1, stands in.
    let margin = OUTSIDE_WIDTHS * if width > 0.0 { width } else { 1.0 };
    let mut samples = Vec::new();
    let mut max_abs = 0.0f64;
    for r in 0..x_final.rows {
        let row = x_final.row(r);
        let outside = row
            .iter()
            .zip(&range)
            .any(|(&v, &(lo, hi))| !v.is_finite() || v < lo - margin || v > hi + margin);
        max_abs = row.iter().fold(max_abs, |m, v| {
            if v.is_finite() {
                m.max(v.abs())
            } else {
                f64::INFINITY
            }
        });
        if outside {
            samples.push(r);
        }
    }
    let noisy_step = records
        .iter()
        .filter(|r| {
            r.sigma > 0.0
                && r.sigma_hat.median.is_finite()
                && r.sigma_hat.median > SATURATION * r.sigma.max(spread)
        })
        .max_by_key(|r| r.step)
        .map(|r| NoisyStep {
            step: r.step,
            sigma: r.sigma,
            sigma_hat: r.sigma_hat.median,
        });
    let longest_step = records
        .iter()
        .filter(|r| r.sigma_next > 0.0 && r.sigma.is_finite())
        .max_by(|a, b| (a.sigma / a.sigma_next).total_cmp(&(b.sigma / b.sigma_next)))
        .map(|r| LongStep {
            step: r.step,
            sigma: r.sigma,
            sigma_next: r.sigma_next,
        });
    // A few strays in a big batch are not a divergence; one in a small one is.
    let enough = samples.len() >= (x_final.rows / 200).max(1);
    (enough || noisy_step.is_some()).then_some(Divergence {
        samples,
        rows: x_final.rows,
        max_abs,
        data_width: width,
        noisy_step,
        longest_step,
    })
}

/// A number for the banner, three significant digits.
fn num(x: f64) -> String {
    if x.is_infinite() {
        "∞ (not finite)".into()
    } else if x != 0.0 && !(1e-3..1e5).contains(&x.abs()) {
        format!("{x:.2e}")
    } else if x == 0.0 {
        "0".into()
    } else {
        let decimals = (2 - x.abs().log10().floor() as i32).max(0) as usize;
        let text = format!("{x:.decimals$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    }
}

/// The largest (1 + w) r_i of the spec's schedule when NAG takes the explicit step by choice past
/// its stability bound of 2, else `None` (classifier-based NAG has no other step: more steps).
fn explicit_nag_past_its_bound(spec: &RunSpec) -> Option<f64> {
    let g = &spec.guidance;
    let classifier = g.nag_estimator.is_some() || g.nag_form == NagForm::ClassifierBased;
    if g.nag <= 0.0 || g.nag_step == NagStep::Exponential || classifier {
        return None;
    }
    let sigmas = spec.schedule.sigmas().ok()?;
    let worst = sigmas
        .windows(2)
        .filter(|s| s[1] > 0.0)
        .map(|s| (1.0 + g.nag) * (1.0 - s[1] / s[0]))
        .fold(0.0, f64::max);
    (worst > 2.0).then_some(worst)
}

impl Divergence {
    /// What happened, the likely cause in `spec` and a fix.
    pub fn explain(&self, spec: &RunSpec) -> Explanation {
        let mut what = Vec::new();
        if !self.samples.is_empty() {
            what.push(format!(
                "{} of {} samples ({:.0}%) ended more than a data width ({}) outside the data; the largest |x| is {}",
                self.samples.len(),
                self.rows,
                100.0 * self.samples.len() as f64 / self.rows.max(1) as f64,
                num(self.data_width),
                num(self.max_abs)
            ));
        }
        if let Some(n) = &self.noisy_step {
            what.push(format!(
                "at step {} the states looked like noise of σ_hat = {} where σ_{} = {} was scheduled",
                n.step,
                num(n.sigma_hat),
                n.step,
                num(n.sigma)
            ));
        }
        let what = format!("This run diverged: {}.", what.join("; "));
        let g = &spec.guidance;
        let steps = spec.schedule.steps;
        let mut fixed = spec.clone();
        let (cause, fix) = if g.nag > STABLE_NAG && g.nag_form == NagForm::ExactScore {
            fixed.guidance.nag = STABLE_NAG;
            (
                format!(
                    "NAG w = {} in the exact-score form: its correction −w (1 − σ²/σ_hat²)(x − D) grows without bound for states cleaner than scheduled (σ_hat < σ), so each step overshoots more. Zhong et al. 2025 (NAG, arXiv 2510.12497) use w = 2–3 with learned, smoother models.",
                    num(g.nag)
                ),
                format!(
                    "NAG w = {STABLE_NAG} (or keep w and use 50 or more steps, or the bounded NAG form \"{}\").",
                    NagForm::PosteriorAverage.label()
                ),
            )
        } else if let Some(explicit) = explicit_nag_past_its_bound(spec) {
            fixed.guidance.nag_step = NagStep::Exponential;
            (
                format!(
                    "NAG w = {} with the explicit step: NAG pulls a state toward the scheduled noise level at (1 + w) times the plain ODE's rate, so one explicit step multiplies an off-schedule error by 1 − (1 + w) r, r = 1 − σ_(i+1)/σ_i, and (1 + w) r reaches {} here (stable only up to 2).",
                    num(g.nag),
                    num(explicit)
                ),
                "NAG step: exponential, which integrates NAG's stiff part exactly (stable at any step length), or more steps."
                    .into(),
            )
        } else if steps <= 3 {
            fixed.schedule.steps = 18;
            (
                format!(
                    "{steps} step(s) from σ_max = {} to σ_min = {}: each step is far longer than the ODE's curvature allows, and {} extrapolates a slope measured far from where it is used.",
                    num(spec.schedule.sigma_max),
                    num(spec.schedule.sigma_min),
                    spec.sampler
                ),
                "18 steps (EDM's default), or euler, which at worst lands on the data's mean."
                    .into(),
            )
        } else if let Some(jump) = self
            .longest_step
            .as_ref()
            .filter(|j| j.sigma / j.sigma_next >= JUMP_RATIO)
        {
            fixed.schedule.kind = ScheduleKind::Karras;
            (
                format!(
                    "The {} schedule's step {} jumps from σ = {} to σ = {} ({:.0}× lower) in one step: {} measures the slope (x − D)/σ at σ = {} for a state that still carries noise of about σ = {}, so that slope is far too steep.",
                    spec.schedule.kind.name(),
                    jump.step,
                    num(jump.sigma),
                    num(jump.sigma_next),
                    jump.sigma / jump.sigma_next,
                    spec.sampler,
                    num(jump.sigma_next),
                    num(jump.sigma)
                ),
                "the karras schedule (EDM, ρ = 7), which spends its steps near σ_min, or more steps."
                    .into(),
            )
        } else if g.cfg > 3.0 && g.class.is_some() {
            fixed.guidance.cfg = 2.0;
            (
                format!(
                    "CFG w = {}: D_w = D_u + w (D_c − D_u) extrapolates (w − 1) times past the class's own denoiser, out of the data (Ho & Salimans 2022, arXiv 2207.12598).",
                    num(g.cfg)
                ),
                "CFG w = 2.".into(),
            )
        } else {
            fixed.schedule.steps = steps.saturating_mul(2).min(256);
            (
                "The steps are too long for this data and schedule: the sampler left the data's range.".into(),
                format!("{} steps.", fixed.schedule.steps),
            )
        };
        Explanation {
            what,
            cause,
            fix,
            fixed: Some(fixed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::estimate::Spread;

    fn square() -> DataSet {
        // Four corners of [-1, 1]^2: width 2.
        DataSet {
            n: 4,
            dim: 2,
            values: vec![-1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0],
            labels: None,
            image: None,
        }
    }

    fn batch(rows: &[[f64; 2]]) -> Batch {
        Batch {
            rows: rows.len(),
            dim: 2,
            data: rows.iter().flatten().copied().collect(),
        }
    }

    fn record(step: usize, sigma: f64, sigma_hat: f64) -> StepRecord {
        let spread = |v: f64| Spread {
            median: v,
            p10: v,
            p90: v,
        };
        StepRecord {
            step,
            sigma,
            sigma_churned: sigma,
            sigma_next: sigma / 2.0,
            sigma_hat: spread(sigma_hat),
            delta: spread((sigma_hat / sigma).ln()),
            sigma_hat_pooled: sigma_hat,
            posterior_std_ln: 0.0,
            learned_sigma_hat: Spread::NAN,
            angle_deg: 0.0,
            local_error: 0.0,
            evaluations: 1,
            step_ms: 0.0,
            diagnostics_ms: 0.0,
        }
    }

    #[test]
    fn banner_numbers_have_three_significant_digits() {
        let shown: Vec<String> = [459.627, 4.899, 10.062, 0.002, 80.0, 0.0, 12345.6, 2e-5]
            .into_iter()
            .map(num)
            .collect();
        assert_eq!(
            shown,
            ["460", "4.9", "10.1", "0.002", "80", "0", "12346", "2.00e-5"]
        );
    }

    #[test]
    fn samples_on_and_near_the_data_are_not_a_divergence() {
        let data = square();
        // 2.9 is inside [-1 - 2, 1 + 2]; sigma_hat at 4x sigma below the data's spread is fine.
        let x = batch(&[[0.0, 0.0], [2.9, -2.9], [1.0, 1.0]]);
        let records = [record(0, 80.0, 79.0), record(1, 0.002, 0.008)];
        assert_eq!(detect(&data, &x, &records), None);
    }

    #[test]
    fn samples_far_outside_or_not_finite_are_counted_and_explained() {
        let data = square();
        let x = batch(&[[0.0, 0.0], [3.5, 0.0], [f64::NAN, 0.0], [0.5, -40.0]]);
        let d = detect(&data, &x, &[]).expect("diverged");
        assert_eq!(d.samples, vec![1, 2, 3]);
        assert_eq!(d.rows, 4);
        assert_eq!(d.data_width, 2.0);
        assert!(d.max_abs.is_infinite());
        let spec = RunSpec {
            guidance: crate::run::spec::GuidanceSpec {
                nag: 3.0,
                nag_form: NagForm::ExactScore,
                ..Default::default()
            },
            ..Default::default()
        };
        let e = d.explain(&spec);
        assert!(e.what.contains("3 of 4 samples (75%)"), "{}", e.what);
        assert!(e.cause.starts_with("NAG w = 3"), "{}", e.cause);
        assert_eq!(e.fixed.map(|s| s.guidance.nag), Some(STABLE_NAG));
    }

    #[test]
    fn explicit_nag_past_its_stability_bound_is_blamed_and_the_exponential_step_is_the_fix() {
        let data = square();
        let records = [record(0, 80.0, 79.0), record(1, 0.002, 45.0)];
        let d = detect(&data, &batch(&[[0.0, 0.0]]), &records).expect("diverged");
        let mut spec = RunSpec::default();
        spec.guidance.nag = 3.0;
        spec.guidance.nag_step = NagStep::Explicit;
        // Heun 18 Karras: (1 + 3) max r = 2.94.
        let e = d.explain(&spec);
        assert!(
            e.cause.contains("explicit step") && e.cause.contains("2.94"),
            "{}",
            e.cause
        );
        assert_eq!(
            e.fixed.map(|s| s.guidance.nag_step),
            Some(NagStep::Exponential)
        );
        // Within the bound (w = 0.5: 1.1), or with the exponential step, it is not the cause.
        spec.guidance.nag = 0.5;
        assert!(!d.explain(&spec).cause.contains("explicit step"));
        spec.guidance.nag = 3.0;
        spec.guidance.nag_step = NagStep::Exponential;
        assert!(!d.explain(&spec).cause.contains("explicit step"));
    }

    #[test]
    fn noise_far_above_the_schedule_is_a_divergence_and_few_steps_are_blamed() {
        let data = square();
        let x = batch(&[[0.0, 0.0]]);
        // The data's spread is 1: sigma_hat 45 at sigma 0.002 is saturated noise.
        let records = [record(0, 80.0, 79.0), record(1, 0.002, 45.0)];
        let d = detect(&data, &x, &records).expect("diverged");
        assert!(d.samples.is_empty());
        assert_eq!(
            d.noisy_step,
            Some(NoisyStep {
                step: 1,
                sigma: 0.002,
                sigma_hat: 45.0
            })
        );
        let mut spec = RunSpec::default();
        spec.schedule.steps = 2;
        let e = d.explain(&spec);
        assert!(e.cause.starts_with("2 step(s)"), "{}", e.cause);
        assert!(e.what.contains("σ_hat = 45"), "{}", e.what);
        assert_eq!(e.fixed.map(|s| s.schedule.steps), Some(18));
    }

    #[test]
    fn one_jump_of_the_schedule_is_blamed_and_karras_is_the_fix() {
        let data = square();
        let x = batch(&[[0.0, 0.0], [300.0, 0.0]]);
        // The uniform schedule at N = 18: its last non-zero step goes 80/17 -> 0.002.
        let records = [
            record(0, 80.0, 80.0),
            StepRecord {
                sigma_next: 0.002,
                ..record(17, 80.0 / 17.0, 4.0)
            },
        ];
        let d = detect(&data, &x, &records).expect("diverged");
        let jump = d.longest_step.clone().expect("a longest step");
        assert_eq!((jump.step, jump.sigma_next), (17, 0.002));
        let mut spec = RunSpec::default();
        spec.schedule.kind = ScheduleKind::Uniform;
        let e = d.explain(&spec);
        assert!(
            e.cause.starts_with(
                "The uniform schedule's step 17 jumps from σ = 4.71 to σ = 0.002 (2353× lower)"
            ),
            "{}",
            e.cause
        );
        assert_eq!(e.fixed.map(|s| s.schedule.kind), Some(ScheduleKind::Karras));
        // A schedule without such a jump gets the general cause.
        let gentle = [record(0, 80.0, 80.0), record(1, 40.0, 40.0)];
        let d = detect(&data, &x, &gentle).expect("diverged");
        assert!(d.explain(&spec).cause.starts_with("The steps are too long"));
    }

    #[test]
    fn one_stray_in_a_thousand_is_not_enough() {
        let data = square();
        let mut rows = vec![[0.0, 0.0]; 1000];
        rows[7] = [100.0, 0.0];
        assert_eq!(detect(&data, &batch(&rows), &[]), None);
        rows[8] = [0.0, -100.0];
        rows[9] = [0.0, 100.0];
        rows[10] = [50.0, 100.0];
        rows[11] = [-50.0, 100.0];
        let d = detect(&data, &batch(&rows), &[]).expect("five of a thousand");
        assert_eq!(d.samples, vec![7, 8, 9, 10, 11]);
    }
}
