//! `noisescope train`: trains a learned denoiser on a data set and writes a checkpoint
//! (PATH.safetensors + PATH.json), with a progress bar and a loss line every few hundred steps.
//! The checkpoint is written to temporary files and renamed: Ctrl-C never leaves half of one.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use noisescope::backend::Compute;
use noisescope::core::Precision;
use noisescope::core::estimate::SigmaPrior;
use noisescope::core::infonoise::{InfoNoiseConfig, InfoNoiseProfile};
use noisescope::core::information::{InformationProfile, log_sigma_grid};
use noisescope::data::{DataSpec, Source};
use noisescope::models::AnalyticModel;
use noisescope::models::learned::LearnedDenoiser;
use noisescope::models::quality::sample_quality;
use noisescope::train::checkpoint::{self, Checkpoint};
use noisescope::train::data::TrainingSet;
use noisescope::train::estimator::{
    self, EstimatorArch, EstimatorConfig, EstimatorLoss, EstimatorTraining,
};
use noisescope::train::mlp::MlpConfig;
use noisescope::train::network::ArchConfig;
use noisescope::train::sigma_dist::SigmaDistribution;
use noisescope::train::trainer::{Outcome, Progress, TrainConfig, TrainControl, Trainer};
use noisescope::train::unet::UnetConfig;

/// Where the noise levels of noise-conditional training rows come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SigmaDistKind {
    /// EDM's ln sigma ~ N(-1.2, 1.2^2).
    Lognormal,
    /// InfoNoise (seed 003): the log-normal during a warm-up, then pi ∝ rho_hat / lambda, rebuilt
    /// from the training losses.
    Infonoise,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelKind {
    /// The fixed-configuration MLP for low-dimensional data (and flattened 8x8 digits).
    Mlp,
    /// The image unet (digits, folders of images).
    Unet,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// toy:NAME | gaussian:l1,l2,... | digits | npy:PATH | images:DIR
    #[arg(long)]
    pub data: String,
    /// [N] integer labels for --data npy:PATH.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Points drawn for a 2-D toy.
    #[arg(long, default_value_t = 4096)]
    pub points: usize,
    /// Image side for --data images:DIR.
    #[arg(long, default_value_t = 32)]
    pub image_size: u32,
    /// Keep colour for --data images:DIR (default grey).
    #[arg(long)]
    pub rgb: bool,
    /// mlp | unet
    #[arg(long)]
    pub model: ModelKind,
    /// Total training steps (with --resume: including the steps already done).
    #[arg(long)]
    pub steps: usize,
    /// Rows per step (default 512 for the mlp, 256 for the unet).
    #[arg(long)]
    pub batch: Option<usize>,
    /// AdamW learning rate after the warm-up (default 1e-3).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Steps of linear learning-rate warm-up (default 200).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// AdamW's decoupled weight decay (default 0, as EDM).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Seed of the initial weights and of every training draw (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Probability of training a row with the null class (for CFG; default 0.1).
    #[arg(long)]
    pub class_dropout: Option<f64>,
    /// Probability of training a row with its noise level dropped (for NAG; default 0.1).
    #[arg(long)]
    pub noise_dropout: Option<f64>,
    /// EMA half-life in training samples (default 50000).
    #[arg(long)]
    pub ema_half_life: Option<f64>,
    /// Continue from this checkpoint (same data and model; settings not given are kept).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Leave AdamW's moments out of the checkpoint: half the size, and a resume from it
    /// restarts them.
    #[arg(long)]
    pub weights_only: bool,
    /// Steps between loss lines.
    #[arg(long, default_value_t = 500)]
    pub log_every: usize,
    /// Every N steps, sample the EMA model (Heun, 18 steps; classes round-robin) and print its
    /// quality against the data: sliced W2, MMD, nearest distance, class accuracy under the
    /// exact class posterior (0: never). Training time excludes it.
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Samples per evaluation.
    #[arg(long, default_value_t = 500)]
    pub eval_samples: usize,
    /// lognormal (EDM) | infonoise (seed 003). Default lognormal, or the resumed run's.
    #[arg(long)]
    pub sigma_dist: Option<SigmaDistKind>,
    /// InfoNoise's constants as KEY=VALUE,...: bins, sigma_lo, sigma_hi, smoothing, min_rows,
    /// ema, warmup_steps, rebuild_every, p_mean, p_std, gate_power, gate=onset:P|pinned:C
    /// (defaults 256, 0.002, 80, 0.05, 8, 0.9, 2000, 1000, -1.2, 1.2, 3, onset:0.002).
    #[arg(long)]
    pub infonoise: Option<String>,
    /// Write InfoNoise's profile at every report (100 steps) to this CSV: step, sigma, m_hat,
    /// the data's exact mmse/dim (ideal denoiser; empty without one), InfoNoise's density and
    /// the log-normal's, both per d ln sigma.
    #[arg(long)]
    pub profile_csv: Option<PathBuf>,
    /// The checkpoint to write: PATH.safetensors (and PATH.json beside it).
    #[arg(long)]
    pub out: PathBuf,
    /// Train a noise-level estimator g(sigma | x) instead of a denoiser (seed 000's g_phi, seed
    /// 001's P_theta): --model mlp gives the dense estimator, unet the conv one; --steps,
    /// --batch, --lr, --seed and --out as for a denoiser.
    #[arg(long)]
    pub estimator: bool,
    /// The estimator's loss: nll (Gaussian NLL in ln sigma) | alpha (seed 001's
    /// (log(1 - alpha) - log(1 - alpha_hat))^2 for the mean, alpha = 1/(1 + sigma^2)).
    #[arg(long, value_enum, default_value_t = EstimatorLoss::Nll)]
    pub estimator_loss: EstimatorLoss,
    /// The estimator's trained noise range, log-uniform: MIN,MAX (default 0.002,80).
    #[arg(long, default_value = "0.002,80")]
    pub estimator_range: String,
}

impl TrainArgs {
    /// The given flags over `config` (the defaults, or a resumed run's settings).
    fn apply(&self, config: &mut TrainConfig) -> Result<()> {
        config.steps = self.steps;
        match self.sigma_dist {
            Some(SigmaDistKind::Lognormal) => config.sigma = SigmaDistribution::default(),
            Some(SigmaDistKind::Infonoise)
                if !matches!(config.sigma, SigmaDistribution::InfoNoise(_)) =>
            {
                config.sigma = SigmaDistribution::InfoNoise(InfoNoiseConfig::default());
            }
            _ => {}
        }
        if let Some(text) = &self.infonoise {
            let SigmaDistribution::InfoNoise(info) = &mut config.sigma else {
                bail!("--infonoise sets InfoNoise's constants; add --sigma-dist infonoise");
            };
            *info = info.with_overrides(text)?;
        }
        let set = |slot: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        if let Some(b) = self.batch {
            config.batch = b;
        }
        if let Some(w) = self.warmup {
            config.optimizer.warmup_steps = w;
        }
        if let Some(s) = self.seed {
            config.seed = s;
        }
        set(&mut config.optimizer.lr, self.lr);
        set(&mut config.optimizer.weight_decay, self.weight_decay);
        set(&mut config.class_dropout, self.class_dropout);
        set(&mut config.noise_dropout, self.noise_dropout);
        set(&mut config.ema_half_life, self.ema_half_life);
        Ok(())
    }
}

/// A one-line progress bar on stderr, redrawn at most ten times a second (terminals only).
struct Bar {
    started: Instant,
    first_step: usize,
    drawn: Option<Instant>,
    enabled: bool,
}

impl Bar {
    fn new(first_step: usize) -> Self {
        Bar {
            started: Instant::now(),
            first_step,
            drawn: None,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn steps_per_s(&self, step: usize) -> f64 {
        (step - self.first_step) as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    fn draw(&mut self, p: &Progress) {
        let due = self.drawn.is_none_or(|t| t.elapsed().as_millis() >= 100);
        if !self.enabled || !(due || p.step == p.total) {
            return;
        }
        self.drawn = Some(Instant::now());
        let width = 30;
        let filled = (width * p.step) / p.total.max(1);
        let rate = self.steps_per_s(p.step);
        let left = (p.total - p.step) as f64 / rate.max(1e-9);
        eprint!(
            "\r[{}{}] {}/{} {:.1} steps/s, {:.0} s left, loss {:.4}  ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            p.step,
            p.total,
            rate,
            left,
            p.loss
        );
        let _ = std::io::stderr().flush();
    }

    fn clear(&self) {
        if self.enabled && self.drawn.is_some() {
            eprint!("\r{}\r", " ".repeat(100));
        }
    }
}

pub fn run(args: &TrainArgs) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "--out must end in .safetensors (the sidecar is written beside it with .json), got {}",
            args.out.display()
        );
    }
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        bail!("--out: the folder {} does not exist", parent.display());
    }
    if args.log_every == 0 {
        bail!("--log-every must be at least 1");
    }
    if args.eval_every > 0 && !(1..=100_000).contains(&args.eval_samples) {
        bail!("--eval-samples must be in 1..=100000");
    }
    let spec = DataSpec::parse(
        &args.data,
        args.labels.clone(),
        args.points,
        args.image_size,
        args.rgb,
    )?;
    let source = spec.load()?;
    let data = Arc::new(TrainingSet::from_source(&source)?);
    if args.estimator {
        return train_estimator(args, &spec, &data);
    }
    let arch = match args.model {
        ModelKind::Mlp => ArchConfig::Mlp(MlpConfig::default()),
        ModelKind::Unet => match data.image {
            Some(image) => ArchConfig::Unet(UnetConfig::for_image(image)),
            None => bail!(
                "--model unet needs image data ({} is not images); use --model mlp",
                spec.label()
            ),
        },
    };
    let mut trainer = match &args.resume {
        None => {
            let mut config = TrainConfig::for_arch(&arch, args.steps);
            args.apply(&mut config)?;
            Trainer::new(arch, config, data.clone())?
        }
        Some(path) => {
            let saved = Checkpoint::load(path)?;
            let side = &saved.sidecar;
            if side.data.fingerprint != data.fingerprint {
                bail!(
                    "--resume: {} was trained on {} ({}), --data {} is different data ({})",
                    path.display(),
                    side.data.label,
                    side.data.fingerprint,
                    spec.label(),
                    data.fingerprint
                );
            }
            if side.model.arch.name() != arch.name() {
                bail!(
                    "--resume: {} is a {} model, --model asks for {}",
                    path.display(),
                    side.model.arch.name(),
                    arch.name()
                );
            }
            if args.steps <= side.steps_done {
                bail!(
                    "--resume: {} has already done {} steps; --steps is the total to reach",
                    path.display(),
                    side.steps_done
                );
            }
            if !side.weights.optimizer_state {
                eprintln!(
                    "note: {} has no optimiser state (--weights-only): AdamW's moments restart",
                    path.display()
                );
            }
            let mut config = side.training.clone();
            args.apply(&mut config)?;
            Trainer::resume(saved.resume_state(), config, data.clone())?
        }
    };
    let mut profile_csv = match (&args.profile_csv, trainer.sigma_sampler()) {
        (None, _) => None,
        (Some(path), Some(sampler)) => Some(ProfileCsv::create(path, &source, sampler.config())?),
        (Some(_), None) => {
            bail!("--profile-csv records InfoNoise's profile: add --sigma-dist infonoise")
        }
    };
    let first_step = trainer.steps_done();
    println!(
        "training a {} ({} parameters) on {} ({} rows, dim {}, {} classes, sigma_data {:.4}), \
         batch {}, steps {}..{}",
        trainer.model_config().arch.name(),
        trainer.params().count(),
        spec.label(),
        data.n,
        data.dim,
        data.classes,
        data.sigma_data,
        trainer.config.batch,
        first_step,
        trainer.config.steps
    );
    let mut bar = Bar::new(first_step);
    let log_every = args.log_every;
    let total = trainer.config.steps;
    let mut train_s = 0.0;
    // Train in segments between evaluations; the draws of a step depend only on its index, so
    // evaluating changes nothing in the run.
    while trainer.steps_done() < total {
        let stop = match args.eval_every {
            0 => total,
            every => ((trainer.steps_done() / every + 1) * every).min(total),
        };
        trainer.config.steps = stop;
        let segment = Instant::now();
        let outcome = trainer.run(&TrainControl::default(), &mut |p| {
            let p = Progress { total, ..p.clone() };
            bar.draw(&p);
            if let (Some(csv), Some(profile)) = (profile_csv.as_mut(), &p.sigma_profile) {
                csv.write(p.step, profile);
            }
            if p.step.is_multiple_of(log_every) || p.step == p.total {
                bar.clear();
                println!(
                    "step {:>7}/{}  loss {:.4}  lr {:.2e}  {:.1} steps/s  {:.1} s",
                    p.step,
                    p.total,
                    p.loss,
                    p.lr,
                    bar.steps_per_s(p.step),
                    bar.started.elapsed().as_secs_f64()
                );
            }
        })?;
        train_s += segment.elapsed().as_secs_f64();
        debug_assert_eq!(outcome, Outcome::Finished);
        if args.eval_every > 0 {
            bar.clear();
            let model = LearnedDenoiser::from_trainer(&trainer)?;
            let q = sample_quality(&model, &source, args.eval_samples, 1)?;
            let validation = trainer.validation_loss(
                &SigmaDistribution::sampling_range(),
                VALIDATION_ROWS,
                VALIDATION_SEED,
            )?;
            let info = trainer.sigma_sampler().map_or(String::new(), |s| {
                let p = s.profile();
                format!(
                    ", infonoise {} rebuilds{}",
                    p.rebuilds,
                    p.gate_c
                        .map_or(String::new(), |c| format!(" gate c {c:.4}"))
                )
            });
            println!(
                "eval at step {} (training {train_s:.1} s): validation loss {validation:.4}, \
                 sliced W2 {:.4}, MMD {:.4}, nearest {:.4}{}{info}",
                trainer.steps_done(),
                q.sliced_w2,
                q.mmd,
                q.nearest_distance,
                q.class_accuracy
                    .map_or(String::new(), |a| format!(", class accuracy {a:.3}"))
            );
        }
    }
    bar.clear();
    if let Some(csv) = profile_csv {
        csv.finish()?;
    }
    let sidecar = checkpoint::save(&args.out, &trainer, &spec, !args.weights_only)
        .with_context(|| format!("saving {}", args.out.display()))?;
    println!(
        "wrote {} and {}: {} steps, final loss {}, {:.1} s training ({:.1} steps/s)",
        args.out.display(),
        checkpoint::sidecar_path(&args.out).display(),
        sidecar.steps_done,
        sidecar
            .final_loss
            .map_or("n/a".to_string(), |l| format!("{l:.4}")),
        train_s,
        (trainer.steps_done() - first_step) as f64 / train_s.max(1e-9)
    );
    Ok(())
}

/// The validation loss's draws: EDM-weighted loss of the EMA model on ln sigma uniform over
/// [0.002, 80], the same rows and noise for every run whatever its training law.
const VALIDATION_ROWS: usize = 4096;
const VALIDATION_SEED: u64 = 0x7a1;

/// InfoNoise's profile at every report, with the data's exact profile and the log-normal's
/// allocation beside it: the data of the Training tab's plot (issue 12 item 3).
struct ProfileCsv {
    path: PathBuf,
    out: BufWriter<File>,
    exact: Option<InformationProfile>,
    warmup: (f64, f64),
    failed: Option<std::io::Error>,
}

impl ProfileCsv {
    fn create(path: &Path, source: &Source, config: &InfoNoiseConfig) -> Result<Self> {
        // The ideal denoiser's mmse/dim, 0.125 apart in ln sigma (interpolated between).
        let levels = ((config.sigma_hi / config.sigma_lo).ln() / 0.125).ceil() as usize + 1;
        let exact = AnalyticModel::new(
            source,
            &Compute::cpu(),
            Precision::F32,
            SigmaPrior::edm_training(),
        )
        .and_then(|m| {
            m.information_profile(
                source,
                &log_sigma_grid(config.sigma_lo, config.sigma_hi, levels),
                512,
                0x1f0,
            )
        })
        .ok();
        let file =
            File::create(path).with_context(|| format!("--profile-csv {}", path.display()))?;
        let mut out = BufWriter::new(file);
        writeln!(
            out,
            "step,sigma,m_hat,exact_mmse,infonoise_density,lognormal_density"
        )
        .with_context(|| format!("--profile-csv {}", path.display()))?;
        Ok(ProfileCsv {
            path: path.to_path_buf(),
            out,
            exact,
            warmup: (config.p_mean, config.p_std),
            failed: None,
        })
    }

    fn write(&mut self, step: usize, profile: &InfoNoiseProfile) {
        if self.failed.is_some() {
            return;
        }
        let (mean, std) = self.warmup;
        for (j, &sigma) in profile.sigmas.iter().enumerate() {
            let z = (sigma.ln() - mean) / std;
            let lognormal = (-0.5 * z * z).exp() / (std * (2.0 * std::f64::consts::PI).sqrt());
            let exact = self.exact.as_ref().map_or(String::new(), |e| {
                format!("{:e}", e.ln_mmse_at(sigma).exp())
            });
            let density = profile
                .density
                .as_ref()
                .map_or(String::new(), |d| format!("{:e}", d[j]));
            if let Err(e) = writeln!(
                self.out,
                "{step},{sigma:e},{:e},{exact},{density},{lognormal:e}",
                profile.mmse[j]
            ) {
                self.failed = Some(e);
                return;
            }
        }
    }

    fn finish(mut self) -> Result<()> {
        let flushed = self.out.flush();
        match self.failed.take().map_or(flushed, Err) {
            Ok(()) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("--profile-csv {}", self.path.display())),
        }
    }
}

/// `--estimator`: trains g(sigma | x) on `data` and writes its checkpoint.
fn train_estimator(args: &TrainArgs, spec: &DataSpec, data: &TrainingSet) -> Result<()> {
    if args.resume.is_some() {
        bail!("--resume continues a denoiser; an estimator trains from scratch");
    }
    let range: Vec<f64> = args
        .estimator_range
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("--estimator-range {}", args.estimator_range))?;
    let [sigma_min, sigma_max] = range[..] else {
        bail!(
            "--estimator-range takes MIN,MAX, got {}",
            args.estimator_range
        );
    };
    let mut config = EstimatorConfig::mlp(data.dim, data.sigma_data, sigma_min, sigma_max);
    if args.model == ModelKind::Unet {
        let Some(image) = data.image else {
            bail!(
                "--model unet (the conv estimator) needs image data ({} is not images); use \
                 --model mlp",
                spec.label()
            );
        };
        config.arch = EstimatorArch::Conv {
            channels: 16,
            hidden: 128,
        };
        config.image = Some(image);
    }
    let defaults = EstimatorTraining::default();
    let training = EstimatorTraining {
        steps: args.steps,
        batch: args.batch.unwrap_or(defaults.batch),
        lr: args.lr.unwrap_or(defaults.lr),
        seed: args.seed.unwrap_or(defaults.seed),
        loss: args.estimator_loss,
    };
    println!(
        "training a {} noise-level estimator on {} ({} rows, dim {}), sigma log-uniform over \
         [{sigma_min}, {sigma_max}], {:?} loss, batch {}, {} steps",
        config.arch.name(),
        spec.label(),
        data.n,
        data.dim,
        training.loss,
        training.batch,
        training.steps
    );
    let started = Instant::now();
    let log_every = args.log_every;
    let trained = estimator::train(&config, data, &training, &mut |step, loss| {
        if step % log_every == 0 {
            println!("step {step}: loss {loss:.4}");
        }
        std::ops::ControlFlow::Continue(())
    })?;
    estimator::save(&trained, &training, data, &spec.label(), &args.out)?;
    println!(
        "wrote {} ({} steps in {:.1} s, final loss {:.4})",
        args.out.display(),
        trained.steps_done,
        started.elapsed().as_secs_f64(),
        trained.final_loss
    );
    Ok(())
}
