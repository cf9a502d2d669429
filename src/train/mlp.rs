//! The mlp for low-dimensional data (1-D, 2-D toys, .npy up to ~16 dims, flattened 8x8 digits).
//! Its default configuration is fixed so that it can be benchmarked against a reference (issue 9):
//! input c_in x (D) ++ sin / cos of c_noise f_k for 16 frequencies f_k log-spaced from 1 to 1000
//! (32) ++ a class embedding (32; row 0 is the null class), then 4 x (Linear 256 + SiLU), then
//! Linear(D) initialised to zero.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::layers::Dense;
use super::network::{Conditioning, NetInput};
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Width of every hidden layer.
    pub hidden: usize,
    /// Number of hidden layers (Linear + SiLU).
    pub depth: usize,
    /// Fourier frequencies of the noise features (twice as many features).
    pub frequencies: usize,
    /// Width of the class embedding.
    pub class_dim: usize,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            hidden: 256,
            depth: 4,
            frequencies: 16,
            class_dim: 32,
        }
    }
}

impl MlpConfig {
    pub fn validate(&self) -> Result<()> {
        if !(1..=8192).contains(&self.hidden)
            || !(1..=64).contains(&self.depth)
            || !(1..=256).contains(&self.frequencies)
            || !(1..=4096).contains(&self.class_dim)
        {
            return Err(Error::InvalidSpec(format!(
                "mlp sizes out of range: {self:?}"
            )));
        }
        Ok(())
    }
}

pub struct Mlp {
    conditioning: Conditioning,
    hidden: Vec<Dense>,
    output: Dense,
}

impl Mlp {
    pub fn new(config: &MlpConfig, dim: usize, classes: usize, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let conditioning = Conditioning::new(
            config.frequencies,
            classes,
            config.class_dim,
            vb.pp("conditioning"),
        )?;
        let mut width = dim + 2 * config.frequencies + config.class_dim;
        let mut hidden = Vec::with_capacity(config.depth);
        for k in 0..config.depth {
            hidden.push(Dense::new(
                width,
                config.hidden,
                true,
                vb.pp(format!("hidden{k}")),
            )?);
            width = config.hidden;
        }
        Ok(Mlp {
            conditioning,
            hidden,
            output: Dense::zero(width, dim, vb.pp("output"))?,
        })
    }

    /// F, [B, D].
    pub fn forward(&self, input: &NetInput) -> Result<Tensor> {
        let (noise, class) = self.conditioning.embed(input)?;
        let mut h = Tensor::cat(&[&input.x, &noise, &class], 1)?;
        for layer in &self.hidden {
            h = layer.forward(&h)?;
        }
        self.output.forward(&h)
    }
}
