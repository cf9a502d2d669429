//! AdamW (Loshchilov & Hutter 2019) with a linear learning-rate warm-up, its moments kept by
//! parameter name so that a checkpoint can carry them and training resumes exactly.

use std::collections::BTreeMap;

use candle_core::Tensor;
use candle_core::backprop::GradStore;
use serde::{Deserialize, Serialize};

use super::params::ParamStore;
use crate::error::{Error, Result};

/// The optimiser's settings; every one explicit (candle's `ParamsAdamW` defaults to a weight decay
/// of 0.01, EDM trains with none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    /// Steps of linear warm-up from lr / warmup to lr (0: none).
    pub warmup_steps: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay: theta *= 1 - lr * weight_decay each step.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            warmup_steps: 200,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamWConfig {
    pub fn validate(&self) -> Result<()> {
        let ok = self.lr.is_finite()
            && self.lr > 0.0
            && (0.0..1.0).contains(&self.beta1)
            && (0.0..1.0).contains(&self.beta2)
            && self.eps.is_finite()
            && self.eps > 0.0
            && self.weight_decay.is_finite()
            && self.weight_decay >= 0.0
            && self.lr * self.weight_decay < 1.0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidSpec(format!(
                "AdamW needs lr > 0, betas in [0, 1), eps > 0 and 0 <= lr * weight decay < 1, \
                 got {self:?}"
            )))
        }
    }

    /// The learning rate of step `step` (0-based): lr min(1, (step + 1) / warmup).
    pub fn lr_at(&self, step: usize) -> f64 {
        if self.warmup_steps == 0 {
            return self.lr;
        }
        self.lr * ((step + 1) as f64 / self.warmup_steps as f64).min(1.0)
    }
}

/// AdamW's state: the step count and both moments per parameter name.
pub struct AdamW {
    pub config: AdamWConfig,
    pub steps: u64,
    first: BTreeMap<String, Tensor>,
    second: BTreeMap<String, Tensor>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, params: &ParamStore) -> Result<Self> {
        config.validate()?;
        let mut first = BTreeMap::new();
        for (name, var) in params.named_vars() {
            first.insert(name, var.as_tensor().zeros_like()?);
        }
        Ok(AdamW {
            config,
            steps: 0,
            second: first.clone(),
            first,
        })
    }

    /// Restores saved moments, which must name every parameter with its shape.
    pub fn restore(
        config: AdamWConfig,
        params: &ParamStore,
        steps: u64,
        first: BTreeMap<String, Tensor>,
        second: BTreeMap<String, Tensor>,
    ) -> Result<Self> {
        config.validate()?;
        for (name, var) in params.named_vars() {
            for (which, m) in [("first", &first), ("second", &second)] {
                match m.get(&name) {
                    Some(t) if t.shape() == var.shape() => {}
                    _ => {
                        return Err(Error::Train(format!(
                            "the optimiser's {which} moment of {name} is missing or misshapen"
                        )));
                    }
                }
            }
        }
        Ok(AdamW {
            config,
            steps,
            first,
            second,
        })
    }

    /// One update of every parameter that has a gradient, at learning rate `lr`.
    pub fn step(&mut self, params: &ParamStore, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let c = &self.config;
        let t = self.steps as i32;
        let scale_m = 1.0 / (1.0 - c.beta1.powi(t));
        let scale_v = 1.0 / (1.0 - c.beta2.powi(t));
        for (name, var) in params.named_vars() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let (Some(m), Some(v)) = (self.first.get(&name), self.second.get(&name)) else {
                return Err(Error::Train(format!("no optimiser state for {name}")));
            };
            // Detached, so that the moments never hold an autograd graph across steps.
            let g = g.detach();
            let m = ((m * c.beta1)? + (&g * (1.0 - c.beta1))?)?.detach();
            let v = ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?.detach();
            let step = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + c.eps)?)?;
            let theta = (var.as_tensor().detach() * (1.0 - lr * c.weight_decay))?;
            var.set(&(theta - (step * lr)?)?)?;
            self.first.insert(name.clone(), m);
            self.second.insert(name, v);
        }
        Ok(())
    }

    pub fn first_moments(&self) -> &BTreeMap<String, Tensor> {
        &self.first
    }

    pub fn second_moments(&self) -> &BTreeMap<String, Tensor> {
        &self.second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_step_matches_the_closed_form_and_warm_up_ramps() -> Result<()> {
        let store = ParamStore::new();
        let w = store
            .seeded_builder(0)
            .get_with_hints(2, "w", candle_nn::Init::Const(1.0))?;
        let config = AdamWConfig {
            lr: 0.1,
            warmup_steps: 4,
            weight_decay: 0.5,
            ..AdamWConfig::default()
        };
        assert!((config.lr_at(0) - 0.025).abs() < 1e-15);
        assert_eq!(config.lr_at(3), 0.1);
        assert_eq!(config.lr_at(100), 0.1);
        let mut opt = AdamW::new(config, &store)?;
        // loss = sum(3 w): gradient 3 everywhere.
        let loss = (w.clone() * 3.0)?.sum_all()?;
        let grads = loss.backward()?;
        opt.step(&store, &grads, 0.1)?;
        // The first Adam step is lr * sign(g) (m_hat = g, v_hat = g^2), after the decay.
        let expect = 1.0 * (1.0 - 0.1 * 0.5) - 0.1 * 3.0 / (3.0 + 1e-8);
        let got = store.named_vars()[0].1.as_tensor().to_vec1::<f32>()?;
        assert!(
            got.iter().all(|&v| (v as f64 - expect).abs() < 1e-6),
            "{got:?}"
        );
        assert!(
            AdamWConfig {
                lr: -1.0,
                ..AdamWConfig::default()
            }
            .validate()
            .is_err()
        );
        Ok(())
    }
}
