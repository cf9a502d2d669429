//! Where training noise levels come from: EDM's log-normal, log-uniform, or InfoNoise (seed 003,
//! issue 12), whose sampler learns its law from the losses it `observe`s (core/infonoise.rs).

use serde::{Deserialize, Serialize};

use crate::core::estimate::SigmaPrior;
use crate::core::infonoise::{InfoNoiseConfig, InfoNoiseSampler};
use crate::core::noise::Rng;
use crate::error::{Error, Result};

/// The training-sigma distribution, as recorded in a checkpoint's sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SigmaDistribution {
    /// ln sigma ~ N(p_mean, p_std^2) (EDM section 5, P_mean = -1.2, P_std = 1.2).
    LogNormal { p_mean: f64, p_std: f64 },
    /// ln sigma uniform over [ln sigma_min, ln sigma_max].
    LogUniform { sigma_min: f64, sigma_max: f64 },
    /// InfoNoise (seed 003, science.md section 8): log-normal during a warm-up, then
    /// pi ∝ rho_hat / lambda rebuilt from the training losses; every constant is here.
    #[serde(rename = "infonoise")]
    InfoNoise(InfoNoiseConfig),
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
    /// Log-uniform over the samplers' default range [0.002, 80]: what the noise-dropped rows
    /// train on, so that the noise-unconditional branch has seen every level a sampler visits.
    pub fn sampling_range() -> Self {
        SigmaDistribution::LogUniform {
            sigma_min: 0.002,
            sigma_max: 80.0,
        }
    }

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
            SigmaDistribution::LogUniform {
                sigma_min,
                sigma_max,
            } => {
                if !(sigma_min > 0.0 && sigma_max > sigma_min && sigma_max <= 1e6) {
                    return Err(Error::InvalidSpec(format!(
                        "log-uniform training sigmas need 0 < sigma_min < sigma_max <= 1e6, \
                         got {sigma_min} / {sigma_max}"
                    )));
                }
            }
            SigmaDistribution::InfoNoise(ref config) => config.validate()?,
        }
        Ok(())
    }

    /// The same law as a prior over sigma, for the exact counterpart of the noise-dropped branch
    /// (its posterior p(sigma | x) is under the TRAINING distribution). InfoNoise's law moves as
    /// it learns: its warm-up log-normal stands for it.
    pub fn prior(&self) -> SigmaPrior {
        match *self {
            SigmaDistribution::LogNormal { p_mean, p_std } => SigmaPrior::LogNormal {
                mean: p_mean,
                std: p_std,
            },
            SigmaDistribution::LogUniform {
                sigma_min,
                sigma_max,
            } => SigmaPrior::LogUniform {
                lo: sigma_min,
                hi: sigma_max,
            },
            SigmaDistribution::InfoNoise(ref c) => SigmaPrior::LogNormal {
                mean: c.p_mean,
                std: c.p_std,
            },
        }
    }

    /// A sampler of this distribution: fresh, or InfoNoise continuing from `saved` (a resumed
    /// run) when it was built with the same constants.
    pub fn sampler(&self, saved: Option<&InfoNoiseSampler>) -> Result<Box<dyn SigmaSampler>> {
        Ok(match *self {
            SigmaDistribution::LogNormal { p_mean, p_std } => {
                Box::new(LogNormalSampler { p_mean, p_std })
            }
            SigmaDistribution::LogUniform {
                sigma_min,
                sigma_max,
            } => Box::new(LogUniformSampler {
                ln_min: sigma_min.ln(),
                ln_max: sigma_max.ln(),
            }),
            SigmaDistribution::InfoNoise(ref config) => Box::new(match saved {
                Some(state) if state.config() == config => state.clone(),
                _ => InfoNoiseSampler::new(config)?,
            }),
        })
    }
}

/// Draws training sigmas, and sees the losses they produced.
pub trait SigmaSampler: Send {
    /// `n` sigmas for one training step, drawn from `rng` only (so a step is reproducible).
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64>;
    /// The noise-conditional rows of the step just done: their sigmas and unweighted
    /// ||D - y||^2 / dim (InfoNoise builds its information profile from these).
    fn observe(&mut self, _sigmas: &[f64], _mmse_per_dim: &[f64]) {}
    /// InfoNoise's learned state (profile, density, counters); `None` for a fixed law.
    fn infonoise(&self) -> Option<&InfoNoiseSampler> {
        None
    }
}

impl SigmaSampler for InfoNoiseSampler {
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64> {
        InfoNoiseSampler::draw(self, rng, n)
    }

    fn observe(&mut self, sigmas: &[f64], mmse_per_dim: &[f64]) {
        self.observe_step(sigmas, mmse_per_dim);
    }

    fn infonoise(&self) -> Option<&InfoNoiseSampler> {
        Some(self)
    }
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

struct LogUniformSampler {
    ln_min: f64,
    ln_max: f64,
}

impl SigmaSampler for LogUniformSampler {
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| (self.ln_min + (self.ln_max - self.ln_min) * (1.0 - rng.uniform())).exp())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_their_law() -> Result<()> {
        let dist = SigmaDistribution::default();
        dist.validate()?;
        let s = dist.sampler(None)?.draw(&mut Rng::new(1), 200_000);
        let logs: Vec<f64> = s.iter().map(|v| v.ln()).collect();
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / logs.len() as f64;
        assert!((mean + 1.2).abs() < 0.01, "mean {mean}");
        assert!((var.sqrt() - 1.2).abs() < 0.01, "std {}", var.sqrt());
        // Log-uniform: ln sigma uniform, mean and variance of U(a, b).
        let range = SigmaDistribution::sampling_range();
        range.validate()?;
        let (a, b) = (0.002f64.ln(), 80f64.ln());
        let logs: Vec<f64> = range
            .sampler(None)?
            .draw(&mut Rng::new(2), 200_000)
            .iter()
            .map(|v| v.ln())
            .collect();
        assert!(logs.iter().all(|l| (a - 1e-12..=b + 1e-12).contains(l)));
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / logs.len() as f64;
        assert!((mean - (a + b) / 2.0).abs() < 0.02, "mean {mean}");
        assert!(
            (var / ((b - a).powi(2) / 12.0) - 1.0).abs() < 0.01,
            "var {var}"
        );
        for bad in [
            SigmaDistribution::LogNormal {
                p_mean: 0.0,
                p_std: 0.0,
            },
            SigmaDistribution::LogUniform {
                sigma_min: 1.0,
                sigma_max: 0.5,
            },
        ] {
            assert!(bad.validate().is_err());
        }
        Ok(())
    }
    #[test]
    fn infonoise_is_recorded_with_every_constant_and_refused_when_bad() -> Result<()> {
        let mut config = InfoNoiseConfig {
            warmup_steps: 7,
            ..InfoNoiseConfig::default()
        };
        let dist = SigmaDistribution::InfoNoise(config.clone());
        dist.validate()?;
        let json = serde_json::to_string(&dist).map_err(|e| Error::Data(e.to_string()))?;
        assert!(
            json.starts_with(r#"{"kind":"infonoise","bins":256,"#),
            "{json}"
        );
        let back: SigmaDistribution =
            serde_json::from_str(&json).map_err(|e| Error::Data(e.to_string()))?;
        assert_eq!(back, dist);
        // A misspelt constant is an error, not a default.
        let typo = json.replace("warmup_steps", "warmup_step");
        assert!(serde_json::from_str::<SigmaDistribution>(&typo).is_err());
        // During the warm-up it draws the log-normal; a saved state continues only under the
        // same constants.
        let mut sampler = dist.sampler(None)?;
        let a = sampler.draw(&mut Rng::new(3), 4);
        let b = SigmaDistribution::default()
            .sampler(None)?
            .draw(&mut Rng::new(3), 4);
        assert_eq!(a, b);
        sampler.observe(&[0.5, 1.0], &[0.1, 0.2]);
        let state = sampler.infonoise().cloned();
        let resumed = dist.sampler(state.as_ref())?;
        assert_eq!(resumed.infonoise(), state.as_ref());
        config.warmup_steps = 8;
        let other = SigmaDistribution::InfoNoise(config.clone()).sampler(state.as_ref())?;
        assert_ne!(other.infonoise(), state.as_ref());
        config.ema = 1.5;
        assert!(SigmaDistribution::InfoNoise(config).validate().is_err());
        Ok(())
    }
}
