//! The left panel: every setting of a `RunSpec`, grouped and collapsible (Data, Denoiser,
//! Sampler & schedule, Stochasticity, Guidance, Run, View). Controls edit the settings in place;
//! the app compares the spec with the last started one and reruns. Every control's tooltip
//! gives its formula and source (tips.rs); the rules by which one setting moves another are
//! `Settings` methods (settings.rs). One file per group of groups: data.rs, sampling.rs
//! (sampler, schedule, stochasticity, guidance), run_view.rs (run and view).

use egui::{ComboBox, RichText, Slider, Ui};

use super::dialogs::FileTask;
use super::settings::Settings;
use super::tips;

mod data;
mod run_view;
mod sampling;

use data::data_group;
pub use data::parse_spectrum;
use run_view::{run_group, view_group};
use sampling::{guidance_group, sampler_group, stochasticity_group};

/// What a control asks the app to do beyond editing the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Rerun,
    Play,
    Pause,
    Step,
    FollowLive,
    /// Ask for a path (a dialog), then use it.
    File(FileTask),
    ResetScene,
}

/// What the controls need to know about the shown run.
pub struct ControlsInfo {
    /// Classes of the shown data (0: unlabelled).
    pub classes: usize,
    /// Settings differ from the shown run and "rerun on change" is off.
    pub dirty: bool,
    pub playing: bool,
    /// A file dialog waits for the user (the buttons that open one are off).
    pub dialog_open: bool,
}

/// Editing state that is not a setting (text being typed).
#[derive(Default)]
pub struct ControlsState {
    /// The Gaussian spectrum as typed, parsed on Enter.
    pub spectrum_text: String,
    /// Why a control changed another one (e.g. S_churn switching heun to edm), shown once.
    pub note: Option<String>,
}

/// A named f64 slider with a tooltip; returns whether it moved.
fn slider(
    ui: &mut Ui,
    value: &mut f64,
    range: std::ops::RangeInclusive<f64>,
    label: &str,
    tip: &str,
    log: bool,
) -> bool {
    ui.add(Slider::new(value, range).text(label).logarithmic(log))
        .on_hover_text(tip)
        .changed()
}

/// Shows the whole panel; edits `settings`, records actions.
pub fn show(
    ui: &mut Ui,
    settings: &mut Settings,
    state: &mut ControlsState,
    info: &ControlsInfo,
    actions: &mut Vec<Action>,
) {
    ui.spacing_mut().slider_width = 150.0;
    egui::CollapsingHeader::new("Data")
        .default_open(true)
        .show(ui, |ui| data_group(ui, settings, state, info, actions));
    egui::CollapsingHeader::new("Denoiser")
        .default_open(false)
        .show(ui, |ui| {
            ComboBox::from_id_salt("denoiser")
                .selected_text("exact")
                .show_ui(ui, |ui| {
                    ui.label("exact (ideal / closed form)");
                    ui.add_enabled(false, egui::Button::new("learned (later)"));
                })
                .response
                .on_hover_text(tips::DENOISER);
        });
    egui::CollapsingHeader::new("Sampler & schedule")
        .default_open(true)
        .show(ui, |ui| sampler_group(ui, settings));
    egui::CollapsingHeader::new("Stochasticity")
        .default_open(true)
        .show(ui, |ui| stochasticity_group(ui, settings, state));
    egui::CollapsingHeader::new("Guidance")
        .default_open(true)
        .show(ui, |ui| guidance_group(ui, settings, state, info));
    egui::CollapsingHeader::new("Run")
        .default_open(true)
        .show(ui, |ui| run_group(ui, settings, info, actions));
    egui::CollapsingHeader::new("View")
        .default_open(false)
        .show(ui, |ui| view_group(ui, settings));
    if let Some(note) = &state.note {
        ui.separator();
        ui.label(RichText::new(note).italics());
    }
}
