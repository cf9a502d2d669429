//! The Run group (seed, batch, backend, diagnostics, replay, rerun) and the View group.

use egui::{ComboBox, Ui};

use crate::backend::BackendChoice;
use crate::core::Precision;

use super::{Action, Control, ControlsInfo, gate, slider};
use crate::app::settings::Settings;
use crate::app::tips;

pub(super) fn run_group(
    ui: &mut Ui,
    settings: &mut Settings,
    info: &ControlsInfo,
    actions: &mut Vec<Action>,
) {
    gate(ui, info, Control::Seed, |ui| {
        ui.horizontal(|ui| {
            let label = ui.label("seed");
            ui.add(egui::DragValue::new(&mut settings.spec.seed).speed(1.0))
                .labelled_by(label.id)
                .on_hover_text(tips::SEED);
            if ui
                .button("new seed")
                .on_hover_text(tips::NEW_SEED)
                .clicked()
            {
                settings.spec.seed = settings.spec.seed.wrapping_add(1);
            }
        });
    });
    gate(ui, info, Control::Batch, |ui| {
        slider(
            ui,
            &mut settings.spec.batch,
            1..=20_000,
            "batch",
            tips::BATCH,
            true,
        );
    });
    gate(ui, info, Control::Compute, |ui| {
        ui.horizontal(|ui| {
            let spec = &mut settings.spec;
            ComboBox::from_id_salt("backend")
                .selected_text(format!("backend: {}", backend_name(spec.backend)))
                .show_ui(ui, |ui| {
                    for b in [BackendChoice::Auto, BackendChoice::Gpu, BackendChoice::Cpu] {
                        ui.selectable_value(&mut spec.backend, b, backend_name(b));
                    }
                })
                .response
                .on_hover_text(tips::BACKEND);
            ComboBox::from_id_salt("precision")
                .selected_text(if spec.precision == Precision::F64 {
                    "f64"
                } else {
                    "f32"
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut spec.precision, Precision::F32, "f32");
                    ui.selectable_value(&mut spec.precision, Precision::F64, "f64");
                })
                .response
                .on_hover_text(tips::PRECISION);
        });
    });
    gate(ui, info, Control::Diagnostics, |ui| {
        let diag = &mut settings.spec.diagnostics;
        ui.checkbox(&mut diag.enabled, "diagnostics")
            .on_hover_text(tips::DIAGNOSTICS);
        ui.add_enabled_ui(diag.enabled, |ui| {
            slider(
                ui,
                &mut diag.subset,
                8..=1024,
                "σ_hat subset",
                tips::SUBSET,
                true,
            );
        });
    });
    gate(ui, info, Control::Replay, |ui| {
        ui.horizontal(|ui| replay_buttons(ui, info.playing, actions));
    });
    gate(ui, info, Control::Rerun, |ui| {
        ui.horizontal(|ui| {
            let rerun = egui::Button::new(if info.dirty { "Run changes" } else { "Rerun" })
                .selected(info.dirty);
            if ui.add(rerun).on_hover_text(tips::RERUN).clicked() {
                actions.push(Action::Rerun);
            }
            ui.checkbox(&mut settings.view.rerun_on_change, "rerun on change")
                .on_hover_text(tips::RERUN_ON_CHANGE);
        });
    });
    gate(ui, info, Control::Reset, |ui| {
        if ui
            .button("Reset to default scene")
            .on_hover_text(tips::RESET)
            .clicked()
        {
            actions.push(Action::ResetScene);
        }
    });
}

/// Play or Pause (one button, as wide as the wider of the two, so Step and Live never move),
/// Step and Live.
pub(crate) fn replay_buttons(ui: &mut Ui, playing: bool, actions: &mut Vec<Action>) {
    let width = ["Play", "Pause"]
        .iter()
        .map(|t| {
            egui::WidgetText::from(*t)
                .into_galley(ui, None, f32::INFINITY, egui::TextStyle::Button)
                .size()
                .x
        })
        .fold(0.0f32, f32::max)
        + 2.0 * ui.spacing().button_padding.x;
    let size = egui::vec2(width, ui.spacing().interact_size.y);
    let (label, tip, action) = if playing {
        ("Pause", tips::PAUSE, Action::Pause)
    } else {
        ("Play", tips::PLAY, Action::Play)
    };
    if ui
        .add_sized(size, egui::Button::new(label))
        .on_hover_text(tip)
        .clicked()
    {
        actions.push(action);
    }
    if ui.button("Step").on_hover_text(tips::STEP).clicked() {
        actions.push(Action::Step);
    }
    if ui.button("Live").on_hover_text(tips::FOLLOW).clicked() {
        actions.push(Action::FollowLive);
    }
}

fn backend_name(b: BackendChoice) -> &'static str {
    match b {
        BackendChoice::Auto => "auto",
        BackendChoice::Gpu => "gpu",
        BackendChoice::Cpu => "cpu",
    }
}

pub(super) fn view_group(ui: &mut Ui, settings: &mut Settings) {
    let v = &mut settings.view;
    ui.checkbox(&mut v.show_data, "data")
        .on_hover_text(tips::SHOW_DATA);
    ui.checkbox(&mut v.show_paths, "paths / trajectories")
        .on_hover_text(tips::SHOW_PATHS);
    ui.add_enabled_ui(v.show_paths, |ui| {
        slider(ui, &mut v.paths, 1..=1000, "paths", tips::SHOW_PATHS, true);
    });
    ui.checkbox(&mut v.show_denoised, "D(x_i)")
        .on_hover_text(tips::SHOW_DENOISED);
    ui.checkbox(&mut v.show_arrows, "ODE direction arrows")
        .on_hover_text(tips::SHOW_ARROWS);
    ui.checkbox(&mut v.show_baseline, "baseline overlay")
        .on_hover_text(tips::SHOW_BASELINE);
    slider(
        ui,
        &mut v.play_speed,
        1.0..=60.0,
        "replay states/s",
        tips::PLAY_SPEED,
        true,
    );
}
