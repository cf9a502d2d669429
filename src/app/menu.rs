//! The menu bar (tabs, baseline, Lessons, View, Export, Rerun) and the status bar (backend, run
//! state, the passing note and the last error; the developer figures fold away).

use egui::{Color32, RichText, Ui};

use super::controls::{Action, picker_label};
use super::dialogs::FileTask;
use super::settings::Tab;
use super::tips;
use crate::run::store::RunStatus;

use super::NoiseScopeApp;

impl NoiseScopeApp {
    pub(super) fn menu_bar(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
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
            ui.menu_button("Lessons", |ui| self.lessons_menu(ui, actions));
            ui.menu_button("View", |ui| self.view_menu(ui));
            ui.menu_button("Export", |ui| self.export_menu(ui, actions));
            if ui.button("Rerun").on_hover_text(tips::RERUN).clicked() {
                actions.push(Action::Rerun);
            }
        });
    }

    /// Each entry asks for a path (a dialog that does not block the frame), then exports.
    fn export_menu(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        let current = self.store.current.as_ref();
        let image_data = current.is_some_and(|r| r.data.image.is_some());
        let finished = current.is_some_and(|r| r.status == RunStatus::Finished);
        let entries = [
            (
                FileTask::ViewPng,
                "PNG of the view…",
                "A picture of the central view that carries its scene: open it (Load preset…) or drop it on the window to restore the scene, or run it with `noisescope sample --preset FILE.png`.",
                true,
            ),
            (
                FileTask::GridPng,
                "Image grid PNG…",
                "The shown state x_i of image data as a grid of up to 256 samples.",
                image_data,
            ),
            (
                FileTask::RunFolder,
                "Run as NPY + CSV…",
                "traj.npy, denoised.npy, sigmas.npy, diagnostics.csv, run.json (and samples.png for images): the files of `noisescope sample`.",
                finished,
            ),
            (
                FileTask::SavePreset,
                "Save preset…",
                "The run's settings as JSON; reopen here or run `noisescope sample --preset FILE`.",
                true,
            ),
            (
                FileTask::LoadPreset,
                "Load preset…",
                "Settings from a preset JSON file or a view PNG exported here (dropping either on the window works too).",
                true,
            ),
        ];
        for (task, label, tip, enabled) in entries {
            if task == FileTask::SavePreset {
                ui.separator();
            }
            let enabled = enabled && !self.dialogs.is_open();
            if ui
                .add_enabled(enabled, egui::Button::new(label))
                .on_hover_text(tip)
                .clicked()
            {
                actions.push(Action::File(task));
            }
        }
    }

    pub(super) fn status_bar(&mut self, ui: &mut Ui) {
        ui.horizontal_wrapped(|ui| {
            match &self.store.current {
                Some(run) => {
                    let denoiser = picker_label(&run.spec.denoiser, self.known_models.list());
                    ui.label(format!("denoiser: {denoiser}"))
                        .on_hover_text("The denoiser this run called (the Denoiser group picks it).");
                    ui.separator();
                    ui.label(format!("backend: {}", short_backend(&run.backend)))
                        .on_hover_text(format!("The backend this run computed on: {}.", run.backend));
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
            ui.separator();
            let fold = if self.figures_open { "figures (hide)" } else { "figures…" };
            if ui
                .small_button(fold)
                .on_hover_text("Speed figures for developers: evaluations per second, time per step, rerun latency, frame time.")
                .clicked()
            {
                self.figures_open = !self.figures_open;
            }
            if self.figures_open {
                self.figures(ui);
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

    /// The developer figures of the status bar, once unfolded.
    fn figures(&self, ui: &mut Ui) {
        if let Some(run) = &self.store.current {
            ui.label(format!("{:.0} eval/s", run.evaluations_per_s()));
            ui.separator();
            ui.label(format!("{:.2} ms/step", run.ms_per_step()));
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
    }
}

/// Backend descriptions longer than this are cut at their first parenthesis in the status bar (a
/// GPU adapter's name would wrap the bar and move its buttons); the hover shows the whole text.
const BACKEND_LABEL_MAX: usize = 28;

/// The status bar's form of a backend description.
fn short_backend(describe: &str) -> String {
    if describe.chars().count() <= BACKEND_LABEL_MAX {
        return describe.to_owned();
    }
    let head = describe.find(" (").map_or(describe, |at| &describe[..at]);
    let head: String = head.chars().take(BACKEND_LABEL_MAX).collect();
    format!("{}…", head.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_backend_descriptions_are_cut_for_the_status_bar() {
        assert_eq!(
            short_backend("cpu (avx512+amx, 2 threads)"),
            "cpu (avx512+amx, 2 threads)"
        );
        assert_eq!(
            short_backend("gpu: llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, cpu adapter)"),
            "gpu: llvmpipe…"
        );
        let long = "gpu: NVIDIA H200 with a very long adapter name and no parenthesis";
        let cut = short_backend(long);
        assert_eq!(cut.chars().count(), BACKEND_LABEL_MAX + 1);
        assert!(cut.ends_with('…') && long.starts_with(cut.trim_end_matches('…')));
    }
}
