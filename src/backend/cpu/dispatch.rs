//! The instruction set picked at run time, the target-feature copies of the kernels, and the
//! parallel entry points.

use rayon::prelude::*;

use super::layout::{PreparedSet, tasks};
use super::log_sum_exp::log_sum_exp_task;
use super::real::Real;
use super::weighted::weighted_rows_task;
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
