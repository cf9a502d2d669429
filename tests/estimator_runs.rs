//! The learned noise-level estimator in runs (issue 11): the conv estimator on the digits as
//! images, a run's learned diagnostics column against the estimator itself, and the run's
//! estimator driving classifier-based NAG and the adaptive schedule. A file of its own: training
//! in parallel with tests/estimator.rs would change that file's measured errors (parallel
//! reductions under contention) near their bounds.

mod ui_support;

use std::ops::ControlFlow;
use std::sync::Arc;

use noisescope::Result;
use noisescope::core::denoiser::Cond;
use noisescope::core::estimate::NoiseLevelEstimator;
use noisescope::core::guidance::NagForm;
use noisescope::core::quantile;
use noisescope::data::digits;
use noisescope::models::estimator::LearnedNoiseEstimator;
use noisescope::train::data::TrainingSet;
use noisescope::train::estimator::{EstimatorArch, EstimatorConfig, EstimatorTraining, train};

use ui_support::noisy;

/// The conv estimator on the digits as 8x8 images (800 steps): at mid sigma its median
/// |ln sigma_hat - ln sigma| against the trivial predictor's, the log RMS
/// l(x) = ln sqrt(sd^2 + |x|^2 / D) the network starts from (its head is zero-initialised), which
/// reads ln sigma only once the noise dominates: E|x|^2 / D = m2 + sigma^2 (m2 = sd^2, the
/// data's mean square) makes it biased by ln(2 sd^2 + sigma^2) / 2 - ln sigma, 0.2 to 1.1 for
/// sigma from 2 sd down to sd / 2. The floor is the sample's own: 64 pixels fix ln sigma to
/// ~1/sqrt(128), a median of 0.06 (the mlp's, README), already 0.3 of the trivial 0.2 at 2 sd.
/// Held to a third of the trivial error at sd / 2 and sd, half of it at 2 sd (measured, 800
/// steps of 64, 8 channels: 0.165 / 0.084 / 0.064 against 1.10 / 0.54 / 0.20): a conv body
/// that learned to tell noise from digit strokes clears them, one that did not (a broken conv
/// path, no training: the log RMS itself) clears none.
#[test]
fn the_conv_estimator_reads_sigma_of_digit_images_far_better_than_the_log_rms() -> Result<()> {
    let data = digits::load()?;
    let set = TrainingSet::from_dataset(&data)?;
    let image = set.image.expect("the digits are 8x8 images");
    assert_eq!((image.width, image.height, image.channels), (8, 8, 1));
    let mut config = EstimatorConfig::mlp(set.dim, set.sigma_data, 0.05, 20.0);
    config.arch = EstimatorArch::Conv {
        channels: 8,
        hidden: 64,
    };
    config.image = Some(image);
    let training = EstimatorTraining {
        steps: 800,
        batch: 64,
        lr: 3e-3,
        ..Default::default()
    };
    let t = train(&config, &set, &training, &mut |_, _| {
        ControlFlow::Continue(())
    })?;
    let estimator = LearnedNoiseEstimator::new(t.net, None);
    let sd = set.sigma_data;
    let mut results = Vec::new();
    for (k, sigma) in [0.5 * sd, sd, 2.0 * sd].into_iter().enumerate() {
        let x = noisy(&data, sigma, 256, 300 + k as u64)?;
        let learned: Vec<f64> = estimator
            .estimate(&x, &Cond::plain())?
            .iter()
            .map(|e| (e.mean_ln - sigma.ln()).abs())
            .collect();
        let trivial: Vec<f64> = (0..x.rows)
            .map(|r| {
                let ms = x.row(r).iter().map(|v| v * v).sum::<f64>() / x.dim as f64;
                (0.5 * (sd * sd + ms).ln() - sigma.ln()).abs()
            })
            .collect();
        let (learned, trivial) = (quantile(&learned, 0.5), quantile(&trivial, 0.5));
        println!("sigma {sigma:.3}: conv {learned:.3}, log RMS {trivial:.3}");
        results.push((sigma, learned, trivial));
    }
    for ((sigma, learned, trivial), share) in results.into_iter().zip([3.0, 3.0, 2.0]) {
        assert!(
            learned <= trivial / share,
            "sigma {sigma}: conv {learned} vs log RMS {trivial}"
        );
    }
    Ok(())
}

/// The diagnostics' learned column of a run is the estimator called directly on the states the
/// run went through (the same diagnostics subset), and adding the estimator leaves the exact
/// columns and the samples as they were.
#[test]
fn a_runs_learned_column_is_the_estimator_on_its_states() -> Result<()> {
    use noisescope::backend::BackendChoice;
    use noisescope::core::diagnostics::StepRecord;
    use noisescope::core::estimate::Spread;
    use noisescope::core::noise::choose_subset;
    use noisescope::core::sampler::SamplerKind;
    use noisescope::data::DataSpec;
    use noisescope::run::spec::DiagnosticsSpec;
    use noisescope::run::{ModelHandle, RunSpec, Session};

    let dir = tempfile::tempdir().map_err(|e| noisescope::Error::io("tempdir", e))?;
    let digits_source = noisescope::data::Source::Empirical(digits::load()?);
    let path = ui_support::estimator_checkpoint(&digits_source, "g-digits", 150, dir.path())?;
    let without = RunSpec {
        data: DataSpec::Digits,
        backend: BackendChoice::Cpu,
        // Euler's records come one step late: the column must follow its step.
        sampler: SamplerKind::Euler,
        batch: 40,
        diagnostics: DiagnosticsSpec {
            enabled: true,
            subset: 24,
        },
        ..Default::default()
    };
    let mut spec = without.clone();
    spec.schedule.steps = 6;
    spec.estimator = Some(path.clone());
    let handle = Arc::new(ModelHandle::load(&spec, &mut Vec::new())?);
    let mut states = Vec::new();
    let result = Session::new(&spec, handle.clone())?.run(&mut |info, _| {
        states.push((info.step, info.x.clone()));
        ControlFlow::Continue(())
    })?;
    let g = LearnedNoiseEstimator::from_checkpoint(&path)?;
    let subset = choose_subset(spec.seed, spec.batch, spec.diagnostics.subset);
    assert_eq!(result.records.len(), 6);
    for record in &result.records {
        let (_, x) = states
            .iter()
            .find(|(step, _)| *step == record.step)
            .expect("every record's state was seen");
        let hats: Vec<f64> = g
            .estimate(&x.select_rows(&subset), &Cond::plain())?
            .iter()
            .map(|e| e.sigma_hat())
            .collect();
        assert_eq!(
            record.learned_sigma_hat,
            Spread::of(&hats),
            "step {}",
            record.step
        );
        assert!(record.learned_sigma_hat.median > 0.0);
        // diagnostics.csv carries it, by name.
        let header: Vec<&str> = StepRecord::CSV_HEADER.split(',').collect();
        let row = record.csv_row();
        let values: Vec<&str> = row.split(',').collect();
        assert_eq!(header.len(), values.len());
        let column = header
            .iter()
            .position(|h| *h == "learned_sigma_hat_median")
            .expect("the column");
        assert_eq!(
            values[column].parse::<f64>().ok(),
            Some(record.learned_sigma_hat.median)
        );
    }
    let mut plain_spec = without;
    plain_spec.schedule.steps = 6;
    let plain = Session::new(&plain_spec, handle)?.run(&mut |_, _| ControlFlow::Continue(()))?;
    assert_eq!(plain.output.x, result.output.x);
    for (a, b) in plain.records.iter().zip(&result.records) {
        assert_eq!(a.sigma_hat, b.sigma_hat);
        assert!(a.learned_sigma_hat.median.is_nan());
    }
    Ok(())
}

/// The run's estimator drives classifier-based NAG and the adaptive schedule; without one, or
/// with one for other data, the spec is one clear error.
#[test]
fn the_runs_estimator_drives_classifier_nag_and_the_adaptive_schedule() -> Result<()> {
    use noisescope::backend::BackendChoice;
    use noisescope::data::{DataSpec, toys};
    use noisescope::run::spec::AdaptiveEstimator;
    use noisescope::run::{ModelHandle, RunSpec, Session};

    let dir = tempfile::tempdir().map_err(|e| noisescope::Error::io("tempdir", e))?;
    let digits_source = noisescope::data::Source::Empirical(digits::load()?);
    let path = ui_support::estimator_checkpoint(&digits_source, "g-digits", 150, dir.path())?;
    let mut spec = RunSpec {
        data: DataSpec::Digits,
        backend: BackendChoice::Cpu,
        batch: 32,
        estimator: Some(path.clone()),
        adaptive: true,
        adaptive_estimator: AdaptiveEstimator::Learned,
        ..Default::default()
    };
    spec.schedule.steps = 8;
    spec.guidance.nag = 2.0;
    spec.guidance.nag_form = NagForm::ClassifierBased;
    let handle = Arc::new(ModelHandle::load(&spec, &mut Vec::new())?);
    let session = Session::new(&spec, handle.clone())?;
    let planned = session.sigmas.clone();
    let result = session.run(&mut |_, _| ControlFlow::Continue(()))?;
    assert!(result.output.x.is_finite());
    // Re-planned from the learned sigma_hat: not the planned grid.
    assert_ne!(result.output.sigmas, planned);
    // The classifier-based form is the estimator's gradient: w = 2 moves the samples off w = 0's.
    let mut unguided = spec.clone();
    unguided.guidance.nag = 0.0;
    let plain =
        Session::new(&unguided, handle.clone())?.run(&mut |_, _| ControlFlow::Continue(()))?;
    assert_ne!(plain.output.x, result.output.x);

    let message = |spec: &RunSpec| match Session::new(spec, handle.clone()) {
        Ok(_) => panic!("{spec:?} ran"),
        Err(e) => e.to_string(),
    };
    let mut no_estimator = spec.clone();
    no_estimator.estimator = None;
    assert!(message(&no_estimator).contains("--estimator"));
    no_estimator.adaptive_estimator = AdaptiveEstimator::Exact;
    let e = message(&no_estimator);
    assert!(
        e.contains("classifier-based") && e.contains("--estimator"),
        "{e}"
    );
    let moons =
        ui_support::estimator_checkpoint(&toys::load("moons", 512)?, "g-moons", 5, dir.path())?;
    let mut other_data = spec.clone();
    other_data.estimator = Some(moons);
    let e = message(&other_data);
    assert!(
        e.contains("the noise-level estimator")
            && e.contains("2-dimensional")
            && e.contains("64-dimensional"),
        "{e}"
    );
    Ok(())
}
