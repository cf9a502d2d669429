//! Checkpoints: NAME.safetensors holds the weights (EMA under "ema.", raw under "raw.", and
//! optionally AdamW's moments under "adam_m." / "adam_v."); NAME.json beside it, the sidecar, holds
//! what they mean: the architecture, the data (spec and fingerprint), sigma_data, the training
//! settings, steps done, seed, final loss, and the weights file's own fingerprint, so a sidecar
//! never describes weights it was not written with. Both files are written to temporary names
//! and renamed into place: an interrupted save never leaves a half-written checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::data::Fnv;
use super::network::{DenoiserNet, ModelConfig};
use super::trainer::{OptimizerState, ResumeState, TrainConfig, Trainer};
use crate::core::infonoise::InfoNoiseSampler;
use crate::data::DataSpec;
use crate::error::{Error, Result, candle_message};

pub const FORMAT: &str = "noisescope-checkpoint";
/// 2: the noise-dropped branch scales its input by c_none(x) and trains on its own sigma law
/// (version 1 used a fixed scale; its weights mean something else).
pub const VERSION: u32 = 2;

const EMA: &str = "ema.";
const RAW: &str = "raw.";
const ADAM_FIRST: &str = "adam_m.";
const ADAM_SECOND: &str = "adam_v.";

/// The fields every sidecar version has.
#[derive(Deserialize)]
struct SidecarHead {
    format: String,
    version: u32,
}

/// The data a model was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub spec: DataSpec,
    pub label: String,
    pub n: usize,
    pub dim: usize,
    pub classes: usize,
    /// `train::data::fingerprint` of the training rows.
    pub fingerprint: String,
    pub sigma_data: f64,
}

/// The weights file as the sidecar knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfo {
    /// FNV-1a of the whole .safetensors file.
    pub fingerprint: String,
    /// Whether AdamW's moments are in the file (an exact resume).
    pub optimizer_state: bool,
    pub optimizer_steps: u64,
}

/// The JSON sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub format: String,
    pub version: u32,
    pub model: ModelConfig,
    pub data: DataInfo,
    pub training: TrainConfig,
    pub steps_done: usize,
    pub samples_seen: u64,
    pub seed: u64,
    /// Mean training loss over the last (up to) 100 steps; `None` before any step.
    pub final_loss: Option<f64>,
    pub weights: WeightsInfo,
    pub written_by: String,
    /// InfoNoise's learned state at the save: m_hat, the density it draws from, the gate's c
    /// and its counters (its constants are in `training.sigma`); absent for fixed laws.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_sampler: Option<InfoNoiseSampler>,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub path: PathBuf,
    pub sidecar: Sidecar,
    ema: HashMap<String, Tensor>,
    raw: HashMap<String, Tensor>,
    first: BTreeMap<String, Tensor>,
    second: BTreeMap<String, Tensor>,
}

/// NAME.json beside NAME.safetensors.
pub fn sidecar_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn check_extension(path: &Path) -> Result<()> {
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(bad(
            path,
            "a checkpoint path must end in .safetensors (its sidecar is the same name with .json)",
        ));
    }
    Ok(())
}

fn fingerprint(bytes: &[u8]) -> String {
    let mut h = Fnv::default();
    h.write(bytes);
    h.hex()
}

/// A sibling temporary name in the same folder (so the rename is atomic).
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Saves a trainer's model; `optimizer_state` adds AdamW's moments (twice the size; needed for
/// an exact resume). Returns the sidecar written.
pub fn save(
    path: &Path,
    trainer: &Trainer,
    data_spec: &DataSpec,
    optimizer_state: bool,
) -> Result<Sidecar> {
    check_extension(path)?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in trainer.ema().tensors() {
        tensors.insert(format!("{EMA}{name}"), t.clone());
    }
    for (name, var) in trainer.params().named_vars() {
        tensors.insert(format!("{RAW}{name}"), var.as_tensor().clone());
    }
    let optimizer = trainer.optimizer();
    if optimizer_state {
        for (name, t) in optimizer.first_moments() {
            tensors.insert(format!("{ADAM_FIRST}{name}"), t.clone());
        }
        for (name, t) in optimizer.second_moments() {
            tensors.insert(format!("{ADAM_SECOND}{name}"), t.clone());
        }
    }
    let weights_tmp = temporary(path);
    let mut serialised_tmp = weights_tmp.clone().into_os_string();
    serialised_tmp.push(".serialised");
    let serialised_tmp = PathBuf::from(serialised_tmp);
    let sidecar_final = sidecar_path(path);
    let sidecar_tmp = temporary(&sidecar_final);
    let result = (|| {
        // candle writes through a private temporary file (mode 0600); the bytes are then
        // rewritten with ordinary permissions, and fingerprinted on the way.
        candle_core::safetensors::save(&tensors, &serialised_tmp).map_err(|e| {
            bad(
                path,
                format!("cannot write the weights: {}", candle_message(&e)),
            )
        })?;
        let bytes = std::fs::read(&serialised_tmp).map_err(|e| Error::io(&serialised_tmp, e))?;
        std::fs::write(&weights_tmp, &bytes).map_err(|e| Error::io(&weights_tmp, e))?;
        let data = trainer.data();
        let sidecar = Sidecar {
            format: FORMAT.into(),
            version: VERSION,
            model: trainer.model_config().clone(),
            data: DataInfo {
                spec: data_spec.clone(),
                label: data_spec.label(),
                n: data.n,
                dim: data.dim,
                classes: data.classes,
                fingerprint: data.fingerprint.clone(),
                sigma_data: data.sigma_data,
            },
            training: trainer.config.clone(),
            steps_done: trainer.steps_done(),
            samples_seen: trainer.samples_seen(),
            seed: trainer.config.seed,
            final_loss: Some(trainer.recent_loss()).filter(|l| l.is_finite()),
            weights: WeightsInfo {
                fingerprint: fingerprint(&bytes),
                optimizer_state,
                optimizer_steps: optimizer.steps,
            },
            written_by: format!("noisescope {}", env!("CARGO_PKG_VERSION")),
            sigma_sampler: trainer.sigma_sampler().cloned(),
        };
        let json = serde_json::to_string_pretty(&sidecar)
            .map_err(|e| bad(path, format!("cannot describe the checkpoint: {e}")))?;
        std::fs::write(&sidecar_tmp, json).map_err(|e| Error::io(&sidecar_tmp, e))?;
        // Weights first: a crash between the renames leaves a sidecar whose fingerprint does
        // not match, which loading reports.
        std::fs::rename(&weights_tmp, path).map_err(|e| Error::io(path, e))?;
        std::fs::rename(&sidecar_tmp, &sidecar_final).map_err(|e| Error::io(&sidecar_final, e))?;
        Ok(sidecar)
    })();
    let _ = std::fs::remove_file(&serialised_tmp);
    if result.is_err() {
        let _ = std::fs::remove_file(&weights_tmp);
        let _ = std::fs::remove_file(&sidecar_tmp);
    }
    result
}

impl Checkpoint {
    /// Reads and checks a checkpoint: every problem is one `Error::Checkpoint` naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        check_extension(path)?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let side = sidecar_path(path);
        let text = std::fs::read_to_string(&side).map_err(|e| {
            bad(
                path,
                format!(
                    "its sidecar {} cannot be read ({e}); a checkpoint is NAME.safetensors with \
                     NAME.json beside it",
                    side.display()
                ),
            )
        })?;
        Self::from_parts(path, &bytes, &text)
    }

    /// A checkpoint from its weights file and sidecar text in memory (bundled models); `path`
    /// names it in errors.
    pub fn from_parts(path: &Path, bytes: &[u8], sidecar_text: &str) -> Result<Self> {
        let invalid = |e: serde_json::Error| {
            let side = sidecar_path(path);
            bad(
                path,
                format!(
                    "its sidecar {} is not a valid description: {e}",
                    side.display()
                ),
            )
        };
        // The format and version first: an older sidecar's fields need not parse.
        let head: SidecarHead = serde_json::from_str(sidecar_text).map_err(invalid)?;
        if head.format != FORMAT || head.version != VERSION {
            return Err(bad(
                path,
                format!(
                    "its sidecar is format '{}' version {}, this noisescope reads '{FORMAT}' \
                     version {VERSION} (retrain it with this noisescope's `train`)",
                    head.format, head.version
                ),
            ));
        }
        let sidecar: Sidecar = serde_json::from_str(sidecar_text).map_err(invalid)?;
        let found = fingerprint(bytes);
        if found != sidecar.weights.fingerprint {
            return Err(bad(
                path,
                format!(
                    "the weights do not match their sidecar (file {found}, sidecar {}): the file \
                     was changed or truncated, or the sidecar belongs to other weights",
                    sidecar.weights.fingerprint
                ),
            ));
        }
        sidecar
            .model
            .validate()
            .map_err(|e| bad(path, format!("its model description is invalid: {e}")))?;
        let all = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| {
            bad(
                path,
                format!("not a readable safetensors file: {}", candle_message(&e)),
            )
        })?;
        let mut checkpoint = Checkpoint {
            path: path.to_path_buf(),
            sidecar,
            ema: HashMap::new(),
            raw: HashMap::new(),
            first: BTreeMap::new(),
            second: BTreeMap::new(),
        };
        for (name, tensor) in all {
            let tensor = tensor
                .to_dtype(DType::F32)
                .map_err(|e| bad(path, format!("tensor {name}: {}", candle_message(&e))))?;
            let finite = tensor
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| bad(path, format!("tensor {name}: {}", candle_message(&e))))?
                .iter()
                .all(|v| v.is_finite());
            if !finite {
                return Err(bad(path, format!("tensor {name} holds NaN or infinity")));
            }
            if let Some(n) = name.strip_prefix(EMA) {
                checkpoint.ema.insert(n.to_string(), tensor);
            } else if let Some(n) = name.strip_prefix(RAW) {
                checkpoint.raw.insert(n.to_string(), tensor);
            } else if let Some(n) = name.strip_prefix(ADAM_FIRST) {
                checkpoint.first.insert(n.to_string(), tensor);
            } else if let Some(n) = name.strip_prefix(ADAM_SECOND) {
                checkpoint.second.insert(n.to_string(), tensor);
            } else {
                return Err(bad(path, format!("unexpected tensor {name}")));
            }
        }
        // Both weight sets must build the network the sidecar describes.
        for (which, set) in [("EMA", &checkpoint.ema), ("raw", &checkpoint.raw)] {
            let vb = VarBuilder::from_tensors(set.clone(), DType::F32, &Device::Cpu);
            DenoiserNet::new(&checkpoint.sidecar.model, vb).map_err(|e| {
                bad(
                    path,
                    format!("its {which} weights do not fit the model in its sidecar: {e}"),
                )
            })?;
        }
        if checkpoint.ema.len() != checkpoint.raw.len() {
            return Err(bad(path, "the EMA and raw weights name different tensors"));
        }
        Ok(checkpoint)
    }

    /// The network on the EMA weights (what sampling uses).
    pub fn network(&self) -> Result<DenoiserNet> {
        let vb = VarBuilder::from_tensors(self.ema.clone(), DType::F32, &Device::Cpu);
        DenoiserNet::new(&self.sidecar.model, vb)
    }

    /// The state to resume training from (AdamW's moments when the file has them).
    pub fn resume_state(&self) -> ResumeState {
        let optimizer = (self.sidecar.weights.optimizer_state
            && !self.first.is_empty()
            && !self.second.is_empty())
        .then(|| OptimizerState {
            steps: self.sidecar.weights.optimizer_steps,
            first: self.first.clone(),
            second: self.second.clone(),
        });
        ResumeState {
            raw: self.raw.clone(),
            ema: self
                .ema
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            optimizer,
            steps_done: self.sidecar.steps_done,
            samples_seen: self.sidecar.samples_seen,
            model: self.sidecar.model.clone(),
            sigma_sampler: self.sidecar.sigma_sampler.clone(),
        }
    }
}
