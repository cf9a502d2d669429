//! A run built from a `RunSpec` on a `ModelHandle` (denoiser -> Cfg -> Nag, schedule, x_0) and
//! executed with diagnostics; shared by the CLI and the app's worker thread.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use crate::core::Batch;
use crate::core::adaptive::AdaptiveReplanner;
use crate::core::denoiser::{Cond, Denoiser};
use crate::core::diagnostics::{Diagnostics, StepRecord};
use crate::core::estimate::{ExactPosterior, NoiseLevelEstimator, PosteriorEstimator, SigmaPrior};
use crate::core::guidance::{Cfg, ClassifierNag, Nag, NagForm};
use crate::core::information::InformationProfile;
use crate::core::noise::choose_subset;
use crate::core::sampler::{Hooks, Replanner, SampleOutput, SamplerArgs, StepInfo, sample};
use crate::core::schedule::ScheduleSpec;
use crate::core::theory::{GaussianTheory, gaussian_theory};
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::models::ExactNag;
use crate::models::estimator::LearnedNoiseEstimator;

use super::handle::ModelHandle;
use super::resolve;
use super::spec::{AdaptiveEstimator, RunSpec};

/// A run ready to execute.
pub struct Session {
    pub spec: RunSpec,
    pub handle: Arc<ModelHandle>,
    /// The handle's denoiser wrapped in CFG and NAG.
    pub denoiser: Arc<dyn Denoiser>,
    pub cond: Cond,
    pub sigmas: Vec<f64>,
    pub x0: Batch,
    /// The tangent coefficient used, when the schedule is tangent.
    pub tangent_c: Option<f64>,
    /// The schedule with its coefficients resolved, and an info schedule's profile: what
    /// adaptive re-planning continues with.
    pub schedule: ScheduleSpec,
    pub profile: Option<Arc<InformationProfile>>,
    /// The Gaussian theory of this run (Gaussian data only).
    pub theory: Option<GaussianTheory>,
    /// The run's learned noise-level estimator (`RunSpec::estimator`), loaded once.
    pub learned_estimator: Option<Arc<LearnedNoiseEstimator>>,
}

impl Session {
    /// Builds a run on `handle`, which must serve the spec (`ModelHandle::serves`).
    pub fn new(spec: &RunSpec, handle: Arc<ModelHandle>) -> Result<Self> {
        spec.validate()?;
        let adaptive = spec.adaptive || spec.adaptive_step;
        if adaptive
            && spec.adaptive_estimator == AdaptiveEstimator::Exact
            && handle.ground_truth.is_none()
        {
            return Err(Error::InvalidSpec(format!(
                "the adaptive schedule (--adaptive, --adaptive-step) needs a noise-level estimate, and the denoiser {} has no \
                 exact model of the data to give one",
                spec.denoiser.label()
            )));
        }
        let base = handle.denoiser.clone();
        spec.check_run_memory(base.dim())?;
        let learned_estimator = spec
            .estimator
            .as_deref()
            .map(|path| load_estimator(path, base.dim(), "--estimator"))
            .transpose()?;
        let resolved = resolve::schedule(spec, &handle)?;
        let cond = Cond::with_class(resolve::class_condition(spec, base.num_classes())?);
        let x0 = resolve::initial_z(spec, base.dim())?.scale(resolved.sigmas[0]);
        let denoiser = guided_denoiser(spec, &handle, base, learned_estimator.as_ref())?;
        let mut session = Session {
            spec: spec.clone(),
            handle,
            denoiser,
            cond,
            sigmas: resolved.sigmas,
            x0,
            tangent_c: resolved.tangent_c,
            schedule: resolved.spec,
            profile: resolved.profile,
            theory: None,
            learned_estimator,
        };
        // The planned schedule's theory; an adaptive run replaces it with the sigmas it used.
        session.theory = session.theory_for(&session.sigmas);
        Ok(session)
    }

    /// The Gaussian closed form for this run on `sigmas`: Gaussian data with its exact model as
    /// ground truth, and not with NAG (its noise-unconditional model makes the steps nonlinear,
    /// so no closed form exists).
    pub fn theory_for(&self, sigmas: &[f64]) -> Option<GaussianTheory> {
        if self.handle.ground_truth.is_none() || self.spec.guidance.nag != 0.0 {
            return None;
        }
        match &self.spec.data {
            DataSpec::Gaussian { spectrum } => Some(gaussian_theory(
                spectrum,
                sigmas,
                self.spec.sampler,
                &self.spec.stochasticity,
            )),
            _ => None,
        }
    }

    /// sigma_hat for the diagnostics and the adaptive schedule: the exact posterior of the
    /// ground truth, with a log-uniform prior a decade beyond the schedule's range; `None`
    /// without a ground truth.
    pub fn noise_level_estimator(&self) -> Option<Box<dyn NoiseLevelEstimator>> {
        let truth = self.handle.ground_truth.clone()?;
        let prior =
            SigmaPrior::for_schedule(self.spec.schedule.sigma_min, self.spec.schedule.sigma_max);
        Some(Box::new(ExactPosterior::new(
            truth,
            PosteriorEstimator::new(prior),
        )))
    }

    /// Runs the sampler; `on_step` sees each step and the records it completed, and may stop.
    pub fn run(
        &self,
        on_step: &mut dyn FnMut(&StepInfo, &[StepRecord]) -> ControlFlow<()>,
    ) -> Result<RunResult> {
        let spec = &self.spec;
        let mut noise = resolve::step_noise(spec, self.sigmas.len() - 1)?;
        let subset = choose_subset(spec.seed, spec.batch, spec.diagnostics.subset);
        let exact = self.noise_level_estimator();
        let exact = exact.as_deref();
        let learned = self
            .learned_estimator
            .as_deref()
            .map(|e| e as &dyn NoiseLevelEstimator);
        let mut diagnostics = spec
            .diagnostics
            .enabled
            .then(|| Diagnostics::new(exact, subset.clone(), &self.cond).with_learned(learned));
        // `Session::new` and `RunSpec::validate` refused adaptive runs without their estimator.
        let adaptive = spec.adaptive || spec.adaptive_step;
        let adaptive_by = match spec.adaptive_estimator {
            AdaptiveEstimator::Exact => exact,
            AdaptiveEstimator::Learned => learned,
        };
        let mut replanner = adaptive_by.filter(|_| adaptive).map(|e| {
            AdaptiveReplanner::new(
                e,
                subset.clone(),
                &self.cond,
                self.schedule,
                self.profile.clone(),
            )
            .with_modes(spec.adaptive, spec.adaptive_step)
        });
        let mut records = Vec::new();
        let mut diagnostics_s = 0.0;
        let mut error: Option<Error> = None;
        let started = Instant::now();
        let mut step_started = Instant::now();
        let mut callback = |info: &StepInfo| {
            let step_ms = step_started.elapsed().as_secs_f64() * 1e3;
            let diag_started = Instant::now();
            let done = match diagnostics.as_mut() {
                Some(d) => match d.observe(info, step_ms) {
                    Ok(done) => done,
                    Err(e) => {
                        error = Some(e);
                        return ControlFlow::Break(());
                    }
                },
                None => vec![StepRecord::bare(info, step_ms)],
            };
            diagnostics_s += diag_started.elapsed().as_secs_f64();
            let flow = on_step(info, &done);
            records.extend(done);
            step_started = Instant::now();
            flow
        };
        let args = SamplerArgs {
            denoiser: self.denoiser.as_ref(),
            cond: &self.cond,
            sigmas: self.sigmas.clone(),
            stochasticity: spec.stochasticity,
        };
        let mut hooks = Hooks {
            noise: noise.as_mut(),
            replan: replanner.as_mut().map(|r| r as &mut dyn Replanner),
            on_step: &mut callback,
        };
        let output = sample(spec.sampler, args, self.x0.clone(), &mut hooks)
            .map_err(|e| spec.explain_failure(e))?;
        if let Some(e) = error {
            return Err(spec.explain_failure(e));
        }
        let total_s = started.elapsed().as_secs_f64();
        let (late, straightness) = match diagnostics.as_mut() {
            Some(d) => d.finish(&output.x),
            None => (Vec::new(), Vec::new()),
        };
        records.extend(late);
        records.sort_by_key(|r| r.step);
        Ok(RunResult {
            output,
            records,
            straightness,
            sampling_s: total_s - diagnostics_s,
            diagnostics_s,
        })
    }
}

/// The denoiser stack: model -> CFG -> NAG (each a no-op at its neutral weight). NAG's direction
/// G(x; sigma) - G(x; none) comes from the model itself in the learned form, and from the exact
/// model of the data (with CFG at the same weight) in the analytic forms: on the exact denoiser
/// that is the model itself; on a learned one the exact direction guides the learned D.
fn guided_denoiser(
    spec: &RunSpec,
    handle: &ModelHandle,
    base: Arc<dyn Denoiser>,
    learned: Option<&Arc<LearnedNoiseEstimator>>,
) -> Result<Arc<dyn Denoiser>> {
    let g = &spec.guidance;
    let cfg = |d: Arc<dyn Denoiser>| -> Arc<dyn Denoiser> { Arc::new(Cfg::new(d, g.cfg)) };
    if g.nag == 0.0 {
        return Ok(cfg(base));
    }
    // Classifier-based: --nag-estimator's own file, else the run's estimator.
    let density = match (&g.nag_estimator, learned) {
        (Some(path), _) if spec.estimator.as_ref() != Some(path) => {
            Some(load_estimator(path, base.dim(), "--nag-estimator")?)
        }
        (Some(_), Some(run_estimator)) => Some(run_estimator.clone()),
        (None, Some(run_estimator)) if g.nag_form == NagForm::ClassifierBased => {
            Some(run_estimator.clone())
        }
        _ => None,
    };
    if let Some(density) = density {
        return Ok(Arc::new(ClassifierNag {
            inner: cfg(base),
            density,
            w: g.nag,
        }));
    }
    // The exact model is the sampled denoiser when both are the same object.
    let exact_base = handle
        .ground_truth
        .as_ref()
        .is_some_and(|t| std::ptr::addr_eq(Arc::as_ptr(t), Arc::as_ptr(&base)));
    let nag: Nag = match g.nag_form {
        NagForm::Learned if exact_base => {
            return Err(Error::InvalidSpec(
                "the NAG form 'learned' (--nag-form learned) uses a learned model's \
                 noise-dropped branch, and the exact denoiser has none: choose a trained model \
                 (--denoiser), or the NAG form posterior-average or exact-score"
                    .into(),
            ));
        }
        NagForm::Learned => Nag::new(cfg(base), g.nag),
        // `RunSpec::validate` asks for an estimator with this form, and one was taken above.
        NagForm::ClassifierBased => {
            return Err(Error::InvalidSpec(
                "the NAG form 'classifier-based' needs a learned noise-level estimator: \
                 --estimator PATH (or --nag-estimator PATH)"
                    .into(),
            ));
        }
        form => {
            let Some(truth) = handle.ground_truth.clone() else {
                return Err(Error::InvalidSpec(format!(
                    "the NAG form '{form}' needs the exact model of the data, and {} has none: \
                     use --nag-form learned",
                    spec.data.label()
                )));
            };
            let exact = cfg(Arc::new(ExactNag::new(truth, form)?));
            if exact_base {
                Nag::new(exact, g.nag)
            } else {
                Nag::guided_by(cfg(base), exact, g.nag)
            }
        }
    };
    Ok(Arc::new(nag.with_step(g.nag_step)))
}

/// A learned noise-level estimator checkpoint for `dim`-dimensional data; another dimension is
/// one message naming the file and `flag`.
fn load_estimator(
    path: &std::path::Path,
    dim: usize,
    flag: &str,
) -> Result<Arc<LearnedNoiseEstimator>> {
    let named = || format!("{ESTIMATOR_ERROR} {} ({flag})", path.display());
    let estimator = LearnedNoiseEstimator::from_checkpoint(path)
        .map_err(|e| Error::InvalidSpec(format!("{}: {e}", named())))?;
    if estimator.dim() != dim {
        return Err(Error::InvalidSpec(format!(
            "{} reads {}-dimensional samples, the data is {dim}-dimensional: train one on this \
             data (noisescope train --estimator)",
            named(),
            estimator.dim(),
        )));
    }
    Ok(Arc::new(estimator))
}

/// How every error about a run's learned noise-level estimator begins (the app recognises it).
pub const ESTIMATOR_ERROR: &str = "the noise-level estimator";

/// What a run produced.
pub struct RunResult {
    pub output: SampleOutput,
    pub records: Vec<StepRecord>,
    pub straightness: Vec<f64>,
    pub sampling_s: f64,
    pub diagnostics_s: f64,
}
