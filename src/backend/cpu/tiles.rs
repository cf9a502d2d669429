//! The GEMM form's two products, register-tiled on the data's blocked layout
//! ([block][dim][LANES], laid out once when the set is prepared, so no call packs the data):
//!
//! - logits: L[r][j] = x_r . y_j, lanes along the points: TILE_ROWS x TILE_BLOCKS accumulator
//!   vectors, each step one broadcast x_r[k] per row and one LANES-wide load per block;
//! - weighted sums: S[r][k] = sum_j w_rj y_j[k], lanes along the points too: TILE_ROWS x
//!   TILE_DIMS accumulator vectors of per-lane partial sums, reduced at the end.
//!
//! 4 x 6 = 24 accumulators stay in AVX-512's 32 registers (LLVM keeps the fixed-size arrays in
//! registers); the k-loop of the logits sums in order (the GEMM form's error bound assumes no
//! more). Both are parallel over disjoint parts of the data (blocks, dimensions), so every thread
//! streams its own part of the data once per call.

use rayon::prelude::*;

use super::layout::LANES;
use super::real::Real;

/// Rows per register tile.
const TILE_ROWS: usize = 4;
/// Blocks of LANES points per logits tile.
const TILE_BLOCKS: usize = 6;
/// Dimensions per weighted-sum tile.
const TILE_DIMS: usize = 6;

/// Dot products of TILE rows with BLOCKS blocks of points: [row][block][lane].
#[inline(always)]
fn logits_tile<T: Real, const FMA: bool, const ROWS: usize, const BLOCKS: usize>(
    x: &[&[T]; ROWS],
    blocks: &[&[T]; BLOCKS],
    dim: usize,
) -> [[[T; LANES]; BLOCKS]; ROWS] {
    let mut acc = [[[T::ZERO; LANES]; BLOCKS]; ROWS];
    for k in 0..dim {
        let xs: [T; ROWS] = std::array::from_fn(|r| x[r][k]);
        for p in 0..BLOCKS {
            let Ok(v) = <&[T; LANES]>::try_from(&blocks[p][k * LANES..(k + 1) * LANES]) else {
                return acc;
            };
            for r in 0..ROWS {
                for l in 0..LANES {
                    acc[r][p][l] = xs[r].fused::<FMA>(v[l], acc[r][p][l]);
                }
            }
        }
    }
    acc
}

/// Writes a tile's lanes that fall in [first, last) (points) to `out` ([rows][width], column
/// j - first), rows `row0..`.
#[inline(always)]
fn store_logits<T: Real, const ROWS: usize, const BLOCKS: usize>(
    acc: &[[[T; LANES]; BLOCKS]; ROWS],
    out: &mut [T],
    width: usize,
    row0: usize,
    block0: usize,
    (first, last): (usize, usize),
) {
    for (r, row) in acc.iter().enumerate() {
        for (p, lanes) in row.iter().enumerate() {
            let j0 = (block0 + p) * LANES;
            let lo = first.max(j0);
            let hi = last.min(j0 + LANES);
            if lo < hi {
                let o = (row0 + r) * width;
                out[o + lo - first..o + hi - first].copy_from_slice(&lanes[lo - j0..hi - j0]);
            }
        }
    }
}

/// One task of the logits: the rows of `x` ([rows][dim]) against blocks `blocks` of `blocked`,
/// into `out` ([rows][last - first]) for the points in [first, last).
#[inline(always)]
pub(super) fn logits_task<T: Real, const FMA: bool>(
    x: &[T],
    dim: usize,
    blocked: &[T],
    blocks: (usize, usize),
    points: (usize, usize),
    out: &mut [T],
) {
    let rows = if dim == 0 { 0 } else { x.len() / dim };
    let width = points.1 - points.0;
    let block_len = dim * LANES;
    let block = |b: usize| &blocked[b * block_len..(b + 1) * block_len];
    let row = |r: usize| &x[r * dim..(r + 1) * dim];
    let mut b = blocks.0;
    while b < blocks.1 {
        let full = b + TILE_BLOCKS <= blocks.1;
        let mut r = 0;
        while r < rows {
            if r + TILE_ROWS <= rows {
                let xs: [&[T]; TILE_ROWS] = std::array::from_fn(|q| row(r + q));
                if full {
                    let bs: [&[T]; TILE_BLOCKS] = std::array::from_fn(|p| block(b + p));
                    let acc = logits_tile::<T, FMA, TILE_ROWS, TILE_BLOCKS>(&xs, &bs, dim);
                    store_logits(&acc, out, width, r, b, points);
                } else {
                    let acc = logits_tile::<T, FMA, TILE_ROWS, 1>(&xs, &[block(b)], dim);
                    store_logits(&acc, out, width, r, b, points);
                }
                r += TILE_ROWS;
            } else {
                let xs = [row(r)];
                if full {
                    let bs: [&[T]; TILE_BLOCKS] = std::array::from_fn(|p| block(b + p));
                    let acc = logits_tile::<T, FMA, 1, TILE_BLOCKS>(&xs, &bs, dim);
                    store_logits(&acc, out, width, r, b, points);
                } else {
                    let acc = logits_tile::<T, FMA, 1, 1>(&xs, &[block(b)], dim);
                    store_logits(&acc, out, width, r, b, points);
                }
                r += 1;
            }
        }
        b += if full { TILE_BLOCKS } else { 1 };
    }
}

/// Per-lane partial sums over blocks of sum_j w_rj y_j[k] for ROWS rows and DIMS dimensions.
#[inline(always)]
fn weighted_tile<T: Real, const FMA: bool, const ROWS: usize, const DIMS: usize>(
    w: &[&[T]; ROWS],
    blocked: &[T],
    dim: usize,
    (b0, b1): (usize, usize),
    k0: usize,
) -> [[[T; LANES]; DIMS]; ROWS] {
    let mut acc = [[[T::ZERO; LANES]; DIMS]; ROWS];
    for b in b0..b1 {
        let q = (b - b0) * LANES;
        let ws: [[T; LANES]; ROWS] = std::array::from_fn(|r| {
            let mut lanes = [T::ZERO; LANES];
            lanes.copy_from_slice(&w[r][q..q + LANES]);
            lanes
        });
        let base = (b * dim + k0) * LANES;
        for d in 0..DIMS {
            let Ok(v) = <&[T; LANES]>::try_from(&blocked[base + d * LANES..base + (d + 1) * LANES])
            else {
                return acc;
            };
            for r in 0..ROWS {
                for l in 0..LANES {
                    acc[r][d][l] = ws[r][l].fused::<FMA>(v[l], acc[r][d][l]);
                }
            }
        }
    }
    acc
}

/// Adds a tile's lane sums into `out` ([rows][dims_width], columns k - k_first).
#[inline(always)]
fn store_weighted<T: Real, const ROWS: usize, const DIMS: usize>(
    acc: &[[[T; LANES]; DIMS]; ROWS],
    out: &mut [f64],
    width: usize,
    row0: usize,
    column0: usize,
) {
    for (r, row) in acc.iter().enumerate() {
        for (d, lanes) in row.iter().enumerate() {
            // Pairwise over the lanes.
            let mut v = *lanes;
            let mut half = LANES;
            while half > 1 {
                half /= 2;
                for l in 0..half {
                    v[l] = v[l] + v[l + half];
                }
            }
            out[(row0 + r) * width + column0 + d] = v[0].to_f64();
        }
    }
}

/// One task of the weighted sums: rows of `w` ([rows][(b1 - b0) LANES], aligned with the blocks,
/// zero outside the span) against dimensions [k_first, k_last) of the blocks [b0, b1), into
/// `out` ([rows][k_last - k_first]).
#[inline(always)]
pub(super) fn weighted_task<T: Real, const FMA: bool>(
    w: &[T],
    blocked: &[T],
    dim: usize,
    blocks: (usize, usize),
    dims: (usize, usize),
    out: &mut [f64],
) {
    let stride = (blocks.1 - blocks.0) * LANES;
    let rows = if stride == 0 { 0 } else { w.len() / stride };
    let width = dims.1 - dims.0;
    let row = |r: usize| &w[r * stride..(r + 1) * stride];
    let mut k = dims.0;
    while k < dims.1 {
        let full = k + TILE_DIMS <= dims.1;
        let mut r = 0;
        while r < rows {
            let column = k - dims.0;
            if r + TILE_ROWS <= rows {
                let ws: [&[T]; TILE_ROWS] = std::array::from_fn(|q| row(r + q));
                if full {
                    let acc =
                        weighted_tile::<T, FMA, TILE_ROWS, TILE_DIMS>(&ws, blocked, dim, blocks, k);
                    store_weighted(&acc, out, width, r, column);
                } else {
                    let acc = weighted_tile::<T, FMA, TILE_ROWS, 1>(&ws, blocked, dim, blocks, k);
                    store_weighted(&acc, out, width, r, column);
                }
                r += TILE_ROWS;
            } else {
                let ws = [row(r)];
                if full {
                    let acc = weighted_tile::<T, FMA, 1, TILE_DIMS>(&ws, blocked, dim, blocks, k);
                    store_weighted(&acc, out, width, r, column);
                } else {
                    let acc = weighted_tile::<T, FMA, 1, 1>(&ws, blocked, dim, blocks, k);
                    store_weighted(&acc, out, width, r, column);
                }
                r += 1;
            }
        }
        k += if full { TILE_DIMS } else { 1 };
    }
}

/// Splits `0..len` into about `parts` ranges whose ends are multiples of `unit` (but the last).
pub(super) fn split(len: usize, parts: usize, unit: usize) -> Vec<(usize, usize)> {
    let units = len.div_ceil(unit.max(1));
    let per = units.div_ceil(parts.max(1)).max(1) * unit.max(1);
    (0..len)
        .step_by(per.max(1))
        .map(|a| (a, (a + per).min(len)))
        .collect()
}

/// The logits of the rows of `x` ([rows][dim]) with the points [first, last) of the blocked data
/// `task` reads, as [rows][last - first]; `task` is `logits_task` compiled for the machine,
/// parallel over blocks.
pub(super) fn logits<T: Real>(
    x: &[T],
    dim: usize,
    (first, last): (usize, usize),
    parallel: bool,
    task: &(dyn Fn(&[T], (usize, usize), (usize, usize), &mut [T]) + Sync),
) -> Vec<T> {
    let rows = if dim == 0 { 0 } else { x.len() / dim };
    let width = last - first;
    let (b0, b1) = (first / LANES, last.div_ceil(LANES));
    let parts = if parallel {
        4 * rayon::current_num_threads()
    } else {
        1
    };
    let chunks = split(b1 - b0, parts, TILE_BLOCKS);
    let pieces: Vec<(usize, usize, Vec<T>)> = chunks
        .into_par_iter()
        .map(|(a, b)| {
            let lo = first.max((b0 + a) * LANES);
            let hi = last.min((b0 + b) * LANES);
            let mut piece = vec![T::ZERO; rows * (hi - lo)];
            task(x, (b0 + a, b0 + b), (lo, hi), &mut piece);
            (lo, hi, piece)
        })
        .collect();
    let mut out = vec![T::ZERO; rows * width];
    for (lo, hi, piece) in pieces {
        let w = hi - lo;
        for r in 0..rows {
            out[r * width + lo - first..r * width + hi - first]
                .copy_from_slice(&piece[r * w..(r + 1) * w]);
        }
    }
    out
}

/// sum_j w_rj y_j ([rows][dim], f64) for weights `w` ([rows][(b1 - b0) LANES], aligned with the
/// blocks [b0, b1) of `blocked`); `task` is `weighted_task` compiled for the machine, parallel
/// over dimensions.
pub(super) fn weighted<T: Real>(
    w: &[T],
    dim: usize,
    blocks: (usize, usize),
    parallel: bool,
    task: &(dyn Fn(&[T], (usize, usize), (usize, usize), &mut [f64]) + Sync),
) -> Vec<f64> {
    let stride = (blocks.1 - blocks.0) * LANES;
    let rows = if stride == 0 { 0 } else { w.len() / stride };
    let parts = if parallel {
        2 * rayon::current_num_threads()
    } else {
        1
    };
    let chunks = split(dim, parts, TILE_DIMS);
    let pieces: Vec<(usize, usize, Vec<f64>)> = chunks
        .into_par_iter()
        .map(|(a, b)| {
            let mut piece = vec![0.0; rows * (b - a)];
            task(w, blocks, (a, b), &mut piece);
            (a, b, piece)
        })
        .collect();
    let mut out = vec![0.0; rows * dim];
    for (a, b, piece) in pieces {
        for r in 0..rows {
            out[r * dim + a..r * dim + b].copy_from_slice(&piece[r * (b - a)..(r + 1) * (b - a)]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set's rows in the blocked layout.
    fn blocked(values: &[f64], n: usize, dim: usize) -> Vec<f64> {
        let mut out = vec![0.0; n.div_ceil(LANES) * dim * LANES];
        for j in 0..n {
            for k in 0..dim {
                out[((j / LANES) * dim + k) * LANES + j % LANES] = values[j * dim + k];
            }
        }
        out
    }

    #[test]
    fn tiled_products_match_their_definitions_on_ragged_shapes() {
        // Rows, blocks and dimensions that are not multiples of the tiles; a span off the blocks.
        let (n, dim, rows) = (211, 13, 7);
        let values: Vec<f64> = (0..n * dim).map(|i| (i as f64 * 0.37).sin()).collect();
        let data = blocked(&values, n, dim);
        let x: Vec<f64> = (0..rows * dim).map(|i| (i as f64 * 0.11).cos()).collect();
        for parallel in [false, true] {
            for (first, last) in [(0, n), (37, 190), (5, 6)] {
                let task = |x: &[f64], blocks, points, out: &mut [f64]| {
                    logits_task::<f64, false>(x, dim, &data, blocks, points, out)
                };
                let l = logits(&x, dim, (first, last), parallel, &task);
                let width = last - first;
                for r in 0..rows {
                    for j in first..last {
                        let expect: f64 =
                            (0..dim).map(|k| x[r * dim + k] * values[j * dim + k]).sum();
                        assert!((l[r * width + j - first] - expect).abs() < 1e-12);
                    }
                }
                // Weights aligned with the blocks, zero outside the span.
                let (b0, b1) = (first / LANES, last.div_ceil(LANES));
                let stride = (b1 - b0) * LANES;
                let mut w = vec![0.0; rows * stride];
                for r in 0..rows {
                    for j in first..last {
                        w[r * stride + j - b0 * LANES] = ((r * 31 + j) % 17) as f64 / 17.0;
                    }
                }
                let task = |w: &[f64], blocks, dims, out: &mut [f64]| {
                    weighted_task::<f64, false>(w, &data, dim, blocks, dims, out)
                };
                let s = weighted(&w, dim, (b0, b1), parallel, &task);
                for r in 0..rows {
                    for k in 0..dim {
                        let expect: f64 = (first..last)
                            .map(|j| w[r * stride + j - b0 * LANES] * values[j * dim + k])
                            .sum();
                        assert!((s[r * dim + k] - expect).abs() < 1e-12);
                    }
                }
            }
        }
    }
}
