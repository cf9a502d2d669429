//! The two reference training workloads of `noisescope bench-train`, benches/train.rs and the
//! PyTorch twin tools/peer_train.py: `Trainer::step` of the real models at their defaults (data
//! draw, forward, EDM loss, backward, AdamW, EMA and the loss bookkeeping), either on the fused
//! ops (`Path::Fused`, what `noisescope train` runs) or on candle's stock compositions
//! (`Path::Stock`, inside `ops::with_stock_ops`: the baseline).
//!
//! - mlp: issue 9's DEFAULT mlp (mlp.rs) on the 2-D moons (20000 points, two classes), batch 512.
//! - unet: unet.rs at 8x8 (32 then 64 channels) on the UCI digits, batch 256.

use std::sync::Arc;

use super::data::TrainingSet;
use super::mlp::MlpConfig;
use super::network::ArchConfig;
use super::ops;
use super::trainer::{TrainConfig, Trainer};
use super::unet::UnetConfig;
use crate::data::{Source, digits, toys};
use crate::error::{Error, Result};

/// Which network is trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Mlp,
    Unet,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Mlp => "mlp",
            Workload::Unet => "unet",
        }
    }
}

impl std::str::FromStr for Workload {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "mlp" => Ok(Workload::Mlp),
            "unet" => Ok(Workload::Unet),
            other => Err(format!("unknown model `{other}` (mlp or unet)")),
        }
    }
}

/// The fused ops, or candle's stock compositions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Stock,
    Fused,
}

/// A workload's trainer, ready to step.
pub struct TrainBench {
    trainer: Trainer,
    path: Path,
    batch: usize,
}

impl TrainBench {
    /// The workload at its default batch (512 mlp, 256 unet) unless `batch` is given.
    pub fn new(workload: Workload, path: Path, batch: Option<usize>, seed: u64) -> Result<Self> {
        let (source, arch) = match workload {
            Workload::Mlp => (
                toys::load("moons", 20_000)?,
                ArchConfig::Mlp(MlpConfig::default()),
            ),
            Workload::Unet => {
                let set = digits::load()?;
                let image = set
                    .image
                    .ok_or_else(|| Error::Data("the digits carry no image shape".into()))?;
                (
                    Source::Empirical(set),
                    ArchConfig::Unet(UnetConfig::for_image(image)),
                )
            }
        };
        let data = Arc::new(TrainingSet::from_source(&source)?);
        let mut config = TrainConfig::for_arch(&arch, 100_000_000);
        config.seed = seed;
        if let Some(b) = batch {
            config.batch = b;
        }
        Ok(TrainBench {
            batch: config.batch,
            trainer: Trainer::new(arch, config, data)?,
            path,
        })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn parameter_count(&self) -> usize {
        self.trainer.params().count()
    }

    /// One training step; returns its loss.
    pub fn step(&mut self) -> Result<f64> {
        let (loss, _lr) = match self.path {
            Path::Fused => self.trainer.step()?,
            Path::Stock => ops::with_stock_ops(|| self.trainer.step())?,
        };
        Ok(loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused and stock paths start from the same parameters (same seed) and draw the same
    /// batches, so their losses agree step for step up to f32 rounding: the fused layers,
    /// optimiser and EMA keep the models' numerics.
    #[test]
    fn fused_and_stock_models_train_the_same_function() {
        for workload in [Workload::Mlp, Workload::Unet] {
            let mut stock = TrainBench::new(workload, Path::Stock, Some(24), 3).expect("stock");
            let mut fused = TrainBench::new(workload, Path::Fused, Some(24), 3).expect("fused");
            for step in 0..4 {
                let (s, f) = (stock.step().expect("stock"), fused.step().expect("fused"));
                assert!(
                    s.is_finite() && s > 0.0,
                    "{workload:?} step {step}: loss {s}"
                );
                assert!(
                    (s - f).abs() <= 1e-4 * s.abs(),
                    "{workload:?} step {step}: stock {s} fused {f}"
                );
            }
            let (s_ema, f_ema) = (stock.trainer.ema().tensors(), fused.trainer.ema().tensors());
            for ((name, s), (_, f)) in s_ema.iter().zip(f_ema) {
                let diff = (s - f)
                    .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                    .expect("diff");
                let scale = s
                    .abs()
                    .and_then(|a| a.max_all()?.to_scalar::<f32>())
                    .expect("scale");
                assert!(
                    diff <= 1e-4 * scale.max(1e-3),
                    "{workload:?} EMA {name}: {diff} of {scale}"
                );
            }
        }
    }
}
