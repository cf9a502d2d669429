//! The GPU kernels under load: one empirical denoiser call, and a whole Heun run (18 steps = 35
//! evaluations), f32, on three workloads (N data points, B rows, D dimensions): a 2-D toy
//! (4096, 2048, 2), the digits (1797, 256, 64) and an MNIST-sized set (10000, 64, 784).
//!
//! Throughput: the call group counts FLOP (5 N B D per evaluation: 3 for the explicit-difference
//! distances, 2 for the weighted sum), so criterion's "elem/s" reads as FLOP/s; the run group
//! counts evaluations, so its "elem/s" reads as evaluations/s. The same call on the CPU backend is
//! measured alongside for comparison. Without a GPU adapter the bench prints
//! "skipped: no GPU adapter" and measures only the CPU. On a CPU adapter (lavapipe) whole runs are
//! measured on the digits workload only: the others take minutes per run there.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use noisescope::backend::{BackendChoice, Compute, Span, Weighting};
use noisescope::core::denoiser::Cond;
use noisescope::core::estimate::SigmaPrior;
use noisescope::core::noise::{Rng, SeededNoise, initial_noise};
use noisescope::core::sampler::{Hooks, SamplerArgs, SamplerKind, StepInfo, Stochasticity, sample};
use noisescope::core::schedule::karras;
use noisescope::core::{Batch, Precision};
use noisescope::data::{DataSet, Source};
use noisescope::models::AnalyticModel;

/// (N, B, D) of the three workloads.
const WORKLOADS: [(usize, usize, usize); 3] = [(4096, 2048, 2), (1797, 256, 64), (10000, 64, 784)];
const STEPS: usize = 18;

/// N points uniform in [-1, 1]^D (the kernels' cost does not depend on the values).
fn data_set(n: usize, dim: usize) -> DataSet {
    let mut rng = Rng::new(n as u64 * 31 + dim as u64);
    let values = (0..n * dim).map(|_| 2.0 * rng.uniform() - 1.0).collect();
    DataSet::new(n, dim, values, None, None).expect("valid data set")
}

fn backends() -> Vec<(&'static str, Compute)> {
    let mut notes = Vec::new();
    let mut out = Vec::new();
    match Compute::select(BackendChoice::Gpu, &mut notes) {
        Ok(gpu) if gpu.is_gpu() => {
            eprintln!("adapter: {}", gpu.describe());
            out.push(("gpu", gpu));
        }
        _ => eprintln!("skipped: no GPU adapter"),
    }
    out.push(("cpu", Compute::cpu()));
    out
}

fn denoiser_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("empirical denoiser call");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, compute) in backends() {
        for &(n, rows, dim) in &WORKLOADS {
            let set = data_set(n, dim);
            let kernel = compute
                .prepare(&set.values, n, dim, Precision::F32)
                .expect("prepare");
            let x = initial_noise(1, rows, dim);
            let spans = vec![Span { start: 0, end: n }; rows];
            let weighting = Weighting::Softmax { sigma: 1.0 };
            group.throughput(Throughput::Elements((5 * n * rows * dim) as u64));
            group.bench_function(
                BenchmarkId::new(name, format!("N{n} B{rows} D{dim}")),
                |b| {
                    b.iter(|| {
                        black_box(
                            kernel
                                .weighted_rows(&x, &spans, &weighting)
                                .expect("weighted rows"),
                        )
                    })
                },
            );
        }
        let notices = compute.take_notices();
        if !notices.is_empty() {
            eprintln!("{name}: {notices:?}");
        }
    }
    group.finish();
}

fn heun_run(c: &mut Criterion) {
    let mut group = c.benchmark_group("heun 18 steps");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let Some((name, compute)) = backends().into_iter().find(|(_, c)| c.is_gpu()) else {
        return;
    };
    let cpu_adapter = compute.describe().contains("cpu adapter");
    for &(n, rows, dim) in &WORKLOADS {
        if cpu_adapter && n * rows * dim > 1 << 25 {
            eprintln!("heun N{n} B{rows} D{dim}: not measured on a cpu adapter");
            continue;
        }
        let source = Source::Empirical(data_set(n, dim));
        let model = AnalyticModel::new(
            &source,
            &compute,
            Precision::F32,
            SigmaPrior::edm_training(),
        )
        .expect("model");
        let sigmas = karras(STEPS, 0.002, 80.0, 7.0);
        let x0: Batch = initial_noise(2, rows, dim).scale(sigmas[0]);
        let cond = Cond::plain();
        group.throughput(Throughput::Elements(
            SamplerKind::Heun.evaluations(STEPS) as u64
        ));
        group.bench_function(
            BenchmarkId::new(name, format!("N{n} B{rows} D{dim}")),
            |b| {
                b.iter(|| {
                    let mut noise = SeededNoise { seed: 3 };
                    let mut on_step = |_: &StepInfo| ControlFlow::Continue(());
                    let mut hooks = Hooks {
                        noise: &mut noise,
                        replan: None,
                        on_step: &mut on_step,
                    };
                    let args = SamplerArgs {
                        denoiser: &model,
                        cond: &cond,
                        sigmas: sigmas.clone(),
                        stochasticity: Stochasticity::default(),
                    };
                    black_box(sample(SamplerKind::Heun, args, x0.clone(), &mut hooks).expect("run"))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, denoiser_call, heun_run);
criterion_main!(benches);
