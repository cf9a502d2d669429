//! `noisescope sweep`: one or two varied settings over any `noisescope sample` run, each point
//! measured; writes sweep.json (the sweep preset), sweep.csv (a row per point, written as each
//! finishes) and sweep.png (the metrics against NFE, one line per value of the second axis).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use noisescope::run::export::check_out_dir;
use noisescope::run::sweep::builtin::{BUILTINS, builtin};
use noisescope::run::sweep::engine::{PreparedSweep, csv_header, csv_line};
use noisescope::run::sweep::plot::render;
use noisescope::run::sweep::{SweepAxis, SweepMetric, SweepSpec};

use super::sample::SampleArgs;

#[derive(Args, Debug, Default)]
pub struct SweepArgs {
    /// A setting and its values: NAME=a,b,c or NAME=lo:hi:n (n values; log-spaced for steps,
    /// sigma_min and sigma_max when lo > 0, even otherwise). Once or twice: the first runs along
    /// each line, the second makes one line per value. NAME: steps, sampler, schedule, rho,
    /// sigma_min, sigma_max, s_churn, s_noise, eta, cfg, nag, nag_form, denoiser, seed.
    #[arg(long)]
    pub vary: Vec<String>,
    /// What to measure at each point: w2 | mmd | nn | class-acc | kl | delta-late (repeat the
    /// flag or separate with commas).
    #[arg(long, value_delimiter = ',')]
    pub metric: Vec<String>,
    /// A sweep preset (JSON, as sweep.json and the app's Sweep tab write it); sample flags change
    /// its base run, --vary and --metric replace its own.
    #[arg(long)]
    pub sweep: Option<PathBuf>,
    /// A built-in sweep by name (samplers-moons, samplers-digits, rho-moons,
    /// churn-exact-vs-learned, schedules-gaussian, cfg-digits, nag-moons).
    #[arg(long)]
    pub builtin: Option<String>,
    /// Every `noisescope sample` flag sets the base run; --out is the sweep's folder.
    #[command(flatten)]
    pub run: SampleArgs,
}

impl SweepArgs {
    /// The sweep: a preset or built-in (or nothing), the sample flags on its base, then --vary
    /// and --metric; checked once.
    pub fn spec(&self) -> Result<(SweepSpec, Vec<String>)> {
        if self.sweep.is_some() && self.builtin.is_some() {
            bail!("give --sweep FILE or --builtin NAME, not both");
        }
        if self.run.preset.is_some() && (self.sweep.is_some() || self.builtin.is_some()) {
            bail!(
                "--preset sets the base run of a sweep made with --vary; a sweep preset or built-in brings its own"
            );
        }
        let start = match (&self.sweep, &self.builtin) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the sweep preset {}", path.display()))?;
                Some(
                    SweepSpec::parse_json(&text)
                        .with_context(|| format!("sweep preset {}", path.display()))?,
                )
            }
            (None, Some(name)) => Some(builtin(name)?),
            (None, None) => None,
        };
        let (base, notes) = self.run.spec_over(start.as_ref().map(|s| s.base.clone()))?;
        let mut spec = start.unwrap_or_else(|| SweepSpec {
            name: String::new(),
            base: base.clone(),
            vary: Vec::new(),
            metrics: Vec::new(),
        });
        spec.base = base;
        if !self.vary.is_empty() {
            spec.vary = self
                .vary
                .iter()
                .map(|v| SweepAxis::parse(v))
                .collect::<noisescope::error::Result<_>>()?;
        }
        if !self.metric.is_empty() {
            spec.metrics = self
                .metric
                .iter()
                .map(|m| SweepMetric::parse(m))
                .collect::<noisescope::error::Result<_>>()?;
        }
        if spec.vary.is_empty() {
            bail!(
                "a sweep needs --vary NAME=VALUES (steps=4,8,16), --sweep FILE or --builtin NAME ({})",
                BUILTINS.map(|b| b.name).join(", ")
            );
        }
        if spec.metrics.is_empty() {
            spec.metrics = vec![SweepMetric::W2];
        }
        spec.validate()?;
        Ok((spec, notes))
    }
}

/// Runs every point, printing progress to stderr; sweep.csv grows a row per finished point.
pub fn run(args: &SweepArgs) -> Result<()> {
    let out = &args.run.out;
    check_out_dir(out).context("--out")?;
    let (spec, mut notes) = args.spec()?;
    let prepared = PreparedSweep::new(&spec)?;
    notes.extend(prepared.notes.iter().cloned());
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write("sweep.json", spec.to_json().as_bytes())?;
    let csv_path = out.join("sweep.csv");
    let mut csv = std::fs::File::create(&csv_path)
        .with_context(|| format!("writing {}", csv_path.display()))?;
    writeln!(csv, "{}", csv_header(&spec.metrics))?;
    let total = prepared.points.len();
    let started = std::time::Instant::now();
    let mut failure: Option<anyhow::Error> = None;
    let outcome = prepared.run(
        &mut |row| {
            let line = csv_line(row);
            if let Err(e) = writeln!(csv, "{line}").and_then(|()| csv.flush()) {
                failure =
                    Some(anyhow::Error::new(e).context(format!("writing {}", csv_path.display())));
                return std::ops::ControlFlow::Break(());
            }
            let point = &prepared.points[row.index];
            let measured: Vec<String> = row
                .metrics
                .iter()
                .map(|(m, v)| format!("{} {v:.4}", m.name()))
                .collect();
            eprintln!(
                "[{}/{total}] {}: {}, {} evaluations, {:.2} s{}",
                row.index + 1,
                spec.describe(point),
                measured.join(", "),
                row.evaluations,
                row.wall_s,
                row.error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (failed: {e})"))
            );
            std::ops::ControlFlow::Continue(())
        },
        &|| false,
    )?;
    if let Some(e) = failure {
        return Err(e);
    }
    let image = render(&spec, &outcome.rows)?;
    let png = out.join("sweep.png");
    image
        .save(&png)
        .with_context(|| format!("writing {}", png.display()))?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    println!(
        "{} points in {:.2} s; wrote sweep.csv, sweep.png and sweep.json to {}",
        outcome.rows.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
