//! The one denoiser call convention: D(x; sigma, cond) on a batch, host tensors in and out.

use super::Batch;
use crate::error::Result;

/// What a denoiser is conditioned on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cond {
    /// Class label per row (CFG's condition c); `None` is the unconditional model.
    pub class: Option<Vec<u32>>,
    /// `true`: the ordinary noise-conditional D(x; sigma). `false`: the noise-UNconditional model of
    /// NAG (seed 000): for analytic models D(x; none) = x + sigma^2 s(x) with s the score of
    /// p(x) = int p(x; s) pi(s) ds; for learned ones the noise-dropped branch x - sigma E[n | x],
    /// sigma ~ the dropped rows' training law pi_none (docs/learned-denoisers.md).
    pub noise_conditional: bool,
}

impl Cond {
    /// The plain model: all classes, noise-conditional.
    pub fn plain() -> Self {
        Cond {
            class: None,
            noise_conditional: true,
        }
    }

    pub fn with_class(class: Option<Vec<u32>>) -> Self {
        Cond {
            class,
            noise_conditional: true,
        }
    }

    /// The same class condition with the noise condition dropped (NAG's second call).
    pub fn without_noise(&self) -> Self {
        Cond {
            class: self.class.clone(),
            noise_conditional: false,
        }
    }

    /// The condition of some rows of the batch (the class labels at `rows`, in that order).
    pub fn for_rows(&self, rows: &[usize]) -> Self {
        Cond {
            class: self
                .class
                .as_ref()
                .map(|c| rows.iter().map(|&r| c[r]).collect()),
            noise_conditional: self.noise_conditional,
        }
    }

    /// The same noise condition with the class dropped (CFG's unconditional call).
    pub fn without_class(&self) -> Self {
        Cond {
            class: None,
            noise_conditional: self.noise_conditional,
        }
    }
}

/// A denoiser D(x; sigma, cond) ~ E[y | x], EDM convention (x = y + sigma n).
pub trait Denoiser: Send + Sync {
    /// Dimension of one sample.
    fn dim(&self) -> usize;
    /// Number of classes a `Cond::class` may name (0: unconditional only).
    fn num_classes(&self) -> usize {
        0
    }
    /// D(x; sigma, cond) for every row of `x`.
    fn denoise(&self, x: &Batch, sigma: f64, cond: &Cond) -> Result<Batch>;
}

/// The ODE slope d(x, sigma) = (x - D) / sigma (EDM eq. 3 with sigma(t) = t).
pub fn slope(x: &Batch, denoised: &Batch, sigma: f64) -> Batch {
    let data = x
        .data
        .iter()
        .zip(&denoised.data)
        .map(|(xi, di)| (xi - di) / sigma)
        .collect();
    Batch { data, ..*x }
}
