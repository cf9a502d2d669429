//! `RunSpec`: everything that defines a run. The CLI flags, the app's controls and preset files
//! (JSON) all produce one, with the same names, and all go through one validation path:
//! `RunSpec::validate` (everything that needs no data), then `RunSpec::load_data` and
//! `RunSpec::check_run_memory` (what needs the data). `RunSpec::notes` names the settings a run
//! ignores. Unknown preset fields are errors that name them.

use std::path::PathBuf;

use crate::backend::BackendChoice;
use crate::core::Precision;
use crate::core::estimate::SigmaPrior;
use crate::core::sampler::{SamplerKind, Stochasticity};
use crate::core::schedule::{ScheduleKind, ScheduleSpec};
use crate::data::{DataSpec, Source};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The largest |CFG| and |NAG| weight accepted: beyond it the guided denoiser leaves every data
/// scale (the app's sliders stop at 8).
pub const MAX_GUIDANCE_WEIGHT: f64 = 1000.0;

/// The largest ratio sigma_i / sigma_(i+1) of neighbouring noise levels without a warning: one
/// step that removes more than four decades of noise lands on the denoiser's average at the upper
/// level, whatever the sampler.
pub const MAX_LEVEL_RATIO: f64 = 1e4;

/// Sets the memory limit in bytes (k, M, G suffixes allowed) instead of the machine's.
pub const MEMORY_LIMIT_ENV: &str = "NOISESCOPE_MEMORY_LIMIT";

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
#[serde(default, deny_unknown_fields)]
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

    /// The settings that have no effect on this run, one line each (named by their flags).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let (st, neutral) = (&self.stochasticity, Stochasticity::default());
        let sampler = self.sampler;
        let churned = self.sampler == SamplerKind::Edm && st.churn > 0.0;
        let adds_noise = churned || (self.sampler == SamplerKind::EulerAncestral && st.eta > 0.0);
        let g = &self.guidance;
        if g.cfg != 1.0 && g.class.is_none() {
            notes.push("--cfg has no effect without --class: the run is unconditional".into());
        }
        if g.nag == 0.0 && g.nag_prior != GuidanceSpec::default().nag_prior {
            notes.push("--nag-prior has no effect without --nag".into());
        }
        if st.churn != neutral.churn && self.sampler != SamplerKind::Edm {
            notes.push(format!(
                "--churn has no effect with {sampler}: only edm adds churn (S_churn)"
            ));
        }
        if (st.tmin != neutral.tmin || st.tmax != neutral.tmax) && !churned {
            notes.push(format!(
                "--tmin / --tmax have no effect {}: they bound where edm adds churn",
                if self.sampler == SamplerKind::Edm {
                    "without --churn".to_string()
                } else {
                    format!("with {sampler}")
                }
            ));
        }
        if st.snoise != neutral.snoise && !adds_noise {
            notes.push(format!(
                "--snoise has no effect: {sampler} adds no noise here (edm with --churn and \
                 euler-a do)"
            ));
        }
        if st.eta != neutral.eta && self.sampler != SamplerKind::EulerAncestral {
            notes.push(format!(
                "--eta has no effect with {sampler}: only euler-a uses it"
            ));
        }
        if self.churn_noise.is_some() && !adds_noise {
            notes.push(format!(
                "--churn-noise is not read: {sampler} adds no noise here (edm with --churn and \
                 euler-a do)"
            ));
        }
        if self.schedule.rho != ScheduleSpec::default().rho
            && self.schedule.kind != ScheduleKind::Karras
        {
            notes.push(format!(
                "--rho has no effect with the {} schedule: only karras uses it",
                self.schedule.kind.name()
            ));
        }
        if !self.diagnostics.enabled
            && !self.adaptive
            && self.diagnostics.subset != DiagnosticsSpec::default().subset
        {
            notes.push(
                "--diagnostics-subset has no effect with --diagnostics off (and no --adaptive)"
                    .into(),
            );
        }
        notes
    }

    /// Loads the data once the memory it takes is known to fit, and refuses values the run's
    /// precision cannot hold. The app's worker and the CLI load through here.
    pub fn load_data(&self) -> Result<Source> {
        if let Some((rows, dim)) = self.data.peek_shape()? {
            // The data set in f64, and the CPU kernel's blocked and row layouts (plus a column
            // layout for small dimensions) in the run's precision.
            let layouts = if dim <= 8 { 3 } else { 2 };
            let per_value = 8 + layouts * self.precision_bytes();
            let needed = (rows as u64)
                .saturating_mul(dim as u64)
                .saturating_mul(per_value);
            check_memory(
                needed,
                &format!(
                    "loading {} needs about {} ({rows} x {dim} values: the data set in f64 and \
                     the denoiser's layouts of it)",
                    self.data.label(),
                    bytes_text(needed)
                ),
                "use less data",
            )?;
        }
        let source = self.data.load()?;
        if let Source::Empirical(set) = &source {
            set.check_precision(self.precision, &self.data.label())?;
        }
        Ok(source)
    }

    fn precision_bytes(&self) -> u64 {
        match self.precision {
            Precision::F32 => 4,
            Precision::F64 => 8,
        }
    }

    /// Bytes a run on `dim`-dimensional data holds at its peak: the caller keeps every state
    /// (N+1) x B x D and every denoised state N x B x D in f64, the samplers and guidance work on
    /// about 8 batches more, and injected noise is read whole.
    pub fn run_memory_bytes(&self, dim: usize) -> u64 {
        let steps = self.schedule.steps as u64;
        let batch_values = (self.batch as u64).saturating_mul(dim as u64);
        let kept = (2 * steps + 1).saturating_mul(batch_values);
        // x, x_hat, D, d, the corrector's pair and the guidance's extra evaluations.
        let working = batch_values.saturating_mul(8);
        let mut injected = 0u64;
        if self.init_noise.is_some() {
            injected = batch_values;
        }
        if let Some(path) = &self.churn_noise
            && let Ok(header) = crate::data::npy::read_header(path)
        {
            injected = injected.saturating_add(header.count as u64);
        }
        kept.saturating_add(working)
            .saturating_add(injected)
            .saturating_mul(8)
    }

    /// Refuses, before it starts, a run that would not fit in memory (`run_memory_bytes`).
    pub fn check_run_memory(&self, dim: usize) -> Result<()> {
        let needed = self.run_memory_bytes(dim);
        check_memory(
            needed,
            &format!(
                "the run needs about {} (it keeps {} states and {} denoised states of {} x \
                 {dim} values in f64, and works on 8 more)",
                bytes_text(needed),
                self.schedule.steps + 1,
                self.schedule.steps,
                self.batch
            ),
            "lower --batch or --steps",
        )
    }

    /// Says which setting a failed run points at: a non-finite denoiser output under guidance is
    /// the guidance's doing, not the data's.
    pub fn explain_failure(&self, error: Error) -> Error {
        let Error::NonFinite(what) = &error else {
            return error;
        };
        let g = &self.guidance;
        let cause = if g.nag != 0.0 {
            format!(
                "the NAG weight {} (--nag) over-corrects: with the exact model NAG is stiff for \
                 states cleaner than scheduled; use a smaller --nag or more --steps",
                g.nag
            )
        } else if g.cfg != 1.0 && g.class.is_some() {
            format!(
                "the CFG weight {} (--cfg) pushes the states beyond the float range; use a \
                 smaller --cfg",
                g.cfg
            )
        } else if self.precision == Precision::F32 {
            "the values left single precision's range; try --precision f64".into()
        } else {
            "the data or noise levels are beyond the float range".into()
        };
        Error::NonFinite(format!("{what}: {cause}"))
    }
}

/// A warning when neighbouring noise levels of `sigmas` (ending in 0) are so far apart that no
/// sampler can follow: each sample collapses onto the denoiser's average at the upper level.
pub fn steep_schedule_warning(sigmas: &[f64]) -> Option<String> {
    let (from, to) = sigmas
        .windows(2)
        .filter(|w| w[1] > 0.0)
        .map(|w| (w[0], w[1]))
        .max_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)))?;
    let ratio = from / to;
    (ratio > MAX_LEVEL_RATIO).then(|| {
        format!(
            "one step goes from sigma = {from:.3e} to {to:.3e}, a factor of {ratio:.1e}: no \
             sampler follows a drop of more than {MAX_LEVEL_RATIO:.0e}, the samples collapse onto \
             the denoiser's average; use more --steps or a narrower --sigma-min..--sigma-max"
        )
    })
}

/// The memory a run may take, and how it was chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub how: String,
}

/// 90% of the memory available now (MemAvailable in /proc/meminfo), or NOISESCOPE_MEMORY_LIMIT;
/// `None` where neither is known (no check is made).
pub fn memory_limit() -> Result<Option<MemoryLimit>> {
    if let Ok(text) = std::env::var(MEMORY_LIMIT_ENV) {
        let bytes = parse_bytes(&text).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "{MEMORY_LIMIT_ENV}='{text}' is not a size (bytes, or a number with k, M or G)"
            ))
        })?;
        return Ok(Some(MemoryLimit {
            bytes,
            how: format!("set by {MEMORY_LIMIT_ENV}"),
        }));
    }
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return Ok(None);
    };
    let available_kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    Ok(available_kb.map(|kb| {
        let available = kb.saturating_mul(1024);
        MemoryLimit {
            bytes: available / 10 * 9,
            how: format!(
                "90% of the {} this machine has available now, MemAvailable in /proc/meminfo; \
                 {MEMORY_LIMIT_ENV} sets another",
                bytes_text(available)
            ),
        }
    }))
}

/// "12", "300k", "1.5G" (powers of 1024) as bytes.
fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, scale) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&text[..i], 1 << 20),
        (i, 'g' | 'G') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((value * scale as f64) as u64)
}

/// Refuses `needed` bytes beyond the memory limit (`memory_limit`).
fn check_memory(needed: u64, what: &str, advice: &str) -> Result<()> {
    check_memory_against(needed, memory_limit()?.as_ref(), what, advice)
}

/// Refuses `needed` bytes beyond `limit` with one line: what needs it, the limit and how it was
/// chosen, and what to change.
fn check_memory_against(
    needed: u64,
    limit: Option<&MemoryLimit>,
    what: &str,
    advice: &str,
) -> Result<()> {
    match limit {
        Some(limit) if needed > limit.bytes => Err(Error::InvalidSpec(format!(
            "{what}, more than the limit of {} ({}); {advice}",
            bytes_text(limit.bytes),
            limit.how
        ))),
        _ => Ok(()),
    }
}

/// Bytes in the largest unit that keeps a digit before the point (powers of 1024).
fn bytes_text(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ => format!("{:.1} GiB", b / 1_073_741_824.0),
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

    #[test]
    fn notes_name_every_setting_the_sampler_ignores() {
        type Edit<'a> = &'a dyn Fn(&mut RunSpec);
        let notes_of = |edit: Edit| {
            let mut spec = RunSpec::default();
            edit(&mut spec);
            spec.notes()
        };
        assert!(notes_of(&|_| {}).is_empty());
        let cases: [(Edit, &str); 9] = [
            (&|s| s.guidance.cfg = 2.0, "--cfg"),
            (&|s| s.stochasticity.churn = 20.0, "--churn"),
            (
                &|s| {
                    s.sampler = SamplerKind::Euler;
                    s.stochasticity.churn = 20.0;
                },
                "--churn",
            ),
            (
                &|s| {
                    s.sampler = SamplerKind::Edm;
                    s.stochasticity.tmin = 0.1;
                },
                "--tmin",
            ),
            (&|s| s.stochasticity.snoise = 1.1, "--snoise"),
            (&|s| s.stochasticity.eta = 0.5, "--eta"),
            (&|s| s.churn_noise = Some("eps.npy".into()), "--churn-noise"),
            (
                &|s| {
                    s.schedule.kind = ScheduleKind::LogUniform;
                    s.schedule.rho = 3.0;
                },
                "--rho",
            ),
            (
                &|s| s.guidance.nag_prior = SigmaPrior::LogUniform { lo: 0.1, hi: 1.0 },
                "--nag-prior",
            ),
        ];
        for (edit, flag) in cases {
            let notes = notes_of(edit);
            assert_eq!(notes.len(), 1, "{flag}: {notes:?}");
            assert!(notes[0].starts_with(flag), "{flag}: {notes:?}");
        }
        // Settings the run uses get no note.
        let used: [Edit; 3] = [
            &|s| {
                s.sampler = SamplerKind::Edm;
                s.stochasticity.churn = 20.0;
                s.stochasticity.tmin = 0.1;
                s.stochasticity.snoise = 1.003;
                s.churn_noise = Some("eps.npy".into());
            },
            &|s| {
                s.sampler = SamplerKind::EulerAncestral;
                s.stochasticity.eta = 0.5;
                s.stochasticity.snoise = 1.01;
            },
            &|s| {
                s.guidance.cfg = 2.0;
                s.guidance.class = Some(ClassSpec::All(1));
            },
        ];
        for edit in used {
            assert!(notes_of(edit).is_empty(), "{:?}", notes_of(edit));
        }
    }

    #[test]
    fn failures_under_guidance_name_the_guidance() {
        let failure =
            || Error::NonFinite("the denoiser's output at sigma = 8 is not finite".into());
        let mut spec = RunSpec::default();
        spec.guidance.nag = 100.0;
        assert!(
            spec.explain_failure(failure())
                .to_string()
                .contains("--nag")
        );
        spec.guidance.nag = 0.0;
        spec.guidance.cfg = 500.0;
        spec.guidance.class = Some(ClassSpec::All(0));
        assert!(
            spec.explain_failure(failure())
                .to_string()
                .contains("--cfg")
        );
        spec.guidance = GuidanceSpec::default();
        assert!(
            spec.explain_failure(failure())
                .to_string()
                .contains("--precision f64")
        );
        // Other errors pass through untouched.
        let other = spec.explain_failure(Error::Data("x".into())).to_string();
        assert_eq!(other, "data: x");
    }

    #[test]
    fn schedules_no_sampler_can_follow_get_a_warning() -> Result<()> {
        let sigmas = |steps, lo, hi| {
            ScheduleSpec {
                steps,
                sigma_min: lo,
                sigma_max: hi,
                ..Default::default()
            }
            .sigmas()
        };
        assert!(steep_schedule_warning(&sigmas(18, 0.002, 80.0)?).is_none());
        assert!(steep_schedule_warning(&sigmas(4, 0.002, 80.0)?).is_none());
        let warning = steep_schedule_warning(&sigmas(18, 1e-12, 1e12)?);
        assert!(warning.is_some_and(|w| w.contains("--steps")));
        // Two levels 80 and 0.002: one drop by 4e4.
        assert!(steep_schedule_warning(&sigmas(2, 0.002, 80.0)?).is_some());
        // One level, then 0: no neighbouring levels at all.
        assert!(steep_schedule_warning(&sigmas(1, 0.002, 80.0)?).is_none());
        Ok(())
    }

    #[test]
    fn memory_beyond_the_limit_is_refused_in_one_line() {
        let limit = MemoryLimit {
            bytes: 1 << 30,
            how: "by hand".into(),
        };
        assert!(check_memory_against(1 << 29, Some(&limit), "x", "y").is_ok());
        assert!(check_memory_against(u64::MAX, None, "x", "y").is_ok());
        let e = check_memory_against(
            3 << 30,
            Some(&limit),
            "the run needs 3.0 GiB",
            "lower --batch",
        );
        let e = e.map_err(|e| e.to_string());
        assert!(e.is_err_and(|e| !e.contains('\n')
            && e.contains("1.0 GiB (by hand)")
            && e.contains("lower --batch")));
        assert_eq!(parse_bytes("1536"), Some(1536));
        assert_eq!(parse_bytes("1.5k"), Some(1536));
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1M"), None);
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(3 << 20), "3.0 MiB");
    }

    #[test]
    fn the_run_memory_counts_every_kept_state() -> Result<()> {
        // Heun, 18 steps: 19 states + 18 denoised states kept, 8 working batches, all f64.
        let mut spec = RunSpec {
            batch: 1000,
            ..Default::default()
        };
        assert_eq!(spec.run_memory_bytes(64), (19 + 18 + 8) * 1000 * 64 * 8);
        spec.init_noise = Some("z.npy".into());
        assert_eq!(spec.run_memory_bytes(64), (19 + 18 + 8 + 1) * 1000 * 64 * 8);
        // The issue's --batch 10000000 on the digits: 214 GiB, never allocated.
        spec.batch = 10_000_000;
        spec.init_noise = None;
        assert!(spec.run_memory_bytes(64) > 200 << 30);
        // A small run fits on any machine.
        RunSpec::default().check_run_memory(2)
    }
}
