//! Exact vs learned (issue 10): "Compare with exact" runs the shown run's settings and noise with
//! the exact denoiser (with a learned one when the shown run is exact) on the worker, pins that
//! run as the baseline and shows the compared run again, so every plot overlays the two; a
//! learned model that fails (other data, a missing or broken file) is named and not used: the
//! same settings run with the exact denoiser; "Open checkpoint…" adds a model to the picker.

use std::path::PathBuf;
use std::time::Instant;

use crate::data::DataSpec;
use crate::models::learned::bundled_for;
use crate::run::spec::DenoiserSpec;
use crate::run::store::{RunRecord, RunStatus};

use super::NoiseScopeApp;
use super::controls::{CompareOffer, DenoiserInfo, picker_label};
use super::known_models::{KnownModel, ModelOrigin};

/// A comparison in flight: the generation of the partner run and the run it is compared with,
/// shown again once the partner is pinned.
pub(super) struct CompareJob {
    generation: u64,
    compared: RunRecord,
}

/// The data and denoiser of the newest learned run that finished: the partner "Compare with
/// exact" offers for an exact run on that data.
pub(super) type LastLearned = Option<(DataSpec, DenoiserSpec)>;

impl NoiseScopeApp {
    /// What the Denoiser group shows: the known models and what a comparison would run.
    pub(super) fn denoiser_info(&self) -> DenoiserInfo {
        DenoiserInfo {
            known: self.known_models.list().to_vec(),
            compare: self.compare_offer(),
        }
    }

    /// The denoiser "Compare with exact" would run beside the shown run, or why it cannot now.
    pub fn compare_offer(&self) -> CompareOffer {
        let unavailable = |why: &str| CompareOffer::Unavailable(why.into());
        let Some(run) = self.store.current.as_ref() else {
            return unavailable("no run yet");
        };
        if self.compare_running() {
            return unavailable("a comparison is running");
        }
        if run.status != RunStatus::Finished || self.is_sampling() {
            return unavailable("wait for the run to finish");
        }
        if self.settings.spec != run.spec {
            return unavailable("the settings differ from the shown run's (rerun first)");
        }
        if run.spec.denoiser != DenoiserSpec::Exact {
            return CompareOffer::With(DenoiserSpec::Exact);
        }
        let learned = self
            .last_learned
            .as_ref()
            .filter(|(data, _)| *data == run.spec.data)
            .map(|(_, denoiser)| denoiser.clone())
            .or_else(|| bundled_for(&run.spec.data).map(|n| DenoiserSpec::Bundled(n.into())));
        match learned {
            Some(denoiser) => CompareOffer::With(denoiser),
            None => unavailable(&format!(
                "no learned model for {} yet: pick or open one above",
                run.spec.data.label()
            )),
        }
    }

    /// Whether a comparison's partner run is in flight.
    pub fn compare_running(&self) -> bool {
        self.compare
            .as_ref()
            .is_some_and(|job| job.generation == self.store.expected)
    }

    /// "Compare with exact": runs the shown run's settings (same seed, so the same noise) with
    /// the other denoiser; `compare_finished` pins it. The settings stay the shown run's.
    pub fn compare_with_exact(&mut self) {
        let partner = match self.compare_offer() {
            CompareOffer::With(partner) => partner,
            CompareOffer::Unavailable(why) => {
                self.status.info = Some(format!("Compare with exact: {why}"));
                return;
            }
        };
        let (Some(run), Some(worker)) = (self.store.current.clone(), self.worker.as_mut()) else {
            return;
        };
        let mut spec = run.spec.clone();
        spec.denoiser = partner;
        self.store.expected = worker.start(spec);
        self.started_at = Some(Instant::now());
        self.compare = Some(CompareJob {
            generation: self.store.expected,
            compared: run,
        });
    }

    /// After a finished run: a comparison's partner becomes the baseline and the compared run
    /// is shown again; a learned run is remembered as the partner for exact runs on its data.
    pub(super) fn run_finished(&mut self) {
        let Some(run) = self.store.current.as_ref() else {
            return;
        };
        if run.status == RunStatus::Finished && run.spec.denoiser != DenoiserSpec::Exact {
            self.last_learned = Some((run.spec.data.clone(), run.spec.denoiser.clone()));
        }
        let generation = run.generation;
        let Some(job) = self.compare.take_if(|job| job.generation == generation) else {
            return;
        };
        if run.status != RunStatus::Finished {
            return;
        }
        let pinned = picker_label(&run.spec.denoiser, self.known_models.list());
        self.store.baseline = self.store.current.replace(job.compared);
        self.settings.view.show_baseline = true;
        self.status.info = Some(format!(
            "pinned the {pinned} run on the same noise and settings as the baseline"
        ));
    }

    /// A failed run that was a comparison's partner: the compared run is shown again and the
    /// error says what failed. Returns whether it was one.
    pub(super) fn compare_failed(&mut self) -> bool {
        let Some(job) = self.compare.take() else {
            return false;
        };
        if job.generation != self.store.expected {
            return false;
        }
        self.store.current = Some(job.compared);
        if let Some(error) = self.store.last_error.as_mut() {
            *error = format!("Compare with exact: {error}");
        }
        true
    }

    /// A run with a learned model failed (trained on other data, a missing or broken file):
    /// the model is not used, the same settings run with the exact denoiser and the error says
    /// so. Returns whether the failed run was learned.
    pub(super) fn learned_not_used(&mut self) -> bool {
        let Some(mut spec) = self
            .last_started
            .clone()
            .filter(|s| s.denoiser != DenoiserSpec::Exact)
        else {
            return false;
        };
        spec.denoiser = DenoiserSpec::Exact;
        if let Some(error) = self.store.last_error.as_mut() {
            error.push_str(" (the learned model is not used: the exact denoiser runs)");
        }
        self.run_instead(spec);
        true
    }

    /// After a failed run: `spec` becomes the settings, and runs unless the shown run is it.
    pub(super) fn run_instead(&mut self, spec: crate::run::RunSpec) {
        self.settings.spec = spec.clone();
        let shown = self.store.current.as_ref().map(|r| &r.spec);
        if shown == Some(&spec) {
            self.last_started = Some(spec);
        } else {
            self.start_run();
        }
    }

    /// "Open checkpoint…" answered: the model joins the picker and is chosen; it loads on the
    /// worker with the next run.
    pub(super) fn open_checkpoint(&mut self, path: PathBuf) {
        let label = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        self.known_models.add(KnownModel {
            label,
            path: path.clone(),
            origin: ModelOrigin::Opened,
        });
        self.settings.spec.denoiser = DenoiserSpec::Checkpoint(path);
    }
}
