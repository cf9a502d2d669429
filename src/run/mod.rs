//! Runs: the spec, building and executing a session (shared by CLI and app), and the app's
//! worker thread with its protocol and store; `export` writes a run folder (CLI and app).

pub mod export;
pub mod handle;
pub mod memory;
pub mod notes;
pub mod protocol;
pub mod resolve;
pub mod session;
pub mod spec;
pub mod store;
pub mod worker;

pub use handle::ModelHandle;
pub use session::{RunResult, Session};
pub use spec::RunSpec;
