//! The softmax of low-dimensional data (D <= FUSED_MAX_DIM) over every point of a span (`Path::Dense`;
//! `tiles.rs` runs the same arithmetic on the blocks within reach), fused: per row, one pass over the span finds the nearest
//! squared distance, a second recomputes the distances (bit for bit the same: the same operations
//! in the same order as the explicit path's) and accumulates the weights and weighted sums in
//! LANES-wide registers. No distance matrix is written.
//!
//! One row at a time, lanes innermost: with several rows per pass (the first version) LLVM fully
//! unrolled rows x lanes and vectorised across the rows, leaving the exps scalar (10x slower).

use super::layout::{LANES, PreparedSet};
use super::real::Real;
use crate::backend::{Span, WeightedRow};

/// Dimensions up to this take the fused kernel.
pub(super) const FUSED_MAX_DIM: usize = 3;

/// The D columns of block `b` (LANES points each), or `None` past the data.
#[inline(always)]
fn block_of<'a, T: Real, const D: usize>(
    columns: &[&'a [T]; D],
    b: usize,
) -> Option<[&'a [T; LANES]; D]> {
    let at = b * LANES..(b + 1) * LANES;
    let first: &[T; LANES] = columns[0].get(at.clone())?.try_into().ok()?;
    let mut ys = [first; D];
    for k in 1..D {
        ys[k] = columns[k].get(at.clone())?.try_into().ok()?;
    }
    Some(ys)
}

/// Squared distances of one row to one block of points, as the explicit path computes them.
#[inline(always)]
pub(super) fn block_distances<T: Real, const FMA: bool, const D: usize>(
    x: &[T; D],
    ys: &[&[T; LANES]; D],
    pad: Option<&[T; LANES]>,
) -> [T; LANES] {
    let mut acc = [T::ZERO; LANES];
    for k in 0..D {
        for l in 0..LANES {
            let t = x[k] - ys[k][l];
            acc[l] = t.fused::<FMA>(t, acc[l]);
        }
    }
    if let Some(pad) = pad {
        for l in 0..LANES {
            acc[l] = acc[l] + pad[l];
        }
    }
    acc
}

/// +inf on the lanes of block `b` outside the span, 0 on the others; `None` for blocks wholly
/// inside it (all but the first and last).
#[inline(always)]
fn edge_pad<T: Real>(b: usize, span: Span) -> Option<[T; LANES]> {
    let first = b * LANES;
    if first >= span.start && first + LANES <= span.end {
        return None;
    }
    let mut pad = [T::ZERO; LANES];
    for (l, p) in pad.iter_mut().enumerate() {
        if first + l < span.start || first + l >= span.end {
            *p = T::INFINITY;
        }
    }
    Some(pad)
}

/// The nearest squared distance of one row to the span's points, by explicit differences.
#[inline(always)]
fn nearest_in_span<T: Real, const FMA: bool, const D: usize>(
    columns: &[&[T]; D],
    x: &[T; D],
    span: Span,
) -> T {
    let (b0, b1) = (span.start / LANES, span.end.div_ceil(LANES));
    let mut nearest = BlockMin::<T>::new();
    for b in b0..b1 {
        let Some(ys) = block_of(columns, b) else {
            break;
        };
        nearest.add(&block_distances::<T, FMA, D>(
            x,
            &ys,
            edge_pad::<T>(b, span).as_ref(),
        ));
    }
    nearest.finish()
}

/// The smallest of blocks of LANES squared distances, lane by lane.
pub(super) struct BlockMin<T>([T; LANES]);

impl<T: Real> BlockMin<T> {
    #[inline(always)]
    pub(super) fn new() -> Self {
        BlockMin([T::INFINITY; LANES])
    }

    #[inline(always)]
    pub(super) fn add(&mut self, d: &[T; LANES]) {
        for l in 0..LANES {
            self.0[l] = self.0[l].min(d[l]);
        }
    }

    /// The smallest over the lanes.
    #[inline(always)]
    pub(super) fn finish(self) -> T {
        let mut least = T::INFINITY;
        for v in self.0 {
            least = least.min(v);
        }
        least
    }
}

/// The softmax at `sigma` of one row over the span, for data of D dimensions.
#[inline(always)]
fn softmax_row<T: Real, const FMA: bool, const D: usize>(
    columns: &[&[T]; D],
    x: &[T; D],
    span: Span,
    sigma: f64,
) -> WeightedRow {
    let (b0, b1) = (span.start / LANES, span.end.div_ceil(LANES));
    // Pass 1: the nearest squared distance.
    let d_min = nearest_in_span::<T, FMA, D>(columns, x, span);
    // Pass 2: weights and weighted sums.
    let mut sums = BlockSums::<T, D>::new(d_min, sigma);
    for b in b0..b1 {
        let Some(ys) = block_of(columns, b) else {
            break;
        };
        let d = block_distances::<T, FMA, D>(x, &ys, edge_pad::<T>(b, span).as_ref());
        sums.add::<FMA>(&d, &ys);
    }
    sums.finish()
}

/// A row's softmax sums, lane by lane over blocks of LANES points: the weights
/// exp(-(d - d_min) / 2 sigma^2) within the cutoff and the weighted coordinates.
pub(super) struct BlockSums<T, const D: usize> {
    d_min: T,
    scale: T,
    /// Gaps above it weigh less than e^-CUTOFF of the nearest point: exactly zero here.
    pub(super) cut: T,
    sums: [T; LANES],
    moments: [[T; LANES]; D],
}

impl<T: Real, const D: usize> BlockSums<T, D> {
    #[inline(always)]
    pub(super) fn new(d_min: T, sigma: f64) -> Self {
        BlockSums {
            d_min,
            scale: T::from_f64(-1.0 / (2.0 * sigma * sigma)),
            cut: T::from_f64(2.0 * sigma * sigma * T::CUTOFF),
            sums: [T::ZERO; LANES],
            moments: [[T::ZERO; LANES]; D],
        }
    }

    /// One block's squared distances `d` and coordinates `ys`.
    #[inline(always)]
    pub(super) fn add<const FMA: bool>(&mut self, d: &[T; LANES], ys: &[&[T; LANES]; D]) {
        for l in 0..LANES {
            let gap = d[l] - self.d_min;
            let e = (gap * self.scale).exp();
            let w = if gap <= self.cut { e } else { T::ZERO };
            self.sums[l] = self.sums[l] + w;
            for k in 0..D {
                self.moments[k][l] = w.fused::<FMA>(ys[k][l], self.moments[k][l]);
            }
        }
    }

    /// The lanes summed in f64.
    #[inline(always)]
    pub(super) fn finish(self) -> WeightedRow {
        let mut weight_sum = 0.0;
        for v in self.sums {
            weight_sum += v.to_f64();
        }
        let mut weighted = vec![0.0; D];
        for k in 0..D {
            for v in self.moments[k] {
                weighted[k] += v.to_f64();
            }
        }
        WeightedRow {
            weighted,
            weight_sum,
            normaliser: weight_sum,
        }
    }
}

/// The softmax at `sigma` of the batch rows `rows` (of `x`, [rows][dim]) over the span.
#[inline(always)]
pub(super) fn fused_softmax_task<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    sigma: f64,
) -> Vec<WeightedRow> {
    match set.dim {
        1 => fused_rows::<T, FMA, 1>(set, x, rows, span, sigma),
        2 => fused_rows::<T, FMA, 2>(set, x, rows, span, sigma),
        _ => fused_rows::<T, FMA, 3>(set, x, rows, span, sigma),
    }
}

/// The set's D zero-padded columns.
#[inline(always)]
fn columns_of<T: Real, const D: usize>(set: &PreparedSet<T>) -> [&[T]; D] {
    let col_width = set.columns.len() / D;
    let mut columns = [&set.columns[..col_width]; D];
    for k in 1..D {
        columns[k] = &set.columns[k * col_width..(k + 1) * col_width];
    }
    columns
}

// Plain loops, not iterator closures: closures are not always inlined into the target-feature
// wrapper, and would then run without AVX / FMA.
#[inline(always)]
fn fused_rows<T: Real, const FMA: bool, const D: usize>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    sigma: f64,
) -> Vec<WeightedRow> {
    let columns = columns_of::<T, D>(set);
    let mut out = Vec::with_capacity(rows.len());
    for &r in rows {
        let mut xr = [T::ZERO; D];
        xr.copy_from_slice(&x[r * D..(r + 1) * D]);
        out.push(softmax_row::<T, FMA, D>(&columns, &xr, span, sigma));
    }
    out
}
