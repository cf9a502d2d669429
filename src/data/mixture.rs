//! A Gaussian mixture sum_c w_c N(mu_c, Sigma_c) in closed form: p(x; s) is the mixture of the
//! noisy components and D(x; s) = sum_c r_c(x; s) D_c(x; s), r_c the component posterior.

use super::DataSet;
use super::gaussian::GaussianModel;
use crate::core::log_sum_exp;
use crate::core::noise::Rng;
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct MixtureModel {
    pub log_weights: Vec<f64>,
    pub components: Vec<GaussianModel>,
    /// The class of each component (CFG conditions on a class = its components).
    pub labels: Vec<u32>,
}

impl MixtureModel {
    pub fn new(
        weights: Vec<f64>,
        components: Vec<GaussianModel>,
        labels: Vec<u32>,
    ) -> Result<Self> {
        if components.is_empty()
            || weights.len() != components.len()
            || labels.len() != components.len()
        {
            return Err(Error::InvalidSpec(
                "a mixture needs one weight and one label per component".into(),
            ));
        }
        let dim = components[0].dim();
        if components.iter().any(|c| c.dim() != dim) {
            return Err(Error::Shape(
                "mixture components differ in dimension".into(),
            ));
        }
        if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
            return Err(Error::InvalidSpec(
                "mixture weights must be positive".into(),
            ));
        }
        let total: f64 = weights.iter().sum();
        Ok(MixtureModel {
            log_weights: weights.iter().map(|w| (w / total).ln()).collect(),
            components,
            labels,
        })
    }

    pub fn dim(&self) -> usize {
        self.components[0].dim()
    }

    pub fn num_classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |&m| m as usize + 1)
    }

    /// Components allowed under a class condition.
    pub fn allowed(&self, class: Option<u32>) -> Vec<usize> {
        (0..self.components.len())
            .filter(|&c| class.is_none_or(|k| self.labels[c] == k))
            .collect()
    }

    /// Component log-posteriors (normalised over `allowed`) and log p(x; s) for one row.
    pub fn responsibilities(&self, x: &[f64], sigma: f64, allowed: &[usize]) -> (Vec<f64>, f64) {
        let logits: Vec<f64> = allowed
            .iter()
            .map(|&c| {
                let g = &self.components[c];
                self.log_weights[c] + g.log_density_z(&g.to_eigenbasis(x), sigma)
            })
            .collect();
        let prior = log_sum_exp(
            &allowed
                .iter()
                .map(|&c| self.log_weights[c])
                .collect::<Vec<_>>(),
        );
        let total = log_sum_exp(&logits);
        (logits.iter().map(|l| l - total).collect(), total - prior)
    }

    /// D(x; s) for one row.
    pub fn denoise_row(&self, x: &[f64], sigma: f64, allowed: &[usize]) -> Vec<f64> {
        let (log_r, _) = self.responsibilities(x, sigma, allowed);
        let mut out = vec![0.0; x.len()];
        for (&c, lr) in allowed.iter().zip(log_r) {
            let r = lr.exp();
            for (o, v) in out.iter_mut().zip(self.components[c].denoise_row(x, sigma)) {
                *o += r * v;
            }
        }
        out
    }

    pub fn sample(&self, n: usize, seed: u64) -> DataSet {
        let mut rng = Rng::new(seed);
        let weights: Vec<f64> = self.log_weights.iter().map(|l| l.exp()).collect();
        let mut values = Vec::with_capacity(n * self.dim());
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let mut u = rng.uniform();
            let mut c = 0;
            while c + 1 < weights.len() && u > weights[c] {
                u -= weights[c];
                c += 1;
            }
            let one = self.components[c].sample(1, seed.wrapping_add(1 + i as u64));
            values.extend(one.values);
            labels.push(self.labels[c]);
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| labels[i]);
        let dim = self.dim();
        DataSet {
            n,
            dim,
            values: order
                .iter()
                .flat_map(|&i| values[i * dim..(i + 1) * dim].to_vec())
                .collect(),
            labels: Some(order.iter().map(|&i| labels[i]).collect()),
            image: None,
        }
    }
}
