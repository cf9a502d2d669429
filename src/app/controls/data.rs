//! The Data group: the source (built-in toys, a Gaussian spectrum, digits, a folder of images,
//! an .npy file) and its size.

use egui::{ComboBox, RichText, Ui};

use crate::data::{DataSpec, toys};

use super::{Action, Control, ControlsInfo, ControlsState, WARNING, gate, slider};
use crate::app::dialogs::FileTask;
use crate::app::settings::{Settings, same_kind};
use crate::app::tips;

/// The data entries of the combo box: (label, spec) for the built-in sources.
fn builtin_data(points: usize) -> Vec<(String, DataSpec)> {
    let mut entries: Vec<(String, DataSpec)> = toys::NAMES
        .iter()
        .filter(|n| **n != "two-diracs")
        .map(|n| {
            (
                format!("toy: {n}"),
                DataSpec::Toy {
                    name: (*n).to_string(),
                    points,
                },
            )
        })
        .collect();
    entries.push((
        "two Diracs (1-D, EDM fig. 3)".into(),
        DataSpec::Toy {
            name: "two-diracs".into(),
            points,
        },
    ));
    entries.push((
        "Gaussian spectrum".into(),
        DataSpec::Gaussian {
            spectrum: vec![4.0, 1.0, 0.25, 0.0625],
        },
    ));
    entries.push(("digits (UCI 8×8)".into(), DataSpec::Digits));
    entries.push(("digits, binarised to ±1".into(), DataSpec::BinaryDigits));
    entries
}

fn spectrum_text(spectrum: &[f64]) -> String {
    spectrum
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn data_group(
    ui: &mut Ui,
    settings: &mut Settings,
    state: &mut ControlsState,
    info: &ControlsInfo,
    actions: &mut Vec<Action>,
) {
    gate(ui, info, Control::Data, |ui| {
        data_controls(ui, settings, state, info, actions)
    });
}

fn data_controls(
    ui: &mut Ui,
    settings: &mut Settings,
    state: &mut ControlsState,
    info: &ControlsInfo,
    actions: &mut Vec<Action>,
) {
    let points = match &settings.spec.data {
        DataSpec::Toy { points, .. } => *points,
        _ => 4096,
    };
    let current = settings.spec.data.clone();
    let current_label = match &current {
        DataSpec::Toy { name, .. } if name == "two-diracs" => {
            "two Diracs (1-D, EDM fig. 3)".to_string()
        }
        DataSpec::Toy { name, .. } => format!("toy: {name}"),
        DataSpec::Gaussian { .. } => "Gaussian spectrum".into(),
        DataSpec::Digits => "digits (UCI 8×8)".into(),
        DataSpec::BinaryDigits => "digits, binarised to ±1".into(),
        DataSpec::Npy { path, .. } => format!("npy: {}", file_name(path)),
        DataSpec::Images { dir, .. } => format!("images: {}", file_name(dir)),
    };
    let mut chosen = None;
    ComboBox::from_id_salt("data")
        .selected_text(current_label)
        .width(220.0)
        .show_ui(ui, |ui| {
            for (label, spec) in builtin_data(points) {
                let selected = same_kind(&current, &spec);
                let tip = match &spec {
                    DataSpec::Toy { name, .. } if name == "two-diracs" => tips::TWO_DIRACS,
                    DataSpec::Gaussian { .. } => tips::GAUSSIAN,
                    _ => tips::DATA,
                };
                if ui
                    .selectable_label(selected, label)
                    .on_hover_text(tip)
                    .clicked()
                    && !selected
                {
                    chosen = Some(spec);
                }
            }
        })
        .response
        .on_hover_text(tips::DATA);
    if let Some(spec) = chosen {
        if let DataSpec::Gaussian { spectrum } = &spec {
            state.spectrum_text = spectrum_text(spectrum);
            state.spectrum_error = None;
        }
        settings.set_data(spec);
    }
    ui.horizontal(|ui| {
        let open = [
            ("Open folder…", tips::OPEN_FOLDER, FileTask::OpenImageFolder),
            ("Open .npy…", tips::OPEN_NPY, FileTask::OpenNpy),
        ];
        for (label, tip, task) in open {
            if ui
                .add_enabled(!info.dialog_open, egui::Button::new(label))
                .on_hover_text(tip)
                .clicked()
            {
                actions.push(Action::File(task));
            }
        }
    });
    match &mut settings.spec.data {
        DataSpec::Toy { name, points } if name != "8gaussians" && name != "two-diracs" => {
            slider(ui, points, 64..=20_000, "points", tips::POINTS, true);
        }
        DataSpec::Gaussian { spectrum } => {
            if state.spectrum_text.is_empty() {
                state.spectrum_text = spectrum_text(spectrum);
            }
            ui.horizontal(|ui| {
                let label = ui.label("λ:");
                let edit = ui
                    .add(egui::TextEdit::singleline(&mut state.spectrum_text).desired_width(170.0))
                    .labelled_by(label.id)
                    .on_hover_text(tips::GAUSSIAN);
                if edit.lost_focus() {
                    match parse_spectrum(&state.spectrum_text) {
                        Ok(parsed) => {
                            *spectrum = parsed;
                            state.spectrum_error = None;
                        }
                        Err(message) => state.spectrum_error = Some(message),
                    }
                }
            });
            if let Some(error) = &state.spectrum_error {
                ui.label(
                    RichText::new(format!(
                        "not used: {error} (the run keeps the last valid spectrum)"
                    ))
                    .small()
                    .color(WARNING),
                );
            }
        }
        DataSpec::Images { size, rgb, .. } => {
            slider(ui, size, 8..=64, "image size", tips::IMAGE_SIZE, false);
            ui.checkbox(rgb, "RGB").on_hover_text(tips::IMAGE_SIZE);
        }
        _ => {}
    }
}

/// Eigenvalues typed as "4, 1, 0.25": positive, finite, at most 4096 of them.
pub fn parse_spectrum(text: &str) -> Result<Vec<f64>, String> {
    let values = text
        .split([',', ' ', ';'])
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .map_err(|_| format!("'{}' is not a number", s.trim()))
        })
        .collect::<Result<Vec<f64>, String>>()?;
    if values.is_empty() || values.len() > 4096 {
        return Err("give between 1 and 4096 eigenvalues".into());
    }
    if let Some(bad) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        return Err(format!("eigenvalue {bad} must be positive"));
    }
    Ok(values)
}

pub(super) fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectra_parse_or_explain() {
        assert_eq!(parse_spectrum("4, 1,0.25"), Ok(vec![4.0, 1.0, 0.25]));
        assert!(parse_spectrum("").is_err());
        assert!(parse_spectrum("1, x").is_err_and(|e| e.contains("'x'")));
        assert!(parse_spectrum("1, -2").is_err_and(|e| e.contains("positive")));
    }
}
