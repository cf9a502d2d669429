//! Learned denoisers (issue 9): training, checkpoints, and the trained model as a `Denoiser`
//! under the samplers and guidance. Trainings here are short: CI runs them in a debug build.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use noisescope::Result;
use noisescope::backend::Compute;
use noisescope::core::Batch;
use noisescope::core::Precision;
use noisescope::core::denoiser::{Cond, Denoiser};
use noisescope::core::estimate::SigmaPrior;
use noisescope::core::guidance::{Cfg, Nag};
use noisescope::core::metrics::sliced_w2;
use noisescope::core::noise::initial_noise;
use noisescope::data::{DataSet, DataSpec, Source, digits, toys};
use noisescope::error::Error;
use noisescope::models::AnalyticModel;
use noisescope::models::learned::LearnedDenoiser;
use noisescope::models::quality::{sample_heun, sample_quality};
use noisescope::train::checkpoint::{self, Checkpoint};
use noisescope::train::data::TrainingSet;
use noisescope::train::mlp::MlpConfig;
use noisescope::train::network::ArchConfig;
use noisescope::train::trainer::{ControlState, Outcome, TrainConfig, TrainControl, Trainer};
use noisescope::train::unet::UnetConfig;

/// Trainings take turns: two at once on a small machine only fight over its cores.
static TRAINING: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    TRAINING.lock().unwrap_or_else(PoisonError::into_inner)
}

fn moons() -> Result<(Source, Arc<TrainingSet>)> {
    let source = toys::load("moons", 2000)?;
    let set = Arc::new(TrainingSet::from_source(&source)?);
    Ok((source, set))
}

fn mlp_config(steps: usize, batch: usize, seed: u64) -> TrainConfig {
    let mut c = TrainConfig::for_arch(&ArchConfig::Mlp(MlpConfig::default()), steps);
    c.batch = batch;
    c.seed = seed;
    c
}

/// The default mlp trained on moons for `steps` steps of `batch` rows.
fn trained_moons(steps: usize, batch: usize, seed: u64) -> Result<Trainer> {
    let (_, data) = moons()?;
    let mut trainer = Trainer::new(
        ArchConfig::Mlp(MlpConfig::default()),
        mlp_config(steps, batch, seed),
        data,
    )?;
    train(&mut trainer)?;
    Ok(trainer)
}

fn train(trainer: &mut Trainer) -> Result<Vec<f64>> {
    let mut losses = Vec::new();
    let outcome = trainer.run(&TrainControl::default(), &mut |p| losses.push(p.loss))?;
    assert_eq!(outcome, Outcome::Finished);
    Ok(losses)
}

/// The default mlp on moons and the unet on the digits.
fn both_networks() -> Result<[(ArchConfig, Arc<TrainingSet>); 2]> {
    let (_, moons) = moons()?;
    let digits = Arc::new(TrainingSet::from_dataset(&digits::load()?)?);
    let image = digits
        .image
        .ok_or_else(|| Error::Data("digits are images".into()))?;
    Ok([
        (ArchConfig::Mlp(MlpConfig::default()), moons),
        (ArchConfig::Unet(UnetConfig::for_image(image)), digits),
    ])
}

fn batch_of(set: &DataSet) -> Result<Batch> {
    Batch::from_vec(set.n, set.dim, set.values.clone())
}

#[test]
fn initial_weighted_loss_is_about_one_at_every_sigma() -> Result<()> {
    let _turn = one_at_a_time();
    // EDM fig. 5a: with the output layer at zero, lambda ||D - y||^2 / dim = 1 in expectation at
    // every sigma (precond.rs derives it), for the dropped-noise rows too (E||n||^2 / dim).
    for ((arch, data), rows) in both_networks()?.into_iter().zip([16_384, 2048]) {
        let name = arch.name();
        let config = TrainConfig::for_arch(&arch, 1);
        let mut trainer = Trainer::new(arch, config, data)?;
        let binned = trainer.evaluate(false, rows, 1)?;
        let mut checked = 0;
        for (k, &n) in binned.counts.iter().enumerate() {
            // Bins with enough rows for a mean within a few percent.
            if n >= 100 {
                let w = binned.weighted[k];
                assert!((0.85..1.15).contains(&w), "{name}: bin {k} ({n} rows) {w}");
                checked += 1;
            }
        }
        assert!(checked >= 6, "{name}: only {checked} bins populated");
        // The first step's loss, over all rows, dropped ones included, is computed before the
        // first update.
        let (loss, _) = trainer.step()?;
        assert!((0.85..1.15).contains(&loss), "{name}: loss {loss}");
    }
    Ok(())
}

#[test]
fn a_short_training_lowers_the_loss_and_samples_like_the_exact_denoiser() -> Result<()> {
    let _turn = one_at_a_time();
    let (source, data) = moons()?;
    let mut trainer = Trainer::new(
        ArchConfig::Mlp(MlpConfig::default()),
        mlp_config(800, 256, 3),
        data.clone(),
    )?;
    let losses = train(&mut trainer)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&losses[..20]), mean(&losses[losses.len() - 100..]));

    let learned = LearnedDenoiser::from_trainer(&trainer)?;
    let exact = AnalyticModel::new(
        &source,
        &Compute::cpu(),
        Precision::F32,
        SigmaPrior::edm_training(),
    )?;
    let Source::Empirical(set) = &source else {
        return Err(Error::Data("moons is a finite set".into()));
    };
    let data_rows = batch_of(set)?;
    let cond = Cond::plain();
    let w2 = |d: &dyn Denoiser| -> Result<f64> {
        sliced_w2(&sample_heun(d, &cond, 1000, 18, 11)?, &data_rows, 128, 5)
    };
    let (w2_learned, w2_exact) = (w2(&learned)?, w2(&exact)?);
    // The exact denoiser returns training points, so its W2 is the floor set by drawing 1000 of
    // 2000 points (~0.03); the moons span ~3 with a 0.075 noise band, and a model that only got
    // the two arcs roughly right sits several times above the floor. Pure N(0, sd^2) noise is
    // ~0.4 away: the bound separates a learned shape from a blob.
    let blob = initial_noise(99, 1000, 2).scale(data.sigma_data);
    let w2_blob = sliced_w2(&blob, &data_rows, 128, 5)?;
    eprintln!(
        "loss {first:.3} -> {last:.3}; sliced W2: learned {w2_learned:.4}, exact {w2_exact:.4}, \
         blob {w2_blob:.4}"
    );
    // EDM's weighted loss has a floor well above 0 (the irreducible mmse at low sigma).
    assert!(last < 0.8 * first, "loss {first} -> {last}");
    assert!(
        w2_learned < 4.0 * w2_exact,
        "{w2_learned} vs exact {w2_exact}"
    );
    assert!(
        w2_blob > 4.0 * w2_exact,
        "the bound must exclude a blob: {w2_blob}"
    );
    Ok(())
}

#[test]
fn the_same_seed_gives_the_same_loss_curve_and_a_resume_continues_it() -> Result<()> {
    let _turn = one_at_a_time();
    let (_, data) = moons()?;
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let arch = ArchConfig::Mlp(MlpConfig::default());
    let run = |steps: usize, seed: u64| -> Result<(Trainer, Vec<f64>)> {
        let mut t = Trainer::new(arch.clone(), mlp_config(steps, 64, seed), data.clone())?;
        let l = train(&mut t)?;
        Ok((t, l))
    };
    let (whole, a) = run(30, 7)?;
    let (_, b) = run(30, 7)?;
    let (_, c) = run(30, 8)?;
    assert_eq!(a, b);
    assert_ne!(a, c);
    // 15 steps, saved with the optimiser state, resumed to 30: the same curve and weights.
    let (half, first) = run(15, 7)?;
    let path = dir.path().join("half.safetensors");
    checkpoint::save(&path, &half, &DataSpec::default(), true)?;
    let saved = Checkpoint::load(&path)?;
    let mut resumed = Trainer::resume(saved.resume_state(), mlp_config(30, 64, 7), data.clone())?;
    let rest = train(&mut resumed)?;
    assert_eq!([first, rest].concat(), a);
    let x = initial_noise(3, 50, 2);
    let d = |t: &Trainer| LearnedDenoiser::from_trainer(t)?.denoise(&x, 0.7, &Cond::plain());
    assert_eq!(d(&resumed)?, d(&whole)?);
    Ok(())
}

#[test]
fn save_then_load_reproduces_d_bit_for_bit() -> Result<()> {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    for ((arch, data), batch) in both_networks()?.into_iter().zip([64, 16]) {
        let mut config = TrainConfig::for_arch(&arch, 6);
        config.batch = batch;
        let mut trainer = Trainer::new(arch, config, data.clone())?;
        train(&mut trainer)?;
        let path = dir.path().join("m.safetensors");
        checkpoint::save(&path, &trainer, &DataSpec::Digits, false)?;
        let loaded = LearnedDenoiser::from_checkpoint(&path)?;
        let live = LearnedDenoiser::from_trainer(&trainer)?;
        let x = initial_noise(5, 40, data.dim).scale(1.3);
        let classes = Some((0..40).map(|r| r % data.classes.max(1) as u32).collect());
        for cond in [Cond::plain(), Cond::with_class(classes).without_noise()] {
            for sigma in [0.002, 0.5, 80.0] {
                assert_eq!(
                    loaded.denoise(&x, sigma, &cond)?,
                    live.denoise(&x, sigma, &cond)?
                );
            }
        }
        let sidecar = loaded
            .sidecar
            .as_ref()
            .ok_or_else(|| Error::Data("sidecar".into()))?;
        assert_eq!(sidecar.steps_done, 6);
        assert_eq!(sidecar.data.fingerprint, data.fingerprint);
        assert_eq!(sidecar.model.precond.sigma_data, data.sigma_data);
    }
    Ok(())
}

#[test]
fn guidance_at_its_neutral_weights_and_the_dropped_conditions() -> Result<()> {
    let _turn = one_at_a_time();
    let trainer = trained_moons(40, 128, 1)?;
    let base: Arc<dyn Denoiser> = Arc::new(LearnedDenoiser::from_trainer(&trainer)?);
    let x = initial_noise(4, 30, 2).scale(0.8);
    let cond = Cond::with_class(Some((0..30).map(|r| r % 2).collect()));
    for sigma in [0.01, 0.6, 12.0] {
        let conditional = base.denoise(&x, sigma, &cond)?;
        let unconditional = base.denoise(&x, sigma, &Cond::plain())?;
        // The null class is a different input: the dropped class changes D.
        assert_ne!(conditional, unconditional);
        assert_eq!(
            Cfg::new(base.clone(), 1.0).denoise(&x, sigma, &cond)?,
            conditional
        );
        assert_eq!(
            Cfg::new(base.clone(), 0.0).denoise(&x, sigma, &cond)?,
            unconditional
        );
        let cfg3 = Cfg::new(base.clone(), 3.0).denoise(&x, sigma, &cond)?;
        let by_hand = Batch::lin_comb(3.0, &conditional, -2.0, &unconditional);
        assert!(max_gap(&cfg3, &by_hand) < 1e-12);
        // NAG: w = 0 is the plain model; w = 1 is 2 D - D_none, D_none = x + sigma F(null).
        assert_eq!(
            Nag::new(base.clone(), 0.0).denoise(&x, sigma, &cond)?,
            conditional
        );
        let dropped = base.denoise(&x, sigma, &cond.without_noise())?;
        assert_ne!(dropped, conditional);
        let nag1 = Nag::new(base.clone(), 1.0).denoise(&x, sigma, &cond)?;
        assert!(max_gap(&nag1, &Batch::lin_comb(2.0, &conditional, -1.0, &dropped)) < 1e-12);
        // The dropped branch is x + sigma F: it tends to x as sigma -> 0.
        if sigma == 0.01 {
            assert!(max_gap(&dropped, &x) < 0.01 * 5.0);
        }
    }
    assert!(
        base.denoise(&x, 1.0, &Cond::with_class(Some(vec![2; 30])))
            .is_err()
    );
    assert!(base.denoise(&x, 0.0, &Cond::plain()).is_err());
    Ok(())
}

fn max_gap(a: &Batch, b: &Batch) -> f64 {
    a.data
        .iter()
        .zip(&b.data)
        .map(|(u, v)| (u - v).abs())
        .fold(0.0, f64::max)
}

#[test]
fn pause_resume_and_cancel_between_steps() -> Result<()> {
    let _turn = one_at_a_time();
    let (_, data) = moons()?;
    let control = TrainControl::new();
    let done = Arc::new(AtomicUsize::new(0));
    // Cancel from the callback: the run stops after that step, intact.
    let mut trainer = Trainer::new(
        ArchConfig::Mlp(MlpConfig::default()),
        mlp_config(50, 32, 0),
        data.clone(),
    )?;
    let outcome = trainer.run(&control, &mut |p| {
        if p.step == 3 {
            control.cancel();
        }
    })?;
    assert_eq!((outcome, trainer.steps_done()), (Outcome::Cancelled, 3));
    // Pause at step 2 from the callback; another thread sees no progress, then resumes.
    let control = TrainControl::new();
    let watcher = {
        let (control, done) = (control.clone(), done.clone());
        std::thread::Builder::new()
            .name("test-resumer".into())
            .spawn(move || {
                while control.state() != ControlState::Paused {
                    std::thread::yield_now();
                }
                let at_pause = done.load(Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(100));
                let later = done.load(Ordering::SeqCst);
                control.resume();
                (at_pause, later)
            })
            .map_err(|e| Error::io("thread", e))?
    };
    let mut trainer = Trainer::new(
        ArchConfig::Mlp(MlpConfig::default()),
        mlp_config(6, 32, 0),
        data,
    )?;
    let outcome = trainer.run(&control, &mut |p| {
        done.store(p.step, Ordering::SeqCst);
        if p.step == 2 {
            control.pause();
        }
    })?;
    let (at_pause, later) = watcher
        .join()
        .map_err(|_| Error::Train("watcher panicked".into()))?;
    assert_eq!((at_pause, later), (2, 2));
    assert_eq!((outcome, trainer.steps_done()), (Outcome::Finished, 6));
    Ok(())
}

fn expect_checkpoint_error(path: &Path, needle: &str) {
    match LearnedDenoiser::from_checkpoint(path) {
        Ok(_) => panic!(
            "{} loaded, expected an error about '{needle}'",
            path.display()
        ),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "'{msg}' does not mention '{needle}'");
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
    }
}

#[test]
fn bad_checkpoints_give_one_clear_error() -> Result<()> {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let trainer = trained_moons(2, 16, 0)?;
    let good = dir.path().join("good.safetensors");
    checkpoint::save(&good, &trainer, &DataSpec::default(), false)?;
    assert!(LearnedDenoiser::from_checkpoint(&good).is_ok());
    let weights = std::fs::read(&good).map_err(|e| Error::io(&good, e))?;
    let sidecar = std::fs::read_to_string(dir.path().join("good.json"))
        .map_err(|e| Error::io("good.json", e))?;
    let write = |name: &str, w: &[u8], s: Option<&str>| -> Result<std::path::PathBuf> {
        let p = dir.path().join(format!("{name}.safetensors"));
        std::fs::write(&p, w).map_err(|e| Error::io(&p, e))?;
        if let Some(s) = s {
            std::fs::write(p.with_extension("json"), s).map_err(|e| Error::io(&p, e))?;
        }
        Ok(p)
    };
    expect_checkpoint_error(&dir.path().join("absent.safetensors"), "absent.safetensors");
    expect_checkpoint_error(&dir.path().join("good.bin"), ".safetensors");
    expect_checkpoint_error(&write("lonely", &weights, None)?, "sidecar");
    expect_checkpoint_error(&write("garbled", &weights, Some("{ not json"))?, "sidecar");
    let other_format = sidecar.replace("noisescope-checkpoint", "something-else");
    expect_checkpoint_error(&write("format", &weights, Some(&other_format))?, "format");
    expect_checkpoint_error(
        &write("truncated", &weights[..weights.len() / 2], Some(&sidecar))?,
        "do not match their sidecar",
    );
    // Garbage whose fingerprint the sidecar carries: the safetensors reader rejects it.
    let edit = |change: &dyn Fn(&mut serde_json::Value)| -> String {
        let mut v: serde_json::Value = serde_json::from_str(&sidecar).unwrap_or_default();
        change(&mut v);
        v.to_string()
    };
    let garbage = vec![0xabu8; 300];
    let mut fnv = noisescope::train::data::Fnv::default();
    fnv.write(&garbage);
    let forged = edit(&|v| v["weights"]["fingerprint"] = fnv.hex().into());
    expect_checkpoint_error(&write("garbage", &garbage, Some(&forged))?, "safetensors");
    // A sidecar that describes another network: the weights do not fit it.
    let narrower = edit(&|v| v["model"]["arch"]["hidden"] = 128.into());
    expect_checkpoint_error(&write("narrow", &weights, Some(&narrower))?, "do not fit");
    // A version-1 sidecar (fixed dropped-branch scale, other fields): refused by its version.
    let old = edit(&|v| {
        v["version"] = 1.into();
        v["model"]["precond"]["sigma_rms"] = 1.27.into();
        if let Some(t) = v["training"].as_object_mut() {
            t.remove("noise_dropped_sigma");
        }
    });
    expect_checkpoint_error(&write("old", &weights, Some(&old))?, "version 1");
    Ok(())
}

#[test]
fn the_unet_trains_and_samples_on_a_folder_of_rgb_images() -> Result<()> {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    for i in 0..12u8 {
        let img = image::RgbImage::from_fn(16, 16, |x, y| {
            let on = (x as u8 + i) % 4 < 2;
            image::Rgb([if on { 220 } else { 20 }, y as u8 * 12, i * 20])
        });
        let p = dir.path().join(format!("{i}.png"));
        img.save(&p)
            .map_err(|e| Error::Data(format!("{}: {e}", p.display())))?;
    }
    let set = noisescope::data::folder::load(dir.path(), 16, true)?;
    let data = Arc::new(TrainingSet::from_dataset(&set)?);
    let image = data
        .image
        .ok_or_else(|| Error::Data("an image set".into()))?;
    let arch = ArchConfig::Unet(UnetConfig::for_image(image));
    let mut config = TrainConfig::for_arch(&arch, 12);
    config.batch = 16;
    config.optimizer.warmup_steps = 1;
    let mut trainer = Trainer::new(arch, config, data.clone())?;
    let losses = train(&mut trainer)?;
    assert!(losses.iter().all(|l| l.is_finite()));
    let path = dir.path().join("unet.safetensors");
    checkpoint::save(
        &path,
        &trainer,
        &DataSpec::Images {
            dir: dir.path().to_path_buf(),
            size: 16,
            rgb: true,
        },
        false,
    )?;
    let model = LearnedDenoiser::from_checkpoint(&path)?;
    assert_eq!(model.dim(), 16 * 16 * 3);
    let x = sample_heun(&model, &Cond::plain(), 3, 4, 2)?;
    assert!(x.is_finite() && x.rows == 3);
    Ok(())
}

#[test]
fn a_checkpoint_for_other_data_is_refused() -> Result<()> {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let trainer = trained_moons(2, 16, 0)?;
    let path = dir.path().join("moons.safetensors");
    let moons_spec = DataSpec::Toy {
        name: "moons".into(),
        points: 2000,
    };
    checkpoint::save(&path, &trainer, &moons_spec, false)?;
    let model = LearnedDenoiser::from_checkpoint(&path)?;
    // The same toy with another point count is the same distribution.
    let more = DataSpec::Toy {
        name: "moons".into(),
        points: 3000,
    };
    model.check_data(&more, &more.load()?)?;
    let rings = DataSpec::Toy {
        name: "rings".into(),
        points: 2000,
    };
    let message = |spec: &DataSpec| -> Result<String> {
        Ok(match model.check_data(spec, &spec.load()?) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        })
    };
    // Rings have 3 classes, moons 2; unlabelled 2-D data has the dimension but not the data.
    assert!(message(&rings)?.contains("classes"), "{}", message(&rings)?);
    assert!(message(&DataSpec::Digits)?.contains("64-dimensional"));
    let npy = dir.path().join("points.npy");
    let Source::Empirical(set) = moons_spec.load()? else {
        return Err(Error::Data("moons is a finite set".into()));
    };
    noisescope::data::npy::write(&npy, &[set.n, 2], &set.values, true)?;
    let labels = dir.path().join("labels.npy");
    let l: Vec<f64> = set.labels.iter().flatten().map(|&c| c as f64).collect();
    noisescope::data::npy::write(&labels, &[set.n], &l, true)?;
    let same_points = DataSpec::Npy {
        path: npy.clone(),
        labels: Some(labels.clone()),
    };
    // The same rows from a file are another data spec but the same data: accepted.
    model.check_data(&same_points, &same_points.load()?)?;
    let mut shifted = set.values.clone();
    shifted[0] += 0.5;
    noisescope::data::npy::write(&npy, &[set.n, 2], &shifted, true)?;
    let other = message(&same_points)?;
    assert!(other.contains("trained on toy:moons"), "{other}");
    Ok(())
}

#[test]
fn the_bundled_models_load_fit_their_data_and_sample_well() -> Result<()> {
    let _turn = one_at_a_time();
    for (name, spec) in [
        (
            "moons",
            DataSpec::Toy {
                name: "moons".into(),
                points: 4096,
            },
        ),
        ("digits", DataSpec::Digits),
    ] {
        let model = LearnedDenoiser::bundled(name)?;
        let source = spec.load()?;
        model.check_data(&spec, &source)?;
        let q = sample_quality(&model, &source, 500, 3)?;
        let exact = AnalyticModel::new(
            &source,
            &Compute::cpu(),
            Precision::F32,
            SigmaPrior::edm_training(),
        )?;
        let floor = sample_quality(&exact, &source, 500, 3)?;
        let accuracy = q.class_accuracy.unwrap_or(0.0);
        eprintln!("{name}: learned {q:?}\nexact {floor:?}");
        // The exact denoiser returns training points: its W2 is the floor of 500 samples
        // against the set. The learned moons must come within 1.5x of it (its target) and name
        // the intended moon; the digits must reach issue 9's 80% class accuracy at CFG 1.
        match name {
            "moons" => assert!(
                q.sliced_w2 < 1.5 * floor.sliced_w2 && accuracy > 0.95,
                "{q:?} vs {floor:?}"
            ),
            _ => assert!(accuracy >= 0.8, "{q:?}"),
        }
    }
    let other = LearnedDenoiser::bundled("moons")?;
    assert!(
        other
            .check_data(&DataSpec::Digits, &DataSpec::Digits.load()?)
            .is_err()
    );
    assert!(LearnedDenoiser::bundled("cifar").is_err());
    Ok(())
}

#[test]
fn a_learned_run_takes_every_sampler_guidance_and_the_exact_diagnostics() -> Result<()> {
    use noisescope::backend::BackendChoice;
    use noisescope::core::sampler::SamplerKind;
    use noisescope::run::spec::{ClassSpec, DenoiserSpec};
    use noisescope::run::{ModelHandle, RunSpec, Session};

    let _turn = one_at_a_time();
    let base = RunSpec {
        data: DataSpec::Toy {
            name: "moons".into(),
            points: 4096,
        },
        denoiser: DenoiserSpec::Bundled("moons".into()),
        backend: BackendChoice::Cpu,
        batch: 64,
        ..Default::default()
    };
    let handle = Arc::new(ModelHandle::load(&base, &mut Vec::new())?);
    for sampler in [
        SamplerKind::Euler,
        SamplerKind::Heun,
        SamplerKind::Edm,
        SamplerKind::EulerAncestral,
        SamplerKind::DpmPp2m,
    ] {
        for (cfg, nag, adaptive) in [(1.0, 0.0, false), (2.0, 0.0, false), (1.0, 2.0, true)] {
            let mut spec = base.clone();
            spec.sampler = sampler;
            spec.schedule.steps = 8;
            spec.stochasticity.churn = 10.0;
            spec.guidance.cfg = cfg;
            spec.guidance.nag = nag;
            spec.guidance.class = Some(ClassSpec::All(1));
            spec.adaptive = adaptive;
            let session = Session::new(&spec, handle.clone())?;
            let result = session.run(&mut |_, _| std::ops::ControlFlow::Continue(()))?;
            let what = format!("{sampler} cfg {cfg} nag {nag}");
            assert!(result.output.x.is_finite(), "{what}");
            // The noise-level diagnostics come from the exact posterior of the data.
            assert!(!result.records.is_empty(), "{what}");
            assert!(
                result
                    .records
                    .iter()
                    .all(|r| r.sigma_hat.median.is_finite()),
                "{what}"
            );
        }
    }
    Ok(())
}
