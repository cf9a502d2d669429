//! The Sampler & schedule, Stochasticity and Guidance groups.

use egui::{ComboBox, RichText, Ui};

use crate::core::estimate::SigmaPrior;
use crate::core::guidance::{NagForm, NagStep};
use crate::core::sampler::SamplerKind;
use crate::core::schedule::ScheduleKind;
use crate::run::RunSpec;
use crate::run::spec::{AdaptiveEstimator, ClassSpec, DenoiserSpec, GuidanceSpec};

use super::data::file_name;
use super::{Control, ControlsInfo, ControlsState, gate, slider};
use crate::app::estimator::estimator_label;
use crate::app::settings::Settings;
use crate::app::tips;

pub(super) fn sampler_group(ui: &mut Ui, settings: &mut Settings, info: &ControlsInfo) {
    let spec = &mut settings.spec;
    gate(ui, info, Control::Sampler, |ui| {
        ComboBox::from_id_salt("sampler")
            .selected_text(format!("sampler: {}", spec.sampler))
            .show_ui(ui, |ui| {
                for &kind in <SamplerKind as clap::ValueEnum>::value_variants() {
                    ui.selectable_value(&mut spec.sampler, kind, kind.to_string());
                }
            })
            .response
            .on_hover_text(tips::SAMPLER);
    });
    let schedule = &mut spec.schedule;
    gate(ui, info, Control::Steps, |ui| {
        slider(
            ui,
            &mut schedule.steps,
            1..=256,
            "steps N",
            tips::STEPS,
            true,
        );
    });
    gate(ui, info, Control::Schedule, |ui| {
        let family = schedule.kind.name();
        ComboBox::from_id_salt("schedule")
            .selected_text(format!("schedule: {family}"))
            .show_ui(ui, |ui| {
                for kind in ScheduleKind::FAMILIES {
                    let selected = schedule.kind.name() == kind.name();
                    if ui.selectable_label(selected, kind.name()).clicked() && !selected {
                        schedule.kind = kind;
                    }
                }
            })
            .response
            .on_hover_text(tips::SCHEDULE);
        if let ScheduleKind::Tangent { c } = &mut schedule.kind {
            let mut auto = c.is_none();
            if ui
                .checkbox(&mut auto, "auto c (KL-optimal)")
                .on_hover_text(tips::TANGENT_AUTO)
                .changed()
            {
                *c = if auto { None } else { Some(1.0) };
            }
            if let Some(c) = c {
                slider(ui, c, 0.01..=100.0, "c", tips::TANGENT_C, true);
            }
        }
    });
    gate(ui, info, Control::Rho, |ui| {
        ui.add_enabled_ui(schedule.kind == ScheduleKind::Karras, |ui| {
            slider(
                ui,
                &mut schedule.rho,
                1.0..=20.0,
                "ρ (rho)",
                tips::RHO,
                false,
            );
        });
    });
    let ranged = schedule.kind != ScheduleKind::Vp;
    gate(ui, info, Control::SigmaMin, |ui| {
        ui.add_enabled_ui(ranged, |ui| {
            slider(
                ui,
                &mut schedule.sigma_min,
                1e-4..=0.5,
                "σ_min",
                tips::SIGMA_MIN,
                true,
            );
        });
    });
    gate(ui, info, Control::SigmaMax, |ui| {
        ui.add_enabled_ui(ranged, |ui| {
            slider(
                ui,
                &mut schedule.sigma_max,
                1.0..=500.0,
                "σ_max",
                tips::SIGMA_MAX,
                true,
            );
        });
    });
    gate(ui, info, Control::Adaptive, |ui| {
        ui.checkbox(&mut spec.adaptive, "adaptive (re-plan from σ_hat)")
            .on_hover_text(tips::ADAPTIVE);
        // Offered once adaptive is on (or the step is): the default panel stays as it was.
        if spec.adaptive || spec.adaptive_step {
            ui.indent("adaptive_step", |ui| {
                ui.checkbox(&mut spec.adaptive_step, "adaptive step (start from σ_hat)")
                    .on_hover_text(tips::ADAPTIVE_STEP);
                adaptive_estimator_combo(ui, spec);
            });
        }
    });
}

pub(super) fn stochasticity_group(
    ui: &mut Ui,
    settings: &mut Settings,
    state: &mut ControlsState,
    info: &ControlsInfo,
) {
    gate(ui, info, Control::Churn, |ui| {
        let mut churn = settings.spec.stochasticity.churn;
        if slider(ui, &mut churn, 0.0..=100.0, "S_churn", tips::CHURN, false)
            && let Some(note) = settings.set_churn(churn)
        {
            state.note = Some(note.into());
        }
    });
    gate(ui, info, Control::ChurnBand, |ui| {
        let (mut tmin, mut tmax) = (
            settings.spec.stochasticity.tmin,
            settings.spec.stochasticity.tmax,
        );
        slider(ui, &mut tmin, 0.0..=10.0, "S_tmin", tips::TMIN, false);
        let mut infinite = tmax >= f64::MAX;
        ui.horizontal(|ui| {
            ui.add_enabled_ui(!infinite, |ui| {
                let mut shown = if infinite { 80.0 } else { tmax };
                if slider(ui, &mut shown, 0.2..=80.0, "S_tmax", tips::TMAX, true) {
                    tmax = shown;
                }
            });
            if ui
                .checkbox(&mut infinite, "∞")
                .on_hover_text(tips::TMAX_INF)
                .changed()
            {
                tmax = if infinite { f64::MAX } else { 50.0 };
            }
        });
        settings.set_churn_band(tmin, tmax);
    });
    let spec = &mut settings.spec;
    let st = &mut spec.stochasticity;
    gate(ui, info, Control::Snoise, |ui| {
        slider(
            ui,
            &mut st.snoise,
            1.0..=1.011,
            "S_noise",
            tips::SNOISE,
            false,
        );
    });
    gate(ui, info, Control::Eta, |ui| {
        ui.add_enabled_ui(spec.sampler == SamplerKind::EulerAncestral, |ui| {
            slider(ui, &mut st.eta, 0.0..=1.0, "η (eta)", tips::ETA, false);
        });
    });
    if !spec.sampler.uses_noise() && st.churn > 0.0 {
        ui.label(RichText::new(format!("S_churn has no effect in {}", spec.sampler)).weak());
    }
}

pub(super) fn guidance_group(
    ui: &mut Ui,
    settings: &mut Settings,
    state: &mut ControlsState,
    info: &ControlsInfo,
) {
    let learned = settings.spec.denoiser != DenoiserSpec::Exact;
    let no_classes = if learned {
        "The shown denoiser knows no classes: CFG needs a class-conditional model (trained with class labels and class dropout)."
    } else {
        "The shown data has no labels; CFG needs classes (toy: moons, rings, 8gaussians, digits)."
    };
    ui.add_enabled_ui(info.classes > 0, |ui| {
        gate(ui, info, Control::Cfg, |ui| {
            let mut w = settings.spec.guidance.cfg;
            if slider(ui, &mut w, 0.0..=8.0, "CFG w", tips::CFG, false)
                && let Some(note) = settings.set_cfg(w)
            {
                state.note = Some(note.into());
            }
        });
        let g = &mut settings.spec.guidance;
        gate(ui, info, Control::Class, |ui| {
            let label = match &g.class {
                None => "class: none".to_string(),
                Some(ClassSpec::All(c)) => format!("class: {c}"),
                Some(ClassSpec::File(p)) => format!("classes: {}", file_name(p)),
            };
            ComboBox::from_id_salt("class")
                .selected_text(label)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut g.class, None, "none (unconditional)");
                    for c in 0..info.classes.min(256) as u32 {
                        ui.selectable_value(
                            &mut g.class,
                            Some(ClassSpec::All(c)),
                            format!("class {c}"),
                        );
                    }
                })
                .response
                .on_hover_text(tips::CLASS);
        });
    })
    .response
    .on_disabled_hover_text(no_classes);
    let (sigma_min, sigma_max) = (
        settings.spec.schedule.sigma_min,
        settings.spec.schedule.sigma_max,
    );
    let estimator = settings.spec.estimator.clone();
    let g = &mut settings.spec.guidance;
    let has_estimator = estimator.is_some() || g.nag_estimator.is_some();
    gate(ui, info, Control::Nag, |ui| {
        slider(ui, &mut g.nag, 0.0..=8.0, "NAG w", tips::NAG, false);
        ComboBox::from_id_salt("nag_form")
            .selected_text(format!("NAG form: {}", g.nag_form.label()))
            .show_ui(ui, |ui| {
                for &form in <NagForm as clap::ValueEnum>::value_variants() {
                    let usable = form != NagForm::ClassifierBased || has_estimator;
                    let picked = ui
                        .add_enabled(
                            usable,
                            egui::Button::selectable(g.nag_form == form, form.label()),
                        )
                        .on_hover_text(nag_form_tip(form))
                        .on_disabled_hover_text(format!(
                            "{}\n\n{}",
                            nag_form_tip(form),
                            tips::NAG_FORM_NEEDS_ESTIMATOR
                        ));
                    if picked.clicked() {
                        g.nag_form = form;
                    }
                }
            })
            .response
            .on_hover_text(format!(
                "{}\n\n{}",
                tips::NAG_FORM,
                nag_form_tip(g.nag_form)
            ));
        // Classifier-based NAG has no stiff part to integrate: always the explicit step.
        ui.add_enabled_ui(g.nag_form != NagForm::ClassifierBased, |ui| {
            ComboBox::from_id_salt("nag_step")
                .selected_text(format!("NAG step: {}", g.nag_step.label()))
                .show_ui(ui, |ui| {
                    for &step in <NagStep as clap::ValueEnum>::value_variants() {
                        ui.selectable_value(&mut g.nag_step, step, step.label())
                            .on_hover_text(nag_step_tip(step));
                    }
                })
                .response
                .on_hover_text(format!(
                    "{}\n\n{}",
                    tips::NAG_STEP,
                    nag_step_tip(g.nag_step)
                ))
        })
        .response
        .on_disabled_hover_text(
            "The classifier-based form adds w σ² grad_x ln g(σ | x) and has no stiff part to \
             integrate: its runs take the sampler's explicit step.",
        );
        if g.nag_form == NagForm::ClassifierBased
            && let Some(path) = &estimator
        {
            ui.label(RichText::new(format!("g(σ|x): {}", estimator_label(path))).weak())
                .on_hover_text(tips::ESTIMATOR);
        }
    });
    gate(ui, info, Control::NagPrior, |ui| {
        // Only the exact-score form's D(x; none) integrates over π(σ); on a learned model it
        // still gives the exact direction that guides the network.
        let applies = g.nag_form == NagForm::ExactScore;
        ui.add_enabled_ui(applies, |ui| nag_prior_combo(ui, g, sigma_min, sigma_max))
            .response
            .on_disabled_hover_text("π(σ) is the prior of the exact-score form only: the posterior-average form uses the noise-dropout training prior (log-uniform on [0.002, 80]), the learned form is the network's own noise-dropped branch, and the classifier-based form uses the estimator g(σ|x).");
    });
}

/// The tooltip of a NAG form, with its formula.
fn nag_form_tip(form: NagForm) -> &'static str {
    match form {
        NagForm::PosteriorAverage => tips::NAG_FORM_AVERAGE,
        NagForm::ExactScore => tips::NAG_FORM_SCORE,
        NagForm::Learned => tips::NAG_FORM_LEARNED,
        NagForm::ClassifierBased => tips::NAG_FORM_CLASSIFIER,
    }
}

/// The tooltip of a NAG step, with its formula.
fn nag_step_tip(step: NagStep) -> &'static str {
    match step {
        NagStep::Exponential => tips::NAG_STEP_EXPONENTIAL,
        NagStep::Explicit => tips::NAG_STEP_EXPLICIT,
    }
}

/// Where the adaptive schedule reads σ_hat: the learned estimator is offered once one is loaded.
fn adaptive_estimator_combo(ui: &mut Ui, spec: &mut RunSpec) {
    let has_estimator = spec.estimator.is_some();
    let label = |e: AdaptiveEstimator| match e {
        AdaptiveEstimator::Exact => "exact posterior",
        AdaptiveEstimator::Learned => "learned estimator",
    };
    ComboBox::from_id_salt("adaptive_estimator")
        .selected_text(format!("σ_hat from: {}", label(spec.adaptive_estimator)))
        .show_ui(ui, |ui| {
            ui.selectable_value(
                &mut spec.adaptive_estimator,
                AdaptiveEstimator::Exact,
                label(AdaptiveEstimator::Exact),
            );
            let learned = AdaptiveEstimator::Learned;
            if ui
                .add_enabled(
                    has_estimator,
                    egui::Button::selectable(spec.adaptive_estimator == learned, label(learned)),
                )
                .on_disabled_hover_text(tips::NAG_FORM_NEEDS_ESTIMATOR)
                .clicked()
            {
                spec.adaptive_estimator = learned;
            }
        })
        .response
        .on_hover_text(tips::ADAPTIVE_ESTIMATOR);
}

/// NAG's π(σ) for the exact model's noise-unconditional D(x; none).
fn nag_prior_combo(ui: &mut Ui, g: &mut GuidanceSpec, sigma_min: f64, sigma_max: f64) {
    let lognormal = matches!(g.nag_prior, SigmaPrior::LogNormal { .. });
    ComboBox::from_id_salt("nag_prior")
        .selected_text(if lognormal {
            "NAG π(σ): log-normal"
        } else {
            "NAG π(σ): log-uniform"
        })
        .show_ui(ui, |ui| {
            if ui
                .selectable_label(lognormal, "log-normal (EDM training)")
                .clicked()
            {
                g.nag_prior = SigmaPrior::edm_training();
            }
            if ui
                .selectable_label(!lognormal, "log-uniform [σ_min, σ_max]")
                .clicked()
            {
                g.nag_prior = SigmaPrior::LogUniform {
                    lo: sigma_min,
                    hi: sigma_max,
                };
            }
        })
        .response
        .on_hover_text(tips::NAG_PRIOR);
}
