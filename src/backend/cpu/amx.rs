//! The panels' two products on AMX tiles (Intel Sapphire Rapids and later), in bf16x3: each f32
//! value is split into a bf16 head and a bf16 tail (16 significant bits between them), and
//! head*head + head*tail + tail*head is accumulated in f32 by TDPBF16PS (bf16 x bf16 products are
//! exact in f32). The dropped terms stay below `SPLIT_ERROR` |a||b| per product. The logits keep
//! head*head and the cross terms in separate accumulators (so the main sum rounds like an f32
//! product), and `Packing::product_error` bounds what the split drops from the actual tails of
//! the row and the data; the GEMM form adds that to its per-row rounding bound, so the candidates
//! a weighting resolves finer than it are still recomputed by explicit differences. The weighted
//! sums' error goes into the means directly (within SPLIT_ERROR of sum_j |w_j y_j|, tested).
//!
//! Measured on the Xeon of 2026-12-03 (`noisescope bench`, images784, the same binary with and
//! without `NOISESCOPE_NO_AMX`): see the README's stop 30 sitting.
//!
//! Stable Rust has no AMX intrinsics: the tiles are reached through inline assembly. The tile
//! registers are invisible to the compiler, which never uses them; each kernel loads its tile
//! configuration on entry and releases the tiles before it returns.
//!
//! Layouts (u16 bf16 values, 512 per tile, each tile head then tail):
//! - points ([16-point block][32-dim chunk][head, tail][16 dim pairs][16 points][2]): the B
//!   operand of the logits x . (y_j - mu);
//! - dims ([16-dim block][32-point chunk][head, tail][16 point pairs][16 dims][2]): the B operand
//!   of the weighted sums sum_j w_j (y_j - mu).

use std::arch::asm;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::gemm::Threads;
use crate::backend::Span;

/// Rows of a tile, and f32 columns of an accumulator tile.
pub(super) const BLOCK: usize = 16;
/// bf16 values along the reduced dimension in one tile row (64 bytes).
pub(super) const CHUNK: usize = 32;
/// u16 values in one tile.
const TILE: usize = BLOCK * CHUNK;
/// Point chunks per block of the weighted sums: 1024 points, whose packed data (two 16-dim
/// blocks, head and tail: 128 KiB) stays in L2 while every row block reads it.
const SUM_CHUNKS: usize = 32;
/// The dropped terms of one bf16x3 product, relative to |a||b|: tail*tail (2^-16) and the two
/// tails' own rounding (2^-16 (1 + 2^-8) each), rounded up.
#[cfg(test)]
pub(super) const SPLIT_ERROR: f64 = 3.1 / 65536.0;

/// The proof that this machine runs AMX-BF16 and AVX-512F/BW and that the kernel granted this
/// process the tile state: only `detect` makes one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Amx(());

impl Amx {
    /// Some where the CPU reports AMX-TILE, AMX-BF16 and AVX-512F/BW and the kernel grants the
    /// tile data (asked once per process). `NOISESCOPE_NO_AMX` set in the environment turns it
    /// off (for measuring the AVX-512 panels on the same machine).
    pub fn detect() -> Option<Amx> {
        static GRANTED: OnceLock<bool> = OnceLock::new();
        let granted = *GRANTED.get_or_init(|| {
            if std::env::var_os("NOISESCOPE_NO_AMX").is_some() {
                return false;
            }
            let leaf = std::arch::x86_64::__cpuid_count(7, 0);
            let (bf16, tile) = (leaf.edx & (1 << 22) != 0, leaf.edx & (1 << 24) != 0);
            let wide = std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw");
            // ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA: the tile state is off until asked for.
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: arch_prctl with these arguments only changes the process's xsave permissions.
            bf16 && tile
                && wide
                && unsafe {
                    libc::syscall(
                        libc::SYS_arch_prctl,
                        ARCH_REQ_XCOMP_PERM,
                        XFEATURE_XTILEDATA,
                    )
                } == 0
        });
        granted.then_some(Amx(()))
    }
}

/// bf16 nearest to `v` (ties to even), as its upper 16 bits.
#[inline(always)]
fn bf16_of(v: f32) -> u16 {
    let bits = v.to_bits();
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// `v` as a bf16 head and the bf16 nearest to what the head leaves (exact in f32).
#[inline(always)]
pub(super) fn split(v: f32) -> (u16, u16) {
    let head = bf16_of(v);
    (head, bf16_of(v - f32::from_bits((head as u32) << 16)))
}

/// One cache line of values, so that every tile row (64 bytes) starts a line: misaligned, each
/// row of a tile load would touch two.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line<T: Copy, const N: usize>([T; N]);

/// `len` values of T in whole cache lines, zeroed.
#[derive(Clone, Debug)]
pub(super) struct Aligned<T: Copy + Default, const N: usize> {
    lines: Vec<Line<T, N>>,
    len: usize,
}

impl<T: Copy + Default, const N: usize> Aligned<T, N> {
    fn zeroed(len: usize) -> Self {
        // A line must be exactly its N values (no padding), which `deref` relies on.
        const { assert!(std::mem::size_of::<T>() * N == 64) };
        Aligned {
            lines: vec![Line([T::default(); N]); len.div_ceil(N)],
            len,
        }
    }
}

impl<T: Copy + Default, const N: usize> std::ops::Deref for Aligned<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: Line<T, N> is N values of T without padding (repr(C), N values of 64 bytes in
        // all, asserted in `zeroed`), so the lines hold at least len values in a row.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const T, self.len) }
    }
}

impl<T: Copy + Default, const N: usize> std::ops::DerefMut for Aligned<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as `deref`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut T, self.len) }
    }
}

/// bf16 values on cache lines.
type Bf16s = Aligned<u16, 32>;
/// f32 values on cache lines.
type Floats = Aligned<f32, 16>;

/// u16 values of the two packings of `n` points of `dim` values: (points, dims).
pub(super) fn values_for(n: usize, dim: usize) -> (u64, u64) {
    let tiles = |a: usize, per_a: usize, b: usize, per_b: usize| {
        (a.div_ceil(per_a) as u64)
            .saturating_mul(b.div_ceil(per_b) as u64)
            .saturating_mul(2 * TILE as u64)
    };
    (tiles(n, BLOCK, dim, CHUNK), tiles(dim, BLOCK, n, CHUNK))
}

/// The centred rows ([n][dim]) in the points layout (module doc), zero-padded.
pub(super) fn pack_points(centred: &[f32], n: usize, dim: usize) -> Bf16s {
    let chunks = dim.div_ceil(CHUNK);
    let mut packed = Bf16s::zeroed(values_for(n, dim).0 as usize);
    for (j, row) in centred.chunks_exact(dim.max(1)).take(n).enumerate() {
        let (block, lane) = (j / BLOCK, j % BLOCK);
        for (d, &v) in row.iter().enumerate() {
            let tile = (block * chunks + d / CHUNK) * 2 * TILE;
            let at = tile + ((d % CHUNK) / 2 * BLOCK + lane) * 2 + d % 2;
            (packed[at], packed[at + TILE]) = split(v);
        }
    }
    packed
}

/// The centred rows ([n][dim]) in the dims layout (module doc), zero-padded.
pub(super) fn pack_dims(centred: &[f32], n: usize, dim: usize) -> Bf16s {
    let chunks = n.div_ceil(CHUNK);
    let mut packed = Bf16s::zeroed(values_for(n, dim).1 as usize);
    for (j, row) in centred.chunks_exact(dim.max(1)).take(n).enumerate() {
        let (chunk, pair, half) = (j / CHUNK, (j % CHUNK) / 2, j % 2);
        for (d, &v) in row.iter().enumerate() {
            let tile = ((d / BLOCK) * chunks + chunk) * 2 * TILE;
            let at = tile + (pair * BLOCK + d % BLOCK) * 2 + half;
            (packed[at], packed[at + TILE]) = split(v);
        }
    }
    packed
}

/// An A operand split for the tiles: [row block][chunk][head, tail][16 rows][32 values], each
/// tile contiguous; and per row block and chunk whether any value there is non-zero.
struct SplitRows {
    tiles: Bf16s,
    chunks: usize,
    busy: Vec<bool>,
}

impl SplitRows {
    /// `rows` rows of `len` values from `a` (row stride `stride`, from column `from`), placed
    /// from column `at` of `chunks` * CHUNK columns (zero elsewhere).
    fn new(
        proof: Amx,
        a: &[f32],
        rows: usize,
        (stride, from, len): (usize, usize, usize),
        (chunks, at): (usize, usize),
    ) -> SplitRows {
        let row_blocks = rows.div_ceil(BLOCK);
        let width = chunks * CHUNK;
        let mut tiles = Bf16s::zeroed(row_blocks * chunks * 2 * TILE);
        let mut busy = vec![false; row_blocks * chunks];
        // Row blocks in parallel: the weights of a whole batch are split on every product.
        tiles
            .par_chunks_mut((chunks * 2 * TILE).max(1))
            .zip(busy.par_chunks_mut(chunks.max(1)))
            .enumerate()
            .for_each(|(block, (tiles, busy))| {
                let (mut heads, mut tails) = (vec![0u16; width], vec![0u16; width]);
                for r in block * BLOCK..rows.min((block + 1) * BLOCK) {
                    let source = &a[r * stride + from..r * stride + from + len];
                    split_into(
                        proof,
                        source,
                        &mut heads[at..at + len],
                        &mut tails[at..at + len],
                    );
                    for (k, &v) in source.iter().enumerate() {
                        if v != 0.0 {
                            busy[(at + k) / CHUNK] = true;
                        }
                    }
                    for c in 0..chunks {
                        let to = c * 2 * TILE + (r % BLOCK) * CHUNK;
                        let run = c * CHUNK..(c + 1) * CHUNK;
                        tiles[to..to + CHUNK].copy_from_slice(&heads[run.clone()]);
                        tiles[to + TILE..to + TILE + CHUNK].copy_from_slice(&tails[run]);
                    }
                }
            });
        SplitRows {
            tiles,
            chunks,
            busy,
        }
    }

    /// The head tile of a row block's chunk (its tail tile follows).
    fn at(&self, row_block: usize, chunk: usize) -> *const u16 {
        self.tiles
            .as_ptr()
            .wrapping_add((row_block * self.chunks + chunk) * 2 * TILE)
    }
}

/// Heads and tails of `source`, vectorised for AVX-512 (`Amx` proves AVX-512BW too).
fn split_into(_proof: Amx, source: &[f32], heads: &mut [u16], tails: &mut [u16]) {
    #[target_feature(enable = "avx512f,avx512bw")]
    fn wide(source: &[f32], heads: &mut [u16], tails: &mut [u16]) {
        for ((&v, h), t) in source.iter().zip(heads).zip(tails) {
            (*h, *t) = split(v);
        }
    }
    // SAFETY: `detect` makes an Amx only where AVX-512F and AVX-512BW were detected.
    unsafe { wide(source, heads, tails) }
}

/// The `step`-th of `steps` shares of the `len` bytes from `region`, fetched into L2: the
/// kernels spread the next operand's stream over the current one's work, whose tile loads
/// would otherwise wait on L3.
#[inline(always)]
fn prefetch_share(region: *const u16, len: usize, (step, steps): (usize, usize)) {
    let (from, to) = (len * step / steps, len * (step + 1) / steps);
    let base = region as *const i8;
    let mut at = from / 64 * 64;
    while at < to {
        // SAFETY: prefetches do not fault; the address is only computed (wrapping).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                base.wrapping_add(at),
            )
        };
        at += 64;
    }
}

/// The next step's A operand (2 KiB: a head tile and its tail) into L1 during this step's
/// multiply. (B's next tiles follow the current ones, which the hardware prefetcher sees:
/// fetching them too was 5% slower.)
#[inline(always)]
fn prefetch_step(a: *const u16) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    for line in 0..2 * TILE * 2 / 64 {
        // SAFETY: prefetches do not fault; the address is only computed (wrapping).
        unsafe { _mm_prefetch::<_MM_HINT_T0>((a as *const i8).wrapping_add(line * 64)) };
    }
}

/// Every tile 16 rows of 64 bytes (palette 1).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn full() -> TileConfig {
        let mut bytes = [0u8; 64];
        bytes[0] = 1;
        for t in 0..8 {
            bytes[16 + 2 * t] = 64;
            bytes[48 + t] = BLOCK as u8;
        }
        TileConfig(bytes)
    }
}

/// The tiles configured for the scope of one kernel call, released when it ends.
struct Tiles(());

impl Tiles {
    fn configure(_proof: Amx) -> Tiles {
        let config = TileConfig::full();
        // SAFETY: `Amx` proves AMX-TILE and the granted tile state; the config is 64 aligned bytes.
        unsafe { asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack, readonly)) };
        Tiles(())
    }

    /// Stores accumulator tile tmm0 (and tmm1 with `both`) as 16 rows of 16 f32 at `to`, the
    /// second 16 floats to the right; row stride `stride` bytes.
    ///
    /// Safety: 16 rows of 16 (32 with `both`) f32 at `to` with that stride are writable.
    #[inline(always)]
    unsafe fn store(&self, to: *mut f32, stride: usize, both: bool) {
        unsafe {
            asm!("tilestored [{to} + {s}*1], tmm0", to = in(reg) to, s = in(reg) stride,
                options(nostack));
            if both {
                asm!("tilestored [{to} + {s}*1], tmm1", to = in(reg) to.add(BLOCK),
                    s = in(reg) stride, options(nostack));
            }
        }
    }

    /// Loads accumulator tiles tmm0 (and tmm1) from `from`, as `store` writes them.
    ///
    /// Safety: as `store`, readable.
    #[inline(always)]
    unsafe fn load(&self, from: *const f32, stride: usize, both: bool) {
        unsafe {
            asm!("tileloadd tmm0, [{f} + {s}*1]", f = in(reg) from, s = in(reg) stride,
                options(nostack, readonly));
            if both {
                asm!("tileloadd tmm1, [{f} + {s}*1]", f = in(reg) from.add(BLOCK),
                    s = in(reg) stride, options(nostack, readonly));
            }
        }
    }

    /// Zeroes the logits' main (tmm0, tmm1) and cross (tmm4, tmm5) accumulators.
    fn zero_split(&self) {
        // SAFETY: the tiles are configured.
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm4",
                "tilezero tmm5",
                options(nostack, nomem)
            )
        };
    }

    /// Stores the main accumulators to `main` and the cross ones to `cross`, as `store`.
    ///
    /// Safety: as `store`, at both.
    #[inline(always)]
    unsafe fn store_split(&self, main: *mut f32, cross: *mut f32, stride: usize, both: bool) {
        unsafe {
            self.store(main, stride, both);
            asm!("tilestored [{to} + {s}*1], tmm4", to = in(reg) cross, s = in(reg) stride,
                options(nostack));
            if both {
                asm!("tilestored [{to} + {s}*1], tmm5", to = in(reg) cross.add(BLOCK),
                    s = in(reg) stride, options(nostack));
            }
        }
    }

    /// As `multiply`, but head*head into the main accumulators (tmm0, tmm1) and the two cross
    /// terms into their own (tmm4, tmm5): the main sum then rounds as an f32 product of D terms
    /// would, and the small cross terms' roundings stay at their own scale.
    ///
    /// The order is the point: a tile product waits for the last one into its accumulator, and
    /// a tile load for the products still reading its register, so the two products into one
    /// cross accumulator are kept apart and each B1 tile is loaded as soon as its register is
    /// read. In program order a step cost ~490 cycles, in this one ~330 (logits 64 x 10000 x
    /// 784: 6.2 -> 4.2 ms on one thread). Each accumulator sums in the same order.
    ///
    /// Safety: as `multiply`.
    #[inline(always)]
    unsafe fn multiply_split(&self, a: *const u16, b0: *const u16, b1: Option<*const u16>) {
        unsafe {
            if let Some(b1) = b1 {
                asm!(
                    "tileloadd tmm2, [{a} + {sb}*1]",
                    "tileloadd tmm7, [{b} + {sb}*1 + 1024]",
                    "tileloadd tmm6, [{b} + {sb}*1]",
                    "tileloadd tmm3, [{a} + {sb}*1 + 1024]",
                    "tdpbf16ps tmm4, tmm2, tmm7",
                    "tdpbf16ps tmm0, tmm2, tmm6",
                    "tileloadd tmm7, [{c} + {sb}*1 + 1024]",
                    "tdpbf16ps tmm4, tmm3, tmm6",
                    "tdpbf16ps tmm5, tmm2, tmm7",
                    "tileloadd tmm6, [{c} + {sb}*1]",
                    "tdpbf16ps tmm1, tmm2, tmm6",
                    "tdpbf16ps tmm5, tmm3, tmm6",
                    a = in(reg) a,
                    b = in(reg) b0, c = in(reg) b1, sb = in(reg) 64usize,
                    options(nostack, readonly)
                );
            } else {
                asm!(
                    "tileloadd tmm2, [{a} + {sb}*1]",
                    "tileloadd tmm3, [{a} + {sb}*1 + 1024]",
                    "tileloadd tmm6, [{b} + {sb}*1]",
                    "tileloadd tmm7, [{b} + {sb}*1 + 1024]",
                    "tdpbf16ps tmm0, tmm2, tmm6",
                    "tdpbf16ps tmm4, tmm2, tmm7",
                    "tdpbf16ps tmm4, tmm3, tmm6",
                    a = in(reg) a,
                    b = in(reg) b0, sb = in(reg) 64usize,
                    options(nostack, readonly)
                );
            }
        }
    }

    /// tmm0 += A . B0 and, with `b1`, tmm1 += A . B1, in bf16x3: each operand a head tile and
    /// its tail tile (1 KiB each, contiguous). The two accumulators' products alternate, so
    /// neither waits on its own last one (as in `multiply_split`).
    ///
    /// Safety: 2 KiB at a and b0 (and at b1 if given).
    #[inline(always)]
    unsafe fn multiply(&self, a: *const u16, b0: *const u16, b1: Option<*const u16>) {
        unsafe {
            if let Some(b1) = b1 {
                asm!(
                    "tileloadd tmm2, [{a} + {sb}*1]",
                    "tileloadd tmm4, [{b} + {sb}*1]",
                    "tileloadd tmm6, [{c} + {sb}*1]",
                    "tileloadd tmm5, [{b} + {sb}*1 + 1024]",
                    "tdpbf16ps tmm0, tmm2, tmm4",
                    "tileloadd tmm7, [{c} + {sb}*1 + 1024]",
                    "tdpbf16ps tmm1, tmm2, tmm6",
                    "tileloadd tmm3, [{a} + {sb}*1 + 1024]",
                    "tdpbf16ps tmm0, tmm2, tmm5",
                    "tdpbf16ps tmm1, tmm2, tmm7",
                    "tdpbf16ps tmm0, tmm3, tmm4",
                    "tdpbf16ps tmm1, tmm3, tmm6",
                    a = in(reg) a,
                    b = in(reg) b0, c = in(reg) b1, sb = in(reg) 64usize,
                    options(nostack, readonly)
                );
            } else {
                asm!(
                    "tileloadd tmm2, [{a} + {sb}*1]",
                    "tileloadd tmm3, [{a} + {sb}*1 + 1024]",
                    "tileloadd tmm4, [{b} + {sb}*1]",
                    "tileloadd tmm5, [{b} + {sb}*1 + 1024]",
                    "tdpbf16ps tmm0, tmm2, tmm4",
                    "tdpbf16ps tmm0, tmm2, tmm5",
                    "tdpbf16ps tmm0, tmm3, tmm4",
                    a = in(reg) a,
                    b = in(reg) b0, sb = in(reg) 64usize,
                    options(nostack, readonly)
                );
            }
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: the tiles were configured by `configure`.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// A set's centred rows in both layouts (module doc).
#[derive(Clone, Debug)]
pub(super) struct Packing {
    n: usize,
    dim: usize,
    points: Bf16s,
    dims: Bf16s,
    /// The largest |y_tail| and |y - y_head - y_tail| over the points (Euclidean norms).
    largest_tail: f64,
    largest_rest: f64,
    proof: Amx,
}

/// |v_tail| and |v - v_head - v_tail| of a row, in f64.
fn tail_norms(row: &[f32]) -> (f64, f64) {
    let wide = |b: u16| f32::from_bits((b as u32) << 16) as f64;
    let (mut tail, mut rest) = (0.0f64, 0.0f64);
    for &v in row {
        let (h, t) = split(v);
        let r = v as f64 - wide(h) - wide(t);
        tail += wide(t) * wide(t);
        rest += r * r;
    }
    (tail.sqrt(), rest.sqrt())
}

/// A [rows][width] output that parallel tasks write in disjoint column ranges.
struct Columns {
    at: *mut f32,
    len: usize,
}

// SAFETY: the tasks given one `Columns` write disjoint elements (`Packing::logits`).
unsafe impl Sync for Columns {}

/// The span cut into one part per task (each whole CHUNKs of points, so no chunk is shared).
fn parts(span: Span, threads: Threads) -> Vec<Span> {
    let tasks = match threads {
        Threads::One => 1,
        Threads::All => rayon::current_num_threads().max(1),
    };
    let per = span
        .len()
        .div_ceil(tasks)
        .next_multiple_of(CHUNK)
        .max(CHUNK);
    let mut cuts = Vec::new();
    let mut start = span.start;
    while start < span.end {
        // Cut on the packing's chunk boundaries.
        let end = ((start + per) / CHUNK * CHUNK).clamp(start + 1, span.end);
        cuts.push(Span { start, end });
        start = end;
    }
    cuts
}

impl Packing {
    pub fn new(centred: &[f32], n: usize, dim: usize, proof: Amx) -> Packing {
        let (largest_tail, largest_rest) = centred
            .chunks_exact(dim.max(1))
            .take(n)
            .map(tail_norms)
            .fold((0.0f64, 0.0f64), |(t, r), (a, b)| (t.max(a), r.max(b)));
        Packing {
            n,
            dim,
            points: pack_points(centred, n, dim),
            dims: pack_dims(centred, n, dim),
            largest_tail,
            largest_rest,
            proof,
        }
    }

    /// A bound on |x . y_j - the tiles' x . y_j| for every point j of the set, beyond f32
    /// accumulation of dim + 3 terms of |x||y_j| (which the GEMM form's bound holds already);
    /// `x_norm` = |x|, `y_max` >= every |y_j| it is used for. With x = xh + xt + xr and likewise
    /// y, the tiles drop xt.yt + (xh + xt).yr + xr.y, each bounded by Cauchy-Schwarz. The main
    /// sum xh.yh accumulates dim terms of at most (1 + 2^-8)^2 |x_k||y_k| and main + cross rounds
    /// once more (together within the 0.02 dim u |x||y| taken), and the cross sum accumulates 2 dim
    /// terms bounded by |x||yt| + |xt||y|.
    pub fn product_error(&self, x: &[f32], x_norm: f64, y_max: f64) -> f64 {
        let (tail, rest) = tail_norms(x);
        let dropped = tail * self.largest_tail + (x_norm + rest) * self.largest_rest + rest * y_max;
        let u = f32::EPSILON as f64;
        let dim = self.dim as f64;
        let accumulation = dim * u * 0.02 * x_norm * y_max
            + 2.1 * dim * u * 1.01 * (x_norm * self.largest_tail + tail * y_max);
        // The f64 norms' own rounding, generously.
        (dropped + accumulation) * (1.0 + 1e-9)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.points.len() + self.dims.len()) * std::mem::size_of::<u16>()
    }

    /// out[q][j - span.start] = x[q] . (y_j - mu) for `rows` rows of `x` ([rows][dim]) and the
    /// span's points. The tasks share the rows and split the points: the packed data is read
    /// once.
    pub fn logits(&self, x: &[f32], rows: usize, span: Span, out: &mut [f32], threads: Threads) {
        let (dim, width) = (self.dim, span.len());
        let chunks = dim.div_ceil(CHUNK);
        assert!(span.start <= span.end && span.end <= self.n, "logits span");
        assert!(
            x.len() >= rows * dim && out.len() >= rows * width,
            "logits shapes"
        );
        let rows_split = SplitRows::new(self.proof, x, rows, (dim, 0, dim), (chunks, 0));
        let out = Columns {
            at: out.as_mut_ptr(),
            len: rows * width,
        };
        parts(span, threads)
            .par_iter()
            .for_each(|&part| self.logits_part(&rows_split, rows, span, part, &out));
    }

    /// The logits of the points in `part` (within `span`), written at their columns of `out`.
    fn logits_part(&self, x: &SplitRows, rows: usize, span: Span, part: Span, out: &Columns) {
        let chunks = x.chunks;
        let blocks = part.end.div_ceil(BLOCK);
        let points = &self.points;
        let tiles = Tiles::configure(self.proof);
        let mut buffer = Floats::zeroed(BLOCK * 2 * BLOCK);
        let mut cross = Floats::zeroed(BLOCK * 2 * BLOCK);
        let mut block = part.start / BLOCK;
        let row_blocks = rows.div_ceil(BLOCK);
        while block < blocks {
            let pair = block + 1 < blocks;
            // The next pair's packed data (contiguous after this pair's).
            let next = points
                .as_ptr()
                .wrapping_add((block + 2) * chunks * 2 * TILE);
            let next_len = (blocks.saturating_sub(block + 2)).min(2) * chunks * 2 * TILE * 2;
            for row_block in 0..row_blocks {
                tiles.zero_split();
                for chunk in 0..chunks {
                    prefetch_share(
                        next,
                        next_len,
                        (row_block * chunks + chunk, row_blocks * chunks),
                    );
                    let b0 = (block * chunks + chunk) * 2 * TILE;
                    let b1 = ((block + 1) * chunks + chunk) * 2 * TILE;
                    prefetch_step(x.at(row_block, chunk + 1));
                    // SAFETY: the row block and chunk lie within the split rows; blocks below
                    // ceil(n / 16) within the packing.
                    unsafe {
                        tiles.multiply_split(
                            x.at(row_block, chunk),
                            points.as_ptr().add(b0),
                            pair.then(|| points.as_ptr().add(b1)),
                        )
                    };
                }
                // SAFETY: the buffers hold 16 rows of 32 f32.
                unsafe {
                    tiles.store_split(buffer.as_mut_ptr(), cross.as_mut_ptr(), 2 * BLOCK * 4, pair)
                };
                // One rounding more: main + cross.
                for (m, c) in buffer.iter_mut().zip(cross.iter()) {
                    *m += c;
                }
                let first = block * BLOCK;
                let (lo, hi) = (
                    first.max(part.start),
                    (first + if pair { 2 * BLOCK } else { BLOCK }).min(part.end),
                );
                for r in row_block * BLOCK..rows.min((row_block + 1) * BLOCK) {
                    let from = (r % BLOCK) * 2 * BLOCK + lo - first;
                    let to = r * span.len() + lo - span.start;
                    assert!(to + (hi - lo) <= out.len);
                    // SAFETY: within `out` (asserted); columns lo..hi of row r belong to this
                    // part alone.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            buffer.as_ptr().add(from),
                            out.at.add(to),
                            hi - lo,
                        )
                    };
                }
            }
            block += 2;
        }
    }

    /// sums[q][k] = sum_{j in span} w[q][j - span.start] (y_j - mu)[k] for `rows` rows of weights
    /// ([rows][span.len()]); `sums` ([rows][dim]) is overwritten. The tasks split the points and
    /// their partial sums are added.
    pub fn weighted_sums(
        &self,
        w: &[f32],
        rows: usize,
        span: Span,
        sums: &mut [f32],
        threads: Threads,
    ) {
        let dim = self.dim;
        assert!(
            span.start <= span.end && span.end <= self.n,
            "weighted sums span"
        );
        assert!(
            w.len() >= rows * span.len() && sums.len() >= rows * dim,
            "weighted sums shapes"
        );
        let first_chunk = span.start / CHUNK;
        let weights = SplitRows::new(
            self.proof,
            w,
            rows,
            (span.len(), 0, span.len()),
            (
                span.end.div_ceil(CHUNK) - first_chunk,
                span.start - first_chunk * CHUNK,
            ),
        );
        let acc_width = dim.div_ceil(BLOCK).next_multiple_of(2) * BLOCK;
        let partial: Vec<Floats> = parts(span, threads)
            .par_iter()
            .map(|&part| self.sums_part(&weights, rows, first_chunk, part, acc_width))
            .collect();
        for r in 0..rows {
            let row = &mut sums[r * dim..(r + 1) * dim];
            row.fill(0.0);
            for acc in &partial {
                for (s, &v) in row.iter_mut().zip(&acc[r * acc_width..r * acc_width + dim]) {
                    *s += v;
                }
            }
        }
    }

    /// The weighted sums over the points of `part`, as [rows rounded up to BLOCK][acc_width];
    /// the weights split with their column 0 at point `first_chunk` * CHUNK.
    fn sums_part(
        &self,
        weights: &SplitRows,
        rows: usize,
        first_chunk: usize,
        part: Span,
        acc_width: usize,
    ) -> Floats {
        let point_chunks = self.n.div_ceil(CHUNK);
        let dim_blocks = self.dim.div_ceil(BLOCK);
        let row_blocks = rows.div_ceil(BLOCK);
        let chunks = weights.chunks;
        let dims = &self.dims;
        let mut acc = Floats::zeroed(row_blocks * BLOCK * acc_width);
        let tiles = Tiles::configure(self.proof);
        let (part_from, part_to) = (
            part.start / CHUNK - first_chunk,
            part.end.div_ceil(CHUNK) - first_chunk,
        );
        let mut from = part_from;
        while from < part_to {
            let to = (from + SUM_CHUNKS).min(part_to);
            let mut dim_block = 0;
            while dim_block < dim_blocks {
                let pair = dim_block + 1 < dim_blocks;
                // The next dimension pair's data for these chunks (each block's contiguous).
                let next_blocks = dim_blocks.saturating_sub(dim_block + 2).min(2);
                let next_at = |b: usize| {
                    dims.as_ptr().wrapping_add(
                        ((dim_block + 2 + b) * point_chunks + first_chunk + from) * 2 * TILE,
                    )
                };
                let next_len = (to - from) * 2 * TILE * 2;
                let steps = row_blocks * (to - from);
                for row_block in 0..row_blocks {
                    let flags = &weights.busy[row_block * chunks..(row_block + 1) * chunks];
                    if !flags[from..to].iter().any(|&b| b) {
                        continue;
                    }
                    let c = acc[row_block * BLOCK * acc_width + dim_block * BLOCK..].as_mut_ptr();
                    // SAFETY: 16 rows of acc_width floats from the row block, 32 columns from
                    // dim_block * 16 <= acc_width - 32.
                    unsafe { tiles.load(c, acc_width * 4, pair) };
                    for chunk in from..to {
                        let step = row_block * (to - from) + chunk - from;
                        for b in 0..next_blocks {
                            prefetch_share(next_at(b), next_len, (step, steps));
                        }
                        if !flags[chunk] {
                            continue;
                        }
                        let packed = first_chunk + chunk;
                        let b0 = (dim_block * point_chunks + packed) * 2 * TILE;
                        let b1 = ((dim_block + 1) * point_chunks + packed) * 2 * TILE;
                        prefetch_step(weights.at(row_block, chunk + 1));
                        // SAFETY: within the split rows and the packing (chunks below
                        // ceil(n / 32), dimension blocks below ceil(dim / 16)).
                        unsafe {
                            tiles.multiply(
                                weights.at(row_block, chunk),
                                dims.as_ptr().add(b0),
                                pair.then(|| dims.as_ptr().add(b1)),
                            )
                        };
                    }
                    // SAFETY: as the load.
                    unsafe { tiles.store(c, acc_width * 4, pair) };
                }
                dim_block += 2;
            }
            from = to;
        }
        acc
    }
}
