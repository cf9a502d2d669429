//! The layers both networks are built from, in one place: `Dense` (Linear, optionally + SiLU),
//! `NormActConv` (GroupNorm + SiLU + 3x3 convolution) and `ResBlock`. Their parameters are
//! candle_nn's layers' (same names, same initialisation); their forward passes run the fused ops
//! of ops.rs (candle's stock compositions inside `ops::with_stock_ops`; a test holds the two to
//! the same values).

use candle_core::Tensor;
use candle_nn::{Conv2d, Conv2dConfig, Init, Linear, VarBuilder};

use super::fused_mlp::DenseLayer;
use super::ops::{self, Activation, FusedGroupNorm};

use crate::error::Result;

/// A zero-initialised layer's weights and bias: EDM's output layers start at F = 0, which makes
/// the initial weighted loss 1 at every sigma.
const ZERO: Init = Init::Const(0.0);

/// Linear, then SiLU when `activation` is set.
pub struct Dense {
    linear: Linear,
    activation: bool,
}

impl Dense {
    /// candle_nn's default initialisation (Kaiming normal weights, uniform bias).
    pub fn new(inputs: usize, outputs: usize, activation: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Dense {
            linear: candle_nn::linear(inputs, outputs, vb)?,
            activation,
        })
    }

    /// All weights and the bias zero, no activation: an output layer.
    pub fn zero(inputs: usize, outputs: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((outputs, inputs), "weight", ZERO)?;
        let bias = vb.get_with_hints(outputs, "bias", ZERO)?;
        Ok(Dense {
            linear: Linear::new(weight, Some(bias)),
            activation: false,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let layer = self.fused()?;
        Ok(ops::linear(
            x,
            &layer.weight,
            &layer.bias,
            layer.activation,
        )?)
    }

    /// The layer as one step of `fused_mlp::mlp` (its tensors shared, not copied).
    pub fn fused(&self) -> Result<DenseLayer> {
        let activation = if self.activation {
            Activation::Silu
        } else {
            Activation::Identity
        };
        match self.linear.bias() {
            Some(bias) => Ok(DenseLayer {
                weight: self.linear.weight().clone(),
                bias: bias.clone(),
                activation,
            }),
            None => Err(crate::error::Error::Train(
                "a dense layer without a bias".into(),
            )),
        }
    }
}

/// A convolution through `ops::conv2d` (groups 1, dilation 1, with a bias: how train/ builds
/// them).
pub fn convolve(conv: &Conv2d, x: &Tensor) -> Result<Tensor> {
    convolve_shifted(conv, x, None)
}

/// A convolution plus `shift` [B, C_out] per image and channel (broadcast over the pixels),
/// folded into the convolution's bias when it runs on `ops::conv2d`.
fn convolve_shifted(conv: &Conv2d, x: &Tensor, shift: Option<&Tensor>) -> Result<Tensor> {
    let config = conv.config();
    match conv.bias() {
        Some(bias) if config.groups == 1 && config.dilation == 1 => {
            let bias = match shift {
                Some(s) => s.broadcast_add(&bias.unsqueeze(0)?)?,
                None => bias.clone(),
            };
            Ok(ops::conv2d(
                x,
                conv.weight(),
                &bias,
                config.stride,
                config.padding,
            )?)
        }
        _ => {
            let y = candle_core::Module::forward(conv, x)?;
            Ok(match shift {
                Some(s) => y.broadcast_add(&s.unsqueeze(2)?.unsqueeze(3)?)?,
                None => y,
            })
        }
    }
}

/// A 3x3 convolution with padding 1 (same size), Kaiming-initialised or zero.
fn conv3x3(inputs: usize, outputs: usize, zero: bool, vb: VarBuilder) -> Result<Conv2d> {
    let config = Conv2dConfig {
        padding: 1,
        ..Conv2dConfig::default()
    };
    if zero {
        let weight = vb.get_with_hints((outputs, inputs, 3, 3), "weight", ZERO)?;
        let bias = vb.get_with_hints(outputs, "bias", ZERO)?;
        return Ok(Conv2d::new(weight, Some(bias), config));
    }
    Ok(candle_nn::conv2d(inputs, outputs, 3, config, vb)?)
}

/// GroupNorm, SiLU, then a 3x3 convolution (the pre-activation order of EDM's UNet blocks).
pub struct NormActConv {
    norm: FusedGroupNorm,
    conv: Conv2d,
}

impl NormActConv {
    pub fn new(
        inputs: usize,
        outputs: usize,
        groups: usize,
        zero: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(NormActConv {
            norm: FusedGroupNorm::new(groups, inputs, 1e-5, vb.pp("norm"))?,
            conv: conv3x3(inputs, outputs, zero, vb.pp("conv"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_shifted(x, None)
    }

    /// The same plus `shift` [B, C_out] per image and channel.
    pub fn forward_shifted(&self, x: &Tensor, shift: Option<&Tensor>) -> Result<Tensor> {
        convolve_shifted(&self.conv, &self.norm.forward_silu(x)?, shift)
    }
}

/// A residual block with the conditioning embedding added between its two convolutions; the
/// second convolution starts at zero, so the block starts as its skip path.
pub struct ResBlock {
    first: NormActConv,
    embedding: Dense,
    second: NormActConv,
    /// A 1x1 convolution when the channel count changes.
    skip: Option<Conv2d>,
    outputs: usize,
}

impl ResBlock {
    pub fn new(
        inputs: usize,
        outputs: usize,
        embedding_dim: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let skip = if inputs == outputs {
            None
        } else {
            Some(candle_nn::conv2d(
                inputs,
                outputs,
                1,
                Conv2dConfig::default(),
                vb.pp("skip"),
            )?)
        };
        Ok(ResBlock {
            first: NormActConv::new(inputs, outputs, groups, false, vb.pp("first"))?,
            embedding: Dense::new(embedding_dim, outputs, false, vb.pp("embedding"))?,
            second: NormActConv::new(outputs, outputs, groups, true, vb.pp("second"))?,
            skip,
            outputs,
        })
    }

    /// `x` [B, C, H, W]; `embedding` [B, E], already passed through SiLU.
    pub fn forward(&self, x: &Tensor, embedding: &Tensor) -> Result<Tensor> {
        let e = self.embedding.forward(embedding)?;
        let h = if ops::stock_ops() {
            let batch = x.dim(0)?;
            let e = e.reshape((batch, self.outputs, 1, 1))?;
            self.first.forward(x)?.broadcast_add(&e)?
        } else {
            // The embedding joins the convolution's bias: no pass over the activations.
            self.first.forward_shifted(x, Some(&e))?
        };
        let h = self.second.forward(&h)?;
        let skip = match &self.skip {
            Some(conv) => convolve(conv, x)?,
            None => x.clone(),
        };
        Ok((h + skip)?)
    }
}
