//! The one-click sweeps of the Sweep tab (issue 15, item 4), also `noisescope sweep --builtin
//! NAME`: each is an ordinary `SweepSpec`, so its JSON runs the same anywhere.

use crate::core::sampler::SamplerKind;
use crate::data::DataSpec;
use crate::error::Result;

use super::{SweepAxis, SweepMetric, SweepSpec};
use crate::run::spec::{ClassSpec, RunSpec};

/// A built-in sweep: its name, what it asks, and how to make it.
pub struct Builtin {
    pub name: &'static str,
    pub question: &'static str,
    make: fn() -> Result<SweepSpec>,
}

impl Builtin {
    pub fn spec(&self) -> Result<SweepSpec> {
        (self.make)()
    }
}

/// Every built-in sweep, in the tab's order.
pub const BUILTINS: [Builtin; 7] = [
    Builtin {
        name: "samplers-moons",
        question: "Which sampler is best at equal evaluations (EDM fig. 2) on moons, exact denoiser?",
        make: || samplers("samplers-moons", "toy:moons"),
    },
    Builtin {
        name: "samplers-digits",
        question: "Which sampler is best at equal evaluations on the digits, exact denoiser?",
        make: || samplers("samplers-digits", "digits"),
    },
    Builtin {
        name: "rho-moons",
        question: "Which Karras rho, at 6 and 12 Heun steps on moons?",
        make: || {
            sweep(
                "rho-moons",
                base("toy:moons", SamplerKind::Heun)?,
                &["rho=1:10:10", "steps=6,12"],
                &[SweepMetric::W2],
            )
        },
    },
    Builtin {
        name: "churn-exact-vs-learned",
        question: "Does S_churn help? The exact denoiser (it cannot) against the bundled moons model.",
        make: || {
            sweep(
                "churn-exact-vs-learned",
                base("toy:moons", SamplerKind::Edm)?,
                // EDM caps gamma_i = S_churn / N at sqrt(2) - 1: beyond 7.5 at 18 steps all
                // values are one.
                &["s_churn=0,1,2,3,5,8", "denoiser=exact,bundled:moons"],
                &[SweepMetric::W2, SweepMetric::Mmd],
            )
        },
    },
    Builtin {
        name: "schedules-gaussian",
        question: "Tangent vs Karras vs log at N <= 8 on a Gaussian spectrum, by the exact KL.",
        make: || {
            sweep(
                "schedules-gaussian",
                base("gaussian:0.01,0.1,1,4", SamplerKind::Heun)?,
                // At 2 steps every family is [sigma_max, sigma_min, 0]: from 3 on.
                &["steps=3,4,5,6,7,8", "schedule=tangent,karras,log"],
                &[SweepMetric::Kl],
            )
        },
    },
    Builtin {
        name: "cfg-digits",
        question: "How far should CFG go? Class accuracy and W2 against w on the digits (class 3), exact and bundled model.",
        make: || {
            let mut spec = base("digits", SamplerKind::Heun)?;
            spec.guidance.class = Some(ClassSpec::All(3));
            sweep(
                "cfg-digits",
                spec,
                &["cfg=1,1.5,2,3,4,6", "denoiser=exact,bundled:digits"],
                &[SweepMetric::ClassAcc, SweepMetric::W2],
            )
        },
    },
    Builtin {
        name: "nag-moons",
        question: "How far should NAG go? Late delta, W2 and MMD against w on moons (Heun 18), in each \
form of the exact denoiser's negative branch: the posterior average and the exact score.",
        make: || {
            let mut spec = base("toy:moons", SamplerKind::Heun)?;
            spec.diagnostics.enabled = true;
            sweep(
                "nag-moons",
                spec,
                &["nag=0,0.5,1,2,3", "nag_form=posterior-average,exact-score"],
                &[SweepMetric::DeltaLate, SweepMetric::W2, SweepMetric::Mmd],
            )
        },
    },
];

/// The built-in sweep called `name`.
pub fn builtin(name: &str) -> Result<SweepSpec> {
    BUILTINS
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| {
            crate::error::Error::InvalidSpec(format!(
                "no built-in sweep '{name}' (one of {})",
                BUILTINS.map(|b| b.name).join(", ")
            ))
        })?
        .spec()
}

/// 500 samples, seed 1, diagnostics off (only the late delta needs them).
fn base(data: &str, sampler: SamplerKind) -> Result<RunSpec> {
    let mut spec = RunSpec {
        data: DataSpec::parse(data, None, 4096, 32, false)?,
        sampler,
        batch: 500,
        seed: 1,
        ..Default::default()
    };
    spec.diagnostics.enabled = false;
    Ok(spec)
}

fn samplers(name: &str, data: &str) -> Result<SweepSpec> {
    sweep(
        name,
        base(data, SamplerKind::Heun)?,
        &["steps=4,6,8,12,18,32", "sampler=euler,heun,dpmpp-2m"],
        &[SweepMetric::W2, SweepMetric::Mmd],
    )
}

fn sweep(name: &str, base: RunSpec, vary: &[&str], metrics: &[SweepMetric]) -> Result<SweepSpec> {
    let spec = SweepSpec {
        name: name.into(),
        base,
        vary: vary
            .iter()
            .map(|v| SweepAxis::parse(v))
            .collect::<Result<_>>()?,
        metrics: metrics.to_vec(),
    };
    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_is_a_valid_sweep_that_round_trips() -> Result<()> {
        for b in &BUILTINS {
            let spec = b.spec()?;
            assert_eq!(spec.name, b.name);
            assert_eq!(SweepSpec::parse_json(&spec.to_json())?, spec);
            assert_eq!(builtin(b.name)?, spec);
        }
        assert!(builtin("nope").is_err());
        Ok(())
    }
}
