//! Low-dimensional data (D <= FUSED_MAX_DIM) in spatially compact blocks of LANES points (a k-d
//! split of the span), each with its bounding box: a row measures only the blocks whose box can
//! hold its nearest point, then only those whose box is within the softmax's cutoff of it. A
//! visited block gets the fused kernel's arithmetic and a skipped one would have added only zero
//! weights, so the nearest distance is exactly the fused pass's and the sums differ from it only
//! in their order (the points' order here).

use std::sync::{Arc, Mutex};

use super::fused::{BlockMin, BlockSums, FUSED_MAX_DIM, block_distances};
use super::layout::{LANES, PreparedSet};
use super::real::Real;
use crate::backend::{Span, WeightedRow};

/// Relative slack on the box bounds against the rounding of the bounds and of the distances
/// (a few ulps of f32 are ~1e-7).
const SLACK: f64 = 1e-5;

/// Spans whose blocks are kept per set (class-conditional runs use one span per class).
const SPANS_KEPT: usize = 64;

/// A span's points in k-d order, LANES to a block, with the blocks' bounding boxes.
pub(super) struct Tiles<T> {
    dim: usize,
    /// Blocks holding points; only the last is partly padding.
    blocks: usize,
    /// Groups of LANES blocks, for the bounds pass.
    groups: usize,
    /// [block][dim][LANES] coordinates, zero on padded lanes.
    coords: Vec<T>,
    /// +inf on the last block's padded lanes, 0 on its others.
    last_pad: [T; LANES],
    /// [dim][groups * LANES] box bounds; blocks past `blocks` have +inf bounds (never visited).
    lo: Vec<T>,
    hi: Vec<T>,
}

impl<T: Real> Tiles<T> {
    fn new(rows: &[T], dim: usize, span: Span) -> Self {
        let n = span.len();
        let data = &rows[span.start * dim..span.end * dim];
        let mut order: Vec<usize> = (0..n).collect();
        split(&mut order, data, dim);
        let blocks = n.div_ceil(LANES);
        let groups = blocks.div_ceil(LANES).max(1);
        let mut coords = vec![T::ZERO; blocks * dim * LANES];
        let mut lo = vec![T::INFINITY; dim * groups * LANES];
        let mut hi = vec![T::INFINITY; dim * groups * LANES];
        for b in 0..blocks {
            let members = &order[b * LANES..((b + 1) * LANES).min(n)];
            for k in 0..dim {
                let (mut low, mut high) = (T::INFINITY, T::ZERO - T::INFINITY);
                for (l, &j) in members.iter().enumerate() {
                    let v = data[j * dim + k];
                    coords[(b * dim + k) * LANES + l] = v;
                    low = low.min(v);
                    high = if v > high { v } else { high };
                }
                lo[k * groups * LANES + b] = low;
                hi[k * groups * LANES + b] = high;
            }
        }
        let mut last_pad = [T::ZERO; LANES];
        // An empty span has no blocks (and nothing to pad).
        let last = blocks.saturating_sub(1) * LANES;
        for (l, p) in last_pad.iter_mut().enumerate() {
            if last + l >= n {
                *p = T::INFINITY;
            }
        }
        Tiles {
            dim,
            blocks,
            groups,
            coords,
            last_pad,
            lo,
            hi,
        }
    }
}

/// Orders `order` (span-relative point indices) so that every run of LANES is a k-d leaf: halves
/// of whole blocks along the box's widest axis, the partial block last.
fn split<T: Real>(order: &mut [usize], data: &[T], dim: usize) {
    if order.len() <= LANES {
        return;
    }
    let mut widest = (0, f64::NEG_INFINITY);
    for k in 0..dim {
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        for &j in order.iter() {
            let v = data[j * dim + k].to_f64();
            low = low.min(v);
            high = high.max(v);
        }
        if high - low > widest.1 {
            widest = (k, high - low);
        }
    }
    let k = widest.0;
    let left = order.len().div_ceil(LANES) / 2 * LANES;
    order.select_nth_unstable_by(left, |&a, &b| {
        data[a * dim + k]
            .to_f64()
            .total_cmp(&data[b * dim + k].to_f64())
    });
    let (a, b) = order.split_at_mut(left);
    split(a, data, dim);
    split(b, data, dim);
}

/// The set's blocks for `span` (built at the first call for that span, then kept).
pub(super) fn tiles_for<T: Real>(set: &PreparedSet<T>, span: Span) -> Arc<Tiles<T>> {
    let mut kept = set.tiles.entries.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, t)) = kept.iter().find(|(s, _)| *s == span) {
        return Arc::clone(t);
    }
    let built = Arc::new(Tiles::new(&set.rows, set.dim, span));
    if kept.len() >= SPANS_KEPT {
        kept.remove(0);
    }
    kept.push((span, Arc::clone(&built)));
    built
}

/// A span's blocks.
type Kept<T> = (Span, Arc<Tiles<T>>);

/// The blocks kept per span (shared by clones of a prepared set: they hold the same data).
#[derive(Clone)]
pub(super) struct TileCache<T> {
    entries: Arc<Mutex<Vec<Kept<T>>>>,
}

impl<T> Default for TileCache<T> {
    fn default() -> Self {
        TileCache {
            entries: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T> std::fmt::Debug for TileCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TileCache")
    }
}

/// Block `b`'s D columns.
#[inline(always)]
fn block<T: Real, const D: usize>(tiles: &Tiles<T>, b: usize) -> [&[T; LANES]; D] {
    let at = |k: usize| -> &[T; LANES] {
        let start = (b * D + k) * LANES;
        tiles.coords[start..start + LANES]
            .try_into()
            .expect("LANES values")
    };
    let mut ys = [at(0); D];
    for (k, y) in ys.iter_mut().enumerate().skip(1) {
        *y = at(k);
    }
    ys
}

#[inline(always)]
fn larger<T: Real>(a: T, b: T) -> T {
    if a > b { a } else { b }
}

/// Fills `lower` with each block's squared distance from x to its box (a lower bound on its
/// points' distances) and returns the least over the blocks of the squared distance from x to
/// the box's farthest corner (an upper bound on the nearest point's).
#[inline(always)]
fn box_bounds<T: Real, const FMA: bool, const D: usize>(
    tiles: &Tiles<T>,
    x: &[T; D],
    lower: &mut [T],
) -> T {
    let width = tiles.groups * LANES;
    let mut upper = BlockMin::<T>::new();
    for g in 0..tiles.groups {
        let mut lb = [T::ZERO; LANES];
        let mut ub = [T::ZERO; LANES];
        for k in 0..D {
            let lo = &tiles.lo[k * width + g * LANES..k * width + (g + 1) * LANES];
            let hi = &tiles.hi[k * width + g * LANES..k * width + (g + 1) * LANES];
            for l in 0..LANES {
                let out = larger(larger(lo[l] - x[k], x[k] - hi[l]), T::ZERO);
                lb[l] = out.fused::<FMA>(out, lb[l]);
                let far = larger(x[k] - lo[l], hi[l] - x[k]);
                ub[l] = far.fused::<FMA>(far, ub[l]);
            }
        }
        lower[g * LANES..(g + 1) * LANES].copy_from_slice(&lb);
        upper.add(&ub);
    }
    upper.finish()
}

/// Which blocks of group `g` have a lower bound of at most `limit` (finite: see `finite`), one
/// bit each.
#[inline(always)]
fn blocks_within<T: Real>(lower: &[T], g: usize, limit: T) -> u32 {
    let group = &lower[g * LANES..(g + 1) * LANES];
    let mut bits = 0u32;
    for (l, &v) in group.iter().enumerate() {
        bits |= ((v <= limit) as u32) << l;
    }
    bits
}

/// The limit at most the largest finite value: the blocks past the data (infinite bounds) are
/// never taken, and a block whose bound is infinite has only infinite distances, which neither
/// lower the nearest one nor carry weight.
#[inline(always)]
fn finite<T: Real>(limit: T) -> T {
    limit.min(T::MAX)
}

/// The padding of block `b` (the last block's), if any.
#[inline(always)]
fn pad_of<T: Real>(tiles: &Tiles<T>, b: usize) -> Option<&[T; LANES]> {
    (b + 1 == tiles.blocks).then_some(&tiles.last_pad)
}

/// The nearest squared distance of x to the span's points, given `lower` filled for x.
#[inline(always)]
fn nearest<T: Real, const FMA: bool, const D: usize>(
    tiles: &Tiles<T>,
    x: &[T; D],
    lower: &mut [T],
) -> T {
    let upper = box_bounds::<T, FMA, D>(tiles, x, lower);
    let limit = finite(T::from_f64(upper.to_f64() * (1.0 + SLACK)));
    let mut nearest = BlockMin::<T>::new();
    // Loops, not closures: a closure is compiled without the kernel's target features.
    for g in 0..tiles.groups {
        let mut bits = blocks_within(lower, g, limit);
        while bits != 0 {
            let b = g * LANES + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            nearest.add(&block_distances::<T, FMA, D>(
                x,
                &block::<T, D>(tiles, b),
                pad_of(tiles, b),
            ));
        }
    }
    nearest.finish()
}

/// The softmax at `sigma` of one row over the span's points.
#[inline(always)]
fn softmax_row<T: Real, const FMA: bool, const D: usize>(
    tiles: &Tiles<T>,
    x: &[T; D],
    sigma: f64,
    lower: &mut [T],
) -> WeightedRow {
    let d_min = nearest::<T, FMA, D>(tiles, x, lower);
    let mut sums = BlockSums::<T, D>::new(d_min, sigma);
    // A block whose box is beyond the cutoff (with slack) has only zero weights.
    let limit = finite(T::from_f64(
        (d_min.to_f64() + sums.cut.to_f64()) * (1.0 + 2.0 * SLACK),
    ));
    for g in 0..tiles.groups {
        let mut bits = blocks_within(lower, g, limit);
        while bits != 0 {
            let b = g * LANES + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let ys = block::<T, D>(tiles, b);
            let d = block_distances::<T, FMA, D>(x, &ys, pad_of(tiles, b));
            sums.add::<FMA>(&d, &ys);
        }
    }
    sums.finish()
}

/// The softmax at `sigma` of the batch rows `rows` (of `x`, [rows][dim]) over the tiled span.
#[inline(always)]
pub(super) fn tiles_softmax_task<T: Real, const FMA: bool>(
    tiles: &Tiles<T>,
    x: &[T],
    rows: &[usize],
    sigma: f64,
) -> Vec<WeightedRow> {
    match tiles.dim {
        1 => softmax_rows::<T, FMA, 1>(tiles, x, rows, sigma),
        2 => softmax_rows::<T, FMA, 2>(tiles, x, rows, sigma),
        _ => softmax_rows::<T, FMA, FUSED_MAX_DIM>(tiles, x, rows, sigma),
    }
}

/// The nearest squared distance of each of the batch rows `rows` to the tiled span.
#[inline(always)]
pub(super) fn tiles_nearest_task<T: Real, const FMA: bool>(
    tiles: &Tiles<T>,
    x: &[T],
    rows: &[usize],
) -> Vec<T> {
    match tiles.dim {
        1 => nearest_rows::<T, FMA, 1>(tiles, x, rows),
        2 => nearest_rows::<T, FMA, 2>(tiles, x, rows),
        _ => nearest_rows::<T, FMA, FUSED_MAX_DIM>(tiles, x, rows),
    }
}

// Plain loops, not iterator closures (as in fused.rs): they stay inside the target features.
#[inline(always)]
fn softmax_rows<T: Real, const FMA: bool, const D: usize>(
    tiles: &Tiles<T>,
    x: &[T],
    rows: &[usize],
    sigma: f64,
) -> Vec<WeightedRow> {
    let mut lower = vec![T::ZERO; tiles.groups * LANES];
    let mut out = Vec::with_capacity(rows.len());
    for &r in rows {
        let mut xr = [T::ZERO; D];
        xr.copy_from_slice(&x[r * D..(r + 1) * D]);
        out.push(softmax_row::<T, FMA, D>(tiles, &xr, sigma, &mut lower));
    }
    out
}

#[inline(always)]
fn nearest_rows<T: Real, const FMA: bool, const D: usize>(
    tiles: &Tiles<T>,
    x: &[T],
    rows: &[usize],
) -> Vec<T> {
    let mut lower = vec![T::ZERO; tiles.groups * LANES];
    let mut out = Vec::with_capacity(rows.len());
    for &r in rows {
        let mut xr = [T::ZERO; D];
        xr.copy_from_slice(&x[r * D..(r + 1) * D]);
        out.push(nearest::<T, FMA, D>(tiles, &xr, &mut lower));
    }
    out
}
