//! Shared plot conventions: colours (live vs pinned baseline), the dashed baseline style, and
//! log-axis labels (egui_plot has linear axes; log plots draw log10 values and label them back).

use egui::{Color32, StrokeKind, Ui};
use egui_plot::{ColorConflictHandling, GridMark, Legend, LineStyle, Plot, PlotResponse, PlotUi};

/// The live run's states and curves.
pub const LIVE: Color32 = Color32::from_rgb(255, 150, 60);
/// D(x_i) and the live run's second curve.
pub const DENOISED: Color32 = Color32::from_rgb(70, 205, 190);
/// The pinned baseline (always dashed in line plots).
pub const BASELINE: Color32 = Color32::from_rgb(130, 160, 255);
/// The data set behind the run.
pub const DATA: Color32 = Color32::from_rgba_premultiplied(150, 150, 150, 90);
/// Reference lines (the diagonal, zero, the data).
pub const REFERENCE: Color32 = Color32::from_gray(140);

/// How the baseline's curves are drawn: dashed, so A/B reads at a glance.
pub fn baseline_style() -> LineStyle {
    LineStyle::Dashed { length: 8.0 }
}

/// Closest and widest on-screen spacing of grid lines, points. egui_plot fades lines in from 8 points;
/// from 20 the grid reads the same with about half the lines (each a long, feathered strip).
const GRID_SPACING: std::ops::RangeInclusive<f32> = 20.0..=300.0;

/// Shows `plot` the house way: with `legend()`, outlined, without its filled background (the
/// panel colour shows through; a software rasteriser pays for every filled pixel) and with a
/// sparser grid. Every plot of the app goes through here.
pub fn show<'a, R>(
    ui: &mut Ui,
    plot: Plot<'a>,
    build: impl FnOnce(&mut PlotUi<'a>) -> R + 'a,
) -> PlotResponse<R> {
    let response = plot
        .legend(legend())
        .show_background(false)
        .grid_spacing(GRID_SPACING)
        .show(ui, build);
    ui.painter().rect_stroke(
        *response.transform.frame(),
        2.0,
        ui.visuals().widgets.noninteractive.bg_stroke,
        StrokeKind::Inside,
    );
    response
}

/// The legend of every plot: entries in drawing order, one colour per name (a line and its
/// markers or its faint reference share a name).
fn legend() -> Legend {
    Legend::default()
        .follow_insertion_order(true)
        .color_conflict_handling(ColorConflictHandling::PickFirst)
}

/// A colour with its alpha scaled (for bands and faint families).
pub fn faint(color: Color32, alpha: u8) -> Color32 {
    Color32::from_rgba_unmultiplied(color.r(), color.g(), color.b(), alpha)
}

/// A number in few characters: 2e-3, 0.35, 1.5, 80, 1e4.
pub fn format_number(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        String::new()
    } else if a == 0.0 {
        "0".into()
    } else if !(1e-2..1e4).contains(&a) {
        format!("{x:.0e}")
    } else if a >= 10.0 {
        format!("{x:.0}")
    } else {
        let text = format!("{x:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Axis label for a log10 axis: the mark's value 10^v.
pub fn log_axis_label(mark: GridMark, _range: &std::ops::RangeInclusive<f64>) -> String {
    format_number(10f64.powf(mark.value))
}

/// (x, log10 y) pairs where both are finite and y > 0.
pub fn log10_points(points: impl IntoIterator<Item = (f64, f64)>) -> Vec<[f64; 2]> {
    points
        .into_iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
        .map(|(x, y)| [x, y.log10()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_readable() {
        assert_eq!(format_number(0.002), "2e-3");
        assert_eq!(format_number(80.0), "80");
        assert_eq!(format_number(1.5), "1.5");
        assert_eq!(format_number(1.0), "1");
        assert_eq!(format_number(0.35), "0.35");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(f64::NAN), "");
        assert_eq!(
            log10_points([(1.0, 10.0), (2.0, 0.0), (3.0, f64::NAN)]),
            vec![[1.0, 1.0]]
        );
    }
}
