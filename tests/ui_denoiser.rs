//! The Denoiser picker and "Compare with exact" (issue 10), driven headless by egui_kittest with
//! the real worker: picking a bundled model switches the run to it (the recorded denoiser
//! changes, the noise stays, the samples differ); "Compare with exact" pins the exact run of the
//! same noise and settings as the baseline, and the learned one when the shown run is exact; a
//! checkpoint trained on other data is named in the status bar, is not used, and the app keeps
//! running; the "Exact vs learned" lesson pins the exact run beside the network's.

mod ui_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use egui::accesskit::Role;
use egui_kittest::kittest::{By, NodeT, Queryable};

use noisescope::app::lessons::builtin;
use noisescope::app::{DialogSpec, FileDialogs, NoiseScopeApp, PendingDialog, Settings, Tab};
use noisescope::core::Batch;
use noisescope::data::DataSpec;
use noisescope::run::spec::DenoiserSpec;
use noisescope::run::store::RunRecord;

use ui_support::{
    AppHarness, TIMEOUT, harness, harness_of, set_slider, tall, wait_for_error, wait_for_run,
};

fn moons_scene() -> Settings {
    let mut s = Settings::default_scene();
    s.spec.data = DataSpec::Toy {
        name: "moons".into(),
        points: 4096,
    };
    s.spec.batch = 300;
    s
}

fn bundled(name: &str) -> DenoiserSpec {
    DenoiserSpec::Bundled(name.into())
}

/// Opens the Denoiser picker (showing `selected`) and clicks `entry`.
fn pick(h: &mut AppHarness, selected: &str, entry: &str) {
    h.get(By::new().role(Role::ComboBox).value(selected))
        .click();
    h.run_steps(2);
    h.get_by_label(entry).click();
    h.run_steps(2);
}

fn max_abs_diff(a: &Batch, b: &Batch) -> f64 {
    assert_eq!((a.rows, a.dim), (b.rows, b.dim));
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn final_state(run: &RunRecord) -> &Batch {
    run.x_final
        .as_deref()
        .expect("a finished run has its samples")
}

fn first_state(run: &RunRecord) -> &Batch {
    run.state(0).expect("x_0 is recorded")
}

/// Steps frames until a comparison has pinned its baseline; returns it.
fn wait_for_baseline(h: &mut AppHarness) -> RunRecord {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        h.step();
        let app = h.state();
        if !app.compare_running()
            && !app.is_sampling()
            && let Some(base) = &app.store().baseline
        {
            return base.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no baseline within {TIMEOUT:?}; error: {:?}",
            app.status_error()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Unfolds the Denoiser group (folded in the default scene).
fn unfold_denoiser_group(h: &mut AppHarness) {
    h.get_by_label("Denoiser").click();
    h.run_steps(2);
}

fn shows(h: &AppHarness, label: &str) -> bool {
    h.query_by_label(label).is_some()
}

#[test]
fn a_bundled_model_runs_on_the_same_noise_and_compare_pins_the_exact_run() {
    let mut h = harness(moons_scene(), tall());
    let exact = wait_for_run(&mut h, 0);
    unfold_denoiser_group(&mut h);
    assert_eq!(exact.spec.denoiser, DenoiserSpec::Exact);
    assert!(shows(&h, "denoiser: exact"));
    // Not offered where it does not fit.
    h.get(By::new().role(Role::ComboBox).value("exact")).click();
    h.run_steps(2);
    assert!(
        h.get_by_label("digits (bundled)")
            .accesskit_node()
            .is_disabled(),
        "the digits model is not offered on moons"
    );
    h.get_by_label("moons (bundled)").click();
    h.run_steps(2);

    let learned = wait_for_run(&mut h, exact.generation);
    assert_eq!(learned.spec.denoiser, bundled("moons"));
    let mut same_settings = learned.spec.clone();
    same_settings.denoiser = DenoiserSpec::Exact;
    assert_eq!(same_settings, exact.spec, "only the denoiser changed");
    assert_eq!(
        max_abs_diff(first_state(&learned), first_state(&exact)),
        0.0,
        "the same noise x_0"
    );
    let apart = max_abs_diff(final_state(&learned), final_state(&exact));
    assert!(apart > 1e-3, "a network is not the exact denoiser: {apart}");
    assert!(
        shows(&h, "denoiser: moons (bundled)"),
        "the status bar names it"
    );
    assert!(
        learned.backend.contains("exact ground truth"),
        "{}",
        learned.backend
    );
    // The noise level of the network's states comes from the exact posterior of the data.
    assert!(!learned.records.is_empty());
    assert!(
        learned
            .records
            .iter()
            .all(|r| r.sigma_hat.median.is_finite() && r.sigma_hat.median > 0.0),
        "sigma_hat under the exact posterior at every step"
    );
    assert!(h.state().store().baseline.is_none());

    h.get_by_label("Compare with exact").click();
    let base = wait_for_baseline(&mut h);
    assert_eq!(base.spec.denoiser, DenoiserSpec::Exact);
    assert_eq!(base.spec, exact.spec, "the learned run's settings, exact");
    let same = max_abs_diff(final_state(&base), final_state(&exact));
    assert!(same < 1e-9, "the exact run of the same noise: {same}");
    let app = h.state();
    let shown = app.store().current.as_ref().expect("the compared run");
    assert_eq!(
        shown.generation, learned.generation,
        "the learned run is shown again"
    );
    assert_eq!(
        app.settings.spec, learned.spec,
        "the settings stay the learned run's"
    );
    assert!(app.settings.view.show_baseline);
    assert!(app.status_error().is_none(), "{:?}", app.status_error());
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("denoiser exact -> bundled moons")
            .is_some(),
        "the A/B row names the difference"
    );

    // The reverse: an exact run compared pins the learned model's run.
    pick(&mut h, "moons (bundled)", "exact (ideal / closed form)");
    let exact_again = wait_for_run(&mut h, learned.generation);
    assert_eq!(exact_again.spec.denoiser, DenoiserSpec::Exact);
    h.state_mut().unpin_baseline();
    h.get_by_label("Compare with exact").click();
    let base = wait_for_baseline(&mut h);
    assert_eq!(base.spec.denoiser, bundled("moons"));
    let same = max_abs_diff(final_state(&base), final_state(&learned));
    assert!(same < 1e-6, "the learned run of the same noise: {same}");
    assert_eq!(
        h.state().store().current.as_ref().map(|r| r.generation),
        Some(exact_again.generation)
    );
}

/// Dialogs that pick `path` at once.
struct Picks(PathBuf);

impl FileDialogs for Picks {
    fn open(&self, _spec: DialogSpec) -> PendingDialog {
        let path = self.0.clone();
        Box::new(move || Ok(Some(path)))
    }
}

/// The bundled moons model written out as a checkpoint file (PATH.safetensors + PATH.json).
fn moons_checkpoint(dir: &Path) -> PathBuf {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models");
    let weights = dir.join("moons-model.safetensors");
    std::fs::copy(assets.join("moons.safetensors"), &weights).expect("weights");
    std::fs::copy(assets.join("moons.json"), dir.join("moons-model.json")).expect("sidecar");
    weights
}

#[test]
fn a_checkpoint_for_other_data_is_named_not_used_and_the_app_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = moons_checkpoint(dir.path());
    let mut settings = Settings::default_scene();
    settings.spec.data = DataSpec::Digits;
    settings.spec.batch = 64;
    let mut app = NoiseScopeApp::new(settings);
    app.set_file_dialogs(Arc::new(Picks(weights.clone())));
    let mut h = harness_of(app, tall());
    let exact = wait_for_run(&mut h, 0);
    unfold_denoiser_group(&mut h);

    h.get_by_label("Open checkpoint…").click();
    let error = wait_for_error(&mut h);
    assert!(
        error.contains("2-dimensional") && error.contains("not used"),
        "{error}"
    );
    let app = h.state();
    assert_eq!(app.settings.spec.denoiser, DenoiserSpec::Exact, "set aside");
    assert_eq!(app.settings.spec.data, DataSpec::Digits, "the data stays");
    assert_eq!(
        app.store().current.as_ref().map(|r| r.generation),
        Some(exact.generation),
        "the shown run stays"
    );
    // The picker still offers the opened model, and the app still runs.
    h.get(By::new().role(Role::ComboBox).value("exact")).click();
    h.run_steps(2);
    assert!(shows(&h, "moons-model (opened)"));
    h.key_press(egui::Key::Escape);
    h.run_steps(2);
    set_slider(&mut h, "S_churn", 20.0);
    let rerun = wait_for_run(&mut h, exact.generation);
    assert_eq!(rerun.spec.denoiser, DenoiserSpec::Exact);
    assert_eq!(rerun.spec.stochasticity.churn, 20.0);

    // The same file on the data it was trained on runs.
    h.state_mut().settings.spec = moons_scene().spec;
    let moons = wait_for_run(&mut h, rerun.generation);
    h.state_mut().settings.spec.denoiser = DenoiserSpec::Checkpoint(weights.clone());
    let learned = wait_for_run(&mut h, moons.generation);
    assert_eq!(learned.spec.denoiser, DenoiserSpec::Checkpoint(weights));
    assert!(shows(&h, "denoiser: moons-model"));
}

#[test]
fn the_exact_vs_learned_lesson_pins_the_exact_run_beside_the_network() {
    let lesson = builtin::lessons()
        .into_iter()
        .find(|l| l.title == "Exact vs learned denoiser")
        .expect("the lesson");
    let mut h = harness(Settings::default_scene(), tall());
    let launch = wait_for_run(&mut h, 0);
    h.state_mut().open_lesson(lesson.clone());
    let exact = wait_for_run(&mut h, launch.generation);
    assert_eq!(exact.spec.denoiser, DenoiserSpec::Exact);
    assert_eq!(exact.spec.data, DataSpec::Digits);
    h.state_mut().next_stage();
    let learned = wait_for_run(&mut h, exact.generation);
    assert_eq!(learned.spec.denoiser, bundled("digits"));
    let base = h
        .state()
        .store()
        .baseline
        .clone()
        .expect("the exact run pinned");
    assert_eq!(base.generation, exact.generation);
    h.state_mut().next_stage();
    h.run_steps(2);
    assert_eq!(h.state().settings.view.tab, Tab::NoiseLevel);
    let delta_apart = learned
        .records
        .iter()
        .zip(&base.records)
        .map(|(l, e)| (l.delta.median - e.delta.median).abs())
        .fold(0.0, f64::max);
    assert!(
        delta_apart > 1e-3,
        "the network's noise shift differs from the exact run's: {delta_apart}"
    );
}
