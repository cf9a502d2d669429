//! Where the heavy math runs. `Compute` is the one switch (CPU kernels or wgpu); a data set is
//! uploaded once into an `EmpiricalKernel`, which the empirical denoiser calls for every batch.

pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;

#[cfg(feature = "gpu")]
use std::sync::{Arc, OnceLock};

use crate::core::Batch;
use crate::core::Precision;
use crate::data::mixture::MixtureModel;
#[cfg(feature = "gpu")]
use crate::error::Error;
use crate::error::Result;
use cpu::{Isa, PreparedSet};

/// The contiguous part of the data set some rows are compared against (one class, or all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// How one row's squared distances become weights w_j.
#[derive(Clone, Copy, Debug)]
pub enum Weighting<'a> {
    /// w_j = exp(-(d_j - d_min) / (2 s^2)): the softmax of the ideal denoiser.
    Softmax { sigma: f64 },
    /// NAG's noise-unconditional model: for prior nodes k with log weight l_k,
    /// logit_jk = l_k - D ln s_k - d_j / (2 s_k^2); w_j = sum_k e^(logit_jk - M) / s_k^m with
    /// m = `sigma_power` (2: the exact score; 1: the posterior average of the noise). The CPU's
    /// f32 kernels on D <= 3 read w_j and the normaliser's terms from a table over d_j (per node
    /// set, within 1e-6 of the direct sum; AVX2 intrinsics where the CPU has them:
    /// `cpu/marginal_table.rs`).
    Marginal {
        sigmas: &'a [f64],
        log_weights: &'a [f64],
        sigma_power: i32,
    },
}

/// One row's result: sum_j w_j y_j, sum_j w_j and the normaliser Z (sum of the softmax terms,
/// which equals sum_j w_j for `Softmax`).
#[derive(Clone, Debug)]
pub struct WeightedRow {
    pub weighted: Vec<f64>,
    pub weight_sum: f64,
    pub normaliser: f64,
}

impl Default for WeightedRow {
    fn default() -> Self {
        WeightedRow {
            weighted: Vec::new(),
            weight_sum: 0.0,
            normaliser: 0.0,
        }
    }
}

/// The log-sum-exp kernels answer on sigma grids: per row, ln sum_j exp(-d_j / (2 s^2)).
pub use crate::core::estimate::{GridRow, SigmaGrid};

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// A real GPU when there is one, else the CPU.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

crate::core::named_enum!(BackendChoice, "backend");

/// The backend in use.
#[derive(Clone, Debug)]
pub enum Compute {
    Cpu {
        isa: Isa,
    },
    /// A wgpu device; the data sets prepared on it live in its memory.
    #[cfg(feature = "gpu")]
    Gpu(Arc<gpu::GpuContext>),
}

impl Compute {
    pub fn cpu() -> Self {
        Compute::Cpu { isa: Isa::detect() }
    }

    /// Resolves a choice to a backend; `notes` collects what the user should be told
    /// (e.g. a fallback to the CPU). `Auto` takes a hardware GPU when there is one and the CPU
    /// otherwise (silently when there is none: that is what auto means; with a note when one is
    /// there but fails to start); `Gpu` takes any adapter, CPU rasterisers such as lavapipe
    /// included, and falls back to the CPU with a note; `Cpu` is the CPU.
    pub fn select(choice: BackendChoice, notes: &mut Vec<String>) -> Result<Self> {
        match choice {
            BackendChoice::Cpu => Ok(Compute::cpu()),
            #[cfg(feature = "gpu")]
            BackendChoice::Auto => match gpu::GpuContext::new(gpu::AdapterPreference::RealGpu) {
                Ok(Some(context)) => Ok(Compute::Gpu(Arc::new(context))),
                Ok(None) => Ok(Compute::cpu()),
                Err(e) => {
                    notes.push(format!("{e}; using the CPU"));
                    Ok(Compute::cpu())
                }
            },
            #[cfg(feature = "gpu")]
            BackendChoice::Gpu => match gpu::GpuContext::new(gpu::AdapterPreference::Any) {
                Ok(Some(context)) => Ok(Compute::Gpu(Arc::new(context))),
                Ok(None) => {
                    notes.push("no GPU adapter; using the CPU".into());
                    Ok(Compute::cpu())
                }
                Err(e) => {
                    notes.push(format!("{e}; using the CPU"));
                    Ok(Compute::cpu())
                }
            },
            #[cfg(not(feature = "gpu"))]
            BackendChoice::Auto => Ok(Compute::cpu()),
            #[cfg(not(feature = "gpu"))]
            BackendChoice::Gpu => {
                notes.push("no GPU backend in this build; using the CPU".into());
                Ok(Compute::cpu())
            }
        }
    }

    /// A human-readable name: "cpu (avx512, 2 threads)", "cpu (avx512+amx, 2 threads)" (the
    /// GEMM form's products on AMX tiles from 512 dimensions), "gpu: NVIDIA H200 (Vulkan)" or
    /// "gpu: llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, cpu adapter)".
    pub fn describe(&self) -> String {
        match self {
            Compute::Cpu { isa } => format!(
                "cpu ({}{}, {} threads)",
                isa.name(),
                // Short: the app's status bar shows it.
                if cpu::amx_tiles_from().is_some() {
                    "+amx"
                } else {
                    ""
                },
                rayon::current_num_threads()
            ),
            #[cfg(feature = "gpu")]
            Compute::Gpu(context) => format!("gpu: {}", context.describe()),
        }
    }

    /// Whether this is a GPU backend.
    pub fn is_gpu(&self) -> bool {
        !matches!(self, Compute::Cpu { .. })
    }

    /// Messages for the user since the last call, e.g. "GPU failed (device lost ...); the
    /// empirical denoiser continues on the CPU". Show them once (status bar, CLI, run.json).
    /// Always empty on the CPU.
    pub fn take_notices(&self) -> Vec<String> {
        match self {
            Compute::Cpu { .. } => Vec::new(),
            #[cfg(feature = "gpu")]
            Compute::Gpu(context) => context.take_notices(),
        }
    }

    /// Puts a Gaussian mixture (or a single Gaussian as one component) on the backend for its
    /// noise-conditional denoiser. `None` means the model computes on the host in f64: on the CPU
    /// backend, for `Precision::F64` (the GPU kernels are f32), or when the GPU cannot take it
    /// (then with a notice).
    #[cfg_attr(not(feature = "gpu"), allow(unused_variables))]
    pub fn prepare_mixture(
        &self,
        model: &MixtureModel,
        precision: Precision,
    ) -> Option<MixtureKernel> {
        match self {
            Compute::Cpu { .. } => None,
            #[cfg(feature = "gpu")]
            Compute::Gpu(context) => {
                if precision == Precision::F64 {
                    context.notify("f64 runs on the CPU: the GPU kernels are f32".into());
                    return None;
                }
                if let Some(why) = context.failure() {
                    context.give_up(&why);
                    return None;
                }
                match gpu::GpuMixture::new(Arc::clone(context), model) {
                    Ok(kernel) => Some(MixtureKernel::Gpu(Arc::new(WithFallback::new(
                        kernel,
                        Arc::clone(context),
                    )))),
                    Err(e) => {
                        context.notify(format!("{e}; the Gaussian denoiser stays on the CPU"));
                        None
                    }
                }
            }
        }
    }

    /// Uploads a data set ([n][dim] values) for the empirical kernels.
    pub fn prepare(
        &self,
        values: &[f64],
        n: usize,
        dim: usize,
        precision: Precision,
    ) -> Result<EmpiricalKernel> {
        match self {
            Compute::Cpu { isa } => Ok(cpu_kernel(values, n, dim, precision, *isa)),
            #[cfg(feature = "gpu")]
            Compute::Gpu(context) => {
                let isa = Isa::detect();
                if precision == Precision::F64 {
                    context.notify("f64 runs on the CPU: the GPU kernels are f32".into());
                    return Ok(cpu_kernel(values, n, dim, precision, isa));
                }
                if let Some(why) = context.failure() {
                    context.give_up(&why);
                    return Ok(cpu_kernel(values, n, dim, precision, isa));
                }
                match gpu::GpuEmpirical::new(Arc::clone(context), values, n, dim) {
                    Ok(kernel) => Ok(EmpiricalKernel::Gpu(Arc::new(WithFallback::new(
                        kernel,
                        Arc::clone(context),
                    )))),
                    Err(Error::Gpu(why)) => {
                        context.notify(format!("{why}; it stays on the CPU"));
                        Ok(cpu_kernel(values, n, dim, precision, isa))
                    }
                    Err(other) => Err(other),
                }
            }
        }
    }
}

/// The CPU f32 copy of a GPU data set that takes over when the GPU fails.
#[cfg(feature = "gpu")]
fn cpu_copy(gpu: &gpu::GpuEmpirical) -> EmpiricalKernel {
    let (values, n, dim) = gpu.host_values();
    cpu_kernel(&values, n, dim, Precision::F32, Isa::detect())
}

/// A data set prepared for the CPU kernels.
fn cpu_kernel(
    values: &[f64],
    n: usize,
    dim: usize,
    precision: Precision,
    isa: Isa,
) -> EmpiricalKernel {
    match precision {
        Precision::F32 => EmpiricalKernel::CpuF32 {
            set: PreparedSet::new(values, n, dim),
            isa,
        },
        Precision::F64 => EmpiricalKernel::CpuF64 {
            set: PreparedSet::new(values, n, dim),
            isa,
        },
    }
}

/// A kernel on the GPU and the CPU path that takes over, for good, at the GPU's first failure
/// (the context then gives up the device, with one notice for the user).
#[cfg(feature = "gpu")]
#[derive(Debug)]
pub struct WithFallback<G, C> {
    gpu: G,
    context: Arc<gpu::GpuContext>,
    /// Set at the first failure: what answers every call from then on.
    cpu: OnceLock<C>,
}

#[cfg(feature = "gpu")]
impl<G, C> WithFallback<G, C> {
    fn new(gpu: G, context: Arc<gpu::GpuContext>) -> Self {
        WithFallback {
            gpu,
            context,
            cpu: OnceLock::new(),
        }
    }

    /// Whether calls still run on the GPU.
    fn on_gpu(&self) -> bool {
        self.cpu.get().is_none()
    }

    /// `on_gpu` while the GPU works; after an `Error::Gpu`, `on_cpu` on the CPU path that
    /// `make_cpu` builds once, for this call and every later one.
    fn run<T>(
        &self,
        on_gpu: impl FnOnce(&G) -> Result<T>,
        make_cpu: impl FnOnce(&G) -> C,
        on_cpu: impl FnOnce(&G, &C) -> Result<T>,
    ) -> Result<T> {
        if let Some(cpu) = self.cpu.get() {
            return on_cpu(&self.gpu, cpu);
        }
        match on_gpu(&self.gpu) {
            Ok(value) => Ok(value),
            Err(Error::Gpu(why)) => {
                let cpu = self.cpu.get_or_init(|| {
                    self.context.give_up(&why);
                    make_cpu(&self.gpu)
                });
                on_cpu(&self.gpu, cpu)
            }
            Err(other) => Err(other),
        }
    }
}

/// A Gaussian mixture resident on a backend (see `Compute::prepare_mixture`).
#[derive(Clone, Debug)]
pub enum MixtureKernel {
    /// f32 on a wgpu device; after a GPU failure the mixture's own f64 host path answers.
    #[cfg(feature = "gpu")]
    Gpu(Arc<WithFallback<gpu::GpuMixture, ()>>),
}

impl MixtureKernel {
    /// D(x; sigma) for every row, with `classes[r]` restricting row r to that class's components.
    #[cfg_attr(not(feature = "gpu"), allow(unused_variables))]
    pub fn denoise(&self, x: &Batch, sigma: f64, classes: Option<&[u32]>) -> Result<Batch> {
        match *self {
            #[cfg(feature = "gpu")]
            MixtureKernel::Gpu(ref kernel) => {
                x.expect_dim(kernel.gpu.model().dim(), "the state")?;
                if let Some(c) = classes
                    && c.len() != x.rows
                {
                    return Err(Error::Shape(format!(
                        "{} classes for {} rows",
                        c.len(),
                        x.rows
                    )));
                }
                kernel.run(
                    |gpu| gpu.denoise(x, sigma, classes),
                    |_| (),
                    |gpu, ()| Ok(mixture_on_host(gpu.model(), x, sigma, classes)),
                )
            }
        }
    }
}

/// D(x; sigma) of a mixture in f64 on the host, row by row.
#[cfg(feature = "gpu")]
fn mixture_on_host(model: &MixtureModel, x: &Batch, sigma: f64, classes: Option<&[u32]>) -> Batch {
    let mut out = Batch::zeros(x.rows, x.dim);
    for r in 0..x.rows {
        let allowed = model.allowed(classes.map(|c| c[r]));
        out.row_mut(r)
            .copy_from_slice(&model.denoise_row(x.row(r), sigma, &allowed));
    }
    out
}

/// A data set resident on a backend.
#[derive(Clone, Debug)]
pub enum EmpiricalKernel {
    CpuF32 {
        set: PreparedSet<f32>,
        isa: Isa,
    },
    CpuF64 {
        set: PreparedSet<f64>,
        isa: Isa,
    },
    /// f32 on a wgpu device; after a GPU failure a CPU f32 copy answers (with a notice).
    #[cfg(feature = "gpu")]
    Gpu(Arc<WithFallback<gpu::GpuEmpirical, EmpiricalKernel>>),
}

impl EmpiricalKernel {
    /// For every row r: sum_j w_j y_j over `spans[r]` with the given weighting.
    pub fn weighted_rows(
        &self,
        x: &Batch,
        spans: &[Span],
        weighting: &Weighting,
    ) -> Result<Vec<WeightedRow>> {
        Ok(match self {
            EmpiricalKernel::CpuF32 { set, isa } => {
                let xs: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
                cpu::weighted_rows(set, &xs, spans, weighting, *isa)
            }
            EmpiricalKernel::CpuF64 { set, isa } => {
                cpu::weighted_rows(set, &x.data, spans, weighting, *isa)
            }
            #[cfg(feature = "gpu")]
            EmpiricalKernel::Gpu(kernel) => {
                return kernel.run(
                    |gpu| gpu.weighted_rows(x, spans, weighting),
                    cpu_copy,
                    |gpu, cpu| {
                        gpu.check(x, spans)?;
                        cpu.weighted_rows(x, spans, weighting)
                    },
                );
            }
        })
    }

    /// ln sum_j exp(-|x_r - y_j|^2 / (2 s^2)) over each row's span, on the shared `coarse`
    /// grid and then on the fine grid `refine(r, coarse values of row r)`.
    pub fn log_sum_exp_grid(
        &self,
        x: &Batch,
        spans: &[Span],
        coarse: &[f64],
        refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
    ) -> Result<SigmaGrid> {
        let rows = match self {
            EmpiricalKernel::CpuF32 { set, isa } => {
                let xs: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
                cpu::log_sum_exp_grid(set, &xs, spans, coarse, refine, *isa)
            }
            EmpiricalKernel::CpuF64 { set, isa } => {
                cpu::log_sum_exp_grid(set, &x.data, spans, coarse, refine, *isa)
            }
            #[cfg(feature = "gpu")]
            EmpiricalKernel::Gpu(kernel) => {
                return kernel.run(
                    |gpu| gpu.log_sum_exp_grid(x, spans, coarse, refine),
                    cpu_copy,
                    |gpu, cpu| {
                        gpu.check(x, spans)?;
                        cpu.log_sum_exp_grid(x, spans, coarse, refine)
                    },
                );
            }
        };
        Ok(rows.into_iter().collect())
    }

    /// Whether the kernel runs on a GPU (false on the CPU and after a GPU failure).
    pub fn on_gpu(&self) -> bool {
        match self {
            EmpiricalKernel::CpuF32 { .. } | EmpiricalKernel::CpuF64 { .. } => false,
            #[cfg(feature = "gpu")]
            EmpiricalKernel::Gpu(kernel) => kernel.on_gpu(),
        }
    }
}
