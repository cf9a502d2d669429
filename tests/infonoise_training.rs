//! InfoNoise in the trainer (issue 12): the running estimate m_hat built from real training
//! batches against the exact Gaussian mmse, and a resumed InfoNoise run that draws exactly as the
//! whole run, with every constant and the learned state in the checkpoint's sidecar.

use std::sync::Arc;

use noisescope::Result;
use noisescope::core::infonoise::{GateRule, InfoNoiseConfig};
use noisescope::core::information::gaussian_mmse;
use noisescope::data::{DataSpec, toys};
use noisescope::error::Error;
use noisescope::train::checkpoint::{self, Checkpoint};
use noisescope::train::data::TrainingSet;
use noisescope::train::mlp::MlpConfig;
use noisescope::train::network::ArchConfig;
use noisescope::train::sigma_dist::SigmaDistribution;
use noisescope::train::trainer::{Outcome, TrainConfig, TrainControl, Trainer};

fn small_mlp() -> ArchConfig {
    ArchConfig::Mlp(MlpConfig {
        hidden: 64,
        depth: 3,
        frequencies: 8,
        class_dim: 4,
    })
}

fn infonoise_config(steps: usize, batch: usize, info: InfoNoiseConfig) -> TrainConfig {
    let mut c = TrainConfig::for_arch(&small_mlp(), steps);
    c.batch = batch;
    c.seed = 3;
    c.noise_dropout = 0.0;
    c.sigma = SigmaDistribution::InfoNoise(info);
    c
}

fn train(trainer: &mut Trainer) -> Result<Vec<f64>> {
    let mut losses = Vec::new();
    let outcome = trainer.run(&TrainControl::default(), &mut |p| losses.push(p.loss))?;
    assert_eq!(outcome, Outcome::Finished);
    Ok(losses)
}

#[test]
fn the_running_estimate_from_training_batches_approaches_the_exact_gaussian_mmse() -> Result<()> {
    // N(0, diag(1, 0.25)): mmse(sigma)/dim = (1/2) sum_k l_k s^2 / (l_k + s^2).
    let lambdas = [1.0, 0.25];
    let spec = DataSpec::Gaussian {
        spectrum: lambdas.to_vec(),
    };
    let data = Arc::new(TrainingSet::from_source(&spec.load()?)?);
    let info = InfoNoiseConfig {
        bins: 64,
        warmup_steps: 300,
        rebuild_every: 100,
        // The last rebuilds dominate: m_hat follows the network as it is now.
        ema: 0.3,
        ..InfoNoiseConfig::default()
    };
    let mut trainer = Trainer::new(small_mlp(), infonoise_config(600, 256, info), data)?;
    train(&mut trainer)?;
    let sampler = trainer
        .sigma_sampler()
        .ok_or_else(|| Error::Data("an InfoNoise run has its sampler".into()))?;
    let profile = sampler.profile();
    assert_eq!(profile.rebuilds, 4);
    assert!(profile.density.is_some() && profile.gate_c.is_some());
    // Where the training rows are (sigma in [0.1, 3]: the warm-up's ln sigma ~ N(-1.2, 1.2^2)
    // and InfoNoise's mass) each bin of m_hat rests on >= 100 kernel-weighted rows. One row's
    // loss is mmse * chi-square_2 / 2 (relative SD 1), so a bin's relative SE is <= 0.1 and
    // 0.2 is two SEs. The network's expected loss is >= mmse (the ideal denoiser is the
    // minimiser); its excess after 600 steps is within that band (measured: 3% to 5%), and the
    // support-weighted mean ratio, SE < 0.01, must be within 5%.
    let (mut weighted, mut total) = (0.0, 0.0);
    let mut checked = 0;
    for ((&sigma, &m), &support) in profile
        .sigmas
        .iter()
        .zip(&profile.mmse)
        .zip(sampler.support())
    {
        if !(0.1..=3.0).contains(&sigma) {
            continue;
        }
        let exact = gaussian_mmse(&lambdas, sigma);
        assert!(support >= 100.0, "sigma {sigma}: support {support}");

        let ratio = m / exact;
        assert!(
            (ratio - 1.0).abs() <= 0.2,
            "sigma {sigma}: m_hat {m} vs exact {exact} ({ratio})"
        );
        weighted += support * ratio;
        total += support;
        checked += 1;
    }
    assert!(checked >= 20, "{checked} bins checked");
    let mean_ratio = weighted / total;
    assert!((mean_ratio - 1.0).abs() <= 0.05, "mean ratio {mean_ratio}");
    Ok(())
}

#[test]
fn a_resumed_infonoise_run_draws_as_the_whole_run_and_the_sidecar_records_it() -> Result<()> {
    let source = toys::load("moons", 2000)?;
    let data = Arc::new(TrainingSet::from_source(&source)?);
    let info = InfoNoiseConfig {
        warmup_steps: 10,
        rebuild_every: 5,
        gate: GateRule::Pinned { c: 0.05 },
        // Not the data's: the trainer replaces it with the sigma_data of its loss weight.
        sigma_data: 0.5,
        ..InfoNoiseConfig::default()
    };
    let config = |steps| infonoise_config(steps, 64, info.clone());
    let mut whole = Trainer::new(small_mlp(), config(30), data.clone())?;
    let all = train(&mut whole)?;
    let mut half = Trainer::new(small_mlp(), config(15), data.clone())?;
    let first = train(&mut half)?;
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let path = dir.path().join("half.safetensors");
    checkpoint::save(&path, &half, &DataSpec::default(), true)?;
    let saved = Checkpoint::load(&path)?;
    let recorded = SigmaDistribution::InfoNoise(InfoNoiseConfig {
        sigma_data: data.sigma_data,
        ..info.clone()
    });
    assert_eq!(saved.sidecar.training.sigma, recorded);
    let state = saved
        .sidecar
        .sigma_sampler
        .clone()
        .ok_or_else(|| Error::Data("the sidecar holds InfoNoise's state".into()))?;
    assert_eq!(Some(&state), half.sigma_sampler());
    assert_eq!(state.profile().rebuilds, 2);
    // The sidecar's JSON names every constant.
    let json = std::fs::read_to_string(checkpoint::sidecar_path(&path))
        .map_err(|e| Error::io(&path, e))?;
    for key in [
        "\"kind\": \"infonoise\"",
        "\"warmup_steps\": 10",
        "\"rebuild_every\": 5",
        "\"rule\": \"pinned\"",
        "\"gate_power\": 3.0",
        "\"sigma_data\"",
    ] {
        assert!(json.contains(key), "{key} missing");
    }
    let mut resumed = Trainer::resume(saved.resume_state(), config(30), data.clone())?;
    let rest = train(&mut resumed)?;
    assert_eq!([first, rest].concat(), all);
    assert_eq!(resumed.sigma_sampler(), whole.sigma_sampler());
    // Past the warm-up, InfoNoise draws differently from the log-normal on the same seed.
    let mut lognormal = TrainConfig {
        sigma: SigmaDistribution::default(),
        ..config(30)
    };
    lognormal.seed = 3;
    let mut plain = Trainer::new(small_mlp(), lognormal, data)?;
    let other = train(&mut plain)?;
    assert_eq!(other[..10], all[..10]);
    assert_ne!(other[10..], all[10..]);
    Ok(())
}
