//! A whole stack of dense layers (Linear, optionally + SiLU) as ONE candle op, forward and
//! backward, on the CPU: the mlp's hot path.
//!
//! Per-layer ops cost candle's graph bookkeeping on every gradient (a zero tensor and an add per
//! argument, a fresh buffer per activation) and a thread hand-off per GEMM. Here the batch is cut
//! into one block of rows per thread and each thread runs its rows through every layer with
//! single-threaded GEMMs (no synchronisation between layers), forward and backward; only the
//! weight gradients, which sum over all rows, are split by output rows instead. Activations and
//! slopes live in recycled buffers.
//!
//! The op is recorded as `CustomOp2(input, first weight)`, so candle tracks it whenever the
//! weights are variables; the gradients of the other weights and biases are handed to
//! [`ops::backward`] on the side (candle's custom ops take at most three arguments).

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::ops::{
    self, Activation, View, add_column_range, gemm, scale_by, silu_with_slope, slice_of,
    with_values,
};

/// Rows below which the batch is not split between threads.
const SPLIT_MIN_ROWS: usize = 32;

/// One layer of the stack: act(x W^T + b), W [out, in] and b [out] as candle-nn lays them out.
#[derive(Clone)]
pub struct DenseLayer {
    pub weight: Tensor,
    pub bias: Tensor,
    pub activation: Activation,
}

impl DenseLayer {
    fn fan_out(&self) -> usize {
        self.bias.elem_count()
    }
}

/// Buffers handed back by finished ops, reused by the next ones (no allocation, no zeroing).
static BUFFERS: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A buffer of `len` values (contents unspecified: every caller overwrites it).
fn take_buffer(len: usize) -> Vec<f32> {
    let recycled = {
        let mut pool = ops::lock(&BUFFERS);
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        best.map(|i| pool.swap_remove(i))
    };
    let mut buffer = recycled.unwrap_or_default();
    buffer.resize(len, 0.0);
    buffer.truncate(len);
    buffer
}

/// At most this many buffers are kept (the mlp needs about 3 per layer).
const POOL_MAX: usize = 64;

fn give_back(buffers: impl IntoIterator<Item = Vec<f32>>) {
    let mut pool = ops::lock(&BUFFERS);
    for b in buffers {
        if pool.len() < POOL_MAX && b.capacity() > 0 {
            pool.push(b);
        }
    }
}

/// What the forward pass keeps for the backward pass.
#[derive(Default)]
struct Saved {
    /// Each hidden layer's output (the next layer's input), [batch, out_k].
    hidden: Vec<Vec<f32>>,
    /// SiLU's slope at each SiLU layer's pre-activation (empty for identity layers).
    slopes: Vec<Vec<f32>>,
}

struct MlpOp {
    layers: Vec<DenseLayer>,
    saved: Mutex<Saved>,
}

impl Drop for MlpOp {
    fn drop(&mut self) {
        let saved = std::mem::take(&mut *ops::lock(&self.saved));
        give_back(saved.hidden.into_iter().chain(saved.slopes));
    }
}

/// The row blocks a batch is cut into: (first row, rows).
fn row_blocks(batch: usize) -> Vec<(usize, usize)> {
    let parts = if batch < SPLIT_MIN_ROWS {
        1
    } else {
        rayon::current_num_threads().max(1)
    };
    let per = batch.div_ceil(parts).max(1);
    (0..batch)
        .step_by(per)
        .map(|r| (r, per.min(batch - r)))
        .collect()
}

/// Mutable row blocks of a [batch, width] buffer, one per block of `blocks`.
fn split_rows<'a>(
    buffer: &'a mut [f32],
    width: usize,
    blocks: &[(usize, usize)],
) -> Vec<&'a mut [f32]> {
    let mut rest = buffer;
    let mut out = Vec::with_capacity(blocks.len());
    for &(_, rows) in blocks {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(rows * width);
        out.push(head);
        rest = tail;
    }
    out
}

/// Regroups per-buffer row blocks into per-block lists (block b gets every buffer's b-th block).
fn transpose_blocks(per_buffer: Vec<Vec<&mut [f32]>>, blocks: usize) -> Vec<Vec<&mut [f32]>> {
    let mut per_block: Vec<Vec<&mut [f32]>> = (0..blocks).map(|_| Vec::new()).collect();
    for buffer in per_buffer {
        for (b, part) in buffer.into_iter().enumerate() {
            per_block[b].push(part);
        }
    }
    per_block
}

impl MlpOp {
    fn check(&self, batch: usize, fan_in: usize) -> Result<()> {
        let mut width = fan_in;
        for (k, layer) in self.layers.iter().enumerate() {
            let (out, inp) = layer.weight.dims2()?;
            if inp != width || layer.bias.elem_count() != out {
                bail!(
                    "fused mlp: layer {k} has weight {:?} and bias {:?} for {width} inputs",
                    layer.weight.dims(),
                    layer.bias.dims()
                );
            }
            width = out;
        }
        if self.layers.is_empty() || batch == 0 {
            bail!("fused mlp: no layers or no rows");
        }
        Ok(())
    }

    /// Every layer's weight and bias values, in order (read locks held for the call).
    fn with_parameters<R>(&self, f: impl FnOnce(&[(&[f32], &[f32])]) -> Result<R>) -> Result<R> {
        let held: Vec<_> = self
            .layers
            .iter()
            .map(|l| (l.weight.storage_and_layout(), l.bias.storage_and_layout()))
            .collect();
        let params = held
            .iter()
            .map(|((ws, wl), (bs, bl))| Ok((ops::cpu_values(ws, wl)?, ops::cpu_values(bs, bl)?)))
            .collect::<Result<Vec<_>>>()?;
        f(&params)
    }
}

/// The forward pass of one row block through every layer: `parts` holds the block's rows of
/// every hidden output, then of every SiLU layer's slope.
fn forward_block(
    layers: &[DenseLayer],
    params: &[(&[f32], &[f32])],
    input: &[f32],
    fan_in: usize,
    mut parts: Vec<&mut [f32]>,
    output: &mut [f32],
) -> Result<()> {
    let slopes = parts.split_off(layers.len() - 1);
    let mut slopes = slopes.into_iter();
    let mut destinations = parts.into_iter().chain([output]);
    let rows = input.len() / fan_in.max(1);
    let mut x: &[f32] = input;
    let mut width = fan_in;
    for (layer, &(w, b)) in layers.iter().zip(params) {
        let out = layer.fan_out();
        let Some(dst) = destinations.next() else {
            bail!("fused mlp: a layer without an output buffer");
        };
        for row in dst.chunks_exact_mut(out) {
            row.copy_from_slice(b);
        }
        gemm(
            (rows, out, width),
            dst,
            true,
            View::row_major(x, width),
            View::transposed(w, width),
            1,
        )?;
        if layer.activation == Activation::Silu {
            match slopes.next() {
                Some(slope) => silu_with_slope(dst, slope),
                None => bail!("fused mlp: a SiLU layer without a slope buffer"),
            }
        }
        x = dst;
        width = out;
    }
    Ok(())
}

impl CustomOp2 for MlpOp {
    fn name(&self) -> &'static str {
        "fused-mlp"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        _ws: &CpuStorage,
        _wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, fan_in) = xl.shape().dims2()?;
        self.check(batch, fan_in)?;
        let x = slice_of(xs, xl)?;
        let last = self.layers.len() - 1;
        let mut saved = Saved::default();
        for layer in &self.layers[..last] {
            saved.hidden.push(take_buffer(batch * layer.fan_out()));
        }
        for layer in &self.layers {
            if layer.activation == Activation::Silu {
                saved.slopes.push(take_buffer(batch * layer.fan_out()));
            }
        }
        let out_width = self.layers[last].fan_out();
        let mut output = vec![0f32; batch * out_width];
        let blocks = row_blocks(batch);
        self.with_parameters(|params| {
            let widths = self.layers[..last].iter().map(DenseLayer::fan_out);
            let slope_widths = self
                .layers
                .iter()
                .filter(|l| l.activation == Activation::Silu)
                .map(DenseLayer::fan_out);
            let mut per_buffer = Vec::new();
            for (buffer, width) in saved.hidden.iter_mut().zip(widths) {
                per_buffer.push(split_rows(buffer, width, &blocks));
            }
            for (buffer, width) in saved.slopes.iter_mut().zip(slope_widths) {
                per_buffer.push(split_rows(buffer, width, &blocks));
            }
            let per_block = transpose_blocks(per_buffer, blocks.len());
            let outputs = split_rows(&mut output, out_width, &blocks);
            blocks
                .par_iter()
                .zip(per_block)
                .zip(outputs)
                .map(|((&(r0, rows), parts), out)| {
                    let input = &x[r0 * fan_in..(r0 + rows) * fan_in];
                    forward_block(&self.layers, params, input, fan_in, parts, out)
                })
                .collect::<Result<Vec<()>>>()
        })?;
        *ops::lock(&self.saved) = saved;
        Ok((CpuStorage::F32(output), Shape::from((batch, out_width))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (batch, fan_in) = x.dims2()?;
        let saved = ops::lock(&self.saved);
        let last = self.layers.len() - 1;
        if saved.hidden.len() != last {
            bail!("fused mlp: backward without its forward pass");
        }
        // Slopes by layer (None for identity layers).
        let mut slopes = saved.slopes.iter();
        let slope_of: Vec<Option<&[f32]>> = self
            .layers
            .iter()
            .map(|layer| match layer.activation {
                Activation::Silu => slopes.next().map(|s| &s[..]),
                Activation::Identity => None,
            })
            .collect();
        // dz_k = dL / d(pre-activation of layer k), [batch, out_k]; the output layer's first.
        let mut top = ops::values(grad)?;
        if let Some(slope) = slope_of[last] {
            scale_by(&mut top, slope);
        }
        let mut dz: Vec<Vec<f32>> = self.layers[..last]
            .iter()
            .map(|l| take_buffer(batch * l.fan_out()))
            .collect();
        let want_dx = x.track_op();
        let mut dx = if want_dx {
            vec![0f32; batch * fan_in]
        } else {
            Vec::new()
        };
        let blocks = row_blocks(batch);
        let grads = self.with_parameters(|params| {
            // 1. Row blocks in parallel: the chain dz_L -> dz_{L-1} -> ... -> dx.
            let mut per_buffer: Vec<Vec<&mut [f32]>> = Vec::new();
            for (buffer, layer) in dz.iter_mut().zip(&self.layers) {
                per_buffer.push(split_rows(buffer, layer.fan_out(), &blocks));
            }
            per_buffer.push(if want_dx {
                split_rows(&mut dx, fan_in, &blocks)
            } else {
                (0..blocks.len()).map(|_| <&mut [f32]>::default()).collect()
            });
            let per_block = transpose_blocks(per_buffer, blocks.len());
            let chain = Chain {
                layers: &self.layers,
                params,
                slope_of: &slope_of,
                fan_in,
            };
            let out_width = self.layers[last].fan_out();
            blocks
                .par_iter()
                .zip(per_block)
                .map(|(&block, parts)| {
                    let (r0, rows) = block;
                    chain.run(&top[r0 * out_width..(r0 + rows) * out_width], block, parts)
                })
                .collect::<Result<Vec<()>>>()?;
            // 2. Weight and bias gradients, split by output rows.
            with_values(x, |x| {
                weight_gradients(&self.layers, &saved.hidden, &dz, &top, x, fan_in)
            })
        })?;
        give_back(dz);
        let dx = if want_dx {
            Some(Tensor::from_vec(dx, (batch, fan_in), x.device())?)
        } else {
            None
        };
        let mut first_weight_grad = None;
        for (k, (layer, (dw, db))) in self.layers.iter().zip(grads).enumerate() {
            if !layer.weight.track_op() {
                continue;
            }
            let dw = Tensor::from_vec(dw, layer.weight.shape(), layer.weight.device())?;
            let db = Tensor::from_vec(db, layer.bias.shape(), layer.bias.device())?;
            if k == 0 {
                first_weight_grad = Some(dw);
            } else {
                ops::add_side_gradient(&layer.weight, dw);
            }
            ops::add_side_gradient(&layer.bias, db);
        }
        Ok((dx, first_weight_grad))
    }
}

/// The backward chain through every layer, for one row block at a time.
struct Chain<'a> {
    layers: &'a [DenseLayer],
    params: &'a [(&'a [f32], &'a [f32])],
    slope_of: &'a [Option<&'a [f32]>],
    fan_in: usize,
}

impl Chain<'_> {
    /// dz of every hidden layer (parts[k] for layer k), then dx (the last part, empty when not
    /// wanted), for rows r0.. of the batch, from the output layer's dz `top` [rows, out_L].
    fn run(
        &self,
        top: &[f32],
        (r0, rows): (usize, usize),
        mut parts: Vec<&mut [f32]>,
    ) -> Result<()> {
        let mut dx = parts.pop().filter(|d| !d.is_empty());
        let mut upstream: &[f32] = top;
        for k in (0..self.layers.len()).rev() {
            let out = self.layers[k].fan_out();
            let (inp, dst) = if k == 0 {
                match dx.take() {
                    Some(d) => (self.fan_in, d),
                    None => break,
                }
            } else {
                match parts.pop() {
                    Some(d) => (self.layers[k - 1].fan_out(), d),
                    None => bail!("fused mlp: a hidden layer without a gradient buffer"),
                }
            };
            gemm(
                (rows, inp, out),
                dst,
                false,
                View::row_major(upstream, out),
                View::row_major(self.params[k].0, inp),
                1,
            )?;
            if let Some(slope) = k.checked_sub(1).and_then(|j| self.slope_of[j]) {
                scale_by(dst, &slope[r0 * inp..(r0 + rows) * inp]);
            }
            upstream = dst;
        }
        Ok(())
    }
}

/// (dW_k, db_k) of every layer: dW_k = dz_k^T h_{k-1}, db_k = the column sums of dz_k, with
/// h_{-1} = x and dz_L = `top`; the output rows of every layer split into tasks run in parallel.
fn weight_gradients(
    layers: &[DenseLayer],
    hidden: &[Vec<f32>],
    dz: &[Vec<f32>],
    top: &[f32],
    x: &[f32],
    fan_in: usize,
) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let last = layers.len() - 1;
    let batch = x.len() / fan_in.max(1);
    let parts = rayon::current_num_threads().max(1);
    let mut grads: Vec<(Vec<f32>, Vec<f32>)> = Vec::with_capacity(layers.len());
    let mut tasks = Vec::new();
    for (k, layer) in layers.iter().enumerate() {
        let out = layer.fan_out();
        let inp = if k == 0 {
            fan_in
        } else {
            layers[k - 1].fan_out()
        };
        grads.push((vec![0f32; out * inp], vec![0f32; out]));
        let per = out.div_ceil(parts).max(1);
        for o0 in (0..out).step_by(per) {
            tasks.push((k, o0, per.min(out - o0)));
        }
    }
    // Disjoint output-row slices of every layer's dW and db, one per task.
    let mut slices: Vec<(&mut [f32], &mut [f32])> = Vec::with_capacity(tasks.len());
    let mut task_iter = tasks.iter().peekable();
    for (k, (dw, db)) in grads.iter_mut().enumerate() {
        let inp = if k == 0 {
            fan_in
        } else {
            layers[k - 1].fan_out()
        };
        let (mut dw_rest, mut db_rest) = (&mut dw[..], &mut db[..]);
        while let Some(&&(tk, _, n)) = task_iter.peek() {
            if tk != k {
                break;
            }
            task_iter.next();
            let (dw_head, dw_tail) = std::mem::take(&mut dw_rest).split_at_mut(n * inp);
            let (db_head, db_tail) = std::mem::take(&mut db_rest).split_at_mut(n);
            slices.push((dw_head, db_head));
            dw_rest = dw_tail;
            db_rest = db_tail;
        }
    }
    tasks
        .par_iter()
        .zip(slices)
        .map(|(&(k, o0, n), (dw, db))| {
            let out = layers[k].fan_out();
            let (inp, input): (usize, &[f32]) = if k == 0 {
                (fan_in, x)
            } else {
                (layers[k - 1].fan_out(), &hidden[k - 1][..])
            };
            let dzk: &[f32] = if k == last { top } else { &dz[k][..] };
            gemm(
                (n, inp, batch),
                dw,
                false,
                View::transposed(&dzk[o0..], out),
                View::row_major(input, inp),
                1,
            )?;
            add_column_range(dzk, out, o0, db);
            Ok(())
        })
        .collect::<Result<Vec<()>>>()?;
    Ok(grads)
}

/// The stack of `layers` applied to `x` [batch, in] as one op (see the module docs). Gradients
/// of every weight and bias come out of [`ops::backward`] (not plain `Tensor::backward`).
/// Inside [`ops::with_stock_ops`]: candle's stock composition, layer by layer.
pub fn mlp(x: &Tensor, layers: &[DenseLayer]) -> Result<Tensor> {
    if ops::stock_ops() {
        let mut h = x.clone();
        for layer in layers {
            h = ops::linear(&h, &layer.weight, &layer.bias, layer.activation)?;
        }
        return Ok(h);
    }
    let Some(first) = layers.first() else {
        bail!("fused mlp: no layers");
    };
    let op = MlpOp {
        layers: layers.to_vec(),
        saved: Mutex::new(Saved::default()),
    };
    x.contiguous()?.apply_op2(&first.weight, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::noise::Rng;
    use candle_core::{Device, Var};

    fn randn(rng: &mut Rng, shape: &[usize], scale: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (scale * rng.normal()) as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
    }

    fn var(rng: &mut Rng, shape: &[usize], scale: f64) -> Var {
        Var::from_tensor(&randn(rng, shape, scale)).expect("var")
    }

    /// Largest |a - b| relative to the largest |b|.
    fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims(), "shapes differ");
        let a = ops::values(a).expect("a");
        let b = ops::values(b).expect("b");
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// A random stack of layers `in -> widths...`, with SiLU where `silu` says.
    fn stack(
        rng: &mut Rng,
        fan_in: usize,
        widths: &[(usize, bool)],
    ) -> (Vec<DenseLayer>, Vec<Var>) {
        let mut layers = Vec::new();
        let mut vars = Vec::new();
        let mut inp = fan_in;
        for &(out, silu) in widths {
            let w = var(rng, &[out, inp], 1.0 / (inp as f64).sqrt());
            let b = var(rng, &[out], 0.3);
            layers.push(DenseLayer {
                weight: w.as_tensor().clone(),
                bias: b.as_tensor().clone(),
                activation: if silu {
                    Activation::Silu
                } else {
                    Activation::Identity
                },
            });
            vars.extend([w, b]);
            inp = out;
        }
        (layers, vars)
    }

    /// The fused stack against candle's stock layers: outputs and the gradients of the input and
    /// of every weight and bias, on odd shapes (blocks of unequal rows, one row, a SiLU output).
    #[test]
    fn the_fused_stack_matches_stock_layers_in_values_and_gradients() {
        let mut rng = Rng::new(11);
        // (batch, inputs, layers as (width, SiLU)).
        type Case = (usize, usize, &'static [(usize, bool)]);
        let cases: &[Case] = &[
            (37, 5, &[(19, true), (7, true), (3, false)]),
            (1, 1, &[(1, true)]),
            (33, 4, &[(9, false), (2, true)]),
            (
                512,
                66,
                &[
                    (256, true),
                    (256, true),
                    (256, true),
                    (256, true),
                    (2, false),
                ],
            ),
            (101, 3, &[(17, true), (5, false)]),
        ];
        for &(batch, fan_in, widths) in cases {
            let (layers, vars) = stack(&mut rng, fan_in, widths);
            let x = var(&mut rng, &[batch, fan_in], 1.0);
            let probe = randn(&mut rng, &[batch, widths[widths.len() - 1].0], 1.0);
            let loss = |out: &Tensor| (out * &probe).and_then(|p| p.sum_all()).expect("loss");
            let fused = mlp(&x, &layers).expect("fused");
            let stock = ops::with_stock_ops(|| mlp(&x, &layers)).expect("stock");
            let what = format!("batch {batch}, {fan_in} -> {widths:?}");
            let e = rel_err(&fused, &stock);
            assert!(e < 1e-5, "{what}: output error {e:e}");
            let gf = ops::backward(&loss(&fused)).expect("fused backward");
            let gs = loss(&stock).backward().expect("stock backward");
            for (i, v) in std::iter::once(&x).chain(&vars).enumerate() {
                let f = gf
                    .get(v)
                    .unwrap_or_else(|| panic!("{what}: no fused grad {i}"));
                let s = gs
                    .get(v)
                    .unwrap_or_else(|| panic!("{what}: no stock grad {i}"));
                let e = rel_err(f, s);
                assert!(e < 3e-5, "{what}: gradient {i} error {e:e}");
            }
        }
    }

    /// Plain data in: no input gradient, every weight's still; ops that overlap (a second
    /// forward before the first one's backward) keep their own activations; the same inputs
    /// give the same bits (the row blocks are fixed, each GEMM on one thread).
    #[test]
    fn the_fused_stack_keeps_state_per_op_and_is_deterministic() {
        let mut rng = Rng::new(12);
        let (layers, vars) = stack(&mut rng, 6, &[(40, true), (40, true), (3, false)]);
        let (x1, x2) = (
            randn(&mut rng, &[70, 6], 1.0),
            randn(&mut rng, &[70, 6], 2.0),
        );
        let first = mlp(&x1, &layers).expect("first");
        let _second = mlp(&x2, &layers).expect("second");
        let grads = ops::backward(&first.sum_all().expect("sum")).expect("backward");
        assert!(grads.get(&x1).is_none());
        let stock = ops::with_stock_ops(|| mlp(&x1, &layers))
            .and_then(|o| o.sum_all()?.backward())
            .expect("stock");
        for (i, v) in vars.iter().enumerate() {
            let e = rel_err(
                grads.get(v).expect("fused grad"),
                stock.get(v).expect("stock"),
            );
            assert!(e < 3e-5, "gradient {i} error {e:e}");
        }
        let again = mlp(&x1, &layers).expect("again");
        let grads_again = ops::backward(&again.sum_all().expect("sum")).expect("backward");
        assert_eq!(ops::values(&first).ok(), ops::values(&again).ok());
        for v in &vars {
            let (a, b) = (grads.get(v).expect("a"), grads_again.get(v).expect("b"));
            assert_eq!(ops::values(a).ok(), ops::values(b).ok());
        }
        let bad = DenseLayer {
            weight: randn(&mut rng, &[3, 5], 1.0),
            ..layers[0].clone()
        };
        assert!(mlp(&x1, &[bad]).is_err());
        assert!(mlp(&x1, &[]).is_err());
    }
}
