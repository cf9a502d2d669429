//! `noisescope bench`: the empirical denoiser inside a whole Heun run (18 steps, 35 evaluations,
//! f32) on the three reference workloads, with diagnostics off and on. Medians of --repeats runs.
//! On the CPU each workload also gets this machine's f32 GEMM throughput on its shape (B x N x D,
//! the product the kernels run, through the same GEMM), and the run's rate as a share of it.

use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use noisescope::backend::cpu::gemm::probe_throughput;
use noisescope::backend::{BackendChoice, Compute};
use noisescope::core::quantile;
use noisescope::data::{DataSpec, Source, digits, toys};
use noisescope::run::{ModelHandle, RunSpec, Session};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// auto | gpu | cpu
    #[arg(long, default_value = "cpu")]
    pub backend: BackendChoice,
    /// all | toy | digits | images784
    #[arg(long, default_value = "all")]
    pub workload: String,
    /// Runs per measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

/// A reference workload: N data points of dimension D, a batch of B samples.
struct Workload {
    name: &'static str,
    n: usize,
    batch: usize,
    dim: usize,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "toy",
        n: 4096,
        batch: 2048,
        dim: 2,
    },
    Workload {
        name: "digits",
        n: 1797,
        batch: 256,
        dim: 64,
    },
    Workload {
        name: "images784",
        n: 10000,
        batch: 64,
        dim: 784,
    },
];

fn source_for(w: &Workload) -> Result<Source> {
    Ok(match w.name {
        "toy" => toys::load("moons", w.n)?,
        "digits" => Source::Empirical(digits::load()?),
        _ => Source::Empirical(digits::synthetic_28x28(w.n, 7)?),
    })
}

/// Median seconds of `repeats` runs of `session`, and the last run's evaluations.
fn time_runs(session: &Session, repeats: usize) -> Result<(f64, f64, usize)> {
    let mut totals = Vec::new();
    let mut diags = Vec::new();
    let mut evaluations = 0;
    for _ in 0..repeats {
        let started = std::time::Instant::now();
        let r = session.run(&mut |_, _| std::ops::ControlFlow::Continue(()))?;
        totals.push(started.elapsed().as_secs_f64());
        diags.push(r.diagnostics_s);
        evaluations = r.output.evaluations;
    }
    Ok((quantile(&totals, 0.5), quantile(&diags, 0.5), evaluations))
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.repeats == 0 {
        anyhow::bail!("--repeats must be at least 1 (the median of that many runs is reported)");
    }
    if args.workload != "all" && !WORKLOADS.iter().any(|w| w.name == args.workload) {
        anyhow::bail!(
            "unknown --workload '{}' (all, toy, digits, images784)",
            args.workload
        );
    }
    let mut notes = Vec::new();
    let compute = Compute::select(args.backend, &mut notes)?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    println!("backend: {}", compute.describe());
    println!("machine: {}", cpu_model());
    println!(
        "{:<10} {:>6} {:>5} {:>4} {:>5} | {:>10} {:>10} {:>8} | {:>13} {:>9}",
        "workload",
        "N",
        "B",
        "D",
        "evals",
        "run (s)",
        "evals/s",
        "GFLOP/s",
        "+diag run (s)",
        "diag (s)"
    );
    let mut limits = Vec::new();
    for w in WORKLOADS
        .iter()
        .filter(|w| args.workload == "all" || args.workload == w.name)
    {
        let source = Arc::new(source_for(w)?);
        let mut spec = RunSpec {
            data: DataSpec::Digits,
            batch: w.batch,
            seed: 1,
            ..Default::default()
        };
        spec.diagnostics.enabled = false;
        let handle = Arc::new(ModelHandle::with_source(&spec, source, &compute)?);
        let off = Session::new(&spec, handle.clone())?;
        // One untimed run warms caches and the thread pool.
        off.run(&mut |_, _| std::ops::ControlFlow::Continue(()))?;
        let (t_off, _, evaluations) = time_runs(&off, args.repeats)?;
        spec.diagnostics.enabled = true;
        let on = Session::new(&spec, handle)?;
        let (t_on, t_diag, _) = time_runs(&on, args.repeats)?;
        // 4 flops per (sample, data point, dimension): sub + fma for the distance, fma + add
        // for the weighted sum.
        let flops = 4.0 * (w.n * w.batch * w.dim * evaluations) as f64;
        println!(
            "{:<10} {:>6} {:>5} {:>4} {:>5} | {:>10.4} {:>10.1} {:>8.1} | {:>13.4} {:>9.4}",
            w.name,
            w.n,
            w.batch,
            w.dim,
            evaluations,
            t_off,
            evaluations as f64 / t_off,
            flops / t_off / 1e9,
            t_on,
            t_diag
        );
        if !compute.is_gpu() {
            limits.push((w, flops / t_off / 1e9));
        }
    }
    // The limit each run is measured against, probed after the runs so it cannot warm them.
    for (w, rate) in limits {
        let gemm = probe_throughput(w.batch, w.n, w.dim, 0.5);
        println!(
            "{:<10} f32 GEMM {} x {} x {} on this machine: {gemm:.1} GFLOP/s; the run's {rate:.1} GFLOP/s is {:.0}% of it",
            w.name,
            w.batch,
            w.n,
            w.dim,
            100.0 * rate / gemm
        );
    }
    Ok(())
}

/// The CPU's model name (Linux), for the figures' record.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
