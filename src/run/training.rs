//! The app's trainer thread (issue 10): a named `noisescope-trainer` thread, apart from the
//! sampling worker, that trains one learned denoiser at a time with `train::trainer::Trainer`
//! and reports what the Training tab draws: the loss of every step, steps/s and time left, the
//! per-sigma losses, InfoNoise's profile, the exact denoiser's mmse as the floor, previews sampled
//! from the EMA weights, and the checkpoint the finished model was saved to. Pause / resume /
//! cancel act through the run's `TrainControl` (checked before every step); a preview can be asked
//! for at any time and comes at the next report boundary. Events are applied by
//! `training_record::TrainingRecord::drain`, within the app's per-frame budget.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::Compute;
use crate::core::denoiser::{Cond, Denoiser};
use crate::core::estimate::SigmaPrior;
use crate::core::infonoise::{InfoNoiseConfig, InfoNoiseProfile, sampling_density};
use crate::core::information::{InformationProfile, log_sigma_grid};
use crate::core::noise::{Rng, initial_noise};
use crate::core::{Batch, Precision};
use crate::data::grid::image_grid_columns;
use crate::data::{DataSet, DataSpec, ImageShape, Source};
use crate::error::{Error, Result};
use crate::models::AnalyticModel;
use crate::models::learned::LearnedDenoiser;
use crate::models::quality::sample_heun;
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::data::{TrainingSet, rows_of};
use crate::train::estimator::{
    self, EstimatorArch, EstimatorConfig, EstimatorTraining, TrainedEstimator,
};
use crate::train::mlp::MlpConfig;
use crate::train::network::ArchConfig;
use crate::train::sigma_dist::SigmaDistribution;
use crate::train::trainer::{
    BinnedLoss, ControlState, Outcome, TrainConfig, TrainControl, Trainer,
};
use crate::train::unet::UnetConfig;

use super::worker::{Wake, Waker};

/// The network to train: the mlp at a size, or the unet sized for the images with `width`
/// channels at the finest resolution (twice that below).
#[derive(Clone, Debug, PartialEq)]
pub enum ModelChoice {
    Mlp(MlpConfig),
    Unet { width: usize },
}

impl ModelChoice {
    fn arch(&self, image: Option<ImageShape>, label: &str) -> Result<ArchConfig> {
        match self {
            ModelChoice::Mlp(c) => Ok(ArchConfig::Mlp(c.clone())),
            ModelChoice::Unet { width } => {
                let Some(image) = image else {
                    return Err(Error::InvalidSpec(format!(
                        "the unet needs image data ({label} is not images); choose the mlp"
                    )));
                };
                let mut config = UnetConfig::for_image(image);
                for (k, c) in config.channels.iter_mut().enumerate() {
                    *c = width * if k == 0 { 1 } else { 2 };
                }
                config.validate(image)?;
                Ok(ArchConfig::Unet(config))
            }
        }
    }
}

/// A noise-level estimator g(sigma | x) to train instead of a denoiser (`train::estimator`).
#[derive(Clone, Debug, PartialEq)]
pub struct EstimatorRequest {
    /// The network body (the conv one needs image data).
    pub arch: EstimatorArch,
    /// The trained range of sigma (log-uniform).
    pub sigma_min: f64,
    pub sigma_max: f64,
    /// Steps, batch, peak learning rate, seed and loss.
    pub training: EstimatorTraining,
}

/// One training run as the Training tab asks for it.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    /// The data (the app's current data choice).
    pub data: DataSpec,
    pub model: ModelChoice,
    pub config: TrainConfig,
    /// Steps between previews (0: only when asked).
    pub preview_every: usize,
    /// Samples per preview.
    pub preview_rows: usize,
    /// Where the finished model is saved: PATH.safetensors (and PATH.json).
    pub checkpoint: PathBuf,
    /// Train this noise-level estimator instead of the denoiser (`model`, `config` unused).
    pub estimator: Option<EstimatorRequest>,
}

/// What the trainer knows once the data are loaded and the model built.
#[derive(Clone, Debug)]
pub struct TrainStart {
    pub data_label: String,
    pub arch: &'static str,
    pub parameters: usize,
    pub rows: usize,
    pub dim: usize,
    pub classes: usize,
    pub sigma_data: f64,
    pub image: Option<ImageShape>,
    /// Up to 2000 data points in two columns (low-dimensional data), behind the preview.
    pub points: Option<Arc<Batch>>,
    pub first_step: usize,
    pub total: usize,
    pub sigma: SigmaDistribution,
    /// A noise-level estimator's run: its loss (an NLL in ln sigma) may be negative.
    pub estimator: bool,
}

/// The exact (ideal) denoiser's mmse/dim on a log-sigma grid: the floor a learned model cannot
/// beat; with the allocation InfoNoise would draw from it, per d ln sigma at the same levels.
#[derive(Clone, Debug)]
pub struct ExactFloor {
    pub profile: InformationProfile,
    pub infonoise_density: Option<Vec<f64>>,
}

/// The steps since the last report.
#[derive(Clone, Debug)]
pub struct ProgressUpdate {
    pub step: usize,
    pub total: usize,
    /// (step, EDM-weighted training loss) of every step since the last update.
    pub losses: Vec<(usize, f64)>,
    pub lr: f64,
    /// Over the last few seconds of training.
    pub steps_per_s: f64,
    pub seconds_left: f64,
    /// Per-sigma losses since the last report (every `report_every` steps).
    pub binned: Option<BinnedLoss>,
    /// InfoNoise's m_hat and density (InfoNoise runs, at the same reports).
    pub sigma_profile: Option<InfoNoiseProfile>,
}

/// An RGB image (the preview grid of image data).
#[derive(Clone, Debug, PartialEq)]
pub struct RgbPixels {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

#[derive(Clone, Debug)]
pub enum PreviewSamples {
    /// Up to two columns of the samples (low-dimensional data).
    Points(Arc<Batch>),
    /// A grid of the samples as images.
    Grid(Arc<RgbPixels>),
}

/// Samples of the current EMA weights (Heun, 18 Karras steps), made on the trainer thread.
#[derive(Clone, Debug)]
pub struct Preview {
    pub step: usize,
    pub samples: PreviewSamples,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct TrainEnd {
    pub outcome: Outcome,
    pub steps_done: usize,
    /// Mean loss of the last (up to) 100 steps.
    pub final_loss: Option<f64>,
    /// Training time (previews and the exact floor excluded), seconds.
    pub train_s: f64,
    pub steps_per_s: f64,
    /// Where a finished model was saved (with its label), or why it could not be.
    pub checkpoint: Option<std::result::Result<SavedModel, String>>,
}

/// A checkpoint written or opened: what the list of models shows, and the file.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedModel {
    pub label: String,
    pub path: PathBuf,
}

#[derive(Clone, Debug)]
pub enum TrainEvent {
    Started {
        run: u64,
        start: Box<TrainStart>,
    },
    Exact {
        run: u64,
        floor: Box<ExactFloor>,
    },
    Progress {
        run: u64,
        update: Box<ProgressUpdate>,
    },
    Preview {
        run: u64,
        preview: Preview,
    },
    Finished {
        run: u64,
        end: Box<TrainEnd>,
    },
    Failed {
        run: u64,
        message: String,
    },
    /// "Save checkpoint": the model of the last run, written where the user chose.
    Saved(std::result::Result<SavedModel, String>),
    /// "Open checkpoint": a checkpoint read and checked.
    Opened(std::result::Result<SavedModel, String>),
}

enum Command {
    Start {
        run: u64,
        request: Box<TrainRequest>,
        control: Arc<TrainControl>,
    },
    Preview,
    Save(PathBuf),
}

/// The UI's handle on the trainer thread; dropping it cancels the run and joins the thread.
pub struct TrainWorker {
    commands: Option<Sender<Command>>,
    events_tx: Sender<TrainEvent>,
    events: Receiver<TrainEvent>,
    waker: Waker,
    control: Arc<TrainControl>,
    next_run: u64,
    /// Steps done by the run in flight, as the trainer counts them (ahead of the events).
    live_step: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl TrainWorker {
    pub fn spawn(waker: Waker) -> Result<Self> {
        let (command_tx, command_rx) = channel();
        let (event_tx, event_rx) = channel();
        let live_step = Arc::new(AtomicUsize::new(0));
        let state = TrainerThread {
            commands: command_rx,
            events: event_tx.clone(),
            waker: waker.clone(),
            live_step: live_step.clone(),
            last: None,
            next: None,
        };
        let thread = std::thread::Builder::new()
            .name("noisescope-trainer".into())
            .spawn(move || match training_pool() {
                // The trainer's parallel work (candle's GEMMs, our fused ops, previews) runs on
                // a pool of its own at a lower OS priority, so a slider's rerun on the sampling
                // worker's (global) pool is not queued behind training steps.
                Ok(pool) => pool.install(move || state.serve()),
                Err(e) => {
                    eprintln!(
                        "note: no low-priority pool for training ({e}); sharing the sampling pool"
                    );
                    state.serve()
                }
            })
            .map_err(|e| Error::InvalidSpec(format!("cannot start the trainer thread: {e}")))?;
        Ok(TrainWorker {
            commands: Some(command_tx),
            events_tx: event_tx,
            events: event_rx,
            waker,
            control: TrainControl::new(),
            next_run: 1,
            live_step,
            thread: Some(thread),
        })
    }

    /// Starts a run (a run in flight is cancelled first); returns its number.
    pub fn start(&mut self, request: TrainRequest) -> u64 {
        self.control.cancel();
        let run = self.next_run;
        self.next_run += 1;
        self.control = TrainControl::new();
        self.live_step.store(0, Ordering::SeqCst);
        self.send(Command::Start {
            run,
            request: Box::new(request),
            control: self.control.clone(),
        });
        run
    }

    pub fn pause(&self) {
        self.control.pause();
    }

    pub fn resume(&self) {
        self.control.resume();
    }

    /// Whether the run in flight is paused.
    pub fn paused(&self) -> bool {
        self.control.state() == ControlState::Paused
    }

    /// Stops the run in flight before its next step.
    pub fn cancel(&self) {
        self.control.cancel();
    }

    /// A preview of the current EMA weights at the next report boundary.
    pub fn preview_now(&self) {
        self.send(Command::Preview);
    }

    /// Saves the model of the last run (finished or cancelled) to `path`.
    pub fn save(&self, path: PathBuf) {
        self.send(Command::Save(path));
    }

    /// Reads and checks the checkpoint at `path` on a thread of its own (so it answers while a
    /// run trains or is paused); the answer comes as `TrainEvent::Opened`.
    pub fn open(&self, path: PathBuf) {
        let events = self.events_tx.clone();
        let waker = self.waker.clone();
        let spawned = std::thread::Builder::new()
            .name("noisescope-open".into())
            .spawn(move || {
                let _ = events.send(TrainEvent::Opened(open_checkpoint(&path)));
                waker(Wake::Now);
            });
        if let Err(e) = spawned {
            let _ = self.events_tx.send(TrainEvent::Opened(Err(format!(
                "cannot start a thread to open the checkpoint: {e}"
            ))));
        }
    }

    /// Steps done by the run in flight as the trainer counts them (the events lag behind).
    pub fn live_step(&self) -> usize {
        self.live_step.load(Ordering::SeqCst)
    }

    /// The next waiting event, if any.
    pub fn try_event(&self) -> Option<TrainEvent> {
        self.events.try_recv().ok()
    }

    fn send(&self, command: Command) {
        if let Some(tx) = &self.commands {
            let _ = tx.send(command);
        }
    }
}

impl Drop for TrainWorker {
    fn drop(&mut self) {
        // Cancel (this also wakes a paused run), close the channel, join.
        self.control.cancel();
        self.commands.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Loads a checkpoint and builds its network: a file that cannot run is refused here.
fn open_checkpoint(path: &Path) -> std::result::Result<SavedModel, String> {
    let loaded = Checkpoint::load(path).map_err(|e| e.to_string())?;
    loaded.network().map_err(|e| e.to_string())?;
    let side = &loaded.sidecar;
    Ok(SavedModel {
        label: format!(
            "{}, {} steps on {} (opened {})",
            side.model.arch.name(),
            side.steps_done,
            side.data.label,
            path.file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned())
        ),
        path: path.to_path_buf(),
    })
}

/// The last run's model, kept for "Save checkpoint".
enum LastModel {
    /// A denoiser: the trainer, with the data spec it trains on.
    Denoiser {
        trainer: Box<Trainer>,
        data: DataSpec,
    },
    Estimator(Box<LastEstimator>),
}

/// A trained noise-level estimator, with what its sidecar records.
struct LastEstimator {
    trained: TrainedEstimator,
    training: EstimatorTraining,
    data: TrainingSet,
    label: String,
}

struct TrainerThread {
    commands: Receiver<Command>,
    events: Sender<TrainEvent>,
    waker: Waker,
    live_step: Arc<AtomicUsize>,
    /// The model of the last run, kept for "Save checkpoint".
    last: Option<LastModel>,
    /// A Start that arrived while a run trained (that run was cancelled for it).
    next: Option<Command>,
}

/// Seconds of recent steps that steps/s is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(3);
/// Progress events at most this often (report and last steps excepted): the losses in between
/// travel together.
const PROGRESS_EVERY: Duration = Duration::from_millis(40);

impl TrainerThread {
    fn serve(mut self) {
        loop {
            let command = match self.next.take() {
                Some(c) => c,
                None => match self.commands.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            match command {
                Command::Start {
                    run,
                    request,
                    control,
                } => {
                    if let Err(e) = self.train(run, &request, &control) {
                        self.emit(TrainEvent::Failed {
                            run,
                            message: e.to_string(),
                        });
                    }
                }
                // Nothing trains: there is nothing new to preview.
                Command::Preview => {}
                Command::Save(path) => self.save(&path),
            }
        }
    }

    fn emit(&self, event: TrainEvent) {
        let wake = match event {
            TrainEvent::Progress { .. } => Wake::Progress,
            _ => Wake::Now,
        };
        let _ = self.events.send(event);
        (self.waker)(wake);
    }

    fn save(&self, path: &Path) {
        let answer = match &self.last {
            None => Err("no model to save yet: train one first".to_string()),
            Some(LastModel::Denoiser { trainer, data }) => save_model(path, trainer, data),
            Some(LastModel::Estimator(last)) => {
                save_estimator(path, &last.trained, &last.training, &last.data, &last.label)
            }
        };
        self.emit(TrainEvent::Saved(answer));
    }

    /// Takes the commands that arrived during a segment; whether a preview was asked for.
    /// Returns false when the thread should stop (the app closed or a new run was started).
    fn take_commands(&mut self, trainer: &Trainer, data: &DataSpec, preview: &mut bool) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Preview) => *preview = true,
                // Mid-run: the model as it is at this report boundary.
                Ok(Command::Save(path)) => {
                    self.emit(TrainEvent::Saved(save_model(&path, trainer, data)));
                }
                Ok(start @ Command::Start { .. }) => {
                    self.next = Some(start);
                    return false;
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Trains the noise-level estimator `est` on the request's data, reporting as a denoiser's
    /// run does (loss of every step, steps/s); saved to the request's checkpoint when finished.
    fn train_estimator(
        &mut self,
        run: u64,
        request: &TrainRequest,
        est: &EstimatorRequest,
        control: &TrainControl,
    ) -> Result<()> {
        let source = request.data.load()?;
        let data = TrainingSet::from_source(&source)?;
        let label = request.data.label();
        let mut config =
            EstimatorConfig::mlp(data.dim, data.sigma_data, est.sigma_min, est.sigma_max);
        config.arch = est.arch.clone();
        if matches!(est.arch, EstimatorArch::Conv { .. }) {
            config.image = data.image;
        }
        config
            .validate()
            .map_err(|e| Error::InvalidSpec(format!("{e} ({label})")))?;
        let total = est.training.steps;
        // "Save checkpoint…" saves this run's estimator once it ends (it saves itself when done).
        self.last = None;
        self.emit(TrainEvent::Started {
            run,
            start: Box::new(TrainStart {
                data_label: label.clone(),
                arch: match est.arch {
                    EstimatorArch::Conv { .. } => "noise-level estimator (conv)",
                    EstimatorArch::Mlp { .. } => "noise-level estimator (mlp)",
                },
                parameters: config.parameter_count(),
                rows: data.n,
                dim: data.dim,
                classes: data.classes,
                sigma_data: data.sigma_data,
                image: data.image,
                points: None,
                first_step: 0,
                total,
                sigma: SigmaDistribution::LogUniform {
                    sigma_min: est.sigma_min,
                    sigma_max: est.sigma_max,
                },
                estimator: true,
            }),
        });
        let mut meter = RateMeter::default();
        let mut pending: Vec<(usize, f64)> = Vec::new();
        let mut last_sent: Option<Instant> = None;
        let started = Instant::now();
        let (live, events, waker) = (
            self.live_step.clone(),
            self.events.clone(),
            self.waker.clone(),
        );
        let trained = estimator::train(&config, &data, &est.training, &mut |step, loss| {
            live.store(step, Ordering::SeqCst);
            meter.record(step);
            pending.push((step, loss));
            if last_sent.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) || step == total {
                last_sent = Some(Instant::now());
                let rate = meter.steps_per_s();
                let update = ProgressUpdate {
                    step,
                    total,
                    losses: std::mem::take(&mut pending),
                    lr: estimator::learning_rate(&est.training, step),
                    steps_per_s: rate,
                    seconds_left: if rate > 0.0 {
                        (total - step) as f64 / rate
                    } else {
                        f64::NAN
                    },
                    binned: None,
                    sigma_profile: None,
                };
                let _ = events.send(TrainEvent::Progress {
                    run,
                    update: Box::new(update),
                });
                waker(Wake::Progress);
            }
            // Pause waits here; cancel (or a new run) stops before the next step.
            if control.proceed() {
                std::ops::ControlFlow::Continue(())
            } else {
                std::ops::ControlFlow::Break(())
            }
        })?;
        let train_s = started.elapsed().as_secs_f64();
        let outcome = if trained.steps_done == total {
            Outcome::Finished
        } else {
            Outcome::Cancelled
        };
        let checkpoint = (outcome == Outcome::Finished)
            .then(|| save_estimator(&request.checkpoint, &trained, &est.training, &data, &label));
        let end = TrainEnd {
            outcome,
            steps_done: trained.steps_done,
            final_loss: Some(trained.final_loss).filter(|l| l.is_finite()),
            train_s,
            steps_per_s: trained.steps_done as f64 / train_s.max(1e-9),
            checkpoint,
        };
        self.last = Some(LastModel::Estimator(Box::new(LastEstimator {
            trained,
            training: est.training.clone(),
            data,
            label,
        })));
        self.emit(TrainEvent::Finished {
            run,
            end: Box::new(end),
        });
        Ok(())
    }

    fn train(&mut self, run: u64, request: &TrainRequest, control: &TrainControl) -> Result<()> {
        if let Some(est) = &request.estimator {
            return self.train_estimator(run, request, est, control);
        }
        // Per-step buffers stay on the heap (see `ops::keep_buffers_resident`).
        crate::train::ops::keep_buffers_resident();
        let source = request.data.load()?;
        let data = Arc::new(TrainingSet::from_source(&source)?);
        let label = request.data.label();
        let arch = request.model.arch(data.image, &label)?;
        let mut trainer = Trainer::new(arch, request.config.clone(), data.clone())?;
        let total = trainer.config.steps;
        self.emit(TrainEvent::Started {
            run,
            start: Box::new(TrainStart {
                data_label: label.clone(),
                arch: trainer.model_config().arch.name(),
                parameters: trainer.params().count(),
                rows: data.n,
                dim: data.dim,
                classes: data.classes,
                sigma_data: data.sigma_data,
                image: data.image,
                points: preview_points(&source),
                first_step: trainer.steps_done(),
                total,
                sigma: trainer.config.sigma.clone(),
                estimator: false,
            }),
        });
        if let Some(floor) = exact_floor(&source, &trainer.config, data.sigma_data) {
            self.emit(TrainEvent::Exact {
                run,
                floor: Box::new(floor),
            });
        }
        let report_every = trainer.config.report_every.max(1);
        let mut meter = RateMeter::default();
        let mut pending: Vec<(usize, f64)> = Vec::new();
        let mut last_sent: Option<Instant> = None;
        let mut train_s = 0.0;
        let mut outcome = Outcome::Finished;
        let mut next_preview = next_multiple(trainer.steps_done(), request.preview_every);
        while trainer.steps_done() < total {
            // Segments end on report boundaries, where previews and commands are looked at.
            let stop = next_multiple(trainer.steps_done(), report_every).min(total);
            trainer.config.steps = stop;
            let segment = Instant::now();
            let live = self.live_step.clone();
            let events = self.events.clone();
            let waker = self.waker.clone();
            let ended = trainer.run(control, &mut |p| {
                live.store(p.step, Ordering::SeqCst);
                meter.record(p.step);
                pending.push((p.step, p.loss));
                let due = last_sent.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
                if !(due || p.binned.is_some() || p.step == total) {
                    return;
                }
                last_sent = Some(Instant::now());
                let rate = meter.steps_per_s();
                let update = ProgressUpdate {
                    step: p.step,
                    total,
                    losses: std::mem::take(&mut pending),
                    lr: p.lr,
                    steps_per_s: rate,
                    seconds_left: if rate > 0.0 {
                        (total - p.step) as f64 / rate
                    } else {
                        f64::NAN
                    },
                    binned: p.binned.clone(),
                    sigma_profile: p.sigma_profile.clone(),
                };
                let _ = events.send(TrainEvent::Progress {
                    run,
                    update: Box::new(update),
                });
                waker(Wake::Progress);
            });
            train_s += segment.elapsed().as_secs_f64();
            let ended = match ended {
                Ok(o) => o,
                Err(e) => {
                    trainer.config.steps = total;
                    return Err(e);
                }
            };
            if ended == Outcome::Cancelled {
                outcome = Outcome::Cancelled;
                break;
            }
            let mut asked = false;
            let go_on = self.take_commands(&trainer, &request.data, &mut asked);
            let scheduled = request.preview_every > 0 && trainer.steps_done() >= next_preview;
            if scheduled {
                next_preview = next_multiple(trainer.steps_done(), request.preview_every);
            }
            if asked || scheduled || trainer.steps_done() == total {
                match preview(&trainer, request.preview_rows, run) {
                    Ok(p) => self.emit(TrainEvent::Preview { run, preview: p }),
                    Err(e) => eprintln!("note: no training preview ({e})"),
                }
            }
            if !go_on {
                outcome = Outcome::Cancelled;
                break;
            }
        }
        trainer.config.steps = total;
        let steps_done = trainer.steps_done();
        let checkpoint = (outcome == Outcome::Finished)
            .then(|| save_model(&request.checkpoint, &trainer, &request.data));
        let end = TrainEnd {
            outcome,
            steps_done,
            final_loss: Some(trainer.recent_loss()).filter(|l| l.is_finite()),
            train_s,
            steps_per_s: (steps_done as f64) / train_s.max(1e-9),
            checkpoint,
        };
        self.last = Some(LastModel::Denoiser {
            trainer: Box::new(trainer),
            data: request.data.clone(),
        });
        self.emit(TrainEvent::Finished {
            run,
            end: Box::new(end),
        });
        Ok(())
    }
}

/// Niceness of the training pool's threads: the sampling worker keeps ~98% of the CPU while
/// both run (CFS weights 1024 against 15), and training has all of it otherwise.
const TRAINING_NICE: i32 = 19;

/// A rayon pool for training, as wide as the global one, its threads (`trainer-pool-N`) at
/// `TRAINING_NICE`; it ends with the trainer thread that owns it.
fn training_pool() -> std::result::Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(|i| format!("trainer-pool-{i}"))
        .start_handler(|_| lower_this_threads_priority(TRAINING_NICE))
        .build()
}

/// Raises the calling thread's niceness (Linux: per thread; elsewhere nothing).
fn lower_this_threads_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with who = 0 acts on the calling thread only and reads no memory.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Writes `trainer`'s model (weights only) to `path`, its folder created if need be.
fn save_model(
    path: &Path,
    trainer: &Trainer,
    data: &DataSpec,
) -> std::result::Result<SavedModel, String> {
    create_folder_of(path)?;
    let side = checkpoint::save(path, trainer, data, false).map_err(|e| e.to_string())?;
    Ok(SavedModel {
        label: format!(
            "{}, {} steps on {} (seed {})",
            side.model.arch.name(),
            side.steps_done,
            side.data.label,
            side.seed
        ),
        path: path.to_path_buf(),
    })
}

/// Creates the folder `path` goes into, if need be.
fn create_folder_of(path: &Path) -> std::result::Result<(), String> {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    }
    Ok(())
}

/// Writes a trained estimator to `path` (PATH.safetensors + PATH.json), its folder created if
/// need be.
fn save_estimator(
    path: &Path,
    trained: &TrainedEstimator,
    training: &EstimatorTraining,
    data: &TrainingSet,
    label: &str,
) -> std::result::Result<SavedModel, String> {
    create_folder_of(path)?;
    estimator::save(trained, training, data, label, path).map_err(|e| e.to_string())?;
    Ok(SavedModel {
        label: format!(
            "noise-level estimator ({}), {} steps on {label} ({:?} loss)",
            trained.net.config.arch.name(),
            trained.steps_done,
            training.loss
        ),
        path: path.to_path_buf(),
    })
}

/// The smallest multiple of `every` above `step` (`usize::MAX` for `every` = 0: never).
fn next_multiple(step: usize, every: usize) -> usize {
    match every {
        0 => usize::MAX,
        e => (step / e + 1) * e,
    }
}

/// Steps per second over the last `RATE_WINDOW` of steps; a gap longer than a second (a pause)
/// starts the window again.
#[derive(Default)]
struct RateMeter {
    times: VecDeque<(Instant, usize)>,
}

impl RateMeter {
    fn record(&mut self, step: usize) {
        let now = Instant::now();
        if self
            .times
            .back()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(1))
        {
            self.times.clear();
        }
        self.times.push_back((now, step));
        while self
            .times
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            && self.times.len() > 2
        {
            self.times.pop_front();
        }
    }

    fn steps_per_s(&self) -> f64 {
        match (self.times.front(), self.times.back()) {
            (Some((t0, s0)), Some((t1, s1))) if s1 > s0 => {
                (s1 - s0) as f64 / t1.duration_since(*t0).as_secs_f64().max(1e-9)
            }
            _ => 0.0,
        }
    }
}

/// Up to 2000 data points in two columns, for low-dimensional data (the preview's backdrop).
fn preview_points(source: &Source) -> Option<Arc<Batch>> {
    let set: DataSet = source.display_points(2000);
    if set.image.is_some() || set.dim > 3 {
        return None;
    }
    let rows = set.n.min(2000);
    Some(Arc::new(two_columns(&set.values, rows, set.dim)))
}

/// The first two columns of `rows` rows (one column for 1-D data, the second left at 0).
fn two_columns(values: &[f64], rows: usize, dim: usize) -> Batch {
    let mut out = Vec::with_capacity(2 * rows);
    for r in 0..rows {
        let row = &values[r * dim..(r + 1) * dim];
        out.push(row[0]);
        out.push(row.get(1).copied().unwrap_or(0.0));
    }
    Batch {
        rows,
        dim: 2,
        data: out,
    }
}

/// Levels of the exact floor: [0.002, 80], a quarter apart in ln sigma.
const FLOOR_LEVELS: usize = 44;
/// Clean samples behind each Monte Carlo value of the floor.
const FLOOR_ROWS: usize = 256;

/// The exact (ideal) denoiser's mmse/dim of `source` on the rows a model trains on, by Monte
/// Carlo (the same noise at every level), as the binned training loss sees it: for labelled data
/// a row is class-conditional with probability 1 - `class_dropout` (the exact class-conditional
/// posterior mean knows the class), so the floor is that mixture of the two mmse. With InfoNoise's
/// allocation from it; `None` when there is no exact denoiser to ask.
fn exact_floor(source: &Source, config: &TrainConfig, sigma_data: f64) -> Option<ExactFloor> {
    let levels = log_sigma_grid(0.002, 80.0, FLOOR_LEVELS);
    let model = AnalyticModel::new(
        source,
        &Compute::cpu(),
        Precision::F32,
        SigmaPrior::edm_training(),
    )
    .ok()?;
    let set = rows_of(source);
    let mut rng = Rng::new(0x1f0);
    let picks: Vec<usize> = (0..FLOOR_ROWS).map(|_| rng.below(set.n)).collect();
    let mut values = Vec::with_capacity(FLOOR_ROWS * set.dim);
    for &j in &picks {
        values.extend_from_slice(set.row(j));
    }
    let clean = Batch::from_vec(FLOOR_ROWS, set.dim, values).ok()?;
    let labels: Option<Vec<u32>> = set
        .labels
        .as_ref()
        .filter(|_| model.num_classes() > 0)
        .map(|l| picks.iter().map(|&j| l[j]).collect());
    let noise = initial_noise(0x1f1, clean.rows, clean.dim);
    let mmse_of = |x: &Batch, sigma: f64, cond: &Cond| -> Option<f64> {
        let d = model.denoise(x, sigma, cond).ok()?;
        let total: f64 = d
            .data
            .iter()
            .zip(&clean.data)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        Some(total / (clean.rows * clean.dim) as f64)
    };
    let mut mmse = Vec::with_capacity(levels.len());
    for &sigma in &levels {
        let x = clean.add_scaled(sigma, &noise);
        let plain = mmse_of(&x, sigma, &Cond::plain())?;
        mmse.push(match &labels {
            Some(l) => {
                let p = config.class_dropout;
                let known = mmse_of(&x, sigma, &Cond::with_class(Some(l.clone())))?;
                (1.0 - p) * known + p * plain
            }
            None => plain,
        });
    }
    let profile = InformationProfile {
        stderr: vec![0.0; levels.len()],
        sigmas: levels.clone(),
        mmse,
    };
    let mut info = match &config.sigma {
        SigmaDistribution::InfoNoise(c) => c.clone(),
        _ => InfoNoiseConfig::default(),
    };
    info.sigma_data = sigma_data;
    let at_bins: Vec<f64> = info
        .bin_sigmas()
        .iter()
        .map(|&s| profile.ln_mmse_at(s).exp())
        .collect();
    let infonoise_density = sampling_density(&info, &at_bins)
        .ok()
        .map(|(density, _)| levels.iter().map(|s| density.pdf(s.ln())).collect());
    Some(ExactFloor {
        profile,
        infonoise_density,
    })
}

/// Samples of the trainer's current EMA weights: Heun, 18 Karras steps, classes round-robin.
fn preview(trainer: &Trainer, rows: usize, seed: u64) -> Result<Preview> {
    let model = LearnedDenoiser::from_trainer(trainer)?;
    let data = trainer.data();
    let rows = rows.max(1);
    let classes = data.classes;
    let cond =
        Cond::with_class((classes > 0).then(|| (0..rows).map(|r| (r % classes) as u32).collect()));
    let x = sample_heun(&model, &cond, rows, 18, seed)?;
    let samples = match data.image {
        Some(shape) => {
            let scale = (64 / shape.width.max(1)).clamp(1, 8) as u32;
            let img = image_grid_columns(&x.data, x.rows, shape, 64, scale, None);
            PreviewSamples::Grid(Arc::new(RgbPixels {
                width: img.width() as usize,
                height: img.height() as usize,
                rgb: img.into_raw(),
            }))
        }
        None => PreviewSamples::Points(Arc::new(two_columns(&x.data, x.rows, x.dim))),
    };
    Ok(Preview {
        step: trainer.steps_done(),
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiples_and_the_rate_meter() {
        assert_eq!(next_multiple(0, 100), 100);
        assert_eq!(next_multiple(100, 100), 200);
        assert_eq!(next_multiple(150, 100), 200);
        assert_eq!(next_multiple(7, 0), usize::MAX);
        let mut meter = RateMeter::default();
        assert_eq!(meter.steps_per_s(), 0.0);
        meter.record(1);
        std::thread::sleep(Duration::from_millis(20));
        meter.record(3);
        let rate = meter.steps_per_s();
        // 2 steps in >= 20 ms: at most 100 steps/s, and positive.
        assert!(rate > 0.0 && rate <= 100.0 + 1e-9, "{rate}");
    }

    #[test]
    fn two_columns_pads_one_dimensional_data() {
        let b = two_columns(&[1.0, 2.0, 3.0], 3, 1);
        assert_eq!(b.data, vec![1.0, 0.0, 2.0, 0.0, 3.0, 0.0]);
        let b = two_columns(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3);
        assert_eq!(b.data, vec![1.0, 2.0, 4.0, 5.0]);
    }
}
