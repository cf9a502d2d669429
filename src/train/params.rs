//! The trainable parameters, by name, with seeded initialisation.
//!
//! candle's CPU random numbers cannot be seeded, so a `VarBuilder` over a `ParamStore` draws each
//! new parameter itself from `Init`'s law with a generator keyed by (seed, parameter name): the
//! same seed gives the same network whatever order the layers are built in.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::core::noise::Rng;

use super::data::fnv1a;

/// Where parameters come from the first time a layer asks for them.
enum Origin {
    /// Fresh, drawn from the layer's `Init` with this seed.
    Seeded(u64),
    /// From a checkpoint (resume): every name must be present with the right shape.
    Loaded(HashMap<String, Tensor>),
}

/// Named trainable variables (f32, CPU).
#[derive(Clone, Default)]
pub struct ParamStore {
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
}

struct StoreBackend {
    store: ParamStore,
    origin: Origin,
}

impl ParamStore {
    pub fn new() -> Self {
        ParamStore::default()
    }

    /// A builder that creates missing parameters with seeded draws.
    pub fn seeded_builder(&self, seed: u64) -> VarBuilder<'static> {
        self.builder(Origin::Seeded(seed))
    }

    /// A builder that takes every parameter from `tensors` (a checkpoint's raw weights).
    pub fn loading_builder(&self, tensors: HashMap<String, Tensor>) -> VarBuilder<'static> {
        self.builder(Origin::Loaded(tensors))
    }

    fn builder(&self, origin: Origin) -> VarBuilder<'static> {
        let backend = StoreBackend {
            store: self.clone(),
            origin,
        };
        VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu)
    }

    /// Every variable, ordered by name.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        self.vars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Snapshots of every variable: copies (later training does not change them), detached
    /// (they hold no autograd graph).
    pub fn snapshot(&self) -> candle_core::Result<BTreeMap<String, Tensor>> {
        self.named_vars()
            .into_iter()
            .map(|(k, v)| Ok((k, v.as_tensor().copy()?.detach())))
            .collect()
    }

    /// Total number of scalars.
    pub fn count(&self) -> usize {
        self.named_vars()
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count())
            .sum()
    }
}

/// Uniform in [lo, hi).
fn uniform_in(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * (1.0 - rng.uniform())
}

/// Draws of `init`'s law for a tensor of `shape`, from a generator keyed by seed and name.
fn seeded_values(init: Init, shape: &Shape, seed: u64, name: &str) -> Vec<f32> {
    let n = shape.elem_count();
    let mut rng = Rng::new(seed ^ fnv1a(name.as_bytes()));
    let (normal, lo, hi, mean, std) = match init {
        Init::Const(c) => return vec![c as f32; n],
        Init::Uniform { lo, up } => (false, lo, up, 0.0, 0.0),
        Init::Randn { mean, stdev } => (true, 0.0, 0.0, mean, stdev),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape).max(1) as f64).sqrt();
            let bound = 3f64.sqrt() * std;
            match dist {
                NormalOrUniform::Uniform => (false, -bound, bound, 0.0, 0.0),
                NormalOrUniform::Normal => (true, 0.0, 0.0, 0.0, std),
            }
        }
    };
    (0..n)
        .map(|_| {
            if normal {
                (mean + std * rng.normal()) as f32
            } else {
                uniform_in(&mut rng, lo, hi) as f32
            }
        })
        .collect()
}

impl SimpleBackend for StoreBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut vars = self
            .store
            .vars
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = vars.get(name) {
            if v.shape() != &shape {
                candle_core::bail!(
                    "parameter {name} has shape {:?}, the layer needs {shape:?}",
                    v.shape()
                );
            }
            return Ok(v.as_tensor().clone());
        }
        let tensor = match &self.origin {
            Origin::Seeded(seed) => {
                Tensor::from_vec(seeded_values(init, &shape, *seed, name), &shape, dev)?
            }
            Origin::Loaded(map) => {
                let Some(t) = map.get(name) else {
                    candle_core::bail!("the checkpoint has no weights for {name}");
                };
                if t.shape() != &shape {
                    candle_core::bail!(
                        "the checkpoint's {name} has shape {:?}, the network needs {shape:?}",
                        t.shape()
                    );
                }
                t.to_dtype(DType::F32)?.copy()?
            }
        };
        let var = Var::from_tensor(&tensor.to_dtype(dtype)?)?;
        let out = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("parameter {name} requested without a shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.store
            .vars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::init::DEFAULT_KAIMING_NORMAL;

    #[test]
    fn seeded_parameters_repeat_per_name_and_follow_their_law() -> candle_core::Result<()> {
        let a = ParamStore::new();
        let b = ParamStore::new();
        let wa = a
            .seeded_builder(5)
            .get_with_hints((300, 200), "w", DEFAULT_KAIMING_NORMAL)?;
        // Another name first: the draw of "w" does not depend on build order.
        b.seeded_builder(5)
            .get_with_hints(3, "other", DEFAULT_KAIMING_NORMAL)?;
        let wb = b
            .seeded_builder(5)
            .get_with_hints((300, 200), "w", DEFAULT_KAIMING_NORMAL)?;
        assert_eq!(
            wa.flatten_all()?.to_vec1::<f32>()?,
            wb.flatten_all()?.to_vec1::<f32>()?
        );
        // Kaiming normal, fan-in 200, ReLU gain: std sqrt(2/200) = 0.1.
        let v = wa.flatten_all()?.to_vec1::<f32>()?;
        let var = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v.len() as f64;
        assert!((var.sqrt() - 0.1).abs() < 0.003, "std {}", var.sqrt());
        let wc = ParamStore::new().seeded_builder(6).get_with_hints(
            (300, 200),
            "w",
            DEFAULT_KAIMING_NORMAL,
        )?;
        assert_ne!(v, wc.flatten_all()?.to_vec1::<f32>()?);
        assert_eq!(a.count(), 60_000);
        Ok(())
    }

    #[test]
    fn loading_needs_every_name_with_its_shape() -> candle_core::Result<()> {
        let mut map = HashMap::new();
        map.insert(
            "w".to_string(),
            Tensor::ones((2, 3), DType::F32, &Device::Cpu)?,
        );
        let store = ParamStore::new();
        let vb = store.loading_builder(map);
        assert!(vb.get((2, 3), "w").is_ok());
        assert!(vb.get((3, 2), "w").is_err());
        assert!(vb.get(4, "missing").is_err());
        Ok(())
    }
}
