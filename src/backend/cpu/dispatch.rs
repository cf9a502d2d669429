//! The instruction set picked at run time, the target-feature copies of the kernels, and the
//! parallel entry points.

use std::sync::Arc;

use rayon::prelude::*;

use super::fused::{FUSED_MAX_DIM, fused_softmax_task};
use super::gemm_form::{Kernels, RowMeta, RowWeights, SpanDistances, finish_row, weigh_gemm_row};
use super::grid::{GRID_MAX_DIM, Grid, grid_row};
use super::layout::{GEMM_MIN_DIM, GemmOperands, PreparedSet, tasks};
use super::log_sum_exp::{gemm_log_sum_exp_row, log_sum_exp_task};
use super::real::Real;
use super::tiles::{logits_task, weighted_task};
use super::weighted::weighted_rows_task;
use super::weights::Reach;
use crate::backend::{GridRow, Span, WeightedRow, Weighting};

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

/// Calls the copy of a kernel compiled for `isa`.
macro_rules! by_isa {
    ($isa:expr, $name512:ident, $name2:ident, $kernel:ident, ($($arg:expr),*)) => {
        match $isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` comes from `Isa::detect`, which checked these features.
            Isa::Avx512 => unsafe { $name512($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx2 => unsafe { $name2($($arg),*) },
            _ => $kernel::<_, false>($($arg),*),
        }
    };
}

dispatch!(logits_task, logits_avx512, logits_avx2,
    (x: &[T], dim: usize, blocked: &[T], blocks: (usize, usize), points: (usize, usize),
     out: &mut [T]) -> ());
dispatch!(weighted_task, weighted_sums_avx512, weighted_sums_avx2,
    (w: &[T], blocked: &[T], dim: usize, blocks: (usize, usize), dims: (usize, usize),
     out: &mut [f64]) -> ());
dispatch!(weighted_rows_task, weighted_rows_avx512, weighted_rows_avx2,
    (set: &PreparedSet<T>, x: &[T], rows: &[usize], span: Span, weighting: &Weighting) -> Vec<WeightedRow>);
dispatch!(finish_row, finish_row_avx512, finish_row_avx2,
    (set: &PreparedSet<T>, ops: &GemmOperands<T>, x: &[T], x_norm: f64, span: Span,
     logits: &mut [T]) -> RowMeta);
dispatch!(weigh_gemm_row, weigh_gemm_row_avx512, weigh_gemm_row_avx2,
    (set: &PreparedSet<T>, x: &[T], span: Span, gaps: &[T], meta: &RowMeta,
     weighting: &Weighting) -> RowWeights<T>);
dispatch!(grid_row, grid_row_avx512, grid_row_avx2,
    (grid: &Grid<T>, rows: &[T], span: Span, x: &[T], weighting: &Weighting) -> WeightedRow);
dispatch!(fused_softmax_task, fused_softmax_avx512, fused_softmax_avx2,
    (set: &PreparedSet<T>, x: &[T], rows: &[usize], span: Span, sigma: f64) -> Vec<WeightedRow>);
dispatch!(gemm_log_sum_exp_row, gemm_lse_row_avx512, gemm_lse_row_avx2,
    (set: &PreparedSet<T>, x: &[T], span: Span, gaps: &[T], meta: &RowMeta, coarse: &[f64],
     fine_of: &dyn Fn(&[f64]) -> Vec<f64>) -> GridRow);
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

/// How a kernel measures distances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Explicit differences to every point of the span.
    Explicit,
    /// The GEMM form, exact where the weighting needs it (`gemm_form.rs`).
    Gemm,
    /// A uniform grid over the span, explicit differences to the points within reach (D <= 3);
    /// where the reach covers too much of the data to prune (large sigma), the fused dense kernel.
    Grid,
}

impl Path {
    /// The path a set takes by default: the grid for D <= 3, the GEMM form for f32 sets of
    /// GEMM_MIN_DIM or more dimensions, explicit differences otherwise (and for f64 sets above 3
    /// dimensions, which stay the oracle).
    pub fn for_set<T: Real>(set: &PreparedSet<T>) -> Path {
        if set.dim <= GRID_MAX_DIM {
            Path::Grid
        } else if T::GEMM_FORM && set.dim >= GEMM_MIN_DIM {
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
    // One span: its products use every thread; several: the spans run in parallel instead.
    let parallel = groups.len() == 1;
    let mut work: Vec<(Span, &[usize])> = Vec::new();
    let mut results: Vec<Vec<WeightedRow>> = Vec::new();
    let mut explicit: Vec<(Span, &[usize])> = Vec::new();
    for (span, rows) in &groups {
        let done = match path {
            Path::Gemm => Some(gemm_rows(set, x, rows, *span, weighting, isa, parallel)),
            Path::Grid => grid_rows(set, x, rows, *span, weighting, isa)
                .or_else(|| fused_rows(set, x, rows, *span, weighting, isa)),
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
    work.extend(explicit);
    results.extend(explicit_results);
    scatter(spans.len(), &work, results)
}

/// Runs `body` with the GEMM form's kernels for `span`, compiled for `isa`.
fn with_kernels<T: Real, R>(
    set: &PreparedSet<T>,
    span: Span,
    isa: Isa,
    parallel: bool,
    body: impl FnOnce(&GemmOperands<T>, &Kernels<T>) -> R,
) -> R {
    let ops = set.gemm_operands();
    let dim = set.dim;
    let logits = |x: &[T], blocks, points, out: &mut [T]| {
        by_isa!(
            isa,
            logits_avx512,
            logits_avx2,
            logits_task,
            (x, dim, &ops.blocked, blocks, points, out)
        )
    };
    let weighted = |w: &[T], blocks, dims, out: &mut [f64]| {
        by_isa!(
            isa,
            weighted_sums_avx512,
            weighted_sums_avx2,
            weighted_task,
            (w, &ops.blocked, dim, blocks, dims, out)
        )
    };
    let finish = |xr: &[T], norm: f64, logits: &mut [T]| {
        by_isa!(
            isa,
            finish_row_avx512,
            finish_row_avx2,
            finish_row,
            (set, ops, xr, norm, span, logits)
        )
    };
    body(
        ops,
        &Kernels {
            parallel,
            logits: &logits,
            weighted: &weighted,
            finish: &finish,
        },
    )
}

/// The distances of `rows` (of the batch `x`) to `span` in GEMM form: from the cache when the
/// same rows were measured lately, else by one product (and then cached).
fn gemm_distances<T: Real>(
    set: &PreparedSet<T>,
    ops: &GemmOperands<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    kernels: &Kernels<T>,
) -> Arc<SpanDistances<T>> {
    if let Some(cached) = set.cache.lookup(x, set.dim, rows, span) {
        return cached;
    }
    let distances = Arc::new(SpanDistances::new(set, ops, x, rows, span, kernels));
    set.cache.insert(x, set.dim, Arc::clone(&distances));
    distances
}

/// One span's rows in GEMM form.
fn gemm_rows<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    weighting: &Weighting,
    isa: Isa,
    parallel: bool,
) -> Vec<WeightedRow> {
    with_kernels(set, span, isa, parallel, |ops, kernels| {
        let distances = gemm_distances(set, ops, x, rows, span, kernels);
        let weigh = |xr: &[T], gaps: &[T], meta: &RowMeta| {
            by_isa!(
                isa,
                weigh_gemm_row_avx512,
                weigh_gemm_row_avx2,
                weigh_gemm_row,
                (set, xr, span, gaps, meta, weighting)
            )
        };
        distances.weighted_rows(set, x, kernels, &weigh)
    })
}

/// One span's log-sum-exps in GEMM form (rows measured by the denoiser lately come from the cache).
fn gemm_log_sum_exp<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    coarse: &[f64],
    refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
    isa: Isa,
    parallel: bool,
) -> Vec<GridRow> {
    with_kernels(set, span, isa, parallel, |ops, kernels| {
        let distances = gemm_distances(set, ops, x, rows, span, kernels);
        let dim = set.dim;
        let width = span.len();
        distances
            .rows
            .par_iter()
            .enumerate()
            .map(|(q, &r)| {
                let xr = &x[r * dim..(r + 1) * dim];
                let gaps = &distances.gaps[q * width..(q + 1) * width];
                let meta = &distances.meta[q];
                let fine_of = |c: &[f64]| refine(r, c);
                by_isa!(
                    isa,
                    gemm_lse_row_avx512,
                    gemm_lse_row_avx2,
                    gemm_log_sum_exp_row,
                    (set, xr, span, gaps, meta, coarse, &fine_of)
                )
            })
            .collect()
    })
}

/// This machine's f32 throughput (GFLOP/s, 2 m n k flops) for the GEMM form's logits product on
/// a workload's shape: m query rows against n data points of dimension k, the same kernel and
/// threads the denoiser uses, repeated for at least `seconds`; the best of three rounds.
pub fn probe_throughput(m: usize, n: usize, k: usize, seconds: f64) -> f64 {
    let values: Vec<f64> = (0..n * k)
        .map(|i| ((i * 7919) % 1021) as f64 / 511.0 - 1.0)
        .collect();
    let set = PreparedSet::<f32>::new(&values, n, k);
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 104_729) % 1021) as f32 / 511.0 - 1.0)
        .collect();
    let isa = Isa::detect();
    let flops = 2.0 * (m * n * k) as f64;
    with_kernels(
        &set,
        Span { start: 0, end: n },
        isa,
        true,
        |ops, kernels| {
            let _ = ops;
            let run = || super::tiles::logits(&x, k, (0, n), true, kernels.logits);
            std::hint::black_box(run());
            let mut best = 0.0f64;
            for _ in 0..3 {
                let started = std::time::Instant::now();
                let mut reps = 0usize;
                while reps == 0 || started.elapsed().as_secs_f64() < seconds / 3.0 {
                    std::hint::black_box(run());
                    reps += 1;
                }
                best = best.max(flops * reps as f64 / started.elapsed().as_secs_f64() / 1e9);
            }
            best
        },
    )
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
    let Weighting::Softmax { sigma } = *weighting else {
        return None;
    };
    if set.dim > FUSED_MAX_DIM || set.dim == 0 {
        return None;
    }
    let threads = rayon::current_num_threads().max(1);
    let per_task = rows.len().div_ceil(4 * threads).max(4);
    let done: Vec<Vec<WeightedRow>> = rows
        .par_chunks(per_task)
        .map(|rows| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` comes from `Isa::detect`, which checked these features.
            Isa::Avx512 => unsafe { fused_softmax_avx512(set, x, rows, span, sigma) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx2 => unsafe { fused_softmax_avx2(set, x, rows, span, sigma) },
            _ => fused_softmax_task::<T, false>(set, x, rows, span, sigma),
        })
        .collect();
    Some(done.into_iter().flatten().collect())
}

/// One span's rows through a grid; `None` when the weighting reaches too far for a grid to prune
/// (large sigma, NAG's marginal): the dense path is then as fast.
fn grid_rows<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    weighting: &Weighting,
    isa: Isa,
) -> Option<Vec<WeightedRow>> {
    if !matches!(weighting, Weighting::Softmax { .. }) {
        return None;
    }
    let reach = Reach::of::<T>(weighting, (0.0, 0.0), set.dim, 0.0);
    let grid = Grid::new(&set.rows, set.dim, span, reach.gap_cut.sqrt())?;
    let dim = set.dim;
    Some(
        rows.par_iter()
            .map(|&r| {
                let xr = &x[r * dim..(r + 1) * dim];
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `isa` comes from `Isa::detect`, which checked these features.
                    Isa::Avx512 => unsafe {
                        grid_row_avx512(&grid, &set.rows, span, xr, weighting)
                    },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as above.
                    Isa::Avx2 => unsafe { grid_row_avx2(&grid, &set.rows, span, xr, weighting) },
                    _ => grid_row::<T, false>(&grid, &set.rows, span, xr, weighting),
                }
            })
            .collect(),
    )
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

/// `log_sum_exp_grid` on a given path (the grid path measures explicitly here).
pub fn log_sum_exp_grid_on<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    spans: &[Span],
    coarse: &[f64],
    refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
    isa: Isa,
    path: Path,
) -> Vec<GridRow> {
    let groups = group_by_span(spans);
    if path == Path::Gemm {
        let parallel = groups.len() == 1;
        let work: Vec<(Span, &[usize])> = groups
            .iter()
            .map(|(span, rows)| (*span, rows.as_slice()))
            .collect();
        let results = work
            .iter()
            .map(|&(span, rows)| {
                gemm_log_sum_exp(set, x, rows, span, coarse, refine, isa, parallel)
            })
            .collect();
        return scatter(spans.len(), &work, results);
    }
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
