//! The layers both networks are built from, in one place: `Dense` (Linear, optionally + SiLU),
//! `NormActConv` (GroupNorm + SiLU + 3x3 convolution) and `ResBlock`. They use candle_nn's stock
//! layers; a fused implementation of a hot path replaces the body of one `forward` here.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, Init, Linear, VarBuilder};

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
        let y = self.linear.forward(x)?;
        Ok(if self.activation { y.silu()? } else { y })
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
    norm: GroupNorm,
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
            norm: candle_nn::group_norm(groups, inputs, 1e-5, vb.pp("norm"))?,
            conv: conv3x3(inputs, outputs, zero, vb.pp("conv"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.conv.forward(&self.norm.forward(x)?.silu()?)?)
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
        let batch = x.dim(0)?;
        let e = self
            .embedding
            .forward(embedding)?
            .reshape((batch, self.outputs, 1, 1))?;
        let h = self.first.forward(x)?.broadcast_add(&e)?;
        let h = self.second.forward(&h)?;
        let skip = match &self.skip {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        Ok((h + skip)?)
    }
}
