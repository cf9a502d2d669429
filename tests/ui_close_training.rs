//! Closing the app while a model trains and a run samples ends both threads: the trainer's and
//! the sampling worker's. A file of its own: it counts the process's threads, which tests
//! running in parallel in one process would disturb.

mod ui_support;

use std::time::{Duration, Instant};

use noisescope::app::NoiseScopeApp;
use noisescope::app::training_tab::TrainingSettings;

use ui_support::{TIMEOUT, harness_of, moons_training_scene, thread_names};

#[cfg(target_os = "linux")]
#[test]
fn closing_the_app_while_a_model_trains_ends_the_trainer_and_the_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut app = NoiseScopeApp::new(moons_training_scene(TrainingSettings {
        mlp_width: 32,
        mlp_depth: 2,
        steps: 1_000_000,
        batch: 128,
        ..TrainingSettings::default()
    }));
    app.set_models_dir(dir.path().to_path_buf());
    let mut h = harness_of(app, egui::vec2(1400.0, 1000.0));
    h.run_steps(2);
    let ctx = h.ctx.clone();
    h.state_mut().start_training(&ctx);
    let deadline = Instant::now() + TIMEOUT;
    while h.state().training().step < 10 {
        h.step();
        assert!(Instant::now() < deadline, "training did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    let count = |prefix: &str| {
        thread_names()
            .iter()
            .filter(|n| n.starts_with(prefix))
            .count()
    };
    let (trainers, workers) = (count("noisescope-trai"), count("noisescope-wor"));
    assert!(
        trainers >= 1 && workers >= 1,
        "named threads: {:?}",
        thread_names()
    );
    // Dropping the app (what closing the window does) cancels both and joins both threads.
    drop(h);
    assert_eq!(
        count("noisescope-trai"),
        trainers - 1,
        "{:?}",
        thread_names()
    );
    assert_eq!(count("noisescope-wor"), workers - 1, "{:?}", thread_names());
    // Nothing was saved: the run did not finish.
    assert_eq!(std::fs::read_dir(dir.path()).map_or(0, |d| d.count()), 0);
}
