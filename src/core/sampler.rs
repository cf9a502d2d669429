//! The samplers, one function each, in the style of k-diffusion's `sampling.py`: same denoiser
//! call, a per-step callback that may stop the run, no state kept between calls.
//! Conventions (those of k-diffusion and NVlabs/edm):
//! - x_0 = sigma_0 z is built by the caller; `sigmas` has N+1 entries ending in 0;
//! - the step to sigma = 0 is an Euler step; DPM-Solver++(2M)'s first and last steps are first order;
//! - stochastic samplers draw eps_i at EVERY step, so injected noise row i belongs to step i.

use std::ops::ControlFlow;

use super::Batch;
use super::denoiser::{Cond, Denoised, Denoiser, StiffPart, slope};
use super::named_enum;
use super::noise::NoiseSource;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which sampler to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplerKind {
    Euler,
    #[default]
    Heun,
    Edm,
    #[value(name = "euler-a")]
    EulerAncestral,
    #[value(name = "dpmpp-2m")]
    DpmPp2m,
}

named_enum!(SamplerKind, "sampler");

impl SamplerKind {
    /// Denoiser evaluations for N steps.
    pub fn evaluations(&self, steps: usize) -> usize {
        match self {
            SamplerKind::Heun | SamplerKind::Edm => 2 * steps - 1,
            _ => steps,
        }
    }

    /// Whether the sampler draws per-step noise (churn or ancestral).
    pub fn uses_noise(&self) -> bool {
        matches!(self, SamplerKind::Edm | SamplerKind::EulerAncestral)
    }
}

/// EDM Algorithm 2's churn parameters and the ancestral eta.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stochasticity {
    pub churn: f64,
    pub tmin: f64,
    pub tmax: f64,
    pub snoise: f64,
    pub eta: f64,
}

impl Default for Stochasticity {
    fn default() -> Self {
        Stochasticity {
            churn: 0.0,
            tmin: 0.0,
            // f64::MAX rather than infinity: it survives JSON presets and means the same.
            tmax: f64::MAX,
            snoise: 1.0,
            eta: 1.0,
        }
    }
}

impl Stochasticity {
    pub fn validate(&self) -> Result<()> {
        let finite_nonneg = |v: f64| v.is_finite() && v >= 0.0;
        for (name, v) in [
            ("S_churn (--churn)", self.churn),
            ("S_tmin (--tmin)", self.tmin),
            ("S_noise (--snoise)", self.snoise),
            ("eta (--eta)", self.eta),
        ] {
            if !finite_nonneg(v) {
                return Err(Error::InvalidSpec(format!(
                    "{name} must be a finite number >= 0, got {v}"
                )));
            }
        }
        if self.tmax.is_nan() || self.tmax < self.tmin {
            return Err(Error::InvalidSpec(format!(
                "S_tmax (--tmax) must be at least S_tmin (--tmin), got {} and {}",
                self.tmax, self.tmin
            )));
        }
        Ok(())
    }

    /// gamma_i = min(S_churn / N, sqrt 2 - 1) where S_tmin <= sigma_i <= S_tmax, else 0.
    pub fn gamma(&self, sigma: f64, steps: usize) -> f64 {
        if self.churn > 0.0 && self.tmin <= sigma && sigma <= self.tmax {
            (self.churn / steps as f64).min(std::f64::consts::SQRT_2 - 1.0)
        } else {
            0.0
        }
    }
}

/// k-diffusion's `get_ancestral_step`: (sigma_down, sigma_up) for a step from s to s'.
pub fn ancestral_step(sigma_from: f64, sigma_to: f64, eta: f64) -> (f64, f64) {
    if eta == 0.0 || sigma_to == 0.0 {
        return (sigma_to, 0.0);
    }
    let up = (eta
        * (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to)
            / (sigma_from * sigma_from))
            .sqrt())
    .min(sigma_to);
    let down = (sigma_to * sigma_to - up * up).sqrt();
    (down, up)
}

/// What the sampler reports after each step i.
#[derive(Debug)]
pub struct StepInfo<'a> {
    pub step: usize,
    /// sigma_i as scheduled (or re-planned).
    pub sigma: f64,
    /// sigma after churn (EDM's t-hat); equals `sigma` without churn.
    pub sigma_hat: f64,
    pub sigma_next: f64,
    /// The pre-churn state x_i.
    pub x: &'a Batch,
    /// The first denoiser call of step i.
    pub denoised: &'a Batch,
    /// d_i, the slope where the first call was made.
    pub slope: &'a Batch,
    /// d'_i, the slope at the Euler predictor (Heun and EDM, except on the step to 0).
    pub slope_corrector: Option<&'a Batch>,
    /// The state after the step, x_{i+1}.
    pub x_next: &'a Batch,
    /// Denoiser evaluations so far.
    pub evaluations: usize,
}

impl<'a> StepInfo<'a> {
    /// A step that evaluated D once, at (x_i, sigma_i), without churn or corrector.
    fn single(
        step: usize,
        sigma: f64,
        sigma_next: f64,
        x: &'a Batch,
        denoised: &'a Batch,
        slope: &'a Batch,
        x_next: &'a Batch,
        evaluations: usize,
    ) -> Self {
        StepInfo {
            step,
            sigma,
            sigma_hat: sigma,
            sigma_next,
            x,
            denoised,
            slope,
            slope_corrector: None,
            x_next,
            evaluations,
        }
    }
}

/// Seed 001's adaptive schedule: after a step, look at the new state and optionally return
/// new sigmas for steps i+1..=N (same length, ending in 0).
pub trait Replanner {
    fn replan(&mut self, x_next: &Batch, step: usize, sigmas: &[f64]) -> Result<Option<Vec<f64>>>;

    /// Seed 001's adaptive step: the noise level step `step` starts from (the denoiser is
    /// conditioned on it, and the step runs from it to sigma_{step+1}), or `None` to keep
    /// `sigmas[step]`. It must lie strictly between sigmas[step + 1] and sigmas[step - 1].
    fn start_level(&mut self, _x: &Batch, _step: usize, _sigmas: &[f64]) -> Result<Option<f64>> {
        Ok(None)
    }
}

/// The callbacks a sampler uses; `on_step` returns `Break` to stop the run.
pub struct Hooks<'a> {
    pub noise: &'a mut dyn NoiseSource,
    pub replan: Option<&'a mut dyn Replanner>,
    pub on_step: &'a mut dyn FnMut(&StepInfo) -> ControlFlow<()>,
}

/// A finished (or stopped) run.
#[derive(Clone, Debug)]
pub struct SampleOutput {
    pub x: Batch,
    /// The sigmas actually used (differ from the input when re-planned).
    pub sigmas: Vec<f64>,
    pub evaluations: usize,
    pub stopped: bool,
}

/// The fixed arguments of every sampler.
pub struct SamplerArgs<'a> {
    pub denoiser: &'a dyn Denoiser,
    pub cond: &'a Cond,
    pub sigmas: Vec<f64>,
    pub stochasticity: Stochasticity,
}

/// Runs `kind` from the initial state `x` (x_0 = sigma_0 z).
pub fn sample(
    kind: SamplerKind,
    args: SamplerArgs,
    x: Batch,
    hooks: &mut Hooks,
) -> Result<SampleOutput> {
    check_sigmas(&args.sigmas)?;
    args.stochasticity.validate()?;
    match kind {
        SamplerKind::Euler => euler(args, x, hooks),
        SamplerKind::Heun => heun(args, x, hooks),
        SamplerKind::Edm => edm(args, x, hooks),
        SamplerKind::EulerAncestral => euler_ancestral(args, x, hooks),
        SamplerKind::DpmPp2m => dpmpp_2m(args, x, hooks),
    }
}

fn check_sigmas(sigmas: &[f64]) -> Result<()> {
    if sigmas.len() < 2 {
        return Err(Error::InvalidSpec(
            "a schedule needs at least one step".into(),
        ));
    }
    if sigmas.last() != Some(&0.0) {
        return Err(Error::InvalidSpec("a schedule must end in 0".into()));
    }
    if sigmas.iter().any(|s| !s.is_finite() || *s < 0.0) {
        return Err(Error::InvalidSpec("sigmas must be finite and >= 0".into()));
    }
    if sigmas[..sigmas.len() - 1].iter().any(|s| *s <= 0.0) {
        return Err(Error::InvalidSpec("only the last sigma may be 0".into()));
    }
    if sigmas.windows(2).any(|w| w[1] >= w[0]) {
        return Err(Error::InvalidSpec("sigmas must decrease strictly".into()));
    }
    Ok(())
}

/// Evaluates D (with its stiff part, if any) and checks its shape and finiteness, so a broken
/// model stops the run cleanly.
fn evaluate(
    args: &SamplerArgs,
    x: &Batch,
    sigma: f64,
    evaluations: &mut usize,
) -> Result<Denoised> {
    let out = args.denoiser.denoise_split(x, sigma, args.cond)?;
    *evaluations += 1;
    let d = &out.denoised;
    if d.rows != x.rows || d.dim != x.dim {
        return Err(Error::Shape(format!(
            "denoiser returned [{}, {}] for a [{}, {}] input",
            d.rows, d.dim, x.rows, x.dim
        )));
    }
    if !d.is_finite() || out.stiff.as_ref().is_some_and(|p| !p.is_finite()) {
        return Err(Error::NonFinite(format!(
            "the denoiser's output at sigma = {sigma:e} is not finite"
        )));
    }
    Ok(out)
}

/// A first-order step from sigma to sigma_next: Euler's x + (sigma_next - sigma) d, or, when the
/// denoiser has a stiff part (NAG), that part integrated exactly (`StiffPart::advance`).
fn advance(x: &Batch, sigma: f64, sigma_next: f64, d: &Batch, stiff: Option<&StiffPart>) -> Batch {
    match stiff {
        Some(part) => part.advance(x, sigma, sigma_next),
        None => x.add_scaled(sigma_next - sigma, d),
    }
}

/// The level step `i` starts from: `sigmas[i]`, or the re-planner's adaptive start (which then
/// replaces `sigmas[i]`, so the sigmas returned are the ones used).
fn start_level(hooks: &mut Hooks, x: &Batch, i: usize, sigmas: &mut [f64]) -> Result<f64> {
    if let Some(replanner) = hooks.replan.as_deref_mut()
        && let Some(start) = replanner.start_level(x, i, sigmas)?
    {
        let below_previous = i == 0 || start < sigmas[i - 1];
        if !(start.is_finite() && start > sigmas[i + 1] && below_previous) {
            return Err(Error::InvalidSpec(format!(
                "an adaptive step must start between the neighbouring levels, got {start:e} at \
                 step {i}"
            )));
        }
        sigmas[i] = start;
    }
    Ok(sigmas[i])
}

/// After the step: report it, then let the re-planner move the remaining sigmas.
fn finish_step(hooks: &mut Hooks, sigmas: &mut [f64], info: &StepInfo) -> Result<ControlFlow<()>> {
    if (hooks.on_step)(info).is_break() {
        return Ok(ControlFlow::Break(()));
    }
    let i = info.step;
    if let Some(replanner) = hooks.replan.as_deref_mut()
        && i + 2 < sigmas.len()
        && let Some(new) = replanner.replan(info.x_next, i, sigmas)?
    {
        let decreasing = std::iter::once(&sigmas[i])
            .chain(&new)
            .collect::<Vec<_>>()
            .windows(2)
            .all(|w| w[1] < w[0]);
        if new.len() != sigmas.len() - i - 1 || new.last() != Some(&0.0) || !decreasing {
            return Err(Error::InvalidSpec(
                "a re-planned schedule must keep its length, decrease strictly and end in 0".into(),
            ));
        }
        sigmas[i + 1..].copy_from_slice(&new);
    }
    Ok(ControlFlow::Continue(()))
}

/// Euler's method on the probability-flow ODE (EDM eq. 3): x_{i+1} = x_i + (s_{i+1} - s_i) d_i.
pub fn euler(args: SamplerArgs, mut x: Batch, hooks: &mut Hooks) -> Result<SampleOutput> {
    let mut sigmas = args.sigmas.clone();
    let mut evaluations = 0;
    let mut stopped = false;
    for i in 0..sigmas.len() - 1 {
        let (sigma, sigma_next) = (start_level(hooks, &x, i, &mut sigmas)?, sigmas[i + 1]);
        // Evaluate dx/dsigma at (x_i, s_i).
        let Denoised { denoised, stiff } = evaluate(&args, &x, sigma, &mut evaluations)?;
        let d = slope(&x, &denoised, sigma);
        // Take an Euler step from s_i to s_{i+1} (NAG's stiff part exactly).
        let x_next = advance(&x, sigma, sigma_next, &d, stiff.as_ref());
        let info = StepInfo::single(
            i,
            sigma,
            sigma_next,
            &x,
            &denoised,
            &d,
            &x_next,
            evaluations,
        );
        let flow = finish_step(hooks, &mut sigmas, &info)?;
        x = x_next;
        if flow.is_break() {
            stopped = true;
            break;
        }
    }
    Ok(SampleOutput {
        x,
        sigmas,
        evaluations,
        stopped,
    })
}

/// One Heun step from (x_hat, s_hat) to s_next, EDM Algorithm 1 lines 4-8 (Algorithm 2 lines 7-10):
/// the Euler predictor, then the trapezoidal corrector unless s_next = 0. With NAG's stiff part,
/// both are exponential steps (`StiffPart::advance`, `StiffPart::advance_trapezoid`).
/// Returns (denoised, d, d', x_next).
fn heun_step(
    args: &SamplerArgs,
    x_hat: &Batch,
    sigma_hat: f64,
    sigma_next: f64,
    evaluations: &mut usize,
) -> Result<(Batch, Batch, Option<Batch>, Batch)> {
    // Evaluate dx/dt at t-hat.
    let Denoised { denoised, stiff } = evaluate(args, x_hat, sigma_hat, evaluations)?;
    let d = slope(x_hat, &denoised, sigma_hat);
    let dt = sigma_next - sigma_hat;
    // Take an Euler step from t-hat to t_{i+1}.
    let x_euler = advance(x_hat, sigma_hat, sigma_next, &d, stiff.as_ref());
    if sigma_next == 0.0 {
        return Ok((denoised, d, None, x_euler));
    }
    // Apply the 2nd-order correction.
    let second = evaluate(args, &x_euler, sigma_next, evaluations)?;
    let d_2 = slope(&x_euler, &second.denoised, sigma_next);
    let exponential = stiff
        .as_ref()
        .zip(second.stiff.as_ref())
        .and_then(|(start, end)| start.advance_trapezoid(end, x_hat, sigma_hat, sigma_next));
    let x_next =
        exponential.unwrap_or_else(|| x_hat.add_scaled(dt, &Batch::lin_comb(0.5, &d, 0.5, &d_2)));
    Ok((denoised, d, Some(d_2), x_next))
}

/// Heun's 2nd-order method, EDM (Karras et al. 2022, arXiv 2206.00364) Algorithm 1: 2N-1 evaluations.
pub fn heun(args: SamplerArgs, mut x: Batch, hooks: &mut Hooks) -> Result<SampleOutput> {
    let mut sigmas = args.sigmas.clone();
    let mut evaluations = 0;
    let mut stopped = false;
    for i in 0..sigmas.len() - 1 {
        let (sigma, sigma_next) = (start_level(hooks, &x, i, &mut sigmas)?, sigmas[i + 1]);
        let (denoised, d, d_2, x_next) = heun_step(&args, &x, sigma, sigma_next, &mut evaluations)?;
        let info = StepInfo {
            step: i,
            sigma,
            sigma_hat: sigma,
            sigma_next,
            x: &x,
            denoised: &denoised,
            slope: &d,
            slope_corrector: d_2.as_ref(),
            x_next: &x_next,
            evaluations,
        };
        let flow = finish_step(hooks, &mut sigmas, &info)?;
        x = x_next;
        if flow.is_break() {
            stopped = true;
            break;
        }
    }
    Ok(SampleOutput {
        x,
        sigmas,
        evaluations,
        stopped,
    })
}

/// EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): churn the state up to
/// s_hat = s_i (1 + gamma_i) with fresh noise, then one Heun step to s_{i+1}.
/// With S_churn = 0 it is `heun` bit for bit.
pub fn edm(args: SamplerArgs, mut x: Batch, hooks: &mut Hooks) -> Result<SampleOutput> {
    let mut sigmas = args.sigmas.clone();
    let steps = sigmas.len() - 1;
    let st = args.stochasticity;
    let mut evaluations = 0;
    let mut stopped = false;
    for i in 0..steps {
        let (sigma, sigma_next) = (start_level(hooks, &x, i, &mut sigmas)?, sigmas[i + 1]);
        // Draw eps_i ~ N(0, S_noise^2 I) at every step, used or not.
        let eps = hooks.noise.step_noise(i, x.rows, x.dim)?;
        // Increase noise temporarily: t-hat = t_i + gamma_i t_i.
        let gamma = st.gamma(sigma, steps);
        let sigma_hat = sigma * (gamma + 1.0);
        let x_hat = if gamma > 0.0 {
            x.add_scaled(
                (sigma_hat * sigma_hat - sigma * sigma).sqrt() * st.snoise,
                &eps,
            )
        } else {
            x.clone()
        };
        let (denoised, d, d_2, x_next) =
            heun_step(&args, &x_hat, sigma_hat, sigma_next, &mut evaluations)?;
        let info = StepInfo {
            step: i,
            sigma,
            sigma_hat,
            sigma_next,
            x: &x,
            denoised: &denoised,
            slope: &d,
            slope_corrector: d_2.as_ref(),
            x_next: &x_next,
            evaluations,
        };
        let flow = finish_step(hooks, &mut sigmas, &info)?;
        x = x_next;
        if flow.is_break() {
            stopped = true;
            break;
        }
    }
    Ok(SampleOutput {
        x,
        sigmas,
        evaluations,
        stopped,
    })
}

/// Euler ancestral (k-diffusion `sample_euler_ancestral`): Euler to sigma_down, then add
/// sigma_up S_noise eps, with sigma_up = min(s', eta sqrt(s'^2 (s^2 - s'^2) / s^2)).
pub fn euler_ancestral(args: SamplerArgs, mut x: Batch, hooks: &mut Hooks) -> Result<SampleOutput> {
    let mut sigmas = args.sigmas.clone();
    let st = args.stochasticity;
    let mut evaluations = 0;
    let mut stopped = false;
    for i in 0..sigmas.len() - 1 {
        let (sigma, sigma_next) = (start_level(hooks, &x, i, &mut sigmas)?, sigmas[i + 1]);
        // Draw eps_i at every step so noise row i belongs to step i.
        let eps = hooks.noise.step_noise(i, x.rows, x.dim)?;
        let Denoised { denoised, stiff } = evaluate(&args, &x, sigma, &mut evaluations)?;
        let (sigma_down, sigma_up) = ancestral_step(sigma, sigma_next, st.eta);
        let d = slope(&x, &denoised, sigma);
        // Deterministic part: Euler from s_i to sigma_down (NAG's stiff part exactly).
        let mut x_next = advance(&x, sigma, sigma_down, &d, stiff.as_ref());
        // Stochastic part: add back sigma_up of fresh noise (none on the step to 0).
        if sigma_next > 0.0 && sigma_up > 0.0 {
            x_next = x_next.add_scaled(sigma_up * st.snoise, &eps);
        }
        let info = StepInfo::single(
            i,
            sigma,
            sigma_next,
            &x,
            &denoised,
            &d,
            &x_next,
            evaluations,
        );
        let flow = finish_step(hooks, &mut sigmas, &info)?;
        x = x_next;
        if flow.is_break() {
            stopped = true;
            break;
        }
    }
    Ok(SampleOutput {
        x,
        sigmas,
        evaluations,
        stopped,
    })
}

/// DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Algorithm 2; k-diffusion `sample_dpmpp_2m`),
/// in t = -ln sigma, h = t_{i+1} - t_i: x_{i+1} = (s_{i+1}/s_i) x_i - expm1(-h) D',
/// D' = D_i on the first and the last step, else (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}, r = h_{i-1}/h.
pub fn dpmpp_2m(args: SamplerArgs, mut x: Batch, hooks: &mut Hooks) -> Result<SampleOutput> {
    let mut sigmas = args.sigmas.clone();
    let mut evaluations = 0;
    let mut stopped = false;
    let mut previous: Option<Denoised> = None;
    for i in 0..sigmas.len() - 1 {
        let (sigma, sigma_next) = (start_level(hooks, &x, i, &mut sigmas)?, sigmas[i + 1]);
        let current = evaluate(&args, &x, sigma, &mut evaluations)?;
        let denoised = &current.denoised;
        let d = slope(&x, denoised, sigma);
        let x_next = if let Some(part) = &current.stiff {
            // NAG's stiff part: the same exponential step, its parts extrapolated as D is.
            let extrapolated = match previous.as_ref().and_then(|p| p.stiff.as_ref()) {
                Some(old) if sigma_next > 0.0 => {
                    let r = (sigmas[i - 1].ln() - sigma.ln()) / (sigma.ln() - sigma_next.ln());
                    part.combine(1.0 + 1.0 / (2.0 * r), old, -1.0 / (2.0 * r))
                }
                _ => None,
            };
            extrapolated
                .as_ref()
                .unwrap_or(part)
                .advance(&x, sigma, sigma_next)
        } else if sigma_next == 0.0 {
            // t_{i+1} = inf: the update collapses to x_{i+1} = D_i (first order).
            denoised.clone()
        } else {
            let h = sigma.ln() - sigma_next.ln();
            let ratio = sigma_next / sigma;
            let weight = -(-h).exp_m1();
            match previous.as_ref() {
                // First step: first order.
                None => Batch::lin_comb(ratio, &x, weight, denoised),
                Some(Denoised { denoised: old, .. }) => {
                    // Multistep: extrapolate the denoised value with r = h_{i-1} / h.
                    let h_last = sigmas[i - 1].ln() - sigma.ln();
                    let r = h_last / h;
                    let d_extrapolated =
                        Batch::lin_comb(1.0 + 1.0 / (2.0 * r), denoised, -1.0 / (2.0 * r), old);
                    Batch::lin_comb(ratio, &x, weight, &d_extrapolated)
                }
            }
        };
        let info = StepInfo::single(i, sigma, sigma_next, &x, denoised, &d, &x_next, evaluations);
        let flow = finish_step(hooks, &mut sigmas, &info)?;
        x = x_next;
        previous = Some(current);
        if flow.is_break() {
            stopped = true;
            break;
        }
    }
    Ok(SampleOutput {
        x,
        sigmas,
        evaluations,
        stopped,
    })
}
