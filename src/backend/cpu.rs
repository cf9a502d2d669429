//! The CPU kernels: hand-blocked loops that LLVM vectorises, compiled three times (AVX-512, AVX2+FMA,
//! portable) and picked at run time, parallel over row tasks with rayon.
//!
//! The ideal empirical denoiser D(x; s) = sum_j softmax_j(-|x - y_j|^2 / (2 s^2)) y_j is computed with
//! explicit differences (no |x|^2 - 2 x.y + |y|^2 cancellation, so it stays exact at s = 0.002) and
//! max-subtraction: the nearest point has weight 1, and weights that underflow are skipped.

use rayon::prelude::*;

/// SIMD width the blocked data layout is padded to.
pub const LANES: usize = 16;

/// f32 or f64 with the few operations the kernels need, all inlinable and branch-free.
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const INFINITY: Self;
    /// Below -UNDERFLOW, exp() is treated as exactly 0 (e^-80 relative to the nearest point's 1).
    const UNDERFLOW: f64;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// e^x, accurate to ~1 ulp, vectorisable; exactly 0 below -UNDERFLOW.
    fn exp(self) -> Self;
    fn fused<const FMA: bool>(self, b: Self, c: Self) -> Self;
    /// floor(log2(self)) for a positive normal value, from the exponent bits (0 and subnormals
    /// give the smallest exponent).
    fn binary_exponent(self) -> i32;
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        if other < self { other } else { self }
    }
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    const INFINITY: f32 = f32::INFINITY;
    const UNDERFLOW: f64 = 80.0;
    #[inline(always)]
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp(self) -> f32 {
        // Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then a degree-7 Taylor polynomial
        // (truncation 6e-9 relative) and 2^n built from the exponent bits.
        const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
        let x = self.clamp(-87.0, 88.0);
        let shifted = x * std::f32::consts::LOG2_E + MAGIC;
        let n = shifted - MAGIC;
        let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0
                        + r * (1.0 / 24.0
                            + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
        let n_int = shifted.to_bits() as i32 - 0x4B40_0000;
        let scale = f32::from_bits(((n_int + 127) << 23) as u32);
        if self < -80.0 { 0.0 } else { p * scale }
    }
    #[inline(always)]
    fn fused<const FMA: bool>(self, b: f32, c: f32) -> f32 {
        if FMA {
            self.mul_add(b, c)
        } else {
            self * b + c
        }
    }
    #[inline(always)]
    fn binary_exponent(self) -> i32 {
        ((self.to_bits() >> 23) & 0xff) as i32 - 127
    }
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    const INFINITY: f64 = f64::INFINITY;
    const UNDERFLOW: f64 = 700.0;
    #[inline(always)]
    fn from_f64(v: f64) -> f64 {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp(self) -> f64 {
        // Cody-Waite with a two-part ln2, degree-13 Taylor polynomial (truncation 4e-18 relative).
        const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
        const LN2_HI: f64 = 6.931_471_803_691_238e-1;
        const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
        let x = self.clamp(-708.0, 709.0);
        let shifted = x * std::f64::consts::LOG2_E + MAGIC;
        let n = shifted - MAGIC;
        let r = x - n * LN2_HI - n * LN2_LO;
        let mut p = 1.0 / 6_227_020_800.0;
        for c in [
            1.0 / 479_001_600.0,
            1.0 / 39_916_800.0,
            1.0 / 3_628_800.0,
            1.0 / 362_880.0,
            1.0 / 40_320.0,
            1.0 / 5_040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = p * r + c;
        }
        let n_int = shifted.to_bits() as i64 - 0x4338_0000_0000_0000;
        let scale = f64::from_bits(((n_int + 1023) << 52) as u64);
        if self < -700.0 { 0.0 } else { p * scale }
    }
    #[inline(always)]
    fn fused<const FMA: bool>(self, b: f64, c: f64) -> f64 {
        if FMA {
            self.mul_add(b, c)
        } else {
            self * b + c
        }
    }
    #[inline(always)]
    fn binary_exponent(self) -> i32 {
        ((self.to_bits() >> 52) & 0x7ff) as i32 - 1023
    }
}

/// A data set laid out for the kernels.
#[derive(Clone, Debug)]
pub struct PreparedSet<T> {
    pub n: usize,
    pub dim: usize,
    /// [block][dim][LANES], zero-padded to whole blocks: one block's columns are contiguous.
    blocked: Vec<T>,
    /// [n][dim], for the weighted sum.
    rows: Vec<T>,
    /// [dim][blocks * LANES], zero-padded columns, for the weighted sum of small dimensions.
    columns: Vec<T>,
}

/// Dimensions up to this use the column layout for the weighted sum.
const SMALL_DIM: usize = 8;

impl<T: Real> PreparedSet<T> {
    pub fn new(values: &[f64], n: usize, dim: usize) -> Self {
        let blocks = n.div_ceil(LANES);
        let mut blocked = vec![T::ZERO; blocks * dim * LANES];
        for j in 0..n {
            let (b, l) = (j / LANES, j % LANES);
            for k in 0..dim {
                blocked[(b * dim + k) * LANES + l] = T::from_f64(values[j * dim + k]);
            }
        }
        let rows = values.iter().map(|&v| T::from_f64(v)).collect();
        let mut columns = Vec::new();
        if dim <= SMALL_DIM {
            let width = blocks * LANES;
            columns = vec![T::ZERO; dim * width];
            for j in 0..n {
                for k in 0..dim {
                    columns[k * width + j] = T::from_f64(values[j * dim + k]);
                }
            }
        }
        PreparedSet {
            n,
            dim,
            blocked,
            rows,
            columns,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.blocked.len() + self.rows.len() + self.columns.len()) * std::mem::size_of::<T>()
    }
}

/// The contiguous part of the data set some rows are compared against (one class, or all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// How one row's squared distances become weights w_j.
#[derive(Clone, Copy, Debug)]
pub enum Weighting<'a> {
    /// w_j = exp(-(d_j - d_min) / (2 s^2)): the softmax of the ideal denoiser.
    Softmax { sigma: f64 },
    /// NAG's noise-unconditional score: for prior nodes k with log weight l_k,
    /// logit_jk = l_k - D ln s_k - d_j / (2 s_k^2); w_j = sum_k e^(logit_jk - M) / s_k^2.
    Marginal {
        sigmas: &'a [f64],
        log_weights: &'a [f64],
    },
}

/// One row's result: sum_j w_j y_j, sum_j w_j and the normaliser Z (sum of the softmax terms,
/// which equals sum_j w_j for `Softmax`).
#[derive(Clone, Debug)]
pub struct WeightedRow {
    pub weighted: Vec<f64>,
    pub weight_sum: f64,
    pub normaliser: f64,
}

/// Rows of the query batch that share a span, cut into tasks that fit the cache.
fn tasks(rows: &[usize], span_len: usize, dim: usize) -> Vec<&[usize]> {
    let threads = rayon::current_num_threads().max(1);
    // The task's distance matrix stays within ~1 MiB, and there are >= 2 tasks per thread.
    let cache_rows = (1 << 20) / (span_len.max(1) * 8).max(1);
    let balance = rows.len().div_ceil(2 * threads);
    let per_task = cache_rows.min(balance).clamp(8, 256).next_multiple_of(8);
    let _ = dim;
    rows.chunks(per_task).collect()
}

/// Squared distances of `R` query rows to one block of LANES data points.
#[inline(always)]
fn distance_block<T: Real, const R: usize, const FMA: bool>(
    x: [&[T]; R],
    block: &[T],
    dim: usize,
) -> [[T; LANES]; R] {
    let mut acc = [[T::ZERO; LANES]; R];
    for k in 0..dim {
        let Ok(col) = <&[T; LANES]>::try_from(&block[k * LANES..(k + 1) * LANES]) else {
            return acc;
        };
        for r in 0..R {
            let xr = x[r][k];
            for l in 0..LANES {
                let t = xr - col[l];
                acc[r][l] = t.fused::<FMA>(t, acc[r][l]);
            }
        }
    }
    acc
}

/// Squared distances of the task's rows to the span, [rows][blocks * LANES]; lanes outside the
/// span hold +inf.
#[inline(always)]
fn span_distances<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
) -> (Vec<T>, usize, usize) {
    let dim = set.dim;
    let (b0, b1) = (span.start / LANES, span.end.div_ceil(LANES));
    let width = (b1 - b0) * LANES;
    let mut dist = vec![T::INFINITY; rows.len() * width];
    let row_of = |r: usize| &x[rows[r] * dim..(rows[r] + 1) * dim];
    for b in b0..b1 {
        let block = &set.blocked[b * dim * LANES..(b + 1) * dim * LANES];
        let offset = (b - b0) * LANES;
        let mut r = 0;
        // Eight rows at a time: eight independent FMA chains hide the FMA latency.
        while r + 8 <= rows.len() {
            let acc =
                distance_block::<T, 8, FMA>(std::array::from_fn(|q| row_of(r + q)), block, dim);
            for (q, a) in acc.iter().enumerate() {
                dist[(r + q) * width + offset..(r + q) * width + offset + LANES].copy_from_slice(a);
            }
            r += 8;
        }
        while r + 4 <= rows.len() {
            let acc = distance_block::<T, 4, FMA>(
                [row_of(r), row_of(r + 1), row_of(r + 2), row_of(r + 3)],
                block,
                dim,
            );
            for (q, a) in acc.iter().enumerate() {
                dist[(r + q) * width + offset..(r + q) * width + offset + LANES].copy_from_slice(a);
            }
            r += 4;
        }
        while r < rows.len() {
            let acc = distance_block::<T, 1, FMA>([row_of(r)], block, dim);
            dist[r * width + offset..r * width + offset + LANES].copy_from_slice(&acc[0]);
            r += 1;
        }
    }
    // Mask the padding and the lanes of neighbouring spans.
    for r in 0..rows.len() {
        let row = &mut dist[r * width..(r + 1) * width];
        row[..span.start - b0 * LANES].fill(T::INFINITY);
        row[span.end - b0 * LANES..].fill(T::INFINITY);
    }
    (dist, b0 * LANES, width)
}

/// The largest value of a slice (at least 0), in LANES-wide partial maxima so it vectorises.
#[inline(always)]
fn max_of<T: Real>(v: &[T]) -> T {
    let mut lanes = [T::ZERO; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    let mut m = T::ZERO;
    for &v in lanes.iter().chain(rest) {
        if v > m {
            m = v;
        }
    }
    m
}

/// The smallest value of a slice, in LANES-wide partial minima so it vectorises.
#[inline(always)]
fn min_of<T: Real>(v: &[T]) -> T {
    let mut lanes = [T::INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            lanes[l] = lanes[l].min(c[l]);
        }
    }
    let mut m = T::INFINITY;
    for &v in lanes.iter().chain(rest) {
        m = m.min(v);
    }
    m
}

/// Sum of a slice in LANES-wide partial sums, accumulated in f64 at the end.
#[inline(always)]
fn sum_of<T: Real>(v: &[T]) -> f64 {
    let mut lanes = [T::ZERO; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            lanes[l] = lanes[l] + c[l];
        }
    }
    let mut total = 0.0;
    for &v in lanes.iter().chain(rest) {
        total += v.to_f64();
    }
    total
}

/// Turns one row of distances into weights in place; returns the normaliser Z.
#[inline(always)]
fn weigh_row<T: Real, const FMA: bool>(row: &mut [T], weighting: &Weighting, dim: usize) -> f64 {
    let d_min = min_of(row);
    if d_min == T::INFINITY {
        row.fill(T::ZERO);
        return 0.0;
    }
    match *weighting {
        Weighting::Softmax { sigma } => {
            // (d_j - d_min) first: exact near the minimum, where precision matters.
            let c = T::from_f64(-1.0 / (2.0 * sigma * sigma));
            for v in row.iter_mut() {
                *v = ((*v - d_min) * c).exp();
            }
            sum_of(row)
        }
        Weighting::Marginal {
            sigmas,
            log_weights,
        } => {
            let d_min_f64 = d_min.to_f64();
            let node_logit = |k: usize| {
                let s = sigmas[k];
                log_weights[k] - dim as f64 * s.ln() - d_min_f64 / (2.0 * s * s)
            };
            let top = (0..sigmas.len())
                .map(node_logit)
                .fold(f64::NEG_INFINITY, f64::max);
            let mut gaps = row.to_vec();
            for g in gaps.iter_mut() {
                *g = *g - d_min;
            }
            row.fill(T::ZERO);
            let mut z = 0.0;
            for k in 0..sigmas.len() {
                let offset = node_logit(k) - top;
                // Nodes whose best term is below e^-UNDERFLOW of the top add nothing.
                if offset < -T::UNDERFLOW {
                    continue;
                }
                let s2 = sigmas[k] * sigmas[k];
                let c = T::from_f64(-1.0 / (2.0 * s2));
                let shift = T::from_f64(offset);
                let inv_s2 = T::from_f64(1.0 / s2);
                let mut zk = [T::ZERO; LANES];
                // Rows are whole blocks of LANES (span_distances pads them).
                let mut j = 0;
                while j + LANES <= gaps.len() {
                    for l in 0..LANES {
                        let e = gaps[j + l].fused::<FMA>(c, shift).exp();
                        row[j + l] = e.fused::<FMA>(inv_s2, row[j + l]);
                        zk[l] = zk[l] + e;
                    }
                    j += LANES;
                }
                for v in zk {
                    z += v.to_f64();
                }
            }
            z
        }
    }
}

/// sum_j a_j b_j in LANES-wide partial sums (a and b of equal length).
#[inline(always)]
fn dot_lanes<T: Real, const FMA: bool>(a: &[T], b: &[T]) -> f64 {
    let mut lanes = [T::ZERO; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            lanes[l] = x[l].fused::<FMA>(y[l], lanes[l]);
        }
    }
    let mut total = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        total += x.to_f64() * y.to_f64();
    }
    for v in lanes {
        total += v.to_f64();
    }
    total
}

/// One task: distances, weights, weighted sums.
#[inline(always)]
fn weighted_rows_task<T: Real, const FMA: bool>(
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
    let mut normalisers = Vec::with_capacity(rows.len());
    let mut sums = Vec::with_capacity(rows.len());
    for r in 0..rows.len() {
        let row = &mut dist[r * width..(r + 1) * width];
        normalisers.push(weigh_row::<T, FMA>(row, weighting, dim));
        sums.push(sum_of(row));
    }
    let mut weighted = vec![0.0; rows.len() * dim];
    if dim <= SMALL_DIM {
        // One dot product per column, vectorised along the data.
        let col_width = set.columns.len() / dim;
        for r in 0..rows.len() {
            let w = &dist[r * width..(r + 1) * width];
            for k in 0..dim {
                let col = &set.columns[k * col_width + first..k * col_width + first + width];
                weighted[r * dim + k] = dot_lanes::<T, FMA>(w, col);
            }
        }
    } else {
        // Data point outer, rows inner: each y_j is read once per task (it stays in L1 while
        // the task's rows use it), and zero weights are skipped.
        let mut acc = vec![T::ZERO; rows.len() * dim];
        let last = (set.n - first).min(width);
        // Weights below e^-40 of the row's largest add < N e^-40 (relative) to the sum: skipped.
        let mut cutoffs = Vec::with_capacity(rows.len());
        for r in 0..rows.len() {
            cutoffs.push(max_of(&dist[r * width..(r + 1) * width]) * T::from_f64(4.2e-18));
        }
        for j in 0..last {
            let y = &set.rows[(first + j) * dim..(first + j + 1) * dim];
            for r in 0..rows.len() {
                let w = dist[r * width + j];
                if w <= cutoffs[r] {
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

/// Gaps d_j - d_min grouped by binary exponent (a counting sort: gaps in bucket e lie in
/// [2^e, 2^(e+1))), so "every gap below a cut" is a prefix up to a bucket end.
struct BucketedGaps<T> {
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
    #[inline(always)]
    fn new(distances: &[T]) -> Self {
        let d_min = min_of(distances);
        let buckets = (MAX_EXPONENT - MIN_EXPONENT + 1) as usize;
        let bucket = |v: T| {
            ((v - d_min)
                .binary_exponent()
                .clamp(MIN_EXPONENT, MAX_EXPONENT)
                - MIN_EXPONENT) as usize
        };
        let mut counts = vec![0usize; buckets + 1];
        for &v in distances {
            counts[bucket(v) + 1] += 1;
        }
        for b in 0..buckets {
            counts[b + 1] += counts[b];
        }
        let mut next = counts.clone();
        let mut gaps = vec![T::ZERO; distances.len()];
        for &v in distances {
            let b = bucket(v);
            gaps[next[b]] = v - d_min;
            next[b] += 1;
        }
        BucketedGaps {
            gaps,
            ends: counts[1..].to_vec(),
            d_min: d_min.to_f64(),
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

/// The log-sum-exp of one task's rows on the coarse grid and on each row's fine grid.
type GridRow = (Vec<f64>, Vec<f64>, Vec<f64>);

/// One task: distances to the span, bucketed per row, then the coarse and fine grids.
#[inline(always)]
fn log_sum_exp_task<T: Real, const FMA: bool>(
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

macro_rules! dispatch {
    ($kernel:ident, $name512:ident, $name2:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        unsafe fn $name512<T: Real>($($arg: $ty),*) -> $ret {
            $kernel::<T, true>($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name2<T: Real>($($arg: $ty),*) -> $ret {
            $kernel::<T, true>($($arg),*)
        }
    };
}

dispatch!(weighted_rows_task, weighted_rows_avx512, weighted_rows_avx2,
    (set: &PreparedSet<T>, x: &[T], rows: &[usize], span: Span, weighting: &Weighting) -> Vec<WeightedRow>);
dispatch!(log_sum_exp_task, log_sum_exp_avx512, log_sum_exp_avx2,
    (set: &PreparedSet<T>, x: &[T], rows: &[usize], span: Span, coarse: &[f64],
     refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync)) -> Vec<GridRow>);

/// The instruction set the kernels run with on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    pub fn name(&self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2+fma",
            Isa::Portable => "portable",
        }
    }
}

/// Groups row indices by span, keeping first-seen order.
fn group_by_span(spans: &[Span]) -> Vec<(Span, Vec<usize>)> {
    let mut groups: Vec<(Span, Vec<usize>)> = Vec::new();
    for (r, s) in spans.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| g == s) {
            Some((_, rows)) => rows.push(r),
            None => groups.push((*s, vec![r])),
        }
    }
    groups
}

/// For every query row r (of `x`, [rows][dim]), sum_j w_j y_j over its span `spans[r]` with the
/// given weighting. Parallel over tasks.
pub fn weighted_rows<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    spans: &[Span],
    weighting: &Weighting,
    isa: Isa,
) -> Vec<WeightedRow> {
    let groups = group_by_span(spans);
    let work: Vec<(Span, &[usize])> = groups
        .iter()
        .flat_map(|(span, rows)| {
            tasks(rows, span.len(), set.dim)
                .into_iter()
                .map(move |t| (*span, t))
        })
        .collect();
    let results: Vec<Vec<WeightedRow>> = work
        .par_iter()
        .map(|&(span, rows)| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` comes from `Isa::detect`, which checked these features.
            Isa::Avx512 => unsafe { weighted_rows_avx512(set, x, rows, span, weighting) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx2 => unsafe { weighted_rows_avx2(set, x, rows, span, weighting) },
            _ => weighted_rows_task::<T, false>(set, x, rows, span, weighting),
        })
        .collect();
    scatter(spans.len(), &work, results)
}

/// For every query row r: ln sum_j exp(-|x_r - y_j|^2 / (2 s^2)) over its span, for each s of
/// the shared `coarse` grid and then of the row's fine grid `refine(r, coarse values)`.
/// Returns (coarse values, fine sigmas, fine values) per row.
pub fn log_sum_exp_grid<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    spans: &[Span],
    coarse: &[f64],
    refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
    isa: Isa,
) -> Vec<GridRow> {
    let groups = group_by_span(spans);
    let work: Vec<(Span, &[usize])> = groups
        .iter()
        .flat_map(|(span, rows)| {
            tasks(rows, span.len(), set.dim)
                .into_iter()
                .map(move |t| (*span, t))
        })
        .collect();
    let results: Vec<Vec<GridRow>> = work
        .par_iter()
        .map(|&(span, rows)| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` comes from `Isa::detect`, which checked these features.
            Isa::Avx512 => unsafe { log_sum_exp_avx512(set, x, rows, span, coarse, refine) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx2 => unsafe { log_sum_exp_avx2(set, x, rows, span, coarse, refine) },
            _ => log_sum_exp_task::<T, false>(set, x, rows, span, coarse, refine),
        })
        .collect();
    scatter(spans.len(), &work, results)
}

/// Puts per-task results back in query-row order.
fn scatter<R: Default>(n: usize, work: &[(Span, &[usize])], results: Vec<Vec<R>>) -> Vec<R> {
    let mut out: Vec<R> = (0..n).map(|_| R::default()).collect();
    for ((_, rows), res) in work.iter().zip(results) {
        for (&r, v) in rows.iter().zip(res) {
            out[r] = v;
        }
    }
    out
}

impl Default for WeightedRow {
    fn default() -> Self {
        WeightedRow {
            weighted: Vec::new(),
            weight_sum: 0.0,
            normaliser: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_range_used() {
        let mut worst32 = 0.0f64;
        let mut worst64 = 0.0f64;
        let mut x = -79.0f64;
        while x < 80.0 {
            let e = x.exp();
            worst32 =
                worst32.max(((Real::exp(x as f32) as f64) - (x as f32 as f64).exp()).abs() / e);
            worst64 = worst64.max((Real::exp(x) - e).abs() / e);
            x += 0.0137;
        }
        assert!(worst32 < 4e-7, "f32 exp relative error {worst32}");
        assert!(worst64 < 4e-16, "f64 exp relative error {worst64}");
        assert_eq!(Real::exp(-1000.0f32), 0.0);
        assert_eq!(Real::exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(Real::exp(-1e6f64), 0.0);
        assert_eq!(Real::exp(0.0f64), 1.0);
    }

    fn brute(set_values: &[f64], dim: usize, x: &[f64], sigma: f64) -> Vec<f64> {
        let n = set_values.len() / dim;
        let d: Vec<f64> = (0..n)
            .map(|j| {
                (0..dim)
                    .map(|k| (x[k] - set_values[j * dim + k]).powi(2))
                    .sum()
            })
            .collect();
        let m = d.iter().copied().fold(f64::INFINITY, f64::min);
        let w: Vec<f64> = d
            .iter()
            .map(|v| (-(v - m) / (2.0 * sigma * sigma)).exp())
            .collect();
        let z: f64 = w.iter().sum();
        (0..dim)
            .map(|k| (0..n).map(|j| w[j] * set_values[j * dim + k]).sum::<f64>() / z)
            .collect()
    }

    #[test]
    fn every_isa_matches_brute_force_in_f64() {
        for dim in [1, 2, 5, 9, 33] {
            let n = 37;
            let values: Vec<f64> = (0..n * dim)
                .map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0)
                .collect();
            let set = PreparedSet::<f64>::new(&values, n, dim);
            let x: Vec<f64> = (0..6 * dim)
                .map(|i| ((i * 31) % 17) as f64 / 8.0 - 1.0)
                .collect();
            let spans = vec![Span { start: 0, end: n }; 6];
            for sigma in [0.002, 0.3, 5.0] {
                for isa in [Isa::detect(), Isa::Portable] {
                    let out = weighted_rows(&set, &x, &spans, &Weighting::Softmax { sigma }, isa);
                    for r in 0..6 {
                        let expect = brute(&values, dim, &x[r * dim..(r + 1) * dim], sigma);
                        for k in 0..dim {
                            let got = out[r].weighted[k] / out[r].weight_sum;
                            assert!(
                                (got - expect[k]).abs() < 1e-12,
                                "dim {dim} sigma {sigma}: {got} vs {}",
                                expect[k]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn log_sum_exp_grid_matches_brute_force() {
        let (n, dim) = (300, 5);
        let values: Vec<f64> = (0..n * dim)
            .map(|i| ((i * 7919) % 211) as f64 / 100.0 - 1.0)
            .collect();
        let set = PreparedSet::<f64>::new(&values, n, dim);
        let x: Vec<f64> = (0..3 * dim)
            .map(|i| ((i * 31) % 17) as f64 / 9.0 - 0.8)
            .collect();
        let spans = vec![
            Span { start: 0, end: n },
            Span {
                start: 10,
                end: 200,
            },
            Span { start: 0, end: n },
        ];
        let sigmas: Vec<f64> = (0..60)
            .map(|k| (0.001f64).ln() + k as f64 * 0.2)
            .map(f64::exp)
            .collect();
        let refine = |_: usize, _: &[f64]| vec![0.05, 0.5];
        for isa in [Isa::detect(), Isa::Portable] {
            let rows = log_sum_exp_grid(&set, &x, &spans, &sigmas, &refine, isa);
            for (r, (coarse, fine_sigmas, fine)) in rows.iter().enumerate() {
                let xr = &x[r * dim..(r + 1) * dim];
                let d: Vec<f64> = (spans[r].start..spans[r].end)
                    .map(|j| {
                        (0..dim)
                            .map(|k| (xr[k] - values[j * dim + k]).powi(2))
                            .sum()
                    })
                    .collect();
                let lse = |s: f64| {
                    let t: Vec<f64> = d.iter().map(|d| -d / (2.0 * s * s)).collect();
                    crate::core::log_sum_exp(&t)
                };
                let bound = |s: f64| {
                    let m = d.iter().copied().fold(f64::INFINITY, f64::min);
                    -m / (2.0 * s * s) - dim as f64 * s.ln()
                };
                let best = sigmas
                    .iter()
                    .map(|&s| bound(s))
                    .fold(f64::NEG_INFINITY, f64::max);
                for (&s, &got) in sigmas.iter().zip(coarse) {
                    // Nodes skipped as massless carry their lower bound instead.
                    if bound(s) + (d.len() as f64).ln() >= best - LIKELIHOOD_MARGIN {
                        // Terms below e^-25 of the nearest are left out: < N 1.4e-11 relative.
                        assert!(
                            (got - lse(s)).abs() < 1e-8 * (1.0 + lse(s).abs()),
                            "{s}: {got} vs {}",
                            lse(s)
                        );
                    } else {
                        assert!(got <= lse(s) + 1e-9);
                    }
                }
                assert_eq!(fine_sigmas, &vec![0.05, 0.5]);
                assert!((fine[1] - lse(0.5)).abs() < 1e-9 * (1.0 + lse(0.5).abs()));
            }
        }
    }

    #[test]
    fn spans_restrict_the_sum_to_a_class() {
        let values = vec![0.0, 1.0, 10.0, 11.0];
        let set = PreparedSet::<f64>::new(&values, 4, 1);
        let x = vec![0.4, 0.4];
        let spans = [Span { start: 2, end: 4 }, Span { start: 0, end: 2 }];
        let out = weighted_rows(
            &set,
            &x,
            &spans,
            &Weighting::Softmax { sigma: 1.0 },
            Isa::detect(),
        );
        assert!(out[0].weighted[0] / out[0].weight_sum > 9.9);
        assert!(out[1].weighted[0] / out[1].weight_sum < 1.0);
    }
}
