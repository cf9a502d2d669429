//! The information profile of a data set (InfoNoise, seed 003, arXiv 2602.18647; science.md
//! section 8) and densities over ln sigma with exact inverse-CDF draws.
//!
//! mmse(sigma) = E||D(y + sigma n; sigma) - y||^2 / dim of the ideal denoiser is what the data
//! still hides at noise level sigma; the forward process's conditional-entropy rate is
//! rho(sigma) ∝ mmse / sigma^3 per d sigma, i.e. mmse / sigma^2 per d ln sigma. The profile is
//! exact in closed form for a Gaussian and by Monte Carlo for any other exact denoiser; the info
//! step schedule and InfoNoise's training distribution (`infonoise.rs`) are built on it.

use serde::{Deserialize, Serialize};

use super::Batch;
use super::denoiser::{Cond, Denoiser};
use super::noise::{Rng, initial_noise};
use crate::error::{Error, Result};

/// Densities are floored at this many nats below their peak: e^-690 ~ 1e-300 is zero for every
/// draw and quantile, and keeps ln values finite where mmse vanishes (memorised data).
const LN_FLOOR_BELOW_PEAK: f64 = 690.0;

/// mmse(sigma)/dim of N(mu, Sigma) with eigenvalues `lambdas`, in closed form:
/// (1/d) sum_k lambda_k sigma^2 / (lambda_k + sigma^2) (science.md section 8).
pub fn gaussian_mmse(lambdas: &[f64], sigma: f64) -> f64 {
    let s2 = sigma * sigma;
    lambdas.iter().map(|l| l * s2 / (l + s2)).sum::<f64>() / lambdas.len().max(1) as f64
}

/// `n` noise levels from `lo` to `hi`, equally spaced in ln sigma (n >= 2).
pub fn log_sigma_grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let (a, b) = (lo.ln(), hi.ln());
    let n = n.max(2);
    (0..n)
        .map(|k| match k {
            0 => lo,
            _ if k == n - 1 => hi,
            _ => (a + (b - a) * k as f64 / (n - 1) as f64).exp(),
        })
        .collect()
}

/// The low-noise gate sigma^n / (sigma^n + c^n) that InfoNoise puts on rho (science.md section 8),
/// as its logarithm -ln(1 + (c/sigma)^n).
pub fn ln_low_noise_gate(sigma: f64, c: f64, power: f64) -> f64 {
    -(c / sigma).powf(power).ln_1p()
}

/// The onset rule: the first sigma (ascending) where the max-normalised `rho` reaches `p`
/// (science.md section 8: p = 0.002); `ln_rho` may be unnormalised. The first level when none does.
pub fn onset_sigma(sigmas: &[f64], ln_rho: &[f64], p: f64) -> f64 {
    let peak = ln_rho.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let threshold = peak + p.ln();
    sigmas
        .iter()
        .zip(ln_rho)
        .find(|(_, l)| **l >= threshold)
        .or(sigmas.first().zip(ln_rho.first()))
        .map_or(f64::NAN, |(s, _)| *s)
}

/// mmse(sigma)/dim on a grid of noise levels: a data set's information profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InformationProfile {
    /// Noise levels, strictly increasing.
    pub sigmas: Vec<f64>,
    /// mmse(sigma)/dim at each level.
    pub mmse: Vec<f64>,
    /// The Monte Carlo standard error of each value (0 for a closed form).
    pub stderr: Vec<f64>,
}

impl InformationProfile {
    /// The closed form for a Gaussian with covariance eigenvalues `lambdas`.
    pub fn gaussian(lambdas: &[f64], sigmas: &[f64]) -> Self {
        InformationProfile {
            sigmas: sigmas.to_vec(),
            mmse: sigmas.iter().map(|&s| gaussian_mmse(lambdas, s)).collect(),
            stderr: vec![0.0; sigmas.len()],
        }
    }

    /// mmse(sigma)/dim of `denoiser` by Monte Carlo: the mean of ||D(y + sigma n; sigma) - y||^2/dim
    /// over the rows y of `clean`, with its standard error. The same noise n serves every level
    /// (common random numbers), so the curve is smooth in sigma while each value stays unbiased.
    pub fn monte_carlo(
        denoiser: &dyn Denoiser,
        clean: &Batch,
        sigmas: &[f64],
        seed: u64,
    ) -> Result<Self> {
        check_levels(sigmas)?;
        clean.expect_dim(denoiser.dim(), "the clean samples")?;
        if clean.rows < 2 {
            return Err(Error::InvalidSpec(
                "a Monte Carlo profile needs at least two samples".into(),
            ));
        }
        let noise = initial_noise(seed, clean.rows, clean.dim);
        let (mut mmse, mut stderr) = (Vec::new(), Vec::new());
        for &sigma in sigmas {
            let x = clean.add_scaled(sigma, &noise);
            let denoised = denoiser.denoise(&x, sigma, &Cond::plain())?;
            let errors: Vec<f64> = (0..clean.rows)
                .map(|r| {
                    let (d, y) = (denoised.row(r), clean.row(r));
                    d.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / clean.dim as f64
                })
                .collect();
            let (mean, se) = mean_and_stderr(&errors);
            mmse.push(mean);
            stderr.push(se);
        }
        Ok(InformationProfile {
            sigmas: sigmas.to_vec(),
            mmse,
            stderr,
        })
    }

    /// ln mmse at `sigma`, linear in ln sigma between levels. Beyond the grid the limits of the
    /// bound mmse <= min(sigma^2, variance) are followed: mmse/sigma^2 held below, mmse held above.
    pub fn ln_mmse_at(&self, sigma: f64) -> f64 {
        self.ln_interpolator()(sigma)
    }

    fn ln_interpolator(&self) -> impl Fn(f64) -> f64 + '_ {
        let ln_m: Vec<f64> = self
            .mmse
            .iter()
            .map(|m| m.max(f64::MIN_POSITIVE).ln())
            .collect();
        let t: Vec<f64> = self.sigmas.iter().map(|s| s.ln()).collect();
        move |sigma: f64| {
            let x = sigma.ln();
            let last = t.len() - 1;
            if x <= t[0] {
                return ln_m[0] + 2.0 * (x - t[0]);
            }
            if x >= t[last] {
                return ln_m[last];
            }
            let k = t.partition_point(|&v| v <= x).clamp(1, last);
            let w = (x - t[k - 1]) / (t[k] - t[k - 1]);
            ln_m[k - 1] + w * (ln_m[k] - ln_m[k - 1])
        }
    }

    /// The information density over ln sigma on [lo, hi]: rho per d ln sigma = mmse / sigma^2,
    /// normalised. Nodes: the profile's levels inside (lo, hi) and the two ends.
    pub fn entropy_rate(&self, lo: f64, hi: f64) -> Result<LogSigmaDensity> {
        check_levels(&self.sigmas)?;
        if !(lo > 0.0 && hi > lo && hi.is_finite()) {
            return Err(Error::InvalidSpec(format!(
                "the information density needs 0 < lo < hi, got {lo} .. {hi}"
            )));
        }
        let mut nodes = vec![lo];
        nodes.extend(self.sigmas.iter().copied().filter(|&s| s > lo && s < hi));
        nodes.push(hi);
        let ln_sigmas: Vec<f64> = nodes.iter().map(|s| s.ln()).collect();
        let ln_mmse = self.ln_interpolator();
        let ln_values = nodes
            .iter()
            .zip(&ln_sigmas)
            .map(|(&s, t)| ln_mmse(s) - 2.0 * t)
            .collect();
        LogSigmaDensity::new(ln_sigmas, ln_values)
    }
}

fn check_levels(sigmas: &[f64]) -> Result<()> {
    let increasing = sigmas.windows(2).all(|w| w[0] < w[1]);
    if sigmas.len() < 2 || !increasing || sigmas.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::InvalidSpec(
            "a profile needs at least two positive, increasing noise levels".into(),
        ));
    }
    Ok(())
}

/// The mean of `values` and its standard error (sample std / sqrt(n)).
pub fn mean_and_stderr(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

/// expm1(z)/z, 1 at z = 0: the mass of an exponential segment relative to its left end.
fn expm1_over(z: f64) -> f64 {
    if z.abs() < 1e-10 {
        1.0 + 0.5 * z
    } else {
        z.exp_m1() / z
    }
}

/// A probability density over t = ln sigma, log-linear between nodes (exponential pieces), so
/// its CDF and quantile function are exact in closed form and inverse-CDF draws reproduce it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogSigmaDensity {
    /// Nodes t_0 < ... < t_K in ln sigma (the support is [t_0, t_K]).
    ln_sigmas: Vec<f64>,
    /// ln of the normalised density per d ln sigma at the nodes.
    ln_density: Vec<f64>,
    /// The CDF at the nodes: 0 at t_0, 1 at t_K.
    cdf: Vec<f64>,
}

impl LogSigmaDensity {
    /// From unnormalised ln densities per d ln sigma at increasing nodes; values more than
    /// 690 nats below the peak (or -inf) count as e^-690 of it.
    pub fn new(ln_sigmas: Vec<f64>, ln_values: Vec<f64>) -> Result<Self> {
        let ordered = ln_sigmas.windows(2).all(|w| w[0] < w[1]);
        if ln_sigmas.len() < 2
            || ln_values.len() != ln_sigmas.len()
            || !ordered
            || ln_sigmas.iter().any(|t| !t.is_finite())
            || ln_values.iter().any(|v| v.is_nan() || *v == f64::INFINITY)
        {
            return Err(Error::InvalidSpec(
                "a density over ln sigma needs increasing finite nodes and one value per node"
                    .into(),
            ));
        }
        let peak = ln_values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !peak.is_finite() {
            return Err(Error::InvalidSpec("the density is zero everywhere".into()));
        }
        let shifted: Vec<f64> = ln_values
            .iter()
            .map(|v| (v - peak).max(-LN_FLOOR_BELOW_PEAK))
            .collect();
        let mut cdf = vec![0.0];
        for k in 0..ln_sigmas.len() - 1 {
            let mass = segment_mass(shifted[k], shifted[k + 1], ln_sigmas[k + 1] - ln_sigmas[k]);
            cdf.push(cdf[k] + mass);
        }
        let total = cdf[cdf.len() - 1];
        for c in &mut cdf {
            *c /= total;
        }
        let last = cdf.len() - 1;
        cdf[last] = 1.0;
        let ln_total = total.ln();
        Ok(LogSigmaDensity {
            ln_density: shifted.iter().map(|v| v - ln_total).collect(),
            ln_sigmas,
            cdf,
        })
    }

    /// The support [sigma_lo, sigma_hi].
    pub fn support(&self) -> (f64, f64) {
        (
            self.ln_sigmas[0].exp(),
            self.ln_sigmas[self.ln_sigmas.len() - 1].exp(),
        )
    }

    /// The nodes in ln sigma and the density per d ln sigma there (for plots).
    pub fn nodes(&self) -> (&[f64], Vec<f64>) {
        (
            &self.ln_sigmas,
            self.ln_density.iter().map(|v| v.exp()).collect(),
        )
    }

    /// The segment holding t: k with t_k <= t <= t_{k+1}.
    fn segment(&self, t: f64) -> usize {
        let last = self.ln_sigmas.len() - 1;
        self.ln_sigmas.partition_point(|&v| v <= t).clamp(1, last) - 1
    }

    /// The slope of ln density on segment k.
    fn slope(&self, k: usize) -> f64 {
        (self.ln_density[k + 1] - self.ln_density[k]) / (self.ln_sigmas[k + 1] - self.ln_sigmas[k])
    }

    /// The density per d ln sigma at t = ln sigma (0 outside the support).
    pub fn pdf(&self, t: f64) -> f64 {
        let (a, b) = (self.ln_sigmas[0], self.ln_sigmas[self.ln_sigmas.len() - 1]);
        if !(a..=b).contains(&t) {
            return 0.0;
        }
        let k = self.segment(t);
        (self.ln_density[k] + self.slope(k) * (t - self.ln_sigmas[k])).exp()
    }

    /// P(ln sigma <= t).
    pub fn cdf(&self, t: f64) -> f64 {
        let (a, b) = (self.ln_sigmas[0], self.ln_sigmas[self.ln_sigmas.len() - 1]);
        if t <= a {
            return 0.0;
        }
        if t >= b {
            return 1.0;
        }
        let k = self.segment(t);
        let tau = t - self.ln_sigmas[k];
        let within = self.ln_density[k].exp() * tau * expm1_over(self.slope(k) * tau);
        (self.cdf[k] + within).min(1.0)
    }

    /// The t = ln sigma with cdf(t) = p (the inverse CDF), exact: inside a segment of density
    /// e^(a + b tau), the mass up to tau is e^a (e^(b tau) - 1)/b, inverted by ln1p.
    pub fn quantile(&self, p: f64) -> f64 {
        let last = self.ln_sigmas.len() - 1;
        if p <= 0.0 {
            return self.ln_sigmas[0];
        }
        if p >= 1.0 {
            return self.ln_sigmas[last];
        }
        let k = self.cdf.partition_point(|&c| c <= p).clamp(1, last) - 1;
        let h = self.ln_sigmas[k + 1] - self.ln_sigmas[k];
        let scaled = (p - self.cdf[k]) * (-self.ln_density[k]).exp();
        let b = self.slope(k);
        let tau = if (b * h).abs() < 1e-10 {
            scaled
        } else if b * scaled <= -1.0 {
            h
        } else {
            (b * scaled).ln_1p() / b
        };
        self.ln_sigmas[k] + tau.clamp(0.0, h)
    }

    /// `n` noise levels drawn by inverse CDF from `rng`.
    pub fn draw(&self, rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.quantile(rng.uniform()).exp()).collect()
    }
}

/// The integral over [0, h] of exp(a + (b - a) tau / h), overflow-free for a, b <= 0.
fn segment_mass(a: f64, b: f64, h: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    // The same integral read from the larger end: e^hi h expm1(-(hi - lo))/(-(hi - lo)).
    hi.exp() * h * expm1_over(lo - hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Batch;

    /// A Gaussian N(0, diag(lambdas)) denoiser, exact.
    struct Gauss(Vec<f64>);
    impl Denoiser for Gauss {
        fn dim(&self) -> usize {
            self.0.len()
        }
        fn denoise(&self, x: &Batch, sigma: f64, _cond: &Cond) -> Result<Batch> {
            let mut out = x.clone();
            for r in 0..x.rows {
                for (v, l) in out.row_mut(r).iter_mut().zip(&self.0) {
                    *v *= l / (l + sigma * sigma);
                }
            }
            Ok(out)
        }
    }

    fn gaussian_samples(lambdas: &[f64], rows: usize, seed: u64) -> Batch {
        let mut rng = Rng::new(seed);
        let mut b = Batch::zeros(rows, lambdas.len());
        for r in 0..rows {
            for (v, l) in b.row_mut(r).iter_mut().zip(lambdas) {
                *v = l.sqrt() * rng.normal();
            }
        }
        b
    }

    #[test]
    fn monte_carlo_profile_of_a_gaussian_equals_the_closed_form_within_its_standard_error()
    -> Result<()> {
        let lambdas = [4.0, 1.0, 0.25, 0.01];
        let sigmas = log_sigma_grid(0.002, 80.0, 25);
        let clean = gaussian_samples(&lambdas, 4000, 7);
        let mc = InformationProfile::monte_carlo(&Gauss(lambdas.to_vec()), &clean, &sigmas, 3)?;
        let exact = InformationProfile::gaussian(&lambdas, &sigmas);
        for k in 0..sigmas.len() {
            let z = (mc.mmse[k] - exact.mmse[k]) / mc.stderr[k];
            // 25 levels: |z| < 3.5 holds for all of them with probability > 0.99.
            assert!(z.abs() < 3.5, "sigma {}: z = {z}", sigmas[k]);
            assert!(mc.stderr[k] > 0.0 && mc.stderr[k] < 0.1 * exact.mmse[k]);
        }
        // The closed form by hand: one eigenvalue 1 at sigma 1 gives 1/2.
        assert!((gaussian_mmse(&[1.0], 1.0) - 0.5).abs() < 1e-15);
        // A wrong model is caught: the MC mean of a denoiser that ignores lambda = 0.01.
        let wrong = Gauss(vec![4.0, 1.0, 0.25, 1.0]);
        let off = InformationProfile::monte_carlo(&wrong, &clean, &sigmas, 3)?;
        let k = sigmas.partition_point(|&s| s < 0.3);
        assert!((off.mmse[k] - exact.mmse[k]).abs() > 5.0 * off.stderr[k]);
        Ok(())
    }

    #[test]
    fn the_entropy_rate_of_a_gaussian_has_its_closed_form_cdf() -> Result<()> {
        // One eigenvalue: the integral of lambda/(lambda + s^2) d ln s is -ln(1 + lambda/s^2)/2.
        let lambda = 0.25;
        let (lo, hi) = (0.002, 80.0);
        let profile = InformationProfile::gaussian(&[lambda], &log_sigma_grid(lo, hi, 200));
        let density = profile.entropy_rate(lo, hi)?;
        let g = |s: f64| -0.5 * (lambda / (s * s)).ln_1p();
        for s in [0.01, 0.1, 0.5, 1.0, 5.0] {
            let exact = (g(s) - g(lo)) / (g(hi) - g(lo));
            // Log-linear interpolation on a 0.053-wide grid: second-order error ~ 1e-4.
            assert!(
                (density.cdf(s.ln()) - exact).abs() < 5e-4,
                "{s}: {}",
                density.cdf(s.ln())
            );
        }
        Ok(())
    }

    #[test]
    fn inverse_cdf_draws_reproduce_their_density_ks_test_on_1e5_draws() -> Result<()> {
        // A lopsided piecewise density with a steep rise, a plateau and a floored hole.
        let t = vec![-6.0, -3.0, -1.0, 0.0, 0.5, 2.0, 4.0];
        let ln_v = vec![-8.0, -1.0, 0.0, 0.3, f64::NEG_INFINITY, -2.0, -6.0];
        let density = LogSigmaDensity::new(t.clone(), ln_v)?;
        let n = 100_000;
        let mut draws: Vec<f64> = density
            .draw(&mut Rng::new(42), n)
            .iter()
            .map(|s| s.ln())
            .collect();
        draws.sort_by(f64::total_cmp);
        let ks = |cdf: &dyn Fn(f64) -> f64| {
            draws
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let f = cdf(x);
                    (f - i as f64 / n as f64)
                        .abs()
                        .max((f - (i + 1) as f64 / n as f64).abs())
                })
                .fold(0.0, f64::max)
        };
        // Kolmogorov's 1% critical value: 1.63 / sqrt(n).
        let critical = 1.63 / (n as f64).sqrt();
        let d = ks(&|x| density.cdf(x));
        assert!(d < critical, "KS distance {d} >= {critical}");
        // The test has power: the same draws against a density shifted by 0.05 in ln sigma fail.
        let d_shifted = ks(&|x| density.cdf(x - 0.05));
        assert!(d_shifted > critical, "shifted {d_shifted}");
        // Chi-square over 40 equal-probability cells, 39 degrees of freedom: 1% point 62.4.
        let cells = 40;
        let mut counts = vec![0usize; cells];
        for &x in &draws {
            counts[((density.cdf(x) * cells as f64) as usize).min(cells - 1)] += 1;
        }
        let expect = n as f64 / cells as f64;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expect).powi(2) / expect)
            .sum();
        assert!(chi2 < 62.4, "chi-square {chi2}");
        // Quantile and CDF are inverse to each other; the pdf integrates to the CDF.
        for p in [1e-6, 0.01, 0.3, 0.5, 0.77, 0.999] {
            assert!((density.cdf(density.quantile(p)) - p).abs() < 1e-12, "{p}");
        }
        let (a, b) = (-2.0, 1.7);
        let m = 20_000;
        let h = (b - a) / m as f64;
        let integral: f64 = (0..m)
            .map(|i| density.pdf(a + (i as f64 + 0.5) * h) * h)
            .sum();
        assert!((integral - (density.cdf(b) - density.cdf(a))).abs() < 1e-6);
        assert!(density.draw(&mut Rng::new(1), 1000).iter().all(|s| {
            let (lo, hi) = density.support();
            (lo..=hi).contains(s)
        }));
        Ok(())
    }

    #[test]
    fn gate_and_onset() {
        assert!((ln_low_noise_gate(0.2, 0.2, 3.0) - 0.5f64.ln()).abs() < 1e-15);
        assert!(ln_low_noise_gate(100.0, 0.2, 3.0) > -1e-8);
        let sigmas = [0.01, 0.1, 1.0, 10.0];
        let ln_rho = [-20.0, -5.0, 0.0, -1.0];
        // e^-5 = 0.0067 >= 0.002 > e^-20.
        assert_eq!(onset_sigma(&sigmas, &ln_rho, 0.002), 0.1);
        assert_eq!(onset_sigma(&sigmas, &ln_rho, 0.5), 1.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(LogSigmaDensity::new(vec![0.0], vec![0.0]).is_err());
        assert!(LogSigmaDensity::new(vec![1.0, 0.0], vec![0.0, 0.0]).is_err());
        assert!(LogSigmaDensity::new(vec![0.0, 1.0], vec![f64::NAN, 0.0]).is_err());
        assert!(
            LogSigmaDensity::new(vec![0.0, 1.0], vec![f64::NEG_INFINITY, f64::NEG_INFINITY])
                .is_err()
        );
        let p = InformationProfile::gaussian(&[1.0], &[0.1, 1.0]);
        assert!(p.entropy_rate(2.0, 1.0).is_err());
    }
}
