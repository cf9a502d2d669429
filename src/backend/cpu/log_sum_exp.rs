//! The noise posterior's log-sum-exp on sigma grids, over gaps sorted into narrow bins.
//!
//! Every node of a row's grid sums exp(-c g) over the same gaps g (c = 1 / 2 s^2). The gaps are
//! counting-sorted into bins half a binary octave wide, and a bin of many gaps is summed
//! at every node from its own Taylor moments about its centre m (half-width h):
//! sum_j exp(-c g_j) = exp(-c m) sum_p (-c h)^p w_p with w_p = sum_j ((g_j - m) / h)^p / p!.
//! The moments cost TERMS operations per gap once per row; each node then costs a few per bin
//! instead of an exp per gap (the fast Gauss transform's idea, in the one variable g).

use super::distances::{max_signed, min_of, span_distances};
use super::gemm_form::{RowMeta, hybrid_gaps};
use super::layout::{LANES, PreparedSet};
use super::real::Real;
use super::weights::TIGHT;
use crate::backend::{GridRow, Span};

/// Mantissa bits in a bin's key: 2^SUB_BITS bins per binary octave, so a bin's half-width h is at
/// most lo / 4 (lo its smallest gap). Wider bins mean fewer per node and more terms per bin:
/// half octaves with 24 terms beat eighths with 13 by a quarter on the toys' posterior (more
/// nodes per row), as fast on the digits and images.
const SUB_BITS: u32 = 1;
/// Octaves below the row's largest gap that get bins of their own; smaller gaps share the first.
const OCTAVES: u32 = 48;
/// Taylor terms per bin (degree TERMS - 1).
const TERMS: usize = 24;
const _: () = assert!(
    TERMS.is_multiple_of(2),
    "the series splits into even and odd halves"
);
/// Bins with fewer gaps are summed by an exp per gap.
const TAYLOR_MIN: usize = 8;
/// Largest truncation error a bin may carry at any node, absolute: every row's sum is at least
/// its nearest gap's term, exp(0) = 1.
const TAYLOR_TOL: f64 = 1e-11;

/// Gaps d_j - d_min sorted into bins of increasing value (a counting sort on the leading bits),
/// so "every gap below a cut" is a prefix of whole bins; bins of many gaps carry Taylor moments.
pub(super) struct BucketedGaps<T> {
    /// How many gaps the row has.
    count: usize,
    /// Per non-empty bin, ascending: its index (key above the floor).
    index: Vec<u32>,
    /// The key of the first bin's floor (keys below it share bin 0).
    floor: u32,
    /// Per bin, padded with empty bins to whole groups of 8: centre and half-width (0 for bins
    /// summed directly).
    centre: Vec<f64>,
    half: Vec<f64>,
    /// [TERMS][padded bins]: the moments w_p (0 for bins summed directly).
    moments: Vec<f64>,
    /// The gaps of the bins summed directly, in bin order, and per bin how many of them lie in
    /// it and the bins before (a node's direct gaps are a prefix).
    direct: Vec<T>,
    direct_ends: Vec<usize>,
    d_min: f64,
    /// The largest key of the gaps kept (u32::MAX: every gap); the others lie beyond the reach
    /// of every node these buckets are for.
    reach_key: u32,
}

/// A row's bucketed gaps as kept for a later call on the same state: exact up to `exact_to` (the
/// product's gaps beyond it; infinite for explicit distances), with the product's row bounds.
pub(super) struct RowBuckets<T> {
    pub gaps: BucketedGaps<T>,
    pub meta: Option<RowMeta>,
    pub exact_to: f64,
}

impl<T: Real> RowBuckets<T> {
    /// How many gaps the row has.
    pub fn len(&self) -> usize {
        self.gaps.count
    }
}

/// Terms and grid nodes below e^-25 (1.4e-11) of the largest are left out of the posterior.
pub const LIKELIHOOD_MARGIN: f64 = 25.0;

/// A gap's key: its f32 bits without the low mantissa bits (monotone in the value; 0 for g <= 0).
#[inline(always)]
fn key_of(g: f64) -> u32 {
    if g > 0.0 {
        (g as f32).to_bits() >> (23 - SUB_BITS)
    } else {
        0
    }
}

/// Bins from the floor up to the largest gap's.
const BINS: usize = ((OCTAVES + 1) << SUB_BITS) as usize + 1;

impl<T: Real> BucketedGaps<T> {
    /// From a row's squared distances.
    #[inline(always)]
    fn new(distances: &[T]) -> Self {
        let d_min = min_of(distances);
        Self::of(distances, d_min, d_min.to_f64(), f64::INFINITY)
    }

    /// From `values - offset` (gaps), the row's nearest squared distance being `d_min`, keeping
    /// the whole bins up to the one of `reach` (infinite: every gap). A node whose cut lies within
    /// reach sums the very bins it would with every gap kept; the rest are never sorted.
    #[inline(always)]
    pub(super) fn of(values: &[T], offset: T, d_min: f64, reach: f64) -> Self {
        let count = values.len();
        let reach_key = if reach.is_finite() {
            key_of(reach)
        } else {
            u32::MAX
        };
        let within: Vec<T>;
        let values = if reach_key == u32::MAX {
            values
        } else {
            within = values
                .iter()
                .copied()
                .filter(|&v| key_of((v - offset).to_f64()) <= reach_key)
                .collect();
            &within[..]
        };
        let largest = (max_signed(values) - offset).to_f64();
        let floor = key_of(largest).saturating_sub(OCTAVES << SUB_BITS);
        let bin: Vec<u16> = values.iter().map(|&v| bin_of(v - offset, floor)).collect();
        let (counts, gaps) = counting_sort(values, offset, &bin);
        let mut index = Vec::new();
        let mut ends = Vec::new();
        for b in 0..BINS {
            if counts[b + 1] > counts[b] {
                index.push(b as u32);
                ends.push(counts[b + 1]);
            }
        }
        let padded = index.len().div_ceil(8) * 8;
        let mut centre = vec![0.0; padded];
        let mut half = vec![0.0; padded];
        let mut moments = vec![0.0; TERMS * padded];
        let mut direct = Vec::new();
        let mut direct_ends = Vec::with_capacity(index.len());
        let mut start = 0;
        for (b, (&i, &end)) in index.iter().zip(&ends).enumerate() {
            let slice = &gaps[start..end];
            let key = (i > 0).then_some(i + floor);
            if let Some((m, h)) = key.and_then(|k| taylor_interval(k, slice.len())) {
                centre[b] = m;
                half[b] = h;
                taylor_moments(slice, m, h, b, padded, &mut moments);
            } else {
                direct.extend_from_slice(slice);
            }
            direct_ends.push(direct.len());
            start = end;
        }
        BucketedGaps {
            count,
            index,
            floor,
            centre,
            half,
            moments,
            direct,
            direct_ends,
            d_min,
            reach_key,
        }
    }

    /// Whether every bin a node of `sigmas` with mass sums was kept.
    #[inline(always)]
    fn reaches(&self, sigmas: &[f64], ln_sigmas: &[f64], dim: usize) -> bool {
        self.reach_key == u32::MAX
            || key_of(mass_reach(self.d_min, self.count, sigmas, ln_sigmas, dim)) <= self.reach_key
    }

    /// How many leading bins include every gap <= `cut`.
    #[inline(always)]
    fn bins_below(&self, cut: f64) -> usize {
        let last = key_of(cut).saturating_sub(self.floor);
        self.index.partition_point(|&i| i <= last)
    }
}

/// Contiguous parts of a row that the counting sort runs side by side: with one running count
/// per bin, each gap waited on the previous gap's increment of the same count in memory.
const PARTS: usize = 4;

/// `values - offset` stably sorted by `bin`, and the bins' cumulative counts (bin b holds
/// sorted[counts[b]..counts[b + 1]]). Part k's gaps of a bin follow those of parts before it, so
/// the order is that of a single pass.
#[inline(always)]
fn counting_sort<T: Real>(values: &[T], offset: T, bin: &[u16]) -> (Vec<usize>, Vec<T>) {
    let part = bin.len() / PARTS;
    // The last part also takes the remainder, after the interleaved rounds.
    let rest = PARTS * part..bin.len();
    let mut per_part = [[0usize; BINS]; PARTS];
    for i in 0..part {
        for (k, counts) in per_part.iter_mut().enumerate() {
            counts[bin[k * part + i] as usize] += 1;
        }
    }
    for &b in &bin[rest.clone()] {
        per_part[PARTS - 1][b as usize] += 1;
    }
    let mut counts = vec![0usize; BINS + 1];
    let mut next = [[0usize; BINS]; PARTS];
    for b in 0..BINS {
        let mut at = counts[b];
        for k in 0..PARTS {
            next[k][b] = at;
            at += per_part[k][b];
        }
        counts[b + 1] = at;
    }
    let mut sorted = vec![T::ZERO; values.len()];
    for i in 0..part {
        for (k, next) in next.iter_mut().enumerate() {
            let j = k * part + i;
            let slot = &mut next[bin[j] as usize];
            sorted[*slot] = values[j] - offset;
            *slot += 1;
        }
    }
    for j in rest {
        let slot = &mut next[PARTS - 1][bin[j] as usize];
        sorted[*slot] = values[j] - offset;
        *slot += 1;
    }
    (counts, sorted)
}

/// A gap's bin above the floor key (gaps <= 0 and those below the floor share bin 0).
#[inline(always)]
fn bin_of<T: Real>(g: T, floor: u32) -> u16 {
    key_of(g.to_f64())
        .saturating_sub(floor)
        .min(BINS as u32 - 1) as u16
}

/// Centre and half-width of the bin of `key` holding `n` gaps when its Taylor series holds to
/// TAYLOR_TOL at every node; None (summed directly) otherwise.
///
/// The bin spans the f32 values [lo, hi) of its key (widened by f32 rounding for f64 gaps). At
/// a node c the truncation is at most n e^(-c lo) (c h)^TERMS / TERMS!; over all c this peaks at
/// c lo = TERMS, giving n (TERMS h / (e lo))^TERMS / TERMS!: below 3e-16 n for h <= lo / 4.
#[inline(always)]
fn taylor_interval(key: u32, n: usize) -> Option<(f64, f64)> {
    if n < TAYLOR_MIN {
        return None;
    }
    let lo = f32::from_bits(key << (23 - SUB_BITS)) as f64 * (1.0 - f64::from(f32::EPSILON));
    let hi = f32::from_bits((key + 1) << (23 - SUB_BITS)) as f64 * (1.0 + f64::from(f32::EPSILON));
    if !(lo > 0.0 && hi.is_finite()) {
        return None;
    }
    let ratio = TERMS as f64 * 0.5 * (hi - lo) / (std::f64::consts::E * lo);
    let mut worst = n as f64;
    for p in 1..=TERMS {
        worst *= ratio / p as f64;
    }
    (worst <= TAYLOR_TOL).then_some((0.5 * (hi + lo), 0.5 * (hi - lo)))
}

/// Independent chains of powers in `add_powers`: p = k mod CHAINS, each stepping by s^CHAINS.
const CHAINS: usize = 4;
const _: () = assert!(
    TERMS.is_multiple_of(CHAINS),
    "whole rounds of the power chains"
);

/// acc[p] += s^p, lane by lane (a lane with `start` 0 adds nothing). Four chains stepping by
/// s^4: one chain of TERMS dependent multiplies kept the multiplier waiting on its latency.
#[inline(always)]
fn add_powers(acc: &mut [[f64; 8]; TERMS], s: [f64; 8], start: [f64; 8]) {
    let mut power = [[0.0f64; 8]; CHAINS];
    let mut step = [0.0f64; 8];
    for l in 0..8 {
        let s2 = s[l] * s[l];
        power[0][l] = start[l];
        power[1][l] = start[l] * s[l];
        power[2][l] = start[l] * s2;
        power[3][l] = power[1][l] * s2;
        step[l] = s2 * s2;
    }
    for round in acc.chunks_exact_mut(CHAINS) {
        for (row, chain) in round.iter_mut().zip(power.iter_mut()) {
            for l in 0..8 {
                row[l] += chain[l];
                chain[l] *= step[l];
            }
        }
    }
}

/// Bin `b`'s moments w_p = sum_j s_j^p / p!, s = (g - m) / h in [-1, 1], eight gaps at a time
/// (the last group masked).
#[inline(always)]
fn taylor_moments<T: Real>(
    slice: &[T],
    m: f64,
    h: f64,
    b: usize,
    padded: usize,
    moments: &mut [f64],
) {
    let acc = if slice.len() < PASSES_MIN {
        power_sums_at_once(slice, m, h)
    } else {
        power_sums_in_passes(slice, m, h)
    };
    let mut factorial = 1.0;
    for (p, row) in acc.iter().enumerate() {
        if p > 0 {
            factorial *= p as f64;
        }
        moments[p * padded + b] = row.iter().sum::<f64>() / factorial;
    }
}

/// Per lane (gap j in lane j mod 8), the sums over the gaps of s^p for every p, s = (g - m) / h:
/// all TERMS sums of eight lanes at once, more than the registers hold, so they live in memory.
#[inline(always)]
fn power_sums_at_once<T: Real>(slice: &[T], m: f64, h: f64) -> [[f64; 8]; TERMS] {
    let inv = 1.0 / h;
    let mut acc = [[0.0f64; 8]; TERMS];
    let chunks = slice.chunks_exact(8);
    let tail = chunks.remainder();
    for group in chunks {
        let mut s = [0.0f64; 8];
        for l in 0..8 {
            s[l] = (group[l].to_f64() - m) * inv;
        }
        add_powers(&mut acc, s, [1.0; 8]);
    }
    if !tail.is_empty() {
        let (mut s, mut live) = ([0.0f64; 8], [0.0f64; 8]);
        for (l, &g) in tail.iter().enumerate() {
            s[l] = (g.to_f64() - m) * inv;
            live[l] = 1.0;
        }
        add_powers(&mut acc, s, live);
    }
    acc
}

/// Gaps a bin needs before its sums are taken in passes (fewer: the passes' set-up costs more
/// than the spilled sums).
const PASSES_MIN: usize = 64;
/// Rounds of the power chains per pass: two rounds of four chains in four lanes are eight sums,
/// which stay in registers with the chains and their step.
const PASS_ROUNDS: usize = 2;
const _: () = assert!(
    (TERMS / CHAINS).is_multiple_of(PASS_ROUNDS),
    "whole passes of rounds"
);

/// `power_sums_at_once`'s sums, bit for bit, in passes that each keep a few of them in registers:
/// four lanes (half a group) and PASS_ROUNDS rounds of the chains at a time over every group, the
/// chains' powers kept per group between passes. Every sum adds the same values in the same
/// order, each power is the same product chain: only the loop order differs. The spilled sums
/// cost a load and a store per add, twice the arithmetic's time.
#[inline(always)]
fn power_sums_in_passes<T: Real>(slice: &[T], m: f64, h: f64) -> [[f64; 8]; TERMS] {
    let inv = 1.0 / h;
    let groups = slice.len().div_ceil(8);
    let mut acc = [[0.0f64; 8]; TERMS];
    // Per group and half: the chains' powers where the last pass left them, and their step s^4.
    let mut chains = vec![[[0.0f64; 4]; CHAINS]; 2 * groups];
    let mut steps = vec![[0.0f64; 4]; 2 * groups];
    for half in 0..2 {
        for pass in 0..TERMS / CHAINS / PASS_ROUNDS {
            let mut sums = [[[0.0f64; 4]; CHAINS]; PASS_ROUNDS];
            for g in 0..groups {
                let slot = 2 * g + half;
                let (mut power, step) = if pass == 0 {
                    let first = 8 * g + 4 * half;
                    let (mut s, mut start) = ([0.0f64; 4], [0.0f64; 4]);
                    if first + 4 <= slice.len() {
                        for l in 0..4 {
                            s[l] = (slice[first + l].to_f64() - m) * inv;
                            start[l] = 1.0;
                        }
                    } else {
                        for l in 0..4 {
                            if let Some(&g) = slice.get(first + l) {
                                s[l] = (g.to_f64() - m) * inv;
                                start[l] = 1.0;
                            }
                        }
                    }
                    let (power, step) = first_powers(s, start);
                    steps[slot] = step;
                    (power, step)
                } else {
                    (chains[slot], steps[slot])
                };
                for round in sums.iter_mut() {
                    for (sum, chain) in round.iter_mut().zip(power.iter_mut()) {
                        for l in 0..4 {
                            sum[l] += chain[l];
                            chain[l] *= step[l];
                        }
                    }
                }
                chains[slot] = power;
            }
            for (r, round) in sums.iter().enumerate() {
                for (c, sum) in round.iter().enumerate() {
                    let p = (pass * PASS_ROUNDS + r) * CHAINS + c;
                    acc[p][4 * half..4 * half + 4].copy_from_slice(sum);
                }
            }
        }
    }
    acc
}

/// The chains' first powers start s^c (c < CHAINS) and their step s^4, as `add_powers` forms them.
#[inline(always)]
fn first_powers(s: [f64; 4], start: [f64; 4]) -> ([[f64; 4]; CHAINS], [f64; 4]) {
    let mut power = [[0.0f64; 4]; CHAINS];
    let mut step = [0.0f64; 4];
    for l in 0..4 {
        let s2 = s[l] * s[l];
        power[0][l] = start[l];
        power[1][l] = start[l] * s[l];
        power[2][l] = start[l] * s2;
        power[3][l] = power[1][l] * s2;
        step[l] = s2 * s2;
    }
    (power, step)
}

/// ln sum_j exp(-d_j / (2 s^2)) for each sigma. Gaps more than 25 / (1/2s^2) above the nearest
/// (terms below e^-25 of the nearest) are skipped, a prefix of the bins; bins with moments are
/// summed from them, the others term by term.
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
    if gaps.count == 0 {
        return vec![f64::NEG_INFINITY; sigmas.len()];
    }
    let d_min = gaps.d_min;
    let bounds = NodeBounds::of(d_min, gaps.count, sigmas, ln_sigmas, dim);
    let mut out = Vec::with_capacity(sigmas.len());
    for (&s, &bound) in sigmas.iter().zip(&bounds.lower) {
        let scale = 1.0 / (2.0 * s * s);
        if !bounds.has_mass(bound) {
            out.push(-d_min * scale);
            continue;
        }
        debug_assert!(key_of(LIKELIHOOD_MARGIN / scale) <= gaps.reach_key);
        let bins = gaps.bins_below(LIKELIHOOD_MARGIN / scale);
        let total = taylor_sum::<T, FMA>(gaps, bins, scale) + direct_sum(gaps, bins, scale);
        out.push(-d_min * scale + total.ln());
    }
    out
}

/// A row's lower bounds b = -d_min / (2 s^2) - D ln s on its nodes' log-likelihoods (up to the
/// row's constant), the best of them, and ln N (each node's upper bound is b + ln N).
struct NodeBounds {
    lower: Vec<f64>,
    best: f64,
    spread: f64,
}

impl NodeBounds {
    #[inline(always)]
    fn of(d_min: f64, count: usize, sigmas: &[f64], ln_sigmas: &[f64], dim: usize) -> Self {
        let mut lower = Vec::with_capacity(sigmas.len());
        let mut best = f64::NEG_INFINITY;
        for (&s, &ln_s) in sigmas.iter().zip(ln_sigmas) {
            let b = -d_min / (2.0 * s * s) - dim as f64 * ln_s;
            best = best.max(b);
            lower.push(b);
        }
        NodeBounds {
            lower,
            best,
            spread: (count as f64).ln(),
        }
    }

    /// Whether a node with lower bound `bound` may carry posterior mass (else it is skipped).
    #[inline(always)]
    fn has_mass(&self, bound: f64) -> bool {
        // Not "below the best by the margin" (a NaN bound is kept, as it always was).
        (bound + self.spread).partial_cmp(&(self.best - LIKELIHOOD_MARGIN))
            != Some(std::cmp::Ordering::Less)
    }
}

/// The largest gap a node of `sigmas` with mass sums (LIKELIHOOD_MARGIN 2 s^2, the cut of
/// `log_sum_exp_bucketed`); 0 where none has mass.
#[inline(always)]
fn mass_reach(d_min: f64, count: usize, sigmas: &[f64], ln_sigmas: &[f64], dim: usize) -> f64 {
    let bounds = NodeBounds::of(d_min, count, sigmas, ln_sigmas, dim);
    sigmas
        .iter()
        .zip(&bounds.lower)
        .filter(|&(_, &bound)| bounds.has_mass(bound))
        .map(|(&s, _)| LIKELIHOOD_MARGIN / (1.0 / (2.0 * s * s)))
        .fold(0.0, f64::max)
}

/// The first `bins` bins' Taylor series at scale c, eight bins at a time (bins summed directly
/// and the padding have zero moments; lanes past `bins` are masked). The series is split into
/// its even and odd terms, each by Horner in x^2: two chains of half the length, run side by
/// side (one chain of TERMS dependent steps left the node waiting on their latency).
#[inline(always)]
fn taylor_sum<T: Real, const FMA: bool>(gaps: &BucketedGaps<T>, bins: usize, scale: f64) -> f64 {
    let padded = gaps.half.len();
    let moment = |p: usize, b: usize| -> &[f64] { &gaps.moments[p * padded + b..][..8] };
    let mut lanes = [0.0f64; 8];
    for b in (0..bins).step_by(8) {
        let half = &gaps.half[b..b + 8];
        let centre = &gaps.centre[b..b + 8];
        let mut live = [0.0f64; 8];
        let mut x = [0.0f64; 8];
        let mut x2 = [0.0f64; 8];
        let mut e = [0.0f64; 8];
        let mut even = [0.0f64; 8];
        let mut odd = [0.0f64; 8];
        let (even_top, odd_top) = (moment(TERMS - 2, b), moment(TERMS - 1, b));
        for l in 0..8 {
            live[l] = if b + l < bins { 1.0 } else { 0.0 };
            x[l] = -scale * half[l] * live[l];
            x2[l] = x[l] * x[l];
            e[l] = -scale * centre[l];
            even[l] = even_top[l];
            odd[l] = odd_top[l];
        }
        for q in (0..TERMS / 2 - 1).rev() {
            let (even_row, odd_row) = (moment(2 * q, b), moment(2 * q + 1, b));
            for l in 0..8 {
                even[l] = even[l].fused::<FMA>(x2[l], even_row[l]);
                odd[l] = odd[l].fused::<FMA>(x2[l], odd_row[l]);
            }
        }
        let mut acc = [0.0f64; 8];
        for l in 0..8 {
            acc[l] = odd[l].fused::<FMA>(x[l], even[l]);
        }
        // exp(-c m) in the set's precision (~1 ulp, like the terms it replaces).
        let mut weight = [T::ZERO; 8];
        for l in 0..8 {
            weight[l] = T::from_f64(e[l]).exp();
        }
        for l in 0..8 {
            lanes[l] += live[l] * weight[l].to_f64() * acc[l];
        }
    }
    lanes.iter().sum()
}

/// The directly summed bins among the first `bins`, an exp per gap.
#[inline(always)]
fn direct_sum<T: Real>(gaps: &BucketedGaps<T>, bins: usize, scale: f64) -> f64 {
    if bins == 0 {
        return 0.0;
    }
    let run = &gaps.direct[..gaps.direct_ends[bins - 1]];
    let c = T::from_f64(-scale);
    let mut lanes = [T::ZERO; LANES];
    let chunks = run.chunks_exact(LANES);
    // The last part padded with infinite gaps (terms of 0), so that it vectorises too.
    let mut tail = [T::INFINITY; LANES];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    for ch in chunks.chain(std::iter::once(&tail[..])) {
        for l in 0..LANES {
            lanes[l] = lanes[l] + (ch[l] * c).exp();
        }
    }
    lanes.iter().map(|v| v.to_f64()).sum()
}

/// One task: distances to the span, bucketed per row.
#[inline(always)]
pub(super) fn bucket_task<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
) -> Vec<RowBuckets<T>> {
    let (dist, first, width) = span_distances::<T, FMA>(set, x, rows, span);
    // A loop, not a closure: a closure LLVM keeps out of line loses the kernel's target features.
    let mut out = Vec::with_capacity(rows.len());
    for row in dist.chunks_exact(width).take(rows.len()) {
        out.push(RowBuckets {
            gaps: BucketedGaps::new(&row[span.start - first..span.end - first]),
            meta: None,
            exact_to: f64::INFINITY,
        });
    }
    out
}

/// ln of each sigma of a grid.
pub(super) fn ln_of(sigmas: &[f64]) -> Vec<f64> {
    sigmas.iter().map(|s| s.ln()).collect()
}

/// One row's coarse grid (`coarse_ln` its logs, taken once per batch), then its fine grid
/// `fine_of(coarse values)`, from its bucketed gaps; None where a grid resolves finer than the
/// gaps are exact (kept product gaps: the caller measures the row afresh).
#[inline(always)]
pub(super) fn grid_from_buckets<T: Real, const FMA: bool>(
    row: &RowBuckets<T>,
    dim: usize,
    coarse: &[f64],
    coarse_ln: &[f64],
    fine_of: &dyn Fn(&[f64]) -> Vec<f64>,
) -> Option<GridRow> {
    let exact_enough = |sigmas: &[f64], ln_sigmas: &[f64]| match &row.meta {
        Some(meta) => {
            posterior_exact_cut::<T>(sigmas, ln_sigmas, meta, dim, row.len()) <= row.exact_to
        }
        None => true,
    };
    if !exact_enough(coarse, coarse_ln) || !row.gaps.reaches(coarse, coarse_ln, dim) {
        return None;
    }
    let c = log_sum_exp_bucketed::<T, FMA>(&row.gaps, coarse, coarse_ln, dim);
    let fine_sigmas = fine_of(&c);
    let fine_ln = ln_of(&fine_sigmas);
    if !exact_enough(&fine_sigmas, &fine_ln) || !row.gaps.reaches(&fine_sigmas, &fine_ln, dim) {
        return None;
    }
    let f = log_sum_exp_bucketed::<T, FMA>(&row.gaps, &fine_sigmas, &fine_ln, dim);
    Some((c, fine_sigmas, f))
}

/// The largest gap a node of `sigmas` that may carry posterior mass sums while resolving finer
/// than the distances' error bound (bound > TIGHT 2 s^2): gaps up to it must be exact. The row's
/// nearest squared distance lies in [d_min - bound, d_min].
///
/// None need be, whatever the nodes, where the product's bound is within what explicit f32
/// differences guarantee themselves: a gap's explicit error bound, gamma_D (d_j + d_min), is at
/// least 2 gamma_D d_min, so far from the data (large sigma: d_min ~ D s^2 >> |x||y|) recomputing
/// would trade the product's gaps for no better ones at the cost of a distance pass.
fn posterior_exact_cut<T: Real>(
    sigmas: &[f64],
    ln_sigmas: &[f64],
    meta: &RowMeta,
    dim: usize,
    points: usize,
) -> f64 {
    let gamma = dim as f64 * T::EPSILON / (1.0 - dim as f64 * T::EPSILON);
    if meta.bound <= 2.0 * gamma * meta.d_min {
        return 0.0;
    }
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
    let cut = posterior_exact_cut::<T>(coarse, coarse_ln, meta, dim, gaps.len());
    if cut <= 0.0 {
        return 0;
    }
    let limit = T::from_f64(cut + meta.bound);
    gaps.iter().map(|&g| usize::from(g <= limit)).sum()
}

/// One row's log-sum-exps from its gaps in GEMM form (`coarse_ln` the coarse grid's logs, taken
/// once per batch): the gaps that a node with mass sums and resolves finer than the product's
/// bound are recomputed by explicit differences first. Also returns the row's buckets, for a
/// later call on the same state.
#[inline(always)]
pub(super) fn gemm_log_sum_exp_row<T: Real, const FMA: bool>(
    set: &PreparedSet<T>,
    x: &[T],
    span: Span,
    gaps: &[T],
    meta: &RowMeta,
    coarse: &[f64],
    coarse_ln: &[f64],
    fine_of: &dyn Fn(&[f64]) -> Vec<f64>,
) -> (GridRow, RowBuckets<T>) {
    let dim = set.dim;
    let cut = posterior_exact_cut::<T>(coarse, coarse_ln, meta, dim, gaps.len());
    let mut row = gaps.to_vec();
    let d_min = hybrid_gaps::<T, FMA>(set, x, span, &mut row, meta, cut);
    // Gaps beyond every node's cut are never sorted (late in sampling, nearly all of them).
    let count = gaps.len();
    let coarse_reach = |d_min: f64| mass_reach(d_min, count, coarse, coarse_ln, dim);
    let mut buckets = BucketedGaps::of(&row, T::ZERO, d_min, coarse_reach(d_min));
    let mut exact_to = cut;
    let c = log_sum_exp_bucketed::<T, FMA>(&buckets, coarse, coarse_ln, dim);
    let fine_sigmas = fine_of(&c);
    let fine_ln = ln_of(&fine_sigmas);
    let fine_cut = posterior_exact_cut::<T>(&fine_sigmas, &fine_ln, meta, dim, gaps.len());
    let reach_of =
        |d_min: f64| coarse_reach(d_min).max(mass_reach(d_min, count, &fine_sigmas, &fine_ln, dim));
    if fine_cut > cut {
        // The fine grid resolves finer than the coarse one did: more gaps made exact.
        row.copy_from_slice(gaps);
        let d_min = hybrid_gaps::<T, FMA>(set, x, span, &mut row, meta, fine_cut);
        buckets = BucketedGaps::of(&row, T::ZERO, d_min, reach_of(d_min));
        exact_to = fine_cut;
    } else if !buckets.reaches(&fine_sigmas, &fine_ln, dim) {
        buckets = BucketedGaps::of(&row, T::ZERO, d_min, reach_of(d_min));
    }
    let f = log_sum_exp_bucketed::<T, FMA>(&buckets, &fine_sigmas, &fine_ln, dim);
    let kept = RowBuckets {
        gaps: buckets,
        meta: Some(*meta),
        exact_to,
    };
    ((c, fine_sigmas, f), kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The side-by-side counting sort against a stable sort by bin, at lengths around whole
    /// rounds of the parts (empty, shorter than the parts, remainders) and bins crowded or spread.
    #[test]
    fn counting_sort_in_parts_keeps_the_stable_order() {
        let mut u = 0.412_345_678_f64;
        for n in [0, 1, 3, 4, 5, 7, 8, 9, 17, 64, 1000, 1797] {
            for spread in [1usize, 3, BINS] {
                let values: Vec<f32> = (0..n).map(|j| j as f32 * 0.5 + 2.0).collect();
                let bin: Vec<u16> = (0..n)
                    .map(|_| {
                        u = (u * 7_919.0 + 0.271_828).fract();
                        (u * spread as f64) as u16
                    })
                    .collect();
                let (counts, sorted) = counting_sort(&values, 1.0, &bin);
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by_key(|&j| bin[j]);
                let expect: Vec<f32> = order.iter().map(|&j| values[j] - 1.0).collect();
                assert_eq!(sorted, expect, "n {n}, spread {spread}");
                for b in 0..BINS {
                    let held = bin.iter().filter(|&&c| c as usize == b).count();
                    assert_eq!(counts[b + 1] - counts[b], held, "n {n}, bin {b}");
                }
            }
        }
    }

    /// The power sums in passes against the sums taken at once, bit for bit, on f32 and f64 gaps
    /// at lengths around whole groups and halves.
    #[test]
    fn power_sums_in_passes_match_the_sums_at_once_bit_for_bit() {
        let mut u = 0.271_234_567_f64;
        for n in [1, 3, 4, 5, 8, 9, 12, 63, 64, 65, 68, 71, 72, 200, 1797] {
            let gaps: Vec<f64> = (0..n)
                .map(|_| {
                    u = (u * 7_919.0 + 0.271_828).fract();
                    3.0 + 2.0 * u
                })
                .collect();
            let gaps32: Vec<f32> = gaps.iter().map(|&g| g as f32).collect();
            let bits = |acc: [[f64; 8]; TERMS]| acc.map(|row| row.map(f64::to_bits));
            assert_eq!(
                bits(power_sums_in_passes(&gaps, 4.0, 1.0)),
                bits(power_sums_at_once(&gaps, 4.0, 1.0)),
                "f64, n {n}"
            );
            assert_eq!(
                bits(power_sums_in_passes(&gaps32, 4.0, 1.0)),
                bits(power_sums_at_once(&gaps32, 4.0, 1.0)),
                "f32, n {n}"
            );
        }
    }

    /// The binned Taylor sums against f64 sums term by term, on gaps spread over twelve decades
    /// with a dense cluster (bins of thousands of gaps), at nodes from far below to far above
    /// them (c lo near TERMS, the series' worst case, included). The result must lie between the
    /// sum over the gaps within the cut and the sum over all of them.
    #[test]
    fn binned_taylor_sums_match_term_by_term_sums() {
        let mut gaps = vec![0.0f64];
        let mut u = 0.123_456_789_f64;
        for j in 0..6000 {
            u = (u * 7_919.0 + 0.271_828).fract();
            gaps.push(if j % 2 == 0 {
                100.0 + 12.0 * u
            } else {
                1e-6 * (1e10f64.ln() * u).exp()
            });
        }
        let sigmas: Vec<f64> = (0..200)
            .map(|k| (1e-4f64.ln() + k as f64 * 0.1).exp())
            .collect();
        let ln: Vec<f64> = sigmas.iter().map(|s| s.ln()).collect();
        let bucketed = BucketedGaps::<f64>::of(&gaps, 0.0, 0.0, f64::INFINITY);
        let taylor = bucketed.half.iter().filter(|&&h| h > 0.0).count();
        assert!(taylor >= 10, "{taylor} bins with moments");
        // dim 0 and d_min 0: every node's bounds tie, so none is skipped.
        let got = log_sum_exp_bucketed::<f64, false>(&bucketed, &sigmas, &ln, 0);
        for (&s, &v) in sigmas.iter().zip(&got) {
            let c = 1.0 / (2.0 * s * s);
            let sum = |limit: f64| -> f64 {
                gaps.iter()
                    .filter(|&&g| g <= limit)
                    .map(|g| (-c * g).exp())
                    .sum::<f64>()
            };
            let (within, all) = (sum(LIKELIHOOD_MARGIN / c).ln(), sum(f64::INFINITY).ln());
            assert!(
                v >= within - 1e-10 && v <= all + 1e-10,
                "sigma {s}: {v} outside [{within}, {all}]"
            );
        }
        // f32 gaps: the same within f32's rounding of the terms.
        let gaps32: Vec<f32> = gaps.iter().map(|&g| g as f32).collect();
        let bucketed = BucketedGaps::<f32>::of(&gaps32, 0.0, 0.0, f64::INFINITY);
        let got32 = log_sum_exp_bucketed::<f32, false>(&bucketed, &sigmas, &ln, 0);
        for ((&s, &a), &b) in sigmas.iter().zip(&got).zip(&got32) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                "sigma {s}: {a} vs {b}"
            );
        }
    }
}
