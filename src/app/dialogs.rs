//! File dialogs that never block the UI thread, and that say so when none can open. A dialog is
//! opened on the UI thread (rfd's advice: macOS wants it there) and awaited on a named
//! `noisescope-dialog` thread, which sends the answer back through a channel and wakes the UI;
//! `Dialogs::poll` hands it to the app's logic with the `FileTask` the path is for.
//!
//! rfd answers "no path" both when the user cancels and when no dialog could open (on Linux: no
//! desktop portal and no zenity, e.g. under a bare Xvfb), and says which only in its log. So while
//! a dialog is open its errors are kept (`RfdErrors`), and "no path" after an error with no zenity
//! to fall back on reads as "no dialog could open": the status bar says so instead of nothing.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::sync::{Arc, Mutex, Once};

/// What a dialog picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogKind {
    OpenFile,
    OpenFolder,
    SaveFile,
}

/// One dialog: what it picks, its title, its file filter (name, extensions) and suggested name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialogSpec {
    pub kind: DialogKind,
    pub title: &'static str,
    pub filter: Option<(&'static str, &'static [&'static str])>,
    pub file_name: Option<&'static str>,
}

/// What the picked path is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileTask {
    OpenImageFolder,
    OpenNpy,
    LoadPreset,
    SavePreset,
    ViewPng,
    GridPng,
    RunFolder,
    OpenLesson,
    SaveLesson,
    /// The Training tab's model, written as PATH.safetensors + PATH.json.
    SaveCheckpoint,
    /// A checkpoint for the list of known models.
    OpenCheckpoint,
    /// A checkpoint to run: listed and picked in the Denoiser group.
    UseCheckpoint,
    /// A sweep preset (sweep.json) to run in the Sweep tab.
    OpenSweep,
    /// A learned noise-level estimator for the runs (`RunSpec::estimator`).
    OpenEstimator,
}

impl FileTask {
    pub const ALL: [FileTask; 14] = [
        FileTask::OpenImageFolder,
        FileTask::OpenNpy,
        FileTask::LoadPreset,
        FileTask::SavePreset,
        FileTask::ViewPng,
        FileTask::GridPng,
        FileTask::RunFolder,
        FileTask::OpenLesson,
        FileTask::SaveLesson,
        FileTask::SaveCheckpoint,
        FileTask::OpenCheckpoint,
        FileTask::UseCheckpoint,
        FileTask::OpenSweep,
        FileTask::OpenEstimator,
    ];

    /// The menu entry or button that asked, for messages.
    pub fn title(self) -> &'static str {
        match self {
            FileTask::OpenImageFolder => "Open folder",
            FileTask::OpenNpy => "Open .npy",
            FileTask::LoadPreset => "Load preset",
            FileTask::SavePreset => "Save preset",
            FileTask::ViewPng => "PNG of the view",
            FileTask::GridPng => "Image grid PNG",
            FileTask::RunFolder => "Run as NPY + CSV",
            FileTask::OpenLesson => "Open lesson file",
            FileTask::SaveLesson => "Save as lesson",
            FileTask::SaveCheckpoint => "Save checkpoint",
            FileTask::OpenCheckpoint => "Open checkpoint",
            FileTask::UseCheckpoint => "Run a checkpoint",
            FileTask::OpenSweep => "Open sweep",
            FileTask::OpenEstimator => "Open noise-level estimator",
        }
    }

    pub fn dialog(self) -> DialogSpec {
        const PNG: (&str, &[&str]) = ("PNG", &["png"]);
        const PRESET: (&str, &[&str]) = ("preset", &["json"]);
        const SCENE: (&str, &[&str]) = ("preset or view PNG", &["json", "png"]);
        const LESSON: (&str, &[&str]) = ("lesson", &["json"]);
        const CHECKPOINT: (&str, &[&str]) = ("checkpoint", &["safetensors"]);
        let (kind, title, filter, file_name) = match self {
            FileTask::OpenImageFolder => (
                DialogKind::OpenFolder,
                "Open a folder of images",
                None,
                None,
            ),
            FileTask::OpenNpy => (
                DialogKind::OpenFile,
                "Open an [N, D] .npy",
                Some(("NumPy array", &["npy"][..])),
                None,
            ),
            FileTask::LoadPreset => (
                DialogKind::OpenFile,
                "Load a preset or a view PNG",
                Some(SCENE),
                None,
            ),
            FileTask::SavePreset => (
                DialogKind::SaveFile,
                "Save the settings as a preset",
                Some(PRESET),
                Some("preset.json"),
            ),
            FileTask::ViewPng => (
                DialogKind::SaveFile,
                "Save the view as a PNG",
                Some(PNG),
                Some("noisescope-view.png"),
            ),
            FileTask::GridPng => (
                DialogKind::SaveFile,
                "Save the image grid as a PNG",
                Some(PNG),
                Some("noisescope-grid.png"),
            ),
            FileTask::RunFolder => (
                DialogKind::OpenFolder,
                "Folder for the run's files",
                None,
                None,
            ),
            FileTask::OpenLesson => (DialogKind::OpenFile, "Open a lesson", Some(LESSON), None),
            FileTask::SaveLesson => (
                DialogKind::SaveFile,
                "Save the scene as a lesson",
                Some(LESSON),
                Some("lesson.json"),
            ),
            FileTask::SaveCheckpoint => (
                DialogKind::SaveFile,
                "Save the trained model",
                Some(CHECKPOINT),
                Some("model.safetensors"),
            ),
            FileTask::OpenCheckpoint => (
                DialogKind::OpenFile,
                "Open a checkpoint (.safetensors with its .json)",
                Some(CHECKPOINT),
                None,
            ),
            FileTask::UseCheckpoint => (
                DialogKind::OpenFile,
                "Run a learned model (PATH.safetensors, its PATH.json beside it)",
                Some(CHECKPOINT),
                None,
            ),
            FileTask::OpenEstimator => (
                DialogKind::OpenFile,
                "Open a noise-level estimator (PATH.safetensors, its PATH.json beside it)",
                Some(CHECKPOINT),
                None,
            ),
            FileTask::OpenSweep => (
                DialogKind::OpenFile,
                "Open a sweep preset (sweep.json)",
                Some(("sweep preset", &["json"][..])),
                None,
            ),
        };
        DialogSpec {
            kind,
            title,
            filter,
            file_name,
        }
    }
}

/// A dialog's answer: the path, `None` when the user cancelled, or why no dialog could open.
pub type DialogAnswer = std::result::Result<Option<PathBuf>, String>;

/// The wait for a dialog's answer; it runs on the dialog thread.
pub type PendingDialog = Box<dyn FnOnce() -> DialogAnswer + Send>;

/// Where file dialogs come from: the desktop's (`SystemDialogs`) or a stand-in in tests.
pub trait FileDialogs: Send + Sync {
    /// Opens a dialog without blocking (called on the UI thread) and returns the wait for its
    /// answer.
    fn open(&self, spec: DialogSpec) -> PendingDialog;
}

/// The desktop's file dialogs (rfd: the xdg desktop portal or zenity on Linux, the native ones
/// on macOS and Windows).
pub struct SystemDialogs;

type PathFuture = Pin<Box<dyn Future<Output = Option<rfd::FileHandle>> + Send>>;

impl FileDialogs for SystemDialogs {
    fn open(&self, spec: DialogSpec) -> PendingDialog {
        let mut dialog = rfd::AsyncFileDialog::new().set_title(spec.title);
        if let Some((name, extensions)) = spec.filter {
            dialog = dialog.add_filter(name, extensions);
        }
        if let Some(name) = spec.file_name {
            dialog = dialog.set_file_name(name);
        }
        let picked: PathFuture = match spec.kind {
            DialogKind::OpenFile => Box::pin(dialog.pick_file()),
            DialogKind::OpenFolder => Box::pin(dialog.pick_folder()),
            DialogKind::SaveFile => Box::pin(dialog.save_file()),
        };
        Box::new(move || {
            RFD_ERRORS.arm();
            let picked = pollster::block_on(picked).map(|h| h.path().to_path_buf());
            rfd_answer(picked, &RFD_ERRORS.disarm(), zenity_on_path())
        })
    }
}

/// Reads rfd's "no path": after an rfd error with no zenity to fall back on, no dialog opened
/// (the portal failed first); otherwise the user cancelled. rfd's own words go to stderr: the
/// status bar gets the short reason and the fix.
fn rfd_answer(picked: Option<PathBuf>, rfd_errors: &[String], zenity: bool) -> DialogAnswer {
    match picked {
        Some(path) => Ok(Some(path)),
        None if !zenity && !rfd_errors.is_empty() => {
            eprintln!("note: the file dialog failed: {}", rfd_errors.join("; "));
            Err("no desktop portal and no zenity: install xdg-desktop-portal or zenity".into())
        }
        None => Ok(None),
    }
}

fn zenity_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("zenity").is_file()))
}

/// The errors rfd logs while a dialog is open (rfd reports a dialog that could not open only
/// through the `log` crate). Installed as the process's logger on the first system dialog,
/// unless the program has one already; everything else it is given is dropped, as it was
/// without a logger.
struct RfdErrors {
    armed: AtomicBool,
    errors: Mutex<Vec<String>>,
}

static RFD_ERRORS: RfdErrors = RfdErrors {
    armed: AtomicBool::new(false),
    errors: Mutex::new(Vec::new()),
};

impl RfdErrors {
    fn arm(&'static self) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            if log::set_logger(self).is_ok() {
                log::set_max_level(log::LevelFilter::Error);
            }
        });
        self.disarm();
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Stops keeping errors; returns those kept.
    fn disarm(&self) -> Vec<String> {
        self.armed.store(false, Ordering::SeqCst);
        self.errors
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }
}

impl log::Log for RfdErrors {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Error
            && metadata.target().starts_with("rfd")
            && self.armed.load(Ordering::SeqCst)
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata())
            && let Ok(mut errors) = self.errors.lock()
        {
            errors.push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// The app's file dialogs: at most one open at a time, its answer polled each frame.
pub struct Dialogs {
    backend: Arc<dyn FileDialogs>,
    open: Option<(FileTask, Receiver<DialogAnswer>)>,
}

impl Default for Dialogs {
    fn default() -> Self {
        Dialogs::new(Arc::new(SystemDialogs))
    }
}

impl Dialogs {
    pub fn new(backend: Arc<dyn FileDialogs>) -> Self {
        Dialogs {
            backend,
            open: None,
        }
    }

    /// Whether a dialog waits for the user.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Opens the dialog for `task`; its answer comes through `poll` (and wakes `ctx`). Refused
    /// while another one is open, or when no dialog thread can start.
    pub fn open(&mut self, ctx: &egui::Context, task: FileTask) -> std::result::Result<(), String> {
        if let Some((open, _)) = &self.open {
            return Err(format!(
                "{}: the {} dialog is still open",
                task.title(),
                open.title()
            ));
        }
        let pending = self.backend.open(task.dialog());
        let (tx, rx) = channel();
        let waker = ctx.clone();
        std::thread::Builder::new()
            .name("noisescope-dialog".into())
            .spawn(move || {
                let _ = tx.send(pending());
                waker.request_repaint();
            })
            .map_err(|e| format!("{}: cannot start the dialog thread: {e}", task.title()))?;
        self.open = Some((task, rx));
        Ok(())
    }

    /// The open dialog's answer, once there is one.
    pub fn poll(&mut self) -> Option<(FileTask, DialogAnswer)> {
        let (task, rx) = self.open.as_ref()?;
        let answer = match rx.try_recv() {
            Ok(answer) => answer,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => {
                Err("the dialog thread ended without an answer".into())
            }
        };
        let task = *task;
        self.open = None;
        Some((task, answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn no_path_after_an_rfd_error_without_zenity_means_no_dialog_opened() {
        let error = vec!["Failed to connect to session bus".to_string()];
        let path = Some(PathBuf::from("/tmp/p.json"));
        assert_eq!(rfd_answer(path.clone(), &error, false), Ok(path));
        let why = rfd_answer(None, &error, false).expect_err("no dialog opened");
        assert!(why.contains("no desktop portal and no zenity"), "{why}");
        // Zenity ran after the portal failed: the user cancelled it.
        assert_eq!(rfd_answer(None, &error, true), Ok(None));
        // The portal opened and the user cancelled.
        assert_eq!(rfd_answer(None, &[], false), Ok(None));
    }

    #[test]
    fn every_task_has_a_dialog_of_the_right_kind() {
        use FileTask::*;
        for task in FileTask::ALL {
            let spec = task.dialog();
            let want = match task {
                OpenImageFolder | RunFolder => DialogKind::OpenFolder,
                OpenNpy | LoadPreset | OpenLesson | OpenCheckpoint | UseCheckpoint | OpenSweep
                | OpenEstimator => DialogKind::OpenFile,
                SavePreset | ViewPng | GridPng | SaveLesson | SaveCheckpoint => {
                    DialogKind::SaveFile
                }
            };
            assert_eq!(spec.kind, want, "{task:?}");
            assert!(!spec.title.is_empty() && !task.title().is_empty());
            // Files have a filter; saved ones a suggested name with the filter's extension.
            assert_eq!(
                spec.filter.is_some(),
                want != DialogKind::OpenFolder,
                "{task:?}"
            );
            if want == DialogKind::SaveFile {
                let (Some(name), Some((_, ext))) = (spec.file_name, spec.filter) else {
                    panic!("{task:?}: a suggested name and a filter");
                };
                assert!(
                    ext.iter().any(|e| name.ends_with(&format!(".{e}"))),
                    "{task:?}"
                );
            }
        }
    }

    /// A stand-in whose dialogs answer what the test sends, when it sends it.
    struct Scripted(Arc<Mutex<Receiver<DialogAnswer>>>);

    impl FileDialogs for Scripted {
        fn open(&self, _: DialogSpec) -> PendingDialog {
            let answers = self.0.clone();
            Box::new(move || {
                answers
                    .lock()
                    .map_err(|e| e.to_string())?
                    .recv_timeout(Duration::from_secs(60))
                    .map_err(|e| e.to_string())?
            })
        }
    }

    fn poll_until(dialogs: &mut Dialogs) -> (FileTask, DialogAnswer) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(answer) = dialogs.poll() {
                return answer;
            }
            assert!(Instant::now() < deadline, "no answer");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn one_dialog_at_a_time_and_its_answer_names_its_task() {
        let (tx, rx) = channel();
        let mut dialogs = Dialogs::new(Arc::new(Scripted(Arc::new(Mutex::new(rx)))));
        let ctx = egui::Context::default();
        tx.send(Err("no portal".into())).expect("send");
        assert!(dialogs.open(&ctx, FileTask::SavePreset).is_ok());
        let refused = dialogs
            .open(&ctx, FileTask::OpenNpy)
            .expect_err("one dialog at a time");
        assert!(refused.contains("Save preset"), "{refused}");
        assert_eq!(
            poll_until(&mut dialogs),
            (FileTask::SavePreset, Err("no portal".into()))
        );
        assert!(!dialogs.is_open());
        tx.send(Ok(Some("x.npy".into()))).expect("send");
        assert!(dialogs.open(&ctx, FileTask::OpenNpy).is_ok());
        assert_eq!(
            poll_until(&mut dialogs),
            (FileTask::OpenNpy, Ok(Some("x.npy".into())))
        );
        assert_eq!(dialogs.poll(), None);
    }

    /// Where nothing can show a dialog (no display, no session bus, no zenity: CI), the system
    /// dialog answers why instead of "cancelled". Elsewhere a real dialog could open: skipped.
    #[test]
    fn without_a_portal_or_zenity_the_system_dialog_says_why() {
        let desktop = ["DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
            || std::env::var_os("XDG_RUNTIME_DIR")
                .is_some_and(|d| std::path::Path::new(&d).join("bus").exists());
        if !cfg!(target_os = "linux") || desktop || zenity_on_path() {
            eprintln!("skipped: a real file dialog could open here");
            return;
        }
        let answer = SystemDialogs.open(FileTask::SavePreset.dialog())();
        let why = answer.expect_err("no dialog can open");
        assert!(why.contains("zenity"), "{why}");
    }
}
