//! `noisescope bench-ui`: opens the app window on the default scene, changes S_churn --reruns
//! times (waiting for each rerun), drags it continuously for --drag-seconds, then prints the
//! slider-change -> finished-rerun latency and frame times and closes. Needs a display (Xvfb
//! works); numbers are logged, never asserted.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use noisescope::app::{self, BenchOptions};

#[derive(Args, Debug)]
pub struct BenchUiArgs {
    /// Setting changes, each waited for until its rerun is shown.
    #[arg(long, default_value_t = 30)]
    pub reruns: usize,
    /// Seconds of a continuously dragged S_churn slider.
    #[arg(long, default_value_t = 3.0)]
    pub drag_seconds: f64,
    /// Also write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: &BenchUiArgs) -> Result<()> {
    app::run_bench(BenchOptions {
        reruns: args.reruns.max(1),
        drag_seconds: args.drag_seconds.max(0.0),
        json: args.json.clone(),
    })?;
    Ok(())
}
