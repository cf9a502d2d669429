//! Exponential moving average of the weights, by parameter name (EDM section 5 / appendix:
//! a half-life in training samples, with a ramp-up early in training).

use std::collections::BTreeMap;

use candle_core::Tensor;

use super::params::ParamStore;
use crate::error::{Error, Result};

/// The EMA weights, one tensor per parameter name.
pub struct Ema {
    shadow: BTreeMap<String, Tensor>,
}

/// 1 - beta for one step, in f64: beta = 0.5^(batch / h) with h = min(half_life, ramp-up
/// ratio x samples seen before the step) (EDM training_loop.py). Computed as -expm1 so that it
/// keeps its digits when beta is close to 1 (an f32 beta of 0.99999 would lose most of them).
pub fn one_minus_decay(
    batch: usize,
    half_life: f64,
    rampup_ratio: Option<f64>,
    samples_seen: u64,
) -> f64 {
    let h = match rampup_ratio {
        Some(r) => half_life.min(r * samples_seen as f64),
        None => half_life,
    };
    if h <= 0.0 {
        return 1.0;
    }
    -(batch as f64 * 0.5f64.ln() / h).exp_m1()
}

impl Ema {
    /// Starts from a copy of the current weights.
    pub fn new(params: &ParamStore) -> Result<Self> {
        Ok(Ema {
            shadow: params.snapshot()?,
        })
    }

    /// Starts from saved EMA weights, which must name exactly the parameters of `params`.
    pub fn from_tensors(params: &ParamStore, saved: BTreeMap<String, Tensor>) -> Result<Self> {
        let names: Vec<String> = params.named_vars().into_iter().map(|(n, _)| n).collect();
        let saved_names: Vec<&String> = saved.keys().collect();
        if names.iter().collect::<Vec<_>>() != saved_names {
            return Err(Error::Train(format!(
                "the EMA weights name {} tensors, the network has {}",
                saved.len(),
                names.len()
            )));
        }
        Ok(Ema { shadow: saved })
    }

    /// ema += (1 - beta) (w - ema) for every parameter.
    pub fn update(&mut self, params: &ParamStore, one_minus_decay: f64) -> Result<()> {
        for (name, var) in params.named_vars() {
            let Some(old) = self.shadow.get(&name) else {
                return Err(Error::Train(format!("no EMA weights for {name}")));
            };
            // Detached: an op on a variable records its inputs, and a chain of EMA tensors
            // each holding the previous one would keep every step's weights alive.
            let new = (old + ((var.as_tensor().detach() - old)? * one_minus_decay)?)?.detach();
            self.shadow.insert(name, new);
        }
        Ok(())
    }

    pub fn tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.shadow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_halves_over_a_half_life_and_ramps_up() {
        // 10 steps of 100 samples with a 1000-sample half-life leave half of the old average.
        let keep: f64 = (0..10)
            .map(|_| 1.0 - one_minus_decay(100, 1000.0, None, 1 << 40))
            .product();
        assert!((keep - 0.5).abs() < 1e-12);
        // The first step copies the weights; the ramp-up shortens the half-life early on.
        assert_eq!(one_minus_decay(100, 1000.0, Some(0.05), 0), 1.0);
        let early = one_minus_decay(100, 1e6, Some(0.05), 10_000);
        assert!((early - (1.0 - 0.5f64.powf(100.0 / 500.0))).abs() < 1e-12);
        // Tiny steps keep their digits.
        let tiny = one_minus_decay(1, 1e9, None, 0);
        assert!((tiny / (2f64.ln() * 1e-9) - 1.0).abs() < 1e-6);
    }
}
