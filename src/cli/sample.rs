//! `noisescope sample`: one run, every step written to --out.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use noisescope::backend::BackendChoice;
use noisescope::core::Precision;
use noisescope::core::estimate::SigmaPrior;
use noisescope::core::guidance::{NagForm, NagStep};
use noisescope::core::sampler::SamplerKind;
use noisescope::core::schedule::ScheduleKind;
use noisescope::data::{DataSpec, toys};
use noisescope::models::quality::{CLASS_SIGMA, quality};
use noisescope::run::export::{RunArtifacts, Timings, check_out_dir, write_run};
use noisescope::run::notes::steep_schedule_warning;
use noisescope::run::spec::{AdaptiveEstimator, ClassSpec, DenoiserSpec};
use noisescope::run::{ModelHandle, RunSpec, Session};

/// Every flag is optional: a flag overrides the preset (or the default) it is given on.
#[derive(Args, Debug, Default)]
pub struct SampleArgs {
    /// toy:NAME (8gaussians, moons, checkerboard, swissroll, rings, two-diracs) | gaussian:l1,l2,... | digits | digits:binary | npy:PATH | images:DIR
    #[arg(long)]
    pub data: Option<String>,
    /// [N] integer labels for --data npy:PATH.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Points drawn for a 2-D toy.
    #[arg(long)]
    pub points: Option<usize>,
    /// Image side for --data images:DIR.
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Keep colour for --data images:DIR (default grey); `--rgb false` turns a preset's off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub rgb: Option<bool>,
    /// euler | heun | edm | euler-a | dpmpp-2m
    #[arg(long)]
    pub sampler: Option<SamplerKind>,
    /// karras | log | uniform | vp | tangent[:C] (tangent without C: KL-optimal c for the data's spectrum) | info (equal quantiles of the data's information profile)
    #[arg(long)]
    pub schedule: Option<ScheduleKind>,
    #[arg(long)]
    pub steps: Option<usize>,
    /// Karras' rho.
    #[arg(long)]
    pub rho: Option<f64>,
    #[arg(long)]
    pub sigma_min: Option<f64>,
    #[arg(long)]
    pub sigma_max: Option<f64>,
    /// Re-plan the remaining steps from sigma_hat after each step (seed 001); `--adaptive false`
    /// turns a preset's off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub adaptive: Option<bool>,
    /// Start each step from sigma_hat, conditioning the denoiser on it (seed 001's adaptive
    /// step; with or without --adaptive); `--adaptive-step false` turns a preset's off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub adaptive_step: Option<bool>,
    /// Where --adaptive / --adaptive-step read sigma_hat: exact (the data's exact posterior, the
    /// default) | learned (the --estimator network).
    #[arg(long)]
    pub adaptive_estimator: Option<AdaptiveEstimator>,
    /// A learned noise-level estimator g(sigma | x) (`noisescope train --estimator`): its
    /// sigma_hat goes into diagnostics.csv (learned_sigma_hat_*) beside the exact posterior's;
    /// --nag-form classifier-based and --adaptive-estimator learned use it.
    #[arg(long)]
    pub estimator: Option<PathBuf>,
    /// EDM's S_churn.
    #[arg(long)]
    pub churn: Option<f64>,
    /// EDM's S_tmin.
    #[arg(long)]
    pub tmin: Option<f64>,
    /// EDM's S_tmax (inf allowed).
    #[arg(long)]
    pub tmax: Option<f64>,
    /// EDM's S_noise (also scales euler-a's noise).
    #[arg(long)]
    pub snoise: Option<f64>,
    /// Euler-ancestral's eta.
    #[arg(long)]
    pub eta: Option<f64>,
    /// CFG weight (1 = plain conditional).
    #[arg(long)]
    pub cfg: Option<f64>,
    /// Class to condition on: an integer, or a .npy [B] of integers.
    #[arg(long)]
    pub class: Option<String>,
    /// NAG weight (0 = off).
    #[arg(long)]
    pub nag: Option<f64>,
    /// NAG's noise-unconditional model: posterior-average (what a noise-dropout model learns,
    /// exact; the default), exact-score (the stiff limit) or learned (the model's noise-dropped
    /// branch; learned denoisers only) or classifier-based (the --estimator network's
    /// grad_x ln g(sigma | x)).
    #[arg(long)]
    pub nag_form: Option<NagForm>,
    /// How the samplers step NAG's guided ODE: exponential (NAG's stiff part (1 + w)(x - A)/sigma
    /// integrated exactly over each step: stable at any step length; the default) or explicit
    /// (the sampler's own step on D_w, the paper's: diverges once (1 + w)(1 - sigma_(i+1)/sigma_i)
    /// > 2, e.g. w >= 2 at 18 Karras steps). Classifier-based NAG is always explicit.
    #[arg(long)]
    pub nag_step: Option<NagStep>,
    /// The exact-score form's prior over sigma: lognormal (EDM's -1.2/1.2) or loguniform (over
    /// sigma_min..sigma_max).
    #[arg(long)]
    pub nag_prior: Option<String>,
    /// Classifier-based NAG with this learned noise-level estimator (`noisescope train
    /// --estimator`): D + w sigma^2 grad_x ln g(sigma | x) in place of --nag-form.
    #[arg(long)]
    pub nag_estimator: Option<PathBuf>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// f32 | f64 (denoiser arithmetic; written .npy files follow it).
    #[arg(long)]
    pub precision: Option<Precision>,
    /// auto | gpu | cpu
    #[arg(long)]
    pub backend: Option<BackendChoice>,
    /// on | off
    #[arg(long)]
    pub diagnostics: Option<String>,
    /// Rows the noise-level statistics use.
    #[arg(long)]
    pub diagnostics_subset: Option<usize>,
    /// [B, D] standard-normal initial noise: x_0 = sigma_0 z.
    #[arg(long)]
    pub init_noise: Option<PathBuf>,
    /// [>= N, B, D] standard-normal churn noise, row i for step i.
    #[arg(long)]
    pub churn_noise: Option<PathBuf>,
    /// exact (the data's exact denoiser) | bundled:moons | bundled:moons-nag | bundled:digits |
    /// PATH.safetensors (a
    /// `noisescope train` checkpoint). A learned run's diagnostics still use the exact posterior.
    #[arg(long)]
    pub denoiser: Option<String>,
    /// A preset (JSON RunSpec, or a PNG of the view, as the app exports them); flags override it.
    #[arg(long)]
    pub preset: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
}

impl SampleArgs {
    /// The spec: the preset (or defaults), then every given flag, validated once; and a note for
    /// each flag the data has no use for.
    pub fn spec(&self) -> Result<(RunSpec, Vec<String>)> {
        self.spec_over(None)
    }

    /// The spec as `spec` makes it, starting from `base` (a sweep preset's run) when given.
    pub fn spec_over(&self, base: Option<RunSpec>) -> Result<(RunSpec, Vec<String>)> {
        let mut notes = Vec::new();
        let mut spec = match (&self.preset, base) {
            (Some(p), _) => {
                // JSON, or the scene a view PNG exported by the app carries.
                let text = noisescope::run::preset::read_preset_text(p)
                    .with_context(|| format!("reading preset {}", p.display()))?;
                // Validated below, once the flags are applied: --steps 5 mends a preset's 0.
                RunSpec::parse_json(&text).with_context(|| format!("preset {}", p.display()))?
            }
            (None, Some(base)) => base,
            (None, None) => RunSpec {
                batch: 256,
                ..Default::default()
            },
        };
        if let Some(d) = &self.data {
            // A new source keeps the preset's point count, image size and colour.
            let (points, size, rgb) = match &spec.data {
                DataSpec::Toy { points, .. } => (*points, 32, false),
                DataSpec::Images { size, rgb, .. } => (4096, *size, *rgb),
                _ => (4096, 32, false),
            };
            spec.data = DataSpec::parse(d, None, points, size, rgb)?;
        }
        self.apply_data_flags(&mut spec.data, &mut notes)?;
        let s = &mut spec.schedule;
        if let Some(v) = self.schedule {
            s.kind = v;
        }
        if let Some(v) = self.steps {
            s.steps = v;
        }
        if let Some(v) = self.rho {
            s.rho = v;
        }
        if let Some(v) = self.sigma_min {
            s.sigma_min = v;
        }
        if let Some(v) = self.sigma_max {
            s.sigma_max = v;
        }
        if let Some(v) = self.sampler {
            spec.sampler = v;
        }
        spec.adaptive = self.adaptive.unwrap_or(spec.adaptive);
        spec.adaptive_step = self.adaptive_step.unwrap_or(spec.adaptive_step);
        if let Some(v) = self.adaptive_estimator {
            spec.adaptive_estimator = v;
        }
        if let Some(v) = &self.estimator {
            spec.estimator = Some(v.clone());
        }
        let st = &mut spec.stochasticity;
        if let Some(v) = self.churn {
            st.churn = v;
        }
        if let Some(v) = self.tmin {
            st.tmin = v;
        }
        if let Some(v) = self.tmax {
            st.tmax = if v == f64::INFINITY { f64::MAX } else { v };
        }
        if let Some(v) = self.snoise {
            st.snoise = v;
        }
        if let Some(v) = self.eta {
            st.eta = v;
        }
        let g = &mut spec.guidance;
        if let Some(v) = self.cfg {
            g.cfg = v;
        }
        if let Some(v) = &self.class {
            g.class = Some(ClassSpec::parse(v)?);
        }
        if let Some(v) = self.nag {
            g.nag = v;
        }
        if let Some(v) = &self.nag_estimator {
            g.nag_estimator = Some(v.clone());
        }
        if let Some(v) = self.nag_form {
            g.nag_form = v;
        }
        if let Some(v) = self.nag_step {
            g.nag_step = v;
        }
        if let Some(v) = &self.nag_prior {
            g.nag_prior = match v.as_str() {
                "lognormal" => SigmaPrior::edm_training(),
                "loguniform" => SigmaPrior::LogUniform {
                    lo: spec.schedule.sigma_min,
                    hi: spec.schedule.sigma_max,
                },
                other => bail!("--nag-prior must be lognormal or loguniform, not '{other}'"),
            };
        }
        if let Some(v) = self.batch {
            spec.batch = v;
        }
        if let Some(v) = self.seed {
            spec.seed = v;
        }
        if let Some(v) = self.precision {
            spec.precision = v;
        }
        if let Some(v) = self.backend {
            spec.backend = v;
        }
        if let Some(v) = &self.diagnostics {
            spec.diagnostics.enabled = match v.as_str() {
                "on" => true,
                "off" => false,
                other => bail!("--diagnostics must be on or off, not '{other}'"),
            };
        }
        if let Some(v) = self.diagnostics_subset {
            spec.diagnostics.subset = v;
        }
        if let Some(d) = &self.denoiser {
            spec.denoiser = DenoiserSpec::parse(d)?;
        }
        if let Some(p) = &self.init_noise {
            spec.init_noise = Some(p.clone());
        }
        if let Some(p) = &self.churn_noise {
            spec.churn_noise = Some(p.clone());
        }
        if let Err(e) = spec.validate() {
            return Err(match &self.preset {
                Some(p) => anyhow::Error::new(e)
                    .context(format!("preset {} with the flags given", p.display())),
                None => e.into(),
            });
        }
        Ok((spec, notes))
    }

    /// --labels, --points, --image-size and --rgb go to the data they belong to (from --data or
    /// the preset); a flag the data has no use for gets a note.
    fn apply_data_flags(&self, data: &mut DataSpec, notes: &mut Vec<String>) -> Result<()> {
        let label = data.label();
        match data {
            DataSpec::Npy { labels, .. } => {
                if let Some(l) = &self.labels {
                    *labels = Some(l.clone());
                }
            }
            _ if self.labels.is_some() => bail!("--labels goes with --data npy:PATH, not {label}"),
            _ => {}
        }
        match data {
            DataSpec::Toy { name, points } if toys::SAMPLED.contains(&name.as_str()) => {
                *points = self.points.unwrap_or(*points);
            }
            _ if self.points.is_some() => notes.push(format!(
                "--points has no effect with {label}: only the sampled toys ({}) use it",
                toys::SAMPLED.join(", ")
            )),
            _ => {}
        }
        match data {
            DataSpec::Images { size, rgb, .. } => {
                *size = self.image_size.unwrap_or(*size);
                *rgb = self.rgb.unwrap_or(*rgb);
            }
            _ => {
                for (flag, given) in [
                    ("--image-size", self.image_size.is_some()),
                    ("--rgb", self.rgb.is_some()),
                ] {
                    if given {
                        notes.push(format!(
                            "{flag} has no effect with {label}: only images:DIR uses it"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs the sampler and writes traj.npy, denoised.npy, sigmas.npy, diagnostics.csv,
/// samples.png (image data) and run.json into --out (`run::export::write_run`, shared with the
/// app). Notes and warnings are printed once the run is written; a failure prints one line.
pub fn run(args: &SampleArgs) -> Result<()> {
    check_out_dir(&args.out).context("--out")?;
    let (spec, mut notes) = args.spec()?;
    notes.extend(spec.notes());
    let handle = std::sync::Arc::new(ModelHandle::load(&spec, &mut notes)?);
    let session = Session::new(&spec, handle.clone())?;
    let warnings: Vec<String> = steep_schedule_warning(&session.sigmas)
        .into_iter()
        .collect();
    let steps = session.sigmas.len() - 1;
    let mut states = Vec::with_capacity(steps + 1);
    let mut denoised = Vec::with_capacity(steps);
    let started = std::time::Instant::now();
    let result = session.run(&mut |info, _| {
        states.push(info.x.clone());
        denoised.push(info.denoised.clone());
        std::ops::ControlFlow::Continue(())
    })?;
    let total_s = started.elapsed().as_secs_f64();
    notes.extend(handle.compute.take_notices());
    let steps = denoised.len();
    states.push(result.output.x);
    let evaluations = result.output.evaluations;
    let sigmas_used = result.output.sigmas.clone();
    // Re-planned (adaptive) runs get the theory of the sigmas they used.
    let theory = session.theory_for(&sigmas_used);
    let x_final = states.last().unwrap_or(&session.x0);
    // The samples' quality against the data (class accuracy for class-conditional runs).
    let quality = match quality(
        x_final,
        &handle.source,
        session.cond.class.as_deref(),
        spec.seed,
    ) {
        Ok(q) => Some(q),
        Err(e) => {
            notes.push(format!("no quality metrics: {e}"));
            None
        }
    };
    let artifacts = RunArtifacts {
        spec: spec.clone(),
        backend: handle.backend.clone(),
        notes: notes
            .iter()
            .cloned()
            .chain(warnings.iter().map(|w| format!("warning: {w}")))
            .collect(),
        data_label: spec.data.label(),
        classes: handle.model_classes(),
        image: handle.source.image(),
        states,
        denoised,
        sigmas: sigmas_used,
        records: result.records,
        straightness: result.straightness,
        evaluations,
        tangent_c: session.tangent_c,
        theory,
        quality: quality.clone(),
        timings: Timings {
            total_s,
            sampling_s: result.sampling_s,
            diagnostics_s: result.diagnostics_s,
        },
    };
    let out = &args.out;
    write_run(out, &artifacts).with_context(|| format!("writing the run to {}", out.display()))?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{} steps, {evaluations} evaluations, {:.3} s sampling + {:.3} s diagnostics on {}; wrote {}",
        steps,
        artifacts.timings.sampling_s,
        artifacts.timings.diagnostics_s,
        handle.backend,
        out.display()
    );
    if let Some(q) = &quality {
        println!(
            "quality vs the data: sliced W2 {:.4}, MMD {:.4}, nearest training point {:.4}{}",
            q.sliced_w2,
            q.mmd,
            q.nearest_distance,
            q.class_accuracy.map_or(String::new(), |a| format!(
                ", class accuracy {a:.3} (exact class posterior at sigma {CLASS_SIGMA})"
            ))
        );
    }
    Ok(())
}
