//! Seed 001's adaptive schedule: after each step, sigma_hat of the state (median over a subset of
//! the batch) becomes the next noise level and the rest of the budget is re-planned from it down
//! to sigma_min with the same family. Seed 001's adaptive step (optional, on its own or with the
//! re-plan): each step starts from the state's estimated level, so the denoiser is conditioned on
//! sigma_hat and the step runs from sigma_hat to the planned next level (science.md section 2).

use std::sync::Arc;

use super::Batch;
use super::denoiser::Cond;
use super::estimate::NoiseLevelEstimator;
use super::information::InformationProfile;
use super::quantile;
use super::sampler::Replanner;
use super::schedule::ScheduleSpec;
use crate::error::Result;

/// Re-plans the remaining steps from the estimated noise level (capped to make at least half the
/// planned progress, so it never stalls).
pub struct AdaptiveReplanner<'a> {
    estimator: &'a dyn NoiseLevelEstimator,
    subset: Vec<usize>,
    /// The run's condition restricted to `subset`.
    cond: Cond,
    schedule: ScheduleSpec,
    /// The information profile an info schedule re-plans by.
    profile: Option<Arc<InformationProfile>>,
    /// Re-plan the remaining levels after each step (`RunSpec::adaptive`).
    replan_rest: bool,
    /// Start each step from the estimated level (`RunSpec::adaptive_step`).
    start_from_estimate: bool,
}

impl<'a> AdaptiveReplanner<'a> {
    /// `subset`: the batch rows sigma_hat is taken over; `cond`: the run's condition (all rows);
    /// `schedule` with its coefficients resolved, and the profile of an info schedule.
    pub fn new(
        estimator: &'a dyn NoiseLevelEstimator,
        subset: Vec<usize>,
        cond: &Cond,
        schedule: ScheduleSpec,
        profile: Option<Arc<InformationProfile>>,
    ) -> Self {
        AdaptiveReplanner {
            estimator,
            cond: cond.for_rows(&subset),
            subset,
            schedule,
            profile,
            replan_rest: true,
            start_from_estimate: false,
        }
    }

    /// Which of seed 001's two adaptations run: the re-plan of the remaining levels, the
    /// adaptive step start.
    pub fn with_modes(mut self, replan_rest: bool, start_from_estimate: bool) -> Self {
        self.replan_rest = replan_rest;
        self.start_from_estimate = start_from_estimate;
        self
    }

    /// The subset's noise level for the step start: the pooled maximum-likelihood level where
    /// the estimator has a likelihood (per-sample posteriors fall back on their prior in low
    /// dimension at small sigma, the pooled one does not), else the median of the rows'.
    fn batch_level(&self, x: &Batch) -> Result<f64> {
        let est = self
            .estimator
            .estimate_batch(&x.select_rows(&self.subset), &self.cond)?;
        let logs: Vec<f64> = est.rows.iter().map(|e| e.mean_ln).collect();
        Ok(est.pooled_ln.unwrap_or_else(|| quantile(&logs, 0.5)).exp())
    }
}

impl Replanner for AdaptiveReplanner<'_> {
    fn replan(&mut self, x_next: &Batch, step: usize, sigmas: &[f64]) -> Result<Option<Vec<f64>>> {
        if !self.replan_rest {
            return Ok(None);
        }
        let rows = x_next.select_rows(&self.subset);
        let est = self.estimator.estimate(&rows, &self.cond)?;
        let logs: Vec<f64> = est.iter().map(|e| e.mean_ln).collect();
        let sigma_hat = quantile(&logs, 0.5).exp();
        // The next level is sigma_hat, but at least halfway (in ln sigma) from the current level
        // to the planned next one: where sigma_hat is not identifiable (below the data's own
        // scale) it must not stall the schedule. A failed estimate, or a run already at
        // sigma_min, keeps the planned rest.
        let (current, planned, floor) = (sigmas[step], sigmas[step + 1], self.schedule.sigma_min);
        if !sigma_hat.is_finite() || current <= floor || planned <= 0.0 {
            return Ok(None);
        }
        let halfway = (current * planned).sqrt();
        let start = sigma_hat.min(halfway);
        let remaining = sigmas.len() - step - 2;
        // Below sigma_min there is nothing left to re-plan towards: keep the plan.
        if start <= floor && remaining > 1 {
            return Ok(None);
        }
        let start = start.max(floor);
        self.schedule
            .replan(start, remaining, self.profile.as_deref())
            .map(Some)
    }

    /// sigma_hat of the state, kept within the geometric midpoints to the neighbouring levels:
    /// the step still covers at least half its planned ln-sigma length, and the levels used
    /// stay strictly decreasing. The first step may start anywhere above the midpoint (a state
    /// drawn noisier than sigma_max); the step to 0 keeps its level (D(x; sigma) hardly depends
    /// on sigma there, and sigma_hat is least identifiable).
    fn start_level(&mut self, x: &Batch, step: usize, sigmas: &[f64]) -> Result<Option<f64>> {
        let (current, next) = (sigmas[step], sigmas[step + 1]);
        if !self.start_from_estimate || next <= 0.0 {
            return Ok(None);
        }
        let sigma_hat = self.batch_level(x)?;
        if !sigma_hat.is_finite() {
            return Ok(None);
        }
        let lowest = (current * next).sqrt();
        let highest = match step {
            0 => f64::INFINITY,
            _ => (sigmas[step - 1] * current).sqrt(),
        };
        Ok(Some(sigma_hat.clamp(lowest, highest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::estimate::SigmaEstimate;

    /// Every row's noise level is `sigma`.
    struct Fixed(f64);
    impl NoiseLevelEstimator for Fixed {
        fn estimate(&self, x: &Batch, _cond: &Cond) -> Result<Vec<SigmaEstimate>> {
            let e = SigmaEstimate {
                mean_ln: self.0.ln(),
                map_ln: self.0.ln(),
                std_ln: 0.0,
            };
            Ok(vec![e; x.rows])
        }
    }

    fn replan(sigma_hat: f64, step: usize) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
        let schedule = ScheduleSpec::default();
        let sigmas = schedule.sigmas()?;
        let estimator = Fixed(sigma_hat);
        let mut replanner =
            AdaptiveReplanner::new(&estimator, vec![0, 2], &Cond::plain(), schedule, None);
        let x = Batch::zeros(3, 2);
        let new = replanner.replan(&x, step, &sigmas)?;
        Ok((sigmas, new))
    }

    #[test]
    fn the_next_level_is_sigma_hat_capped_at_halfway() -> Result<()> {
        // sigma_hat between the planned next level and the halfway point: taken as it is.
        let (sigmas, new) = replan(20.0, 1)?;
        let new = new.expect("a re-plan");
        assert_eq!(new.len(), sigmas.len() - 2);
        assert!((new[0] - 20.0).abs() < 1e-9, "{new:?}");
        assert!((new[new.len() - 2] - 0.002).abs() < 1e-12 && new[new.len() - 1] == 0.0);
        // sigma_hat above the current level: the next level is the geometric halfway point.
        let (sigmas, new) = replan(1e3, 0)?;
        let new = new.expect("a re-plan");
        assert!(
            (new[0] - (sigmas[0] * sigmas[1]).sqrt()).abs() < 1e-9,
            "{new:?}"
        );
        Ok(())
    }

    #[test]
    fn an_unusable_estimate_keeps_the_plan() -> Result<()> {
        assert!(replan(f64::NAN, 3)?.1.is_none());
        // Below sigma_min with more than one step left: nothing to re-plan towards.
        assert!(replan(1e-4, 3)?.1.is_none());
        Ok(())
    }
}
