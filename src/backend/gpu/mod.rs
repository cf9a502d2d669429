//! The wgpu backend: the same kernels as backend/cpu.rs in f32 WGSL (shaders/*.wgsl).
//!
//! - `device.rs`: `GpuContext`, the adapter, device and queue, compiled pipelines, error scopes.
//! - `buffers.rs`: resident uploads, reusable per-call buffers, read-back.
//! - `pipelines.rs`: one compute pipeline per kernel entry point.
//! - `empirical.rs`: the ideal empirical denoiser (softmax and NAG's marginal weights, class
//!   spans) and the exact noise posterior's log-sum-exp on sigma grids.
//! - `mixture.rs`: the Gaussian / Gaussian-mixture denoiser.
//! - `reductions.rs`: per-row dot products and norms for the diagnostics.
//!
//! Failure policy: every GPU call runs inside error scopes; an error (device lost, out of memory,
//! a failed mapping) becomes `Error::Gpu`, the kernel switches to the CPU path for good and leaves
//! one notice on the context, which `Compute::take_notices` hands to the user. Nothing panics.

mod buffers;
mod device;
mod empirical;
mod mixture;
mod pipelines;
mod reductions;

pub use device::{AdapterPreference, GpuContext};
pub use empirical::GpuEmpirical;
pub use mixture::GpuMixture;
