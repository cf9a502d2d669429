//! The compute pipelines, compiled once per device from the WGSL files in `shaders/`.

use std::borrow::Cow;

/// Every kernel entry point. Layouts are derived from the shaders, so a bind group lists exactly
/// the bindings its entry point uses.
pub(crate) struct Pipelines {
    pub distances: wgpu::ComputePipeline,
    pub row_min: wgpu::ComputePipeline,
    pub softmax_weights: wgpu::ComputePipeline,
    pub marginal_weights: wgpu::ComputePipeline,
    pub weighted_sum: wgpu::ComputePipeline,
    pub weighted_sum_tiled: wgpu::ComputePipeline,
    pub log_sum_exp: wgpu::ComputePipeline,
    pub mixture_denoise: wgpu::ComputePipeline,
}

const EMPIRICAL_WGSL: &str = include_str!("../../../shaders/empirical.wgsl");
const MIXTURE_WGSL: &str = include_str!("../../../shaders/mixture.wgsl");

fn module(device: &wgpu::Device, label: &str, source: &'static str) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(source)),
    })
}

fn pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions::default(),
        cache: None,
    })
}

impl Pipelines {
    /// Compiles every kernel; errors surface through the caller's validation error scope.
    pub fn new(device: &wgpu::Device) -> Self {
        let empirical = module(device, "empirical.wgsl", EMPIRICAL_WGSL);
        let mixture = module(device, "mixture.wgsl", MIXTURE_WGSL);
        Pipelines {
            distances: pipeline(device, &empirical, "distances"),
            row_min: pipeline(device, &empirical, "row_min"),
            softmax_weights: pipeline(device, &empirical, "softmax_weights"),
            marginal_weights: pipeline(device, &empirical, "marginal_weights"),
            weighted_sum: pipeline(device, &empirical, "weighted_sum"),
            weighted_sum_tiled: pipeline(device, &empirical, "weighted_sum_tiled"),
            log_sum_exp: pipeline(device, &empirical, "log_sum_exp"),
            mixture_denoise: pipeline(device, &mixture, "mixture_denoise"),
        }
    }
}

/// Binds `buffers` as (binding, buffer) to group 0 of `pipeline`.
pub(crate) fn bind(
    device: &wgpu::Device,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[(u32, &wgpu::Buffer)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .map(|(binding, buffer)| wgpu::BindGroupEntry {
            binding: *binding,
            resource: buffer.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// Records one dispatch of `pipeline` with `group` into `encoder`.
pub(crate) fn dispatch(
    encoder: &mut wgpu::CommandEncoder,
    pipeline: &wgpu::ComputePipeline,
    group: &wgpu::BindGroup,
    workgroups: (u32, u32),
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: None,
        timestamp_writes: None,
    });
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, group, &[]);
    pass.dispatch_workgroups(workgroups.0, workgroups.1, 1);
}
