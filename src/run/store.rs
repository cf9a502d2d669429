//! Every step of every run the UI shows, with no egui types: the current run and a pinned
//! baseline. The UI drains worker events into it (for a bounded time per frame) and draws from it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::Batch;
use crate::core::diagnostics::StepRecord;
use crate::core::theory::GaussianTheory;

use super::protocol::{DataView, Event, StepSnapshot};
use super::spec::RunSpec;

#[derive(Clone, Debug, PartialEq)]
pub enum RunStatus {
    Running,
    Finished,
    Stopped,
    Failed(String),
}

/// One run as recorded.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub generation: u64,
    pub spec: RunSpec,
    pub backend: String,
    pub data: DataView,
    /// The schedule (re-planned values replace these when the run finishes).
    pub sigmas: Vec<f64>,
    pub tangent_c: Option<f64>,
    pub theory: Option<GaussianTheory>,
    /// x_i and D(x_i) for each step so far.
    pub steps: Vec<StepSnapshot>,
    /// Diagnostics, by step (complete when the run finishes).
    pub records: Vec<StepRecord>,
    pub x_final: Option<Arc<Batch>>,
    pub straightness: Vec<f64>,
    pub status: RunStatus,
    pub evaluations: usize,
    pub elapsed_s: f64,
    pub sampling_s: f64,
    pub diagnostics_s: f64,
}

impl RunRecord {
    /// The state after `step` steps (0 = x_0; steps.len() = the final sample when finished).
    pub fn state(&self, step: usize) -> Option<&Arc<Batch>> {
        match self.steps.get(step) {
            Some(s) => Some(&s.x),
            None if step == self.steps.len() => self.x_final.as_ref(),
            None => None,
        }
    }

    /// How many states exist so far (x_0 .. x_k).
    pub fn state_count(&self) -> usize {
        self.steps.len() + usize::from(self.x_final.is_some())
    }

    pub fn is_running(&self) -> bool {
        self.status == RunStatus::Running
    }

    /// Evaluations per second so far.
    pub fn evaluations_per_s(&self) -> f64 {
        let t = if self.sampling_s > 0.0 {
            self.sampling_s
        } else {
            self.elapsed_s
        };
        if t > 0.0 {
            self.evaluations as f64 / t
        } else {
            0.0
        }
    }

    /// Mean wall time per step, ms.
    pub fn ms_per_step(&self) -> f64 {
        if self.steps.is_empty() {
            0.0
        } else {
            1e3 * self.elapsed_s / self.steps.len() as f64
        }
    }
}

/// The runs the UI knows about.
#[derive(Default)]
pub struct RunStore {
    pub current: Option<RunRecord>,
    pub baseline: Option<RunRecord>,
    /// The generation the UI asked for last; events of older runs are dropped.
    pub expected: u64,
    /// The last error, shown once in the status bar.
    pub last_error: Option<String>,
    /// Notes from the backend (e.g. a GPU fallback), shown once.
    pub notes: Vec<String>,
}

impl RunStore {
    /// Applies one event; returns false when it belonged to an outdated run.
    pub fn apply(&mut self, event: Event) -> bool {
        if event.generation() != self.expected {
            return false;
        }
        match event {
            Event::Started {
                generation,
                spec,
                backend,
                notes,
                data,
                sigmas,
                tangent_c,
                theory,
            } => {
                self.notes.extend(notes);
                self.current = Some(RunRecord {
                    generation,
                    spec: *spec,
                    backend,
                    data,
                    sigmas,
                    tangent_c,
                    theory,
                    steps: Vec::new(),
                    records: Vec::new(),
                    x_final: None,
                    straightness: Vec::new(),
                    status: RunStatus::Running,
                    evaluations: 0,
                    elapsed_s: 0.0,
                    sampling_s: 0.0,
                    diagnostics_s: 0.0,
                });
            }
            Event::Step {
                snapshot,
                records,
                elapsed_s,
                ..
            } => {
                if let Some(run) = self.current.as_mut() {
                    run.evaluations = snapshot.evaluations;
                    run.elapsed_s = elapsed_s;
                    run.steps.push(snapshot);
                    run.records.extend(records);
                }
            }
            Event::Finished {
                x_final,
                sigmas,
                records,
                straightness,
                evaluations,
                sampling_s,
                diagnostics_s,
                stopped,
                notes,
                theory,
                ..
            } => {
                self.notes.extend(notes);
                if let Some(run) = self.current.as_mut() {
                    run.theory = theory;
                    run.x_final = Some(x_final);
                    run.sigmas = sigmas;
                    run.records = records;
                    run.straightness = straightness;
                    run.evaluations = evaluations;
                    run.sampling_s = sampling_s;
                    run.diagnostics_s = diagnostics_s;
                    run.elapsed_s = sampling_s + diagnostics_s;
                    run.status = if stopped {
                        RunStatus::Stopped
                    } else {
                        RunStatus::Finished
                    };
                }
            }
            Event::Failed {
                generation,
                message,
            } => {
                // A run that failed before it started (bad data) leaves the previous view alone.
                if let Some(run) = self.current.as_mut().filter(|r| r.generation == generation) {
                    run.status = RunStatus::Failed(message.clone());
                }
                self.last_error = Some(message);
            }
        }
        true
    }

    /// Drains events from `next` for at most `budget`; returns how many were applied.
    pub fn drain(&mut self, mut next: impl FnMut() -> Option<Event>, budget: Duration) -> usize {
        let started = Instant::now();
        let mut applied = 0;
        while started.elapsed() < budget {
            match next() {
                Some(e) => applied += usize::from(self.apply(e)),
                None => break,
            }
        }
        applied
    }

    /// Keeps the current run (finished) as the A/B baseline.
    pub fn pin_baseline(&mut self) -> bool {
        match &self.current {
            Some(run) if run.status == RunStatus::Finished => {
                self.baseline = Some(run.clone());
                true
            }
            _ => false,
        }
    }
}
