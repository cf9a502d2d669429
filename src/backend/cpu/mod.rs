//! The CPU kernels: hand-blocked loops that LLVM vectorises, compiled three times (AVX-512, AVX2+FMA,
//! portable) and picked at run time, parallel over row tasks with rayon; one reading written with
//! AVX2 intrinsics (NAG's marginal table, `marginal_table.rs`: LLVM moved its records lane by lane).
//!
//! The ideal empirical denoiser D(x; s) = sum_j softmax_j(-|x - y_j|^2 / (2 s^2)) y_j, with
//! max-subtraction (the nearest point has weight 1) and weights below e^-CUTOFF skipped, exps
//! included. Distances take one of three paths (`Path`): explicit differences (no
//! |x|^2 - 2 x.y + |y|^2 cancellation, exact at s = 0.002; f64 sets, f32 above 1024 dims), the
//! GEMM form with the candidates a weighting resolves finely recomputed explicitly (f32,
//! 16..=1024 dims, the posterior's log-sum-exps included), and for D <= 3 spatially compact
//! blocks of points whose bounding boxes let a row visit only the blocks within reach (or, at
//! large sigma, a Taylor expansion about the data's centre where its bound holds).
//!
//! - `real`: the `Real` trait (f32 / f64) with the vectorisable exp polynomials (core::real,
//!   pure math shared with train/).
//! - `layout.rs`: `PreparedSet`, the data set in the blocked / row / column layouts, and the
//!   row tasks that fit the cache.
//! - `distances.rs`: explicit squared distances of query rows to a span, and lane-wide reductions.
//! - `weights.rs`: gaps -> weights for every weighting, and which gaps each must see exactly.
//! - `weighted.rs`: the explicit path, distances -> weights -> weighted sums.
//! - `gemm.rs` / `gemm_form.rs`: the `gemm` crate's products, and the GEMM-form path.
//! - `panels.rs`: the GEMM form's two f32 products with AVX-512 tiles on the data packed once
//!   per set (the `gemm` crate, which packs on every call, serves AVX2, portable and f64).
//! - `amx.rs`: the same two products on AMX tiles in bf16x3, where the CPU has them.
//! - `cache.rs`: the last batches' GEMM-form distances (NAG's second call, the posterior), and
//!   which softmax batches such calls read again (those skip pruning).
//! - `pruned.rs`: the softmax at small sigma on GEMM-form sets, from candidates a lower bound on
//!   the distances (a few principal directions) cannot rule out: no product at all.
//! - `tiles.rs` / `expansion.rs` / `fused.rs`: the D <= 3 paths (the fused two-pass softmax
//!   over the k-d blocks whose boxes are within reach, a Taylor expansion about the data's centre
//!   at large sigma; `fused.rs` is the same pass over every point, `Path::Dense`).
//! - `marginal_table.rs`: NAG's marginal weights read from a per-node-set table (f32; one-pass
//!   sums for D <= 3; AVX2 + FMA intrinsics in the kernels' AVX2 and AVX-512 copies, a plain loop
//!   otherwise).
//! - `log_sum_exp.rs`: the noise posterior's log-sum-exp on sigma grids, over bucketed gaps.
//! - `dispatch.rs`: the ISA detection, the target-feature copies and the parallel entry points.

#[cfg(target_arch = "x86_64")]
mod amx;
mod cache;
mod dispatch;
mod distances;
mod expansion;
mod fused;
pub mod gemm;
mod gemm_form;
mod layout;
mod log_sum_exp;
mod marginal_table;
mod panels;
mod pruned;
use crate::core::real;
#[cfg(test)]
mod tests;
mod tiles;
mod weighted;
mod weights;

pub use dispatch::{
    Isa, Path, log_sum_exp_grid, log_sum_exp_grid_on, weighted_rows, weighted_rows_on,
};
pub use layout::{LANES, PreparedSet};

pub use log_sum_exp::LIKELIHOOD_MARGIN;
pub use real::Real;

/// From how many dimensions on the GEMM form's two products on f32 sets run on AMX tiles on
/// this machine (`amx.rs`); None where they never do (no AMX, or NOISESCOPE_NO_AMX set).
pub fn amx_tiles_from() -> Option<usize> {
    panels::Panels::tiles_from()
}
