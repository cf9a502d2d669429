//! Plots a class can use, driven headless by egui_kittest with the real worker: clicking a
//! point of a step plot shows that step's state.

mod ui_support;

use egui_plot::{PlotMemory, PlotPoint};

use noisescope::app::{Settings, Tab, angle_plot_id};

use ui_support::{harness, wait_for_replay, wait_for_run};

fn click(h: &mut ui_support::AppHarness, pos: egui::Pos2) {
    h.hover_at(pos);
    h.step();
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::NONE,
        });
    }
    h.run_steps(2);
}

#[test]
fn clicking_a_point_of_the_turning_angle_shows_that_step() {
    let mut settings = Settings::default();
    settings.view.tab = Tab::Curvature;
    let mut h = harness(settings, egui::vec2(1400.0, 900.0));
    let run = wait_for_run(&mut h, 0);
    wait_for_replay(&mut h);
    h.run_steps(2);
    let count = run.state_count();
    assert_eq!(
        h.state().replay().visible(count),
        count - 1,
        "the last state"
    );
    let transform = PlotMemory::load(&h.ctx, angle_plot_id("curv"))
        .expect("the angle plot was drawn")
        .transform();
    for step in [5, 11, 2] {
        let record = run
            .records
            .iter()
            .find(|r| r.step == step)
            .expect("a record of the step");
        let at = transform.position_from_point(&PlotPoint::new(step as f64, record.angle_deg));
        click(&mut h, at);
        assert_eq!(
            h.state().replay().visible(count),
            step,
            "clicked step {step}"
        );
        assert!(!h.state().replay().playing);
    }
    // The axes stay put as the shown step moves.
    let after = PlotMemory::load(&h.ctx, angle_plot_id("curv")).expect("drawn");
    assert_eq!(after.transform().bounds(), transform.bounds());
    // A click beside the steps (left of step 0, inside the plot's margin) changes nothing.
    let before = transform.position_from_point(&PlotPoint::new(-0.7, 0.0));
    click(&mut h, before);
    assert_eq!(h.state().replay().visible(count), 2);
}
