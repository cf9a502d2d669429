//! What the egui_kittest tests share: the app in a harness with the real worker thread, and
//! frames stepped until a run, a replay or an error arrives.
// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

use noisescope::app::training_tab::TrainingSettings;
use noisescope::app::{
    DialogAnswer, DialogSpec, FileDialogs, NoiseScopeApp, PendingDialog, Settings, Tab,
};
use noisescope::data::DataSpec;
use noisescope::run::store::{RunRecord, RunStatus};

/// Generous: a loaded CI machine may be slow, the default run takes well under a second.
pub const TIMEOUT: Duration = Duration::from_secs(180);

pub type AppHarness = Harness<'static, NoiseScopeApp>;

pub fn harness(settings: Settings, size: egui::Vec2) -> AppHarness {
    harness_of(NoiseScopeApp::new(settings), size)
}

pub fn harness_of(app: NoiseScopeApp, size: egui::Vec2) -> AppHarness {
    Harness::builder()
        .with_size(size)
        .build_ui_state(|ui, app: &mut NoiseScopeApp| app.frame(ui), app)
}

/// The moons toy (1000 points) with the Training tab open and these training settings.
pub fn moons_training_scene(training: TrainingSettings) -> Settings {
    let mut settings = Settings::default();
    settings.spec.data = DataSpec::Toy {
        name: "moons".into(),
        points: 1000,
    };
    settings.view.tab = Tab::Training;
    settings.training = training;
    settings
}

/// A window tall enough that every control of the left panel is laid out (and so reachable).
pub fn tall() -> egui::Vec2 {
    egui::vec2(1500.0, 2000.0)
}

/// Steps frames until the newest asked-for run is finished and newer than `after`.
pub fn wait_for_run(h: &mut AppHarness, after: u64) -> RunRecord {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        h.step();
        let app = h.state();
        let store = app.store();
        if let Some(run) = &store.current
            && run.generation == store.expected
            && run.generation > after
            && run.status == RunStatus::Finished
            && !app.is_sampling()
        {
            return run.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no finished run within {TIMEOUT:?}; error: {:?}",
            app.status_error()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Steps frames until `done` holds of the app.
pub fn wait_until(h: &mut AppHarness, what: &str, done: impl Fn(&NoiseScopeApp) -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        h.step();
        if done(h.state()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {TIMEOUT:?}; error: {:?}",
            h.state().status_error()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Steps frames until the replay cursor rests (the launch run is replayed from x_0).
pub fn wait_for_replay(h: &mut AppHarness) {
    let deadline = Instant::now() + TIMEOUT;
    while h.state().replay().playing {
        h.step();
        assert!(Instant::now() < deadline, "the replay did not end");
    }
    h.step();
}

/// Steps frames until the status bar holds an error.
pub fn wait_for_error(h: &mut AppHarness) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        h.step();
        if let Some(e) = h.state().status_error() {
            return e.to_string();
        }
        assert!(Instant::now() < deadline, "no error within {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Moves the slider named `label` to `value` the way assistive technology does.
pub fn set_slider(h: &mut AppHarness, label: &str, value: f64) {
    h.get_by_role_and_label(Role::Slider, label)
        .set_value_accesskit(value);
    h.step();
}

/// Names of this process's threads (Linux: /proc/self/task/*/comm, 15 characters).
#[cfg(target_os = "linux")]
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| t.ok())
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// File dialogs that answer what the test sends, and keep what they were asked.
pub struct Scripted {
    pub answers: Arc<Mutex<Receiver<DialogAnswer>>>,
    pub asked: Arc<Mutex<Vec<DialogSpec>>>,
}

impl Scripted {
    pub fn new(answers: Receiver<DialogAnswer>) -> Self {
        Scripted {
            answers: Arc::new(Mutex::new(answers)),
            asked: Arc::default(),
        }
    }
}

impl FileDialogs for Scripted {
    fn open(&self, spec: DialogSpec) -> PendingDialog {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(spec);
        }
        let answers = self.answers.clone();
        Box::new(move || {
            answers
                .lock()
                .map_err(|e| e.to_string())?
                .recv_timeout(TIMEOUT)
                .map_err(|e| format!("the test sent no answer: {e}"))?
        })
    }
}

/// A file dropped on the window, as the windowing backend hands it over.
#[derive(Debug)]
pub struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// Drops `path` on the window and steps one frame.
pub fn drop_file(h: &mut AppHarness, path: &Path) {
    h.input_mut()
        .dropped_files
        .push(Arc::new(Dropped(path.to_path_buf())));
    h.step();
}

/// A noise-level estimator (the default mlp at width 64) trained `steps` steps on `source` and
/// written to `dir`/NAME.safetensors with its sidecar; returns the checkpoint's path.
pub fn estimator_checkpoint(
    source: &noisescope::data::Source,
    label: &str,
    steps: usize,
    dir: &Path,
) -> noisescope::Result<PathBuf> {
    use noisescope::train::data::TrainingSet;
    use noisescope::train::estimator::{
        EstimatorArch, EstimatorConfig, EstimatorTraining, save, train,
    };
    let set = TrainingSet::from_source(source)?;
    let mut config = EstimatorConfig::mlp(set.dim, set.sigma_data, 0.002, 80.0);
    config.arch = EstimatorArch::Mlp {
        hidden: 64,
        depth: 3,
    };
    let training = EstimatorTraining {
        steps,
        ..Default::default()
    };
    let trained = train(&config, &set, &training, &mut |_, _| {
        std::ops::ControlFlow::Continue(())
    })?;
    let path = dir.join(format!("{label}.safetensors"));
    save(&trained, &training, &set, label, &path)?;
    Ok(path)
}

/// `rows` noisy copies y + sigma n of the set's rows.
pub fn noisy(
    set: &noisescope::data::DataSet,
    sigma: f64,
    rows: usize,
    seed: u64,
) -> noisescope::Result<noisescope::core::Batch> {
    let n = noisescope::core::noise::initial_noise(seed, rows, set.dim);
    let mut values = Vec::with_capacity(rows * set.dim);
    for r in 0..rows {
        let y = set.row((r * 7 + seed as usize) % set.n);
        values.extend(y.iter().zip(n.row(r)).map(|(y, n)| y + sigma * n));
    }
    noisescope::core::Batch::from_vec(rows, set.dim, values)
}
