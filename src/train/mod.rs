//! Learned denoisers with candle: the networks (`mlp`, `unet`, written the candle way: `Config` +
//! `new(vb)` + `forward`), EDM preconditioning (`precond`), the training loop (`trainer`), its
//! optimiser, EMA and training-sigma distribution, and checkpoints (safetensors + JSON sidecar);
//! `ops`: the fused CPU ops the hot paths run on (`fused_mlp`: a whole stack of dense layers as one op); `speed`: the training-speed workloads.
//!
//! # What the network sees (EDM, Karras et al. 2022, arXiv 2206.00364, Table 1 / eq. 7)
//! Noise-conditional: D(x; sigma, c) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; e(c_noise), c),
//! with e(c_noise) the sin / cos features of c_noise = ln(sigma) / 4 and c the class embedding
//! (row 0 is the learned null class: CFG's unconditional model).
//!
//! Noise condition DROPPED (classifier-free NAG, seed 000, arXiv 2510.12497): the network sees
//! x scaled by c_none(x) = 1 / sqrt(sigma_data^2 + |x|^2 / dim) (a function of x alone that keeps
//! the input bounded at any noise level), the learned null noise embedding in place of
//! e(c_noise), and the class as usual; sigma enters only outside it:
//!     D_none(x; sigma, c) = x + sigma F(c_none(x) x; e_null, c).
//! Dropped rows draw sigma from their own distribution pi_none, log-uniform over the samplers'
//! range [0.002, 80] by default (EDM's log-normal puts almost no mass above 10, where sampling
//! starts). Every row is trained with EDM's weight lambda = 1 / c_out^2; for a dropped row
//! (c_out = sigma) that is || F + n ||^2 with x = y + sigma n, a weight free of sigma. The
//! minimiser is therefore F* = -E[n | x] under pi_none:
//!     eps_none(x) := -F* = E[n | x] = int p(sigma | x) (x - D(x; sigma)) / sigma dsigma,
//!     p(sigma | x) ∝ p(x; sigma) pi_none(sigma),
//! the eps-form posterior average of science.md section 4, and D_none(x; sigma) = x - sigma eps_none(x).
//! NAG's D + w (D - D_none) is then D - sigma w (eps(x; sigma) - eps_none(x)): bounded, and it
//! vanishes with sigma. The derivation, and the exact counterpart for analytic data, are in
//! docs/learned-denoisers.md.
//!
//! With the output layer initialised to zero (F = 0), every row's weighted loss starts at 1 in
//! expectation, at every sigma: (1 - c_skip)^2 sigma_data^2 + c_skip^2 sigma^2 = c_out^2 when
//! sigma_data is the data's RMS, and E||n||^2 / D = 1 for the dropped branch (EDM fig. 5a).

pub mod adamw;
pub mod checkpoint;
pub mod data;
pub mod ema;
pub mod estimator;
pub mod fused_mlp;
pub mod layers;
pub mod mlp;
pub mod network;
pub mod ops;
pub mod params;
pub mod precond;
pub mod sigma_dist;
pub mod speed;
pub mod trainer;
pub mod unet;
