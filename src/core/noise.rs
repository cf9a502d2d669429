//! Reproducible standard-normal noise. Every value is a pure function of (seed, stream, row,
//! step, index), so a rerun with the same seed draws the same noise for every sample, whatever the
//! batch size, order or thread count; a slider change then shows the setting's effect alone.

use super::Batch;
use crate::error::{Error, Result};

/// Stream tags: the initial noise z and the per-step churn / ancestral noise never share values.
const STREAM_INIT: u64 = 0x1;
const STREAM_STEP: u64 = 0x2;

/// SplitMix64's finaliser: a bijective 64-bit mix with good avalanche.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn key(seed: u64, stream: u64, row: u64, step: u64) -> u64 {
    let mut h = mix64(seed ^ 0x9e37_79b9_7f4a_7c15);
    h = mix64(h ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03));
    h = mix64(h ^ row.wrapping_mul(0x8cb9_2ba7_2f3d_8dd7));
    mix64(h ^ step.wrapping_mul(0xa076_1d64_78bd_642f))
}

/// A uniform in (0, 1], never 0 so that ln() is finite.
fn uniform(bits: u64) -> f64 {
    ((bits >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64)
}

/// Fills `out` with standard normals for one (seed, stream, row, step), by Box-Muller on
/// counter-hashed uniforms.
fn fill_normals(seed: u64, stream: u64, row: u64, step: u64, out: &mut [f64]) {
    let base = key(seed, stream, row, step);
    for (pair, chunk) in out.chunks_mut(2).enumerate() {
        let a = mix64(base ^ (2 * pair as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let b = mix64(base ^ (2 * pair as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let radius = (-2.0 * uniform(a).ln()).sqrt();
        let angle = std::f64::consts::TAU * uniform(b);
        chunk[0] = radius * angle.cos();
        if let Some(second) = chunk.get_mut(1) {
            *second = radius * angle.sin();
        }
    }
}

/// The initial noise z ~ N(0, I) for `rows` samples of dimension `dim`; x_0 = sigma_0 z.
pub fn initial_noise(seed: u64, rows: usize, dim: usize) -> Batch {
    let mut z = Batch::zeros(rows, dim);
    for r in 0..rows {
        fill_normals(seed, STREAM_INIT, r as u64, 0, z.row_mut(r));
    }
    z
}

/// Where a stochastic sampler gets eps_i for step i. Samplers ask at EVERY step (even where the
/// noise is not used) so that row i of an injected file always belongs to step i.
pub trait NoiseSource {
    fn step_noise(&mut self, step: usize, rows: usize, dim: usize) -> Result<Batch>;
}

/// Seeded per-sample streams (see the module note).
#[derive(Clone, Debug)]
pub struct SeededNoise {
    pub seed: u64,
}

impl NoiseSource for SeededNoise {
    fn step_noise(&mut self, step: usize, rows: usize, dim: usize) -> Result<Batch> {
        let mut eps = Batch::zeros(rows, dim);
        for r in 0..rows {
            fill_normals(
                self.seed,
                STREAM_STEP,
                r as u64,
                step as u64,
                eps.row_mut(r),
            );
        }
        Ok(eps)
    }
}

/// Noise read from a file of shape [S, B, D]: step i uses slab i.
#[derive(Clone, Debug)]
pub struct InjectedNoise {
    pub steps: usize,
    pub rows: usize,
    pub dim: usize,
    pub values: Vec<f64>,
}

impl InjectedNoise {
    pub fn new(shape: &[usize], values: Vec<f64>) -> Result<Self> {
        let [steps, rows, dim] = shape else {
            return Err(Error::Shape(format!(
                "churn noise must have shape [steps, batch, dim], got {shape:?}"
            )));
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(
                "churn noise contains NaN or infinity".into(),
            ));
        }
        Ok(InjectedNoise {
            steps: *steps,
            rows: *rows,
            dim: *dim,
            values,
        })
    }
}

impl NoiseSource for InjectedNoise {
    fn step_noise(&mut self, step: usize, rows: usize, dim: usize) -> Result<Batch> {
        if rows != self.rows || dim != self.dim {
            return Err(Error::Shape(format!(
                "churn noise is [{}, {}, {}] but the run needs [_, {rows}, {dim}]",
                self.steps, self.rows, self.dim
            )));
        }
        if step >= self.steps {
            return Err(Error::Shape(format!(
                "churn noise has {} steps, step {step} needs one more",
                self.steps
            )));
        }
        let slab = rows * dim;
        Batch::from_vec(
            rows,
            dim,
            self.values[step * slab..(step + 1) * slab].to_vec(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_have_unit_moments_and_are_reproducible() {
        let z = initial_noise(7, 4000, 8);
        let n = z.data.len() as f64;
        let mean = z.data.iter().sum::<f64>() / n;
        let var = z.data.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "var {var}");
        assert_eq!(z, initial_noise(7, 4000, 8));
        // A smaller batch is a prefix of the larger one: the noise belongs to the sample.
        assert_eq!(initial_noise(7, 10, 8).data[..], z.data[..80]);
        assert_ne!(initial_noise(8, 10, 8), initial_noise(7, 10, 8));
    }

    #[test]
    fn step_noise_differs_per_step_and_from_init() -> Result<()> {
        let mut src = SeededNoise { seed: 3 };
        let a = src.step_noise(0, 5, 3)?;
        let b = src.step_noise(1, 5, 3)?;
        assert_ne!(a, b);
        assert_ne!(a, initial_noise(3, 5, 3));
        assert_eq!(a, src.step_noise(0, 5, 3)?);
        Ok(())
    }

    #[test]
    fn injected_noise_checks_its_shape() {
        let mut inj = InjectedNoise::new(&[2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).expect("valid");
        assert_eq!(
            inj.step_noise(1, 1, 2).expect("step 1").data,
            vec![3.0, 4.0]
        );
        assert!(inj.step_noise(2, 1, 2).is_err());
        assert!(inj.step_noise(0, 2, 2).is_err());
        assert!(InjectedNoise::new(&[1, 1, 1], vec![f64::NAN]).is_err());
    }
}

/// A fixed pseudo-random subset of `k` of the indices 0..n (all of them when k >= n), sorted.
pub fn choose_subset(seed: u64, n: usize, k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    if k < n {
        // Partial Fisher-Yates with counter-hashed draws.
        for i in 0..k {
            let j = i + (key(seed, 0x3, i as u64, 0) % (n - i) as u64) as usize;
            idx.swap(i, j);
        }
        idx.truncate(k);
    }
    idx.sort_unstable();
    idx
}

/// A small sequential generator (SplitMix64) for building data sets reproducibly.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng {
            state: mix64(seed ^ 0x5851_f42d_4c95_7f2d),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        uniform(self.next_u64())
    }

    /// Standard normal (Box-Muller, one of the pair).
    pub fn normal(&mut self) -> f64 {
        let (a, b) = (self.uniform(), self.uniform());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }

    /// Uniform integer in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}
