//! The training set: a data source as f32 rows, its sigma_data and its fingerprint.

use crate::data::{DataSet, ImageShape, Source};
use crate::error::{Error, Result};

/// Samples drawn from a closed-form source (Gaussian, mixture) to train on, at most this many
/// values in all.
const ANALYTIC_VALUES: usize = 1 << 22;
const ANALYTIC_ROWS: usize = 1 << 16;

/// FNV-1a, 64 bit: a stable hash (unlike std's, it does not change between Rust versions).
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    /// "fnv1a64:" and 16 hex digits.
    pub fn hex(&self) -> String {
        format!("fnv1a64:{:016x}", self.0)
    }
}

/// FNV-1a of a byte string.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.write(bytes);
    h.finish()
}

/// A data set's identity: its shape, every value (bit for bit) and its labels.
pub fn fingerprint(set: &DataSet) -> String {
    let mut h = Fnv::default();
    h.write(&(set.n as u64).to_le_bytes());
    h.write(&(set.dim as u64).to_le_bytes());
    for v in &set.values {
        h.write(&v.to_bits().to_le_bytes());
    }
    if let Some(labels) = &set.labels {
        for l in labels {
            h.write(&l.to_le_bytes());
        }
    }
    h.hex()
}

/// The rows a model of `source` trains on: the set itself, or a fixed draw from a closed-form
/// model (the same draw every time, so its fingerprint identifies the source).
pub fn rows_of(source: &Source) -> DataSet {
    match source {
        Source::Empirical(set) => set.clone(),
        _ => source.display_points(
            ANALYTIC_ROWS
                .min(ANALYTIC_VALUES / source.dim().max(1))
                .max(1),
        ),
    }
}

/// The fingerprint of what a model of `source` trains on.
pub fn source_fingerprint(source: &Source) -> String {
    fingerprint(&rows_of(source))
}

/// A data set ready to train on.
#[derive(Clone, Debug)]
pub struct TrainingSet {
    pub n: usize,
    pub dim: usize,
    /// [n][dim], f32 as the network sees it.
    pub values: Vec<f32>,
    pub labels: Option<Vec<u32>>,
    /// Number of classes (0: unlabelled).
    pub classes: usize,
    pub image: Option<ImageShape>,
    /// RMS of all values: EDM's sigma_data (science.md section 8).
    pub sigma_data: f64,
    pub fingerprint: String,
}

impl TrainingSet {
    pub fn from_source(source: &Source) -> Result<Self> {
        Self::from_dataset(&rows_of(source))
    }

    pub fn from_dataset(set: &DataSet) -> Result<Self> {
        if set.n == 0 || set.dim == 0 {
            return Err(Error::Data("cannot train on an empty data set".into()));
        }
        let sum_sq: f64 = set.values.iter().map(|v| v * v).sum();
        let sigma_data = (sum_sq / set.values.len() as f64).sqrt();
        if !(sigma_data.is_finite() && sigma_data > 0.0) {
            return Err(Error::Data(format!(
                "cannot train on this data: its RMS is {sigma_data} (all zeros?)"
            )));
        }
        Ok(TrainingSet {
            n: set.n,
            dim: set.dim,
            values: set.values.iter().map(|&v| v as f32).collect(),
            labels: set.labels.clone(),
            classes: set.num_classes(),
            image: set.image,
            sigma_data,
            fingerprint: fingerprint(set),
        })
    }

    pub fn row(&self, j: usize) -> &[f32] {
        &self.values[j * self.dim..(j + 1) * self.dim]
    }

    /// The label of row j (0 when unlabelled).
    pub fn label(&self, j: usize) -> u32 {
        self.labels.as_ref().map_or(0, |l| l[j])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_see_every_value_and_label() -> Result<()> {
        let a = DataSet::new(2, 2, vec![1.0, 2.0, 3.0, 4.0], Some(vec![0, 1]), None)?;
        let mut b = a.clone();
        b.values[3] = 4.000_000_000_1;
        let mut c = a.clone();
        c.labels = Some(vec![1, 1]);
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        // FNV-1a's published test vector.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let t = TrainingSet::from_dataset(&a)?;
        assert!((t.sigma_data - (30.0f64 / 4.0).sqrt()).abs() < 1e-12);
        assert_eq!((t.classes, t.label(1)), (2, 1));
        assert!(TrainingSet::from_dataset(&DataSet::new(1, 1, vec![0.0], None, None)?).is_err());
        Ok(())
    }
}
