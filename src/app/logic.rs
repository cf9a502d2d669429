//! The app's logic: what it can be asked to do (start a run, load data, pin a baseline, export,
//! save and load presets), and per frame: worker events drained into the store
//! (`RunStore::drain`, bounded by `DRAIN_BUDGET`), the replay advanced, dialog answers and export
//! reports taken in, the controls' actions carried out, and a rerun started when a setting changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::data::DataSpec;
use crate::run::store::RunRecord;

use super::controls::{Action, ControlsState};
use super::dialogs::{DialogAnswer, FileTask};
use super::{DRAIN_BUDGET, NoiseScopeApp, Settings};
use crate::run::preset;
use crate::train::estimator::is_estimator_checkpoint;

impl NoiseScopeApp {
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
        self.settings.set_data(data);
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
    pub fn export_run(&mut self, ctx: &egui::Context, dir: PathBuf) {
        match &self.store.current {
            Some(run) => self.exports.run_folder(ctx, run, &self.notes, dir),
            None => self.report_error("no run to export yet".into()),
        }
    }

    /// Saves the central view of the next frame as a PNG at `path`, in the background; the
    /// PNG carries the scene (preset and view), so opening it restores the scene.
    pub fn export_view_png(&mut self, ctx: &egui::Context, path: PathBuf) {
        let texts = self.scene_texts();
        self.exports.view_png(ctx, path, self.view_rect, texts);
    }

    /// Saves the shown state of image data as a grid PNG at `path`, in the background.
    pub fn export_grid_png(&mut self, ctx: &egui::Context, path: PathBuf) {
        match &self.store.current {
            Some(run) => {
                let step = self.replay.visible(run.state_count());
                self.exports.grid_png(ctx, run, step, path);
            }
            None => self.report_error("no run to export yet".into()),
        }
    }

    /// Writes the current settings as a preset (JSON `RunSpec`); errors go to the status bar.
    pub fn save_preset(&mut self, path: &Path) {
        match preset::save_preset(&self.settings.spec, path) {
            Ok(()) => self.status.info = Some(format!("saved the preset to {}", path.display())),
            Err(e) => self.report_error(e.to_string()),
        }
    }

    /// Per-frame logic: drain worker events (bounded), advance the replay, take in dialog
    /// answers and export reports.
    pub fn tick(&mut self, ctx: &egui::Context) {
        self.attach(ctx);
        if self.last_started.is_none() {
            // The launch run: the default scene starts sampling at once.
            self.start_run();
            self.launch_generation = self.worker.is_some().then_some(self.store.expected);
        }
        let drain_started = Instant::now();
        self.drain_events(ctx);
        // Trainer events share the frame's budget: what the sampling events left of it.
        self.drain_training(ctx, DRAIN_BUDGET.saturating_sub(drain_started.elapsed()));
        self.drain_sweeps(DRAIN_BUDGET.saturating_sub(drain_started.elapsed()));
        self.check_divergence();
        self.take_dropped_files(ctx);
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
        if let Some((task, answer)) = self.dialogs.poll() {
            self.file_chosen(ctx, task, answer);
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
        let drained = self.store.drain(|| worker.try_event(), DRAIN_BUDGET);
        if drained.budget_spent {
            // More may be waiting: come back next frame.
            ctx.request_repaint();
        }
        if drained.started {
            self.textures.retain_runs(&self.store.kept_generations());
            let launch = self
                .launch_generation
                .is_some_and(|g| g == self.store.expected);
            if launch && self.bench.is_none() {
                // The run takes milliseconds; replaying it shows the motion from noise to data.
                self.replay.play(0);
            }
        }
        if let Some(worker_ms) = drained.finished_worker_ms
            && let Some(t0) = self.started_at.take()
        {
            self.stats
                .record_rerun(1e3 * t0.elapsed().as_secs_f64(), worker_ms);
        }
        if drained.finished_worker_ms.is_some() {
            self.run_finished();
        }
        if drained.failed {
            self.started_at = None;
            if !self.compare_failed() {
                self.on_failure();
            }
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

    /// A run failed (bad data, bad file): a learned model is set aside (compare.rs); otherwise
    /// go back to the settings of the shown run, so the app keeps its previous view; with
    /// nothing shown, fall back to the default scene once.
    fn on_failure(&mut self) {
        if self.estimator_not_used() || self.learned_not_used() {
            return;
        }
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

    /// After the panels: a setting that differs from the last started run reruns (when rerun
    /// on change is on and the grace allows).
    pub(super) fn rerun_if_changed(&mut self, ctx: &egui::Context) {
        if self.settings.view.rerun_on_change
            && self.worker.is_some()
            && self
                .last_started
                .as_ref()
                .is_some_and(|s| *s != self.settings.spec)
            && self.may_restart(ctx)
        {
            self.start_run();
        }
    }

    /// Carries out what a control or the menu asked for beyond editing the settings.
    pub(super) fn handle(&mut self, ctx: &egui::Context, action: Action) {
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
                self.lesson = None;
                self.settings = Settings::default_scene();
                self.controls = ControlsState::default();
            }
            Action::File(task) => self.ask_for_file(ctx, task),
            Action::CompareWithExact => self.compare_with_exact(),
        }
        ctx.request_repaint();
    }

    /// Opens the file dialog for `task`; the path is used when the answer comes (`tick`).
    pub fn ask_for_file(&mut self, ctx: &egui::Context, task: FileTask) {
        if let Err(message) = self.dialogs.open(ctx, task) {
            self.report_error(message);
        }
    }

    /// A dialog answered: use the path for its task, say why no dialog could open, or (the user
    /// cancelled) do nothing.
    fn file_chosen(&mut self, ctx: &egui::Context, task: FileTask, answer: DialogAnswer) {
        let path: PathBuf = match answer {
            Ok(Some(path)) => path,
            Ok(None) => return,
            Err(why) => {
                return self.report_error(format!(
                    "{}: no file dialog could open ({why})",
                    task.title()
                ));
            }
        };
        match task {
            FileTask::OpenImageFolder => self.load_image_folder(path),
            FileTask::OpenNpy => self.load_data(DataSpec::Npy { path, labels: None }),
            FileTask::LoadPreset => self.load_preset(&path),
            FileTask::SavePreset => self.save_preset(&path),
            FileTask::ViewPng => self.export_view_png(ctx, path),
            FileTask::GridPng => self.export_grid_png(ctx, path),
            FileTask::RunFolder => self.export_run(ctx, path),
            FileTask::OpenLesson => self.load_lesson(&path),
            FileTask::SaveLesson => self.save_lesson(&path),
            // A checkpoint's sidecar tells an estimator from a denoiser.
            FileTask::OpenEstimator => self.open_estimator(path),
            FileTask::OpenCheckpoint | FileTask::UseCheckpoint
                if is_estimator_checkpoint(&path) =>
            {
                self.open_estimator(path)
            }
            FileTask::SaveCheckpoint | FileTask::OpenCheckpoint => {
                self.checkpoint_chosen(task, path)
            }
            FileTask::UseCheckpoint => self.open_checkpoint(path),
            FileTask::OpenSweep => self.open_sweep(ctx, &path),
        }
    }
}
