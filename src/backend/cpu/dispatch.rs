//! The instruction set picked at run time, the target-feature copies of the kernels, and the
//! parallel entry points.

use std::sync::Arc;

use rayon::prelude::*;

use super::cache::batch_fingerprint;
use super::expansion::expanded_rows;
use super::fused::{FUSED_MAX_DIM, fused_softmax_task};
use super::gemm::Threads;
use super::gemm_form::{
    RowMeta, RowWeights, SpanDistances, finish_row, recompute_limit, weigh_gemm_row,
};
use super::layout::{GEMM_MAX_DIM, GEMM_MIN_DIM, GemmOperands, PreparedSet, tasks};
use super::log_sum_exp::{
    RowBuckets, bucket_task, exactly_seen, gemm_log_sum_exp_row, grid_from_buckets, ln_of,
};
use super::marginal_table::MarginalTable;
use super::panels::Panels;
use super::pruned::{Projection, pruned_row};
use super::real::Real;
use super::tiles::{Tiles, tiles_for, tiles_nearest_task, tiles_softmax_task};
use super::weighted::weighted_rows_task;
use crate::backend::{GridRow, Span, WeightedRow, Weighting};

macro_rules! dispatch {
    ($kernel:ident, $name512:ident, $name2:ident, $entry:ident,
     ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
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
        /// The kernel's copy for `isa`: AVX-512, AVX2 + FMA, or portable.
        fn $entry<T: Real>(isa: Isa, $($arg: $ty),*) -> $ret {
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `isa` comes from `Isa::detect`, which checked these features.
                Isa::Avx512 => unsafe { $name512::<T>($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Isa::Avx2 => unsafe { $name2::<T>($($arg),*) },
                _ => $kernel::<T, false>($($arg),*),
            }
        }
    };
}

dispatch!(weighted_rows_task, weighted_rows_avx512, weighted_rows_avx2, weighted_rows_task_isa,
    (set: &PreparedSet<T>, x: &[T], rows: &[usize], span: Span, weighting: &Weighting) -> Vec<WeightedRow>);
dispatch!(finish_row, finish_row_avx512, finish_row_avx2, finish_row_isa,
    (set: &PreparedSet<T>, ops: &GemmOperands<T>, x: &[T], x_norm: f64, y_max: f64, span: Span,
     logits: &mut [T]) -> RowMeta);
dispatch!(weigh_gemm_row, weigh_gemm_row_avx512, weigh_gemm_row_avx2, weigh_gemm_row_isa,
    (set: &PreparedSet<T>, x: &[T], span: Span, gaps: &[T], meta: &RowMeta,
     weighting: &Weighting, table: Option<&MarginalTable>, out: &mut [T]) -> RowWeights);
dispatch!(pruned_row, pruned_row_avx512, pruned_row_avx2, pruned_row_isa,
    (set: &PreparedSet<T>, proj: &Projection, x: &[T], span: Span, sigma: f64)
     -> Option<WeightedRow>);
dispatch!(fused_softmax_task, fused_softmax_avx512, fused_softmax_avx2, fused_softmax_task_isa,
    (set: &PreparedSet<T>, x: &[T], rows: &[usize], span: Span, sigma: f64) -> Vec<WeightedRow>);
dispatch!(tiles_softmax_task, tiles_softmax_avx512, tiles_softmax_avx2, tiles_softmax_task_isa,
    (tiles: &Tiles<T>, x: &[T], rows: &[usize], sigma: f64) -> Vec<WeightedRow>);
dispatch!(tiles_nearest_task, tiles_nearest_avx512, tiles_nearest_avx2, tiles_nearest_task_isa,
    (tiles: &Tiles<T>, x: &[T], rows: &[usize]) -> Vec<T>);
dispatch!(gemm_log_sum_exp_row, gemm_lse_row_avx512, gemm_lse_row_avx2, gemm_log_sum_exp_row_isa,
    (set: &PreparedSet<T>, x: &[T], span: Span, gaps: &[T], meta: &RowMeta, coarse: &[f64],
     coarse_ln: &[f64], fine_of: &dyn Fn(&[f64]) -> Vec<f64>) -> (GridRow, RowBuckets<T>));
dispatch!(bucket_task, bucket_task_avx512, bucket_task_avx2, bucket_task_isa,
    (set: &PreparedSet<T>, x: &[T], rows: &[usize], span: Span) -> Vec<RowBuckets<T>>);
dispatch!(grid_from_buckets, grid_from_buckets_avx512, grid_from_buckets_avx2, grid_from_buckets_isa,
    (row: &RowBuckets<T>, dim: usize, coarse: &[f64], coarse_ln: &[f64],
     fine_of: &dyn Fn(&[f64]) -> Vec<f64>) -> Option<GridRow>);

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

/// How a kernel measures distances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Explicit differences to every point of the span.
    Explicit,
    /// The GEMM form, exact where the weighting needs it (`gemm_form.rs`).
    Gemm,
    /// The span in spatially compact blocks with bounding boxes, explicit differences to the
    /// points of the blocks within reach (D <= 3, `tiles.rs`); at large sigma the Taylor
    /// expansion (`expansion.rs`, f32 sets) for the rows it bounds.
    Tiles,
    /// The fused dense kernel for every row (D <= 3; tests and benches compare it).
    Dense,
}

impl Path {
    /// The path a set takes by default: the tiles for D <= 3, the GEMM form for f32 sets of
    /// GEMM_MIN_DIM to GEMM_MAX_DIM dimensions, explicit differences otherwise (and for f64 sets above 3
    /// dimensions, which stay the oracle).
    pub fn for_set<T: Real>(set: &PreparedSet<T>) -> Path {
        if set.dim <= FUSED_MAX_DIM {
            Path::Tiles
        } else if T::GEMM_FORM && (GEMM_MIN_DIM..=GEMM_MAX_DIM).contains(&set.dim) {
            Path::Gemm
        } else {
            Path::Explicit
        }
    }
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
    weighted_rows_on(set, x, spans, weighting, isa, Path::for_set(set))
}

/// `weighted_rows` on a given path (tests and benches compare the paths).
pub fn weighted_rows_on<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    spans: &[Span],
    weighting: &Weighting,
    isa: Isa,
    path: Path,
) -> Vec<WeightedRow> {
    let groups = group_by_span(spans);
    let threads = if groups.len() == 1 {
        Threads::All
    } else {
        Threads::One
    };
    let mut work: Vec<(Span, &[usize])> = Vec::new();
    let mut results: Vec<Vec<WeightedRow>> = Vec::new();
    let mut explicit: Vec<(Span, &[usize])> = Vec::new();
    for (span, rows) in &groups {
        let done = match path {
            Path::Gemm => Some(pruned_or_gemm_rows(
                set, x, rows, *span, weighting, isa, threads,
            )),
            Path::Tiles => expanded_or_tiled_rows(set, x, rows, *span, weighting, isa),
            Path::Dense => fused_rows(set, x, rows, *span, weighting, isa),
            Path::Explicit => None,
        };
        match done {
            Some(rows_done) => {
                work.push((*span, rows.as_slice()));
                results.push(rows_done);
            }
            None => explicit.extend(
                tasks(rows, span.len(), set.dim)
                    .into_iter()
                    .map(|t| (*span, t)),
            ),
        }
    }
    let explicit_results: Vec<Vec<WeightedRow>> = explicit
        .par_iter()
        .map(|&(span, rows)| weighted_rows_task_isa(isa, set, x, rows, span, weighting))
        .collect();
    work.extend(explicit);
    results.extend(explicit_results);
    scatter(spans.len(), &work, results)
}

/// The distances of `rows` (of the batch `x`) to `span` in GEMM form: from the cache when the
/// same rows were measured lately, else by one product (and then cached).
fn gemm_distances<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    isa: Isa,
    threads: Threads,
) -> Arc<SpanDistances<T>> {
    if let Some(cached) = set.cache.lookup(x, set.dim, rows, span) {
        return cached;
    }
    measure_distances(set, x, rows, span, isa, threads)
}

/// Each of `rows`' GEMM-form distances to `span` as (distances, position): where they lie in
/// the cache when every row is there (no gathered copy), else from one product.
fn gemm_distance_rows<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    isa: Isa,
    threads: Threads,
) -> Vec<(Arc<SpanDistances<T>>, usize)> {
    if let Some(found) = set.cache.lookup_rows(x, set.dim, rows, span) {
        return found;
    }
    let distances = measure_distances(set, x, rows, span, isa, threads);
    (0..rows.len())
        .map(|q| (Arc::clone(&distances), q))
        .collect()
}

/// `rows`' distances to `span` by one product, then cached.
fn measure_distances<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    isa: Isa,
    threads: Threads,
) -> Arc<SpanDistances<T>> {
    let ops = set.gemm_operands();
    let finish = |xr: &[T], norm: f64, y_max: f64, logits: &mut [T]| {
        finish_row_isa(isa, set, ops, xr, norm, y_max, span, logits)
    };
    let panels = panels_for(set, isa);
    let distances = Arc::new(SpanDistances::new(
        set, ops, panels, x, rows, span, threads, &finish,
    ));
    set.cache.insert(x, set.dim, Arc::clone(&distances));
    distances
}

/// Rows a thread takes at least when a GEMM-form batch is split over the pool.
const GEMM_CHUNK_MIN: usize = 16;

/// One span's rows in GEMM form. With the whole pool, the rows are split into one chunk per
/// thread, each run start to end on its thread (product, weighting, second product, one cache
/// entry each): one fork-join per call instead of one per stage, each stage's tail idling.
pub(super) fn gemm_rows<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    weighting: &Weighting,
    isa: Isa,
    threads: Threads,
) -> Vec<WeightedRow> {
    let pool = rayon::current_num_threads();
    if threads == Threads::All && pool > 1 && rows.len() >= 2 * GEMM_CHUNK_MIN {
        let chunk = rows.len().div_ceil(pool).max(GEMM_CHUNK_MIN);
        let parts: Vec<Vec<WeightedRow>> = rows
            .par_chunks(chunk)
            .map(|part| gemm_rows(set, x, part, span, weighting, isa, Threads::One))
            .collect();
        return parts.concat();
    }
    let distances = gemm_distances(set, x, rows, span, isa, threads);
    // Looked up once per call, not per row (the key holds every node).
    let table = set.marginal.get::<T>(weighting, set.dim);
    let table = table.as_deref();
    let weigh = |xr: &[T], gaps: &[T], meta: &RowMeta, out: &mut [T]| {
        weigh_gemm_row_isa(isa, set, xr, span, gaps, meta, weighting, table, out)
    };
    distances.weighted_rows(set, panels_for(set, isa), x, threads, &weigh)
}

/// The set's packed panels where the AVX-512 copy runs (the AVX2 and portable copies keep the
/// `gemm` crate's products, as the tests comparing the copies expect).
fn panels_for<T: Real>(set: &PreparedSet<T>, isa: Isa) -> Option<&Panels> {
    if isa == Isa::Avx512 {
        set.panels()
    } else {
        None
    }
}

/// Rows probed by pruning before the whole batch is: when most of them have too many candidates
/// (a wide softmax), the batch goes to the product at once.
const PRUNING_PROBE: usize = 8;

/// One span's rows: the softmax's by pruned candidates where few points are within reach
/// (`pruned.rs`), the others (and every other weighting) in GEMM form. A softmax batch that a
/// later call is likely to read again in full (`RereadHistory`) takes the product at once, which
/// that call then finds cached.
fn pruned_or_gemm_rows<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    weighting: &Weighting,
    isa: Isa,
    threads: Threads,
) -> Vec<WeightedRow> {
    let fingerprint = batch_fingerprint(x, set.dim, rows, span);
    let Weighting::Softmax { sigma } = *weighting else {
        set.rereads.reread(fingerprint);
        return gemm_rows(set, x, rows, span, weighting, isa, threads);
    };
    let reread_expected = set.rereads.expects_reread();
    set.rereads.softmax(fingerprint);
    if reread_expected {
        return gemm_rows(set, x, rows, span, weighting, isa, threads);
    }
    let proj = set.projection();
    let dim = set.dim;
    let one = |r: usize| {
        let xr = &x[r * dim..(r + 1) * dim];
        pruned_row_isa(isa, set, proj, xr, span, sigma)
    };
    let probe = rows.len().min(PRUNING_PROBE);
    let mut done: Vec<Option<WeightedRow>> = rows[..probe].par_iter().map(|&r| one(r)).collect();
    if done.iter().filter(|d| d.is_some()).count() * 2 < probe {
        return gemm_rows(set, x, rows, span, weighting, isa, threads);
    }
    done.par_extend(rows[probe..].par_iter().map(|&r| one(r)));
    with_rest_from(rows, done, |rest| {
        gemm_rows(set, x, rest, span, weighting, isa, threads)
    })
}

/// The rows a fast path left (`None` in `done`, in the order of `rows`) computed by `rest`, and
/// every row's result in row order.
fn with_rest_from(
    rows: &[usize],
    done: Vec<Option<WeightedRow>>,
    rest: impl FnOnce(&[usize]) -> Vec<WeightedRow>,
) -> Vec<WeightedRow> {
    let left: Vec<usize> = rows
        .iter()
        .zip(&done)
        .filter(|(_, d)| d.is_none())
        .map(|(&r, _)| r)
        .collect();
    let mut from_rest = if left.is_empty() {
        Vec::new()
    } else {
        rest(&left)
    }
    .into_iter();
    debug_assert_eq!(from_rest.len(), left.len(), "one result per row left");
    done.into_iter()
        .map(|d| d.unwrap_or_else(|| from_rest.next().unwrap_or_default()))
        .collect()
}

/// One span's log-sum-exps in GEMM form (rows measured by the denoiser lately come from the
/// distance cache, rows the last call on this state bucketed from the bucket cache).
fn gemm_log_sum_exp<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    coarse: &Nodes<'_>,
    refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
    isa: Isa,
    threads: Threads,
) -> Vec<GridRow> {
    set.rereads
        .reread(batch_fingerprint(x, set.dim, rows, span));
    with_bucket_cache(set, x, rows, span, coarse, refine, isa, |missing| {
        gemm_measured(set, x, missing, span, coarse, refine, isa, threads)
    })
}

/// `rows`' log-sum-exps from their GEMM-form gaps, with their buckets. A row whose posterior
/// must see most of its gaps exactly (the product's bound is coarser than the grid's nodes
/// resolve, and most gaps are within their reach) takes explicit distances to the whole span,
/// blocked eight rows at a time, instead of recomputing its candidates one by one.
#[allow(clippy::too_many_arguments)]
fn gemm_measured<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    coarse: &Nodes<'_>,
    refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
    isa: Isa,
    threads: Threads,
) -> Vec<(GridRow, RowBuckets<T>)> {
    let found = gemm_distance_rows(set, x, rows, span, isa, threads);
    let dim = set.dim;
    let width = span.len();
    let row_of = |k: usize| -> (&[T], &RowMeta) {
        let (distances, q) = &found[k];
        (
            &distances.gaps[q * width..(q + 1) * width],
            &distances.meta[*q],
        )
    };
    let wide: Vec<bool> = (0..rows.len())
        .into_par_iter()
        .map(|k| {
            let (gaps, meta) = row_of(k);
            exactly_seen(gaps, meta, coarse.sigmas, &coarse.ln, dim) > recompute_limit(width)
        })
        .collect();
    let wide_rows: Vec<usize> = (0..rows.len())
        .filter(|&k| wide[k])
        .map(|k| rows[k])
        .collect();
    let explicit = explicit_log_sum_exp(set, x, &wide_rows, span, coarse, refine, isa);
    let mut explicit = explicit.into_iter();
    let narrow: Vec<(GridRow, RowBuckets<T>)> = rows
        .par_iter()
        .enumerate()
        .filter(|&(k, _)| !wide[k])
        .map(|(k, &r)| {
            let xr = &x[r * dim..(r + 1) * dim];
            let (gaps, meta) = row_of(k);
            let fine_of = |c: &[f64]| refine(r, c);
            gemm_log_sum_exp_row_isa(
                isa,
                set,
                xr,
                span,
                gaps,
                meta,
                coarse.sigmas,
                &coarse.ln,
                &fine_of,
            )
        })
        .collect();
    let mut narrow = narrow.into_iter();
    // Back in the order of `rows`.
    wide.iter()
        .filter_map(|&w| if w { explicit.next() } else { narrow.next() })
        .collect()
}

/// Log-sum-exps of `rows` by explicit distances to the span, bucketed in cache-sized tasks, with
/// their buckets.
fn explicit_log_sum_exp<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    coarse: &Nodes<'_>,
    refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
    isa: Isa,
) -> Vec<(GridRow, RowBuckets<T>)> {
    let dim = set.dim;
    let built: Vec<RowBuckets<T>> = tasks(rows, span.len(), dim)
        .par_iter()
        .map(|rows| bucket_task_isa(isa, set, x, rows, span))
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect();
    rows.par_iter()
        .zip(built.into_par_iter())
        .map(|(&r, row)| {
            let fine_of = |c: &[f64]| refine(r, c);
            // Explicit distances are exact for every grid: never None.
            let grid = grid_from_buckets_isa(isa, &row, dim, coarse.sigmas, &coarse.ln, &fine_of)
                .unwrap_or_default();
            (grid, row)
        })
        .collect()
}

/// A span's log-sum-exps: rows bucketed by the last call on the same state (the pooled
/// estimate's pass after the per-row one) come from the set's bucket cache where their gaps are
/// exact enough for these nodes; `fresh` measures the others, whose buckets are kept in turn.
#[allow(clippy::too_many_arguments)]
fn with_bucket_cache<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    coarse: &Nodes<'_>,
    refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
    isa: Isa,
    fresh: impl FnOnce(&[usize]) -> Vec<(GridRow, RowBuckets<T>)>,
) -> Vec<GridRow> {
    let dim = set.dim;
    let cached = set.buckets.lookup(x, dim, rows, span);
    let hits = cached.iter().flatten().count();
    let mut grids: Vec<Option<GridRow>> = rows
        .par_iter()
        .zip(&cached)
        .map(|(&r, row)| {
            let fine_of = |c: &[f64]| refine(r, c);
            grid_from_buckets_isa(isa, row.as_ref()?, dim, coarse.sigmas, &coarse.ln, &fine_of)
        })
        .collect();
    let missing: Vec<usize> = rows
        .iter()
        .zip(&grids)
        .filter(|(_, g)| g.is_none())
        .map(|(&r, _)| r)
        .collect();
    let mut kept = Vec::with_capacity(missing.len());
    if !missing.is_empty() {
        let mut measured = fresh(&missing).into_iter();
        for (slot, &r) in grids.iter_mut().filter(|g| g.is_none()).zip(&missing) {
            if let Some((grid, buckets)) = measured.next() {
                *slot = Some(grid);
                kept.push((r, buckets));
            }
        }
    }
    set.buckets.keep(x, dim, span, kept, hits);
    grids.into_iter().map(Option::unwrap_or_default).collect()
}

/// The softmax's sigma where the low-dimensional kernels serve (D <= FUSED_MAX_DIM).
fn low_dim_softmax<T: Real>(set: &PreparedSet<T>, weighting: &Weighting) -> Option<f64> {
    let Weighting::Softmax { sigma } = *weighting else {
        return None;
    };
    (1..=FUSED_MAX_DIM).contains(&set.dim).then_some(sigma)
}

/// `run` over `rows` in about four tasks per thread, the results in row order.
fn in_row_tasks<R: Send>(rows: &[usize], run: impl Fn(&[usize]) -> Vec<R> + Sync + Send) -> Vec<R> {
    let threads = rayon::current_num_threads().max(1);
    let per_task = rows.len().div_ceil(4 * threads).max(4);
    let done: Vec<Vec<R>> = rows.par_chunks(per_task).map(run).collect();
    done.into_iter().flatten().collect()
}

/// One span's rows through the fused dense softmax (D <= FUSED_MAX_DIM); `None` for other
/// weightings.
fn fused_rows<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    weighting: &Weighting,
    isa: Isa,
) -> Option<Vec<WeightedRow>> {
    let sigma = low_dim_softmax(set, weighting)?;
    Some(fused_softmax_rows(set, x, rows, span, sigma, isa))
}

/// The fused dense softmax of `rows` at `sigma`, in row tasks over the pool.
fn fused_softmax_rows<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    sigma: f64,
    isa: Isa,
) -> Vec<WeightedRow> {
    in_row_tasks(rows, |rows| {
        fused_softmax_task_isa(isa, set, x, rows, span, sigma)
    })
}

/// One span's softmax rows by the Taylor expansion where its bound holds, the others through the
/// span's tiled blocks (D <= FUSED_MAX_DIM, `tiles.rs`: the fused kernel's arithmetic on the
/// blocks within reach); `None` for other weightings.
fn expanded_or_tiled_rows<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    weighting: &Weighting,
    isa: Isa,
) -> Option<Vec<WeightedRow>> {
    let sigma = low_dim_softmax(set, weighting)?;
    let tiles = &tiles_for(set, span);
    let nearest = |rows: &[usize]| -> Vec<T> {
        in_row_tasks(rows, |rows| tiles_nearest_task_isa(isa, tiles, x, rows))
    };
    let expanded = expanded_rows(set, x, rows, span, sigma, &nearest);
    Some(with_rest_from(rows, expanded, |rest| {
        in_row_tasks(rest, |rows| {
            tiles_softmax_task_isa(isa, tiles, x, rows, sigma)
        })
    }))
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
    log_sum_exp_grid_on(set, x, spans, coarse, refine, isa, Path::for_set(set))
}

/// `log_sum_exp_grid` on a given path (the GEMM form, or explicit differences for any other).
pub fn log_sum_exp_grid_on<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    spans: &[Span],
    coarse: &[f64],
    refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
    isa: Isa,
    path: Path,
) -> Vec<GridRow> {
    let coarse = &Nodes::of(coarse);
    let groups = group_by_span(spans);
    if path == Path::Gemm {
        let threads = if groups.len() == 1 {
            Threads::All
        } else {
            Threads::One
        };
        let work: Vec<(Span, &[usize])> = groups
            .iter()
            .map(|(span, rows)| (*span, rows.as_slice()))
            .collect();
        let results = work
            .iter()
            .map(|&(span, rows)| gemm_log_sum_exp(set, x, rows, span, coarse, refine, isa, threads))
            .collect();
        return scatter(spans.len(), &work, results);
    }
    let work: Vec<(Span, &[usize])> = groups
        .iter()
        .map(|(span, rows)| (*span, rows.as_slice()))
        .collect();
    let results = work
        .iter()
        .map(|&(span, rows)| {
            with_bucket_cache(set, x, rows, span, coarse, refine, isa, |missing| {
                explicit_log_sum_exp(set, x, missing, span, coarse, refine, isa)
            })
        })
        .collect();
    scatter(spans.len(), &work, results)
}

/// The coarse grid shared by every row, with its logs taken once per call rather than per row.
struct Nodes<'a> {
    sigmas: &'a [f64],
    ln: Vec<f64>,
}

impl<'a> Nodes<'a> {
    fn of(sigmas: &'a [f64]) -> Self {
        Nodes {
            sigmas,
            ln: ln_of(sigmas),
        }
    }
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
