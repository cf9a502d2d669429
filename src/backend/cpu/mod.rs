//! The CPU kernels: hand-blocked loops that LLVM vectorises, compiled three times (AVX-512, AVX2+FMA,
//! portable) and picked at run time, parallel over row tasks with rayon.
//!
//! The ideal empirical denoiser D(x; s) = sum_j softmax_j(-|x - y_j|^2 / (2 s^2)) y_j is computed with
//! explicit differences (no |x|^2 - 2 x.y + |y|^2 cancellation, so it stays exact at s = 0.002) and
//! max-subtraction: the nearest point has weight 1, and weights that underflow are skipped.
//!
//! - `real.rs`: the `Real` trait (f32 / f64) with the vectorisable exp polynomials.
//! - `layout.rs`: `PreparedSet`, the data set in the blocked / row / column layouts, and the
//!   row tasks that fit the cache.
//! - `distances.rs`: squared distances of query rows to a span, and lane-wide reductions.
//! - `weighted.rs`: distances -> weights -> weighted sums (the denoiser and NAG's marginal).
//! - `log_sum_exp.rs`: the noise posterior's log-sum-exp on sigma grids, over bucketed gaps.
//! - `dispatch.rs`: the ISA detection, the target-feature copies and the parallel entry points.

mod cache;
mod dispatch;
mod distances;
mod fused;
pub mod gemm;
mod gemm_form;
mod grid;
mod layout;
mod log_sum_exp;
mod real;
#[cfg(test)]
mod tests;
mod weighted;
mod weights;

pub use dispatch::{Isa, Path, log_sum_exp_grid, weighted_rows, weighted_rows_on};
pub use layout::{LANES, PreparedSet};
pub use log_sum_exp::LIKELIHOOD_MARGIN;
pub use real::Real;
