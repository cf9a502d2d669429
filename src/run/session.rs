//! Builds a run from a `RunSpec` (data -> model on a backend -> Cfg -> Nag, schedule, x_0) and
//! executes it with diagnostics; shared by the CLI and the app's worker thread.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::Compute;
use crate::core::Batch;
use crate::core::denoiser::{Cond, Denoiser};
use crate::core::diagnostics::{Diagnostics, StepRecord};
use crate::core::estimate::{PosteriorEstimator, SigmaPrior};
use crate::core::guidance::{Cfg, Nag};
use crate::core::noise::{InjectedNoise, NoiseSource, SeededNoise, choose_subset, initial_noise};
use crate::core::sampler::{Hooks, Replanner, SampleOutput, SamplerArgs, StepInfo, sample};
use crate::core::schedule::{ScheduleKind, ScheduleSpec};
use crate::core::theory::{GaussianTheory, best_tangent_c, gaussian_theory};
use crate::data::{DataSpec, Source, npy};
use crate::error::{Error, Result};
use crate::models::AnalyticModel;
use crate::models::gaussian::symmetric_eigen;

use super::spec::{ClassSpec, RunSpec};

/// A loaded data source and its model on a backend, reusable across runs that change only
/// sampler settings (the data set stays uploaded).
pub struct ModelHandle {
    pub data: DataSpec,
    pub precision: crate::core::Precision,
    pub nag_prior: SigmaPrior,
    pub source: Arc<Source>,
    pub model: Arc<AnalyticModel>,
    /// "cpu (avx512, 2 threads)" or the GPU adapter.
    pub backend: String,
    /// The backend itself, for its notices (a GPU that failed and handed over to the CPU).
    pub compute: Compute,
    /// The backend choice this handle was built for.
    pub choice: crate::backend::BackendChoice,
    /// Points to draw the data with, made once.
    display: std::sync::OnceLock<Arc<crate::data::DataSet>>,
}

impl ModelHandle {
    /// Loads the data and uploads it to the backend the spec asks for.
    pub fn load(spec: &RunSpec, notes: &mut Vec<String>) -> Result<Self> {
        let source = spec.load_data()?;
        let compute = Compute::select(spec.backend, notes)?;
        Self::with_source(spec, Arc::new(source), &compute)
    }

    pub fn with_source(spec: &RunSpec, source: Arc<Source>, compute: &Compute) -> Result<Self> {
        let model = AnalyticModel::new(&source, compute, spec.precision, spec.guidance.nag_prior)?;
        Ok(ModelHandle {
            data: spec.data.clone(),
            precision: spec.precision,
            nag_prior: spec.guidance.nag_prior,
            source,
            backend: if compute.is_gpu() && !model.on_gpu() {
                // The GPU declined this model (f64, too large): say where it really runs.
                format!("{} (the GPU declined this data)", Compute::cpu().describe())
            } else {
                compute.describe()
            },
            model: Arc::new(model),
            compute: compute.clone(),
            choice: spec.backend,
            display: std::sync::OnceLock::new(),
        })
    }

    /// Whether this handle serves `spec` (same data, precision and NAG prior).
    pub fn serves(&self, spec: &RunSpec) -> bool {
        self.data == spec.data
            && self.precision == spec.precision
            && self.nag_prior == spec.guidance.nag_prior
    }
}

/// A run ready to execute.
pub struct Session {
    pub spec: RunSpec,
    pub handle: Arc<ModelHandle>,
    pub denoiser: Arc<dyn Denoiser>,
    pub cond: Cond,
    pub sigmas: Vec<f64>,
    pub x0: Batch,
    /// The tangent coefficient used, when the schedule is tangent.
    pub tangent_c: Option<f64>,
    /// The Gaussian theory of this run (Gaussian data only).
    pub theory: Option<GaussianTheory>,
}

/// The eigenvalues of the data's covariance, for the tangent law's coefficient.
fn spectrum_of(source: &Source) -> Vec<f64> {
    if let Source::Gaussian(g) = source {
        return g.eigenvalues.clone();
    }
    let pts = source.display_points(4096);
    let (n, d) = (pts.n as f64, pts.dim);
    let mean: Vec<f64> = (0..d)
        .map(|k| (0..pts.n).map(|j| pts.values[j * d + k]).sum::<f64>() / n)
        .collect();
    let cov_entry = |a: usize, b: usize| {
        (0..pts.n)
            .map(|j| (pts.values[j * d + a] - mean[a]) * (pts.values[j * d + b] - mean[b]))
            .sum::<f64>()
            / n
    };
    let floor = 1e-8;
    if d <= 128 {
        let cov: Vec<f64> = (0..d * d).map(|i| cov_entry(i / d, i % d)).collect();
        symmetric_eigen(&cov, d)
            .0
            .into_iter()
            .map(|l| l.max(floor))
            .collect()
    } else {
        (0..d).map(|k| cov_entry(k, k).max(floor)).collect()
    }
}

impl Session {
    /// Builds a run; `handle` is reused when it serves the spec, else data are loaded anew.
    pub fn new(spec: &RunSpec, handle: Arc<ModelHandle>) -> Result<Self> {
        spec.validate()?;
        let model = handle.model.clone();
        let dim = model.dim();
        spec.check_run_memory(dim)?;
        let batch = spec.batch;
        // The schedule; a tangent law without c gets the KL-optimal c for the data's spectrum.
        let mut schedule: ScheduleSpec = spec.schedule;
        let mut tangent_c = None;
        if let ScheduleKind::Tangent { c } = schedule.kind {
            let c = match c {
                Some(c) => c,
                None => best_tangent_c(
                    &spectrum_of(&handle.source),
                    schedule.steps,
                    schedule.sigma_min,
                    schedule.sigma_max,
                    spec.sampler,
                ),
            };
            schedule.kind = ScheduleKind::Tangent { c: Some(c) };
            tangent_c = Some(c);
        }
        let sigmas = schedule.sigmas()?;
        // The class condition.
        let class = match &spec.guidance.class {
            None => None,
            Some(ClassSpec::All(c)) => Some(vec![*c; batch]),
            Some(ClassSpec::File(path)) => {
                let arr = npy::read(path)?;
                if arr.shape != [batch] {
                    return Err(Error::Shape(format!(
                        "{}: class file has shape {:?}, the batch needs [{batch}]",
                        path.display(),
                        arr.shape
                    )));
                }
                Some(npy::class_indices(&arr, path)?)
            }
        };
        if class.is_some() && model.num_classes() == 0 {
            return Err(Error::InvalidSpec(format!(
                "{} has no classes; --class needs labelled data",
                spec.data.label()
            )));
        }
        if let Some(c) = class
            .as_ref()
            .and_then(|c| c.iter().find(|&&c| c as usize >= model.num_classes()))
        {
            return Err(Error::InvalidSpec(format!(
                "class {c} (--class) does not exist ({} has {} classes)",
                spec.data.label(),
                model.num_classes()
            )));
        }
        let cond = Cond::with_class(class);
        // The denoiser stack: model -> CFG -> NAG (each a no-op at its neutral weight).
        let base: Arc<dyn Denoiser> = model.clone();
        let cfg: Arc<dyn Denoiser> = Arc::new(Cfg::new(base, spec.guidance.cfg));
        let denoiser: Arc<dyn Denoiser> = Arc::new(Nag::new(cfg, spec.guidance.nag));
        // x_0 = sigma_0 z.
        let z = match &spec.init_noise {
            Some(path) => {
                let arr = npy::read(path)?;
                if arr.shape != [batch, dim] {
                    return Err(Error::Shape(format!(
                        "{}: initial noise has shape {:?}, the run needs [{batch}, {dim}]",
                        path.display(),
                        arr.shape
                    )));
                }
                let z = Batch::from_vec(batch, dim, arr.data)?;
                if !z.is_finite() {
                    return Err(Error::NonFinite(format!(
                        "{}: initial noise contains NaN or infinity",
                        path.display()
                    )));
                }
                z
            }
            None => initial_noise(spec.seed, batch, dim),
        };
        let x0 = z.scale(sigmas[0]);
        let mut session = Session {
            spec: spec.clone(),
            handle,
            denoiser,
            cond,
            sigmas,
            x0,
            tangent_c,
            theory: None,
        };
        // The planned schedule's theory; an adaptive run replaces it with the sigmas it used.
        session.theory = session.theory_for(&session.sigmas);
        Ok(session)
    }

    /// The Gaussian closed form for this run on `sigmas`: Gaussian data only, and not with NAG
    /// (its noise-unconditional model makes the steps nonlinear, so no closed form exists).
    pub fn theory_for(&self, sigmas: &[f64]) -> Option<GaussianTheory> {
        match &self.spec.data {
            DataSpec::Gaussian { spectrum } if self.spec.guidance.nag == 0.0 => {
                Some(gaussian_theory(
                    spectrum,
                    sigmas,
                    self.spec.sampler,
                    &self.spec.stochasticity,
                ))
            }
            _ => None,
        }
    }

    /// Runs the sampler; `on_step` sees each step and the records it completed, and may stop.
    pub fn run(
        &self,
        on_step: &mut dyn FnMut(&StepInfo, &[StepRecord]) -> ControlFlow<()>,
    ) -> Result<RunResult> {
        let spec = &self.spec;
        let model = self.handle.model.as_ref();
        let mut noise: Box<dyn NoiseSource> = match &spec.churn_noise {
            Some(path) => {
                let arr = npy::read(path)?;
                let injected = InjectedNoise::new(&arr.shape, arr.data)
                    .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
                let needed = self.sigmas.len() - 1;
                if injected.steps < needed && spec.sampler.uses_noise() {
                    return Err(Error::Shape(format!(
                        "{}: churn noise has {} steps, the run needs {needed}",
                        path.display(),
                        injected.steps
                    )));
                }
                Box::new(injected)
            }
            None => Box::new(SeededNoise { seed: spec.seed }),
        };
        let subset = choose_subset(spec.seed, spec.batch, spec.diagnostics.subset);
        let estimator = PosteriorEstimator::new(SigmaPrior::for_schedule(
            spec.schedule.sigma_min,
            spec.schedule.sigma_max,
        ));
        let mut diagnostics = spec
            .diagnostics
            .enabled
            .then(|| Diagnostics::new(Some(model), estimator, subset.clone(), &self.cond));
        let mut replanner = AdaptiveReplanner {
            model,
            estimator,
            subset: subset.clone(),
            cond: subset_cond(&self.cond, &subset),
            schedule: spec.schedule,
        };
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
            replan: if spec.adaptive {
                Some(&mut replanner)
            } else {
                None
            },
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

/// The class condition restricted to some rows.
fn subset_cond(cond: &Cond, rows: &[usize]) -> Cond {
    Cond::with_class(
        cond.class
            .as_ref()
            .map(|c| rows.iter().map(|&r| c[r]).collect()),
    )
}

/// Seed 001's adaptive schedule: after each step, sigma_hat of the state (median over the
/// diagnostics subset) becomes the next noise level (capped to make at least half the planned
/// progress) and the rest of the budget is re-planned from it down to sigma_min with the same
/// family.
struct AdaptiveReplanner<'a> {
    model: &'a AnalyticModel,
    estimator: PosteriorEstimator,
    subset: Vec<usize>,
    cond: Cond,
    schedule: ScheduleSpec,
}

impl Replanner for AdaptiveReplanner<'_> {
    fn replan(&mut self, x_next: &Batch, step: usize, sigmas: &[f64]) -> Result<Option<Vec<f64>>> {
        let rows = x_next.select_rows(&self.subset);
        let est = self.estimator.estimate(self.model, &rows, &self.cond)?;
        let logs: Vec<f64> = est.iter().map(|e| e.mean_ln).collect();
        let sigma_hat = crate::core::quantile(&logs, 0.5).exp();
        // The next level is sigma_hat, but at least halfway (in ln sigma) from the current level
        // to the planned next one: where sigma_hat is not identifiable (below the data's own
        // scale) it must not stall the schedule. A failed estimate, or a run already at
        // sigma_min, keeps the planned rest.
        let (current, planned, floor) = (sigmas[step], sigmas[step + 1], self.schedule.sigma_min);
        if !sigma_hat.is_finite() || current <= floor || planned <= 0.0 {
            return Ok(None);
        }
        let halfway = (current * planned).sqrt();
        let start = sigma_hat.min(halfway);
        let remaining = sigmas.len() - step - 2;
        // Below sigma_min there is nothing left to re-plan towards: keep the plan.
        if start <= floor && remaining > 1 {
            return Ok(None);
        }
        let start = start.max(floor);
        Ok(Some(self.schedule.replan(start, remaining)))
    }
}

/// What a run produced.
pub struct RunResult {
    pub output: SampleOutput,
    pub records: Vec<StepRecord>,
    pub straightness: Vec<f64>,
    pub sampling_s: f64,
    pub diagnostics_s: f64,
}

impl ModelHandle {
    /// Points to draw the data with (the set, or 2000 samples of a closed-form model).
    pub fn display_points(&self) -> Arc<crate::data::DataSet> {
        self.display
            .get_or_init(|| Arc::new(self.source.display_points(2000)))
            .clone()
    }

    /// Number of classes of the data (0: unlabelled).
    pub fn model_classes(&self) -> usize {
        use crate::core::denoiser::Denoiser;
        self.model.num_classes()
    }
}
