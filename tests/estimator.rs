//! The learned noise-level estimator g(sigma | x) (issue 11 item 3): trained here on exact noisy
//! data (small networks, a few seconds), against the truth and the exact posterior.

mod ui_support;

use std::ops::ControlFlow;

use noisescope::Result;
use noisescope::backend::Compute;
use noisescope::core::denoiser::{Cond, Denoiser};
use noisescope::core::estimate::{NoiseLevelEstimator, NoiseLevelGradient, SigmaPrior};
use noisescope::core::guidance::NagForm;
use noisescope::core::{Precision, quantile};
use noisescope::data::gaussian::GaussianModel;
use noisescope::data::mixture::MixtureModel;
use noisescope::data::{DataSet, Source, digits};
use noisescope::models::AnalyticModel;
use noisescope::models::estimator::LearnedNoiseEstimator;
use noisescope::train::data::TrainingSet;
use noisescope::train::estimator::{
    EstimatorArch, EstimatorConfig, EstimatorLoss, EstimatorTraining, train,
};
use ui_support::noisy;

/// Trainings take turns: two at once on a small machine only slow each other down (a training
/// is bit-reproducible, `one_seed_trains_the_same_bits`).
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn trained(
    set: &DataSet,
    range: (f64, f64),
    training: &EstimatorTraining,
) -> Result<LearnedNoiseEstimator> {
    let _turn = TRAINING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let set = TrainingSet::from_dataset(set)?;
    let mut config = EstimatorConfig::mlp(set.dim, set.sigma_data, range.0, range.1);
    // Half the default width: quick enough for a debug-build test.
    config.arch = EstimatorArch::Mlp {
        hidden: 128,
        depth: 3,
    };
    let t = train(&config, &set, training, &mut |_, _| {
        ControlFlow::Continue(())
    })?;
    Ok(LearnedNoiseEstimator::new(t.net, None))
}

fn log_grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|k| (lo.ln() + (hi / lo).ln() * k as f64 / (n - 1) as f64).exp())
        .collect()
}

#[test]
fn the_learned_estimator_reads_sigma_of_noisy_digits_within_01() -> Result<()> {
    // The trained range starts at 0.5: below it a noisy digit's level is told by its distance
    // to the nearest of the 1797 rows (the exact posterior's cue, 0.05 at sigma = 0.05), which
    // a small mlp does not memorise (median error 0.16 at 0.1, 0.13 at 0.23 when trained from
    // 0.1, README). Above ~2 the floor is the sample's own: 64 pixels fix ln sigma to
    // 1/sqrt(128), a median |error| of 0.06.
    let data = digits::load()?;
    let range = (0.5, 80.0);
    // Training is bit-reproducible (seed 0 here), so these are fixed numbers: the default loss
    // measures 0.0959 at sigma = 0.5 (<= 0.078 above) against the 0.1. Seed 001's loss
    // (an option) fits the mean through log(1 - alpha), alpha = 1/(1+sigma^2), and the
    // log-variance by the NLL around it: 0.138 at sigma = 0.5 (<= 0.096 above), held to 0.16,
    // the top of what other initialisations gave (0.136-0.158 when the init was unseeded).
    for (loss, bound) in [(EstimatorLoss::Nll, 0.1), (EstimatorLoss::Alpha, 0.16)] {
        let training = EstimatorTraining {
            steps: 3000,
            loss,
            ..Default::default()
        };
        let estimator = trained(&data, range, &training)?;
        let mut worst = 0.0f64;
        for (k, sigma) in log_grid(range.0, range.1, 9).into_iter().enumerate() {
            let x = noisy(&data, sigma, 256, 100 + k as u64)?;
            let errors: Vec<f64> = estimator
                .estimate(&x, &Cond::plain())?
                .iter()
                .map(|e| (e.mean_ln - sigma.ln()).abs())
                .collect();
            let median = quantile(&errors, 0.5);
            eprintln!("{loss:?} sigma {sigma:.3}: median |ln sigma_hat - ln sigma| {median:.4}");
            worst = worst.max(median);
        }
        assert!(worst <= bound, "{loss:?}: worst median error {worst}");
    }
    Ok(())
}

#[test]
fn the_learned_input_gradient_follows_the_exact_posterior_gradient() -> Result<()> {
    // Four isotropic Gaussians in 8-D; the exact grad_x ln p(sigma | x) = s(x; sigma) - s(x),
    // s(x) the score of the sigma-marginal under the training prior (the exact-score D(x; none)
    // with that prior: s = (D_none - x) / sigma^2).
    let dim = 8;
    let components = (0..4)
        .map(|c| {
            let mut mean = vec![0.0; dim];
            mean[c / 2] = if c % 2 == 0 { 1.5 } else { -1.5 };
            GaussianModel::isotropic(mean, 0.05)
        })
        .collect::<Result<Vec<_>>>()?;
    let mixture = MixtureModel::new(vec![0.25; 4], components, vec![0, 1, 2, 3])?;
    let range = (0.05, 20.0);
    let data = mixture.sample(8192, 5);
    let estimator = trained(&data, range, &EstimatorTraining::default())?;
    let exact = AnalyticModel::new(
        &Source::Mixture(mixture),
        &Compute::cpu(),
        Precision::F64,
        SigmaPrior::LogUniform {
            lo: range.0,
            hi: range.1,
        },
    )?;
    let cosine = |a: &[f64], b: &[f64]| {
        let dot: f64 = a.iter().zip(b).map(|(a, b)| a * b).sum();
        let norm = |v: &[f64]| v.iter().map(|v| v * v).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    };
    for (k, true_sigma) in [0.2, 0.7, 2.5].into_iter().enumerate() {
        let x = noisy(&data, true_sigma, 200, 40 + k as u64)?;
        // Away from the posterior's mode (|ln ratio| = 0.7, several posterior widths in 8-D),
        // where the exact gradient has a direction to agree with.
        for sigma in [true_sigma * 0.5, true_sigma * 2.0] {
            let learned = estimator.grad_log_density(&x, sigma)?;
            let conditional = exact.denoise(&x, sigma, &Cond::plain())?;
            let marginal = exact.noise_dropped(&x, sigma, &Cond::plain(), NagForm::ExactScore)?;
            let cosines: Vec<f64> = (0..x.rows)
                .map(|r| {
                    let g: Vec<f64> = (0..dim)
                        .map(|i| (conditional.row(r)[i] - marginal.row(r)[i]) / (sigma * sigma))
                        .collect();
                    cosine(learned.row(r), &g)
                })
                .collect();
            let median = quantile(&cosines, 0.5);
            eprintln!("x at {true_sigma}, sigma {sigma}: median cosine {median:.3}");
            assert!(median >= 0.9, "x at {true_sigma}, sigma {sigma}: {median}");
        }
    }
    Ok(())
}

/// Every trained parameter's bits, by name.
fn parameter_bits(
    config: &EstimatorConfig,
    set: &TrainingSet,
    seed: u64,
) -> Result<Vec<(String, Vec<u32>)>> {
    let training = EstimatorTraining {
        steps: 25,
        batch: 64,
        seed,
        ..Default::default()
    };
    let t = train(
        config,
        set,
        &training,
        &mut |_, _| ControlFlow::Continue(()),
    )?;
    t.vars
        .snapshot()?
        .into_iter()
        .map(|(name, tensor)| {
            let bits = tensor
                .flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(f32::to_bits)
                .collect();
            Ok((name, bits))
        })
        .collect()
}

#[test]
fn one_seed_trains_the_same_bits() -> Result<()> {
    // Both bodies (the conv's backward runs through candle's conv kernels, the mlp's through
    // its matmuls); a different seed must move the parameters (the init and the batches).
    let set = TrainingSet::from_dataset(&digits::load()?)?;
    let mlp = EstimatorConfig {
        arch: EstimatorArch::Mlp {
            hidden: 32,
            depth: 2,
        },
        ..EstimatorConfig::mlp(set.dim, set.sigma_data, 0.1, 10.0)
    };
    let conv = EstimatorConfig {
        arch: EstimatorArch::Conv {
            channels: 4,
            hidden: 16,
        },
        image: set.image,
        ..mlp.clone()
    };
    for config in [mlp, conv] {
        let first = parameter_bits(&config, &set, 7)?;
        let again = parameter_bits(&config, &set, 7)?;
        let other = parameter_bits(&config, &set, 8)?;
        assert!(!first.is_empty());
        assert_eq!(first, again, "{:?}: one seed, two trainings", config.arch);
        for ((name, a), (_, b)) in first.iter().zip(&other) {
            // The zero-initialised head is the one a seed does not draw; training moves it.
            assert_ne!(
                a, b,
                "{:?}: {name} is the same under seeds 7 and 8",
                config.arch
            );
        }
    }
    Ok(())
}

#[test]
fn an_estimator_checkpoint_round_trips() -> Result<()> {
    let set = TrainingSet::from_dataset(&digits::load()?)?;
    let config = EstimatorConfig::mlp(64, set.sigma_data, 0.1, 10.0);
    let training = EstimatorTraining {
        steps: 20,
        ..Default::default()
    };
    let t = train(&config, &set, &training, &mut |_, _| {
        ControlFlow::Continue(())
    })?;
    let dir = tempfile::tempdir().map_err(|e| noisescope::Error::io("tempdir", e))?;
    let path = dir.path().join("g.safetensors");
    noisescope::train::estimator::save(&t, &training, &set, "digits", &path)?;
    let loaded = LearnedNoiseEstimator::from_checkpoint(&path)?;
    let x = noisy(&digits::load()?, 0.5, 8, 3)?;
    let a = LearnedNoiseEstimator::new(t.net, None).estimate(&x, &Cond::plain())?;
    let b = loaded.estimate(&x, &Cond::plain())?;
    assert_eq!(a, b);
    assert_eq!(loaded.sidecar.map(|s| s.steps_done), Some(20));
    Ok(())
}
