//! The command line: `noisescope sample`, `noisescope sweep`, `noisescope train`, `noisescope bench`,
//! `noisescope bench-train` and `noisescope bench-ui` (no subcommand opens the app).

pub mod bench;
pub mod bench_train;
pub mod bench_ui;
pub mod sample;
pub mod sweep;
pub mod train;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "noisescope",
    version,
    about = "A lab for diffusion-model sampling: live states, noise shift, curvature, exact answers.\nWithout a subcommand it opens the app."
)]
pub struct Cli {
    /// Open the app on this preset (a JSON RunSpec or a view PNG saved by the app) instead of the
    /// saved settings.
    #[arg(long)]
    pub preset: Option<std::path::PathBuf>,
    /// What paints the app's window: glow (OpenGL, default; much faster under a software
    /// rasteriser) or wgpu. If it cannot open a window the other one is tried.
    #[arg(long, default_value = "glow")]
    pub renderer: noisescope::app::Renderer,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a sampler and write every step to disk.
    #[command(allow_negative_numbers = true)]
    Sample(Box<sample::SampleArgs>),
    /// Run a sampler over one or two varied settings and measure every point (sweep.csv,
    /// sweep.png).
    #[command(allow_negative_numbers = true)]
    Sweep(Box<sweep::SweepArgs>),
    /// Train a learned denoiser and write a checkpoint (PATH.safetensors + PATH.json).
    #[command(allow_negative_numbers = true)]
    Train(Box<train::TrainArgs>),
    /// Measure the empirical denoiser on the three reference workloads.
    Bench(bench::BenchArgs),
    /// Training steps/s of the default mlp or the unet (the PyTorch twin: tools/peer_train.py).
    BenchTrain(bench_train::BenchTrainArgs),
    /// Open the app, script slider changes, print rerun latency and frame times (needs a display).
    BenchUi(bench_ui::BenchUiArgs),
}
