//! Step schedules: N noise levels sigma_0 > ... > sigma_{N-1} = sigma_min, then sigma_N = 0, in f64.
//! Formulas from science.md section 2; u = i/(N-1).

use super::information::InformationProfile;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The range of noise levels the kernels handle in f32 without overflow.
pub const SIGMA_FLOOR: f64 = 1e-12;
pub const SIGMA_CEILING: f64 = 1e12;

/// EDM Table 1's VP constants.
pub const VP_BETA_D: f64 = 19.9;
pub const VP_BETA_MIN: f64 = 0.1;
pub const VP_EPS_S: f64 = 1e-3;

/// A schedule family.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "family", from = "ScheduleKindFields")]
pub enum ScheduleKind {
    /// Karras et al. 2022 (EDM) eq. 5, with exponent rho.
    Karras,
    /// Equal steps in ln sigma.
    LogUniform,
    /// Equal steps in sigma.
    Uniform,
    /// EDM Table 1's VP discretisation (its own sigma range, about 0.0105 .. 152).
    Vp,
    /// The Gaussian tangent law (seed 004); `c: None` means "best c for the Gaussian spectrum".
    Tangent { c: Option<f64> },
    /// Equal quantiles of the data's information profile (InfoNoise, seed 003); the run layer
    /// supplies the profile (exact for analytic data).
    Info,
}

/// `ScheduleKind` as read from JSON: serde lets unit variants carry any fields, empty struct
/// variants refuse them, so a typo in a preset is an error that names it.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", tag = "family", deny_unknown_fields)]
enum ScheduleKindFields {
    Karras {},
    LogUniform {},
    Uniform {},
    Vp {},
    Tangent { c: Option<f64> },
}

impl From<ScheduleKindFields> for ScheduleKind {
    fn from(fields: ScheduleKindFields) -> Self {
        match fields {
            ScheduleKindFields::Karras {} => ScheduleKind::Karras,
            ScheduleKindFields::LogUniform {} => ScheduleKind::LogUniform,
            ScheduleKindFields::Uniform {} => ScheduleKind::Uniform,
            ScheduleKindFields::Vp {} => ScheduleKind::Vp,
            ScheduleKindFields::Tangent { c } => ScheduleKind::Tangent { c },
        }
    }
}

impl ScheduleKind {
    /// Every family, tangent with its coefficient left to the data.
    pub const FAMILIES: [ScheduleKind; 6] = [
        ScheduleKind::Karras,
        ScheduleKind::LogUniform,
        ScheduleKind::Uniform,
        ScheduleKind::Vp,
        ScheduleKind::Tangent { c: None },
        ScheduleKind::Info,
    ];

    /// The family's name, as the CLI and the app spell it.
    pub fn name(&self) -> &'static str {
        match self {
            ScheduleKind::Karras => "karras",
            ScheduleKind::LogUniform => "log",
            ScheduleKind::Uniform => "uniform",
            ScheduleKind::Vp => "vp",
            ScheduleKind::Tangent { .. } => "tangent",
            ScheduleKind::Info => "info",
        }
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = Error;
    /// `karras | log | uniform | vp | tangent | tangent:C | info`.
    fn from_str(s: &str) -> Result<Self> {
        if s == "log-uniform" {
            return Ok(ScheduleKind::LogUniform);
        }
        if let Some(family) = ScheduleKind::FAMILIES.into_iter().find(|k| k.name() == s) {
            return Ok(family);
        }
        match s.strip_prefix("tangent:") {
            Some(c) => {
                let c: f64 = c.parse().map_err(|_| {
                    Error::InvalidSpec(format!("tangent coefficient '{c}' is not a number"))
                })?;
                check_tangent_c(c)?;
                Ok(ScheduleKind::Tangent { c: Some(c) })
            }
            None => Err(Error::InvalidSpec(format!(
                "unknown schedule '{s}' (karras, log, uniform, vp, tangent[:C], info)"
            ))),
        }
    }
}

/// The tangent law's c must be positive and finite (a preset's as well as a flag's).
fn check_tangent_c(c: f64) -> Result<()> {
    if c.is_finite() && c > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "the tangent coefficient (--schedule tangent:C) must be positive and finite, got {c}"
        )))
    }
}

/// Everything a schedule needs; `c` of a tangent schedule without one defaults to 1 (kl_optimal)
/// unless the caller resolved it from a Gaussian spectrum first; the info family needs the data's
/// information profile besides (`sigmas_with`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSpec {
    pub kind: ScheduleKind,
    pub steps: usize,
    pub sigma_min: f64,
    pub sigma_max: f64,
    pub rho: f64,
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        ScheduleSpec {
            kind: ScheduleKind::Karras,
            steps: 18,
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
        }
    }
}

impl ScheduleSpec {
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::InvalidSpec(
                "--steps must be at least 1, got 0".into(),
            ));
        }
        if self.steps > 100_000 {
            return Err(Error::InvalidSpec(format!(
                "--steps must be at most 100000, got {}",
                self.steps
            )));
        }
        // Noise levels outside [1e-12, 1e12] overflow f32 arithmetic (sigma^2, 1/sigma^2).
        if !(self.sigma_min.is_finite() && self.sigma_min >= SIGMA_FLOOR) {
            return Err(Error::InvalidSpec(format!(
                "sigma_min (--sigma-min) must be at least {SIGMA_FLOOR:e}, got {:e}",
                self.sigma_min
            )));
        }
        if self.sigma_max.is_nan() || self.sigma_max > SIGMA_CEILING {
            return Err(Error::InvalidSpec(format!(
                "sigma_max (--sigma-max) must be at most {SIGMA_CEILING:e}, got {:e}",
                self.sigma_max
            )));
        }
        if !self.sigma_max.is_finite() || self.sigma_min >= self.sigma_max {
            return Err(Error::InvalidSpec(format!(
                "sigma_min (--sigma-min {}) must be below sigma_max (--sigma-max {})",
                self.sigma_min, self.sigma_max
            )));
        }
        if !(self.rho.is_finite() && self.rho > 0.0) {
            return Err(Error::InvalidSpec(format!(
                "rho (--rho) must be positive and finite, got {}",
                self.rho
            )));
        }
        if let ScheduleKind::Tangent { c: Some(c) } = self.kind {
            check_tangent_c(c)?;
        }
        Ok(())
    }

    /// The N+1 sigmas of this schedule, ending in 0; an error when the settings make them
    /// anything but finite and strictly decreasing (an extreme rho or tangent c), and for the info
    /// family, which needs a profile (`sigmas_with`).
    pub fn sigmas(&self) -> Result<Vec<f64>> {
        self.sigmas_with(None)
    }

    /// `sigmas`, with the information profile the info family places its levels by.
    pub fn sigmas_with(&self, profile: Option<&InformationProfile>) -> Result<Vec<f64>> {
        self.validate()?;
        let (n, lo, hi) = (self.steps, self.sigma_min, self.sigma_max);
        let sigmas = match self.kind {
            ScheduleKind::Karras => karras(n, lo, hi, self.rho),
            ScheduleKind::LogUniform => log_uniform(n, lo, hi),
            ScheduleKind::Uniform => uniform(n, lo, hi),
            ScheduleKind::Vp => vp(n, VP_BETA_D, VP_BETA_MIN, VP_EPS_S),
            ScheduleKind::Tangent { c } => tangent(n, lo, hi, c.unwrap_or(1.0)),
            ScheduleKind::Info => info_uniform(n, lo, hi, needs_profile(profile)?)?,
        };
        let levels = &sigmas[..sigmas.len() - 1];
        let decreasing = levels.windows(2).all(|w| w[0] > w[1]);
        if !decreasing || levels.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::InvalidSpec(format!(
                "the {} schedule with these settings (rho = {}, sigma {:e}..{:e}) is not a finite, \
                 strictly decreasing sequence",
                self.kind.name(),
                self.rho,
                lo,
                hi
            )));
        }
        Ok(sigmas)
    }

    /// Re-plans the remaining `steps` levels from `sigma_start` down to sigma_min with the same
    /// family (seed 001's adaptive schedule); ends in 0. VP keeps its curve, restricted to the
    /// range; info takes the equal quantiles of the profile on the remaining range.
    pub fn replan(
        &self,
        sigma_start: f64,
        steps: usize,
        profile: Option<&InformationProfile>,
    ) -> Result<Vec<f64>> {
        let lo = self.sigma_min;
        if steps == 0 {
            return Ok(vec![0.0]);
        }
        if steps == 1 || sigma_start <= lo {
            let mut s = vec![sigma_start.max(lo); 1];
            s.extend(std::iter::repeat_n(lo, steps - 1));
            s.push(0.0);
            return Ok(s);
        }
        Ok(match self.kind {
            ScheduleKind::Karras => karras(steps, lo, sigma_start, self.rho),
            ScheduleKind::LogUniform => log_uniform(steps, lo, sigma_start),
            ScheduleKind::Uniform => uniform(steps, lo, sigma_start),
            ScheduleKind::Vp => {
                let (t_hi, t_lo) = (vp_t_of_sigma(sigma_start), vp_t_of_sigma(lo));
                map_u(steps, |u| vp_sigma(t_hi + u * (t_lo - t_hi)))
            }
            ScheduleKind::Tangent { c } => tangent(steps, lo, sigma_start, c.unwrap_or(1.0)),
            ScheduleKind::Info => info_uniform(steps, lo, sigma_start, needs_profile(profile)?)?,
        })
    }
}

fn needs_profile(profile: Option<&InformationProfile>) -> Result<&InformationProfile> {
    profile.ok_or_else(|| {
        Error::InvalidSpec(
            "the info schedule needs the data's information profile (exact data, or a trained \
             model's estimate)"
                .into(),
        )
    })
}

/// Applies `f(u)` at u = i/(N-1), i = 0..N-1, then appends 0.
fn map_u(n: usize, f: impl Fn(f64) -> f64) -> Vec<f64> {
    let mut s: Vec<f64> = (0..n)
        .map(|i| {
            let u = if n == 1 {
                0.0
            } else {
                i as f64 / (n - 1) as f64
            };
            f(u)
        })
        .collect();
    s.push(0.0);
    s
}

/// Karras et al. 2022 (EDM), eq. 5: sigma_i = (smax^(1/rho) + u (smin^(1/rho) - smax^(1/rho)))^rho.
pub fn karras(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    let (a, b) = (sigma_max.powf(1.0 / rho), sigma_min.powf(1.0 / rho));
    map_u(n, |u| (a + u * (b - a)).powf(rho))
}

/// Equal steps in ln sigma: sigma_i = exp((1-u) ln smax + u ln smin).
pub fn log_uniform(n: usize, sigma_min: f64, sigma_max: f64) -> Vec<f64> {
    let (a, b) = (sigma_max.ln(), sigma_min.ln());
    map_u(n, |u| ((1.0 - u) * a + u * b).exp())
}

/// Equal steps in sigma: sigma_i = (1-u) smax + u smin.
pub fn uniform(n: usize, sigma_min: f64, sigma_max: f64) -> Vec<f64> {
    map_u(n, |u| (1.0 - u) * sigma_max + u * sigma_min)
}

/// sigma(t) of the VP SDE, EDM Table 1: sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1).
pub fn vp_sigma(t: f64) -> f64 {
    (0.5 * VP_BETA_D * t * t + VP_BETA_MIN * t).exp_m1().sqrt()
}

/// The inverse of `vp_sigma`: the positive root of beta_d/2 t^2 + beta_min t = ln(1 + sigma^2).
pub fn vp_t_of_sigma(sigma: f64) -> f64 {
    let c = sigma.powi(2).ln_1p();
    ((VP_BETA_MIN.powi(2) + 2.0 * VP_BETA_D * c).sqrt() - VP_BETA_MIN) / VP_BETA_D
}

/// EDM Table 1, VP: t_i = 1 + u (eps_s - 1), sigma_i = sqrt(exp(beta_d t^2/2 + beta_min t) - 1).
pub fn vp(n: usize, beta_d: f64, beta_min: f64, eps_s: f64) -> Vec<f64> {
    map_u(n, |u| {
        let t = 1.0 + u * (eps_s - 1.0);
        (0.5 * beta_d * t * t + beta_min * t).exp_m1().sqrt()
    })
}

/// The Gaussian tangent law (seed 004, arXiv 2601.13602; "Align Your Steps" Thm 3.1):
/// sigma_i = c tan((1-u) atan(smax/c) + u atan(smin/c)). c = 1 is ComfyUI's kl_optimal.
/// For small c the angles crowd pi/2, where tan loses digits; the identical
/// c / tan((1-u) atan(c/smax) + u atan(c/smin)) is exact there.
pub fn tangent(n: usize, sigma_min: f64, sigma_max: f64, c: f64) -> Vec<f64> {
    if c * c >= sigma_min * sigma_max {
        let (a, b) = ((sigma_max / c).atan(), (sigma_min / c).atan());
        map_u(n, |u| c * ((1.0 - u) * a + u * b).tan())
    } else {
        let (a, b) = ((c / sigma_max).atan(), (c / sigma_min).atan());
        map_u(n, |u| c / ((1.0 - u) * a + u * b).tan())
    }
}

/// Information-uniform steps (InfoNoise, seed 003, arXiv 2602.18647; science.md section 2):
/// sigma_i at equal quantiles of the information density mmse(sigma)/sigma^2 per d ln sigma on
/// [smin, smax], from the top: sigma_i = exp(Q(1 - u)), so sigma_0 = smax and sigma_{N-1} = smin.
/// Each step crosses the same share of the entropy the data loses to noise in that range.
pub fn info_uniform(
    n: usize,
    sigma_min: f64,
    sigma_max: f64,
    profile: &InformationProfile,
) -> Result<Vec<f64>> {
    let density = profile.entropy_rate(sigma_min, sigma_max)?;
    let mut s = map_u(n, |u| density.quantile(1.0 - u).exp());
    // The ends exactly, not through exp(ln(.)).
    s[0] = sigma_max;
    if n > 1 {
        s[n - 1] = sigma_min;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ScheduleKind, steps: usize) -> ScheduleSpec {
        ScheduleSpec {
            kind,
            steps,
            ..Default::default()
        }
    }

    #[test]
    fn every_family_is_decreasing_hits_its_ends_and_ends_in_zero() -> Result<()> {
        for kind in [
            ScheduleKind::Karras,
            ScheduleKind::LogUniform,
            ScheduleKind::Uniform,
            ScheduleKind::Tangent { c: Some(0.5) },
        ] {
            let s = spec(kind, 18).sigmas()?;
            assert_eq!(s.len(), 19);
            assert_eq!(s[18], 0.0);
            assert!((s[0] - 80.0).abs() < 1e-9 * 80.0, "{kind:?} {}", s[0]);
            assert!((s[17] - 0.002).abs() < 1e-12, "{kind:?} {}", s[17]);
            assert!(s.windows(2).all(|w| w[0] > w[1]), "{kind:?} not decreasing");
        }
        Ok(())
    }

    #[test]
    fn karras_matches_edm_eq5_by_hand() {
        // N = 3, rho = 7: the middle value is ((80^(1/7) + 0.002^(1/7)) / 2)^7.
        let s = karras(3, 0.002, 80.0, 7.0);
        let mid = ((80f64.powf(1.0 / 7.0) + 0.002f64.powf(1.0 / 7.0)) / 2.0).powi(7);
        assert!((s[1] - mid).abs() < 1e-12);
        // rho = 1 is uniform.
        let (k1, u) = (karras(5, 0.1, 2.0, 1.0), uniform(5, 0.1, 2.0));
        assert!(k1.iter().zip(&u).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn log_uniform_has_constant_ratio() {
        let s = log_uniform(6, 0.01, 10.0);
        let r = s[1] / s[0];
        for w in s[..6].windows(2) {
            assert!((w[1] / w[0] - r).abs() < 1e-12);
        }
    }

    #[test]
    fn vp_matches_edm_table1() {
        let s = vp(10, VP_BETA_D, VP_BETA_MIN, VP_EPS_S);
        let expect0 = ((19.9f64 / 2.0 + 0.1).exp() - 1.0).sqrt();
        assert!((s[0] - expect0).abs() < 1e-9 * expect0);
        let t = 1e-3f64;
        let expect_last = ((19.9 * t * t / 2.0 + 0.1 * t).exp() - 1.0).sqrt();
        assert!((s[9] - expect_last).abs() < 1e-9 * expect_last);
        assert_eq!(s[10], 0.0);
        for sigma in [0.01, 0.5, 3.0, 150.0] {
            assert!((vp_sigma(vp_t_of_sigma(sigma)) - sigma).abs() < 1e-9 * sigma);
        }
    }

    #[test]
    fn tangent_with_large_c_approaches_uniform_and_matches_formula() {
        let s = tangent(4, 0.002, 80.0, 1.0);
        let u = 1.0 / 3.0;
        let expect = ((1.0 - u) * 80f64.atan() + u * 0.002f64.atan()).tan();
        assert!((s[1] - expect).abs() < 1e-12);
        let wide = tangent(5, 0.1, 2.0, 1e6);
        let flat = uniform(5, 0.1, 2.0);
        assert!(wide.iter().zip(&flat).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn tangent_stays_exact_for_tiny_and_huge_c() {
        for c in [1e-300, 1e-16, 1e-3, 0.2, 5.0, 1e9] {
            let s = tangent(12, 0.002, 80.0, c);
            assert!((s[0] - 80.0).abs() < 1e-9 * 80.0, "c {c}: {}", s[0]);
            assert!((s[11] - 0.002).abs() < 1e-12, "c {c}: {}", s[11]);
            assert!(s[..12].windows(2).all(|w| w[0] > w[1]), "c {c}: {s:?}");
        }
        // As c -> 0 the steps become uniform in 1/sigma (tan of tiny angles is linear).
        let t = tangent(6, 0.01, 10.0, 1e-9);
        for (i, s) in t[..6].iter().enumerate() {
            let u = i as f64 / 5.0;
            let limit = 1.0 / ((1.0 - u) / 10.0 + u / 0.01);
            assert!((s - limit).abs() < 1e-6 * limit, "{i}: {s} vs {limit}");
        }
    }

    #[test]
    fn extreme_settings_are_errors_not_garbage() {
        let bad = |spec: ScheduleSpec| spec.sigmas().is_err();
        assert!(bad(ScheduleSpec {
            rho: 1e-4,
            ..Default::default()
        }));
        assert!(bad(ScheduleSpec {
            sigma_min: 1e-300,
            ..Default::default()
        }));
        assert!(bad(ScheduleSpec {
            sigma_max: 1e30,
            ..Default::default()
        }));
    }

    #[test]
    fn parse_and_validate() {
        assert_eq!(
            "tangent:0.5".parse::<ScheduleKind>().ok(),
            Some(ScheduleKind::Tangent { c: Some(0.5) })
        );
        assert!("tangent:x".parse::<ScheduleKind>().is_err());
        assert!("tangent:-1".parse::<ScheduleKind>().is_err());
        assert!("cosine".parse::<ScheduleKind>().is_err());
        assert!(spec(ScheduleKind::Karras, 0).sigmas().is_err());
        let bad = ScheduleSpec {
            sigma_min: 5.0,
            sigma_max: 1.0,
            ..Default::default()
        };
        assert!(bad.sigmas().is_err());
        let one = spec(ScheduleKind::Karras, 1).sigmas().expect("one step");
        assert_eq!(one, vec![80.0, 0.0]);
    }

    #[test]
    fn replan_starts_at_the_estimate_and_keeps_the_budget() -> Result<()> {
        let s = ScheduleSpec::default().replan(3.0, 5, None)?;
        assert_eq!(s.len(), 6);
        assert!((s[0] - 3.0).abs() < 1e-12 && (s[4] - 0.002).abs() < 1e-12 && s[5] == 0.0);
        let vp = ScheduleSpec {
            kind: ScheduleKind::Vp,
            ..Default::default()
        }
        .replan(3.0, 4, None)?;
        assert!((vp[0] - 3.0).abs() < 1e-9 && (vp[3] - 0.002).abs() < 1e-9);
        let info = spec(ScheduleKind::Info, 18);
        let profile = gaussian_profile(&[0.25, 1.0]);
        let s = info.replan(3.0, 5, Some(&profile))?;
        assert!(s[0] == 3.0 && s[4] == 0.002 && s[5] == 0.0, "{s:?}");
        assert!(s.windows(2).all(|w| w[0] > w[1]));
        assert!(info.replan(3.0, 5, None).is_err());
        Ok(())
    }

    fn gaussian_profile(lambdas: &[f64]) -> InformationProfile {
        let grid = crate::core::information::log_sigma_grid(1e-3, 200.0, 400);
        InformationProfile::gaussian(lambdas, &grid)
    }

    #[test]
    fn info_schedule_is_strictly_decreasing_ends_in_zero_and_keeps_its_range() -> Result<()> {
        // A Gaussian profile and a memorised one (mmse vanishing below sigma ~ 0.1).
        let grid = crate::core::information::log_sigma_grid(1e-3, 200.0, 120);
        let memorised = InformationProfile {
            mmse: grid
                .iter()
                .map(|&s| s * s / (1.0 + s * s) * (-0.02 / (s * s)).exp())
                .collect(),
            stderr: vec![0.0; grid.len()],
            sigmas: grid,
        };
        for profile in [gaussian_profile(&[4.0, 0.25, 0.01]), memorised] {
            for (steps, lo, hi) in [(2, 0.002, 80.0), (6, 0.002, 80.0), (18, 0.01, 5.0)] {
                let s = ScheduleSpec {
                    kind: ScheduleKind::Info,
                    steps,
                    sigma_min: lo,
                    sigma_max: hi,
                    ..Default::default()
                }
                .sigmas_with(Some(&profile))?;
                assert_eq!(s.len(), steps + 1);
                assert_eq!((s[0], s[steps - 1], s[steps]), (hi, lo, 0.0));
                assert!(s.windows(2).all(|w| w[0] > w[1]), "{s:?}");
            }
        }
        assert!(spec(ScheduleKind::Info, 8).sigmas().is_err());
        assert_eq!(
            "info".parse::<ScheduleKind>().ok(),
            Some(ScheduleKind::Info)
        );
        Ok(())
    }

    #[test]
    fn info_schedule_of_one_gaussian_direction_has_its_closed_form() -> Result<()> {
        // The information per d ln sigma is lambda/(lambda + s^2), whose integral is
        // G(s) = -ln(1 + lambda/s^2)/2: the levels are equally spaced in G.
        let lambda = 0.25;
        let (n, lo, hi) = (8, 0.002, 80.0);
        let s = info_uniform(n, lo, hi, &gaussian_profile(&[lambda]))?;
        let g = |s: f64| -0.5 * (lambda / (s * s)).ln_1p();
        for (i, &si) in s[..n].iter().enumerate() {
            let u = i as f64 / (n - 1) as f64;
            let target = (1.0 - u) * g(hi) + u * g(lo);
            let exact = (lambda / (-2.0 * target).exp_m1()).sqrt();
            // Log-linear interpolation of mmse on a grid 0.029 wide in ln sigma.
            assert!((si / exact - 1.0).abs() < 2e-3, "{i}: {si} vs {exact}");
        }
        Ok(())
    }
}
