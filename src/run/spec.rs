//! `RunSpec`: everything that defines a run. The CLI flags, the app's controls and preset files
//! (JSON) all produce one, with the same names, and all go through one validation path:
//! `RunSpec::validate` (everything that needs no data), then `RunSpec::load_data` and
//! `RunSpec::check_run_memory` (what needs the data, in `memory.rs`). `RunSpec::notes` (in
//! `notes.rs`) names the settings a run ignores. Unknown preset fields are errors that name them.

use std::path::PathBuf;

use crate::backend::BackendChoice;
use crate::core::Precision;
use crate::core::estimate::SigmaPrior;
use crate::core::guidance::{NagForm, NagStep};
use crate::core::sampler::{SamplerKind, Stochasticity};
use crate::core::schedule::ScheduleSpec;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::models::learned::bundled_names;
use serde::{Deserialize, Serialize};

/// The largest |CFG| and |NAG| weight accepted: beyond it the guided denoiser leaves every data
/// scale (the app's sliders stop at 8).
pub const MAX_GUIDANCE_WEIGHT: f64 = 1000.0;

/// CFG's class condition: one class for all samples, or one per sample from a .npy [B].
/// Written as `{"all": 3}` or `{"file": "classes.npy"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "ClassSpecFields")]
pub enum ClassSpec {
    All(u32),
    File(PathBuf),
}

/// `ClassSpec` as read from JSON: its fields by name, so that an unknown one is named in the error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassSpecFields {
    all: Option<u32>,
    file: Option<PathBuf>,
}

impl TryFrom<ClassSpecFields> for ClassSpec {
    type Error = String;

    fn try_from(fields: ClassSpecFields) -> std::result::Result<Self, String> {
        match (fields.all, fields.file) {
            (Some(c), None) => Ok(ClassSpec::All(c)),
            (None, Some(path)) => Ok(ClassSpec::File(path)),
            _ => Err("a class is {\"all\": N} or {\"file\": PATH}".into()),
        }
    }
}

impl ClassSpec {
    /// A class index, or a path to a .npy of them; a number that is no class index (-1, 2.5)
    /// is an error rather than a file name.
    pub fn parse(s: &str) -> Result<Self> {
        if let Ok(c) = s.parse::<u32>() {
            return Ok(ClassSpec::All(c));
        }
        if s.is_empty() || s.parse::<f64>().is_ok() {
            return Err(Error::InvalidSpec(format!(
                "--class must be a class index (0, 1, 2, ...) or a .npy file of them, got '{s}'"
            )));
        }
        Ok(ClassSpec::File(s.into()))
    }
}

/// Which denoiser the sampler calls. Presets spell it `"exact"` (the default, and what presets
/// without the field mean), `{"checkpoint": PATH}` or `{"bundled": NAME}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenoiserSpec {
    /// The exact denoiser of the data: ideal empirical, Gaussian or mixture, in closed form.
    #[default]
    Exact,
    /// A trained model saved as a checkpoint (PATH.safetensors with PATH.json beside it).
    Checkpoint(PathBuf),
    /// A trained model shipped with noisescope, by name (`models::learned::bundled_names`).
    Bundled(String),
}

impl DenoiserSpec {
    /// A short label for titles and messages.
    pub fn label(&self) -> String {
        match self {
            DenoiserSpec::Exact => "exact".into(),
            DenoiserSpec::Checkpoint(path) => format!("checkpoint {}", path.display()),
            DenoiserSpec::Bundled(name) => format!("bundled model '{name}'"),
        }
    }

    /// The CLI's spelling: `exact`, `bundled:NAME`, or a checkpoint path.
    pub fn parse(s: &str) -> Result<Self> {
        match s.split_once(':') {
            _ if s == "exact" => Ok(DenoiserSpec::Exact),
            Some(("bundled", name)) => {
                let spec = DenoiserSpec::Bundled(name.to_string());
                spec.check_available()?;
                Ok(spec)
            }
            _ if s.is_empty() => Err(Error::InvalidSpec(
                "--denoiser needs exact, bundled:NAME or a checkpoint path".into(),
            )),
            _ => Ok(DenoiserSpec::Checkpoint(s.into())),
        }
    }

    /// Whether this build can make the denoiser (a bundled name must exist; a checkpoint is
    /// checked when it is loaded), so that a preset asking for one is never run with another.
    pub fn check_available(&self) -> Result<()> {
        match self {
            DenoiserSpec::Bundled(name) if !bundled_names().contains(&name.as_str()) => {
                Err(Error::InvalidSpec(format!(
                    "there is no bundled model '{name}' (bundled: {})",
                    bundled_names().join(", ")
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Where the adaptive schedule and step read sigma_hat from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AdaptiveEstimator {
    /// The exact posterior p(sigma | x) of the data (pooled over the subset where it has a
    /// likelihood).
    #[default]
    #[value(name = "exact")]
    Exact,
    /// The run's learned noise-level estimator g(sigma | x) (`RunSpec::estimator`): the median
    /// of its sigma_hat over the subset.
    #[value(name = "learned")]
    Learned,
}

impl AdaptiveEstimator {
    pub fn is_exact(&self) -> bool {
        *self == AdaptiveEstimator::Exact
    }
}

/// Guidance settings (science.md section 4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuidanceSpec {
    /// CFG weight w; 1 = plain conditional.
    pub cfg: f64,
    pub class: Option<ClassSpec>,
    /// NAG weight; 0 = off.
    pub nag: f64,
    /// Which noise-unconditional model NAG uses (presets without it: the posterior average).
    pub nag_form: NagForm,
    /// How the samplers step NAG's guided ODE (presets without it: exponential, stable at any
    /// step length; explicit is the paper's, which needs (1 + w) r_i <= 2).
    pub nag_step: NagStep,
    /// pi(sigma) of NAG's exact-score form (the posterior-average form uses the noise-dropped
    /// rows' training prior, log-uniform over [0.002, 80]).
    pub nag_prior: SigmaPrior,
    /// A learned noise-level estimator g(sigma | x) (`noisescope train --estimator`): NAG then
    /// takes the classifier-based form D + w sigma^2 grad_x ln g(sigma | x) instead of
    /// `nag_form`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nag_estimator: Option<PathBuf>,
}

impl Default for GuidanceSpec {
    fn default() -> Self {
        GuidanceSpec {
            cfg: 1.0,
            class: None,
            nag: 0.0,
            nag_form: NagForm::default(),
            nag_step: NagStep::default(),
            nag_prior: SigmaPrior::edm_training(),
            nag_estimator: None,
        }
    }
}

/// Per-step diagnostics settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiagnosticsSpec {
    pub enabled: bool,
    /// Rows of the batch the noise-level statistics use (a fixed random subset).
    pub subset: usize,
}

impl Default for DiagnosticsSpec {
    fn default() -> Self {
        DiagnosticsSpec {
            enabled: true,
            subset: 128,
        }
    }
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSpec {
    pub data: DataSpec,
    pub denoiser: DenoiserSpec,
    pub sampler: SamplerKind,
    pub schedule: ScheduleSpec,
    /// Seed 001's adaptive re-planning of the remaining steps from sigma_hat.
    pub adaptive: bool,
    /// Seed 001's adaptive step: each step starts from sigma_hat (the denoiser is conditioned
    /// on it), not only the remaining grid re-planned.
    pub adaptive_step: bool,
    /// Which estimator the adaptive schedule and step read sigma_hat from.
    #[serde(skip_serializing_if = "AdaptiveEstimator::is_exact")]
    pub adaptive_estimator: AdaptiveEstimator,
    /// A learned noise-level estimator g(sigma | x) (`noisescope train --estimator`: PATH.safetensors
    /// with PATH.json): the diagnostics record its sigma_hat beside the exact posterior's, and
    /// classifier-based NAG and `adaptive_estimator: learned` use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimator: Option<PathBuf>,
    pub stochasticity: Stochasticity,
    pub guidance: GuidanceSpec,
    pub batch: usize,
    pub seed: u64,
    pub precision: Precision,
    pub backend: BackendChoice,
    pub diagnostics: DiagnosticsSpec,
    /// [B, D] standard normal; x_0 = sigma_0 z.
    pub init_noise: Option<PathBuf>,
    /// [>= N, B, D] standard normal churn / ancestral noise, row i for step i.
    pub churn_noise: Option<PathBuf>,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            data: DataSpec::default(),
            denoiser: DenoiserSpec::Exact,
            sampler: SamplerKind::Heun,
            schedule: ScheduleSpec::default(),
            adaptive: false,
            adaptive_step: false,
            adaptive_estimator: AdaptiveEstimator::Exact,
            estimator: None,
            stochasticity: Stochasticity::default(),
            guidance: GuidanceSpec::default(),
            batch: 1000,
            seed: 0,
            precision: Precision::F32,
            backend: BackendChoice::Auto,
            diagnostics: DiagnosticsSpec::default(),
            init_noise: None,
            churn_noise: None,
        }
    }
}

impl RunSpec {
    /// Checks everything that can be checked without loading data. Flags, presets and the app
    /// all come through here; the messages name the CLI flag of the offending setting.
    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.schedule.validate()?;
        self.stochasticity.validate()?;
        if self.batch == 0 || self.batch > 10_000_000 {
            return Err(Error::InvalidSpec(format!(
                "--batch must be in 1..=10000000, got {}",
                self.batch
            )));
        }
        for (name, w) in [
            ("CFG (--cfg)", self.guidance.cfg),
            ("NAG (--nag)", self.guidance.nag),
        ] {
            if !(w.is_finite() && w.abs() <= MAX_GUIDANCE_WEIGHT) {
                return Err(Error::InvalidSpec(format!(
                    "the {name} weight must be a number within ±{MAX_GUIDANCE_WEIGHT}, got {w:e}"
                )));
            }
        }
        self.guidance.nag_prior.validate().map_err(|_| {
            Error::InvalidSpec(format!(
                "NAG's sigma prior (--nag-prior) needs 0 < lo < hi and a positive std, got {:?}",
                self.guidance.nag_prior
            ))
        })?;
        let has_estimator = self.estimator.is_some() || self.guidance.nag_estimator.is_some();
        if self.guidance.nag != 0.0
            && self.guidance.nag_form == NagForm::ClassifierBased
            && !has_estimator
        {
            return Err(Error::InvalidSpec(
                "the NAG form classifier-based (--nag-form) needs a learned noise-level \
                 estimator: --estimator PATH (noisescope train --estimator writes one)"
                    .into(),
            ));
        }
        if (self.adaptive || self.adaptive_step)
            && self.adaptive_estimator == AdaptiveEstimator::Learned
            && self.estimator.is_none()
        {
            return Err(Error::InvalidSpec(
                "--adaptive-estimator learned needs a learned noise-level estimator: \
                 --estimator PATH (noisescope train --estimator writes one)"
                    .into(),
            ));
        }
        if self.diagnostics.subset == 0 {
            return Err(Error::InvalidSpec(
                "--diagnostics-subset must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Reads a preset without validating it, so that flags can still change it (the CLI
    /// validates once all of them are applied). Unknown fields are errors that name them.
    pub fn parse_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::InvalidSpec(e.to_string()))
    }

    /// Reads and validates a preset.
    pub fn from_json(text: &str) -> Result<Self> {
        let spec = Self::parse_json(text)?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schedule::ScheduleKind;

    #[test]
    fn presets_round_trip_and_fill_defaults() -> Result<()> {
        let spec = RunSpec {
            batch: 7,
            guidance: GuidanceSpec {
                class: Some(ClassSpec::All(3)),
                nag: 2.0,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(RunSpec::from_json(&spec.to_json())?, spec);
        let partial = RunSpec::from_json(r#"{"batch": 5, "sampler": "dpmpp-2m"}"#)?;
        assert_eq!(partial.batch, 5);
        assert_eq!(partial.sampler, SamplerKind::DpmPp2m);
        assert_eq!(partial.schedule, ScheduleSpec::default());
        assert!(RunSpec::from_json(r#"{"batch": 0}"#).is_err());
        assert!(RunSpec::from_json("{not json").is_err());
        Ok(())
    }

    /// Presets as the app wrote them before unknown fields became errors (tests/fixtures, made
    /// by `RunSpec::to_json` at commit b57c01d) and the README's screenshot preset.
    const WRITTEN_BY_TODAYS_APP: [(&str, &str); 6] = [
        (
            "default scene",
            include_str!("../../tests/fixtures/preset-default-scene.json"),
        ),
        (
            "digits",
            include_str!("../../tests/fixtures/preset-digits.json"),
        ),
        (
            "every field",
            include_str!("../../tests/fixtures/preset-every-field.json"),
        ),
        (
            "gaussian",
            include_str!("../../tests/fixtures/preset-gaussian.json"),
        ),
        (
            "npy + tangent",
            include_str!("../../tests/fixtures/preset-npy-tangent.json"),
        ),
        (
            "screenshot",
            include_str!("../../docs/screenshot-preset.json"),
        ),
    ];

    #[test]
    fn presets_written_by_todays_app_still_load() -> Result<()> {
        for (name, text) in WRITTEN_BY_TODAYS_APP {
            let spec = RunSpec::from_json(text).map_err(|e| {
                Error::InvalidSpec(format!("the {name} preset no longer loads: {e}"))
            })?;
            assert_eq!(RunSpec::from_json(&spec.to_json())?, spec, "{name}");
        }
        let every = RunSpec::from_json(WRITTEN_BY_TODAYS_APP[2].1)?;
        assert_eq!(every.schedule.kind, ScheduleKind::Tangent { c: Some(0.7) });
        assert_eq!(
            every.guidance.class,
            Some(ClassSpec::File("classes.npy".into()))
        );
        assert_eq!(every.stochasticity.churn, 40.0);
        assert_eq!(every.precision, Precision::F64);
        Ok(())
    }

    #[test]
    fn unknown_fields_are_errors_that_name_them_at_every_level() {
        let typos = [
            (r#"{"step": 5}"#, "step"),
            (r#"{"schedule": {"step": 5}}"#, "step"),
            (
                r#"{"schedule": {"kind": {"family": "tangent", "cc": 1}}}"#,
                "cc",
            ),
            (r#"{"stochasticity": {"S_churn": 1}}"#, "S_churn"),
            (r#"{"guidance": {"weight": 2}}"#, "weight"),
            (
                r#"{"guidance": {"nag_prior": {"kind": "log_normal", "mean": 0, "std": 1, "sd": 2}}}"#,
                "sd",
            ),
            (r#"{"guidance": {"class": {"every": 3}}}"#, "every"),
            (r#"{"guidance": {"class": {"all": 3, "zz": 1}}}"#, "zz"),
            (r#"{"data": {"kind": "digits", "size": 8}}"#, "size"),
            (
                r#"{"schedule": {"kind": {"family": "karras", "rho": 7}}}"#,
                "rho",
            ),
            (r#"{"diagnostics": {"on": true}}"#, "on"),
            (
                r#"{"data": {"kind": "toy", "name": "moons", "points": 9, "point": 9}}"#,
                "point",
            ),
        ];
        for (text, field) in typos {
            match RunSpec::parse_json(text) {
                Ok(spec) => panic!("{text} loaded as {spec:?}"),
                Err(e) => assert!(e.to_string().contains(&format!("`{field}`")), "{text}: {e}"),
            }
        }
    }

    #[test]
    fn presets_are_validated_like_flags() -> Result<()> {
        // A preset's tangent c = -1 is refused as the flag's is.
        let tangent = r#"{"schedule": {"kind": {"family": "tangent", "c": -1.0}}}"#;
        let err = RunSpec::from_json(tangent)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.contains("tangent")));
        assert!("tangent:-1".parse::<ScheduleKind>().is_err());
        // Parsed alone, steps: 0 waits for a flag to mend it; validated, it is refused.
        let mut spec = RunSpec::parse_json(r#"{"schedule": {"steps": 0}}"#)?;
        assert!(spec.validate().is_err());
        spec.schedule.steps = 5;
        spec.validate()?;
        // Partial sub-objects take the defaults of the fields they leave out.
        let partial =
            RunSpec::from_json(r#"{"schedule": {"steps": 7}, "stochasticity": {"churn": 3}}"#)?;
        assert_eq!(
            partial.schedule.sigma_max,
            ScheduleSpec::default().sigma_max
        );
        assert_eq!(partial.stochasticity.tmax, Stochasticity::default().tmax);
        Ok(())
    }

    #[test]
    fn guidance_weights_and_classes_have_clear_bounds() -> Result<()> {
        for (cfg, nag) in [
            (1e300, 0.0),
            (f64::NAN, 0.0),
            (1.0, f64::INFINITY),
            (1.0, -1001.0),
        ] {
            let mut spec = RunSpec::default();
            spec.guidance.cfg = cfg;
            spec.guidance.nag = nag;
            let e = spec.validate().map(|_| ()).map_err(|e| e.to_string());
            assert!(e.is_err_and(|e| e.contains("--cfg") || e.contains("--nag")));
        }
        assert_eq!(ClassSpec::parse("3")?, ClassSpec::All(3));
        assert_eq!(ClassSpec::parse("c.npy")?, ClassSpec::File("c.npy".into()));
        for bad in ["-1", "2.5", "1e3", ""] {
            let e = ClassSpec::parse(bad).map(|_| ()).map_err(|e| e.to_string());
            assert!(e.is_err_and(|e| e.contains("--class")), "{bad}");
        }
        Ok(())
    }
}
