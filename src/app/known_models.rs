//! The learned models this run of the app knows besides the bundled ones: those trained in the
//! Training tab (saved to a checkpoint as they finish, so nothing is lost on a crash) and those
//! opened from a file. The Denoiser picker offers them; the Training tab adds to them.

use std::path::{Path, PathBuf};

/// Where a known model came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelOrigin {
    /// Trained in the Training tab since the app started.
    Trained,
    /// Opened from a checkpoint file.
    Opened,
}

/// One learned model the app can run: a checkpoint on disk (PATH.safetensors + PATH.json).
#[derive(Clone, Debug, PartialEq)]
pub struct KnownModel {
    /// What the picker and the list show.
    pub label: String,
    /// The checkpoint, as `DenoiserSpec::Checkpoint` takes it.
    pub path: PathBuf,
    pub origin: ModelOrigin,
}

/// The models trained or opened since the app started, oldest first; one entry per path.
#[derive(Default, Debug)]
pub struct KnownModels {
    models: Vec<KnownModel>,
}

impl KnownModels {
    /// Adds `model`, or replaces the entry with the same path (a retrained or reopened file).
    pub fn add(&mut self, model: KnownModel) {
        match self.models.iter_mut().find(|m| m.path == model.path) {
            Some(existing) => *existing = model,
            None => self.models.push(model),
        }
    }

    pub fn list(&self) -> &[KnownModel] {
        &self.models
    }

    pub fn find(&self, path: &Path) -> Option<&KnownModel> {
        self.models.iter().find(|m| m.path == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(label: &str, path: &str) -> KnownModel {
        KnownModel {
            label: label.into(),
            path: path.into(),
            origin: ModelOrigin::Trained,
        }
    }

    #[test]
    fn one_entry_per_path_and_the_newest_label_wins() {
        let mut known = KnownModels::default();
        known.add(model("a", "/m/a"));
        known.add(model("b", "/m/b"));
        known.add(model("a again", "/m/a"));
        let labels: Vec<&str> = known.list().iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["a again", "b"]);
        assert_eq!(
            known.find(Path::new("/m/b")).map(|m| m.label.as_str()),
            Some("b")
        );
        assert!(known.find(Path::new("/m/c")).is_none());
    }
}
