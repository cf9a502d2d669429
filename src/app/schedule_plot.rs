//! The Schedule view: sigma_i against i for the chosen family (bold) and the other families
//! (faint) on a log axis, with the run's actual sigmas (re-planned ones for adaptive runs) as
//! points and the baseline's dashed. The formulas are closed-form (core/schedule.rs), so this
//! is cheap enough for the UI thread.

use egui::{Color32, RichText, Ui};
use egui_plot::{Line, Plot, Points};

use crate::core::schedule::{ScheduleKind, ScheduleSpec};
use crate::run::store::RunRecord;

use super::plot_style::{self, BASELINE, LIVE, baseline_style, faint, log10_points};

/// One hue per family (karras, log, uniform, vp, tangent), drawn faint when not chosen.
const FAMILY_COLORS: [Color32; 5] = [
    Color32::from_rgb(255, 150, 60),
    Color32::from_rgb(70, 205, 190),
    Color32::from_rgb(230, 100, 160),
    Color32::from_rgb(160, 200, 80),
    Color32::from_rgb(170, 140, 255),
];

/// The families drawn, with the tangent coefficient of the run when it has one.
fn families(tangent_c: Option<f64>) -> [ScheduleKind; 5] {
    [
        ScheduleKind::Karras,
        ScheduleKind::LogUniform,
        ScheduleKind::Uniform,
        ScheduleKind::Vp,
        ScheduleKind::Tangent {
            c: Some(tangent_c.unwrap_or(1.0)),
        },
    ]
}

/// (i, log10 sigma_i) of a schedule's non-zero levels.
fn curve(spec: ScheduleSpec) -> Vec<[f64; 2]> {
    spec.sigmas()
        .map(|s| log10_points(s.into_iter().enumerate().map(|(i, v)| (i as f64, v))))
        .unwrap_or_default()
}

/// Shows the schedule of `spec` (the controls' current one) with the run's sigmas on top.
pub fn show(
    ui: &mut Ui,
    spec: &ScheduleSpec,
    live: Option<&RunRecord>,
    baseline: Option<&RunRecord>,
    salt: &str,
) {
    ui.label(
        RichText::new(format!(
            "σ_i vs i, log scale: {} (bold) and the other families",
            spec.kind.name()
        ))
        .strong(),
    )
    .on_hover_text(super::tips::SCHEDULE);
    let tangent_c = live.and_then(|r| r.tangent_c);
    plot_style::show(
        ui,
        Plot::new(format!("{salt}-schedule"))
            .height(ui.available_height().max(150.0))
            .x_axis_label("step i")
            .y_axis_label("σ_i")
            .y_axis_formatter(plot_style::log_axis_label),
        |plot| {
            for (k, kind) in families(tangent_c).into_iter().enumerate() {
                let chosen = kind.name() == spec.kind.name();
                let points = curve(ScheduleSpec { kind, ..*spec });
                // The others faint but distinguishable.
                let (color, width) = if chosen {
                    (LIVE, 2.5)
                } else {
                    (faint(FAMILY_COLORS[k], 120), 1.2)
                };
                let label = match kind {
                    ScheduleKind::Tangent { c: Some(c) } => {
                        format!("tangent (c = {})", plot_style::format_number(c))
                    }
                    _ => kind.name().to_string(),
                };
                plot.line(Line::new(label, points).color(color).width(width));
            }
            if let Some(run) = live {
                let used = log10_points(run.sigmas.iter().enumerate().map(|(i, v)| (i as f64, *v)));
                plot.points(Points::new("this run", used).color(LIVE).radius(3.0));
            }
            if let Some(b) = baseline {
                let used = log10_points(b.sigmas.iter().enumerate().map(|(i, v)| (i as f64, *v)));
                plot.line(
                    Line::new("baseline", used)
                        .color(BASELINE)
                        .style(baseline_style()),
                );
            }
        },
    );
}
