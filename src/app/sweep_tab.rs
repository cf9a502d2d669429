//! The Sweep tab (issue 15): one-click built-in sweeps (and "this scene against NFE") run on the
//! sweep thread (run/sweep/thread.rs) while sampling goes on; a progress bar with Cancel (the
//! finished rows stay), the metric to show, Pin as baseline to overlay a later sweep, and the
//! sweep's JSON for `noisescope sweep --sweep FILE`, and Open sweep… for such a file. The plot is sweep_plot.rs; clicking a point
//! opens that run in the normal views. Two numeric settings can be drawn as a heatmap.

use std::path::Path;
use std::sync::Arc;

use egui::{RichText, Ui};

use super::dialogs::FileTask;
use super::settings::Tab;
use super::{NoiseScopeApp, STEP_REPAINT, sweep_plot};
use crate::run::sweep::builtin::BUILTINS;
use crate::run::sweep::heatmap::heatmap;
use crate::run::sweep::thread::{SweepBoard, SweepStatus, SweepThread};
use crate::run::sweep::{SweepAxis, SweepMetric, SweepSpec};
use crate::run::worker::{Wake, Waker};

pub const SWEEP_PLOT: &str = "Each point is a whole run on the same noise (same seed), measured against the data. \
One line per value of the second varied setting; x is the denoiser evaluations (NFE) when the step count varies \
(Karras et al. 2022, EDM, fig. 2). Hover a point for its settings; click it to open that run.";
pub const SWEEP_BUILTIN: &str = "Run this built-in sweep on the sweep thread (sampling goes on): ";
pub const SWEEP_THIS_SCENE: &str = "Sweep the current scene: steps 4, 6, 8, 12, 18, 32 for Euler, Heun and \
DPM-Solver++(2M), sliced W2 against NFE.";
pub const SWEEP_CANCEL: &str = "Stop the sweep at its next step; the finished points stay.";
pub const SWEEP_PIN: &str =
    "Keep this sweep as a baseline: the next sweep is drawn over it (dashed).";
pub const SWEEP_COPY: &str = "Copy this sweep as JSON: save it to a file and `noisescope sweep --sweep FILE --out DIR` \
runs the same points (sweep.csv, sweep.png).";
pub const SWEEP_METRIC: &str = "The metric the plot shows.";
pub const SWEEP_HEATMAP: &str = "Each cell is a whole run on the same noise, coloured by the metric \
(the bar on the right: dark is low, yellow high; log when the values span a factor of 10). A setting \
whose values are log-spaced is drawn on a log axis. Hover a cell for its settings and metrics; click it \
to open that run; an empty cell has no value (not measured yet, or the run failed).";
pub const SWEEP_LINES_OR_HEATMAP: &str = "Both varied settings are numbers: draw the sweep as lines \
(one per value of the second setting) or as a heatmap over both.";
pub const SWEEP_OPEN: &str = "Open a sweep preset (the sweep.json `noisescope sweep` writes, or a copied sweep JSON) \
and run it here; dropping one on the window does the same.";

/// The tab's runtime state: the sweep thread (started with the first sweep) and what it sent.
#[derive(Default)]
pub struct SweepState {
    thread: Option<SweepThread>,
    pub board: SweepBoard,
    /// The metric shown (the sweep's first until one is chosen).
    metric: Option<SweepMetric>,
    /// The generation whose failure was reported to the status bar.
    reported: Option<u64>,
    /// Two numeric settings drawn as a heatmap rather than lines.
    pub heatmap: bool,
}

impl SweepState {
    /// Ends the sweep thread (cancelling its sweep); what closing the window does.
    pub fn shut_down(&mut self) {
        self.thread.take();
    }
}

/// The current scene's sampler-against-NFE sweep.
fn this_scene(app: &NoiseScopeApp) -> crate::error::Result<SweepSpec> {
    let mut base = app.settings.spec.clone();
    base.diagnostics.enabled = false;
    Ok(SweepSpec {
        name: "this scene".into(),
        base,
        vary: vec![
            SweepAxis::parse("steps=4,6,8,12,18,32")?,
            SweepAxis::parse("sampler=euler,heun,dpmpp-2m")?,
        ],
        metrics: vec![SweepMetric::W2],
    })
}

impl NoiseScopeApp {
    /// The sweeps as recorded (current and pinned baseline).
    pub fn sweeps(&self) -> &SweepBoard {
        &self.sweep.board
    }

    /// Starts `spec` on the sweep thread (cancelling a running sweep).
    pub fn start_sweep(&mut self, ctx: &egui::Context, spec: SweepSpec) {
        if self.sweep.thread.is_none() {
            let ctx = ctx.clone();
            let waker: Waker = Arc::new(move |wake| match wake {
                Wake::Progress => ctx.request_repaint_after(STEP_REPAINT),
                Wake::Now => ctx.request_repaint(),
            });
            match SweepThread::spawn(waker) {
                Ok(t) => self.sweep.thread = Some(t),
                Err(e) => return self.report_error(format!("Sweep: {e}")),
            }
        }
        if let Some(thread) = self.sweep.thread.as_mut() {
            self.sweep.metric = spec.metrics.first().copied();
            let generation = thread.start(spec.clone());
            self.sweep.board.begin(generation, spec);
        }
    }

    /// Runs the sweep preset at `path` in the Sweep tab (the "Open sweep…" dialog, a dropped
    /// file); a file that is not a valid sweep is one message and changes nothing.
    pub fn open_sweep(&mut self, ctx: &egui::Context, path: &Path) {
        match SweepSpec::load(path) {
            Ok(spec) => {
                self.settings.view.tab = Tab::Sweep;
                self.status.info = Some(format!("opened the sweep {}", path.display()));
                self.start_sweep(ctx, spec);
            }
            Err(e) => self.report_error(format!("Open sweep {}: {e}", path.display())),
        }
    }

    /// Stops the running sweep; its finished rows stay.
    pub fn cancel_sweep(&self) {
        if let Some(t) = &self.sweep.thread {
            t.cancel();
        }
    }

    /// Per frame: applies sweep events for at most `budget`.
    pub(super) fn drain_sweeps(&mut self, budget: std::time::Duration) {
        let Some(thread) = self.sweep.thread.as_ref() else {
            return;
        };
        self.sweep.board.drain(|| thread.try_event(), budget);
        if let Some(current) = &self.sweep.board.current
            && let SweepStatus::Failed(message) = &current.status
            && self.sweep.reported != Some(current.generation)
        {
            let message = format!("Sweep: {message}");
            self.sweep.reported = Some(current.generation);
            self.report_error(message);
        }
    }

    pub(super) fn sweep_tab(&mut self, ui: &mut Ui) {
        let mut start: Option<SweepSpec> = None;
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Built-in sweeps").strong());
            for b in &BUILTINS {
                // The point count is worked out only while the button is hovered.
                if ui
                    .button(b.name)
                    .on_hover_ui(|ui| {
                        let points = b.spec().ok().and_then(|s| s.points().ok());
                        ui.label(format!(
                            "{SWEEP_BUILTIN}{} ({} runs)",
                            b.question,
                            points.map_or(0, |p| p.len())
                        ));
                    })
                    .clicked()
                {
                    match b.spec() {
                        Ok(spec) => start = Some(spec),
                        Err(e) => self.report_error(format!("Sweep {}: {e}", b.name)),
                    }
                }
            }
            ui.separator();
            if ui
                .add_enabled(!self.dialogs.is_open(), egui::Button::new("Open sweep…"))
                .on_hover_text(SWEEP_OPEN)
                .clicked()
            {
                self.ask_for_file(ui.ctx(), FileTask::OpenSweep);
            }
            if ui
                .button("This scene against NFE")
                .on_hover_text(SWEEP_THIS_SCENE)
                .clicked()
            {
                match this_scene(self) {
                    Ok(spec) => start = Some(spec),
                    Err(e) => self.report_error(format!("Sweep: {e}")),
                }
            }
        });
        if let Some(spec) = start {
            self.start_sweep(ui.ctx(), spec);
        }
        let Some(current) = self.sweep.board.current.as_ref() else {
            ui.centered_and_justified(|ui| {
                ui.label(
                    "Pick a sweep above: each point is a whole run, measured against the data.",
                );
            });
            return;
        };
        let running = current.is_running();
        let mut cancel = false;
        let mut pin = false;
        let mut unpin = false;
        ui.horizontal_wrapped(|ui| {
            let status = match &current.status {
                SweepStatus::Preparing => "loading".to_string(),
                SweepStatus::Running => "running".to_string(),
                SweepStatus::Finished => "finished".to_string(),
                SweepStatus::Cancelled => "cancelled".to_string(),
                SweepStatus::Failed(e) => format!("failed: {e}"),
            };
            ui.add(
                egui::ProgressBar::new(current.progress())
                    .desired_width(260.0)
                    .text(format!(
                        "{} / {} points, {status}",
                        current.rows.len(),
                        current.total
                    )),
            );
            cancel = ui
                .add_enabled(running, egui::Button::new("Cancel sweep"))
                .on_hover_text(SWEEP_CANCEL)
                .clicked();
            pin = ui
                .add_enabled(
                    !current.rows.is_empty(),
                    egui::Button::new("Pin sweep as baseline"),
                )
                .on_hover_text(SWEEP_PIN)
                .clicked();
            if self.sweep.board.baseline.is_some() {
                unpin = ui.button("Unpin sweep").clicked();
            }
            if ui
                .button("Copy sweep JSON")
                .on_hover_text(SWEEP_COPY)
                .clicked()
            {
                ui.ctx().copy_text(current.spec.to_json());
            }
        });
        let metrics = current.spec.metrics.clone();
        let mut metric = self
            .sweep
            .metric
            .filter(|m| metrics.contains(m))
            .or(metrics.first().copied());
        let two_numeric = metrics
            .first()
            .is_some_and(|m| heatmap(&current.spec, &[], *m).is_some());
        let mut as_heatmap = self.sweep.heatmap;
        if metrics.len() > 1 || two_numeric {
            ui.horizontal(|ui| {
                if metrics.len() > 1 {
                    ui.label("show").on_hover_text(SWEEP_METRIC);
                    for m in &metrics {
                        ui.selectable_value(&mut metric, Some(*m), m.label());
                    }
                    ui.separator();
                }
                if two_numeric {
                    ui.label("draw as").on_hover_text(SWEEP_LINES_OR_HEATMAP);
                    ui.selectable_value(&mut as_heatmap, false, "lines")
                        .on_hover_text(SWEEP_LINES_OR_HEATMAP);
                    ui.selectable_value(&mut as_heatmap, true, "heatmap")
                        .on_hover_text(SWEEP_LINES_OR_HEATMAP);
                }
            });
        }
        self.sweep.heatmap = as_heatmap;
        self.sweep.metric = metric;
        if cancel {
            self.cancel_sweep();
        }
        if pin {
            self.sweep.board.pin_baseline();
        }
        if unpin {
            self.sweep.board.baseline = None;
        }
        let Some(metric) = metric else {
            return;
        };
        let board = &self.sweep.board;
        let Some(current) = board.current.as_ref() else {
            return;
        };
        let failed = current.rows.iter().filter(|r| r.error.is_some()).count();
        if failed > 0 {
            ui.label(RichText::new(format!("{failed} point(s) failed; hover them for why")).weak());
        }
        let map = heatmap(&current.spec, &current.rows, metric).filter(|_| as_heatmap);
        let clicked = match &map {
            Some(map) => sweep_plot::show_heatmap(ui, current, map, metric),
            None => sweep_plot::show(ui, current, board.baseline.as_ref(), metric),
        };
        if let Some(row) = clicked {
            self.open_sweep_point(row);
        }
    }

    /// Opens row `row` of the current sweep in the normal views: the run of its spec, from the
    /// same noise (what clicking its point does).
    pub fn open_sweep_point(&mut self, row: usize) {
        let Some(row) = self
            .sweep
            .board
            .current
            .as_ref()
            .and_then(|c| c.rows.get(row))
        else {
            return;
        };
        self.settings.spec = row.spec.clone();
        self.settings.view.tab = Tab::Overview;
    }
}
