//! The Gaussian distribution N(mu, Sigma) in closed form: parameters, sampler and the density of
//! its noisy versions, any covariance through its eigen-decomposition
//! Sigma = U diag(lambda) U^T (science.md section 7). In the eigenbasis z = U^T (x - mu):
//! D = mu + U (lambda / (lambda + s^2) z), p(x; s) = N(x; mu, Sigma + s^2 I).

use std::f64::consts::PI;

use super::DataSet;
use crate::core::linalg::symmetric_eigen;
use crate::core::noise::Rng;
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct GaussianModel {
    pub mean: Vec<f64>,
    pub eigenvalues: Vec<f64>,
    /// U, row-major [D][D], column k the k-th eigenvector; `None` is the identity.
    pub basis: Option<Vec<f64>>,
}

impl GaussianModel {
    /// N(0, diag(spectrum)).
    pub fn diagonal(spectrum: Vec<f64>) -> Result<Self> {
        let dim = spectrum.len();
        Self::new(vec![0.0; dim], spectrum, None)
    }

    /// N(mean, var I).
    pub fn isotropic(mean: Vec<f64>, var: f64) -> Result<Self> {
        let dim = mean.len();
        Self::new(mean, vec![var; dim], None)
    }

    pub fn new(mean: Vec<f64>, eigenvalues: Vec<f64>, basis: Option<Vec<f64>>) -> Result<Self> {
        let dim = mean.len();
        if dim == 0 || eigenvalues.len() != dim {
            return Err(Error::InvalidSpec(format!(
                "a Gaussian needs as many eigenvalues as dimensions ({} vs {dim})",
                eigenvalues.len()
            )));
        }
        if let Some(bad) = eigenvalues.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
            return Err(Error::InvalidSpec(format!(
                "Gaussian eigenvalues must be positive and finite, got {bad}"
            )));
        }
        if mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::NonFinite("Gaussian mean".into()));
        }
        if let Some(u) = &basis
            && u.len() != dim * dim
        {
            return Err(Error::Shape(format!("basis must be [{dim}, {dim}]")));
        }
        Ok(GaussianModel {
            mean,
            eigenvalues,
            basis,
        })
    }

    /// N(mean, cov) from a full symmetric covariance ([D][D] row-major), by Jacobi rotations.
    pub fn from_covariance(mean: Vec<f64>, cov: &[f64]) -> Result<Self> {
        let dim = mean.len();
        if cov.len() != dim * dim {
            return Err(Error::Shape(format!("covariance must be [{dim}, {dim}]")));
        }
        let (eigenvalues, basis) = symmetric_eigen(cov, dim);
        Self::new(mean, eigenvalues, Some(basis))
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// z = U^T (x - mu).
    pub fn to_eigenbasis(&self, x: &[f64]) -> Vec<f64> {
        let centred: Vec<f64> = x.iter().zip(&self.mean).map(|(a, m)| a - m).collect();
        match &self.basis {
            None => centred,
            Some(u) => {
                let d = self.dim();
                (0..d)
                    .map(|k| (0..d).map(|i| u[i * d + k] * centred[i]).sum())
                    .collect()
            }
        }
    }

    /// x = mu + U z.
    pub fn from_eigenbasis(&self, z: &[f64]) -> Vec<f64> {
        let d = self.dim();
        match &self.basis {
            None => z.iter().zip(&self.mean).map(|(a, m)| a + m).collect(),
            Some(u) => (0..d)
                .map(|i| self.mean[i] + (0..d).map(|k| u[i * d + k] * z[k]).sum::<f64>())
                .collect(),
        }
    }

    /// D(x; s) for one row.
    pub fn denoise_row(&self, x: &[f64], sigma: f64) -> Vec<f64> {
        let z = self.to_eigenbasis(x);
        let s2 = sigma * sigma;
        let shrunk: Vec<f64> = z
            .iter()
            .zip(&self.eigenvalues)
            .map(|(z, l)| z * l / (l + s2))
            .collect();
        self.from_eigenbasis(&shrunk)
    }

    /// ln N(x; mu, Sigma + s^2 I) for one row, from its eigenbasis coordinates.
    pub fn log_density_z(&self, z: &[f64], sigma: f64) -> f64 {
        let s2 = sigma * sigma;
        -0.5 * z
            .iter()
            .zip(&self.eigenvalues)
            .map(|(z, l)| z * z / (l + s2) + (2.0 * PI * (l + s2)).ln())
            .sum::<f64>()
    }

    /// The score of N(x; mu, Sigma + s^2 I) in eigenbasis coordinates: -z / (lambda + s^2).
    pub fn score_z(&self, z: &[f64], sigma: f64) -> Vec<f64> {
        let s2 = sigma * sigma;
        z.iter()
            .zip(&self.eigenvalues)
            .map(|(z, l)| -z / (l + s2))
            .collect()
    }

    /// Rotates an eigenbasis vector (no mean): U v.
    pub fn rotate_back(&self, v: &[f64]) -> Vec<f64> {
        let d = self.dim();
        match &self.basis {
            None => v.to_vec(),
            Some(u) => (0..d)
                .map(|i| (0..d).map(|k| u[i * d + k] * v[k]).sum())
                .collect(),
        }
    }

    /// `n` samples (for drawing the data), with a fixed seed.
    pub fn sample(&self, n: usize, seed: u64) -> DataSet {
        let mut rng = Rng::new(seed);
        let mut values = Vec::with_capacity(n * self.dim());
        for _ in 0..n {
            let z: Vec<f64> = self
                .eigenvalues
                .iter()
                .map(|l| l.sqrt() * rng.normal())
                .collect();
            values.extend(self.from_eigenbasis(&z));
        }
        DataSet {
            n,
            dim: self.dim(),
            values,
            labels: None,
            image: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_gaussian_denoiser_is_the_linear_map_sigma_times_inverse() -> Result<()> {
        // D(x) = mu + Sigma (Sigma + s^2 I)^-1 (x - mu), checked in 2-D by hand.
        let cov = [2.0, 0.6, 0.6, 1.0];
        let g = GaussianModel::from_covariance(vec![0.5, -1.0], &cov)?;
        let (s2, x) = (0.7, [1.3, 0.4]);
        let (a, b, c, d) = (cov[0] + s2, cov[1], cov[2], cov[3] + s2);
        let det = a * d - b * c;
        let inv = [d / det, -b / det, -c / det, a / det];
        let r = [x[0] - 0.5, x[1] + 1.0];
        let t = [inv[0] * r[0] + inv[1] * r[1], inv[2] * r[0] + inv[3] * r[1]];
        let expect = [
            0.5 + cov[0] * t[0] + cov[1] * t[1],
            -1.0 + cov[2] * t[0] + cov[3] * t[1],
        ];
        let got = g.denoise_row(&x, s2.sqrt());
        assert!((got[0] - expect[0]).abs() < 1e-12 && (got[1] - expect[1]).abs() < 1e-12);
        Ok(())
    }
}
