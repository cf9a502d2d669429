//! The pure sampling core: schedules, samplers, the denoiser trait, guidance, noise-level
//! estimation, diagnostics and Gaussian theory. No threads, no egui, no wgpu; sigmas are f64.

pub mod adaptive;
pub mod denoiser;
pub mod diagnostics;
pub mod estimate;
pub mod guidance;
pub mod infonoise;
pub mod information;
pub mod linalg;
pub mod metrics;
pub mod noise;
pub mod real;
pub mod sampler;
pub mod schedule;
pub mod theory;

use crate::error::{Error, Result};

/// Display, FromStr and serde for an enum whose names come from its `clap::ValueEnum` derive
/// (`#[value(name = ...)]`), so that the CLI, preset files, the app and error messages spell it
/// one way. `$what` names the setting in messages ("sampler").
macro_rules! named_enum {
    ($type:ty, $what:literal) => {
        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                clap::ValueEnum::to_possible_value(self)
                    .map_or(Ok(()), |value| f.write_str(value.get_name()))
            }
        }

        impl std::str::FromStr for $type {
            type Err = $crate::error::Error;
            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
                <Self as clap::ValueEnum>::from_str(s, false).map_err(|_| {
                    $crate::error::Error::InvalidSpec(format!(
                        "unknown {} '{s}' ({})",
                        $what,
                        $crate::core::value_names::<Self>()
                    ))
                })
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> std::result::Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use named_enum;

/// The names of a `clap::ValueEnum`'s values, comma-separated, for messages.
pub fn value_names<T: clap::ValueEnum>() -> String {
    T::value_variants()
        .iter()
        .filter_map(|v| v.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A batch of `rows` vectors of length `dim`, row-major, in f64: the sampler state and every
/// host-side tensor the core passes around.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f64>,
}

impl Batch {
    pub fn zeros(rows: usize, dim: usize) -> Self {
        Batch {
            rows,
            dim,
            data: vec![0.0; rows * dim],
        }
    }

    pub fn from_vec(rows: usize, dim: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != rows * dim {
            return Err(Error::Shape(format!(
                "{} values cannot form a [{rows}, {dim}] batch",
                data.len()
            )));
        }
        Ok(Batch { rows, dim, data })
    }

    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }

    pub fn row_mut(&mut self, r: usize) -> &mut [f64] {
        &mut self.data[r * self.dim..(r + 1) * self.dim]
    }

    /// The rows at `indices`, in that order.
    pub fn select_rows(&self, indices: &[usize]) -> Batch {
        let mut data = Vec::with_capacity(indices.len() * self.dim);
        for &r in indices {
            data.extend_from_slice(self.row(r));
        }
        Batch {
            rows: indices.len(),
            dim: self.dim,
            data,
        }
    }

    /// `self + a * other`, elementwise.
    pub fn add_scaled(&self, a: f64, other: &Batch) -> Batch {
        let data = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(x, y)| x + a * y)
            .collect();
        Batch { data, ..*self }
    }

    /// `a * self + b * other`, elementwise.
    pub fn lin_comb(a: f64, x: &Batch, b: f64, y: &Batch) -> Batch {
        let data = x
            .data
            .iter()
            .zip(&y.data)
            .map(|(u, v)| a * u + b * v)
            .collect();
        Batch { data, ..*x }
    }

    pub fn scale(&self, a: f64) -> Batch {
        Batch {
            data: self.data.iter().map(|v| a * v).collect(),
            ..*self
        }
    }

    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }

    /// Checks that the shape is `[rows, dim]` with the expected `dim`.
    pub fn expect_dim(&self, dim: usize, what: &str) -> Result<()> {
        if self.dim != dim {
            return Err(Error::Shape(format!(
                "{what} has dimension {}, expected {dim}",
                self.dim
            )));
        }
        Ok(())
    }

    /// Rounds every value to the nearest f32, for runs in single precision.
    pub fn round_to_f32(&mut self) {
        for v in &mut self.data {
            *v = *v as f32 as f64;
        }
    }
}

/// Numeric precision of the denoiser arithmetic. Sampler state updates are always f64; they cost
/// O(B*D) against the denoiser's O(B*N*D).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    #[default]
    #[value(name = "f32")]
    F32,
    #[value(name = "f64")]
    F64,
}

named_enum!(Precision, "precision");

/// Euclidean norm of a slice.
pub fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// Dot product of two equal-length slices.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The q-quantile (0..=1) of `values` (a slice, a Vec, a VecDeque, ...) by linear interpolation
/// between order statistics, NaNs left out; NaN when nothing is left.
pub fn quantile<'a>(values: impl IntoIterator<Item = &'a f64>, q: f64) -> f64 {
    let mut sorted: Vec<f64> = values
        .into_iter()
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let t = pos - lo as f64;
    sorted[lo] * (1.0 - t) + sorted[hi] * t
}

/// ln(sum(exp(v))) without overflow; -inf for an empty or all -inf slice.
pub fn log_sum_exp(values: &[f64]) -> f64 {
    let m = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + values.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_order_statistics_and_skip_nan() {
        let values = [4.0, f64::NAN, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&values, 0.5), 2.5);
        assert_eq!(quantile(&values, 0.0), 1.0);
        assert_eq!(quantile(&values, 1.0), 4.0);
        // Position 0.75 * 3 = 2.25 among four: a quarter of the way from 3 to 4.
        assert_eq!(quantile(&values, 0.75), 3.25);
        let series: std::collections::VecDeque<f64> = [10.0, 30.0, 20.0].into();
        assert_eq!(quantile(&series, 0.5), 20.0);
        assert!(quantile(&[f64::NAN], 0.5).is_nan());
        assert!(quantile(&Vec::new(), 0.5).is_nan());
    }
}
