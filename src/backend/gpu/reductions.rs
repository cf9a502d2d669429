//! Batched per-row reductions for the diagnostics on the GPU (shaders/reductions.wgsl).

use super::buffers::{self, INPUT, OUTPUT, STAGING, UNIFORM};
use super::device::{GpuContext, lock};
use super::pipelines::{bind, dispatch};
use crate::error::{Error, Result};

/// The uniform block of shaders/reductions.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    dim: u32,
    _pad: [u32; 3],
}

mod slot {
    pub const PARAMS: usize = 0;
    pub const A: usize = 1;
    pub const B: usize = 2;
    pub const RESULTS: usize = 3;
    pub const STAGING: usize = 4;
}

impl GpuContext {
    /// Per row of two [rows][dim] f32 batches: (a.b, |a|^2, |b|^2, |a - b|^2). Runs under error
    /// scopes; the caller falls back to the CPU on `Error::Gpu`.
    pub(crate) fn row_reductions(&self, a: &[f32], b: &[f32], dim: usize) -> Result<Vec<[f32; 4]>> {
        if a.len() != b.len() || dim == 0 || !a.len().is_multiple_of(dim) {
            return Err(Error::Shape(format!(
                "row reductions need two equal [rows, {dim}] batches, got {} and {} values",
                a.len(),
                b.len()
            )));
        }
        let rows = a.len() / dim;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let rows_per_chunk = ((self.storage_limit / (dim as u64 * 4)).max(1) as usize)
            .min(self.max_workgroups as usize);
        self.scoped(|| {
            let mut scratch = lock(&self.reduction_scratch);
            let params = Params {
                dim: dim as u32,
                _pad: [0; 3],
            };
            let params_buffer =
                scratch.filled(self, slot::PARAMS, bytemuck::bytes_of(&params), UNIFORM);
            let mut out = Vec::with_capacity(rows);
            for start in (0..rows).step_by(rows_per_chunk) {
                let end = (start + rows_per_chunk).min(rows);
                let count = end - start;
                let a_buffer = scratch.filled(
                    self,
                    slot::A,
                    buffers::bytes_of(&a[start * dim..end * dim]),
                    INPUT,
                );
                let b_buffer = scratch.filled(
                    self,
                    slot::B,
                    buffers::bytes_of(&b[start * dim..end * dim]),
                    INPUT,
                );
                let result_bytes = (count * 16) as u64;
                let results = scratch.get(self, slot::RESULTS, result_bytes, OUTPUT);
                let group = bind(
                    &self.device,
                    &self.pipelines.row_reductions,
                    &[
                        (0, &params_buffer),
                        (1, &a_buffer),
                        (2, &b_buffer),
                        (3, &results),
                    ],
                );
                let mut encoder = self
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
                dispatch(
                    &mut encoder,
                    &self.pipelines.row_reductions,
                    &group,
                    (count as u32, 1),
                );
                let staging = scratch.get(self, slot::STAGING, result_bytes, STAGING);
                encoder.copy_buffer_to_buffer(&results, 0, &staging, 0, result_bytes);
                let values = buffers::submit_and_read(self, encoder, &staging, result_bytes)?;
                out.extend(values.chunks_exact(4).map(|v| [v[0], v[1], v[2], v[3]]));
            }
            Ok(out)
        })
    }
}
