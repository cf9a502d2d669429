//! The info step schedule against Karras and the tangent law (issue 12): the closed-form Gaussian
//! KL (science.md section 7) at N = 6, 8, 12 for Euler and Heun.
//! `cargo run --release --example info_schedule`

use std::sync::Arc;

use noisescope::core::sampler::SamplerKind;
use noisescope::core::schedule::ScheduleKind;
use noisescope::data::DataSpec;
use noisescope::run::{ModelHandle, RunSpec, Session};

fn main() -> anyhow::Result<()> {
    let kinds = [
        ScheduleKind::Karras,
        ScheduleKind::Tangent { c: None },
        ScheduleKind::Info,
    ];
    for spectrum in [vec![0.25], vec![4.0, 1.0, 0.25, 0.0625]] {
        for sampler in [SamplerKind::Euler, SamplerKind::Heun] {
            let mut spec = RunSpec {
                data: DataSpec::Gaussian {
                    spectrum: spectrum.clone(),
                },
                sampler,
                batch: 4,
                ..Default::default()
            };
            spec.diagnostics.enabled = false;
            let handle = Arc::new(ModelHandle::load(&spec, &mut Vec::new())?);
            for steps in [6, 8, 12] {
                let mut line = format!("{spectrum:?} {sampler} N={steps}:");
                for kind in kinds {
                    spec.schedule.kind = kind;
                    spec.schedule.steps = steps;
                    let session = Session::new(&spec, handle.clone())?;
                    let kl = session.theory.as_ref().map_or(f64::NAN, |t| t.kl);
                    line += &format!("  {} {kl:.4}", kind.name());
                }
                println!("{line}");
            }
        }
    }
    Ok(())
}
