//! Distances -> weights -> weighted sums: the ideal denoiser's softmax and NAG's marginal.

use super::distances::{dot_lanes, min_of, span_distances, sum_of};
use super::layout::{PreparedSet, SMALL_DIM};
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

/// NAG's marginal sums of one row of distances through `table` in one pass (Z, sum w, sum w y
/// per column), where the CPU reads the table with AVX-512; `None`: the separate passes.
#[inline(always)]
fn sums_in_one_pass<T: Real, const FMA: bool>(
    row: &[T],
    table: &MarginalTable,
    columns: &[&[T]],
) -> Option<(f64, f64, [f64; TABLE_MAX_DIM])> {
    let d_min = min_of(row);
    if d_min == T::INFINITY {
        return None;
    }
    weigh_and_sum_tabled::<T, FMA>(row, d_min, table, columns)
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
    // Plain loops, not iterator closures: closures are not always inlined into the
    // target-feature wrapper, and would then run without AVX / FMA.
    let (mut dist, first, width) = span_distances::<T, FMA>(set, x, rows, span);
    let dim = set.dim;
    let table = set.marginal.get::<T>(weighting, dim);
    let mut normalisers = Vec::with_capacity(rows.len());
    let mut sums = Vec::with_capacity(rows.len());
    let mut weighted = vec![0.0; rows.len() * dim];
    let col_width = set.columns.len() / dim;
    // The span's columns, for NAG's table read and summed in one pass.
    let mut columns: [&[T]; TABLE_MAX_DIM] = [&[]; TABLE_MAX_DIM];
    if dim <= TABLE_MAX_DIM {
        for k in 0..dim {
            columns[k] = &set.columns[k * col_width + first..k * col_width + first + width];
        }
    }
    // Rows whose weighted sums that pass gave (their weights never stored).
    let mut summed = vec![false; rows.len()];
    for r in 0..rows.len() {
        let row = &mut dist[r * width..(r + 1) * width];
        if let Some(table) = table.as_deref()
            && dim <= TABLE_MAX_DIM
            && let Some((z, w, y)) = sums_in_one_pass::<T, FMA>(row, table, &columns[..dim])
        {
            normalisers.push(z);
            sums.push(w);
            weighted[r * dim..(r + 1) * dim].copy_from_slice(&y[..dim]);
            summed[r] = true;
            continue;
        }
        normalisers.push(weigh_row::<T, FMA>(row, weighting, dim, table.as_deref()));
        sums.push(sum_of(row));
    }
    if dim <= SMALL_DIM {
        // One dot product per column, vectorised along the data.
        for r in 0..rows.len() {
            if summed[r] {
                continue;
            }
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
