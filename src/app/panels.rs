//! The frame's layout: the menu bar on top, the status bar below, the controls on the left, a
//! lesson's panel on the right, and the central view, whose tab (`Tab`) picks one view file to
//! draw from the store. Presenter mode drops the controls and the status bar; windows (the
//! welcome, "Save as lesson") float above.

use std::time::Instant;

use egui::{RichText, Ui};

use super::controls::{self, ControlsInfo};
use super::settings::Tab;
use super::{
    NoiseScopeApp, ab, curvature_plot, plot_style, schedule_plot, sigma_plot, states_view,
};

impl NoiseScopeApp {
    /// Draws every panel from the store and starts a rerun when a setting changed.
    pub fn show(&mut self, ui: &mut Ui) {
        let frame_started = Instant::now();
        let mut actions = Vec::new();
        self.keyboard(ui.ctx(), &mut actions);
        egui::Panel::top("menu_bar").show(ui, |ui| self.menu_bar(ui, &mut actions));
        if !self.presenter.on {
            egui::Panel::bottom("status_bar").show(ui, |ui| self.status_bar(ui));
        }
        self.lesson_panel(ui, &mut actions);
        if !self.presenter.on {
            let info = ControlsInfo {
                classes: self.store.current.as_ref().map_or(0, |r| r.data.classes),
                dirty: !self.settings.view.rerun_on_change
                    && self.last_started.as_ref() != Some(&self.settings.spec),
                playing: self.replay.playing,
                dialog_open: self.dialogs.is_open(),
                access: self.control_access(),
                denoiser: self.denoiser_info(),
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
        }
        egui::CentralPanel::default().show(ui, |ui| {
            self.view_rect = Some(ui.max_rect());
            self.central(ui);
        });
        let ctx = ui.ctx().clone();
        self.welcome_window(&ctx);
        self.lesson_editor(&ctx, &mut actions);
        for action in actions {
            self.handle(&ctx, action);
        }
        self.hold_locked_controls();
        self.rerun_if_changed(&ctx);
        let sampling = self.is_sampling();
        if sampling {
            self.stats
                .record_app(1e3 * frame_started.elapsed().as_secs_f64());
        }
        self.prev_sampling = sampling;
    }

    fn central(&mut self, ui: &mut Ui) {
        if self.settings.view.tab == Tab::Training {
            // Training draws from its own record, run or no run.
            return self.training_tab(ui);
        }
        if self.settings.view.tab == Tab::Sweep {
            return self.sweep_tab(ui);
        }
        if self.store.shown().is_none() {
            ui.centered_and_justified(|ui| {
                ui.label(if self.status.error.is_some() {
                    "no run: see the status bar"
                } else {
                    "starting the default scene…"
                });
            });
            return;
        }
        self.divergence_banner(ui);
        let Some(live) = self.store.shown() else {
            return;
        };
        let view = &mut self.settings.view;
        let baseline = self.store.baseline.as_ref().filter(|_| view.show_baseline);
        if let Some(base) = baseline {
            ab::ab_bar(
                ui,
                &base.spec,
                &live.spec,
                &mut view.ab,
                &mut view.ab_flipped,
            );
        }
        let view = &self.settings.view;
        let count = live.state_count();
        let shown = self.replay.visible(count);
        let diverged = self.divergence.samples_of(live.generation);
        let mut clicked = None;
        ui.horizontal(|ui| {
            let mut step = shown;
            let last = live.spec.schedule.steps;
            let slider = ui
                .add(egui::Slider::new(&mut step, 0..=last).text("step"))
                .on_hover_text("Scrub through the recorded states x_0 … x_N (replay / rewind; the Left and Right arrow keys step); Run -> Live follows the newest. Clicking a point in a plot shows its step.");
            if slider.changed() {
                clicked = Some(step.min(count.saturating_sub(1)));
            }
            let sigma = states_view::state_sigma(live, shown);
            ui.label(format!("σ = {}", plot_style::format_number(sigma)));
            if self.replay.playing {
                ui.label(RichText::new("(replaying)").weak());
            } else if !self.replay.follow {
                ui.label(RichText::new("(held: Run -> Live follows the newest state)").weak());
            }
        });
        clicked = match view.tab {
            Tab::Overview => {
                let height = ui.available_height();
                let mut clicked_here = None;
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
                        diverged,
                    );
                    let right = &mut cols[1];
                    let h = right.available_height();
                    right.allocate_ui(egui::vec2(right.available_width(), h * 0.62), |ui| {
                        clicked_here = sigma_plot::show(ui, live, baseline, shown, "ov");
                    });
                    clicked_here = curvature_plot::show(right, live, baseline, shown, true, "ov")
                        .or(clicked_here);
                });
                clicked_here
            }
            Tab::States => {
                states_view::show(
                    ui,
                    live,
                    baseline,
                    shown,
                    view,
                    &mut self.textures,
                    "states",
                    diverged,
                );
                None
            }
            Tab::NoiseLevel => sigma_plot::show(ui, live, baseline, shown, "noise"),
            Tab::Curvature => curvature_plot::show(ui, live, baseline, shown, false, "curv"),
            Tab::Schedule => {
                schedule_plot::show(
                    ui,
                    &self.settings.spec.schedule,
                    Some(live),
                    baseline,
                    "sched",
                );
                None
            }
            Tab::Theory => {
                self.theory.show(ui, live, "theory");
                None
            }
            Tab::Training | Tab::Sweep => None,
        }
        .or(clicked);
        if let Some(step) = clicked {
            self.replay.scrub(step.min(count.saturating_sub(1)));
        }
    }
}
