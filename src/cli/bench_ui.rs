//! `noisescope bench-ui`: opens the app window on the default scene, changes S_churn --reruns
//! times (waiting for each rerun), drags it continuously for --drag-seconds, then prints the
//! slider-change -> finished-rerun latency and frame times and closes. Needs a display (Xvfb
//! works); numbers are logged, never asserted.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use noisescope::app::{self, BenchOptions};
use noisescope::run::spec::DenoiserSpec;

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
    /// Window width in points.
    #[arg(long, default_value_t = 1500.0)]
    pub width: f32,
    /// Window height in points.
    #[arg(long, default_value_t = 920.0)]
    pub height: f32,
    /// Present without waiting for vertical sync (isolates the rendering cost).
    #[arg(long)]
    pub no_vsync: bool,
    /// What paints the window: glow (default) or wgpu.
    #[arg(long, default_value = "glow")]
    pub renderer: app::Renderer,
    /// No window: only the worker and the store (the engine-and-protocol share of the latency).
    #[arg(long)]
    pub headless: bool,
    /// exact | bundled:NAME (the default scene on the data the model was trained on).
    #[arg(long, default_value = "exact")]
    pub denoiser: String,
    /// Train the Training tab's default mlp on the scene's data in the background for this many
    /// steps while the script runs (cancelled at the end; pick enough to outlast it).
    #[arg(long)]
    pub train_steps: Option<usize>,
    /// Seconds of that training with the UI idle first (the app's steps/s); needs --train-steps.
    #[arg(long, default_value_t = 5.0, requires = "train_steps")]
    pub train_alone_seconds: f64,
}

/// Refuses settings the session cannot honour rather than bending them.
fn check(args: &BenchUiArgs) -> Result<()> {
    if args.reruns == 0 {
        anyhow::bail!("--reruns must be at least 1");
    }
    if !(args.drag_seconds.is_finite() && args.drag_seconds >= 0.0) {
        anyhow::bail!(
            "--drag-seconds must be a finite number >= 0, got {}",
            args.drag_seconds
        );
    }
    if args.train_steps == Some(0) {
        anyhow::bail!("--train-steps must be at least 1");
    }
    if args.train_steps.is_some() && args.headless {
        anyhow::bail!(
            "--train-steps needs the window (the Training tab's trainer); drop --headless"
        );
    }
    if !(args.train_alone_seconds.is_finite() && args.train_alone_seconds > 0.0) {
        anyhow::bail!(
            "--train-alone-seconds must be a finite number > 0, got {}",
            args.train_alone_seconds
        );
    }
    for (flag, value, least) in [
        ("--width", args.width, 400.0),
        ("--height", args.height, 300.0),
    ] {
        if !(value.is_finite() && value >= least) {
            anyhow::bail!("{flag} must be at least {least} points, got {value}");
        }
    }
    Ok(())
}

pub fn run(args: &BenchUiArgs) -> Result<()> {
    check(args)?;
    let settings = app::measure::bench_scene(&DenoiserSpec::parse(&args.denoiser)?)?;
    if args.headless {
        let scene = settings.spec;
        let (latency, worker) = app::measure::headless_reruns(&scene, args.reruns)?;
        println!(
            "bench-ui --headless: {}, {} particles, edm {} steps, {} denoiser, diagnostics subset {}",
            scene.data.label(),
            scene.batch,
            scene.schedule.steps,
            scene.denoiser.label(),
            scene.diagnostics.subset
        );
        println!(
            "slider change -> finished rerun in the store: {}",
            latency.text()
        );
        println!(
            "  of which the worker's sampling + diagnostics: {}",
            worker.text()
        );
        return Ok(());
    }
    app::run_bench(BenchOptions {
        reruns: args.reruns,
        drag_seconds: args.drag_seconds,
        json: args.json.clone(),
        window: [args.width, args.height],
        vsync: !args.no_vsync,
        renderer: args.renderer,
        scene: settings,
        train_steps: args.train_steps,
        train_alone_seconds: args.train_alone_seconds,
    })?;
    Ok(())
}
