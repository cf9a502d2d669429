//! Writing a finished run to a folder: traj.npy, denoised.npy, sigmas.npy, diagnostics.csv,
//! samples.png (image data) and run.json. One function for the CLI (`noisescope sample`) and the
//! app's "Export run", so both produce the same files.

use std::path::Path;

use serde_json::json;

use crate::core::diagnostics::StepRecord;
use crate::core::estimate::Spread;
use crate::core::metrics::Quality;
use crate::core::theory::GaussianTheory;
use crate::core::{Batch, Precision};
use crate::data::grid::{export_scale, image_grid};
use crate::data::{ImageShape, npy};
use crate::error::{Error, Result};

use super::spec::RunSpec;
use super::store::{RunRecord, RunStatus};

/// Wall times of a run, seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Sampling plus diagnostics (the CLI also counts its own bookkeeping).
    pub total_s: f64,
    pub sampling_s: f64,
    pub diagnostics_s: f64,
}

/// Everything a run folder holds, independent of who ran it.
#[derive(Clone, Debug)]
pub struct RunArtifacts {
    pub spec: RunSpec,
    /// "cpu (avx512, 2 threads)" or the GPU adapter.
    pub backend: String,
    /// Backend notes (e.g. a GPU fallback).
    pub notes: Vec<String>,
    pub data_label: String,
    pub classes: usize,
    pub image: Option<ImageShape>,
    /// The states x_0 .. x_N (N+1 batches of equal shape).
    pub states: Vec<Batch>,
    /// D(x_i) for i = 0 .. N-1.
    pub denoised: Vec<Batch>,
    /// The N+1 sigmas actually used (re-planned ones for adaptive runs), ending in 0.
    pub sigmas: Vec<f64>,
    pub records: Vec<StepRecord>,
    pub straightness: Vec<f64>,
    pub evaluations: usize,
    pub tangent_c: Option<f64>,
    pub theory: Option<GaussianTheory>,
    /// The final samples' quality against the data (core::metrics), when measured.
    pub quality: Option<Quality>,
    pub timings: Timings,
}

impl RunArtifacts {
    /// The artifacts of a run the app recorded; only finished runs have every state.
    pub fn from_record(run: &RunRecord, notes: &[String]) -> Result<Self> {
        if run.status != RunStatus::Finished {
            return Err(Error::InvalidSpec(
                "only a finished run can be exported; wait for it or press rerun".into(),
            ));
        }
        let x_final = run
            .x_final
            .as_ref()
            .ok_or_else(|| Error::InvalidSpec("the run has no final state".into()))?;
        let mut states: Vec<Batch> = run.steps.iter().map(|s| s.x.as_ref().clone()).collect();
        states.push(x_final.as_ref().clone());
        Ok(RunArtifacts {
            spec: run.spec.clone(),
            backend: run.backend.clone(),
            notes: notes.to_vec(),
            data_label: run.data.label.clone(),
            classes: run.data.classes,
            image: run.data.image,
            states,
            denoised: run
                .steps
                .iter()
                .map(|s| s.denoised.as_ref().clone())
                .collect(),
            sigmas: run.sigmas.clone(),
            records: run.records.clone(),
            straightness: run.straightness.clone(),
            evaluations: run.evaluations,
            tangent_c: run.tangent_c,
            theory: run.theory.clone(),
            quality: None,
            timings: Timings {
                total_s: run.sampling_s + run.diagnostics_s,
                sampling_s: run.sampling_s,
                diagnostics_s: run.diagnostics_s,
            },
        })
    }
}

/// Concatenates equally shaped batches into one flat [len, rows, dim] buffer.
fn stack(batches: &[Batch], what: &str) -> Result<(usize, usize, Vec<f64>)> {
    let (rows, dim) = batches.first().map_or((0, 0), |b| (b.rows, b.dim));
    let mut flat = Vec::with_capacity(batches.len() * rows * dim);
    for b in batches {
        if (b.rows, b.dim) != (rows, dim) {
            return Err(Error::Shape(format!(
                "{what}: a [{}, {}] batch among [{rows}, {dim}] ones",
                b.rows, b.dim
            )));
        }
        flat.extend_from_slice(&b.data);
    }
    Ok((rows, dim, flat))
}

/// diagnostics.csv: `StepRecord::CSV_HEADER`, then one row per step.
pub fn diagnostics_csv(records: &[StepRecord]) -> String {
    let mut text = String::from(StepRecord::CSV_HEADER);
    text.push('\n');
    for r in records {
        text.push_str(&r.csv_row());
        text.push('\n');
    }
    text
}

/// Writes the run folder `out` (created if missing). The .npy files are f64 for f64 runs and
/// f32 otherwise, like the denoiser arithmetic.
pub fn write_run(out: &Path, run: &RunArtifacts) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let (rows, dim, traj) = stack(&run.states, "states")?;
    let (_, _, denoised) = stack(&run.denoised, "denoised states")?;
    let steps = run.denoised.len();
    if run.states.len() != steps + 1 || run.sigmas.len() != steps + 1 {
        return Err(Error::Shape(format!(
            "{} states, {} denoised states and {} sigmas do not form one run",
            run.states.len(),
            steps,
            run.sigmas.len()
        )));
    }
    let double = run.spec.precision == Precision::F64;
    npy::write(
        &out.join("traj.npy"),
        &[steps + 1, rows, dim],
        &traj,
        double,
    )?;
    npy::write(
        &out.join("denoised.npy"),
        &[steps, rows, dim],
        &denoised,
        double,
    )?;
    npy::write(&out.join("sigmas.npy"), &[steps + 1], &run.sigmas, double)?;
    let csv_path = out.join("diagnostics.csv");
    std::fs::write(&csv_path, diagnostics_csv(&run.records))
        .map_err(|e| Error::io(&csv_path, e))?;
    if let (Some(shape), Some(last)) = (run.image, run.states.last()) {
        let png = out.join("samples.png");
        image_grid(&last.data, rows, shape, 256, export_scale(shape))
            .save(&png)
            .map_err(|e| Error::io(&png, std::io::Error::other(e)))?;
    }
    let t = run.timings;
    let summary = json!({
        "spec": run.spec,
        "backend": run.backend,
        "notes": run.notes,
        "data": { "label": run.data_label, "dim": dim, "classes": run.classes },
        "sigmas": run.sigmas,
        "evaluations": run.evaluations,
        "tangent_c": run.tangent_c,
        "timings": {
            "total_s": t.total_s,
            "sampling_s": t.sampling_s,
            "diagnostics_s": t.diagnostics_s,
            "evaluations_per_s": run.evaluations as f64 / t.sampling_s.max(1e-12),
        },
        "straightness": Spread::of(&run.straightness),
        "theory": run.theory,
        "quality": run.quality,
    });
    let json_path = out.join("run.json");
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::InvalidSpec(format!("run.json: {e}")))?;
    std::fs::write(&json_path, text).map_err(|e| Error::io(&json_path, e))
}
