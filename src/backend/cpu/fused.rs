//! The softmax of low-dimensional data (D <= FUSED_MAX_DIM) where every point is in reach (large
//! sigma: the grid has nothing to prune), fused: per group of ROWS rows, one pass over the span
//! finds each row's nearest squared distance, a second recomputes the distances (bit for bit the
//! same: the same operations in the same order as the explicit path's) and accumulates the
//! weights and weighted sums in registers. No distance matrix is written.

use super::layout::{LANES, PreparedSet};
use super::real::Real;
use crate::backend::{Span, WeightedRow};

/// Dimensions up to this take the fused kernel.
pub(super) const FUSED_MAX_DIM: usize = 3;

/// Rows per group: their accumulators (1 + D lane vectors each) stay in registers.
const ROWS: usize = 4;

/// Squared distances of ROWS rows to one block of LANES points in the column layout.
#[inline(always)]
fn block_distances<T: Real, const FMA: bool, const D: usize>(
    x: &[[T; D]; ROWS],
    columns: &[T],
    col_width: usize,
    offset: usize,
) -> [[T; LANES]; ROWS] {
    let mut acc = [[T::ZERO; LANES]; ROWS];
    for k in 0..D {
        let Ok(col) = <&[T; LANES]>::try_from(
            &columns[k * col_width + offset..k * col_width + offset + LANES],
        ) else {
            return acc;
        };
        for r in 0..ROWS {
            for l in 0..LANES {
                let t = x[r][k] - col[l];
                acc[r][l] = t.fused::<FMA>(t, acc[r][l]);
            }
        }
    }
    acc
}

/// Lanes of block `b` outside the span (or past the data) get +inf.
#[inline(always)]
fn mask_block<T: Real>(d: &mut [[T; LANES]; ROWS], b: usize, span: Span) {
    let first = b * LANES;
    if first >= span.start && first + LANES <= span.end {
        return;
    }
    for l in 0..LANES {
        let j = first + l;
        if j < span.start || j >= span.end {
            for row in d.iter_mut() {
                row[l] = T::INFINITY;
            }
        }
    }
}

/// The softmax at `sigma` of up to ROWS rows (`x`, padded with copies of the last row) over the
/// span, for data of D dimensions.
#[inline(always)]
fn softmax_group<T: Real, const FMA: bool, const D: usize>(
    set: &PreparedSet<T>,
    x: &[[T; D]; ROWS],
    span: Span,
    sigma: f64,
) -> [WeightedRow; ROWS] {
    let col_width = set.columns.len() / D.max(1);
    let (b0, b1) = (span.start / LANES, span.end.div_ceil(LANES));
    // Pass 1: the nearest squared distance of every row.
    let mut mins = [[T::INFINITY; LANES]; ROWS];
    for b in b0..b1 {
        let mut d = block_distances::<T, FMA, D>(x, &set.columns, col_width, b * LANES);
        mask_block(&mut d, b, span);
        for r in 0..ROWS {
            for l in 0..LANES {
                mins[r][l] = mins[r][l].min(d[r][l]);
            }
        }
    }
    let d_min: [T; ROWS] =
        std::array::from_fn(|r| mins[r].iter().fold(T::INFINITY, |m, &v| m.min(v)));
    // Pass 2: weights and weighted sums.
    let c = T::from_f64(-1.0 / (2.0 * sigma * sigma));
    let cut = T::from_f64(2.0 * sigma * sigma * T::CUTOFF);
    let mut sums = [[T::ZERO; LANES]; ROWS];
    let mut moments = [[[T::ZERO; LANES]; D]; ROWS];
    for b in b0..b1 {
        let mut d = block_distances::<T, FMA, D>(x, &set.columns, col_width, b * LANES);
        mask_block(&mut d, b, span);
        for r in 0..ROWS {
            for l in 0..LANES {
                let gap = d[r][l] - d_min[r];
                let e = (gap * c).exp();
                let w = if gap <= cut { e } else { T::ZERO };
                sums[r][l] = sums[r][l] + w;
                for k in 0..D {
                    let y = set.columns[k * col_width + b * LANES + l];
                    moments[r][k][l] = w.fused::<FMA>(y, moments[r][k][l]);
                }
            }
        }
    }
    std::array::from_fn(|r| {
        let weight_sum: f64 = sums[r].iter().map(|v| v.to_f64()).sum();
        WeightedRow {
            weighted: (0..D)
                .map(|k| moments[r][k].iter().map(|v| v.to_f64()).sum())
                .collect(),
            weight_sum,
            normaliser: weight_sum,
        }
    })
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

#[inline(always)]
fn fused_rows<T: Real, const FMA: bool, const D: usize>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    sigma: f64,
) -> Vec<WeightedRow> {
    let mut out = Vec::with_capacity(rows.len());
    for group in rows.chunks(ROWS) {
        let xs: [[T; D]; ROWS] = std::array::from_fn(|q| {
            let r = group[q.min(group.len() - 1)];
            std::array::from_fn(|k| x[r * D + k])
        });
        let done = softmax_group::<T, FMA, D>(set, &xs, span, sigma);
        out.extend(done.into_iter().take(group.len()));
    }
    out
}
