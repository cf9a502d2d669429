//! The app's sweep thread: a named `noisescope-sweeper` thread beside the sampling worker and the
//! trainer, with its own commands and events. It runs one sweep at a time and sends each row as
//! it is measured; cancel (or a newer sweep) stops the running point at its next step, and the
//! finished rows stay. `SweepBoard` is what the Sweep tab draws: the current sweep and a pinned
//! baseline, fed by `SweepBoard::drain` within the frame's budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};

use super::SweepSpec;
use super::engine::{PreparedSweep, SweepRow};
use crate::run::store::drain_within;
use crate::run::worker::{Wake, Waker, failure_of, newest};

/// UI -> sweep thread.
#[derive(Debug)]
pub enum SweepCommand {
    Start {
        generation: u64,
        spec: Box<SweepSpec>,
    },
}

/// Sweep thread -> UI.
#[derive(Debug)]
pub enum SweepEvent {
    /// The sweep is checked and loaded; `points` rows will follow.
    Started {
        generation: u64,
        points: usize,
        notes: Vec<String>,
    },
    Row {
        generation: u64,
        row: Box<SweepRow>,
    },
    Finished {
        generation: u64,
        cancelled: bool,
    },
    Failed {
        generation: u64,
        message: String,
    },
}

/// The UI's handle on the sweep thread; dropping it cancels the sweep and joins the thread.
pub struct SweepThread {
    commands: Option<Sender<SweepCommand>>,
    events: Receiver<SweepEvent>,
    /// The sweep that may run; 0 = none (cancelled).
    latest: Arc<AtomicU64>,
    next_generation: u64,
    thread: Option<JoinHandle<()>>,
}

impl SweepThread {
    pub fn spawn(waker: Waker) -> Result<Self> {
        let (command_tx, command_rx) = channel();
        let (event_tx, event_rx) = channel();
        let latest = Arc::new(AtomicU64::new(0));
        let state = Sweeper {
            commands: command_rx,
            events: event_tx,
            latest: latest.clone(),
            waker,
        };
        let thread = std::thread::Builder::new()
            .name("noisescope-sweeper".into())
            .spawn(move || state.serve())
            .map_err(|e| Error::InvalidSpec(format!("cannot start the sweep thread: {e}")))?;
        Ok(SweepThread {
            commands: Some(command_tx),
            events: event_rx,
            latest,
            next_generation: 1,
            thread: Some(thread),
        })
    }

    /// Starts a sweep (cancelling a running one); returns its generation.
    pub fn start(&mut self, spec: SweepSpec) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.latest.store(generation, Ordering::SeqCst);
        if let Some(tx) = &self.commands {
            let _ = tx.send(SweepCommand::Start {
                generation,
                spec: Box::new(spec),
            });
        }
        generation
    }

    /// Stops the running sweep at its next step; its finished rows stay.
    pub fn cancel(&self) {
        self.canceller().cancel();
    }

    /// A handle that cancels from anywhere (another thread, a callback).
    pub fn canceller(&self) -> SweepCanceller {
        SweepCanceller(self.latest.clone())
    }

    pub fn try_event(&self) -> Option<SweepEvent> {
        self.events.try_recv().ok()
    }
}

impl Drop for SweepThread {
    fn drop(&mut self) {
        self.latest.store(0, Ordering::SeqCst);
        self.commands.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Cancels the running sweep of a `SweepThread`.
#[derive(Clone)]
pub struct SweepCanceller(Arc<AtomicU64>);

impl SweepCanceller {
    pub fn cancel(&self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

struct Sweeper {
    commands: Receiver<SweepCommand>,
    events: Sender<SweepEvent>,
    latest: Arc<AtomicU64>,
    waker: Waker,
}

impl Sweeper {
    fn serve(self) {
        while let Ok(command) = self.commands.recv() {
            let Some(SweepCommand::Start { generation, spec }) = newest(&self.commands, command)
            else {
                return;
            };
            if generation != self.latest.load(Ordering::SeqCst) {
                continue;
            }
            if let Some(message) = failure_of(|| self.run(generation, &spec)) {
                self.send(
                    SweepEvent::Failed {
                        generation,
                        message,
                    },
                    Wake::Now,
                );
            }
        }
    }

    fn send(&self, event: SweepEvent, wake: Wake) {
        let _ = self.events.send(event);
        (self.waker)(wake);
    }

    fn run(&self, generation: u64, spec: &SweepSpec) -> Result<()> {
        let stop = || self.latest.load(Ordering::SeqCst) != generation;
        let prepared = PreparedSweep::new(spec)?;
        self.send(
            SweepEvent::Started {
                generation,
                points: prepared.points.len(),
                notes: prepared.notes.clone(),
            },
            Wake::Now,
        );
        let outcome = prepared.run(
            &mut |row| {
                self.send(
                    SweepEvent::Row {
                        generation,
                        row: Box::new(row.clone()),
                    },
                    Wake::Now,
                );
                std::ops::ControlFlow::Continue(())
            },
            &stop,
        )?;
        self.send(
            SweepEvent::Finished {
                generation,
                cancelled: outcome.cancelled,
            },
            Wake::Now,
        );
        Ok(())
    }
}

/// Where a sweep stands.
#[derive(Clone, Debug, PartialEq)]
pub enum SweepStatus {
    /// Asked for; checking and loading.
    Preparing,
    Running,
    Finished,
    Cancelled,
    Failed(String),
}

/// A sweep as the tab draws it: its spec, the rows so far and how many there will be.
#[derive(Clone, Debug)]
pub struct SweepRecord {
    pub generation: u64,
    pub spec: SweepSpec,
    pub rows: Vec<SweepRow>,
    pub total: usize,
    pub status: SweepStatus,
    pub notes: Vec<String>,
}

impl SweepRecord {
    pub fn is_running(&self) -> bool {
        matches!(self.status, SweepStatus::Preparing | SweepStatus::Running)
    }

    /// Finished points over all points (0 while preparing).
    pub fn progress(&self) -> f32 {
        if self.total == 0 {
            0.0
        } else {
            self.rows.len() as f32 / self.total as f32
        }
    }
}

/// The current sweep and the pinned baseline the tab overlays.
#[derive(Default)]
pub struct SweepBoard {
    pub current: Option<SweepRecord>,
    pub baseline: Option<SweepRecord>,
}

impl SweepBoard {
    /// A sweep was asked for under `generation`.
    pub fn begin(&mut self, generation: u64, spec: SweepSpec) {
        self.current = Some(SweepRecord {
            generation,
            total: spec.points().map_or(0, |p| p.len()),
            spec,
            rows: Vec::new(),
            status: SweepStatus::Preparing,
            notes: Vec::new(),
        });
    }

    /// Applies one event of the current sweep (older sweeps' events are dropped).
    pub fn apply(&mut self, event: SweepEvent) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        match event {
            SweepEvent::Started {
                generation,
                points,
                notes,
            } if generation == current.generation => {
                current.total = points;
                current.notes = notes;
                current.status = SweepStatus::Running;
            }
            SweepEvent::Row { generation, row } if generation == current.generation => {
                current.rows.push(*row);
            }
            SweepEvent::Finished {
                generation,
                cancelled,
            } if generation == current.generation => {
                current.status = if cancelled {
                    SweepStatus::Cancelled
                } else {
                    SweepStatus::Finished
                };
            }
            SweepEvent::Failed {
                generation,
                message,
            } if generation == current.generation => {
                current.status = SweepStatus::Failed(message);
            }
            _ => {}
        }
    }

    /// Applies waiting events for at most `budget`.
    pub fn drain(&mut self, next: impl FnMut() -> Option<SweepEvent>, budget: Duration) {
        drain_within(budget, next, |event| self.apply(event));
    }

    /// Keeps the current sweep (its rows so far) as the baseline to overlay.
    pub fn pin_baseline(&mut self) -> bool {
        match &self.current {
            Some(current) if !current.rows.is_empty() => {
                self.baseline = Some(current.clone());
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::sweep::{SweepAxis, SweepMetric};
    use std::sync::atomic::AtomicUsize;

    fn small_sweep() -> Result<SweepSpec> {
        let mut base = crate::run::RunSpec {
            batch: 64,
            ..Default::default()
        };
        base.diagnostics.enabled = false;
        Ok(SweepSpec {
            name: "t".into(),
            base,
            vary: vec![SweepAxis::parse("steps=3,4,5,6,7,8,9,10,11,12")?],
            metrics: vec![SweepMetric::W2],
        })
    }

    #[test]
    fn a_cancelled_sweep_keeps_its_finished_rows() -> Result<()> {
        // The thread wakes the UI after each event: Started, then one per row. Cancelling on
        // the third wake (the second row) stops the third point at its first step.
        let wakes = Arc::new(AtomicUsize::new(0));
        let canceller: Arc<std::sync::OnceLock<SweepCanceller>> = Arc::default();
        let (counter, cancel) = (wakes.clone(), canceller.clone());
        let mut thread = SweepThread::spawn(Arc::new(move |_| {
            if counter.fetch_add(1, Ordering::SeqCst) == 2
                && let Some(c) = cancel.get()
            {
                c.cancel();
            }
        }))?;
        let _ = canceller.set(thread.canceller());
        let spec = small_sweep()?;
        let mut board = SweepBoard::default();
        let generation = thread.start(spec.clone());
        board.begin(generation, spec);
        assert_eq!(board.current.as_ref().map(|c| c.total), Some(10));
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while board.current.as_ref().is_some_and(SweepRecord::is_running) {
            board.drain(|| thread.try_event(), Duration::from_millis(50));
            assert!(
                std::time::Instant::now() < deadline,
                "the sweep never ended"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let current = board
            .current
            .as_ref()
            .ok_or_else(|| Error::InvalidSpec("no sweep".into()))?;
        assert_eq!(current.status, SweepStatus::Cancelled);
        assert_eq!(current.rows.len(), 2);
        for (k, row) in current.rows.iter().enumerate() {
            assert_eq!(row.index, k);
            assert!(row.metric(SweepMetric::W2).is_some());
        }
        assert!(board.pin_baseline());
        Ok(())
    }
}
