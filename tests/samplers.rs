//! The samplers, guidance and noise estimation against closed forms (science.md sections 3-7).

use std::ops::ControlFlow;
use std::sync::Arc;

use noisescope::Result;
use noisescope::backend::Compute;
use noisescope::core::adaptive::AdaptiveReplanner;
use noisescope::core::denoiser::{Cond, Denoiser};
use noisescope::core::estimate::{ExactPosterior, PosteriorEstimator, SigmaPrior};
use noisescope::core::guidance::{Cfg, Nag};
use noisescope::core::noise::{InjectedNoise, SeededNoise, initial_noise};
use noisescope::core::sampler::{
    Hooks, SampleOutput, SamplerArgs, SamplerKind, StepInfo, Stochasticity, sample,
};
use noisescope::core::schedule::{ScheduleSpec, karras, uniform};
use noisescope::core::theory::gaussian_theory;
use noisescope::core::{Batch, Precision, quantile};
use noisescope::data::gaussian::GaussianModel;
use noisescope::data::{Source, digits, toys};
use noisescope::models::AnalyticModel;

fn model(source: Source, precision: Precision) -> Result<AnalyticModel> {
    AnalyticModel::new(
        &source,
        &Compute::cpu(),
        precision,
        SigmaPrior::edm_training(),
    )
}

fn run(
    kind: SamplerKind,
    denoiser: &dyn Denoiser,
    cond: &Cond,
    sigmas: Vec<f64>,
    st: Stochasticity,
    x0: Batch,
    noise: &mut dyn noisescope::core::noise::NoiseSource,
    on_step: &mut dyn FnMut(&StepInfo) -> ControlFlow<()>,
) -> Result<SampleOutput> {
    let args = SamplerArgs {
        denoiser,
        cond,
        sigmas,
        stochasticity: st,
    };
    let mut hooks = Hooks {
        noise,
        replan: None,
        on_step,
    };
    sample(kind, args, x0, &mut hooks)
}

/// Integrates the ODE from 10 down to 0.5 with `n` uniform steps and returns |x - exact|.
fn flow_error(kind: SamplerKind, n: usize) -> Result<f64> {
    let lambda = 0.8;
    let m = model(
        Source::Gaussian(GaussianModel::diagonal(vec![lambda])?),
        Precision::F64,
    )?;
    let (s_hi, s_lo) = (10.0, 0.5);
    let mut sigmas = uniform(n + 1, s_lo, s_hi);
    // Stop at s_lo: the extra last level only lets us break there.
    sigmas.insert(n + 1, 0.25);
    let x0 = Batch::from_vec(1, 1, vec![s_hi])?;
    let mut at_end = None;
    run(
        kind,
        &m,
        &Cond::plain(),
        sigmas,
        Stochasticity::default(),
        x0,
        &mut SeededNoise { seed: 0 },
        &mut |info| {
            if info.sigma_next == s_lo {
                at_end = Some(info.x_next.data[0]);
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
    // Exact flow x(s) ∝ sqrt(lambda + s^2).
    let exact = s_hi * ((lambda + s_lo * s_lo) / (lambda + s_hi * s_hi)).sqrt();
    Ok((at_end.unwrap_or(f64::NAN) - exact).abs())
}

#[test]
fn euler_is_first_order_and_heun_second_order_on_the_gaussian_flow() -> Result<()> {
    for (kind, order) in [(SamplerKind::Euler, 1.0), (SamplerKind::Heun, 2.0)] {
        let errors: Vec<f64> = [20, 40, 80, 160]
            .iter()
            .map(|&n| flow_error(kind, n))
            .collect::<Result<_>>()?;
        for w in errors.windows(2) {
            let observed = (w[0] / w[1]).log2();
            assert!(
                (observed - order).abs() < 0.15,
                "{kind:?}: observed order {observed}, errors {errors:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn simulated_gaussian_output_variance_equals_the_theory_recursion() -> Result<()> {
    let spectrum = vec![0.01, 0.3, 1.0, 4.0];
    let m = model(
        Source::Gaussian(GaussianModel::diagonal(spectrum.clone())?),
        Precision::F64,
    )?;
    let sigmas = karras(12, 0.002, 80.0, 7.0);
    let batch = 64;
    let z = initial_noise(5, batch, spectrum.len());
    let x0 = z.scale(sigmas[0]);
    let var = |b: &Batch, k: usize| {
        let mean = (0..b.rows).map(|r| b.row(r)[k]).sum::<f64>() / b.rows as f64;
        (0..b.rows)
            .map(|r| (b.row(r)[k] - mean).powi(2))
            .sum::<f64>()
            / b.rows as f64
    };
    for kind in [SamplerKind::Euler, SamplerKind::Heun, SamplerKind::DpmPp2m] {
        let theory = gaussian_theory(&spectrum, &sigmas, kind, &Stochasticity::default());
        let mut states = Vec::new();
        let out = run(
            kind,
            &m,
            &Cond::plain(),
            sigmas.clone(),
            Stochasticity::default(),
            x0.clone(),
            &mut SeededNoise { seed: 0 },
            &mut |info| {
                states.push(info.x.clone());
                ControlFlow::Continue(())
            },
        )?;
        states.push(out.x);
        // Each step multiplies each direction by a scalar, so the empirical variance ratio is
        // exactly the theory's v_i / v_0, whatever the sample.
        for (i, state) in states.iter().enumerate() {
            for k in 0..spectrum.len() {
                let simulated = var(state, k) / var(&x0, k);
                let expect = theory.variances[i][k] / theory.variances[0][k];
                assert!(
                    (simulated - expect).abs() <= 1e-9 * expect,
                    "{kind:?} step {i} direction {k}: {simulated} vs {expect}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn churned_and_ancestral_variances_match_the_theory_statistically() -> Result<()> {
    let spectrum = vec![0.05, 1.0];
    let m = model(
        Source::Gaussian(GaussianModel::diagonal(spectrum.clone())?),
        Precision::F64,
    )?;
    let sigmas = karras(10, 0.002, 80.0, 7.0);
    let batch = 20_000;
    let x0 = initial_noise(9, batch, 2).scale(sigmas[0]);
    let st = Stochasticity {
        churn: 30.0,
        tmin: 0.05,
        tmax: 50.0,
        snoise: 1.003,
        eta: 1.0,
    };
    for kind in [SamplerKind::Edm, SamplerKind::EulerAncestral] {
        let theory = gaussian_theory(&spectrum, &sigmas, kind, &st);
        let out = run(
            kind,
            &m,
            &Cond::plain(),
            sigmas.clone(),
            st,
            x0.clone(),
            &mut SeededNoise { seed: 4 },
            &mut |_| ControlFlow::Continue(()),
        )?;
        for k in 0..2 {
            let v: f64 = (0..batch).map(|r| out.x.row(r)[k].powi(2)).sum::<f64>() / batch as f64;
            let expect = theory.variances[10][k];
            // Sample variance of a Gaussian: relative standard error sqrt(2/B) = 1%; allow 4.
            assert!(
                (v / expect - 1.0).abs() < 0.04,
                "{kind:?} direction {k}: {v} vs {expect}"
            );
        }
    }
    Ok(())
}

#[test]
fn edm_without_churn_is_heun_bit_for_bit() -> Result<()> {
    let m = model(Source::Empirical(digits::load()?), Precision::F32)?;
    let sigmas = karras(10, 0.002, 80.0, 7.0);
    let x0 = initial_noise(3, 32, 64).scale(80.0);
    let mut outs = Vec::new();
    for kind in [SamplerKind::Heun, SamplerKind::Edm] {
        outs.push(run(
            kind,
            &m,
            &Cond::plain(),
            sigmas.clone(),
            Stochasticity {
                snoise: 1.007,
                ..Default::default()
            },
            x0.clone(),
            &mut SeededNoise { seed: 1 },
            &mut |_| ControlFlow::Continue(()),
        )?);
    }
    assert_eq!(outs[0].x.data, outs[1].x.data);
    assert_eq!(outs[0].evaluations, 19);
    Ok(())
}

#[test]
fn cfg_weight_one_is_the_conditional_denoiser_and_nag_zero_is_a_no_op() -> Result<()> {
    let base: Arc<dyn Denoiser> =
        Arc::new(model(Source::Empirical(digits::load()?), Precision::F64)?);
    let x = initial_noise(2, 16, 64).scale(1.5);
    let cond = Cond::with_class(Some((0..16).map(|r| r % 10).collect()));
    for sigma in [0.05, 1.5, 20.0] {
        let conditional = base.denoise(&x, sigma, &cond)?;
        assert_eq!(
            Cfg::new(base.clone(), 1.0).denoise(&x, sigma, &cond)?,
            conditional
        );
        // The general formula agrees near w = 1 too.
        let near = Cfg::new(base.clone(), 1.0 + 1e-9).denoise(&x, sigma, &cond)?;
        let gap = near
            .data
            .iter()
            .zip(&conditional.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(gap < 1e-7, "{gap}");
        // w = 0 is the unconditional model.
        assert_eq!(
            Cfg::new(base.clone(), 0.0).denoise(&x, sigma, &cond)?.data,
            base.denoise(&x, sigma, &Cond::plain())?.data
        );
        assert_eq!(
            Nag::new(base.clone(), 0.0).denoise(&x, sigma, &cond)?,
            conditional
        );
        // And NAG with w != 0 changes the result.
        assert_ne!(
            Nag::new(base.clone(), 2.0).denoise(&x, sigma, &cond)?,
            conditional
        );
    }
    Ok(())
}

/// Brute-force D(x; none) = x + s^2 * (int p(x; t) pi(t) score_t(x) dt) / (int p(x; t) pi(t) dt)
/// on a very fine grid, for 1-D data given by (points, weights, variances) of a Gaussian mixture.
fn brute_marginal(x: f64, sigma: f64, comps: &[(f64, f64, f64)]) -> f64 {
    let (a, b) = (-1.2 - 6.0 * 1.2, -1.2 + 6.0 * 1.2);
    let n = 200_000;
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..=n {
        let u = a + (b - a) * i as f64 / n as f64;
        let t = u.exp();
        let prior = (-0.5 * ((u + 1.2) / 1.2).powi(2)).exp();
        for &(mu, w, var) in comps {
            let v = var + t * t;
            let p =
                w * (-(x - mu).powi(2) / (2.0 * v)).exp() / (2.0 * std::f64::consts::PI * v).sqrt();
            num += prior * p * (mu - x) / v;
            den += prior * p;
        }
    }
    x + sigma * sigma * num / den
}

#[test]
fn nag_marginal_is_exact_for_diracs_and_gaussians() -> Result<()> {
    let diracs = model(toys::load("two-diracs", 2)?, Precision::F64)?;
    let gauss = model(
        Source::Gaussian(GaussianModel::new(vec![0.3], vec![0.5], None)?),
        Precision::F64,
    )?;
    let none = Cond::plain().without_noise();
    for (x, sigma) in [(0.2, 0.1), (-1.7, 0.7), (3.0, 4.0)] {
        let xb = Batch::from_vec(1, 1, vec![x])?;
        let got = diracs.denoise(&xb, sigma, &none)?.data[0];
        let expect = brute_marginal(x, sigma, &[(-1.0, 0.5, 0.0), (1.0, 0.5, 0.0)]);
        assert!(
            (got - expect).abs() < 1e-6 * (1.0 + expect.abs()),
            "diracs {x}: {got} vs {expect}"
        );
        let got = gauss.denoise(&xb, sigma, &none)?.data[0];
        let expect = brute_marginal(x, sigma, &[(0.3, 1.0, 0.5)]);
        assert!(
            (got - expect).abs() < 1e-6 * (1.0 + expect.abs()),
            "gaussian {x}: {got} vs {expect}"
        );
    }
    Ok(())
}

#[test]
fn sigma_hat_of_exact_noisy_digits_is_within_005_of_sigma() -> Result<()> {
    let data = digits::load()?;
    let m = model(Source::Empirical(data.clone()), Precision::F32)?;
    let est = PosteriorEstimator::new(SigmaPrior::for_schedule(0.002, 80.0));
    for sigma in [0.05, 0.3, 1.0, 5.0] {
        let n = initial_noise(77, 256, 64);
        let mut x = Batch::zeros(256, 64);
        for r in 0..256 {
            let y = data.row((r * 7) % data.n);
            for k in 0..64 {
                x.row_mut(r)[k] = y[k] + sigma * n.row(r)[k];
            }
        }
        let e = est.estimate(&m, &x, &Cond::plain())?;
        let logs: Vec<f64> = e.iter().map(|e| e.mean_ln).collect();
        let median = quantile(&logs, 0.5);
        assert!(
            (median - sigma.ln()).abs() < 0.05,
            "sigma {sigma}: median ln sigma_hat {median} vs {}",
            sigma.ln()
        );
    }
    Ok(())
}

#[test]
fn exact_noise_shift_of_a_gaussian_matches_the_posterior_estimate() -> Result<()> {
    // Isotropic 512-D Gaussian, coarse Euler steps: the state's excess variance over lambda is
    // the exact noise level sigma_eff, which the posterior estimator must recover. (Where
    // sigma_eff^2 is small against lambda the noise level is not identifiable from one sample, so
    // the check needs sigma_eff^2 > lambda / 2.)
    let (lambda, dim) = (0.05, 512);
    let m = model(
        Source::Gaussian(GaussianModel::diagonal(vec![lambda; dim])?),
        Precision::F64,
    )?;
    let sigmas = vec![10.0, 1.0, 0.35, 0.02, 0.0];
    let theory = gaussian_theory(
        &vec![lambda; dim],
        &sigmas,
        SamplerKind::Euler,
        &Stochasticity::default(),
    );
    let x0 = initial_noise(8, 400, dim).scale(sigmas[0]);
    let est = PosteriorEstimator::new(SigmaPrior::for_schedule(0.002, 80.0));
    let mut checked = 0;
    let mut shifts = Vec::new();
    run(
        SamplerKind::Euler,
        &m,
        &Cond::plain(),
        sigmas.clone(),
        Stochasticity::default(),
        x0,
        &mut SeededNoise { seed: 0 },
        &mut |info| {
            let eff = theory.sigma_eff[info.step][0];
            if eff.is_finite() && eff * eff > 0.5 * lambda {
                let logs: Vec<f64> = est
                    .estimate(&m, info.x, &Cond::plain())
                    .map(|e| e.iter().map(|e| e.mean_ln).collect())
                    .unwrap_or_default();
                let median = quantile(&logs, 0.5);
                assert!(
                    (median - eff.ln()).abs() < 0.05,
                    "step {}: {median} vs {}",
                    info.step,
                    eff.ln()
                );
                // The shift is real: the state is not at the scheduled sigma.
                shifts.push(eff.ln() - info.sigma.ln());
                checked += 1;
            }
            ControlFlow::Continue(())
        },
    )?;
    assert!(checked >= 2);
    assert!(
        shifts.iter().any(|d| d.abs() > 0.1),
        "no visible shift: {shifts:?}"
    );
    Ok(())
}

#[test]
fn injected_churn_noise_row_i_belongs_to_step_i() -> Result<()> {
    // Churn only at step 1 (S_tmin/S_tmax bracket sigma_1): changing noise row 0 must not change
    // the result, changing row 1 must.
    let m = model(toys::load("moons", 512)?, Precision::F64)?;
    let sigmas = karras(4, 0.002, 10.0, 7.0);
    let x0 = initial_noise(1, 8, 2).scale(sigmas[0]);
    let st = Stochasticity {
        churn: 2.0,
        tmin: sigmas[1] * 0.99,
        tmax: sigmas[1] * 1.01,
        snoise: 1.0,
        eta: 1.0,
    };
    let base: Vec<f64> = (0..4 * 8 * 2)
        .map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0)
        .collect();
    let run_with = |values: Vec<f64>| -> Result<Vec<f64>> {
        let mut noise = InjectedNoise::new(&[4, 8, 2], values)?;
        Ok(run(
            SamplerKind::Edm,
            &m,
            &Cond::plain(),
            sigmas.clone(),
            st,
            x0.clone(),
            &mut noise,
            &mut |_| ControlFlow::Continue(()),
        )?
        .x
        .data)
    };
    let reference = run_with(base.clone())?;
    let mut row0 = base.clone();
    row0[0] += 1.0;
    assert_eq!(run_with(row0)?, reference);
    let mut row1 = base;
    row1[16] += 1.0;
    assert_ne!(run_with(row1)?, reference);
    Ok(())
}

#[test]
fn the_f32_empirical_denoiser_is_stable_at_sigma_0002() -> Result<()> {
    // Exact noisy samples of the digits (64-D) and of a 784-D set at sigma = 0.002: the ideal
    // denoiser must return the clean point (its softmax is one-hot), finite, in f32.
    for data in [digits::load()?, digits::synthetic_28x28(500, 3)?] {
        let m = model(Source::Empirical(data.clone()), Precision::F32)?;
        let n = initial_noise(5, 16, data.dim);
        let mut x = Batch::zeros(16, data.dim);
        for r in 0..16 {
            let y = data.row(r * 31 % data.n);
            for (k, v) in x.row_mut(r).iter_mut().enumerate() {
                *v = y[k] + 0.002 * n.row(r)[k];
            }
        }
        let d = m.denoise(&x, 0.002, &Cond::plain())?;
        for r in 0..16 {
            let y = data.row(r * 31 % data.n);
            let err = d
                .row(r)
                .iter()
                .zip(y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-5, "dim {} row {r}: max error {err}", data.dim);
        }
    }
    Ok(())
}

#[test]
fn every_sampler_stops_when_the_callback_breaks() -> Result<()> {
    let m = model(toys::load("moons", 256)?, Precision::F64)?;
    let sigmas = karras(8, 0.002, 80.0, 7.0);
    let x0 = initial_noise(2, 4, 2).scale(sigmas[0]);
    for &kind in <SamplerKind as clap::ValueEnum>::value_variants() {
        let mut seen = 0;
        let mut at_break = None;
        let out = run(
            kind,
            &m,
            &Cond::plain(),
            sigmas.clone(),
            Stochasticity::default(),
            x0.clone(),
            &mut SeededNoise { seed: 0 },
            &mut |info| {
                seen += 1;
                if info.step == 2 {
                    at_break = Some(info.x_next.clone());
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )?;
        assert!(out.stopped, "{kind:?}");
        assert_eq!(seen, 3, "{kind:?}");
        assert_eq!(Some(out.x), at_break, "{kind:?}");
    }
    // Without a break the run reports it finished.
    let out = run(
        SamplerKind::Heun,
        &m,
        &Cond::plain(),
        sigmas,
        Stochasticity::default(),
        x0,
        &mut SeededNoise { seed: 0 },
        &mut |_| ControlFlow::Continue(()),
    )?;
    assert!(!out.stopped);
    Ok(())
}

#[test]
fn the_adaptive_step_corrects_a_shifted_start_toward_the_schedule() -> Result<()> {
    // Isotropic Gaussian data, where sigma_hat is exact (16 dimensions pin ln sigma to ~0.2 per
    // sample, the pooled batch far better) and the flow is known: x(sigma) ∝ sqrt(lambda +
    // sigma^2). A start drawn 1.5x noisier than sigma_max stays 1.5x too wide under the plain
    // schedule (output variance 2.25 lambda); starting each step from sigma_hat conditions the
    // first denoiser call on the true level and the run ends at lambda.
    let (lambda, dim, batch) = (1.0, 16, 256);
    let m = Arc::new(model(
        Source::Gaussian(GaussianModel::diagonal(vec![lambda; dim])?),
        Precision::F64,
    )?);
    let sigmas = karras(18, 0.002, 80.0, 7.0);
    let x0 = initial_noise(3, batch, dim).scale(1.5 * sigmas[0]);
    let estimator = ExactPosterior::new(
        m.clone(),
        PosteriorEstimator::new(SigmaPrior::for_schedule(0.002, 80.0)),
    );
    let variance = |b: &Batch| b.data.iter().map(|v| v * v).sum::<f64>() / b.data.len() as f64;
    let sample_with = |start_from_estimate: bool| -> Result<SampleOutput> {
        let mut replanner = AdaptiveReplanner::new(
            &estimator,
            (0..128).collect(),
            &Cond::plain(),
            ScheduleSpec::default(),
            None,
        )
        .with_modes(false, start_from_estimate);
        let args = SamplerArgs {
            denoiser: m.as_ref(),
            cond: &Cond::plain(),
            sigmas: sigmas.clone(),
            stochasticity: Stochasticity::default(),
        };
        let mut hooks = Hooks {
            noise: &mut SeededNoise { seed: 0 },
            replan: Some(&mut replanner),
            on_step: &mut |_| ControlFlow::Continue(()),
        };
        sample(SamplerKind::Heun, args, x0.clone(), &mut hooks)
    };
    let plain = sample_with(false)?;
    assert_eq!(
        plain.sigmas, sigmas,
        "the step start is off: the plan stays"
    );
    let plain_ratio = variance(&plain.x) / lambda;
    assert!((plain_ratio - 2.25).abs() < 0.3, "plain: {plain_ratio}");
    let adaptive = sample_with(true)?;
    // The first step starts from the estimated 120, and the run ends at the data's variance.
    assert!(
        (adaptive.sigmas[0] / (1.5 * sigmas[0]) - 1.0).abs() < 0.03,
        "{:?}",
        &adaptive.sigmas[..3]
    );
    assert!(adaptive.sigmas.windows(2).all(|w| w[0] > w[1]));
    let adaptive_ratio = variance(&adaptive.x) / lambda;
    assert!(
        (adaptive_ratio - 1.0).abs() < 0.1,
        "adaptive step: {adaptive_ratio} (plain {plain_ratio})"
    );
    Ok(())
}
