//! Runs: the spec, building and executing a session (shared by CLI and app), and the app's
//! worker thread with its protocol and store, the trainer thread and its record (training.rs,
//! training_record.rs); `export` writes a run folder (CLI and app).

pub mod divergence;
pub mod export;
pub mod handle;
pub mod memory;
pub mod notes;
pub mod preset;
pub mod protocol;
pub mod resolve;
pub mod session;
pub mod spec;
pub mod store;
pub mod sweep;
pub mod training;
pub mod training_record;
pub mod worker;

pub use handle::ModelHandle;
pub use session::{RunResult, Session};
pub use spec::RunSpec;
