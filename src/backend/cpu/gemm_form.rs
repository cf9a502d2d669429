//! Distances in GEMM form, exact where it matters (f32 sets of GEMM_MIN_DIM or more dimensions).
//!
//! -|x - y_j|^2 / 2 = l_j - |x - mu|^2 / 2 with the logit l_j = (x - mu).(y_j - mu) - |y_j - mu|^2 / 2,
//! so one matrix product gives every row's logits, and the gap g_j = d_j - d_min = 2 (l_max - l_j).
//! The product's rounding error is bounded per row (`RowMeta::bound`); where a weighting resolves
//! finer than that (small sigma: the softmax is nearly one-hot and near-ties decide it), the
//! candidates whose gap can be within the weighting's reach are recomputed by explicit
//! differences, exactly as the explicit path computes them, and the nearest point is always
//! measured that way. Where many points are within reach (a wide softmax at large sigma), the
//! product's gaps are used as they are: there no logit has |x - y|^2 ~ 0 to lose, and the
//! product's gaps, free of the |x - mu|^2 term, are held to the same 1e-4 against f64 as explicit
//! differences summed in f32 (`tests.rs`, the_gemm_form_matches_explicit_differences_at_every_sigma,
//! prints both errors per set and sigma).

use rayon::prelude::*;

use super::distances::{explicit_distance, max_signed, min_of, sum_in_f64};
use super::gemm::{Threads, product, product_transposed};
use super::layout::{GemmOperands, PreparedSet};
use super::marginal_table::{MarginalTable, weigh_gaps_tabled};
use super::panels::Panels;
use super::real::Real;
use super::weights::{Reach, weigh_gaps};
use crate::backend::{Span, WeightedRow, Weighting};

/// The rows of a batch that share a span, with their gaps to it in GEMM form.
pub(super) struct SpanDistances<T> {
    pub span: Span,
    /// Rows of the batch, in the order of `gaps` and `meta`.
    pub rows: Vec<usize>,
    /// [rows][span.len()]: the gaps 2 (l_max - l_j) from the product.
    pub gaps: Vec<T>,
    pub meta: Vec<RowMeta>,
}

/// What one row needs besides its gaps.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RowMeta {
    /// |x - y_nearest|^2 by explicit differences, `nearest` being the largest logit's point: within
    /// `bound` of the true nearest squared distance.
    pub d_min: f64,
    /// Every product gap is within `bound` of the exact gap of the rounded inputs.
    pub bound: f64,
}

/// One row's logits (x - mu).(y_j - mu) in, gaps out, in place; returns its meta. `y_max` is
/// the largest |y_j - mu| of the span (the same for every row: computed once per product).
#[inline(always)]
pub(super) fn finish_row<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    ops: &GemmOperands<T>,
    x: &[T],
    x_norm: f64,
    y_max: f64,
    span: Span,
    logits: &mut [T],
) -> RowMeta {
    let dim = set.dim;
    let half_norms = &ops.half_norms[span.start..span.end];
    for (l, h) in logits.iter_mut().zip(half_norms) {
        *l = *l - *h;
    }
    let top = max_signed(logits);
    let bottom = min_of(logits);
    let mut nearest = 0;
    for (j, &l) in logits.iter().enumerate() {
        if l == top {
            nearest = j;
            break;
        }
    }
    let two = T::from_f64(2.0);
    for l in logits.iter_mut() {
        *l = (top - *l) * two;
    }
    // The largest gap (rounding is monotone, so it is the smallest logit's).
    let widest = if logits.is_empty() {
        0.0
    } else {
        ((top - bottom) * two).to_f64()
    };
    // |delta l_j| <= gamma_(D+3) (|x||y_j| + |y_j|^2) for the product, its subtraction and the
    // rounded half norm; the centred operands' own rounding adds 2 eps (|x| + |y|)^2 to a distance.
    let u = T::EPSILON;
    let gamma = (dim + 3) as f64 * u / (1.0 - (dim + 3) as f64 * u);
    let bound = 4.0 * gamma * (x_norm * y_max + y_max * y_max)
        + 4.0 * u * (x_norm + y_max).powi(2)
        + 2.0 * u * widest;
    let j = span.start + nearest;
    let d_min = explicit_distance::<T, FMA>(x, &set.rows[j * dim..(j + 1) * dim]).to_f64();
    RowMeta { d_min, bound }
}

/// The weights of one row: dense over the span (written to the row's slot of the batch's weight
/// matrix, summed later by one product for all dense rows), or already summed.
pub(super) enum RowWeights {
    Dense { normaliser: f64, weight_sum: f64 },
    Summed(WeightedRow),
}

impl Default for RowWeights {
    fn default() -> Self {
        RowWeights::Summed(WeightedRow::default())
    }
}

/// A softmax recomputes at most this many candidates by explicit differences (more: it is wide,
/// see the module note).
pub(super) fn recompute_limit(span_len: usize) -> usize {
    (span_len / 8).max(64)
}

/// Gaps compared at once when `recompute` looks for candidates (one mask of u32 bits).
const CANDIDATE_CHUNK: usize = 32;

/// Explicit squared distances of the points whose product gap is within `limit`: (index in span,
/// distance).
#[inline(always)]
fn recompute<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    span: Span,
    gaps: &[T],
    limit: T,
) -> (Vec<usize>, Vec<T>) {
    let dim = set.dim;
    // The candidates first, a compare mask per chunk of gaps and then its set bits: a branch per
    // gap, with the distances in its body, kept the loop's state in memory.
    let mut index = Vec::new();
    let chunks = gaps.chunks_exact(CANDIDATE_CHUNK);
    let rest = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        let mut mask = 0u32;
        for (l, &g) in chunk.iter().enumerate() {
            mask |= u32::from(g <= limit) << l;
        }
        while mask != 0 {
            index.push(c * CANDIDATE_CHUNK + mask.trailing_zeros() as usize);
            mask &= mask - 1;
        }
    }
    let rest_start = gaps.len() - rest.len();
    for (l, &g) in rest.iter().enumerate() {
        if g <= limit {
            index.push(rest_start + l);
        }
    }
    let mut exact = Vec::with_capacity(index.len());
    for &j in &index {
        let y = &set.rows[(span.start + j) * dim..(span.start + j + 1) * dim];
        exact.push(explicit_distance::<T, FMA>(x, y));
    }
    (index, exact)
}

/// Makes a row of product gaps exact where they are within `exact_cut`: those points are
/// recomputed by explicit differences, every gap is taken relative to the exact nearest squared
/// distance, which is returned.
#[inline(always)]
pub(super) fn hybrid_gaps<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    span: Span,
    gaps: &mut [T],
    meta: &RowMeta,
    exact_cut: f64,
) -> f64 {
    if exact_cut <= 0.0 {
        return meta.d_min;
    }
    let (index, exact) =
        recompute::<T, FMA>(set, x, span, gaps, T::from_f64(exact_cut + meta.bound));
    let nearest = exact.iter().map(|d| d.to_f64()).fold(meta.d_min, f64::min);
    // The product's gaps are relative to the point measured as meta.d_min.
    let shift = T::from_f64(meta.d_min - nearest);
    for g in gaps.iter_mut() {
        *g = *g + shift;
    }
    let nearest_t = T::from_f64(nearest);
    for (&j, &d) in index.iter().zip(&exact) {
        gaps[j] = d - nearest_t;
    }
    nearest
}

/// sum_j w_j y_j over the listed points of the span, accumulated in T.
#[inline(always)]
pub(super) fn sparse_sum<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    span: Span,
    index: impl Iterator<Item = (usize, T)>,
) -> (Vec<f64>, f64) {
    let dim = set.dim;
    let mut acc = vec![T::ZERO; dim];
    let mut weight_sum = 0.0;
    for (j, w) in index {
        if w == T::ZERO {
            continue;
        }
        let y = &set.rows[(span.start + j) * dim..(span.start + j + 1) * dim];
        for k in 0..dim {
            acc[k] = w.fused::<FMA>(y[k], acc[k]);
        }
        weight_sum += w.to_f64();
    }
    (acc.iter().map(|v| v.to_f64()).collect(), weight_sum)
}

/// Gaps -> weights in place (NAG's marginal through `table` where there is one); returns Z.
#[inline(always)]
fn weigh<T: Real, const FMA: bool>(
    gaps: &mut [T],
    d_min: f64,
    weighting: &Weighting,
    dim: usize,
    table: Option<&MarginalTable>,
) -> f64 {
    match table {
        Some(table) => weigh_gaps_tabled::<T, FMA>(gaps, d_min, table),
        None => weigh_gaps::<T, FMA>(gaps, d_min, weighting, dim),
    }
}

/// One row's weights from its gaps, with the gaps the weighting resolves finer than the product's
/// bound recomputed by explicit differences; summed at once when sparse, else written to `out`
/// (the row's slot in the weight matrix, as long as `gaps`). `table`: NAG's marginal tabulated
/// for `weighting` (`marginal_table.rs`), else its direct sum over the nodes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn weigh_gemm_row<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    span: Span,
    gaps: &[T],
    meta: &RowMeta,
    weighting: &Weighting,
    table: Option<&MarginalTable>,
    out: &mut [T],
) -> RowWeights {
    let dim = set.dim;
    // d_min is within the bound below the nearest point measured.
    let reach = Reach::of::<T>(
        weighting,
        (meta.d_min - meta.bound, meta.d_min),
        dim,
        meta.bound,
    );
    let mut d_min = meta.d_min;
    // NAG's marginal sees coarse and fine scales at once: the fine ones get exact gaps, the
    // coarse ones the product's.
    let mut hybrid = false;
    if reach.exact_cut > 0.0 {
        let limit = T::from_f64(reach.exact_cut + meta.bound);
        let mut count = 0usize;
        for &g in gaps {
            count += usize::from(g <= limit);
        }
        // All the weight is among the candidates: a sparse row.
        let sparse = reach.gap_cut <= reach.exact_cut;
        if sparse && count <= recompute_limit(span.len()) {
            let (index, mut exact) = recompute::<T, FMA>(set, x, span, gaps, limit);
            let nearest = exact
                .iter()
                .copied()
                .fold(T::INFINITY, |m, v| if v < m { v } else { m });
            for d in exact.iter_mut() {
                *d = *d - nearest;
            }
            let normaliser = weigh::<T, FMA>(&mut exact, nearest.to_f64(), weighting, dim, table);
            let (weighted, weight_sum) =
                sparse_sum::<T, FMA>(set, span, index.iter().copied().zip(exact.iter().copied()));
            return RowWeights::Summed(WeightedRow {
                weighted,
                weight_sum,
                normaliser,
            });
        }
        hybrid = !sparse;
    }
    out.copy_from_slice(gaps);
    if hybrid {
        d_min = hybrid_gaps::<T, FMA>(set, x, span, out, meta, reach.exact_cut);
    }
    let weights = out;
    let normaliser = weigh::<T, FMA>(weights, d_min, weighting, dim, table);
    let mut nonzero = 0usize;
    for &w in weights.iter() {
        nonzero += usize::from(w != T::ZERO);
    }
    if nonzero * 16 <= weights.len() {
        let (weighted, weight_sum) =
            sparse_sum::<T, FMA>(set, span, weights.iter().copied().enumerate());
        return RowWeights::Summed(WeightedRow {
            weighted,
            weight_sum,
            normaliser,
        });
    }
    let weight_sum = sum_in_f64(weights);
    RowWeights::Dense {
        normaliser,
        weight_sum,
    }
}

/// A compiled `finish_row`: (x, |x - mu|, the span's largest |y - mu|, logits) -> the row's meta.
pub(super) type FinishRow<'a, T> = dyn Fn(&[T], f64, f64, &mut [T]) -> RowMeta + Sync + 'a;
/// A compiled `weigh_gemm_row`: (x, gaps, meta, the row's slot for dense weights) -> the row's
/// weights.
pub(super) type WeighRow<'a, T> = dyn Fn(&[T], &[T], &RowMeta, &mut [T]) -> RowWeights + Sync + 'a;

impl<T: Real> SpanDistances<T> {
    /// The gaps of `rows` of the batch `x` to `span` by one product (on `panels` where given,
    /// else the `gemm` crate's), and each row's meta. `finish` is `finish_row` compiled for the
    /// machine's instruction set.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        set: &PreparedSet<T>,
        ops: &GemmOperands<T>,
        panels: Option<&Panels>,
        x: &[T],
        rows: &[usize],
        span: Span,
        threads: Threads,
        finish: &FinishRow<'_, T>,
    ) -> Self {
        let dim = set.dim;
        let width = span.len();
        let mut centred = Vec::with_capacity(rows.len() * dim);
        let mut norms = Vec::with_capacity(rows.len());
        for &r in rows {
            let mut norm2 = 0.0;
            for (v, m) in x[r * dim..(r + 1) * dim].iter().zip(&ops.mean) {
                let c = T::from_f64(v.to_f64() - m);
                norm2 += c.to_f64() * c.to_f64();
                centred.push(c);
            }
            norms.push(norm2.sqrt());
        }
        let mut gaps = vec![T::ZERO; rows.len() * width];
        // The panels that took the product, whose own rounding may add to the f32 bound
        // `finish` takes (bf16x3 tiles).
        let mut on_panels = None;
        if let Some(panels) = panels
            && let Some(centred) = T::as_f32(&centred)
            && let Some(out) = T::as_f32_mut(&mut gaps)
        {
            panels.logits(centred, rows.len(), span, out, threads);
            on_panels = Some((panels, centred));
        } else {
            product_transposed(
                &centred,
                &ops.centred[span.start * dim..span.end * dim],
                (rows.len(), width, dim),
                &mut gaps,
                threads,
            );
        }
        let y_max = ops.norms[span.start..span.end]
            .iter()
            .copied()
            .fold(0.0, f64::max);
        let mut meta = vec![RowMeta::default(); rows.len()];
        gaps.par_chunks_mut(width.max(1))
            .zip(meta.par_iter_mut())
            .enumerate()
            .for_each(|(q, (logits, m))| {
                let r = rows[q];
                *m = finish(&x[r * dim..(r + 1) * dim], norms[q], y_max, logits);
                if let Some((panels, centred)) = on_panels {
                    // A gap is twice a difference of two products.
                    let row = &centred[q * dim..(q + 1) * dim];
                    m.bound += 4.0 * panels.product_error(row, norms[q], y_max);
                }
            });
        SpanDistances {
            span,
            rows: rows.to_vec(),
            gaps,
            meta,
        }
    }

    /// sum_j w_j y_j, sum_j w_j and Z for each row under `weighting`, the dense rows' sums by one
    /// product (on `panels` where given); `weigh` is `weigh_gemm_row` compiled for the machine's
    /// instruction set.
    pub fn weighted_rows(
        &self,
        set: &PreparedSet<T>,
        panels: Option<&Panels>,
        x: &[T],
        threads: Threads,
        weigh: &WeighRow<'_, T>,
    ) -> Vec<WeightedRow> {
        let dim = set.dim;
        let width = self.span.len();
        // Every row's dense weights in its slot; the sparse rows' slots are left unused.
        let mut matrix = vec![T::ZERO; self.rows.len() * width];
        let per_row: Vec<RowWeights> = matrix
            .par_chunks_mut(width.max(1))
            .zip(self.rows.par_iter())
            .enumerate()
            .map(|(q, (out, &r))| {
                weigh(
                    &x[r * dim..(r + 1) * dim],
                    &self.gaps[q * width..(q + 1) * width],
                    &self.meta[q],
                    out,
                )
            })
            .collect();
        // The dense rows' sums by one product with the span's rows: their slots moved together.
        let mut dense = 0;
        for (q, w) in per_row.iter().enumerate() {
            if matches!(w, RowWeights::Dense { .. }) {
                if q != dense {
                    matrix.copy_within(q * width..(q + 1) * width, dense * width);
                }
                dense += 1;
            }
        }
        // Against the centred rows (the ones the distances streamed, likely still in cache):
        // sum_j w_j y_j = sum_j w_j (y_j - mu) + mu sum_j w_j.
        let ops = set.gemm_operands();
        let mut sums = vec![T::ZERO; dense * dim];
        if let Some(panels) = panels
            && let Some(weights) = T::as_f32(&matrix[..dense * width])
            && let Some(out) = T::as_f32_mut(&mut sums)
        {
            panels.weighted_sums(weights, dense, self.span, out, threads);
        } else {
            product(
                &matrix[..dense * width],
                &ops.centred[self.span.start * dim..self.span.end * dim],
                (dense, dim, width),
                &mut sums,
                threads,
            );
        }
        let mut next_dense = 0;
        per_row
            .into_iter()
            .map(|w| match w {
                RowWeights::Summed(row) => row,
                RowWeights::Dense {
                    normaliser,
                    weight_sum,
                } => {
                    let s = &sums[next_dense * dim..(next_dense + 1) * dim];
                    next_dense += 1;
                    WeightedRow {
                        weighted: s
                            .iter()
                            .zip(&ops.mean)
                            .map(|(v, m)| v.to_f64() + m * weight_sum)
                            .collect(),
                        weight_sum,
                        normaliser,
                    }
                }
            })
            .collect()
    }
}
