//! Criterion benches: one empirical-denoiser evaluation (f32, CPU) on the three reference
//! workloads, and a whole Heun run (18 steps, 35 evaluations) on the digits.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use noisescope::backend::Compute;
use noisescope::core::Precision;
use noisescope::core::denoiser::{Cond, Denoiser};
use noisescope::core::estimate::SigmaPrior;
use noisescope::core::noise::initial_noise;
use noisescope::data::{DataSpec, Source, digits, toys};
use noisescope::models::AnalyticModel;
use noisescope::run::{ModelHandle, RunSpec, Session};

fn workloads() -> Vec<(&'static str, Source, usize)> {
    vec![
        (
            "toy_4096x2048x2",
            toys::load("moons", 4096).expect("toy"),
            2048,
        ),
        (
            "digits_1797x256x64",
            Source::Empirical(digits::load().expect("digits")),
            256,
        ),
        (
            "images_10000x64x784",
            Source::Empirical(digits::synthetic_28x28(10_000, 7).expect("images")),
            64,
        ),
    ]
}

fn one_evaluation(c: &mut Criterion) {
    let mut group = c.benchmark_group("empirical_denoiser_eval");
    group.sample_size(10);
    for (name, source, batch) in workloads() {
        let model = AnalyticModel::new(
            &source,
            &Compute::cpu(),
            Precision::F32,
            SigmaPrior::edm_training(),
        )
        .expect("model");
        let x = initial_noise(1, batch, source.dim()).scale(1.0);
        group.bench_function(name, |b| {
            b.iter(|| black_box(model.denoise(&x, 1.0, &Cond::plain()).expect("denoise")))
        });
    }
    group.finish();
}

fn whole_run(c: &mut Criterion) {
    let mut group = c.benchmark_group("heun_18_steps");
    group.sample_size(10);
    let source = Arc::new(Source::Empirical(digits::load().expect("digits")));
    for diagnostics in [false, true] {
        let mut spec = RunSpec {
            data: DataSpec::Digits,
            batch: 256,
            ..Default::default()
        };
        spec.diagnostics.enabled = diagnostics;
        let handle = Arc::new(
            ModelHandle::with_source(&spec, source.clone(), &Compute::cpu()).expect("model"),
        );
        let session = Session::new(&spec, handle).expect("session");
        let name = if diagnostics {
            "digits_diagnostics_on"
        } else {
            "digits_diagnostics_off"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    session
                        .run(&mut |_, _| std::ops::ControlFlow::Continue(()))
                        .expect("run"),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, one_evaluation, whole_run);
criterion_main!(benches);
