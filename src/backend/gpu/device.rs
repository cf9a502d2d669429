//! The wgpu device: which adapter, the device and queue, the compiled pipelines, and how GPU
//! errors become `Error::Gpu` instead of panics (wgpu's default for uncaptured errors).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::pipelines::Pipelines;
use crate::error::{Error, Result};

/// Which adapters `GpuContext::new` may pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterPreference {
    /// Only a hardware (discrete, integrated or virtual) GPU: what `BackendChoice::Auto` wants.
    RealGpu,
    /// Any adapter, including CPU rasterisers such as Mesa's lavapipe: what `--backend gpu` wants.
    Any,
}

/// Locks a mutex, recovering the data if another thread panicked while holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One wgpu device and queue with the kernels' pipelines, shared (in an `Arc`) by every kernel
/// prepared on it. Whoever owns the `Compute` (the worker thread, the CLI) owns the device.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    /// The largest storage buffer binding this device accepts, in bytes.
    pub(crate) storage_limit: u64,
    pub(crate) max_workgroups: u32,
    pub(crate) pipelines: Pipelines,
    /// Why the device became unusable: lost, an error outside any error scope, or the first
    /// error of any kernel (after which everything runs on the CPU).
    failure: Arc<Mutex<Option<String>>>,
    /// One-line messages for the user (fallbacks to the CPU), drained by `Compute::take_notices`.
    notices: Mutex<Vec<String>>,
    /// Every message ever posted, so each is told once.
    told: Mutex<Vec<String>>,
}

impl fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .field("device_type", &self.info.device_type)
            .field("storage_limit", &self.storage_limit)
            .finish_non_exhaustive()
    }
}

/// Lower is better: hardware first, CPU rasterisers last.
fn rank(device_type: wgpu::DeviceType) -> u8 {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn is_real_gpu(device_type: wgpu::DeviceType) -> bool {
    rank(device_type) <= 2
}

impl GpuContext {
    /// Finds an adapter (Vulkan, Metal or DX12; `WGPU_BACKEND` overrides), creates a device with the
    /// adapter's own limits (so large data sets fit in one storage buffer) and compiles the
    /// kernels. `Ok(None)`: no suitable adapter; `Error::Gpu`: one was found but would not start
    /// (no device, kernels that do not compile, a driver that panics).
    pub fn new(preference: AdapterPreference) -> Result<Option<Self>> {
        std::panic::catch_unwind(|| Self::create(preference))
            .unwrap_or_else(|_| Err(Error::Gpu("the GPU driver panicked while starting".into())))
    }

    fn create(preference: AdapterPreference) -> Result<Option<Self>> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
        descriptor.backends = backends;
        let instance = wgpu::Instance::new(descriptor);
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let Some(adapter) = adapters
            .into_iter()
            .filter(|a| {
                preference == AdapterPreference::Any || is_real_gpu(a.get_info().device_type)
            })
            .min_by_key(|a| rank(a.get_info().device_type))
        else {
            return Ok(None);
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("noisescope"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("{}: cannot create a device: {e}", info.name)))?;

        let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let lost = Arc::clone(&failure);
        device.set_device_lost_callback(move |reason, message| {
            let why = match message.trim() {
                "" => format!("device lost ({reason:?})"),
                text => format!("device lost ({reason:?}): {}", one_line(text)),
            };
            lock(&lost).get_or_insert(why);
        });
        let uncaptured = Arc::clone(&failure);
        // wgpu panics on errors outside an error scope unless a handler is installed.
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            lock(&uncaptured).get_or_insert(one_line(&error.to_string()));
        }));

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipelines = Pipelines::new(&device);
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "{}: kernels do not compile: {error}",
                info.name
            )));
        }
        let storage_limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        Ok(Some(GpuContext {
            device,
            queue,
            info,
            storage_limit,
            max_workgroups: limits.max_compute_workgroups_per_dimension,
            pipelines,
            failure,
            notices: Mutex::new(Vec::new()),
            told: Mutex::new(Vec::new()),
        }))
    }

    /// Whether the adapter is a CPU rasteriser (lavapipe / llvmpipe, WARP) rather than a GPU.
    pub fn is_cpu_adapter(&self) -> bool {
        !is_real_gpu(self.info.device_type)
    }

    /// "NVIDIA H200 (Vulkan)" or "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, cpu adapter)".
    pub fn describe(&self) -> String {
        let backend = match self.info.backend {
            wgpu::Backend::Vulkan => "Vulkan".to_string(),
            wgpu::Backend::Metal => "Metal".to_string(),
            wgpu::Backend::Dx12 => "DX12".to_string(),
            wgpu::Backend::Gl => "GL".to_string(),
            other => other.to_string(),
        };
        let lost = if self.failure().is_some() {
            ", failed"
        } else {
            ""
        };
        if self.is_cpu_adapter() {
            format!("{} ({backend}, cpu adapter{lost})", self.info.name)
        } else {
            format!("{} ({backend}{lost})", self.info.name)
        }
    }

    /// Why the device is unusable, if it is.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Adds a message for the user unless it was told before.
    pub(crate) fn notify(&self, message: String) {
        let mut told = lock(&self.told);
        if !told.contains(&message) {
            told.push(message.clone());
            lock(&self.notices).push(message);
        }
    }

    /// A kernel failed with `why`: the whole device is given up (a lost device takes every kernel
    /// with it, and one clear message beats one per kernel), and the user is told once.
    pub(crate) fn give_up(&self, why: &str) {
        // Lets a pending device-lost callback report the real cause first.
        let _ = self.device.poll(wgpu::PollType::Poll);
        let reason = lock(&self.failure)
            .get_or_insert_with(|| one_line(why))
            .clone();
        self.notify(format!(
            "GPU {} failed ({reason}); continuing on the CPU",
            self.info.name
        ));
    }

    /// The messages since the last call (CPU fallbacks), oldest first.
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.notices))
    }

    /// Runs GPU work under out-of-memory, validation and internal error scopes, so that any wgpu
    /// error (or a lost device) becomes `Error::Gpu` for the caller to fall back on.
    pub(crate) fn scoped<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        if let Some(why) = self.failure() {
            return Err(Error::Gpu(why));
        }
        let out_of_memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .unwrap_or_else(|_| Err(Error::Gpu("wgpu panicked".into())));
        // Scopes pop in reverse order of their push.
        let errors = [
            pollster::block_on(internal.pop()),
            pollster::block_on(validation.pop()),
            pollster::block_on(out_of_memory.pop()),
        ];
        if let Some(error) = errors.into_iter().flatten().next() {
            return Err(Error::Gpu(match error {
                wgpu::Error::OutOfMemory { .. } => "out of GPU memory".to_string(),
                other => one_line(&other.to_string()),
            }));
        }
        if let Some(why) = self.failure() {
            return Err(Error::Gpu(why));
        }
        result
    }

    /// Blocks until the queue is idle.
    pub(crate) fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))
    }

    /// Test hook: destroys the device as a driver reset would, so the fallback paths can be tested.
    #[cfg(test)]
    pub(crate) fn destroy_device(&self) {
        self.device.destroy();
    }
}

/// wgpu's multi-line error reports as one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
