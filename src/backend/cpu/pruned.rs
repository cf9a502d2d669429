//! Exact candidate pruning at small sigma (the softmax of f32 GEMM-form sets): a lower bound on
//! every squared distance from a few principal directions skips the points that cannot reach the
//! softmax cutoff, without the full product.
//!
//! For P with orthonormal rows (an orthogonal projection onto k directions), |P(x - y)|^2 <=
//! |x - y|^2. The projections P (y_j - mu) and P (x - mu) are formed in f64 from the f32 inputs
//! and the bounds L_j = |P (x - mu) - P (y_j - mu)|^2 summed in f32 (16 lanes, half the f64
//! work); `f32_threshold` widens a threshold on the exact L_j by what the f32 rounding of the
//! projections, their differences and the sum can take off (the differences cancel near a data
//! point, so the widening is absolute: u (|P (x - mu)| + max_j |P (y_j - mu)|)), so the f32 test
//! drops no point the exact one keeps. A row measures its most promising point (the smallest
//! L_j) by explicit differences, d_best, and keeps only the points with L_j <= (d_best + cut)
//! (1 + margin): every point it drops has an explicit f32 distance more than `cut` above d_best
//! (the margin covers the f32 sums' rounding, below (D + 16) u relative), so its weight is below
//! e^-CUTOFF of the nearest point's and the explicit path leaves it out too. The kept points are
//! measured by explicit differences and weighed as the GEMM form's sparse rows are
//! (`gemm_form.rs`), so the two paths agree.
//! A row with more candidates than `recompute_limit` (a wide softmax) returns `None` and takes the
//! GEMM form.

use rayon::prelude::*;

use super::distances::explicit_distance;
use super::gemm::{Threads, product, product_transposed};
use super::gemm_form::{recompute_limit, sparse_sum};
use super::layout::PreparedSet;
use super::real::Real;
use super::weights::weigh_gaps;
use crate::backend::{Span, WeightedRow, Weighting};

/// Points per block of the projected layout (f32 lanes).
pub(super) const PLANES: usize = 16;
/// Blocks whose bounds are summed side by side (independent FMA chains).
const GROUP: usize = 8;
/// f64 lanes of `centred_dot`'s partial sums.
const F64_LANES: usize = 8;
/// Subspace iterations for the principal directions (any orthonormal basis keeps the bound
/// exact; better directions only prune more).
const ITERATIONS: usize = 4;

/// The set's leading principal directions and its points projected on them.
#[derive(Clone, Debug)]
pub(super) struct Projection {
    /// Directions kept (0 when the data have no spread).
    pub k: usize,
    /// [k][dim]: orthonormal rows.
    basis: Vec<f64>,
    /// The mean the projections are taken about.
    mean: Vec<f64>,
    /// [blocks][k][PLANES]: P (y_j - mu) rounded to f32, zero-padded to whole blocks.
    blocked: Vec<f32>,
    /// max_j |P (y_j - mu)| (f64): what the f32 rounding of the data's projections scales with.
    radius: f64,
}

/// Directions kept for a set of `dim` dimensions.
pub(super) fn directions(dim: usize) -> usize {
    (dim / 8).clamp(4, 16).min(dim)
}

/// Orthonormalises the rows of `q` ([rows][dim]) in place by modified Gram-Schmidt, twice;
/// returns how many independent rows are left at the front.
fn orthonormalise(q: &mut Vec<f64>, dim: usize) -> usize {
    let mut kept = 0;
    let rows = q.len() / dim;
    for r in 0..rows {
        let mut v: Vec<f64> = q[r * dim..(r + 1) * dim].to_vec();
        let start: f64 = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        for _ in 0..2 {
            for p in 0..kept {
                let u = &q[p * dim..(p + 1) * dim];
                let c: f64 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
                for (b, a) in v.iter_mut().zip(u) {
                    *b -= c * a;
                }
            }
        }
        let norm: f64 = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        let independent = norm > 1e-6 * start && norm > 0.0;
        if !independent {
            continue;
        }
        for (slot, b) in q[kept * dim..(kept + 1) * dim].iter_mut().zip(&v) {
            *slot = b / norm;
        }
        kept += 1;
    }
    q.truncate(kept * dim);
    kept
}

impl Projection {
    /// From the set's rows and the GEMM form's mean and centred rows.
    pub(super) fn new<T: Real>(set: &PreparedSet<T>) -> Self {
        let (n, dim) = (set.n, set.dim);
        let ops = set.gemm_operands();
        let want = directions(dim).min(n);
        // A fixed pseudo-random start, then subspace iterations Q <- orth(C^T C Q) in T.
        let mut q: Vec<f64> = (0..want * dim)
            .map(|i| {
                let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                ((h >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect();
        let mut k = orthonormalise(&mut q, dim);
        for _ in 0..ITERATIONS {
            if k == 0 || n == 0 {
                break;
            }
            let qt: Vec<T> = q.iter().map(|&v| T::from_f64(v)).collect();
            // Z = C Q^T: [n][k].
            let mut z = vec![T::ZERO; n * k];
            product_transposed(&ops.centred, &qt, (n, k, dim), &mut z, Threads::All);
            let mut zt = vec![T::ZERO; k * n];
            for j in 0..n {
                for i in 0..k {
                    zt[i * n + j] = z[j * k + i];
                }
            }
            // Q = Z^T C: [k][dim].
            let mut next = vec![T::ZERO; k * dim];
            product(&zt, &ops.centred, (k, dim, n), &mut next, Threads::All);
            q = next.iter().map(|v| v.to_f64()).collect();
            k = orthonormalise(&mut q, dim);
        }
        let blocks = n.div_ceil(PLANES);
        let mut blocked = vec![0.0f32; blocks * k * PLANES];
        let mean = ops.mean.clone();
        let radius = blocked
            .par_chunks_mut((k * PLANES).max(1))
            .enumerate()
            .map(|(b, block)| {
                let mut largest = 0.0f64;
                for l in 0..PLANES {
                    let j = b * PLANES + l;
                    if j >= n || k == 0 {
                        continue;
                    }
                    let y = &set.rows[j * dim..(j + 1) * dim];
                    let mut norm2 = 0.0;
                    for i in 0..k {
                        let c = centred_dot::<T, false>(&q[i * dim..(i + 1) * dim], y, &mean);
                        norm2 += c * c;
                        block[i * PLANES + l] = c as f32;
                    }
                    largest = largest.max(norm2.sqrt());
                }
                largest
            })
            .reduce(|| 0.0, f64::max);
        Projection {
            k,
            basis: q,
            mean,
            blocked,
            radius,
        }
    }

    pub(super) fn bytes(&self) -> usize {
        (self.basis.len() + self.mean.len()) * 8 + self.blocked.len() * 4
    }

    /// P (x - mu) in f64.
    #[inline(always)]
    fn project<T: Real, const FMA: bool>(&self, x: &[T], dim: usize) -> Vec<f64> {
        let mut px = Vec::with_capacity(self.k);
        // A loop, not a map closure: a closure loses the caller's target features.
        for i in 0..self.k {
            px.push(centred_dot::<T, FMA>(
                &self.basis[i * dim..(i + 1) * dim],
                x,
                &self.mean,
            ));
        }
        px
    }
}

/// u . (x - mu) in f64, in F64_LANES-wide partial sums (a sequential sum does not vectorise).
#[inline(always)]
fn centred_dot<T: Real, const FMA: bool>(u: &[f64], x: &[T], mean: &[f64]) -> f64 {
    let mut lanes = [0.0f64; F64_LANES];
    let (cu, cx, cm) = (
        u.chunks_exact(F64_LANES),
        x.chunks_exact(F64_LANES),
        mean.chunks_exact(F64_LANES),
    );
    let (ru, rx, rm) = (cu.remainder(), cx.remainder(), cm.remainder());
    for ((u, x), m) in cu.zip(cx).zip(cm) {
        for l in 0..F64_LANES {
            lanes[l] = u[l].fused::<FMA>(x[l].to_f64() - m[l], lanes[l]);
        }
    }
    let mut total = 0.0;
    for ((u, x), m) in ru.iter().zip(rx).zip(rm) {
        total = u.fused::<FMA>(x.to_f64() - m, total);
    }
    for v in lanes {
        total += v;
    }
    total
}

/// Relative margin of the pruning test: above the rounding of explicit f32 distances (the
/// sums run over at most D / LANES + log2 LANES terms, plus the difference and the square) and of
/// the f64 bounds, with room to spare.
fn margin(dim: usize, epsilon: f64) -> f64 {
    4.0 * (dim as f64 + 16.0) * epsilon + 1e-12
}

/// The f32 threshold that keeps every point whose exact projected bound L_j is within
/// `threshold`, for a row with |P (x - mu)| = `row_norm` and k directions. With u the f32
/// rounding: each f32 difference is within u (|p_i| + |c_i| + |t_i|) of the exact t_i, so
/// |t_32| <= (1 + u) sqrt(L_j) + u (row_norm + radius), and the k-term f32 sum of squares is
/// within (1 + u)^k of |t_32|^2; both taken with twice the room.
fn f32_threshold(threshold: f64, row_norm: f64, radius: f64, k: usize) -> f32 {
    let u = f32::EPSILON as f64;
    let reach = threshold.max(0.0).sqrt() * (1.0 + 2.0 * u) + 2.0 * u * (row_norm + radius);
    let wide = reach * reach * (1.0 + 2.0 * (k as f64 + 2.0) * u);
    let rounded = wide as f32;
    if (rounded as f64) < wide {
        rounded.next_up()
    } else {
        rounded
    }
}

/// The lower bounds L_j of the span's points in f32, at `out[j - first]` with `first` the span's
/// first block's first point (points of neighbouring spans in the blocks get +inf); returns
/// `first` and the position in `out` of the smallest bound (the first of equals).
#[inline(always)]
fn lower_bounds<const FMA: bool>(
    proj: &Projection,
    px: &[f32],
    span: Span,
    out: &mut Vec<f32>,
) -> (usize, usize) {
    let k = proj.k;
    let (b0, b1) = (span.start / PLANES, span.end.div_ceil(PLANES));
    out.clear();
    out.resize((b1 - b0) * PLANES, f32::INFINITY);
    // GROUP blocks at a time: independent accumulators, where one block's was a chain of k
    // dependent FMAs (latency-bound); each block still sums its directions in order.
    let blocks = &proj.blocked[b0 * k * PLANES..b1 * k * PLANES];
    let groups = blocks.chunks_exact((GROUP * k * PLANES).max(1));
    let rest = groups.remainder();
    let (mut out_groups, out_rest) = {
        let (head, tail) = out.split_at_mut((b1 - b0) / GROUP * GROUP * PLANES);
        (head.chunks_exact_mut(GROUP * PLANES), tail)
    };
    for group in groups {
        let mut acc = [[0.0f32; PLANES]; GROUP];
        for i in 0..k {
            let p = px[i];
            for (g, a) in acc.iter_mut().enumerate() {
                let col = &group[(g * k + i) * PLANES..(g * k + i + 1) * PLANES];
                for l in 0..PLANES {
                    let t = p - col[l];
                    a[l] = t.fused::<FMA>(t, a[l]);
                }
            }
        }
        if let Some(slot) = out_groups.next() {
            for (g, a) in acc.iter().enumerate() {
                slot[g * PLANES..(g + 1) * PLANES].copy_from_slice(a);
            }
        }
    }
    for (block, slot) in rest
        .chunks_exact((k * PLANES).max(1))
        .zip(out_rest.chunks_exact_mut(PLANES))
    {
        let mut acc = [0.0f32; PLANES];
        for i in 0..k {
            let p = px[i];
            let col = &block[i * PLANES..(i + 1) * PLANES];
            for l in 0..PLANES {
                let t = p - col[l];
                acc[l] = t.fused::<FMA>(t, acc[l]);
            }
        }
        slot.copy_from_slice(&acc);
    }
    let first = b0 * PLANES;
    out[..span.start - first].fill(f32::INFINITY);
    out[span.end - first..].fill(f32::INFINITY);
    // Each lane keeps its smallest bound and the first block holding it (a vector min and blend,
    // where a scalar argmin was a chain of dependent compares).
    let mut low = [f32::INFINITY; PLANES];
    let mut at = [0u32; PLANES];
    for (b, chunk) in out.chunks_exact(PLANES).enumerate() {
        for l in 0..PLANES {
            let smaller = chunk[l] < low[l];
            low[l] = if smaller { chunk[l] } else { low[l] };
            at[l] = if smaller { b as u32 } else { at[l] };
        }
    }
    let mut best = span.start - first;
    for l in 0..PLANES {
        let q = at[l] as usize * PLANES + l;
        if low[l] < out[best] || (low[l] == out[best] && q < best) {
            best = q;
        }
    }
    (first, best)
}

/// One row of the softmax at `sigma` by pruned candidates; `None` when too many points are
/// within reach (the row then takes the GEMM form).
#[inline(always)]
pub(super) fn pruned_row<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    proj: &Projection,
    x: &[T],
    span: Span,
    sigma: f64,
) -> Option<WeightedRow> {
    let dim = set.dim;
    if span.is_empty() || proj.k == 0 {
        return None;
    }
    let weighting = Weighting::Softmax { sigma };
    let cut = 2.0 * sigma * sigma * T::CUTOFF;
    let px = proj.project::<T, FMA>(x, dim);
    let row_norm = px.iter().map(|p| p * p).sum::<f64>().sqrt();
    let px32: Vec<f32> = px.iter().map(|&p| p as f32).collect();
    let mut bounds = Vec::new();
    let (first, best) = lower_bounds::<FMA>(proj, &px32, span, &mut bounds);
    let j = first + best;
    let d_best = explicit_distance::<T, FMA>(x, &set.rows[j * dim..(j + 1) * dim]).to_f64();
    let threshold = (d_best + cut) * (1.0 + margin(dim, T::EPSILON));
    let threshold = f32_threshold(threshold, row_norm, proj.radius, proj.k);
    let limit = recompute_limit(span.len());
    let mut index = Vec::new();
    // A block's lanes within the threshold as a bit mask (one vector compare), then its set bits.
    for (b, chunk) in bounds.chunks_exact(PLANES).enumerate() {
        let mut mask = 0u32;
        for l in 0..PLANES {
            mask |= u32::from(chunk[l] <= threshold) << l;
        }
        while mask != 0 {
            if index.len() == limit {
                return None;
            }
            let l = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            index.push(first + b * PLANES + l - span.start);
        }
    }
    // A loop, not a closure: a closure is compiled without the caller's target features (its
    // FMAs became library calls).
    let mut exact: Vec<T> = Vec::with_capacity(index.len());
    for &q in &index {
        let j = span.start + q;
        exact.push(explicit_distance::<T, FMA>(
            x,
            &set.rows[j * dim..(j + 1) * dim],
        ));
    }
    let nearest = exact
        .iter()
        .copied()
        .fold(T::INFINITY, |m, v| if v < m { v } else { m });
    for d in exact.iter_mut() {
        *d = *d - nearest;
    }
    let normaliser = weigh_gaps::<T, FMA>(&mut exact, nearest.to_f64(), &weighting, dim);
    let (weighted, weight_sum) =
        sparse_sum::<T, FMA>(set, span, index.iter().copied().zip(exact.iter().copied()));
    Some(WeightedRow {
        weighted,
        weight_sum,
        normaliser,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The f32 bounds keep every point the exact projected bound keeps: for rows on data points
    /// (where the differences cancel), next to them and far away, each point's f32 bound is
    /// within the f32 threshold made from its own exact bound (the tightest threshold keeping it).
    #[test]
    fn f32_bounds_keep_every_point_the_exact_bounds_keep() {
        let digits = crate::data::digits::load().expect("digits");
        let images = crate::data::digits::synthetic_28x28(300, 3).expect("images");
        for set in [digits, images] {
            let (values, dim) = (&set.values, set.dim);
            let n = values.len() / dim;
            let prepared = PreparedSet::<f32>::new(values, n, dim);
            let proj = prepared.projection();
            let k = proj.k;
            let rounded: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            // Each point's projection in f64, as the exact bound takes it.
            let exact_proj: Vec<f64> = (0..n * k)
                .map(|q| {
                    let (j, i) = (q / k, q % k);
                    centred_dot::<f32, false>(
                        &proj.basis[i * dim..(i + 1) * dim],
                        &rounded[j * dim..(j + 1) * dim],
                        &proj.mean,
                    )
                })
                .collect();
            let mut checked = 0;
            for (r, offset) in [(0, 0.0), (7, 0.0), (n / 2, 1e-4), (n - 1, 0.3), (3, 40.0)] {
                let x: Vec<f32> = rounded[r * dim..(r + 1) * dim]
                    .iter()
                    .enumerate()
                    .map(|(d, &v)| v + offset as f32 * ((d % 5) as f32 - 2.0))
                    .collect();
                let px = proj.project::<f32, false>(&x, dim);
                let row_norm = px.iter().map(|p| p * p).sum::<f64>().sqrt();
                let px32: Vec<f32> = px.iter().map(|&p| p as f32).collect();
                for span in [
                    Span { start: 0, end: n },
                    Span {
                        start: 5,
                        end: n - 3,
                    },
                ] {
                    let mut bounds = Vec::new();
                    let (first, best) = lower_bounds::<false>(proj, &px32, span, &mut bounds);
                    assert!(
                        (span.start..span.end).contains(&(first + best)),
                        "best in span"
                    );
                    for j in span.start..span.end {
                        let exact: f64 = (0..k)
                            .map(|i| (px[i] - exact_proj[j * k + i]).powi(2))
                            .sum();
                        let got = bounds[j - first];
                        let keep = f32_threshold(exact, row_norm, proj.radius, k);
                        assert!(
                            got <= keep,
                            "row {r} + {offset}, point {j}: f32 bound {got} above the \
                             threshold {keep} of its exact bound {exact}"
                        );
                        checked += 1;
                    }
                    for (q, b) in bounds.iter().enumerate() {
                        if !(span.start..span.end).contains(&(first + q)) {
                            assert_eq!(*b, f32::INFINITY, "outside the span");
                        }
                    }
                }
            }
            assert!(checked > 1000, "points checked: {checked}");
        }
    }
}
