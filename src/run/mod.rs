//! Runs: the spec, building and executing a session (shared by CLI and app), and the app's
//! worker thread with its protocol and store.

pub mod session;
pub mod spec;

pub use session::{ModelHandle, RunResult, Session};
pub use spec::RunSpec;
