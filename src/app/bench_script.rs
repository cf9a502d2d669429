//! The `noisescope bench-ui` script: the app on the default scene, S_churn changes waited for
//! one by one, then a continuously dragged slider; the figures go into measure.rs's
//! `BenchReport`, printed when the window closes.

use std::time::{Duration, Instant};

use crate::core::sampler::SamplerKind;
use crate::run::store::RunStatus;

use super::NoiseScopeApp;
use super::measure::{self, BackgroundTraining, Bench, BenchReport, Phase};
use super::training_tab::ModelKind;

impl NoiseScopeApp {
    /// One step of the `bench-ui` script: S_churn changes waited for one by one, then a
    /// continuous drag; at the end the report is printed and the window closes.
    pub(super) fn bench_step(&mut self, ctx: &egui::Context) {
        let Some(mut bench) = self.bench.take() else {
            return;
        };
        // Like a user: frames come from worker events and a slow timer; only a drag (pointer
        // motion) and the paint measurement paint every frame.
        let now = Instant::now();
        let since_last = bench
            .last_frame
            .map(|t| 1e3 * now.duration_since(t).as_secs_f64());
        bench.last_frame = Some(now);
        let back_to_back = matches!(bench.phase, Phase::PaintIdle | Phase::Drag);
        if back_to_back {
            ctx.request_repaint();
        } else if bench.phase == Phase::TrainAlone {
            // Training alone: the app's own repaints (the trainer's reports) set the pace.
            ctx.request_repaint_after(Duration::from_millis(250));
        } else {
            ctx.request_repaint_after(Duration::from_millis(30));
        }
        let shown_finished = self.started_at.is_none()
            && self.store.current.as_ref().is_some_and(|r| {
                r.generation == self.store.expected && r.status == RunStatus::Finished
            });
        bench.frames += 1;
        // The first frames of a phase may follow a timer wait: skip them.
        if let Some(ms) = since_last.filter(|_| back_to_back && bench.frames > 3) {
            match bench.phase {
                Phase::PaintIdle => measure::push(&mut bench.paint_idle_ms, ms),
                _ if self.prev_sampling => {
                    measure::push(&mut bench.paint_sampling_ms, ms);
                }
                _ => {}
            }
        }
        match bench.phase {
            Phase::Warmup => {
                if !shown_finished {
                    bench.frames = 0;
                } else if bench.frames > 10 {
                    self.stats.clear();
                    bench.frames = 0;
                    bench.phase = match bench.opts.train_steps {
                        Some(steps) => {
                            self.settings.training.steps = steps;
                            // Steps only, like `noisescope train` without --eval-every.
                            self.settings.training.preview_every = 0;
                            self.start_training(ctx);
                            Phase::TrainAlone
                        }
                        None => Phase::PaintIdle,
                    };
                }
            }
            Phase::TrainAlone => {
                let step = self.training_live_step().unwrap_or(0);
                if !self.training().status.is_active() {
                    // Refused or failed: the error is in the status bar; say it in the report too.
                    eprintln!("bench-ui: the background training did not run");
                    bench.phase = Phase::Done;
                } else if let Some((from, from_step)) = bench.train_mark {
                    let s = now.duration_since(from).as_secs_f64();
                    if s >= bench.opts.train_alone_seconds {
                        bench.train_alone_rate = Some(step.saturating_sub(from_step) as f64 / s);
                        bench.train_mark = Some((now, step));
                        bench.frames = 0;
                        bench.phase = Phase::PaintIdle;
                    }
                } else if step >= 10 {
                    // Past the data loading and the first (allocating) steps.
                    bench.train_mark = Some((now, step));
                }
            }
            Phase::PaintIdle => {
                if bench.paint_idle_ms.len() >= 60 {
                    bench.frames = 0;
                    bench.phase = Phase::Rerun { waiting: false };
                }
            }
            Phase::Rerun { waiting: false } => {
                if bench.frames > 3 {
                    bench.generation_before = self.store.expected;
                    self.settings.spec.sampler = SamplerKind::Edm;
                    self.settings.spec.stochasticity.churn = Bench::churn(bench.reruns_done);
                    bench.phase = Phase::Rerun { waiting: true };
                }
            }
            Phase::Rerun { waiting: true } => {
                if shown_finished && self.store.expected > bench.generation_before {
                    bench.reruns_done += 1;
                    bench.frames = 0;
                    bench.phase = if bench.reruns_done >= bench.opts.reruns {
                        bench.single_reruns = Some((
                            measure::Summary::of(&self.stats.rerun_ms),
                            measure::Summary::of(&self.stats.worker_ms),
                        ));
                        self.stats.clear();
                        bench.drag_started = Some(Instant::now());
                        bench.drag_generation_start = self.store.expected;
                        Phase::Drag
                    } else {
                        Phase::Rerun { waiting: false }
                    };
                }
            }
            Phase::Drag => {
                let t = bench
                    .drag_started
                    .map_or(0.0, |s| s.elapsed().as_secs_f64());
                if shown_finished {
                    bench.drag_finished += 1;
                }
                if t >= bench.opts.drag_seconds {
                    bench.phase = Phase::Done;
                } else {
                    // A slider dragged back and forth: a new value every frame.
                    self.settings.spec.stochasticity.churn =
                        40.0 + 30.0 * (std::f64::consts::TAU * t).sin();
                }
            }
            Phase::Done => {
                if !bench.closing {
                    bench.closing = true;
                    bench.training = self.background_training(&bench);
                    self.cancel_training();
                    let report = self.bench_report(&bench);
                    println!("{}", report.text());
                    if let Some(path) = &bench.opts.json {
                        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                        if let Err(e) = std::fs::write(path, text) {
                            eprintln!("error: {}: {e}", path.display());
                        }
                    }
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
            }
        }
        self.bench = Some(bench);
    }

    /// The background training's figures at the end of the script.
    fn background_training(&self, bench: &Bench) -> Option<BackgroundTraining> {
        let t = &self.settings.training;
        let (from, from_step) = bench.train_mark?;
        let step = self.training_live_step().unwrap_or(from_step);
        let model = match t.model {
            ModelKind::Mlp => format!("mlp {}x{}", t.mlp_width, t.mlp_depth),
            ModelKind::Unet => format!("unet width {}", t.unet_width),
        };
        Some(BackgroundTraining {
            setup: format!(
                "{model}, batch {}, {}, {} steps asked, seed {}, no previews",
                t.batch,
                self.settings.spec.data.label(),
                t.steps,
                t.seed
            ),
            steps_per_s_ui_idle: bench.train_alone_rate.unwrap_or(f64::NAN),
            steps_per_s_during_script: step.saturating_sub(from_step) as f64
                / from.elapsed().as_secs_f64().max(1e-9),
            running_throughout: self.training().status.is_active(),
        })
    }

    fn bench_report(&self, bench: &Bench) -> BenchReport {
        use measure::Summary;
        let s = &self.stats;
        let spec = &self.settings.spec;
        let empty = Summary::of(&Default::default());
        let single = bench.single_reruns.unwrap_or((empty, empty));
        BenchReport {
            scene: format!(
                "{}, {} particles, {} {} steps, {} denoiser, diagnostics subset {}",
                spec.data.label(),
                spec.batch,
                spec.sampler,
                spec.schedule.steps,
                spec.denoiser.label(),
                spec.diagnostics.subset
            ),
            backend: self
                .store
                .current
                .as_ref()
                .map_or_else(String::new, |r| r.backend.clone()),
            renderer: self.renderer.name().to_string(),
            window: bench.opts.window,
            reruns: bench.reruns_done,
            rerun_latency: single.0,
            worker_time: single.1,
            paint_idle: Summary::of(&bench.paint_idle_ms),
            paint_sampling: Summary::of(&bench.paint_sampling_ms),
            frame_cpu_sampling: Summary::of(&s.sampling_ms),
            app_code: Summary::of(&s.app_ms),
            drag_rerun_latency: Summary::of(&s.rerun_ms),
            drag_runs_started: self
                .store
                .expected
                .saturating_sub(bench.drag_generation_start),
            drag_runs_finished: bench.drag_finished,
            training: bench.training.clone(),
        }
    }
}
