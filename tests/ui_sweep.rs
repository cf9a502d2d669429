//! The Sweep tab through its own buttons (egui_kittest, the real sweep and sampling threads): a
//! built-in sweep runs to completion from one click, sampling keeps rerunning while a sweep
//! runs, Cancel stops a sweep and keeps its finished rows (and pins them), and opening a point
//! runs that point in the normal views.

mod ui_support;

use egui_kittest::kittest::Queryable;

use noisescope::app::{Settings, Tab};
use noisescope::run::sweep::SweepMetric;
use noisescope::run::sweep::thread::SweepStatus;

use ui_support::{AppHarness, harness, set_slider, tall, wait_for_run, wait_until};

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
