//! Presenter mode and the keyboard. Presenter mode is for a projector: the UI scaled up, the
//! controls panel and the status bar hidden (a lesson's open controls move into its panel),
//! thicker lines and bigger markers in every plot. The keyboard drives a demo without the
//! mouse (Space, arrows, R, B, F, P, F11, PageUp/PageDown); the View menu lists the shortcuts
//! and the zoom (egui's Ctrl +/−/0) with the current scale.

use egui::{Key, Modifiers, RichText, Ui};

use super::NoiseScopeApp;
use super::ab::AbView;
use super::controls::Action;
use super::plot_style;

/// How much presenter mode enlarges the UI, on top of the zoom it found.
pub const PRESENTER_ZOOM: f32 = 1.5;
/// How much thicker plot lines and bigger markers are in presenter mode.
pub const PRESENTER_EMPHASIS: f32 = 1.8;

/// Every keyboard shortcut: (keys, what they do).
pub const SHORTCUTS: [(&str, &str); 10] = [
    ("Space", "play / pause the replay"),
    ("Left / Right arrow", "one state back / forward"),
    ("R", "rerun"),
    ("B", "pin the finished run as the A/B baseline"),
    ("F", "flip between live and baseline (A/B flip)"),
    ("P or F5", "presenter mode on / off (Esc leaves it)"),
    ("F11", "full screen on / off"),
    ("PageDown / PageUp", "next / previous lesson stage"),
    ("Ctrl + / Ctrl − / Ctrl 0", "larger / smaller / normal UI"),
    ("hover, click a plot point", "its numbers / show that step"),
];

/// Presenter mode's state.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Presenter {
    pub on: bool,
    /// The zoom before presenter mode, restored after it.
    zoom_before: f32,
}

impl NoiseScopeApp {
    /// Turns presenter mode on or off: the zoom, the plots' emphasis and (in `show`) the panels.
    pub fn set_presenter(&mut self, ctx: &egui::Context, on: bool) {
        if on == self.presenter.on {
            return;
        }
        if on {
            self.presenter.zoom_before = ctx.zoom_factor();
            ctx.set_zoom_factor(self.presenter.zoom_before * PRESENTER_ZOOM);
            plot_style::set_emphasis(ctx, PRESENTER_EMPHASIS);
        } else {
            ctx.set_zoom_factor(self.presenter.zoom_before.max(0.2));
            plot_style::set_emphasis(ctx, 1.0);
        }
        self.presenter.on = on;
    }

    /// Whether presenter mode is on.
    pub fn presenter(&self) -> bool {
        self.presenter.on
    }

    /// The keyboard shortcuts (none while a text field has the keyboard; the arrows none while
    /// any widget has focus, since a focused slider takes them).
    pub(super) fn keyboard(&mut self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let pressed = |key: Key| ctx.input_mut(|i| i.consume_key(Modifiers::NONE, key));
        if pressed(Key::Space) {
            actions.push(if self.replay.playing {
                Action::Pause
            } else {
                Action::Play
            });
        }
        if ctx.memory(|m| m.focused().is_none()) {
            if pressed(Key::ArrowRight) {
                actions.push(Action::Step);
            }
            if pressed(Key::ArrowLeft) {
                let count = self.store.current.as_ref().map_or(0, |r| r.state_count());
                self.replay.step_back(count);
            }
        }
        if pressed(Key::R) {
            actions.push(Action::Rerun);
        }
        if pressed(Key::B) {
            self.pin_baseline();
        }
        if pressed(Key::F) {
            self.settings.view.ab = AbView::Flip;
            self.settings.view.ab_flipped = !self.settings.view.ab_flipped;
        }
        if pressed(Key::P) || pressed(Key::F5) {
            self.set_presenter(ctx, !self.presenter.on);
        }
        if self.presenter.on && pressed(Key::Escape) {
            self.set_presenter(ctx, false);
        }
        if pressed(Key::F11) {
            let full = ctx.input(|i| i.viewport().fullscreen.unwrap_or(false));
            ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(!full));
        }
        if pressed(Key::PageDown) {
            self.next_stage();
        }
        if pressed(Key::PageUp) {
            self.previous_stage();
        }
    }

    /// The View menu: presenter mode, full screen, the UI scale and the keyboard shortcuts.
    pub(super) fn view_menu(&mut self, ui: &mut Ui) {
        let mut on = self.presenter.on;
        if ui
            .checkbox(&mut on, "Presenter mode (P)")
            .on_hover_text("For a projector: larger UI, no controls panel or status bar, thicker lines. A lesson's open controls stay in its panel.")
            .changed()
        {
            self.set_presenter(ui.ctx(), on);
        }
        if ui.button("Full screen (F11)").clicked() {
            let full = ui.input(|i| i.viewport().fullscreen.unwrap_or(false));
            ui.ctx()
                .send_viewport_cmd(egui::ViewportCommand::Fullscreen(!full));
        }
        ui.separator();
        ui.label(format!("UI scale: {:.0}%", 100.0 * ui.ctx().zoom_factor()));
        egui::gui_zoom::zoom_menu_buttons(ui);
        ui.separator();
        ui.label(RichText::new("Keyboard shortcuts").strong());
        egui::Grid::new("shortcuts").num_columns(2).show(ui, |ui| {
            for (keys, what) in SHORTCUTS {
                ui.label(RichText::new(keys).monospace());
                ui.label(what);
                ui.end_row();
            }
        });
    }
}
