//! The eframe app (design.md "app/"): `NoiseScopeApp` is the persisted `Settings` plus runtime
//! handles (the worker thread, the run store, the replay cursor, view caches).
//!
//! Each frame, `tick` (eframe's `logic`) drains worker events into the store for at most
//! `DRAIN_BUDGET`, then `show` (eframe's `ui`) draws one panel per file from the store:
//! controls.rs (left), states_view.rs, sigma_plot.rs, curvature_plot.rs, schedule_plot.rs and
//! theory.rs (centre). A setting that differs from the last started run starts a new one from
//! the same seed; the worker cancels the old one at its next step (a run younger than
//! `RERUN_GRACE` finishes first). The UI thread never evaluates a denoiser. window.rs opens the
//! window and keeps frames cheap where a CPU rasterises them.

mod controls;
mod curvature_plot;
mod exports;
pub mod measure;
mod plot_style;
mod replay;
mod schedule_plot;
mod sigma_plot;
mod states_view;
mod theory;
mod window;

use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::{Color32, RichText, Ui};
use serde::{Deserialize, Serialize};

use crate::core::sampler::SamplerKind;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::run::RunSpec;
use crate::run::protocol::Event;
use crate::run::spec::DiagnosticsSpec;
use crate::run::store::{RunRecord, RunStatus, RunStore};
use crate::run::worker::{Wake, Waker, Worker};

pub use controls::{parse_spectrum, tips};
pub use measure::{BenchOptions, BenchReport, FrameStats};
pub use replay::Replay;
use window::WindowFill;
pub use window::{Renderer, run, run_bench};

use controls::{Action, ControlsInfo, ControlsState};
use exports::{Exports, Pick};
use measure::{Bench, Phase};

/// The longest a frame spends applying worker events; the rest waits for the next frame.
pub const DRAIN_BUDGET: Duration = Duration::from_millis(4);

/// Step events ask for a frame at most this soon: a run's steps come faster than frames, and on
/// a software rasteriser every frame drawn mid-run takes cores from the sampler. Start, finish
/// and failure events repaint at once.
pub const STEP_REPAINT: Duration = Duration::from_millis(33);

/// How long a run in flight may finish before a changed setting cancels it (`may_restart`).
pub const RERUN_GRACE: Duration = Duration::from_millis(100);

/// Rows of the default scene's noise-level statistics (see `Settings::default_scene`).
pub const DEFAULT_SCENE_SUBSET: usize = 32;

/// The views of the central area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tab {
    /// States beside the noise-level and curvature plots.
    #[default]
    Overview,
    States,
    NoiseLevel,
    Curvature,
    Schedule,
    Theory,
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Overview,
        Tab::States,
        Tab::NoiseLevel,
        Tab::Curvature,
        Tab::Schedule,
        Tab::Theory,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::States => "States",
            Tab::NoiseLevel => "Noise level",
            Tab::Curvature => "Curvature",
            Tab::Schedule => "Schedule",
            Tab::Theory => "Theory",
        }
    }
}

/// How the views draw; persisted with the run settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViewOptions {
    pub tab: Tab,
    /// A changed setting starts a new run at once.
    pub rerun_on_change: bool,
    pub show_data: bool,
    pub show_paths: bool,
    /// Particles whose paths (2-D) or trajectories (1-D) are drawn.
    pub paths: usize,
    pub show_denoised: bool,
    /// Each particle's Euler step toward D(x_i): the ODE direction at the particle.
    pub show_arrows: bool,
    /// Overlay the pinned baseline and show its states beside the live ones.
    pub show_baseline: bool,
    /// Replay speed, states per second.
    pub play_speed: f64,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            tab: Tab::Overview,
            rerun_on_change: true,
            show_data: true,
            show_paths: true,
            paths: 50,
            show_denoised: true,
            show_arrows: false,
            show_baseline: true,
            play_speed: 6.0,
        }
    }
}

/// Everything the app remembers between launches (eframe storage, JSON under `eframe::APP_KEY`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub spec: RunSpec,
    pub view: ViewOptions,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::default_scene()
    }
}

impl Settings {
    /// The scene a newcomer sees: 2-D 8 Gaussians with its exact mixture denoiser, Heun,
    /// 18 Karras steps, 1000 particles, seed 0 (motion within the first second). Its noise-level
    /// statistics use 32 rows rather than the CLI's 128: at 128 the diagnostics alone took
    /// 35-75 ms of a rerun on the 2-core reference machine, against a 100 ms budget.
    pub fn default_scene() -> Self {
        Settings {
            spec: RunSpec {
                data: DataSpec::Toy {
                    name: "8gaussians".into(),
                    points: 4096,
                },
                sampler: SamplerKind::Heun,
                batch: 1000,
                seed: 0,
                diagnostics: DiagnosticsSpec {
                    enabled: true,
                    subset: DEFAULT_SCENE_SUBSET,
                },
                ..RunSpec::default()
            },
            view: ViewOptions::default(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads settings saved by `to_json`; the spec must be valid.
    pub fn from_json(text: &str) -> Result<Self> {
        let settings: Settings = serde_json::from_str(text)
            .map_err(|e| Error::InvalidSpec(format!("saved settings: {e}")))?;
        settings.spec.validate()?;
        Ok(settings)
    }
}

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
    /// Backend notes seen so far (also written into exported runs).
    notes: Vec<String>,
    /// The central view's rect, for "PNG of the view".
    view_rect: Option<egui::Rect>,
    last_time: Option<f64>,
    /// Whether the previous frame had a run in flight (eframe reports frame times one late).
    prev_sampling: bool,
    /// The launch run, replayed from x_0 so a newcomer sees the particles move.
    launch_generation: Option<u64>,
    /// The run shown before the current one, drawn until the current one has a state (a rerun
    /// does not blank the views for a frame).
    previous: Option<RunRecord>,
    bench: Option<Bench>,
    /// Set in a window (not under egui_kittest): the clear colour paints the panels.
    window_fill: Option<WindowFill>,
    /// What paints the window (for the bench report).
    renderer: Renderer,
    /// How long a run in flight may finish before a changed setting cancels it.
    rerun_grace: Duration,
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
            notes: Vec::new(),
            view_rect: None,
            last_time: None,
            prev_sampling: false,
            launch_generation: None,
            previous: None,
            bench: None,
            window_fill: None,
            renderer: Renderer::default(),
            rerun_grace: RERUN_GRACE,
        }
    }

    /// The settings saved by the last session, or the default scene.
    pub fn from_storage(storage: Option<&dyn eframe::Storage>) -> Self {
        let saved = storage.and_then(|s| s.get_string(eframe::APP_KEY));
        let settings = match saved.as_deref().map(Settings::from_json) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                eprintln!("note: ignoring saved settings ({e}); opening the default scene");
                Settings::default_scene()
            }
            None => Settings::default_scene(),
        };
        NoiseScopeApp::new(settings)
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

    /// The recorded runs.
    pub fn store(&self) -> &RunStore {
        &self.store
    }

    /// The error the status bar shows, if any.
    pub fn status_error(&self) -> Option<&str> {
        self.status.error.as_deref()
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

    /// Whether a changed setting may start its rerun now. A run in flight younger than the
    /// rerun grace is let finish first (a frame is asked for when the grace ends): a dragged
    /// slider then shows finished runs instead of a stream of runs cancelled at their first step.
    fn may_restart(&self, ctx: &egui::Context) -> bool {
        match self.started_at {
            Some(started) => {
                let age = started.elapsed();
                if age < self.rerun_grace {
                    ctx.request_repaint_after(self.rerun_grace - age);
                }
                age >= self.rerun_grace
            }
            None => true,
        }
    }

    /// How long a run in flight may finish before a changed setting cancels it (default
    /// `RERUN_GRACE`; zero cancels at once).
    pub fn set_rerun_grace(&mut self, grace: Duration) {
        self.rerun_grace = grace;
    }

    /// Starts a run of the current settings (same seed, so the same initial noise).
    pub fn start_run(&mut self) {
        let Some(worker) = self.worker.as_mut() else {
            return;
        };
        let spec = self.settings.spec.clone();
        self.store.expected = worker.start(spec.clone());
        self.last_started = Some(spec);
        self.started_at = Some(Instant::now());
    }

    /// Switches the data (what "Open folder…" / "Open .npy…" do after the dialog) and reruns.
    /// Loading happens on the worker; a bad file comes back as an error in the status bar.
    pub fn load_data(&mut self, data: DataSpec) {
        controls::set_data(&mut self.settings, data);
        self.start_run();
    }

    /// Keeps the current (finished) run as the A/B baseline.
    pub fn pin_baseline(&mut self) -> bool {
        let pinned = self.store.pin_baseline();
        if !pinned {
            self.status.info = Some("pin a finished run (wait for it to finish)".into());
        }
        pinned
    }

    pub fn unpin_baseline(&mut self) {
        self.store.baseline = None;
    }

    /// Writes the current run into `dir` with the CLI's files, in the background.
    pub fn export_run(&mut self, ctx: &egui::Context, dir: std::path::PathBuf) {
        match &self.store.current {
            Some(run) => self.exports.run_folder(ctx, run, &self.notes, dir),
            None => self.report_error("no run to export yet".into()),
        }
    }

    /// Saves the central view of the next frame as a PNG at `path`, in the background.
    pub fn export_view_png(&mut self, ctx: &egui::Context, path: std::path::PathBuf) {
        self.exports.view_png(ctx, path, self.view_rect);
    }

    /// Writes the current settings as a preset (JSON `RunSpec`); errors go to the status bar.
    pub fn save_preset(&mut self, path: &std::path::Path) {
        match exports::save_preset(&self.settings.spec, path) {
            Ok(()) => self.status.info = Some(format!("saved the preset to {}", path.display())),
            Err(e) => self.report_error(e.to_string()),
        }
    }

    /// Runs the settings of a preset file; a bad file leaves the settings alone.
    pub fn load_preset(&mut self, path: &std::path::Path) {
        match exports::load_preset(path) {
            Ok(spec) => {
                self.settings.spec = spec;
                self.start_run();
            }
            Err(e) => self.report_error(format!("{}: {e}", path.display())),
        }
    }

    /// Whether an export has not reported yet.
    pub fn export_busy(&self) -> bool {
        self.exports.busy()
    }

    /// The last passing note of the status bar.
    pub fn status_info(&self) -> Option<&str> {
        self.status.info.as_deref()
    }

    fn report_error(&mut self, message: String) {
        // Shown once: logged here, then held in the status bar until dismissed or replaced.
        eprintln!("error: {message}");
        self.status.error = Some(message);
    }

    /// Per-frame logic: drain worker events (bounded), advance the replay, collect exports.
    pub fn tick(&mut self, ctx: &egui::Context) {
        self.attach(ctx);
        if self.last_started.is_none() {
            // The launch run: the default scene starts sampling at once.
            self.start_run();
            self.launch_generation = self.worker.is_some().then_some(self.store.expected);
        }
        self.drain_events(ctx);
        let now = ctx.input(|i| i.time);
        let dt = self.last_time.map_or(0.0, |t| now - t);
        self.last_time = Some(now);
        let (count, running) = self
            .store
            .current
            .as_ref()
            .map_or((0, false), |r| (r.state_count(), r.is_running()));
        self.replay
            .advance(dt, self.settings.view.play_speed, count, running);
        if self.replay.playing {
            ctx.request_repaint_after(Duration::from_millis(16));
        }
        for outcome in self.exports.poll() {
            match outcome {
                Ok(message) => self.status.info = Some(message),
                Err(message) => self.report_error(message),
            }
        }
        if self.bench.is_some() {
            self.bench_step(ctx);
        }
    }

    fn drain_events(&mut self, ctx: &egui::Context) {
        let Some(worker) = self.worker.as_ref() else {
            return;
        };
        let started = Instant::now();
        let (mut new_run, mut finished, mut failed) = (false, None, false);
        loop {
            if started.elapsed() >= DRAIN_BUDGET {
                // More may be waiting: come back next frame.
                ctx.request_repaint();
                break;
            }
            let Some(event) = worker.try_event() else {
                break;
            };
            let kind = match &event {
                Event::Started { .. } => 0,
                Event::Finished {
                    sampling_s,
                    diagnostics_s,
                    ..
                } => {
                    finished = Some(1e3 * (sampling_s + diagnostics_s));
                    1
                }
                Event::Failed { .. } => 2,
                Event::Step { .. } => 3,
            };
            if kind == 0
                && event.generation() == self.store.expected
                && self
                    .store
                    .current
                    .as_ref()
                    .is_some_and(|r| r.state_count() > 0)
            {
                // Keep the outgoing run on screen until the new one has its first state.
                self.previous = self.store.current.clone();
            }
            if !self.store.apply(event) {
                if kind == 1 {
                    finished = None;
                }
                continue;
            }
            new_run |= kind == 0;
            failed |= kind == 2;
        }
        if new_run {
            self.textures.retain_runs(&self.kept_generations());
            let launch = self
                .launch_generation
                .is_some_and(|g| g == self.store.expected);
            if launch && self.bench.is_none() {
                // The run takes milliseconds; replaying it shows the motion from noise to data.
                self.replay.play(0);
            }
        }
        if let Some(worker_ms) = finished
            && let Some(t0) = self.started_at.take()
        {
            self.stats
                .record_rerun(1e3 * t0.elapsed().as_secs_f64(), worker_ms);
        }
        if failed {
            self.started_at = None;
            self.on_failure();
        }
        if let Some(e) = self.store.last_error.take() {
            self.report_error(e);
        }
        if !self.store.notes.is_empty() {
            let notes: Vec<String> = self.store.notes.drain(..).collect();
            self.status.info = Some(notes.join("; "));
            self.notes.extend(notes);
        }
    }

    fn kept_generations(&self) -> Vec<u64> {
        [&self.store.current, &self.store.baseline, &self.previous]
            .iter()
            .filter_map(|r| r.as_ref().map(|r| r.generation))
            .collect()
    }

    /// A run failed (bad data, bad file): go back to the settings of the shown run, so the app
    /// keeps its previous view; with nothing shown, fall back to the default scene once.
    fn on_failure(&mut self) {
        match &self.store.current {
            Some(run) => {
                self.settings.spec = run.spec.clone();
                self.last_started = Some(run.spec.clone());
            }
            None => {
                let default = Settings::default_scene().spec;
                if self.settings.spec != default {
                    self.settings.spec = default;
                    self.start_run();
                } else {
                    self.last_started = Some(default);
                }
            }
        }
    }

    /// One frame without eframe (egui_kittest): `tick`, then `show`.
    pub fn frame(&mut self, ui: &mut Ui) {
        self.tick(ui.ctx());
        self.show(ui);
    }

    /// Draws every panel from the store and starts a rerun when a setting changed.
    pub fn show(&mut self, ui: &mut Ui) {
        let frame_started = Instant::now();
        let mut actions = Vec::new();
        egui::Panel::top("menu_bar").show(ui, |ui| self.menu_bar(ui, &mut actions));
        egui::Panel::bottom("status_bar").show(ui, |ui| self.status_bar(ui));
        let info = ControlsInfo {
            classes: self.store.current.as_ref().map_or(0, |r| r.data.classes),
            dirty: !self.settings.view.rerun_on_change
                && self.last_started.as_ref() != Some(&self.settings.spec),
            playing: self.replay.playing,
        };
        egui::Panel::left("controls")
            .resizable(true)
            .default_size(330.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    controls::show(
                        ui,
                        &mut self.settings,
                        &mut self.controls,
                        &info,
                        &mut actions,
                    );
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.view_rect = Some(ui.max_rect());
            self.central(ui);
        });
        for action in actions {
            self.handle(ui.ctx(), action);
        }
        if self.settings.view.rerun_on_change
            && self.worker.is_some()
            && self
                .last_started
                .as_ref()
                .is_some_and(|s| *s != self.settings.spec)
            && self.may_restart(ui.ctx())
        {
            self.start_run();
        }
        let sampling = self.is_sampling();
        if sampling {
            self.stats
                .record_app(1e3 * frame_started.elapsed().as_secs_f64());
        }
        self.prev_sampling = sampling;
    }

    fn handle(&mut self, ctx: &egui::Context, action: Action) {
        let count = self
            .store
            .current
            .as_ref()
            .map_or(0, RunRecord::state_count);
        match action {
            Action::Rerun => self.start_run(),
            Action::Play => self.replay.play(count),
            Action::Pause => self.replay.pause(count),
            Action::Step => self.replay.step_forward(count),
            Action::FollowLive => self.replay.follow_live(),
            Action::ResetScene => {
                self.settings = Settings::default_scene();
                self.controls = ControlsState::default();
            }
            Action::OpenFolder => {
                if let Some(dir) = exports::pick(Pick::Folder) {
                    let (size, rgb) = match &self.settings.spec.data {
                        DataSpec::Images { size, rgb, .. } => (*size, *rgb),
                        _ => (32, false),
                    };
                    self.load_data(DataSpec::Images { dir, size, rgb });
                }
            }
            Action::OpenNpy => {
                if let Some(path) = exports::pick(Pick::Npy) {
                    self.load_data(DataSpec::Npy { path, labels: None });
                }
            }
        }
        ctx.request_repaint();
    }

    fn menu_bar(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        ui.horizontal(|ui| {
            ui.label(RichText::new("noisescope").strong());
            ui.separator();
            for tab in Tab::ALL {
                ui.selectable_value(&mut self.settings.view.tab, tab, tab.title());
            }
            ui.separator();
            let finished = self.store.current.as_ref().is_some_and(|r| r.status == RunStatus::Finished);
            if ui
                .add_enabled(finished, egui::Button::new("Pin as baseline"))
                .on_hover_text("Keep this finished run: its curves are overlaid dashed on every plot and its states shown beside the live ones (same noise).")
                .clicked()
            {
                self.pin_baseline();
            }
            if self.store.baseline.is_some() && ui.button("Unpin").on_hover_text("Drop the baseline.").clicked() {
                self.unpin_baseline();
            }
            ui.menu_button("Export", |ui| self.export_menu(ui));
            if ui.button("Rerun").on_hover_text(tips::RERUN).clicked() {
                actions.push(Action::Rerun);
            }
        });
    }

    fn export_menu(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        if ui
            .button("PNG of the view…")
            .on_hover_text("A screenshot of the central view (image crate).")
            .clicked()
            && let Some(path) = exports::pick(Pick::SavePng("noisescope-view.png"))
        {
            self.export_view_png(&ctx, path);
        }
        let image_data = self
            .store
            .current
            .as_ref()
            .is_some_and(|r| r.data.image.is_some());
        if ui
            .add_enabled(image_data, egui::Button::new("Image grid PNG…"))
            .on_hover_text("The shown state x_i of image data as a grid of up to 256 samples.")
            .clicked()
            && let Some(path) = exports::pick(Pick::SavePng("noisescope-grid.png"))
            && let Some(run) = &self.store.current
        {
            let step = self.replay.visible(run.state_count());
            self.exports.grid_png(&ctx, run, step, path);
        }
        let finished = self
            .store
            .current
            .as_ref()
            .is_some_and(|r| r.status == RunStatus::Finished);
        if ui
            .add_enabled(finished, egui::Button::new("Run as NPY + CSV…"))
            .on_hover_text("traj.npy, denoised.npy, sigmas.npy, diagnostics.csv, run.json (and samples.png for images): the files of `noisescope sample`.")
            .clicked()
            && let Some(dir) = exports::pick(Pick::RunFolder)
        {
            self.export_run(&ctx, dir);
        }
        ui.separator();
        if ui
            .button("Save preset…")
            .on_hover_text(
                "The run's settings as JSON; reopen here or run `noisescope sample --preset FILE`.",
            )
            .clicked()
            && let Some(path) = exports::pick(Pick::SavePreset)
        {
            self.save_preset(&path);
        }
        if ui
            .button("Load preset…")
            .on_hover_text("Settings from a preset JSON file.")
            .clicked()
            && let Some(path) = exports::pick(Pick::Preset)
        {
            self.load_preset(&path);
        }
    }

    fn status_bar(&mut self, ui: &mut Ui) {
        ui.horizontal_wrapped(|ui| {
            match &self.store.current {
                Some(run) => {
                    ui.label(format!("backend: {}", run.backend));
                    ui.separator();
                    ui.label(format!("{:.0} eval/s", run.evaluations_per_s()));
                    ui.separator();
                    ui.label(format!("{:.2} ms/step", run.ms_per_step()));
                    ui.separator();
                    let state = match &run.status {
                        RunStatus::Running => format!(
                            "running: step {}/{}",
                            run.steps.len(),
                            run.spec.schedule.steps
                        ),
                        RunStatus::Finished => format!(
                            "finished: {} evaluations in {:.1} ms",
                            run.evaluations,
                            1e3 * (run.sampling_s + run.diagnostics_s)
                        ),
                        RunStatus::Stopped => "stopped".into(),
                        RunStatus::Failed(_) => "failed".into(),
                    };
                    ui.label(state);
                }
                None => {
                    ui.label(if self.started_at.is_some() {
                        "starting…"
                    } else {
                        "no run"
                    });
                }
            }
            if let Some(ms) = self.stats.last_rerun_ms() {
                ui.separator();
                ui.label(format!("rerun {ms:.0} ms"))
                    .on_hover_text("From the setting change to the finished run shown.");
            }
            let p95 = self.stats.p95_sampling_ms();
            if p95.is_finite() {
                ui.separator();
                ui.label(format!("frame p95 {p95:.1} ms"))
                    .on_hover_text("95th percentile of the frame CPU time while sampling (eframe: ui, tessellation and the renderer's calls; a software rasteriser's work at the buffer swap is not in it; `noisescope bench-ui` measures whole painted frames).");
            }
            if let Some(info) = &self.status.info {
                ui.separator();
                ui.label(RichText::new(info).weak());
            }
            if let Some(error) = self.status.error.clone() {
                ui.separator();
                ui.label(
                    RichText::new(format!("error: {error}"))
                        .color(Color32::from_rgb(255, 110, 110)),
                );
                if ui.small_button("dismiss").clicked() {
                    self.status.error = None;
                }
            }
        });
    }

    fn central(&mut self, ui: &mut Ui) {
        let live = match (&self.store.current, &self.previous) {
            (Some(current), Some(previous)) if current.state_count() == 0 => Some(previous),
            (current, _) => current.as_ref(),
        };
        let Some(live) = live else {
            ui.centered_and_justified(|ui| {
                ui.label(if self.status.error.is_some() {
                    "no run: see the status bar"
                } else {
                    "starting the default scene…"
                });
            });
            return;
        };
        let view = &self.settings.view;
        let count = live.state_count();
        let shown = self.replay.visible(count);
        let baseline = self.store.baseline.as_ref().filter(|_| view.show_baseline);
        ui.horizontal(|ui| {
            let mut step = shown;
            let last = live.spec.schedule.steps;
            let slider = ui
                .add(egui::Slider::new(&mut step, 0..=last).text("step"))
                .on_hover_text("Scrub through the recorded states x_0 … x_N (replay / rewind); Run -> Live follows the newest.");
            if slider.changed() {
                self.replay.scrub(step.min(count.saturating_sub(1)));
            }
            let sigma = states_view::state_sigma(live, shown);
            ui.label(format!("σ = {}", plot_style::format_number(sigma)));
            if self.replay.playing {
                ui.label(RichText::new("(replaying)").weak());
            } else if !self.replay.follow {
                ui.label(RichText::new("(held: Run -> Live follows the newest state)").weak());
            }
        });
        let shown_sigma = states_view::state_sigma(live, shown);
        match view.tab {
            Tab::Overview => {
                let height = ui.available_height();
                ui.columns(2, |cols| {
                    cols[0].set_min_height(height);
                    states_view::show(
                        &mut cols[0],
                        live,
                        baseline,
                        shown,
                        view,
                        &mut self.textures,
                        "ov-states",
                    );
                    let right = &mut cols[1];
                    let h = right.available_height();
                    right.allocate_ui(egui::vec2(right.available_width(), h * 0.62), |ui| {
                        sigma_plot::show(ui, live, baseline, shown_sigma, "ov");
                    });
                    curvature_plot::show(right, live, baseline, true, "ov");
                });
            }
            Tab::States => states_view::show(
                ui,
                live,
                baseline,
                shown,
                view,
                &mut self.textures,
                "states",
            ),
            Tab::NoiseLevel => sigma_plot::show(ui, live, baseline, shown_sigma, "noise"),
            Tab::Curvature => curvature_plot::show(ui, live, baseline, false, "curv"),
            Tab::Schedule => schedule_plot::show(
                ui,
                &self.settings.spec.schedule,
                Some(live),
                baseline,
                "sched",
            ),
            Tab::Theory => self.theory.show(ui, live, "theory"),
        }
    }

    /// One step of the `bench-ui` script: S_churn changes waited for one by one, then a
    /// continuous drag; at the end the report is printed and the window closes.
    fn bench_step(&mut self, ctx: &egui::Context) {
        let Some(mut bench) = self.bench.take() else {
            return;
        };
        // Like a user: frames come from worker events and a slow timer; only a drag (pointer
        // motion) and the paint measurement paint every frame.
        let now = Instant::now();
        let since_last = bench
            .last_frame
            .map(|t| 1e3 * now.duration_since(t).as_secs_f64());
        bench.last_frame = Some(now);
        let back_to_back = matches!(bench.phase, Phase::PaintIdle | Phase::Drag);
        if back_to_back {
            ctx.request_repaint();
        } else {
            ctx.request_repaint_after(Duration::from_millis(30));
        }
        let shown_finished = self.started_at.is_none()
            && self.store.current.as_ref().is_some_and(|r| {
                r.generation == self.store.expected && r.status == RunStatus::Finished
            });
        bench.frames += 1;
        // The first frames of a phase may follow a timer wait: skip them.
        if let Some(ms) = since_last.filter(|_| back_to_back && bench.frames > 3) {
            match bench.phase {
                Phase::PaintIdle => measure::push(&mut bench.paint_idle_ms, ms),
                _ if self.prev_sampling => {
                    measure::push(&mut bench.paint_sampling_ms, ms);
                }
                _ => {}
            }
        }
        match bench.phase {
            Phase::Warmup => {
                if !shown_finished {
                    bench.frames = 0;
                } else if bench.frames > 10 {
                    self.stats.clear();
                    bench.frames = 0;
                    bench.phase = Phase::PaintIdle;
                }
            }
            Phase::PaintIdle => {
                if bench.paint_idle_ms.len() >= 60 {
                    bench.frames = 0;
                    bench.phase = Phase::Rerun { waiting: false };
                }
            }
            Phase::Rerun { waiting: false } => {
                if bench.frames > 3 {
                    bench.generation_before = self.store.expected;
                    self.settings.spec.sampler = SamplerKind::Edm;
                    self.settings.spec.stochasticity.churn = Bench::churn(bench.reruns_done);
                    bench.phase = Phase::Rerun { waiting: true };
                }
            }
            Phase::Rerun { waiting: true } => {
                if shown_finished && self.store.expected > bench.generation_before {
                    bench.reruns_done += 1;
                    bench.frames = 0;
                    bench.phase = if bench.reruns_done >= bench.opts.reruns {
                        bench.single_reruns = Some((
                            measure::Summary::of(&self.stats.rerun_ms),
                            measure::Summary::of(&self.stats.worker_ms),
                        ));
                        self.stats.clear();
                        bench.drag_started = Some(Instant::now());
                        bench.drag_generation_start = self.store.expected;
                        Phase::Drag
                    } else {
                        Phase::Rerun { waiting: false }
                    };
                }
            }
            Phase::Drag => {
                let t = bench
                    .drag_started
                    .map_or(0.0, |s| s.elapsed().as_secs_f64());
                if shown_finished {
                    bench.drag_finished += 1;
                }
                if t >= bench.opts.drag_seconds {
                    bench.phase = Phase::Done;
                } else {
                    // A slider dragged back and forth: a new value every frame.
                    self.settings.spec.stochasticity.churn =
                        40.0 + 30.0 * (std::f64::consts::TAU * t).sin();
                }
            }
            Phase::Done => {
                if !bench.closing {
                    bench.closing = true;
                    let report = self.bench_report(&bench);
                    println!("{}", report.text());
                    if let Some(path) = &bench.opts.json {
                        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                        if let Err(e) = std::fs::write(path, text) {
                            eprintln!("error: {}: {e}", path.display());
                        }
                    }
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
            }
        }
        self.bench = Some(bench);
    }

    fn bench_report(&self, bench: &Bench) -> BenchReport {
        use measure::Summary;
        let s = &self.stats;
        let spec = &self.settings.spec;
        let empty = Summary::of(&Default::default());
        let single = bench.single_reruns.unwrap_or((empty, empty));
        BenchReport {
            scene: format!(
                "{}, {} particles, {} {} steps, exact denoiser, diagnostics subset {}",
                spec.data.label(),
                spec.batch,
                spec.sampler,
                spec.schedule.steps,
                spec.diagnostics.subset
            ),
            backend: self
                .store
                .current
                .as_ref()
                .map_or_else(String::new, |r| r.backend.clone()),
            renderer: self.renderer.name().to_string(),
            window: bench.opts.window,
            reruns: bench.reruns_done,
            rerun_latency: single.0,
            worker_time: single.1,
            paint_idle: Summary::of(&bench.paint_idle_ms),
            paint_sampling: Summary::of(&bench.paint_sampling_ms),
            frame_cpu_sampling: Summary::of(&s.sampling_ms),
            app_code: Summary::of(&s.app_ms),
            drag_rerun_latency: Summary::of(&s.rerun_ms),
            drag_runs_started: self
                .store
                .expected
                .saturating_sub(bench.drag_generation_start),
            drag_runs_finished: bench.drag_finished,
        }
    }
}

impl eframe::App for NoiseScopeApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.tick(ctx);
    }

    fn ui(&mut self, ui: &mut Ui, frame: &mut eframe::Frame) {
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
            storage.set_string(eframe::APP_KEY, self.settings.to_json());
        }
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Dropping the worker cancels its run and joins the thread.
        self.worker.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eframe::{App as _, Storage as _};
    use std::collections::HashMap;

    /// eframe storage in memory.
    #[derive(Default)]
    struct MemoryStorage(HashMap<String, String>);

    impl eframe::Storage for MemoryStorage {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.to_string(), value);
        }
        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }
        fn flush(&mut self) {}
    }

    #[test]
    fn settings_persist_through_eframe_storage_and_bad_ones_fall_back() {
        let mut app = NoiseScopeApp::new(Settings::default_scene());
        app.settings.spec.stochasticity.churn = 12.0;
        app.settings.spec.seed = 5;
        app.settings.view.tab = Tab::Curvature;
        let mut storage = MemoryStorage::default();
        app.save(&mut storage);
        let reopened = NoiseScopeApp::from_storage(Some(&storage));
        assert_eq!(reopened.settings, app.settings);
        storage.set_string(eframe::APP_KEY, "{\"spec\": {\"batch\": 0}}".into());
        let fallback = NoiseScopeApp::from_storage(Some(&storage));
        assert_eq!(fallback.settings, Settings::default_scene());
        assert_eq!(
            NoiseScopeApp::from_storage(None).settings,
            Settings::default_scene()
        );
    }

    #[test]
    fn settings_round_trip_as_json_and_bad_ones_are_refused() -> Result<()> {
        let mut s = Settings::default_scene();
        s.view.tab = Tab::Theory;
        s.spec.stochasticity.churn = 7.0;
        assert_eq!(Settings::from_json(&s.to_json())?, s);
        // f64::MAX (S_tmax = infinity) survives.
        assert_eq!(
            Settings::from_json(&s.to_json())?.spec.stochasticity.tmax,
            f64::MAX
        );
        assert!(Settings::from_json("{\"spec\": {\"batch\": 0}}").is_err());
        assert!(Settings::from_json("nope").is_err());
        let d = Settings::default_scene();
        assert_eq!(
            (d.spec.batch, d.spec.schedule.steps, d.spec.sampler),
            (1000, 18, SamplerKind::Heun)
        );
        Ok(())
    }
}
