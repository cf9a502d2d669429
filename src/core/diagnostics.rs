//! Per-step diagnostics (science.md sections 5-6): noise shift and ODE curvature.
//!
//! For step i: sigma_i, sigma_hat(x_i) median / p10 / p90 over a fixed subset of the batch,
//! delta = ln sigma_hat - ln sigma_i, the turning angle between d_i and the slope d'_i at the Euler
//! predictor, and the local error |h| ||d'_i - d_i|| / 2 (RMS per dimension). Samplers without a
//! corrector (euler, euler-a, dpmpp-2m) use the next step's slope as d'_i, so their records come one
//! step late. At the end: each trajectory's straightness ||x_N - x_0|| / sum ||x_{i+1} - x_i||.

use super::denoiser::Cond;
use super::estimate::{NoiseLevelEstimator, Spread};
use super::sampler::StepInfo;
use super::{Batch, dot, norm};
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// One row of diagnostics.csv.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub sigma: f64,
    /// sigma after churn (t-hat); equals sigma without churn.
    pub sigma_churned: f64,
    pub sigma_next: f64,
    /// sigma_hat of the pre-churn state x_i over the subset (NaN when off).
    pub sigma_hat: Spread,
    /// ln sigma_hat - ln sigma_i over the subset.
    pub delta: Spread,
    /// The subset's pooled maximum-likelihood noise level argmax_sigma sum_b ln p(x_b; sigma)
    /// (science.md section 5; NaN when off).
    #[serde(default = "not_measured")]
    pub sigma_hat_pooled: f64,
    /// Median over the subset of the posterior standard deviation of ln sigma: above
    /// `prior_dominated_width` the per-sample sigma_hat says more about the prior than the state.
    #[serde(default = "not_measured")]
    pub posterior_std_ln: f64,
    /// sigma_hat of x_i under the run's learned noise-level estimator g(sigma | x) over the same
    /// subset (NaN without one).
    #[serde(default = "spread_not_measured")]
    pub learned_sigma_hat: Spread,
    /// Mean turning angle between d_i and d'_i, degrees (NaN on the step to 0).
    pub angle_deg: f64,
    /// Mean local error |h| ||d' - d|| / (2 sqrt(D)).
    pub local_error: f64,
    pub evaluations: usize,
    /// Wall time of the sampling step (without diagnostics), ms.
    pub step_ms: f64,
    /// Wall time spent on these diagnostics, ms.
    pub diagnostics_ms: f64,
}

impl StepRecord {
    /// The record of a step with diagnostics off: sigmas and timings only.
    pub fn bare(info: &StepInfo, step_ms: f64) -> Self {
        let nan = Spread::NAN;
        StepRecord {
            step: info.step,
            sigma: info.sigma,
            sigma_churned: info.sigma_hat,
            sigma_next: info.sigma_next,
            sigma_hat: nan,
            delta: nan,
            sigma_hat_pooled: f64::NAN,
            posterior_std_ln: f64::NAN,
            learned_sigma_hat: nan,
            angle_deg: f64::NAN,
            local_error: f64::NAN,
            evaluations: info.evaluations,
            step_ms,
            diagnostics_ms: 0.0,
        }
    }

    pub const CSV_HEADER: &'static str = "step,sigma,sigma_churned,sigma_next,sigma_hat_median,sigma_hat_p10,sigma_hat_p90,delta_median,delta_p10,delta_p90,angle_deg,local_error,evaluations,step_ms,diagnostics_ms,sigma_hat_pooled,posterior_std_ln,learned_sigma_hat_median,learned_sigma_hat_p10,learned_sigma_hat_p90";

    /// Whether the per-sample posteriors of this step are dominated by their prior (wider than
    /// twice what a D-dimensional noise measurement gives).
    pub fn prior_dominated(&self, dim: usize) -> bool {
        self.posterior_std_ln > prior_dominated_width(dim)
    }

    pub fn csv_row(&self) -> String {
        format!(
            "{},{:e},{:e},{:e},{:e},{:e},{:e},{:e},{:e},{:e},{:e},{:e},{},{:.4},{:.4},{:e},{:e},{:e},{:e},{:e}",
            self.step,
            self.sigma,
            self.sigma_churned,
            self.sigma_next,
            self.sigma_hat.median,
            self.sigma_hat.p10,
            self.sigma_hat.p90,
            self.delta.median,
            self.delta.p10,
            self.delta.p90,
            self.angle_deg,
            self.local_error,
            self.evaluations,
            self.step_ms,
            self.diagnostics_ms,
            self.sigma_hat_pooled,
            self.posterior_std_ln,
            self.learned_sigma_hat.median,
            self.learned_sigma_hat.p10,
            self.learned_sigma_hat.p90
        )
    }
}

fn not_measured() -> f64 {
    f64::NAN
}

fn spread_not_measured() -> Spread {
    Spread::NAN
}

/// Twice the posterior standard deviation of ln sigma that one D-dimensional sample of pure noise
/// N(0, sigma^2 I) leaves (1/sqrt(2D), the curvature of -D ln s - r^2 / 2s^2 at its mode): a
/// per-sample posterior wider than this is shaped by its prior rather than by the state.
pub fn prior_dominated_width(dim: usize) -> f64 {
    2.0 / (2.0 * dim.max(1) as f64).sqrt()
}

/// Mean turning angle (degrees) and mean RMS local error between two slope batches.
pub fn curvature(d: &Batch, d_prime: &Batch, h: f64) -> (f64, f64) {
    let (mut angle, mut error, mut n) = (0.0, 0.0, 0usize);
    for r in 0..d.rows {
        let (a, b) = (d.row(r), d_prime.row(r));
        let (na, nb) = (norm(a), norm(b));
        let diff: f64 = a
            .iter()
            .zip(b)
            .map(|(u, v)| (u - v).powi(2))
            .sum::<f64>()
            .sqrt();
        error += h.abs() * diff / 2.0 / (d.dim as f64).sqrt();
        if na > 0.0 && nb > 0.0 {
            angle += (dot(a, b) / (na * nb)).clamp(-1.0, 1.0).acos().to_degrees();
            n += 1;
        }
    }
    let rows = d.rows.max(1) as f64;
    (
        if n > 0 { angle / n as f64 } else { f64::NAN },
        error / rows,
    )
}

/// One step's noise-level statistics over the subset.
struct NoiseStats {
    sigma_hat: Spread,
    delta: Spread,
    pooled: f64,
    std_ln: f64,
    learned: Spread,
}

/// The record being held until the next slope arrives (samplers without a corrector).
struct Pending {
    record: StepRecord,
    slope: Batch,
    h: f64,
}

/// Turns the sampler's StepInfo stream into StepRecords.
pub struct Diagnostics<'a> {
    estimator: Option<&'a dyn NoiseLevelEstimator>,
    /// A learned estimator recorded beside the exact one (`StepRecord::learned_sigma_hat`).
    learned: Option<&'a dyn NoiseLevelEstimator>,
    subset: Vec<usize>,
    cond: Cond,
    pending: Option<Pending>,
    x0: Option<Batch>,
    path_length: Vec<f64>,
}

impl<'a> Diagnostics<'a> {
    /// `estimator: None` turns the noise-level statistics off (curvature is still recorded).
    /// `subset` are the batch rows the noise statistics use; `cond` is the run's condition.
    pub fn new(
        estimator: Option<&'a dyn NoiseLevelEstimator>,
        subset: Vec<usize>,
        cond: &Cond,
    ) -> Self {
        Diagnostics {
            estimator,
            learned: None,
            cond: cond.for_rows(&subset),
            subset,
            pending: None,
            x0: None,
            path_length: Vec::new(),
        }
    }

    /// Also records `learned`'s sigma_hat on the same subset (`None`: not recorded).
    pub fn with_learned(mut self, learned: Option<&'a dyn NoiseLevelEstimator>) -> Self {
        self.learned = learned;
        self
    }

    /// Noise-level statistics of `x` at scheduled `sigma`.
    fn noise_stats(&self, x: &Batch, sigma: f64) -> Result<NoiseStats> {
        let nan = Spread::NAN;
        if self.estimator.is_none() && self.learned.is_none() {
            return Ok(NoiseStats {
                sigma_hat: nan,
                delta: nan,
                pooled: f64::NAN,
                std_ln: f64::NAN,
                learned: nan,
            });
        }
        let rows = x.select_rows(&self.subset);
        let learned = match self.learned {
            Some(g) => {
                let hats: Vec<f64> = g
                    .estimate(&rows, &self.cond)?
                    .iter()
                    .map(|e| e.sigma_hat())
                    .collect();
                Spread::of(&hats)
            }
            None => nan,
        };
        let Some(estimator) = self.estimator else {
            return Ok(NoiseStats {
                sigma_hat: nan,
                delta: nan,
                pooled: f64::NAN,
                std_ln: f64::NAN,
                learned,
            });
        };
        let est = estimator.estimate_batch(&rows, &self.cond)?;
        let hats: Vec<f64> = est.rows.iter().map(|e| e.sigma_hat()).collect();
        let deltas: Vec<f64> = est.rows.iter().map(|e| e.mean_ln - sigma.ln()).collect();
        let widths: Vec<f64> = est.rows.iter().map(|e| e.std_ln).collect();
        Ok(NoiseStats {
            sigma_hat: Spread::of(&hats),
            delta: Spread::of(&deltas),
            pooled: est.pooled_ln.map_or(f64::NAN, f64::exp),
            std_ln: Spread::of(&widths).median,
            learned,
        })
    }

    /// Consumes one step; returns the records completed by it (0, 1 or 2).
    pub fn observe(&mut self, info: &StepInfo, step_ms: f64) -> Result<Vec<StepRecord>> {
        let started = std::time::Instant::now();
        if self.x0.is_none() {
            self.x0 = Some(info.x.clone());
            self.path_length = vec![0.0; info.x.rows];
        }
        for (r, len) in self.path_length.iter_mut().enumerate() {
            let step: f64 = info
                .x
                .row(r)
                .iter()
                .zip(info.x_next.row(r))
                .map(|(a, b)| (a - b).powi(2))
                .sum();
            *len += step.sqrt();
        }
        let mut done = Vec::new();
        // The previous step's d' is this step's slope.
        if let Some(p) = self.pending.take() {
            let (angle, error) = curvature(&p.slope, info.slope, p.h);
            done.push(StepRecord {
                angle_deg: angle,
                local_error: error,
                ..p.record
            });
        }
        let stats = self.noise_stats(info.x, info.sigma)?;
        let h = info.sigma_next - info.sigma_hat;
        let mut record = StepRecord {
            step: info.step,
            sigma: info.sigma,
            sigma_churned: info.sigma_hat,
            sigma_next: info.sigma_next,
            sigma_hat: stats.sigma_hat,
            delta: stats.delta,
            sigma_hat_pooled: stats.pooled,
            posterior_std_ln: stats.std_ln,
            learned_sigma_hat: stats.learned,
            angle_deg: f64::NAN,
            local_error: f64::NAN,
            evaluations: info.evaluations,
            step_ms,
            diagnostics_ms: 0.0,
        };
        record.diagnostics_ms = started.elapsed().as_secs_f64() * 1e3;
        match info.slope_corrector {
            Some(d_prime) => {
                let (angle, error) = curvature(info.slope, d_prime, h);
                record.angle_deg = angle;
                record.local_error = error;
                done.push(record);
            }
            // The step to 0 has no d' in any sampler.
            None if info.sigma_next == 0.0 => done.push(record),
            None => {
                self.pending = Some(Pending {
                    record,
                    slope: info.slope.clone(),
                    h,
                })
            }
        }
        Ok(done)
    }

    /// Flushes a held record (a run stopped early) and returns per-trajectory straightness.
    pub fn finish(&mut self, x_final: &Batch) -> (Vec<StepRecord>, Vec<f64>) {
        let held = self.pending.take().map(|p| p.record).into_iter().collect();
        let straightness = match &self.x0 {
            Some(x0) => (0..x0.rows)
                .map(|r| {
                    let chord: f64 = x0
                        .row(r)
                        .iter()
                        .zip(x_final.row(r))
                        .map(|(a, b)| (a - b).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    if self.path_length[r] > 0.0 {
                        chord / self.path_length[r]
                    } else {
                        1.0
                    }
                })
                .collect(),
            None => Vec::new(),
        };
        (held, straightness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_shift_is_measured_against_the_scheduled_sigma_not_the_churned_one() -> Result<()> {
        use crate::core::estimate::{ExactPosterior, PosteriorEstimator, SigmaPrior};
        let x = crate::core::noise::initial_noise(1, 64, 256).scale(0.5);
        let zero = Batch::zeros(64, 256);
        let info = StepInfo {
            step: 3,
            sigma: 0.5,
            sigma_hat: 0.6,
            sigma_next: 0.3,
            x: &x,
            denoised: &zero,
            slope: &x,
            slope_corrector: Some(&x),
            x_next: &x,
            evaluations: 7,
        };
        // p(x; s) = N(x; 0, s^2 I): a state z * s has sigma_hat ~ s.
        let estimator = ExactPosterior::new(
            std::sync::Arc::new(crate::core::estimate::tests::IsotropicAtZero),
            PosteriorEstimator::new(SigmaPrior::for_schedule(0.002, 80.0)),
        );
        let mut diag = Diagnostics::new(Some(&estimator), (0..64).collect(), &Cond::plain());
        let records = diag.observe(&info, 1.0)?;
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert!((r.sigma_hat.median - 0.5).abs() < 0.01, "{:?}", r.sigma_hat);
        assert!(r.delta.median.abs() < 0.02, "delta {:?}", r.delta);
        assert_eq!((r.sigma, r.sigma_churned), (0.5, 0.6));
        // Parallel slopes: no turn.
        assert!(r.angle_deg.abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn curvature_of_parallel_and_orthogonal_slopes() -> Result<()> {
        let d = Batch::from_vec(2, 2, vec![1.0, 0.0, 0.0, 2.0])?;
        let same = curvature(&d, &d, 0.5);
        assert_eq!(same, (0.0, 0.0));
        let turned = Batch::from_vec(2, 2, vec![0.0, 1.0, 2.0, 0.0])?;
        let (angle, err) = curvature(&d, &turned, 0.5);
        assert!((angle - 90.0).abs() < 1e-9);
        // rows: |h| * sqrt(2) / 2 / sqrt(2) = 0.25 and 0.5 * sqrt(8) / 2 / sqrt(2) = 0.5.
        assert!((err - 0.375).abs() < 1e-12);
        Ok(())
    }
}
