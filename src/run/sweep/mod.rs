//! Sweeps (issue 15): a base `RunSpec`, one or two varied settings and the metrics to measure at
//! every point (EDM, Karras et al. 2022, fig. 2: quality against evaluations per sampler). Every
//! point is an ordinary run of its own `RunSpec`, so it draws the same seed-derived initial and
//! churn noise as `noisescope sample` with that point's flags. A value is checked as its flag
//! checks it, and a bad one is one error naming the axis and the value. `engine` runs the
//! points, `plot` draws sweep.png, `heatmap` lays out two numeric axes, `builtin` holds the one-click sweeps, `thread` is the app's
//! sweep thread.

pub mod builtin;
pub mod engine;
pub mod heatmap;
pub mod plot;
pub mod thread;

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::core::guidance::NagForm;
use crate::core::sampler::SamplerKind;
use crate::core::schedule::ScheduleKind;
use crate::data::DataSpec;
use crate::error::{Error, Result};

use super::spec::{DenoiserSpec, RunSpec};

/// The most points one sweep may have (each is a whole run).
pub const MAX_POINTS: usize = 400;

/// A setting a sweep can vary; presets spell it as `name()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepParam {
    Steps,
    Sampler,
    Schedule,
    Rho,
    SigmaMin,
    SigmaMax,
    SChurn,
    SNoise,
    Eta,
    Cfg,
    Nag,
    NagForm,
    Denoiser,
    Seed,
}

/// How a `lo:hi:n` range is spaced for a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spacing {
    /// Whole numbers, log-spaced (rounded, repeats dropped).
    IntLog,
    /// Whole numbers, evenly spaced.
    IntLinear,
    /// Log-spaced when 0 < lo (a noise level), else even.
    FloatLog,
    FloatLinear,
    /// A choice (sampler, schedule, ...): lists only.
    Choice,
}

impl SweepParam {
    pub const ALL: [SweepParam; 14] = [
        SweepParam::Steps,
        SweepParam::Sampler,
        SweepParam::Schedule,
        SweepParam::Rho,
        SweepParam::SigmaMin,
        SweepParam::SigmaMax,
        SweepParam::SChurn,
        SweepParam::SNoise,
        SweepParam::Eta,
        SweepParam::Cfg,
        SweepParam::Nag,
        SweepParam::NagForm,
        SweepParam::Denoiser,
        SweepParam::Seed,
    ];

    /// The name in `--vary NAME=...`, in presets and in sweep.csv's header.
    pub fn name(self) -> &'static str {
        match self {
            SweepParam::Steps => "steps",
            SweepParam::Sampler => "sampler",
            SweepParam::Schedule => "schedule",
            SweepParam::Rho => "rho",
            SweepParam::SigmaMin => "sigma_min",
            SweepParam::SigmaMax => "sigma_max",
            SweepParam::SChurn => "s_churn",
            SweepParam::SNoise => "s_noise",
            SweepParam::Eta => "eta",
            SweepParam::Cfg => "cfg",
            SweepParam::Nag => "nag",
            SweepParam::NagForm => "nag_form",
            SweepParam::Denoiser => "denoiser",
            SweepParam::Seed => "seed",
        }
    }

    /// The `noisescope sample` flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            SweepParam::Steps => "--steps",
            SweepParam::Sampler => "--sampler",
            SweepParam::Schedule => "--schedule",
            SweepParam::Rho => "--rho",
            SweepParam::SigmaMin => "--sigma-min",
            SweepParam::SigmaMax => "--sigma-max",
            SweepParam::SChurn => "--churn",
            SweepParam::SNoise => "--snoise",
            SweepParam::Eta => "--eta",
            SweepParam::Cfg => "--cfg",
            SweepParam::Nag => "--nag",
            SweepParam::NagForm => "--nag-form",
            SweepParam::Denoiser => "--denoiser",
            SweepParam::Seed => "--seed",
        }
    }

    /// A name as users write it: the sweep name, or the flag's (churn, snoise, sigma-min, ...).
    pub fn parse(name: &str) -> Result<Self> {
        let wanted = name.trim().replace('-', "_");
        SweepParam::ALL
            .into_iter()
            .find(|p| p.name() == wanted || p.flag()[2..].replace('-', "_") == wanted)
            .ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "--vary: unknown setting '{name}' (one of {})",
                    SweepParam::ALL.map(|p| p.name()).join(", ")
                ))
            })
    }

    fn spacing(self) -> Spacing {
        match self {
            SweepParam::Steps => Spacing::IntLog,
            SweepParam::Seed => Spacing::IntLinear,
            SweepParam::SigmaMin | SweepParam::SigmaMax => Spacing::FloatLog,
            SweepParam::Rho
            | SweepParam::SChurn
            | SweepParam::SNoise
            | SweepParam::Eta
            | SweepParam::Cfg
            | SweepParam::Nag => Spacing::FloatLinear,
            _ => Spacing::Choice,
        }
    }

    /// Whether its values are numbers (a plot axis) rather than choices.
    pub fn is_numeric(self) -> bool {
        self.spacing() != Spacing::Choice
    }

    /// Sets this setting of `spec` to `value`, parsed as its flag parses it.
    pub fn apply(self, value: &str, spec: &mut RunSpec) -> Result<()> {
        let number = |v: &str| -> Result<f64> {
            v.parse::<f64>()
                .map_err(|_| Error::InvalidSpec(format!("'{v}' is not a number")))
        };
        let whole = |v: &str| -> Result<u64> {
            v.parse::<u64>()
                .map_err(|_| Error::InvalidSpec(format!("'{v}' is not a whole number >= 0")))
        };
        match self {
            SweepParam::Steps => {
                spec.schedule.steps = usize::try_from(whole(value)?)
                    .map_err(|_| Error::InvalidSpec(format!("'{value}' steps is too many")))?;
            }
            SweepParam::Sampler => spec.sampler = SamplerKind::from_str(value)?,
            SweepParam::Schedule => spec.schedule.kind = ScheduleKind::from_str(value)?,
            SweepParam::Rho => spec.schedule.rho = number(value)?,
            SweepParam::SigmaMin => spec.schedule.sigma_min = number(value)?,
            SweepParam::SigmaMax => spec.schedule.sigma_max = number(value)?,
            SweepParam::SChurn => spec.stochasticity.churn = number(value)?,
            SweepParam::SNoise => spec.stochasticity.snoise = number(value)?,
            SweepParam::Eta => spec.stochasticity.eta = number(value)?,
            SweepParam::Cfg => spec.guidance.cfg = number(value)?,
            SweepParam::Nag => spec.guidance.nag = number(value)?,
            SweepParam::NagForm => spec.guidance.nag_form = NagForm::from_str(value)?,
            SweepParam::Denoiser => spec.denoiser = DenoiserSpec::parse(value)?,
            SweepParam::Seed => spec.seed = whole(value)?,
        }
        Ok(())
    }

    /// The setting's value in `spec`, spelled as its flag takes it.
    pub fn value_of(self, spec: &RunSpec) -> String {
        match self {
            SweepParam::Steps => spec.schedule.steps.to_string(),
            SweepParam::Sampler => spec.sampler.to_string(),
            SweepParam::Schedule => match spec.schedule.kind {
                ScheduleKind::Tangent { c: Some(c) } => format!("tangent:{c}"),
                kind => kind.name().to_string(),
            },
            SweepParam::Rho => spec.schedule.rho.to_string(),
            SweepParam::SigmaMin => spec.schedule.sigma_min.to_string(),
            SweepParam::SigmaMax => spec.schedule.sigma_max.to_string(),
            SweepParam::SChurn => spec.stochasticity.churn.to_string(),
            SweepParam::SNoise => spec.stochasticity.snoise.to_string(),
            SweepParam::Eta => spec.stochasticity.eta.to_string(),
            SweepParam::Cfg => spec.guidance.cfg.to_string(),
            SweepParam::Nag => spec.guidance.nag.to_string(),
            SweepParam::NagForm => spec.guidance.nag_form.to_string(),
            SweepParam::Denoiser => match &spec.denoiser {
                DenoiserSpec::Exact => "exact".into(),
                DenoiserSpec::Bundled(name) => format!("bundled:{name}"),
                DenoiserSpec::Checkpoint(path) => path.display().to_string(),
            },
            SweepParam::Seed => spec.seed.to_string(),
        }
    }
}

/// What a sweep measures at every point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SweepMetric {
    /// Sliced W2 of the samples against the data (models::quality).
    W2,
    /// MMD (Gaussian kernel, median bandwidth).
    Mmd,
    /// Mean distance from a sample to its nearest data point.
    Nn,
    /// Accuracy of the intended class under the exact class posterior (class-conditional runs).
    ClassAcc,
    /// KL(p_data || p_out) in closed form (Gaussian data, exact denoiser, no NAG).
    Kl,
    /// Late noise shift: the median over the last three steps of each step's median
    /// ln sigma_hat - ln sigma under the exact posterior.
    DeltaLate,
}

impl SweepMetric {
    pub const ALL: [SweepMetric; 6] = [
        SweepMetric::W2,
        SweepMetric::Mmd,
        SweepMetric::Nn,
        SweepMetric::ClassAcc,
        SweepMetric::Kl,
        SweepMetric::DeltaLate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SweepMetric::W2 => "w2",
            SweepMetric::Mmd => "mmd",
            SweepMetric::Nn => "nn",
            SweepMetric::ClassAcc => "class-acc",
            SweepMetric::Kl => "kl",
            SweepMetric::DeltaLate => "delta-late",
        }
    }

    /// A label for plot axes.
    pub fn label(self) -> &'static str {
        match self {
            SweepMetric::W2 => "sliced W2",
            SweepMetric::Mmd => "MMD",
            SweepMetric::Nn => "nearest data point",
            SweepMetric::ClassAcc => "class accuracy",
            SweepMetric::Kl => "KL (closed form)",
            SweepMetric::DeltaLate => "late delta",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        SweepMetric::ALL
            .into_iter()
            .find(|m| m.name() == name.trim())
            .ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "--metric: unknown metric '{name}' (one of {})",
                    SweepMetric::ALL.map(|m| m.name()).join(", ")
                ))
            })
    }
}

/// One varied setting and its values, each spelled as the flag takes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepAxis {
    pub param: SweepParam,
    pub values: Vec<String>,
}

impl SweepAxis {
    /// `NAME=a,b,c` or `NAME=lo:hi:n` (`n` values from lo to hi: log-spaced for steps, sigma_min
    /// and sigma_max when lo > 0, evenly spaced otherwise; steps are rounded and repeats dropped).
    pub fn parse(text: &str) -> Result<Self> {
        let (name, values) = text.split_once('=').ok_or_else(|| {
            Error::InvalidSpec(format!(
                "--vary '{text}': write NAME=a,b,c or NAME=lo:hi:n (steps=4,8,16)"
            ))
        })?;
        let param = SweepParam::parse(name)?;
        let values = values.trim();
        let is_range = param.is_numeric() && values.matches(':').count() == 2;
        let values = if is_range {
            expand_range(param, values)?
        } else {
            values
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect()
        };
        let axis = SweepAxis { param, values };
        if axis.values.is_empty() {
            return Err(axis.error("", "the list of values is empty"));
        }
        Ok(axis)
    }

    fn error(&self, value: &str, why: impl Into<Reason>) -> Error {
        Error::InvalidSpec(format!(
            "--vary {}={value}: {}",
            self.param.name(),
            why.into().0
        ))
    }

    /// Checks every value on `base` as its flag would be checked.
    pub fn check(&self, base: &RunSpec) -> Result<()> {
        if self.values.is_empty() {
            return Err(self.error("", "the list of values is empty"));
        }
        for value in &self.values {
            let mut spec = base.clone();
            self.param
                .apply(value, &mut spec)
                .and_then(|()| spec.validate())
                .map_err(|e| self.error(value, e))?;
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = self.values.iter().find(|v| !seen.insert(v.as_str())) {
            return Err(self.error(twice, "this value is listed twice"));
        }
        Ok(())
    }
}

/// Why a value was refused, without a nested "invalid setting:" prefix.
pub struct Reason(pub String);

impl From<Error> for Reason {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidSpec(why) => Reason(why),
            other => Reason(other.to_string()),
        }
    }
}

impl From<&str> for Reason {
    fn from(why: &str) -> Self {
        Reason(why.to_string())
    }
}

/// `lo:hi:n` of `param` as a list of values.
fn expand_range(param: SweepParam, text: &str) -> Result<Vec<String>> {
    let bad = |why: &str| {
        Error::InvalidSpec(format!(
            "--vary {}={text}: {why} (a range is lo:hi:n)",
            param.name()
        ))
    };
    let parts: Vec<&str> = text.split(':').collect();
    let [lo, hi, n] = parts[..] else {
        return Err(bad("not a range"));
    };
    let lo: f64 = lo.trim().parse().map_err(|_| bad("lo is not a number"))?;
    let hi: f64 = hi.trim().parse().map_err(|_| bad("hi is not a number"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| bad("n is not a whole number"))?;
    if !(lo.is_finite() && hi.is_finite()) || lo > hi {
        return Err(bad("it needs finite lo <= hi"));
    }
    if !(2..=MAX_POINTS).contains(&n) {
        return Err(bad(&format!("n must be in 2..={MAX_POINTS}")));
    }
    let log = matches!(param.spacing(), Spacing::IntLog | Spacing::FloatLog) && lo > 0.0;
    let at = |k: usize| {
        let t = k as f64 / (n - 1) as f64;
        if log {
            (lo.ln() + t * (hi.ln() - lo.ln())).exp()
        } else {
            lo + t * (hi - lo)
        }
    };
    let mut values: Vec<String> = Vec::with_capacity(n);
    for k in 0..n {
        let v = at(k);
        let text = match param.spacing() {
            Spacing::IntLog | Spacing::IntLinear => format!("{}", v.round()),
            // Four significant digits: a readable value that the CSV repeats exactly.
            _ => format!("{}", format!("{v:.3e}").parse::<f64>().unwrap_or(v)),
        };
        if !values.contains(&text) {
            values.push(text);
        }
    }
    Ok(values)
}

/// A sweep: the base run, one or two varied settings, the metrics. The same JSON is a preset
/// file for `noisescope sweep --sweep FILE` and what the app's Sweep tab exports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// A title for the plot and the tab.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub base: RunSpec,
    /// The first axis runs along each line; the second (if any) makes one line per value.
    pub vary: Vec<SweepAxis>,
    pub metrics: Vec<SweepMetric>,
}

/// One point of a sweep: its values of the varied settings and the run it is.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    pub index: usize,
    /// The value of each axis, in the order of `SweepSpec::vary`.
    pub values: Vec<String>,
    pub spec: RunSpec,
}

impl SweepSpec {
    /// Checks the whole sweep as far as it can without data: the base, each axis value by
    /// value, each combination, and that each metric can be measured.
    pub fn validate(&self) -> Result<()> {
        self.base.validate()?;
        if self.vary.is_empty() || self.vary.len() > 2 {
            return Err(Error::InvalidSpec(format!(
                "a sweep varies one or two settings (--vary NAME=VALUES), got {}",
                self.vary.len()
            )));
        }
        if self.vary.len() == 2 && self.vary[0].param == self.vary[1].param {
            return Err(Error::InvalidSpec(format!(
                "--vary {} is given twice",
                self.vary[0].param.name()
            )));
        }
        for axis in &self.vary {
            axis.check(&self.base)?;
        }
        let count: usize = self.vary.iter().map(|a| a.values.len()).product();
        if count > MAX_POINTS {
            return Err(Error::InvalidSpec(format!(
                "the sweep has {count} points, more than {MAX_POINTS}: shorten a --vary list"
            )));
        }
        if self.metrics.is_empty() {
            return Err(Error::InvalidSpec(
                "a sweep needs at least one --metric (w2, mmd, nn, class-acc, kl, delta-late)"
                    .into(),
            ));
        }
        for metric in &self.metrics {
            self.check_metric(*metric)?;
        }
        // Combinations a single axis cannot refuse (sigma_min above a varied sigma_max).
        for point in self.points()? {
            point
                .spec
                .validate()
                .map_err(|e| self.point_error(&point, e))?;
        }
        Ok(())
    }

    fn check_metric(&self, metric: SweepMetric) -> Result<()> {
        match metric {
            SweepMetric::Kl if !matches!(self.base.data, DataSpec::Gaussian { .. }) => {
                Err(Error::InvalidSpec(format!(
                    "--metric kl is the closed form of Gaussian data (--data gaussian:l1,l2,...), \
                     not {}",
                    self.base.data.label()
                )))
            }
            SweepMetric::ClassAcc if self.base.guidance.class.is_none() => Err(Error::InvalidSpec(
                "--metric class-acc needs a class to aim at (--class)".into(),
            )),
            SweepMetric::DeltaLate if !self.base.diagnostics.enabled => Err(Error::InvalidSpec(
                "--metric delta-late needs the diagnostics (--diagnostics on)".into(),
            )),
            _ => Ok(()),
        }
    }

    /// An error of one point, naming its values.
    pub fn point_error(&self, point: &SweepPoint, e: Error) -> Error {
        Error::InvalidSpec(format!(
            "--vary {}: {}",
            self.describe(point),
            Reason::from(e).0
        ))
    }

    /// "steps=8, sampler=heun" for a point.
    pub fn describe(&self, point: &SweepPoint) -> String {
        self.vary
            .iter()
            .zip(&point.values)
            .map(|(a, v)| format!("{}={v}", a.param.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every point: the second axis outer (one line per value), the first inner.
    pub fn points(&self) -> Result<Vec<SweepPoint>> {
        let first = self
            .vary
            .first()
            .ok_or_else(|| Error::InvalidSpec("a sweep needs --vary".into()))?;
        let outer: Vec<Option<&String>> = match self.vary.get(1) {
            Some(axis) => axis.values.iter().map(Some).collect(),
            None => vec![None],
        };
        let mut points = Vec::new();
        for line in outer {
            for value in &first.values {
                let mut spec = self.base.clone();
                first
                    .param
                    .apply(value, &mut spec)
                    .map_err(|e| first.error(value, e))?;
                let mut values = vec![value.clone()];
                if let (Some(axis), Some(v)) = (self.vary.get(1), line) {
                    axis.param
                        .apply(v, &mut spec)
                        .map_err(|e| axis.error(v, e))?;
                    values.push(v.clone());
                }
                points.push(SweepPoint {
                    index: points.len(),
                    values,
                    spec,
                });
            }
        }
        Ok(points)
    }

    /// Reads a sweep preset without validating it. Unknown fields are errors that name them.
    pub fn parse_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::InvalidSpec(format!("sweep preset: {e}")))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads and checks the sweep preset at `path` (what the app opens; the CLI's `--sweep`
    /// reads it too, then lets flags change it before checking).
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let spec = Self::parse_json(&text)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Whether `text` is a sweep preset rather than a run preset or a lesson: a JSON object
    /// with the sweep's own "vary" list (a dropped file is opened by what it holds).
    pub fn looks_like_sweep(text: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .is_some_and(|v| v.get("vary").is_some_and(|vary| vary.is_array()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges_expand_as_documented() -> Result<()> {
        let steps = SweepAxis::parse("steps=4:64:5")?;
        assert_eq!(steps.values, ["4", "8", "16", "32", "64"]);
        let rho = SweepAxis::parse("rho=1:10:10")?;
        assert_eq!(rho.values.len(), 10);
        assert_eq!(rho.values[0], "1");
        assert_eq!(rho.values[9], "10");
        let smin = SweepAxis::parse("sigma-min=0.001:0.1:3")?;
        assert_eq!(smin.values, ["0.001", "0.01", "0.1"]);
        assert_eq!(smin.param, SweepParam::SigmaMin);
        let samplers = SweepAxis::parse("sampler=euler, heun,dpmpp-2m")?;
        assert_eq!(samplers.values, ["euler", "heun", "dpmpp-2m"]);
        // A schedule with a colon is a value, not a range.
        let sched = SweepAxis::parse("schedule=karras,tangent:0.7")?;
        assert_eq!(sched.values, ["karras", "tangent:0.7"]);
        assert_eq!(SweepParam::parse("churn")?, SweepParam::SChurn);
        Ok(())
    }

    #[test]
    fn every_param_round_trips_through_its_spelling() -> Result<()> {
        let spec = RunSpec::default();
        for p in SweepParam::ALL {
            let mut copy = spec.clone();
            p.apply(&p.value_of(&spec), &mut copy)?;
            assert_eq!(copy, spec, "{}", p.name());
            assert_eq!(SweepParam::parse(p.name())?, p);
        }
        Ok(())
    }

    #[test]
    fn bad_axes_are_one_error_naming_axis_and_value() {
        let base = RunSpec::default();
        let cases = [
            ("stepz=4,8", "stepz"),
            ("steps=", "steps"),
            ("steps=4,0", "steps=0"),
            ("steps=4,x", "steps=x"),
            ("sampler=euler,rk4", "sampler=rk4"),
            ("rho=-1", "rho=-1"),
            ("sigma_min=0", "sigma_min=0"),
            ("cfg=1e9", "cfg=1e9"),
            ("denoiser=bundled:nope", "denoiser=bundled:nope"),
            ("steps=4:2:3", "steps=4:2:3"),
            ("steps=4,4", "steps=4"),
        ];
        for (text, named) in cases {
            let err = SweepAxis::parse(text).and_then(|a| a.check(&base));
            match err {
                Ok(()) => panic!("{text} was accepted"),
                Err(e) => assert!(e.to_string().contains(named), "{text}: {e}"),
            }
        }
    }

    #[test]
    fn presets_round_trip_and_refuse_unknown_fields() -> Result<()> {
        let spec = SweepSpec {
            name: "samplers".into(),
            base: RunSpec::default(),
            vary: vec![
                SweepAxis::parse("steps=4,8")?,
                SweepAxis::parse("sampler=euler,heun")?,
            ],
            metrics: vec![SweepMetric::W2, SweepMetric::DeltaLate],
        };
        spec.validate()?;
        assert_eq!(SweepSpec::parse_json(&spec.to_json())?, spec);
        let points = spec.points()?;
        assert_eq!(points.len(), 4);
        assert_eq!(points[1].values, ["8", "euler"]);
        assert_eq!(points[1].spec.sampler, SamplerKind::Euler);
        assert_eq!(points[1].spec.schedule.steps, 8);
        let typo = r#"{"vary": [], "metrics": [], "metric": ["w2"]}"#;
        let e = SweepSpec::parse_json(typo)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(e.is_err_and(|e| e.contains("`metric`")));
        // A sweep preset is told apart from a run preset (no "vary") by what it holds.
        assert!(SweepSpec::looks_like_sweep(&spec.to_json()));
        assert!(!SweepSpec::looks_like_sweep(&RunSpec::default().to_json()));
        assert!(!SweepSpec::looks_like_sweep("not json"));
        Ok(())
    }

    #[test]
    fn load_reads_a_written_sweep_and_refuses_a_bad_one() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let good = dir.path().join("sweep.json");
        let spec = SweepSpec {
            name: "rho".into(),
            base: RunSpec::default(),
            vary: vec![SweepAxis::parse("rho=2,7")?],
            metrics: vec![SweepMetric::W2],
        };
        std::fs::write(&good, spec.to_json()).map_err(|e| Error::io(&good, e))?;
        assert_eq!(SweepSpec::load(&good)?, spec);
        // Parsed but invalid (no metric) is refused, as is a file that is not there.
        let bad = dir.path().join("bad.json");
        let no_metric = SweepSpec {
            metrics: Vec::new(),
            ..spec
        };
        std::fs::write(&bad, no_metric.to_json()).map_err(|e| Error::io(&bad, e))?;
        let e = SweepSpec::load(&bad).map(|_| ()).map_err(|e| e.to_string());
        assert!(e.is_err_and(|e| e.contains("--metric")));
        assert!(SweepSpec::load(&dir.path().join("missing.json")).is_err());
        Ok(())
    }
}
