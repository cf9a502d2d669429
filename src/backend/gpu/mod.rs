//! The wgpu backend: the same kernels as backend/cpu/ in f32 WGSL (shaders/*.wgsl).
//!
//! - `device.rs`: `GpuContext`, the adapter, device and queue, compiled pipelines, error scopes.
//! - `buffers.rs`: resident uploads, reusable per-call buffers, read-back.
//! - `pipelines.rs`: one compute pipeline per kernel entry point.
//! - `empirical/`: the ideal empirical denoiser (softmax and NAG's marginal weights, class
//!   spans); `empirical/grid.rs`: the exact noise posterior's log-sum-exp on sigma grids.
//! - `mixture.rs`: the Gaussian / Gaussian-mixture denoiser.
//!
//! Failure policy: every GPU call runs inside error scopes; an error (device lost, out of memory,
//! a failed mapping) becomes `Error::Gpu`; the kernel's `WithFallback` (backend/mod.rs) answers
//! that call and every later one on the CPU, and the whole context gives up the device: kernels prepared later stay on the CPU too. The
//! user gets one notice, "GPU <adapter> failed (<reason>); continuing on the CPU", through
//! `Compute::take_notices`. Things the GPU cannot take at all (f64, a data set larger than a
//! buffer) stay on the CPU with a notice of their own and leave the device in use. Nothing panics.

mod buffers;
mod device;
mod empirical;
mod mixture;
mod pipelines;

pub use device::{AdapterPreference, GpuContext};
pub use empirical::GpuEmpirical;
pub use mixture::GpuMixture;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{AdapterPreference, GpuContext};
    use crate::backend::{Compute, EmpiricalKernel, Span, Weighting};
    use crate::core::{Batch, Precision};
    use crate::data::gaussian::GaussianModel;
    use crate::data::mixture::MixtureModel;

    /// A fresh context (each test breaks its own); `None` without an adapter, a failure under CI.
    fn context() -> Option<GpuContext> {
        let context = GpuContext::new(AdapterPreference::Any).ok().flatten();
        if context.is_none() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but there is no GPU adapter"
            );
            eprintln!("skipped: no GPU adapter");
        }
        context
    }

    fn grid_set(n: usize) -> Vec<f64> {
        (0..2 * n)
            .map(|i| ((i * 37) % 101) as f64 / 50.0 - 1.0)
            .collect()
    }

    fn denoised(kernel: &EmpiricalKernel, x: &Batch, n: usize) -> Vec<f64> {
        let spans = vec![Span { start: 0, end: n }; x.rows];
        let rows = kernel
            .weighted_rows(x, &spans, &Weighting::Softmax { sigma: 0.3 })
            .expect("weighted rows");
        rows.iter()
            .flat_map(|r| {
                r.weighted
                    .iter()
                    .map(|v| v / r.weight_sum)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_lost_device_falls_back_to_the_cpu_with_one_notice() {
        let Some(context) = context() else { return };
        let context = Arc::new(context);
        let gpu = Compute::Gpu(Arc::clone(&context));
        let n = 300;
        let values = grid_set(n);
        let kernel = gpu.prepare(&values, n, 2, Precision::F32).expect("prepare");
        assert!(kernel.on_gpu());
        let reference = Compute::cpu()
            .prepare(&values, n, 2, Precision::F32)
            .expect("cpu");
        let x = Batch::from_vec(3, 2, vec![0.1, 0.2, -0.5, 0.7, 0.9, -0.9]).expect("batch");
        let mixture = MixtureModel::new(
            vec![1.0],
            vec![GaussianModel::isotropic(vec![0.5, -0.5], 0.2).expect("gaussian")],
            vec![0],
        )
        .expect("mixture");
        let mixture_kernel = gpu
            .prepare_mixture(&mixture, Precision::F32)
            .expect("mixture kernel");

        context.destroy_device();

        // Every kernel still answers, with the CPU's numbers.
        let expect = denoised(&reference, &x, n);
        assert_eq!(denoised(&kernel, &x, n), expect);
        assert!(!kernel.on_gpu());
        let d = mixture_kernel
            .denoise(&x, 0.5, None)
            .expect("mixture after loss");
        for r in 0..x.rows {
            assert_eq!(
                d.row(r),
                mixture.denoise_row(x.row(r), 0.5, &[0]).as_slice()
            );
        }
        let notices = gpu.take_notices();
        eprintln!("notices: {notices:?}");
        assert_eq!(notices.len(), 1, "one message for the user: {notices:?}");
        assert!(notices[0].contains("continuing on the CPU"), "{notices:?}");
        assert!(!notices[0].contains('\n'), "{notices:?}");
        // Later calls and new data sets go straight to the CPU, without telling again.
        assert_eq!(denoised(&kernel, &x, n), expect);
        let later = gpu
            .prepare(&values, n, 2, Precision::F32)
            .expect("prepare after loss");
        assert!(!later.on_gpu());
        assert!(gpu.prepare_mixture(&mixture, Precision::F32).is_none());
        assert!(gpu.take_notices().is_empty());
        assert!(gpu.describe().contains("failed"), "{}", gpu.describe());
    }

    #[test]
    fn a_data_set_larger_than_a_buffer_stays_on_the_cpu() {
        let Some(mut context) = context() else { return };
        // As if the device's largest storage binding were 1 KiB.
        context.storage_limit = 1024;
        let gpu = Compute::Gpu(Arc::new(context));
        let n = 200;
        let values = grid_set(n);
        let kernel = gpu.prepare(&values, n, 2, Precision::F32).expect("prepare");
        assert!(!kernel.on_gpu());
        let notices = gpu.take_notices();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(
            notices[0].contains("larger than one GPU buffer"),
            "{notices:?}"
        );
        let x = Batch::from_vec(1, 2, vec![0.25, -0.25]).expect("batch");
        let reference = Compute::cpu()
            .prepare(&values, n, 2, Precision::F32)
            .expect("cpu");
        assert_eq!(denoised(&kernel, &x, n), denoised(&reference, &x, n));
    }

    #[test]
    fn rows_beyond_one_chunk_are_computed_in_several() {
        let Some(mut context) = context() else { return };
        // 4 KiB bindings: each chunk holds 4096 / (4 * 300) = 3 rows of distances.
        context.storage_limit = 4096;
        let gpu = Compute::Gpu(Arc::new(context));
        let n = 300;
        let values: Vec<f64> = grid_set(n).into_iter().take(n).collect();
        let kernel = gpu.prepare(&values, n, 1, Precision::F32).expect("prepare");
        assert!(kernel.on_gpu());
        let x = Batch::from_vec(10, 1, (0..10).map(|i| i as f64 / 5.0 - 1.0).collect()).expect("x");
        let reference = Compute::cpu()
            .prepare(&values, n, 1, Precision::F32)
            .expect("cpu");
        let (got, want) = (denoised(&kernel, &x, n), denoised(&reference, &x, n));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        assert!(gpu.take_notices().is_empty());
    }
}
