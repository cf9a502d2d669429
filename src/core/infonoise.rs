//! InfoNoise's training-sigma distribution (seed 003, arXiv 2602.18647; science.md section 8),
//! the pure part: no tensors, no threads.
//!
//! The training batches already compute each row's unweighted loss ||D - y||^2 / dim, an estimate
//! of mmse(sigma) / dim. `RunningMmse` bins those on a log-sigma grid, smooths them and keeps an
//! EMA across periodic rebuilds: m_hat(sigma). `InfoNoiseSampler` draws log-normal sigmas during a
//! warm-up, then from pi ∝ rho_hat / lambda, with rho = m_hat / sigma^3 per d sigma (the
//! conditional-entropy rate), gated at low noise by sigma^n / (sigma^n + c^n), and divided by the
//! fixed loss weight lambda(sigma) so that pi * lambda, the effective weight, follows rho_hat.
//! The paper's summary gives no constants; the defaults are those of a public reimplementation
//! (256 bins, EMA 0.9, 2000 warm-up steps, a rebuild every 1000, n = 3, onset p = 0.002).

use serde::{Deserialize, Serialize};

use super::information::{LogSigmaDensity, ln_low_noise_gate, onset_sigma};
use super::noise::Rng;
use crate::error::{Error, Result};

/// How the low-noise gate's c is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum GateRule {
    /// c = the first sigma where the max-normalised rho (per d sigma) reaches p.
    Onset { p: f64 },
    /// A fixed c (0.2 for discrete data, science.md section 8).
    Pinned { c: f64 },
}

/// Every constant of InfoNoise, recorded in a checkpoint's sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfoNoiseConfig {
    /// Bins of m_hat, uniform in ln sigma over [sigma_lo, sigma_hi].
    pub bins: usize,
    pub sigma_lo: f64,
    pub sigma_hi: f64,
    /// Width (standard deviation, in ln sigma) of the Gaussian kernel that smooths the bin means.
    pub smoothing: f64,
    /// Kernel-weighted rows a bin needs to count as measured; the others are extrapolated.
    pub min_rows: f64,
    /// EMA factor across rebuilds (the new rebuild's weight is 1 - ema).
    pub ema: f64,
    /// Training steps on the log-normal before the first rebuild.
    pub warmup_steps: u64,
    /// Training steps between rebuilds.
    pub rebuild_every: u64,
    /// The warm-up's log-normal: ln sigma ~ N(p_mean, p_std^2) (EDM: -1.2, 1.2).
    pub p_mean: f64,
    pub p_std: f64,
    /// The gate's power n.
    pub gate_power: f64,
    pub gate: GateRule,
    /// sigma_data of the loss weight lambda = (sigma^2 + sd^2) / (sigma sd)^2 that pi compensates.
    pub sigma_data: f64,
}

impl Default for InfoNoiseConfig {
    fn default() -> Self {
        InfoNoiseConfig {
            bins: 256,
            sigma_lo: 0.002,
            sigma_hi: 80.0,
            smoothing: 0.05,
            min_rows: 8.0,
            ema: 0.9,
            warmup_steps: 2000,
            rebuild_every: 1000,
            p_mean: -1.2,
            p_std: 1.2,
            gate_power: 3.0,
            gate: GateRule::Onset { p: 0.002 },
            sigma_data: 0.5,
        }
    }
}

impl InfoNoiseConfig {
    pub fn validate(&self) -> Result<()> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let problem = if !(2..=100_000).contains(&self.bins) {
            Some(format!(
                "InfoNoise bins must be in 2..=100000, got {}",
                self.bins
            ))
        } else if !(positive(self.sigma_lo) && positive(self.sigma_hi))
            || self.sigma_lo >= self.sigma_hi
        {
            Some(format!(
                "InfoNoise needs 0 < sigma_lo < sigma_hi, got {} .. {}",
                self.sigma_lo, self.sigma_hi
            ))
        } else if !(self.smoothing.is_finite() && self.smoothing >= 0.0) {
            Some(format!(
                "InfoNoise smoothing must be >= 0, got {}",
                self.smoothing
            ))
        } else if !(self.min_rows.is_finite() && self.min_rows >= 0.0) {
            Some(format!(
                "InfoNoise min_rows must be >= 0, got {}",
                self.min_rows
            ))
        } else if !(0.0..1.0).contains(&self.ema) {
            Some(format!("InfoNoise EMA must be in [0, 1), got {}", self.ema))
        } else if self.rebuild_every == 0 {
            Some("InfoNoise rebuilds need rebuild_every >= 1".into())
        } else if !(self.p_mean.is_finite() && positive(self.p_std) && self.p_std <= 5.0) {
            Some(format!(
                "InfoNoise's warm-up log-normal needs a finite P_mean and 0 < P_std <= 5, got {} / {}",
                self.p_mean, self.p_std
            ))
        } else if !(self.gate_power.is_finite() && self.gate_power >= 0.0) {
            Some(format!(
                "the gate power must be >= 0, got {}",
                self.gate_power
            ))
        } else if !positive(self.sigma_data) {
            Some(format!(
                "InfoNoise's sigma_data must be positive, got {}",
                self.sigma_data
            ))
        } else {
            match self.gate {
                GateRule::Onset { p } if !(p > 0.0 && p < 1.0) => {
                    Some(format!("the onset threshold p must be in (0, 1), got {p}"))
                }
                GateRule::Pinned { c } if !(c.is_finite() && c >= 0.0) => {
                    Some(format!("the pinned gate c must be >= 0, got {c}"))
                }
                _ => None,
            }
        };
        match problem {
            Some(p) => Err(Error::InvalidSpec(p)),
            None => Ok(()),
        }
    }

    /// This config with constants changed by `KEY=VALUE,KEY=VALUE,...` (the CLI's --infonoise):
    /// the field names above, and `gate=onset:P` or `gate=pinned:C`. sigma_data is not
    /// settable: it is the trainer's loss weight, taken from the data.
    pub fn with_overrides(&self, text: &str) -> Result<Self> {
        let bad = |m: String| Error::InvalidSpec(format!("--infonoise: {m}"));
        let mut fields = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(bad("cannot represent the config".into())),
        };
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("'{pair}' is not KEY=VALUE")))?;
            let (key, value) = (key.trim(), value.trim());
            let number = |v: &str| -> Result<serde_json::Value> {
                if let Ok(n) = v.parse::<u64>() {
                    return Ok(n.into());
                }
                v.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| bad(format!("{key}: '{v}' is not a number")))
            };
            let json = match key {
                "sigma_data" => {
                    return Err(bad(
                        "sigma_data is the data's (the trainer's loss weight); it is not set here"
                            .into(),
                    ));
                }
                "gate" => match value.split_once(':') {
                    Some(("onset", p)) => serde_json::json!({ "rule": "onset", "p": number(p)? }),
                    Some(("pinned", c)) => serde_json::json!({ "rule": "pinned", "c": number(c)? }),
                    _ => return Err(bad(format!("gate is onset:P or pinned:C, got '{value}'"))),
                },
                _ if fields.contains_key(key) => number(value)?,
                _ => {
                    let known: Vec<&str> = fields
                        .keys()
                        .map(String::as_str)
                        .filter(|k| *k != "sigma_data")
                        .collect();
                    return Err(bad(format!(
                        "unknown constant '{key}' (one of {})",
                        known.join(", ")
                    )));
                }
            };
            fields.insert(key.to_string(), json);
        }
        let config: InfoNoiseConfig = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| bad(e.to_string()))?;
        config.validate().map_err(|e| match e {
            Error::InvalidSpec(m) => bad(m),
            other => other,
        })?;
        Ok(config)
    }

    /// The bin width in ln sigma.
    fn bin_width(&self) -> f64 {
        (self.sigma_hi / self.sigma_lo).ln() / self.bins as f64
    }

    /// The bins' centres (noise levels).
    pub fn bin_sigmas(&self) -> Vec<f64> {
        let (a, w) = (self.sigma_lo.ln(), self.bin_width());
        (0..self.bins)
            .map(|j| (a + (j as f64 + 0.5) * w).exp())
            .collect()
    }

    /// ln of EDM's loss weight lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2.
    pub fn ln_loss_weight(&self, sigma: f64) -> f64 {
        let sd = self.sigma_data;
        (sigma * sigma + sd * sd).ln() - 2.0 * (sigma * sd).ln()
    }
}

/// m_hat(sigma): a binned, smoothed running estimate of mmse(sigma)/dim from (sigma, loss) pairs,
/// 1 until the first rebuild, then an EMA of the rebuilds (bias-corrected, like Adam's moments,
/// so the initial 1 does not linger).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunningMmse {
    config: InfoNoiseConfig,
    /// Per-bin sums of losses and row counts since the last rebuild.
    window_sum: Vec<f64>,
    window_rows: Vec<f64>,
    /// sum_k ema^(K-k) (1 - ema) m_k and sum_k ema^(K-k) (1 - ema) over the K rebuilds so far.
    ema_sum: Vec<f64>,
    ema_norm: f64,
    /// Kernel-weighted rows behind each bin at the last rebuild.
    support: Vec<f64>,
    rebuilds: u64,
}

impl RunningMmse {
    pub fn new(config: &InfoNoiseConfig) -> Result<Self> {
        config.validate()?;
        let bins = config.bins;
        Ok(RunningMmse {
            config: config.clone(),
            window_sum: vec![0.0; bins],
            window_rows: vec![0.0; bins],
            ema_sum: vec![0.0; bins],
            ema_norm: 0.0,
            support: vec![0.0; bins],
            rebuilds: 0,
        })
    }

    /// Adds rows: their sigmas and unweighted losses ||D - y||^2 / dim. Rows outside
    /// [sigma_lo, sigma_hi] and non-finite losses are left out.
    pub fn observe(&mut self, sigmas: &[f64], losses: &[f64]) {
        let (a, w) = (self.config.sigma_lo.ln(), self.config.bin_width());
        for (&s, &loss) in sigmas.iter().zip(losses) {
            let usable = (self.config.sigma_lo..=self.config.sigma_hi).contains(&s)
                && loss.is_finite()
                && loss >= 0.0;
            if !usable {
                continue;
            }
            let j = (((s.ln() - a) / w) as usize).min(self.config.bins - 1);
            self.window_sum[j] += loss;
            self.window_rows[j] += 1.0;
        }
    }

    /// Folds the rows since the last rebuild into m_hat: bin means smoothed with a Gaussian kernel
    /// over ln sigma (Nadaraya-Watson, so sparse bins borrow from their neighbours), bins with
    /// fewer than `min_rows` kernel-weighted rows filled from the measured ones (log-linearly
    /// between them; beyond them as the bound mmse <= min(sigma^2, variance): m ∝ sigma^2 below,
    /// constant above), then the EMA. Returns false (and keeps the rows) when no bin is measured.
    pub fn rebuild(&mut self) -> bool {
        let bins = self.config.bins;
        let radius_bins = self.config.smoothing / self.config.bin_width();
        let reach = (4.0 * radius_bins).ceil() as usize;
        let kernel: Vec<f64> = (0..=reach)
            .map(|k| {
                if radius_bins == 0.0 {
                    if k == 0 { 1.0 } else { 0.0 }
                } else {
                    (-0.5 * (k as f64 / radius_bins).powi(2)).exp()
                }
            })
            .collect();
        let mut value = vec![f64::NAN; bins];
        let mut support = vec![0.0; bins];
        for j in 0..bins {
            let (mut num, mut den) = (0.0, 0.0);
            for i in j.saturating_sub(reach)..(j + reach + 1).min(bins) {
                let k = kernel[i.abs_diff(j)];
                num += k * self.window_sum[i];
                den += k * self.window_rows[i];
            }
            support[j] = den;
            if den > 0.0 && den >= self.config.min_rows {
                value[j] = num / den;
            }
        }
        let measured: Vec<usize> = (0..bins).filter(|&j| !value[j].is_nan()).collect();
        let (Some(&first), Some(&last)) = (measured.first(), measured.last()) else {
            return false;
        };
        let w = self.config.bin_width();
        for j in 0..first {
            value[j] = value[first] * (2.0 * w * (j as f64 - first as f64)).exp();
        }
        for j in last + 1..bins {
            value[j] = value[last];
        }
        for pair in measured.windows(2) {
            let (l, r) = (pair[0], pair[1]);
            for j in l + 1..r {
                let f = (j - l) as f64 / (r - l) as f64;
                // Log-linear when both ends are positive, linear otherwise.
                value[j] = if value[l] > 0.0 && value[r] > 0.0 {
                    (value[l].ln() * (1.0 - f) + value[r].ln() * f).exp()
                } else {
                    value[l] * (1.0 - f) + value[r] * f
                };
            }
        }
        let ema = self.config.ema;
        for (s, v) in self.ema_sum.iter_mut().zip(&value) {
            *s = ema * *s + (1.0 - ema) * v;
        }
        self.ema_norm = ema * self.ema_norm + (1.0 - ema);
        self.support = support;
        self.window_sum.iter_mut().for_each(|v| *v = 0.0);
        self.window_rows.iter_mut().for_each(|v| *v = 0.0);
        self.rebuilds += 1;
        true
    }

    /// m_hat at the bin centres (`InfoNoiseConfig::bin_sigmas`); 1 before the first rebuild.
    pub fn estimate(&self) -> Vec<f64> {
        if self.ema_norm == 0.0 {
            return vec![1.0; self.config.bins];
        }
        self.ema_sum.iter().map(|s| s / self.ema_norm).collect()
    }

    /// Kernel-weighted rows behind each bin at the last rebuild.
    pub fn support(&self) -> &[f64] {
        &self.support
    }

    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }
}

/// InfoNoise's state at a moment, for plots and the sidecar: m_hat, and the density it draws from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InfoNoiseProfile {
    /// Bin centres.
    pub sigmas: Vec<f64>,
    /// m_hat(sigma), the running mmse / dim.
    pub mmse: Vec<f64>,
    /// The sampling density pi per d ln sigma at the bin centres (normalised); `None` during
    /// the warm-up.
    pub density: Option<Vec<f64>>,
    /// The gate's c at the last rebuild.
    pub gate_c: Option<f64>,
    pub rebuilds: u64,
}

/// Draws training sigmas: log-normal during the warm-up, then InfoNoise's pi ∝ rho_hat / lambda,
/// rebuilt every `rebuild_every` steps from the losses it has been shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InfoNoiseSampler {
    config: InfoNoiseConfig,
    mmse: RunningMmse,
    /// Training steps observed.
    steps: u64,
    density: Option<LogSigmaDensity>,
    gate_c: Option<f64>,
}

impl InfoNoiseSampler {
    pub fn new(config: &InfoNoiseConfig) -> Result<Self> {
        Ok(InfoNoiseSampler {
            mmse: RunningMmse::new(config)?,
            config: config.clone(),
            steps: 0,
            density: None,
            gate_c: None,
        })
    }

    pub fn config(&self) -> &InfoNoiseConfig {
        &self.config
    }

    /// `n` noise levels for one training step, from `rng` only.
    pub fn draw(&self, rng: &mut Rng, n: usize) -> Vec<f64> {
        match &self.density {
            Some(d) => d.draw(rng, n),
            None => (0..n)
                .map(|_| (self.config.p_mean + self.config.p_std * rng.normal()).exp())
                .collect(),
        }
    }

    /// One training step's noise-conditional rows: their sigmas and unweighted losses. Rebuilds
    /// the density at the end of the warm-up and every `rebuild_every` steps after it.
    pub fn observe_step(&mut self, sigmas: &[f64], losses: &[f64]) {
        self.mmse.observe(sigmas, losses);
        self.steps += 1;
        let warm = self.config.warmup_steps;
        if self.steps >= warm && (self.steps - warm).is_multiple_of(self.config.rebuild_every) {
            self.rebuild();
        }
    }

    /// Rebuilds m_hat and the sampling density now. A density that cannot be formed (m_hat zero
    /// everywhere: nothing left to learn) keeps the previous one, so training never stops on it.
    pub fn rebuild(&mut self) {
        if !self.mmse.rebuild() {
            return;
        }
        if let Ok((density, c)) = sampling_density(&self.config, &self.mmse.estimate()) {
            self.density = Some(density);
            self.gate_c = Some(c);
        }
    }

    /// Kernel-weighted rows behind each bin of m_hat at the last rebuild.
    pub fn support(&self) -> &[f64] {
        self.mmse.support()
    }

    /// m_hat and the current sampling density at the bin centres.
    pub fn profile(&self) -> InfoNoiseProfile {
        let sigmas = self.config.bin_sigmas();
        InfoNoiseProfile {
            density: self
                .density
                .as_ref()
                .map(|d| sigmas.iter().map(|s| d.pdf(s.ln())).collect()),
            mmse: self.mmse.estimate(),
            sigmas,
            gate_c: self.gate_c,
            rebuilds: self.mmse.rebuilds(),
        }
    }
}

/// InfoNoise's sampling density over ln sigma from m_hat at the bin centres, and the gate's c:
/// pi per d ln sigma = sigma * rho(sigma) gate(sigma) / lambda(sigma), rho = m_hat / sigma^3.
pub fn sampling_density(config: &InfoNoiseConfig, mmse: &[f64]) -> Result<(LogSigmaDensity, f64)> {
    let sigmas = config.bin_sigmas();
    let ln_sigmas: Vec<f64> = sigmas.iter().map(|s| s.ln()).collect();
    let ln_rho: Vec<f64> = mmse
        .iter()
        .zip(&ln_sigmas)
        .map(|(m, t)| m.ln() - 3.0 * t)
        .collect();
    let c = match config.gate {
        GateRule::Onset { p } => onset_sigma(&sigmas, &ln_rho, p),
        GateRule::Pinned { c } => c,
    };
    let ln_pi = sigmas
        .iter()
        .zip(&ln_rho)
        .zip(&ln_sigmas)
        .map(|((&s, r), t)| {
            r + t + ln_low_noise_gate(s, c, config.gate_power) - config.ln_loss_weight(s)
        })
        .collect();
    Ok((LogSigmaDensity::new(ln_sigmas, ln_pi)?, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::information::gaussian_mmse;

    /// Per-direction mmse of N(0, lambda) at sigma.
    fn direction_mmse(lambda: f64, sigma: f64) -> f64 {
        lambda * sigma * sigma / (lambda + sigma * sigma)
    }

    /// `n` rows of (sigma ~ log-normal, exact ||D - y||^2 / dim): the error of the exact Gaussian
    /// denoiser in direction k is N(0, mmse_k(sigma)), independent across directions.
    fn exact_gaussian_losses(lambdas: &[f64], rng: &mut Rng, n: usize) -> (Vec<f64>, Vec<f64>) {
        let d = lambdas.len() as f64;
        let sigmas: Vec<f64> = (0..n).map(|_| (-1.2 + 1.2 * rng.normal()).exp()).collect();
        let losses = sigmas
            .iter()
            .map(|&s| {
                lambdas
                    .iter()
                    .map(|&l| direction_mmse(l, s) * rng.normal().powi(2))
                    .sum::<f64>()
                    / d
            })
            .collect();
        (sigmas, losses)
    }

    #[test]
    fn the_running_estimate_fed_exact_gaussian_losses_converges_to_the_closed_form() -> Result<()> {
        let lambdas = [2.0, 0.5, 0.1, 0.02];
        let config = InfoNoiseConfig::default();
        let mut m = RunningMmse::new(&config)?;
        let mut rng = Rng::new(5);
        let (windows, per_window) = (8, 100_000);
        for _ in 0..windows {
            let (s, l) = exact_gaussian_losses(&lambdas, &mut rng, per_window);
            m.observe(&s, &l);
            assert!(m.rebuild());
        }
        let estimate = m.estimate();
        let sigmas = config.bin_sigmas();
        let weights: Vec<f64> = (0..windows).map(|k| config.ema.powi(k)).collect();
        let total: f64 = weights.iter().sum();
        let ema_factor: f64 = weights.iter().map(|w| (w / total).powi(2)).sum();
        let width = config.bin_width();
        let reach = (4.0 * config.smoothing / width).ceil();
        // The log-normal's density of ln sigma, for the smoother's expected value.
        let f = |t: f64| (-0.5 * ((t + 1.2) / 1.2).powi(2)).exp();
        let mut checked = 0;
        for (j, &s) in sigmas.iter().enumerate() {
            let t = s.ln();
            // Where the log-normal puts rows: within two standard deviations of its mean.
            if (t + 1.2).abs() > 2.4 {
                continue;
            }
            let exact = gaussian_mmse(&lambdas, s);
            // Bias: the kernel average of mmse under the row density, bin by bin, minus mmse.
            let (mut num, mut den) = (0.0, 0.0);
            let a = config.sigma_lo.ln();
            for i in
                (j as f64 - reach).max(0.0) as usize..=(j + reach as usize).min(config.bins - 1)
            {
                let k = (-0.5 * ((i as f64 - j as f64) * width / config.smoothing).powi(2)).exp();
                for q in 0..50 {
                    let u = a + (i as f64 + (q as f64 + 0.5) / 50.0) * width;
                    num += k * f(u) * gaussian_mmse(&lambdas, u.exp());
                    den += k * f(u);
                }
            }
            let bias = num / den - exact;
            assert!(bias.abs() < 0.02 * exact, "smoothing bias {bias} at {s}");
            // Noise: a row's loss has variance (2/d^2) sum_k mmse_k^2, largest at the kernel's
            // upper reach; a kernel-weighted mean of `support` rows has at most that / support,
            // and the bias-corrected EMA of equally sized rebuilds sum_k w_k^2 times that.
            let top = s * (reach * width).exp();
            let var = 2.0 / 16.0
                * lambdas
                    .iter()
                    .map(|&l| direction_mmse(l, top).powi(2))
                    .sum::<f64>();
            let se = (ema_factor * var / m.support()[j]).sqrt();
            let tolerance = 4.0 * se + bias.abs();
            assert!(
                (estimate[j] - exact).abs() < tolerance,
                "sigma {s}: m_hat {} vs mmse {exact} (tolerance {tolerance})",
                estimate[j]
            );
            // The tolerance is tight: a few percent of the value (10% at two standard deviations).
            assert!(tolerance < 0.1 * exact, "{tolerance} vs {exact}");
            checked += 1;
        }
        assert!(checked > 20, "{checked} bins checked");
        // Outside the measured range the bound's limits extend it: m ∝ sigma^2 at the bottom.
        assert!((estimate[1] / estimate[0] - (2.0 * width).exp()).abs() < 1e-9);
        Ok(())
    }

    #[test]
    fn the_sampler_warms_up_on_the_log_normal_then_draws_from_rho_over_lambda() -> Result<()> {
        let lambdas = [0.25];
        let config = InfoNoiseConfig {
            bins: 96,
            warmup_steps: 20,
            rebuild_every: 10,
            gate: GateRule::Pinned { c: 0.0 },
            ..Default::default()
        };
        let mut sampler = InfoNoiseSampler::new(&config)?;
        let mut rng = Rng::new(9);
        for step in 0..40 {
            let sigmas = sampler.draw(&mut rng, 4096);
            if step < 20 {
                // Warm-up: the log-normal's mean of ln sigma.
                let mean = sigmas.iter().map(|s| s.ln()).sum::<f64>() / sigmas.len() as f64;
                assert!((mean + 1.2).abs() < 0.1, "step {step}: {mean}");
            }
            let (s, l) = exact_gaussian_losses(&lambdas, &mut rng, 4096);
            sampler.observe_step(&s, &l);
            let expect_rebuilds = if step + 1 < 20 {
                0
            } else {
                1 + (step + 1 - 20) / 10
            };
            assert_eq!(sampler.profile().rebuilds, expect_rebuilds as u64);
        }
        // With the gate off, pi per d ln sigma ∝ mmse / sigma^2 / lambda = mmse / (sigma^2 + sd^2).
        let profile = sampler.profile();
        let density = profile.density.clone().expect("rebuilt");
        let ratio: Vec<f64> = profile
            .sigmas
            .iter()
            .zip(&density)
            .map(|(&s, p)| p * (s * s + 0.25) / gaussian_mmse(&lambdas, s))
            .collect();
        // Compare the middle of the range, where the rows are: the ratio is flat within noise.
        let middle: Vec<f64> = profile
            .sigmas
            .iter()
            .zip(&ratio)
            .filter(|(s, _)| (s.ln() + 1.2).abs() < 1.5)
            .map(|(_, r)| *r)
            .collect();
        let mean = middle.iter().sum::<f64>() / middle.len() as f64;
        assert!(
            middle.iter().all(|r| (r / mean - 1.0).abs() < 0.12),
            "{middle:?}"
        );
        // A pinned gate multiplies the density by sigma^3 / (sigma^3 + c^3), up to normalisation.
        let mmse = sampler.mmse.estimate();
        let (open, _) = sampling_density(&config, &mmse)?;
        let gated_config = InfoNoiseConfig {
            gate: GateRule::Pinned { c: 0.2 },
            ..config.clone()
        };
        let (gated, c) = sampling_density(&gated_config, &mmse)?;
        assert_eq!(c, 0.2);
        let gate = |s: f64| s.powi(3) / (s.powi(3) + 0.008);
        let r = |s: f64| gated.pdf(s.ln()) / open.pdf(s.ln()) / gate(s);
        let nodes = config.bin_sigmas();
        assert!((r(nodes[20]) / r(nodes[70]) - 1.0).abs() < 1e-9);
        // The state round-trips through JSON (a checkpoint's sidecar).
        let text =
            serde_json::to_string(&sampler).map_err(|e| Error::InvalidSpec(e.to_string()))?;
        let back: InfoNoiseSampler =
            serde_json::from_str(&text).map_err(|e| Error::InvalidSpec(e.to_string()))?;
        let (a, b) = (back.profile(), sampler.profile());
        assert_eq!((a.rebuilds, a.gate_c), (b.rebuilds, b.gate_c));
        assert!(
            a.mmse
                .iter()
                .zip(&b.mmse)
                .all(|(x, y)| (x / y - 1.0).abs() < 1e-12)
        );
        Ok(())
    }

    #[test]
    fn the_onset_gate_shuts_the_low_noise_end_of_memorised_data() -> Result<()> {
        // Two points at +-1 (1-D): mmse falls off like exp(-1/(8 sigma^2)) at low noise, so rho
        // vanishes there (max-normalised: 1.4e-3 at 0.12, 2.5e-2 at 0.15) and c lands between.
        let config = InfoNoiseConfig::default();
        let sigmas = config.bin_sigmas();
        let mmse: Vec<f64> = sigmas
            .iter()
            .map(|&s| s * s / (1.0 + s * s) * (-0.125 / (s * s)).exp())
            .collect();
        let (_, c) = sampling_density(&config, &mmse)?;
        assert!((0.12..0.15).contains(&c), "onset c = {c}");
        // Continuous data (a Gaussian): rho per d sigma keeps rising toward sigma -> 0, no onset.
        let gaussian: Vec<f64> = sigmas.iter().map(|&s| gaussian_mmse(&[1.0], s)).collect();
        let (_, c) = sampling_density(&config, &gaussian)?;
        assert_eq!(c, sigmas[0]);
        Ok(())
    }

    #[test]
    fn constants_are_set_by_name_and_bad_ones_refused() -> Result<()> {
        let base = InfoNoiseConfig::default();
        let c =
            base.with_overrides("warmup_steps=300, rebuild_every=50,ema=0.5,gate=pinned:0.2")?;
        assert_eq!(
            c,
            InfoNoiseConfig {
                warmup_steps: 300,
                rebuild_every: 50,
                ema: 0.5,
                gate: GateRule::Pinned { c: 0.2 },
                ..base.clone()
            }
        );
        assert_eq!(
            base.with_overrides("gate=onset:0.01")?.gate,
            GateRule::Onset { p: 0.01 }
        );
        assert_eq!(base.with_overrides("")?, base);
        for bad in [
            "warmup=3",
            "bins=1.5",
            "ema=2",
            "ema",
            "gate=0.2",
            "sigma_data=1",
            "p_std=x",
        ] {
            let e = base.with_overrides(bad).map_err(|e| e.to_string());
            assert!(e.is_err_and(|e| e.contains("--infonoise")), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = |c: InfoNoiseConfig| c.validate().is_err();
        assert!(InfoNoiseConfig::default().validate().is_ok());
        assert!(bad(InfoNoiseConfig {
            bins: 1,
            ..Default::default()
        }));
        assert!(bad(InfoNoiseConfig {
            sigma_lo: 5.0,
            sigma_hi: 1.0,
            ..Default::default()
        }));
        assert!(bad(InfoNoiseConfig {
            ema: 1.0,
            ..Default::default()
        }));
        assert!(bad(InfoNoiseConfig {
            gate: GateRule::Onset { p: 0.0 },
            ..Default::default()
        }));
        assert!(bad(InfoNoiseConfig {
            rebuild_every: 0,
            ..Default::default()
        }));
        assert!(serde_json::from_str::<InfoNoiseConfig>(r#"{"bins": 64, "typo": 1}"#).is_err());
    }
}
