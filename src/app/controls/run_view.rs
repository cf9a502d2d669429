//! The Run group (seed, batch, backend, diagnostics, replay, rerun) and the View group.

use egui::{ComboBox, Slider, Ui};

use crate::backend::BackendChoice;
use crate::core::Precision;

use super::{Action, ControlsInfo};
use crate::app::settings::Settings;
use crate::app::tips;

pub(super) fn run_group(
    ui: &mut Ui,
    settings: &mut Settings,
    info: &ControlsInfo,
    actions: &mut Vec<Action>,
) {
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
    ui.add(
        Slider::new(&mut settings.spec.batch, 1..=20_000)
            .logarithmic(true)
            .text("batch"),
    )
    .on_hover_text(tips::BATCH);
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
    let diag = &mut settings.spec.diagnostics;
    ui.checkbox(&mut diag.enabled, "diagnostics")
        .on_hover_text(tips::DIAGNOSTICS);
    ui.add_enabled(
        diag.enabled,
        Slider::new(&mut diag.subset, 8..=1024)
            .logarithmic(true)
            .text("σ_hat subset"),
    )
    .on_hover_text(tips::SUBSET);
    ui.horizontal(|ui| {
        if info.playing {
            if ui.button("Pause").on_hover_text(tips::PAUSE).clicked() {
                actions.push(Action::Pause);
            }
        } else if ui.button("Play").on_hover_text(tips::PLAY).clicked() {
            actions.push(Action::Play);
        }
        if ui.button("Step").on_hover_text(tips::STEP).clicked() {
            actions.push(Action::Step);
        }
        if ui.button("Live").on_hover_text(tips::FOLLOW).clicked() {
            actions.push(Action::FollowLive);
        }
    });
    ui.horizontal(|ui| {
        let rerun = egui::Button::new(if info.dirty { "Run changes" } else { "Rerun" })
            .selected(info.dirty);
        if ui.add(rerun).on_hover_text(tips::RERUN).clicked() {
            actions.push(Action::Rerun);
        }
        ui.checkbox(&mut settings.view.rerun_on_change, "rerun on change")
            .on_hover_text(tips::RERUN_ON_CHANGE);
    });
    if ui
        .button("Reset to default scene")
        .on_hover_text(tips::RESET)
        .clicked()
    {
        actions.push(Action::ResetScene);
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
    ui.add_enabled(
        v.show_paths,
        Slider::new(&mut v.paths, 1..=1000)
            .logarithmic(true)
            .text("paths"),
    )
    .on_hover_text(tips::SHOW_PATHS);
    ui.checkbox(&mut v.show_denoised, "D(x_i)")
        .on_hover_text(tips::SHOW_DENOISED);
    ui.checkbox(&mut v.show_arrows, "ODE direction arrows")
        .on_hover_text(tips::SHOW_ARROWS);
    ui.checkbox(&mut v.show_baseline, "baseline overlay")
        .on_hover_text(tips::SHOW_BASELINE);
    ui.add(
        Slider::new(&mut v.play_speed, 1.0..=60.0)
            .logarithmic(true)
            .text("replay states/s"),
    )
    .on_hover_text(tips::PLAY_SPEED);
}
