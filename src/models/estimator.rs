//! A learned noise-level estimator g(sigma | x) (`train::estimator`) where the lab asks for one:
//! sigma_hat for the noise-level plot and the adaptive schedule (`NoiseLevelEstimator`), and
//! grad_x ln g(sigma | x) for classifier-based NAG (`NoiseLevelGradient`).

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::core::Batch;
use crate::core::denoiser::Cond;
use crate::core::estimate::{NoiseLevelEstimator, NoiseLevelGradient, SigmaEstimate};
use crate::error::Result;
use crate::train::estimator::{self, EstimatorSidecar, NoiseEstimatorNet};

/// Rows per network call: bounds the activations' memory.
const CHUNK_ROWS: usize = 4096;

pub struct LearnedNoiseEstimator {
    net: NoiseEstimatorNet,
    pub sidecar: Option<EstimatorSidecar>,
}

impl LearnedNoiseEstimator {
    pub fn new(net: NoiseEstimatorNet, sidecar: Option<EstimatorSidecar>) -> Self {
        LearnedNoiseEstimator { net, sidecar }
    }

    /// PATH.safetensors with its sidecar PATH.json (`noisescope train --estimator`).
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        let (net, sidecar) = estimator::load(path)?;
        Ok(Self::new(net, Some(sidecar)))
    }

    pub fn dim(&self) -> usize {
        self.net.config.dim
    }

    fn check(&self, x: &Batch) -> Result<()> {
        x.expect_dim(self.dim(), "the noise-level estimator's input")
    }
}

impl NoiseLevelEstimator for LearnedNoiseEstimator {
    /// The network's log-normal g(sigma | x): E[ln sigma] = its mean (also the mode in ln
    /// sigma), the std e^(logvar / 2). Class conditions are ignored (g is unconditional).
    fn estimate(&self, x: &Batch, _cond: &Cond) -> Result<Vec<SigmaEstimate>> {
        self.check(x)?;
        let mut out = Vec::with_capacity(x.rows);
        for rows in x.data.chunks(CHUNK_ROWS * x.dim) {
            let values: Vec<f32> = rows.iter().map(|&v| v as f32).collect();
            let n = values.len() / x.dim;
            let input = Tensor::from_vec(values, (n, x.dim), &Device::Cpu)?;
            let (mean, logvar) = self.net.forward(&input)?;
            for (m, lv) in mean
                .to_vec1::<f32>()?
                .into_iter()
                .zip(logvar.to_vec1::<f32>()?)
            {
                let (m, lv) = (f64::from(m), f64::from(lv));
                out.push(SigmaEstimate {
                    mean_ln: m,
                    map_ln: m,
                    std_ln: (0.5 * lv).exp(),
                });
            }
        }
        Ok(out)
    }
}

impl NoiseLevelGradient for LearnedNoiseEstimator {
    fn grad_log_density(&self, x: &Batch, sigma: f64) -> Result<Batch> {
        self.check(x)?;
        let mut out = Vec::with_capacity(x.data.len());
        for rows in x.data.chunks(CHUNK_ROWS * x.dim) {
            out.extend(self.net.input_gradient(rows, sigma)?);
        }
        Batch::from_vec(x.rows, x.dim, out)
    }
}
