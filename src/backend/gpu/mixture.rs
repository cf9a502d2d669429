//! The Gaussian-mixture denoiser on the GPU (shaders/mixture.wgsl): components uploaded once in
//! their eigenbasis; per call the rows, their classes and one log-normaliser per component go up.
//! A single Gaussian is a one-component mixture. A GPU failure comes back as `Error::Gpu`; the
//! host path that takes over lives in backend/mod.rs.

use std::sync::{Arc, Mutex};

use super::buffers::{self, INPUT, OUTPUT, STAGING, Scratch, UNIFORM};
use super::device::{GpuContext, lock};
use super::pipelines::{bind, dispatch};
use crate::core::Batch;
use crate::data::mixture::MixtureModel;
use crate::error::{Error, Result};

/// Components the kernel handles (its workgroup array of logits).
const MAX_COMPONENTS: usize = 256;
/// Marks a row without a class condition (shaders/mixture.wgsl).
const ANY_CLASS: u32 = u32::MAX;
const CHUNK_BUDGET: u64 = 256 << 20;

/// The uniform block of shaders/mixture.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    dim: u32,
    components: u32,
    sigma2: f32,
    _pad: u32,
}

mod slot {
    pub const PARAMS: usize = 0;
    pub const QUERIES: usize = 1;
    pub const CLASSES: usize = 2;
    pub const LOG_BASE: usize = 3;
    pub const EIGEN_COORDS: usize = 4;
    pub const DENOISED: usize = 5;
    pub const STAGING: usize = 6;
}

/// A mixture resident on the GPU.
pub struct GpuMixture {
    context: Arc<GpuContext>,
    /// The host model: per-call log-normalisers (and the host path after a failure).
    model: MixtureModel,
    dim: usize,
    info: wgpu::Buffer,
    moments: wgpu::Buffer,
    bases: wgpu::Buffer,
    scratch: Mutex<Scratch>,
}

impl std::fmt::Debug for GpuMixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuMixture")
            .field("components", &self.model.components.len())
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

impl GpuMixture {
    /// Uploads the components; `Error::Gpu` when they do not fit or the upload fails.
    pub fn new(context: Arc<GpuContext>, model: &MixtureModel) -> Result<Self> {
        let dim = model.dim();
        let count = model.components.len();
        if count > MAX_COMPONENTS {
            return Err(Error::Gpu(format!(
                "the GPU mixture kernel takes at most {MAX_COMPONENTS} components, not {count}"
            )));
        }
        let mut info = Vec::with_capacity(count);
        let mut moments = Vec::with_capacity(count * 2 * dim);
        let mut bases: Vec<f32> = Vec::new();
        for (component, &label) in model.components.iter().zip(&model.labels) {
            moments.extend(component.mean.iter().map(|&v| v as f32));
            moments.extend(component.eigenvalues.iter().map(|&v| v as f32));
            match &component.basis {
                Some(u) => {
                    info.push([label, 1, bases.len() as u32, 0]);
                    bases.extend(u.iter().map(|&v| v as f32));
                    // U^T, so that rotating back reads consecutive addresses.
                    bases.extend((0..dim * dim).map(|t| u[(t % dim) * dim + t / dim] as f32));
                }
                None => info.push([label, 0, 0, 0]),
            }
        }
        let largest = (bases.len().max(moments.len()) * 4) as u64;
        if largest > context.storage_limit || bases.len() > u32::MAX as usize {
            return Err(Error::Gpu(format!(
                "the mixture ({:.1} MiB) is larger than one GPU buffer may be",
                largest as f64 / 1048576.0
            )));
        }
        let (info, moments, bases) = context.scoped(|| {
            let uploaded = (
                buffers::upload(&context, "mixture components", buffers::bytes_of(&info)),
                buffers::upload(&context, "mixture moments", buffers::bytes_of(&moments)),
                buffers::upload(&context, "mixture bases", buffers::bytes_of(&bases)),
            );
            context.wait()?;
            Ok(uploaded)
        })?;
        Ok(GpuMixture {
            context,
            model: model.clone(),
            dim,
            info,
            moments,
            bases,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// The mixture as the host holds it.
    pub fn model(&self) -> &MixtureModel {
        &self.model
    }

    /// D(x; sigma) for every row, conditioned on `classes[r]` when given (CFG: only that class's
    /// components), in f32 on the GPU; `Error::Gpu` when the GPU fails.
    pub fn denoise(&self, x: &Batch, sigma: f64, classes: Option<&[u32]>) -> Result<Batch> {
        self.context.scoped(|| self.denoise_gpu(x, sigma, classes))
    }

    fn denoise_gpu(&self, x: &Batch, sigma: f64, classes: Option<&[u32]>) -> Result<Batch> {
        let context = &*self.context;
        let count = self.model.components.len();
        let s2 = sigma * sigma;
        // ln w_c - 1/2 sum_k ln(2 pi (lambda_k + s^2)) in f64, less the largest so f32 keeps the
        // differences that decide the responsibilities.
        let log_base: Vec<f64> = self
            .model
            .components
            .iter()
            .zip(&self.model.log_weights)
            .map(|(g, lw)| {
                lw - 0.5
                    * g.eigenvalues
                        .iter()
                        .map(|l| (2.0 * std::f64::consts::PI * (l + s2)).ln())
                        .sum::<f64>()
            })
            .collect();
        let top = log_base.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_base: Vec<f32> = log_base.iter().map(|l| (l - top) as f32).collect();
        let params = Params {
            dim: self.dim as u32,
            components: count as u32,
            sigma2: s2 as f32,
            _pad: 0,
        };
        let xs: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
        let row_classes: Vec<u32> = (0..x.rows)
            .map(|r| classes.map_or(ANY_CLASS, |c| c[r]))
            .collect();
        let per_row = (count * self.dim * 4).max(1) as u64;
        let budget = context.storage_limit.min(CHUNK_BUDGET);
        let rows_per_chunk =
            (budget / per_row).clamp(1, u64::from(context.max_workgroups)) as usize;

        let mut scratch = lock(&self.scratch);
        let scratch = &mut *scratch;
        let params_buffer =
            scratch.filled(context, slot::PARAMS, bytemuck::bytes_of(&params), UNIFORM);
        let log_base_buffer =
            scratch.filled(context, slot::LOG_BASE, buffers::bytes_of(&log_base), INPUT);
        let mut out = Vec::with_capacity(xs.len());
        for start in (0..x.rows).step_by(rows_per_chunk) {
            let end = (start + rows_per_chunk).min(x.rows);
            let rows = end - start;
            let queries = scratch.filled(
                context,
                slot::QUERIES,
                buffers::bytes_of(&xs[start * self.dim..end * self.dim]),
                INPUT,
            );
            let class_buffer = scratch.filled(
                context,
                slot::CLASSES,
                buffers::bytes_of(&row_classes[start..end]),
                INPUT,
            );
            let eigen_coords = scratch.get(
                context,
                slot::EIGEN_COORDS,
                (rows * count * self.dim * 4) as u64,
                OUTPUT,
            );
            let denoised_bytes = (rows * self.dim * 4) as u64;
            let denoised = scratch.get(context, slot::DENOISED, denoised_bytes, OUTPUT);
            let group = bind(
                &context.device,
                &context.pipelines.mixture_denoise,
                &[
                    (0, &params_buffer),
                    (1, &queries),
                    (2, &class_buffer),
                    (3, &self.info),
                    (4, &log_base_buffer),
                    (5, &self.moments),
                    (6, &self.bases),
                    (7, &eigen_coords),
                    (8, &denoised),
                ],
            );
            let mut encoder = context
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            dispatch(
                &mut encoder,
                &context.pipelines.mixture_denoise,
                &group,
                (rows as u32, 1),
            );
            let staging = scratch.get(context, slot::STAGING, denoised_bytes, STAGING);
            encoder.copy_buffer_to_buffer(&denoised, 0, &staging, 0, denoised_bytes);
            let values = buffers::submit_and_read(context, encoder, &staging, denoised_bytes)?;
            out.extend(values.iter().map(|&v| f64::from(v)));
        }
        Batch::from_vec(x.rows, self.dim, out)
    }
}
