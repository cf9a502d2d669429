//! Low-dimensional data (D <= 3): a uniform grid over a span's points, so that at small sigma a
//! row visits only the points within its weighting's reach, with explicit distances: the same
//! weights as the brute-force path (points beyond the reach carry less than e^-CUTOFF of the
//! nearest point's weight, and are the only ones left out).

use super::distances::explicit_distance;
use super::real::Real;
use super::weights::{Reach, weigh_gaps};
use crate::backend::{Span, WeightedRow, Weighting};

/// Dimensions up to this get the spatial index.
pub(super) const GRID_MAX_DIM: usize = 3;

/// The grid is used when the ball a row must visit covers at most this fraction of the data's
/// bounding box; wider reaches take the dense path, whose vectorised pass over every point beat
/// the grid's visits above 2% (moons, 2048 x 4096, Heun 18: 0.25 -> 0.02 took sigma 0.14 from
/// 17 to 12 ms a step, the run from 0.181 to 0.167 s).
const MAX_COVER: f64 = 0.02;

/// A span's points bucketed into cubic cells of side `cell`.
pub(super) struct Grid<T> {
    dim: usize,
    lo: [f64; GRID_MAX_DIM],
    cell: f64,
    /// Cells per axis (1 on unused axes).
    shape: [usize; GRID_MAX_DIM],
    /// starts[c]..starts[c + 1]: cell c's points in `order` / `points`.
    starts: Vec<usize>,
    /// Span-relative index of each point, in cell order.
    order: Vec<usize>,
    /// The points' coordinates, in cell order ([points][dim]).
    points: Vec<T>,
}

impl<T: Real> Grid<T> {
    /// A grid for the rows of `span` whose cells suit reaches of about `radius`, or `None` when a
    /// ball of that radius covers more than MAX_COVER of the bounding box (no pruning to gain).
    pub fn new(rows: &[T], dim: usize, span: Span, radius: f64) -> Option<Self> {
        if dim == 0 || dim > GRID_MAX_DIM || span.is_empty() || !radius.is_finite() {
            return None;
        }
        let data = &rows[span.start * dim..span.end * dim];
        let mut lo = [0.0; GRID_MAX_DIM];
        let mut hi = [0.0; GRID_MAX_DIM];
        for k in 0..dim {
            lo[k] = f64::INFINITY;
            hi[k] = f64::NEG_INFINITY;
        }
        for p in data.chunks_exact(dim) {
            for k in 0..dim {
                lo[k] = lo[k].min(p[k].to_f64());
                hi[k] = hi[k].max(p[k].to_f64());
            }
        }
        let mut volume = 1.0;
        let mut ball = 1.0;
        for k in 0..dim {
            let extent = (hi[k] - lo[k]).max(1e-12);
            volume *= extent;
            ball *= (2.0 * radius).min(extent);
        }
        if ball > MAX_COVER * volume {
            return None;
        }
        // Cells of about the reach, but no more than ~2 per point.
        let n = span.len();
        let finest = (volume / (2 * n) as f64).powf(1.0 / dim as f64);
        let cell = radius.max(finest).max(1e-300);
        let mut shape = [1usize; GRID_MAX_DIM];
        for k in 0..dim {
            shape[k] = (((hi[k] - lo[k]) / cell).floor() as usize + 1).min(1 << 20);
        }
        let cells: usize = shape.iter().product();
        let mut grid = Grid {
            dim,
            lo,
            cell,
            shape,
            starts: vec![0; cells + 1],
            order: vec![0; n],
            points: vec![T::ZERO; n * dim],
        };
        let of: Vec<usize> = data
            .chunks_exact(dim)
            .map(|p| grid.flat(grid.coords(p)))
            .collect();
        for &c in &of {
            grid.starts[c + 1] += 1;
        }
        for c in 0..cells {
            grid.starts[c + 1] += grid.starts[c];
        }
        let mut next = grid.starts.clone();
        for (j, &c) in of.iter().enumerate() {
            let at = next[c];
            next[c] += 1;
            grid.order[at] = j;
            grid.points[at * dim..(at + 1) * dim].copy_from_slice(&data[j * dim..(j + 1) * dim]);
        }
        Some(grid)
    }

    /// The cell of a point (clamped to the grid).
    fn coords(&self, p: &[T]) -> [usize; GRID_MAX_DIM] {
        let mut c = [0usize; GRID_MAX_DIM];
        for k in 0..self.dim {
            let v = ((p[k].to_f64() - self.lo[k]) / self.cell).floor();
            c[k] = (v.max(0.0) as usize).min(self.shape[k] - 1);
        }
        c
    }

    fn flat(&self, c: [usize; GRID_MAX_DIM]) -> usize {
        (c[0] * self.shape[1] + c[1]) * self.shape[2] + c[2]
    }

    /// Squared distance from x to the box of cell c.
    #[inline(always)]
    fn box_distance(&self, x: &[T], c: [usize; GRID_MAX_DIM]) -> f64 {
        let mut d = 0.0;
        for k in 0..self.dim {
            let a = self.lo[k] + c[k] as f64 * self.cell;
            let b = a + self.cell;
            let v = x[k].to_f64();
            let t = if v < a {
                a - v
            } else if v > b {
                v - b
            } else {
                0.0
            };
            d += t * t;
        }
        d
    }

    /// Calls `visit(cell)` for every cell of the box [lo, hi] (inclusive, per axis).
    /// The squared distance from x to its nearest point, by rings of cells around x's cell.
    /// Inlined into the kernels' target-feature copies.
    #[inline(always)]
    fn nearest<const FMA: bool>(&self, x: &[T]) -> T {
        let dim = self.dim;
        let centre = self.coords(x);
        let mut best = T::INFINITY;
        let widest = self.shape.iter().copied().max().unwrap_or(1);
        for ring in 0..widest {
            let mut lo = [0usize; GRID_MAX_DIM];
            let mut hi = [0usize; GRID_MAX_DIM];
            let mut nearest_of_ring = f64::INFINITY;
            for k in 0..GRID_MAX_DIM {
                lo[k] = centre[k].saturating_sub(ring);
                hi[k] = (centre[k] + ring).min(self.shape[k] - 1);
            }
            // Loops, not closures, here and in `grid_row`: a closure is compiled without the
            // kernel's target features (its FMAs became library calls).
            for c in CellBox::new(lo, hi) {
                let on_ring = (0..GRID_MAX_DIM).any(|k| c[k].abs_diff(centre[k]) == ring);
                if !on_ring {
                    continue;
                }
                let gap = self.box_distance(x, c);
                nearest_of_ring = nearest_of_ring.min(gap);
                if T::from_f64(gap) > best {
                    continue;
                }
                let cell = self.flat(c);
                for at in self.starts[cell]..self.starts[cell + 1] {
                    let d = explicit_distance::<T, FMA>(x, &self.points[at * dim..(at + 1) * dim]);
                    if d < best {
                        best = d;
                    }
                }
            }
            // Every later ring is at least as far as this one's nearest box.
            if nearest_of_ring > best.to_f64() * (1.0 + 4.0 * T::EPSILON) {
                break;
            }
        }
        best
    }
}

/// The cells of the box [lo, hi] (inclusive, per axis), the last axis fastest.
struct CellBox {
    lo: [usize; GRID_MAX_DIM],
    hi: [usize; GRID_MAX_DIM],
    next: Option<[usize; GRID_MAX_DIM]>,
}

impl CellBox {
    #[inline(always)]
    fn new(lo: [usize; GRID_MAX_DIM], hi: [usize; GRID_MAX_DIM]) -> Self {
        let empty = (0..GRID_MAX_DIM).any(|k| lo[k] > hi[k]);
        CellBox {
            lo,
            hi,
            next: (!empty).then_some(lo),
        }
    }
}

impl Iterator for CellBox {
    type Item = [usize; GRID_MAX_DIM];

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let cell = self.next?;
        let mut following = cell;
        let mut axis = GRID_MAX_DIM;
        self.next = loop {
            if axis == 0 {
                break None;
            }
            axis -= 1;
            if following[axis] < self.hi[axis] {
                following[axis] += 1;
                break Some(following);
            }
            following[axis] = self.lo[axis];
        };
        Some(cell)
    }
}

/// One row through the grid: the exact nearest squared distance, then every point within the
/// weighting's reach, weighed and summed.
#[inline(always)]
pub(super) fn grid_row<T: Real, const FMA: bool>(
    grid: &Grid<T>,
    rows: &[T],
    span: Span,
    x: &[T],
    weighting: &Weighting,
) -> WeightedRow {
    let dim = grid.dim;
    let d_min = grid.nearest::<FMA>(x);
    let reach = Reach::of::<T>(weighting, (d_min.to_f64(), d_min.to_f64()), dim, 0.0);
    // Padded by a few ulps so that rounding never drops a point that is within reach.
    let radius2 = (d_min.to_f64() + reach.gap_cut) * (1.0 + 8.0 * T::EPSILON);
    let radius = radius2.sqrt();
    let mut lo = [0usize; GRID_MAX_DIM];
    let mut hi = [0usize; GRID_MAX_DIM];
    for k in 0..dim {
        let v = x[k].to_f64();
        let a = ((v - radius - grid.lo[k]) / grid.cell).floor().max(0.0) as usize;
        let b = ((v + radius - grid.lo[k]) / grid.cell).floor().max(0.0) as usize;
        lo[k] = a.min(grid.shape[k] - 1);
        hi[k] = b.min(grid.shape[k] - 1);
    }
    let mut index = Vec::new();
    let mut gaps = Vec::new();
    for c in CellBox::new(lo, hi) {
        if grid.box_distance(x, c) > radius2 {
            continue;
        }
        let cell = grid.flat(c);
        for at in grid.starts[cell]..grid.starts[cell + 1] {
            let d = explicit_distance::<T, FMA>(x, &grid.points[at * dim..(at + 1) * dim]);
            if d.to_f64() <= radius2 {
                index.push(at);
                gaps.push(d - d_min);
            }
        }
    }
    let normaliser = weigh_gaps::<T, FMA>(&mut gaps, d_min.to_f64(), weighting, dim);
    let mut acc = [T::ZERO; GRID_MAX_DIM];
    let mut weight_sum = 0.0;
    for (&at, &w) in index.iter().zip(&gaps) {
        let j = span.start + grid.order[at];
        let y = &rows[j * dim..(j + 1) * dim];
        for k in 0..dim {
            acc[k] = w.fused::<FMA>(y[k], acc[k]);
        }
        weight_sum += w.to_f64();
    }
    WeightedRow {
        weighted: acc[..dim].iter().map(|v| v.to_f64()).collect(),
        weight_sum,
        normaliser,
    }
}
