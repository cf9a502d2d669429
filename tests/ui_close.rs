//! Closing the app mid-run ends its worker thread. A file of its own: it counts the process's
//! threads, which tests running in parallel in one process would disturb.

mod ui_support;

use std::time::{Duration, Instant};

use noisescope::app::Settings;
use noisescope::data::DataSpec;

use ui_support::{TIMEOUT, harness, thread_names};

#[cfg(target_os = "linux")]
#[test]
fn closing_the_app_mid_run_ends_the_worker_thread() {
    // Heavier than the default scene, so the run is still going when the app closes.
    let mut settings = Settings::default();
    settings.spec.data = DataSpec::Digits;
    settings.spec.batch = 1000;
    let mut h = harness(settings, egui::vec2(1200.0, 800.0));
    let deadline = Instant::now() + TIMEOUT;
    // Two steps in: the denoiser has run (and rayon's pool, whose threads inherit the worker's
    // name on Linux, exists).
    while !h
        .state()
        .store()
        .current
        .as_ref()
        .is_some_and(|r| r.is_running() && r.steps.len() >= 2)
    {
        h.step();
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    let named = || {
        thread_names()
            .iter()
            .filter(|n| n.starts_with("noisescope-wor"))
            .count()
    };
    let running = named();
    assert!(running >= 1, "a named worker thread: {:?}", thread_names());
    // Dropping the app (what closing the window does) cancels the run and joins the thread.
    drop(h);
    assert_eq!(
        named(),
        running - 1,
        "the worker thread is gone: {:?}",
        thread_names()
    );
}
