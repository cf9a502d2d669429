//! The app's exports: a PNG of the current view (a cropped window screenshot) or of an image
//! grid, the run as the CLI's files (`run::export::write_run`), and preset files (`RunSpec`
//! JSON, readable by `noisescope sample --preset`). Encoding and disk writes run on short-lived
//! named threads; each reports one line back to the status bar. Paths come from dialogs.rs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use crate::data::grid::{export_scale, image_grid};
use crate::error::{Error, Result};
use crate::run::RunSpec;
use crate::run::export::{RunArtifacts, write_run};
use crate::run::store::RunRecord;

/// The outcome of one export: a message for the status bar.
pub type Outcome = std::result::Result<String, String>;

/// Export jobs in flight and their reports.
pub struct Exports {
    tx: Sender<Outcome>,
    rx: Receiver<Outcome>,
    /// Jobs started and not yet reported.
    pending: usize,
}

impl Default for Exports {
    fn default() -> Self {
        let (tx, rx) = channel();
        Exports { tx, rx, pending: 0 }
    }
}

/// Runs `job` on a named thread, reports its outcome and wakes the UI to show it.
fn spawn_job(
    tx: Sender<Outcome>,
    waker: egui::Context,
    what: &'static str,
    job: impl FnOnce() -> Outcome + Send + 'static,
) {
    let fallback = tx.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("noisescope-export-{what}"))
        .spawn(move || {
            let _ = tx.send(job());
            waker.request_repaint();
        });
    if let Err(e) = spawned {
        let _ = fallback.send(Err(format!("cannot start the {what} export: {e}")));
    }
}

impl Exports {
    /// Finished jobs' reports.
    pub fn poll(&mut self) -> Vec<Outcome> {
        let done: Vec<Outcome> = self.rx.try_iter().collect();
        self.pending = self.pending.saturating_sub(done.len());
        done
    }

    /// Whether a job has not reported yet.
    pub fn busy(&self) -> bool {
        self.pending > 0
    }

    /// Asks for a screenshot of the next frame and saves `crop` (points) of it as a PNG.
    pub fn view_png(&mut self, ctx: &egui::Context, path: PathBuf, crop: Option<egui::Rect>) {
        self.pending += 1;
        let tx = self.tx.clone();
        let ppp = ctx.pixels_per_point();
        let waker = ctx.clone();
        ctx.request_screenshot(move |image: Arc<egui::ColorImage>| {
            spawn_job(tx, waker, "png", move || {
                save_screenshot(&image, crop, ppp, &path)
                    .map(|()| format!("saved the view to {}", path.display()))
                    .map_err(|e| e.to_string())
            });
        });
    }

    /// Saves the image grid of state `step` (image data only).
    pub fn grid_png(&mut self, ctx: &egui::Context, run: &RunRecord, step: usize, path: PathBuf) {
        let (Some(shape), Some(state)) = (run.data.image, run.state(step).cloned()) else {
            let _ = self.tx.send(Err("the shown data are not images".into()));
            self.pending += 1;
            return;
        };
        self.pending += 1;
        spawn_job(self.tx.clone(), ctx.clone(), "grid", move || {
            image_grid(&state.data, state.rows, shape, 256, export_scale(shape))
                .save(&path)
                .map(|()| format!("saved the grid of x_{step} to {}", path.display()))
                .map_err(|e| format!("{}: {e}", path.display()))
        });
    }

    /// Writes the finished run into `dir` with the CLI's file set.
    pub fn run_folder(
        &mut self,
        ctx: &egui::Context,
        run: &RunRecord,
        notes: &[String],
        dir: PathBuf,
    ) {
        self.pending += 1;
        let run = run.clone();
        let notes = notes.to_vec();
        spawn_job(self.tx.clone(), ctx.clone(), "run", move || {
            RunArtifacts::from_record(&run, &notes)
                .and_then(|a| write_run(&dir, &a))
                .map(|()| {
                    format!(
                        "wrote traj.npy, denoised.npy, sigmas.npy, diagnostics.csv, run.json to {}",
                        dir.display()
                    )
                })
                .map_err(|e| e.to_string())
        });
    }
}

/// Crops a screenshot to `crop` (in points) and writes it as PNG.
fn save_screenshot(
    image: &egui::ColorImage,
    crop: Option<egui::Rect>,
    ppp: f32,
    path: &Path,
) -> Result<()> {
    let [w, h] = image.size;
    let raw: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    let full = image::RgbaImage::from_raw(w as u32, h as u32, raw)
        .ok_or_else(|| Error::Shape("the screenshot has the wrong size".into()))?;
    let cropped = match crop {
        Some(r) => {
            let x = (r.min.x * ppp).max(0.0) as u32;
            let y = (r.min.y * ppp).max(0.0) as u32;
            let cw = ((r.width() * ppp) as u32).min((w as u32).saturating_sub(x));
            let ch = ((r.height() * ppp) as u32).min((h as u32).saturating_sub(y));
            image::imageops::crop_imm(&full, x, y, cw.max(1), ch.max(1)).to_image()
        }
        None => full,
    };
    cropped
        .save(path)
        .map_err(|e| Error::io(path, std::io::Error::other(e)))
}

/// Writes a preset (the `RunSpec` as JSON).
pub fn save_preset(spec: &RunSpec, path: &Path) -> Result<()> {
    std::fs::write(path, spec.to_json()).map_err(|e| Error::io(path, e))
}

/// Reads and validates a preset.
pub fn load_preset(path: &Path) -> Result<RunSpec> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    RunSpec::from_json(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_through_a_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("p.json");
        let spec = RunSpec {
            seed: 42,
            batch: 17,
            ..Default::default()
        };
        save_preset(&spec, &path)?;
        assert_eq!(load_preset(&path)?, spec);
        std::fs::write(&path, "{oops").map_err(|e| Error::io(&path, e))?;
        assert!(load_preset(&path).is_err());
        Ok(())
    }
}
