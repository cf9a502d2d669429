//! Guidance as denoiser wrappers that compose: `Nag::new(Cfg::new(base, w_cfg), w_nag)`.

use std::sync::Arc;

use super::denoiser::{Cond, Denoised, Denoiser, StiffPart};
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

/// How a sampler steps NAG's guided ODE (issue 11).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NagStep {
    /// NAG's stiff part k (x - A) / sigma, k = 1 + w, integrated exactly over each step
    /// (`StiffPart::advance`), the rest held: stable at any step length.
    #[default]
    #[value(name = "exponential")]
    Exponential,
    /// The sampler's own step on D_w (the paper's, at 250 steps): an off-schedule error is
    /// multiplied by 1 - (1 + w) r per step, r = 1 - sigma_next / sigma, unstable once
    /// (1 + w) r > 2.
    #[value(name = "explicit")]
    Explicit,
}

named_enum!(NagStep, "NAG step");

impl NagStep {
    /// The name shown in the app.
    pub fn label(&self) -> &'static str {
        match self {
            NagStep::Exponential => "exponential (stable)",
            NagStep::Explicit => "explicit (the paper's)",
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
/// its own (`NagForm`). w = 0 is a no-op. With `NagStep::Exponential` it hands samplers its stiff
/// part: D_w = x - (1 + w)(x - A) + w sigma E with A = (D + w G) / (1 + w), E = (x - G_none) / sigma.
pub struct Nag {
    pub inner: Arc<dyn Denoiser>,
    pub guide: Option<Arc<dyn Denoiser>>,
    pub w: f64,
    pub step: NagStep,
}

impl Nag {
    pub fn new(inner: Arc<dyn Denoiser>, w: f64) -> Self {
        Nag {
            inner,
            guide: None,
            w,
            step: NagStep::default(),
        }
    }

    /// NAG on `inner` with the direction G(x; sigma) - G(x; none) of another model.
    pub fn guided_by(inner: Arc<dyn Denoiser>, guide: Arc<dyn Denoiser>, w: f64) -> Self {
        Nag {
            inner,
            guide: Some(guide),
            w,
            step: NagStep::default(),
        }
    }

    /// The same guidance stepped as `step` says.
    pub fn with_step(self, step: NagStep) -> Self {
        Nag { step, ..self }
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
        Ok(self.denoise_split(x, sigma, cond)?.denoised)
    }
    fn denoise_split(&self, x: &Batch, sigma: f64, cond: &Cond) -> Result<Denoised> {
        if self.w == 0.0 || !cond.noise_conditional {
            return self.inner.denoise_split(x, sigma, cond);
        }
        let conditional = self.inner.denoise(x, sigma, cond)?;
        let w = self.w;
        let (denoised, anchor, away) = match &self.guide {
            None => {
                let away = self.inner.denoise(x, sigma, &cond.without_noise())?;
                let denoised = Batch::lin_comb(1.0 + w, &conditional, -w, &away);
                (denoised, conditional, away)
            }
            Some(guide) => {
                let toward = guide.denoise(x, sigma, cond)?;
                let away = guide.denoise(x, sigma, &cond.without_noise())?;
                let direction = Batch::lin_comb(1.0, &toward, -1.0, &away);
                let denoised = conditional.add_scaled(w, &direction);
                let anchor = Batch::lin_comb(1.0 / (1.0 + w), &conditional, w / (1.0 + w), &toward);
                (denoised, anchor, away)
            }
        };
        // w = -1 has no stiff part (k = 0: D_w does not depend on the guided model).
        let stiff = (self.step == NagStep::Exponential && 1.0 + w > 0.0).then(|| StiffPart {
            drift: Batch::lin_comb(1.0 / sigma, x, -1.0 / sigma, &away),
            anchor,
            rate: 1.0 + w,
        });
        Ok(Denoised { denoised, stiff })
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

    /// D(x; sigma) = x / 2, D(x; none) = x / 3 + 1.
    struct Apart;
    impl Denoiser for Apart {
        fn dim(&self) -> usize {
            2
        }
        fn denoise(&self, x: &Batch, _sigma: f64, cond: &Cond) -> Result<Batch> {
            Ok(if cond.noise_conditional {
                x.scale(0.5)
            } else {
                Batch {
                    data: x.data.iter().map(|v| v / 3.0 + 1.0).collect(),
                    ..*x
                }
            })
        }
    }

    #[test]
    fn nags_stiff_part_rebuilds_its_output_and_only_the_exponential_step_hands_it_on() -> Result<()>
    {
        let x = Batch::from_vec(2, 2, vec![1.0, -2.0, 0.5, 4.0])?;
        let (sigma, w) = (1.5, 2.5);
        let cond = Cond::plain();
        for guided in [false, true] {
            let nag = |step| {
                let nag = if guided {
                    Nag::guided_by(Arc::new(Half), Arc::new(Apart), w)
                } else {
                    Nag::new(Arc::new(Apart), w)
                };
                nag.with_step(step)
            };
            // D_w = D + w (G - G_none): D = G = x / 2 either way.
            let want: Vec<f64> = x
                .data
                .iter()
                .map(|v| v / 2.0 + w * (v / 2.0 - (v / 3.0 + 1.0)))
                .collect();
            let split = nag(NagStep::Exponential).denoise_split(&x, sigma, &cond)?;
            let stiff = split.stiff.expect("the exponential step has a stiff part");
            assert_eq!(stiff.rate, 1.0 + w);
            for ((a, b), c) in split
                .denoised
                .data
                .iter()
                .zip(&stiff.denoised(&x, sigma).data)
                .zip(&want)
            {
                assert!(
                    (a - c).abs() < 1e-12 && (b - c).abs() < 1e-12,
                    "{a} {b} {c}"
                );
            }
            let explicit = nag(NagStep::Explicit).denoise_split(&x, sigma, &cond)?;
            assert!(explicit.stiff.is_none());
            assert_eq!(explicit.denoised, split.denoised);
            // w = 0 is the plain model, without a stiff part.
            let off = Nag::new(Arc::new(Apart), 0.0).denoise_split(&x, sigma, &cond)?;
            assert!(off.stiff.is_none() && off.denoised == x.scale(0.5));
        }
        Ok(())
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
