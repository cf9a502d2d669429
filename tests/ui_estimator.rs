//! The learned noise-level estimator in the app (issue 11), driven headless by egui_kittest with
//! the real worker and trainer threads: a dropped estimator checkpoint adds its σ_hat to the
//! Noise level plot and enables NAG's classifier-based form, a run with that form finishes, and
//! "Remove estimator" takes it all back; an estimator for other data (opened, or named by the
//! settings) is one message and the app keeps running; the Training tab trains one, which
//! becomes the app's.

mod ui_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::channel;

use egui::accesskit::Role;
use egui_kittest::kittest::{By, NodeT, Queryable};

use noisescope::app::training_tab::{ModelKind, TrainTarget, TrainingSettings};
use noisescope::app::{NoiseScopeApp, Settings, Tab};
use noisescope::core::guidance::NagForm;
use noisescope::data::{DataSpec, ImageShape, Source, digits};
use noisescope::run::training_record::TrainStatus;
use noisescope::train::estimator::{EstimatorArch, EstimatorConfig};

use ui_support::{
    AppHarness, Scripted, drop_file, estimator_checkpoint, harness, harness_of, set_slider, tall,
    wait_for_error, wait_for_run, wait_until,
};

/// An estimator trained briefly on the digits (64-dimensional), in `dir`.
fn digits_estimator(dir: &std::path::Path) -> PathBuf {
    let source = Source::Empirical(digits::load().expect("the digits"));
    estimator_checkpoint(&source, "g-digits", 150, dir).expect("an estimator checkpoint")
}

fn digits_scene() -> Settings {
    let mut s = Settings::default_scene();
    s.spec.data = DataSpec::Digits;
    s.spec.batch = 48;
    s.spec.schedule.steps = 10;
    s.view.tab = Tab::NoiseLevel;
    s
}

/// Opens the NAG form picker (showing the default form).
fn open_nag_forms(h: &mut AppHarness) {
    h.get(
        By::new()
            .role(Role::ComboBox)
            .value("NAG form: as a classifier-free model learns it"),
    )
    .click();
    h.run_steps(2);
}

#[test]
fn a_dropped_estimator_is_drawn_offers_classifier_nag_and_can_be_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = digits_estimator(dir.path());
    let mut h = harness(digits_scene(), tall());
    let exact = wait_for_run(&mut h, 0);
    assert!(
        exact
            .records
            .iter()
            .all(|r| r.learned_sigma_hat.median.is_nan())
    );
    assert!(h.query_by_label_contains("learned σ_hat").is_none());
    open_nag_forms(&mut h);
    assert!(
        h.get_by_label("learned, classifier-based")
            .accesskit_node()
            .is_disabled(),
        "no estimator yet: the classifier-based form is not offered"
    );
    h.key_press(egui::Key::Escape);
    h.run_steps(2);

    // Dropped: told apart from a denoiser by its sidecar, and used by the next run.
    drop_file(&mut h, &path);
    assert_eq!(h.state().settings.spec.estimator.as_ref(), Some(&path));
    let with = wait_for_run(&mut h, exact.generation);
    assert_eq!(with.spec.estimator.as_ref(), Some(&path));
    assert_eq!(
        with.spec.denoiser, exact.spec.denoiser,
        "not taken for a denoiser"
    );
    assert!(
        with.records
            .iter()
            .all(|r| r.learned_sigma_hat.median.is_finite() && r.learned_sigma_hat.median > 0.0)
    );
    h.run_steps(2);
    // The Noise level plot's key and its labelled series.
    h.get_by_label("learned σ_hat (g)");
    h.get_by_label_contains("learned σ_hat, g(σ|x) g-digits");

    open_nag_forms(&mut h);
    let entry = h.get_by_label("learned, classifier-based");
    assert!(!entry.accesskit_node().is_disabled());
    entry.click();
    h.run_steps(2);
    assert_eq!(
        h.state().settings.spec.guidance.nag_form,
        NagForm::ClassifierBased
    );
    set_slider(&mut h, "NAG w", 2.0);
    let guided = wait_for_run(&mut h, with.generation);
    assert_eq!(guided.spec.guidance.nag, 2.0);
    assert_eq!(guided.spec.guidance.nag_form, NagForm::ClassifierBased);
    assert!(guided.x_final.as_ref().is_some_and(|x| x.is_finite()));
    assert!(h.state().status_error().is_none());

    // Removed: the plot is the exact posterior's alone, NAG back to the default form.
    h.get_by_label("Denoiser").click();
    h.run_steps(2);
    h.get_by_label_contains("estimator: g-digits");
    h.get_by_label("Remove estimator").click();
    h.run_steps(2);
    let spec = &h.state().settings.spec;
    assert_eq!(spec.estimator, None);
    assert_eq!(spec.guidance.nag_form, NagForm::default());
    let without = wait_for_run(&mut h, guided.generation);
    assert!(
        without
            .records
            .iter()
            .all(|r| r.learned_sigma_hat.median.is_nan())
    );
    h.run_steps(2);
    assert!(h.query_by_label("learned σ_hat (g)").is_none());
}

#[test]
fn an_estimator_for_other_data_is_one_message_and_the_app_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = digits_estimator(dir.path());
    // The default scene: a 2-D toy.
    let mut app = NoiseScopeApp::new(Settings::default_scene());
    let (answers, rx) = channel();
    app.set_file_dialogs(Arc::new(Scripted::new(rx)));
    let mut h = harness_of(app, tall());
    let first = wait_for_run(&mut h, 0);
    h.get_by_label("Denoiser").click();
    h.run_steps(2);
    h.get_by_label("Open noise-level estimator…").click();
    answers.send(Ok(Some(path.clone()))).expect("the dialog");
    let error = wait_for_error(&mut h);
    assert!(
        error.contains("64-dimensional") && error.contains("2-dimensional"),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");
    assert_eq!(h.state().settings.spec.estimator, None, "not loaded");

    // Named by the settings (a preset, say): the run fails on it and the estimator is removed;
    // those settings are the shown run's, which stays.
    h.state_mut().settings.spec.estimator = Some(path);
    wait_until(&mut h, "the run's error", |app| {
        app.status_error().is_some_and(|e| e.contains("removed"))
    });
    let error = h.state().status_error().unwrap_or_default().to_string();
    assert!(
        error.contains("noise-level estimator") && error.contains("64-dimensional"),
        "{error}"
    );
    assert_eq!(h.state().settings.spec.estimator, None);
    assert_eq!(
        h.state().store().current.as_ref().map(|r| r.generation),
        Some(first.generation)
    );
    // And the app goes on: a changed setting reruns.
    set_slider(&mut h, "steps N", 12.0);
    let again = wait_for_run(&mut h, first.generation);
    assert_eq!(again.spec.schedule.steps, 12);
    assert_eq!(again.spec.estimator, None);
}

#[test]
fn the_training_tab_trains_an_estimator_that_becomes_the_apps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = digits_scene();
    settings.view.tab = Tab::Training;
    settings.training = TrainingSettings {
        mlp_width: 64,
        mlp_depth: 2,
        steps: 300,
        batch: 128,
        lr: 2e-3,
        ..TrainingSettings::default()
    };
    let mut app = NoiseScopeApp::new(settings);
    app.set_models_dir(dir.path().to_path_buf());
    let (answers, asked) = channel();
    app.set_file_dialogs(Arc::new(Scripted::new(asked)));
    let mut h = harness_of(app, tall());
    let first = wait_for_run(&mut h, 0);
    h.get_by_label("noise-level estimator").click();
    h.run_steps(2);
    assert_eq!(h.state().settings.training.target, TrainTarget::Estimator);
    h.get_by_label("Start training").click();
    wait_until(&mut h, "training finished", |app| {
        !app.training().status.is_active() && app.training().status != TrainStatus::Idle
    });
    let record = h.state().training();
    assert_eq!(record.status, TrainStatus::Finished, "{:?}", record.status);
    assert_eq!(record.losses.len(), 300, "every step's loss arrived");
    // The NLL in ln sigma falls: the untrained head's ln sigma is the log RMS, off by ~1-3 in
    // the low half of [0.002, 80].
    let mean = |l: &[(usize, f64)]| l.iter().map(|(_, v)| v).sum::<f64>() / l.len() as f64;
    let (early, late) = (mean(&record.losses[..30]), mean(&record.losses[250..]));
    assert!(late < early - 0.5, "loss {early} -> {late}");
    let start = record.start.as_ref().expect("started");
    assert!(start.arch.contains("estimator"), "{}", start.arch);
    // Saved to the models folder and made the runs' estimator; no denoiser was listed.
    let path = h
        .state()
        .settings
        .spec
        .estimator
        .clone()
        .expect("the trained estimator is the app's");
    assert!(path.starts_with(dir.path()) && path.is_file());
    assert!(h.state().known_models().list().is_empty());
    let run = wait_for_run(&mut h, first.generation);
    assert_eq!(run.spec.estimator, Some(path.clone()));
    assert!(run.records.iter().all(|r| r.learned_sigma_hat.median > 0.0));

    // Save checkpoint…: the estimator is written where the dialog says (not "no model to save
    // yet"), the same weights as the models folder's copy, and becomes the runs' estimator.
    let saved = dir.path().join("elsewhere").join("g.safetensors");
    answers.send(Ok(Some(saved.clone()))).expect("answer");
    h.get_by_label("Save checkpoint…").click();
    wait_until(&mut h, "the save", |app| {
        app.settings.spec.estimator.as_ref() == Some(&saved)
    });
    assert!(h.state().status_error().is_none());
    assert!(noisescope::train::estimator::is_estimator_checkpoint(
        &saved
    ));
    let read = |p: &std::path::Path| std::fs::read(p).expect("the weights");
    assert_eq!(
        read(&saved),
        read(&path),
        "the run's estimator, saved again"
    );
    assert!(h.state().known_models().list().is_empty());
}

#[test]
fn the_conv_estimators_channels_are_a_setting_the_run_uses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = digits_scene();
    settings.view.tab = Tab::Training;
    settings.training = TrainingSettings {
        target: TrainTarget::Estimator,
        model: ModelKind::Unet,
        steps: 5,
        batch: 16,
        ..TrainingSettings::default()
    };
    let mut app = NoiseScopeApp::new(settings);
    app.set_models_dir(dir.path().to_path_buf());
    let mut h = harness_of(app, tall());
    wait_for_run(&mut h, 0);
    // The conv body's row is there (the mlp's are not), and says what it does.
    assert!(
        h.query_by_role_and_label(Role::SpinButton, "depth")
            .is_none()
    );
    h.get_by_role_and_label(Role::SpinButton, "channels")
        .set_value_accesskit(4.0);
    h.run_steps(2);
    assert_eq!(h.state().settings.training.estimator_channels, 4);
    h.get_by_label("Start training").click();
    wait_until(&mut h, "training finished", |app| {
        !app.training().status.is_active() && app.training().status != TrainStatus::Idle
    });
    let record = h.state().training();
    assert_eq!(record.status, TrainStatus::Finished, "{:?}", record.status);
    let start = record.start.as_ref().expect("started");
    assert!(start.arch.contains("conv"), "{}", start.arch);
    // The network of 4 channels, not the 16 the tab used to fix.
    let conv = |channels: usize| {
        let mut config = EstimatorConfig::mlp(64, 1.0, 0.1, 10.0);
        config.arch = EstimatorArch::Conv {
            channels,
            hidden: 128,
        };
        config.image = Some(ImageShape {
            width: 8,
            height: 8,
            channels: 1,
        });
        config.parameter_count()
    };
    assert_eq!(start.parameters, conv(4));
    assert_ne!(conv(4), conv(16));
}
