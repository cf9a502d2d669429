//! Distances -> weights -> weighted sums: the ideal denoiser's softmax and NAG's marginal.

use super::distances::{dot_lanes, min_of, span_distances, sum_of};
use super::layout::{LANES, PreparedSet, SMALL_DIM};
use super::marginal_table::{
    MarginalTable, TABLE_MAX_DIM, weigh_and_sum_tabled, weigh_gaps_tabled,
};
use super::real::Real;
use super::weights::weigh_gaps;
use crate::backend::{Span, WeightedRow, Weighting};

/// Turns one row of distances into weights in place (NAG's marginal through `table` when there is
/// one); returns the normaliser Z.
#[inline(always)]
fn weigh_row<T: Real, const FMA: bool>(
    row: &mut [T],
    weighting: &Weighting,
    dim: usize,
    table: Option<&MarginalTable>,
) -> f64 {
    let d_min = min_of(row);
    if d_min == T::INFINITY {
        row.fill(T::ZERO);
        return 0.0;
    }
    // (d_j - d_min) first: exact near the minimum, where precision matters.
    for v in row.iter_mut() {
        *v = *v - d_min;
    }
    match table {
        Some(table) => weigh_gaps_tabled::<T, FMA>(row, d_min.to_f64(), table),
        None => weigh_gaps::<T, FMA>(row, d_min.to_f64(), weighting, dim),
    }
}

/// One task: distances, weights, weighted sums.
#[inline(always)]
pub(super) fn weighted_rows_task<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    weighting: &Weighting,
) -> Vec<WeightedRow> {
    let dim = set.dim;
    let table = set.marginal.get::<T>(weighting, dim);
    if let Some(table) = table.as_deref()
        && dim <= TABLE_MAX_DIM
    {
        return marginal_rows_task::<T, FMA>(set, x, rows, span, weighting, table);
    }
    separate_passes_task::<T, FMA>(set, x, rows, span, weighting, table.as_deref())
}

/// The span's blocks as a range of points: whole LANES blocks, as `span_distances` lays them.
#[inline(always)]
fn blocks_of(span: Span) -> std::ops::Range<usize> {
    span.start / LANES * LANES..span.end.div_ceil(LANES) * LANES
}

/// NAG's marginal through `table` on data of at most TABLE_MAX_DIM dimensions: each row's sums
/// in one pass with its distances formed in registers (`weigh_and_sum_tabled`), no distance
/// buffer; the rows that pass does not take, in separate passes.
#[inline(always)]
fn marginal_rows_task<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    weighting: &Weighting,
    table: &MarginalTable,
) -> Vec<WeightedRow> {
    let dim = set.dim;
    let blocks = blocks_of(span);
    let col_width = set.columns.len() / dim;
    let mut columns: [&[T]; TABLE_MAX_DIM] = [&[]; TABLE_MAX_DIM];
    for k in 0..dim {
        columns[k] = &set.columns[k * col_width + blocks.start..k * col_width + blocks.end];
    }
    let counted = span.start - blocks.start..span.end - blocks.start;
    let mut out = Vec::with_capacity(rows.len());
    let mut left = Vec::new();
    for (r, &row) in rows.iter().enumerate() {
        let x_row = &x[row * dim..(row + 1) * dim];
        match weigh_and_sum_tabled::<T, FMA>(x_row, &columns[..dim], counted.clone(), table) {
            Some((z, w, y)) => out.push(WeightedRow {
                weighted: y[..dim].to_vec(),
                weight_sum: w,
                normaliser: z,
            }),
            None => {
                left.push(r);
                // Filled in below.
                out.push(WeightedRow {
                    weighted: Vec::new(),
                    weight_sum: 0.0,
                    normaliser: 0.0,
                });
            }
        }
    }
    if !left.is_empty() {
        let left_rows: Vec<usize> = left.iter().map(|&r| rows[r]).collect();
        let done = separate_passes_task::<T, FMA>(set, x, &left_rows, span, weighting, Some(table));
        for (r, row) in left.into_iter().zip(done) {
            out[r] = row;
        }
    }
    out
}

/// Distances into a buffer, weights in place, then the weighted sums (NAG's marginal weights
/// through `table` where there is one).
#[inline(always)]
fn separate_passes_task<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    weighting: &Weighting,
    table: Option<&MarginalTable>,
) -> Vec<WeightedRow> {
    // Plain loops, not iterator closures: closures are not always inlined into the
    // target-feature wrapper, and would then run without AVX / FMA.
    let (mut dist, first, width) = span_distances::<T, FMA>(set, x, rows, span);
    let dim = set.dim;
    let mut normalisers = Vec::with_capacity(rows.len());
    let mut sums = Vec::with_capacity(rows.len());
    let mut weighted = vec![0.0; rows.len() * dim];
    let col_width = set.columns.len() / dim;
    for r in 0..rows.len() {
        let row = &mut dist[r * width..(r + 1) * width];
        normalisers.push(weigh_row::<T, FMA>(row, weighting, dim, table));
        sums.push(sum_of(row));
    }
    if dim <= SMALL_DIM {
        // One dot product per column, vectorised along the data.
        for r in 0..rows.len() {
            let w = &dist[r * width..(r + 1) * width];
            for k in 0..dim {
                let col = &set.columns[k * col_width + first..k * col_width + first + width];
                weighted[r * dim + k] = dot_lanes::<T, FMA>(w, col);
            }
        }
    } else {
        // Data point outer, rows inner: each y_j is read once per task (it stays in L1 while
        // the task's rows use it), and the zero weights beyond the cutoff are skipped.
        let mut acc = vec![T::ZERO; rows.len() * dim];
        let last = (set.n - first).min(width);
        for j in 0..last {
            let y = &set.rows[(first + j) * dim..(first + j + 1) * dim];
            for r in 0..rows.len() {
                let w = dist[r * width + j];
                if w == T::ZERO {
                    continue;
                }
                let a = &mut acc[r * dim..(r + 1) * dim];
                for k in 0..dim {
                    a[k] = w.fused::<FMA>(y[k], a[k]);
                }
            }
        }
        for (o, a) in weighted.iter_mut().zip(&acc) {
            *o = a.to_f64();
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in 0..rows.len() {
        out.push(WeightedRow {
            weighted: weighted[r * dim..(r + 1) * dim].to_vec(),
            weight_sum: sums[r],
            normaliser: normalisers[r],
        });
    }
    out
}
