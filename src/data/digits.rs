//! The UCI 8x8 handwritten digits (CC BY 4.0, see assets/README.md), embedded in the binary.

use std::io::Read;

use super::{DataSet, ImageShape};
use crate::error::{Error, Result};

const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../assets/uci-digits-8x8.csv.gz");

/// The shape of the embedded set: [ROWS, DIM].
pub const ROWS: usize = 1797;
pub const DIM: usize = 64;

/// The 1797 digits as [1797, 64] in [-1, 1] (v/8 - 1), labels 0..9.
pub fn load() -> Result<DataSet> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::Data(format!("embedded digits: {e}")))?;
    parse_csv(&text)
}

/// The digits binarised, where InfoNoise matters most (seed 003's discrete data): every pixel
/// thresholded at the middle grey to +-1 (v > 8 of 16 is +1), labels kept.
pub fn load_binary() -> Result<DataSet> {
    let mut set = load()?;
    for v in &mut set.values {
        *v = if *v > 0.0 { 1.0 } else { -1.0 };
    }
    Ok(set)
}

/// Parses lines of 64 pixels (0..16) and a label.
pub fn parse_csv(text: &str) -> Result<DataSet> {
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            return Err(Error::Data(format!(
                "digits line {}: {} fields, expected 65",
                i + 1,
                fields.len()
            )));
        }
        for f in &fields[..64] {
            let v: f64 = f
                .trim()
                .parse()
                .map_err(|_| Error::Data(format!("digits line {}: bad pixel '{f}'", i + 1)))?;
            values.push(v / 8.0 - 1.0);
        }
        let label: u32 = fields[64]
            .trim()
            .parse()
            .map_err(|_| Error::Data(format!("digits line {}: bad label", i + 1)))?;
        labels.push(label);
    }
    let n = labels.len();
    DataSet::new(
        n,
        64,
        values,
        Some(labels),
        Some(ImageShape {
            width: 8,
            height: 8,
            channels: 1,
        }),
    )
}

/// A synthetic 784-D image set (benchmarks, GPU parity): `n` digits upsampled to 28x28 with
/// bilinear interpolation, a random sub-pixel shift and a little noise, clipped to [-1, 1].
pub fn synthetic_28x28(n: usize, seed: u64) -> Result<DataSet> {
    let digits = load()?;
    let mut rng = crate::core::noise::Rng::new(seed);
    let mut values = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let j = rng.below(digits.n);
        let src = digits.row(j);
        let (dx, dy) = (rng.uniform() - 0.5, rng.uniform() - 0.5);
        for py in 0..28 {
            for px in 0..28 {
                // Pixel centre in source coordinates.
                let sx = ((px as f64 + 0.5) * 8.0 / 28.0 - 0.5 + dx).clamp(0.0, 7.0);
                let sy = ((py as f64 + 0.5) * 8.0 / 28.0 - 0.5 + dy).clamp(0.0, 7.0);
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(7), (y0 + 1).min(7));
                let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
                let v = src[y0 * 8 + x0] * (1.0 - fx) * (1.0 - fy)
                    + src[y0 * 8 + x1] * fx * (1.0 - fy)
                    + src[y1 * 8 + x0] * (1.0 - fx) * fy
                    + src[y1 * 8 + x1] * fx * fy;
                values.push((v + 0.02 * rng.normal()).clamp(-1.0, 1.0));
            }
        }
        labels.push(digits.labels.as_ref().map_or(0, |l| l[j]));
    }
    DataSet::new(
        n,
        784,
        values,
        Some(labels),
        Some(ImageShape {
            width: 28,
            height: 28,
            channels: 1,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_1797_by_64_in_range_with_ten_classes() -> Result<()> {
        let d = load()?;
        assert_eq!((d.n, d.dim), (1797, 64));
        assert_eq!(d.num_classes(), 10);
        assert!(d.values.iter().all(|v| (-1.0..=1.0).contains(v)));
        let (a, b) = d.class_range(3);
        assert!(
            b > a
                && d.labels
                    .as_ref()
                    .is_some_and(|l| l[a..b].iter().all(|&c| c == 3))
        );
        Ok(())
    }

    #[test]
    fn binary_digits_are_the_digits_thresholded_to_plus_minus_one() -> Result<()> {
        let (grey, binary) = (load()?, load_binary()?);
        assert_eq!(
            (binary.n, binary.dim, &binary.labels),
            (1797, 64, &grey.labels)
        );
        for (b, g) in binary.values.iter().zip(&grey.values) {
            assert_eq!(*b, if *g > 0.0 { 1.0 } else { -1.0 });
        }
        // Both values occur (about a third of the pixels are ink).
        let ink = binary.values.iter().filter(|v| **v > 0.0).count() as f64;
        assert!((0.2..0.5).contains(&(ink / binary.values.len() as f64)));
        Ok(())
    }
}
