//! The States view: the state x_i and the denoised D(x_i) at the shown step. 2-D data as a
//! scatter over the data set with paths and each particle's ODE direction; 1-D data as EDM's
//! figure 3 (trajectories against sigma); images as grids, x_i and D(x_i) side by side. With a
//! pinned baseline, its states (same noise, same step) sit beside the live ones.

use std::collections::HashMap;
use std::sync::Arc;

use egui::{Color32, RichText, TextureHandle, TextureOptions, Ui};
use egui_plot::{Arrows, HLine, Line, Plot, PlotUi, Points, VLine};

use crate::core::Batch;
use crate::data::grid::image_grid_columns;
use crate::run::store::RunRecord;

use super::ViewOptions;
use super::ab::AbView;
use super::plot_style::{
    self, BASELINE, DATA, DENOISED, DIVERGED, LIVE, SHOWN, faint, format_number,
};

/// Most particles drawn as points (a batch can hold millions).
const MAX_POINTS: usize = 5000;
/// Most data points drawn behind the particles: a backdrop that shows the set's shape (more
/// only add triangles to every frame).
const MAX_DATA_POINTS: usize = 1000;
/// Most particles drawn with an ODE arrow.
const MAX_ARROWS: usize = 300;
/// Most images in a grid.
const MAX_IMAGES: usize = 64;
/// Most images in a grid that fills a tall area (the Overview's half).
const MAX_TALL_IMAGES: usize = 160;

/// How an image grid is laid out: how many images, and how many per row (None: square).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct GridLayout {
    images: usize,
    columns: Option<u32>,
}

impl GridLayout {
    const SQUARE: GridLayout = GridLayout {
        images: MAX_IMAGES,
        columns: None,
    };

    /// A grid that fills a tall area: eight per row, as many rows as the height allows.
    fn filling(width: f32, height: f32) -> GridLayout {
        let columns = 8u32;
        let rows = ((height / width.max(1.0)) * columns as f32)
            .floor()
            .max(8.0) as usize;
        GridLayout {
            images: (rows * columns as usize).min(MAX_TALL_IMAGES),
            columns: Some(columns),
        }
    }
}

/// Image-grid textures, made once per (run, step, which, layout) and dropped with their run.
#[derive(Default)]
pub struct TextureCache {
    textures: HashMap<(u64, usize, bool, GridLayout), TextureHandle>,
}

impl TextureCache {
    /// Forgets every texture of runs other than `keep`.
    pub fn retain_runs(&mut self, keep: &[u64]) {
        self.textures.retain(|(g, _, _, _), _| keep.contains(g));
    }

    fn grid(
        &mut self,
        ui: &Ui,
        run: &RunRecord,
        step: usize,
        denoised: bool,
        batch: &Batch,
        layout: GridLayout,
    ) -> Option<TextureHandle> {
        let shape = run.data.image?;
        let key = (run.generation, step, denoised, layout);
        if let Some(t) = self.textures.get(&key) {
            return Some(t.clone());
        }
        // Small images get bigger pixels so the grid stays legible.
        let scale = (64 / shape.width.max(1)).clamp(1, 8) as u32;
        let img = image_grid_columns(
            &batch.data,
            batch.rows,
            shape,
            layout.images,
            scale,
            layout.columns,
        );
        let size = [img.width() as usize, img.height() as usize];
        let color = egui::ColorImage::from_rgb(size, img.as_raw());
        let name = format!("grid-{}-{step}-{denoised}", run.generation);
        let texture = ui.ctx().load_texture(name, color, TextureOptions::NEAREST);
        self.textures.insert(key, texture.clone());
        Some(texture)
    }
}

/// The sigma of state `step` (the final state has sigma 0).
pub fn state_sigma(run: &RunRecord, step: usize) -> f64 {
    run.steps.get(step).map_or(0.0, |s| s.sigma)
}

/// D(x_i) at `step` (none for the final state).
fn denoised_at(run: &RunRecord, step: usize) -> Option<&Arc<Batch>> {
    run.steps.get(step).map(|s| &s.denoised)
}

/// Shows the live run's states at `step`, and the baseline's as the A/B mode says: beside them,
/// in the same plot, or instead of them (flip). `diverged` are the live run's samples that left
/// the data's range (drawn in red).
pub fn show(
    ui: &mut Ui,
    live: &RunRecord,
    baseline: Option<&RunRecord>,
    step: usize,
    view: &ViewOptions,
    textures: &mut TextureCache,
    salt: &str,
    diverged: &[usize],
) {
    let live_panel = Panel {
        run: live,
        step,
        title: "live",
        color: LIVE,
        diverged,
        overlay: None,
    };
    let Some(base) = baseline.filter(|_| view.show_baseline) else {
        return run_states(ui, &live_panel, view, textures, &format!("{salt}-live"));
    };
    let base_panel = Panel {
        run: base,
        step: step.min(base.state_count().saturating_sub(1)),
        title: "baseline (pinned)",
        color: BASELINE,
        diverged: &[],
        overlay: None,
    };
    let images = live.data.image.is_some();
    match view.ab {
        AbView::Overlay if !images => {
            let panel = Panel {
                overlay: Some((base, base_panel.step)),
                ..live_panel
            };
            run_states(ui, &panel, view, textures, &format!("{salt}-live"));
        }
        AbView::Flip if view.ab_flipped => {
            run_states(ui, &base_panel, view, textures, &format!("{salt}-live"));
        }
        AbView::Flip => run_states(ui, &live_panel, view, textures, &format!("{salt}-live")),
        _ => ui.columns(2, |cols| {
            run_states(
                &mut cols[0],
                &live_panel,
                view,
                textures,
                &format!("{salt}-live"),
            );
            run_states(
                &mut cols[1],
                &base_panel,
                view,
                textures,
                &format!("{salt}-base"),
            );
        }),
    }
}

/// One run's states as drawn: which step, under which title and colour, its diverged samples,
/// and a second run drawn into the same plot (overlay).
#[derive(Clone, Copy)]
struct Panel<'a> {
    run: &'a RunRecord,
    step: usize,
    title: &'a str,
    color: Color32,
    diverged: &'a [usize],
    overlay: Option<(&'a RunRecord, usize)>,
}

fn run_states(
    ui: &mut Ui,
    panel: &Panel<'_>,
    view: &ViewOptions,
    textures: &mut TextureCache,
    id: &str,
) {
    let (run, step) = (panel.run, panel.step);
    let Some(x) = run.state(step) else {
        ui.label("waiting for the first step…");
        return;
    };
    let sigma = state_sigma(run, step);
    // Plots keep their bounds in memory: a new data set or sigma range gets a fresh plot.
    let id = format!(
        "{id}-{}-{}-{}",
        run.data.label, run.spec.schedule.sigma_min, run.spec.schedule.sigma_max
    );
    let id = id.as_str();
    ui.horizontal_wrapped(|ui| {
        ui.label(
            RichText::new(format!(
                "{}: x_{step} of {}, σ = {}{}",
                panel.title,
                run.spec.schedule.steps,
                format_number(sigma),
                if run.is_running() { "  (running)" } else { "" }
            ))
            .color(panel.color),
        );
        if panel.overlay.is_some() {
            ui.label(RichText::new("+ baseline (blue)").color(BASELINE));
        }
        if !panel.diverged.is_empty() {
            ui.label(
                RichText::new(format!(
                    "{} of {} samples diverged (red; pinned to the data's frame when beyond it)",
                    panel.diverged.len(),
                    x.rows
                ))
                .color(DIVERGED),
            );
        }
    });
    if run.data.image.is_some() {
        images(ui, run, step, x, textures);
    } else if x.dim == 1 {
        one_d(ui, panel, view, id);
    } else {
        two_d(ui, panel, x, view, id);
    }
}

/// `v` inside `[lo, hi]` (NaN to the middle): a far-off point drawn at the frame's edge.
fn pin_to(v: f64, [lo, hi]: [f64; 2]) -> f64 {
    if v.is_nan() {
        0.5 * (lo + hi)
    } else {
        v.clamp(lo, hi)
    }
}

/// (x, y) of the first two coordinates of `rows` rows of `b` (y = 0 for 1-D data).
fn xy_rows(b: &Batch, rows: impl Iterator<Item = usize>) -> Vec<[f64; 2]> {
    rows.filter(|&r| r < b.rows)
        .map(|r| {
            let row = b.row(r);
            [row[0], row.get(1).copied().unwrap_or(0.0)]
        })
        .collect()
}

/// Data bounds (x range, y range) of the first two coordinates, padded.
fn data_bounds(run: &RunRecord) -> ([f64; 2], [f64; 2]) {
    let pts = &run.data.points;
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for j in 0..pts.n {
        let row = pts.row(j);
        for k in 0..pts.dim.min(2) {
            lo[k] = lo[k].min(row[k]);
            hi[k] = hi[k].max(row[k]);
        }
    }
    let pad = |a: f64, b: f64| {
        if !(a.is_finite() && b.is_finite()) {
            return [-3.0, 3.0];
        }
        let m = 0.2 * (b - a).max(0.5);
        [a - m, b + m]
    };
    (pad(lo[0], hi[0]), pad(lo[1], hi[1]))
}

fn two_d(ui: &mut Ui, panel: &Panel<'_>, x: &Batch, view: &ViewOptions, id: &str) {
    let (run, step) = (panel.run, panel.step);
    let (bx, by) = data_bounds(run);
    let rows = x.rows.min(MAX_POINTS);
    let xy = |b: &Batch, r: usize| {
        let row = b.row(r);
        [row[0], row.get(1).copied().unwrap_or(0.0)]
    };
    let data: Vec<[f64; 2]> = if view.show_data {
        let pts = &run.data.points;
        // A stride keeps big sets cheap to draw.
        let stride = pts.n.div_ceil(MAX_DATA_POINTS).max(1);
        (0..pts.n)
            .step_by(stride)
            .map(|j| {
                let row = pts.row(j);
                [row[0], row.get(1).copied().unwrap_or(0.0)]
            })
            .collect()
    } else {
        Vec::new()
    };
    let paths: Vec<Vec<[f64; 2]>> = if view.show_paths {
        (0..x.rows.min(view.paths))
            .map(|r| {
                (0..=step)
                    .filter_map(|s| run.state(s))
                    .map(|b| xy(b, r))
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    let current = xy_rows(x, 0..rows);
    let denoised = denoised_at(run, step).filter(|_| view.show_denoised);
    let den_points: Option<Vec<[f64; 2]>> = denoised.map(|d| (0..rows).map(|r| xy(d, r)).collect());
    let arrows = match (view.show_arrows, run.steps.get(step)) {
        (true, Some(snap)) if snap.sigma > 0.0 => {
            // Euler step toward D: x + (1 - sigma_next/sigma)(D - x), the ODE direction scaled to this step.
            let f = 1.0 - snap.sigma_next / snap.sigma;
            let n = x.rows.min(MAX_ARROWS);
            let origins: Vec<[f64; 2]> = (0..n).map(|r| xy(x, r)).collect();
            let tips: Vec<[f64; 2]> = (0..n)
                .map(|r| {
                    let (a, d) = (xy(x, r), xy(&snap.denoised, r));
                    [a[0] + f * (d[0] - a[0]), a[1] + f * (d[1] - a[1])]
                })
                .collect();
            Some((origins, tips))
        }
        _ => None,
    };
    if x.dim > 2 {
        ui.label(RichText::new(format!("first two of {} coordinates", x.dim)).weak());
    }
    // Diverged samples lie far outside the data's frame (and may be past MAX_POINTS): each is
    // drawn, pinned to the frame's edge when beyond it, so the count in the title can be seen.
    let diverged: Vec<[f64; 2]> = xy_rows(x, panel.diverged.iter().copied().take(MAX_POINTS))
        .into_iter()
        .map(|[a, b]| [pin_to(a, bx), pin_to(b, by)])
        .collect();
    let overlay = panel
        .overlay
        .and_then(|(b, s)| b.state(s))
        .map(|b| xy_rows(b, 0..b.rows.min(MAX_POINTS)));
    let radius = plot_style::size(ui, 1.8);
    let path_width = plot_style::size(ui, 1.0);
    plot_style::show(
        ui,
        Plot::new(id)
            // Thousands of points: hover lines would only add clutter.
            .show_crosshair(false)
            .data_aspect(1.0)
            .default_x_bounds(bx[0], bx[1])
            .default_y_bounds(by[0], by[1]),
        |plot| {
            if !data.is_empty() {
                plot.points(Points::new("data", data).color(DATA).radius(1.2));
            }
            for (r, path) in paths.into_iter().enumerate() {
                plot.line(
                    Line::new("paths", path)
                        .id(("path", r))
                        .color(faint(panel.color, 70))
                        .width(path_width)
                        .allow_hover(false),
                );
            }
            if let Some((origins, tips)) = arrows {
                plot.arrows(
                    Arrows::new("ODE direction", origins, tips)
                        .color(faint(Color32::WHITE, 150))
                        .tip_length(5.0),
                );
            }
            StatePoints {
                denoised: den_points.map(|d| (d, 0.9 * radius)),
                overlay,
                current,
                diverged,
            }
            .draw(plot, panel.color, radius);
        },
    );
}

/// Where state s sits on the 1-D plot's x axis: log10 sigma, the final state half a decade past
/// the last non-zero sigma.
fn one_d_position(run: &RunRecord, s: usize) -> f64 {
    let sigma = state_sigma(run, s);
    if sigma > 0.0 {
        sigma.log10()
    } else {
        let last = run
            .steps
            .iter()
            .map(|t| t.sigma)
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        if last.is_finite() {
            last.log10() - 0.5
        } else {
            -3.0
        }
    }
}

fn one_d(ui: &mut Ui, panel: &Panel<'_>, view: &ViewOptions, id: &str) {
    let (run, step) = (panel.run, panel.step);
    let (bx, _) = data_bounds(run);
    let Some(x0) = run.state(0) else { return };
    let rows = x0.rows.min(view.paths.max(1));
    let positions: Vec<f64> = (0..=step).map(|s| one_d_position(run, s)).collect();
    let lines: Vec<Vec<[f64; 2]>> = (0..rows)
        .map(|r| {
            (0..=step)
                .filter_map(|s| run.state(s).map(|b| [positions[s], b.row(r)[0]]))
                .collect()
        })
        .collect();
    let here = positions.last().copied().unwrap_or(0.0);
    let current: Vec<[f64; 2]> = run.state(step).map_or_else(Vec::new, |b| {
        (0..b.rows.min(MAX_POINTS))
            .map(|r| [here, b.row(r)[0]])
            .collect()
    });
    let den: Option<Vec<[f64; 2]>> =
        denoised_at(run, step)
            .filter(|_| view.show_denoised)
            .map(|d| {
                (0..d.rows.min(MAX_POINTS))
                    .map(|r| [here, d.row(r)[0]])
                    .collect()
            });
    let levels: Vec<f64> = if run.data.points.n <= 32 {
        run.data.points.values.clone()
    } else {
        Vec::new()
    };
    // From the schedule, not the partial run: the plot keeps its first bounds.
    let top = run.spec.schedule.sigma_max.max(1e-3).log10() + 0.1;
    let bottom = run.spec.schedule.sigma_min.max(1e-6).log10() - 0.6;
    let at = |b: &Batch, rows: &mut dyn Iterator<Item = usize>| -> Vec<[f64; 2]> {
        rows.filter(|&r| r < b.rows)
            .map(|r| [here, b.row(r)[0]])
            .collect()
    };
    let frame = [bx[0] - 1.5, bx[1] + 1.5];
    let diverged: Vec<[f64; 2]> = run
        .state(step)
        .map(|b| at(b, &mut panel.diverged.iter().copied().take(MAX_POINTS)))
        .unwrap_or_default()
        .into_iter()
        .map(|[s, v]| [s, pin_to(v, frame)])
        .collect();
    let overlay: Option<Vec<[f64; 2]>> = panel
        .overlay
        .and_then(|(b, s)| b.state(s))
        .map(|b| at(b, &mut (0..b.rows.min(MAX_POINTS))));
    let radius = plot_style::size(ui, 2.0);
    let path_width = plot_style::size(ui, 1.0);
    ui.label(RichText::new("EDM fig. 3 (Karras et al. 2022, arXiv 2206.00364): x against σ (log axis, noise on the left; the final state at the right edge is σ = 0)").weak());
    let plot = Plot::new(id)
        .invert_x(true)
        .default_x_bounds(bottom.min(top - 1.0), top)
        .default_y_bounds(frame[0], frame[1])
        .x_axis_label("σ")
        .label_formatter(plot_style::value_hover(("σ", true), ("x", false)));
    plot_style::show(ui, plot_style::log_x(plot), |plot| {
        for (k, y) in levels.into_iter().enumerate() {
            plot.hline(HLine::new("data", y).id(("level", k)).color(DATA));
        }
        for (r, line) in lines.into_iter().enumerate() {
            if view.show_paths {
                plot.line(
                    Line::new("trajectories", line)
                        .id(("traj", r))
                        .color(faint(panel.color, 90))
                        .width(path_width)
                        .allow_hover(false),
                );
            }
        }
        plot.vline(
            VLine::new("shown step", here)
                .color(SHOWN)
                .width(0.75 * radius)
                .allow_hover(false),
        );
        StatePoints {
            denoised: den.map(|d| (d, radius)),
            overlay,
            current,
            diverged,
        }
        .draw(plot, panel.color, radius);
    });
}

/// A state's points in plot coordinates, drawn over its paths in this order.
struct StatePoints {
    /// D(x_i), with its marker radius.
    denoised: Option<(Vec<[f64; 2]>, f32)>,
    /// The pinned baseline's state (overlay mode).
    overlay: Option<Vec<[f64; 2]>>,
    current: Vec<[f64; 2]>,
    /// Diverged samples, drawn larger and red on top.
    diverged: Vec<[f64; 2]>,
}

impl StatePoints {
    fn draw(self, plot: &mut PlotUi<'_>, color: Color32, radius: f32) {
        if let Some((d, r)) = self.denoised {
            plot.points(Points::new("D(x_i)", d).color(DENOISED).radius(r));
        }
        if let Some(b) = self.overlay {
            plot.points(
                Points::new("baseline x_i", b)
                    .color(BASELINE)
                    .radius(radius),
            );
        }
        plot.points(Points::new("x_i", self.current).color(color).radius(radius));
        if !self.diverged.is_empty() {
            plot.points(
                Points::new("diverged", self.diverged)
                    .color(DIVERGED)
                    .radius(1.4 * radius),
            );
        }
    }
}

fn images(ui: &mut Ui, run: &RunRecord, step: usize, x: &Batch, textures: &mut TextureCache) {
    let height = ui.available_height();
    let width = ui.available_width();
    // A tall, narrow area (the Overview's half) stacks x_i over D(x_i), and the final samples
    // fill it with more images: the space under a square grid is used.
    let tall = height > 1.2 * width;
    let den_batch = denoised_at(run, step);
    let layout = if tall && den_batch.is_none() {
        GridLayout::filling(width, height - 40.0)
    } else {
        GridLayout::SQUARE
    };
    let state = textures.grid(ui, run, step, false, x, layout);
    let den = den_batch.and_then(|d| textures.grid(ui, run, step, true, d, layout));
    let count = x.rows.min(layout.images);
    let caption = format!("x_{step} ({count} of {}, clipped to [−1, 1])", x.rows);
    match den {
        Some(den) if tall => {
            ui.label(caption);
            let half = 0.5 * height - 10.0;
            if let Some(t) = state {
                fit_image(ui, &t, half, &format!("x_{step} as an image grid"));
            }
            ui.label(format!("D(x_{step})"));
            fit_image(ui, &den, half, &format!("D(x_{step}) as an image grid"));
        }
        Some(den) => ui.columns(2, |cols| {
            cols[0].label(caption);
            if let Some(t) = state {
                fit_image(
                    &mut cols[0],
                    &t,
                    height,
                    &format!("x_{step} as an image grid"),
                );
            }
            cols[1].label(format!("D(x_{step})"));
            fit_image(
                &mut cols[1],
                &den,
                height,
                &format!("D(x_{step}) as an image grid"),
            );
        }),
        None => {
            // The final state has no D (at σ = 0, D(x_N) = x_N): the grid gets the whole area.
            ui.label(format!("{caption}: the final samples"));
            if let Some(t) = state {
                fit_image(ui, &t, height, &format!("x_{step} as an image grid"));
            }
        }
    }
}

/// Shows a texture as large as the column allows, keeping its aspect ratio.
fn fit_image(ui: &mut Ui, texture: &TextureHandle, max_height: f32, alt: &str) {
    let size = texture.size_vec2();
    let scale = (ui.available_width() / size.x).min((max_height - 40.0).max(64.0) / size.y);
    ui.add(
        egui::Image::from_texture(texture)
            .fit_to_exact_size(size * scale.max(0.1))
            .alt_text(alt),
    );
}
