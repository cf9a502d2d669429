//! The empirical kernels on the GPU: a data set uploaded once, then per call only the query rows,
//! their spans and the parameters go up and the per-row results come back (shaders/empirical.wgsl).
//! Same semantics as the CPU kernels in backend/cpu/, in f32. A GPU failure comes back as
//! `Error::Gpu`; the CPU path that takes over lives in backend/mod.rs.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::buffers::{self, INPUT, OUTPUT, STAGING, Scratch, UNIFORM};
use super::device::{GpuContext, lock};
use super::pipelines::{bind, dispatch};
use crate::backend::cpu::Real;
use crate::backend::{SigmaGrid, Span, WeightedRow, Weighting};
use crate::core::Batch;
use crate::error::{Error, Result};

mod grid;

/// Rows x data points of one distance tile (shaders/empirical.wgsl).
const TILE_ROWS: usize = 16;
const TILE_POINTS: usize = 64;
/// Output columns per `weighted_sum` / `weighted_sum_tiled` workgroup.
const COLUMNS_PER_GROUP: usize = 64;
/// From this dimension on, the weighted sum runs as a tiled matrix product (below, one row per
/// workgroup keeps all threads busy on the few columns).
const TILED_SUM_MIN_DIM: usize = 32;
/// Per-call buffers of one chunk of rows stay below this many bytes each.
const CHUNK_BUDGET: u64 = 256 << 20;
/// Terms below e^-UNDERFLOW of the largest are exactly 0, as in the CPU's f32 kernel.
const UNDERFLOW: f64 = <f32 as Real>::UNDERFLOW;

/// The uniform block of shaders/empirical.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    dim: u32,
    stride: u32,
    grid: u32,
    grid_stride: u32,
    coeff: f32,
    _pad: [u32; 3],
}

/// Scratch slots (one buffer each, reused between calls).
mod slot {
    pub const PARAMS: usize = 0;
    pub const QUERIES: usize = 1;
    pub const TILES: usize = 2;
    pub const ROW_LIST: usize = 3;
    pub const SPANS: usize = 4;
    pub const DIST: usize = 5;
    pub const SUMS: usize = 6;
    pub const NODES: usize = 7;
    pub const NODE_COUNTS: usize = 8;
    pub const WEIGHTED: usize = 9;
    pub const SIGMA_COEFFS: usize = 10;
    pub const LSE: usize = 11;
    pub const STAGING: usize = 12;
}

/// A data set resident on the GPU.
pub struct GpuEmpirical {
    context: Arc<GpuContext>,
    n: usize,
    dim: usize,
    /// [n][dim] in f32: what the GPU holds, kept for the CPU path that takes over on a failure.
    host_rows: Vec<f32>,
    data: wgpu::Buffer,
    scratch: Mutex<Scratch>,
}

impl std::fmt::Debug for GpuEmpirical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuEmpirical")
            .field("n", &self.n)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

/// The query rows and spans of one chunk, with the tiles the distance kernel walks.
struct Chunk<'a> {
    queries: &'a [f32],
    spans: &'a [Span],
    /// The longest span: the row stride of the distance buffer.
    stride: usize,
}

/// One chunk's device buffers, shared by the kernels of a call.
struct Bound {
    params: wgpu::Buffer,
    tiles: wgpu::Buffer,
    tile_count: u32,
    row_list: wgpu::Buffer,
    dist: wgpu::Buffer,
    spans: wgpu::Buffer,
    sums: wgpu::Buffer,
}

impl GpuEmpirical {
    /// Uploads `values` ([n][dim]) as f32. `Error::Gpu` when it does not fit in one storage buffer
    /// or the upload fails; the caller then keeps the data set on the CPU.
    pub fn new(context: Arc<GpuContext>, values: &[f64], n: usize, dim: usize) -> Result<Self> {
        if values.len() != n * dim || n == 0 || dim == 0 {
            return Err(Error::Shape(format!(
                "{} values cannot form a [{n}, {dim}] data set",
                values.len()
            )));
        }
        let bytes = (n * dim * 4) as u64;
        if bytes > context.storage_limit {
            return Err(Error::Gpu(format!(
                "the data set ({:.1} MiB) is larger than one GPU buffer may be ({:.1} MiB)",
                bytes as f64 / 1048576.0,
                context.storage_limit as f64 / 1048576.0
            )));
        }
        if n.div_ceil(TILE_POINTS) > context.max_workgroups as usize {
            return Err(Error::Gpu(format!(
                "{n} data points need more GPU workgroups than one dispatch allows"
            )));
        }
        let host_rows: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let data = context.scoped(|| {
            let buffer = buffers::upload(&context, "data set", buffers::bytes_of(&host_rows));
            context.wait()?;
            Ok(buffer)
        })?;
        Ok(GpuEmpirical {
            context,
            n,
            dim,
            host_rows,
            data,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// The data set as the GPU holds it (rounded to f32), [n][dim], with n and dim.
    pub fn host_values(&self) -> (Vec<f64>, usize, usize) {
        let values = self.host_rows.iter().map(|&v| f64::from(v)).collect();
        (values, self.n, self.dim)
    }

    /// Checks a call's shapes: `x` of the data's dimension, one span per row, inside the data.
    pub fn check(&self, x: &Batch, spans: &[Span]) -> Result<()> {
        x.expect_dim(self.dim, "the state")?;
        if spans.len() != x.rows {
            return Err(Error::Shape(format!(
                "{} spans for {} rows",
                spans.len(),
                x.rows
            )));
        }
        if let Some(bad) = spans.iter().find(|s| s.start > s.end || s.end > self.n) {
            return Err(Error::Shape(format!(
                "span {}..{} lies outside the {} data points",
                bad.start, bad.end, self.n
            )));
        }
        Ok(())
    }

    /// For every row r: sum_j w_j y_j over `spans[r]` with the given weighting (see
    /// `EmpiricalKernel::weighted_rows`).
    pub fn weighted_rows(
        &self,
        x: &Batch,
        spans: &[Span],
        weighting: &Weighting,
    ) -> Result<Vec<WeightedRow>> {
        self.check(x, spans)?;
        let xs: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
        self.context.scoped(|| {
            let mut out = Vec::with_capacity(spans.len());
            for rows in self.chunks(spans, self.per_row_bytes(weighting_grid(weighting))) {
                let chunk = self.chunk(&xs, spans, rows);
                out.extend(self.weighted_chunk(&chunk, weighting)?);
            }
            Ok(out)
        })
    }

    /// ln sum_j exp(-|x_r - y_j|^2 / (2 s^2)) per row on the shared `coarse` grid, then on the fine
    /// grid `refine(r, coarse values of row r)` (see `EmpiricalKernel::log_sum_exp_grid`).
    pub fn log_sum_exp_grid(
        &self,
        x: &Batch,
        spans: &[Span],
        coarse: &[f64],
        refine: &(dyn Fn(usize, &[f64]) -> Vec<f64> + Sync),
    ) -> Result<SigmaGrid> {
        self.check(x, spans)?;
        let xs: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
        self.context.scoped(|| {
            let mut out = SigmaGrid::default();
            // The fine grids are unknown until the coarse pass; 64 nodes covers the estimator's.
            let grid = coarse.len().max(64);
            for rows in self.chunks(spans, self.per_row_bytes(grid)) {
                let first = rows.start;
                let chunk = self.chunk(&xs, spans, rows);
                self.log_sum_exp_chunk(&chunk, first, coarse, refine, &mut out)?;
            }
            Ok(out)
        })
    }

    /// Bytes one query row needs in the largest per-call buffer.
    fn per_row_bytes(&self, grid: usize) -> u64 {
        let widest = self.n.max(self.dim).max(4 * grid);
        4 * widest as u64
    }

    /// Splits the rows into chunks whose per-call buffers fit the binding limit and whose row
    /// count fits one dispatch.
    fn chunks(&self, spans: &[Span], per_row_bytes: u64) -> Vec<Range<usize>> {
        let budget = self.context.storage_limit.min(CHUNK_BUDGET);
        let rows_per_chunk = (budget / per_row_bytes.max(1))
            .clamp(1, u64::from(self.context.max_workgroups)) as usize;
        (0..spans.len())
            .step_by(rows_per_chunk)
            .map(|start| start..(start + rows_per_chunk).min(spans.len()))
            .collect()
    }

    fn chunk<'a>(&self, xs: &'a [f32], spans: &'a [Span], rows: Range<usize>) -> Chunk<'a> {
        let spans = &spans[rows.clone()];
        Chunk {
            queries: &xs[rows.start * self.dim..rows.end * self.dim],
            spans,
            stride: spans.iter().map(Span::len).max().unwrap_or(0).max(1),
        }
    }

    /// Uploads the chunk's inputs and records the distance and row-minimum kernels.
    fn record_distances(
        &self,
        scratch: &mut Scratch,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
        params: Params,
    ) -> Bound {
        let context = &*self.context;
        let pipelines = &context.pipelines;
        let rows = chunk.spans.len();
        let (tiles, row_list) = distance_tiles(chunk.spans);
        let span_pairs: Vec<[u32; 2]> = chunk
            .spans
            .iter()
            .map(|s| [s.start as u32, s.end as u32])
            .collect();
        let params_buffer =
            scratch.filled(context, slot::PARAMS, bytemuck::bytes_of(&params), UNIFORM);
        let queries = scratch.filled(
            context,
            slot::QUERIES,
            buffers::bytes_of(chunk.queries),
            INPUT,
        );
        let tiles_buffer = scratch.filled(context, slot::TILES, buffers::bytes_of(&tiles), INPUT);
        let row_list_buffer =
            scratch.filled(context, slot::ROW_LIST, buffers::bytes_of(&row_list), INPUT);
        let spans = scratch.filled(context, slot::SPANS, buffers::bytes_of(&span_pairs), INPUT);
        let dist = scratch.get(
            context,
            slot::DIST,
            (rows * chunk.stride * 4) as u64,
            OUTPUT,
        );
        let sums = scratch.get(context, slot::SUMS, (rows * 16) as u64, OUTPUT);

        let group = bind(
            &context.device,
            &pipelines.distances,
            &[
                (0, &params_buffer),
                (1, &self.data),
                (2, &queries),
                (3, &tiles_buffer),
                (4, &row_list_buffer),
                (5, &dist),
            ],
        );
        dispatch(
            encoder,
            &pipelines.distances,
            &group,
            (
                chunk.stride.div_ceil(TILE_POINTS) as u32,
                tiles.len() as u32,
            ),
        );
        let group = bind(
            &context.device,
            &pipelines.row_min,
            &[(0, &params_buffer), (5, &dist), (6, &spans), (7, &sums)],
        );
        dispatch(encoder, &pipelines.row_min, &group, (rows as u32, 1));
        Bound {
            params: params_buffer,
            tiles: tiles_buffer,
            tile_count: tiles.len() as u32,
            row_list: row_list_buffer,
            dist,
            spans,
            sums,
        }
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.context
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
    }

    /// Records the copies of `parts` into the staging buffer, submits and reads back.
    fn finish(
        &self,
        scratch: &mut Scratch,
        mut encoder: wgpu::CommandEncoder,
        parts: &[(&wgpu::Buffer, u64)],
    ) -> Result<Vec<f32>> {
        let readback = buffers::Readback {
            parts: parts.to_vec(),
        };
        let staging = scratch.get(&self.context, slot::STAGING, readback.bytes(), STAGING);
        readback.record(&mut encoder, &staging);
        buffers::submit_and_read(&self.context, encoder, &staging, readback.bytes())
    }

    fn weighted_chunk(&self, chunk: &Chunk, weighting: &Weighting) -> Result<Vec<WeightedRow>> {
        let context = &*self.context;
        let pipelines = &context.pipelines;
        let rows = chunk.spans.len();
        let mut scratch = lock(&self.scratch);
        let scratch = &mut *scratch;
        let mut params = Params {
            dim: self.dim as u32,
            stride: chunk.stride as u32,
            ..Params::default()
        };
        let mut encoder = self.encoder();
        match *weighting {
            Weighting::Softmax { sigma } => {
                params.coeff = (-1.0 / (2.0 * sigma * sigma)) as f32;
                let bound = self.record_distances(scratch, &mut encoder, chunk, params);
                let group = bind(
                    &context.device,
                    &pipelines.softmax_weights,
                    &[
                        (0, &bound.params),
                        (5, &bound.dist),
                        (6, &bound.spans),
                        (7, &bound.sums),
                    ],
                );
                dispatch(
                    &mut encoder,
                    &pipelines.softmax_weights,
                    &group,
                    (rows as u32, 1),
                );
                self.weighted_sum(scratch, encoder, chunk, &bound)
            }
            Weighting::Marginal {
                sigmas,
                log_weights,
                sigma_power,
            } => {
                params.grid = sigmas.len().max(1) as u32;
                let bound = self.record_distances(scratch, &mut encoder, chunk, params);
                let sums = self.finish(scratch, encoder, &[(&bound.sums, (rows * 16) as u64)])?;
                // Node offsets in f64 on the host, exactly as the CPU kernel forms them.
                let (nodes, counts) = marginal_nodes(
                    &sums,
                    chunk.spans,
                    (sigmas, log_weights, sigma_power),
                    self.dim,
                );
                let nodes_buffer =
                    scratch.filled(context, slot::NODES, buffers::bytes_of(&nodes), INPUT);
                let counts_buffer = scratch.filled(
                    context,
                    slot::NODE_COUNTS,
                    buffers::bytes_of(&counts),
                    INPUT,
                );
                let mut encoder = self.encoder();
                let group = bind(
                    &context.device,
                    &pipelines.marginal_weights,
                    &[
                        (0, &bound.params),
                        (5, &bound.dist),
                        (6, &bound.spans),
                        (7, &bound.sums),
                        (8, &nodes_buffer),
                        (9, &counts_buffer),
                    ],
                );
                dispatch(
                    &mut encoder,
                    &pipelines.marginal_weights,
                    &group,
                    (rows as u32, 1),
                );
                self.weighted_sum(scratch, encoder, chunk, &bound)
            }
        }
    }

    /// Records sum_j w_j y_j, submits, and turns the read-back into rows.
    fn weighted_sum(
        &self,
        scratch: &mut Scratch,
        mut encoder: wgpu::CommandEncoder,
        chunk: &Chunk,
        bound: &Bound,
    ) -> Result<Vec<WeightedRow>> {
        let context = &*self.context;
        let rows = chunk.spans.len();
        let weighted_bytes = (rows * self.dim * 4) as u64;
        let weighted = scratch.get(context, slot::WEIGHTED, weighted_bytes, OUTPUT);
        let column_groups = self.dim.div_ceil(COLUMNS_PER_GROUP) as u32;
        if self.dim >= TILED_SUM_MIN_DIM {
            let pipeline = &context.pipelines.weighted_sum_tiled;
            let group = bind(
                &context.device,
                pipeline,
                &[
                    (0, &bound.params),
                    (1, &self.data),
                    (3, &bound.tiles),
                    (4, &bound.row_list),
                    (5, &bound.dist),
                    (10, &weighted),
                ],
            );
            dispatch(
                &mut encoder,
                pipeline,
                &group,
                (column_groups, bound.tile_count),
            );
        } else {
            let pipeline = &context.pipelines.weighted_sum;
            let group = bind(
                &context.device,
                pipeline,
                &[
                    (0, &bound.params),
                    (1, &self.data),
                    (5, &bound.dist),
                    (6, &bound.spans),
                    (10, &weighted),
                ],
            );
            dispatch(&mut encoder, pipeline, &group, (column_groups, rows as u32));
        }
        let values = self.finish(
            scratch,
            encoder,
            &[
                (&bound.sums, (rows * 16) as u64),
                (&weighted, weighted_bytes),
            ],
        )?;
        let (sums, weighted) = values.split_at(rows * 4);
        Ok((0..rows)
            .map(|r| WeightedRow {
                weighted: weighted[r * self.dim..(r + 1) * self.dim]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect(),
                weight_sum: f64::from(sums[4 * r + 1]),
                normaliser: f64::from(sums[4 * r + 2]),
            })
            .collect())
    }
}

/// Grid nodes a weighting needs per row (for sizing chunks).
fn weighting_grid(weighting: &Weighting) -> usize {
    match weighting {
        Weighting::Softmax { .. } => 1,
        Weighting::Marginal { sigmas, .. } => sigmas.len(),
    }
}

/// Tiles of up to TILE_ROWS rows that share a span, and the row indices they point into.
fn distance_tiles(spans: &[Span]) -> (Vec<[u32; 4]>, Vec<u32>) {
    let mut groups: Vec<(Span, Vec<u32>)> = Vec::new();
    let mut index: HashMap<Span, usize> = HashMap::new();
    for (r, span) in spans.iter().enumerate() {
        let g = *index.entry(*span).or_insert_with(|| {
            groups.push((*span, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(r as u32);
    }
    let mut tiles = Vec::new();
    let mut row_list = Vec::with_capacity(spans.len());
    for (span, rows) in groups {
        for tile in rows.chunks(TILE_ROWS) {
            tiles.push([
                row_list.len() as u32,
                tile.len() as u32,
                span.start as u32,
                span.end as u32,
            ]);
            row_list.extend_from_slice(tile);
        }
    }
    (tiles, row_list)
}

/// Per row, the prior nodes that contribute and their terms, as `weigh_row` in backend/cpu/weighted.rs
/// forms them: offset_k = l_k - D ln s_k - d_min / (2 s_k^2) - top, skipped below -UNDERFLOW.
/// Returns ([rows][nodes] of (offset, -1 / (2 s^2), 1 / s^2, 0) with the active ones first, and
/// the active count per row).
fn marginal_nodes(
    sums: &[f32],
    spans: &[Span],
    (sigmas, log_weights, sigma_power): (&[f64], &[f64], i32),
    dim: usize,
) -> (Vec<[f32; 4]>, Vec<u32>) {
    let width = sigmas.len().max(1);
    let mut nodes = vec![[0.0f32; 4]; spans.len() * width];
    let mut counts = vec![0u32; spans.len()];
    for (r, span) in spans.iter().enumerate() {
        if span.is_empty() {
            continue;
        }
        let d_min = f64::from(sums[4 * r]);
        let node_logit = |k: usize| {
            let s = sigmas[k];
            log_weights[k] - dim as f64 * s.ln() - d_min / (2.0 * s * s)
        };
        let top = (0..sigmas.len())
            .map(node_logit)
            .fold(f64::NEG_INFINITY, f64::max);
        let row = &mut nodes[r * width..(r + 1) * width];
        let mut active = 0;
        for (k, s) in sigmas.iter().enumerate() {
            let offset = node_logit(k) - top;
            if offset < -UNDERFLOW {
                continue;
            }
            row[active] = [
                offset as f32,
                (-1.0 / (2.0 * s * s)) as f32,
                s.powi(-sigma_power) as f32,
                0.0,
            ];
            active += 1;
        }
        counts[r] = active as u32;
    }
    (nodes, counts)
}
