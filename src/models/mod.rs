//! The denoisers. The analytic ones: data whose D(x; sigma), p(x; sigma) and noise-unconditional
//! models are known exactly; `AnalyticModel` implements `Denoiser` (with NAG's exact-score
//! D(x; none)) and `NoiseLikelihood`, and `ExactNag` is it with NAG's D(x; none) in a chosen form. `learned`: a trained network (train/) as a `Denoiser`. `quality`: sample
//! quality against the data with the exact model as ground truth.

pub mod estimator;
pub mod learned;
pub mod quality;

use std::f64::consts::PI;

use rayon::prelude::*;
use std::sync::Arc;

use crate::backend::{Compute, EmpiricalKernel, MixtureKernel, Span, Weighting};
use crate::core::denoiser::{Cond, Denoiser};
use crate::core::estimate::{GridRow, NoiseLikelihood, SigmaGrid, SigmaPrior};
use crate::core::guidance::NagForm;
use crate::core::information::InformationProfile;
use crate::core::noise::Rng;
use crate::core::{Batch, Precision, log_sum_exp};
use crate::data::gaussian::GaussianModel;
use crate::data::mixture::MixtureModel;
use crate::data::{DataSet, Source};
use crate::error::{Error, Result};
use crate::train::sigma_dist::SigmaDistribution;

enum Kind {
    /// The ideal denoiser of a finite set: D = sum_j softmax_j(-|x - y_j|^2 / 2 s^2) y_j.
    Empirical {
        /// Rows and labels only (no values): `spans` reads the class ranges.
        set: Arc<DataSet>,
        kernel: Box<EmpiricalKernel>,
    },
    Gaussian(GaussianModel),
    Mixture(MixtureModel),
}

/// Nodes sigma_k and log weights (ln prior + ln width) of a prior quadrature over sigma.
struct PriorNodes {
    sigmas: Vec<f64>,
    log_weights: Vec<f64>,
}

/// An exact model on a backend, with NAG's prior quadratures for D(x; none).
pub struct AnalyticModel {
    kind: Kind,
    precision: Precision,
    /// NAG's prior pi(sigma) of the exact-score form (seed 000; the spec's `nag_prior`).
    score_nodes: PriorNodes,
    /// The noise-dropped rows' training prior (log-uniform over [0.002, 80]) of the
    /// posterior-average form, what the lab's noise-dropout training converges to.
    average_nodes: PriorNodes,
    dim: usize,
    classes: usize,
    /// The Gaussian / mixture denoiser on the backend (GPU); `None`: computed here in f64.
    mixture_kernel: Option<MixtureKernel>,
}

/// Quadrature nodes for the noise-unconditional mixture: the integrand in ln sigma is a bump
/// of width ~1/sqrt(2D), so a spacing of that width makes the trapezoid rule exact to ~1e-8.
/// A log-uniform prior has hard edges, and a state cleaner than its lower edge piles the posterior
/// against it as e^(-D u) (not a bump), where the trapezoid rule errs by (D h)^2 / 12 (2% at
/// h = 0.25 in 1-D): Simpson's weights there, (D h)^4 / 180. A smooth prior keeps the trapezoid,
/// exponentially accurate on bumps.
fn nag_quadrature(prior: &SigmaPrior, dim: usize) -> PriorNodes {
    let (a, b) = prior.ln_support();
    let spacing = (1.0 / (2.0 * dim as f64).sqrt()).min(0.25);
    if let SigmaPrior::LogNormal { .. } = prior {
        let n = (((b - a) / spacing).ceil() as usize + 1).clamp(16, 4000);
        let (sigmas, log_weights) = prior.quadrature(n);
        return PriorNodes {
            sigmas,
            log_weights,
        };
    }
    // An odd node count: Simpson pairs the intervals.
    let n = (((b - a) / spacing).ceil() as usize + 1).clamp(16, 4000) | 1;
    let h = (b - a) / (n - 1) as f64;
    let (sigmas, log_weights) = (0..n)
        .map(|k| {
            let u = a + h * k as f64;
            let simpson = if k == 0 || k == n - 1 {
                1.0
            } else if k % 2 == 1 {
                4.0
            } else {
                2.0
            };
            (u.exp(), prior.log_density(u) + (simpson * h / 3.0).ln())
        })
        .unzip();
    PriorNodes {
        sigmas,
        log_weights,
    }
}

/// The prior of the posterior-average form: the noise-dropped rows' training law.
pub fn noise_dropped_training_prior() -> SigmaPrior {
    SigmaDistribution::sampling_range().prior()
}

impl AnalyticModel {
    pub fn new(
        source: &Source,
        compute: &Compute,
        precision: Precision,
        nag_prior: SigmaPrior,
    ) -> Result<Self> {
        nag_prior.validate()?;
        let dim = source.dim();
        let kind = match source {
            Source::Empirical(set) => Kind::Empirical {
                kernel: Box::new(compute.prepare(&set.values, set.n, set.dim, precision)?),
                // The kernel holds the values; the model needs only the class spans.
                set: Arc::new(DataSet {
                    values: Vec::new(),
                    labels: set.labels.clone(),
                    ..*set
                }),
            },
            Source::Gaussian(g) => Kind::Gaussian(g.clone()),
            Source::Mixture(m) => Kind::Mixture(m.clone()),
        };
        let mixture_kernel = match source {
            Source::Gaussian(g) if compute.is_gpu() => compute.prepare_mixture(
                &MixtureModel::new(vec![1.0], vec![g.clone()], vec![0])?,
                precision,
            ),
            Source::Mixture(m) if compute.is_gpu() => compute.prepare_mixture(m, precision),
            _ => None,
        };
        Ok(AnalyticModel {
            kind,
            precision,
            score_nodes: nag_quadrature(&nag_prior, dim),
            average_nodes: nag_quadrature(&noise_dropped_training_prior(), dim),
            dim,
            classes: source.num_classes(),
            mixture_kernel,
        })
    }

    fn check_input(&self, x: &Batch, cond: &Cond) -> Result<()> {
        x.expect_dim(self.dim, "the state")?;
        if let Some(c) = &cond.class {
            if c.len() != x.rows {
                return Err(Error::Shape(format!(
                    "{} class labels for {} samples",
                    c.len(),
                    x.rows
                )));
            }
            if self.classes == 0 {
                return Err(Error::InvalidSpec(
                    "this data has no classes to condition on".into(),
                ));
            }
            if let Some(bad) = c.iter().find(|&&k| k as usize >= self.classes) {
                return Err(Error::InvalidSpec(format!(
                    "class {bad} does not exist (the data has {} classes)",
                    self.classes
                )));
            }
        }
        Ok(())
    }

    /// The f32 path sees f32 inputs.
    fn quantised(&self, x: &Batch) -> Batch {
        let mut x = x.clone();
        if self.precision == Precision::F32 {
            x.round_to_f32();
        }
        x
    }

    fn spans(&self, set: &DataSet, rows: usize, cond: &Cond) -> Result<Vec<Span>> {
        (0..rows)
            .map(|r| {
                let (start, end) = match &cond.class {
                    Some(c) => set.class_range(c[r]),
                    None => (0, set.n),
                };
                if end <= start {
                    return Err(Error::InvalidSpec(format!(
                        "class {} has no data",
                        cond.class.as_ref().map_or(0, |c| c[r])
                    )));
                }
                Ok(Span { start, end })
            })
            .collect()
    }

    fn class_of(cond: &Cond, r: usize) -> Option<u32> {
        cond.class.as_ref().map(|c| c[r])
    }

    /// NAG's D(x; none) = x + s^m sum_k p(s_k | x) s_k^(2-m) grad log p(x; s_k), for one
    /// Gaussian-family row: m = 2 is the exact score, m = 1 the posterior average
    /// x - s sum_k p(s_k | x) (x - D(x; s_k)) / s_k (`NagForm::sigma_power`).
    fn marginal_row(
        &self,
        x: &[f64],
        sigma: f64,
        parts: &[(f64, &GaussianModel)],
        (nodes, power): (&PriorNodes, i32),
    ) -> Vec<f64> {
        // Responsibilities over (component, node).
        let mut logits = Vec::with_capacity(parts.len() * nodes.sigmas.len());
        let mut scores = Vec::with_capacity(logits.capacity());
        for &(log_w, g) in parts {
            let z = g.to_eigenbasis(x);
            for (&s, &lw) in nodes.sigmas.iter().zip(&nodes.log_weights) {
                logits.push(log_w + lw + g.log_density_z(&z, s));
                let factor = s.powi(2 - power);
                let score: Vec<f64> = g.score_z(&z, s).iter().map(|v| v * factor).collect();
                scores.push((g, score));
            }
        }
        let total = log_sum_exp(&logits);
        let mut score = vec![0.0; x.len()];
        for (l, (g, s_z)) in logits.iter().zip(&scores) {
            let r = (l - total).exp();
            if r == 0.0 {
                continue;
            }
            for (o, v) in score.iter_mut().zip(g.rotate_back(s_z)) {
                *o += r * v;
            }
        }
        let scale = sigma.powi(power);
        x.iter().zip(&score).map(|(x, s)| x + scale * s).collect()
    }

    /// The prior nodes and sigma power of an analytic NAG form.
    fn form_nodes(&self, form: NagForm) -> Result<(&PriorNodes, i32)> {
        let nodes = match form {
            NagForm::PosteriorAverage => &self.average_nodes,
            NagForm::ExactScore => &self.score_nodes,
            NagForm::ClassifierBased => {
                return Err(Error::InvalidSpec(
                    "the NAG form 'classifier-based' takes its direction from a learned \
                     noise-level estimator, not from the exact model"
                        .into(),
                ));
            }
            NagForm::Learned => {
                return Err(Error::InvalidSpec(
                    "the NAG form 'learned' needs a learned denoiser with a noise-dropped branch; \
                     the exact denoiser has none: choose a trained model, or the NAG form \
                     posterior-average or exact-score"
                        .into(),
                ));
            }
        };
        Ok((nodes, form.sigma_power().unwrap_or(2)))
    }

    /// The Gaussian-family components a row may use, with log weights.
    fn parts(&self, class: Option<u32>) -> Vec<(f64, &GaussianModel)> {
        match &self.kind {
            Kind::Gaussian(g) => vec![(0.0, g)],
            Kind::Mixture(m) => m
                .allowed(class)
                .into_iter()
                .map(|c| (m.log_weights[c], &m.components[c]))
                .collect(),
            Kind::Empirical { .. } => Vec::new(),
        }
    }

    /// The data's exact information profile mmse(sigma)/dim at `sigmas` (InfoNoise, seed 003):
    /// the closed form for a Gaussian, else Monte Carlo with this ideal denoiser over `rows`
    /// samples of the data (drawn with replacement from a finite set), seeded. `source` is the
    /// data this model was built from (the model keeps a finite set's rows in its kernel only).
    pub fn information_profile(
        &self,
        source: &Source,
        sigmas: &[f64],
        rows: usize,
        seed: u64,
    ) -> Result<InformationProfile> {
        let clean = match (&self.kind, source) {
            (Kind::Gaussian(g), _) => {
                return Ok(InformationProfile::gaussian(&g.eigenvalues, sigmas));
            }
            (Kind::Mixture(m), _) => {
                let set = m.sample(rows, seed);
                Batch::from_vec(set.n, set.dim, set.values)?
            }
            (Kind::Empirical { .. }, Source::Empirical(set)) if set.dim == self.dim() => {
                let mut rng = Rng::new(seed);
                let mut values = Vec::with_capacity(rows * set.dim);
                for _ in 0..rows {
                    values.extend_from_slice(set.row(rng.below(set.n)));
                }
                Batch::from_vec(rows, set.dim, values)?
            }
            (Kind::Empirical { .. }, _) => {
                return Err(Error::InvalidSpec(
                    "the information profile of a finite set needs the set it was built from"
                        .into(),
                ));
            }
        };
        InformationProfile::monte_carlo(self, &clean, sigmas, seed)
    }

    /// Whether the heavy kernels of this model run on a GPU (false for CPU backends, f64 on a
    /// GPU, data too large for its buffers, or after a GPU failure).
    pub fn on_gpu(&self) -> bool {
        match &self.kind {
            Kind::Empirical { kernel, .. } => kernel.on_gpu(),
            _ => self.mixture_kernel.is_some(),
        }
    }
}

impl Denoiser for AnalyticModel {
    fn dim(&self) -> usize {
        self.dim
    }

    fn num_classes(&self) -> usize {
        self.classes
    }

    fn denoise(&self, x: &Batch, sigma: f64, cond: &Cond) -> Result<Batch> {
        if cond.noise_conditional {
            self.noise_conditional(x, sigma, cond)
        } else {
            self.noise_dropped(x, sigma, cond, NagForm::ExactScore)
        }
    }
}

impl AnalyticModel {
    fn check_sigma(sigma: f64) -> Result<()> {
        if sigma.is_finite() && sigma > 0.0 {
            Ok(())
        } else {
            Err(Error::InvalidSpec(format!(
                "the denoiser needs sigma > 0, got {sigma}"
            )))
        }
    }

    /// D(x; sigma, c): the ideal denoiser.
    fn noise_conditional(&self, x: &Batch, sigma: f64, cond: &Cond) -> Result<Batch> {
        self.check_input(x, cond)?;
        Self::check_sigma(sigma)?;
        let xq = self.quantised(x);
        let mut out = Batch::zeros(x.rows, x.dim);
        match &self.kind {
            Kind::Empirical { set, kernel } => {
                let spans = self.spans(set, x.rows, cond)?;
                let rows = kernel.weighted_rows(&xq, &spans, &Weighting::Softmax { sigma })?;
                for (r, wr) in rows.iter().enumerate() {
                    for (o, v) in out.row_mut(r).iter_mut().zip(&wr.weighted) {
                        *o = v / wr.weight_sum;
                    }
                }
            }
            Kind::Gaussian(_) | Kind::Mixture(_) => match &self.mixture_kernel {
                Some(kernel) => out = kernel.denoise(&xq, sigma, cond.class.as_deref())?,
                None => out
                    .data
                    .par_chunks_mut(x.dim)
                    .enumerate()
                    .for_each(|(r, o)| {
                        let class = Self::class_of(cond, r);
                        let row = xq.row(r);
                        let d = match &self.kind {
                            Kind::Mixture(m) => m.denoise_row(row, sigma, &m.allowed(class)),
                            Kind::Gaussian(g) => g.denoise_row(row, sigma),
                            Kind::Empirical { .. } => Vec::new(),
                        };
                        o.copy_from_slice(&d);
                    }),
            },
        }
        if self.precision == Precision::F32 {
            out.round_to_f32();
        }
        Ok(out)
    }

    /// NAG's noise-unconditional D(x; none, c) at the scheduled `sigma`, in an analytic `form`:
    /// D_none = x + sigma^m sum_k p(sigma_k | x) sigma_k^(2-m) grad ln p(x; sigma_k), m = 2 the
    /// exact score x + sigma^2 s(x), m = 1 the posterior average x - sigma E[n | x]
    /// (docs/learned-denoisers.md). Every node shares the row's distances (one pass).
    pub fn noise_dropped(
        &self,
        x: &Batch,
        sigma: f64,
        cond: &Cond,
        form: NagForm,
    ) -> Result<Batch> {
        self.check_input(x, cond)?;
        Self::check_sigma(sigma)?;
        let (nodes, power) = self.form_nodes(form)?;
        let xq = self.quantised(x);
        let mut out = Batch::zeros(x.rows, x.dim);
        match &self.kind {
            Kind::Empirical { set, kernel } => {
                let spans = self.spans(set, x.rows, cond)?;
                let weighting = Weighting::Marginal {
                    sigmas: &nodes.sigmas,
                    log_weights: &nodes.log_weights,
                    sigma_power: power,
                };
                let rows = kernel.weighted_rows(&xq, &spans, &weighting)?;
                let scale = sigma.powi(power);
                for (r, wr) in rows.iter().enumerate() {
                    // sum_k p(s_k|x) s_k^(2-m) score_k = (sum_j w_j y_j - x sum_j w_j) / Z.
                    let o = out.row_mut(r);
                    for ((o, v), xv) in o.iter_mut().zip(&wr.weighted).zip(xq.row(r)) {
                        *o = xv + scale * (v - xv * wr.weight_sum) / wr.normaliser;
                    }
                }
            }
            Kind::Gaussian(_) | Kind::Mixture(_) => {
                out.data
                    .par_chunks_mut(x.dim)
                    .enumerate()
                    .for_each(|(r, o)| {
                        let parts = self.parts(Self::class_of(cond, r));
                        o.copy_from_slice(&self.marginal_row(
                            xq.row(r),
                            sigma,
                            &parts,
                            (nodes, power),
                        ));
                    });
            }
        }
        if self.precision == Precision::F32 {
            out.round_to_f32();
        }
        Ok(out)
    }
}

/// The exact model with NAG's noise-dropped call (`Cond::noise_conditional = false`) in an
/// analytic `NagForm`; the noise-conditional call is the model's own.
pub struct ExactNag {
    pub model: Arc<AnalyticModel>,
    pub form: NagForm,
}

impl ExactNag {
    /// Refuses `NagForm::Learned`, which the exact model cannot compute.
    pub fn new(model: Arc<AnalyticModel>, form: NagForm) -> Result<Self> {
        model.form_nodes(form)?;
        Ok(ExactNag { model, form })
    }
}

impl Denoiser for ExactNag {
    fn dim(&self) -> usize {
        self.model.dim
    }

    fn num_classes(&self) -> usize {
        self.model.classes
    }

    fn denoise(&self, x: &Batch, sigma: f64, cond: &Cond) -> Result<Batch> {
        if cond.noise_conditional {
            self.model.noise_conditional(x, sigma, cond)
        } else {
            self.model.noise_dropped(x, sigma, cond, self.form)
        }
    }
}

impl NoiseLikelihood for AnalyticModel {
    fn log_likelihood(
        &self,
        x: &Batch,
        cond: &Cond,
        coarse: &[f64],
        refine: &(dyn Fn(&[f64]) -> Vec<f64> + Sync),
    ) -> Result<SigmaGrid> {
        self.check_input(x, cond)?;
        let xq = self.quantised(x);
        let dim = self.dim as f64;
        match &self.kind {
            Kind::Empirical { set, kernel } => {
                let spans = self.spans(set, x.rows, cond)?;
                // ln p(x; s) = LSE_j(-d_j / 2s^2) - ln n_c - (D/2) ln(2 pi s^2).
                let gauss_norm = |s: f64| 0.5 * dim * (2.0 * PI * s * s).ln();
                // Both logs taken once per row and once per coarse node, not once per pair.
                let ln_count: Vec<f64> = spans.iter().map(|s| (s.len() as f64).ln()).collect();
                let coarse_norm: Vec<f64> = coarse.iter().map(|&s| gauss_norm(s)).collect();
                let add_coarse_norm = |r: usize, lse: &mut [f64]| {
                    for (l, norm) in lse.iter_mut().zip(&coarse_norm) {
                        *l += -ln_count[r] - norm;
                    }
                };
                let fine_loglik = |r: usize, sigmas: &[f64], lse: &[f64]| -> Vec<f64> {
                    sigmas
                        .iter()
                        .zip(lse)
                        .map(|(&s, l)| l + (-ln_count[r] - gauss_norm(s)))
                        .collect()
                };
                let refine_rows = |r: usize, lse: &[f64]| {
                    let mut loglik = lse.to_vec();
                    add_coarse_norm(r, &mut loglik);
                    refine(&loglik)
                };
                let mut grid = kernel.log_sum_exp_grid(&xq, &spans, coarse, &refine_rows)?;
                // In place and over the pool: the rows' logs of the fine nodes were serial work.
                let g = coarse.len().max(1);
                grid.coarse
                    .par_chunks_mut(g)
                    .enumerate()
                    .for_each(|(r, row)| add_coarse_norm(r, row));
                grid.fine
                    .par_iter_mut()
                    .zip(&grid.fine_sigmas)
                    .enumerate()
                    .for_each(|(r, (lse, sigmas))| *lse = fine_loglik(r, sigmas, lse));
                Ok(grid)
            }
            Kind::Gaussian(_) | Kind::Mixture(_) => {
                let rows: Vec<GridRow> = (0..x.rows)
                    .into_par_iter()
                    .map(|r| {
                        let parts = self.parts(Self::class_of(cond, r));
                        let prior = log_sum_exp(&parts.iter().map(|p| p.0).collect::<Vec<_>>());
                        let zs: Vec<Vec<f64>> = parts
                            .iter()
                            .map(|(_, g)| g.to_eigenbasis(xq.row(r)))
                            .collect();
                        let loglik = |s: f64| {
                            let terms: Vec<f64> = parts
                                .iter()
                                .zip(&zs)
                                .map(|((lw, g), z)| lw + g.log_density_z(z, s))
                                .collect();
                            log_sum_exp(&terms) - prior
                        };
                        let c: Vec<f64> = coarse.iter().map(|&s| loglik(s)).collect();
                        let fine_sigmas = refine(&c);
                        let f = fine_sigmas.iter().map(|&s| loglik(s)).collect();
                        (c, fine_sigmas, f)
                    })
                    .collect();
                Ok(rows.into_iter().collect())
            }
        }
    }
}
