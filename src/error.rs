//! The library's error type: one enum, one clear message per variant.

use thiserror::Error;

/// Everything that can go wrong in the library, phrased for the person who caused it.
#[derive(Debug, Error)]
pub enum Error {
    /// A setting is out of range or contradicts another one.
    #[error("invalid setting: {0}")]
    InvalidSpec(String),
    /// A data source could not be read or understood.
    #[error("data: {0}")]
    Data(String),
    /// A tensor had the wrong shape for where it was used.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// NaN or infinity where finite numbers are required.
    #[error("non-finite values: {0}")]
    NonFinite(String),
    /// A .npy file is malformed or of an unsupported type.
    #[error("npy {path}: {reason}")]
    Npy { path: String, reason: String },
    /// A GPU problem; callers fall back to the CPU path.
    #[error("gpu: {0}")]
    Gpu(String),
    /// The app window could not open or run.
    #[error("app: {0}")]
    App(String),
    /// Training or evaluating a learned model failed (a tensor operation in candle).
    #[error("learned model: {0}")]
    Train(String),
    /// A checkpoint is missing, corrupt, or does not fit where it is used.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: String, reason: String },
    /// Reading or writing a file failed.
    #[error("{path}: {cause}")]
    Io {
        path: String,
        // Not marked #[source]: the message already carries it, and error chains would repeat it.
        cause: std::io::Error,
    },
}

impl Error {
    pub fn io(path: impl AsRef<std::path::Path>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            cause,
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Train(candle_message(&e))
    }
}

/// A candle error's message without the backtrace candle appends when RUST_BACKTRACE is set.
pub fn candle_message(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
