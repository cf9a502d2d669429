//! Spec resolution: what a `RunSpec` leaves open, made concrete for one run (the tangent law's
//! coefficient, the info schedule's profile and the sigmas, the class condition, the initial and
//! per-step noise read from files), each checked against the data and the batch.

use std::sync::Arc;

use crate::core::Batch;
use crate::core::information::InformationProfile;
use crate::core::noise::{InjectedNoise, NoiseSource, SeededNoise, initial_noise};
use crate::core::schedule::{ScheduleKind, ScheduleSpec};
use crate::core::theory::best_tangent_c;
use crate::data::npy;
use crate::error::{Error, Result};

use super::handle::ModelHandle;
use super::spec::{ClassSpec, RunSpec};

/// A run's schedule made concrete.
pub struct ResolvedSchedule {
    /// The spec with the tangent coefficient filled in (what adaptive re-plans use).
    pub spec: ScheduleSpec,
    /// The N+1 sigmas, ending in 0.
    pub sigmas: Vec<f64>,
    pub tangent_c: Option<f64>,
    /// The information profile an info schedule is placed by.
    pub profile: Option<Arc<InformationProfile>>,
}

/// The run's schedule: a tangent law without c gets the KL-optimal c for the data's covariance
/// spectrum, the info schedule the data's exact information profile.
pub fn schedule(spec: &RunSpec, handle: &ModelHandle) -> Result<ResolvedSchedule> {
    let mut schedule = spec.schedule;
    let mut tangent_c = None;
    if let ScheduleKind::Tangent { c } = schedule.kind {
        let c = match c {
            Some(c) => c,
            None => best_tangent_c(
                &handle.source.covariance_spectrum(),
                schedule.steps,
                schedule.sigma_min,
                schedule.sigma_max,
                spec.sampler,
            ),
        };
        schedule.kind = ScheduleKind::Tangent { c: Some(c) };
        tangent_c = Some(c);
    }
    let profile = match schedule.kind {
        ScheduleKind::Info => {
            schedule.validate()?;
            let profile = handle.information_profile(schedule.sigma_min, schedule.sigma_max)?;
            Some(profile.ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "the info schedule needs the information profile of {}, and the denoiser {} \
                     has no exact model of it",
                    spec.data.label(),
                    spec.denoiser.label()
                ))
            })?)
        }
        _ => None,
    };
    Ok(ResolvedSchedule {
        sigmas: schedule.sigmas_with(profile.as_deref())?,
        spec: schedule,
        tangent_c,
        profile,
    })
}

/// The class of every sample (`None`: unconditional), checked against the `classes` the
/// denoiser knows.
pub fn class_condition(spec: &RunSpec, classes: usize) -> Result<Option<Vec<u32>>> {
    let batch = spec.batch;
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
    if class.is_some() && classes == 0 {
        return Err(Error::InvalidSpec(format!(
            "{} has no classes; --class needs labelled data",
            spec.data.label()
        )));
    }
    if let Some(c) = class
        .as_ref()
        .and_then(|c| c.iter().find(|&&c| c as usize >= classes))
    {
        return Err(Error::InvalidSpec(format!(
            "class {c} (--class) does not exist ({} has {classes} classes)",
            spec.data.label(),
        )));
    }
    Ok(class)
}

/// The standard-normal z of x_0 = sigma_0 z, [batch, dim]: read from the spec's file, or drawn
/// from its seed.
pub fn initial_z(spec: &RunSpec, dim: usize) -> Result<Batch> {
    let batch = spec.batch;
    let Some(path) = &spec.init_noise else {
        return Ok(initial_noise(spec.seed, batch, dim));
    };
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
    Ok(z)
}

/// The churn / ancestral noise of the run's `steps` steps: read from the spec's file (which must
/// hold at least that many steps when the sampler draws noise), or drawn from its seed.
pub fn step_noise(spec: &RunSpec, steps: usize) -> Result<Box<dyn NoiseSource>> {
    let Some(path) = &spec.churn_noise else {
        return Ok(Box::new(SeededNoise { seed: spec.seed }));
    };
    let arr = npy::read(path)?;
    let injected = InjectedNoise::new(&arr.shape, arr.data)
        .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    if injected.steps < steps && spec.sampler.uses_noise() {
        return Err(Error::Shape(format!(
            "{}: churn noise has {} steps, the run needs {steps}",
            path.display(),
            injected.steps
        )));
    }
    Ok(Box::new(injected))
}
