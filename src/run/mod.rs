//! Runs: the spec, building and executing a session (shared by CLI and app), and the app's
//! worker thread with its protocol and store.

pub mod protocol;
pub mod session;
pub mod spec;
pub mod store;
pub mod worker;

pub use session::{ModelHandle, RunResult, Session};
pub use spec::RunSpec;
