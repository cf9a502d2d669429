//! A sweep as lines (EDM fig. 2): one line per value of the second axis, a metric against the
//! evaluations (NFE) when the first axis is the step count, else against the first axis's value
//! (its position, for a choice such as the sampler). `lines` is the one layout the app's Sweep tab
//! and sweep.png both draw; `render` paints it with the image crate for `noisescope sweep`.

use image::{Rgba, RgbaImage};

use crate::error::{Error, Result};

use super::engine::SweepRow;
use super::{SweepMetric, SweepParam, SweepSpec};

/// What a line's x coordinate is.
#[derive(Clone, Debug, PartialEq)]
pub enum XAxis {
    /// Denoiser evaluations of the run (the first axis is the step count).
    Evaluations,
    /// The first axis's value, a number.
    Value(SweepParam),
    /// The first axis's values are choices, drawn at 0, 1, 2, ... with these names.
    Choice(SweepParam, Vec<String>),
}

impl XAxis {
    pub fn of(spec: &SweepSpec) -> Self {
        match spec.vary.first() {
            Some(axis) if axis.param == SweepParam::Steps => XAxis::Evaluations,
            Some(axis) if axis.param.is_numeric() => XAxis::Value(axis.param),
            Some(axis) => XAxis::Choice(axis.param, axis.values.clone()),
            None => XAxis::Evaluations,
        }
    }

    pub fn label(&self) -> String {
        match self {
            XAxis::Evaluations => "evaluations (NFE)".into(),
            XAxis::Value(p) | XAxis::Choice(p, _) => p.name().into(),
        }
    }
}

/// One line: the rows with the same value of the second axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// "sampler=heun", or the sweep's name when there is one axis.
    pub label: String,
    /// (x, metric, index into the rows), in the first axis's order.
    pub points: Vec<(f64, f64, usize)>,
}

/// The lines of `metric` over the rows measured so far (a running sweep draws partial lines).
pub fn lines(spec: &SweepSpec, rows: &[SweepRow], metric: SweepMetric) -> Vec<Line> {
    let x_axis = XAxis::of(spec);
    let first = spec.vary.first();
    let labels: Vec<String> = match spec.vary.get(1) {
        Some(axis) => axis
            .values
            .iter()
            .map(|v| format!("{}={v}", axis.param.name()))
            .collect(),
        None => vec![if spec.name.is_empty() {
            metric.label().to_string()
        } else {
            spec.name.clone()
        }],
    };
    let mut lines: Vec<Line> = labels
        .into_iter()
        .map(|label| Line {
            label,
            points: Vec::new(),
        })
        .collect();
    for (k, row) in rows.iter().enumerate() {
        let Some(y) = row.metric(metric) else {
            continue;
        };
        let line = match (spec.vary.get(1), row.values.get(1)) {
            (Some(axis), Some(v)) => axis.values.iter().position(|a| a == v),
            _ => Some(0),
        };
        let x = match &x_axis {
            XAxis::Evaluations => Some(row.evaluations as f64),
            XAxis::Value(_) => row.values.first().and_then(|v| v.parse::<f64>().ok()),
            XAxis::Choice(..) => first
                .and_then(|a| a.values.iter().position(|v| Some(v) == row.values.first()))
                .map(|p| p as f64),
        };
        if let (Some(line), Some(x)) = (line, x)
            && let Some(line) = lines.get_mut(line)
        {
            line.points.push((x, y, k));
        }
    }
    for line in &mut lines {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    lines
}

/// Whether values are best shown on a log axis: all positive and spanning a factor of 4 or more.
pub fn fits_log(values: impl IntoIterator<Item = f64>) -> bool {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values {
        if !(v > 0.0 && v.is_finite()) {
            return false;
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    hi.is_finite() && lo.is_finite() && hi / lo >= 4.0
}

/// Whether the x and y axes of `lines` are drawn on log scales: x when the values are numbers
/// spanning a factor of 4 or more, y (a metric) when they span a factor of 10 or more.
pub fn log_axes(x_axis: &XAxis, lines: &[Line]) -> (bool, bool) {
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .collect();
    let x_log = !matches!(x_axis, XAxis::Choice(..)) && fits_log(xs);
    let y_log = fits_log(ys.iter().copied()) && {
        let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ys.iter().copied().fold(0.0, f64::max);
        hi / lo >= 10.0
    };
    (x_log, y_log)
}

/// Tick positions for [lo, hi]: 1-2-5 steps on a linear axis, 1-2-5 per decade (or decades
/// alone when they are many) on a log one.
pub fn ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi < lo {
        return Vec::new();
    }
    if log {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let mantissas: &[f64] = if b - a > 3 { &[1.0] } else { &[1.0, 2.0, 5.0] };
        let mut out = Vec::new();
        for e in a..=b {
            for m in mantissas {
                let v = m * 10f64.powi(e);
                if v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9) {
                    out.push(v);
                }
            }
        }
        return out;
    }
    let span = (hi - lo).max(hi.abs() * 1e-9).max(1e-300);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A number for a tick label: short, exact for round values.
pub fn tick_label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let text = format!("{v:.4}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        text.to_string()
    } else {
        let text = format!("{v:.1e}");
        text.replace(".0e", "e")
    }
}

/// Line colours (colour-blind-safe Okabe-Ito, then greys).
pub const PALETTE: [[u8; 3]; 8] = [
    [0, 114, 178],
    [213, 94, 0],
    [0, 158, 115],
    [204, 121, 167],
    [230, 159, 0],
    [86, 180, 233],
    [0, 0, 0],
    [120, 120, 120],
];

const PANEL_W: u32 = 820;
const PANEL_H: u32 = 420;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 52.0;
const GLYPH_W: u32 = 8;
const GLYPH_H: u32 = 15;

/// The glyphs of printable ASCII, 8 x 15 coverage cells in a row (tools/make_plot_font.sh).
struct Font(image::GrayImage);

impl Font {
    fn load() -> Result<Self> {
        let bytes = include_bytes!("../../../assets/plot-font.png");
        let image = image::load_from_memory(bytes)
            .map_err(|e| Error::Data(format!("the plot font: {e}")))?
            .to_luma8();
        Ok(Font(image))
    }

    /// Draws `text` with its top-left corner at (x, y).
    fn draw(&self, canvas: &mut RgbaImage, text: &str, x: i64, y: i64, color: [u8; 3]) {
        for (k, ch) in text.chars().enumerate() {
            let code = ch as u32;
            let code = if (32..=126).contains(&code) {
                code
            } else {
                '?' as u32
            };
            let cell = (code - 32) * GLYPH_W;
            for gy in 0..GLYPH_H {
                for gx in 0..GLYPH_W {
                    let coverage = self.0.get_pixel(cell + gx, gy)[0];
                    let px = x + (k as u32 * GLYPH_W + gx) as i64;
                    blend(canvas, px, y + gy as i64, color, coverage as f64 / 255.0);
                }
            }
        }
    }
}

fn text_width(text: &str) -> i64 {
    (text.chars().count() as u32 * GLYPH_W) as i64
}

fn blend(canvas: &mut RgbaImage, x: i64, y: i64, color: [u8; 3], alpha: f64) {
    if x < 0 || y < 0 || x >= canvas.width() as i64 || y >= canvas.height() as i64 || alpha <= 0.0 {
        return;
    }
    let p = canvas.get_pixel_mut(x as u32, y as u32);
    for c in 0..3 {
        p[c] = (p[c] as f64 * (1.0 - alpha) + color[c] as f64 * alpha).round() as u8;
    }
}

fn fill_rect(canvas: &mut RgbaImage, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]) {
    for y in y0..=y1 {
        for x in x0..=x1 {
            blend(canvas, x, y, color, 1.0);
        }
    }
}

fn disc(canvas: &mut RgbaImage, cx: f64, cy: f64, r: f64, color: [u8; 3]) {
    let (x0, x1) = ((cx - r - 1.0).floor() as i64, (cx + r + 1.0).ceil() as i64);
    let (y0, y1) = ((cy - r - 1.0).floor() as i64, (cy + r + 1.0).ceil() as i64);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
            blend(canvas, x, y, color, (r + 0.5 - d).clamp(0.0, 1.0));
        }
    }
}

fn segment(canvas: &mut RgbaImage, a: (f64, f64), b: (f64, f64), width: f64, color: [u8; 3]) {
    let length = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
    let steps = (length * 2.0).ceil().max(1.0) as usize;
    for k in 0..=steps {
        let t = k as f64 / steps as f64;
        disc(
            canvas,
            a.0 + t * (b.0 - a.0),
            a.1 + t * (b.1 - a.1),
            width / 2.0,
            color,
        );
    }
}

/// A map from data to pixels along one axis.
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Scale {
    fn new(values: &[f64], log: bool, from: f64, to: f64) -> Self {
        let mut lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let mut hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !(lo.is_finite() && hi.is_finite()) {
            (lo, hi) = (0.0, 1.0);
        }
        if log {
            (lo, hi) = (lo / 1.15, hi * 1.15);
        } else {
            let pad = if hi > lo {
                0.06 * (hi - lo)
            } else {
                0.5 * lo.abs().max(1.0)
            };
            (lo, hi) = (lo - pad, hi + pad);
        }
        Scale {
            lo,
            hi,
            log,
            from,
            to,
        }
    }

    fn at(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.from + t * (self.to - self.from)
    }
}

/// sweep.png: one panel per metric, stacked.
pub fn render(spec: &SweepSpec, rows: &[SweepRow]) -> Result<RgbaImage> {
    let font = Font::load()?;
    let panels = spec.metrics.len().max(1) as u32;
    let mut canvas = RgbaImage::from_pixel(PANEL_W, PANEL_H * panels, Rgba([255, 255, 255, 255]));
    for (k, &metric) in spec.metrics.iter().enumerate() {
        draw_panel(
            &mut canvas,
            &font,
            spec,
            rows,
            metric,
            (k as u32 * PANEL_H) as f64,
        );
    }
    Ok(canvas)
}

fn draw_panel(
    canvas: &mut RgbaImage,
    font: &Font,
    spec: &SweepSpec,
    rows: &[SweepRow],
    metric: SweepMetric,
    top: f64,
) {
    const INK: [u8; 3] = [30, 30, 30];
    const GRID: [u8; 3] = [225, 225, 225];
    let x_axis = XAxis::of(spec);
    let lines = lines(spec, rows, metric);
    let xs: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .collect();
    let (x_log, y_log) = log_axes(&x_axis, &lines);
    let (x0, x1) = (LEFT, PANEL_W as f64 - RIGHT);
    let (y0, y1) = (top + TOP, top + PANEL_H as f64 - BOTTOM);
    let xscale = Scale::new(&xs, x_log, x0, x1);
    let yscale = Scale::new(&ys, y_log, y1, y0);
    let title = format!(
        "{}{} against {}",
        if spec.name.is_empty() {
            String::new()
        } else {
            format!("{}: ", spec.name)
        },
        metric.label(),
        x_axis.label()
    );
    font.draw(canvas, &title, LEFT as i64, (top + 10.0) as i64, INK);
    // Grid and ticks.
    let x_ticks: Vec<(f64, String)> = match &x_axis {
        XAxis::Choice(_, names) => names
            .iter()
            .enumerate()
            .map(|(i, n)| (i as f64, n.clone()))
            .collect(),
        _ => ticks(xscale.lo, xscale.hi, x_log)
            .into_iter()
            .map(|v| (v, tick_label(v)))
            .collect(),
    };
    for (v, label) in &x_ticks {
        let px = xscale.at(*v);
        segment(canvas, (px, y0), (px, y1), 1.0, GRID);
        let w = text_width(label);
        font.draw(canvas, label, px as i64 - w / 2, y1 as i64 + 6, INK);
    }
    for v in ticks(yscale.lo, yscale.hi, y_log) {
        let py = yscale.at(v);
        segment(canvas, (x0, py), (x1, py), 1.0, GRID);
        let label = tick_label(v);
        let w = text_width(&label);
        font.draw(canvas, &label, x0 as i64 - 6 - w, py as i64 - 7, INK);
    }
    // Frame.
    for (a, b) in [
        ((x0, y0), (x1, y0)),
        ((x0, y1), (x1, y1)),
        ((x0, y0), (x0, y1)),
        ((x1, y0), (x1, y1)),
    ] {
        segment(canvas, a, b, 1.0, INK);
    }
    let x_label = format!("{}{}", x_axis.label(), if x_log { " (log)" } else { "" });
    let w = text_width(&x_label);
    font.draw(
        canvas,
        &x_label,
        ((x0 + x1) / 2.0) as i64 - w / 2,
        y1 as i64 + 26,
        INK,
    );
    let y_label = format!("{}{}", metric.label(), if y_log { " (log)" } else { "" });
    font.draw(canvas, &y_label, 8, (top + 10.0) as i64 + 16, INK);
    // Lines and legend.
    for (k, line) in lines.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let at = |p: &(f64, f64, usize)| (xscale.at(p.0), yscale.at(p.1));
        for pair in line.points.windows(2) {
            segment(canvas, at(&pair[0]), at(&pair[1]), 2.0, color);
        }
        for p in &line.points {
            let (px, py) = at(p);
            disc(canvas, px, py, 3.5, color);
        }
        let ly = y0 as i64 + 8 + 20 * k as i64;
        let lx = x1 as i64 + 14;
        fill_rect(canvas, lx, ly + 5, lx + 18, ly + 8, color);
        font.draw(canvas, &line.label, lx + 24, ly, INK);
    }
    if lines.iter().all(|l| l.points.is_empty()) {
        font.draw(
            canvas,
            "no values (see the error column of sweep.csv)",
            x0 as i64 + 20,
            ((y0 + y1) / 2.0) as i64,
            INK,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let labels: Vec<String> = ticks(0.0, 1.0, false).into_iter().map(tick_label).collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        assert_eq!(ticks(3.0, 70.0, true), [5.0, 10.0, 20.0, 50.0]);
        assert_eq!(ticks(1e-3, 1e3, true).len(), 7);
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(20.0), "20");
        assert_eq!(tick_label(1e-5), "1e-5");
        assert!(fits_log([7.0, 63.0]));
        assert!(!fits_log([0.0, 63.0]));
        assert!(!fits_log([7.0, 13.0]));
    }
}
