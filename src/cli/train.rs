//! `noisescope train`: trains a learned denoiser on a data set and writes a checkpoint
//! (PATH.safetensors + PATH.json), with a progress bar and a loss line every few hundred steps.
//! The checkpoint is written to temporary files and renamed: Ctrl-C never leaves half of one.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use noisescope::data::DataSpec;
use noisescope::models::learned::LearnedDenoiser;
use noisescope::models::quality::sample_quality;
use noisescope::train::checkpoint::{self, Checkpoint};
use noisescope::train::data::TrainingSet;
use noisescope::train::mlp::MlpConfig;
use noisescope::train::network::ArchConfig;
use noisescope::train::trainer::{Outcome, Progress, TrainConfig, TrainControl, Trainer};
use noisescope::train::unet::UnetConfig;

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
    /// The checkpoint to write: PATH.safetensors (and PATH.json beside it).
    #[arg(long)]
    pub out: PathBuf,
}

impl TrainArgs {
    /// The given flags over `config` (the defaults, or a resumed run's settings).
    fn apply(&self, config: &mut TrainConfig) {
        config.steps = self.steps;
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
            args.apply(&mut config);
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
            args.apply(&mut config);
            Trainer::resume(saved.resume_state(), config, data.clone())?
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
            println!(
                "eval at step {} (training {train_s:.1} s): sliced W2 {:.4}, MMD {:.4}, \
                 nearest {:.4}{}",
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
