//! Squared distances of query rows to a span of the data set, and lane-wide reductions.

use super::layout::{LANES, PreparedSet};
use super::real::Real;
use crate::backend::Span;

/// Squared distances of `R` query rows to one block of LANES data points over the dimensions
/// k0..k1 (one partial sum).
#[inline(always)]
fn distance_tile<T: Real, const R: usize, const FMA: bool>(
    x: [&[T]; R],
    block: &[T],
    (k0, k1): (usize, usize),
) -> [[T; LANES]; R] {
    let mut part = [[T::ZERO; LANES]; R];
    for k in k0..k1 {
        let Ok(col) = <&[T; LANES]>::try_from(&block[k * LANES..(k + 1) * LANES]) else {
            return part;
        };
        for r in 0..R {
            let xr = x[r][k];
            for l in 0..LANES {
                let t = xr - col[l];
                part[r][l] = t.fused::<FMA>(t, part[r][l]);
            }
        }
    }
    part
}

/// Squared distances of `R` query rows to one block of LANES data points, into `dist` (row r at
/// `dist[r * width + offset..][..LANES]`): one partial sum per DIM_TILE dimensions, added to the
/// total (as the GPU kernel does), so rounding grows with DIM_TILE + D / DIM_TILE terms rather
/// than D. The partial sums go through `dist`: summing them in registers (an [[T; LANES]; R]
/// accumulator) made LLVM vectorise across the rows with gathers and scatters, 8x slower.
#[inline(always)]
fn distance_block<T: Real, const R: usize, const FMA: bool>(
    x: [&[T]; R],
    block: &[T],
    dim: usize,
    dist: &mut [T],
    (width, offset): (usize, usize),
) {
    let mut k0 = 0;
    while k0 < dim {
        let k1 = (k0 + DIM_TILE).min(dim);
        let part = distance_tile::<T, R, FMA>(x, block, (k0, k1));
        for (r, p) in part.iter().enumerate() {
            let Ok(out) = <&mut [T; LANES]>::try_from(
                &mut dist[r * width + offset..r * width + offset + LANES],
            ) else {
                return;
            };
            if k0 == 0 {
                *out = *p;
            } else {
                for l in 0..LANES {
                    out[l] = out[l] + p[l];
                }
            }
        }
        k0 = k1;
    }
}

/// Dimensions per partial sum of the explicit distances (the GPU kernel's TILE_DIMS).
const DIM_TILE: usize = 16;

/// Squared distances of the task's rows to the span, [rows][blocks * LANES]; lanes outside the
/// span hold +inf.
#[inline(always)]
pub(super) fn span_distances<T: Real, const FMA: bool>(
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
        let at = (width, (b - b0) * LANES);
        let mut r = 0;
        // Eight rows at a time: eight independent FMA chains hide the FMA latency.
        while r + 8 <= rows.len() {
            let rows8 = std::array::from_fn(|q| row_of(r + q));
            distance_block::<T, 8, FMA>(rows8, block, dim, &mut dist[r * width..], at);
            r += 8;
        }
        while r + 4 <= rows.len() {
            let rows4 = [row_of(r), row_of(r + 1), row_of(r + 2), row_of(r + 3)];
            distance_block::<T, 4, FMA>(rows4, block, dim, &mut dist[r * width..], at);
            r += 4;
        }
        while r < rows.len() {
            distance_block::<T, 1, FMA>([row_of(r)], block, dim, &mut dist[r * width..], at);
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

/// The smallest value of a slice, in LANES-wide partial minima so it vectorises.
#[inline(always)]
pub(super) fn min_of<T: Real>(v: &[T]) -> T {
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
pub(super) fn sum_of<T: Real>(v: &[T]) -> f64 {
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

/// Sum of a slice in LANES-wide partial sums kept in f64: as accurate as a sequential f64 sum,
/// but it vectorises (a sequential one is a chain of dependent adds).
#[inline(always)]
pub(super) fn sum_in_f64<T: Real>(v: &[T]) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            lanes[l] += c[l].to_f64();
        }
    }
    rest.iter().map(|v| v.to_f64()).sum::<f64>() + lanes.iter().sum::<f64>()
}

/// sum_j a_j b_j in LANES-wide partial sums (a and b of equal length).
#[inline(always)]
pub(super) fn dot_lanes<T: Real, const FMA: bool>(a: &[T], b: &[T]) -> f64 {
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

/// The largest value of a slice (-inf when empty), in LANES-wide partial maxima.
#[inline(always)]
pub(super) fn max_signed<T: Real>(v: &[T]) -> T {
    let mut lanes = [T::ZERO - T::INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    let mut m = T::ZERO - T::INFINITY;
    for &v in lanes.iter().chain(rest) {
        if v > m {
            m = v;
        }
    }
    m
}

/// |a - b|^2 by explicit differences (no cancellation: exact to a few ulps of the result),
/// in LANES-wide partial sums.
#[inline(always)]
pub(super) fn explicit_distance<T: Real, const FMA: bool>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::ZERO; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            let t = x[l] - y[l];
            lanes[l] = t.fused::<FMA>(t, lanes[l]);
        }
    }
    let mut total = T::ZERO;
    for (x, y) in ra.iter().zip(rb) {
        let t = *x - *y;
        total = t.fused::<FMA>(t, total);
    }
    // Pairwise over the lanes.
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            lanes[l] = lanes[l] + lanes[l + width];
        }
    }
    total + lanes[0]
}
