//! The left panel: every setting of a `RunSpec`, grouped and collapsible (Data, Denoiser,
//! Sampler & schedule, Stochasticity, Guidance, Run, View). Controls edit the settings in place;
//! the app compares the spec with the last started one and reruns. Every control's tooltip
//! gives its formula and source (tips.rs); the rules by which one setting moves another are
//! `Settings` methods (settings.rs). One file per group of groups: data.rs, denoiser.rs, sampling.rs
//! (sampler, schedule, stochasticity, guidance), run_view.rs (run and view); access.rs says
//! which controls a lesson leaves open, locks or hides (`gate` draws them so).

use egui::emath::Numeric;
use egui::{Color32, RichText, Slider, SliderClamping, Ui};

use super::dialogs::FileTask;
use super::plot_style::format_number;
use super::settings::{CFG_PICKS_CLASS_0, CHURN_SWITCHES_TO_EDM, Settings};

pub mod access;
mod data;
mod denoiser;
mod run_view;
mod sampling;

pub use access::{Access, AccessTable, Control};
use data::data_group;
pub use data::parse_spectrum;
use denoiser::denoiser_group;
pub use denoiser::{CompareOffer, DenoiserInfo, picker_label};
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
    /// Pin the shown run's settings with the exact denoiser as the baseline (or, when the shown
    /// run is exact, with a learned one).
    CompareWithExact,
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
    /// Which controls are open, locked or hidden (a lesson's rules; all open otherwise).
    pub access: AccessTable,
    /// The learned models to offer and what "Compare with exact" would do.
    pub denoiser: DenoiserInfo,
}

/// Editing state that is not a setting (text being typed).
#[derive(Default)]
pub struct ControlsState {
    /// The Gaussian spectrum as typed, parsed on Enter.
    pub spectrum_text: String,
    /// Why the typed spectrum was not taken, shown at the field.
    pub spectrum_error: Option<String>,
    /// Why a control changed another one (e.g. S_churn switching heun to edm), shown while the
    /// change it explains holds.
    pub note: Option<String>,
}

/// The colour of a note that says a value was not taken as typed.
const WARNING: Color32 = Color32::from_rgb(255, 190, 90);

/// Draws a control as `access` allows: not at all (hidden), greyed out (locked) or as usual.
fn gate<R>(
    ui: &mut Ui,
    info: &ControlsInfo,
    control: Control,
    add: impl FnOnce(&mut Ui) -> R,
) -> Option<R> {
    match info.access.of(control) {
        Access::Hidden => None,
        Access::Locked => {
            let inner = ui.add_enabled_ui(false, add);
            inner
                .response
                .on_disabled_hover_text("Locked by the lesson: this stage keeps it fixed.");
            Some(inner.inner)
        }
        Access::Open => Some(add(ui)),
    }
}

/// A named slider with a tooltip; returns whether the value changed. A value typed outside
/// the slider's range is brought back into it with a note under the slider that says so (the
/// note stays until the slider is moved again).
fn slider<N: Numeric>(
    ui: &mut Ui,
    value: &mut N,
    range: std::ops::RangeInclusive<N>,
    label: &str,
    tip: &str,
    log: bool,
) -> bool {
    let (lo, hi) = (range.start().to_f64(), range.end().to_f64());
    let response = ui
        .add(
            Slider::new(value, range)
                .text(label)
                .logarithmic(log)
                // Typed values pass through, so the clamp below can say what it did.
                .clamping(SliderClamping::Never),
        )
        .on_hover_text(tip);
    let note_id = response.id.with("clamp-note");
    let typed = value.to_f64();
    let clamped = !(lo..=hi).contains(&typed);
    if clamped {
        let kept = if typed.is_nan() {
            lo
        } else {
            typed.clamp(lo, hi)
        };
        *value = N::from_f64(kept);
        let note = format!(
            "{label} {} is outside {}–{}: set to {}",
            format_number(typed),
            format_number(lo),
            format_number(hi),
            format_number(value.to_f64())
        );
        ui.data_mut(|d| d.insert_temp(note_id, note));
    } else if response.changed() {
        ui.data_mut(|d| d.remove::<String>(note_id));
    }
    if let Some(note) = ui.data(|d| d.get_temp::<String>(note_id)) {
        ui.label(RichText::new(note).small().color(WARNING));
    }
    response.changed() || clamped
}

/// Drops a note whose cause is gone: S_churn back at 0, CFG back at 1.
fn retire_note(note: &mut Option<String>, settings: &Settings) {
    let stale = match note.as_deref() {
        Some(CHURN_SWITCHES_TO_EDM) => settings.spec.stochasticity.churn == 0.0,
        Some(CFG_PICKS_CLASS_0) => settings.spec.guidance.cfg == 1.0,
        _ => false,
    };
    if stale {
        *note = None;
    }
}

/// The controls of each group, to hide a group whose controls are all hidden.
const DATA: &[Control] = &[Control::Data];
const SAMPLER: &[Control] = &[
    Control::Sampler,
    Control::Steps,
    Control::Schedule,
    Control::Rho,
    Control::SigmaMin,
    Control::SigmaMax,
    Control::Adaptive,
];
const STOCHASTICITY: &[Control] = &[
    Control::Churn,
    Control::ChurnBand,
    Control::Snoise,
    Control::Eta,
];
const GUIDANCE: &[Control] = &[
    Control::Cfg,
    Control::Class,
    Control::Nag,
    Control::NagPrior,
];
const RUN: &[Control] = &[
    Control::Seed,
    Control::Batch,
    Control::Compute,
    Control::Diagnostics,
    Control::Replay,
    Control::Rerun,
    Control::Reset,
];

/// Shows the whole panel; edits `settings`, records actions.
pub fn show(
    ui: &mut Ui,
    settings: &mut Settings,
    state: &mut ControlsState,
    info: &ControlsInfo,
    actions: &mut Vec<Action>,
) {
    ui.spacing_mut().slider_width = 150.0;
    let access = &info.access;
    if access.any_shown(DATA) {
        egui::CollapsingHeader::new("Data")
            .default_open(true)
            .show(ui, |ui| data_group(ui, settings, state, info, actions));
    }
    if access.any_shown(&[Control::Denoiser]) {
        egui::CollapsingHeader::new("Denoiser")
            .default_open(false)
            .show(ui, |ui| denoiser_group(ui, settings, info, actions));
    }
    if access.any_shown(SAMPLER) {
        egui::CollapsingHeader::new("Sampler & schedule")
            .default_open(true)
            .show(ui, |ui| sampler_group(ui, settings, info));
    }
    if access.any_shown(STOCHASTICITY) {
        egui::CollapsingHeader::new("Stochasticity")
            .default_open(true)
            .show(ui, |ui| stochasticity_group(ui, settings, state, info));
    }
    if access.any_shown(GUIDANCE) {
        egui::CollapsingHeader::new("Guidance")
            .default_open(true)
            .show(ui, |ui| guidance_group(ui, settings, state, info));
    }
    if access.any_shown(RUN) {
        egui::CollapsingHeader::new("Run")
            .default_open(true)
            .show(ui, |ui| run_group(ui, settings, info, actions));
    }
    if access.any_shown(&[Control::View]) {
        egui::CollapsingHeader::new("View")
            .default_open(false)
            .show(ui, |ui| {
                gate(ui, info, Control::View, |ui| view_group(ui, settings));
            });
    }
    retire_note(&mut state.note, settings);
    if let Some(note) = &state.note {
        ui.separator();
        ui.label(RichText::new(note).italics());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_goes_when_its_cause_does() {
        let mut s = Settings::default_scene();
        let mut note = s.set_churn(20.0).map(str::to_string);
        retire_note(&mut note, &s);
        assert_eq!(note.as_deref(), Some(CHURN_SWITCHES_TO_EDM));
        s.set_churn(0.0);
        retire_note(&mut note, &s);
        assert_eq!(note, None, "S_churn back at 0: the notice goes");
        let mut note = s.set_cfg(3.0).map(str::to_string);
        retire_note(&mut note, &s);
        assert!(note.is_some());
        s.set_cfg(1.0);
        retire_note(&mut note, &s);
        assert_eq!(note, None);
    }
}
