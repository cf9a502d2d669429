//! The training run the Training tab shows, with no egui types: trainer events applied in order
//! (`drain`, bounded per frame like the sampling events), the loss curve raw and smoothed, the
//! latest per-sigma losses, InfoNoise's profiles as they evolve, the exact floor and the preview.

use std::time::Duration;

use crate::core::infonoise::InfoNoiseProfile;
use crate::train::trainer::{BinnedLoss, Outcome};

use super::store::drain_within;
use super::training::{ExactFloor, Preview, SavedModel, TrainEnd, TrainEvent, TrainStart};

/// Weight of the newest step in the smoothed loss (an EMA over ~50 steps).
const SMOOTHING: f64 = 0.02;
/// InfoNoise profiles kept for the "as it evolves" curves.
const PROFILES_KEPT: usize = 6;

#[derive(Clone, Debug, Default, PartialEq)]
pub enum TrainStatus {
    /// No run asked for yet.
    #[default]
    Idle,
    /// Asked for; the data are loading.
    Preparing,
    Training,
    Finished,
    Cancelled,
    Failed(String),
}

impl TrainStatus {
    /// Whether a run is asked for and has not ended.
    pub fn is_active(&self) -> bool {
        matches!(self, TrainStatus::Preparing | TrainStatus::Training)
    }
}

/// A checkpoint to list among the known models: written by a finished run or "Save", or opened.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCheckpoint {
    pub model: SavedModel,
    pub opened: bool,
}

/// What one bounded drain applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainDrained {
    pub applied: usize,
    /// The budget ran out first: more events may be waiting.
    pub budget_spent: bool,
    /// Checkpoints written or opened, for the list of known models.
    pub checkpoints: Vec<NewCheckpoint>,
    /// Errors to show once (a failed run, save or open).
    pub errors: Vec<String>,
    /// Passing notes (a save, an open, a finished run).
    pub notes: Vec<String>,
}

/// The expected training run as recorded.
#[derive(Default)]
pub struct TrainingRecord {
    /// The run the UI asked for last; events of older runs are dropped.
    pub expected: u64,
    pub status: TrainStatus,
    pub start: Option<TrainStart>,
    pub step: usize,
    pub total: usize,
    /// (step, loss) of every step so far.
    pub losses: Vec<(usize, f64)>,
    /// The EMA of the losses, one per entry of `losses`.
    pub smoothed: Vec<f64>,
    pub lr: f64,
    pub steps_per_s: f64,
    pub seconds_left: f64,
    /// The latest per-sigma losses and the step they were reported at.
    pub binned: Option<(usize, BinnedLoss)>,
    /// InfoNoise's profile at recent reports, oldest first, with their steps.
    pub profiles: Vec<(usize, InfoNoiseProfile)>,
    pub exact: Option<ExactFloor>,
    pub preview: Option<Preview>,
    pub end: Option<TrainEnd>,
}

impl TrainingRecord {
    /// Starts recording run `run` (the events of earlier runs are dropped from now on).
    pub fn expect(&mut self, run: u64) {
        *self = TrainingRecord {
            expected: run,
            status: TrainStatus::Preparing,
            ..TrainingRecord::default()
        };
    }

    /// Applies one event.
    pub fn apply(&mut self, event: TrainEvent, drained: &mut TrainDrained) {
        drained.applied += 1;
        let run = match &event {
            TrainEvent::Started { run, .. }
            | TrainEvent::Exact { run, .. }
            | TrainEvent::Progress { run, .. }
            | TrainEvent::Preview { run, .. }
            | TrainEvent::Finished { run, .. }
            | TrainEvent::Failed { run, .. } => Some(*run),
            TrainEvent::Saved(_) | TrainEvent::Opened(_) => None,
        };
        if run.is_some_and(|r| r != self.expected) {
            drained.applied -= 1;
            return;
        }
        match event {
            TrainEvent::Started { start, .. } => {
                self.status = TrainStatus::Training;
                self.step = start.first_step;
                self.total = start.total;
                self.start = Some(*start);
            }
            TrainEvent::Exact { floor, .. } => self.exact = Some(*floor),
            TrainEvent::Progress { update, .. } => {
                let mut smooth = self.smoothed.last().copied();
                for &(step, loss) in &update.losses {
                    let s = match smooth {
                        Some(prev) if loss.is_finite() => prev + SMOOTHING * (loss - prev),
                        Some(prev) => prev,
                        None => loss,
                    };
                    smooth = Some(s);
                    self.losses.push((step, loss));
                    self.smoothed.push(s);
                }
                self.step = update.step;
                self.total = update.total;
                self.lr = update.lr;
                self.steps_per_s = update.steps_per_s;
                self.seconds_left = update.seconds_left;
                if let Some(b) = update.binned {
                    self.binned = Some((update.step, b));
                }
                // Before InfoNoise's first rebuild its estimate is a placeholder: not drawn.
                if let Some(p) = update.sigma_profile.filter(|p| p.rebuilds > 0) {
                    if self.profiles.len() == PROFILES_KEPT {
                        self.profiles.remove(0);
                    }
                    self.profiles.push((update.step, p));
                }
            }
            TrainEvent::Preview { preview, .. } => self.preview = Some(preview),
            TrainEvent::Finished { end, .. } => {
                self.status = match end.outcome {
                    Outcome::Finished => TrainStatus::Finished,
                    Outcome::Cancelled => TrainStatus::Cancelled,
                };
                self.step = end.steps_done;
                match &end.checkpoint {
                    Some(Ok(model)) => {
                        drained.notes.push(format!(
                            "trained {} in {:.1} s ({:.0} steps/s), saved to {}",
                            model.label,
                            end.train_s,
                            end.steps_per_s,
                            model.path.display()
                        ));
                        drained.checkpoints.push(NewCheckpoint {
                            model: model.clone(),
                            opened: false,
                        });
                    }
                    Some(Err(e)) => drained
                        .errors
                        .push(format!("the trained model could not be saved: {e}")),
                    None => {}
                }
                self.end = Some(*end);
            }
            TrainEvent::Failed { message, .. } => {
                drained.errors.push(format!("training failed: {message}"));
                self.status = TrainStatus::Failed(message);
            }
            TrainEvent::Saved(answer) => file_answer(answer, false, drained),
            TrainEvent::Opened(answer) => file_answer(answer, true, drained),
        }
    }

    /// Applies waiting events (`next`) until none is left or `budget` is spent.
    pub fn drain(
        &mut self,
        next: impl FnMut() -> Option<TrainEvent>,
        budget: Duration,
    ) -> TrainDrained {
        let mut drained = TrainDrained::default();
        let spent = drain_within(budget, next, |event| self.apply(event, &mut drained));
        drained.budget_spent = spent;
        drained
    }

    /// The smoothed loss at the start and at the end of the curve.
    pub fn smoothed_ends(&self) -> Option<(f64, f64)> {
        Some((*self.smoothed.first()?, *self.smoothed.last()?))
    }
}

/// A "Save checkpoint" or "Open checkpoint" answer: a model to list, or why not.
fn file_answer(
    answer: std::result::Result<SavedModel, String>,
    opened: bool,
    drained: &mut TrainDrained,
) {
    let what = if opened { "open" } else { "save" };
    match answer {
        Ok(model) => {
            drained.notes.push(format!(
                "{} {}",
                if opened {
                    "opened"
                } else {
                    "saved the model to"
                },
                model.path.display()
            ));
            drained.checkpoints.push(NewCheckpoint { model, opened });
        }
        Err(e) => drained
            .errors
            .push(format!("could not {what} the checkpoint: {e}")),
    }
}
