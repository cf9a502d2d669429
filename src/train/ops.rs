//! Fused training ops for candle on the CPU, where candle's generic ops are slow: each is a
//! `CustomOp` (own forward and backward) or an in-place update, f32, contiguous inputs.
//!
//! candle's own GEMM is fast at these shapes; what costs in a stock training step is everything
//! around it: one fresh buffer and one generic pass per elementwise op (bias add, SiLU, its
//! backward, every gradient accumulation, every AdamW term) and a convolution backward that is
//! far from GEMM speed. Here:
//! - [`linear`]: y = act(x W^T + b) in one op: the bias is the GEMM's initial value and SiLU's
//!   slope is kept from the forward pass, so the backward is one multiply and two GEMMs.
//! - [`conv2d`]: convolution as im2col + GEMM over cache-sized chunks of images (patches built
//!   from contiguous runs of the NCHW rows, candle's weight layout as is), with its own backward
//!   (two GEMMs + col2im).
//! - [`group_norm`]: group normalisation (Wu & He 2018, eq. 1) with an optional SiLU, one pass
//!   each way.
//! - [`silu`], [`weighted_mse`] (the EDM loss of Karras et al. 2022, eq. 2 / Table 1, with a
//!   per-row weight).
//! - [`adamw_update`] / [`FusedAdamW`]: AdamW (Loshchilov & Hutter 2019, Alg. 2, as candle-nn
//!   computes it) in place, no allocation; [`ema_update`]: the EMA of the weights in place.
//! - [`keep_buffers_resident`]: glibc malloc tuned so per-step buffers are reused, not mapped anew.
//!
//! Every op is tested against candle's stock composition (values and gradients, odd shapes).

use std::sync::Mutex;

use candle_core::Module;
use candle_core::backprop::GradStore;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp3, InplaceOp2, InplaceOp3, Layout, Result, Shape, Storage,
    Tensor, Var, bail,
};
use rayon::prelude::*;

use crate::core::real::Real;

/// Elementwise work below this many values stays on one thread (a rayon split costs ~10 us).
const PARALLEL_MIN: usize = 16_384;
/// Rows of im2col patches per convolution task: large enough for GEMM speed, small enough that a
/// task's patches stay in L2.
const CONV_TASK_ROWS: usize = 512;

/// Tunes glibc malloc for training and sampling: buffers up to 32 MB come from the heap instead
/// of fresh mmaps (a page fault per page on every step), and freed memory is kept (trim at 1 GB,
/// 64 MB of top padding). Process-wide; `main` calls it once for every command but the stock
/// training bench.
pub fn keep_buffers_resident() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Thread settings for training with candle 0.11 on the CPU, applied where the environment does
/// not already choose:
/// - RAYON_NUM_THREADS = the machine's parallelism (rayon's own default): without it candle
///   counts its threads on every matmul and parallel op by parsing /proc/cpuinfo (num_cpus), a
///   third of a training step on the 2-core reference machine.
/// - CANDLE_NUM_THREADS = 1: candle's remaining elementwise ops run on the calling thread. Its
///   barrier pool would otherwise spin (25 000 iterations per wait) against rayon's workers, which
///   run the fused ops, for the same cores.
///
/// # Safety
/// Sets environment variables: call it before any other thread exists.
pub unsafe fn pin_thread_count() {
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (name, value) in [
        ("RAYON_NUM_THREADS", parallelism.to_string()),
        ("CANDLE_NUM_THREADS", "1".to_string()),
    ] {
        if std::env::var_os(name).is_none() {
            // SAFETY: the caller guarantees that no other thread reads the environment now.
            unsafe { std::env::set_var(name, value) };
        }
    }
}

thread_local! {
    static STOCK_OPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with candle's stock compositions in place of the fused ops on this thread (the
/// public functions below and the layers, optimiser and EMA of train/ that use them): the
/// baseline of `bench-train --stock`, and the reference the fused models are tested against.
pub fn with_stock_ops<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            STOCK_OPS.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(STOCK_OPS.with(|s| s.replace(true)));
    f()
}

/// Runs `f` on one of rayon's worker threads (at once when already on one), carrying this
/// thread's [`with_stock_ops`] setting along. The fused ops split their work with rayon; from a
/// worker that costs no hand-off to the pool and no sleep and wake-up of the caller per op.
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let stock = stock_ops();
    rayon::scope(|_| if stock { with_stock_ops(f) } else { f() })
}

/// Whether this thread runs the stock compositions (inside [`with_stock_ops`]).
pub fn stock_ops() -> bool {
    STOCK_OPS.with(|s| s.get())
}

/// Compiles an elementwise kernel twice (AVX-512 and portable) and picks one at run time.
macro_rules! simd_kernel {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if avx512_available() {
                // SAFETY: the CPU has every feature `avx512` is compiled with.
                return unsafe { avx512($($arg),*) };
            }
            portable($($arg),*)
        }
    };
}

/// Whether this machine runs the AVX-512 copies of the kernels, detected once (the kernels run
/// on slices as short as 4).
fn avx512_available() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + Real::exp(-z))
}

simd_kernel! {
    /// z <- silu(z) = z sigmoid(z); slope <- silu'(z) = s (1 + z (1 - s)).
    pub(super) fn silu_with_slope(z: &mut [f32], slope: &mut [f32]) {
        for (z, d) in z.iter_mut().zip(slope.iter_mut()) {
            let s = sigmoid(*z);
            *d = s * (1.0 + *z * (1.0 - s));
            *z *= s;
        }
    }
}

simd_kernel! {
    /// g <- g * slope.
    pub(super) fn scale_by(g: &mut [f32], slope: &[f32]) {
        for (g, d) in g.iter_mut().zip(slope) {
            *g *= *d;
        }
    }
}

simd_kernel! {
    /// acc[j] += rows[i, j] over all rows (rows is [n, acc.len()]).
    fn add_column_sums(rows: &[f32], acc: &mut [f32]) {
        for row in rows.chunks_exact(acc.len()) {
            for (a, r) in acc.iter_mut().zip(row) {
                *a += *r;
            }
        }
    }
}

simd_kernel! {
    /// acc[j] += rows[i, start + j] over all rows i (rows is [n, width]).
    pub(super) fn add_column_range(rows: &[f32], width: usize, start: usize, acc: &mut [f32]) {
        for row in rows.chunks_exact(width) {
            for (a, r) in acc.iter_mut().zip(&row[start..]) {
                *a += *r;
            }
        }
    }
}

/// Runs `f` on matching chunks of two buffers, in parallel when they are large.
fn par_zip2(a: &mut [f32], b: &mut [f32], f: fn(&mut [f32], &mut [f32])) {
    if a.len() < PARALLEL_MIN {
        return f(a, b);
    }
    let chunk = a.len().div_ceil(rayon::current_num_threads()).max(4096);
    a.par_chunks_mut(chunk)
        .zip(b.par_chunks_mut(chunk))
        .for_each(|(a, b)| f(a, b));
}

/// Runs `f` on matching chunks of a mutable and a shared buffer, in parallel when large.
fn par_zip_ref(a: &mut [f32], b: &[f32], f: fn(&mut [f32], &[f32])) {
    if a.len() < PARALLEL_MIN {
        return f(a, b);
    }
    let chunk = a.len().div_ceil(rayon::current_num_threads()).max(4096);
    a.par_chunks_mut(chunk)
        .zip(b.par_chunks(chunk))
        .for_each(|(a, b)| f(a, b));
}

/// Runs `f` with an extra argument on matching chunks, in parallel when large.
fn par_zip_ref_with<A: Copy + Send + Sync>(
    a: &mut [f32],
    b: &[f32],
    arg: A,
    f: fn(&mut [f32], &[f32], A),
) {
    if a.len() < PARALLEL_MIN {
        return f(a, b, arg);
    }
    let chunk = a.len().div_ceil(rayon::current_num_threads()).max(4096);
    a.par_chunks_mut(chunk)
        .zip(b.par_chunks(chunk))
        .for_each(|(a, b)| f(a, b, arg));
}

/// A matrix view for [`gemm`]: element (i, j) is data[i * rows + j * cols].
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
}

impl<'a> View<'a> {
    pub(super) fn row_major(data: &'a [f32], width: usize) -> Self {
        View {
            data,
            rows: width,
            cols: 1,
        }
    }
    pub(super) fn transposed(data: &'a [f32], width: usize) -> Self {
        View {
            data,
            rows: 1,
            cols: width,
        }
    }
    /// Whether an (m, n) matrix fits in the data.
    fn covers(&self, m: usize, n: usize) -> bool {
        m == 0 || n == 0 || (m - 1) * self.rows + (n - 1) * self.cols < self.data.len()
    }
}

/// dst[m, n] (row-major) = (accumulate ? dst : 0) + a[m, k] b[k, n], on `threads` threads.
pub(super) fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    a: View,
    b: View,
    threads: usize,
) -> Result<()> {
    if dst.len() < m * n || !a.covers(m, k) || !b.covers(k, n) {
        bail!("fused op: GEMM operands do not match ({m} x {k}) x ({k} x {n})");
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every index the GEMM touches is inside the slices (checked above) and `dst` does
    // not alias the inputs (it is a distinct &mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cols as isize,
            a.rows as isize,
            b.data.as_ptr(),
            b.cols as isize,
            b.rows as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// The contiguous f32 values of a CPU storage.
pub(super) fn slice_of<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("fused op: inputs must be contiguous"),
    }
}

/// A copy of a tensor's values (f32, on the CPU).
pub(super) fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// Runs `f` on a CPU tensor's contiguous f32 values without copying them.
pub(super) fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(slice_of(cpu, layout)?),
        _ => bail!("fused op: CPU tensors only"),
    }
}

/// The contiguous f32 values of a storage held through `Tensor::storage_and_layout`.
pub(super) fn cpu_values<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32]> {
    match storage {
        Storage::Cpu(cpu) => slice_of(cpu, layout),
        _ => bail!("fused op: CPU tensors only"),
    }
}

thread_local! {
    /// Gradients that fused ops computed for tensors outside candle's graph during the running
    /// backward pass (see [`backward`]).
    static SIDE_GRADIENTS: std::cell::RefCell<Vec<(Tensor, Tensor)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Hands the gradient of `tensor` (a variable a fused op read without recording it) to the
/// running [`backward`].
pub(super) fn add_side_gradient(tensor: &Tensor, grad: Tensor) {
    SIDE_GRADIENTS.with(|s| s.borrow_mut().push((tensor.clone(), grad)));
}

/// `loss.backward()` plus the gradients that fused ops handed over on the side (the weights of
/// `fused_mlp::mlp` after its first): every variable's gradient, as candle's stock ops would
/// give it. Training code calls this in place of `Tensor::backward`.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    SIDE_GRADIENTS.with(|s| s.borrow_mut().clear());
    let mut grads = loss.backward()?;
    for (tensor, grad) in SIDE_GRADIENTS.with(|s| std::mem::take(&mut *s.borrow_mut())) {
        let total = match grads.remove(&tensor) {
            Some(earlier) => (earlier + grad)?,
            None => grad,
        };
        grads.insert(&tensor, total);
    }
    Ok(grads)
}

/// candle's thread count, asked once (candle 0.11 re-derives it on every call).
fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(candle_core::utils::get_num_threads)
}

/// Locks a cache, recovering it if another thread panicked while holding it.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What follows the affine map in [`linear`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Identity,
    /// x sigmoid(x) (Elfwing et al. 2018).
    Silu,
}

struct LinearOp {
    activation: Activation,
    /// SiLU's slope at the forward pass's pre-activations, [batch, out].
    slope: Mutex<Vec<f32>>,
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, fan_in) = xl.shape().dims2()?;
        let (fan_out, w_in) = wl.shape().dims2()?;
        if w_in != fan_in || bl.shape().elem_count() != fan_out {
            bail!(
                "fused linear: x {:?}, w {:?}, b {:?}",
                xl.dims(),
                wl.dims(),
                bl.dims()
            );
        }
        let (x, w, b) = (slice_of(xs, xl)?, slice_of(ws, wl)?, slice_of(bs, bl)?);
        // The bias is the GEMM's starting value: no separate broadcast pass.
        let mut out = Vec::with_capacity(batch * fan_out);
        for _ in 0..batch {
            out.extend_from_slice(b);
        }
        gemm(
            (batch, fan_out, fan_in),
            &mut out,
            true,
            View::row_major(x, fan_in),
            View::transposed(w, fan_in),
            threads(),
        )?;
        if self.activation == Activation::Silu {
            let mut slope = vec![0f32; out.len()];
            par_zip2(&mut out, &mut slope, silu_with_slope);
            *lock(&self.slope) = slope;
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, fan_out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, fan_in) = x.dims2()?;
        let fan_out = w.dim(0)?;
        let mut dz = values(grad)?;
        if self.activation == Activation::Silu {
            let slope = lock(&self.slope);
            if slope.len() != dz.len() {
                bail!("fused linear: backward without its forward pass");
            }
            par_zip_ref(&mut dz, &slope, scale_by);
        }
        let mut db = vec![0f32; fan_out];
        add_column_sums(&dz, &mut db);
        let mut dw = vec![0f32; fan_out * fan_in];
        with_values(x, |x| {
            gemm(
                (fan_out, fan_in, batch),
                &mut dw,
                false,
                View::transposed(&dz, fan_out),
                View::row_major(x, fan_in),
                threads(),
            )
        })?;
        // Data fed straight in (no variable behind it) needs no gradient.
        let dx = if x.track_op() {
            let mut dx = vec![0f32; batch * fan_in];
            with_values(w, |w| {
                gemm(
                    (batch, fan_in, fan_out),
                    &mut dx,
                    false,
                    View::row_major(&dz, fan_out),
                    View::row_major(w, fan_in),
                    threads(),
                )
            })?;
            Some(Tensor::from_vec(dx, (batch, fan_in), x.device())?)
        } else {
            None
        };
        Ok((
            dx,
            Some(Tensor::from_vec(dw, (fan_out, fan_in), w.device())?),
            Some(Tensor::from_vec(db, b.shape(), b.device())?),
        ))
    }
}

/// act(x W^T + b) for x [batch, in], W [out, in], b [out] (candle-nn's `Linear` layout), in one
/// op with its own backward.
pub fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    activation: Activation,
) -> Result<Tensor> {
    if stock_ops() {
        let y = x.broadcast_matmul(&weight.t()?)?.broadcast_add(bias)?;
        return match activation {
            Activation::Identity => Ok(y),
            Activation::Silu => y.silu(),
        };
    }
    let op = LinearOp {
        activation,
        slope: Mutex::new(Vec::new()),
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

struct SiluOp {
    slope: Mutex<Vec<f32>>,
}

impl CustomOp1 for SiluOp {
    fn name(&self) -> &'static str {
        "fused-silu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut out = slice_of(s, l)?.to_vec();
        let mut slope = vec![0f32; out.len()];
        par_zip2(&mut out, &mut slope, silu_with_slope);
        *lock(&self.slope) = slope;
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let mut g = values(grad)?;
        let slope = lock(&self.slope);
        if slope.len() != g.len() {
            bail!("fused silu: backward without its forward pass");
        }
        par_zip_ref(&mut g, &slope, scale_by);
        Ok(Some(Tensor::from_vec(g, arg.shape(), arg.device())?))
    }
}

/// x sigmoid(x) with its slope kept from the forward pass (one pass each way).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    if stock_ops() {
        return x.silu();
    }
    x.contiguous()?.apply_op1(SiluOp {
        slope: Mutex::new(Vec::new()),
    })
}

struct WeightedMseOp;

impl WeightedMseOp {
    /// (pred - target) and the per-row sums of its squares.
    fn residuals(pred: &[f32], target: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
        let r: Vec<f32> = pred.iter().zip(target).map(|(p, t)| p - t).collect();
        let sums = r
            .chunks_exact(width.max(1))
            .map(|row| row.iter().map(|v| v * v).sum())
            .collect();
        (r, sums)
    }
}

impl CustomOp3 for WeightedMseOp {
    fn name(&self) -> &'static str {
        "fused-weighted-mse"
    }

    fn cpu_fwd(
        &self,
        ps: &CpuStorage,
        pl: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, width) = pl.shape().dims2()?;
        if tl.shape() != pl.shape() || wl.shape().elem_count() != rows {
            bail!(
                "weighted mse: pred {:?}, target {:?}, weight {:?}",
                pl.dims(),
                tl.dims(),
                wl.dims()
            );
        }
        let (p, t, w) = (slice_of(ps, pl)?, slice_of(ts, tl)?, slice_of(ws, wl)?);
        let (_, sums) = Self::residuals(p, t, width);
        let total: f64 = sums.iter().zip(w).map(|(s, w)| (*s * *w) as f64).sum();
        let mean = (total / (rows * width).max(1) as f64) as f32;
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        pred: &Tensor,
        target: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, width) = pred.dims2()?;
        let g = grad.to_scalar::<f32>()? / (rows * width).max(1) as f32;
        let (p, t, w) = (values(pred)?, values(target)?, values(weight)?);
        let (r, sums) = Self::residuals(&p, &t, width);
        let dpred: Vec<f32> = r
            .chunks_exact(width.max(1))
            .zip(&w)
            .flat_map(|(row, w)| row.iter().map(move |v| 2.0 * g * w * v))
            .collect();
        let dtarget = if target.track_op() {
            let neg: Vec<f32> = dpred.iter().map(|v| -v).collect();
            Some(Tensor::from_vec(neg, target.shape(), target.device())?)
        } else {
            None
        };
        let dweight = if weight.track_op() {
            let dw: Vec<f32> = sums.iter().map(|s| g * s).collect();
            Some(Tensor::from_vec(dw, weight.shape(), weight.device())?)
        } else {
            None
        };
        Ok((
            Some(Tensor::from_vec(dpred, pred.shape(), pred.device())?),
            dtarget,
            dweight,
        ))
    }
}

/// mean over all entries of w_row (pred - target)^2, for pred and target [rows, width] and w
/// [rows] (or [rows, 1]): EDM's loss (Karras et al. 2022, eq. 2) with lambda(sigma) per row.
pub fn weighted_mse(pred: &Tensor, target: &Tensor, row_weight: &Tensor) -> Result<Tensor> {
    if stock_ops() {
        let rows = pred.dim(0)?;
        return (pred - target)?
            .sqr()?
            .broadcast_mul(&row_weight.reshape((rows, 1))?)?
            .mean_all();
    }
    pred.contiguous()?.apply_op3(
        &target.contiguous()?,
        &row_weight.contiguous()?,
        WeightedMseOp,
    )
}

/// Geometry of one 2-D convolution over NCHW images.
#[derive(Clone, Copy, Debug)]
struct ConvGeometry {
    batch: usize,
    c_in: usize,
    height: usize,
    width: usize,
    c_out: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride: usize,
    padding: usize,
    out_h: usize,
    out_w: usize,
}

impl ConvGeometry {
    fn new(x: &[usize], w: &[usize], stride: usize, padding: usize) -> Result<Self> {
        let (&[batch, c_in, height, width], &[c_out, w_in, kernel_h, kernel_w]) = (x, w) else {
            bail!("fused conv2d: x {x:?} and w {w:?} must be 4-D");
        };
        if w_in != c_in
            || stride == 0
            || [c_in, height, width, c_out, kernel_h, kernel_w].contains(&0)
        {
            bail!("fused conv2d: x {x:?}, w {w:?}, stride {stride}");
        }
        let (ph, pw) = (height + 2 * padding, width + 2 * padding);
        if ph < kernel_h || pw < kernel_w {
            bail!("fused conv2d: kernel {kernel_h}x{kernel_w} larger than the padded input");
        }
        if height.saturating_mul(width) >= PADDING as usize {
            bail!("fused conv2d: planes of {height}x{width} pixels are too large");
        }
        Ok(ConvGeometry {
            batch,
            c_in,
            height,
            width,
            c_out,
            kernel_h,
            kernel_w,
            stride,
            padding,
            out_h: (ph - kernel_h) / stride + 1,
            out_w: (pw - kernel_w) / stride + 1,
        })
    }
    fn pixels_in(&self) -> usize {
        self.height * self.width
    }
    fn pixels_out(&self) -> usize {
        self.out_h * self.out_w
    }
    /// Length of one patch: (c, ky, kx), kx fastest (candle's weight layout [o, c, ky, kx]).
    fn patch(&self) -> usize {
        self.kernel_h * self.kernel_w * self.c_in
    }
    /// Whether a bias of shape `dims` is per image and channel ([batch, c_out]) rather than
    /// per channel ([c_out]).
    fn bias_per_image(&self, dims: &[usize]) -> Result<bool> {
        match dims {
            [c] if *c == self.c_out => Ok(false),
            [b, c] if *b == self.batch && *c == self.c_out => Ok(true),
            _ => bail!(
                "fused conv2d: bias {dims:?} for {} images of {} channels",
                self.batch,
                self.c_out
            ),
        }
    }
    /// Images per task so that a task has about CONV_TASK_ROWS patch columns.
    fn images_per_task(&self) -> usize {
        (CONV_TASK_ROWS / self.pixels_out().max(1)).clamp(1, self.batch.max(1))
    }
    /// For every tap (ky, kx) and output pixel, the input pixel of the same plane it reads
    /// (iy * width + ix), or `PADDING` where it reads the zero padding: [taps, pixels_out].
    fn tap_table(&self) -> Vec<u32> {
        let mut table = Vec::with_capacity(self.kernel_h * self.kernel_w * self.pixels_out());
        let inside = |o: usize, k: usize, size: usize| {
            (o * self.stride + k)
                .checked_sub(self.padding)
                .filter(|&i| i < size)
        };
        for ky in 0..self.kernel_h {
            for kx in 0..self.kernel_w {
                for oy in 0..self.out_h {
                    for ox in 0..self.out_w {
                        table.push(
                            match (inside(oy, ky, self.height), inside(ox, kx, self.width)) {
                                (Some(iy), Some(ix)) => (iy * self.width + ix) as u32,
                                _ => PADDING,
                            },
                        );
                    }
                }
            }
        }
        table
    }
}

/// The tap table's entry for a pixel that reads the padding (past the end of any plane: the
/// input is limited to fewer than 2^32 pixels per plane by `ConvGeometry::new`).
const PADDING: u32 = u32::MAX;

simd_kernel! {
    /// dst[i] = plane[index[i]], 0 where the index is past the plane (a gather: slow on CPUs
    /// with gather mitigations, so only for the convolutions that are not same-size).
    fn gather(dst: &mut [f32], plane: &[f32], index: &[u32]) {
        for (d, &i) in dst.iter_mut().zip(index) {
            *d = plane.get(i as usize).copied().unwrap_or(0.0);
        }
    }
}

simd_kernel! {
    /// dst[i] = src[i] where index[i] is not `PADDING`, else 0.
    fn masked_copy(dst: &mut [f32], src: &[f32], index: &[u32]) {
        for ((d, &s), &i) in dst.iter_mut().zip(src).zip(index) {
            *d = if i != PADDING { s } else { 0.0 };
        }
    }
}

simd_kernel! {
    /// dst[i] += src[i] where index[i] is not `PADDING`.
    fn masked_add(dst: &mut [f32], src: &[f32], index: &[u32]) {
        for ((d, &s), &i) in dst.iter_mut().zip(src).zip(index) {
            *d += if i != PADDING { s } else { 0.0 };
        }
    }
}

/// A same-size stride-1 convolution's tap as a flat shift of the plane: output pixel i reads
/// input pixel i + shift (unless the tap table says padding) for i in [lo, hi).
#[derive(Clone, Copy)]
struct Shift {
    shift: isize,
    lo: usize,
    hi: usize,
}

impl ConvGeometry {
    /// The taps as plane shifts, when the output has the input's size at stride 1 (then every
    /// tap reads the same plane shifted by (ky - p) rows and (kx - p) columns); else None.
    fn tap_shifts(&self) -> Option<Vec<Shift>> {
        if self.stride != 1 || self.out_h != self.height || self.out_w != self.width {
            return None;
        }
        let (w, pixels, p) = (
            self.width as isize,
            self.pixels_in() as isize,
            self.padding as isize,
        );
        let mut shifts = Vec::with_capacity(self.kernel_h * self.kernel_w);
        for ky in 0..self.kernel_h as isize {
            for kx in 0..self.kernel_w as isize {
                let shift = (ky - p) * w + (kx - p);
                let lo = (-shift).clamp(0, pixels) as usize;
                let hi = (pixels - shift).clamp(0, pixels) as usize;
                shifts.push(Shift {
                    shift,
                    lo,
                    hi: hi.max(lo),
                });
            }
        }
        Some(shifts)
    }
}

impl Shift {
    /// The input pixels [lo + shift, hi + shift).
    fn source(&self) -> std::ops::Range<usize> {
        (self.lo as isize + self.shift) as usize..(self.hi as isize + self.shift) as usize
    }
}

/// The patch matrix of a chunk of NCHW images, [patch, images * pixels_out]: row (c, ky, kx)
/// holds, for every output pixel, the input value that tap reads (0 in the padding): shifted
/// copies of each plane for same-size convolutions, else a gather through the tap table.
fn im2col(g: &ConvGeometry, table: &[u32], x: &[f32], cols: &mut [f32]) {
    let (pixels_in, pixels_out) = (g.pixels_in(), g.pixels_out());
    let images = x.len() / (g.c_in * pixels_in);
    let width = images * pixels_out;
    let taps = g.kernel_h * g.kernel_w;
    let shifts = g.tap_shifts();
    for c in 0..g.c_in {
        for img in 0..images {
            let plane = &x[(img * g.c_in + c) * pixels_in..][..pixels_in];
            for (t, index) in table.chunks_exact(pixels_out).enumerate() {
                let at = (c * taps + t) * width + img * pixels_out;
                let dst = &mut cols[at..at + pixels_out];
                match &shifts {
                    Some(shifts) => {
                        let s = shifts[t];
                        dst[..s.lo].fill(0.0);
                        dst[s.hi..].fill(0.0);
                        masked_copy(&mut dst[s.lo..s.hi], &plane[s.source()], &index[s.lo..s.hi]);
                    }
                    None => gather(dst, plane, index),
                }
            }
        }
    }
}

/// Adds patch-matrix gradients back onto the NCHW image gradients (the adjoint of im2col; taps
/// in the same order, so every pixel sums its taps in order).
fn col2im(g: &ConvGeometry, table: &[u32], dcols: &[f32], dx: &mut [f32]) {
    let (pixels_in, pixels_out) = (g.pixels_in(), g.pixels_out());
    let images = dx.len() / (g.c_in * pixels_in);
    let width = images * pixels_out;
    let taps = g.kernel_h * g.kernel_w;
    let shifts = g.tap_shifts();
    for c in 0..g.c_in {
        for img in 0..images {
            let plane = &mut dx[(img * g.c_in + c) * pixels_in..][..pixels_in];
            for (t, index) in table.chunks_exact(pixels_out).enumerate() {
                let at = (c * taps + t) * width + img * pixels_out;
                let src = &dcols[at..at + pixels_out];
                match &shifts {
                    Some(shifts) => {
                        let s = shifts[t];
                        masked_add(&mut plane[s.source()], &src[s.lo..s.hi], &index[s.lo..s.hi]);
                    }
                    None => {
                        for (&i, &d) in index.iter().zip(src) {
                            if let Some(p) = plane.get_mut(i as usize) {
                                *p += d;
                            }
                        }
                    }
                }
            }
        }
    }
}

simd_kernel! {
    /// dst += src.
    fn add_assign(dst: &mut [f32], src: &[f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += *s;
        }
    }
}

/// [images, channels, pixels] <-> [channels, images * pixels]: contiguous runs of `pixels`.
fn swap_image_and_channel(
    src: &[f32],
    dst: &mut [f32],
    channels: usize,
    pixels: usize,
    to_wide: bool,
) {
    let images = src.len() / (channels * pixels).max(1);
    for img in 0..images {
        for c in 0..channels {
            let nchw = (img * channels + c) * pixels;
            let wide = (c * images + img) * pixels;
            if to_wide {
                dst[wide..wide + pixels].copy_from_slice(&src[nchw..nchw + pixels]);
            } else {
                dst[nchw..nchw + pixels].copy_from_slice(&src[wide..wide + pixels]);
            }
        }
    }
}

struct Conv2dOp {
    stride: usize,
    padding: usize,
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "fused-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = ConvGeometry::new(xl.dims(), wl.dims(), self.stride, self.padding)?;
        let per_image = g.bias_per_image(bl.dims())?;
        let (x, w, b) = (slice_of(xs, xl)?, slice_of(ws, wl)?, slice_of(bs, bl)?);
        let mut out = vec![0f32; g.batch * g.c_out * g.pixels_out()];
        let table = g.tap_table();
        let per_task = g.images_per_task();
        out.par_chunks_mut(per_task * g.c_out * g.pixels_out())
            .zip(x.par_chunks(per_task * g.c_in * g.pixels_in()))
            .enumerate()
            .try_for_each(|(task, (out, x))| -> Result<()> {
                with_conv_scratch(|scratch| {
                    let ConvScratch { cols, wide } = scratch;
                    let images = x.len() / (g.c_in * g.pixels_in());
                    let width = images * g.pixels_out();
                    let cols = sized(cols, g.patch() * width);
                    im2col(&g, &table, x, cols);
                    // The bias is the GEMM's starting value.
                    let y = sized(wide, g.c_out * width);
                    for (c, row) in y.chunks_exact_mut(width).enumerate() {
                        for (img, pixels) in row.chunks_exact_mut(g.pixels_out()).enumerate() {
                            pixels.fill(if per_image {
                                b[(task * per_task + img) * g.c_out + c]
                            } else {
                                b[c]
                            });
                        }
                    }
                    gemm(
                        (g.c_out, width, g.patch()),
                        y,
                        true,
                        View::row_major(w, g.patch()),
                        View::row_major(cols, width),
                        1,
                    )?;
                    swap_image_and_channel(y, out, g.c_out, g.pixels_out(), false);
                    Ok(())
                })
            })?;
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.c_out, g.out_h, g.out_w)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = ConvGeometry::new(x.dims(), w.dims(), self.stride, self.padding)?;
        let per_image = g.bias_per_image(b.dims())?;
        let dy = values(grad)?;
        let wv = values(w)?;
        let want_dx = x.track_op();
        let mut dx = vec![0f32; if want_dx { x.elem_count() } else { 0 }];
        let table = g.tap_table();
        let per_task = g.images_per_task();
        let dx_chunk = per_task * g.c_in * g.pixels_in();
        let dy_chunk = per_task * g.c_out * g.pixels_out();
        // Each task returns its share of dW and db; they are summed after.
        let partials: Vec<(Vec<f32>, Vec<f32>)> = with_values(x, |x| {
            let tasks = x.len().div_ceil(dx_chunk);
            let dx_slots: Vec<Option<&mut [f32]>> = if want_dx {
                dx.chunks_mut(dx_chunk).map(Some).collect()
            } else {
                (0..tasks).map(|_| None).collect()
            };
            x.par_chunks(dx_chunk)
                .zip(dy.par_chunks(dy_chunk))
                .zip(dx_slots.into_par_iter())
                .map(|((x, dy), dx)| conv_backward_task(&g, &table, &wv, x, dy, dx))
                .collect()
        })?;
        let mut dw = vec![0f32; g.c_out * g.patch()];
        let mut db = vec![0f32; b.elem_count()];
        let mut db_at = 0;
        for (dw_part, db_part) in &partials {
            add_assign(&mut dw, dw_part);
            if per_image {
                // Image by image, [images, c_out], in task order.
                db[db_at..db_at + db_part.len()].copy_from_slice(db_part);
                db_at += db_part.len();
            } else {
                for per_channel in db_part.chunks_exact(g.c_out) {
                    add_assign(&mut db, per_channel);
                }
            }
        }
        let dx = if want_dx {
            Some(Tensor::from_vec(dx, x.shape(), x.device())?)
        } else {
            None
        };
        Ok((
            dx,
            Some(Tensor::from_vec(dw, w.shape(), w.device())?),
            Some(Tensor::from_vec(db, b.shape(), b.device())?),
        ))
    }
}

/// One chunk of images of the convolution backward: returns (dW, db) for the chunk and writes
/// its dx when asked.
fn conv_backward_task(
    g: &ConvGeometry,
    table: &[u32],
    w: &[f32],
    x: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    with_conv_scratch(|scratch| {
        let ConvScratch { cols, wide } = scratch;
        let width = x.len() / (g.c_in * g.pixels_in()) * g.pixels_out();
        let dy_wide = sized(wide, dy.len());
        swap_image_and_channel(dy, dy_wide, g.c_out, g.pixels_out(), true);
        // db per image and channel, [images, c_out] (summed over images for a shared bias).
        let images = width / g.pixels_out();
        let mut db = vec![0f32; images * g.c_out];
        for (c, row) in dy_wide.chunks_exact(width).enumerate() {
            for (img, pixels) in row.chunks_exact(g.pixels_out()).enumerate() {
                db[img * g.c_out + c] = lane_sum(pixels);
            }
        }
        let cols = sized(cols, g.patch() * width);
        im2col(g, table, x, cols);
        let mut dw = vec![0f32; g.c_out * g.patch()];
        gemm(
            (g.c_out, g.patch(), width),
            &mut dw,
            false,
            View::row_major(dy_wide, width),
            View::transposed(cols, width),
            1,
        )?;
        if let Some(dx) = dx {
            // The patch gradients reuse the patch buffer.
            gemm(
                (g.patch(), width, g.c_out),
                cols,
                false,
                View::transposed(w, g.patch()),
                View::row_major(dy_wide, width),
                1,
            )?;
            dx.fill(0.0);
            col2im(g, table, cols, dx);
        }
        Ok((dw, db))
    })
}

/// Per-thread convolution buffers, reused across calls: no allocation or zeroing per task.
#[derive(Default)]
struct ConvScratch {
    cols: Vec<f32>,
    wide: Vec<f32>,
}

thread_local! {
    static CONV_SCRATCH: std::cell::RefCell<ConvScratch> = std::cell::RefCell::default();
}

/// Runs `f` with this thread's scratch buffers (fresh ones if they are in use).
fn with_conv_scratch<R>(f: impl FnOnce(&mut ConvScratch) -> R) -> R {
    CONV_SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut ConvScratch::default()),
    })
}

/// The first `n` values of a buffer, grown when needed (contents unspecified).
fn sized(buffer: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buffer.len() < n {
        buffer.resize(n, 0.0);
    }
    &mut buffer[..n]
}

/// 2-D convolution of NCHW images x [b, c, h, w] with w [o, c, kh, kw] and bias [o] (candle's
/// `conv2d` layout, groups 1, dilation 1), as im2col + GEMM with its own backward. The bias may
/// also be [b, o], one per image and channel (a conditioning shift folded into the
/// convolution's starting value).
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    if stock_ops() {
        let shape = match bias.dims() {
            &[c] => (1, c, 1, 1),
            &[b, c] => (b, c, 1, 1),
            other => bail!("conv2d: bias {other:?}"),
        };
        return x
            .conv2d(weight, padding, stride, 1, 1)?
            .broadcast_add(&bias.reshape(shape)?);
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        Conv2dOp { stride, padding },
    )
}

/// Per (image, group) mean and 1/sqrt(var + eps).
struct GroupStats {
    mean: Vec<f32>,
    rstd: Vec<f32>,
}

struct GroupNormOp {
    groups: usize,
    eps: f32,
    silu: bool,
    stats: Mutex<GroupStats>,
}

impl GroupNormOp {
    /// (batch, channels, pixels) of an NCHW (or [b, c, ...]) shape, checked against the groups.
    fn dims(&self, dims: &[usize]) -> Result<(usize, usize, usize)> {
        let (batch, channels) = match dims {
            [b, c, ..] => (*b, *c),
            _ => bail!("fused group norm: input {dims:?} needs a channel axis"),
        };
        if self.groups == 0 || !channels.is_multiple_of(self.groups) || dims[2..].contains(&0) {
            bail!(
                "fused group norm: {channels} channels in {} groups",
                self.groups
            );
        }
        Ok((batch, channels, dims[2..].iter().product()))
    }
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "fused-group-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, channels, pixels) = self.dims(xl.dims())?;
        if gl.shape().elem_count() != channels || bl.shape().elem_count() != channels {
            bail!(
                "fused group norm: gamma {:?}, beta {:?} for {channels} channels",
                gl.dims(),
                bl.dims()
            );
        }
        let (x, gamma, beta) = (slice_of(xs, xl)?, slice_of(gs, gl)?, slice_of(bs, bl)?);
        let per_group = channels / self.groups * pixels;
        let mut out = vec![0f32; x.len()];
        let mut mean = vec![0f32; batch * self.groups];
        let mut rstd = vec![0f32; batch * self.groups];
        out.par_chunks_mut(per_group.max(1))
            .zip(x.par_chunks(per_group.max(1)))
            .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
            .enumerate()
            .for_each(|(i, ((out, x), (mean, rstd)))| {
                let (m, var) = mean_and_variance(x);
                *mean = m;
                *rstd = (1.0 / (var as f64 + self.eps as f64).sqrt()) as f32;
                let first_channel = (i % self.groups) * (channels / self.groups);
                for (k, (o, v)) in out.chunks_mut(pixels).zip(x.chunks(pixels)).enumerate() {
                    let c = first_channel + k;
                    let scale = gamma[c] * *rstd;
                    let shift = beta[c] - *mean * scale;
                    normalise_row(o, v, scale, shift, self.silu);
                }
            });
        *lock(&self.stats) = GroupStats { mean, rstd };
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, channels, pixels) = self.dims(x.dims())?;
        let per_channel_group = channels / self.groups;
        let per_group = per_channel_group * pixels;
        let (xv, gammav, betav, dy) = (values(x)?, values(gamma)?, values(beta)?, values(grad)?);
        let stats = lock(&self.stats);
        if stats.mean.len() != batch * self.groups {
            bail!("fused group norm: backward without its forward pass");
        }
        let mut dx = vec![0f32; xv.len()];
        // Per-group partial dgamma, dbeta: [batch * groups][channels per group].
        let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut(per_group.max(1))
            .zip(
                xv.par_chunks(per_group.max(1))
                    .zip(dy.par_chunks(per_group.max(1))),
            )
            .enumerate()
            .map(|(i, (dx, (x, dy)))| {
                let (mean, rstd) = (stats.mean[i], stats.rstd[i]);
                let first_channel = (i % self.groups) * per_channel_group;
                let mut dgamma = vec![0f32; per_channel_group];
                let mut dbeta = vec![0f32; per_channel_group];
                // dn = dL/d(normalised x) = dy' gamma (dy' through SiLU when fused); its group
                // sums follow from the per-channel ones: sum dn = sum_c gamma_c dbeta_c, and
                // sum dn xhat = sum_c gamma_c dgamma_c.
                let (mut sum_dn, mut sum_dn_xhat) = (0f64, 0f64);
                for (k, (dx, (x, dy))) in dx
                    .chunks_mut(pixels)
                    .zip(x.chunks(pixels).zip(dy.chunks(pixels)))
                    .enumerate()
                {
                    let c = first_channel + k;
                    let channel = GroupNormChannel {
                        mean,
                        rstd,
                        gamma: gammav[c],
                        beta: betav[c],
                        silu: self.silu,
                    };
                    let (dg, dbt) = group_norm_channel_backward(dx, x, dy, channel);
                    dgamma[k] = dg;
                    dbeta[k] = dbt;
                    sum_dn += (gammav[c] * dbt) as f64;
                    sum_dn_xhat += (gammav[c] * dg) as f64;
                }
                let n = x.len() as f64;
                let means = ((sum_dn / n) as f32, (sum_dn_xhat / n) as f32, mean, rstd);
                group_norm_finish_backward(dx, x, means);
                (dgamma, dbeta)
            })
            .collect();
        let mut dgamma = vec![0f32; channels];
        let mut dbeta = vec![0f32; channels];
        for (i, (dg, db)) in partials.iter().enumerate() {
            let first_channel = (i % self.groups) * per_channel_group;
            add_assign(
                &mut dgamma[first_channel..first_channel + per_channel_group],
                dg,
            );
            add_assign(
                &mut dbeta[first_channel..first_channel + per_channel_group],
                db,
            );
        }
        let dx = if x.track_op() {
            Some(Tensor::from_vec(dx, x.shape(), x.device())?)
        } else {
            None
        };
        Ok((
            dx,
            Some(Tensor::from_vec(dgamma, gamma.shape(), gamma.device())?),
            Some(Tensor::from_vec(dbeta, beta.shape(), beta.device())?),
        ))
    }
}

/// One channel's constants in the group-norm backward.
#[derive(Clone, Copy)]
struct GroupNormChannel {
    mean: f32,
    rstd: f32,
    gamma: f32,
    beta: f32,
    silu: bool,
}

/// Lanes of the reductions below: LLVM keeps a float sum sequential (no reassociation), so the
/// kernels sum into LANES independent accumulators, which it vectorises.
const LANES: usize = 16;

simd_kernel! {
    /// The sum of the values.
    fn lane_sum(x: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        let chunks = x.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().sum();
        for c in chunks {
            for l in 0..LANES {
                acc[l] += c[l];
            }
        }
        acc.iter().sum::<f32>() + tail
    }
}

simd_kernel! {
    /// Mean and (biased) variance, two passes.
    fn mean_and_variance(x: &[f32]) -> (f32, f32) {
        let n = x.len().max(1) as f32;
        let mean = lane_sum(x) / n;
        let mut acc = [0f32; LANES];
        let chunks = x.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
        for c in chunks {
            for l in 0..LANES {
                acc[l] += (c[l] - mean) * (c[l] - mean);
            }
        }
        (mean, (acc.iter().sum::<f32>() + tail) / n)
    }
}

/// dy' (through SiLU when fused) and xhat of one value of a group-norm channel.
#[inline(always)]
fn group_norm_slope(x: f32, dy: f32, k: &GroupNormChannel) -> (f32, f32) {
    let xhat = (x - k.mean) * k.rstd;
    if !k.silu {
        return (dy, xhat);
    }
    let y = xhat * k.gamma + k.beta;
    let s = sigmoid(y);
    (dy * s * (1.0 + y * (1.0 - s)), xhat)
}

simd_kernel! {
    /// dn = gamma dy' into dx (dy' = dy silu'(y) when fused); returns (sum dy' xhat, sum dy').
    fn group_norm_channel_backward(dx: &mut [f32], x: &[f32], dy: &[f32], k: GroupNormChannel) -> (f32, f32) {
        let (mut acc_g, mut acc_b) = ([0f32; LANES], [0f32; LANES]);
        let (mut tail_g, mut tail_b) = (0f32, 0f32);
        let full = x.len() / LANES * LANES;
        for ((dx, x), dy) in dx[..full]
            .chunks_exact_mut(LANES)
            .zip(x[..full].chunks_exact(LANES))
            .zip(dy[..full].chunks_exact(LANES))
        {
            for l in 0..LANES {
                let (d, xhat) = group_norm_slope(x[l], dy[l], &k);
                acc_g[l] += d * xhat;
                acc_b[l] += d;
                dx[l] = d * k.gamma;
            }
        }
        for ((dx, &x), &dy) in dx[full..].iter_mut().zip(&x[full..]).zip(&dy[full..]) {
            let (d, xhat) = group_norm_slope(x, dy, &k);
            tail_g += d * xhat;
            tail_b += d;
            *dx = d * k.gamma;
        }
        (acc_g.iter().sum::<f32>() + tail_g, acc_b.iter().sum::<f32>() + tail_b)
    }
}

simd_kernel! {
    /// dx = rstd (dn - mean(dn) - xhat mean(dn xhat)), dn read from dx.
    fn group_norm_finish_backward(dx: &mut [f32], x: &[f32], means: (f32, f32, f32, f32)) {
        let (mean_dn, mean_dn_xhat, mean, rstd) = means;
        for (dx, &x) in dx.iter_mut().zip(x) {
            let xhat = (x - mean) * rstd;
            *dx = rstd * (*dx - mean_dn - xhat * mean_dn_xhat);
        }
    }
}

simd_kernel! {
    /// out = v scale + shift, then SiLU when asked.
    fn normalise_row_kernel(out: &mut [f32], v: &[f32], scale_shift_silu: (f32, f32, bool)) {
        let (scale, shift, silu) = scale_shift_silu;
        for (o, &v) in out.iter_mut().zip(v) {
            let y = v * scale + shift;
            *o = if silu { y * sigmoid(y) } else { y };
        }
    }
}

fn normalise_row(out: &mut [f32], v: &[f32], scale: f32, shift: f32, silu: bool) {
    normalise_row_kernel(out, v, (scale, shift, silu))
}

/// Group normalisation (Wu & He 2018, eq. 1: per image and group of channels, zero mean and unit
/// variance, then gamma, beta per channel) of x [b, c, ...], followed by SiLU when `silu`; one
/// op with its own backward. candle-nn's `GroupNorm` computes the same (biased variance, eps
/// inside the square root).
pub fn group_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    eps: f64,
    silu: bool,
) -> Result<Tensor> {
    if stock_ops() {
        let channels = gamma.elem_count();
        let y = candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), channels, groups, eps)?
            .forward(x)?;
        return if silu { y.silu() } else { Ok(y) };
    }
    let op = GroupNormOp {
        groups,
        eps: eps as f32,
        silu,
        stats: Mutex::new(GroupStats {
            mean: Vec::new(),
            rstd: Vec::new(),
        }),
    };
    x.contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)
}

/// A group-norm layer that runs [`group_norm`]: the same parameters under the same names as
/// `candle_nn::group_norm` ("weight" = gamma, ones; "bias" = beta, zeros), so checkpoints of
/// either load into the other; `forward_silu` fuses the SiLU that follows it in a UNet block.
#[derive(Clone, Debug)]
pub struct FusedGroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl FusedGroupNorm {
    pub fn new(
        groups: usize,
        channels: usize,
        eps: f64,
        vb: candle_nn::VarBuilder,
    ) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            bail!("group norm: {channels} channels in {groups} groups");
        }
        Ok(FusedGroupNorm {
            weight: vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.0))?,
            groups,
            eps,
        })
    }

    /// silu(group_norm(x)).
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        group_norm(x, &self.weight, &self.bias, self.groups, self.eps, true)
    }
}

impl candle_core::Module for FusedGroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        group_norm(x, &self.weight, &self.bias, self.groups, self.eps, false)
    }
}

/// The scalars of one AdamW step (Loshchilov & Hutter 2019, Alg. 2, in candle-nn's order of
/// operations): bias corrections 1 / (1 - beta^t), decoupled decay factor 1 - lr wd.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub lr: f64,
    pub weight_decay: f64,
    /// The 1-based step number t.
    pub t: i32,
}

/// m <- beta m + (1 - beta) g, or with g^2 when `square`.
struct MomentUpdate {
    beta: f32,
    square: bool,
}

simd_kernel! {
    fn moment_kernel(m: &mut [f32], g: &[f32], beta_square: (f32, bool)) {
        let (beta, square) = beta_square;
        for (m, &g) in m.iter_mut().zip(g) {
            let g = if square { g * g } else { g };
            *m = *m * beta + g * (1.0 - beta);
        }
    }
}

/// The contiguous f32 values of a storage that an in-place op writes.
fn slice_of_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> Result<&'a mut [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("fused op: the updated tensor must be contiguous");
    };
    match storage {
        CpuStorage::F32(values) => Ok(&mut values[start..end]),
        _ => bail!("fused op: f32 tensors only"),
    }
}

impl InplaceOp2 for MomentUpdate {
    fn name(&self) -> &'static str {
        "fused-adamw-moment"
    }

    fn cpu_fwd(
        &self,
        ms: &mut CpuStorage,
        ml: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<()> {
        let m = slice_of_mut(ms, ml)?;
        let g = slice_of(gs, gl)?;
        if g.len() != m.len() {
            bail!(
                "fused adamw: gradient of {} values for {}",
                g.len(),
                m.len()
            );
        }
        let arg = (self.beta, self.square);
        par_zip_ref_with(m, g, arg, moment_kernel);
        Ok(())
    }
}

/// theta <- theta (1 - lr wd) - lr (m scale_m) / (sqrt(v scale_v) + eps).
struct ParameterUpdate {
    decay: f32,
    lr: f32,
    scale_m: f32,
    scale_v: f32,
    eps: f32,
}

simd_kernel! {
    fn parameter_kernel(theta: &mut [f32], m: &[f32], v: &[f32], k: (f32, f32, f32, f32, f32)) {
        let (decay, lr, scale_m, scale_v, eps) = k;
        for ((t, &m), &v) in theta.iter_mut().zip(m).zip(v) {
            let step = (m * scale_m) / ((v * scale_v).sqrt() + eps);
            *t = *t * decay - step * lr;
        }
    }
}

impl InplaceOp3 for ParameterUpdate {
    fn name(&self) -> &'static str {
        "fused-adamw-parameter"
    }

    fn cpu_fwd(
        &self,
        ts: &mut CpuStorage,
        tl: &Layout,
        ms: &CpuStorage,
        ml: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<()> {
        let theta = slice_of_mut(ts, tl)?;
        let (m, v) = (slice_of(ms, ml)?, slice_of(vs, vl)?);
        if m.len() != theta.len() || v.len() != theta.len() {
            bail!(
                "fused adamw: moments of {} and {} values for {}",
                m.len(),
                v.len(),
                theta.len()
            );
        }
        let k = (self.decay, self.lr, self.scale_m, self.scale_v, self.eps);
        if theta.len() < PARALLEL_MIN {
            parameter_kernel(theta, m, v, k);
        } else {
            let chunk = theta.len().div_ceil(rayon::current_num_threads()).max(4096);
            theta
                .par_chunks_mut(chunk)
                .zip(m.par_chunks(chunk).zip(v.par_chunks(chunk)))
                .for_each(|(t, (m, v))| parameter_kernel(t, m, v, k));
        }
        Ok(())
    }
}

/// One AdamW step of one parameter, every tensor updated in place (three passes, no
/// allocation): the moments `first` and `second` from `grad`, then `theta`. The same arithmetic
/// as candle-nn's `AdamW`. The four tensors must not share storage.
pub fn adamw_update(
    theta: &Tensor,
    grad: &Tensor,
    first: &Tensor,
    second: &Tensor,
    step: AdamWStep,
) -> Result<()> {
    let grad = grad.contiguous()?;
    first.inplace_op2(
        &grad,
        &MomentUpdate {
            beta: step.beta1 as f32,
            square: false,
        },
    )?;
    second.inplace_op2(
        &grad,
        &MomentUpdate {
            beta: step.beta2 as f32,
            square: true,
        },
    )?;
    theta.inplace_op3(
        first,
        second,
        &ParameterUpdate {
            decay: (1.0 - step.lr * step.weight_decay) as f32,
            lr: step.lr as f32,
            scale_m: (1.0 / (1.0 - step.beta1.powi(step.t))) as f32,
            scale_v: (1.0 / (1.0 - step.beta2.powi(step.t))) as f32,
            eps: step.eps as f32,
        },
    )
}

/// candle-nn's `AdamW` as a drop-in `Optimizer`, each step done by [`adamw_update`].
pub struct FusedAdamW {
    vars: Vec<Var>,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    params: candle_nn::ParamsAdamW,
    step_t: i32,
}

impl candle_nn::Optimizer for FusedAdamW {
    type Config = candle_nn::ParamsAdamW;

    fn new(vars: Vec<Var>, params: candle_nn::ParamsAdamW) -> Result<Self> {
        let vars: Vec<Var> = vars.into_iter().filter(|v| v.dtype().is_float()).collect();
        for v in &vars {
            if v.dtype() != candle_core::DType::F32 || !v.device().is_cpu() {
                bail!("fused adamw: f32 CPU parameters only, got {:?}", v.dtype());
            }
        }
        // zeros_like per moment: two distinct buffers (the updates are in place).
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(FusedAdamW {
            first_moments: vars.iter().map(zeros).collect::<Result<_>>()?,
            second_moments: vars.iter().map(zeros).collect::<Result<_>>()?,
            vars,
            params,
            step_t: 0,
        })
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_t += 1;
        let p = &self.params;
        let step = AdamWStep {
            beta1: p.beta1,
            beta2: p.beta2,
            eps: p.eps,
            lr: p.lr,
            weight_decay: p.weight_decay,
            t: self.step_t,
        };
        for ((var, m), v) in self
            .vars
            .iter()
            .zip(&self.first_moments)
            .zip(&self.second_moments)
        {
            if let Some(g) = grads.get(var) {
                adamw_update(var.as_tensor(), g, m, v, step)?;
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr
    }
}

struct EmaLerp {
    /// 1 - beta, kept apart from beta so that it keeps its digits when beta is close to 1.
    rate: f32,
}

simd_kernel! {
    /// ema <- ema + rate (p - ema).
    fn ema_kernel(ema: &mut [f32], p: &[f32], rate: f32) {
        for (e, &p) in ema.iter_mut().zip(p) {
            *e += rate * (p - *e);
        }
    }
}

impl InplaceOp2 for EmaLerp {
    fn name(&self) -> &'static str {
        "fused-ema"
    }

    fn cpu_fwd(
        &self,
        es: &mut CpuStorage,
        el: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<()> {
        let ema = slice_of_mut(es, el)?;
        let p = slice_of(ps, pl)?;
        if p.len() != ema.len() {
            bail!("fused ema: {} values for {}", p.len(), ema.len());
        }
        par_zip_ref_with(ema, p, self.rate, ema_kernel);
        Ok(())
    }
}

/// ema <- ema + (1 - beta) (param - ema), in place: EDM's EMA of the weights (Karras et al. 2022,
/// appendix; beta = 0.5^(batch / half_life)), given `one_minus_beta`. `ema` must not share
/// storage with `param`.
pub fn ema_update(ema: &Tensor, param: &Tensor, one_minus_beta: f64) -> Result<()> {
    ema.inplace_op2(
        &param.contiguous()?,
        &EmaLerp {
            rate: one_minus_beta as f32,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::noise::Rng;
    use candle_core::{Device, Module};
    use candle_nn::Optimizer;

    fn randn(rng: &mut Rng, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
    }

    fn var(rng: &mut Rng, shape: &[usize]) -> Var {
        Var::from_tensor(&randn(rng, shape)).expect("var")
    }

    /// Largest |a - b| relative to the largest |b| (1 when b is all zeros).
    fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims(), "shapes differ");
        let a = values(a).expect("a");
        let b = values(b).expect("b");
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// sum(out * probe): a scalar whose gradient w.r.t. out is the random probe.
    fn probe_loss(out: &Tensor, probe: &Tensor) -> Tensor {
        (out * probe).expect("mul").sum_all().expect("sum")
    }

    fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
        let e = rel_err(a, b);
        assert!(e < tol, "{what}: relative error {e:e} >= {tol:e}");
    }

    fn assert_grads_close(what: &str, vars: &[&Var], fused: &GradStore, stock: &GradStore) {
        for (i, v) in vars.iter().enumerate() {
            let f = fused
                .get(v)
                .unwrap_or_else(|| panic!("{what}: no fused grad for arg {i}"));
            let s = stock
                .get(v)
                .unwrap_or_else(|| panic!("{what}: no stock grad for arg {i}"));
            assert_close(&format!("{what} grad {i}"), f, s, 2e-5);
        }
    }

    #[test]
    fn linear_matches_candle_nn_linear_with_and_without_silu() {
        let mut rng = Rng::new(1);
        for &(batch, fan_in, fan_out) in &[(7, 5, 3), (1, 1, 1), (33, 66, 17), (512, 64, 256)] {
            for activation in [Activation::Identity, Activation::Silu] {
                let (x, w, b) = (
                    var(&mut rng, &[batch, fan_in]),
                    var(&mut rng, &[fan_out, fan_in]),
                    var(&mut rng, &[fan_out]),
                );
                let probe = randn(&mut rng, &[batch, fan_out]);
                let fused = linear(&x, &w, &b, activation).expect("fused");
                let layer =
                    candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
                let mut stock = layer.forward(&x).expect("stock");
                if activation == Activation::Silu {
                    stock = stock.silu().expect("silu");
                }
                let what = format!("linear {batch}x{fan_in}->{fan_out} {activation:?}");
                assert_close(&what, &fused, &stock, 1e-5);
                let gf = probe_loss(&fused, &probe)
                    .backward()
                    .expect("fused backward");
                let gs = probe_loss(&stock, &probe)
                    .backward()
                    .expect("stock backward");
                assert_grads_close(&what, &[&x, &w, &b], &gf, &gs);
            }
        }
    }

    #[test]
    fn linear_skips_the_gradient_of_plain_data_and_rejects_bad_shapes() {
        let mut rng = Rng::new(2);
        let x = randn(&mut rng, &[4, 3]);
        let (w, b) = (var(&mut rng, &[2, 3]), var(&mut rng, &[2]));
        let out = linear(&x, &w, &b, Activation::Silu).expect("fused");
        let grads = out.sum_all().expect("sum").backward().expect("backward");
        assert!(grads.get(&x).is_none());
        assert!(grads.get(&w).is_some() && grads.get(&b).is_some());
        let wrong = var(&mut rng, &[2, 4]);
        assert!(linear(&x, &wrong, &b, Activation::Identity).is_err());
    }

    #[test]
    fn silu_matches_candle_silu_including_large_arguments() {
        let mut rng = Rng::new(3);
        let x = Var::from_tensor(&(randn(&mut rng, &[5, 37]) * 30.0).expect("scale")).expect("var");
        let probe = randn(&mut rng, &[5, 37]);
        let fused = silu(&x).expect("fused");
        let stock = x.silu().expect("stock");
        assert_close("silu", &fused, &stock, 1e-6);
        let gf = probe_loss(&fused, &probe)
            .backward()
            .expect("fused backward");
        let gs = probe_loss(&stock, &probe)
            .backward()
            .expect("stock backward");
        assert_grads_close("silu", &[&x], &gf, &gs);
    }

    #[test]
    fn weighted_mse_matches_the_stock_expression() {
        let mut rng = Rng::new(4);
        for &(rows, width) in &[(9, 2), (1, 1), (256, 64)] {
            let (p, t) = (var(&mut rng, &[rows, width]), var(&mut rng, &[rows, width]));
            let w =
                Var::from_tensor(&randn(&mut rng, &[rows, 1]).abs().expect("abs")).expect("var");
            let fused = weighted_mse(&p, &t, &w).expect("fused");
            let stock = (p
                .sub(&t)
                .expect("sub")
                .sqr()
                .expect("sqr")
                .broadcast_mul(&w))
            .expect("mul")
            .mean_all()
            .expect("mean");
            assert_close("weighted mse", &fused, &stock, 1e-5);
            let gf = fused.backward().expect("fused backward");
            let gs = stock.backward().expect("stock backward");
            assert_grads_close("weighted mse", &[&p, &t, &w], &gf, &gs);
        }
    }

    #[test]
    fn conv2d_matches_candle_conv2d_over_strides_paddings_and_odd_shapes() {
        let mut rng = Rng::new(5);
        // (batch, c_in, h, w, c_out, kh, kw, stride, padding)
        let cases = [
            (3, 5, 7, 6, 4, 3, 3, 1, 1),
            (2, 3, 8, 8, 6, 3, 3, 2, 1),
            (3, 4, 5, 5, 2, 1, 1, 1, 0),
            (2, 3, 8, 5, 5, 2, 3, 2, 0),
            (1, 1, 1, 1, 1, 1, 1, 1, 0),
            (20, 8, 8, 8, 16, 3, 3, 1, 1),
            // Same-size taps as plane shifts: 5x5 with padding 2, tiny and one-pixel-wide
            // planes (the stride-2 cases above go through the tap-table gather).
            (2, 3, 7, 6, 4, 5, 5, 1, 2),
            (2, 2, 2, 3, 3, 3, 3, 1, 1),
            (2, 2, 4, 1, 3, 3, 3, 1, 1),
        ];
        for &(batch, c_in, h, wd, c_out, kh, kw, stride, padding) in &cases {
            let x = var(&mut rng, &[batch, c_in, h, wd]);
            let w = var(&mut rng, &[c_out, c_in, kh, kw]);
            let b = var(&mut rng, &[c_out]);
            let fused = conv2d(&x, &w, &b, stride, padding).expect("fused");
            let stock = x
                .conv2d(&w, padding, stride, 1, 1)
                .expect("conv")
                .broadcast_add(&b.reshape((1, c_out, 1, 1)).expect("reshape"))
                .expect("add");
            let what = format!(
                "conv2d {:?}",
                (batch, c_in, h, wd, c_out, kh, kw, stride, padding)
            );
            assert_close(&what, &fused, &stock, 1e-5);
            let probe = randn(&mut rng, stock.dims());
            let gf = probe_loss(&fused, &probe)
                .backward()
                .expect("fused backward");
            let gs = probe_loss(&stock, &probe)
                .backward()
                .expect("stock backward");
            assert_grads_close(&what, &[&x, &w, &b], &gf, &gs);
        }
        // A bias per image and channel, [batch, c_out] (tasks of several images: batch 20).
        for &(batch, c_in, h, wd, c_out, stride, padding) in
            &[(20, 3, 8, 8, 5, 1, 1), (3, 2, 8, 8, 3, 2, 1)]
        {
            let x = var(&mut rng, &[batch, c_in, h, wd]);
            let w = var(&mut rng, &[c_out, c_in, 3, 3]);
            let b = var(&mut rng, &[batch, c_out]);
            let fused = conv2d(&x, &w, &b, stride, padding).expect("fused");
            let stock = x
                .conv2d(&w, padding, stride, 1, 1)
                .expect("conv")
                .broadcast_add(&b.reshape((batch, c_out, 1, 1)).expect("reshape"))
                .expect("add");
            let what = format!("conv2d, bias per image, batch {batch}, stride {stride}");
            assert_close(&what, &fused, &stock, 1e-5);
            let probe = randn(&mut rng, stock.dims());
            let gf = probe_loss(&fused, &probe).backward().expect("fused");
            let gs = probe_loss(&stock, &probe).backward().expect("stock");
            assert_grads_close(&what, &[&x, &w, &b], &gf, &gs);
        }
        let x = var(&mut rng, &[1, 2, 3, 3]);
        let (w, b) = (var(&mut rng, &[1, 3, 3, 3]), var(&mut rng, &[1]));
        assert!(
            conv2d(&x, &w, &b, 1, 1).is_err(),
            "channel mismatch must be an error"
        );
        let (w, b2) = (var(&mut rng, &[1, 2, 3, 3]), var(&mut rng, &[2, 1]));
        assert!(
            conv2d(&x, &w, &b2, 1, 1).is_err(),
            "a bias for 2 images on 1 must be an error"
        );
        let w = var(&mut rng, &[1, 2, 5, 5]);
        assert!(
            conv2d(&x, &w, &b, 1, 0).is_err(),
            "kernel larger than the input"
        );
    }

    #[test]
    fn group_norm_matches_candle_nn_group_norm_with_and_without_silu() {
        let mut rng = Rng::new(6);
        for &(batch, channels, h, w, groups) in
            &[(3, 8, 5, 7, 4), (2, 12, 1, 1, 3), (4, 32, 8, 8, 8)]
        {
            for fuse_silu in [false, true] {
                let x = Var::from_tensor(
                    &randn(&mut rng, &[batch, channels, h, w])
                        .affine(3.0, 1.5)
                        .expect("affine"),
                )
                .expect("var");
                let gamma = var(&mut rng, &[channels]);
                let beta = var(&mut rng, &[channels]);
                let fused = group_norm(&x, &gamma, &beta, groups, 1e-5, fuse_silu).expect("fused");
                let layer = candle_nn::GroupNorm::new(
                    gamma.as_tensor().clone(),
                    beta.as_tensor().clone(),
                    channels,
                    groups,
                    1e-5,
                )
                .expect("group norm");
                let mut stock = layer.forward(&x).expect("stock");
                if fuse_silu {
                    stock = stock.silu().expect("silu");
                }
                let what = format!(
                    "group norm {:?} silu {fuse_silu}",
                    (batch, channels, h, w, groups)
                );
                assert_close(&what, &fused, &stock, 1e-5);
                let probe = randn(&mut rng, stock.dims());
                let gf = probe_loss(&fused, &probe)
                    .backward()
                    .expect("fused backward");
                let gs = probe_loss(&stock, &probe)
                    .backward()
                    .expect("stock backward");
                assert_grads_close(&what, &[&x, &gamma, &beta], &gf, &gs);
            }
        }
        let x = var(&mut rng, &[2, 6, 2, 2]);
        let (g, b) = (var(&mut rng, &[6]), var(&mut rng, &[6]));
        assert!(
            group_norm(&x, &g, &b, 4, 1e-5, false).is_err(),
            "6 channels in 4 groups"
        );
    }

    #[test]
    fn fused_group_norm_layer_shares_candle_nn_parameter_names() {
        let mut rng = Rng::new(9);
        let map = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&map, candle_core::DType::F32, &Device::Cpu);
        let fused = FusedGroupNorm::new(4, 8, 1e-5, vb.pp("norm")).expect("fused");
        // The stock layer built from the same builder reuses the same two variables.
        let stock = candle_nn::group_norm(4, 8, 1e-5, vb.pp("norm")).expect("stock");
        assert_eq!(map.all_vars().len(), 2);
        for var in map.all_vars() {
            var.set(&randn(&mut rng, &[8])).expect("set");
        }
        let x = randn(&mut rng, &[3, 8, 2, 5]);
        assert_close(
            "layer",
            &fused.forward(&x).expect("f"),
            &stock.forward(&x).expect("s"),
            1e-5,
        );
        let stock_silu = stock.forward(&x).expect("s").silu().expect("silu");
        assert_close(
            "layer silu",
            &fused.forward_silu(&x).expect("f"),
            &stock_silu,
            1e-5,
        );
        assert!(FusedGroupNorm::new(3, 8, 1e-5, vb.pp("bad")).is_err());
    }

    #[test]
    fn fused_adamw_follows_candle_nn_adamw_step_for_step() {
        let mut rng = Rng::new(7);
        let shapes: [&[usize]; 3] = [&[3, 5], &[17], &[200, 130]];
        let start: Vec<Tensor> = shapes.iter().map(|s| randn(&mut rng, s)).collect();
        let copy = |ts: &[Tensor]| -> Vec<Var> {
            ts.iter()
                .map(|t| Var::from_tensor(&t.copy().expect("copy")).expect("var"))
                .collect()
        };
        let (fused_vars, stock_vars) = (copy(&start), copy(&start));
        let params = candle_nn::ParamsAdamW {
            lr: 3e-3,
            weight_decay: 0.01,
            ..Default::default()
        };
        let mut fused = FusedAdamW::new(fused_vars.clone(), params.clone()).expect("fused");
        let mut stock = candle_nn::AdamW::new(stock_vars.clone(), params).expect("stock");
        for step in 0..4 {
            // The same quadratic loss on both sets, with a step-dependent target.
            let loss = |vars: &[Var]| -> Tensor {
                vars.iter()
                    .map(|v| {
                        let target =
                            (v.as_tensor().ones_like().expect("ones") * step as f64).expect("t");
                        (v.as_tensor() - target)
                            .expect("d")
                            .sqr()
                            .expect("sq")
                            .sum_all()
                            .expect("s")
                    })
                    .reduce(|a, b| (a + b).expect("add"))
                    .expect("loss")
            };
            fused.backward_step(&loss(&fused_vars)).expect("fused step");
            stock.backward_step(&loss(&stock_vars)).expect("stock step");
            for (f, s) in fused_vars.iter().zip(&stock_vars) {
                assert_close(
                    &format!("adamw step {step}"),
                    f.as_tensor(),
                    s.as_tensor(),
                    1e-6,
                );
            }
        }
        assert!(
            rel_err(fused_vars[2].as_tensor(), &start[2]) > 1e-3,
            "the parameters moved"
        );
    }

    #[test]
    fn ema_update_is_the_lerp_and_leaves_the_source_alone() {
        let mut rng = Rng::new(8);
        let (ema, p) = (randn(&mut rng, &[40_000]), randn(&mut rng, &[40_000]));
        let expected = ((&ema * 0.9).expect("a") + (&p * 0.1).expect("b")).expect("c");
        let p_before = p.copy().expect("copy");
        ema_update(&ema, &p, 0.1).expect("ema");
        assert_close("ema", &ema, &expected, 1e-6);
        assert_close("ema source", &p, &p_before, 0.0 + f32::MIN_POSITIVE);
        assert!(ema_update(&ema, &randn(&mut rng, &[3]), 0.1).is_err());
    }
}
