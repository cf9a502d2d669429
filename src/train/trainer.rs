//! The training loop: EDM's loss (science.md section 8) with class and noise dropout, AdamW with a
//! warm-up, an EMA of the weights. It runs on the caller's thread (no threads inside), reports
//! progress through a callback, obeys a `TrainControl` (pause / resume / cancel) between steps,
//! and is reproducible: every random draw of step k comes from a generator keyed by (seed, k),
//! so the same seed gives the same loss curve, and a resumed run continues the same curve.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::adamw::{AdamW, AdamWConfig};
use super::data::TrainingSet;
use super::ema::{Ema, one_minus_decay};
use super::network::{ArchConfig, DenoiserNet, ModelConfig, NetInput};
use super::ops;
use super::params::ParamStore;
use super::precond::{Coefficients, Preconditioning};
use super::sigma_dist::{SigmaDistribution, SigmaSampler};
use crate::core::infonoise::{InfoNoiseProfile, InfoNoiseSampler};
use crate::core::noise::Rng;
use crate::error::{Error, Result};

/// The log-sigma grid that per-sigma losses are reported on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossBins {
    pub sigma_min: f64,
    pub sigma_max: f64,
    /// Bins, uniform in ln sigma; rows outside [sigma_min, sigma_max] count in the end bins.
    pub count: usize,
}

impl Default for LossBins {
    fn default() -> Self {
        LossBins {
            sigma_min: 0.002,
            sigma_max: 80.0,
            count: 24,
        }
    }
}

impl LossBins {
    /// The bin edges in ln sigma (count + 1 values).
    pub fn edges(&self) -> Vec<f64> {
        let (a, b) = (self.sigma_min.ln(), self.sigma_max.ln());
        (0..=self.count)
            .map(|k| a + (b - a) * k as f64 / self.count as f64)
            .collect()
    }

    fn index(&self, sigma: f64) -> usize {
        let (a, b) = (self.sigma_min.ln(), self.sigma_max.ln());
        let u = (sigma.ln() - a) / (b - a) * self.count as f64;
        (u.max(0.0) as usize).min(self.count - 1)
    }
}

/// Mean losses per ln-sigma bin over the steps since the last report (noise-conditional rows
/// only: the dropped rows train the noise-unconditional branch).
#[derive(Clone, Debug, PartialEq)]
pub struct BinnedLoss {
    /// ln sigma bin edges (one more than the bins).
    pub ln_sigma_edges: Vec<f64>,
    /// Unweighted ||D - y||^2 / dim: the model's mmse per dimension (the InfoNoise profile).
    pub mmse_per_dim: Vec<f64>,
    /// EDM-weighted: lambda(sigma) ||D - y||^2 / dim, ~1 at initialisation.
    pub weighted: Vec<f64>,
    /// Rows per bin (0: the means are NaN).
    pub counts: Vec<u64>,
}

#[derive(Clone, Debug)]
struct BinAccumulator {
    mmse: Vec<f64>,
    weighted: Vec<f64>,
    counts: Vec<u64>,
}

impl BinAccumulator {
    fn new(count: usize) -> Self {
        BinAccumulator {
            mmse: vec![0.0; count],
            weighted: vec![0.0; count],
            counts: vec![0; count],
        }
    }

    fn take(&mut self, bins: &LossBins) -> BinnedLoss {
        let done = std::mem::replace(self, BinAccumulator::new(bins.count));
        let mean = |sums: &[f64]| -> Vec<f64> {
            sums.iter()
                .zip(&done.counts)
                .map(|(s, &n)| if n == 0 { f64::NAN } else { s / n as f64 })
                .collect()
        };
        BinnedLoss {
            ln_sigma_edges: bins.edges(),
            mmse_per_dim: mean(&done.mmse),
            weighted: mean(&done.weighted),
            counts: done.counts,
        }
    }
}

/// Everything that defines a training run; kept in the checkpoint's sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Total steps to train to (a resumed run counts the steps already done).
    pub steps: usize,
    pub batch: usize,
    pub optimizer: AdamWConfig,
    /// EMA half-life in training samples (EDM: 0.5 Mimg).
    pub ema_half_life: f64,
    /// EMA ramp-up: the half-life is at most this fraction of the samples seen (EDM: 0.05).
    pub ema_rampup: Option<f64>,
    /// Probability that a row's class is replaced by the null class (CFG).
    pub class_dropout: f64,
    /// Probability that a row's noise condition is dropped (classifier-free NAG).
    pub noise_dropout: f64,
    pub seed: u64,
    /// Where the noise levels of noise-conditional rows come from (EDM's log-normal).
    pub sigma: SigmaDistribution,
    /// Where the noise levels of noise-dropped rows come from: the samplers' whole range, so that
    /// the noise-unconditional branch has seen every level it is asked about.
    pub noise_dropped_sigma: SigmaDistribution,
    pub loss_bins: LossBins,
    /// Steps between per-sigma loss reports.
    pub report_every: usize,
}

impl TrainConfig {
    /// The defaults for a model kind: batch 512 (mlp) or 256 (unet).
    pub fn for_arch(arch: &ArchConfig, steps: usize) -> Self {
        TrainConfig {
            steps,
            batch: match arch {
                ArchConfig::Mlp(_) => 512,
                ArchConfig::Unet(_) => 256,
            },
            optimizer: AdamWConfig::default(),
            ema_half_life: 50_000.0,
            ema_rampup: Some(0.05),
            class_dropout: 0.1,
            noise_dropout: 0.1,
            seed: 0,
            sigma: SigmaDistribution::default(),
            noise_dropped_sigma: SigmaDistribution::sampling_range(),
            loss_bins: LossBins::default(),
            report_every: 100,
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.optimizer.validate()?;
        self.sigma.validate()?;
        self.noise_dropped_sigma.validate()?;
        let prob = |p: f64| (0.0..=1.0).contains(&p);
        let bins = &self.loss_bins;
        let problem = if self.batch == 0 || self.batch > 1 << 16 {
            Some(format!("batch must be in 1..=65536, got {}", self.batch))
        } else if self.steps > 100_000_000 {
            Some(format!("at most 1e8 steps, got {}", self.steps))
        } else if !prob(self.class_dropout) || !prob(self.noise_dropout) {
            Some(format!(
                "dropout probabilities must be in [0, 1], got class {} / noise {}",
                self.class_dropout, self.noise_dropout
            ))
        } else if !(self.ema_half_life.is_finite() && self.ema_half_life > 0.0) {
            Some(format!(
                "the EMA half-life must be positive (samples), got {}",
                self.ema_half_life
            ))
        } else if self.ema_rampup.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            Some("the EMA ramp-up ratio must be positive".into())
        } else if !(bins.sigma_min > 0.0
            && bins.sigma_max > bins.sigma_min
            && bins.sigma_max.is_finite()
            && bins.count >= 1)
        {
            Some(format!("bad loss bins {bins:?}"))
        } else if self.report_every == 0 {
            Some("report_every must be at least 1".into())
        } else {
            None
        };
        match problem {
            Some(p) => Err(Error::InvalidSpec(p)),
            None => Ok(()),
        }
    }
}

/// What the trainer reports after every step.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Steps done so far (this one included).
    pub step: usize,
    /// Steps to train to.
    pub total: usize,
    /// This step's training loss (EDM-weighted, all rows).
    pub loss: f64,
    /// This step's learning rate.
    pub lr: f64,
    pub samples_seen: u64,
    /// Per-sigma losses since the last report, every `report_every` steps and at the end.
    pub binned: Option<BinnedLoss>,
    /// InfoNoise's m_hat and sampling density at the same reports (InfoNoise runs only).
    pub sigma_profile: Option<InfoNoiseProfile>,
}

/// How `Trainer::run` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// All `steps` are done.
    Finished,
    /// Cancelled through the control; the trainer is intact (it can be saved or run on).
    Cancelled,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ControlState {
    #[default]
    Running,
    Paused,
    Cancelled,
}

/// Pause / resume / cancel for a training run on another thread; the trainer looks at it before
/// every step (so a cancel takes effect within one step) and waits while it is paused.
#[derive(Debug, Default)]
pub struct TrainControl {
    state: Mutex<ControlState>,
    changed: Condvar,
}

impl TrainControl {
    pub fn new() -> Arc<Self> {
        Arc::new(TrainControl::default())
    }

    fn set(&self, from: &[ControlState], to: ControlState) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if from.contains(&s) {
            *s = to;
            self.changed.notify_all();
        }
    }

    pub fn pause(&self) {
        self.set(&[ControlState::Running], ControlState::Paused);
    }

    pub fn resume(&self) {
        self.set(&[ControlState::Paused], ControlState::Running);
    }

    pub fn cancel(&self) {
        self.set(
            &[ControlState::Running, ControlState::Paused],
            ControlState::Cancelled,
        );
    }

    pub fn state(&self) -> ControlState {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits while paused; whether training may go on.
    pub fn proceed(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while *s == ControlState::Paused {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        *s == ControlState::Running
    }
}

/// The random draws of one training step, all from one generator keyed by (seed, step).
struct StepDraws {
    rows: Vec<usize>,
    sigmas: Vec<f64>,
    noise_dropped: Vec<bool>,
    class_dropped: Vec<bool>,
    noise: Vec<f64>,
}

/// The generator of step `step`.
fn step_rng(seed: u64, step: usize) -> Rng {
    Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (step as u64).wrapping_add(1))
}

/// The training-sigma samplers: noise-conditional rows, noise-dropped rows.
struct Samplers {
    conditional: Box<dyn SigmaSampler>,
    dropped: Box<dyn SigmaSampler>,
}

impl Samplers {
    fn new(config: &TrainConfig, saved: Option<&InfoNoiseSampler>) -> Result<Self> {
        Ok(Samplers {
            conditional: config.sigma.sampler(saved)?,
            dropped: config.noise_dropped_sigma.sampler(None)?,
        })
    }
}

/// InfoNoise divides its density by the trainer's loss weight lambda(sigma), whose sigma_data is
/// the data's: the config records that one, whatever it said.
fn bind_loss_weight(config: &mut TrainConfig, sigma_data: f64) {
    if let SigmaDistribution::InfoNoise(info) = &mut config.sigma {
        info.sigma_data = sigma_data;
    }
}

/// `batch` rows of random draws from `rng`, in a fixed order.
fn draw(
    samplers: &mut Samplers,
    data: &TrainingSet,
    config: &TrainConfig,
    rng: &mut Rng,
    batch: usize,
) -> StepDraws {
    let rows = (0..batch).map(|_| rng.below(data.n)).collect();
    let mut sigmas = samplers.conditional.draw(rng, batch);
    let mut flip = |p: f64| -> Vec<bool> { (0..batch).map(|_| rng.uniform() < p).collect() };
    let noise_dropped = flip(config.noise_dropout);
    let class_dropped = flip(config.class_dropout);
    let dropped_sigmas = samplers.dropped.draw(rng, batch);
    for (i, &dropped) in noise_dropped.iter().enumerate() {
        if dropped {
            sigmas[i] = dropped_sigmas[i];
        }
    }
    let noise = (0..batch * data.dim).map(|_| rng.normal()).collect();
    StepDraws {
        rows,
        sigmas,
        noise_dropped,
        class_dropped,
        noise,
    }
}

/// The network inputs, the targets (y - c_skip x) / c_out and the coefficients of some draws.
fn prepare(
    data: &TrainingSet,
    model: &ModelConfig,
    draws: &StepDraws,
) -> Result<(NetInput, Tensor, Vec<Coefficients>)> {
    let dim = data.dim;
    let batch = draws.rows.len();
    let mut x = Vec::with_capacity(batch * dim);
    let mut target = Vec::with_capacity(batch * dim);
    let mut coefficients = Vec::with_capacity(batch);
    let mut class_index = Vec::with_capacity(batch);
    for (i, &j) in draws.rows.iter().enumerate() {
        let sigma = draws.sigmas[i];
        let y = data.row(j);
        let start = x.len();
        x.extend(
            y.iter()
                .zip(&draws.noise[i * dim..(i + 1) * dim])
                .map(|(&yv, n)| yv as f64 + sigma * n),
        );
        let c = model
            .precond
            .coefficients(sigma, draws.noise_dropped[i], &x[start..]);
        for (&yv, &xv) in y.iter().zip(&x[start..]) {
            target.push(c.target(yv as f64, xv) as f32);
        }
        coefficients.push(c);
        let labelled = data.classes > 0 && !draws.class_dropped[i];
        class_index.push(if labelled { data.label(j) + 1 } else { 0 });
    }
    let input = NetInput::from_rows(
        &x,
        dim,
        &coefficients,
        &class_index,
        model.arch.frequencies(),
    )?;
    let target = Tensor::from_vec(target, (batch, dim), &Device::Cpu)?;
    Ok((input, target, coefficients))
}

/// Adds the noise-conditional rows' losses to `acc`; returns their sigmas and mmse / dim.
fn accumulate(
    bins: &LossBins,
    acc: &mut BinAccumulator,
    draws: &StepDraws,
    coefficients: &[Coefficients],
    per_row: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let mut seen = (
        Vec::with_capacity(per_row.len()),
        Vec::with_capacity(per_row.len()),
    );
    for (i, &w) in per_row.iter().enumerate() {
        if draws.noise_dropped[i] {
            continue;
        }
        let sigma = draws.sigmas[i];
        let mmse = w as f64 * coefficients[i].c_out.powi(2);
        let b = bins.index(sigma);
        acc.mmse[b] += mmse;
        acc.weighted[b] += w as f64;
        acc.counts[b] += 1;
        seen.0.push(sigma);
        seen.1.push(mmse);
    }
    seen
}

/// AdamW's saved state: its step count and both moments by parameter name.
pub struct OptimizerState {
    pub steps: u64,
    pub first: BTreeMap<String, Tensor>,
    pub second: BTreeMap<String, Tensor>,
}

/// State restored from a checkpoint to resume training.
pub struct ResumeState {
    pub raw: HashMap<String, Tensor>,
    pub ema: BTreeMap<String, Tensor>,
    /// AdamW's state; `None` restarts the moments.
    pub optimizer: Option<OptimizerState>,
    pub steps_done: usize,
    pub samples_seen: u64,
    pub model: ModelConfig,
    /// InfoNoise's learned state, so that a resumed run draws as the whole run would have.
    pub sigma_sampler: Option<InfoNoiseSampler>,
}

/// A training run in progress.
pub struct Trainer {
    pub config: TrainConfig,
    data: Arc<TrainingSet>,
    params: ParamStore,
    net: DenoiserNet,
    optimizer: AdamW,
    ema: Ema,
    samplers: Samplers,
    steps_done: usize,
    samples_seen: u64,
    bins: BinAccumulator,
    recent: VecDeque<f64>,
}

/// Steps averaged into `Trainer::recent_loss`.
const RECENT_STEPS: usize = 100;

impl Trainer {
    /// A fresh model of architecture `arch` for `data`, initialised from `config.seed`.
    pub fn new(arch: ArchConfig, mut config: TrainConfig, data: Arc<TrainingSet>) -> Result<Self> {
        bind_loss_weight(&mut config, data.sigma_data);
        config.validate()?;
        let model = ModelConfig {
            arch,
            dim: data.dim,
            classes: data.classes,
            image: data.image,
            precond: Preconditioning::new(data.sigma_data)?,
        };
        let params = ParamStore::new();
        let net = DenoiserNet::new(&model, params.seeded_builder(config.seed))?;
        let optimizer = AdamW::new(config.optimizer.clone(), &params)?;
        let ema = Ema::new(&params)?;
        let samplers = Samplers::new(&config, None)?;
        Ok(Self::assemble(
            config, data, params, net, optimizer, ema, samplers, 0, 0,
        ))
    }

    /// Continues a saved run on the same data: raw weights, EMA and (when saved) AdamW's moments
    /// come back, and the step counter continues, so the loss curve continues too.
    pub fn resume(
        state: ResumeState,
        mut config: TrainConfig,
        data: Arc<TrainingSet>,
    ) -> Result<Self> {
        bind_loss_weight(&mut config, data.sigma_data);
        config.validate()?;
        if state.model.dim != data.dim || state.model.classes != data.classes {
            return Err(Error::InvalidSpec(format!(
                "the checkpoint is for {} dimensions and {} classes, the data has {} and {}",
                state.model.dim, state.model.classes, data.dim, data.classes
            )));
        }
        let params = ParamStore::new();
        let net = DenoiserNet::new(&state.model, params.loading_builder(state.raw))?;
        let optimizer = match state.optimizer {
            Some(saved) => AdamW::restore(
                config.optimizer.clone(),
                &params,
                saved.steps,
                saved.first,
                saved.second,
            )?,
            None => AdamW::new(config.optimizer.clone(), &params)?,
        };
        let ema = Ema::from_tensors(&params, state.ema)?;
        let samplers = Samplers::new(&config, state.sigma_sampler.as_ref())?;
        Ok(Self::assemble(
            config,
            data,
            params,
            net,
            optimizer,
            ema,
            samplers,
            state.steps_done,
            state.samples_seen,
        ))
    }

    fn assemble(
        config: TrainConfig,
        data: Arc<TrainingSet>,
        params: ParamStore,
        net: DenoiserNet,
        optimizer: AdamW,
        ema: Ema,
        samplers: Samplers,
        steps_done: usize,
        samples_seen: u64,
    ) -> Self {
        Trainer {
            samplers,
            bins: BinAccumulator::new(config.loss_bins.count),
            config,
            data,
            params,
            net,
            optimizer,
            ema,
            steps_done,
            samples_seen,
            recent: VecDeque::with_capacity(RECENT_STEPS),
        }
    }

    pub fn model_config(&self) -> &ModelConfig {
        &self.net.config
    }

    pub fn data(&self) -> &TrainingSet {
        &self.data
    }

    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    pub fn samples_seen(&self) -> u64 {
        self.samples_seen
    }

    /// Mean training loss over the last (up to) 100 steps; NaN before the first.
    pub fn recent_loss(&self) -> f64 {
        if self.recent.is_empty() {
            return f64::NAN;
        }
        self.recent.iter().sum::<f64>() / self.recent.len() as f64
    }

    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    pub fn ema(&self) -> &Ema {
        &self.ema
    }

    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// The network on the current EMA weights (what sampling uses).
    pub fn ema_network(&self) -> Result<DenoiserNet> {
        // Copies: the EMA is updated in place, and this network must not change with it.
        let map: HashMap<String, Tensor> = self
            .ema
            .tensors()
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.copy()?)))
            .collect::<Result<_>>()?;
        DenoiserNet::new(
            &self.net.config,
            VarBuilder::from_tensors(map, DType::F32, &Device::Cpu),
        )
    }

    /// InfoNoise's learned state (None for a fixed training-sigma law).
    pub fn sigma_sampler(&self) -> Option<&InfoNoiseSampler> {
        self.samplers.conditional.infonoise()
    }

    /// The EMA network's mean EDM-weighted loss lambda ||D - y||^2 / dim on `rows` draws from
    /// `seed` with noise levels from `sigma` (not the training law): a validation loss that
    /// runs trained on different sigma laws can be compared by (same seed, same draws).
    pub fn validation_loss(
        &mut self,
        sigma: &SigmaDistribution,
        rows: usize,
        seed: u64,
    ) -> Result<f64> {
        let fixed = Samplers::new(
            &TrainConfig {
                sigma: sigma.clone(),
                ..self.config.clone()
            },
            None,
        )?;
        let training = std::mem::replace(&mut self.samplers, fixed);
        let binned = self.evaluate(true, rows, seed);
        self.samplers = training;
        let binned = binned?;
        let (sum, count) = binned
            .weighted
            .iter()
            .zip(&binned.counts)
            .filter(|(_, n)| **n > 0)
            .fold((0.0, 0u64), |(s, c), (w, n)| (s + w * *n as f64, c + n));
        Ok(sum / count.max(1) as f64)
    }

    /// The network on the raw (trained) weights.
    pub fn raw_network(&self) -> &DenoiserNet {
        &self.net
    }

    /// The losses per sigma bin of the raw or the EMA network on `rows` fresh draws from
    /// `seed`, without training (a validation of the current model), in chunks of at most
    /// `config.batch` rows.
    pub fn evaluate(&mut self, ema: bool, rows: usize, seed: u64) -> Result<BinnedLoss> {
        let ema_net = if ema { Some(self.ema_network()?) } else { None };
        let net = ema_net.as_ref().unwrap_or(&self.net);
        let bins_spec = &self.config.loss_bins;
        let mut bins = BinAccumulator::new(bins_spec.count);
        let mut rng = Rng::new(seed);
        let mut left = rows;
        while left > 0 {
            let batch = left.min(self.config.batch);
            let draws = draw(
                &mut self.samplers,
                &self.data,
                &self.config,
                &mut rng,
                batch,
            );
            let (input, target, coefficients) = prepare(&self.data, &net.config, &draws)?;
            let per_row = (net.forward(&input)? - target)?.sqr()?.mean(1)?;
            accumulate(
                bins_spec,
                &mut bins,
                &draws,
                &coefficients,
                &per_row.to_vec1()?,
            );
            left -= batch;
        }
        Ok(bins.take(bins_spec))
    }

    /// One optimisation step; returns its loss and learning rate.
    pub fn step(&mut self) -> Result<(f64, f64)> {
        ops::on_worker(|| self.step_here())
    }

    fn step_here(&mut self) -> Result<(f64, f64)> {
        let batch = self.config.batch;
        let mut rng = step_rng(self.config.seed, self.steps_done);
        let draws = draw(
            &mut self.samplers,
            &self.data,
            &self.config,
            &mut rng,
            batch,
        );
        let (input, target, coefficients) = prepare(&self.data, &self.net.config, &draws)?;
        let f = self.net.forward(&input)?;
        // lambda ||D - y||^2 = ||F - target||^2 per value (lambda = 1 / c_out^2).
        let per_row = (f - target)?.sqr()?.mean(1)?;
        let loss = per_row.mean_all()?;
        let loss_value = loss.to_scalar::<f32>()? as f64;
        if !loss_value.is_finite() {
            return Err(Error::NonFinite(format!(
                "training diverged at step {} (loss {loss_value}); try a lower --lr",
                self.steps_done
            )));
        }
        let grads = ops::backward(&loss)?;
        let lr = self.config.optimizer.lr_at(self.steps_done);
        self.optimizer.step(&self.params, &grads, lr)?;
        let decay = one_minus_decay(
            batch,
            self.config.ema_half_life,
            self.config.ema_rampup,
            self.samples_seen,
        );
        self.ema.update(&self.params, decay)?;
        let (sigmas, mmse) = accumulate(
            &self.config.loss_bins,
            &mut self.bins,
            &draws,
            &coefficients,
            &per_row.to_vec1()?,
        );
        self.samplers.conditional.observe(&sigmas, &mmse);
        self.steps_done += 1;
        self.samples_seen += batch as u64;
        if self.recent.len() == RECENT_STEPS {
            self.recent.pop_front();
        }
        self.recent.push_back(loss_value);
        Ok((loss_value, lr))
    }

    /// Trains up to `config.steps`, reporting every step; stops early when `control` cancels.
    pub fn run(
        &mut self,
        control: &TrainControl,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Outcome> {
        while self.steps_done < self.config.steps {
            if !control.proceed() {
                return Ok(Outcome::Cancelled);
            }
            let (loss, lr) = self.step()?;
            let report = self.steps_done.is_multiple_of(self.config.report_every)
                || self.steps_done == self.config.steps;
            let binned = report.then(|| self.bins.take(&self.config.loss_bins));
            let sigma_profile = if report {
                self.sigma_sampler().map(InfoNoiseSampler::profile)
            } else {
                None
            };
            on_progress(&Progress {
                step: self.steps_done,
                total: self.config.steps,
                loss,
                lr,
                samples_seen: self.samples_seen,
                binned,
                sigma_profile,
            });
        }
        Ok(Outcome::Finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataSet;
    use crate::train::mlp::MlpConfig;

    #[test]
    fn the_training_state_holds_no_autograd_graph_between_steps() -> Result<()> {
        // An op on a variable records its inputs: EMA weights or moments built from one would
        // chain every step's tensors together and grow memory without bound.
        let set = DataSet::new(
            4,
            2,
            vec![1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0],
            None,
            None,
        )?;
        let arch = ArchConfig::Mlp(MlpConfig {
            hidden: 8,
            depth: 2,
            frequencies: 2,
            class_dim: 2,
        });
        let mut config = TrainConfig::for_arch(&arch, 3);
        config.batch = 4;
        let mut trainer = Trainer::new(arch, config, Arc::new(TrainingSet::from_dataset(&set)?))?;
        trainer.run(&TrainControl::default(), &mut |_| {})?;
        let optimizer = trainer.optimizer();
        let held: Vec<&Tensor> = trainer
            .ema()
            .tensors()
            .values()
            .chain(optimizer.first_moments().values())
            .chain(optimizer.second_moments().values())
            .collect();
        assert_eq!(held.len(), 3 * trainer.params().named_vars().len());
        assert!(held.iter().all(|t| !t.track_op()));
        Ok(())
    }
}
