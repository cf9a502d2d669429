//! A/B that explains itself: what a pinned baseline's settings are against the live run's
//! ("NAG w 0 -> 3, steps N 18 -> 10"), and how their states are compared (side by side, overlaid
//! in one plot, or flipped one at a time).

use egui::{RichText, Ui};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::run::RunSpec;

use super::plot_style::{self, BASELINE, Key, LIVE, Swatch, format_number};

/// How the baseline's states sit against the live ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbView {
    /// Two plots (or grids), live on the left.
    #[default]
    SideBySide,
    /// One plot, the baseline's particles in its own colour (2-D and 1-D data).
    Overlay,
    /// One plot at a time; `flip` (or the F key) swaps them, so a change blinks.
    Flip,
}

impl AbView {
    pub const ALL: [AbView; 3] = [AbView::SideBySide, AbView::Overlay, AbView::Flip];

    pub fn title(self) -> &'static str {
        match self {
            AbView::SideBySide => "side by side",
            AbView::Overlay => "overlay",
            AbView::Flip => "flip",
        }
    }
}

/// Spec fields by JSON path, with the names the controls use. A changed field under a path
/// is reported once, with the whole value at that path.
const NAMED_FIELDS: [(&str, &str); 24] = [
    ("/data", "data"),
    ("/denoiser", "denoiser"),
    ("/sampler", "sampler"),
    ("/schedule/kind", "schedule"),
    ("/schedule/steps", "steps N"),
    ("/schedule/sigma_min", "σ_min"),
    ("/schedule/sigma_max", "σ_max"),
    ("/schedule/rho", "ρ"),
    ("/adaptive", "adaptive"),
    ("/stochasticity/churn", "S_churn"),
    ("/stochasticity/tmin", "S_tmin"),
    ("/stochasticity/tmax", "S_tmax"),
    ("/stochasticity/snoise", "S_noise"),
    ("/stochasticity/eta", "η"),
    ("/guidance/cfg", "CFG w"),
    ("/guidance/class", "class"),
    ("/guidance/nag", "NAG w"),
    ("/guidance/nag_prior", "NAG π(σ)"),
    ("/batch", "batch"),
    ("/seed", "seed"),
    ("/precision", "precision"),
    ("/backend", "backend"),
    ("/diagnostics", "diagnostics"),
    ("/init_noise", "initial noise file"),
];

/// What differs between two specs, one "name from -> to" per field, in the controls' order;
/// fields this table does not know are named by their JSON path, so none goes unreported.
pub fn spec_changes(from: &RunSpec, to: &RunSpec) -> Vec<String> {
    let (a, b) = (to_value(from), to_value(to));
    let mut changes = Vec::new();
    for (path, name) in NAMED_FIELDS {
        let (x, y) = (a.pointer(path), b.pointer(path));
        if x != y {
            let show = |v: Option<&Value>, spec: &RunSpec| match path {
                "/data" => spec.data.label(),
                "/schedule/kind" => spec.schedule.kind.name().to_string() + &tangent_c(v),
                _ => v.map_or_else(|| "none".to_string(), compact),
            };
            changes.push(format!("{name} {} -> {}", show(x, from), show(y, to)));
        }
    }
    let mut leaves_a = Vec::new();
    let mut leaves_b = Vec::new();
    leaves(&a, String::new(), &mut leaves_a);
    leaves(&b, String::new(), &mut leaves_b);
    let named = |p: &str| {
        NAMED_FIELDS
            .iter()
            .any(|(n, _)| p == *n || p.starts_with(&format!("{n}/")))
    };
    let mut paths: Vec<&String> = leaves_a.iter().chain(&leaves_b).map(|(p, _)| p).collect();
    paths.sort();
    paths.dedup();
    for path in paths.into_iter().filter(|p| !named(p)) {
        let find =
            |l: &[(String, Value)]| l.iter().find(|(p, _)| p == path).map(|(_, v)| v.clone());
        let (x, y) = (find(&leaves_a), find(&leaves_b));
        if x != y {
            let show = |v: Option<Value>| v.as_ref().map_or_else(|| "none".to_string(), compact);
            changes.push(format!(
                "{} {} -> {}",
                path.trim_start_matches('/').replace('/', "."),
                show(x),
                show(y)
            ));
        }
    }
    changes
}

fn to_value(spec: &RunSpec) -> Value {
    serde_json::to_value(spec).unwrap_or(Value::Null)
}

/// " (c = 1.2)" for a tangent law with a fixed coefficient.
fn tangent_c(kind: Option<&Value>) -> String {
    kind.and_then(|k| k.get("c"))
        .and_then(Value::as_f64)
        .map_or_else(String::new, |c| format!(" (c = {})", format_number(c)))
}

/// Every leaf of a JSON value with its pointer path.
fn leaves(value: &Value, path: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                leaves(v, format!("{path}/{k}"), out);
            }
        }
        leaf => out.push((path, leaf.clone())),
    }
}

/// A JSON value in a few characters: numbers as the controls show them (f64::MAX as ∞),
/// objects as their fields.
fn compact(value: &Value) -> String {
    match value {
        Value::Null => "none".into(),
        Value::Bool(b) => if *b { "on" } else { "off" }.into(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x >= f64::MAX => "∞".into(),
            Some(x) => format_number(x),
            None => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(compact).collect::<Vec<_>>().join(", "),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::Object(_) => format!("{k} ({})", compact(v)),
                _ => format!("{k} {}", compact(v)),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The A/B row above the central view while a baseline is shown: what the baseline is (its
/// differing settings) and how its states are compared.
pub fn ab_bar(
    ui: &mut Ui,
    baseline: &RunSpec,
    live: &RunSpec,
    mode: &mut AbView,
    flipped: &mut bool,
) {
    ui.horizontal_wrapped(|ui| {
        plot_style::title_and_key(
            ui,
            "A/B:",
            "The pinned baseline ran the same noise (seed) with the settings named here; its curves are dashed on every plot.",
            &[
                Key::new("live", LIVE, Swatch::Line),
                Key::new("baseline (dashed)", BASELINE, Swatch::Dashed),
            ],
        );
        let changes = spec_changes(baseline, live);
        let text = if changes.is_empty() {
            "the baseline has the same settings as the live run".to_string()
        } else {
            format!("baseline -> live: {}", changes.join(", "))
        };
        ui.label(RichText::new(text).color(BASELINE));
        ui.separator();
        for m in AbView::ALL {
            ui.selectable_value(mode, m, m.title())
                .on_hover_text("How the states are compared: two plots, one plot with both runs, or one run at a time (F flips).");
        }
        if *mode == AbView::Flip {
            let label = if *flipped { "showing: baseline" } else { "showing: live" };
            if ui.button(label).on_hover_text("Swap the run shown (F).").clicked() {
                *flipped = !*flipped;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schedule::ScheduleKind;
    use crate::data::DataSpec;
    use crate::run::spec::ClassSpec;

    #[test]
    fn changes_name_the_control_and_both_values() {
        let from = RunSpec::default();
        assert!(spec_changes(&from, &from).is_empty());
        let mut to = from.clone();
        to.guidance.nag = 3.0;
        to.schedule.steps = 10;
        assert_eq!(
            spec_changes(&from, &to),
            vec!["steps N 18 -> 10".to_string(), "NAG w 0 -> 3".to_string()]
        );
        let mut to = from.clone();
        to.data = DataSpec::Digits;
        to.schedule.kind = ScheduleKind::Tangent { c: Some(1.5) };
        to.stochasticity.tmax = 50.0;
        to.guidance.class = Some(ClassSpec::All(3));
        assert_eq!(
            spec_changes(&from, &to),
            vec![
                "data toy:8gaussians -> digits".to_string(),
                "schedule karras -> tangent (c = 1.5)".to_string(),
                "S_tmax ∞ -> 50".to_string(),
                "class none -> all 3".to_string(),
            ]
        );
    }

    #[test]
    fn a_field_the_table_does_not_name_is_still_reported() {
        let from = RunSpec::default();
        let mut to = from.clone();
        to.churn_noise = Some("eps.npy".into());
        assert_eq!(
            spec_changes(&from, &to),
            vec!["churn_noise none -> eps.npy".to_string()]
        );
    }
}
