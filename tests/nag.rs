//! NAG's forms (issue 11, science.md section 4) and the pooled noise level (section 5): the
//! posterior-average form against a brute-force quadrature and its bound, w = 0 as a no-op in
//! every form, the default form on every built-in scene at the paper's weights, the learned
//! noise-dropped direction against its exact counterpart, and the pooled sigma_hat.

mod ui_support;

use std::ops::ControlFlow;
use std::sync::Arc;

use noisescope::Result;
use noisescope::backend::{BackendChoice, Compute};
use noisescope::core::denoiser::{Cond, Denoiser};
use noisescope::core::estimate::{PosteriorEstimator, SigmaPrior};
use noisescope::core::guidance::{Nag, NagForm, NagStep};
use noisescope::core::noise::initial_noise;
use noisescope::core::sampler::SamplerKind;
use noisescope::core::{Batch, Precision, dot, norm, quantile};
use noisescope::data::gaussian::GaussianModel;
use noisescope::data::{DataSpec, Source, toys};
use noisescope::models::learned::LearnedDenoiser;
use noisescope::models::{AnalyticModel, ExactNag};
use noisescope::run::spec::DenoiserSpec;
use noisescope::run::{ModelHandle, RunSpec, Session};

fn model(source: &Source, precision: Precision) -> Result<Arc<AnalyticModel>> {
    Ok(Arc::new(AnalyticModel::new(
        source,
        &Compute::cpu(),
        precision,
        SigmaPrior::edm_training(),
    )?))
}

/// Brute-force D(x; none) = x - s sum_t p(t | x) (x - D(x; t)) / t, ln t uniform over
/// [ln 0.002, ln 80] on a very fine grid, for 1-D data given by (means, weights, variances) of a
/// Gaussian mixture (variance 0: a Dirac).
fn brute_posterior_average(x: f64, sigma: f64, comps: &[(f64, f64, f64)]) -> f64 {
    let (a, b) = (0.002f64.ln(), 80f64.ln());
    let n = 200_000;
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..=n {
        let t = (a + (b - a) * i as f64 / n as f64).exp();
        for &(mu, w, var) in comps {
            let v = var + t * t;
            let p =
                w * (-(x - mu).powi(2) / (2.0 * v)).exp() / (2.0 * std::f64::consts::PI * v).sqrt();
            // x - D_c(x; t) = (x - mu) t^2 / v.
            num += p * (x - mu) * t / v;
            den += p;
        }
    }
    x - sigma * num / den
}

#[test]
fn the_posterior_average_form_is_exact_for_diracs_and_gaussians() -> Result<()> {
    let diracs = model(&toys::load("two-diracs", 2)?, Precision::F64)?;
    let gauss = model(
        &Source::Gaussian(GaussianModel::new(vec![0.3], vec![0.5], None)?),
        Precision::F64,
    )?;
    let none = Cond::plain().without_noise();
    for (x, sigma) in [(0.2, 0.1), (-1.7, 0.7), (3.0, 4.0), (0.999, 30.0)] {
        let xb = Batch::from_vec(1, 1, vec![x])?;
        for (m, comps, what) in [
            (&diracs, vec![(-1.0, 0.5, 0.0), (1.0, 0.5, 0.0)], "diracs"),
            (&gauss, vec![(0.3, 1.0, 0.5)], "gaussian"),
        ] {
            let got = m
                .noise_dropped(&xb, sigma, &none, NagForm::PosteriorAverage)?
                .data[0];
            let expect = brute_posterior_average(x, sigma, &comps);
            // Compared as E[n | x] = (x - D_none) / sigma. x = 0.999 is cleaner than the prior's
            // lower edge: the posterior piles against it as e^(-2u), where Simpson's rule at
            // h = 0.25 errs by (2h)^4 / 180 ~ 3e-4.
            let (got, expect) = ((x - got) / sigma, (x - expect) / sigma);
            assert!(
                (got - expect).abs() < 1e-3 * (1.0 + expect.abs()),
                "{what} x {x} sigma {sigma}: {got} vs {expect}"
            );
        }
    }
    Ok(())
}

/// States far cleaner than scheduled (a small offset eps from a data point, sigma up to 80): the
/// posterior average moves x by sigma |E[n | x]|, and |E[n | x]| is about sqrt(D) there (the
/// posterior sits at t ~ eps / sqrt(D), where |x - y| / t ~ sqrt(D)), so 3 sqrt(D) sigma bounds
/// it with room; the exact score carries (sigma / t)^2 and exceeds it by orders of magnitude.
#[test]
fn the_posterior_average_form_is_bounded_where_the_exact_score_is_not() -> Result<()> {
    let source = toys::load("moons", 4096)?;
    let Source::Empirical(set) = &source else {
        panic!("moons is a finite set");
    };
    let m = model(&source, Precision::F64)?;
    let none = Cond::plain().without_noise();
    let mut worst_score = 0.0f64;
    for eps in [1e-3, 1e-2, 1e-1] {
        let mut x = Batch::zeros(32, 2);
        for r in 0..32 {
            let y = set.row(r * 97 % set.n);
            let angle = r as f64;
            x.row_mut(r)
                .copy_from_slice(&[y[0] + eps * angle.cos(), y[1] + eps * angle.sin()]);
        }
        for sigma in [0.1, 1.0, 10.0, 80.0] {
            let average = m.noise_dropped(&x, sigma, &none, NagForm::PosteriorAverage)?;
            let score = m.noise_dropped(&x, sigma, &none, NagForm::ExactScore)?;
            for r in 0..32 {
                let moved = |d: &Batch| {
                    norm(
                        &d.row(r)
                            .iter()
                            .zip(x.row(r))
                            .map(|(a, b)| a - b)
                            .collect::<Vec<_>>(),
                    ) / sigma
                };
                let bound = 3.0 * 2f64.sqrt();
                assert!(
                    moved(&average) <= bound,
                    "eps {eps} sigma {sigma} row {r}: |D_none - x| / sigma = {}",
                    moved(&average)
                );
                worst_score = worst_score.max(moved(&score));
            }
        }
    }
    assert!(
        worst_score > 100.0,
        "the exact score moved at most {worst_score} sigma"
    );
    Ok(())
}

/// The final samples of a run with the spec's settings.
fn final_samples(spec: &RunSpec, handle: &Arc<ModelHandle>) -> Result<Batch> {
    let session = Session::new(spec, handle.clone())?;
    Ok(session.run(&mut |_, _| ControlFlow::Continue(()))?.output.x)
}

#[test]
fn nag_at_weight_zero_is_a_no_op_in_every_form() -> Result<()> {
    let toy = DataSpec::Toy {
        name: "moons".into(),
        points: 4096,
    };
    // The classifier-based form's noise-level estimator (briefly trained: any g will do).
    let dir = tempfile::tempdir().map_err(|e| noisescope::Error::io("tempdir", e))?;
    let estimator =
        ui_support::estimator_checkpoint(&toys::load("moons", 512)?, "g-moons", 50, dir.path())?;
    for denoiser in [DenoiserSpec::Exact, DenoiserSpec::Bundled("moons".into())] {
        let base = RunSpec {
            data: toy.clone(),
            denoiser: denoiser.clone(),
            backend: BackendChoice::Cpu,
            batch: 48,
            ..Default::default()
        };
        let mut plain = base.clone();
        plain.schedule.steps = 8;
        plain.diagnostics.enabled = false;
        let handle = Arc::new(ModelHandle::load(&plain, &mut Vec::new())?);
        let reference = final_samples(&plain, &handle)?;
        for &form in <NagForm as clap::ValueEnum>::value_variants() {
            if form == NagForm::Learned && denoiser == DenoiserSpec::Exact {
                continue;
            }
            let mut spec = plain.clone();
            spec.guidance.nag_form = form;
            if form == NagForm::ClassifierBased {
                spec.estimator = Some(estimator.clone());
            }
            assert_eq!(
                final_samples(&spec, &handle)?,
                reference,
                "{form} on {}",
                denoiser.label()
            );
            // And a weight does change the run.
            spec.guidance.nag = 1.0;
            assert_ne!(final_samples(&spec, &handle)?, reference, "{form}");
        }
    }
    // The wrappers themselves: w = 0 returns the guided model's own call.
    let source = toys::load("moons", 512)?;
    let exact = model(&source, Precision::F64)?;
    let x = initial_noise(3, 16, 2).scale(0.7);
    let cond = Cond::plain();
    let plain = exact.denoise(&x, 0.7, &cond)?;
    for form in [NagForm::PosteriorAverage, NagForm::ExactScore] {
        let guide: Arc<dyn Denoiser> = Arc::new(ExactNag::new(exact.clone(), form)?);
        assert_eq!(Nag::new(guide.clone(), 0.0).denoise(&x, 0.7, &cond)?, plain);
        assert_eq!(
            Nag::guided_by(exact.clone(), guide, 0.0).denoise(&x, 0.7, &cond)?,
            plain
        );
    }
    assert!(ExactNag::new(exact, NagForm::Learned).is_err());
    Ok(())
}

#[test]
fn the_learned_form_on_the_exact_denoiser_is_a_clear_error() -> Result<()> {
    let mut spec = RunSpec {
        backend: BackendChoice::Cpu,
        batch: 8,
        ..Default::default()
    };
    spec.guidance.nag = 2.0;
    spec.guidance.nag_form = NagForm::Learned;
    let handle = Arc::new(ModelHandle::load(&spec, &mut Vec::new())?);
    let Err(e) = Session::new(&spec, handle) else {
        panic!("the exact denoiser has no noise-dropped branch");
    };
    assert!(e.to_string().contains("noise-dropped branch"), "{e}");
    Ok(())
}

/// Per coordinate: the data's range, and the margin a final sample may lie beyond it.
fn data_box(source: &Source) -> Vec<(f64, f64)> {
    match source {
        Source::Empirical(set) => (0..set.dim)
            .map(|k| {
                let col = (0..set.n).map(|j| set.row(j)[k]);
                col.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                })
            })
            .collect(),
        // N(0, diag(lambda)): +-5 standard deviations hold all but 6e-7 of it per coordinate.
        Source::Gaussian(g) => g
            .eigenvalues
            .iter()
            .map(|l| (-5.0 * l.sqrt(), 5.0 * l.sqrt()))
            .collect(),
        // Each component's mean +-5 of its largest standard deviation.
        Source::Mixture(m) => (0..m.dim())
            .map(|k| {
                m.components
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| {
                        let spread = 5.0 * c.eigenvalues.iter().copied().fold(0.0, f64::max).sqrt();
                        (lo.min(c.mean[k] - spread), hi.max(c.mean[k] + spread))
                    })
            })
            .collect(),
    }
}

/// The largest (1 + w) r_i over a schedule's steps, r_i = 1 - sigma_(i+1) / sigma_i: NAG drives a
/// state's distance from the data toward the scheduled noise level at (1 + w) times the plain
/// ODE's rate (D_none does not follow the state off the data: sigma E[n | x] ~ sigma sqrt(D)
/// whatever the distance), so one explicit step multiplies an off-schedule error by
/// 1 - (1 + w) r_i (Euler; Heun's factor 1 + z + z^2 / 2 at z = -(1 + w) r_i has the same
/// interval): stable while (1 + w) r_i <= 2.
fn nag_step_stability(spec: &RunSpec) -> Result<f64> {
    let sigmas = spec.schedule.sigmas()?;
    Ok(sigmas
        .windows(2)
        .filter(|s| s[1] > 0.0)
        .map(|s| (1.0 + spec.guidance.nag) * (1.0 - s[1] / s[0]))
        .fold(0.0, f64::max))
}

/// How far beyond the data's range (per coordinate, in widths of its widest coordinate) the rows
/// of `x` lie.
fn widths_out(x: &Batch, handle: &Arc<ModelHandle>) -> f64 {
    let range = data_box(&handle.source);
    let width = range.iter().map(|(lo, hi)| hi - lo).fold(0.0, f64::max);
    let mut excess = 0.0f64;
    for r in 0..x.rows {
        for (v, (lo, hi)) in x.row(r).iter().zip(&range) {
            let out = (lo - v).max(v - hi).max(0.0);
            excess = excess.max(if out.is_nan() { f64::INFINITY } else { out });
        }
    }
    excess / width
}

/// The states entering the last step (at sigma_min) and the final samples of a run.
fn end_states(spec: &RunSpec, handle: &Arc<ModelHandle>) -> Result<(Batch, Batch)> {
    let session = Session::new(spec, handle.clone())?;
    let last = spec.schedule.steps - 1;
    let mut entering = None;
    let out = session.run(&mut |info, _| {
        if info.step == last {
            entering = Some(info.x.clone());
        }
        ControlFlow::Continue(())
    })?;
    let entering = entering
        .ok_or_else(|| noisescope::Error::InvalidSpec("the run had no last step".into()))?;
    Ok((entering, out.output.x))
}

/// Every built-in scene: the toys, a Gaussian spectrum, the digits.
fn built_in_scenes() -> Vec<DataSpec> {
    let mut scenes: Vec<DataSpec> = toys::NAMES
        .iter()
        .map(|name| DataSpec::Toy {
            name: name.to_string(),
            points: 4096,
        })
        .collect();
    scenes.push(DataSpec::Gaussian {
        spectrum: vec![0.01, 0.1, 1.0, 4.0],
    });
    scenes.push(DataSpec::Digits);
    scenes
}

/// Every built-in scene at the paper's weights (w = 2, 3) in the default form and step, at Heun
/// 18 and Euler 8, ends inside the data's range up to MARGIN of its widest coordinate range, and
/// so does the state entering the last step (at sigma_min = 0.002), so the last step cannot hide
/// a divergence (it returns the anchor D(x; sigma_min), inside the data's hull for empirical
/// data). The margin: a state on schedule at sigma_min is sigma_min n off the data, n ~ N(0, I),
/// at most ~5 sigma_min = 0.01 in any of the 64 x 32 coordinates drawn, below 1% of any scene's
/// width (the digits' 2 is the narrowest).
///
/// These schedules have steps with (1 + w) r > 2 (Euler 8: r up to 0.94), where an explicit step
/// multiplies an off-schedule error by 1 - (1 + w) r, |.| > 1: the explicit step (the paper's, at
/// 250 steps) leaves the range there, checked on the default scene and the digits.
#[test]
fn the_default_form_keeps_every_built_in_scene_in_the_data_range() -> Result<()> {
    const MARGIN: f64 = 0.01;
    let mut table = Vec::new();
    for data in built_in_scenes() {
        let base = RunSpec {
            data: data.clone(),
            backend: BackendChoice::Cpu,
            batch: 32,
            ..Default::default()
        };
        let handle = Arc::new(ModelHandle::load(&base, &mut Vec::new())?);
        for (sampler, steps) in [(SamplerKind::Heun, 18), (SamplerKind::Euler, 8)] {
            for w in [2.0, 3.0] {
                let mut spec = base.clone();
                spec.sampler = sampler;
                spec.schedule.steps = steps;
                spec.guidance.nag = w;
                spec.diagnostics.enabled = false;
                assert!(nag_step_stability(&spec)? > 2.0, "past the explicit bound");
                let (entering, last) = end_states(&spec, &handle)?;
                let (entering, last) = (widths_out(&entering, &handle), widths_out(&last, &handle));
                table.push(format!(
                    "{} {sampler} {steps} w {w}: {entering:.2e} / {last:.2e} widths out",
                    data.label()
                ));
                assert!(entering.max(last) <= MARGIN, "{}", table.join("\n"));
                let contrast = data == DataSpec::default() || data == DataSpec::Digits;
                if contrast && sampler == SamplerKind::Euler && w == 3.0 {
                    spec.guidance.nag_step = NagStep::Explicit;
                    // A run whose states overflow stops with a non-finite error: diverged too.
                    let explicit = match end_states(&spec, &handle) {
                        Ok((_, last)) => widths_out(&last, &handle),
                        Err(noisescope::Error::NonFinite(_)) => f64::INFINITY,
                        Err(e) => return Err(e),
                    };
                    table.push(format!(
                        "{} {sampler} {steps} w {w}, explicit step: {explicit:.2e} widths out",
                        data.label()
                    ));
                    assert!(explicit > 1.0, "{}", table.join("\n"));
                }
            }
        }
    }
    println!("{}", table.join("\n"));
    Ok(())
}

/// The README's widths-out table ("NAG: forms and stability"): every built-in scene, exact
/// denoiser, 64 samples, seed 0, at Heun 18 and Euler 8, w = 2 and 3, each step and both analytic
/// forms; widths out of the final samples and of the states entering the last step (a run that
/// overflows counts as inf): `cargo test --test nag nag_widths_table -- --ignored --nocapture`.
/// At this batch too the exponential step keeps both within the margin of the test above.
#[test]
#[ignore = "the README's table, 128 runs; the test above holds the bound in CI"]
fn nag_widths_table() -> Result<()> {
    println!("scene\tsampler\tw\tstep\tform\tentering\tfinal");
    for data in built_in_scenes() {
        let base = RunSpec {
            data: data.clone(),
            backend: BackendChoice::Cpu,
            batch: 64,
            ..Default::default()
        };
        let handle = Arc::new(ModelHandle::load(&base, &mut Vec::new())?);
        for (sampler, steps) in [(SamplerKind::Heun, 18), (SamplerKind::Euler, 8)] {
            for w in [2.0, 3.0] {
                for step in [NagStep::Exponential, NagStep::Explicit] {
                    for form in [NagForm::PosteriorAverage, NagForm::ExactScore] {
                        let mut spec = base.clone();
                        spec.sampler = sampler;
                        spec.schedule.steps = steps;
                        spec.guidance.nag = w;
                        spec.guidance.nag_step = step;
                        spec.guidance.nag_form = form;
                        spec.diagnostics.enabled = false;
                        let (entering, last) = match end_states(&spec, &handle) {
                            Ok((e, l)) => (widths_out(&e, &handle), widths_out(&l, &handle)),
                            Err(noisescope::Error::NonFinite(_)) => (f64::INFINITY, f64::INFINITY),
                            Err(e) => return Err(e),
                        };
                        if step == NagStep::Exponential {
                            assert!(
                                entering.max(last) <= 0.01,
                                "{} {sampler} {steps} w {w} {form}: {entering:.2e} / {last:.2e}",
                                data.label()
                            );
                        }
                        println!(
                            "{}\t{sampler} {steps}\t{w}\t{step}\t{form}\t{entering:.2e}\t{last:.2e}",
                            data.label()
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// The exponential step (NAG's stiff part integrated exactly, Heun's corrector the exponential
/// trapezoid) solves the same guided ODE as the explicit one: where the explicit step is stable
/// (Heun 512), both agree, and the exponential step's error at the state entering the last step
/// falls with the step count at nearly second order.
#[test]
fn the_exponential_step_converges_to_the_guided_odes_solution() -> Result<()> {
    let base = RunSpec {
        data: DataSpec::Gaussian {
            spectrum: vec![0.01, 0.1, 1.0, 4.0],
        },
        backend: BackendChoice::Cpu,
        batch: 16,
        ..Default::default()
    };
    let handle = Arc::new(ModelHandle::load(&base, &mut Vec::new())?);
    let at = |steps: usize, step: NagStep| -> Result<Batch> {
        let mut spec = base.clone();
        spec.schedule.steps = steps;
        spec.guidance.nag = 2.0;
        spec.guidance.nag_step = step;
        spec.diagnostics.enabled = false;
        Ok(end_states(&spec, &handle)?.0)
    };
    let reference = at(512, NagStep::Explicit)?;
    let error = |x: &Batch| {
        x.data
            .iter()
            .zip(&reference.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    };
    let errors: Vec<f64> = [18, 36, 72, 144, 512]
        .iter()
        .map(|&n| Ok(error(&at(n, NagStep::Exponential)?)))
        .collect::<Result<_>>()?;
    println!(
        "max |x - reference| entering the last step, 18 / 36 / 72 / 144 / 512 steps: {errors:.3?}"
    );
    // Measured 0.183, 0.052, 0.014, 0.0037, 0.0004: 3.5-3.8x per doubling (second order is 4x,
    // first 2x); at 512 steps the two steps differ by what the explicit reference still errs.
    assert!(
        errors[..4].windows(2).all(|e| e[1] < e[0] / 3.0),
        "{errors:?}"
    );
    assert!(errors[4] < 1e-3, "{errors:?}");
    Ok(())
}

/// Mean cosine between two direction batches, over the rows where both are non-zero.
fn mean_cosine(a: &Batch, b: &Batch) -> f64 {
    let cos: Vec<f64> = (0..a.rows)
        .filter_map(|r| {
            let (u, v) = (a.row(r), b.row(r));
            let n = norm(u) * norm(v);
            (n > 0.0).then(|| dot(u, v) / n)
        })
        .collect();
    cos.iter().sum::<f64>() / cos.len().max(1) as f64
}

/// The bundled moons-nag model was trained with half its rows noise-dropped (60000 steps, sigma
/// log-uniform over [0.002, 80] on the dropped rows, assets/README.md): its noise-dropped branch
/// estimates E[n | x], whose exact value is the posterior average over that prior. Measured (this
/// test prints it): the guidance direction D - D_none agrees to cosine 0.91 at sigma = 1, 0.97
/// at 3 and 0.94 at 20, E[n | x] to 0.95 / 0.97 / 1.0 there. Below sigma = 1 the direction is
/// short (|D - D_none| 0.04-0.09) and agrees to 0.48 at 0.1 and 0.59 at 0.3: there the exact
/// posterior average resolves the 4096 points one by one, which the network sees as a smooth
/// density; the bundled moons model (10% of 3000 steps dropped) gave 0.41 at 1 and 0.70 at 3.
/// Asserted: the direction >= 0.9 at sigma 1, 3, 20 and >= 0.4 at 0.1, 0.3; E[n | x] >= 0.9 at
/// 1 and 3 and >= 0.99 at 20.
#[test]
fn the_learned_noise_dropped_direction_agrees_with_its_exact_counterpart() -> Result<()> {
    let source = toys::load("moons", 4096)?;
    let Source::Empirical(set) = &source else {
        panic!("moons is a finite set");
    };
    let learned = LearnedDenoiser::bundled("moons-nag")?;
    let exact = ExactNag::new(model(&source, Precision::F64)?, NagForm::PosteriorAverage)?;
    let cond = Cond::plain();
    let none = cond.without_noise();
    let rows = 512;
    let n = initial_noise(21, rows, 2);
    let mut report = Vec::new();
    for (sigma, floor, floor_none) in [
        (0.1, 0.4, -1.0),
        (0.3, 0.4, -1.0),
        (1.0, 0.9, 0.9),
        (3.0, 0.9, 0.9),
        (20.0, 0.9, 0.99),
    ] {
        let mut x = Batch::zeros(rows, 2);
        for r in 0..rows {
            let y = set.row(r * 13 % set.n);
            for k in 0..2 {
                x.row_mut(r)[k] = y[k] + sigma * n.row(r)[k];
            }
        }
        let direction = |m: &dyn Denoiser| -> Result<Batch> {
            Ok(Batch::lin_comb(
                1.0,
                &m.denoise(&x, sigma, &cond)?,
                -1.0,
                &m.denoise(&x, sigma, &none)?,
            ))
        };
        let cos = mean_cosine(&direction(&learned)?, &direction(&exact)?);
        let eps_none = |m: &dyn Denoiser| -> Result<Batch> {
            Ok(Batch::lin_comb(
                1.0,
                &x,
                -1.0,
                &m.denoise(&x, sigma, &none)?,
            ))
        };
        let cos_none = mean_cosine(&eps_none(&learned)?, &eps_none(&exact)?);
        let size = |b: &Batch| (0..b.rows).map(|r| norm(b.row(r))).sum::<f64>() / b.rows as f64;
        println!(
            "sigma {sigma}: cos dir {cos:.3} cos eps_none {cos_none:.3} |dir| learned {:.4} exact {:.4} |x-D_none| learned {:.4} exact {:.4}",
            size(&direction(&learned)?),
            size(&direction(&exact)?),
            size(&eps_none(&learned)?),
            size(&eps_none(&exact)?)
        );
        report.push((sigma, cos, floor, cos_none, floor_none));
    }
    println!("{report:?}");
    for (sigma, cos, floor, cos_none, floor_none) in report.iter() {
        assert!(
            cos >= floor && cos_none >= floor_none,
            "sigma {sigma}: {report:?}"
        );
    }
    Ok(())
}

/// x_b = y_b + sigma n_b with y_b drawn from the data. N(0, I_2 / 4) at sigma = 1: one 2-D sample
/// says little about sigma (its likelihood N(x; 0, (1/4 + s^2) I) is flat for s << 1/2, so the
/// posterior spreads over the prior's small sigmas), while 1000 of them fix 1/4 + s^2 to ~3% and
/// so ln s to ~0.02.
/// Moons (4096 points) at sigma = 0.3: the pooled estimate from the same exact likelihood.
#[test]
fn the_pooled_sigma_hat_recovers_sigma_where_the_per_sample_median_does_not() -> Result<()> {
    let rows = 1000;
    let estimator = PosteriorEstimator::new(SigmaPrior::for_schedule(0.002, 80.0));
    let noise = initial_noise(6, rows, 2);
    let gaussian = Source::Gaussian(GaussianModel::new(vec![0.0, 0.0], vec![0.25, 0.25], None)?);
    let moons = toys::load("moons", 4096)?;
    for (source, sigma, per_sample_fails) in [(gaussian, 1.0, true), (moons, 0.3, false)] {
        let m = model(&source, Precision::F64)?;
        let clean = match &source {
            Source::Gaussian(g) => g.sample(rows, 5),
            Source::Empirical(set) => {
                let mut values = Vec::new();
                for r in 0..rows {
                    values.extend_from_slice(set.row(r * 7 % set.n));
                }
                noisescope::data::DataSet {
                    n: rows,
                    dim: 2,
                    values,
                    labels: None,
                    image: None,
                }
            }
            Source::Mixture(_) => unreachable!(),
        };
        let mut x = Batch::zeros(rows, 2);
        for r in 0..rows {
            for k in 0..2 {
                x.row_mut(r)[k] = clean.row(r)[k] + sigma * noise.row(r)[k];
            }
        }
        let est = estimator.estimate_batch(m.as_ref(), &x, &Cond::plain())?;
        let pooled = est.pooled_ln.expect("the exact posterior pools");
        let per_sample: Vec<f64> = est.rows.iter().map(|e| e.mean_ln).collect();
        let median = quantile(&per_sample, 0.5);
        let widths: Vec<f64> = est.rows.iter().map(|e| e.std_ln).collect();
        let what = format!(
            "sigma {sigma}: pooled ln ratio {:.4}, per-sample median {:.4}, median posterior std {:.3}",
            pooled - sigma.ln(),
            median - sigma.ln(),
            quantile(&widths, 0.5)
        );
        println!("{what}");
        assert!((pooled - sigma.ln()).abs() <= 0.05, "{what}");
        if per_sample_fails {
            assert!((median - sigma.ln()).abs() > 0.05, "{what}");
            // The per-sample posteriors say so themselves: wider than a 2-D noise measurement.
            assert!(
                quantile(&widths, 0.5) > noisescope::core::diagnostics::prior_dominated_width(2),
                "{what}"
            );
        }
    }
    Ok(())
}
