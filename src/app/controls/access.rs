//! Which controls a lesson leaves open, locks or hides. `Control` names every control (or
//! small group of controls that edit one thing) of the left panel; `AccessTable` says how each
//! is drawn; `Control::restore` copies a control's part of the settings, which is how a lock is
//! kept even against input that bypasses a disabled widget.

use serde::{Deserialize, Serialize};

use crate::app::settings::Settings;

/// A control of the left panel, by what it edits. Lesson files name them in snake_case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    Data,
    Denoiser,
    Sampler,
    Steps,
    Schedule,
    Rho,
    SigmaMin,
    SigmaMax,
    Adaptive,
    Churn,
    /// S_tmin and S_tmax.
    ChurnBand,
    Snoise,
    Eta,
    Cfg,
    Class,
    Nag,
    NagPrior,
    Seed,
    Batch,
    /// Backend and precision.
    Compute,
    /// Diagnostics on / off and the sigma_hat subset.
    Diagnostics,
    /// Play, pause, step, live (not part of the run's settings).
    Replay,
    /// The rerun button and "rerun on change".
    Rerun,
    /// "Reset to default scene" (hidden in lessons unless a lesson opens it).
    Reset,
    /// The View group (drawing options).
    View,
}

impl Control {
    pub const COUNT: usize = 25;

    pub const ALL: [Control; Control::COUNT] = [
        Control::Data,
        Control::Denoiser,
        Control::Sampler,
        Control::Steps,
        Control::Schedule,
        Control::Rho,
        Control::SigmaMin,
        Control::SigmaMax,
        Control::Adaptive,
        Control::Churn,
        Control::ChurnBand,
        Control::Snoise,
        Control::Eta,
        Control::Cfg,
        Control::Class,
        Control::Nag,
        Control::NagPrior,
        Control::Seed,
        Control::Batch,
        Control::Compute,
        Control::Diagnostics,
        Control::Replay,
        Control::Rerun,
        Control::Reset,
        Control::View,
    ];

    /// The name the panel shows near the control.
    pub fn label(self) -> &'static str {
        match self {
            Control::Data => "data",
            Control::Denoiser => "denoiser",
            Control::Sampler => "sampler",
            Control::Steps => "steps N",
            Control::Schedule => "schedule",
            Control::Rho => "ρ (rho)",
            Control::SigmaMin => "σ_min",
            Control::SigmaMax => "σ_max",
            Control::Adaptive => "adaptive",
            Control::Churn => "S_churn",
            Control::ChurnBand => "S_tmin, S_tmax",
            Control::Snoise => "S_noise",
            Control::Eta => "η (eta)",
            Control::Cfg => "CFG w",
            Control::Class => "class",
            Control::Nag => "NAG w",
            Control::NagPrior => "NAG π(σ)",
            Control::Seed => "seed",
            Control::Batch => "batch",
            Control::Compute => "backend, precision",
            Control::Diagnostics => "diagnostics",
            Control::Replay => "play, pause, step",
            Control::Rerun => "rerun",
            Control::Reset => "reset to default scene",
            Control::View => "view options",
        }
    }

    /// Whether the control edits the run's settings (what a lesson locks by default); the
    /// others only move the replay or change how things are drawn.
    pub fn edits_spec(self) -> bool {
        !matches!(
            self,
            Control::Replay | Control::Rerun | Control::Reset | Control::View
        )
    }

    /// Copies what this control edits from `from` into `to`: a lock restores its value.
    pub fn restore(self, from: &Settings, to: &mut Settings) {
        let (a, b) = (&from.spec, &mut to.spec);
        match self {
            Control::Data => b.data = a.data.clone(),
            Control::Denoiser => b.denoiser = a.denoiser.clone(),
            Control::Sampler => b.sampler = a.sampler,
            Control::Steps => b.schedule.steps = a.schedule.steps,
            Control::Schedule => b.schedule.kind = a.schedule.kind,
            Control::Rho => b.schedule.rho = a.schedule.rho,
            Control::SigmaMin => b.schedule.sigma_min = a.schedule.sigma_min,
            Control::SigmaMax => b.schedule.sigma_max = a.schedule.sigma_max,
            Control::Adaptive => {
                b.adaptive = a.adaptive;
                b.adaptive_step = a.adaptive_step;
            }
            Control::Churn => b.stochasticity.churn = a.stochasticity.churn,
            Control::ChurnBand => {
                b.stochasticity.tmin = a.stochasticity.tmin;
                b.stochasticity.tmax = a.stochasticity.tmax;
            }
            Control::Snoise => b.stochasticity.snoise = a.stochasticity.snoise,
            Control::Eta => b.stochasticity.eta = a.stochasticity.eta,
            Control::Cfg => b.guidance.cfg = a.guidance.cfg,
            Control::Class => b.guidance.class = a.guidance.class.clone(),
            Control::Nag => {
                b.guidance.nag = a.guidance.nag;
                b.guidance.nag_form = a.guidance.nag_form;
                b.guidance.nag_step = a.guidance.nag_step;
            }
            Control::NagPrior => b.guidance.nag_prior = a.guidance.nag_prior,
            Control::Seed => b.seed = a.seed,
            Control::Batch => b.batch = a.batch,
            Control::Compute => {
                b.backend = a.backend;
                b.precision = a.precision;
            }
            Control::Diagnostics => b.diagnostics = a.diagnostics.clone(),
            Control::Rerun => to.view.rerun_on_change = from.view.rerun_on_change,
            Control::View => {
                // The tab and the A/B mode stay the learner's; the drawing options are kept.
                let (tab, ab, flipped) = (to.view.tab, to.view.ab, to.view.ab_flipped);
                to.view = from.view.clone();
                to.view.tab = tab;
                to.view.ab = ab;
                to.view.ab_flipped = flipped;
            }
            Control::Replay | Control::Reset => {}
        }
    }
}

/// How a control is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Drawn and editable.
    #[default]
    Open,
    /// Drawn, greyed out; its value cannot change.
    Locked,
    /// Not drawn; its value cannot change.
    Hidden,
}

/// The access of every control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessTable([Access; Control::COUNT]);

impl Default for AccessTable {
    /// Everything open: the panel outside a lesson.
    fn default() -> Self {
        AccessTable([Access::Open; Control::COUNT])
    }
}

impl AccessTable {
    pub fn of(&self, control: Control) -> Access {
        self.0[control as usize]
    }

    pub fn set(&mut self, control: Control, access: Access) {
        self.0[control as usize] = access;
    }

    /// Whether any of `controls` is drawn (a group with none drawn has no header).
    pub fn any_shown(&self, controls: &[Control]) -> bool {
        controls.iter().any(|c| self.of(*c) != Access::Hidden)
    }

    /// The open controls only, the rest hidden: what a lesson's panel offers in presenter mode.
    pub fn only_open(&self) -> AccessTable {
        let mut table = *self;
        for c in Control::ALL {
            if table.of(c) != Access::Open {
                table.set(c, Access::Hidden);
            }
        }
        table
    }

    /// Controls whose values are held: every locked or hidden one.
    pub fn held(&self) -> impl Iterator<Item = Control> + '_ {
        Control::ALL
            .into_iter()
            .filter(|c| self.of(*c) != Access::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_is_listed_once_in_order() {
        for (i, c) in Control::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?}");
        }
    }

    #[test]
    fn restoring_every_held_control_undoes_every_edit_of_the_settings() {
        let reference = Settings::default_scene();
        let mut edited = reference.clone();
        let s = &mut edited.spec;
        s.data = crate::data::DataSpec::Digits;
        s.sampler = crate::core::sampler::SamplerKind::Euler;
        s.schedule.steps = 5;
        s.schedule.kind = crate::core::schedule::ScheduleKind::Uniform;
        s.schedule.rho = 3.0;
        s.schedule.sigma_min = 0.1;
        s.schedule.sigma_max = 10.0;
        s.adaptive = true;
        s.adaptive_step = true;
        s.stochasticity.churn = 40.0;
        s.stochasticity.tmin = 1.0;
        s.stochasticity.tmax = 5.0;
        s.stochasticity.snoise = 1.003;
        s.stochasticity.eta = 0.5;
        s.guidance.cfg = 3.0;
        s.guidance.class = Some(crate::run::spec::ClassSpec::All(2));
        s.guidance.nag = 1.0;
        s.guidance.nag_prior = crate::core::estimate::SigmaPrior::LogUniform { lo: 0.1, hi: 1.0 };
        s.seed = 9;
        s.batch = 12;
        s.backend = crate::backend::BackendChoice::Cpu;
        s.precision = crate::core::Precision::F64;
        s.diagnostics.subset = 8;
        edited.view.rerun_on_change = false;
        edited.view.paths = 3;
        let mut locked = AccessTable::default();
        for c in Control::ALL {
            locked.set(c, Access::Locked);
        }
        for c in locked.held() {
            c.restore(&reference, &mut edited);
        }
        assert_eq!(edited, reference);
    }
}
