//! The Training tab through its own buttons (egui_kittest, the real trainer and sampling
//! threads): a tiny mlp trains to completion on a toy and its loss falls, the finished model is
//! saved and listed, sampling reruns while a model trains, pause holds the step, cancel stops
//! within one step, and checkpoints save and open through the (stand-in) file dialogs.

mod ui_support;

use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};
use std::time::Duration;

use egui_kittest::kittest::Queryable;

use noisescope::app::known_models::ModelOrigin;
use noisescope::app::training_tab::TrainingSettings;
use noisescope::app::{DialogAnswer, NoiseScopeApp};
use noisescope::run::training::PreviewSamples;
use noisescope::run::training_record::TrainStatus;

use ui_support::{
    AppHarness, Scripted, harness_of, moons_training_scene, set_slider, tall, wait_for_error,
    wait_for_run, wait_until,
};

/// The app on the moons toy with the Training tab open, a tiny mlp of `steps` steps, models
/// saved under `dir`, and scripted dialogs.
fn training_app(steps: usize, dir: &std::path::Path) -> (AppHarness, Sender<DialogAnswer>) {
    let mut app = NoiseScopeApp::new(moons_training_scene(TrainingSettings {
        mlp_width: 64,
        mlp_depth: 3,
        steps,
        batch: 128,
        lr: 3e-3,
        ema_half_life: 5000.0,
        preview_every: 200,
        ..TrainingSettings::default()
    }));
    app.set_models_dir(dir.to_path_buf());
    let (tx, rx) = channel();
    app.set_file_dialogs(Arc::new(Scripted::new(rx)));
    (harness_of(app, tall()), tx)
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[test]
fn a_tiny_mlp_trains_to_completion_its_loss_falls_and_the_model_is_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, answers) = training_app(800, dir.path());
    wait_for_run(&mut h, 0);
    h.get_by_label("Start training").click();
    wait_until(&mut h, "training finished", |app| {
        !app.training().status.is_active() && app.training().status != TrainStatus::Idle
    });
    let record = h.state().training();
    assert_eq!(record.status, TrainStatus::Finished, "{:?}", record.status);
    assert_eq!(record.losses.len(), 800, "every step's loss arrived");
    // EDM-weighted loss starts near 1 (zero-initialised output layer) and falls.
    let first = mean(record.losses[..20].iter().map(|(_, l)| *l));
    let last = mean(record.losses[700..].iter().map(|(_, l)| *l));
    assert!((0.6..1.5).contains(&first), "initial loss {first}");
    assert!(last < 0.85 * first, "loss {first} -> {last}");
    // The plots' inputs: per-sigma losses, the exact floor below the model's mmse, a preview.
    let (_, binned) = record.binned.as_ref().expect("per-sigma losses");
    assert_eq!(binned.mmse_per_dim.len(), 24);
    let floor = record.exact.as_ref().expect("the exact floor");
    assert!(
        floor
            .profile
            .mmse
            .iter()
            .all(|m| m.is_finite() && *m >= 0.0)
    );
    // The floor is one: where a bin holds many rows the network's mmse is not below it (up to
    // the Monte Carlo noise of both, ~10% at 200+ rows).
    let mut compared = 0;
    for (k, e) in binned.ln_sigma_edges.windows(2).enumerate() {
        let sigma = (0.5 * (e[0] + e[1])).exp();
        if binned.counts[k] >= 200 && (0.5..=20.0).contains(&sigma) {
            let exact = floor.profile.ln_mmse_at(sigma).exp();
            assert!(
                binned.mmse_per_dim[k] >= 0.7 * exact,
                "sigma {sigma}: network {} below the exact floor {exact}",
                binned.mmse_per_dim[k]
            );
            compared += 1;
        }
    }
    assert!(compared >= 2, "bins compared: {compared}");
    let preview = record.preview.as_ref().expect("a preview");
    assert_eq!(
        preview.step, 800,
        "the last preview is of the finished model"
    );
    match &preview.samples {
        PreviewSamples::Points(x) => assert_eq!((x.rows, x.dim), (500, 2)),
        PreviewSamples::Grid(_) => panic!("moons are points"),
    }
    let end = record.end.as_ref().expect("an end");
    assert!(end.steps_per_s > 0.0);
    // Saved to the models folder and listed as trained.
    let known = h.state().known_models().list().to_vec();
    assert_eq!(known.len(), 1, "{known:?}");
    assert_eq!(known[0].origin, ModelOrigin::Trained);
    assert!(known[0].path.starts_with(dir.path()) && known[0].path.is_file());
    assert!(known[0].path.with_extension("json").is_file());
    assert!(known[0].label.contains("800 steps"), "{}", known[0].label);
    h.get_by_label_contains("finished: 800 steps");

    // Save checkpoint…: written where the dialog says, and listed.
    let saved = dir.path().join("saved.safetensors");
    answers.send(Ok(Some(saved.clone()))).expect("answer");
    h.get_by_label("Save checkpoint…").click();
    wait_until(&mut h, "the save", |app| {
        app.known_models().list().len() == 2
    });
    assert!(saved.is_file() && saved.with_extension("json").is_file());
    // Open checkpoint…: a bad file says why and changes nothing; a good one is listed as opened.
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"not a checkpoint").expect("write");
    answers.send(Ok(Some(bad))).expect("answer");
    h.get_by_label("Open checkpoint…").click();
    let error = wait_for_error(&mut h);
    assert!(error.contains("could not open the checkpoint"), "{error}");
    assert_eq!(h.state().known_models().list().len(), 2);
    answers.send(Ok(Some(saved.clone()))).expect("answer");
    h.get_by_label("Open checkpoint…").click();
    wait_until(&mut h, "the open", |app| {
        app.known_models()
            .find(&saved)
            .is_some_and(|m| m.origin == ModelOrigin::Opened)
    });
}

#[test]
fn sampling_reruns_while_a_model_trains_pause_holds_and_cancel_stops_within_a_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _answers) = training_app(1_000_000, dir.path());
    let first = wait_for_run(&mut h, 0);
    h.get_by_label("Start training").click();
    wait_until(&mut h, "training under way", |app| {
        app.training().step >= 20
    });
    // A sampling slider still produces a finished rerun while the trainer runs.
    set_slider(&mut h, "S_churn", 20.0);
    let rerun = wait_for_run(&mut h, first.generation);
    assert_eq!(rerun.spec.stochasticity.churn, 20.0);
    assert_eq!(h.state().training().status, TrainStatus::Training);
    // Pause holds the step; Resume goes on.
    h.get_by_label("Pause training").click();
    h.run_steps(2);
    std::thread::sleep(Duration::from_millis(300));
    let held = h.state().training_live_step().expect("a trainer");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.state().training_live_step(), Some(held), "paused");
    h.get_by_label("Resume training").click();
    wait_until(&mut h, "training resumed", |app| {
        app.training_live_step().is_some_and(|s| s > held)
    });
    // Cancel: at most the step in flight completes.
    h.get_by_label("Cancel training").click();
    h.step();
    let at_cancel = h.state().training_live_step().expect("a trainer");
    wait_until(&mut h, "training cancelled", |app| {
        app.training().status == TrainStatus::Cancelled
    });
    let end = h.state().training().end.as_ref().expect("an end");
    assert!(
        end.steps_done <= at_cancel + 1,
        "cancelled at step {at_cancel}, stopped at {}",
        end.steps_done
    );
    assert!(
        end.checkpoint.is_none(),
        "a cancelled run is not saved by itself"
    );
    assert!(h.state().known_models().list().is_empty());
}

#[test]
fn bad_training_settings_say_why_and_start_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _answers) = training_app(100, dir.path());
    wait_for_run(&mut h, 0);
    // The widgets keep numbers in range; what they allow may still be refused, with one message.
    h.state_mut().settings.training = TrainingSettings {
        model: noisescope::app::training_tab::ModelKind::Unet,
        unet_width: 12,
        ..TrainingSettings::default()
    };
    // Frames first: the button moves with the settings' rows.
    h.run_steps(2);
    h.get_by_label("Start training").click();
    let error = wait_for_error(&mut h);
    assert!(error.contains("multiple of 8"), "{error}");
    assert_eq!(h.state().training().status, TrainStatus::Idle);
    // The unet on points: refused by the trainer thread with one message; the app goes on.
    h.state_mut().settings.training.unet_width = 32;
    h.run_steps(2);
    h.get_by_label("Start training").click();
    wait_until(&mut h, "the refusal", |app| {
        matches!(app.training().status, TrainStatus::Failed(_))
    });
    let error = h.state().status_error().unwrap_or_default().to_string();
    assert!(error.contains("unet needs image data"), "{error}");
}
