//! noisescope: a lab for diffusion-model sampling with exact answers.
//!
//! Design note: the data flow, the one path everything takes.
//! 1. A `RunSpec` (run/spec.rs) names the data, sampler, schedule, guidance and seed; the CLI
//!    parses it from flags, the app from its controls, a preset file from JSON.
//! 2. `ModelHandle` (run/handle.rs) loads the data (data/) and builds the denoiser the spec names,
//!    an `Arc<dyn Denoiser>`: today the exact model of the data (models/), whose heavy kernels run
//!    on a `Compute` backend (backend/: CPU or wgpu); the exact model also stays as the run's
//!    ground truth. `Session` wraps the denoiser in `Cfg` then `Nag` (core/guidance.rs).
//! 3. A sampler (core/sampler.rs, one function each, pure) steps x_0 = sigma_0 z down the schedule
//!    and calls `on_step` after every step; `Diagnostics` turns each step into a `StepRecord`
//!    (noise shift from a `NoiseLevelEstimator`, the ground truth's exact posterior; curvature).
//! 4. The CLI writes every step to disk; the app's worker thread sends them as events to the UI,
//!    which drains them into a store and draws from it. The UI thread never evaluates a denoiser.

pub mod app;
pub mod backend;
pub mod core;
pub mod data;
pub mod error;
pub mod models;
pub mod run;
pub mod train;

pub use error::{Error, Result};
