//! Every step of every run the UI shows, with no egui types: the current run, the run shown
//! before it and a pinned baseline. The UI drains worker events into it (`drain`, bounded per
//! frame: the one place events are applied) and draws from it.

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

/// What applying one event of the expected run did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Applied {
    Started,
    Step,
    /// Finished or stopped, after this much sampling + diagnostics time of the worker, ms.
    Finished {
        worker_ms: f64,
    },
    Failed,
}

/// What one bounded drain applied (events of outdated runs are dropped and not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Drained {
    pub applied: usize,
    /// The expected run started.
    pub started: bool,
    /// The expected run finished: the worker's sampling + diagnostics time, ms.
    pub finished_worker_ms: Option<f64>,
    /// The expected run failed.
    pub failed: bool,
    /// The budget ran out first: more events may be waiting.
    pub budget_spent: bool,
}

impl Drained {
    fn add(&mut self, applied: Applied) {
        self.applied += 1;
        match applied {
            Applied::Started => self.started = true,
            Applied::Step => {}
            Applied::Finished { worker_ms } => self.finished_worker_ms = Some(worker_ms),
            Applied::Failed => self.failed = true,
        }
    }
}

/// The runs the UI knows about.
#[derive(Default)]
pub struct RunStore {
    pub current: Option<RunRecord>,
    /// The run shown before the current one, drawn until the current one has a state (a rerun
    /// does not blank the views for a frame).
    pub previous: Option<RunRecord>,
    pub baseline: Option<RunRecord>,
    /// The generation the UI asked for last; events of older runs are dropped.
    pub expected: u64,
    /// The last error, shown once in the status bar.
    pub last_error: Option<String>,
    /// Notes from the backend (e.g. a GPU fallback), shown once.
    pub notes: Vec<String>,
}

impl RunStore {
    /// Applies one event; `None` when it belonged to an outdated run.
    pub fn apply(&mut self, event: Event) -> Option<Applied> {
        if event.generation() != self.expected {
            return None;
        }
        Some(match event {
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
                if self.current.as_ref().is_some_and(|r| r.state_count() > 0) {
                    self.previous = self.current.take();
                }
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
                Applied::Started
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
                Applied::Step
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
                Applied::Finished {
                    worker_ms: 1e3 * (sampling_s + diagnostics_s),
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
                Applied::Failed
            }
        })
    }

    /// Applies events from `next` for at most `budget`.
    pub fn drain(&mut self, next: impl FnMut() -> Option<Event>, budget: Duration) -> Drained {
        let mut drained = Drained::default();
        let spent = drain_within(budget, next, |event| {
            if let Some(applied) = self.apply(event) {
                drained.add(applied);
            }
        });
        drained.budget_spent = spent;
        drained
    }

    /// The run to draw: the current one, or the previous one while the current has no state.
    pub fn shown(&self) -> Option<&RunRecord> {
        match (&self.current, &self.previous) {
            (Some(current), Some(previous)) if current.state_count() == 0 => Some(previous),
            (current, _) => current.as_ref(),
        }
    }

    /// Generations whose records are kept (for caches keyed by run).
    pub fn kept_generations(&self) -> Vec<u64> {
        [&self.current, &self.baseline, &self.previous]
            .iter()
            .filter_map(|r| r.as_ref().map(|r| r.generation))
            .collect()
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

/// Feeds events from `next` to `apply` until none is left or `budget` is spent (the per-frame
/// drain of the sampling and the training events); true when the budget ran out first.
pub fn drain_within<E>(
    budget: Duration,
    mut next: impl FnMut() -> Option<E>,
    mut apply: impl FnMut(E),
) -> bool {
    let started = Instant::now();
    loop {
        if started.elapsed() >= budget {
            return true;
        }
        let Some(event) = next() else {
            return false;
        };
        apply(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataSet;
    use crate::error::Result;

    fn started(generation: u64) -> Result<Event> {
        Ok(Event::Started {
            generation,
            spec: Box::default(),
            backend: "cpu".into(),
            notes: vec![format!("note {generation}")],
            data: DataView {
                label: "toy".into(),
                points: Arc::new(DataSet::new(1, 2, vec![0.0, 1.0], None, None)?),
                image: None,
                classes: 0,
            },
            sigmas: vec![1.0, 0.0],
            tangent_c: None,
            theory: None,
        })
    }

    fn step(generation: u64) -> Event {
        let state = Arc::new(Batch::zeros(1, 2));
        Event::Step {
            generation,
            snapshot: StepSnapshot {
                step: 0,
                sigma: 1.0,
                sigma_next: 0.0,
                x: state.clone(),
                denoised: state,
                evaluations: 1,
            },
            records: Vec::new(),
            elapsed_s: 0.001,
        }
    }

    fn finished(generation: u64) -> Event {
        Event::Finished {
            generation,
            x_final: Arc::new(Batch::zeros(1, 2)),
            sigmas: vec![1.0, 0.0],
            records: Vec::new(),
            straightness: Vec::new(),
            evaluations: 1,
            sampling_s: 0.002,
            diagnostics_s: 0.001,
            stopped: false,
            notes: Vec::new(),
            theory: None,
        }
    }

    /// Drains `events` in order with an unbounded budget.
    fn drain(store: &mut RunStore, events: Vec<Event>) -> Drained {
        let mut events = events.into_iter();
        store.drain(|| events.next(), Duration::from_secs(60))
    }

    #[test]
    fn a_drain_applies_the_expected_run_and_says_what_happened() -> Result<()> {
        let mut store = RunStore {
            expected: 2,
            ..Default::default()
        };
        // Generation 1 is outdated: its events are dropped and not counted.
        let drained = drain(
            &mut store,
            vec![started(1)?, step(1), started(2)?, step(2), finished(2)],
        );
        assert_eq!(drained.applied, 3);
        assert!(drained.started && !drained.failed && !drained.budget_spent);
        let worker_ms = drained.finished_worker_ms.unwrap_or(f64::NAN);
        assert!((worker_ms - 3.0).abs() < 1e-9, "{worker_ms}");
        let run = store
            .current
            .as_ref()
            .map(|r| (r.generation, r.state_count()));
        assert_eq!(run, Some((2, 2)), "x_0 and the final state");
        assert_eq!(store.notes, vec!["note 2".to_string()]);
        assert!(store.previous.is_none(), "nothing was shown before");

        store.expected = 3;
        let failed = drain(
            &mut store,
            vec![Event::Failed {
                generation: 3,
                message: "bad file".into(),
            }],
        );
        assert_eq!(
            (failed.applied, failed.failed, failed.started),
            (1, true, false)
        );
        assert_eq!(store.last_error.as_deref(), Some("bad file"));
        assert_eq!(
            store.current.as_ref().map(|r| r.status.clone()),
            Some(RunStatus::Finished),
            "a run that failed before it started leaves the shown one alone"
        );
        Ok(())
    }

    #[test]
    fn a_rerun_keeps_the_previous_run_shown_until_its_first_state() -> Result<()> {
        let mut store = RunStore {
            expected: 1,
            ..Default::default()
        };
        drain(&mut store, vec![started(1)?, step(1), finished(1)]);
        store.expected = 2;
        drain(&mut store, vec![started(2)?]);
        let shown = |s: &RunStore| s.shown().map(|r| r.generation);
        assert_eq!(shown(&store), Some(1), "the new run has no state yet");
        assert_eq!(store.kept_generations(), vec![2, 1]);
        drain(&mut store, vec![step(2)]);
        assert_eq!(shown(&store), Some(2));
        // A run replaced before its first state is not kept as the previous one.
        store.expected = 3;
        drain(&mut store, vec![started(3)?]);
        store.expected = 4;
        drain(&mut store, vec![started(4)?]);
        assert_eq!(store.previous.as_ref().map(|r| r.generation), Some(2));
        Ok(())
    }

    #[test]
    fn a_spent_budget_leaves_the_rest_waiting() -> Result<()> {
        let mut store = RunStore {
            expected: 1,
            ..Default::default()
        };
        let mut events = vec![started(1)?, step(1)].into_iter();
        let drained = store.drain(|| events.next(), Duration::ZERO);
        assert_eq!((drained.applied, drained.budget_spent), (0, true));
        assert_eq!(events.len(), 2, "nothing was taken");
        Ok(())
    }
}
