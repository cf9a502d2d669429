//! `RunSpec`: everything that defines a run. The CLI flags, the app's controls and preset files
//! (JSON) all produce one, with the same names.

use std::path::PathBuf;

use crate::backend::BackendChoice;
use crate::core::Precision;
use crate::core::estimate::SigmaPrior;
use crate::core::sampler::{SamplerKind, Stochasticity};
use crate::core::schedule::ScheduleSpec;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// CFG's class condition: one class for all samples, or one per sample from a .npy [B].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassSpec {
    All(u32),
    File(PathBuf),
}

impl ClassSpec {
    /// An integer, or a path to a .npy of integers.
    pub fn parse(s: &str) -> Self {
        match s.parse::<u32>() {
            Ok(c) => ClassSpec::All(c),
            Err(_) => ClassSpec::File(s.into()),
        }
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
    /// A trained model saved as a checkpoint file (not available yet).
    Checkpoint(PathBuf),
    /// A trained model shipped with noisescope, by name (not available yet).
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

    /// An error for a denoiser this build cannot make, so that a preset asking for one is never
    /// run with another.
    pub fn check_available(&self) -> Result<()> {
        match self {
            DenoiserSpec::Exact => Ok(()),
            other => Err(other.unavailable()),
        }
    }

    pub(crate) fn unavailable(&self) -> Error {
        Error::InvalidSpec(format!(
            "denoiser {}: learned denoisers are not available yet (use \"exact\")",
            self.label()
        ))
    }
}

/// Guidance settings (science.md section 4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuidanceSpec {
    /// CFG weight w; 1 = plain conditional.
    pub cfg: f64,
    pub class: Option<ClassSpec>,
    /// NAG weight; 0 = off.
    pub nag: f64,
    /// pi(sigma) of NAG's noise-unconditional model.
    pub nag_prior: SigmaPrior,
}

impl Default for GuidanceSpec {
    fn default() -> Self {
        GuidanceSpec {
            cfg: 1.0,
            class: None,
            nag: 0.0,
            nag_prior: SigmaPrior::edm_training(),
        }
    }
}

/// Per-step diagnostics settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
#[serde(default)]
pub struct RunSpec {
    pub data: DataSpec,
    pub denoiser: DenoiserSpec,
    pub sampler: SamplerKind,
    pub schedule: ScheduleSpec,
    /// Seed 001's adaptive re-planning of the remaining steps from sigma_hat.
    pub adaptive: bool,
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
    /// Checks everything that can be checked without loading data.
    pub fn validate(&self) -> Result<()> {
        self.schedule.validate()?;
        self.stochasticity.validate()?;
        if self.batch == 0 || self.batch > 10_000_000 {
            return Err(Error::InvalidSpec(format!(
                "batch must be in 1..=10000000, got {}",
                self.batch
            )));
        }
        for (name, w) in [("CFG", self.guidance.cfg), ("NAG", self.guidance.nag)] {
            if !w.is_finite() {
                return Err(Error::InvalidSpec(format!("{name} weight must be finite")));
            }
        }
        self.guidance.nag_prior.validate()?;
        if self.diagnostics.subset == 0 {
            return Err(Error::InvalidSpec(
                "the diagnostics subset must hold at least one sample".into(),
            ));
        }
        Ok(())
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let spec: RunSpec =
            serde_json::from_str(text).map_err(|e| Error::InvalidSpec(format!("preset: {e}")))?;
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
}
