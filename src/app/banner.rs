//! The divergence banner: a finished run that left the data's range says so above the view,
//! with the likely cause, a fix and a button that applies it (`run::divergence` decides, once
//! per run). The diverged samples are drawn in red in the States view.

use egui::{Color32, RichText, Stroke, Ui};

use super::NoiseScopeApp;
use super::plot_style::{DIVERGED, faint};
use crate::run::divergence::{self, Divergence};
use crate::run::store::RunStatus;

/// The verdict on the current run, kept per run generation.
#[derive(Default)]
pub struct DivergenceCache {
    /// (generation, what was found) of the last finished run looked at.
    checked: Option<(u64, Option<Divergence>)>,
    /// A generation whose banner was dismissed.
    dismissed: Option<u64>,
}

impl DivergenceCache {
    /// The diverged samples of the run with `generation` (empty for other runs).
    pub fn samples_of(&self, generation: u64) -> &[usize] {
        match &self.checked {
            Some((g, Some(d))) if *g == generation => &d.samples,
            _ => &[],
        }
    }
}

impl NoiseScopeApp {
    /// Looks at the current run once it has finished (once per run).
    pub(super) fn check_divergence(&mut self) {
        let Some(run) = self.store.current.as_ref() else {
            return;
        };
        if run.status != RunStatus::Finished
            || self
                .divergence
                .checked
                .as_ref()
                .is_some_and(|(g, _)| *g == run.generation)
        {
            return;
        }
        let found = run
            .x_final
            .as_ref()
            .and_then(|x| divergence::detect(&run.data.points, x, &run.records));
        self.divergence.checked = Some((run.generation, found));
    }

    /// The current run's divergence, when it has finished and diverged.
    pub fn divergence(&self) -> Option<&Divergence> {
        let run = self.store.current.as_ref()?;
        match &self.divergence.checked {
            Some((g, found)) if *g == run.generation => found.as_ref(),
            _ => None,
        }
    }

    /// The banner, above the central view, while the current run is diverged.
    pub(super) fn divergence_banner(&mut self, ui: &mut Ui) {
        let Some(run) = self.store.current.as_ref() else {
            return;
        };
        let generation = run.generation;
        if self.divergence.dismissed == Some(generation) {
            return;
        }
        let Some(found) = self.divergence() else {
            return;
        };
        let explanation = found.explain(&run.spec);
        // A fix that moves a control the lesson holds cannot be applied here.
        let fixable = explanation.fixed.as_ref().filter(|fixed| {
            let mut held = self.settings.clone();
            held.spec = (*fixed).clone();
            if let Some(active) = &self.lesson {
                for c in active.access.held() {
                    c.restore(&active.reference, &mut held);
                }
            }
            held.spec == **fixed
        });
        let mut apply = None;
        let mut dismiss = false;
        egui::Frame::new()
            .fill(faint(DIVERGED, 40))
            .stroke(Stroke::new(1.5, DIVERGED))
            .inner_margin(6.0)
            .show(ui, |ui| {
                ui.label(
                    RichText::new(&explanation.what)
                        .color(Color32::WHITE)
                        .strong(),
                );
                ui.horizontal_wrapped(|ui| {
                    ui.label(RichText::new("Likely cause:").strong());
                    ui.label(&explanation.cause);
                });
                ui.horizontal_wrapped(|ui| {
                    ui.label(RichText::new("Fix:").strong());
                    ui.label(&explanation.fix);
                    if let Some(fixed) = fixable
                        && ui
                            .button("Apply the fix")
                            .on_hover_text("Reruns with the fix (same noise).")
                            .clicked()
                    {
                        apply = Some(fixed.clone());
                    }
                    if ui.small_button("dismiss").clicked() {
                        dismiss = true;
                    }
                });
            });
        if let Some(fixed) = apply {
            self.settings.spec = fixed;
        }
        if dismiss {
            self.divergence.dismissed = Some(generation);
        }
    }
}
