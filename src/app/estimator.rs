//! The app's learned noise-level estimator g(sigma | x) (`RunSpec::estimator`): opened from a
//! file (the Denoiser group's "Open noise-level estimator…", "Open checkpoint…" or a dropped
//! file, told apart from a denoiser by its sidecar .json) or trained in the Training tab, and
//! removed from the Denoiser group. It loads on the worker with each run; a file for other data
//! is one message in the status bar and is not used.

use std::path::{Path, PathBuf};

use crate::run::session::ESTIMATOR_ERROR;
use crate::train::estimator::read_sidecar;

use super::NoiseScopeApp;

/// The estimator's name as the controls and the plot show it: its file name.
pub fn estimator_label(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

impl NoiseScopeApp {
    /// Uses the estimator checkpoint `path` (PATH.safetensors with PATH.json) for the next runs,
    /// unless its sidecar is unreadable or it reads samples of another dimension than the shown
    /// data's: then one message, and the settings stay as they were.
    pub(super) fn open_estimator(&mut self, path: PathBuf) {
        let sidecar = match read_sidecar(&path) {
            Ok(sidecar) => sidecar,
            Err(e) => return self.report_error(format!("{}: {e}", path.display())),
        };
        let data_dim = self
            .store
            .current
            .as_ref()
            .filter(|run| run.spec.data == self.settings.spec.data)
            .and_then(|run| run.state(0))
            .map(|x| x.dim);
        let dim = sidecar.config.dim;
        if let Some(data_dim) = data_dim
            && data_dim != dim
        {
            return self.report_error(format!(
                "{}: this noise-level estimator reads {dim}-dimensional samples (trained on {}), the \
                 data is {data_dim}-dimensional: not loaded",
                path.display(),
                sidecar.data_label
            ));
        }
        self.status.info = Some(format!(
            "noise-level estimator {} (trained on {}, σ in [{}, {}]): its σ_hat is drawn in the Noise level tab",
            estimator_label(&path),
            sidecar.data_label,
            sidecar.config.sigma_min,
            sidecar.config.sigma_max
        ));
        self.settings.set_estimator(Some(path));
    }

    /// A run failed on its learned estimator (a file for other data, unreadable weights): the
    /// estimator is removed, the same settings run without it, and the error says so. Returns
    /// whether that was the failure.
    pub(super) fn estimator_not_used(&mut self) -> bool {
        let about_the_estimator = self
            .store
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(ESTIMATOR_ERROR));
        let Some(mut spec) = self
            .last_started
            .clone()
            .filter(|s| s.estimator.is_some() && about_the_estimator)
        else {
            return false;
        };
        crate::app::settings::drop_estimator(&mut spec);
        if let Some(error) = self.store.last_error.as_mut() {
            error.push_str(" (the noise-level estimator is removed: the run goes on without it)");
        }
        self.run_instead(spec);
        true
    }
}
