//! A learned noise-level estimator g(sigma | x) (seed 000's g_phi, seed 001's P_theta; science.md
//! section 5): a network maps a noisy sample x to the mean and log-variance of ln sigma, so g is a
//! density (log-normal in sigma) whose input gradient grad_x ln g(sigma | x) classifier-based NAG
//! uses. Trained on the data with sigma drawn log-uniformly over [sigma_min, sigma_max], by the
//! Gaussian NLL in ln sigma or (an option) seed 001's loss on log(1 - alpha), alpha = 1/(1+sigma^2).
//!
//! What the network sees: u = c(x) x with c(x) = 1 / sqrt(sd^2 + |x|^2 / D) (bounded at any noise
//! level) and l(x) = ln(sd^2 + |x|^2 / D) / 2, the log RMS, which is ln sigma itself once the noise
//! dominates; the mean head is a correction to l(x). Every feature is a tensor op of x, so candle's
//! autograd gives the input gradient. Written the candle way: `Config` + `new(vb)` + `forward`,
//! with candle's stock layers (the fused training ops of `ops` have no input gradient).

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Module, Optimizer, VarBuilder};
use serde::{Deserialize, Serialize};

use super::data::TrainingSet;
use super::params::ParamStore;
use crate::core::noise::Rng;
use crate::data::ImageShape;
use crate::error::{Error, Result};

/// The training loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum EstimatorLoss {
    /// The Gaussian negative log-likelihood of ln sigma: (logvar + (ln sigma - mean)^2 / var) / 2.
    #[default]
    Nll,
    /// Seed 001's (log(1 - alpha) - log(1 - alpha_hat))^2, alpha = 1/(1 + sigma^2), for the mean
    /// (~4 (delta ln sigma)^2 at low noise, flat at high noise); the log-variance by the NLL
    /// around the detached mean.
    Alpha,
}

/// The network body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EstimatorArch {
    /// Dense layers (low-dimensional data, flattened 8x8 digits).
    Mlp { hidden: usize, depth: usize },
    /// Three 3x3 convolutions (the last two of stride 2), a global average, two dense layers:
    /// images.
    Conv { channels: usize, hidden: usize },
}

impl EstimatorArch {
    pub fn name(&self) -> &'static str {
        match self {
            EstimatorArch::Mlp { .. } => "mlp",
            EstimatorArch::Conv { .. } => "conv",
        }
    }
}

/// Everything that fixes an estimator's shape and meaning (kept in its checkpoint's sidecar).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimatorConfig {
    pub arch: EstimatorArch,
    pub dim: usize,
    /// The sample as an image (the conv body needs it).
    pub image: Option<ImageShape>,
    /// The data's RMS, the scale of the input features.
    pub sigma_data: f64,
    /// The trained range of sigma (log-uniform).
    pub sigma_min: f64,
    pub sigma_max: f64,
}

impl EstimatorConfig {
    /// The mlp for `dim`-dimensional data over [sigma_min, sigma_max].
    pub fn mlp(dim: usize, sigma_data: f64, sigma_min: f64, sigma_max: f64) -> Self {
        EstimatorConfig {
            arch: EstimatorArch::Mlp {
                hidden: 256,
                depth: 3,
            },
            dim,
            image: None,
            sigma_data,
            sigma_min,
            sigma_max,
        }
    }

    /// The number of trained values (weights and biases).
    pub fn parameter_count(&self) -> usize {
        let head = |width: usize| 2 * width + 2;
        match &self.arch {
            EstimatorArch::Mlp { hidden, depth } => {
                let first = (self.dim + 1) * hidden + hidden;
                first + depth.saturating_sub(1) * (hidden * hidden + hidden) + head(*hidden)
            }
            EstimatorArch::Conv { channels, hidden } => {
                let c = *channels;
                let input = self.image.map_or(1, |i| i.channels);
                let conv = |i: usize, o: usize| 9 * i * o + o;
                conv(input, c)
                    + conv(c, 2 * c)
                    + conv(2 * c, 2 * c)
                    + (2 * c + 1) * hidden
                    + hidden
                    + head(*hidden)
            }
        }
    }

    pub fn validate(&self) -> Result<()> {
        let range_ok = self.sigma_min > 0.0
            && self.sigma_max.is_finite()
            && self.sigma_min < self.sigma_max
            && self.sigma_data.is_finite()
            && self.sigma_data > 0.0;
        if self.dim == 0 || !range_ok {
            return Err(Error::InvalidSpec(format!(
                "a noise-level estimator needs dim >= 1, sigma_data > 0 and 0 < sigma_min < \
                 sigma_max, got {self:?}"
            )));
        }
        match &self.arch {
            EstimatorArch::Mlp { hidden, depth } => {
                if !(1..=8192).contains(hidden) || !(1..=16).contains(depth) {
                    return Err(Error::InvalidSpec(format!(
                        "estimator mlp sizes out of range: {:?}",
                        self.arch
                    )));
                }
            }
            EstimatorArch::Conv { channels, hidden } => {
                let Some(image) = self.image else {
                    return Err(Error::InvalidSpec(
                        "the conv estimator needs image data (digits or images:DIR); use the mlp"
                            .into(),
                    ));
                };
                if image.width * image.height * image.channels != self.dim {
                    return Err(Error::Shape(format!(
                        "image {}x{}x{} does not have {} values",
                        image.width, image.height, image.channels, self.dim
                    )));
                }
                if !(1..=512).contains(channels) || !(1..=8192).contains(hidden) {
                    return Err(Error::InvalidSpec(format!(
                        "estimator conv sizes out of range: {:?}",
                        self.arch
                    )));
                }
            }
        }
        Ok(())
    }
}

enum Body {
    Mlp(Vec<Linear>),
    Conv { convs: [Conv2d; 3], dense: Linear },
}

/// The network: x -> (mean, log-variance) of ln sigma.
pub struct NoiseEstimatorNet {
    pub config: EstimatorConfig,
    body: Body,
    /// Zero-initialised: every estimate starts at (l(x), 0).
    head: Linear,
}

/// The log-variance is kept within [-LOGVAR_LIMIT, LOGVAR_LIMIT] (a std of 0.007 to 150 in
/// ln sigma) by a tanh: the NLL cannot run away on a sample it fits exactly.
const LOGVAR_LIMIT: f64 = 10.0;

impl NoiseEstimatorNet {
    pub fn new(config: &EstimatorConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let (body, width) = match (&config.arch, config.image) {
            (EstimatorArch::Mlp { hidden, depth }, _) => {
                let mut layers = Vec::with_capacity(*depth);
                let mut width = config.dim + 1;
                for k in 0..*depth {
                    layers.push(candle_nn::linear(
                        width,
                        *hidden,
                        vb.pp(format!("hidden{k}")),
                    )?);
                    width = *hidden;
                }
                (Body::Mlp(layers), width)
            }
            (EstimatorArch::Conv { channels, hidden }, Some(image)) => {
                let c = *channels;
                let conv = |i: usize, o: usize, stride: usize, name: &str| {
                    let cfg = Conv2dConfig {
                        padding: 1,
                        stride,
                        ..Default::default()
                    };
                    candle_nn::conv2d(i, o, 3, cfg, vb.pp(name))
                };
                let convs = [
                    conv(image.channels, c, 1, "conv0")?,
                    conv(c, 2 * c, 2, "conv1")?,
                    conv(2 * c, 2 * c, 2, "conv2")?,
                ];
                let dense = candle_nn::linear(2 * c + 1, *hidden, vb.pp("dense"))?;
                (Body::Conv { convs, dense }, *hidden)
            }
            (EstimatorArch::Conv { .. }, None) => {
                return Err(Error::InvalidSpec(
                    "the conv estimator needs image data".into(),
                ));
            }
        };
        let head = Linear::new(
            vb.pp("head")
                .get_with_hints((2, width), "weight", candle_nn::Init::Const(0.0))?,
            Some(
                vb.pp("head")
                    .get_with_hints(2, "bias", candle_nn::Init::Const(0.0))?,
            ),
        );
        Ok(NoiseEstimatorNet {
            config: config.clone(),
            body,
            head,
        })
    }

    /// (mean, log-variance) of ln sigma for every row of `x` ([B, D], f32), each [B].
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        let sd2 = c.sigma_data * c.sigma_data;
        // l(x) = ln(sd^2 + |x|^2 / D) / 2 and u = x e^(-l), [B, 1] and [B, D].
        let log_rms = ((x.sqr()?.mean_keepdim(1)? + sd2)?.log()? * 0.5)?;
        let u = x.broadcast_mul(&log_rms.neg()?.exp()?)?;
        let h = match &self.body {
            Body::Mlp(layers) => {
                let mut h = Tensor::cat(&[&u, &log_rms], 1)?;
                for layer in layers {
                    h = layer.forward(&h)?.silu()?;
                }
                h
            }
            Body::Conv { convs, dense } => {
                let image = c.image.ok_or_else(|| {
                    Error::InvalidSpec("the conv estimator needs an image".into())
                })?;
                let rows = u.dim(0)?;
                // Rows are height x width x channels (interleaved): to [B, C, H, W].
                let mut h = u
                    .reshape((rows, image.height, image.width, image.channels))?
                    .permute((0, 3, 1, 2))?
                    .contiguous()?;
                for conv in convs {
                    h = conv.forward(&h)?.silu()?;
                }
                let pooled = h.mean(3)?.mean(2)?;
                dense
                    .forward(&Tensor::cat(&[&pooled, &log_rms], 1)?)?
                    .silu()?
            }
        };
        let out = self.head.forward(&h)?;
        let mean = (out.narrow(1, 0, 1)? + &log_rms)?.squeeze(1)?;
        let logvar = ((out.narrow(1, 1, 1)? / LOGVAR_LIMIT)?.tanh()? * LOGVAR_LIMIT)?.squeeze(1)?;
        Ok((mean, logvar))
    }

    /// ln g(sigma | x) in ln sigma (up to a constant) per row, [B]:
    /// -(logvar + (ln sigma - mean)^2 / var) / 2.
    pub fn log_density(&self, x: &Tensor, ln_sigma: &Tensor) -> Result<Tensor> {
        let (mean, logvar) = self.forward(x)?;
        let nll = gaussian_nll(ln_sigma, &mean, &logvar)?;
        Ok(nll.neg()?)
    }

    /// grad_x ln g(sigma | x) for every row of `x` ([rows][dim], flat), by candle's autograd:
    /// x is a variable, the rows' log-densities are summed (rows are independent), backward.
    pub fn input_gradient(&self, x: &[f64], sigma: f64) -> Result<Vec<f64>> {
        let dim = self.config.dim;
        let rows = x.len() / dim.max(1);
        let values: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let var = Var::from_tensor(&Tensor::from_vec(values, (rows, dim), &Device::Cpu)?)?;
        let ln_sigma = Tensor::full(sigma.ln() as f32, rows, &Device::Cpu)?;
        let total = self.log_density(var.as_tensor(), &ln_sigma)?.sum_all()?;
        let grads = total.backward()?;
        let grad = grads.get(var.as_tensor()).ok_or_else(|| {
            Error::InvalidSpec("the estimator's output does not depend on x".into())
        })?;
        Ok(grad
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect())
    }
}

/// (logvar + (t - mean)^2 e^-logvar) / 2 per row.
fn gaussian_nll(t: &Tensor, mean: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let squared = (t - mean)?.sqr()?;
    Ok(((logvar + squared.mul(&logvar.neg()?.exp()?)?)? * 0.5)?)
}

/// log(1 - alpha) with alpha = 1 / (1 + sigma^2), from t = ln sigma: 2t - ln(1 + e^(2t)) =
/// -ln(1 + e^(-2t)).
fn log_one_minus_alpha(t: &Tensor) -> Result<Tensor> {
    Ok(((t * -2.0)?.exp()? + 1.0)?.log()?.neg()?)
}

/// Training settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimatorTraining {
    pub steps: usize,
    pub batch: usize,
    /// AdamW's peak learning rate (linear warm-up over the first 5%, cosine decay to 0).
    pub lr: f64,
    pub seed: u64,
    pub loss: EstimatorLoss,
}

impl Default for EstimatorTraining {
    fn default() -> Self {
        EstimatorTraining {
            steps: 3000,
            batch: 256,
            lr: 2e-3,
            seed: 0,
            loss: EstimatorLoss::Nll,
        }
    }
}

/// The learning rate of step `step` (1-based): a linear warm-up over the first 5%, then a
/// cosine decay to 2% of the peak.
pub fn learning_rate(training: &EstimatorTraining, step: usize) -> f64 {
    let warmup = (training.steps / 20).max(1);
    let progress = step as f64 / training.steps.max(1) as f64;
    let ramp = (step as f64 / warmup as f64).min(1.0);
    let decay = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    training.lr * ramp * decay.max(0.02)
}

/// A trained estimator, with its variables (what a checkpoint saves).
pub struct TrainedEstimator {
    pub net: NoiseEstimatorNet,
    pub vars: ParamStore,
    pub steps_done: usize,
    /// Mean loss over the last (up to) 100 steps.
    pub final_loss: f64,
}

/// Trains an estimator on `set`: each row is a data row plus sigma n, sigma log-uniform over the
/// config's range, n standard normal. `progress(step, loss)` may stop the run.
pub fn train(
    config: &EstimatorConfig,
    set: &TrainingSet,
    training: &EstimatorTraining,
    progress: &mut dyn FnMut(usize, f64) -> ControlFlow<()>,
) -> Result<TrainedEstimator> {
    config.validate()?;
    if set.dim != config.dim {
        return Err(Error::Shape(format!(
            "the estimator takes {}-dimensional rows, the data has {}",
            config.dim, set.dim
        )));
    }
    if training.steps == 0 || training.batch == 0 || !training.lr.is_finite() || training.lr <= 0.0
    {
        return Err(Error::InvalidSpec(format!(
            "estimator training needs steps, batch and lr > 0, got {training:?}"
        )));
    }
    let dev = Device::Cpu;
    // Seeded by parameter name (candle's own CPU draws cannot be seeded): the same seed gives
    // the same initial network, and with it the same trained bits.
    let vars = ParamStore::new();
    let net = NoiseEstimatorNet::new(config, vars.seeded_builder(training.seed))?;
    let params = candle_nn::ParamsAdamW {
        lr: training.lr,
        weight_decay: 0.0,
        ..Default::default()
    };
    let all_vars = vars.named_vars().into_iter().map(|(_, v)| v).collect();
    let mut opt = candle_nn::AdamW::new(all_vars, params)?;
    let mut rng = Rng::new(training.seed ^ 0x6e6f_6973_655f_6573);
    let (lo, hi) = (config.sigma_min.ln(), config.sigma_max.ln());
    let (b, dim) = (training.batch, config.dim);
    let mut recent = std::collections::VecDeque::with_capacity(100);
    let mut steps_done = 0;
    for step in 0..training.steps {
        let mut x = Vec::with_capacity(b * dim);
        let mut t = Vec::with_capacity(b);
        for _ in 0..b {
            let ln_sigma = lo + (hi - lo) * rng.uniform();
            let sigma = ln_sigma.exp();
            let row = set.row(rng.below(set.n));
            x.extend(
                row.iter()
                    .map(|&y| (y as f64 + sigma * rng.normal()) as f32),
            );
            t.push(ln_sigma as f32);
        }
        let x = Tensor::from_vec(x, (b, dim), &dev)?;
        let t = Tensor::from_vec(t, b, &dev)?;
        let (mean, logvar) = net.forward(&x)?;
        let loss = match training.loss {
            EstimatorLoss::Nll => gaussian_nll(&t, &mean, &logvar)?.mean_all()?,
            EstimatorLoss::Alpha => {
                let target = log_one_minus_alpha(&t)?;
                let fit = (log_one_minus_alpha(&mean.clamp(-30f32, 30f32)?)? - target)?
                    .sqr()?
                    .mean_all()?;
                (fit + gaussian_nll(&t, &mean.detach(), &logvar)?.mean_all()?)?
            }
        };
        opt.set_learning_rate(learning_rate(training, step + 1));
        opt.backward_step(&loss)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        if !value.is_finite() {
            return Err(Error::NonFinite(format!(
                "the estimator's training loss is {value} at step {step}: lower --lr"
            )));
        }
        if recent.len() == 100 {
            recent.pop_front();
        }
        recent.push_back(value);
        steps_done = step + 1;
        if progress(steps_done, value).is_break() {
            break;
        }
    }
    let final_loss = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    Ok(TrainedEstimator {
        net,
        vars,
        steps_done,
        final_loss,
    })
}

/// An estimator checkpoint's sidecar (NAME.json beside NAME.safetensors).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimatorSidecar {
    pub format: String,
    pub version: u32,
    pub config: EstimatorConfig,
    pub training: EstimatorTraining,
    /// The data it was trained on: its label and `train::data` fingerprint.
    pub data_label: String,
    pub data_fingerprint: String,
    pub steps_done: usize,
    pub final_loss: f64,
    pub written_by: String,
}

pub const ESTIMATOR_FORMAT: &str = "noisescope-noise-estimator";
pub const ESTIMATOR_VERSION: u32 = 1;

/// Writes PATH.safetensors and PATH.json (each to a temporary name, then renamed).
pub fn save(
    trained: &TrainedEstimator,
    training: &EstimatorTraining,
    set: &TrainingSet,
    data_label: &str,
    path: &Path,
) -> Result<EstimatorSidecar> {
    let sidecar = EstimatorSidecar {
        format: ESTIMATOR_FORMAT.into(),
        version: ESTIMATOR_VERSION,
        config: trained.net.config.clone(),
        training: training.clone(),
        data_label: data_label.into(),
        data_fingerprint: set.fingerprint.clone(),
        steps_done: trained.steps_done,
        final_loss: trained.final_loss,
        written_by: format!("noisescope {}", env!("CARGO_PKG_VERSION")),
    };
    let (weights, json) = (
        path.with_extension("safetensors"),
        path.with_extension("json"),
    );
    let (weights_tmp, json_tmp) = (
        path.with_extension("safetensors.tmp"),
        path.with_extension("json.tmp"),
    );
    let weights_by_name: std::collections::HashMap<String, Tensor> =
        trained.vars.snapshot()?.into_iter().collect();
    candle_core::safetensors::save(&weights_by_name, &weights_tmp)?;
    let text = serde_json::to_string_pretty(&sidecar).map_err(|e| Error::Checkpoint {
        path: json.display().to_string(),
        reason: e.to_string(),
    })?;
    std::fs::write(&json_tmp, text).map_err(|e| Error::io(&json_tmp, e))?;
    std::fs::rename(&weights_tmp, &weights).map_err(|e| Error::io(&weights, e))?;
    std::fs::rename(&json_tmp, &json).map_err(|e| Error::io(&json, e))?;
    Ok(sidecar)
}

/// Whether PATH's sidecar PATH.json (PATH may be either file) says it is a noise-level
/// estimator: what tells it apart from a denoiser checkpoint, whose sidecar has another format.
pub fn is_estimator_checkpoint(path: &Path) -> bool {
    #[derive(Deserialize)]
    struct Format {
        format: String,
    }
    std::fs::read_to_string(path.with_extension("json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Format>(&text).ok())
        .is_some_and(|f| f.format == ESTIMATOR_FORMAT)
}

/// Reads and checks the sidecar PATH.json of an estimator checkpoint (not the weights).
pub fn read_sidecar(path: &Path) -> Result<EstimatorSidecar> {
    let json = path.with_extension("json");
    let text = std::fs::read_to_string(&json).map_err(|e| Error::io(&json, e))?;
    let bad = |reason: String| Error::Checkpoint {
        path: json.display().to_string(),
        reason,
    };
    let sidecar: EstimatorSidecar = serde_json::from_str(&text)
        .map_err(|e| bad(format!("not a noise-estimator sidecar: {e}")))?;
    if sidecar.format != ESTIMATOR_FORMAT || sidecar.version != ESTIMATOR_VERSION {
        return Err(bad(format!(
            "a {} version {} file, not a {ESTIMATOR_FORMAT} version {ESTIMATOR_VERSION}",
            sidecar.format, sidecar.version
        )));
    }
    Ok(sidecar)
}

/// Reads PATH.safetensors and its sidecar PATH.json.
pub fn load(path: &Path) -> Result<(NoiseEstimatorNet, EstimatorSidecar)> {
    let sidecar = read_sidecar(path)?;
    let tensors = candle_core::safetensors::load(path.with_extension("safetensors"), &Device::Cpu)?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    Ok((NoiseEstimatorNet::new(&sidecar.config, vb)?, sidecar))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_count_is_the_networks() -> Result<()> {
        let mlp = EstimatorConfig::mlp(5, 1.0, 0.01, 10.0);
        let mut conv = EstimatorConfig::mlp(48, 1.0, 0.01, 10.0);
        conv.arch = EstimatorArch::Conv {
            channels: 4,
            hidden: 16,
        };
        conv.image = Some(ImageShape {
            width: 4,
            height: 4,
            channels: 3,
        });
        for config in [mlp, conv] {
            let vars = ParamStore::new();
            NoiseEstimatorNet::new(&config, vars.seeded_builder(0))?;
            assert_eq!(config.parameter_count(), vars.count(), "{:?}", config.arch);
        }
        Ok(())
    }

    #[test]
    fn an_untrained_estimator_reads_the_log_rms_and_its_gradient_is_autograd() -> Result<()> {
        // With the head at zero the mean is l(x) = ln(sd^2 + |x|^2/D)/2 and the log-variance 0,
        // so grad_x ln g = (ln sigma - l) grad l = (ln sigma - l) x / (D (sd^2 + |x|^2/D)).
        let config = EstimatorConfig::mlp(3, 0.5, 0.01, 10.0);
        let net = NoiseEstimatorNet::new(&config, ParamStore::new().seeded_builder(0))?;
        let x = [1.0, -2.0, 0.5, 0.1, 0.2, 0.3];
        let (mean, logvar) = net.forward(&Tensor::from_vec(
            x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            (2, 3),
            &Device::Cpu,
        )?)?;
        let (mean, logvar) = (mean.to_vec1::<f32>()?, logvar.to_vec1::<f32>()?);
        let sigma = 3.0f64;
        let grad = net.input_gradient(&x, sigma)?;
        for r in 0..2 {
            let row = &x[3 * r..3 * r + 3];
            let ms = 0.25 + row.iter().map(|v| v * v).sum::<f64>() / 3.0;
            let l = 0.5 * ms.ln();
            assert!((f64::from(mean[r]) - l).abs() < 1e-6 && logvar[r] == 0.0);
            for k in 0..3 {
                let expect = (sigma.ln() - l) * row[k] / (3.0 * ms);
                assert!((grad[3 * r + k] - expect).abs() < 1e-5, "{r} {k}");
            }
        }
        Ok(())
    }
}
