//! The noise posterior's log-sum-exp on sigma grids, over gaps bucketed by binary exponent.

use super::distances::{min_of, span_distances};
use super::gemm_form::{RowMeta, hybrid_gaps};
use super::layout::{LANES, PreparedSet};
use super::real::Real;
use super::weights::TIGHT;
use crate::backend::{GridRow, Span};

/// Gaps d_j - d_min grouped by binary exponent (a counting sort: gaps in bucket e lie in
/// [2^e, 2^(e+1))), so "every gap below a cut" is a prefix up to a bucket end.
pub(super) struct BucketedGaps<T> {
    gaps: Vec<T>,
    /// ends[b]: end of bucket b in `gaps`; bucket b holds exponent MIN_EXPONENT + b.
    ends: Vec<usize>,
    d_min: f64,
}

/// Terms and grid nodes below e^-25 (1.4e-11) of the largest are left out of the posterior.
pub const LIKELIHOOD_MARGIN: f64 = 25.0;

const MIN_EXPONENT: i32 = -160;
const MAX_EXPONENT: i32 = 160;

impl<T: Real> BucketedGaps<T> {
    /// From a row's squared distances.
    #[inline(always)]
    fn new(distances: &[T]) -> Self {
        let d_min = min_of(distances);
        Self::of(distances, d_min, d_min.to_f64())
    }

    /// From `values - offset` (gaps), the row's nearest squared distance being `d_min`.
    #[inline(always)]
    pub(super) fn of(values: &[T], offset: T, d_min: f64) -> Self {
        let buckets = (MAX_EXPONENT - MIN_EXPONENT + 1) as usize;
        let bucket = |v: T| {
            ((v - offset)
                .binary_exponent()
                .clamp(MIN_EXPONENT, MAX_EXPONENT)
                - MIN_EXPONENT) as usize
        };
        let mut counts = vec![0usize; buckets + 1];
        for &v in values {
            counts[bucket(v) + 1] += 1;
        }
        for b in 0..buckets {
            counts[b + 1] += counts[b];
        }
        let mut next = counts.clone();
        let mut gaps = vec![T::ZERO; values.len()];
        for &v in values {
            let b = bucket(v);
            gaps[next[b]] = v - offset;
            next[b] += 1;
        }
        BucketedGaps {
            gaps,
            ends: counts[1..].to_vec(),
            d_min,
        }
    }

    /// How many leading gaps include every gap <= `cut`.
    #[inline(always)]
    fn prefix_below(&self, cut: f64) -> usize {
        // floor(log2(cut)) from the exponent bits (cut > 0 and normal in practice).
        let e = if cut > 0.0 {
            ((cut.to_bits() >> 52) & 0x7ff) as i32 - 1023
        } else {
            MIN_EXPONENT
        };
        let b = (e.clamp(MIN_EXPONENT, MAX_EXPONENT) - MIN_EXPONENT) as usize;
        self.ends[b]
    }
}

/// ln sum_j exp(-d_j / (2 s^2)) for each sigma. Gaps more than 25 / (1/2s^2) above the nearest
/// (terms below e^-25 of the nearest) are skipped, a prefix of the bucketed gaps.
///
/// Whole nodes are skipped too: with d_min the nearest distance, the likelihood of a node,
/// ln p = LSE - D ln s + const, lies in [b, b + ln N] with b = -d_min / (2 s^2) - D ln s. A node
/// whose upper bound is e^-LIKELIHOOD_MARGIN below the best lower bound carries no posterior
/// mass worth counting (< 1e-11 relative, for the estimator's flat prior); it gets its lower
/// bound.
#[inline(always)]
fn log_sum_exp_bucketed<T: Real, const FMA: bool>(
    gaps: &BucketedGaps<T>,
    sigmas: &[f64],
    ln_sigmas: &[f64],
    dim: usize,
) -> Vec<f64> {
    if gaps.gaps.is_empty() {
        return vec![f64::NEG_INFINITY; sigmas.len()];
    }
    let d_min = gaps.d_min;
    let mut lower = Vec::with_capacity(sigmas.len());
    let mut best = f64::NEG_INFINITY;
    for (&s, &ln_s) in sigmas.iter().zip(ln_sigmas) {
        let b = -d_min / (2.0 * s * s) - dim as f64 * ln_s;
        best = best.max(b);
        lower.push(b);
    }
    let spread = (gaps.gaps.len() as f64).ln();
    let mut out = Vec::with_capacity(sigmas.len());
    for (&s, &bound) in sigmas.iter().zip(&lower) {
        let scale = 1.0 / (2.0 * s * s);
        if bound + spread < best - LIKELIHOOD_MARGIN {
            out.push(-d_min * scale);
            continue;
        }
        let n = gaps.prefix_below(LIKELIHOOD_MARGIN / scale);
        let c = T::from_f64(-scale);
        let mut lanes = [T::ZERO; LANES];
        let head = &gaps.gaps[..n];
        let chunks = head.chunks_exact(LANES);
        let rest = chunks.remainder();
        for ch in chunks {
            for l in 0..LANES {
                lanes[l] = lanes[l] + (ch[l] * c).exp();
            }
        }
        let mut total = 0.0;
        for &g in rest {
            total += (g * c).exp().to_f64();
        }
        for v in lanes {
            total += v.to_f64();
        }
        out.push(-d_min * scale + total.ln());
    }
    out
}

/// One task: distances to the span, bucketed per row, then the coarse and fine grids.
#[inline(always)]
pub(super) fn log_sum_exp_task<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    coarse: &[f64],
    refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
) -> Vec<GridRow> {
    let (dist, first, width) = span_distances::<T, FMA>(set, x, rows, span);
    let coarse_ln: Vec<f64> = coarse.iter().map(|s| s.ln()).collect();
    let mut out = Vec::with_capacity(rows.len());
    for (q, &r) in rows.iter().enumerate() {
        let row = &dist[q * width..(q + 1) * width];
        let gaps = BucketedGaps::new(&row[span.start - first..span.end - first]);
        let c = log_sum_exp_bucketed::<T, FMA>(&gaps, coarse, &coarse_ln, set.dim);
        let fine_sigmas = refine(r, &c);
        let fine_ln: Vec<f64> = fine_sigmas.iter().map(|s| s.ln()).collect();
        let f = log_sum_exp_bucketed::<T, FMA>(&gaps, &fine_sigmas, &fine_ln, set.dim);
        out.push((c, fine_sigmas, f));
    }
    out
}

/// The largest gap a node of `sigmas` that may carry posterior mass sums while resolving finer
/// than the distances' error bound (bound > TIGHT 2 s^2): gaps up to it must be exact. The row's
/// nearest squared distance lies in [d_min - bound, d_min].
fn posterior_exact_cut(
    sigmas: &[f64],
    ln_sigmas: &[f64],
    meta: &RowMeta,
    dim: usize,
    points: usize,
) -> f64 {
    let lower = |s: f64, ln_s: f64, d: f64| -d / (2.0 * s * s) - dim as f64 * ln_s;
    let d_low = (meta.d_min - meta.bound).max(0.0);
    let best = sigmas
        .iter()
        .zip(ln_sigmas)
        .map(|(&s, &l)| lower(s, l, meta.d_min))
        .fold(f64::NEG_INFINITY, f64::max);
    let spread = (points as f64).ln();
    let mut cut = 0.0f64;
    for (&s, &l) in sigmas.iter().zip(ln_sigmas) {
        let massive = lower(s, l, d_low) + spread >= best - LIKELIHOOD_MARGIN;
        if massive && meta.bound > TIGHT * 2.0 * s * s {
            cut = cut.max(2.0 * s * s * LIKELIHOOD_MARGIN);
        }
    }
    cut
}

/// How many of a row's product gaps the coarse grid's posterior needs exactly (those within its
/// exact cut, widened by the product's bound): `gemm_log_sum_exp_row` would recompute them.
pub(super) fn exactly_seen<T: Real>(
    gaps: &[T],
    meta: &RowMeta,
    coarse: &[f64],
    coarse_ln: &[f64],
    dim: usize,
) -> usize {
    let cut = posterior_exact_cut(coarse, coarse_ln, meta, dim, gaps.len());
    if cut <= 0.0 {
        return 0;
    }
    let limit = T::from_f64(cut + meta.bound);
    gaps.iter().map(|&g| usize::from(g <= limit)).sum()
}

/// One row's log-sum-exps from its gaps in GEMM form: the gaps that a node with mass sums and
/// resolves finer than the product's bound are recomputed by explicit differences first.
#[inline(always)]
pub(super) fn gemm_log_sum_exp_row<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    span: Span,
    gaps: &[T],
    meta: &RowMeta,
    coarse: &[f64],
    fine_of: &dyn Fn(&[f64]) -> Vec<f64>,
) -> GridRow {
    let dim = set.dim;
    let ln = |s: &[f64]| s.iter().map(|s| s.ln()).collect::<Vec<f64>>();
    let coarse_ln = ln(coarse);
    let cut = posterior_exact_cut(coarse, &coarse_ln, meta, dim, gaps.len());
    let mut row = gaps.to_vec();
    let d_min = hybrid_gaps::<T, FMA>(set, x, span, &mut row, meta, cut);
    let mut buckets = BucketedGaps::of(&row, T::ZERO, d_min);
    let c = log_sum_exp_bucketed::<T, FMA>(&buckets, coarse, &coarse_ln, dim);
    let fine_sigmas = fine_of(&c);
    let fine_ln = ln(&fine_sigmas);
    let fine_cut = posterior_exact_cut(&fine_sigmas, &fine_ln, meta, dim, gaps.len());
    if fine_cut > cut {
        // The fine grid resolves finer than the coarse one did: more gaps made exact.
        row.copy_from_slice(gaps);
        let d_min = hybrid_gaps::<T, FMA>(set, x, span, &mut row, meta, fine_cut);
        buckets = BucketedGaps::of(&row, T::ZERO, d_min);
    }
    let f = log_sum_exp_bucketed::<T, FMA>(&buckets, &fine_sigmas, &fine_ln, dim);
    (c, fine_sigmas, f)
}
