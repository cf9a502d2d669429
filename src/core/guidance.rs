//! Guidance as denoiser wrappers that compose: `Nag::new(Cfg::new(base, w_cfg), w_nag)`.

use std::sync::Arc;

use super::Batch;
use super::denoiser::{Cond, Denoiser};
use crate::error::Result;

/// Classifier-free guidance (Ho & Salimans 2022):
/// D_w = D(x; sigma, none) + w (D(x; sigma, c) - D(x; sigma, none)). w = 1 is the plain
/// conditional model (and costs one call); without a class it passes through.
pub struct Cfg {
    pub inner: Arc<dyn Denoiser>,
    pub w: f64,
}

impl Cfg {
    pub fn new(inner: Arc<dyn Denoiser>, w: f64) -> Self {
        Cfg { inner, w }
    }
}

impl Denoiser for Cfg {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn denoise(&self, x: &Batch, sigma: f64, cond: &Cond) -> Result<Batch> {
        if cond.class.is_none() || self.w == 1.0 {
            return self.inner.denoise(x, sigma, cond);
        }
        let conditional = self.inner.denoise(x, sigma, cond)?;
        let unconditional = self.inner.denoise(x, sigma, &cond.without_class())?;
        Ok(Batch::lin_comb(
            self.w,
            &conditional,
            1.0 - self.w,
            &unconditional,
        ))
    }
}

/// Noise Awareness Guidance (Zhong et al. 2025, arXiv 2510.12497, seed 000), classifier-free form
/// in denoiser terms: D_w = D(x; sigma) + w (D(x; sigma) - D(x; none)), i.e. the guided score
/// (w+1) s(x|sigma) - w s(x). For analytic models D(x; none) is exact (see `Cond`). w = 0 is a no-op.
pub struct Nag {
    pub inner: Arc<dyn Denoiser>,
    pub w: f64,
}

impl Nag {
    pub fn new(inner: Arc<dyn Denoiser>, w: f64) -> Self {
        Nag { inner, w }
    }
}

impl Denoiser for Nag {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn denoise(&self, x: &Batch, sigma: f64, cond: &Cond) -> Result<Batch> {
        if self.w == 0.0 || !cond.noise_conditional {
            return self.inner.denoise(x, sigma, cond);
        }
        let conditional = self.inner.denoise(x, sigma, cond)?;
        let marginal = self.inner.denoise(x, sigma, &cond.without_noise())?;
        Ok(Batch::lin_comb(
            1.0 + self.w,
            &conditional,
            -self.w,
            &marginal,
        ))
    }
}
