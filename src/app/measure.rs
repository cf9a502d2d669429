//! Measurements the issue asks for, logged rather than asserted (design.md: performance claims
//! live in benches and `noisescope bench*`, never in timed tests): frame times while sampling and
//! the latency from a setting change to its finished rerun. `noisescope bench-ui` drives the real
//! window through a script (`Bench`) and prints a `BenchReport`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::core::sampler::SamplerKind;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::models::learned::bundled_data;
use crate::run::RunSpec;
use crate::run::spec::DenoiserSpec;
use crate::run::store::{RunStatus, RunStore};
use crate::run::worker::Worker;

use super::DRAIN_BUDGET;
use crate::core::quantile;

/// Samples kept per series (a long session must not grow without bound).
const KEEP: usize = 20_000;

pub(crate) fn push(series: &mut VecDeque<f64>, value: f64) {
    if series.len() == KEEP {
        series.pop_front();
    }
    series.push_back(value);
}

/// Frame and rerun timings of a session.
#[derive(Clone, Debug, Default)]
pub struct FrameStats {
    /// Frame time (ms) of frames drawn while a run was in flight: eframe's cpu_usage (ui,
    /// tessellation and the renderer's calls, without the buffer swap) in the window.
    pub sampling_ms: VecDeque<f64>,
    /// The app's own per-frame code (logic + panels) while sampling, ms.
    pub app_ms: VecDeque<f64>,
    /// Setting change to finished rerun applied in the UI, ms.
    pub rerun_ms: VecDeque<f64>,
    /// The worker's sampling + diagnostics time of those reruns, ms.
    pub worker_ms: VecDeque<f64>,
}

impl FrameStats {
    /// A frame's CPU time; only frames drawn while sampling are kept.
    pub fn record_frame(&mut self, ms: f64, sampling: bool) {
        if sampling {
            push(&mut self.sampling_ms, ms);
        }
    }

    pub fn record_app(&mut self, ms: f64) {
        push(&mut self.app_ms, ms);
    }

    pub fn record_rerun(&mut self, ms: f64, worker_ms: f64) {
        push(&mut self.rerun_ms, ms);
        push(&mut self.worker_ms, worker_ms);
    }

    /// The newest rerun latency, ms.
    pub fn last_rerun_ms(&self) -> Option<f64> {
        self.rerun_ms.back().copied()
    }

    /// 95th percentile of the frame time while sampling (NaN before any such frame).
    pub fn p95_sampling_ms(&self) -> f64 {
        quantile(&self.sampling_ms, 0.95)
    }

    /// Forgets everything (after a warm-up).
    pub fn clear(&mut self) {
        *self = FrameStats::default();
    }
}

/// Median, 95th percentile and maximum of a series, with its size.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(series: &VecDeque<f64>) -> Self {
        Summary {
            n: series.len(),
            p50: quantile(series, 0.5),
            p95: quantile(series, 0.95),
            max: quantile(series, 1.0),
        }
    }

    fn line(&self) -> String {
        if self.n == 0 {
            return "no samples (n = 0)".into();
        }
        format!(
            "p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (n = {})",
            self.p50, self.p95, self.max, self.n
        )
    }
}

/// What `noisescope bench-ui` measures.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Setting changes, each waited for until its rerun is shown.
    pub reruns: usize,
    /// Seconds of a continuously dragged S_churn slider (a new run every frame).
    pub drag_seconds: f64,
    /// Where to write the report as JSON.
    pub json: Option<PathBuf>,
    /// Window size in points.
    pub window: [f32; 2],
    /// Wait for vertical sync when presenting (the app's setting); off isolates rendering cost.
    pub vsync: bool,
    /// What paints the window.
    pub renderer: super::Renderer,
    /// The scene's settings (`bench_scene`).
    pub scene: super::Settings,
    /// Train the Training tab's settings on the scene's data in the background for this many
    /// steps, started once the launch run is shown and cancelled at the end (None: no training).
    pub train_steps: Option<usize>,
    /// Seconds of that training with the UI idle (no run in flight) before the script starts:
    /// the app's training steps/s, against `noisescope train`'s.
    pub train_alone_seconds: f64,
}

/// The default scene for `bench-ui`: with a learned denoiser, on the data it was trained on
/// (the bundled moons model: toy:moons, the default scene's point count).
pub fn bench_scene(denoiser: &DenoiserSpec) -> Result<super::Settings> {
    let mut scene = super::Settings::default_scene();
    match denoiser {
        DenoiserSpec::Exact => {}
        DenoiserSpec::Bundled(name) => {
            denoiser.check_available()?;
            let trained = bundled_data(name).ok_or_else(|| {
                Error::InvalidSpec(format!("the bundled model '{name}' names no data"))
            })?;
            let default_points = match &scene.spec.data {
                DataSpec::Toy { points, .. } => *points,
                _ => 4096,
            };
            scene.spec.data = match trained {
                DataSpec::Toy { name, .. } => DataSpec::Toy {
                    name,
                    points: default_points,
                },
                other => other,
            };
            scene.spec.denoiser = denoiser.clone();
        }
        DenoiserSpec::Checkpoint(_) => {
            return Err(Error::InvalidSpec(
                "bench-ui --denoiser takes exact or bundled:NAME".into(),
            ));
        }
    }
    Ok(scene)
}

impl Summary {
    /// "p50 .. ms, p95 .. ms, max .. ms (n = ..)".
    pub fn text(&self) -> String {
        self.line()
    }
}

/// The numbers of one bench-ui session.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub scene: String,
    pub backend: String,
    /// What painted the window (glow or wgpu).
    pub renderer: String,
    pub window: [f32; 2],
    pub reruns: usize,
    /// One setting change -> its finished rerun applied and painted.
    pub rerun_latency: Summary,
    /// The worker's share of it (sampling + diagnostics).
    pub worker_time: Summary,
    /// Wall time of a painted frame (back-to-back frames: ui, tessellation, rasterisation and
    /// presentation) with no run in flight.
    pub paint_idle: Summary,
    /// The same while sampling: a slider dragged, a new run every frame.
    pub paint_sampling: Summary,
    /// eframe's cpu_usage while sampling: ui, tessellation and the renderer's calls, without the
    /// buffer swap (where a software OpenGL rasteriser does most of its work).
    pub frame_cpu_sampling: Summary,
    /// The app's logic + panels alone, while sampling.
    pub app_code: Summary,
    /// During the drag: change -> finished rerun painted, for the runs not overtaken.
    pub drag_rerun_latency: Summary,
    /// Runs started and finished during the drag.
    pub drag_runs_started: u64,
    pub drag_runs_finished: u64,
    /// The training that ran in the background, if one was asked for.
    pub training: Option<BackgroundTraining>,
}

/// What the background training of a bench-ui session did.
#[derive(Clone, Debug, Serialize)]
pub struct BackgroundTraining {
    /// Model, batch and data, as `noisescope train` would be told them.
    pub setup: String,
    /// Steps/s while the UI was idle (`train_alone_seconds`, first steps excluded).
    pub steps_per_s_ui_idle: f64,
    /// Steps/s over the rest of the script (reruns, paint and drag phases).
    pub steps_per_s_during_script: f64,
    /// Whether the training was still running when the script ended (so every figure above
    /// the training line was taken while it ran).
    pub running_throughout: bool,
}

impl BenchReport {
    /// The report as the lines `bench-ui` prints.
    pub fn text(&self) -> String {
        let training = self.training.as_ref().map_or_else(String::new, |t| {
            format!(
                "\nbackground training ({}): {:.1} steps/s with the UI idle, {:.1} steps/s during \
                 the script; {}",
                t.setup,
                t.steps_per_s_ui_idle,
                t.steps_per_s_during_script,
                if t.running_throughout {
                    "running throughout"
                } else {
                    "it ENDED before the script did (ask for more --train-steps)"
                }
            )
        });
        format!(
            "bench-ui: {}, backend {}, {}x{} window painted by {}\n\
             slider change -> finished rerun shown ({} reruns): {}\n\
             \x20 of which the worker's sampling + diagnostics: {}\n\
             painted frame time, idle (back-to-back frames): {}\n\
             painted frame time while sampling (slider dragged): {}\n\
             \x20 eframe cpu_usage of those frames (without the buffer swap): {}\n\
             \x20 the app's own code (logic + panels): {}\n\
             drag: {} runs started, {} finished (the rest cancelled by newer ones); change -> shown: {}{}",
            self.scene,
            self.backend,
            self.window[0],
            self.window[1],
            self.renderer,
            self.reruns,
            self.rerun_latency.line(),
            self.worker_time.line(),
            self.paint_idle.line(),
            self.paint_sampling.line(),
            self.frame_cpu_sampling.line(),
            self.app_code.line(),
            self.drag_runs_started,
            self.drag_runs_finished,
            self.drag_rerun_latency.line(),
            training,
        )
    }
}

/// Where the bench script is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Phase {
    /// Waiting for the launch run, then a few quiet frames.
    Warmup,
    /// Background training with the UI idle (`train_alone_seconds`).
    TrainAlone,
    /// Frames painted back to back with no run in flight.
    PaintIdle,
    /// Change a setting (`waiting: false`) or wait for its rerun (`waiting: true`).
    Rerun {
        waiting: bool,
    },
    /// A new setting every frame.
    Drag,
    Done,
}

/// The bench script's state (driven by `NoiseScopeApp::bench_step`).
pub(crate) struct Bench {
    pub opts: BenchOptions,
    pub phase: Phase,
    pub frames: usize,
    pub reruns_done: usize,
    /// The generation asked for before the last change; its rerun is newer.
    pub generation_before: u64,
    pub drag_started: Option<Instant>,
    pub drag_generation_start: u64,
    pub drag_finished: u64,
    pub closing: bool,
    /// When the previous frame's script step ran (frame-to-frame time).
    pub last_frame: Option<Instant>,
    pub paint_idle_ms: VecDeque<f64>,
    pub paint_sampling_ms: VecDeque<f64>,
    /// Single-change reruns, set aside when the drag starts.
    pub single_reruns: Option<(Summary, Summary)>,
    /// (when, training step) at the start of the idle training window, then of the script.
    pub train_mark: Option<(Instant, usize)>,
    pub train_alone_rate: Option<f64>,
    /// Taken when the script ends, before the training is cancelled.
    pub training: Option<BackgroundTraining>,
}

impl Bench {
    pub fn new(opts: BenchOptions) -> Self {
        Bench {
            opts,
            phase: Phase::Warmup,
            frames: 0,
            reruns_done: 0,
            generation_before: 0,
            drag_started: None,
            drag_generation_start: 0,
            drag_finished: 0,
            closing: false,
            last_frame: None,
            paint_idle_ms: VecDeque::new(),
            paint_sampling_ms: VecDeque::new(),
            single_reruns: None,
            train_mark: None,
            train_alone_rate: None,
            training: None,
        }
    }

    /// The k-th S_churn value: consecutive ones differ, so every change is a real rerun.
    pub fn churn(k: usize) -> f64 {
        4.0 * ((k % 10) + 1) as f64
    }
}

/// Reruns of `spec` with S_churn changed each time (edm sampler), driven like the app (the
/// worker thread, the store, bounded drains) but without a window: the engine-and-protocol
/// share of the rerun latency. Returns the change -> finished latency and the worker's
/// sampling + diagnostics time, after one warm-up run (data loading).
pub fn headless_reruns(spec: &RunSpec, reruns: usize) -> Result<(Summary, Summary)> {
    let mut worker = Worker::spawn(Arc::new(|_| {}))?;
    let mut store = RunStore::default();
    let (mut latency, mut worker_ms) = (VecDeque::new(), VecDeque::new());
    for k in 0..=reruns {
        let mut run = spec.clone();
        if k > 0 {
            run.sampler = SamplerKind::Edm;
            run.stochasticity.churn = Bench::churn(k - 1);
        }
        let started = Instant::now();
        store.expected = worker.start(run);
        loop {
            store.drain(|| worker.try_event(), DRAIN_BUDGET);
            if let Some(e) = store.last_error.take() {
                return Err(Error::App(e));
            }
            if let Some(r) = store
                .current
                .as_ref()
                .filter(|r| r.generation == store.expected)
                && r.status == RunStatus::Finished
            {
                if k > 0 {
                    push(&mut latency, 1e3 * started.elapsed().as_secs_f64());
                    push(&mut worker_ms, 1e3 * (r.sampling_s + r.diagnostics_s));
                }
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(Error::App("a rerun took over two minutes".into()));
            }
            // About the pace of an event-driven UI waking up.
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    Ok((Summary::of(&latency), Summary::of(&worker_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_and_churn_values() {
        let mut s = FrameStats::default();
        for v in 1..=100 {
            s.record_frame(v as f64, true);
        }
        s.record_frame(500.0, false);
        let sum = Summary::of(&s.sampling_ms);
        assert_eq!(sum.n, 100);
        assert!((sum.p95 - 95.05).abs() < 1e-9);
        assert_eq!(sum.max, 100.0);
        assert!((0..30).all(|k| Bench::churn(k) != Bench::churn(k + 1)));
    }
}
