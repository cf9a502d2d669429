//! Guidance as denoiser wrappers that compose: `Nag::new(Cfg::new(base, w_cfg), w_nag)`.

use std::sync::Arc;

use super::denoiser::{Cond, Denoiser};
use super::estimate::NoiseLevelGradient;
use super::{Batch, named_enum};
use crate::error::Result;

/// Which noise-unconditional model NAG's second call uses (science.md section 4, issue 11).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NagForm {
    /// As a classifier-free model learns it: the exact counterpart, for analytic data, of what
    /// the lab's noise-dropout training converges to (docs/learned-denoisers.md):
    /// D_none(x; sigma) = x - sigma eps_none(x), eps_none(x) = E[n | x] =
    /// sum_k p(sigma_k | x) (x - D(x; sigma_k)) / sigma_k with p(sigma_k | x) under the TRAINING
    /// prior of the dropped rows (log-uniform over [0.002, 80]). Bounded: |eps_none| is a
    /// posterior mean of |n|, and D_none -> x as sigma -> 0.
    #[default]
    #[value(name = "posterior-average")]
    PosteriorAverage,
    /// The exact score of the noise-unconditional marginal, D_none = x + sigma^2 s(x): the stiff
    /// theoretical limit (it carries (sigma / sigma_hat)^2 for states cleaner than scheduled).
    #[value(name = "exact-score")]
    ExactScore,
    /// The learned model's own noise-dropped branch (a learned denoiser trained with noise
    /// dropout); the exact denoiser has none.
    #[value(name = "learned")]
    Learned,
    /// Classifier-based: D_w = D + w sigma^2 grad_x ln g(sigma | x) with a learned noise-level
    /// estimator g (`ClassifierNag`; the run's `estimator`, or `guidance.nag_estimator`).
    #[value(name = "classifier-based")]
    ClassifierBased,
}

named_enum!(NagForm, "NAG form");

impl NagForm {
    /// The name shown in the app.
    pub fn label(&self) -> &'static str {
        match self {
            NagForm::PosteriorAverage => "as a classifier-free model learns it",
            NagForm::ExactScore => "exact score (stiff limit)",
            NagForm::Learned => "learned, classifier-free",
            NagForm::ClassifierBased => "learned, classifier-based",
        }
    }

    /// The power m of sigma in D_none = x + sigma^m sum_k p(sigma_k | x) sigma_k^(2-m) s(x; sigma_k)
    /// for the analytic forms: 2 for the exact score, 1 for the posterior average of eps.
    pub fn sigma_power(&self) -> Option<i32> {
        match self {
            NagForm::PosteriorAverage => Some(1),
            NagForm::ExactScore => Some(2),
            NagForm::Learned | NagForm::ClassifierBased => None,
        }
    }
}

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
/// in denoiser terms: D_w = D(x; sigma) + w (G(x; sigma) - G(x; none)), i.e. the guided score
/// s(x|sigma) + w grad_x ln p(sigma | x). The direction comes from `guide` G when given (the exact
/// model of the data guiding a learned one), else from the guided model itself (then
/// D_w = (1 + w) D(x; sigma) - w D(x; none), two calls). Which D(x; none) the guide computes is
/// its own (`NagForm`). w = 0 is a no-op.
pub struct Nag {
    pub inner: Arc<dyn Denoiser>,
    pub guide: Option<Arc<dyn Denoiser>>,
    pub w: f64,
}

impl Nag {
    pub fn new(inner: Arc<dyn Denoiser>, w: f64) -> Self {
        Nag {
            inner,
            guide: None,
            w,
        }
    }

    /// NAG on `inner` with the direction G(x; sigma) - G(x; none) of another model.
    pub fn guided_by(inner: Arc<dyn Denoiser>, guide: Arc<dyn Denoiser>, w: f64) -> Self {
        Nag {
            inner,
            guide: Some(guide),
            w,
        }
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
        let Some(guide) = &self.guide else {
            let marginal = self.inner.denoise(x, sigma, &cond.without_noise())?;
            return Ok(Batch::lin_comb(
                1.0 + self.w,
                &conditional,
                -self.w,
                &marginal,
            ));
        };
        let toward = guide.denoise(x, sigma, cond)?;
        let away = guide.denoise(x, sigma, &cond.without_noise())?;
        let direction = Batch::lin_comb(1.0, &toward, -1.0, &away);
        Ok(Batch::lin_comb(1.0, &conditional, self.w, &direction))
    }
}

/// Classifier-based NAG (seed 000, arXiv 2510.12497, the g_phi form): the score gains
/// w grad_x ln g(sigma | x) from a noise-level density g, i.e. in denoiser terms
/// D_w = D(x; sigma) + w sigma^2 grad_x ln g(sigma | x) (D = x + sigma^2 s). w = 0 is a no-op.
pub struct ClassifierNag {
    pub inner: Arc<dyn Denoiser>,
    pub density: Arc<dyn NoiseLevelGradient>,
    pub w: f64,
}

impl Denoiser for ClassifierNag {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn denoise(&self, x: &Batch, sigma: f64, cond: &Cond) -> Result<Batch> {
        let d = self.inner.denoise(x, sigma, cond)?;
        if self.w == 0.0 || !cond.noise_conditional {
            return Ok(d);
        }
        let gradient = self.density.grad_log_density(x, sigma)?;
        Ok(d.add_scaled(self.w * sigma * sigma, &gradient))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// D(x; sigma) = x / 2.
    struct Half;
    impl Denoiser for Half {
        fn dim(&self) -> usize {
            2
        }
        fn num_classes(&self) -> usize {
            0
        }
        fn denoise(&self, x: &Batch, _sigma: f64, _cond: &Cond) -> Result<Batch> {
            Ok(x.scale(0.5))
        }
    }

    /// grad_x ln g = -x (a density centred on x = 0).
    struct Toward0;
    impl NoiseLevelGradient for Toward0 {
        fn grad_log_density(&self, x: &Batch, _sigma: f64) -> Result<Batch> {
            Ok(x.scale(-1.0))
        }
    }

    #[test]
    fn classifier_nag_adds_w_sigma_squared_times_the_gradient_and_w0_is_a_no_op() -> Result<()> {
        let x = Batch::from_vec(2, 2, vec![1.0, -2.0, 0.5, 4.0])?;
        let nag = |w: f64| ClassifierNag {
            inner: Arc::new(Half),
            density: Arc::new(Toward0),
            w,
        };
        let sigma = 3.0;
        assert_eq!(nag(0.0).denoise(&x, sigma, &Cond::plain())?, x.scale(0.5));
        // D + w sigma^2 (-x) = x (1/2 - 2 * 9).
        let guided = nag(2.0).denoise(&x, sigma, &Cond::plain())?;
        for (g, v) in guided.data.iter().zip(&x.data) {
            assert!((g - v * (0.5 - 18.0)).abs() < 1e-12);
        }
        // The noise-dropped call (another NAG's) passes through.
        assert_eq!(
            nag(2.0).denoise(&x, sigma, &Cond::plain().without_noise())?,
            x.scale(0.5)
        );
        Ok(())
    }
}
