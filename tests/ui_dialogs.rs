//! File dialogs through the app's own menu and buttons, with a stand-in for the desktop's
//! dialogs: the frames go on while a dialog is open, its path is used when it answers, a
//! cancelled dialog does nothing, and a dialog that cannot open says so in the status bar.

mod ui_support;

use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use egui_kittest::kittest::{NodeT, Queryable};

use noisescope::app::Settings;
use noisescope::app::{DialogAnswer, DialogKind, DialogSpec, NoiseScopeApp};
use noisescope::run::RunSpec;

use ui_support::{
    AppHarness, Scripted, TIMEOUT, harness_of, set_slider, tall, wait_for_error, wait_for_run,
};

/// The app with scripted dialogs: the sender answers them, the list holds what they asked.
fn app_with_dialogs() -> (
    AppHarness,
    Sender<DialogAnswer>,
    Arc<Mutex<Vec<DialogSpec>>>,
) {
    let (tx, rx) = channel();
    let mut app = NoiseScopeApp::new(Settings::default());
    let scripted = Scripted::new(rx);
    let asked = scripted.asked.clone();
    app.set_file_dialogs(Arc::new(scripted));
    (harness_of(app, tall()), tx, asked)
}

/// Opens the Export menu and clicks `entry`.
fn export_menu(h: &mut AppHarness, entry: &str) {
    h.get_by_label("Export").click();
    h.run_steps(2);
    h.get_by_label(entry).click();
    h.run_steps(2);
}

fn last_asked(asked: &Mutex<Vec<DialogSpec>>) -> Option<DialogSpec> {
    asked.lock().ok().and_then(|a| a.last().copied())
}

/// Steps frames until the open dialog has answered and its answer was used.
fn wait_for_answer(h: &mut AppHarness) {
    let deadline = Instant::now() + TIMEOUT;
    while h.state().dialog_open() {
        h.step();
        assert!(
            Instant::now() < deadline,
            "the dialog's answer was not taken in"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    h.step();
}

#[test]
fn the_app_runs_on_while_a_dialog_is_open_and_saves_the_preset_when_it_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, answer, asked) = app_with_dialogs();
    let first = wait_for_run(&mut h, 0);

    export_menu(&mut h, "Save preset…");
    let spec = last_asked(&asked).expect("a dialog was asked for");
    assert_eq!(spec.kind, DialogKind::SaveFile);
    assert_eq!(spec.file_name, Some("preset.json"));
    assert!(h.state().dialog_open());

    // The dialog waits for the user; the app does not: a slider change reruns meanwhile.
    set_slider(&mut h, "S_churn", 20.0);
    let rerun = wait_for_run(&mut h, first.generation);
    assert_eq!(rerun.spec.stochasticity.churn, 20.0);
    assert!(h.state().dialog_open(), "still waiting for the user");
    // One dialog at a time: the buttons that would open another are off.
    assert!(h.get_by_label("Open .npy…").accesskit_node().is_disabled());

    let path = dir.path().join("preset.json");
    answer.send(Ok(Some(path.clone()))).expect("answer");
    wait_for_answer(&mut h);
    let text = std::fs::read_to_string(&path).expect("the preset was written");
    let saved = RunSpec::from_json(&text).expect("a valid preset");
    assert_eq!(
        saved, rerun.spec,
        "the settings shown when the dialog answered"
    );
    assert!(
        h.state()
            .status_info()
            .is_some_and(|i| i.contains("saved the preset")),
        "{:?}",
        h.state().status_info()
    );

    // Cancelled: nothing happens, no error.
    export_menu(&mut h, "Load preset…");
    assert_eq!(
        last_asked(&asked).map(|s| s.kind),
        Some(DialogKind::OpenFile)
    );
    answer.send(Ok(None)).expect("answer");
    wait_for_answer(&mut h);
    assert!(h.state().status_error().is_none());
    assert_eq!(h.state().settings.spec, rerun.spec);
    assert!(!h.get_by_label("Open .npy…").accesskit_node().is_disabled());
}

#[test]
fn a_dialog_that_cannot_open_says_so_in_the_status_bar() {
    let (mut h, answer, _) = app_with_dialogs();
    wait_for_run(&mut h, 0);
    let why = "no desktop portal and no zenity: install xdg-desktop-portal or zenity";

    for (entry, title) in [
        ("Save preset…", "Save preset"),
        ("PNG of the view…", "PNG of the view"),
    ] {
        answer.send(Err(why.into())).expect("answer");
        export_menu(&mut h, entry);
        let error = wait_for_error(&mut h);
        assert_eq!(error, format!("{title}: no file dialog could open ({why})"));
        h.get_by_label_contains("no file dialog could open");
        h.get_by_label("dismiss").click();
        h.step();
        assert!(h.state().status_error().is_none());
    }

    // The Data group's "Open .npy…" button goes the same way.
    answer.send(Err(why.into())).expect("answer");
    h.get_by_label("Open .npy…").click();
    h.step();
    let error = wait_for_error(&mut h);
    assert!(
        error.starts_with("Open .npy: no file dialog could open"),
        "{error}"
    );
    assert!(!h.state().is_sampling(), "nothing was loaded");
}

#[test]
fn a_bad_file_picked_in_a_dialog_is_an_error_and_the_app_keeps_its_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.npy");
    std::fs::write(&bad, b"not numpy").expect("write");
    let (mut h, answer, asked) = app_with_dialogs();
    let first = wait_for_run(&mut h, 0);
    answer.send(Ok(Some(bad))).expect("answer");
    h.get_by_label("Open .npy…").click();
    h.step();
    let spec = last_asked(&asked).expect("a dialog was asked for");
    assert_eq!(spec.filter.map(|f| f.1), Some(&["npy"][..]));
    let error = wait_for_error(&mut h);
    assert!(error.contains("bad.npy"), "{error}");
    let shown = h.state().store().current.as_ref().map(|r| r.generation);
    assert_eq!(shown, Some(first.generation));
    assert_eq!(h.state().settings.spec, first.spec);
}
