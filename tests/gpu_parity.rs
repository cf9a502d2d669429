//! GPU vs CPU parity: every GPU kernel on a 2-D toy, the digits and a 784-D set, and whole runs.
//! The empirical kernels' weights are held to the right reference on each side: the GPU (explicit
//! f32 differences, summed in tiles of 16 dimensions) to the CPU's explicit-difference path (the
//! same arithmetic), and the CPU's default path (the GEMM form from 16 dimensions on) to the CPU's
//! f64 path on the same f32-rounded inputs. Not the two f32 sides to each other: on 784-D the GEMM
//! form is the nearer to f64, and the explicit f32 sums alone are ~1.1e-4 from f64 in the weight
//! sums, so the gap between the sides is the explicit side's rounding, not an error of either.
//! The likelihood grids compare the sides directly on the toy and the digits; on 784-D (GEMM form
//! on the CPU) they take the weights' references. The Gaussian family compares the sides directly.
//!
//! Error measures (all must be <= 1e-4):
//! - denoiser outputs and final sampler states: max |gpu - cpu| / data scale, the data scale being
//!   the largest |value| of the data set (or of the CPU output, if larger); the states after
//!   every step of a run likewise, against the larger of the data scale and the state's size;
//! - scalar sums (sum_j w_j, NAG's ratios): |gpu - cpu| / |cpu|;
//! - likelihoods on the sigma grid: p(x; sigma) / max_sigma p(x; sigma) per row, absolute, i.e. the
//!   error of p relative to its peak (ln p itself is -d_min / (2 s^2) + ..., ~1e8 at s = 2e-4, where
//!   one f32 ulp of d_min moves it by ~1e4 while p is e^-1e8 of the peak and plays no role);
//!   and the estimate sigma_hat, relative.
//!
//! Without an adapter the tests print "skipped: no GPU adapter" and pass, except under CI=true,
//! where a missing adapter fails them (CI installs Mesa's lavapipe).
#![cfg(feature = "gpu")]

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use noisescope::backend::cpu::{Isa, Path, PreparedSet, log_sum_exp_grid_on, weighted_rows_on};
use noisescope::backend::{BackendChoice, Compute, EmpiricalKernel, Span, WeightedRow, Weighting};
use noisescope::core::denoiser::{Cond, Denoiser};
use noisescope::core::estimate::{NoiseLikelihood, PosteriorEstimator, SigmaPrior};
use noisescope::core::guidance::{Cfg, Nag};
use noisescope::core::noise::{InjectedNoise, NoiseSource, Rng, SeededNoise, initial_noise};
use noisescope::core::sampler::{Hooks, SamplerArgs, SamplerKind, Stochasticity, sample};
use noisescope::core::schedule::karras;
use noisescope::core::{Batch, Precision};
use noisescope::data::gaussian::GaussianModel;
use noisescope::data::mixture::MixtureModel;
use noisescope::data::{DataSet, Source, digits, toys};
use noisescope::models::AnalyticModel;

const TOLERANCE: f64 = 1e-4;
const SIGMAS: [f64; 5] = [0.002, 0.05, 0.5, 5.0, 80.0];

/// The GPU backend, shared by the tests; `None` (and a "skipped" line) without an adapter, a
/// failure under CI=true.
fn gpu() -> Option<Compute> {
    static GPU: OnceLock<Option<Compute>> = OnceLock::new();
    let found = GPU
        .get_or_init(|| {
            let mut notes = Vec::new();
            Compute::select(BackendChoice::Gpu, &mut notes)
                .ok()
                .filter(Compute::is_gpu)
        })
        .clone();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but there is no GPU adapter (install mesa-vulkan-drivers)"
        );
        eprintln!("skipped: no GPU adapter");
    }
    found
}

fn moons() -> DataSet {
    match toys::load("moons", 4096) {
        Ok(Source::Empirical(set)) => set,
        other => panic!("moons: {other:?}"),
    }
}

fn digit_set() -> DataSet {
    digits::load().expect("embedded digits")
}

/// 2000 points uniform in [-1, 1]^784 with 10 labels (an MNIST-sized stand-in).
fn wide_set() -> DataSet {
    let (n, dim) = (2000, 784);
    let mut rng = Rng::new(784);
    let values = (0..n * dim).map(|_| 2.0 * rng.uniform() - 1.0).collect();
    let labels = (0..n).map(|j| (j % 10) as u32).collect();
    DataSet::new(n, dim, values, Some(labels), None).expect("valid set")
}

fn data_sets() -> Vec<(&'static str, DataSet)> {
    vec![
        ("moons", moons()),
        ("digits", digit_set()),
        ("784-d", wide_set()),
    ]
}

/// Largest |value| of a data set: the scale denoiser errors are measured against.
fn scale_of(values: &[f64]) -> f64 {
    values.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Noisy states around data points: x_r = y_{j(r)} + sigma z_r.
fn noisy_states(set: &DataSet, rows: usize, sigma: f64, seed: u64) -> Batch {
    let z = initial_noise(seed, rows, set.dim);
    let mut x = Batch::zeros(rows, set.dim);
    for r in 0..rows {
        let j = (r * 7919 + 13) % set.n;
        for (k, v) in x.row_mut(r).iter_mut().enumerate() {
            *v = set.row(j)[k] + sigma * z.row(r)[k];
        }
    }
    x
}

/// Values rounded to f32, as the f32 kernels see them.
fn rounded(values: &[f64]) -> Vec<f64> {
    values.iter().map(|&v| v as f32 as f64).collect()
}

/// The references of the weight kernels on one data set: the CPU's explicit f32 differences (the
/// GPU's arithmetic) and its f64 path on the f32-rounded data.
struct References {
    explicit: PreparedSet<f32>,
    exact: EmpiricalKernel,
}

impl References {
    fn new(set: &DataSet) -> Self {
        References {
            explicit: PreparedSet::new(&set.values, set.n, set.dim),
            exact: Compute::cpu()
                .prepare(&rounded(&set.values), set.n, set.dim, Precision::F64)
                .expect("f64 set"),
        }
    }

    /// (explicit f32 rows, f64 rows) at the f32-rounded states `x`.
    fn rows(
        &self,
        x: &Batch,
        spans: &[Span],
        weighting: &Weighting,
    ) -> (Vec<WeightedRow>, Vec<WeightedRow>) {
        let xs: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
        let explicit = weighted_rows_on(
            &self.explicit,
            &xs,
            spans,
            weighting,
            Isa::detect(),
            Path::Explicit,
        );
        let exact = self
            .exact
            .weighted_rows(x, spans, weighting)
            .expect("f64 rows");
        (explicit, exact)
    }
}

/// Rows against reference rows: the denoiser error (sum w y / sum w, against the data scale) and
/// the worst relative error of the sums `sums` picks out of a row.
fn errors_against(
    got: &[WeightedRow],
    reference: &[WeightedRow],
    scale: f64,
    sums: fn(&WeightedRow) -> Vec<f64>,
) -> (f64, f64) {
    let (mut worst_d, mut worst_sum) = (0.0f64, 0.0f64);
    for (g, r) in got.iter().zip(reference) {
        for (a, b) in sums(g).into_iter().zip(sums(r)) {
            worst_sum = worst_sum.max(relative(a, b));
        }
        for (gv, rv) in g.weighted.iter().zip(&r.weighted) {
            worst_d = worst_d.max((gv / g.weight_sum - rv / r.weight_sum).abs() / scale);
        }
    }
    (worst_d, worst_sum)
}

/// Folds one comparison into a running worst (denoiser, sums).
fn worse(worst: &mut (f64, f64), (d, sum): (f64, f64)) {
    *worst = (worst.0.max(d), worst.1.max(sum));
}

fn relative(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
    }
}

/// max_s |p_a(s) - p_b(s)| / max_s p_b(s) from two rows of ln p on the same grid.
fn peak_relative_error(a: &[f64], b: &[f64]) -> f64 {
    let top = b.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    a.iter()
        .zip(b)
        .map(|(a, b)| ((a - top).exp() - (b - top).exp()).abs())
        .fold(0.0, f64::max)
}

/// NAG's prior nodes as the model builds them (models/mod.rs `nag_quadrature`).
fn nag_nodes(dim: usize) -> (Vec<f64>, Vec<f64>) {
    let prior = SigmaPrior::edm_training();
    let (a, b) = prior.ln_support();
    let spacing = (1.0 / (2.0 * dim as f64).sqrt()).min(0.25);
    let n = (((b - a) / spacing).ceil() as usize + 1).clamp(16, 4000);
    prior.quadrature(n)
}

fn all_spans(set: &DataSet, rows: usize) -> Vec<Span> {
    vec![
        Span {
            start: 0,
            end: set.n
        };
        rows
    ]
}

fn class_spans(set: &DataSet, rows: usize) -> Vec<Span> {
    (0..rows)
        .map(|r| {
            let (start, end) = set.class_range((r % set.num_classes()) as u32);
            Span { start, end }
        })
        .collect()
}

#[test]
fn the_gpu_backend_names_its_adapter() {
    let Some(gpu) = gpu() else { return };
    let name = gpu.describe();
    assert!(name.starts_with("gpu: "), "{name}");
    let mut notes = Vec::new();
    let auto = Compute::select(BackendChoice::Auto, &mut notes).expect("auto always resolves");
    // Auto never settles for a CPU rasteriser.
    assert!(
        !auto.describe().contains("cpu adapter"),
        "{}",
        auto.describe()
    );
    assert!(notes.is_empty(), "{notes:?}");
}

/// Softmax (the ideal denoiser) over all data and over class spans (CFG's conditional call): the
/// GPU against the CPU's explicit differences, the CPU's default path against f64.
#[test]
fn softmax_weights_match_their_references() {
    let Some(gpu) = gpu() else { return };
    for (name, set) in data_sets() {
        let scale = scale_of(&set.values);
        let on_gpu = gpu
            .prepare(&set.values, set.n, set.dim, Precision::F32)
            .expect("gpu set");
        assert!(on_gpu.on_gpu(), "{name} did not stay on the GPU");
        let on_cpu = Compute::cpu()
            .prepare(&set.values, set.n, set.dim, Precision::F32)
            .expect("cpu set");
        let references = References::new(&set);
        let sums: fn(&WeightedRow) -> Vec<f64> = |r| vec![r.weight_sum, r.normaliser];
        for (which, spans_of) in [
            ("all", all_spans as fn(&DataSet, usize) -> Vec<Span>),
            ("class", class_spans),
        ] {
            // GPU vs explicit f32, CPU vs f64, GPU vs f64 (shown).
            let mut worst = [(0.0f64, 0.0f64); 3];
            for &sigma in &SIGMAS {
                let mut x = noisy_states(&set, 24, sigma, 7);
                x.round_to_f32();
                let spans = spans_of(&set, x.rows);
                let weighting = Weighting::Softmax { sigma };
                let (explicit, exact) = references.rows(&x, &spans, &weighting);
                let g = on_gpu
                    .weighted_rows(&x, &spans, &weighting)
                    .expect("gpu rows");
                let c = on_cpu
                    .weighted_rows(&x, &spans, &weighting)
                    .expect("cpu rows");
                worse(&mut worst[0], errors_against(&g, &explicit, scale, sums));
                worse(&mut worst[1], errors_against(&c, &exact, scale, sums));
                worse(&mut worst[2], errors_against(&g, &exact, scale, sums));
            }
            eprintln!(
                "softmax {name} {which}: gpu vs explicit f32 {:.2e} / {:.2e}, cpu vs f64 {:.2e} / {:.2e} \
                 (gpu vs f64 {:.2e} / {:.2e}; denoiser / weight sums)",
                worst[0].0, worst[0].1, worst[1].0, worst[1].1, worst[2].0, worst[2].1
            );
            for (what, (d, sum)) in [("gpu vs explicit f32", worst[0]), ("cpu vs f64", worst[1])] {
                assert!(
                    d <= TOLERANCE && sum <= TOLERANCE,
                    "softmax {name} {which} {what}: denoiser {d:e}, weight sums {sum:e}"
                );
            }
        }
    }
}

/// NAG's noise-unconditional weights: the ratios the model uses, sum_j w_j y_j / Z and
/// sum_j w_j / Z, and the score they give; the GPU against the CPU's explicit differences, the
/// CPU's default path against f64.
#[test]
fn marginal_weights_match_their_references() {
    let Some(gpu) = gpu() else { return };
    for (name, set) in data_sets() {
        let scale = scale_of(&set.values);
        let (sigmas, log_weights) = nag_nodes(set.dim);
        let on_gpu = gpu
            .prepare(&set.values, set.n, set.dim, Precision::F32)
            .expect("gpu set");
        let on_cpu = Compute::cpu()
            .prepare(&set.values, set.n, set.dim, Precision::F32)
            .expect("cpu set");
        let references = References::new(&set);
        let weighting = Weighting::Marginal {
            sigmas: &sigmas,
            log_weights: &log_weights,
            sigma_power: 2,
        };
        // sum_j w_j / Z = E[1 / s^2 | x]; sum_j w_j y_j / sum_j w_j is a weighted mean of data.
        let ratio: fn(&WeightedRow) -> Vec<f64> = |r| vec![r.weight_sum / r.normaliser];
        let mut worst = [(0.0f64, 0.0f64); 3];
        for &sigma in &SIGMAS {
            let mut x = noisy_states(&set, 16, sigma, 11);
            x.round_to_f32();
            let spans = class_spans(&set, x.rows);
            let (explicit, exact) = references.rows(&x, &spans, &weighting);
            let g = on_gpu
                .weighted_rows(&x, &spans, &weighting)
                .expect("gpu rows");
            let c = on_cpu
                .weighted_rows(&x, &spans, &weighting)
                .expect("cpu rows");
            worse(&mut worst[0], errors_against(&g, &explicit, scale, ratio));
            worse(&mut worst[1], errors_against(&c, &exact, scale, ratio));
            worse(&mut worst[2], errors_against(&g, &exact, scale, ratio));
        }
        eprintln!(
            "marginal {name}: gpu vs explicit f32 {:.2e} / {:.2e}, cpu vs f64 {:.2e} / {:.2e} \
             (gpu vs f64 {:.2e} / {:.2e}; weighted mean / sum/Z)",
            worst[0].0, worst[0].1, worst[1].0, worst[1].1, worst[2].0, worst[2].1
        );
        for (what, (mean, ratio)) in [("gpu vs explicit f32", worst[0]), ("cpu vs f64", worst[1])] {
            assert!(
                mean <= TOLERANCE && ratio <= TOLERANCE,
                "marginal {name} {what}: weighted mean {mean:e}, sum/Z {ratio:e}"
            );
        }
    }
}

/// The exact noise posterior's likelihood on the coarse grid and the per-row fine grids. On the
/// 2-D toy and the digits the two f32 sides are held to each other; on 784-D, where the CPU reads
/// the distances in GEMM form and the GPU sums explicit differences, the CPU is held to its f64
/// path and the GPU to the CPU's explicit differences, on the same inputs (the sides' gap there is
/// their f32 rounding, 1.07e-4 of the peak measured, the GPU's explicit sums the farther from f64:
/// not an error of either).
#[test]
fn noise_likelihood_grids_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let estimator = PosteriorEstimator::new(SigmaPrior::for_schedule(0.002, 80.0));
    for (name, set) in data_sets() {
        let source = Source::Empirical(set.clone());
        let prior = SigmaPrior::edm_training();
        let on_cpu =
            AnalyticModel::new(&source, &Compute::cpu(), Precision::F32, prior).expect("cpu model");
        let against_f64 = name == "784-d";
        // The model under test and its reference.
        let (side, reference) = if against_f64 {
            // f64 arithmetic on the data the f32 sides hold.
            let mut rounded = set.clone();
            for v in &mut rounded.values {
                *v = *v as f32 as f64;
            }
            let rounded = Source::Empirical(rounded);
            let on_f64 = AnalyticModel::new(&rounded, &Compute::cpu(), Precision::F64, prior)
                .expect("f64 model");
            (on_cpu, on_f64)
        } else {
            let on_gpu =
                AnalyticModel::new(&source, &gpu, Precision::F32, prior).expect("gpu model");
            (on_gpu, on_cpu)
        };
        // A grid of our own: the estimator's default grid is the CPU engineer's to tune.
        let (lo, hi) = estimator.prior.ln_support();
        let coarse: Vec<f64> = (0..48)
            .map(|k| (lo + (hi - lo) * k as f64 / 47.0).exp())
            .collect();
        let refine = |row: &[f64]| estimator.fine_grid(&coarse, row);
        let (mut worst, mut worst_hat) = (0.0f64, 0.0f64);
        for &sigma in &SIGMAS {
            let mut x = noisy_states(&set, 16, sigma, 5);
            // The f64 side reads the f32-rounded states the f32 sides read.
            if against_f64 {
                x.round_to_f32();
            }
            for cond in [
                Cond::plain(),
                Cond::with_class(Some((0..16).map(|r| r % 2).collect())),
            ] {
                let reference_grid = reference
                    .log_likelihood(&x, &cond, &coarse, &refine)
                    .expect("reference grid");
                let reference_hat = estimator
                    .estimate(&reference, &x, &cond)
                    .expect("reference estimate");
                let g = side
                    .log_likelihood(&x, &cond, &coarse, &refine)
                    .expect("f32 grid");
                let c = &reference_grid;
                assert_eq!(
                    g.fine_sigmas, c.fine_sigmas,
                    "{name}: the fine grids differ"
                );
                let rows = g
                    .coarse
                    .chunks(coarse.len())
                    .zip(c.coarse.chunks(coarse.len()));
                for (a, b) in rows.chain(
                    g.fine
                        .iter()
                        .map(Vec::as_slice)
                        .zip(c.fine.iter().map(Vec::as_slice)),
                ) {
                    worst = worst.max(peak_relative_error(a, b));
                }
                let side_hat = estimator.estimate(&side, &x, &cond).expect("f32 estimate");
                for (a, b) in side_hat.iter().zip(&reference_hat) {
                    worst_hat = worst_hat.max(relative(a.sigma_hat(), b.sigma_hat()));
                }
            }
        }
        let what = if against_f64 {
            "cpu vs f64"
        } else {
            "gpu vs cpu"
        };
        eprintln!("likelihood {name} {what}: {worst:.2e} (of the peak), sigma_hat {worst_hat:.2e}");
        assert!(
            worst <= TOLERANCE,
            "likelihood {name} {what}: error {worst:e}"
        );
        assert!(
            worst_hat <= TOLERANCE,
            "sigma_hat {name} {what}: error {worst_hat:e}"
        );
        if against_f64 {
            let worst = gpu_likelihood_against_explicit_f32(&gpu, &set, &coarse);
            eprintln!("likelihood {name} gpu vs explicit f32: {worst:.2e} (of the peak)");
            assert!(
                worst <= TOLERANCE,
                "likelihood {name} gpu vs explicit f32: {worst:e}"
            );
        }
    }
}

/// The GPU's log-sum-exp grids against the CPU's explicit f32 differences (the same arithmetic),
/// as likelihoods relative to their peak over sigma, on all data and on class spans: the largest
/// error.
fn gpu_likelihood_against_explicit_f32(gpu: &Compute, set: &DataSet, coarse: &[f64]) -> f64 {
    let kernel = gpu
        .prepare(&set.values, set.n, set.dim, Precision::F32)
        .expect("gpu set");
    let cpu_set = PreparedSet::<f32>::new(&set.values, set.n, set.dim);
    // ln p(x; s) up to a constant: LSE_j(-d_j / 2 s^2) - (D / 2) ln(2 pi s^2).
    let log_p = |sigmas: &[f64], lse: &[f64]| -> Vec<f64> {
        sigmas
            .iter()
            .zip(lse)
            .map(|(s, l)| l - 0.5 * set.dim as f64 * (2.0 * std::f64::consts::PI * s * s).ln())
            .collect()
    };
    let mut worst = 0.0f64;
    for &sigma in &SIGMAS {
        let mut x = noisy_states(set, 16, sigma, 5);
        x.round_to_f32();
        let xs: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
        let fine = vec![sigma * 0.9, sigma, sigma * 1.1];
        for spans in [all_spans(set, x.rows), class_spans(set, x.rows)] {
            let g = kernel
                .log_sum_exp_grid(&x, &spans, coarse, &|_, _| fine.clone())
                .expect("gpu grid");
            let c = log_sum_exp_grid_on(
                &cpu_set,
                &xs,
                &spans,
                coarse,
                &|_, _| fine.clone(),
                Isa::detect(),
                Path::Explicit,
            );
            for (r, (c_coarse, c_fine_sigmas, c_fine)) in c.iter().enumerate() {
                let g_coarse = &g.coarse[r * coarse.len()..(r + 1) * coarse.len()];
                assert_eq!(&g.fine_sigmas[r], c_fine_sigmas);
                let mut a = log_p(coarse, g_coarse);
                a.extend(log_p(&fine, &g.fine[r]));
                let mut b = log_p(coarse, c_coarse);
                b.extend(log_p(&fine, c_fine));
                worst = worst.max(peak_relative_error(&a, &b));
            }
        }
    }
    worst
}

/// The mixture kernel against the model's f64 host path: 8 Gaussians (also per class) and a
/// rotated, anisotropic Gaussian.
#[test]
fn gaussian_family_denoisers_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let rotated = GaussianModel::from_covariance(
        vec![0.3, -0.2, 0.1],
        &[2.0, 0.6, 0.1, 0.6, 1.0, -0.3, 0.1, -0.3, 0.3],
    )
    .expect("covariance");
    let sources = [
        (
            "8gaussians",
            Source::Mixture(toys::eight_gaussians().expect("mixture")),
        ),
        ("rotated gaussian", Source::Gaussian(rotated)),
        (
            "two rotated gaussians",
            Source::Mixture(
                MixtureModel::new(
                    vec![0.3, 0.7],
                    vec![
                        GaussianModel::from_covariance(vec![1.0, 0.0], &[0.5, 0.2, 0.2, 0.3])
                            .expect("cov"),
                        GaussianModel::from_covariance(vec![-1.0, 0.5], &[0.1, -0.05, -0.05, 0.4])
                            .expect("cov"),
                    ],
                    vec![0, 1],
                )
                .expect("mixture"),
            ),
        ),
    ];
    for (name, source) in sources {
        let prior = SigmaPrior::edm_training();
        let on_gpu = AnalyticModel::new(&source, &gpu, Precision::F32, prior).expect("gpu model");
        let on_cpu =
            AnalyticModel::new(&source, &Compute::cpu(), Precision::F32, prior).expect("cpu model");
        let points = source.display_points(64);
        let mut worst = 0.0f64;
        for &sigma in &SIGMAS {
            let x = noisy_states(&points, 64, sigma, 3);
            let mut conds = vec![Cond::plain()];
            if source.num_classes() > 1 {
                let classes = (0..64).map(|r| (r % source.num_classes()) as u32).collect();
                conds.push(Cond::with_class(Some(classes)));
            }
            for cond in conds {
                let g = on_gpu.denoise(&x, sigma, &cond).expect("gpu");
                let c = on_cpu.denoise(&x, sigma, &cond).expect("cpu");
                let scale = scale_of(&c.data).max(scale_of(&points.values));
                for (a, b) in g.data.iter().zip(&c.data) {
                    worst = worst.max((a - b).abs() / scale);
                }
            }
        }
        eprintln!("mixture {name}: {worst:.2e}");
        assert!(worst <= TOLERANCE, "mixture {name}: error {worst:e}");
    }
}

/// The guidance stack of a run.
#[derive(Clone, Copy, Debug)]
enum Guidance {
    None,
    Cfg,
    Nag,
}

/// Runs `kind` on `compute` and returns the state after every step (the last is the sample).
fn trajectory(
    compute: &Compute,
    source: &Source,
    kind: SamplerKind,
    guidance: Guidance,
    churn: bool,
    rows: usize,
) -> Vec<Batch> {
    let model: Arc<dyn Denoiser> = Arc::new(
        AnalyticModel::new(source, compute, Precision::F32, SigmaPrior::edm_training())
            .expect("model"),
    );
    let classes = source.num_classes().max(1);
    let (denoiser, cond): (Arc<dyn Denoiser>, Cond) = match guidance {
        Guidance::None => (model, Cond::plain()),
        Guidance::Cfg => (
            Arc::new(Cfg::new(model, 2.0)),
            Cond::with_class(Some((0..rows).map(|r| (r % classes) as u32).collect())),
        ),
        // w = 0.5: with the paper's w = 3 (and already w = 2 on moons and digits) 18 Heun steps
        // diverge to |x| ~ 1e2..1e7 on either backend, and a diverging run amplifies any rounding.
        Guidance::Nag => (Arc::new(Nag::new(model, 0.5)), Cond::plain()),
    };
    let sigmas = karras(18, 0.002, 80.0, 7.0);
    let dim = source.dim();
    let x0 = initial_noise(42, rows, dim).scale(sigmas[0]);
    let stochasticity = if churn {
        Stochasticity {
            churn: 40.0,
            tmin: 0.05,
            tmax: 50.0,
            snoise: 1.003,
            eta: 1.0,
        }
    } else {
        Stochasticity::default()
    };
    // Injected churn noise: the same file for both backends.
    let mut seeded = SeededNoise { seed: 9 };
    let mut values = Vec::new();
    for step in 0..18 {
        values.extend(seeded.step_noise(step, rows, dim).expect("noise").data);
    }
    let mut injected = InjectedNoise::new(&[18, rows, dim], values).expect("injected");
    let mut states = Vec::new();
    let mut on_step = |info: &noisescope::core::sampler::StepInfo| {
        states.push(info.x_next.clone());
        ControlFlow::Continue(())
    };
    let mut hooks = Hooks {
        noise: &mut injected,
        replan: None,
        on_step: &mut on_step,
    };
    let args = SamplerArgs {
        denoiser: denoiser.as_ref(),
        cond: &cond,
        sigmas: sigmas.clone(),
        stochasticity,
    };
    sample(kind, args, x0, &mut hooks).expect("run");
    states
}

fn assert_runs_agree(
    gpu: &Compute,
    name: &str,
    source: &Source,
    rows: usize,
    runs: &[(SamplerKind, Guidance, bool)],
) {
    let scale = scale_of(&source.display_points(4096).values);
    for &(kind, guidance, churn) in runs {
        let g = trajectory(gpu, source, kind, guidance, churn, rows);
        let c = trajectory(&Compute::cpu(), source, kind, guidance, churn, rows);
        assert_eq!(g.len(), c.len());
        let (Some(g_final), Some(c_final)) = (g.last(), c.last()) else {
            panic!("run {name}: no steps");
        };
        let error = |a: &Batch, b: &Batch, scale: f64| {
            a.data
                .iter()
                .zip(&b.data)
                .map(|(u, v)| (u - v).abs() / scale)
                .fold(0.0, f64::max)
        };
        let worst = error(g_final, c_final, scale);
        // Along the way the states are noisy (|x| up to ~3 sigma_0), measured against their size.
        let worst_path = g
            .iter()
            .zip(&c)
            .map(|(a, b)| error(a, b, scale.max(scale_of(&b.data))))
            .fold(0.0, f64::max);
        eprintln!(
            "run {name} {} {guidance:?} churn={churn}: final {worst:.2e}, path {worst_path:.2e}",
            kind
        );
        assert!(
            scale_of(&c_final.data) < 10.0 * scale,
            "run {name}: the reference run diverged"
        );
        assert!(
            worst <= TOLERANCE && worst_path <= TOLERANCE,
            "run {name} {} {guidance:?} churn={churn}: final {worst:e}, path {worst_path:e}",
            kind
        );
    }
    let notices = gpu.take_notices();
    assert!(notices.is_empty(), "unexpected GPU fallbacks: {notices:?}");
}

#[test]
fn whole_runs_match_the_cpu_on_moons() {
    let Some(gpu) = gpu() else { return };
    let source = Source::Empirical(moons());
    assert_runs_agree(
        &gpu,
        "moons",
        &source,
        64,
        &[
            (SamplerKind::Heun, Guidance::None, false),
            (SamplerKind::Edm, Guidance::None, true),
            (SamplerKind::Heun, Guidance::Cfg, false),
            (SamplerKind::Heun, Guidance::Nag, false),
        ],
    );
}

#[test]
fn whole_runs_match_the_cpu_on_digits() {
    let Some(gpu) = gpu() else { return };
    let source = Source::Empirical(digit_set());
    assert_runs_agree(
        &gpu,
        "digits",
        &source,
        20,
        &[
            (SamplerKind::Heun, Guidance::None, false),
            (SamplerKind::Edm, Guidance::None, true),
            (SamplerKind::Edm, Guidance::Cfg, true),
            (SamplerKind::Heun, Guidance::Nag, false),
        ],
    );
}

#[test]
fn whole_runs_match_the_cpu_on_784_dimensions() {
    let Some(gpu) = gpu() else { return };
    let source = Source::Empirical(wide_set());
    assert_runs_agree(
        &gpu,
        "784-d",
        &source,
        6,
        &[
            (SamplerKind::Heun, Guidance::None, false),
            (SamplerKind::Edm, Guidance::Cfg, true),
            (SamplerKind::Heun, Guidance::Nag, false),
        ],
    );
}

#[test]
fn whole_runs_match_the_cpu_on_8_gaussians() {
    let Some(gpu) = gpu() else { return };
    let source = Source::Mixture(toys::eight_gaussians().expect("mixture"));
    assert_runs_agree(
        &gpu,
        "8gaussians",
        &source,
        64,
        &[
            (SamplerKind::Heun, Guidance::None, false),
            (SamplerKind::Edm, Guidance::Cfg, true),
            (SamplerKind::Heun, Guidance::Nag, false),
        ],
    );
}

#[test]
fn f64_on_the_gpu_backend_runs_on_the_cpu_with_a_notice() {
    let Some(_) = gpu() else { return };
    // A context of its own, so the notice does not race with the other tests'.
    let gpu = Compute::select(BackendChoice::Gpu, &mut Vec::new()).expect("gpu");
    let set = digit_set();
    let kernel = gpu
        .prepare(&set.values, set.n, set.dim, Precision::F64)
        .expect("kernel");
    assert!(!kernel.on_gpu());
    let notices = gpu.take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("f64"), "{notices:?}");
    assert!(gpu.take_notices().is_empty(), "notices are handed out once");
}
