//! The Denoiser group: the exact denoiser, a bundled model, or one trained or opened in this run
//! of the app (known_models.rs); "Open checkpoint…" adds one, "Compare with exact" pins the
//! exact run beside the learned one (compare.rs carries it out). The picker only edits
//! `RunSpec::denoiser`: the model loads on the worker thread, which also checks that it fits the
//! data (a model that does not is named in the status bar and not used).

use egui::{ComboBox, RichText, Ui};

use super::{Action, Control, ControlsInfo, gate};
use crate::app::dialogs::FileTask;
use crate::app::estimator::estimator_label;
use crate::app::known_models::{KnownModel, ModelOrigin};
use crate::app::settings::Settings;
use crate::app::tips;
use crate::data::DataSpec;
use crate::models::learned::{bundled_data, bundled_names, trained_for};
use crate::run::spec::DenoiserSpec;

/// What the Denoiser group needs to know beyond the settings.
#[derive(Clone, Debug, Default)]
pub struct DenoiserInfo {
    /// Learned models trained or opened since the app started.
    pub known: Vec<KnownModel>,
    /// "Compare with exact": the denoiser it would pin as the baseline, or why it cannot.
    pub compare: CompareOffer,
}

/// Whether "Compare with exact" can run now.
#[derive(Clone, Debug, PartialEq)]
pub enum CompareOffer {
    /// It would run the shown run's settings with this denoiser and pin that run.
    With(DenoiserSpec),
    /// Why the button is off.
    Unavailable(String),
}

impl Default for CompareOffer {
    fn default() -> Self {
        CompareOffer::Unavailable("no finished run yet".into())
    }
}

/// The picker's name for a denoiser: "exact", "moons (bundled)", a known model's label, or the
/// checkpoint's file name.
pub fn picker_label(denoiser: &DenoiserSpec, known: &[KnownModel]) -> String {
    match denoiser {
        DenoiserSpec::Exact => "exact".into(),
        DenoiserSpec::Bundled(name) => format!("{name} (bundled)"),
        DenoiserSpec::Checkpoint(path) => known
            .iter()
            .find(|m| m.path == *path)
            .map(|m| m.label.clone())
            .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| path.display().to_string()),
    }
}

/// The bundled models with the data each was trained on and whether that is `data`.
fn bundled_entries(data: &DataSpec) -> Vec<(&'static str, String, bool)> {
    bundled_names()
        .into_iter()
        .map(|name| {
            let trained = bundled_data(name);
            let label = trained.as_ref().map_or_else(|| "?".into(), DataSpec::label);
            let fits = trained.is_some_and(|t| trained_for(&t, data));
            (name, label, fits)
        })
        .collect()
}

pub(super) fn denoiser_group(
    ui: &mut Ui,
    settings: &mut Settings,
    info: &ControlsInfo,
    actions: &mut Vec<Action>,
) {
    let known = &info.denoiser.known;
    gate(ui, info, Control::Denoiser, |ui| {
        let spec = &mut settings.spec;
        let data = spec.data.clone();
        ComboBox::from_id_salt("denoiser")
            .selected_text(picker_label(&spec.denoiser, known))
            .width(220.0)
            .show_ui(ui, |ui| {
                ui.selectable_value(
                    &mut spec.denoiser,
                    DenoiserSpec::Exact,
                    "exact (ideal / closed form)",
                )
                .on_hover_text(tips::DENOISER_EXACT);
                for (name, trained_on, fits) in bundled_entries(&data) {
                    let choice = DenoiserSpec::Bundled(name.to_string());
                    let selected = spec.denoiser == choice;
                    let response = ui
                        .add_enabled(
                            fits,
                            egui::Button::selectable(selected, format!("{name} (bundled)")),
                        )
                        .on_hover_text(format!(
                            "The network shipped with noisescope, trained on {trained_on}."
                        ))
                        .on_disabled_hover_text(format!(
                            "Trained on {trained_on}: choose that data to use it."
                        ));
                    if response.clicked() {
                        spec.denoiser = choice;
                    }
                }
                for model in known {
                    let origin = match model.origin {
                        ModelOrigin::Trained => "trained here",
                        ModelOrigin::Opened => "opened",
                    };
                    ui.selectable_value(
                        &mut spec.denoiser,
                        DenoiserSpec::Checkpoint(model.path.clone()),
                        format!("{} ({origin})", model.label),
                    )
                    .on_hover_text(model.path.display().to_string());
                }
            })
            .response
            .on_hover_text(tips::DENOISER);
        if ui
            .add_enabled(!info.dialog_open, egui::Button::new("Open checkpoint…"))
            .on_hover_text(tips::OPEN_CHECKPOINT)
            .clicked()
        {
            actions.push(Action::File(FileTask::UseCheckpoint));
        }
        estimator_row(ui, settings, info, actions);
    });
    match &info.denoiser.compare {
        CompareOffer::With(partner) => {
            let tip = format!(
                "{} Here it runs {} and pins that run.",
                tips::COMPARE_EXACT,
                picker_label(partner, known)
            );
            if ui.button("Compare with exact").on_hover_text(tip).clicked() {
                actions.push(Action::CompareWithExact);
            }
        }
        CompareOffer::Unavailable(why) => {
            ui.add_enabled(false, egui::Button::new("Compare with exact"))
                .on_disabled_hover_text(format!("{} Not now: {why}.", tips::COMPARE_EXACT));
        }
    }
    if settings.spec.denoiser != DenoiserSpec::Exact {
        ui.label(
            RichText::new(
                "A network: σ_hat and δ still come from the exact posterior of the data.",
            )
            .weak(),
        );
    }
}

/// The learned noise-level estimator the runs use: which one, "Remove", "Open…".
fn estimator_row(
    ui: &mut Ui,
    settings: &mut Settings,
    info: &ControlsInfo,
    actions: &mut Vec<Action>,
) {
    ui.separator();
    ui.label("Noise-level estimator g(σ|x)")
        .on_hover_text(tips::ESTIMATOR);
    let mut remove = false;
    match &settings.spec.estimator {
        Some(path) => {
            ui.horizontal(|ui| {
                ui.label(format!("estimator: {}", estimator_label(path)))
                    .on_hover_text(format!("{}\n\n{}", tips::ESTIMATOR, path.display()));
                remove = ui
                    .button("Remove estimator")
                    .on_hover_text(tips::ESTIMATOR_REMOVE)
                    .clicked();
            });
        }
        None => {
            ui.label(RichText::new("none: σ_hat from the exact posterior only").weak());
        }
    }
    if remove {
        settings.set_estimator(None);
    }
    if ui
        .add_enabled(
            !info.dialog_open,
            egui::Button::new("Open noise-level estimator…"),
        )
        .on_hover_text(tips::OPEN_ESTIMATOR)
        .clicked()
    {
        actions.push(Action::File(FileTask::OpenEstimator));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_models_fit_only_the_data_they_were_trained_on() {
        let moons = DataSpec::Toy {
            name: "moons".into(),
            points: 100,
        };
        let fits = |data: &DataSpec| -> Vec<(&str, bool)> {
            bundled_entries(data)
                .into_iter()
                .map(|(n, _, f)| (n, f))
                .collect()
        };
        assert_eq!(
            fits(&moons),
            [("moons", true), ("moons-nag", true), ("digits", false)]
        );
        assert_eq!(
            fits(&DataSpec::Digits),
            [("moons", false), ("moons-nag", false), ("digits", true)]
        );
        let known = [KnownModel {
            label: "my mlp".into(),
            path: "/m/a.safetensors".into(),
            origin: ModelOrigin::Opened,
        }];
        let open = |p: &str| DenoiserSpec::Checkpoint(p.into());
        assert_eq!(picker_label(&open("/m/a.safetensors"), &known), "my mlp");
        assert_eq!(picker_label(&open("/x/b.safetensors"), &known), "b");
        assert_eq!(
            picker_label(&DenoiserSpec::Bundled("moons".into()), &known),
            "moons (bundled)"
        );
    }
}
