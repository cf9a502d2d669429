//! A Gaussian source N(0, diag(lambda)) in closed form (science.md section 7, seed 004,
//! arXiv 2601.13602). The exact denoiser is linear per eigen-direction, D = lambda/(lambda+s^2) x,
//! so every sampler step multiplies each direction by a scalar (plus independent noise for the
//! stochastic ones) and the state variances follow an exact recursion.

use super::sampler::{SamplerKind, Stochasticity, ancestral_step};
use super::schedule::tangent;
use serde::{Deserialize, Serialize};

/// The ODE slope coefficient a(s) = s / (lambda + s^2): d(x, s) = a(s) x per direction.
fn slope_coefficient(lambda: f64, sigma: f64) -> f64 {
    sigma / (lambda + sigma * sigma)
}

/// Euler's factor 1 + h a(s) from s to s + h.
fn euler_factor(lambda: f64, sigma: f64, h: f64) -> f64 {
    1.0 + h * slope_coefficient(lambda, sigma)
}

/// Heun's factor 1 + h/2 (a(s) + a(s')(1 + h a(s))); Euler when s' = 0.
fn heun_factor(lambda: f64, sigma: f64, sigma_next: f64) -> f64 {
    let h = sigma_next - sigma;
    if sigma_next == 0.0 {
        return euler_factor(lambda, sigma, h);
    }
    let a = slope_coefficient(lambda, sigma);
    1.0 + 0.5 * h * (a + slope_coefficient(lambda, sigma_next) * (1.0 + h * a))
}

/// Exact per-step state variances for a Gaussian source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaussianTheory {
    /// v[i][k]: variance of direction k of the pre-churn state x_i, i = 0..=N.
    pub variances: Vec<Vec<f64>>,
    /// KL(p_data || p_out) = 1/2 sum_k (lambda_k / v_N,k - 1 + ln(v_N,k / lambda_k)).
    pub kl: f64,
    /// The exact noise level of x_i per direction, sqrt(v_i - lambda) (NaN where v_i < lambda:
    /// "cleaner than the data"); the schedule promises sigma_i. i = 0..N-1.
    pub sigma_eff: Vec<Vec<f64>>,
}

/// KL(N(0, diag lambda) || N(0, diag v)).
pub fn kl_gaussian(lambdas: &[f64], v: &[f64]) -> f64 {
    0.5 * lambdas
        .iter()
        .zip(v)
        .map(|(l, v)| l / v - 1.0 + (v / l).ln())
        .sum::<f64>()
}

/// Per-direction state variances of `kind` on `sigmas` (N+1 values ending in 0), from
/// x_0 = sigma_0 z. Churn adds (s_hat^2 - s^2) S_noise^2; ancestral steps add (sigma_up S_noise)^2.
pub fn gaussian_theory(
    lambdas: &[f64],
    sigmas: &[f64],
    kind: SamplerKind,
    st: &Stochasticity,
) -> GaussianTheory {
    let steps = sigmas.len().saturating_sub(1);
    let v0 = sigmas.first().copied().unwrap_or(0.0).powi(2);
    let per_direction: Vec<Vec<f64>> = lambdas
        .iter()
        .map(|&lambda| direction_variances(lambda, sigmas, steps, v0, kind, st))
        .collect();
    // Transpose to [step][direction].
    let variances: Vec<Vec<f64>> = (0..=steps)
        .map(|i| per_direction.iter().map(|v| v[i]).collect())
        .collect();
    let kl = kl_gaussian(lambdas, &variances[steps]);
    let sigma_eff = variances[..steps]
        .iter()
        .map(|v| {
            v.iter()
                .zip(lambdas)
                .map(|(v, l)| if v >= l { (v - l).sqrt() } else { f64::NAN })
                .collect()
        })
        .collect();
    GaussianTheory {
        variances,
        kl,
        sigma_eff,
    }
}

fn direction_variances(
    lambda: f64,
    sigmas: &[f64],
    steps: usize,
    v0: f64,
    kind: SamplerKind,
    st: &Stochasticity,
) -> Vec<f64> {
    let mut v = vec![v0];
    match kind {
        SamplerKind::Euler | SamplerKind::Heun | SamplerKind::Edm => {
            for i in 0..steps {
                let (s, s_next) = (sigmas[i], sigmas[i + 1]);
                let (s_hat, churn) = if kind == SamplerKind::Edm {
                    let gamma = st.gamma(s, steps);
                    let s_hat = s * (gamma + 1.0);
                    let added = if gamma > 0.0 {
                        (s_hat * s_hat - s * s) * st.snoise * st.snoise
                    } else {
                        0.0
                    };
                    (s_hat, added)
                } else {
                    (s, 0.0)
                };
                let f = if kind == SamplerKind::Euler {
                    euler_factor(lambda, s, s_next - s)
                } else {
                    heun_factor(lambda, s_hat, s_next)
                };
                v.push(f * f * (v[i] + churn));
            }
        }
        SamplerKind::EulerAncestral => {
            for i in 0..steps {
                let (s, s_next) = (sigmas[i], sigmas[i + 1]);
                let (down, up) = ancestral_step(s, s_next, st.eta);
                let f = euler_factor(lambda, s, down - s);
                let noise = if s_next > 0.0 {
                    (up * st.snoise).powi(2)
                } else {
                    0.0
                };
                v.push(f * f * v[i] + noise);
            }
        }
        SamplerKind::DpmPp2m => {
            // Deterministic with memory: track the multiplier m_i with x_i = m_i x_0.
            let mut m = vec![1.0];
            let g = |s: f64| lambda / (lambda + s * s);
            for i in 0..steps {
                let (s, s_next) = (sigmas[i], sigmas[i + 1]);
                let next = if s_next == 0.0 {
                    g(s) * m[i]
                } else {
                    let h = s.ln() - s_next.ln();
                    let (ratio, weight) = (s_next / s, -(-h).exp_m1());
                    if i == 0 {
                        (ratio + weight * g(s)) * m[i]
                    } else {
                        let r = (sigmas[i - 1].ln() - s.ln()) / h;
                        (ratio + weight * (1.0 + 0.5 / r) * g(s)) * m[i]
                            - weight * (0.5 / r) * g(sigmas[i - 1]) * m[i - 1]
                    }
                };
                m.push(next);
                v.push(v0 * next * next);
            }
        }
    }
    v
}

/// The tangent coefficient c minimising the closed-form KL for a Gaussian spectrum (seed 004):
/// a scan over ln c, then golden-section refinement.
pub fn best_tangent_c(
    lambdas: &[f64],
    steps: usize,
    sigma_min: f64,
    sigma_max: f64,
    kind: SamplerKind,
) -> f64 {
    let st = Stochasticity::default();
    let kl_of = |ln_c: f64| {
        let s = tangent(steps, sigma_min, sigma_max, ln_c.exp());
        let kl = gaussian_theory(lambdas, &s, kind, &st).kl;
        if kl.is_finite() { kl } else { f64::INFINITY }
    };
    let lo_l = lambdas
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1e-12);
    let hi_l = lambdas.iter().copied().fold(0.0, f64::max).max(lo_l);
    let (a, b) = (0.5 * lo_l.ln() - 6.0, 0.5 * hi_l.ln() + 6.0);
    let n = 121;
    let nodes: Vec<f64> = (0..n)
        .map(|k| a + (b - a) * k as f64 / (n - 1) as f64)
        .collect();
    let values: Vec<f64> = nodes.iter().map(|&u| kl_of(u)).collect();
    let best = (0..n)
        .min_by(|&i, &j| values[i].total_cmp(&values[j]))
        .unwrap_or(0);
    let (mut lo, mut hi) = (nodes[best.saturating_sub(1)], nodes[(best + 1).min(n - 1)]);
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let (m1, m2) = (hi - phi * (hi - lo), lo + phi * (hi - lo));
        if kl_of(m1) < kl_of(m2) {
            hi = m2;
        } else {
            lo = m1;
        }
    }
    (0.5 * (lo + hi)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schedule::karras;

    #[test]
    fn exact_flow_keeps_variance_lambda_plus_sigma_squared_in_the_limit() {
        // With many steps Heun follows the exact flow x ∝ sqrt(lambda + s^2): v_N -> lambda * s0^2/(lambda + s0^2).
        let lambda = 0.7;
        let s = karras(2000, 0.002, 80.0, 7.0);
        let th = gaussian_theory(&[lambda], &s, SamplerKind::Heun, &Stochasticity::default());
        let expect = lambda * 80.0f64.powi(2) / (lambda + 80.0f64.powi(2));
        // The last Euler step from 0.002 adds O(sigma_min^2) error.
        assert!(
            (th.variances[2000][0] - expect).abs() < 1e-5,
            "{}",
            th.variances[2000][0]
        );
    }

    #[test]
    fn kl_is_zero_only_at_equal_variances() {
        assert_eq!(kl_gaussian(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!(kl_gaussian(&[1.0], &[1.1]) > 0.0);
        assert!(kl_gaussian(&[1.0], &[0.9]) > 0.0);
    }

    #[test]
    fn best_tangent_c_for_one_eigenvalue_is_near_sqrt_lambda() {
        for lambda in [0.04, 1.0, 9.0] {
            let c = best_tangent_c(&[lambda], 64, 0.002, 80.0, SamplerKind::Euler);
            let ratio = c / lambda.sqrt();
            assert!((0.7..1.4).contains(&ratio), "lambda {lambda}: c {c}");
        }
    }
}
