//! The first-launch welcome: one paragraph on what the app shows and a way into the lessons.
//! Once dismissed it is never shown again (a flag in eframe's storage, beside the settings).

use egui::RichText;

use super::NoiseScopeApp;
use super::lessons::builtin;

/// The storage key of the "welcome dismissed" flag.
pub const WELCOME_DISMISSED: &str = "noisescope-welcome-dismissed";

const WELCOME: &str = "noisescope shows how a diffusion model turns noise into data. A sampler moves a batch of particles from pure noise down a ladder of noise levels, each step guided by a denoiser, the model's guess of the clean data. Here the denoiser is exact, so every curve can be checked: the states themselves, how noisy they look against how noisy they should be (σ_hat against σ), how much their paths bend and, for Gaussian data, the exact answer. Every control explains itself when you hover it.";

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
                ui.label(WELCOME);
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
