//! What a run tells its user about its settings: a note for each setting it ignores, a warning
//! for a schedule no sampler can follow, and which setting a failed run points at. The CLI prints
//! them and `run.json` keeps the notes; the messages name the CLI flags.

use crate::core::Precision;
use crate::core::guidance::{NagForm, NagStep};
use crate::core::sampler::{SamplerKind, Stochasticity};
use crate::core::schedule::{ScheduleKind, ScheduleSpec};
use crate::error::Error;

use super::spec::{AdaptiveEstimator, DiagnosticsSpec, GuidanceSpec, RunSpec};

/// The largest ratio sigma_i / sigma_(i+1) of neighbouring noise levels without a warning: one
/// step that removes more than four decades of noise lands on the denoiser's average at the upper
/// level, whatever the sampler.
pub const MAX_LEVEL_RATIO: f64 = 1e4;

impl RunSpec {
    /// The settings that have no effect on this run, one line each (named by their flags).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let (st, neutral) = (&self.stochasticity, Stochasticity::default());
        let sampler = self.sampler;
        let churned = self.sampler == SamplerKind::Edm && st.churn > 0.0;
        let adds_noise = churned || (self.sampler == SamplerKind::EulerAncestral && st.eta > 0.0);
        let g = &self.guidance;
        if g.cfg != 1.0 && g.class.is_none() {
            notes.push("--cfg has no effect without --class: the run is unconditional".into());
        }
        if g.nag == 0.0 && g.nag_prior != GuidanceSpec::default().nag_prior {
            notes.push("--nag-prior has no effect without --nag".into());
        } else if g.nag_form != NagForm::ExactScore
            && g.nag_prior != GuidanceSpec::default().nag_prior
        {
            notes.push(format!(
                "--nag-prior has no effect with the NAG form {}: only exact-score uses it",
                g.nag_form
            ));
        }
        if g.nag == 0.0 && g.nag_form != NagForm::default() {
            notes.push("--nag-form has no effect without --nag".into());
        }
        if g.nag_step != NagStep::default() && g.nag == 0.0 {
            notes.push("--nag-step has no effect without --nag".into());
        } else if g.nag_step != NagStep::default()
            && (g.nag_estimator.is_some() || g.nag_form == NagForm::ClassifierBased)
        {
            notes.push(
                "--nag-step has no effect with classifier-based NAG: its term has no stiff part, \
                 the sampler's explicit step is taken"
                    .into(),
            );
        }
        let adaptive = self.adaptive || self.adaptive_step;
        if !adaptive && self.adaptive_estimator == AdaptiveEstimator::Learned {
            notes.push(
                "--adaptive-estimator has no effect without --adaptive or --adaptive-step".into(),
            );
        }
        if st.churn != neutral.churn && self.sampler != SamplerKind::Edm {
            notes.push(format!(
                "--churn has no effect with {sampler}: only edm adds churn (S_churn)"
            ));
        }
        if (st.tmin != neutral.tmin || st.tmax != neutral.tmax) && !churned {
            notes.push(format!(
                "--tmin / --tmax have no effect {}: they bound where edm adds churn",
                if self.sampler == SamplerKind::Edm {
                    "without --churn".to_string()
                } else {
                    format!("with {sampler}")
                }
            ));
        }
        if st.snoise != neutral.snoise && !adds_noise {
            notes.push(format!(
                "--snoise has no effect: {sampler} adds no noise here (edm with --churn and \
                 euler-a do)"
            ));
        }
        if st.eta != neutral.eta && self.sampler != SamplerKind::EulerAncestral {
            notes.push(format!(
                "--eta has no effect with {sampler}: only euler-a uses it"
            ));
        }
        if self.churn_noise.is_some() && !adds_noise {
            notes.push(format!(
                "--churn-noise is not read: {sampler} adds no noise here (edm with --churn and \
                 euler-a do)"
            ));
        }
        if self.schedule.rho != ScheduleSpec::default().rho
            && self.schedule.kind != ScheduleKind::Karras
        {
            notes.push(format!(
                "--rho has no effect with the {} schedule: only karras uses it",
                self.schedule.kind.name()
            ));
        }
        if !self.diagnostics.enabled
            && !self.adaptive
            && !self.adaptive_step
            && self.diagnostics.subset != DiagnosticsSpec::default().subset
        {
            notes.push(
                "--diagnostics-subset has no effect with --diagnostics off (and no --adaptive)"
                    .into(),
            );
        }
        notes
    }

    /// Says which setting a failed run points at: a non-finite denoiser output under guidance is
    /// the guidance's doing, not the data's.
    pub fn explain_failure(&self, error: Error) -> Error {
        let Error::NonFinite(what) = &error else {
            return error;
        };
        let g = &self.guidance;
        let cause = if g.nag != 0.0 {
            format!(
                "the NAG weight {} (--nag) over-corrects: with the exact model NAG is stiff for \
                 states cleaner than scheduled; use a smaller --nag or more --steps",
                g.nag
            )
        } else if g.cfg != 1.0 && g.class.is_some() {
            format!(
                "the CFG weight {} (--cfg) pushes the states beyond the float range; use a \
                 smaller --cfg",
                g.cfg
            )
        } else if self.precision == Precision::F32 {
            "the values left single precision's range; try --precision f64".into()
        } else {
            "the data or noise levels are beyond the float range".into()
        };
        Error::NonFinite(format!("{what}: {cause}"))
    }
}

/// A warning when neighbouring noise levels of `sigmas` (ending in 0) are so far apart that no
/// sampler can follow: each sample collapses onto the denoiser's average at the upper level.
pub fn steep_schedule_warning(sigmas: &[f64]) -> Option<String> {
    let (from, to) = sigmas
        .windows(2)
        .filter(|w| w[1] > 0.0)
        .map(|w| (w[0], w[1]))
        .max_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)))?;
    let ratio = from / to;
    (ratio > MAX_LEVEL_RATIO).then(|| {
        format!(
            "one step goes from sigma = {from:.3e} to {to:.3e}, a factor of {ratio:.1e}: no \
             sampler follows a drop of more than {MAX_LEVEL_RATIO:.0e}, the samples collapse onto \
             the denoiser's average; use more --steps or a narrower --sigma-min..--sigma-max"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::estimate::SigmaPrior;
    use crate::error::Result;
    use crate::run::spec::ClassSpec;

    #[test]
    fn notes_name_every_setting_the_sampler_ignores() {
        type Edit<'a> = &'a dyn Fn(&mut RunSpec);
        let notes_of = |edit: Edit| {
            let mut spec = RunSpec::default();
            edit(&mut spec);
            spec.notes()
        };
        assert!(notes_of(&|_| {}).is_empty());
        let cases: [(Edit, &str); 9] = [
            (&|s| s.guidance.cfg = 2.0, "--cfg"),
            (&|s| s.stochasticity.churn = 20.0, "--churn"),
            (
                &|s| {
                    s.sampler = SamplerKind::Euler;
                    s.stochasticity.churn = 20.0;
                },
                "--churn",
            ),
            (
                &|s| {
                    s.sampler = SamplerKind::Edm;
                    s.stochasticity.tmin = 0.1;
                },
                "--tmin",
            ),
            (&|s| s.stochasticity.snoise = 1.1, "--snoise"),
            (&|s| s.stochasticity.eta = 0.5, "--eta"),
            (&|s| s.churn_noise = Some("eps.npy".into()), "--churn-noise"),
            (
                &|s| {
                    s.schedule.kind = ScheduleKind::LogUniform;
                    s.schedule.rho = 3.0;
                },
                "--rho",
            ),
            (
                &|s| s.guidance.nag_prior = SigmaPrior::LogUniform { lo: 0.1, hi: 1.0 },
                "--nag-prior",
            ),
        ];
        for (edit, flag) in cases {
            let notes = notes_of(edit);
            assert_eq!(notes.len(), 1, "{flag}: {notes:?}");
            assert!(notes[0].starts_with(flag), "{flag}: {notes:?}");
        }
        // Settings the run uses get no note.
        let used: [Edit; 3] = [
            &|s| {
                s.sampler = SamplerKind::Edm;
                s.stochasticity.churn = 20.0;
                s.stochasticity.tmin = 0.1;
                s.stochasticity.snoise = 1.003;
                s.churn_noise = Some("eps.npy".into());
            },
            &|s| {
                s.sampler = SamplerKind::EulerAncestral;
                s.stochasticity.eta = 0.5;
                s.stochasticity.snoise = 1.01;
            },
            &|s| {
                s.guidance.cfg = 2.0;
                s.guidance.class = Some(ClassSpec::All(1));
            },
        ];
        for edit in used {
            assert!(notes_of(edit).is_empty(), "{:?}", notes_of(edit));
        }
    }

    #[test]
    fn failures_under_guidance_name_the_guidance() {
        let failure =
            || Error::NonFinite("the denoiser's output at sigma = 8 is not finite".into());
        let mut spec = RunSpec::default();
        spec.guidance.nag = 100.0;
        assert!(
            spec.explain_failure(failure())
                .to_string()
                .contains("--nag")
        );
        spec.guidance.nag = 0.0;
        spec.guidance.cfg = 500.0;
        spec.guidance.class = Some(ClassSpec::All(0));
        assert!(
            spec.explain_failure(failure())
                .to_string()
                .contains("--cfg")
        );
        spec.guidance = GuidanceSpec::default();
        assert!(
            spec.explain_failure(failure())
                .to_string()
                .contains("--precision f64")
        );
        // Other errors pass through untouched.
        let other = spec.explain_failure(Error::Data("x".into())).to_string();
        assert_eq!(other, "data: x");
    }

    #[test]
    fn schedules_no_sampler_can_follow_get_a_warning() -> Result<()> {
        let sigmas = |steps, lo, hi| {
            ScheduleSpec {
                steps,
                sigma_min: lo,
                sigma_max: hi,
                ..Default::default()
            }
            .sigmas()
        };
        assert!(steep_schedule_warning(&sigmas(18, 0.002, 80.0)?).is_none());
        assert!(steep_schedule_warning(&sigmas(4, 0.002, 80.0)?).is_none());
        let warning = steep_schedule_warning(&sigmas(18, 1e-12, 1e12)?);
        assert!(warning.is_some_and(|w| w.contains("--steps")));
        // Two levels 80 and 0.002: one drop by 4e4.
        assert!(steep_schedule_warning(&sigmas(2, 0.002, 80.0)?).is_some());
        // One level, then 0: no neighbouring levels at all.
        assert!(steep_schedule_warning(&sigmas(1, 0.002, 80.0)?).is_none());
        Ok(())
    }
}
