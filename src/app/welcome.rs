//! The first-launch welcome: one paragraph on what the app shows and a way into the lessons.
//! Once dismissed it is never shown again (a flag in eframe's storage, beside the settings).

use egui::RichText;

use super::NoiseScopeApp;
use super::lessons::builtin;
use crate::run::spec::DenoiserSpec;

/// The storage key of the "welcome dismissed" flag.
pub const WELCOME_DISMISSED: &str = "noisescope-welcome-dismissed";

const WELCOME_START: &str = "noisescope shows how a diffusion model turns noise into data. A sampler moves a batch of particles from pure noise down a ladder of noise levels, each step guided by a denoiser, the model's guess of the clean data.";

const WELCOME_CURVES: &str = "the states themselves, how noisy they look against how noisy they should be (σ_hat against σ), how much their paths bend and, for Gaussian data, the exact answer. Every control explains itself when you hover it.";

/// The welcome paragraph for the scene it opens on (a preset may open a learned denoiser).
pub fn welcome_text(denoiser: &DenoiserSpec) -> String {
    match denoiser {
        DenoiserSpec::Exact => format!(
            "{WELCOME_START} Here the denoiser is exact, so every curve can be checked: {WELCOME_CURVES}"
        ),
        learned => format!(
            "{WELCOME_START} Here the denoiser is a trained network ({}); the exact one is a click \
             away (Denoiser group, \"Compare with exact\"), and it is the ground truth every curve \
             can be checked against: {WELCOME_CURVES}",
            learned.label()
        ),
    }
}

impl NoiseScopeApp {
    /// Whether the welcome is showing.
    pub fn welcome_open(&self) -> bool {
        self.welcome
    }

    /// Shows the welcome again (as on a first launch).
    pub fn show_welcome(&mut self) {
        self.welcome = true;
    }

    pub(super) fn welcome_window(&mut self, ctx: &egui::Context) {
        if !self.welcome {
            return;
        }
        let mut choice = None;
        egui::Window::new("Welcome to noisescope")
            .collapsible(false)
            .resizable(false)
            .default_width(520.0)
            .anchor(egui::Align2::CENTER_CENTER, egui::vec2(0.0, 0.0))
            .show(ctx, |ui| {
                ui.label(welcome_text(&self.settings.spec.denoiser));
                ui.add_space(6.0);
                ui.label(
                    RichText::new("New to diffusion sampling? The lessons (menu Lessons) walk through it step by step, starting with \"What a sampler does\".")
                        .strong(),
                );
                ui.add_space(6.0);
                ui.horizontal(|ui| {
                    if ui.button("Start the first lesson").clicked() {
                        choice = Some(true);
                    }
                    if ui.button("Explore on my own").clicked() {
                        choice = Some(false);
                    }
                });
            });
        if let Some(lesson) = choice {
            self.welcome = false;
            if lesson && let Some(first) = builtin::lessons().into_iter().next() {
                self.open_lesson(first);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_welcome_names_the_denoiser_it_opens_on() {
        let exact = welcome_text(&DenoiserSpec::Exact);
        assert!(exact.contains("Here the denoiser is exact"), "{exact}");
        let learned = welcome_text(&DenoiserSpec::Bundled("digits".into()));
        assert!(!learned.contains("denoiser is exact"), "{learned}");
        assert!(learned.contains("trained network"), "{learned}");
        assert!(learned.contains(&DenoiserSpec::Bundled("digits".into()).label()));
    }
}
