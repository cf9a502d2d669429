//! The noise posterior's log-sum-exp on sigma grids: the coarse pass, the per-row fine grids
//! built on the host from it, and the fine pass, with the distances kept on the device between.

use super::{Bound, Chunk, GpuEmpirical, Params, slot};
use crate::backend::gpu::buffers::{self, INPUT, OUTPUT, Scratch};
use crate::backend::gpu::device::lock;
use crate::backend::gpu::pipelines::{bind, dispatch};
use crate::backend::{SigmaGrid, Span};
use crate::error::Result;

impl GpuEmpirical {
    /// Both grid passes for one chunk; the distances stay on the device in between.
    pub(super) fn log_sum_exp_chunk(
        &self,
        chunk: &Chunk,
        first_row: usize,
        coarse: &[f64],
        refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
        out: &mut SigmaGrid,
    ) -> Result<()> {
        let context = &*self.context;
        let rows = chunk.spans.len();
        let mut scratch = lock(&self.scratch);
        let scratch = &mut *scratch;
        let params = Params {
            dim: self.dim as u32,
            stride: chunk.stride as u32,
            grid: coarse.len() as u32,
            grid_stride: 0,
            ..Params::default()
        };
        let mut encoder = self.encoder();
        let bound = self.record_distances(scratch, &mut encoder, chunk, params);
        let coarse_coeffs: Vec<f32> = coarse
            .iter()
            .map(|&s| (1.0 / (2.0 * s * s)) as f32)
            .collect();
        let values =
            self.log_sum_exp_pass(scratch, encoder, &bound, rows, &coarse_coeffs, coarse.len())?;
        let (sums, lse) = values.split_at(rows * 4);
        let coarse_rows: Vec<Vec<f64>> = (0..rows)
            .map(|r| {
                grid_values(
                    chunk.spans[r],
                    sums[4 * r],
                    coarse,
                    &lse[r * coarse.len()..(r + 1) * coarse.len()],
                )
            })
            .collect();
        let fine_sigmas: Vec<Vec<f64>> = coarse_rows
            .iter()
            .enumerate()
            .map(|(r, row)| refine(first_row + r, row))
            .collect();

        // Second pass: per-row fine grids, padded to the longest with its last node.
        let width = fine_sigmas.iter().map(Vec::len).max().unwrap_or(0);
        let mut fine_rows: Vec<Vec<f64>> = vec![Vec::new(); rows];
        if width > 0 {
            let mut coeffs = Vec::with_capacity(rows * width);
            for sigmas in &fine_sigmas {
                let pad = sigmas.last().copied().unwrap_or(1.0);
                coeffs.extend(
                    (0..width)
                        .map(|g| sigmas.get(g).copied().unwrap_or(pad))
                        .map(|s| (1.0 / (2.0 * s * s)) as f32),
                );
            }
            let params = Params {
                grid: width as u32,
                grid_stride: width as u32,
                ..params
            };
            context
                .queue
                .write_buffer(&bound.params, 0, bytemuck::bytes_of(&params));
            let encoder = self.encoder();
            let values = self.log_sum_exp_pass(scratch, encoder, &bound, rows, &coeffs, width)?;
            let lse = &values[rows * 4..];
            for (r, sigmas) in fine_sigmas.iter().enumerate() {
                fine_rows[r] = grid_values(
                    chunk.spans[r],
                    sums[4 * r],
                    sigmas,
                    &lse[r * width..r * width + sigmas.len()],
                );
            }
        }
        for ((row, sigmas), fine) in coarse_rows.into_iter().zip(fine_sigmas).zip(fine_rows) {
            out.push((row, sigmas, fine));
        }
        Ok(())
    }

    /// Records the log-sum-exp kernel for `coeffs` (1 / (2 s^2)), submits, reads back
    /// (sums, lse).
    fn log_sum_exp_pass(
        &self,
        scratch: &mut Scratch,
        mut encoder: wgpu::CommandEncoder,
        bound: &Bound,
        rows: usize,
        coeffs: &[f32],
        grid: usize,
    ) -> Result<Vec<f32>> {
        let context = &*self.context;
        let coeffs_buffer = scratch.filled(
            context,
            slot::SIGMA_COEFFS,
            buffers::bytes_of(coeffs),
            INPUT,
        );
        let lse_bytes = (rows * grid * 4) as u64;
        let lse = scratch.get(context, slot::LSE, lse_bytes, OUTPUT);
        let group = bind(
            &context.device,
            &context.pipelines.log_sum_exp,
            &[
                (0, &bound.params),
                (5, &bound.dist),
                (6, &bound.spans),
                (7, &bound.sums),
                (11, &coeffs_buffer),
                (12, &lse),
            ],
        );
        dispatch(
            &mut encoder,
            &context.pipelines.log_sum_exp,
            &group,
            (rows as u32, 1),
        );
        self.finish(
            scratch,
            encoder,
            &[(&bound.sums, (rows * 16) as u64), (&lse, lse_bytes)],
        )
    }
}

/// ln sum_j exp(-d_j / (2 s^2)) = -d_min / (2 s^2) + (the kernel's shifted value), in f64;
/// -inf for an empty span, as on the CPU.
fn grid_values(span: Span, d_min: f32, sigmas: &[f64], shifted: &[f32]) -> Vec<f64> {
    if span.is_empty() {
        return vec![f64::NEG_INFINITY; sigmas.len()];
    }
    let d_min = f64::from(d_min);
    sigmas
        .iter()
        .zip(shifted)
        .map(|(&s, &l)| -d_min / (2.0 * s * s) + f64::from(l))
        .collect()
}
