//! The GEMM form's two f32 products on the centred data packed once per prepared set, with our
//! own AVX-512 register tiles (the `gemm` crate packs the data again on every call: on the
//! 784-D images its packing took a quarter of the time).
//!
//! - Logits x . (y_j - mu): points packed as [16-point panel][dim][16 lanes], a tile of
//!   `TILE_ROWS` query rows x 32 points (24 accumulators), x[row][d] broadcast into FMAs; spans
//!   that start or end mid-panel are stored through lane masks.
//! - Weighted sums sum_j w[row][j] (y_j - mu): dimensions packed as [16-dim tile][n][16 lanes], a
//!   tile of `TILE_ROWS` rows x 32 dimensions, the points in blocks of `SUM_BLOCK` whose packed
//!   data (128 KiB) stays in L2 while every row block reads it.
//!
//! Only where AVX-512 was detected at run time (`Panels` holds the proof) and for f32 sets;
//! elsewhere the `gemm` crate's products serve. Where AMX is granted too (`amx.rs`), both
//! products run on its tiles in bf16x3 instead (from the same PANELS_MIN_DIM on), and
//! `product_error` says how much the GEMM form's rounding bound must grow.

use rayon::prelude::*;

use super::gemm::Threads;
use super::layout::{GemmOperands, LANES};
use super::real::Real;
use crate::backend::Span;

/// Query rows in one register tile: 12 rows x 2 vectors = 24 of the 32 zmm registers as
/// accumulators, leaving room for the two data vectors and a broadcast.
const TILE_ROWS: usize = 12;
/// Sets of this many dimensions or more take the panels. Below, the `gemm` crate's products
/// did as well or better on the Xeon (the digits' sampling run, 64 dimensions: median 0.042 ->
/// 0.046 s with both products on panels; one thread, 64 rows x 4000 points: weighted sums 0.47
/// against 0.65 ms at 128 dimensions, 1.41 against 1.53 ms at 384), while at 784 (the images,
/// 32 rows x 10000 points) the panels took 4.3 against 7.3 ms a product. The AMX tiles take
/// the same threshold: on the digits they ran no faster than the crate (bench medians 0.0428 /
/// 0.0442 s against 0.0436 / 0.0413 s).
pub(super) const PANELS_MIN_DIM: usize = 512;
/// Points per block of the weighted sums: a block of two dimension tiles is 1024 x 32 x 4 B =
/// 128 KiB, kept in L2 while every row block of the task reads it.
const SUM_BLOCK: usize = 1024;

/// Whether a buffer of `len` values holds `rows` x `per_row` (false where that overflows).
fn holds(len: usize, rows: usize, per_row: usize) -> bool {
    rows.checked_mul(per_row)
        .is_some_and(|needed| len >= needed)
}

/// The proof that this machine runs AVX-512F: only `detect` makes one, and none exists off x86-64
/// (an uninhabited type there, so no `Panels` can be built and no kernel is reached).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
struct Avx512(());

#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug)]
enum Avx512 {}

impl Avx512 {
    fn detect() -> Option<Avx512> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some(Avx512(()));
        }
        None
    }
}

/// The centred data (`GemmOperands::centred`) packed for the two products.
#[derive(Clone, Debug)]
pub(super) struct Panels {
    n: usize,
    dim: usize,
    /// [panel][dim][LANES]: point p * LANES + l at lane l, zero past n.
    points: Vec<f32>,
    /// [tile][n][LANES]: dimension t * LANES + l of each point at lane l, zero past dim.
    dims: Vec<f32>,
    avx512: Avx512,
    /// Both products on AMX tiles (`points` and `dims` are then empty).
    #[cfg(target_arch = "x86_64")]
    tiles: Option<super::amx::Packing>,
}

impl Panels {
    /// Packs the set's centred rows; `None` where AVX-512F is not detected, `T` is not f32 or
    /// the set has fewer than PANELS_MIN_DIM dimensions.
    pub fn new<T: Real>(ops: &GemmOperands<T>, n: usize, dim: usize) -> Option<Panels> {
        if dim < PANELS_MIN_DIM {
            return None;
        }
        let avx512 = Avx512::detect()?;
        let centred = T::as_f32(&ops.centred)?;
        #[cfg(target_arch = "x86_64")]
        if let Some(amx) = super::amx::Amx::detect() {
            return Some(Panels::pack_tiles(centred, n, dim, avx512, amx));
        }
        Some(Panels::pack(centred, n, dim, avx512))
    }

    /// From how many dimensions on f32 sets' products run on AMX tiles on this machine (the
    /// machines `new` packs tiles on); None where they never do.
    pub fn tiles_from() -> Option<usize> {
        Avx512::detect()?;
        #[cfg(target_arch = "x86_64")]
        if super::amx::Amx::detect().is_some() {
            return Some(PANELS_MIN_DIM);
        }
        None
    }

    #[cfg(target_arch = "x86_64")]
    fn pack_tiles(
        centred: &[f32],
        n: usize,
        dim: usize,
        avx512: Avx512,
        amx: super::amx::Amx,
    ) -> Panels {
        Panels {
            n,
            dim,
            points: Vec::new(),
            dims: Vec::new(),
            avx512,
            tiles: Some(super::amx::Packing::new(centred, n, dim, amx)),
        }
    }

    /// What the logits' rounding can add to |x . (y_j - mu)| for the centred row `x` (norm
    /// `x_norm`) and every point (|y_j - mu| <= `y_max`), beyond f32 accumulation over dim + 3
    /// terms (which the GEMM form's bound already holds): on tiles, bf16x3's dropped terms and
    /// its extra accumulations (`amx::Packing::product_error`); nothing on the f32 panels.
    pub fn product_error(&self, x: &[f32], x_norm: f64, y_max: f64) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if let Some(tiles) = &self.tiles {
            return tiles.product_error(x, x_norm, y_max);
        }
        let _ = (x, x_norm, y_max);
        0.0
    }

    /// Whether the products run on AMX tiles (bf16x3).
    #[cfg(test)]
    pub fn on_tiles(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.tiles.is_some();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    fn pack(centred: &[f32], n: usize, dim: usize, avx512: Avx512) -> Panels {
        let (points_len, dims_len) = Panels::f32_values_for(n, dim);
        let mut points = vec![0.0f32; points_len as usize];
        let mut dims = vec![0.0f32; dims_len as usize];
        for (j, row) in centred.chunks_exact(dim.max(1)).take(n).enumerate() {
            let (panel, lane) = (j / LANES, j % LANES);
            for (d, &v) in row.iter().enumerate() {
                points[(panel * dim + d) * LANES + lane] = v;
                dims[((d / LANES) * n + j) * LANES + d % LANES] = v;
            }
        }
        Panels {
            n,
            dim,
            points,
            dims,
            avx512,
            #[cfg(target_arch = "x86_64")]
            tiles: None,
        }
    }

    /// f32 values in the two packings of `n` points of `dim` values, each padded to whole LANES:
    /// [panel][dim][LANES] and [tile][n][LANES], or the f32s' worth of the tiles' bf16 packings
    /// where those are larger. Saturating: the memory check asks before anything is read.
    pub fn values_for(n: usize, dim: usize) -> (u64, u64) {
        let (points, dims) = Panels::f32_values_for(n, dim);
        #[cfg(target_arch = "x86_64")]
        {
            let (on_tiles, by_dims) = super::amx::values_for(n, dim);
            (
                points.max(on_tiles.div_ceil(2)),
                dims.max(by_dims.div_ceil(2)),
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        (points, dims)
    }

    /// The f32 packings' values alone.
    fn f32_values_for(n: usize, dim: usize) -> (u64, u64) {
        let padded = |a: usize, b: usize| {
            (a.div_ceil(LANES) as u64)
                .saturating_mul(LANES as u64)
                .saturating_mul(b as u64)
        };
        (padded(n, dim), padded(dim, n))
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        let tiles = self.tiles.as_ref().map_or(0, super::amx::Packing::bytes);
        #[cfg(not(target_arch = "x86_64"))]
        let tiles = 0;
        (self.points.len() + self.dims.len()) * std::mem::size_of::<f32>() + tiles
    }

    /// out[q][j - span.start] = x[q] . (y_j - mu) for the `rows` centred query rows `x`
    /// ([rows][dim]) and the span's points j.
    pub fn logits(&self, x: &[f32], rows: usize, span: Span, out: &mut [f32], threads: Threads) {
        assert!(span.start <= span.end && span.end <= self.n, "logits span");
        let (dim, width) = (self.dim, span.len());
        assert!(
            holds(x.len(), rows, dim) && holds(out.len(), rows, width),
            "logits shapes"
        );
        if rows == 0 || width == 0 {
            return;
        }
        if dim == 0 {
            out[..rows * width].fill(0.0);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(tiles) = &self.tiles {
            return tiles.logits(x, rows, span, out, threads);
        }
        let per_task = rows_per_task(rows, threads);
        x[..rows * dim]
            .par_chunks(per_task * dim)
            .zip(out[..rows * width].par_chunks_mut(per_task * width))
            .for_each(|(x, out)| self.logits_task(x, x.len() / dim, span, out));
    }

    fn logits_task(&self, x: &[f32], rows: usize, span: Span, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            let Avx512(()) = self.avx512;
            // SAFETY: `avx512` proves AVX-512F; `logits` checked the shapes the kernel reads
            // and writes (x: rows x dim, out: rows x span.len(), span within the n points).
            unsafe { kernels::logits(self, x, rows, span, out) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (x, rows, span, out);
            match self.avx512 {}
        }
    }

    /// sums[q][k] = sum_{j in span} w[q][j - span.start] (y_j - mu)[k] for `rows` rows of weights
    /// `w` ([rows][span.len()]); `sums` is [rows][dim].
    pub fn weighted_sums(
        &self,
        w: &[f32],
        rows: usize,
        span: Span,
        sums: &mut [f32],
        threads: Threads,
    ) {
        assert!(
            span.start <= span.end && span.end <= self.n,
            "weighted sum span"
        );
        let (dim, width) = (self.dim, span.len());
        assert!(
            holds(w.len(), rows, width) && holds(sums.len(), rows, dim),
            "weighted sum shapes"
        );
        sums[..rows * dim].fill(0.0);
        if rows == 0 || width == 0 || dim == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(tiles) = &self.tiles {
            return tiles.weighted_sums(w, rows, span, sums, threads);
        }
        let per_task = rows_per_task(rows, threads);
        w[..rows * width]
            .par_chunks(per_task * width)
            .zip(sums[..rows * dim].par_chunks_mut(per_task * dim))
            .for_each(|(w, sums)| self.weighted_sums_task(w, w.len() / width, span, sums));
    }

    fn weighted_sums_task(&self, w: &[f32], rows: usize, span: Span, sums: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            let Avx512(()) = self.avx512;
            // SAFETY: as in `logits_task`, with w: rows x span.len() and sums: rows x dim
            // (zeroed by `weighted_sums`).
            unsafe { kernels::weighted_sums(self, w, rows, span, sums) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (w, rows, span, sums);
            match self.avx512 {}
        }
    }
}

/// Rows per parallel task: all on the calling thread, or an even share of the pool in whole
/// register tiles.
fn rows_per_task(rows: usize, threads: Threads) -> usize {
    match threads {
        Threads::One => rows,
        Threads::All => rows
            .div_ceil(rayon::current_num_threads().max(1))
            .next_multiple_of(TILE_ROWS),
    }
}

#[cfg(target_arch = "x86_64")]
mod kernels {
    use std::arch::x86_64::*;

    use super::{LANES, Panels, SUM_BLOCK, TILE_ROWS};
    use crate::backend::Span;

    /// Calls `$tile::<R, P, AHEAD>` with R = `$count` (1..=TILE_ROWS) and AHEAD = `$ahead` as
    /// constants.
    macro_rules! with_rows {
        ($count:expr, $ahead:expr, $tile:ident, $p:literal, ($($arg:expr),*)) => {
            match ($count, $ahead) {
                (12, true) => $tile::<12, $p, true>($($arg),*),
                (12, false) => $tile::<12, $p, false>($($arg),*),
                (11, _) => $tile::<11, $p, false>($($arg),*),
                (10, _) => $tile::<10, $p, false>($($arg),*),
                (9, _) => $tile::<9, $p, false>($($arg),*),
                (8, true) => $tile::<8, $p, true>($($arg),*),
                (8, false) => $tile::<8, $p, false>($($arg),*),
                (7, _) => $tile::<7, $p, false>($($arg),*),
                (6, _) => $tile::<6, $p, false>($($arg),*),
                (5, _) => $tile::<5, $p, false>($($arg),*),
                (4, true) => $tile::<4, $p, true>($($arg),*),
                (4, false) => $tile::<4, $p, false>($($arg),*),
                (3, _) => $tile::<3, $p, false>($($arg),*),
                (2, _) => $tile::<2, $p, false>($($arg),*),
                (1, true) => $tile::<1, $p, true>($($arg),*),
                (1, false) => $tile::<1, $p, false>($($arg),*),
                // The row tasks hand out 1..=TILE_ROWS rows: anything else would drop rows.
                _ => unreachable!("a register tile of {} rows", $count),
            }
        };
    }

    /// The lanes of a 16-lane group starting at `from` that lie in [start, end).
    #[inline(always)]
    fn lanes_within(from: usize, start: usize, end: usize) -> u16 {
        let lo = start.saturating_sub(from).min(LANES);
        let hi = end.saturating_sub(from).min(LANES);
        let upto = |k: usize| {
            if k >= LANES {
                u16::MAX
            } else {
                (1u16 << k) - 1
            }
        };
        upto(hi) & !upto(lo)
    }

    /// The task's rows of `a` ([rows][len], row stride `stride`) tile by tile, each tile of
    /// `count` rows as [k][count]: the broadcasts then read one stream instead of one per row.
    fn interleaved(a: &[f32], rows: usize, stride: usize, (from, len): (usize, usize)) -> Vec<f32> {
        let mut packed = vec![0.0f32; rows * len];
        let mut r = 0;
        while r < rows {
            let count = (rows - r).min(TILE_ROWS);
            let tile = &mut packed[r * len..(r + count) * len];
            for q in 0..count {
                let row = &a[(r + q) * stride + from..(r + q) * stride + from + len];
                for (k, &v) in row.iter().enumerate() {
                    tile[k * count + q] = v;
                }
            }
            r += count;
        }
        packed
    }

    /// `Panels::logits` on one task: panel pairs outer (each read from memory once), row tiles
    /// inner (the task's query rows, interleaved, stay in L2).
    ///
    /// Safety: AVX-512F; x is rows x dim, out rows x span.len(), span.end <= n.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn logits(p: &Panels, x: &[f32], rows: usize, span: Span, out: &mut [f32]) {
        let dim = p.dim;
        let xs = interleaved(x, rows, dim, (0, dim));
        let last = span.end.div_ceil(LANES);
        let mut panel = span.start / LANES;
        while panel < last {
            let pair = last - panel >= 2;
            // The next panels, fetched into L2 by the first row tile (the others find these
            // there): the stream from memory no longer stalls that tile.
            let next = (panel + 2).min(last - 1);
            let ahead = p.points[next * dim * LANES..].as_ptr();
            let mut r = 0;
            while r < rows {
                let count = (rows - r).min(TILE_ROWS);
                let (xr, or) = (&xs[r * dim..], &mut out[r * span.len()..]);
                let first = r == 0 && next > panel;
                // SAFETY: the caller's shapes; the tile reads `count` rows from r on.
                unsafe {
                    if pair {
                        with_rows!(
                            count,
                            first,
                            logits_tile,
                            2,
                            (p, xr, span, panel, ahead, or)
                        );
                    } else {
                        with_rows!(
                            count,
                            first,
                            logits_tile,
                            1,
                            (p, xr, span, panel, ahead, or)
                        );
                    }
                }
                r += count;
            }
            panel += if pair { 2 } else { 1 };
        }
    }

    /// R rows x P panels of logits from panel `first` on, stored where they fall in the span;
    /// `x` holds the R rows interleaved ([dim][R]). With AHEAD, the two panels from `ahead` on
    /// are prefetched into L2 on the way.
    #[target_feature(enable = "avx512f")]
    unsafe fn logits_tile<const R: usize, const P: usize, const AHEAD: bool>(
        p: &Panels,
        x: &[f32],
        span: Span,
        first: usize,
        ahead: *const f32,
        out: &mut [f32],
    ) {
        let dim = p.dim;
        let width = span.len();
        debug_assert!(x.len() >= R * dim && out.len() >= R * width);
        let packed = p.points[first * dim * LANES..].as_ptr();
        let xp = x.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        for d in 0..dim {
            if AHEAD {
                // Two cache lines of the next pair per dimension: all of it by the loop's end.
                let at = ahead.wrapping_add(d * 2 * LANES) as *const i8;
                _mm_prefetch::<_MM_HINT_T1>(at);
                _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(64));
            }
            let mut y = [_mm512_setzero_ps(); P];
            for q in 0..P {
                // SAFETY: panels first..first + P exist (first + P <= ceil(n / 16)).
                y[q] = unsafe { _mm512_loadu_ps(packed.add((q * dim + d) * LANES)) };
            }
            for r in 0..R {
                // SAFETY: d < dim, r < R.
                let b = _mm512_set1_ps(unsafe { *xp.add(d * R + r) });
                for q in 0..P {
                    acc[r][q] = _mm512_fmadd_ps(b, y[q], acc[r][q]);
                }
            }
        }
        for q in 0..P {
            let from = (first + q) * LANES;
            let mask = lanes_within(from, span.start, span.end);
            if mask == 0 {
                continue;
            }
            // The kept lanes moved to the bottom, written from the first point of the span
            // they hold: the store never reaches before the row's start.
            let at = from.max(span.start) - span.start;
            let count = mask.count_ones() as usize;
            let kept = if count >= LANES {
                u16::MAX
            } else {
                (1u16 << count) - 1
            };
            for r in 0..R {
                let v = if mask == u16::MAX {
                    acc[r][q]
                } else {
                    _mm512_maskz_compress_ps(mask, acc[r][q])
                };
                // SAFETY: the kept lanes are points at..at + count of the span, within row r.
                unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(r * width + at), kept, v) };
            }
        }
    }

    /// `Panels::weighted_sums` on one task (`sums` zeroed): point blocks outer (each block's
    /// packed data read from memory once, its weights interleaved), dimension tile pairs, then
    /// row tiles.
    ///
    /// Safety: AVX-512F; w is rows x span.len(), sums rows x dim, span.end <= n.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weighted_sums(
        p: &Panels,
        w: &[f32],
        rows: usize,
        span: Span,
        sums: &mut [f32],
    ) {
        let tiles = p.dim.div_ceil(LANES);
        let width = span.len();
        let mut start = span.start;
        while start < span.end {
            let block = Span {
                start,
                end: (start + SUM_BLOCK).min(span.end),
            };
            let len = block.len();
            let ws = interleaved(w, rows, width, (block.start - span.start, len));
            let mut tile = 0;
            while tile < tiles {
                let pair = tiles - tile >= 2;
                // The next tiles' block, fetched into L2 by the first row tile.
                let next = (tile + 2).min(tiles - 1);
                let mut r = 0;
                while r < rows {
                    let count = (rows - r).min(TILE_ROWS);
                    let wr = &ws[r * len..];
                    let sr = &mut sums[r * p.dim..];
                    let first = r == 0 && next > tile;
                    // SAFETY: the caller's shapes; the tile reads `count` rows from r on.
                    unsafe {
                        if pair {
                            with_rows!(count, first, sum_tile, 2, (p, wr, block, tile, next, sr));
                        } else {
                            with_rows!(count, first, sum_tile, 1, (p, wr, block, tile, next, sr));
                        }
                    }
                    r += count;
                }
                tile += if pair { 2 } else { 1 };
            }
            start = block.end;
        }
    }

    /// R rows x P dimension tiles (from `tile` on) of sum_{j in block} w[r][j] (y_j - mu), added
    /// to `sums`; `w` holds the R rows' weights of the block interleaved ([block.len()][R]).
    /// With AHEAD, the block of tiles `next` and `next + 1` is prefetched into L2 on the way.
    #[target_feature(enable = "avx512f")]
    unsafe fn sum_tile<const R: usize, const P: usize, const AHEAD: bool>(
        p: &Panels,
        w: &[f32],
        block: Span,
        tile: usize,
        next: usize,
        sums: &mut [f32],
    ) {
        let (n, dim) = (p.n, p.dim);
        debug_assert!(w.len() >= R * block.len());
        debug_assert!(sums.len() >= (R - 1) * dim + dim);
        let packed = p.dims.as_ptr();
        let wp = w.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        for j in 0..block.len() {
            if AHEAD {
                // One cache line (a point) of each next tile per point.
                let at = packed.wrapping_add((next * n + block.start + j) * LANES) as *const i8;
                _mm_prefetch::<_MM_HINT_T1>(at);
                _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(n * LANES * 4));
            }
            let mut y = [_mm512_setzero_ps(); P];
            for q in 0..P {
                // SAFETY: tiles tile..tile + P exist, point block.start + j < n.
                y[q] = unsafe {
                    _mm512_loadu_ps(packed.add(((tile + q) * n + block.start + j) * LANES))
                };
            }
            for r in 0..R {
                // SAFETY: j < block.len(), r < R.
                let b = _mm512_set1_ps(unsafe { *wp.add(j * R + r) });
                for q in 0..P {
                    acc[r][q] = _mm512_fmadd_ps(b, y[q], acc[r][q]);
                }
            }
        }
        for q in 0..P {
            let from = (tile + q) * LANES;
            let mask = lanes_within(from, 0, dim);
            for r in 0..R {
                // SAFETY: the masked lanes are dimensions from..dim of row r.
                unsafe {
                    let at = sums.as_mut_ptr().add(r * dim + from);
                    let old = _mm512_maskz_loadu_ps(mask, at);
                    _mm512_mask_storeu_ps(at, mask, _mm512_add_ps(old, acc[r][q]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::gemm::{product, product_transposed};

    /// Deterministic values in [-1, 1) with some spread in magnitude.
    fn fill(len: usize, salt: u64) -> Vec<f32> {
        let mut s = salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The set on the AVX-512 panels and, where AMX is granted, on its tiles too.
    fn panels_of(centred: &[f32], n: usize, dim: usize) -> Vec<Panels> {
        let Some(avx512) = Avx512::detect() else {
            return Vec::new();
        };
        let mut kinds = vec![Panels::pack(centred, n, dim, avx512)];
        #[cfg(target_arch = "x86_64")]
        if let Some(amx) = crate::backend::cpu::amx::Amx::detect() {
            kinds.push(Panels::pack_tiles(centred, n, dim, avx512, amx));
        } else {
            eprintln!("no AMX here: only the AVX-512 panels are tested");
        }
        kinds
    }

    /// The largest |a - b| relative to the f64 reference's scale sum |x_k y_k|.
    fn check(what: &str, got: &[f32], reference: &[f64], scale: &[f64], tol: f64) {
        assert_eq!(got.len(), reference.len(), "{what}: length");
        for (i, ((&g, &e), &s)) in got.iter().zip(reference).zip(scale).enumerate() {
            let err = (g as f64 - e).abs() / s.max(1e-30);
            assert!(
                err <= tol,
                "{what}: entry {i} is {g}, f64 says {e} (error {err:e} of the scale)"
            );
        }
    }

    fn logits_reference(
        x: &[f32],
        y: &[f32],
        rows: usize,
        span: Span,
        dim: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let mut exact = Vec::new();
        let mut scale = Vec::new();
        for r in 0..rows {
            for j in span.start..span.end {
                let (mut s, mut a) = (0.0f64, 0.0f64);
                for d in 0..dim {
                    let p = x[r * dim + d] as f64 * y[j * dim + d] as f64;
                    s += p;
                    a += p.abs();
                }
                exact.push(s);
                scale.push(a);
            }
        }
        (exact, scale)
    }

    fn sums_reference(
        w: &[f32],
        y: &[f32],
        rows: usize,
        span: Span,
        dim: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let width = span.len();
        let mut exact = Vec::new();
        let mut scale = Vec::new();
        for r in 0..rows {
            for d in 0..dim {
                let (mut s, mut a) = (0.0f64, 0.0f64);
                for j in span.start..span.end {
                    let p = w[r * width + j - span.start] as f64 * y[j * dim + d] as f64;
                    s += p;
                    a += p.abs();
                }
                exact.push(s);
                scale.push(a);
            }
        }
        (exact, scale)
    }

    /// f32 accumulation over k terms: within k u of the sum of magnitudes (generous by 4x).
    fn tolerance(terms: usize) -> f64 {
        4.0 * terms.max(1) as f64 * f32::EPSILON as f64
    }

    /// Spans with every kind of edge: whole panels, mid-panel starts and ends, within one
    /// panel, a single point, empty, and (for n > 2 * SUM_BLOCK) long ones crossing the
    /// weighted sums' point blocks.
    fn spans_of(n: usize) -> Vec<Span> {
        let mut spans = vec![
            Span { start: 0, end: n },
            Span { start: 3, end: n },
            Span {
                start: 0,
                end: n - 5,
            },
            Span {
                start: 17,
                end: n - 1,
            },
            Span { start: 5, end: 12 },
            Span { start: 16, end: 32 },
            Span { start: 15, end: 17 },
            Span { start: 7, end: 8 },
            Span { start: 9, end: 9 },
        ];
        spans.retain(|s| s.start <= s.end && s.end <= n);
        spans
    }

    #[test]
    fn logits_match_f64_and_the_gemm_crate_on_every_tail() {
        let Some(_) = Avx512::detect() else {
            eprintln!("no AVX-512F here: the panels are never built, nothing to test");
            return;
        };
        for (n, dim) in [(37, 5), (64, 16), (50, 33), (97, 70), (130, 784)] {
            let y = fill(n * dim, (n * 31 + dim) as u64);
            let norm = |v: &[f32]| v.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt();
            let y_max = y.chunks_exact(dim).map(norm).fold(0.0, f64::max);
            for panels in panels_of(&y, n, dim) {
                for rows in [1, 2, 5, 11, 12, 13, 24, 25, 40] {
                    let x = fill(rows * dim, (rows * 7 + dim) as u64);
                    for span in spans_of(n) {
                        let width = span.len();
                        let (exact, mut scale) = logits_reference(&x, &y, rows, span, dim);
                        // On tiles the bound the GEMM form adds (bf16x3's dropped terms) is
                        // held entry by entry, on top of f32 accumulation: in units of scale.
                        for (e, s) in scale.iter_mut().enumerate() {
                            let row = &x[e / width.max(1) * dim..][..dim];
                            let extra = panels.product_error(row, norm(row), y_max);
                            *s += extra / tolerance(dim);
                        }
                        let (own, crate_tol) = (tolerance(dim), 2.0 * tolerance(dim));
                        for threads in [Threads::One, Threads::All] {
                            // Poisoned: every entry must be written.
                            let mut got = vec![f32::NAN; rows * width];
                            panels.logits(&x, rows, span, &mut got, threads);
                            let what = format!("logits n {n} dim {dim} rows {rows} span {span:?}");
                            check(&what, &got, &exact, &scale, own);
                            let mut crate_out = vec![0.0f32; rows * width];
                            product_transposed(
                                &x,
                                &y[span.start * dim..span.end * dim],
                                (rows, width, dim),
                                &mut crate_out,
                                Threads::One,
                            );
                            let both: Vec<f64> = crate_out.iter().map(|&v| v as f64).collect();
                            check(
                                &format!("{what} against the gemm crate"),
                                &got,
                                &both,
                                &scale,
                                crate_tol,
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn logits_leave_the_rest_of_the_output_alone() {
        let Some(_) = Avx512::detect() else {
            return;
        };
        let (n, dim, rows) = (70, 9, 3);
        let y = fill(n * dim, 5);
        let x = fill(rows * dim, 6);
        for panels in panels_of(&y, n, dim) {
            let span = Span { start: 19, end: 45 };
            let width = span.len();
            // A larger buffer: past rows * width nothing may change.
            let mut out = vec![7.5f32; rows * width + 40];
            panels.logits(&x, rows, span, &mut out, Threads::One);
            assert!(out[rows * width..].iter().all(|&v| v == 7.5));
            assert!(out[..rows * width].iter().all(|&v| v != 7.5));
        }
    }

    #[test]
    fn weighted_sums_match_f64_and_the_gemm_crate_on_every_tail() {
        let Some(_) = Avx512::detect() else {
            eprintln!("no AVX-512F here: the panels are never built, nothing to test");
            return;
        };
        // The last two shapes cross the SUM_BLOCK point blocks (at 784-D once; at 40-D twice,
        // with a partial third).
        for (n, dim) in [
            (37, 5),
            (64, 16),
            (50, 33),
            (97, 70),
            (130, 784),
            (1100, 784),
            (2600, 40),
        ] {
            let y = fill(n * dim, (n * 13 + dim) as u64);
            for panels in panels_of(&y, n, dim) {
                let mut spans = spans_of(n);
                if n > 2 * SUM_BLOCK {
                    spans.push(Span {
                        start: SUM_BLOCK - 3,
                        end: 2 * SUM_BLOCK + 5,
                    });
                }
                for rows in [1, 3, 11, 12, 13, 25] {
                    for span in spans.iter().copied() {
                        let width = span.len();
                        // bf16x3's dropped terms on tiles (each below SPLIT_ERROR of its
                        // |w_j y_j|), on top of f32 accumulation (three terms per point).
                        let (own, crate_tol) = if panels.on_tiles() {
                            let split = crate::backend::cpu::amx::SPLIT_ERROR;
                            (
                                split + 3.0 * tolerance(width),
                                split + 4.0 * tolerance(width),
                            )
                        } else {
                            (tolerance(width), 2.0 * tolerance(width))
                        };
                        // Weights as a softmax writes them: in [0, 1], many exactly 0.
                        let w: Vec<f32> = fill(rows * width, (rows + width) as u64)
                            .iter()
                            .map(|&v| v.max(0.0))
                            .collect();
                        let (exact, scale) = sums_reference(&w, &y, rows, span, dim);
                        for threads in [Threads::One, Threads::All] {
                            let mut got = vec![f32::NAN; rows * dim];
                            panels.weighted_sums(&w, rows, span, &mut got, threads);
                            let what = format!("sums n {n} dim {dim} rows {rows} span {span:?}");
                            check(&what, &got, &exact, &scale, own);
                            let mut crate_out = vec![0.0f32; rows * dim];
                            product(
                                &w,
                                &y[span.start * dim..span.end * dim],
                                (rows, dim, width),
                                &mut crate_out,
                                Threads::One,
                            );
                            let both: Vec<f64> = crate_out.iter().map(|&v| v as f64).collect();
                            check(
                                &format!("{what} against the gemm crate"),
                                &got,
                                &both,
                                &scale,
                                crate_tol,
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn row_tasks_cover_every_row_in_whole_tiles() {
        for rows in 1..100 {
            for threads in [Threads::One, Threads::All] {
                let per = rows_per_task(rows, threads);
                assert!(per >= 1);
                assert!(
                    per >= rows || per.is_multiple_of(TILE_ROWS),
                    "rows {rows}: {per}"
                );
                assert!(rows.div_ceil(per) * per >= rows);
            }
        }
    }

    #[test]
    fn packing_places_every_value_and_pads_with_zeros() {
        let Some(avx512) = Avx512::detect() else {
            return;
        };
        let (n, dim) = (21, 19);
        let y = fill(n * dim, 9);
        let p = Panels::pack(&y, n, dim, avx512);
        assert_eq!(p.points.len(), 2 * dim * LANES);
        assert_eq!(p.dims.len(), 2 * n * LANES);
        for panel in 0..2 {
            for d in 0..dim {
                for l in 0..LANES {
                    let j = panel * LANES + l;
                    let expect = if j < n { y[j * dim + d] } else { 0.0 };
                    assert_eq!(p.points[(panel * dim + d) * LANES + l], expect);
                }
            }
        }
        for t in 0..2 {
            for j in 0..n {
                for l in 0..LANES {
                    let d = t * LANES + l;
                    let expect = if d < dim { y[j * dim + d] } else { 0.0 };
                    assert_eq!(p.dims[(t * n + j) * LANES + l], expect);
                }
            }
        }
        assert_eq!(p.bytes(), (p.points.len() + p.dims.len()) * 4);
    }
}
