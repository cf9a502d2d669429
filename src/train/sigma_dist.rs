//! Where training noise levels come from. EDM's log-normal today; InfoNoise (seed 003, issue 12)
//! joins as another `SigmaDistribution` whose sampler learns from the losses it `observe`s.

use serde::{Deserialize, Serialize};

use crate::core::estimate::SigmaPrior;
use crate::core::noise::Rng;
use crate::error::{Error, Result};

/// The training-sigma distribution, as recorded in a checkpoint's sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SigmaDistribution {
    /// ln sigma ~ N(p_mean, p_std^2) (EDM section 5, P_mean = -1.2, P_std = 1.2).
    LogNormal { p_mean: f64, p_std: f64 },
}

impl Default for SigmaDistribution {
    fn default() -> Self {
        SigmaDistribution::LogNormal {
            p_mean: -1.2,
            p_std: 1.2,
        }
    }
}

impl SigmaDistribution {
    pub fn validate(&self) -> Result<()> {
        match *self {
            SigmaDistribution::LogNormal { p_mean, p_std } => {
                if !(p_mean.is_finite() && p_std.is_finite() && p_std > 0.0 && p_std <= 5.0) {
                    return Err(Error::InvalidSpec(format!(
                        "log-normal training sigmas need a finite P_mean and 0 < P_std <= 5, \
                         got {p_mean} / {p_std}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// sqrt(E[sigma^2]): for the log-normal exp(P_mean + P_std^2).
    pub fn rms(&self) -> f64 {
        match *self {
            SigmaDistribution::LogNormal { p_mean, p_std } => (p_mean + p_std * p_std).exp(),
        }
    }

    /// The same law as a prior over sigma, for the exact counterpart of the noise-dropped branch
    /// (its posterior p(sigma | x) is under the TRAINING distribution).
    pub fn prior(&self) -> SigmaPrior {
        match *self {
            SigmaDistribution::LogNormal { p_mean, p_std } => SigmaPrior::LogNormal {
                mean: p_mean,
                std: p_std,
            },
        }
    }

    /// A fresh sampler of this distribution.
    pub fn sampler(&self) -> Box<dyn SigmaSampler> {
        match *self {
            SigmaDistribution::LogNormal { p_mean, p_std } => {
                Box::new(LogNormalSampler { p_mean, p_std })
            }
        }
    }
}

/// Draws training sigmas, and sees the losses they produced.
pub trait SigmaSampler: Send {
    /// `n` sigmas for one training step, drawn from `rng` only (so a step is reproducible).
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64>;
    /// The noise-conditional rows of the step just done: their sigmas and unweighted
    /// ||D - y||^2 / dim (InfoNoise builds its information profile from these).
    fn observe(&mut self, _sigmas: &[f64], _mmse_per_dim: &[f64]) {}
}

struct LogNormalSampler {
    p_mean: f64,
    p_std: f64,
}

impl SigmaSampler for LogNormalSampler {
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| (self.p_mean + self.p_std * rng.normal()).exp())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_normal_draws_have_its_moments_and_rms() -> Result<()> {
        let dist = SigmaDistribution::default();
        dist.validate()?;
        let s = dist.sampler().draw(&mut Rng::new(1), 200_000);
        let logs: Vec<f64> = s.iter().map(|v| v.ln()).collect();
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / logs.len() as f64;
        assert!((mean + 1.2).abs() < 0.01, "mean {mean}");
        assert!((var.sqrt() - 1.2).abs() < 0.01, "std {}", var.sqrt());
        // E[sigma^2] = exp(2 P_mean + 2 P_std^2); the heavy tail needs a loose tolerance.
        let ms = s.iter().map(|v| v * v).sum::<f64>() / s.len() as f64;
        assert!(
            (ms.sqrt() / dist.rms() - 1.0).abs() < 0.05,
            "rms {}",
            ms.sqrt()
        );
        assert!(
            SigmaDistribution::LogNormal {
                p_mean: 0.0,
                p_std: 0.0
            }
            .validate()
            .is_err()
        );
        Ok(())
    }
}
