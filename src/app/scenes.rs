//! Scenes that travel: the text chunks a view PNG carries (the preset and the view options),
//! and opening whatever file a user gives, through a dialog or by dropping it on the window: a
//! view PNG or a preset restores its scene, a sweep preset runs in the Sweep tab, a lesson file
//! opens the lesson, an .npy file or a folder of images becomes the data.

use std::path::Path;

use egui::{Color32, Id, LayerId, Order};

use super::NoiseScopeApp;
use super::lessons::Lesson;
use super::settings::ViewOptions;
use crate::data::DataSpec;
use crate::run::preset::{self, PRESET_KEY};
use crate::run::sweep::SweepSpec;
use crate::train::estimator::is_estimator_checkpoint;

/// The PNG text keyword of the view options (tab, overlays) next to the preset.
pub const VIEW_KEY: &str = "noisescope-view";

impl NoiseScopeApp {
    /// What a view PNG carries: the preset (read by `noisescope sample --preset`) and the view.
    pub(super) fn scene_texts(&self) -> Vec<(&'static str, String)> {
        vec![
            (PRESET_KEY, self.settings.spec.to_json()),
            (
                VIEW_KEY,
                serde_json::to_string(&self.settings.view).unwrap_or_default(),
            ),
        ]
    }

    /// Runs the scene of a preset file (JSON) or a view PNG (its preset and view); a bad file
    /// leaves the settings alone. An open lesson is left first (its locks belong to its scene).
    pub fn load_preset(&mut self, path: &Path) {
        let spec = match preset::load_preset(path) {
            Ok(spec) => spec,
            Err(e) => return self.report_error(format!("{}: {e}", path.display())),
        };
        let view = std::fs::read(path)
            .ok()
            .filter(|bytes| preset::is_png(bytes))
            .and_then(|bytes| preset::png_texts(&bytes).ok())
            .and_then(|texts| texts.into_iter().find(|(k, _)| k == VIEW_KEY))
            .and_then(|(_, text)| serde_json::from_str::<ViewOptions>(&text).ok());
        if self.lesson.take().is_some() {
            self.status.info = Some(format!("left the lesson to open {}", path.display()));
        }
        self.settings.spec = spec;
        if let Some(view) = view {
            self.settings.view = view;
        }
        self.start_run();
    }

    /// Opens `path` by what it is: a folder of images, a checkpoint (a noise-level estimator or
    /// a denoiser, by its sidecar), an .npy data set, a lesson, or a preset (JSON or view PNG).
    pub fn open_path(&mut self, path: &Path) {
        if path.is_dir() {
            return self.load_image_folder(path.to_path_buf());
        }
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        let checkpoint_side = matches!(extension.as_deref(), Some("safetensors" | "json"));
        // A checkpoint's sidecar .json tells a noise-level estimator from a denoiser.
        if checkpoint_side && is_estimator_checkpoint(path) {
            return self.open_estimator(path.to_path_buf());
        }
        if extension.as_deref() == Some("safetensors") {
            return self.open_checkpoint(path.to_path_buf());
        }
        if extension.as_deref() == Some("npy") {
            return self.load_data(DataSpec::Npy {
                path: path.to_path_buf(),
                labels: None,
            });
        }
        let is_lesson = std::fs::read_to_string(path)
            .ok()
            .is_some_and(|text| Lesson::looks_like_lesson(&text));
        if is_lesson {
            self.load_lesson(path);
        } else {
            self.load_preset(path);
        }
    }

    /// Samples a folder of images, at the image size and colour of the current image data.
    pub(super) fn load_image_folder(&mut self, dir: std::path::PathBuf) {
        let (size, rgb) = match &self.settings.spec.data {
            DataSpec::Images { size, rgb, .. } => (*size, *rgb),
            _ => (32, false),
        };
        self.load_data(DataSpec::Images { dir, size, rgb });
    }

    /// Files dropped on the window this frame, opened in order; while files hover, a hint
    /// says what dropping them does.
    pub(super) fn take_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<egui::DroppedFileHandle> =
            ctx.input_mut(|i| std::mem::take(&mut i.raw.dropped_files));
        for file in dropped {
            let is_sweep = std::fs::read_to_string(file.path())
                .is_ok_and(|text| SweepSpec::looks_like_sweep(&text));
            if is_sweep {
                self.open_sweep(ctx, file.path());
            } else {
                self.open_path(file.path());
            }
        }
        if ctx.input(|i| !i.raw.hovered_files.is_empty()) {
            let screen = ctx.content_rect();
            let painter =
                ctx.layer_painter(LayerId::new(Order::Foreground, Id::unique("drop-hint")));
            painter.rect_filled(screen, 0.0, Color32::from_black_alpha(170));
            painter.text(
                screen.center(),
                egui::Align2::CENTER_CENTER,
                "Drop to open: a view PNG or preset (the scene), a sweep, a lesson, a checkpoint (denoiser or noise-level estimator), an .npy file or a folder of images",
                egui::FontId::proportional(20.0),
                Color32::WHITE,
            );
            ctx.request_repaint();
        }
    }
}
