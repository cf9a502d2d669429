//! A trained network as a `Denoiser`: the EMA weights of a checkpoint (or of a trainer), f32,
//! evaluated in chunks of rows. `Cond::class = None` is the null class (CFG's unconditional model);
//! `Cond::noise_conditional = false` is the noise-dropped branch D_none(x; sigma) =
//! x + sigma F(c_none(x) x; null), which converges to x - sigma E[n | x] under the noise-dropped
//! rows' training distribution of sigma (see the note of `train`).

use std::path::Path;
use std::sync::OnceLock;

use crate::core::Batch;
use crate::core::denoiser::{Cond, Denoiser};
use crate::data::{DataSpec, Source};
use crate::error::{Error, Result};
use crate::train::checkpoint::{Checkpoint, Sidecar};
use crate::train::data::source_fingerprint;
use crate::train::network::{ArchConfig, DenoiserNet, ModelConfig};
use crate::train::trainer::Trainer;

/// The models shipped in the binary (assets/models, made by `noisescope train`; assets/README.md
/// has the commands): name, weights, sidecar.
const BUNDLED: [(&str, &[u8], &str); 3] = [
    (
        "moons",
        include_bytes!("../../assets/models/moons.safetensors"),
        include_str!("../../assets/models/moons.json"),
    ),
    // Trained 20x longer with half its rows noise-dropped: its D_none is NAG's learned form.
    (
        "moons-nag",
        include_bytes!("../../assets/models/moons-nag.safetensors"),
        include_str!("../../assets/models/moons-nag.json"),
    ),
    (
        "digits",
        include_bytes!("../../assets/models/digits.safetensors"),
        include_str!("../../assets/models/digits.json"),
    ),
];

/// The names `bundled` knows.
pub fn bundled_names() -> Vec<&'static str> {
    BUNDLED.iter().map(|(name, _, _)| *name).collect()
}

/// The data a bundled model was trained on (from its sidecar; no weights are read), so that a
/// picker can offer it only where it fits. `None` for an unknown name.
pub fn bundled_data(name: &str) -> Option<DataSpec> {
    // Parsed once: the app's picker asks every frame.
    static TRAINED_ON: OnceLock<Vec<Option<DataSpec>>> = OnceLock::new();
    let trained = TRAINED_ON.get_or_init(|| {
        BUNDLED
            .iter()
            .map(|(_, _, sidecar)| {
                serde_json::from_str::<Sidecar>(sidecar)
                    .ok()
                    .map(|s| s.data.spec)
            })
            .collect()
    });
    let k = BUNDLED.iter().position(|(n, _, _)| *n == name)?;
    trained.get(k).cloned().flatten()
}

/// Whether a model trained on `trained` can be meant for `data`: the same toy (any point
/// count) or the same source. The loaded model's `check_data` decides for real (dimension,
/// classes, the data's fingerprint).
pub fn trained_for(trained: &DataSpec, data: &DataSpec) -> bool {
    match (trained, data) {
        (DataSpec::Toy { name: a, .. }, DataSpec::Toy { name: b, .. }) => a == b,
        _ => trained == data,
    }
}

/// The bundled model trained on `data`, if there is one.
pub fn bundled_for(data: &DataSpec) -> Option<&'static str> {
    bundled_names()
        .into_iter()
        .find(|name| bundled_data(name).is_some_and(|trained| trained_for(&trained, data)))
}

/// A learned denoiser.
pub struct LearnedDenoiser {
    net: DenoiserNet,
    /// The checkpoint's sidecar, when it came from one.
    pub sidecar: Option<Sidecar>,
    /// "mlp, 3000 steps on toy:moons" and the like.
    pub description: String,
}

impl LearnedDenoiser {
    pub fn new(net: DenoiserNet, sidecar: Option<Sidecar>, description: String) -> Self {
        LearnedDenoiser {
            net,
            sidecar,
            description,
        }
    }

    /// The EMA weights of a checkpoint file.
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        Self::from_loaded(Checkpoint::load(path)?)
    }

    /// A model shipped with noisescope, by name (`bundled_names`).
    pub fn bundled(name: &str) -> Result<Self> {
        let Some((_, weights, sidecar)) = BUNDLED.iter().find(|(n, _, _)| *n == name) else {
            return Err(Error::InvalidSpec(format!(
                "there is no bundled model '{name}' (bundled: {})",
                bundled_names().join(", ")
            )));
        };
        let origin = Path::new("bundled").join(format!("{name}.safetensors"));
        Self::from_loaded(Checkpoint::from_parts(&origin, weights, sidecar)?)
    }

    fn from_loaded(checkpoint: Checkpoint) -> Result<Self> {
        let side = &checkpoint.sidecar;
        let description = format!(
            "{}, {} steps on {}",
            side.model.arch.name(),
            side.steps_done,
            side.data.label
        );
        Ok(LearnedDenoiser::new(
            checkpoint.network()?,
            Some(checkpoint.sidecar.clone()),
            description,
        ))
    }

    /// The current EMA weights of a training run.
    pub fn from_trainer(trainer: &Trainer) -> Result<Self> {
        let description = format!(
            "{}, {} steps (training)",
            trainer.model_config().arch.name(),
            trainer.steps_done()
        );
        Ok(LearnedDenoiser::new(
            trainer.ema_network()?,
            None,
            description,
        ))
    }

    pub fn config(&self) -> &ModelConfig {
        &self.net.config
    }

    /// Checks that this model can denoise `source`, the data `spec` names: the same dimension
    /// and classes, and for a checkpoint the data it was trained on (the same toy, whatever
    /// its point count, or the same data set bit for bit).
    pub fn check_data(&self, spec: &DataSpec, source: &Source) -> Result<()> {
        let c = self.config();
        let label = spec.label();
        if c.dim != source.dim() {
            return Err(Error::InvalidSpec(format!(
                "the learned model ({}) denoises {}-dimensional data, {label} is {}-dimensional",
                self.description,
                c.dim,
                source.dim()
            )));
        }
        if c.classes != source.num_classes() {
            return Err(Error::InvalidSpec(format!(
                "the learned model ({}) knows {} classes, {label} has {}",
                self.description,
                c.classes,
                source.num_classes()
            )));
        }
        let Some(side) = &self.sidecar else {
            return Ok(());
        };
        let same = match (&side.data.spec, spec) {
            (DataSpec::Toy { name: a, .. }, DataSpec::Toy { name: b, .. }) => a == b,
            _ => side.data.fingerprint == source_fingerprint(source),
        };
        if !same {
            return Err(Error::InvalidSpec(format!(
                "the learned model ({}) was trained on {}, not on {label}: train one on this data \
                 with noisescope train",
                self.description, side.data.label
            )));
        }
        Ok(())
    }

    /// Rows per network call: bounds the activations' memory.
    fn chunk_rows(&self) -> usize {
        match self.net.config.arch {
            ArchConfig::Mlp(_) => 4096,
            ArchConfig::Unet(_) => 512,
        }
    }

    /// Refuses a branch that never saw a training row: the noise-dropped one (NAG) without
    /// noise dropout, the null class (unconditional, CFG) without class dropout.
    fn check_trained_branch(&self, cond: &Cond) -> Result<()> {
        let Some(training) = self.sidecar.as_ref().map(|s| &s.training) else {
            return Ok(());
        };
        let untrained = if !cond.noise_conditional && training.noise_dropout == 0.0 {
            "noise dropout, so it has no noise-unconditional D(x; none) for NAG: set NAG w to 0, \
             or train with --noise-dropout 0.1"
        } else if cond.class.is_none() && self.num_classes() > 0 && training.class_dropout == 0.0 {
            "class dropout, so it has no unconditional (null-class) branch: choose a class with \
             CFG w = 1, or train with --class-dropout 0.1"
        } else {
            return Ok(());
        };
        Err(Error::InvalidSpec(format!(
            "the learned model ({}) was trained without {untrained}",
            self.description
        )))
    }

    /// Class index per row: 0 is the null class, k + 1 is class k.
    fn class_indices(&self, x: &Batch, cond: &Cond) -> Result<Vec<u32>> {
        let classes = self.net.config.classes;
        match &cond.class {
            None => Ok(vec![0; x.rows]),
            Some(c) => {
                if c.len() != x.rows {
                    return Err(Error::Shape(format!(
                        "{} class labels for {} samples",
                        c.len(),
                        x.rows
                    )));
                }
                if classes == 0 {
                    return Err(Error::InvalidSpec(
                        "this learned model has no classes to condition on".into(),
                    ));
                }
                if let Some(bad) = c.iter().find(|&&k| k as usize >= classes) {
                    return Err(Error::InvalidSpec(format!(
                        "class {bad} does not exist (the model knows {classes} classes)"
                    )));
                }
                Ok(c.iter().map(|&k| k + 1).collect())
            }
        }
    }
}

impl Denoiser for LearnedDenoiser {
    fn dim(&self) -> usize {
        self.net.config.dim
    }

    fn num_classes(&self) -> usize {
        self.net.config.classes
    }

    fn denoise(&self, x: &Batch, sigma: f64, cond: &Cond) -> Result<Batch> {
        x.expect_dim(self.dim(), "the state")?;
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(Error::InvalidSpec(format!(
                "the denoiser needs sigma > 0, got {sigma}"
            )));
        }
        self.check_trained_branch(cond)?;
        let classes = self.class_indices(x, cond)?;
        let dim = x.dim;
        let mut out = Vec::with_capacity(x.data.len());
        for (rows, class) in x
            .data
            .chunks(self.chunk_rows() * dim)
            .zip(classes.chunks(self.chunk_rows()))
        {
            out.extend(
                self.net
                    .denoise_rows(rows, sigma, !cond.noise_conditional, class)?,
            );
        }
        Batch::from_vec(x.rows, dim, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_models_name_the_data_they_were_trained_on() {
        let moons = DataSpec::Toy {
            name: "moons".into(),
            points: 512,
        };
        assert!(
            matches!(bundled_data("moons"), Some(DataSpec::Toy { name, .. }) if name == "moons")
        );
        assert_eq!(bundled_data("digits"), Some(DataSpec::Digits));
        assert_eq!(bundled_data("cifar"), None);
        assert_eq!(bundled_for(&moons), Some("moons"), "any point count");
        assert_eq!(bundled_for(&DataSpec::Digits), Some("digits"));
        assert_eq!(
            bundled_for(&DataSpec::default()),
            None,
            "8gaussians has none"
        );
    }

    #[test]
    fn a_branch_never_trained_is_refused_not_evaluated() -> Result<()> {
        let x = Batch::zeros(3, 2);
        let class = Cond::with_class(Some(vec![1, 0, 1]));
        let mut model = LearnedDenoiser::bundled("moons")?;
        // Trained with both dropouts: every branch answers.
        for cond in [Cond::plain(), class.clone(), class.without_noise()] {
            assert_eq!(model.denoise(&x, 0.5, &cond)?.rows, 3);
        }
        let Some(sidecar) = model.sidecar.as_mut() else {
            panic!("a bundled model has its sidecar");
        };
        sidecar.training.noise_dropout = 0.0;
        sidecar.training.class_dropout = 0.0;
        let message = |cond: &Cond| match model.denoise(&x, 0.5, cond) {
            Err(e) => e.to_string(),
            Ok(_) => "evaluated".into(),
        };
        assert!(message(&class.without_noise()).contains("without noise dropout"));
        assert!(message(&Cond::plain()).contains("without class dropout"));
        assert_eq!(model.denoise(&x, 0.5, &class)?.rows, 3, "class-conditional");
        Ok(())
    }
}
