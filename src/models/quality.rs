//! Sample quality against the data, with the exact model as ground truth: the class posterior
//! p(c | x; sigma) of labelled data (class accuracy scores class-conditional samples with it at
//! sigma_min), the metrics of core::metrics for a set of samples, and a quick sampling check of a
//! denoiser (Heun, 18 Karras steps) for training-time evaluation.

use std::ops::ControlFlow;

use rayon::prelude::*;

use crate::backend::cpu::gemm::{Threads, product_transposed};
use crate::core::denoiser::{Cond, Denoiser};
use crate::core::metrics::Quality;
use crate::core::noise::{SeededNoise, choose_subset, initial_noise};
use crate::core::sampler::{Hooks, SamplerArgs, SamplerKind, Stochasticity, sample};
use crate::core::schedule::karras;
use crate::core::{Batch, log_sum_exp};
use crate::data::Source;
use crate::error::{Error, Result};

/// The noise level the class posterior of samples is taken at (the schedules' sigma_min).
pub const CLASS_SIGMA: f64 = 0.002;
/// Rows a closed-form source is represented by in the metrics.
const ANALYTIC_ROWS: usize = 4096;
/// Data rows the metrics compare with at most (a seeded subset of larger sets).
pub const MAX_DATA_ROWS: usize = 8192;

/// Every metric of `samples` against the data of `source`. With `intended` classes (one per
/// sample) the samples of each class are compared with that class's data (the metrics averaged
/// over classes, weighted by samples), and the class accuracy under the exact class posterior
/// at `CLASS_SIGMA` is added.
pub fn quality(
    samples: &Batch,
    source: &Source,
    intended: Option<&[u32]>,
    seed: u64,
) -> Result<Quality> {
    let points = source.display_points(ANALYTIC_ROWS);
    let all = Batch::from_vec(points.n, points.dim, points.values)?;
    // The nearest-point search costs samples x rows x dim: a fixed subset of large sets.
    let keep = choose_subset(seed, all.rows, MAX_DATA_ROWS);
    let data = all.select_rows(&keep);
    let (Some(classes), Some(labels)) = (intended, &points.labels) else {
        return Quality::measure(samples, &data, seed, &gemm_products);
    };
    if classes.len() != samples.rows {
        return Err(Error::Shape(format!(
            "{} intended classes for {} samples",
            classes.len(),
            samples.rows
        )));
    }
    let labels: Vec<u32> = keep.iter().map(|&j| labels[j]).collect();
    let mut wanted: Vec<u32> = classes.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut q = Quality {
        sliced_w2: 0.0,
        mmd: 0.0,
        mmd_bandwidth: 0.0,
        nearest_distance: 0.0,
        class_accuracy: None,
    };
    for c in wanted {
        let own: Vec<usize> = (0..samples.rows).filter(|&r| classes[r] == c).collect();
        let rows: Vec<usize> = (0..data.rows).filter(|&j| labels[j] == c).collect();
        if rows.is_empty() {
            return Err(Error::InvalidSpec(format!(
                "class {c} has no data to compare with"
            )));
        }
        let (own_samples, own_data) = (samples.select_rows(&own), data.select_rows(&rows));
        let part = Quality::measure(&own_samples, &own_data, seed, &gemm_products)?;
        let weight = own.len() as f64 / samples.rows as f64;
        q.sliced_w2 += weight * part.sliced_w2;
        q.mmd += weight * part.mmd;
        q.mmd_bandwidth += weight * part.mmd_bandwidth;
        q.nearest_distance += weight * part.nearest_distance;
    }
    let posterior = |x: &Batch| class_posterior(source, x, CLASS_SIGMA);
    q.class_accuracy = Some(crate::core::metrics::class_accuracy(
        samples, classes, &posterior,
    )?);
    Ok(q)
}

/// The metrics' dot products a.b^T through the engine's f64 GEMM on every thread (the MMD of
/// 2000 784-D points against each other took seconds in plain loops).
pub fn gemm_products(a: &Batch, b: &Batch) -> Vec<f64> {
    debug_assert_eq!(a.dim, b.dim, "products of rows of different lengths");
    let mut out = vec![0.0; a.rows * b.rows];
    if a.dim == b.dim && a.rows > 0 && b.rows > 0 {
        product_transposed(
            &a.data,
            &b.data,
            (a.rows, b.rows, a.dim),
            &mut out,
            Threads::All,
        );
    }
    out
}

/// `rows` samples of `denoiser` by Heun with `steps` Karras steps from 80 to 0.002, from the
/// seeded initial noise of `seed`.
pub fn sample_heun(
    denoiser: &dyn Denoiser,
    cond: &Cond,
    rows: usize,
    steps: usize,
    seed: u64,
) -> Result<Batch> {
    let sigmas = karras(steps, CLASS_SIGMA, 80.0, 7.0);
    let x0 = initial_noise(seed, rows, denoiser.dim()).scale(sigmas[0]);
    let args = SamplerArgs {
        denoiser,
        cond,
        sigmas,
        stochasticity: Stochasticity::default(),
    };
    let mut noise = SeededNoise { seed };
    let mut hooks = Hooks {
        noise: &mut noise,
        replan: None,
        on_step: &mut |_| ControlFlow::Continue(()),
    };
    Ok(sample(SamplerKind::Heun, args, x0, &mut hooks)?.x)
}

/// Samples `rows` from `denoiser` (Heun, 18 Karras steps; classes round-robin when the data
/// are labelled) and measures their quality.
pub fn sample_quality(
    denoiser: &dyn Denoiser,
    source: &Source,
    rows: usize,
    seed: u64,
) -> Result<Quality> {
    let classes = source.num_classes().min(denoiser.num_classes());
    let intended: Option<Vec<u32>> =
        (classes > 0).then(|| (0..rows).map(|r| (r % classes) as u32).collect());
    let cond = Cond::with_class(intended.clone());
    let x = sample_heun(denoiser, &cond, rows, 18, seed)?;
    quality(&x, source, intended.as_deref(), seed)
}

/// p(c | x; sigma) for every row of `x`, one vector of class probabilities per row.
/// A finite set: p(c | x) ∝ sum_{j in c} N(x; y_j, sigma^2 I) (classes weighted by their size);
/// a mixture: the summed responsibilities of the class's components.
pub fn class_posterior(source: &Source, x: &Batch, sigma: f64) -> Result<Vec<Vec<f64>>> {
    let classes = source.num_classes();
    if classes == 0 {
        return Err(Error::InvalidSpec(
            "this data has no classes, so no class posterior".into(),
        ));
    }
    x.expect_dim(source.dim(), "the samples")?;
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(Error::InvalidSpec(format!(
            "the class posterior needs sigma > 0, got {sigma}"
        )));
    }
    let normalise = |logits: Vec<f64>| -> Vec<f64> {
        let total = log_sum_exp(&logits);
        logits.iter().map(|l| (l - total).exp()).collect()
    };
    match source {
        Source::Empirical(set) => {
            let inv = -0.5 / (sigma * sigma);
            Ok((0..x.rows)
                .into_par_iter()
                .map(|r| {
                    let row = x.row(r);
                    let logits = (0..classes as u32)
                        .map(|c| {
                            let (start, end) = set.class_range(c);
                            let terms: Vec<f64> = (start..end)
                                .map(|j| {
                                    let d2: f64 = row
                                        .iter()
                                        .zip(set.row(j))
                                        .map(|(a, b)| (a - b) * (a - b))
                                        .sum();
                                    inv * d2
                                })
                                .collect();
                            log_sum_exp(&terms)
                        })
                        .collect();
                    normalise(logits)
                })
                .collect())
        }
        Source::Mixture(m) => {
            let all: Vec<usize> = (0..m.components.len()).collect();
            Ok((0..x.rows)
                .into_par_iter()
                .map(|r| {
                    let (log_r, _) = m.responsibilities(x.row(r), sigma, &all);
                    let mut per_class = vec![Vec::new(); classes];
                    for (&c, l) in all.iter().zip(log_r) {
                        per_class[m.labels[c] as usize].push(l);
                    }
                    normalise(per_class.iter().map(|l| log_sum_exp(l)).collect())
                })
                .collect())
        }
        Source::Gaussian(_) => Err(Error::InvalidSpec(
            "a Gaussian has no classes, so no class posterior".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataSet;

    #[test]
    fn gemm_products_equal_the_plain_loops() -> Result<()> {
        let a = initial_noise(1, 37, 70);
        let b = initial_noise(2, 53, 70);
        let (fast, plain) = (
            gemm_products(&a, &b),
            crate::core::metrics::dot_products(&a, &b),
        );
        assert_eq!(fast.len(), 37 * 53);
        for (f, p) in fast.iter().zip(&plain) {
            assert!((f - p).abs() < 1e-12, "{f} vs {p}");
        }
        Ok(())
    }

    #[test]
    fn two_diracs_give_a_logistic_posterior() -> Result<()> {
        // Diracs at -1 (class 0) and +1 (class 1): p(1 | x; s) = 1 / (1 + exp(-2x / s^2)).
        let set = DataSet::new(2, 1, vec![-1.0, 1.0], Some(vec![0, 1]), None)?;
        let source = Source::Empirical(set);
        let xs = [-2.0, -0.3, 0.0, 0.4, 3.0];
        for sigma in [0.5, 1.0, 2.0] {
            let post = class_posterior(&source, &Batch::from_vec(5, 1, xs.to_vec())?, sigma)?;
            for (x, p) in xs.iter().zip(&post) {
                let expect = 1.0 / (1.0 + (-2.0 * x / (sigma * sigma)).exp());
                assert!((p[1] - expect).abs() < 1e-12, "x {x} sigma {sigma}");
                assert!((p[0] + p[1] - 1.0).abs() < 1e-12);
            }
        }
        // At a tiny sigma it is the nearest point's class, without overflow.
        let post = class_posterior(&source, &Batch::from_vec(1, 1, vec![0.1])?, 0.002)?;
        assert_eq!(post[0], vec![0.0, 1.0]);
        Ok(())
    }

    #[test]
    fn class_conditional_quality_compares_each_class_with_its_own_data() -> Result<()> {
        // Class 0 around (-2, 0), class 1 around (2, 0); the samples are the data itself.
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for (class, centre) in [(0u32, -2.0), (1, 2.0)] {
            for k in 0..6 {
                values.extend([centre + 0.1 * k as f64, 0.05 * k as f64]);
                labels.push(class);
            }
        }
        let set = DataSet::new(12, 2, values.clone(), Some(labels.clone()), None)?;
        let source = Source::Empirical(set);
        let samples = Batch::from_vec(12, 2, values)?;
        let right = quality(&samples, &source, Some(&labels), 3)?;
        assert!(
            right.sliced_w2 < 1e-12 && right.nearest_distance < 1e-12,
            "{right:?}"
        );
        assert_eq!(right.class_accuracy, Some(1.0));
        // Each sample tagged with the other class: the pooled metrics cannot tell, the per-class
        // ones see the 4-unit gap between the clusters, and the accuracy is 0.
        let swapped: Vec<u32> = labels.iter().map(|c| 1 - c).collect();
        let wrong = quality(&samples, &source, Some(&swapped), 3)?;
        let pooled = quality(&samples, &source, None, 3)?;
        assert!(pooled.sliced_w2 < 1e-12, "{pooled:?}");
        assert!(wrong.sliced_w2 > 1.0, "{wrong:?}");
        assert_eq!(wrong.class_accuracy, Some(0.0));
        assert_eq!(pooled.class_accuracy, None);
        assert!(quality(&samples, &source, Some(&labels[..5]), 3).is_err());
        Ok(())
    }

    #[test]
    fn mixture_posterior_sums_its_class_components() -> Result<()> {
        let m = crate::data::toys::eight_gaussians()?;
        let source = Source::Mixture(m.clone());
        let x = Batch::from_vec(2, 2, vec![2.0, 0.0, 0.3, -0.2])?;
        let post = class_posterior(&source, &x, 0.2)?;
        assert!(post[0][0] > 0.99, "{:?}", post[0]);
        let all: Vec<usize> = (0..8).collect();
        let (log_r, _) = m.responsibilities(x.row(1), 0.2, &all);
        for (c, p) in post[1].iter().enumerate() {
            assert!((p - log_r[c].exp()).abs() < 1e-12);
        }
        let unlabelled = Source::Empirical(DataSet::new(1, 2, vec![0.0, 0.0], None, None)?);
        assert!(class_posterior(&unlabelled, &x, 0.5).is_err());
        Ok(())
    }
}
