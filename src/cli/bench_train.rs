//! `noisescope bench-train`: training steps/s of the reference workloads (src/train/speed.rs),
//! the median over timing windows, with the CPU named. The PyTorch twin (tools/peer_train.py)
//! prints the same line for the same step; compare the two from one sitting.

use anyhow::Result;
use clap::Args;

use noisescope::core::quantile;
use noisescope::train::speed::{Path, TrainBench, Workload};

#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    /// mlp (issue 9's default mlp, batch 512, 2-D moons) | unet (conv net, batch 256, 8x8 digits)
    #[arg(long, default_value = "mlp")]
    pub model: Workload,
    /// Timed steps, split over --windows windows (after --warmup untimed steps).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Timing windows; the median window's steps/s is reported.
    #[arg(long, default_value_t = 5)]
    pub windows: usize,
    /// Untimed steps first (allocator and caches settle).
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Batch size (default: 512 mlp, 256 unet).
    #[arg(long)]
    pub batch: Option<usize>,
    /// candle as it comes (the baseline): its stock layers and optimiser, glibc's default
    /// allocator settings and candle's own thread settings, instead of the fused ops.
    #[arg(long)]
    pub stock: bool,
}

/// The CPU's model name from /proc/cpuinfo.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

pub fn run(args: &BenchTrainArgs) -> Result<()> {
    if args.steps == 0 || args.windows == 0 || args.windows > args.steps {
        anyhow::bail!("--steps must be at least --windows, and both at least 1");
    }
    if args.batch == Some(0) {
        anyhow::bail!("--batch must be at least 1");
    }
    let path = if args.stock { Path::Stock } else { Path::Fused };
    let mut bench = TrainBench::new(args.model, path, args.batch, 0)?;
    for _ in 0..args.warmup {
        bench.step()?;
    }
    let per_window = args.steps / args.windows;
    let mut rates = Vec::with_capacity(args.windows);
    let mut loss = f64::NAN;
    for _ in 0..args.windows {
        let started = std::time::Instant::now();
        for _ in 0..per_window {
            loss = bench.step()?;
        }
        rates.push(per_window as f64 / started.elapsed().as_secs_f64());
    }
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(0.0, f64::max);
    println!(
        "noisescope {} ({}): {:.1} steps/s (median of {} windows of {per_window} steps; min {min:.1}, max {max:.1}), batch {}, {} parameters, {} threads, last loss {loss:.3}, {}",
        args.model.name(),
        if args.stock { "candle stock" } else { "fused" },
        quantile(&rates, 0.5),
        args.windows,
        bench.batch(),
        bench.parameter_count(),
        candle_core::utils::get_num_threads(),
        cpu_name(),
    );
    Ok(())
}
