//! EDM preconditioning (Karras et al. 2022, arXiv 2206.00364, Table 1 and eq. 7), and the
//! x-dependent input scale c_none(x) of the noise-dropped branch (see the module note of `train`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The per-row coefficients of D = c_skip x + c_out F(c_in x; c_noise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coefficients {
    pub c_skip: f64,
    pub c_out: f64,
    pub c_in: f64,
    /// The noise condition fed to the embedding; `None` when it is dropped.
    pub c_noise: Option<f64>,
}

impl Coefficients {
    /// EDM's loss weight lambda = 1 / c_out^2 (EDM eq. 8 with its choice of lambda): with it the
    /// weighted loss is || F - (y - c_skip x) / c_out ||^2.
    pub fn loss_weight(&self) -> f64 {
        1.0 / (self.c_out * self.c_out)
    }

    /// The network's training target (y - c_skip x) / c_out for one value.
    pub fn target(&self, y: f64, x: f64) -> f64 {
        (y - self.c_skip * x) / self.c_out
    }
}

/// The constant of the preconditioning, fixed when a model is created and kept in its sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preconditioning {
    /// RMS of the training data over all coordinates: makes the initial loss 1 at every sigma.
    pub sigma_data: f64,
}

impl Preconditioning {
    pub fn new(sigma_data: f64) -> Result<Self> {
        if !(sigma_data.is_finite() && sigma_data > 0.0) {
            return Err(Error::InvalidSpec(format!(
                "sigma_data must be positive and finite, got {sigma_data} (is the data all zeros?)"
            )));
        }
        Ok(Preconditioning { sigma_data })
    }

    /// EDM Table 1: c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2),
    /// c_in = 1/sqrt(s^2+sd^2), c_noise = ln(s)/4.
    pub fn edm(&self, sigma: f64) -> Coefficients {
        let sd2 = self.sigma_data * self.sigma_data;
        let total = sigma * sigma + sd2;
        Coefficients {
            c_skip: sd2 / total,
            c_out: sigma * self.sigma_data / total.sqrt(),
            c_in: 1.0 / total.sqrt(),
            c_noise: Some(sigma.ln() / 4.0),
        }
    }

    /// The noise-dropped branch for the row `x`: D_none = x + sigma F(c_none(x) x; null) with
    /// c_none(x) = 1 / sqrt(sigma_data^2 + |x|^2 / dim), a function of x alone. It keeps the
    /// input within a ball of radius sqrt(dim) at any noise level (x / sqrt(sd^2 + sigma^2)
    /// would need sigma); being injective in x it leaves the minimiser E[n | x] unchanged.
    pub fn noise_dropped(&self, sigma: f64, x: &[f64]) -> Coefficients {
        let mean_square = x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64;
        Coefficients {
            c_skip: 1.0,
            c_out: sigma,
            c_in: 1.0 / (self.sigma_data * self.sigma_data + mean_square).sqrt(),
            c_noise: None,
        }
    }

    /// The coefficients for one row `x` at `sigma`.
    pub fn coefficients(&self, sigma: f64, noise_dropped: bool, x: &[f64]) -> Coefficients {
        if noise_dropped {
            self.noise_dropped(sigma, x)
        } else {
            self.edm(sigma)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EDM Table 1 written out independently (in terms of sigma_data / sigma ratios).
    fn edm_table_1(sigma: f64, sd: f64) -> (f64, f64, f64, f64) {
        let r = sigma / sd;
        (
            1.0 / (1.0 + r * r),
            sigma / (1.0 + r * r).sqrt(),
            1.0 / (sd * (1.0 + r * r).sqrt()),
            0.25 * sigma.ln(),
        )
    }

    #[test]
    fn edm_coefficients_match_the_paper_and_its_unit_variance_design() -> Result<()> {
        for sd in [0.5, 0.577, 1.3] {
            let p = Preconditioning::new(sd)?;
            for sigma in [0.002, 0.05, 0.3, sd, 2.0, 80.0] {
                let c = p.edm(sigma);
                let (skip, out, c_in, noise) = edm_table_1(sigma, sd);
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1e-300);
                assert!(close(c.c_skip, skip), "c_skip at {sigma}");
                assert!(close(c.c_out, out), "c_out at {sigma}");
                assert!(close(c.c_in, c_in), "c_in at {sigma}");
                assert_eq!(c.c_noise, Some(noise));
                // EDM appendix B.6: the input has unit variance, and the effective target
                // (y - c_skip x) / c_out has unit variance for data of RMS sigma_data.
                assert!((c.c_in * c.c_in * (sd * sd + sigma * sigma) - 1.0).abs() < 1e-12);
                let target_var =
                    (1.0 - c.c_skip).powi(2) * sd * sd + c.c_skip.powi(2) * sigma * sigma;
                assert!((target_var / (c.c_out * c.c_out) - 1.0).abs() < 1e-12);
                assert!((c.loss_weight() * c.c_out * c.c_out - 1.0).abs() < 1e-12);
            }
        }
        Ok(())
    }

    #[test]
    fn the_dropped_branch_is_x_plus_sigma_f_with_a_bounded_sigma_free_input() -> Result<()> {
        let p = Preconditioning::new(0.5)?;
        let x = [3.0, -4.0];
        let a = p.noise_dropped(0.01, &x);
        let b = p.noise_dropped(40.0, &x);
        assert_eq!((a.c_skip, a.c_out, a.c_noise), (1.0, 0.01, None));
        // The input scale depends on x, not on sigma, and bounds |c_in x|^2 by dim.
        assert_eq!(a.c_in, b.c_in);
        assert!((a.c_in - 1.0 / (0.25f64 + 12.5).sqrt()).abs() < 1e-15);
        for scale in [1e-3, 1.0, 1e6] {
            let far: Vec<f64> = x.iter().map(|v| v * scale).collect();
            let c = p.noise_dropped(1.0, &far).c_in;
            let norm2: f64 = far.iter().map(|v| (c * v).powi(2)).sum();
            assert!(norm2 < 2.0, "{norm2}");
        }
        // Its target is -n: (y - (y + sigma n)) / sigma.
        let (y, n, s) = (0.3, -1.7, 2.5);
        let t = p.noise_dropped(s, &[y + s * n]).target(y, y + s * n);
        assert!((t + n).abs() < 1e-12);
        assert!(Preconditioning::new(0.0).is_err());
        assert!(Preconditioning::new(f64::NAN).is_err());
        Ok(())
    }
}
