//! The Training tab (issue 10): trains a learned denoiser on the current data on the trainer
//! thread (run/training.rs) while sampling goes on. Left: the settings (model kind and size,
//! steps, batch, learning rate, EMA, dropouts, seed, the training-sigma law with InfoNoise's main
//! constants), Start / Pause / Resume / Cancel, the progress bar, and the models trained or opened
//! since the app started (with Save / Open checkpoint). Right: the live plots (training_plots.rs).
//! The UI thread only edits settings and draws; a finished model is saved to the app's data
//! folder and listed for the Denoiser picker.

use std::path::PathBuf;
use std::sync::Arc;

use egui::{RichText, Ui};
use serde::{Deserialize, Serialize};

use super::dialogs::FileTask;
use super::known_models::{KnownModel, ModelOrigin};
use super::{NoiseScopeApp, tips, training_plots};
use crate::core::infonoise::{GateRule, InfoNoiseConfig};
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::run::training::{
    EstimatorRequest, ModelChoice, PreviewSamples, RgbPixels, TrainRequest, TrainWorker,
};
use crate::run::training_record::{TrainStatus, TrainingRecord};
use crate::run::worker::{Wake, Waker};
use crate::train::adamw::AdamWConfig;
use crate::train::estimator::{
    EstimatorArch, EstimatorLoss, EstimatorTraining, is_estimator_checkpoint,
};
use crate::train::mlp::MlpConfig;
use crate::train::network::ArchConfig;
use crate::train::sigma_dist::SigmaDistribution;
use crate::train::trainer::TrainConfig;

/// Which network the Training tab trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    #[default]
    Mlp,
    Unet,
}

/// Where the training noise levels come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigmaLaw {
    #[default]
    LogNormal,
    InfoNoise,
}

/// What the Training tab trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainTarget {
    #[default]
    Denoiser,
    /// A noise-level estimator g(sigma | x) (`train::estimator`).
    Estimator,
}

/// How InfoNoise's low-noise gate picks c.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateChoice {
    /// c where the normalised rho first reaches p.
    #[default]
    Onset,
    /// A fixed c.
    Pinned,
}

/// The Training tab's settings, persisted with the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingSettings {
    /// A denoiser or a noise-level estimator.
    pub target: TrainTarget,
    /// The estimator's loss and its trained range of sigma (log-uniform).
    pub estimator_loss: EstimatorLoss,
    pub estimator_sigma_min: f64,
    pub estimator_sigma_max: f64,
    pub model: ModelKind,
    /// The mlp's hidden width and depth.
    pub mlp_width: usize,
    pub mlp_depth: usize,
    /// The unet's channels at the finest resolution.
    pub unet_width: usize,
    /// The conv estimator's channels (its first convolution; 2x in the next two).
    pub estimator_channels: usize,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// EMA half-life, training samples.
    pub ema_half_life: f64,
    pub class_dropout: f64,
    pub noise_dropout: f64,
    pub seed: u64,
    pub sigma: SigmaLaw,
    /// The log-normal (and InfoNoise's warm-up): ln sigma ~ N(p_mean, p_std^2).
    pub p_mean: f64,
    pub p_std: f64,
    pub info_warmup: u64,
    pub info_rebuild_every: u64,
    pub info_ema: f64,
    pub info_gate: GateChoice,
    /// p of the onset rule, or the pinned c.
    pub info_gate_value: f64,
    /// Steps between previews (0: only "Preview now").
    pub preview_every: usize,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        let info = InfoNoiseConfig::default();
        TrainingSettings {
            target: TrainTarget::Denoiser,
            estimator_loss: EstimatorLoss::Nll,
            estimator_sigma_min: 0.002,
            estimator_sigma_max: 80.0,
            model: ModelKind::Mlp,
            mlp_width: 256,
            mlp_depth: 4,
            unet_width: 32,
            estimator_channels: 16,
            steps: 3000,
            batch: 512,
            lr: AdamWConfig::default().lr,
            ema_half_life: 50_000.0,
            class_dropout: 0.1,
            noise_dropout: 0.1,
            seed: 0,
            sigma: SigmaLaw::LogNormal,
            p_mean: info.p_mean,
            p_std: info.p_std,
            // The reimplementation's 2000 / 1000 suit long runs; an in-app run is a few thousand.
            info_warmup: 500,
            info_rebuild_every: 250,
            info_ema: info.ema,
            info_gate: GateChoice::Onset,
            info_gate_value: 0.002,
            preview_every: 500,
        }
    }
}

/// Samples per preview.
const PREVIEW_ROWS: usize = 500;

/// Repaint delay after a training report: ten frames a second keep the progress bar and the
/// loss live, and leave the CPU (a software rasteriser's, often) to training.
const TRAIN_REPAINT: std::time::Duration = std::time::Duration::from_millis(100);

impl TrainingSettings {
    /// The training-sigma distribution these settings name.
    pub fn sigma_distribution(&self) -> SigmaDistribution {
        match self.sigma {
            SigmaLaw::LogNormal => SigmaDistribution::LogNormal {
                p_mean: self.p_mean,
                p_std: self.p_std,
            },
            SigmaLaw::InfoNoise => SigmaDistribution::InfoNoise(InfoNoiseConfig {
                warmup_steps: self.info_warmup,
                rebuild_every: self.info_rebuild_every,
                ema: self.info_ema,
                p_mean: self.p_mean,
                p_std: self.p_std,
                gate: match self.info_gate {
                    GateChoice::Onset => GateRule::Onset {
                        p: self.info_gate_value,
                    },
                    GateChoice::Pinned => GateRule::Pinned {
                        c: self.info_gate_value,
                    },
                },
                ..InfoNoiseConfig::default()
            }),
        }
    }

    /// The run these settings ask for on `data`, saved to `checkpoint`; one clear message when a
    /// setting is out of range.
    pub fn request(&self, data: DataSpec, checkpoint: PathBuf) -> Result<TrainRequest> {
        if self.steps == 0 {
            return Err(Error::InvalidSpec("train at least 1 step".into()));
        }
        let model = match self.model {
            ModelKind::Mlp => {
                let config = MlpConfig {
                    hidden: self.mlp_width,
                    depth: self.mlp_depth,
                    ..MlpConfig::default()
                };
                config.validate()?;
                ModelChoice::Mlp(config)
            }
            ModelKind::Unet => {
                if self.unet_width == 0
                    || !self.unet_width.is_multiple_of(8)
                    || self.unet_width > 512
                {
                    return Err(Error::InvalidSpec(format!(
                        "the unet's width must be a multiple of 8 up to 512 (its GroupNorm has 8 \
                         groups), got {}",
                        self.unet_width
                    )));
                }
                ModelChoice::Unet {
                    width: self.unet_width,
                }
            }
        };
        let mut config = TrainConfig::for_arch(&ArchConfig::Mlp(MlpConfig::default()), self.steps);
        config.batch = self.batch;
        config.optimizer.lr = self.lr;
        config.optimizer.warmup_steps = config.optimizer.warmup_steps.min(self.steps / 4);
        config.ema_half_life = self.ema_half_life;
        config.class_dropout = self.class_dropout;
        config.noise_dropout = self.noise_dropout;
        config.seed = self.seed;
        config.sigma = self.sigma_distribution();
        config.validate()?;
        let estimator = match self.target {
            TrainTarget::Denoiser => None,
            TrainTarget::Estimator => Some(self.estimator_request()?),
        };
        Ok(TrainRequest {
            data,
            model,
            config,
            preview_every: self.preview_every,
            preview_rows: PREVIEW_ROWS,
            checkpoint,
            estimator,
        })
    }

    /// The noise-level estimator these settings ask for: the mlp at the tab's width and depth,
    /// or (unet chosen) the conv body at the tab's channels; the tab's steps, batch, learning
    /// rate and seed.
    fn estimator_request(&self) -> Result<EstimatorRequest> {
        let (lo, hi) = (self.estimator_sigma_min, self.estimator_sigma_max);
        if !(lo > 0.0 && hi.is_finite() && lo < hi) {
            return Err(Error::InvalidSpec(format!(
                "the estimator's σ range needs 0 < σ_min < σ_max, got [{lo}, {hi}]"
            )));
        }
        let arch = match self.model {
            ModelKind::Mlp => EstimatorArch::Mlp {
                hidden: self.mlp_width,
                depth: self.mlp_depth.min(16),
            },
            ModelKind::Unet => EstimatorArch::Conv {
                channels: self.estimator_channels,
                hidden: 128,
            },
        };
        Ok(EstimatorRequest {
            arch,
            sigma_min: lo,
            sigma_max: hi,
            training: EstimatorTraining {
                steps: self.steps,
                batch: self.batch,
                lr: self.lr,
                seed: self.seed,
                loss: self.estimator_loss,
            },
        })
    }
}

/// The Training tab's runtime state: the trainer thread (started with the first run), the
/// recorded run, the preview's texture and where finished models go.
#[derive(Default)]
pub struct TrainingState {
    worker: Option<TrainWorker>,
    pub record: TrainingRecord,
    /// (run, step) of the preview in `texture`.
    texture: Option<((u64, usize), egui::TextureHandle)>,
    /// Where finished models are saved (default: the app's data folder, models/).
    models_dir: Option<PathBuf>,
}

impl TrainingState {
    /// Where finished models are saved.
    fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(|| {
            eframe::storage_dir("noisescope")
                .unwrap_or_else(|| std::env::temp_dir().join("noisescope"))
                .join("models")
        })
    }

    /// The preview grid's texture, made once per preview.
    pub(super) fn preview_texture(
        &mut self,
        ctx: &egui::Context,
        pixels: &RgbPixels,
        key: (u64, usize),
    ) -> egui::TextureHandle {
        if let Some((k, t)) = &self.texture
            && *k == key
        {
            return t.clone();
        }
        let image = egui::ColorImage::from_rgb([pixels.width, pixels.height], &pixels.rgb);
        let texture = ctx.load_texture("training-preview", image, egui::TextureOptions::NEAREST);
        self.texture = Some((key, texture.clone()));
        texture
    }

    /// Ends the trainer thread (cancelling its run); what closing the window does.
    pub fn shut_down(&mut self) {
        self.worker.take();
    }
}

/// A file name for a model trained on `data`: data, model, steps, seed and the time, so runs
/// never overwrite each other.
fn checkpoint_name(data: &DataSpec, s: &TrainingSettings) -> String {
    let slug: String = data
        .label()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let kind = match (s.target, s.model) {
        (TrainTarget::Denoiser, ModelKind::Mlp) => "mlp",
        (TrainTarget::Denoiser, ModelKind::Unet) => "unet",
        (TrainTarget::Estimator, ModelKind::Mlp) => "estimator-mlp",
        (TrainTarget::Estimator, ModelKind::Unet) => "estimator-conv",
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "{}-{kind}-{}steps-seed{}-{stamp}.safetensors",
        slug.trim_matches('-'),
        s.steps,
        s.seed
    )
}

impl NoiseScopeApp {
    /// The training run as recorded.
    pub fn training(&self) -> &TrainingRecord {
        &self.training.record
    }

    /// Steps done by the run in flight as the trainer thread counts them (ahead of the events).
    pub fn training_live_step(&self) -> Option<usize> {
        self.training.worker.as_ref().map(TrainWorker::live_step)
    }

    /// Learned models trained or opened since the app started.
    pub fn known_models(&self) -> &super::known_models::KnownModels {
        &self.known_models
    }

    /// Where finished models are saved (tests give a temporary folder).
    pub fn set_models_dir(&mut self, dir: PathBuf) {
        self.training.models_dir = Some(dir);
    }

    /// Starts training with the Training tab's settings on the current data.
    pub fn start_training(&mut self, ctx: &egui::Context) {
        let data = self.settings.spec.data.clone();
        let path = self
            .training
            .models_dir()
            .join(checkpoint_name(&data, &self.settings.training));
        let request = match self.settings.training.request(data, path) {
            Ok(r) => r,
            Err(e) => return self.report_error(format!("Training: {e}")),
        };
        self.start_trainer_thread(ctx);
        if let Some(worker) = self.training.worker.as_mut() {
            let run = worker.start(request);
            self.training.record.expect(run);
        }
    }

    pub fn pause_training(&self) {
        if let Some(w) = &self.training.worker {
            w.pause();
        }
    }

    pub fn resume_training(&self) {
        if let Some(w) = &self.training.worker {
            w.resume();
        }
    }

    pub fn cancel_training(&self) {
        if let Some(w) = &self.training.worker {
            w.cancel();
        }
    }

    /// Per frame: applies trainer events for at most `budget` (what is left of the frame's
    /// drain budget after the sampling events).
    pub(super) fn drain_training(&mut self, ctx: &egui::Context, budget: std::time::Duration) {
        let Some(worker) = self.training.worker.as_ref() else {
            return;
        };
        let drained = self.training.record.drain(|| worker.try_event(), budget);
        if drained.budget_spent {
            ctx.request_repaint();
        }
        for new in drained.checkpoints {
            // A trained (or opened) noise-level estimator becomes the runs' estimator.
            if is_estimator_checkpoint(&new.model.path) {
                self.open_estimator(new.model.path);
                continue;
            }
            self.known_models.add(KnownModel {
                label: new.model.label,
                path: new.model.path,
                origin: if new.opened {
                    ModelOrigin::Opened
                } else {
                    ModelOrigin::Trained
                },
            });
        }
        for e in drained.errors {
            self.report_error(e);
        }
        if let Some(note) = drained.notes.last() {
            self.status.info = Some(note.clone());
        }
    }

    /// A checkpoint path chosen in a dialog: save the last model there, or open it.
    pub(super) fn checkpoint_chosen(&mut self, task: FileTask, path: PathBuf) {
        // The buttons start the trainer thread before they open the dialog.
        let Some(worker) = self.training.worker.as_ref() else {
            return self.report_error(format!(
                "{}: the trainer thread is not running",
                task.title()
            ));
        };
        match task {
            FileTask::SaveCheckpoint => worker.save(path),
            _ => worker.open(path),
        }
    }

    /// Starts the trainer thread (without a run) if it is not running.
    fn start_trainer_thread(&mut self, ctx: &egui::Context) {
        if self.training.worker.is_some() {
            return;
        }
        let ctx = ctx.clone();
        let waker: Waker = Arc::new(move |wake| match wake {
            Wake::Progress => ctx.request_repaint_after(TRAIN_REPAINT),
            Wake::Now => ctx.request_repaint(),
        });
        match TrainWorker::spawn(waker) {
            Ok(w) => self.training.worker = Some(w),
            Err(e) => self.report_error(e.to_string()),
        }
    }

    /// The Training tab: settings and buttons on the left, the plots on the right.
    pub(super) fn training_tab(&mut self, ui: &mut Ui) {
        let full = ui.available_rect_before_wrap();
        let left = 330.0f32.min(0.4 * full.width()).max(0.0);
        let controls = egui::Rect::from_min_size(full.min, egui::vec2(left, full.height()));
        let plots =
            egui::Rect::from_min_max(egui::pos2(full.min.x + left + 8.0, full.min.y), full.max);
        ui.scope_builder(egui::UiBuilder::new().max_rect(controls), |ui| {
            egui::ScrollArea::vertical()
                .id_salt("training-controls")
                .show(ui, |ui| self.training_controls(ui));
        });
        if plots.width() < 200.0 || plots.height() < 200.0 {
            return;
        }
        ui.scope_builder(egui::UiBuilder::new().max_rect(plots), |ui| {
            let record = &self.training.record;
            let grid = record.preview.as_ref().and_then(|p| match &p.samples {
                PreviewSamples::Grid(pixels) => Some((pixels.clone(), (record.expected, p.step))),
                PreviewSamples::Points(_) => None,
            });
            let texture =
                grid.map(|(pixels, key)| self.training.preview_texture(ui.ctx(), &pixels, key));
            training_plots::show(ui, &self.training.record, texture.as_ref());
        });
    }

    fn training_controls(&mut self, ui: &mut Ui) {
        let status = self.training.record.status.clone();
        let active = status.is_active();
        let data_label = self.settings.spec.data.label();
        ui.label(RichText::new("Train a learned denoiser or noise-level estimator").strong());
        ui.label(format!("data: {data_label}"))
            .on_hover_text(tips::TRAIN_DATA);
        ui.add_enabled_ui(!active, |ui| settings_grid(ui, &mut self.settings.training));
        ui.separator();
        let mut start = false;
        ui.horizontal_wrapped(|ui| {
            start = ui
                .add_enabled(!active, egui::Button::new("Start training"))
                .on_hover_text(tips::TRAIN_START)
                .clicked();
            let paused = self.training.worker.as_ref().is_some_and(|w| w.paused());
            if paused {
                if ui
                    .add_enabled(active, egui::Button::new("Resume training"))
                    .on_hover_text(tips::TRAIN_RESUME)
                    .clicked()
                {
                    self.resume_training();
                }
            } else if ui
                .add_enabled(active, egui::Button::new("Pause training"))
                .on_hover_text(tips::TRAIN_PAUSE)
                .clicked()
            {
                self.pause_training();
            }
            if ui
                .add_enabled(active, egui::Button::new("Cancel training"))
                .on_hover_text(tips::TRAIN_CANCEL)
                .clicked()
            {
                self.cancel_training();
            }
            if ui
                .add_enabled(active, egui::Button::new("Preview now"))
                .on_hover_text(tips::TRAIN_PREVIEW)
                .clicked()
                && let Some(w) = &self.training.worker
            {
                w.preview_now();
            }
        });
        if start {
            let ctx = ui.ctx().clone();
            self.start_training(&ctx);
        }
        self.progress(ui);
        ui.separator();
        self.models_list(ui);
    }

    fn progress(&self, ui: &mut Ui) {
        let r = &self.training.record;
        let fraction = if r.total > 0 {
            r.step as f32 / r.total as f32
        } else {
            0.0
        };
        let text = match &r.status {
            TrainStatus::Idle => "not started".to_string(),
            TrainStatus::Preparing => "loading the data…".to_string(),
            TrainStatus::Training => format!(
                "step {}/{}  {:.0} steps/s  {} left",
                r.step,
                r.total,
                r.steps_per_s,
                format_seconds(r.seconds_left)
            ),
            TrainStatus::Finished => format!("finished: {} steps", r.step),
            TrainStatus::Cancelled => format!("cancelled at step {}", r.step),
            TrainStatus::Failed(_) => "failed (see the status bar)".to_string(),
        };
        ui.add(egui::ProgressBar::new(fraction).text(text))
            .on_hover_text(tips::TRAIN_PROGRESS);
        if let Some(start) = &r.start {
            ui.label(
                RichText::new(format!(
                    "{} ({} parameters) on {} ({} rows, dim {}, {} classes, σ_data {:.3})",
                    start.arch,
                    start.parameters,
                    start.data_label,
                    start.rows,
                    start.dim,
                    start.classes,
                    start.sigma_data
                ))
                .small(),
            );
        }
        if let Some(loss) = r.smoothed.last() {
            ui.label(RichText::new(format!("loss (smoothed) {loss:.4}, lr {:.2e}", r.lr)).small());
        }
    }

    fn models_list(&mut self, ui: &mut Ui) {
        ui.label(RichText::new("Models trained or opened since the app started").strong())
            .on_hover_text(tips::TRAIN_MODELS);
        let dialog_open = self.dialogs.is_open();
        let has_model = matches!(
            self.training.record.status,
            TrainStatus::Finished | TrainStatus::Cancelled
        );
        let mut task = None;
        ui.horizontal(|ui| {
            if ui
                .add_enabled(
                    !dialog_open && has_model,
                    egui::Button::new("Save checkpoint…"),
                )
                .on_hover_text(tips::TRAIN_SAVE)
                .clicked()
            {
                task = Some(FileTask::SaveCheckpoint);
            }
            if ui
                .add_enabled(!dialog_open, egui::Button::new("Open checkpoint…"))
                .on_hover_text(tips::TRAIN_OPEN)
                .clicked()
            {
                task = Some(FileTask::OpenCheckpoint);
            }
        });
        if let Some(task) = task {
            let ctx = ui.ctx().clone();
            self.start_trainer_thread(&ctx);
            self.ask_for_file(&ctx, task);
        }
        if self.known_models.list().is_empty() {
            ui.label(RichText::new("none yet").weak());
        }
        for model in self.known_models.list() {
            let origin = match model.origin {
                ModelOrigin::Trained => "trained",
                ModelOrigin::Opened => "opened",
            };
            ui.label(RichText::new(format!("{origin}: {}", model.label)).small())
                .on_hover_text(model.path.display().to_string());
        }
    }
}

/// "1 min 05 s", "12 s", "?" when unknown.
fn format_seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "?".into();
    }
    let s = s.round() as u64;
    if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// The settings as a two-column grid, each with its tooltip.
fn settings_grid(ui: &mut Ui, s: &mut TrainingSettings) {
    let estimator = s.target == TrainTarget::Estimator;
    egui::Grid::new("training-settings")
        .num_columns(2)
        .show(ui, |ui| {
            ui.label("train").on_hover_text(tips::TRAIN_TARGET);
            ui.horizontal(|ui| {
                ui.selectable_value(&mut s.target, TrainTarget::Denoiser, "denoiser")
                    .on_hover_text(tips::TRAIN_TARGET);
                ui.selectable_value(
                    &mut s.target,
                    TrainTarget::Estimator,
                    "noise-level estimator",
                )
                .on_hover_text(tips::TRAIN_TARGET);
            });
            ui.end_row();
            let (model_tip, unet_name) = if estimator {
                (tips::TRAIN_ESTIMATOR_MODEL, "conv")
            } else {
                (tips::TRAIN_MODEL, "unet")
            };
            ui.label("model").on_hover_text(model_tip);
            ui.horizontal(|ui| {
                ui.selectable_value(&mut s.model, ModelKind::Mlp, "mlp")
                    .on_hover_text(model_tip);
                ui.selectable_value(&mut s.model, ModelKind::Unet, unet_name)
                    .on_hover_text(model_tip);
            });
            ui.end_row();
            if estimator {
                estimator_rows(ui, s);
                return;
            }
            let unet_width = ImageBodySize {
                label: "width",
                value: |s| &mut s.unet_width,
                range: 8..=512,
                tip: tips::TRAIN_UNET_WIDTH,
            };
            common_rows(ui, s, 64, unet_width);
            real(
                ui,
                "EMA half-life",
                &mut s.ema_half_life,
                1.0..=1e9,
                true,
                tips::TRAIN_EMA,
            );
            real(
                ui,
                "class dropout",
                &mut s.class_dropout,
                0.0..=1.0,
                false,
                tips::TRAIN_CLASS_DROPOUT,
            );
            real(
                ui,
                "noise dropout",
                &mut s.noise_dropout,
                0.0..=1.0,
                false,
                tips::TRAIN_NOISE_DROPOUT,
            );
            ui.label("training σ").on_hover_text(tips::TRAIN_SIGMA);
            ui.horizontal(|ui| {
                ui.selectable_value(&mut s.sigma, SigmaLaw::LogNormal, "log-normal")
                    .on_hover_text(tips::TRAIN_SIGMA);
                ui.selectable_value(&mut s.sigma, SigmaLaw::InfoNoise, "InfoNoise")
                    .on_hover_text(tips::TRAIN_SIGMA);
            });
            ui.end_row();
            real(
                ui,
                "P_mean",
                &mut s.p_mean,
                -10.0..=10.0,
                false,
                tips::TRAIN_P_MEAN,
            );
            real(
                ui,
                "P_std",
                &mut s.p_std,
                0.01..=5.0,
                false,
                tips::TRAIN_P_STD,
            );
            if s.sigma == SigmaLaw::InfoNoise {
                number(
                    ui,
                    "warm-up",
                    &mut s.info_warmup,
                    0..=10_000_000,
                    tips::TRAIN_INFO_WARMUP,
                );
                number(
                    ui,
                    "rebuild every",
                    &mut s.info_rebuild_every,
                    1..=10_000_000,
                    tips::TRAIN_INFO_REBUILD,
                );
                real(
                    ui,
                    "profile EMA",
                    &mut s.info_ema,
                    0.0..=0.999,
                    false,
                    tips::TRAIN_INFO_EMA,
                );
                ui.label("gate").on_hover_text(tips::TRAIN_INFO_GATE);
                ui.horizontal(|ui| {
                    ui.selectable_value(&mut s.info_gate, GateChoice::Onset, "onset p")
                        .on_hover_text(tips::TRAIN_INFO_GATE);
                    ui.selectable_value(&mut s.info_gate, GateChoice::Pinned, "pinned c")
                        .on_hover_text(tips::TRAIN_INFO_GATE);
                    ui.add(
                        egui::DragValue::new(&mut s.info_gate_value)
                            .range(1e-6..=10.0)
                            .speed(0.001),
                    )
                    .on_hover_text(tips::TRAIN_INFO_GATE);
                });
                ui.end_row();
            }
            number(
                ui,
                "preview every",
                &mut s.preview_every,
                0..=10_000_000,
                tips::TRAIN_PREVIEW_EVERY,
            );
        });
}

/// The image body's size row (the unet's width, the conv estimator's channels).
struct ImageBodySize {
    label: &'static str,
    value: fn(&mut TrainingSettings) -> &mut usize,
    range: std::ops::RangeInclusive<usize>,
    tip: &'static str,
}

/// The rows a denoiser and an estimator share: the mlp's width and depth (at most `max_depth`
/// layers) or the image body's size, then steps, batch, learning rate and seed.
fn common_rows(ui: &mut Ui, s: &mut TrainingSettings, max_depth: usize, image: ImageBodySize) {
    match s.model {
        ModelKind::Mlp => {
            number(
                ui,
                "width",
                &mut s.mlp_width,
                1..=8192,
                tips::TRAIN_MLP_WIDTH,
            );
            number(
                ui,
                "depth",
                &mut s.mlp_depth,
                1..=max_depth,
                tips::TRAIN_MLP_DEPTH,
            );
        }
        ModelKind::Unet => number(ui, image.label, (image.value)(s), image.range, image.tip),
    }
    number(ui, "steps", &mut s.steps, 1..=10_000_000, tips::TRAIN_STEPS);
    number(ui, "batch", &mut s.batch, 1..=65_536, tips::TRAIN_BATCH);
    real(
        ui,
        "learning rate",
        &mut s.lr,
        1e-6..=1.0,
        true,
        tips::TRAIN_LR,
    );
    number(ui, "seed", &mut s.seed, 0..=u64::MAX, tips::TRAIN_SEED);
}

/// The noise-level estimator's rows: size, steps, batch, learning rate, seed, loss, σ range.
fn estimator_rows(ui: &mut Ui, s: &mut TrainingSettings) {
    let channels = ImageBodySize {
        label: "channels",
        value: |s| &mut s.estimator_channels,
        range: 1..=512,
        tip: tips::TRAIN_ESTIMATOR_CHANNELS,
    };
    common_rows(ui, s, 16, channels);
    ui.label("loss").on_hover_text(tips::TRAIN_ESTIMATOR_LOSS);
    ui.horizontal(|ui| {
        ui.selectable_value(&mut s.estimator_loss, EstimatorLoss::Nll, "nll")
            .on_hover_text(tips::TRAIN_ESTIMATOR_LOSS);
        ui.selectable_value(&mut s.estimator_loss, EstimatorLoss::Alpha, "alpha")
            .on_hover_text(tips::TRAIN_ESTIMATOR_LOSS);
    });
    ui.end_row();
    real(
        ui,
        "σ_min",
        &mut s.estimator_sigma_min,
        1e-5..=1e3,
        true,
        tips::TRAIN_ESTIMATOR_RANGE,
    );
    real(
        ui,
        "σ_max",
        &mut s.estimator_sigma_max,
        1e-4..=1e4,
        true,
        tips::TRAIN_ESTIMATOR_RANGE,
    );
}

/// A labelled integer field.
fn number<T: egui::emath::Numeric>(
    ui: &mut Ui,
    label: &str,
    value: &mut T,
    range: std::ops::RangeInclusive<T>,
    tip: &str,
) {
    // Labelled by its row's label, so that assistive technology (and the tests) find it by name.
    let label = ui.label(label).on_hover_text(tip);
    ui.add(egui::DragValue::new(value).range(range).speed(1.0))
        .labelled_by(label.id)
        .on_hover_text(tip);
    ui.end_row();
}

/// A labelled real field (`log`: dragged in proportion to its size).
fn real(
    ui: &mut Ui,
    label: &str,
    value: &mut f64,
    range: std::ops::RangeInclusive<f64>,
    log: bool,
    tip: &str,
) {
    let label = ui.label(label).on_hover_text(tip);
    let speed = if log { (*value).abs() * 0.01 } else { 0.01 };
    ui.add(
        egui::DragValue::new(value)
            .range(range)
            .speed(speed.max(1e-6))
            .max_decimals(6),
    )
    .labelled_by(label.id)
    .on_hover_text(tip);
    ui.end_row();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moons() -> DataSpec {
        DataSpec::Toy {
            name: "moons".into(),
            points: 1000,
        }
    }

    #[test]
    fn settings_make_a_valid_request_and_bad_ones_say_why() -> Result<()> {
        let s = TrainingSettings::default();
        let r = s.request(moons(), "m.safetensors".into())?;
        assert_eq!((r.config.steps, r.config.batch), (3000, 512));
        assert!(matches!(r.model, ModelChoice::Mlp(ref c) if c.hidden == 256 && c.depth == 4));
        let info = TrainingSettings {
            sigma: SigmaLaw::InfoNoise,
            info_gate: GateChoice::Pinned,
            info_gate_value: 0.2,
            ..s.clone()
        };
        match info.request(moons(), "m.safetensors".into())?.config.sigma {
            SigmaDistribution::InfoNoise(c) => {
                assert_eq!(c.gate, GateRule::Pinned { c: 0.2 });
                assert_eq!((c.warmup_steps, c.rebuild_every), (500, 250));
            }
            other => panic!("InfoNoise expected, got {other:?}"),
        }
        for (bad, word) in [
            (
                TrainingSettings {
                    steps: 0,
                    ..s.clone()
                },
                "step",
            ),
            (
                TrainingSettings {
                    batch: 0,
                    ..s.clone()
                },
                "batch",
            ),
            (
                TrainingSettings {
                    lr: -1.0,
                    ..s.clone()
                },
                "lr",
            ),
            (
                TrainingSettings {
                    class_dropout: 2.0,
                    ..s.clone()
                },
                "dropout",
            ),
            (
                TrainingSettings {
                    mlp_width: 0,
                    ..s.clone()
                },
                "mlp",
            ),
            (
                TrainingSettings {
                    model: ModelKind::Unet,
                    unet_width: 12,
                    ..s.clone()
                },
                "multiple of 8",
            ),
        ] {
            let message = bad
                .request(moons(), "m.safetensors".into())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(word), "{word}: {message}");
        }
        Ok(())
    }

    #[test]
    fn checkpoint_names_are_plain_files_and_seconds_read_well() {
        let name = checkpoint_name(&moons(), &TrainingSettings::default());
        assert!(name.starts_with("toy-moons-mlp-3000steps-seed0-"), "{name}");
        assert!(name.ends_with(".safetensors"));
        assert!(!name.contains('/') && !name.contains(':'));
        assert_eq!(format_seconds(65.2), "1 min 05 s");
        assert_eq!(format_seconds(12.0), "12 s");
        assert_eq!(format_seconds(f64::NAN), "?");
    }
}
