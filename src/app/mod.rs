//! The eframe app (design.md "app/"): `NoiseScopeApp` is the persisted `Settings` plus runtime
//! handles (the worker thread, the run store, the replay cursor, file dialogs, view caches).
//!
//! Each frame, `tick` (eframe's `logic`, logic.rs) drains worker events into the store for at
//! most `DRAIN_BUDGET` and takes in dialog answers and export reports; then `show` (eframe's `ui`,
//! panels.rs) lays out the menu and status bar (menu.rs), the controls (controls.rs, tooltips in
//! tips.rs) and the central tab, one view per file: states_view.rs, sigma_plot.rs,
//! curvature_plot.rs, schedule_plot.rs, theory.rs, training_tab.rs (with training_plots.rs: a
//! learned denoiser trained on its own thread while sampling goes on), sweep_tab.rs (with
//! sweep_plot.rs: sweeps on their own thread, EDM fig. 2). A setting that differs from the last started
//! run starts a new one from the same seed; the worker cancels the old one at its next step (a
//! run younger than `RERUN_GRACE` finishes first). The UI thread never evaluates a denoiser and
//! never waits for a file dialog (dialogs.rs). settings.rs holds what is saved and the rules by
//! which one setting moves another; window.rs opens the window and keeps frames cheap where a
//! CPU rasterises them; bench_script.rs drives `noisescope bench-ui`, measure.rs keeps its figures.
//!
//! For teaching: lessons/ (guided scenes with stages, text and control locks), presenter.rs
//! (projector mode and the keyboard), welcome.rs (the first launch), banner.rs (a diverged run
//! says why), ab.rs (what a pinned baseline differs in, and how states are compared) and
//! scenes.rs (view PNGs that carry their scene; files opened or dropped on the window).
//! compare.rs runs exact vs learned ("Compare with exact") and sets aside a learned model that
//! does not fit the data.

pub mod ab;
mod banner;
mod bench_script;
mod compare;
pub mod controls;
mod curvature_plot;
pub mod dialogs;
mod estimator;
mod exports;
pub mod known_models;
pub mod lessons;
mod logic;
pub mod measure;
mod menu;
mod panels;
pub mod plot_style;
pub mod presenter;
mod replay;
mod scenes;
mod schedule_plot;
pub mod settings;
mod sigma_plot;
mod states_view;
mod sweep_plot;
pub mod sweep_tab;
pub mod theory;
pub mod tips;
mod training_plots;
pub mod training_tab;
mod welcome;
mod window;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::run::RunSpec;
use crate::run::store::{RunRecord, RunStore};
use crate::run::worker::{Wake, Waker, Worker};

pub use controls::parse_spectrum;
pub use curvature_plot::angle_plot_id;
pub use dialogs::{
    DialogAnswer, DialogKind, DialogSpec, FileDialogs, FileTask, PendingDialog, SystemDialogs,
};
pub use lessons::{ActiveLesson, Lesson, LessonDraft};
pub use measure::{BenchOptions, BenchReport, FrameStats};
pub use replay::Replay;
pub use scenes::VIEW_KEY;
pub use settings::{DEFAULT_SCENE_SUBSET, Settings, Tab, ViewOptions};
use window::WindowFill;
pub use window::{Renderer, run, run_bench};

use controls::ControlsState;
use dialogs::Dialogs;
use exports::Exports;
use measure::Bench;

/// The longest a frame spends applying worker events; the rest waits for the next frame.
pub const DRAIN_BUDGET: Duration = Duration::from_millis(4);

/// Step events ask for a frame at most this soon: a run's steps come faster than frames, and on
/// a software rasteriser every frame drawn mid-run takes cores from the sampler. Start, finish
/// and failure events repaint at once.
pub const STEP_REPAINT: Duration = Duration::from_millis(33);

/// How long a run in flight may finish before a changed setting cancels it (`may_restart`).
pub const RERUN_GRACE: Duration = Duration::from_millis(100);

/// The status bar's messages: the last error (shown until dismissed or replaced) and a
/// passing note (exports, backend notes).
#[derive(Default)]
struct StatusLine {
    error: Option<String>,
    info: Option<String>,
}

/// The app: persisted settings and runtime handles.
pub struct NoiseScopeApp {
    pub settings: Settings,
    store: RunStore,
    worker: Option<Worker>,
    worker_failed: bool,
    replay: Replay,
    /// The spec of the newest started run (a differing setting means "rerun").
    last_started: Option<RunSpec>,
    /// When the newest run was asked for, until it finishes (rerun latency).
    started_at: Option<Instant>,
    status: StatusLine,
    stats: FrameStats,
    controls: ControlsState,
    textures: states_view::TextureCache,
    theory: theory::TheoryPanel,
    exports: Exports,
    dialogs: Dialogs,
    /// Backend notes seen so far (also written into exported runs).
    notes: Vec<String>,
    /// The central view's rect, for "PNG of the view".
    view_rect: Option<egui::Rect>,
    last_time: Option<f64>,
    /// Whether the previous frame had a run in flight (eframe reports frame times one late).
    prev_sampling: bool,
    /// The launch run, replayed from x_0 so a newcomer sees the particles move.
    launch_generation: Option<u64>,
    bench: Option<Bench>,
    /// Set in a window (not under egui_kittest): the clear colour paints the panels.
    window_fill: Option<WindowFill>,
    /// What paints the window (for the bench report).
    renderer: Renderer,
    /// How long a run in flight may finish before a changed setting cancels it.
    rerun_grace: Duration,
    /// The lesson being shown.
    lesson: Option<ActiveLesson>,
    /// "Save as lesson": the window's words and locks, until saved or closed.
    lesson_draft: Option<LessonDraft>,
    presenter: presenter::Presenter,
    /// The first-launch welcome is showing.
    welcome: bool,
    /// Whether the current run diverged (checked once per run).
    divergence: banner::DivergenceCache,
    /// The status bar's developer figures (eval/s, ms/step, frame p95) are unfolded.
    figures_open: bool,
    /// Learned models trained or opened since the app started (known_models.rs).
    known_models: known_models::KnownModels,
    /// The Training tab: its trainer thread and the recorded run (training_tab.rs).
    training: training_tab::TrainingState,
    /// The Sweep tab: its sweep thread and the recorded sweeps (sweep_tab.rs).
    sweep: sweep_tab::SweepState,
    /// "Compare with exact" in flight (compare.rs).
    compare: Option<compare::CompareJob>,
    /// The newest learned run that finished: the partner offered for exact runs on its data.
    last_learned: compare::LastLearned,
}

impl NoiseScopeApp {
    /// An app on `settings`; the worker starts with the first frame (or `attach`).
    pub fn new(settings: Settings) -> Self {
        NoiseScopeApp {
            settings,
            store: RunStore::default(),
            worker: None,
            worker_failed: false,
            replay: Replay::default(),
            last_started: None,
            started_at: None,
            status: StatusLine::default(),
            stats: FrameStats::default(),
            controls: ControlsState::default(),
            textures: states_view::TextureCache::default(),
            theory: theory::TheoryPanel::default(),
            exports: Exports::default(),
            dialogs: Dialogs::default(),
            notes: Vec::new(),
            view_rect: None,
            last_time: None,
            prev_sampling: false,
            launch_generation: None,
            bench: None,
            window_fill: None,
            renderer: Renderer::default(),
            rerun_grace: RERUN_GRACE,
            lesson: None,
            lesson_draft: None,
            presenter: presenter::Presenter::default(),
            welcome: false,
            divergence: banner::DivergenceCache::default(),
            figures_open: false,
            known_models: known_models::KnownModels::default(),
            training: training_tab::TrainingState::default(),
            sweep: sweep_tab::SweepState::default(),
            compare: None,
            last_learned: None,
        }
    }

    /// The settings saved by the last session, or the default scene; the welcome shows until
    /// it has once been dismissed.
    pub fn from_storage(storage: Option<&dyn eframe::Storage>) -> Self {
        let mut app = NoiseScopeApp::new(Settings::from_storage(storage));
        app.welcome = storage.is_none_or(|s| s.get_string(welcome::WELCOME_DISMISSED).is_none());
        app
    }

    /// Once: sets the app's style on `ctx` and starts the worker thread, waking `ctx` after
    /// events.
    pub fn attach(&mut self, ctx: &egui::Context) {
        if self.worker.is_some() || self.worker_failed {
            return;
        }
        window::apply_lean_style(ctx);
        let ctx = ctx.clone();
        let waker: Waker = Arc::new(move |wake| match wake {
            Wake::Progress => ctx.request_repaint_after(STEP_REPAINT),
            Wake::Now => ctx.request_repaint(),
        });
        match Worker::spawn(waker) {
            Ok(w) => self.worker = Some(w),
            Err(e) => {
                self.worker_failed = true;
                self.report_error(e.to_string());
            }
        }
    }

    /// Where file dialogs come from (the desktop's by default; tests give a stand-in).
    pub fn set_file_dialogs(&mut self, dialogs: Arc<dyn FileDialogs>) {
        self.dialogs = Dialogs::new(dialogs);
    }

    /// The recorded runs.
    pub fn store(&self) -> &RunStore {
        &self.store
    }

    /// The error the status bar shows, if any.
    pub fn status_error(&self) -> Option<&str> {
        self.status.error.as_deref()
    }

    /// The last passing note of the status bar.
    pub fn status_info(&self) -> Option<&str> {
        self.status.info.as_deref()
    }

    /// Frame and rerun timings so far.
    pub fn stats(&self) -> &FrameStats {
        &self.stats
    }

    pub fn replay(&self) -> &Replay {
        &self.replay
    }

    /// Whether a run is asked for and not yet finished (or failed).
    pub fn is_sampling(&self) -> bool {
        self.started_at.is_some()
            || self
                .store
                .current
                .as_ref()
                .is_some_and(RunRecord::is_running)
    }

    /// Whether a file dialog waits for the user.
    pub fn dialog_open(&self) -> bool {
        self.dialogs.is_open()
    }

    /// Whether an export has not reported yet.
    pub fn export_busy(&self) -> bool {
        self.exports.busy()
    }

    /// How long a run in flight may finish before a changed setting cancels it (default
    /// `RERUN_GRACE`; zero cancels at once).
    pub fn set_rerun_grace(&mut self, grace: Duration) {
        self.rerun_grace = grace;
    }

    fn report_error(&mut self, message: String) {
        // Shown once: logged here, then held in the status bar until dismissed or replaced.
        eprintln!("error: {message}");
        self.status.error = Some(message);
    }

    /// One frame without eframe (egui_kittest): `tick`, then `show`.
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        self.tick(ui.ctx());
        self.show(ui);
    }
}

impl eframe::App for NoiseScopeApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.tick(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        // cpu_usage is the previous frame's: ui, tessellation and rendering, without vsync.
        if let Some(seconds) = frame.info().cpu_usage {
            self.stats
                .record_frame(1e3 * f64::from(seconds), self.prev_sampling);
        }
        self.show(ui);
    }

    fn clear_color(&self, visuals: &egui::Visuals) -> [f32; 4] {
        self.window_fill
            .map_or(visuals.panel_fill, |fill| fill.for_visuals(visuals))
            .to_normalized_gamma_f32()
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        // A bench session must not overwrite the user's settings.
        if self.bench.is_none() {
            self.settings.save_to(storage);
            if !self.welcome {
                storage.set_string(welcome::WELCOME_DISMISSED, "true".into());
            }
        }
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Dropping the workers cancels their runs and joins the threads.
        self.worker.take();
        self.training.shut_down();
        self.sweep.shut_down();
    }
}
