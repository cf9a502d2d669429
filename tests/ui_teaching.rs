//! The teaching side of the app, driven headless by egui_kittest with the real worker: every
//! built-in lesson opens on its tab with its text and locks (a locked control cannot change
//! the run) and runs to its last stage without an error; presenter mode hides the controls and
//! scales the UI; a view PNG restores its scene in the app and in `noisescope sample`; files
//! dropped on the window open; a diverging run shows the banner and a normal one does not; a
//! value typed out of range and a spectrum that does not parse say so at the field.

mod ui_support;

use std::time::Instant;

use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};

use noisescope::app::controls::{Access, Control};
use noisescope::app::lessons::builtin;
use noisescope::app::{Lesson, NoiseScopeApp, Settings, Tab};
use noisescope::core::guidance::{NagForm, NagStep};
use noisescope::data::DataSpec;
use noisescope::run::RunSpec;
use noisescope::run::store::RunRecord;

use ui_support::{
    AppHarness, TIMEOUT, drop_file, harness, set_slider, tall, wait_for_replay, wait_for_run,
};

/// Whether any label contains `text`.
fn shows(h: &AppHarness, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

/// Sliders a lesson may lock, with a value each would change to.
const SLIDERS: [(Control, &str, f64); 5] = [
    (Control::Steps, "steps N", 7.0),
    (Control::Churn, "S_churn", 33.0),
    (Control::Nag, "NAG w", 2.0),
    (Control::Batch, "batch", 77.0),
    (Control::SigmaMax, "σ_max", 20.0),
];

#[test]
fn each_lesson_opens_with_its_tab_text_and_locks_and_a_locked_control_cannot_change_the_run() {
    for lesson in builtin::lessons() {
        let mut h = harness(Settings::default(), tall());
        let first = wait_for_run(&mut h, 0);
        h.state_mut().open_lesson(lesson.clone());
        h.run_steps(2);
        let stage = &lesson.stages[0];
        let want = lesson.stage_settings(0).expect("a valid stage");
        let app = h.state();
        assert_eq!(app.settings.view.tab, stage.tab, "{}", lesson.title);
        assert_eq!(app.settings.spec, want.spec, "{}", lesson.title);
        assert!(shows(&h, &lesson.title), "{}: title shown", lesson.title);
        assert!(
            shows(&h, &stage.title),
            "{}: stage title shown",
            lesson.title
        );
        let first_paragraph = stage.text.split("\n\n").next().unwrap_or_default();
        assert!(shows(&h, first_paragraph), "{}: text shown", lesson.title);
        assert!(shows(&h, "stage 1 of"), "{}", lesson.title);
        // Reset would destroy the lesson: hidden.
        assert!(!shows(&h, "Reset to default scene"), "{}", lesson.title);
        let access = stage.controls.table();
        let mut tried = 0;
        for (control, label, value) in SLIDERS {
            match access.of(control) {
                Access::Locked => {
                    let slider = h.get_by_role_and_label(Role::Slider, label);
                    assert!(
                        slider.accesskit_node().is_disabled(),
                        "{}: {label} is locked",
                        lesson.title
                    );
                    set_slider(&mut h, label, value);
                    h.step();
                    assert_eq!(
                        h.state().settings.spec,
                        want.spec,
                        "{}: the locked {label} changed the run",
                        lesson.title
                    );
                    tried += 1;
                }
                Access::Hidden => {
                    assert!(h.query_by_role_and_label(Role::Slider, label).is_none());
                }
                Access::Open => {}
            }
        }
        assert!(tried >= 3, "{}: locks tried", lesson.title);
        // The run of the stage, and no other, was started (a stage on the default scene keeps
        // the launch run).
        let run = if want.spec == first.spec {
            h.run_steps(2);
            h.state().store().current.clone().expect("the launch run")
        } else {
            wait_for_run(&mut h, first.generation)
        };
        assert_eq!(run.spec, want.spec, "{}", lesson.title);
    }
}

#[test]
fn an_open_control_changes_the_run_and_leaving_opens_every_control() {
    let lessons = builtin::lessons();
    let nag = lessons
        .iter()
        .find(|l| l.title.starts_with("NAG"))
        .expect("the NAG lesson");
    let mut h = harness(Settings::default(), tall());
    let first = wait_for_run(&mut h, 0);
    h.state_mut().open_lesson(nag.clone());
    let stage0 = wait_for_run(&mut h, first.generation);
    h.state_mut().go_to_stage(2);
    h.step();
    // NAG w is open at the last stage: the learner moves it.
    set_slider(&mut h, "NAG w", 1.0);
    let moved = wait_for_run(&mut h, stage0.generation);
    assert_eq!(moved.spec.guidance.nag, 1.0);
    // The batch stays locked.
    set_slider(&mut h, "batch", 50.0);
    h.step();
    assert_eq!(h.state().settings.spec.batch, 300);
    h.state_mut().leave_lesson();
    h.step();
    assert!(shows(&h, "Reset to default scene"));
    set_slider(&mut h, "batch", 50.0);
    let free = wait_for_run(&mut h, moved.generation);
    assert_eq!(free.spec.batch, 50);
}

/// Stages whose scene diverges on purpose: (lesson title prefix, stage index).
const DIVERGING_STAGES: [(&str, usize); 2] = [("Schedules", 1), ("NAG", 2)];

#[test]
fn every_lesson_runs_to_its_last_stage_without_an_error() {
    let mut diverged = Vec::new();
    for lesson in builtin::lessons() {
        let mut h = harness(Settings::default(), tall());
        let mut shown: RunRecord = wait_for_run(&mut h, 0);
        h.state_mut().open_lesson(lesson.clone());
        for (k, stage) in lesson.stages.iter().enumerate() {
            if k > 0 {
                h.get_by_label("Next").click();
            }
            h.step();
            let want = lesson.stage_settings(k).expect("a valid stage");
            assert_eq!(
                h.state().settings.view.tab,
                stage.tab,
                "{} {k}",
                lesson.title
            );
            assert_eq!(h.state().settings.spec, want.spec, "{} {k}", lesson.title);
            if stage.pin_baseline {
                let pinned = h.state().store().baseline.as_ref().map(|b| b.generation);
                assert_eq!(
                    pinned,
                    Some(shown.generation),
                    "{} {k}: pinned",
                    lesson.title
                );
            }
            if shown.spec != want.spec {
                shown = wait_for_run(&mut h, shown.generation);
            }
            wait_for_replay(&mut h);
            h.run_steps(3);
            assert_eq!(shown.spec, want.spec, "{} {k}", lesson.title);
            assert!(
                h.state().status_error().is_none(),
                "{} stage {}: {:?}",
                lesson.title,
                k + 1,
                h.state().status_error()
            );
            if h.state().divergence().is_some() {
                diverged.push((lesson.title.clone(), k));
            }
        }
        h.get_by_label("Finish").click();
        h.step();
        assert!(h.state().active_lesson().is_none(), "{}", lesson.title);
    }
    // Exactly the stages that diverge on purpose show the banner.
    let on_purpose: Vec<(String, usize)> = builtin::lessons()
        .iter()
        .flat_map(|l| {
            DIVERGING_STAGES
                .iter()
                .filter(|(t, _)| l.title.starts_with(t))
                .map(|(_, k)| (l.title.clone(), *k))
        })
        .collect();
    assert_eq!(diverged, on_purpose, "(lesson, stage index) that diverged");
}

#[test]
fn presenter_mode_hides_the_panel_and_scales_the_ui() {
    let mut h = harness(Settings::default(), tall());
    wait_for_run(&mut h, 0);
    h.step();
    // The launch run replays from x_0: let it end, so Space starts a replay.
    wait_for_replay(&mut h);
    let zoom = h.ctx.zoom_factor();
    assert!(h.query_by_role_and_label(Role::Slider, "S_churn").is_some());
    assert!(shows(&h, "backend:"), "the status bar");
    h.key_press(egui::Key::P);
    h.run_steps(2);
    assert!(h.state().presenter());
    assert!(
        (h.ctx.zoom_factor() - zoom * noisescope::app::presenter::PRESENTER_ZOOM).abs() < 1e-6,
        "scaled: {}",
        h.ctx.zoom_factor()
    );
    assert!(
        h.query_by_role_and_label(Role::Slider, "S_churn").is_none(),
        "no controls panel"
    );
    assert!(!shows(&h, "backend:"), "no status bar");
    // Space replays, the arrows step, R reruns, all without the mouse.
    h.key_press(egui::Key::Space);
    h.step();
    assert!(h.state().replay().playing);
    h.key_press(egui::Key::Space);
    h.step();
    assert!(!h.state().replay().playing);
    // A lesson's open controls come with its panel.
    let churn = builtin::lessons()
        .into_iter()
        .find(|l| l.title.starts_with("S_churn"))
        .expect("the S_churn lesson");
    h.state_mut().open_lesson(churn);
    h.key_press(egui::Key::PageDown);
    h.run_steps(2);
    assert_eq!(h.state().active_lesson().map(|a| a.stage), Some(1));
    assert!(h.query_by_role_and_label(Role::Slider, "S_churn").is_some());
    assert!(h.query_by_role_and_label(Role::Slider, "NAG w").is_none());
    h.key_press(egui::Key::Escape);
    h.run_steps(2);
    assert!(!h.state().presenter());
    assert!((h.ctx.zoom_factor() - zoom).abs() < 1e-6);
    assert!(h.query_by_role_and_label(Role::Slider, "NAG w").is_some());
    // F11 asks the window for full screen, and back when it is (the window manager acts on it:
    // checked by hand in a real window under Xvfb + openbox, README "Teaching").
    let fullscreen_asked = |h: &AppHarness| -> Vec<bool> {
        h.output()
            .viewport_output
            .get(&egui::ViewportId::ROOT)
            .map(|v| {
                v.commands
                    .iter()
                    .filter_map(|c| match c {
                        egui::ViewportCommand::Fullscreen(on) => Some(*on),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // One frame with the key going down: that frame's output carries the command.
    let press_f11 = |h: &mut AppHarness| {
        for pressed in [true, false] {
            h.input_mut().events.push(egui::Event::Key {
                key: egui::Key::F11,
                physical_key: None,
                pressed,
                repeat: false,
                modifiers: egui::Modifiers::NONE,
            });
            if pressed {
                h.step();
            }
        }
    };
    press_f11(&mut h);
    assert_eq!(fullscreen_asked(&h), vec![true]);
    h.input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .fullscreen = Some(true);
    h.step();
    press_f11(&mut h);
    assert_eq!(fullscreen_asked(&h), vec![false]);
}

fn wait_for_export(h: &mut AppHarness) {
    let deadline = Instant::now() + TIMEOUT;
    while h.state().export_busy() {
        h.step();
        assert!(Instant::now() < deadline, "the export did not finish");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    h.step();
}

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_noisescope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn a_view_png_restores_its_scene_in_the_app_and_in_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::default();
    settings.spec.batch = 200;
    settings.spec.seed = 5;
    settings.spec.sampler = noisescope::core::sampler::SamplerKind::Edm;
    settings.spec.stochasticity.churn = 7.0;
    settings.view.tab = Tab::NoiseLevel;
    let mut h = harness(settings.clone(), egui::vec2(1400.0, 900.0));
    wait_for_run(&mut h, 0);
    let png = dir.path().join("view.png");
    let ctx = h.ctx.clone();
    h.state_mut().export_view_png(&ctx, png.clone());
    wait_for_export(&mut h);
    assert!(
        h.state().status_error().is_none(),
        "{:?}",
        h.state().status_error()
    );
    assert_eq!(
        noisescope::run::preset::load_preset(&png).expect("the PNG carries the preset"),
        settings.spec
    );
    image::open(&png).expect("still an ordinary PNG");

    // Dropped on another app, the picture restores the scene: the run and the tab.
    let mut other = harness(Settings::default(), egui::vec2(1400.0, 900.0));
    let first = wait_for_run(&mut other, 0);
    drop_file(&mut other, &png);
    let restored = wait_for_run(&mut other, first.generation);
    assert_eq!(restored.spec, settings.spec);
    assert_eq!(other.state().settings.view.tab, Tab::NoiseLevel);

    // The CLI reads the same chunk: the PNG and the JSON preset give the same samples.
    let json = dir.path().join("preset.json");
    std::fs::write(&json, settings.spec.to_json()).expect("preset");
    let (from_png, from_json) = (dir.path().join("png"), dir.path().join("json"));
    for (preset, out) in [(&png, &from_png), (&json, &from_json)] {
        let o = cli(&[
            "sample",
            "--preset",
            &preset.display().to_string(),
            "--out",
            &out.display().to_string(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for file in ["traj.npy", "sigmas.npy"] {
        let a = std::fs::read(from_png.join(file)).expect("png run");
        let b = std::fs::read(from_json.join(file)).expect("json run");
        assert!(a == b, "{file} differs");
    }
    // A PNG without a scene is one clear error.
    let plain = dir.path().join("plain.png");
    image::RgbaImage::new(4, 4).save(&plain).expect("plain png");
    let o = cli(&[
        "sample",
        "--preset",
        &plain.display().to_string(),
        "--out",
        &dir.path().join("x").display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("carries no noisescope scene"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn presets_lessons_npy_files_and_image_folders_open_when_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(Settings::default(), tall());
    let mut last = wait_for_run(&mut h, 0);

    // A preset.
    let spec = RunSpec {
        seed: 11,
        batch: 100,
        ..Settings::default().spec
    };
    let preset = dir.path().join("p.json");
    std::fs::write(&preset, spec.to_json()).expect("preset");
    drop_file(&mut h, &preset);
    last = wait_for_run(&mut h, last.generation);
    assert_eq!(last.spec, spec);

    // An .npy data set.
    let points = dir.path().join("points.npy");
    let values: Vec<f64> = (0..200).map(|i| (i as f64 * 0.37).sin() * 2.0).collect();
    noisescope::data::npy::write(&points, &[100, 2], &values, true).expect("npy");
    drop_file(&mut h, &points);
    last = wait_for_run(&mut h, last.generation);
    assert!(
        matches!(last.spec.data, DataSpec::Npy { .. }),
        "{:?}",
        last.spec.data
    );

    // A folder of images.
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("folder");
    for k in 0..3u8 {
        image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x as u8 * 30) ^ (y as u8 * k)]))
            .save(images.join(format!("{k}.png")))
            .expect("image");
    }
    drop_file(&mut h, &images);
    last = wait_for_run(&mut h, last.generation);
    assert!(
        matches!(last.spec.data, DataSpec::Images { .. }),
        "{:?}",
        last.spec.data
    );

    // A lesson file.
    let lesson = builtin::lessons().remove(1);
    let file = dir.path().join("lesson.json");
    std::fs::write(&file, lesson.to_json()).expect("lesson");
    drop_file(&mut h, &file);
    h.step();
    assert_eq!(
        h.state().active_lesson().map(|a| a.lesson.title.clone()),
        Some(lesson.title.clone())
    );
    assert!(
        h.state().status_error().is_none(),
        "{:?}",
        h.state().status_error()
    );
}

#[test]
fn save_as_lesson_writes_the_scene_text_and_locks_and_the_file_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::default();
    settings.view.tab = Tab::Curvature;
    settings.spec.schedule.steps = 9;
    let mut h = harness(settings.clone(), tall());
    wait_for_run(&mut h, 0);
    h.get_by_label("Lessons").click();
    h.run_steps(2);
    h.get_by_label("Save as lesson…").click();
    h.run_steps(2);
    assert!(shows(
        &h,
        "The current scene and tab become the lesson's stage."
    ));
    let mut draft = noisescope::app::LessonDraft::new(h.state());
    draft.title = "Nine steps".into();
    draft.text = "Look at the curvature.".into();
    draft.access.set(Control::Steps, Access::Open);
    let path = dir.path().join("nine.json");
    std::fs::write(&path, draft.lesson(&h.state().settings).to_json()).expect("lesson");
    let lesson = Lesson::from_json(&std::fs::read_to_string(&path).expect("read")).expect("valid");
    assert_eq!(lesson.stage_settings(0).expect("stage").spec, settings.spec);
    assert_eq!(lesson.stages[0].tab, Tab::Curvature);

    let mut other = harness(Settings::default(), tall());
    wait_for_run(&mut other, 0);
    other.state_mut().load_lesson(&path);
    other.run_steps(2);
    assert_eq!(other.state().settings.view.tab, Tab::Curvature);
    assert!(shows(&other, "Look at the curvature."));
    assert!(
        !other
            .get_by_role_and_label(Role::Slider, "steps N")
            .accesskit_node()
            .is_disabled()
    );
    assert!(
        other
            .get_by_role_and_label(Role::Slider, "S_churn")
            .accesskit_node()
            .is_disabled()
    );
}

#[test]
fn a_diverging_run_shows_the_banner_and_a_normal_one_does_not() {
    let mut h = harness(Settings::default(), tall());
    let normal = wait_for_run(&mut h, 0);
    h.run_steps(2);
    assert!(h.state().divergence().is_none());
    assert!(!shows(&h, "This run diverged"));
    // NAG at the paper's weight in the exact-score form, stepped explicitly: the samples leave
    // the data.
    h.state_mut().settings.spec.batch = 200;
    h.state_mut().settings.spec.guidance.nag_form = NagForm::ExactScore;
    h.state_mut().settings.spec.guidance.nag_step = NagStep::Explicit;
    h.state_mut().settings.spec.guidance.nag = 3.0;
    let diverged = wait_for_run(&mut h, normal.generation);
    h.run_steps(2);
    assert!(shows(&h, "This run diverged"));
    assert!(shows(&h, "Likely cause:"));
    assert!(shows(&h, "NAG w = 3"));
    let d = h.state().divergence().expect("diverged").clone();
    assert!(d.samples.len() > 20, "{} samples", d.samples.len());
    // The fix reruns the same noise with NAG w = 0.5, and the banner goes.
    h.get_by_label("Apply the fix").click();
    h.step();
    let fixed = wait_for_run(&mut h, diverged.generation);
    assert_eq!(fixed.spec.guidance.nag, 0.5);
    h.run_steps(2);
    assert!(h.state().divergence().is_none());
    assert!(!shows(&h, "This run diverged"));
}

#[test]
fn a_value_typed_out_of_range_and_a_bad_spectrum_say_so_at_the_field() {
    let mut h = harness(Settings::default(), tall());
    let first = wait_for_run(&mut h, 0);
    set_slider(&mut h, "σ_min", 100.0);
    h.step();
    assert_eq!(h.state().settings.spec.schedule.sigma_min, 0.5);
    assert!(shows(&h, "σ_min 100 is outside 1e-4–0.5: set to 0.5"));
    set_slider(&mut h, "batch", 1e6);
    h.step();
    assert_eq!(h.state().settings.spec.batch, 20_000);
    assert!(shows(&h, "batch 1e6 is outside 1–2e4: set to 2e4"));
    // Moving the slider again clears its note.
    set_slider(&mut h, "σ_min", 0.01);
    h.step();
    assert!(!shows(&h, "σ_min 100"));

    // S_churn's notice goes once S_churn is back at 0.
    set_slider(&mut h, "S_churn", 20.0);
    assert!(shows(&h, "heun -> edm"));
    set_slider(&mut h, "S_churn", 0.0);
    h.step();
    assert!(!shows(&h, "heun -> edm"));

    // A Gaussian spectrum that does not parse: an error at the field, the run keeps the last.
    h.state_mut().load_data(DataSpec::Gaussian {
        spectrum: vec![4.0, 1.0],
    });
    let gauss = wait_for_run(&mut h, first.generation);
    let field = h.get_by_role_and_label(Role::TextInput, "λ:");
    field.focus();
    h.step();
    h.get_by_role_and_label(Role::TextInput, "λ:")
        .set_text_value_accesskit("-1, abc, 0");
    h.step();
    h.key_press(egui::Key::Enter);
    h.run_steps(2);
    assert!(shows(&h, "'abc' is not a number"), "the error at the field");
    assert_eq!(
        h.state().settings.spec.data,
        gauss.spec.data,
        "the run keeps its spectrum"
    );
}

#[test]
fn the_baseline_says_how_it_differs_and_flips() {
    let mut h = harness(Settings::default(), tall());
    let first = wait_for_run(&mut h, 0);
    h.get_by_label("Pin as baseline").click();
    h.step();
    set_slider(&mut h, "NAG w", 0.25);
    wait_for_run(&mut h, first.generation);
    h.run_steps(2);
    assert!(shows(&h, "baseline -> live: NAG w 0 -> 0.25"));
    h.state_mut().settings.view.tab = Tab::States;
    h.key_press(egui::Key::F);
    h.run_steps(2);
    assert!(shows(&h, "showing: baseline"));
    assert!(shows(&h, "baseline (pinned): x_18"));
    assert!(!shows(&h, "live: x_18"));
}

#[test]
fn the_welcome_shows_on_a_first_launch_and_never_after_it_is_dismissed() {
    #[derive(Default)]
    struct Memory(std::collections::HashMap<String, String>);
    impl eframe::Storage for Memory {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.to_string(), value);
        }
        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }
        fn flush(&mut self) {}
    }
    let mut storage = Memory::default();
    let app = NoiseScopeApp::from_storage(Some(&storage));
    assert!(app.welcome_open());
    let mut h = ui_support::harness_of(app, tall());
    h.run_steps(2);
    assert!(shows(&h, "Welcome to noisescope"));
    h.get_by_label("Start the first lesson").click();
    h.run_steps(2);
    assert!(!h.state().welcome_open());
    assert!(h.state().active_lesson().is_some());
    eframe::App::save(h.state_mut(), &mut storage);
    let again = NoiseScopeApp::from_storage(Some(&storage));
    assert!(!again.welcome_open(), "dismissed once, never again");
}
