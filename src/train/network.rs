//! A learned denoiser: a network (mlp or unet) behind EDM preconditioning, with the class and
//! noise conditions each droppable to a learned null embedding (see the module note of `train`).

use candle_core::{DType, Device, Tensor};
use candle_nn::{Embedding, Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::mlp::{Mlp, MlpConfig};
use super::precond::{Coefficients, Preconditioning};
use super::unet::{Unet, UnetConfig};
use crate::data::ImageShape;
use crate::error::{Error, Result};

/// The network's noise features: sin(c_noise f_k) then cos(c_noise f_k) for `count` frequencies
/// f_k log-spaced from 1 to 1000.
pub fn fourier_features(c_noise: f64, count: usize) -> Vec<f32> {
    let freq = |k: usize| {
        if count <= 1 {
            1.0
        } else {
            1000f64.powf(k as f64 / (count - 1) as f64)
        }
    };
    let sin = (0..count).map(|k| (c_noise * freq(k)).sin() as f32);
    let cos = (0..count).map(|k| (c_noise * freq(k)).cos() as f32);
    sin.chain(cos).collect()
}

/// One batch of network inputs.
pub struct NetInput {
    /// c_in x, [B, D].
    pub x: Tensor,
    /// Fourier features of c_noise, [B, 2F] (zeros where the noise condition is dropped).
    pub noise_features: Tensor,
    /// 1 where the noise condition is dropped, else 0, [B, 1].
    pub noise_dropped: Tensor,
    /// Class index per row, [B] u32: 0 is the null class, k + 1 is class k.
    pub class: Tensor,
}

impl NetInput {
    /// Builds the inputs on the host: `x` are the raw rows (f64), scaled here by each row's c_in.
    pub fn from_rows(
        x: &[f64],
        dim: usize,
        coefficients: &[Coefficients],
        class_index: &[u32],
        frequencies: usize,
    ) -> Result<Self> {
        let rows = coefficients.len();
        if x.len() != rows * dim || class_index.len() != rows {
            return Err(Error::Shape(format!(
                "{} values, {} classes for {rows} rows of dimension {dim}",
                x.len(),
                class_index.len()
            )));
        }
        let mut scaled = Vec::with_capacity(x.len());
        let mut features = Vec::with_capacity(rows * 2 * frequencies);
        let mut dropped = Vec::with_capacity(rows);
        for (r, c) in coefficients.iter().enumerate() {
            scaled.extend(
                x[r * dim..(r + 1) * dim]
                    .iter()
                    .map(|v| (c.c_in * v) as f32),
            );
            match c.c_noise {
                Some(c_noise) => {
                    features.extend(fourier_features(c_noise, frequencies));
                    dropped.push(0f32);
                }
                None => {
                    features.extend(std::iter::repeat_n(0f32, 2 * frequencies));
                    dropped.push(1f32);
                }
            }
        }
        let dev = &Device::Cpu;
        Ok(NetInput {
            x: Tensor::from_vec(scaled, (rows, dim), dev)?,
            noise_features: Tensor::from_vec(features, (rows, 2 * frequencies), dev)?,
            noise_dropped: Tensor::from_vec(dropped, (rows, 1), dev)?,
            class: Tensor::from_vec(class_index.to_vec(), rows, dev)?,
        })
    }
}

/// The two conditions: the noise features (or the learned null noise embedding where dropped)
/// and a class embedding whose row 0 is the learned null class.
pub struct Conditioning {
    noise_null: Tensor,
    class: Embedding,
}

impl Conditioning {
    pub fn new(
        frequencies: usize,
        classes: usize,
        class_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        // The null noise embedding starts with the features' own spread (sin^2 averages 1/2).
        let noise_null = vb.get_with_hints(
            (1, 2 * frequencies),
            "noise_null",
            Init::Randn {
                mean: 0.0,
                stdev: 0.5f64.sqrt(),
            },
        )?;
        Ok(Conditioning {
            noise_null,
            class: candle_nn::embedding(classes + 1, class_dim, vb.pp("class"))?,
        })
    }

    /// (noise embedding [B, 2F], class embedding [B, class_dim]).
    pub fn embed(&self, input: &NetInput) -> Result<(Tensor, Tensor)> {
        let kept = (1.0 - &input.noise_dropped)?;
        let noise = (input.noise_features.broadcast_mul(&kept)?
            + self.noise_null.broadcast_mul(&input.noise_dropped)?)?;
        let class = candle_core::Module::forward(&self.class, &input.class)?;
        Ok((noise, class))
    }
}

/// Which network, with its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArchConfig {
    Mlp(MlpConfig),
    Unet(UnetConfig),
}

impl ArchConfig {
    pub fn name(&self) -> &'static str {
        match self {
            ArchConfig::Mlp(_) => "mlp",
            ArchConfig::Unet(_) => "unet",
        }
    }

    pub fn frequencies(&self) -> usize {
        match self {
            ArchConfig::Mlp(c) => c.frequencies,
            ArchConfig::Unet(c) => c.frequencies,
        }
    }
}

/// Everything that fixes a model's shape and meaning; kept in the checkpoint's sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: ArchConfig,
    /// Dimension of one sample.
    pub dim: usize,
    /// Data classes (the class embedding has one more row, the null class).
    pub classes: usize,
    /// The sample as an image (the unet needs it).
    pub image: Option<ImageShape>,
    pub precond: Preconditioning,
}

impl ModelConfig {
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(Error::InvalidSpec("a model needs dimension >= 1".into()));
        }
        match &self.arch {
            ArchConfig::Mlp(c) => c.validate(),
            ArchConfig::Unet(c) => {
                let Some(image) = self.image else {
                    return Err(Error::InvalidSpec(
                        "the unet needs image data (digits or images:DIR); use --model mlp".into(),
                    ));
                };
                if image.width * image.height * image.channels != self.dim {
                    return Err(Error::Shape(format!(
                        "image {}x{}x{} does not have {} values",
                        image.width, image.height, image.channels, self.dim
                    )));
                }
                c.validate(image)
            }
        }
    }
}

enum Network {
    Mlp(Mlp),
    Unet(Box<Unet>),
}

/// The network F with its configuration; D itself is assembled on the host (`denoise_rows`).
pub struct DenoiserNet {
    pub config: ModelConfig,
    net: Network,
}

impl DenoiserNet {
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let net = match &config.arch {
            ArchConfig::Mlp(c) => Network::Mlp(Mlp::new(c, config.dim, config.classes, vb)?),
            ArchConfig::Unet(c) => {
                let image = config
                    .image
                    .ok_or_else(|| Error::InvalidSpec("the unet needs image data".into()))?;
                Network::Unet(Box::new(Unet::new(c, image, config.classes, vb)?))
            }
        };
        Ok(DenoiserNet {
            config: config.clone(),
            net,
        })
    }

    /// F(c_in x; conditions), [B, D].
    pub fn forward(&self, input: &NetInput) -> Result<Tensor> {
        match &self.net {
            Network::Mlp(m) => m.forward(input),
            Network::Unet(u) => u.forward(input),
        }
    }

    /// The inputs and coefficients of rows that share one sigma and one noise condition.
    pub fn inputs(
        &self,
        x: &[f64],
        sigma: f64,
        noise_dropped: bool,
        class_index: &[u32],
    ) -> Result<(NetInput, Vec<Coefficients>)> {
        let dim = self.config.dim;
        let coefficients: Vec<Coefficients> = x
            .chunks(dim)
            .map(|row| self.config.precond.coefficients(sigma, noise_dropped, row))
            .collect();
        let input = NetInput::from_rows(
            x,
            dim,
            &coefficients,
            class_index,
            self.config.arch.frequencies(),
        )?;
        Ok((input, coefficients))
    }

    /// D(x; sigma) = c_skip x + c_out F for `class_index.len()` rows of `x` at one sigma
    /// (or D_none = x + sigma F(c_none(x) x; null) when the noise condition is dropped).
    pub fn denoise_rows(
        &self,
        x: &[f64],
        sigma: f64,
        noise_dropped: bool,
        class_index: &[u32],
    ) -> Result<Vec<f64>> {
        let (input, coefficients) = self.inputs(x, sigma, noise_dropped, class_index)?;
        let f = self
            .forward(&input)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let dim = self.config.dim;
        Ok(x.iter()
            .zip(&f)
            .enumerate()
            .map(|(i, (&xv, &fv))| {
                let c = &coefficients[i / dim];
                c.c_skip * xv + c.c_out * fv as f64
            })
            .collect())
    }
}
