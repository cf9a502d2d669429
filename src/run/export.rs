//! Writing a finished run to a folder: traj.npy, denoised.npy, sigmas.npy, diagnostics.csv,
//! samples.png (image data) and run.json. One function for the CLI (`noisescope sample`) and the
//! app's "Export run", so both produce the same files; a folder never holds two runs' files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

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

/// The files of a run folder. A new run replaces all of them: one an earlier run left (say a
/// samples.png) is removed, so a folder never mixes two runs.
pub const RUN_FILES: [&str; 6] = [
    "traj.npy",
    "denoised.npy",
    "sigmas.npy",
    "diagnostics.csv",
    "samples.png",
    "run.json",
];

/// run.json: the spec, the backend, the sigmas used, timings and the closed-form theory.
#[derive(Serialize)]
struct RunSummary<'a> {
    spec: &'a RunSpec,
    backend: &'a str,
    notes: &'a [String],
    data: DataSummary<'a>,
    sigmas: &'a [f64],
    evaluations: usize,
    tangent_c: Option<f64>,
    timings: TimingsSummary,
    straightness: Spread,
    theory: Option<&'a GaussianTheory>,
    quality: Option<&'a Quality>,
}

#[derive(Serialize)]
struct DataSummary<'a> {
    label: &'a str,
    dim: usize,
    classes: usize,
}

#[derive(Serialize)]
struct TimingsSummary {
    total_s: f64,
    sampling_s: f64,
    diagnostics_s: f64,
    evaluations_per_s: f64,
}

/// The [rows, dim] shape shared by `batches`, and their values as slices (no copy).
fn stacked<'a>(batches: &'a [Batch], what: &str) -> Result<(usize, usize, Vec<&'a [f64]>)> {
    let (rows, dim) = batches.first().map_or((0, 0), |b| (b.rows, b.dim));
    let mut parts = Vec::with_capacity(batches.len());
    for b in batches {
        if (b.rows, b.dim) != (rows, dim) {
            return Err(Error::Shape(format!(
                "{what}: a [{}, {}] batch among [{rows}, {dim}] ones",
                b.rows, b.dim
            )));
        }
        parts.push(b.data.as_slice());
    }
    Ok((rows, dim, parts))
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

/// Checks, before a run starts, that `out` can become its folder: it is a folder or does not
/// exist yet, and the nearest existing folder above it is a folder.
pub fn check_out_dir(out: &Path) -> Result<()> {
    let not_a_folder = |p: &Path| {
        Error::InvalidSpec(format!(
            "the output folder {}: {} is a file, not a folder",
            out.display(),
            p.display()
        ))
    };
    if out.as_os_str().is_empty() {
        return Err(Error::InvalidSpec("the output folder has no name".into()));
    }
    for ancestor in out.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        if let Ok(meta) = std::fs::metadata(ancestor) {
            return if meta.is_dir() {
                Ok(())
            } else {
                Err(not_a_folder(ancestor))
            };
        }
    }
    Ok(())
}

/// Writes the run folder `out` (created if missing). The .npy files are f64 for f64 runs and
/// f32 otherwise, like the denoiser arithmetic. All files are written into a hidden folder beside
/// `out` and moved into place only once every one of them is complete, replacing the earlier
/// run's files: a failed write leaves `out` as it was, and files of other programs in `out` stay.
pub fn write_run(out: &Path, run: &RunArtifacts) -> Result<()> {
    check_out_dir(out)?;
    let (parent, name) = split_out_dir(out)?;
    let staging = SiblingDir::create(&parent, &name, "partial")?;
    let written = write_files(&staging.path, run)?;
    publish(&staging.path, &written, &parent.join(&name), &name, &parent)
}

/// The folder `out` lives in (created when missing) and its name.
fn split_out_dir(out: &Path) -> Result<(PathBuf, std::ffi::OsString)> {
    let full = if out.exists() {
        out.canonicalize().map_err(|e| Error::io(out, e))?
    } else {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let name = out.file_name().ok_or_else(|| {
            Error::InvalidSpec(format!("{} does not name a folder", out.display()))
        })?;
        parent
            .canonicalize()
            .map_err(|e| Error::io(parent, e))?
            .join(name)
    };
    match (full.parent(), full.file_name()) {
        (Some(parent), Some(name)) => Ok((parent.to_path_buf(), name.to_os_string())),
        _ => Err(Error::InvalidSpec(format!(
            "{} cannot hold a run: use a folder below it",
            out.display()
        ))),
    }
}

/// A hidden folder beside the output folder, removed (with what is left in it) when dropped.
struct SiblingDir {
    path: PathBuf,
}

impl SiblingDir {
    fn create(parent: &Path, name: &std::ffi::OsStr, role: &str) -> Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!(
            ".{}.{role}-{}-{n}",
            name.to_string_lossy(),
            std::process::id()
        ));
        std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(SiblingDir { path })
    }
}

impl Drop for SiblingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Moves the `written` files from `staging` into `target`: a new folder is renamed into place
/// whole; into an existing one the earlier run's files move aside first and come back if any
/// move fails.
fn publish(
    staging: &Path,
    written: &[&str],
    target: &Path,
    name: &std::ffi::OsStr,
    parent: &Path,
) -> Result<()> {
    if std::fs::symlink_metadata(target).is_err() {
        return std::fs::rename(staging, target).map_err(|e| Error::io(target, e));
    }
    let previous = SiblingDir::create(parent, name, "previous")?;
    let mut set_aside = Vec::new();
    let mut moved_in = Vec::new();
    let moved = (|| -> std::io::Result<()> {
        for file in RUN_FILES {
            if std::fs::symlink_metadata(target.join(file)).is_ok() {
                std::fs::rename(target.join(file), previous.path.join(file))?;
                set_aside.push(file);
            }
        }
        for &file in written {
            std::fs::rename(staging.join(file), target.join(file))?;
            moved_in.push(file);
        }
        Ok(())
    })();
    if let Err(e) = moved {
        for file in moved_in {
            let _ = std::fs::rename(target.join(file), staging.join(file));
        }
        for file in set_aside {
            let _ = std::fs::rename(previous.path.join(file), target.join(file));
        }
        return Err(Error::io(target, e));
    }
    Ok(())
}

/// Writes every file of the run into `dir`; the names written.
fn write_files(dir: &Path, run: &RunArtifacts) -> Result<Vec<&'static str>> {
    let (rows, dim, traj) = stacked(&run.states, "states")?;
    let (_, _, denoised) = stacked(&run.denoised, "denoised states")?;
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
    let mut written = vec!["traj.npy", "denoised.npy", "sigmas.npy", "diagnostics.csv"];
    npy::write_parts(
        &dir.join("traj.npy"),
        &[steps + 1, rows, dim],
        &traj,
        double,
    )?;
    npy::write_parts(
        &dir.join("denoised.npy"),
        &[steps, rows, dim],
        &denoised,
        double,
    )?;
    npy::write(&dir.join("sigmas.npy"), &[steps + 1], &run.sigmas, double)?;
    let csv_path = dir.join("diagnostics.csv");
    std::fs::write(&csv_path, diagnostics_csv(&run.records))
        .map_err(|e| Error::io(&csv_path, e))?;
    if let (Some(shape), Some(last)) = (run.image, run.states.last()) {
        let png = dir.join("samples.png");
        image_grid(&last.data, rows, shape, 256, export_scale(shape))
            .save(&png)
            .map_err(|e| Error::io(&png, std::io::Error::other(e)))?;
        written.push("samples.png");
    }
    let t = run.timings;
    let summary = RunSummary {
        spec: &run.spec,
        backend: &run.backend,
        notes: &run.notes,
        data: DataSummary {
            label: &run.data_label,
            dim,
            classes: run.classes,
        },
        sigmas: &run.sigmas,
        evaluations: run.evaluations,
        tangent_c: run.tangent_c,
        timings: TimingsSummary {
            total_s: t.total_s,
            sampling_s: t.sampling_s,
            diagnostics_s: t.diagnostics_s,
            evaluations_per_s: run.evaluations as f64 / t.sampling_s.max(1e-12),
        },
        straightness: Spread::of(&run.straightness),
        theory: run.theory.as_ref(),
        quality: run.quality.as_ref(),
    };
    let json_path = dir.join("run.json");
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::InvalidSpec(format!("run.json: {e}")))?;
    std::fs::write(&json_path, text).map_err(|e| Error::io(&json_path, e))?;
    written.push("run.json");
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-step run of two 1-D samples.
    fn tiny_run() -> Result<RunArtifacts> {
        Ok(RunArtifacts {
            spec: RunSpec::default(),
            backend: "cpu".into(),
            notes: vec!["a note".into()],
            data_label: "toy".into(),
            classes: 0,
            image: None,
            states: vec![
                Batch::from_vec(2, 1, vec![3.0, -3.0])?,
                Batch::from_vec(2, 1, vec![1.0, -1.0])?,
            ],
            denoised: vec![Batch::from_vec(2, 1, vec![1.0, -1.0])?],
            sigmas: vec![2.0, 0.0],
            records: Vec::new(),
            straightness: vec![1.0, 1.0],
            evaluations: 1,
            tangent_c: None,
            theory: None,
            quality: None,
            timings: Timings::default(),
        })
    }

    fn listing(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
        let mut entries = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = e.map_err(|e| Error::io(dir, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let bytes = std::fs::read(&path).unwrap_or_default();
            entries.push((name.unwrap_or_default(), bytes));
        }
        entries.sort();
        Ok(entries)
    }

    #[test]
    fn a_failed_write_leaves_the_folder_as_it_was() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let out = dir.path().join("run");
        write_run(&out, &tiny_run()?)?;
        std::fs::write(out.join("samples.png"), b"stale").map_err(|e| Error::io(&out, e))?;
        let before = listing(&out)?;
        // A run whose states do not fit together fails after writing has begun.
        let mut broken = tiny_run()?;
        broken.sigmas.push(0.0);
        assert!(write_run(&out, &broken).is_err());
        assert_eq!(listing(&out)?, before);
        assert_eq!(
            listing(dir.path())?.len(),
            1,
            "a staging folder was left behind"
        );
        // A good run replaces every run file, the stale picture included.
        let mut second = tiny_run()?;
        second.notes = vec!["the second run".into()];
        write_run(&out, &second)?;
        let names: Vec<String> = listing(&out)?.into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "denoised.npy",
                "diagnostics.csv",
                "run.json",
                "sigmas.npy",
                "traj.npy"
            ]
        );
        let json = std::fs::read_to_string(out.join("run.json")).map_err(|e| Error::io(&out, e))?;
        assert!(json.contains("the second run"));
        assert_eq!(listing(dir.path())?.len(), 1);
        Ok(())
    }

    #[test]
    fn the_output_folder_must_be_a_folder() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").map_err(|e| Error::io(&file, e))?;
        assert!(check_out_dir(&file).is_err());
        assert!(check_out_dir(&file.join("below")).is_err());
        check_out_dir(&dir.path().join("new/deeper"))?;
        // Missing folders above it are made.
        write_run(&dir.path().join("new/deeper"), &tiny_run()?)?;
        let traj = npy::read(&dir.path().join("new/deeper/traj.npy"))?;
        assert_eq!(traj.shape, vec![2, 2, 1]);
        assert_eq!(traj.data, vec![3.0, -3.0, 1.0, -1.0]);
        Ok(())
    }
}
