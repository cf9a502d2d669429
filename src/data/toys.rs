//! Toy data: 2-D point clouds (the ideal empirical denoiser memorises them), the 8-Gaussians mixture
//! (exact mixture denoiser), and EDM figure 3's 1-D pair of Diracs at +-1.

use super::gaussian::GaussianModel;
use super::mixture::MixtureModel;
use super::{DataSet, Source};
use crate::core::noise::Rng;
use crate::error::{Error, Result};

pub const NAMES: [&str; 6] = [
    "8gaussians",
    "moons",
    "checkerboard",
    "swissroll",
    "rings",
    "two-diracs",
];

/// The toys drawn as `points` samples (the others are closed-form or fixed).
pub const SAMPLED: [&str; 4] = ["moons", "checkerboard", "swissroll", "rings"];

/// Fixed seed: a toy is the same data set every time.
const TOY_SEED: u64 = 20_221_206;

/// Checks a toy's name.
pub fn check_name(name: &str) -> Result<()> {
    if NAMES.contains(&name) {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "unknown toy '{name}' for --data toy:NAME (one of {})",
            NAMES.join(", ")
        )))
    }
}

/// Checks a toy's name and point count.
pub fn check(name: &str, points: usize) -> Result<()> {
    check_name(name)?;
    if points == 0 || points > 1_000_000 {
        return Err(Error::InvalidSpec(format!(
            "--points must be in 1..=1000000, got {points}"
        )));
    }
    Ok(())
}

pub fn load(name: &str, points: usize) -> Result<Source> {
    check(name, points)?;
    let mut rng = Rng::new(TOY_SEED);
    let (values, labels): (Vec<[f64; 2]>, Option<Vec<u32>>) = match name {
        "8gaussians" => return Ok(Source::Mixture(eight_gaussians()?)),
        "two-diracs" => {
            return Ok(Source::Empirical(DataSet::new(
                2,
                1,
                vec![-1.0, 1.0],
                Some(vec![0, 1]),
                None,
            )?));
        }
        "moons" => {
            let mut v = Vec::with_capacity(points);
            let mut l = Vec::with_capacity(points);
            for i in 0..points {
                let t = std::f64::consts::PI * rng.uniform();
                let (x, y, c) = if i % 2 == 0 {
                    (t.cos(), t.sin(), 0)
                } else {
                    (1.0 - t.cos(), 0.5 - t.sin(), 1)
                };
                v.push([
                    1.5 * (x - 0.5) + 0.05 * rng.normal(),
                    1.5 * (y - 0.25) + 0.05 * rng.normal(),
                ]);
                l.push(c);
            }
            (v, Some(l))
        }
        "checkerboard" => {
            let v = (0..points)
                .map(|_| {
                    loop {
                        let (x, y) = (4.0 * rng.uniform() - 2.0, 4.0 * rng.uniform() - 2.0);
                        if ((x + 2.0).floor() as i64 + (y + 2.0).floor() as i64) % 2 == 0 {
                            break [x, y];
                        }
                    }
                })
                .collect();
            (v, None)
        }
        "swissroll" => {
            let v = (0..points)
                .map(|_| {
                    let t = 1.5 * std::f64::consts::PI * (1.0 + 2.0 * rng.uniform());
                    [
                        t * t.cos() / 6.0 + 0.04 * rng.normal(),
                        t * t.sin() / 6.0 + 0.04 * rng.normal(),
                    ]
                })
                .collect();
            (v, None)
        }
        "rings" => {
            let radii = [0.5, 1.25, 2.0];
            let mut v = Vec::with_capacity(points);
            let mut l = Vec::with_capacity(points);
            for i in 0..points {
                let c = i % 3;
                let a = std::f64::consts::TAU * rng.uniform();
                let r = radii[c] + 0.04 * rng.normal();
                v.push([r * a.cos(), r * a.sin()]);
                l.push(c as u32);
            }
            (v, Some(l))
        }
        other => {
            check_name(other)?;
            return Err(Error::InvalidSpec(format!("toy '{other}' has no sampler")));
        }
    };
    let n = values.len();
    Ok(Source::Empirical(DataSet::new(
        n,
        2,
        values.into_iter().flatten().collect(),
        labels,
        None,
    )?))
}

/// Eight isotropic Gaussians (std 0.15) on a circle of radius 2, one class each.
pub fn eight_gaussians() -> Result<MixtureModel> {
    let components = (0..8)
        .map(|k| {
            let a = std::f64::consts::TAU * k as f64 / 8.0;
            GaussianModel::isotropic(vec![2.0 * a.cos(), 2.0 * a.sin()], 0.15 * 0.15)
        })
        .collect::<Result<Vec<_>>>()?;
    MixtureModel::new(vec![1.0 / 8.0; 8], components, (0..8).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_toy_loads_with_the_right_shape() -> Result<()> {
        for name in NAMES {
            let src = load(name, 300)?;
            let expect_dim = if name == "two-diracs" { 1 } else { 2 };
            assert_eq!(src.dim(), expect_dim, "{name}");
            let pts = src.display_points(300);
            assert!(
                pts.values.iter().all(|v| v.is_finite() && v.abs() < 4.0),
                "{name}"
            );
        }
        assert!(load("nope", 10).is_err());
        assert!(load("moons", 0).is_err());
        Ok(())
    }
}
