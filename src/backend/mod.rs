//! Where the heavy math runs. `Compute` is the one switch (CPU kernels or wgpu); a data set is
//! uploaded once into an `EmpiricalKernel`, which the empirical denoiser calls for every batch.

pub mod cpu;

use crate::core::Batch;
use crate::core::Precision;
use crate::error::{Error, Result};
use cpu::{Isa, PreparedSet, Span, WeightedRow, Weighting};
use serde::{Deserialize, Serialize};

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A real GPU when there is one, else the CPU.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "gpu" => Ok(BackendChoice::Gpu),
            "cpu" => Ok(BackendChoice::Cpu),
            other => Err(Error::InvalidSpec(format!(
                "backend must be auto, gpu or cpu, not '{other}'"
            ))),
        }
    }
}

/// The backend in use.
#[derive(Clone, Debug)]
pub enum Compute {
    Cpu { isa: Isa },
}

impl Compute {
    pub fn cpu() -> Self {
        Compute::Cpu { isa: Isa::detect() }
    }

    /// Resolves a choice to a backend; `notes` collects what the user should be told
    /// (e.g. a fallback to the CPU).
    pub fn select(choice: BackendChoice, notes: &mut Vec<String>) -> Result<Self> {
        match choice {
            BackendChoice::Cpu | BackendChoice::Auto => Ok(Compute::cpu()),
            BackendChoice::Gpu => {
                notes.push("no GPU backend in this build; using the CPU".into());
                Ok(Compute::cpu())
            }
        }
    }

    /// A human-readable name: "cpu (avx512, 2 threads)" or the GPU adapter.
    pub fn describe(&self) -> String {
        match self {
            Compute::Cpu { isa } => format!(
                "cpu ({}, {} threads)",
                isa.name(),
                rayon::current_num_threads()
            ),
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
            Compute::Cpu { isa } => Ok(match precision {
                Precision::F32 => EmpiricalKernel::CpuF32 {
                    set: PreparedSet::new(values, n, dim),
                    isa: *isa,
                },
                Precision::F64 => EmpiricalKernel::CpuF64 {
                    set: PreparedSet::new(values, n, dim),
                    isa: *isa,
                },
            }),
        }
    }
}

/// A data set resident on a backend.
#[derive(Clone, Debug)]
pub enum EmpiricalKernel {
    CpuF32 { set: PreparedSet<f32>, isa: Isa },
    CpuF64 { set: PreparedSet<f64>, isa: Isa },
}

/// Per-row log-sum-exp of -d_j / (2 s^2) on a coarse grid and on per-row fine grids.
#[derive(Clone, Debug, Default)]
pub struct GridLogSumExp {
    pub coarse: Vec<f64>,
    pub fine_sigmas: Vec<Vec<f64>>,
    pub fine: Vec<Vec<f64>>,
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
    ) -> Result<GridLogSumExp> {
        let rows = match self {
            EmpiricalKernel::CpuF32 { set, isa } => {
                let xs: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
                cpu::log_sum_exp_grid(set, &xs, spans, coarse, refine, *isa)
            }
            EmpiricalKernel::CpuF64 { set, isa } => {
                cpu::log_sum_exp_grid(set, &x.data, spans, coarse, refine, *isa)
            }
        };
        let mut out = GridLogSumExp::default();
        for (c, s, f) in rows {
            out.coarse.extend(c);
            out.fine_sigmas.push(s);
            out.fine.push(f);
        }
        Ok(out)
    }
}

impl EmpiricalKernel {
    /// Bytes held by the backend for this data set.
    pub fn bytes(&self) -> usize {
        match self {
            EmpiricalKernel::CpuF32 { set, .. } => set.bytes(),
            EmpiricalKernel::CpuF64 { set, .. } => set.bytes(),
        }
    }
}
