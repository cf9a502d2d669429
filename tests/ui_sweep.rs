//! The Sweep tab through its own buttons (egui_kittest, the real sweep and sampling threads): a
//! built-in sweep runs to completion from one click, sampling keeps rerunning while a sweep
//! runs, Cancel stops a sweep and keeps its finished rows (and pins them), opening a point
//! runs that point in the normal views, and a sweep.json written by `noisescope sweep` opens
//! (Open sweep…, or dropped on the window) and gives the CLI's sweep.csv metrics.

mod cli_support;
mod ui_support;

use std::sync::Arc;
use std::sync::mpsc::channel;

use egui_kittest::kittest::Queryable;

use noisescope::app::{NoiseScopeApp, Settings, Tab};
use noisescope::run::sweep::SweepMetric;
use noisescope::run::sweep::thread::SweepStatus;

use cli_support::{noisescope, path, stderr};
use ui_support::{
    AppHarness, Scripted, drop_file, harness, harness_of, set_slider, tall, wait_for_error,
    wait_for_run, wait_until,
};

fn sweep_app() -> AppHarness {
    let mut settings = Settings::default();
    settings.view.tab = Tab::Sweep;
    harness(settings, tall())
}

#[test]
fn a_builtin_sweep_runs_to_completion_from_the_tab() {
    let mut h = sweep_app();
    wait_for_run(&mut h, 0);
    h.get_by_label("schedules-gaussian").click();
    wait_until(&mut h, "the sweep finished", |app| {
        app.sweeps()
            .current
            .as_ref()
            .is_some_and(|c| c.status == SweepStatus::Finished)
    });
    let current = h.state().sweeps().current.clone().expect("a sweep");
    assert_eq!(current.spec.name, "schedules-gaussian");
    assert_eq!(current.rows.len(), 18);
    assert_eq!(current.total, 18);
    for row in &current.rows {
        let kl = row.metric(SweepMetric::Kl).expect("every point has its KL");
        assert!(kl > 0.0, "{:?}: {kl}", row.values);
    }
    // The progress bar says so, and the tab still draws.
    h.get_by_label_contains("18 / 18 points, finished");
    h.step();
    assert!(h.state().status_error().is_none());
    // Opening a point (what clicking it does) runs that point in the normal views: its spec,
    // so its noise, and the same closed-form KL.
    let before = h.state().store().expected;
    let row = current.rows[10].clone();
    h.state_mut().open_sweep_point(10);
    let run = wait_for_run(&mut h, before);
    assert_eq!(h.state().settings.view.tab, Tab::Overview);
    assert_eq!(run.spec, row.spec);
    assert_eq!(
        run.theory.as_ref().map(|t| t.kl),
        row.metric(SweepMetric::Kl),
        "{:?}",
        row.values
    );
}

#[test]
fn cancel_keeps_the_finished_rows_and_sampling_goes_on() {
    let mut h = sweep_app();
    let first = wait_for_run(&mut h, 0);
    h.get_by_label("samplers-digits").click();
    wait_until(&mut h, "the first rows", |app| {
        app.sweeps()
            .current
            .as_ref()
            .is_some_and(|c| !c.rows.is_empty())
    });
    // Sampling reruns while the sweep runs.
    h.state_mut().settings.view.tab = Tab::Overview;
    h.step();
    set_slider(&mut h, "S_churn", 20.0);
    let churned = wait_for_run(&mut h, first.generation);
    assert_eq!(churned.spec.stochasticity.churn, 20.0);
    h.state_mut().settings.view.tab = Tab::Sweep;
    h.step();
    let before = h
        .state()
        .sweeps()
        .current
        .as_ref()
        .map_or(0, |c| c.rows.len());
    h.get_by_label("Cancel sweep").click();
    wait_until(&mut h, "the sweep cancelled", |app| {
        app.sweeps()
            .current
            .as_ref()
            .is_some_and(|c| !c.is_running())
    });
    let current = h.state().sweeps().current.clone().expect("a sweep");
    assert_eq!(current.status, SweepStatus::Cancelled);
    assert!(
        current.rows.len() >= before.max(1),
        "{}",
        current.rows.len()
    );
    assert!(current.rows.len() < current.total);
    for _ in 0..10 {
        h.step();
    }
    let kept = h.state().sweeps().current.clone().expect("a sweep");
    assert_eq!(kept.rows.len(), current.rows.len());
    for (k, row) in kept.rows.iter().enumerate() {
        assert_eq!(row.index, k);
        assert!(row.metric(SweepMetric::W2).is_some());
    }
    h.get_by_label("Pin sweep as baseline").click();
    h.step();
    assert!(h.state().sweeps().baseline.is_some());
}

/// Steps frames until the sweep after generation `after` has finished; returns its generation.
fn wait_for_sweep(h: &mut AppHarness, after: Option<u64>) -> u64 {
    wait_until(h, "the opened sweep finished", |app| {
        app.sweeps()
            .current
            .as_ref()
            .is_some_and(|c| Some(c.generation) != after && c.status == SweepStatus::Finished)
    });
    h.state()
        .sweeps()
        .current
        .as_ref()
        .map(|c| c.generation)
        .expect("a sweep")
}

/// The current sweep's rows equal the CLI's sweep.csv: same points, metrics to the last bit.
fn assert_rows_match_csv(app: &NoiseScopeApp, csv: &str) {
    let current = app.sweeps().current.as_ref().expect("a sweep");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(current.rows.len(), rows.len());
    let column = |name: &str| header.iter().position(|h| *h == name).expect(name);
    for (row, cells) in current.rows.iter().zip(&rows) {
        assert_eq!(row.index.to_string(), cells[column("point")]);
        assert_eq!(row.values[0], cells[column("steps")]);
        assert_eq!(row.values[1], cells[column("sampler")]);
        assert_eq!(
            row.evaluations.to_string(),
            cells[column("evaluations")],
            "point {}",
            row.index
        );
        for metric in [SweepMetric::W2, SweepMetric::Mmd] {
            let cli: f64 = cells[column(metric.name())].parse().expect("a number");
            assert_eq!(
                row.metric(metric),
                Some(cli),
                "point {} {metric:?}",
                row.index
            );
        }
    }
}

#[test]
fn a_sweep_json_from_the_cli_opens_in_the_app_and_gives_the_same_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "cli");
    let o = noisescope(&[
        "sweep",
        "--data",
        "toy:moons",
        "--batch",
        "64",
        "--seed",
        "3",
        "--diagnostics",
        "off",
        "--vary",
        "steps=3,5",
        "--vary",
        "sampler=euler,heun",
        "--metric",
        "w2,mmd",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(dir.path().join("cli/sweep.csv")).expect("sweep.csv");
    let preset = dir.path().join("cli/sweep.json");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"vary": [{"param": "stepz", "values": ["4"]}], "metrics": ["w2"]}"#,
    )
    .expect("write");

    let (tx, rx) = channel();
    let mut app = NoiseScopeApp::new(Settings::default());
    app.set_file_dialogs(Arc::new(Scripted::new(rx)));
    let mut h = harness_of(app, tall());
    let first = wait_for_run(&mut h, 0);

    // Open sweep… in the Sweep tab, through the (scripted) file dialog.
    h.state_mut().settings.view.tab = Tab::Sweep;
    h.step();
    tx.send(Ok(Some(preset.clone()))).expect("answer");
    h.get_by_label("Open sweep…").click();
    let opened = wait_for_sweep(&mut h, None);
    assert_rows_match_csv(h.state(), &csv);
    assert!(h.state().status_error().is_none());

    // A bad file is one clear message; the sweep shown and the app stay.
    tx.send(Ok(Some(bad.clone()))).expect("answer");
    h.get_by_label("Open sweep…").click();
    let why = wait_for_error(&mut h);
    assert!(why.contains("bad.json") && why.contains("stepz"), "{why}");
    assert!(!why.contains('\n'), "one line: {why}");
    assert_eq!(
        h.state().sweeps().current.as_ref().map(|c| c.generation),
        Some(opened)
    );

    // Dropped on the window (from another tab), the same file runs the same sweep again.
    h.state_mut().settings.view.tab = Tab::Overview;
    drop_file(&mut h, &preset);
    assert_eq!(h.state().settings.view.tab, Tab::Sweep);
    wait_for_sweep(&mut h, Some(opened));
    assert_rows_match_csv(h.state(), &csv);
    // Opening a sweep leaves the scene's settings alone.
    assert_eq!(h.state().settings.spec, first.spec);
}
