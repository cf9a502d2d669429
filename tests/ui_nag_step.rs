//! NAG's step in the app (issue 11): the "NAG step" picker switches a digits run at the paper's
//! w = 3 on 18 Heun steps between the explicit step, which diverges (the banner blames
//! (1 + w) r past 2 and offers the exponential step), and the exponential step, the default,
//! which stays on the data.

mod ui_support;

use egui::accesskit::Role;
use egui_kittest::kittest::{By, Queryable};

use noisescope::app::{Settings, Tab};
use noisescope::core::guidance::NagStep;
use noisescope::data::DataSpec;

use ui_support::{AppHarness, harness, set_slider, tall, wait_for_run};

fn shows(h: &AppHarness, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

#[test]
fn the_nag_step_picker_turns_a_diverging_explicit_run_into_a_stable_one() {
    let mut s = Settings::default_scene();
    s.spec.data = DataSpec::Digits;
    s.spec.batch = 64;
    s.view.tab = Tab::NoiseLevel;
    let mut h = harness(s, tall());
    let first = wait_for_run(&mut h, 0);
    assert_eq!(first.spec.guidance.nag_step, NagStep::Exponential);
    set_slider(&mut h, "NAG w", 3.0);
    let stable = wait_for_run(&mut h, first.generation);
    assert_eq!(stable.spec.guidance.nag, 3.0);
    h.run_steps(2);
    assert!(h.state().divergence().is_none(), "the exponential step");

    h.get(
        By::new()
            .role(Role::ComboBox)
            .value("NAG step: exponential (stable)"),
    )
    .click();
    h.run_steps(2);
    h.get_by_label("explicit (the paper's)").click();
    h.run_steps(2);
    assert_eq!(h.state().settings.spec.guidance.nag_step, NagStep::Explicit);
    let explicit = wait_for_run(&mut h, stable.generation);
    assert_eq!(explicit.spec.guidance.nag_step, NagStep::Explicit);
    h.run_steps(2);
    assert!(
        h.state().divergence().is_some(),
        "the explicit step at w = 3"
    );
    assert!(shows(&h, "This run diverged"));
    assert!(shows(&h, "with the explicit step"));

    // The banner's fix: the exponential step, the same noise, and the banner goes.
    h.get_by_label("Apply the fix").click();
    h.step();
    let fixed = wait_for_run(&mut h, explicit.generation);
    assert_eq!(fixed.spec.guidance.nag_step, NagStep::Exponential);
    assert_eq!(fixed.spec.guidance.nag, 3.0);
    h.run_steps(2);
    assert!(h.state().divergence().is_none());
    assert!(!shows(&h, "This run diverged"));
}
