//! The messages between the app's UI thread and its worker thread.

use std::sync::Arc;

use crate::core::Batch;
use crate::core::diagnostics::StepRecord;
use crate::core::theory::GaussianTheory;
use crate::data::{DataSet, ImageShape};

use super::spec::RunSpec;

/// UI -> worker.
#[derive(Debug)]
pub enum Command {
    /// Start a run; it cancels any older run at its next step.
    Start { generation: u64, spec: Box<RunSpec> },
}

/// What the UI needs to draw the data behind a run.
#[derive(Clone, Debug)]
pub struct DataView {
    pub label: String,
    /// Points to draw (the set, or samples of a closed-form model).
    pub points: Arc<DataSet>,
    pub image: Option<ImageShape>,
    pub classes: usize,
}

/// One step as the UI sees it.
#[derive(Clone, Debug)]
pub struct StepSnapshot {
    pub step: usize,
    pub sigma: f64,
    pub sigma_next: f64,
    /// The pre-churn state x_i.
    pub x: Arc<Batch>,
    /// D(x_i) (the first denoiser call of the step).
    pub denoised: Arc<Batch>,
    pub evaluations: usize,
}

/// Worker -> UI. Every event names the run (generation) it belongs to.
#[derive(Clone, Debug)]
pub enum Event {
    Started {
        generation: u64,
        spec: Box<RunSpec>,
        backend: String,
        notes: Vec<String>,
        data: DataView,
        sigmas: Vec<f64>,
        tangent_c: Option<f64>,
        theory: Option<GaussianTheory>,
    },
    Step {
        generation: u64,
        snapshot: StepSnapshot,
        /// Diagnostics completed by this step (samplers without a corrector lag by one).
        records: Vec<StepRecord>,
        /// Seconds since the run started.
        elapsed_s: f64,
    },
    Finished {
        generation: u64,
        x_final: Arc<Batch>,
        sigmas: Vec<f64>,
        records: Vec<StepRecord>,
        straightness: Vec<f64>,
        evaluations: usize,
        sampling_s: f64,
        diagnostics_s: f64,
        stopped: bool,
        /// Backend notices raised during the run (e.g. a GPU failure and the CPU fallback).
        notes: Vec<String>,
        /// The Gaussian theory on the sigmas actually used (adaptive runs re-plan them).
        theory: Option<GaussianTheory>,
    },
    Failed {
        generation: u64,
        message: String,
    },
}

impl Event {
    pub fn generation(&self) -> u64 {
        match self {
            Event::Started { generation, .. }
            | Event::Step { generation, .. }
            | Event::Finished { generation, .. }
            | Event::Failed { generation, .. } => *generation,
        }
    }
}
