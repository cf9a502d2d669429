//! The one denoiser call convention: D(x; sigma, cond) on a batch, host tensors in and out.

use super::Batch;
use crate::error::Result;

/// What a denoiser is conditioned on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cond {
    /// Class label per row (CFG's condition c); `None` is the unconditional model.
    pub class: Option<Vec<u32>>,
    /// `true`: the ordinary noise-conditional D(x; sigma). `false`: the noise-UNconditional model of
    /// NAG (seed 000): for analytic models D(x; none) = x + sigma^2 s(x) with s the score of
    /// p(x) = int p(x; s) pi(s) ds; for learned ones the noise-dropped branch x - sigma E[n | x],
    /// sigma ~ the dropped rows' training law pi_none (docs/learned-denoisers.md).
    pub noise_conditional: bool,
}

impl Cond {
    /// The plain model: all classes, noise-conditional.
    pub fn plain() -> Self {
        Cond {
            class: None,
            noise_conditional: true,
        }
    }

    pub fn with_class(class: Option<Vec<u32>>) -> Self {
        Cond {
            class,
            noise_conditional: true,
        }
    }

    /// The same class condition with the noise condition dropped (NAG's second call).
    pub fn without_noise(&self) -> Self {
        Cond {
            class: self.class.clone(),
            noise_conditional: false,
        }
    }

    /// The condition of some rows of the batch (the class labels at `rows`, in that order).
    pub fn for_rows(&self, rows: &[usize]) -> Self {
        Cond {
            class: self
                .class
                .as_ref()
                .map(|c| rows.iter().map(|&r| c[r]).collect()),
            noise_conditional: self.noise_conditional,
        }
    }

    /// The same noise condition with the class dropped (CFG's unconditional call).
    pub fn without_class(&self) -> Self {
        Cond {
            class: None,
            noise_conditional: self.noise_conditional,
        }
    }
}

/// A denoiser D(x; sigma, cond) ~ E[y | x], EDM convention (x = y + sigma n).
pub trait Denoiser: Send + Sync {
    /// Dimension of one sample.
    fn dim(&self) -> usize;
    /// Number of classes a `Cond::class` may name (0: unconditional only).
    fn num_classes(&self) -> usize {
        0
    }
    /// D(x; sigma, cond) for every row of `x`.
    fn denoise(&self, x: &Batch, sigma: f64, cond: &Cond) -> Result<Batch>;

    /// D(x; sigma, cond) and, for guidance with a stiff part (NAG), that part, so a sampler can
    /// integrate it exactly (`StiffPart::advance`). Plain denoisers have none.
    fn denoise_split(&self, x: &Batch, sigma: f64, cond: &Cond) -> Result<Denoised> {
        Ok(Denoised {
            denoised: self.denoise(x, sigma, cond)?,
            stiff: None,
        })
    }
}

/// A denoiser's output with its stiff part, if any.
#[derive(Clone, Debug)]
pub struct Denoised {
    pub denoised: Batch,
    pub stiff: Option<StiffPart>,
}

/// NAG's stiff part (science.md section 4): the guided output written as
/// D_w(x; sigma) = x - k (x - A) + (k - 1) sigma E, with k = 1 + w the rate at which the guided ODE
/// dx/dsigma = (x - D_w) / sigma = k (x - A) / sigma - (k - 1) E pulls a state toward its anchor A,
/// and E = (x - D_none) / sigma the noise-dropped model's noise estimate. A and E change little
/// along a step (|E| is a posterior mean of |n| whatever the state's distance from the data), the
/// factor k / sigma does not: an explicit step multiplies an off-schedule error by 1 - k r,
/// r = 1 - sigma_next / sigma, and diverges once k r > 2.
#[derive(Clone, Debug, PartialEq)]
pub struct StiffPart {
    /// A: where the guided ODE relaxes to (the conditional denoiser, or its mean with the guide's).
    pub anchor: Batch,
    /// E = (x - D_none) / sigma.
    pub drift: Batch,
    /// k = 1 + w.
    pub rate: f64,
}

impl StiffPart {
    /// The exact solution from sigma to sigma_next of dx/dsigma = k (x - A) / sigma - (k - 1) E
    /// with A and E held (an exponential-integrator step, as DDIM is for the plain ODE):
    /// x' = A + sigma' E + (sigma'/sigma)^k (x - A - sigma E). Stable at any step length (the
    /// factor lies in [0, 1) for k > 0); with k = 1 it is Euler's step.
    pub fn advance(&self, x: &Batch, sigma: f64, sigma_next: f64) -> Batch {
        let decay = (sigma_next / sigma).powf(self.rate);
        let data = x
            .data
            .iter()
            .zip(self.anchor.data.iter().zip(&self.drift.data))
            .map(|(xi, (a, e))| a + sigma_next * e + decay * (xi - a - sigma * e))
            .collect();
        Batch { data, ..*x }
    }

    /// The exact solution from sigma to sigma_next > 0 of the same ODE with A and E linear in
    /// ln sigma between this part (at sigma) and `end`'s (at sigma_next): the exponential
    /// trapezoid (second order, as ETD2 is; Heun's corrector for NAG's stiff part). In
    /// u = ln sigma, dx/du = k (x - A) - (k - 1) e^u E, so with h = ln(sigma_next / sigma),
    /// x' = e^(kh) x + a0 A0 + a1 A1 + b0 E0 + b1 E1 with weights from integrals of e^(k(h - s))
    /// (times e^s for E) against 1 - s/h and s/h. `None` if the rates differ or sigma_next = 0.
    pub fn advance_trapezoid(
        &self,
        end: &StiffPart,
        x: &Batch,
        sigma: f64,
        sigma_next: f64,
    ) -> Option<Batch> {
        if self.rate != end.rate || sigma_next <= 0.0 {
            return None;
        }
        let k = self.rate;
        let h = (sigma_next / sigma).ln();
        let decay = (k * h).exp();
        // int_0^h e^(k(h-s)) (s/h) ds * k = -phi with phi = (e^(kh) - 1 - kh) / (kh).
        let kh = k * h;
        let phi = if kh.abs() < 1e-3 {
            kh / 2.0 + kh * kh / 6.0 + kh * kh * kh / 24.0
        } else {
            (kh.exp_m1() - kh) / kh
        };
        let (a0, a1) = (1.0 - decay + phi, -phi);
        // P = int_0^h e^(k(h-s) + s) ds, Q = int_0^h e^(k(h-s) + s) (s/h) ds, c = 1 - k.
        let z = (1.0 - k) * h;
        let p = decay * h * if z.abs() < 1e-8 { 1.0 } else { z.exp_m1() / z };
        let g = if z.abs() < 1e-2 {
            0.5 + z / 3.0 + z * z / 8.0 + z * z * z / 30.0
        } else {
            (z.exp() * (z - 1.0) + 1.0) / (z * z)
        };
        let q = decay * h * g;
        let (b0, b1) = (-(k - 1.0) * sigma * (p - q), -(k - 1.0) * sigma * q);
        let data = x
            .data
            .iter()
            .enumerate()
            .map(|(i, xi)| {
                decay * xi
                    + a0 * self.anchor.data[i]
                    + a1 * end.anchor.data[i]
                    + b0 * self.drift.data[i]
                    + b1 * end.drift.data[i]
            })
            .collect();
        Some(Batch { data, ..*x })
    }

    /// a self + b other, part by part (DPM-Solver++(2M)'s extrapolation); `None` if the rates differ.
    pub fn combine(&self, a: f64, other: &StiffPart, b: f64) -> Option<StiffPart> {
        (self.rate == other.rate).then(|| StiffPart {
            anchor: Batch::lin_comb(a, &self.anchor, b, &other.anchor),
            drift: Batch::lin_comb(a, &self.drift, b, &other.drift),
            rate: self.rate,
        })
    }

    /// D_w = x - k (x - A) + (k - 1) sigma E.
    pub fn denoised(&self, x: &Batch, sigma: f64) -> Batch {
        let k = self.rate;
        let data = x
            .data
            .iter()
            .zip(self.anchor.data.iter().zip(&self.drift.data))
            .map(|(xi, (a, e))| xi - k * (xi - a) + (k - 1.0) * sigma * e)
            .collect();
        Batch { data, ..*x }
    }

    pub fn is_finite(&self) -> bool {
        self.anchor.is_finite() && self.drift.is_finite()
    }
}

/// The ODE slope d(x, sigma) = (x - D) / sigma (EDM eq. 3 with sigma(t) = t).
pub fn slope(x: &Batch, denoised: &Batch, sigma: f64) -> Batch {
    let data = x
        .data
        .iter()
        .zip(&denoised.data)
        .map(|(xi, di)| (xi - di) / sigma)
        .collect();
    Batch { data, ..*x }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(anchor: f64, drift: f64, rate: f64) -> StiffPart {
        StiffPart {
            anchor: Batch::from_vec(1, 1, vec![anchor]).expect("1 value"),
            drift: Batch::from_vec(1, 1, vec![drift]).expect("1 value"),
            rate,
        }
    }

    /// RK4 in u = ln sigma on dx/du = k (x - A(u)) - (k - 1) e^u E(u), A and E linear in u
    /// between their values at the two ends.
    fn reference(x: f64, from: &StiffPart, to: &StiffPart, sigma: f64, sigma_next: f64) -> f64 {
        let (u0, u1) = (sigma.ln(), sigma_next.ln());
        let k = from.rate;
        let lerp = |a: f64, b: f64, u: f64| a + (b - a) * (u - u0) / (u1 - u0);
        let f = |u: f64, x: f64| {
            let a = lerp(from.anchor.data[0], to.anchor.data[0], u);
            let e = lerp(from.drift.data[0], to.drift.data[0], u);
            k * (x - a) - (k - 1.0) * u.exp() * e
        };
        let n = 20_000;
        let h = (u1 - u0) / n as f64;
        let mut x = x;
        for i in 0..n {
            let u = u0 + i as f64 * h;
            let k1 = f(u, x);
            let k2 = f(u + h / 2.0, x + h / 2.0 * k1);
            let k3 = f(u + h / 2.0, x + h / 2.0 * k2);
            let k4 = f(u + h, x + h * k3);
            x += h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4);
        }
        x
    }

    #[test]
    fn the_exponential_step_solves_the_frozen_guided_ode_and_is_euler_at_rate_one() -> Result<()> {
        let x = Batch::from_vec(1, 1, vec![1.7])?;
        for (k, sigma, next) in [(3.0, 2.0, 0.3), (4.0, 80.0, 20.0), (1.5, 0.01, 0.002)] {
            let p = part(0.4, -0.9, k);
            let got = p.advance(&x, sigma, next).data[0];
            let want = reference(1.7, &p, &p, sigma, next);
            assert!(
                (got - want).abs() < 1e-9 * (1.0 + want.abs()),
                "{got} {want}"
            );
            // Its derivative at the start is the guided slope (x - D_w) / sigma.
            let dw = p.denoised(&x, sigma).data[0];
            let eps = 1e-6 * sigma;
            let moved = p.advance(&x, sigma, sigma - eps).data[0];
            let slope = (1.7 - dw) / sigma;
            assert!(((1.7 - moved) / eps - slope).abs() < 1e-4 * (1.0 + slope.abs()));
        }
        // k = 1 (no guidance): Euler's step, sigma' = 0 included.
        let p = part(0.4, -0.9, 1.0);
        for next in [0.5, 0.0] {
            let euler = 1.7 + (next - 2.0) * (1.7 - p.denoised(&x, 2.0).data[0]) / 2.0;
            assert!((p.advance(&x, 2.0, next).data[0] - euler).abs() < 1e-12);
        }
        Ok(())
    }

    #[test]
    fn the_exponential_trapezoid_is_exact_for_parts_linear_in_ln_sigma() -> Result<()> {
        let x = Batch::from_vec(1, 1, vec![-0.6])?;
        // Long and short steps, rates far from and near 1 (the series branches).
        for (k, sigma, next) in [
            (3.0, 2.0, 0.3),
            (4.0, 1.0, 0.05),
            (1.005, 2.0, 0.3),
            (3.0, 1.0, 0.99995),
        ] {
            let (from, to) = (part(0.4, -0.9, k), part(-0.2, 1.3, k));
            let got = from
                .advance_trapezoid(&to, &x, sigma, next)
                .expect("same rate, sigma_next > 0")
                .data[0];
            let want = reference(-0.6, &from, &to, sigma, next);
            assert!(
                (got - want).abs() < 1e-9 * (1.0 + want.abs()),
                "k {k} {sigma} -> {next}: {got} vs {want}"
            );
            // Equal ends: the one-part step.
            let same = from
                .advance_trapezoid(&from, &x, sigma, next)
                .expect("same");
            assert!((same.data[0] - from.advance(&x, sigma, next).data[0]).abs() < 1e-12);
        }
        let (a, b) = (part(0.0, 0.0, 3.0), part(0.0, 0.0, 2.0));
        assert!(a.advance_trapezoid(&b, &x, 1.0, 0.5).is_none());
        assert!(a.advance_trapezoid(&a, &x, 1.0, 0.0).is_none());
        Ok(())
    }
}
