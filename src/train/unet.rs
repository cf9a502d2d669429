//! The unet for images (the 8x8 digits; folders of images up to 32x32, grey or RGB): two or three
//! resolutions of group-norm + SiLU residual blocks (`layers::ResBlock`), average-pool down,
//! nearest up with skip concatenation, the noise embedding (an MLP of the Fourier features, or the
//! learned null embedding) plus the class embedding added in every block (after Ho et al. 2020 and
//! EDM's DDPM++ blocks, much smaller).

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use serde::{Deserialize, Serialize};

use super::layers::{Dense, NormActConv, ResBlock};
use super::network::{Conditioning, NetInput};
use crate::data::ImageShape;
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnetConfig {
    /// Channels at each resolution, finest first (2 or 3 entries: 8x8 -> [32, 64]).
    pub channels: Vec<usize>,
    /// GroupNorm groups (must divide every channel count, including skip concatenations).
    pub groups: usize,
    /// Width of the conditioning embedding.
    pub embedding_dim: usize,
    /// Fourier frequencies of the noise features.
    pub frequencies: usize,
}

impl UnetConfig {
    /// Two resolutions up to 8x8 (32, 64 channels), three above (32, 64, 64).
    pub fn for_image(image: ImageShape) -> Self {
        let channels = if image.width.max(image.height) <= 8 {
            vec![32, 64]
        } else {
            vec![32, 64, 64]
        };
        UnetConfig {
            channels,
            groups: 8,
            embedding_dim: 128,
            frequencies: 16,
        }
    }

    pub fn validate(&self, image: ImageShape) -> Result<()> {
        let levels = self.channels.len();
        if !(1..=4).contains(&levels) {
            return Err(Error::InvalidSpec(format!(
                "the unet takes 1 to 4 resolutions, got {levels}"
            )));
        }
        let factor = 1 << (levels - 1);
        if !image.width.is_multiple_of(factor)
            || !image.height.is_multiple_of(factor)
            || image.width > 64
        {
            return Err(Error::InvalidSpec(format!(
                "a {}x{} image cannot be halved {} times (the unet takes sides up to 64 that \
                 divide by {factor})",
                image.width,
                image.height,
                levels - 1
            )));
        }
        let groups_fit = |c: usize| self.groups > 0 && c > 0 && c.is_multiple_of(self.groups);
        let concat_fit = (0..levels).all(|l| {
            let below = self.channels[(l + 1).min(levels - 1)];
            groups_fit(below + self.channels[l])
        });
        if !self.channels.iter().all(|&c| groups_fit(c) && c <= 1024) || !concat_fit {
            return Err(Error::InvalidSpec(format!(
                "unet channels {:?} must be multiples of its {} groups",
                self.channels, self.groups
            )));
        }
        if !(1..=256).contains(&self.frequencies) || !(1..=4096).contains(&self.embedding_dim) {
            return Err(Error::InvalidSpec(format!(
                "unet sizes out of range: {self:?}"
            )));
        }
        Ok(())
    }
}

pub struct Unet {
    conditioning: Conditioning,
    noise_mlp: [Dense; 2],
    input: Conv2d,
    down: Vec<ResBlock>,
    middle: ResBlock,
    up: Vec<ResBlock>,
    output: NormActConv,
    image: ImageShape,
}

impl Unet {
    pub fn new(
        config: &UnetConfig,
        image: ImageShape,
        classes: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        config.validate(image)?;
        let (ch, e, g) = (&config.channels, config.embedding_dim, config.groups);
        let levels = ch.len();
        let conditioning =
            Conditioning::new(config.frequencies, classes, e, vb.pp("conditioning"))?;
        let noise_mlp = [
            Dense::new(2 * config.frequencies, e, true, vb.pp("noise_mlp0"))?,
            Dense::new(e, e, false, vb.pp("noise_mlp1"))?,
        ];
        let input = candle_nn::conv2d(
            image.channels,
            ch[0],
            3,
            Conv2dConfig {
                padding: 1,
                ..Conv2dConfig::default()
            },
            vb.pp("input"),
        )?;
        let mut down = Vec::with_capacity(levels);
        for l in 0..levels {
            let from = if l == 0 { ch[0] } else { ch[l - 1] };
            down.push(ResBlock::new(from, ch[l], e, g, vb.pp(format!("down{l}")))?);
        }
        let deepest = ch[levels - 1];
        let middle = ResBlock::new(deepest, deepest, e, g, vb.pp("middle"))?;
        let mut up = Vec::with_capacity(levels);
        for l in 0..levels {
            let below = ch[(l + 1).min(levels - 1)];
            up.push(ResBlock::new(
                below + ch[l],
                ch[l],
                e,
                g,
                vb.pp(format!("up{l}")),
            )?);
        }
        let output = NormActConv::new(ch[0], image.channels, g, true, vb.pp("output"))?;
        Ok(Unet {
            conditioning,
            noise_mlp,
            input,
            down,
            middle,
            up,
            output,
            image,
        })
    }

    /// F, [B, D]: rows are images with interleaved channels (HWC), as the data sets store them.
    pub fn forward(&self, input: &NetInput) -> Result<Tensor> {
        let ImageShape {
            width,
            height,
            channels,
        } = self.image;
        let batch = input.x.dim(0)?;
        let (noise, class) = self.conditioning.embed(input)?;
        let embedding =
            (self.noise_mlp[1].forward(&self.noise_mlp[0].forward(&noise)?)? + class)?.silu()?;
        let x = input
            .x
            .reshape((batch, height, width, channels))?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        let mut h = self.input.forward(&x)?;
        let levels = self.down.len();
        let mut skips = Vec::with_capacity(levels);
        for (l, block) in self.down.iter().enumerate() {
            h = block.forward(&h, &embedding)?;
            skips.push(h.clone());
            if l + 1 < levels {
                h = h.avg_pool2d(2)?;
            }
        }
        h = self.middle.forward(&h, &embedding)?;
        for l in (0..levels).rev() {
            if l + 1 < levels {
                let (_, _, hh, ww) = h.dims4()?;
                h = h.upsample_nearest2d(2 * hh, 2 * ww)?;
            }
            h = Tensor::cat(&[&h, &skips[l]], 1)?;
            h = self.up[l].forward(&h, &embedding)?;
        }
        let out = self.output.forward(&h)?;
        Ok(out
            .permute((0, 2, 3, 1))?
            .contiguous()?
            .reshape((batch, width * height * channels))?)
    }
}
