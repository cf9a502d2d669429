//! Criterion benches of the CPU kernels: one empirical-denoiser evaluation (f32, all data in one
//! span) at sigma in {80, 1, 0.002} on the three reference workloads, on each distance path:
//! the fast one (the k-d tiles for the 2-D toy, the GEMM form for the digits and the 784-D images)
//! against explicit differences to every point, and on the toy NAG's marginal (its table read with
//! the AVX2 intrinsics and, for comparison, by the portable loop). The states are
//! x = y_j + sigma z around data points, as a sampler's states are at that sigma (at sigma = 80
//! they are noise).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use noisescope::backend::cpu::{Isa, Path, PreparedSet, weighted_rows_on};
use noisescope::backend::{Span, Weighting};
use noisescope::core::noise::initial_noise;
use noisescope::data::{DataSet, Source, digits, toys};

fn workloads() -> Vec<(&'static str, DataSet, usize)> {
    let toy = match toys::load("moons", 4096) {
        Ok(Source::Empirical(set)) => set,
        other => panic!("moons: {other:?}"),
    };
    vec![
        ("toy_4096x2048x2", toy, 2048),
        ("digits_1797x256x64", digits::load().expect("digits"), 256),
        (
            "images_10000x64x784",
            digits::synthetic_28x28(10_000, 7).expect("images"),
            64,
        ),
    ]
}

/// B states at `sigma` around data points, rounded to f32.
fn states(set: &DataSet, batch: usize, sigma: f64) -> Vec<f32> {
    let z = initial_noise(3, batch, set.dim);
    let mut x = Vec::with_capacity(batch * set.dim);
    for r in 0..batch {
        let y = set.row((r * 7919 + 13) % set.n);
        for (k, &v) in y.iter().enumerate() {
            x.push((v + sigma * z.row(r)[k]) as f32);
        }
    }
    x
}

fn one_evaluation(c: &mut Criterion) {
    let isa = Isa::detect();
    let (sigmas, log_weights) = nag_nodes();
    let marginal = Weighting::Marginal {
        sigmas: &sigmas,
        log_weights: &log_weights,
        sigma_power: 1,
    };
    for (name, set, batch) in workloads() {
        let prepared = PreparedSet::<f32>::new(&set.values, set.n, set.dim);
        // The fast path of each shape.
        let fast = Path::for_set(&prepared);
        let mut group = c.benchmark_group(format!("kernel_eval_{name}"));
        group.sample_size(10);
        for sigma in [80.0, 1.0, 0.002] {
            let x = states(&set, batch, sigma);
            let spans = vec![
                Span {
                    start: 0,
                    end: set.n
                };
                batch
            ];
            let softmax = Weighting::Softmax { sigma };
            let mut runs = vec![
                (format!("{fast:?}"), softmax, fast, isa),
                ("Explicit".to_string(), softmax, Path::Explicit, isa),
            ];
            if set.dim <= 3 {
                runs.push(("NagMarginal".to_string(), marginal, Path::Explicit, isa));
                // The whole evaluation on the portable path (the table read by the plain loop),
                // against the AVX2 intrinsics above.
                if isa != Isa::Portable {
                    runs.push((
                        "NagMarginalPortable".to_string(),
                        marginal,
                        Path::Explicit,
                        Isa::Portable,
                    ));
                }
            }
            for (label, weighting, path, isa) in runs {
                group.bench_function(format!("{label}/sigma={sigma}"), |b| {
                    b.iter(|| {
                        black_box(weighted_rows_on(
                            &prepared, &x, &spans, &weighting, isa, path,
                        ))
                    })
                });
            }
        }
        group.finish();
    }
}

/// NAG's marginal over the posterior-average form's 45 log-uniform prior nodes (read from its
/// table on the 2-D toy): against the softmax at the same states, the cost of NAG's second call.
fn nag_nodes() -> (Vec<f64>, Vec<f64>) {
    let prior = noisescope::models::noise_dropped_training_prior();
    let (lo, hi) = prior.ln_support();
    let nodes = 45;
    let h = (hi - lo) / (nodes - 1) as f64;
    (0..nodes)
        .map(|k| {
            let u = lo + h * k as f64;
            (u.exp(), prior.log_density(u) + h.ln())
        })
        .unzip()
}

criterion_group!(benches, one_evaluation);
criterion_main!(benches);
