//! The loaded data and its denoiser on a backend, kept across runs that change only sampler
//! settings (the data set stays uploaded).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::backend::{BackendChoice, Compute};
use crate::core::Precision;
use crate::core::denoiser::Denoiser;
use crate::core::estimate::SigmaPrior;
use crate::core::information::{InformationProfile, log_sigma_grid};
use crate::data::{DataSet, DataSpec, Source};
use crate::error::Result;
use crate::models::AnalyticModel;
use crate::models::learned::LearnedDenoiser;

use super::spec::{DenoiserSpec, RunSpec};

/// A loaded data source, the denoiser a run calls, and the exact model of the data when it is
/// known (for the noise-level diagnostics, adaptive re-planning and the Gaussian theory).
pub struct ModelHandle {
    pub data: DataSpec,
    pub denoiser_spec: DenoiserSpec,
    pub precision: Precision,
    pub nag_prior: SigmaPrior,
    pub source: Arc<Source>,
    /// What the sampler calls.
    pub denoiser: Arc<dyn Denoiser>,
    /// The exact model of the data; `None` where it is unknown.
    pub ground_truth: Option<Arc<AnalyticModel>>,
    /// Where the denoiser runs: "cpu (avx512, 2 threads)" or the GPU adapter.
    pub backend: String,
    /// The backend itself, for its notices (a GPU that failed and handed over to the CPU).
    pub compute: Compute,
    /// The backend choice this handle was built for.
    pub choice: BackendChoice,
    /// Points to draw the data with, made once.
    display: OnceLock<Arc<DataSet>>,
    /// The exact information profile for the last sigma range asked.
    information: Mutex<Option<CachedProfile>>,
}

/// An information profile and the (sigma_min, sigma_max) it was computed over.
type CachedProfile = ((f64, f64), Arc<InformationProfile>);

/// The information profile's grid spacing in ln sigma, the Monte Carlo samples per level and
/// their seed (fixed, so an info schedule is the same on every run).
const PROFILE_SPACING: f64 = 0.125;
const PROFILE_ROWS: usize = 512;
const PROFILE_SEED: u64 = 0x1f0;

impl ModelHandle {
    /// Loads the data and builds the spec's denoiser on the backend the spec asks for.
    pub fn load(spec: &RunSpec, notes: &mut Vec<String>) -> Result<Self> {
        spec.denoiser.check_available()?;
        if spec.denoiser != DenoiserSpec::Exact && spec.precision == Precision::F64 {
            notes.push(
                "learned models compute in f32; f64 applies to the exact ground truth".to_string(),
            );
        }
        let source = spec.load_data()?;
        let compute = Compute::select(spec.backend, notes)?;
        Self::with_source(spec, Arc::new(source), &compute)
    }

    /// Builds the spec's denoiser for loaded data. The exact model is the ground truth of every
    /// denoiser; with `DenoiserSpec::Exact` it is also the denoiser.
    pub fn with_source(spec: &RunSpec, source: Arc<Source>, compute: &Compute) -> Result<Self> {
        spec.denoiser.check_available()?;
        let exact = AnalyticModel::new(&source, compute, spec.precision, spec.guidance.nag_prior)?;
        let backend = if compute.is_gpu() && !exact.on_gpu() {
            // The GPU declined this model (f64, too large): say where it really runs.
            format!("{} (the GPU declined this data)", Compute::cpu().describe())
        } else {
            compute.describe()
        };
        let exact = Arc::new(exact);
        let learned = match &spec.denoiser {
            DenoiserSpec::Exact => None,
            DenoiserSpec::Checkpoint(path) => Some(LearnedDenoiser::from_checkpoint(path)?),
            DenoiserSpec::Bundled(name) => Some(LearnedDenoiser::bundled(name)?),
        };
        let (denoiser, backend): (Arc<dyn Denoiser>, String) = match learned {
            None => (exact.clone(), backend),
            Some(model) => {
                model.check_data(&spec.data, &source)?;
                // The network runs in f32 on candle's CPU backend; the exact model, the ground
                // truth of the diagnostics, runs where the spec says.
                let label = format!("candle cpu f32; exact ground truth on {backend}");
                (Arc::new(model), label)
            }
        };
        Ok(Self::with_denoiser(
            spec,
            source,
            denoiser,
            Some(exact),
            compute,
            backend,
        ))
    }

    /// A handle on any denoiser (a learned one, say) with the exact model of the data, when
    /// known, as its ground truth; `backend` says where the denoiser runs.
    pub fn with_denoiser(
        spec: &RunSpec,
        source: Arc<Source>,
        denoiser: Arc<dyn Denoiser>,
        ground_truth: Option<Arc<AnalyticModel>>,
        compute: &Compute,
        backend: String,
    ) -> Self {
        ModelHandle {
            data: spec.data.clone(),
            denoiser_spec: spec.denoiser.clone(),
            precision: spec.precision,
            nag_prior: spec.guidance.nag_prior,
            source,
            denoiser,
            ground_truth,
            backend,
            compute: compute.clone(),
            choice: spec.backend,
            display: OnceLock::new(),
            information: Mutex::new(None),
        }
    }

    /// Whether this handle serves `spec` (same data, denoiser, precision, NAG prior and backend).
    pub fn serves(&self, spec: &RunSpec) -> bool {
        self.data == spec.data
            && self.denoiser_spec == spec.denoiser
            && self.precision == spec.precision
            && self.nag_prior == spec.guidance.nag_prior
            && self.choice == spec.backend
    }

    /// Points to draw the data with (the set, or 2000 samples of a closed-form model).
    pub fn display_points(&self) -> Arc<DataSet> {
        self.display
            .get_or_init(|| Arc::new(self.source.display_points(2000)))
            .clone()
    }

    /// The data's exact information profile over [lo, hi] (InfoNoise, seed 003), levels
    /// 0.125 apart in ln sigma, from the ground truth; computed once per range. `None` without
    /// an exact model of the data.
    pub fn information_profile(&self, lo: f64, hi: f64) -> Result<Option<Arc<InformationProfile>>> {
        let Some(truth) = &self.ground_truth else {
            return Ok(None);
        };
        let mut cached = self
            .information
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((range, profile)) = cached.as_ref()
            && *range == (lo, hi)
        {
            return Ok(Some(profile.clone()));
        }
        let levels = ((hi / lo).ln() / PROFILE_SPACING).ceil() as usize + 1;
        let sigmas = log_sigma_grid(lo, hi, levels.clamp(16, 2000));
        let profile = Arc::new(truth.information_profile(
            &self.source,
            &sigmas,
            PROFILE_ROWS,
            PROFILE_SEED,
        )?);
        *cached = Some(((lo, hi), profile.clone()));
        Ok(Some(profile))
    }

    /// Number of classes the denoiser can condition on (0: unconditional only).
    pub fn model_classes(&self) -> usize {
        self.denoiser.num_classes()
    }
}
