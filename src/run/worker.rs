//! The named background thread that owns the backend and runs samplers; the UI only sends
//! commands and drains events. A newer Start cancels the running one at its next step.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::backend::{BackendChoice, Compute};
use crate::error::{Error, Result};

use super::handle::ModelHandle;
use super::protocol::{Command, DataView, Event, StepSnapshot};
use super::session::Session;
use super::spec::RunSpec;

/// How soon the UI should look at a new event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A step of a run in flight: steps can come faster than frames, so the UI may batch them.
    Progress,
    /// A run started, finished or failed: show it now.
    Now,
}

/// Called after each event so the UI wakes up (egui's `request_repaint`).
pub type Waker = Arc<dyn Fn(Wake) + Send + Sync>;

/// The UI's handle on the worker; dropping it stops and joins the thread.
pub struct Worker {
    commands: Option<Sender<Command>>,
    events: Receiver<Event>,
    /// The newest generation asked for; older runs stop at their next step.
    latest: Arc<AtomicU64>,
    next_generation: u64,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn(waker: Waker) -> Result<Self> {
        let (command_tx, command_rx) = channel();
        let (event_tx, event_rx) = channel();
        let latest = Arc::new(AtomicU64::new(0));
        let state = WorkerState {
            commands: command_rx,
            events: event_tx,
            latest: latest.clone(),
            waker,
            handle: None,
            compute: Mutex::new(None),
        };
        let thread = std::thread::Builder::new()
            .name("noisescope-worker".into())
            .spawn(move || state.serve())
            .map_err(|e| Error::InvalidSpec(format!("cannot start the worker thread: {e}")))?;
        Ok(Worker {
            commands: Some(command_tx),
            events: event_rx,
            latest,
            next_generation: 1,
            thread: Some(thread),
        })
    }

    /// Starts a run; returns its generation.
    pub fn start(&mut self, spec: RunSpec) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.latest.store(generation, Ordering::SeqCst);
        if let Some(tx) = &self.commands {
            let _ = tx.send(Command::Start {
                generation,
                spec: Box::new(spec),
            });
        }
        generation
    }

    /// The next waiting event, if any.
    pub fn try_event(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Cancel the run, close the channel (the thread's loop ends), then join.
        self.latest.store(u64::MAX, Ordering::SeqCst);
        self.commands.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The newest of `command` and the commands waiting behind it (only the newest Start matters);
/// `None` once the UI has dropped its end.
pub(crate) fn newest<C>(commands: &Receiver<C>, mut command: C) -> Option<C> {
    loop {
        match commands.try_recv() {
            Ok(newer) => command = newer,
            Err(TryRecvError::Empty) => return Some(command),
            Err(TryRecvError::Disconnected) => return None,
        }
    }
}

/// Runs `job` and says why it failed, if it did: its error, or a panic (a bug must not kill a
/// background thread; the thread goes on serving).
pub(crate) fn failure_of(job: impl FnOnce() -> Result<()>) -> Option<String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(panic) => Some(format!(
            "internal error (please report): {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("panic")
        )),
    }
}

struct WorkerState {
    commands: Receiver<Command>,
    events: Sender<Event>,
    latest: Arc<AtomicU64>,
    waker: Waker,
    /// The loaded data on its backend, reused while data / precision / prior stay the same.
    handle: Option<Arc<ModelHandle>>,
    /// The backend, created once per choice (a GPU device is expensive).
    compute: Mutex<Option<(BackendChoice, Compute, Vec<String>)>>,
}

impl WorkerState {
    fn serve(mut self) {
        while let Ok(command) = self.commands.recv() {
            let Some(Command::Start { generation, spec }) = newest(&self.commands, command) else {
                return;
            };
            if generation != self.latest.load(Ordering::SeqCst) {
                continue;
            }
            // A bug must not kill the worker: a panic becomes a failed run, and the
            // thread serves the next command.
            if let Some(message) = failure_of(|| self.run(generation, &spec)) {
                self.send(Event::Failed {
                    generation,
                    message,
                });
            }
        }
    }

    fn send(&self, event: Event) {
        let _ = self.events.send(event);
        (self.waker)(Wake::Now);
    }

    fn compute(&self, choice: BackendChoice) -> Result<(Compute, Vec<String>)> {
        let mut slot = self
            .compute
            .lock()
            .map_err(|_| Error::InvalidSpec("backend lock poisoned".into()))?;
        if let Some((c, compute, notes)) = slot.as_ref()
            && *c == choice
        {
            return Ok((compute.clone(), notes.clone()));
        }
        let mut notes = Vec::new();
        let compute = Compute::select(choice, &mut notes)?;
        *slot = Some((choice, compute.clone(), notes.clone()));
        Ok((compute, notes))
    }

    fn run(&mut self, generation: u64, spec: &RunSpec) -> Result<()> {
        spec.validate()?;
        let (compute, notes) = self.compute(spec.backend)?;
        let reuse = self.handle.as_ref().filter(|h| h.serves(spec)).cloned();
        let handle = match reuse {
            Some(h) => h,
            None => {
                let source = Arc::new(spec.load_data()?);
                let h = Arc::new(ModelHandle::with_source(spec, source, &compute)?);
                self.handle = Some(h.clone());
                h
            }
        };
        let session = Session::new(spec, handle.clone())?;
        let source = &handle.source;
        self.send(Event::Started {
            generation,
            spec: Box::new(spec.clone()),
            backend: handle.backend.clone(),
            notes,
            data: DataView {
                label: spec.data.label(),
                points: handle.display_points(),
                image: source.image(),
                classes: handle.model_classes(),
            },
            sigmas: session.sigmas.clone(),
            tangent_c: session.tangent_c,
            theory: session.theory.clone(),
        });
        let started = Instant::now();
        let latest = self.latest.clone();
        let events = self.events.clone();
        let waker = self.waker.clone();
        let result = session.run(&mut |info, records| {
            let _ = events.send(Event::Step {
                generation,
                snapshot: StepSnapshot {
                    step: info.step,
                    sigma: info.sigma,
                    sigma_next: info.sigma_next,
                    x: Arc::new(info.x.clone()),
                    denoised: Arc::new(info.denoised.clone()),
                    evaluations: info.evaluations,
                },
                records: records.to_vec(),
                elapsed_s: started.elapsed().as_secs_f64(),
            });
            waker(Wake::Progress);
            if latest.load(Ordering::SeqCst) == generation {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })?;
        let theory = session.theory_for(&result.output.sigmas);
        self.send(Event::Finished {
            generation,
            x_final: Arc::new(result.output.x),
            sigmas: result.output.sigmas,
            records: result.records,
            straightness: result.straightness,
            evaluations: result.output.evaluations,
            sampling_s: result.sampling_s,
            diagnostics_s: result.diagnostics_s,
            stopped: result.output.stopped,
            notes: handle.compute.take_notices(),
            theory,
        });
        Ok(())
    }
}
