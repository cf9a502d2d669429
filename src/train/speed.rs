//! The two reference training workloads of `noisescope bench-train`, benches/train.rs and the
//! PyTorch twin tools/peer_train.py: one training step = data draw + forward + EDM loss +
//! backward + AdamW + EMA, either with candle's stock layers and optimiser (`Path::Stock`, the
//! baseline) or with the fused ops of ops.rs (`Path::Fused`). Both paths compute the same
//! function from the same parameters; a test checks it.
//!
//! - mlp: issue 9's DEFAULT mlp on the 2-D moons (two classes), batch 512.
//! - unet: the shape of train/unet.rs at 8x8: 32 then 64 channels at 8x8 and 4x4, group-norm
//!   (8 groups) + SiLU residual blocks (down, middle, up with skip concatenation, average-pool
//!   down, nearest up), the embedding silu(mlp(noise features) + class) (128) added in every
//!   block; the 8x8 digits, batch 256 (the twin's `Unet`).
//!
//! Both: EDM preconditioning and loss (Karras et al. 2022, Table 1 and eq. 2; sigma_data from the
//! data), ln sigma ~ N(-1.2, 1.2^2), class and noise-condition dropout 0.1 with learned null
//! embeddings, AdamW (lr 1e-3, weight decay 0), EMA of the weights (beta 0.999).

use candle_core::{DType, Device, Module, Result, Tensor, Var, bail};
use candle_nn::Optimizer;

use super::ops::{self, Activation};
use crate::core::noise::Rng;

const P_MEAN: f64 = -1.2;
const P_STD: f64 = 1.2;
const DROP_CLASS: f64 = 0.1;
const DROP_NOISE: f64 = 0.1;
const EMA_BETA: f64 = 0.999;
const LEARNING_RATE: f64 = 1e-3;
/// sin/cos of c_noise f_k for 16 frequencies f_k log-spaced in [1, 1000].
const FOURIER: usize = 16;
const EMBED: usize = 2 * FOURIER;
const MLP_CLASS_DIM: usize = 32;

/// Which network is trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Mlp,
    Unet,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Mlp => "mlp",
            Workload::Unet => "unet",
        }
    }
}

impl std::str::FromStr for Workload {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "mlp" => Ok(Workload::Mlp),
            "unet" => Ok(Workload::Unet),
            other => Err(format!("unknown model `{other}` (mlp or unet)")),
        }
    }
}

/// candle's stock layers and optimiser, or the fused ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Stock,
    Fused,
}

/// A linear layer's parameters, [out, in] and [out] as in candle-nn.
struct Dense {
    weight: Var,
    bias: Var,
}

impl Dense {
    fn new(rng: &mut Rng, fan_in: usize, fan_out: usize, params: &mut Vec<Var>) -> Result<Self> {
        // PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both.
        let bound = 1.0 / (fan_in as f64).sqrt();
        let weight = uniform_var(rng, &[fan_out, fan_in], bound, params)?;
        let bias = uniform_var(rng, &[fan_out], bound, params)?;
        Ok(Dense { weight, bias })
    }

    fn forward(&self, x: &Tensor, act: Activation, path: Path) -> Result<Tensor> {
        match path {
            Path::Fused => ops::linear(x, &self.weight, &self.bias, act),
            Path::Stock => {
                let layer = candle_nn::Linear::new(
                    self.weight.as_tensor().clone(),
                    Some(self.bias.as_tensor().clone()),
                );
                let y = layer.forward(x)?;
                match act {
                    Activation::Identity => Ok(y),
                    Activation::Silu => y.silu(),
                }
            }
        }
    }
}

struct Conv {
    weight: Var,
    bias: Var,
    stride: usize,
    padding: usize,
}

impl Conv {
    fn new(
        rng: &mut Rng,
        (c_in, c_out, kernel): (usize, usize, usize),
        stride: usize,
        params: &mut Vec<Var>,
    ) -> Result<Self> {
        let bound = 1.0 / ((c_in * kernel * kernel) as f64).sqrt();
        Ok(Conv {
            weight: uniform_var(rng, &[c_out, c_in, kernel, kernel], bound, params)?,
            bias: uniform_var(rng, &[c_out], bound, params)?,
            stride,
            padding: kernel / 2,
        })
    }

    fn forward(&self, x: &Tensor, path: Path) -> Result<Tensor> {
        match path {
            Path::Fused => ops::conv2d(x, &self.weight, &self.bias, self.stride, self.padding),
            Path::Stock => {
                let c_out = self.bias.dim(0)?;
                x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?
                    .broadcast_add(&self.bias.reshape((1, c_out, 1, 1))?)
            }
        }
    }
}

struct Norm {
    gamma: Var,
    beta: Var,
    groups: usize,
}

impl Norm {
    fn new(channels: usize, groups: usize, params: &mut Vec<Var>) -> Result<Self> {
        let gamma = Var::ones(channels, DType::F32, &Device::Cpu)?;
        let beta = Var::zeros(channels, DType::F32, &Device::Cpu)?;
        params.extend([gamma.clone(), beta.clone()]);
        Ok(Norm {
            gamma,
            beta,
            groups,
        })
    }

    /// silu(group_norm(x)).
    fn forward_silu(&self, x: &Tensor, path: Path) -> Result<Tensor> {
        match path {
            Path::Fused => ops::group_norm(x, &self.gamma, &self.beta, self.groups, 1e-5, true),
            Path::Stock => {
                let channels = self.gamma.dim(0)?;
                candle_nn::GroupNorm::new(
                    self.gamma.as_tensor().clone(),
                    self.beta.as_tensor().clone(),
                    channels,
                    self.groups,
                    1e-5,
                )?
                .forward(x)?
                .silu()
            }
        }
    }
}

fn uniform_var(rng: &mut Rng, shape: &[usize], bound: f64, params: &mut Vec<Var>) -> Result<Var> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
        .collect();
    let var = Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu)?)?;
    params.push(var.clone());
    Ok(var)
}

fn normal_var(rng: &mut Rng, shape: &[usize], params: &mut Vec<Var>) -> Result<Var> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let var = Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu)?)?;
    params.push(var.clone());
    Ok(var)
}

/// The noise and class conditions: sin/cos(c_noise f_k) or a learned null vector where the
/// noise level is dropped, and a class embedding whose row 0 is the null class.
struct Conditions {
    null_noise: Var,
    classes: Var,
}

impl Conditions {
    fn new(rng: &mut Rng, classes: usize, class_dim: usize, params: &mut Vec<Var>) -> Result<Self> {
        Ok(Conditions {
            null_noise: normal_var(rng, &[EMBED], params)?,
            classes: normal_var(rng, &[classes + 1, class_dim], params)?,
        })
    }

    /// The noise embedding [batch, EMBED] and the class embedding [batch, class_dim].
    fn forward(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let rows = batch.labels.dim(0)?;
        let fourier = Tensor::from_vec(batch.fourier.clone(), (rows, EMBED), &Device::Cpu)?;
        let dropped = &batch.noise_dropped;
        let kept = (dropped.ones_like()? - dropped)?;
        let noise = (fourier.broadcast_mul(&kept)?
            + dropped.broadcast_mul(&self.null_noise.unsqueeze(0)?)?)?;
        let class = self.classes.as_tensor().index_select(&batch.labels, 0)?;
        Ok((noise, class))
    }
}

/// One training batch with its EDM preconditioning, drawn from a seeded generator.
struct Batch {
    /// Clean data y [rows, dim].
    clean: Tensor,
    /// Noisy x = y + sigma n [rows, dim].
    noisy: Tensor,
    /// c_in x [rows, dim].
    scaled: Tensor,
    /// sin/cos(c_noise f_k), [rows][EMBED].
    fourier: Vec<f32>,
    /// Class + 1, or 0 (the null class) where the class is dropped, [rows] u32.
    labels: Tensor,
    /// 1 where the noise condition is dropped, [rows, 1].
    noise_dropped: Tensor,
    c_skip: Tensor,
    c_out: Tensor,
    /// lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2, [rows, 1].
    weight: Tensor,
}

/// The data a workload trains on.
struct Data {
    values: Vec<f32>,
    labels: Vec<u32>,
    dim: usize,
    sigma_data: f64,
}

impl Data {
    fn load(workload: Workload) -> Result<Data> {
        let set = match workload {
            Workload::Mlp => match crate::data::toys::load("moons", 20_000) {
                Ok(crate::data::Source::Empirical(set)) => set,
                Ok(_) => bail!("moons is not a point set"),
                Err(e) => bail!("moons: {e}"),
            },
            Workload::Unet => match crate::data::digits::load() {
                Ok(set) => set,
                Err(e) => bail!("digits: {e}"),
            },
        };
        let mean = set.values.iter().sum::<f64>() / set.values.len() as f64;
        let var = set.values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / set.values.len() as f64;
        Ok(Data {
            values: set.values.iter().map(|&v| v as f32).collect(),
            labels: set.labels.unwrap_or_else(|| vec![0; set.n]),
            dim: set.dim,
            sigma_data: var.sqrt(),
        })
    }

    fn classes(&self) -> usize {
        self.labels.iter().max().map_or(1, |m| *m as usize + 1)
    }

    fn draw(&self, rng: &mut Rng, rows: usize) -> Result<Batch> {
        let (dim, sd) = (self.dim, self.sigma_data);
        let n = self.labels.len();
        let freqs: Vec<f64> = (0..FOURIER)
            .map(|k| 1000f64.powf(k as f64 / (FOURIER - 1) as f64))
            .collect();
        let mut clean = Vec::with_capacity(rows * dim);
        let mut noisy = Vec::with_capacity(rows * dim);
        let mut scaled = Vec::with_capacity(rows * dim);
        let mut fourier = Vec::with_capacity(rows * EMBED);
        let (mut labels, mut dropped) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        let (mut c_skip, mut c_out, mut weight) = (vec![], vec![], vec![]);
        for _ in 0..rows {
            let i = rng.below(n);
            let sigma = (rng.normal() * P_STD + P_MEAN).exp();
            let s2 = sigma * sigma + sd * sd;
            let c_in = 1.0 / s2.sqrt();
            let c_noise = sigma.ln() / 4.0;
            for &y in &self.values[i * dim..(i + 1) * dim] {
                let x = y as f64 + sigma * rng.normal();
                clean.push(y);
                noisy.push(x as f32);
                scaled.push((c_in * x) as f32);
            }
            fourier.extend(freqs.iter().map(|f| (c_noise * f).sin() as f32));
            fourier.extend(freqs.iter().map(|f| (c_noise * f).cos() as f32));
            let class_dropped = rng.uniform() < DROP_CLASS;
            labels.push(if class_dropped { 0 } else { self.labels[i] + 1 });
            dropped.push(if rng.uniform() < DROP_NOISE { 1f32 } else { 0.0 });
            c_skip.push((sd * sd / s2) as f32);
            c_out.push((sigma * sd / s2.sqrt()) as f32);
            weight.push((s2 / (sigma * sd).powi(2)) as f32);
        }
        let cpu = &Device::Cpu;
        let column = |v: Vec<f32>| Tensor::from_vec(v, (rows, 1), cpu);
        Ok(Batch {
            clean: Tensor::from_vec(clean, (rows, dim), cpu)?,
            noisy: Tensor::from_vec(noisy, (rows, dim), cpu)?,
            scaled: Tensor::from_vec(scaled, (rows, dim), cpu)?,
            fourier,
            labels: Tensor::from_vec(labels, rows, cpu)?,
            noise_dropped: column(dropped)?,
            c_skip: column(c_skip)?,
            c_out: column(c_out)?,
            weight: column(weight)?,
        })
    }
}

/// The default mlp: [c_in x ++ noise embedding ++ class embedding] -> 4 x (Linear 256 + SiLU)
/// -> Linear(dim).
struct Mlp {
    conditions: Conditions,
    hidden: Vec<Dense>,
    out: Dense,
}

impl Mlp {
    fn new(rng: &mut Rng, dim: usize, classes: usize, params: &mut Vec<Var>) -> Result<Self> {
        let conditions = Conditions::new(rng, classes, MLP_CLASS_DIM, params)?;
        let mut hidden = Vec::new();
        let mut fan_in = dim + EMBED + MLP_CLASS_DIM;
        for _ in 0..4 {
            hidden.push(Dense::new(rng, fan_in, 256, params)?);
            fan_in = 256;
        }
        let out = Dense::new(rng, fan_in, dim, params)?;
        Ok(Mlp {
            conditions,
            hidden,
            out,
        })
    }

    fn forward(&self, batch: &Batch, path: Path) -> Result<Tensor> {
        let (noise, class) = self.conditions.forward(batch)?;
        let mut h = Tensor::cat(&[&batch.scaled, &noise, &class], 1)?;
        for layer in &self.hidden {
            h = layer.forward(&h, Activation::Silu, path)?;
        }
        self.out.forward(&h, Activation::Identity, path)
    }
}

/// Group norm + SiLU + conv, + embedding projection, group norm + SiLU + conv, + skip (a 1x1
/// conv when the channel count changes).
struct ResBlock {
    norm1: Norm,
    conv1: Conv,
    embed: Dense,
    norm2: Norm,
    conv2: Conv,
    skip: Option<Conv>,
}

impl ResBlock {
    fn new(
        rng: &mut Rng,
        c_in: usize,
        c_out: usize,
        embed: usize,
        params: &mut Vec<Var>,
    ) -> Result<Self> {
        Ok(ResBlock {
            norm1: Norm::new(c_in, GROUPS, params)?,
            conv1: Conv::new(rng, (c_in, c_out, 3), 1, params)?,
            embed: Dense::new(rng, embed, c_out, params)?,
            norm2: Norm::new(c_out, GROUPS, params)?,
            conv2: Conv::new(rng, (c_out, c_out, 3), 1, params)?,
            skip: if c_in != c_out {
                Some(Conv::new(rng, (c_in, c_out, 1), 1, params)?)
            } else {
                None
            },
        })
    }

    fn forward(&self, h: &Tensor, e: &Tensor, path: Path) -> Result<Tensor> {
        let y = self.conv1.forward(&self.norm1.forward_silu(h, path)?, path)?;
        let projected = self.embed.forward(e, Activation::Identity, path)?;
        let y = y.broadcast_add(&projected.unsqueeze(2)?.unsqueeze(3)?)?;
        let y = self.conv2.forward(&self.norm2.forward_silu(&y, path)?, path)?;
        match &self.skip {
            Some(skip) => skip.forward(h, path)? + y,
            None => h + y,
        }
    }
}

/// Two resolutions (side, side / 2) with CHANNELS channels: a residual block down at each,
/// average-pool between, a middle block, then up with the skips concatenated, nearest
/// up-sampling; the embedding silu(mlp(noise features) + class) enters every block.
struct Unet {
    side: usize,
    channels: usize,
    conditions: Conditions,
    embed1: Dense,
    embed2: Dense,
    conv_in: Conv,
    down: [ResBlock; 2],
    middle: ResBlock,
    up: [ResBlock; 2],
    norm_out: Norm,
    conv_out: Conv,
}

const CHANNELS: [usize; 2] = [32, 64];
const GROUPS: usize = 8;
const UNET_EMBED: usize = 128;

impl Unet {
    fn new(rng: &mut Rng, side: usize, classes: usize, params: &mut Vec<Var>) -> Result<Self> {
        let channels = 1;
        let [c0, c1] = CHANNELS;
        let e = UNET_EMBED;
        Ok(Unet {
            side,
            channels,
            conditions: Conditions::new(rng, classes, e, params)?,
            embed1: Dense::new(rng, EMBED, e, params)?,
            embed2: Dense::new(rng, e, e, params)?,
            conv_in: Conv::new(rng, (channels, c0, 3), 1, params)?,
            down: [
                ResBlock::new(rng, c0, c0, e, params)?,
                ResBlock::new(rng, c0, c1, e, params)?,
            ],
            middle: ResBlock::new(rng, c1, c1, e, params)?,
            up: [
                ResBlock::new(rng, c1 + c0, c0, e, params)?,
                ResBlock::new(rng, c1 + c1, c1, e, params)?,
            ],
            norm_out: Norm::new(c0, GROUPS, params)?,
            conv_out: Conv::new(rng, (c0, channels, 3), 1, params)?,
        })
    }

    fn forward(&self, batch: &Batch, path: Path) -> Result<Tensor> {
        let rows = batch.scaled.dim(0)?;
        let (noise, class) = self.conditions.forward(batch)?;
        let e = self.embed1.forward(&noise, Activation::Silu, path)?;
        let e = (self.embed2.forward(&e, Activation::Identity, path)? + class)?;
        let e = match path {
            Path::Fused => ops::silu(&e)?,
            Path::Stock => e.silu()?,
        };
        let x = batch
            .scaled
            .reshape((rows, self.channels, self.side, self.side))?;
        let h = self.conv_in.forward(&x, path)?;
        let skip0 = self.down[0].forward(&h, &e, path)?;
        let skip1 = self.down[1].forward(&skip0.avg_pool2d(2)?, &e, path)?;
        let h = self.middle.forward(&skip1, &e, path)?;
        let h = self.up[1].forward(&Tensor::cat(&[&h, &skip1], 1)?, &e, path)?;
        let h = h.upsample_nearest2d(self.side, self.side)?;
        let h = self.up[0].forward(&Tensor::cat(&[&h, &skip0], 1)?, &e, path)?;
        let out = self
            .conv_out
            .forward(&self.norm_out.forward_silu(&h, path)?, path)?;
        out.reshape((rows, self.channels * self.side * self.side))
    }
}

enum Network {
    Mlp(Mlp),
    Unet(Unet),
}

enum Adam {
    Stock(candle_nn::AdamW),
    Fused(ops::FusedAdamW),
}

/// A workload ready to train: network, optimiser, EMA, data and generator.
pub struct TrainBench {
    path: Path,
    network: Network,
    params: Vec<Var>,
    ema: Vec<Tensor>,
    adam: Adam,
    data: Data,
    rng: Rng,
    batch: usize,
}

impl TrainBench {
    /// The workload at its default batch (512 mlp, 256 unet) unless `batch` is given.
    pub fn new(workload: Workload, path: Path, batch: Option<usize>, seed: u64) -> Result<Self> {
        let data = Data::load(workload)?;
        let mut rng = Rng::new(seed);
        let mut params = Vec::new();
        let classes = data.classes();
        let (network, default_batch) = match workload {
            Workload::Mlp => (
                Network::Mlp(Mlp::new(&mut rng, data.dim, classes, &mut params)?),
                512,
            ),
            Workload::Unet => {
                let side = (data.dim as f64).sqrt() as usize;
                if side * side != data.dim {
                    bail!("unet: {} values per image are not a square", data.dim);
                }
                (
                    Network::Unet(Unet::new(&mut rng, side, classes, &mut params)?),
                    256,
                )
            }
        };
        let ema = params
            .iter()
            .map(|p| p.as_tensor().copy())
            .collect::<Result<Vec<_>>>()?;
        let config = candle_nn::ParamsAdamW {
            lr: LEARNING_RATE,
            weight_decay: 0.0,
            ..Default::default()
        };
        let adam = match path {
            Path::Stock => Adam::Stock(candle_nn::AdamW::new(params.clone(), config)?),
            Path::Fused => Adam::Fused(ops::FusedAdamW::new(params.clone(), config)?),
        };
        Ok(TrainBench {
            path,
            network,
            params,
            ema,
            adam,
            data,
            rng,
            batch: batch.unwrap_or(default_batch),
        })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|p| p.elem_count()).sum()
    }

    /// The EDM loss of a fresh batch (no update).
    fn loss(&self, batch: &Batch) -> Result<Tensor> {
        let f = match &self.network {
            Network::Mlp(m) => m.forward(batch, self.path)?,
            Network::Unet(u) => u.forward(batch, self.path)?,
        };
        let denoised =
            (batch.noisy.broadcast_mul(&batch.c_skip)? + f.broadcast_mul(&batch.c_out)?)?;
        match self.path {
            Path::Fused => ops::weighted_mse(&denoised, &batch.clean, &batch.weight),
            Path::Stock => (denoised - &batch.clean)?
                .sqr()?
                .broadcast_mul(&batch.weight)?
                .mean_all(),
        }
    }

    /// One training step; returns the batch's loss.
    pub fn step(&mut self) -> Result<f32> {
        let batch = self.data.draw(&mut self.rng, self.batch)?;
        let loss = self.loss(&batch)?;
        let grads = loss.backward()?;
        match &mut self.adam {
            Adam::Stock(a) => a.step(&grads)?,
            Adam::Fused(a) => a.step(&grads)?,
        }
        for (ema, p) in self.ema.iter_mut().zip(&self.params) {
            match self.path {
                Path::Fused => ops::ema_update(ema, p, 1.0 - EMA_BETA)?,
                Path::Stock => *ema = ((&*ema * EMA_BETA)? + (p.as_tensor() * (1.0 - EMA_BETA))?)?,
            }
        }
        loss.to_scalar::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused and stock paths start from the same parameters (same seed) and see the same
    /// batches, so their losses agree step for step up to f32 rounding.
    #[test]
    fn fused_and_stock_paths_train_the_same_function() {
        for workload in [Workload::Mlp, Workload::Unet] {
            let mut stock = TrainBench::new(workload, Path::Stock, Some(24), 3).expect("stock");
            let mut fused = TrainBench::new(workload, Path::Fused, Some(24), 3).expect("fused");
            for step in 0..3 {
                let (s, f) = (stock.step().expect("stock"), fused.step().expect("fused"));
                assert!(s.is_finite() && s > 0.0, "{workload:?} step {step}: loss {s}");
                assert!(
                    (s - f).abs() <= 1e-4 * s.abs(),
                    "{workload:?} step {step}: stock {s} fused {f}"
                );
            }
        }
    }
}
