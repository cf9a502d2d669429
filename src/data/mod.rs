//! Data sources: 2-D toys, a 1-D pair of Diracs, Gaussian spectra, the UCI digits, .npy files and
//! folders of images. Everything ends as a finite `DataSet` (for the ideal empirical denoiser) or a
//! distribution known in closed form (`gaussian.rs`, `mixture.rs`: parameters, sampler, density).

pub mod digits;
pub mod folder;
pub mod gaussian;
pub mod grid;
pub mod mixture;
pub mod npy;
pub mod toys;

use std::path::PathBuf;

use crate::core::Precision;
use crate::core::linalg::symmetric_eigen;
use crate::error::{Error, Result};
use gaussian::GaussianModel;
use mixture::MixtureModel;
use serde::{Deserialize, Serialize};

/// The largest data magnitude single-precision runs accept: squared distances must stay within f32.
pub const MAX_DATA_VALUE: f64 = 1e9;

/// The largest data magnitude accepted at all (double precision): squared distances over
/// sigma^2 >= 1e-24 must stay within f64.
pub const MAX_DATA_VALUE_F64: f64 = 1e100;

/// How to show one sample as a picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    pub width: usize,
    pub height: usize,
    /// 1 (grey) or 3 (RGB, interleaved).
    pub channels: usize,
}

/// A finite data set, rows sorted by class when labelled (so a class is a contiguous span).
#[derive(Clone, Debug, PartialEq)]
pub struct DataSet {
    pub n: usize,
    pub dim: usize,
    /// [n][dim].
    pub values: Vec<f64>,
    pub labels: Option<Vec<u32>>,
    pub image: Option<ImageShape>,
}

impl DataSet {
    /// Validates and sorts by label.
    pub fn new(
        n: usize,
        dim: usize,
        values: Vec<f64>,
        labels: Option<Vec<u32>>,
        image: Option<ImageShape>,
    ) -> Result<Self> {
        if n == 0 || dim == 0 {
            return Err(Error::Data(format!("the data set is empty ([{n}, {dim}])")));
        }
        if values.len() != n * dim {
            return Err(Error::Shape(format!(
                "{} values cannot form [{n}, {dim}]",
                values.len()
            )));
        }
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "data value at row {}, column {} is {}",
                bad / dim,
                bad % dim,
                values[bad]
            )));
        }
        if let Some(bad) = values.iter().position(|v| v.abs() > MAX_DATA_VALUE_F64) {
            return Err(Error::Data(format!(
                "data value at row {}, column {} is {:e}; values beyond ±{MAX_DATA_VALUE_F64:e} \
                 overflow double-precision distances (rescale the data)",
                bad / dim,
                bad % dim,
                values[bad]
            )));
        }
        if let Some(l) = &labels
            && l.len() != n
        {
            return Err(Error::Shape(format!(
                "{} labels for {n} data rows",
                l.len()
            )));
        }
        let mut set = DataSet {
            n,
            dim,
            values,
            labels,
            image,
        };
        set.sort_by_label();
        Ok(set)
    }

    /// Sorts the rows by label in place (one row of scratch, no second copy of the values).
    fn sort_by_label(&mut self) {
        let Some(labels) = &mut self.labels else {
            return;
        };
        if labels.is_sorted() {
            return;
        }
        let mut order: Vec<usize> = (0..self.n).collect();
        order.sort_by_key(|&j| labels[j]);
        let sorted: Vec<u32> = order.iter().map(|&j| labels[j]).collect();
        *labels = sorted;
        // Row i of the result is row order[i] of the input: follow each cycle of the permutation.
        let dim = self.dim;
        let mut scratch = vec![0.0; dim];
        let mut done = vec![false; self.n];
        for start in 0..self.n {
            if done[start] || order[start] == start {
                continue;
            }
            scratch.copy_from_slice(&self.values[start * dim..(start + 1) * dim]);
            let mut at = start;
            loop {
                done[at] = true;
                let from = order[at];
                if from == start {
                    self.values[at * dim..(at + 1) * dim].copy_from_slice(&scratch);
                    break;
                }
                self.values
                    .copy_within(from * dim..(from + 1) * dim, at * dim);
                at = from;
            }
        }
    }

    /// Checks the values against what `precision`'s arithmetic can hold; `label` names the data.
    pub fn check_precision(&self, precision: Precision, label: &str) -> Result<()> {
        if precision == Precision::F64 {
            return Ok(());
        }
        match self.values.iter().position(|v| v.abs() > MAX_DATA_VALUE) {
            Some(bad) => Err(Error::Data(format!(
                "{label}: value at row {}, column {} is {:e}; single precision (--precision f32) \
                 holds data up to ±{MAX_DATA_VALUE:e}: rescale the data or use --precision f64",
                bad / self.dim,
                bad % self.dim,
                self.values[bad]
            ))),
            None => Ok(()),
        }
    }

    pub fn row(&self, j: usize) -> &[f64] {
        &self.values[j * self.dim..(j + 1) * self.dim]
    }

    /// Number of classes (max label + 1), 0 when unlabelled.
    pub fn num_classes(&self) -> usize {
        self.labels
            .as_ref()
            .and_then(|l| l.iter().max())
            .map_or(0, |&m| m as usize + 1)
    }

    /// [start, end) of class c's rows (empty when the class has no rows).
    pub fn class_range(&self, c: u32) -> (usize, usize) {
        match &self.labels {
            Some(l) => (
                l.partition_point(|&v| v < c),
                l.partition_point(|&v| v <= c),
            ),
            None => (0, self.n),
        }
    }
}

/// Which data to sample. The names are shared by the CLI (`--data`), the app and preset files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", from = "DataSpecFields")]
pub enum DataSpec {
    /// A 2-D toy (or the 1-D two Diracs) with `points` samples.
    Toy { name: String, points: usize },
    /// N(0, diag(spectrum)), exact in closed form.
    Gaussian { spectrum: Vec<f64> },
    /// The UCI 8x8 digits (1797, 64), 10 classes.
    Digits,
    /// The same digits with every pixel thresholded to +-1 (`digits:binary`).
    BinaryDigits,
    /// An [N, D] .npy with optional [N] integer labels.
    Npy {
        path: PathBuf,
        labels: Option<PathBuf>,
    },
    /// A folder of images, resized to size x size, grey or RGB.
    Images { dir: PathBuf, size: u32, rgb: bool },
}

/// `DataSpec` as read from JSON. Serde lets a unit variant (`digits`) carry any fields; an
/// empty struct variant refuses them, so a typo there is an error too.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum DataSpecFields {
    Toy {
        name: String,
        points: usize,
    },
    Gaussian {
        spectrum: Vec<f64>,
    },
    Digits {},
    BinaryDigits {},
    Npy {
        path: PathBuf,
        labels: Option<PathBuf>,
    },
    Images {
        dir: PathBuf,
        size: u32,
        rgb: bool,
    },
}

impl From<DataSpecFields> for DataSpec {
    fn from(fields: DataSpecFields) -> Self {
        match fields {
            DataSpecFields::Toy { name, points } => DataSpec::Toy { name, points },
            DataSpecFields::Gaussian { spectrum } => DataSpec::Gaussian { spectrum },
            DataSpecFields::Digits {} => DataSpec::Digits,
            DataSpecFields::BinaryDigits {} => DataSpec::BinaryDigits,
            DataSpecFields::Npy { path, labels } => DataSpec::Npy { path, labels },
            DataSpecFields::Images { dir, size, rgb } => DataSpec::Images { dir, size, rgb },
        }
    }
}

impl Default for DataSpec {
    fn default() -> Self {
        DataSpec::Toy {
            name: "8gaussians".into(),
            points: 4096,
        }
    }
}

impl DataSpec {
    /// Parses `toy:NAME | gaussian:l1,l2,... | digits | digits:binary | npy:PATH | images:DIR`;
    /// `labels`, toy `points`, image `size` and `rgb` come from their own flags.
    pub fn parse(
        s: &str,
        labels: Option<PathBuf>,
        points: usize,
        image_size: u32,
        rgb: bool,
    ) -> Result<Self> {
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        let spec = match kind {
            "toy" => {
                toys::check_name(arg)?;
                DataSpec::Toy {
                    name: arg.to_string(),
                    points,
                }
            }
            "gaussian" => {
                let spectrum = arg
                    .split(',')
                    .map(|v| {
                        v.trim().parse::<f64>().map_err(|_| {
                            Error::InvalidSpec(format!(
                                "--data gaussian: eigenvalue '{v}' is not a number"
                            ))
                        })
                    })
                    .collect::<Result<Vec<f64>>>()?;
                DataSpec::Gaussian { spectrum }
            }
            "digits" if arg.is_empty() => DataSpec::Digits,
            "digits" if arg == "binary" => DataSpec::BinaryDigits,
            "npy" if !arg.is_empty() => DataSpec::Npy {
                path: arg.into(),
                labels: labels.clone(),
            },
            "images" if !arg.is_empty() => DataSpec::Images {
                dir: arg.into(),
                size: image_size,
                rgb,
            },
            _ => {
                return Err(Error::InvalidSpec(format!(
                    "unknown --data '{s}' (toy:NAME, gaussian:l1,l2,..., digits, digits:binary, \
                     npy:PATH, images:DIR)"
                )));
            }
        };
        if labels.is_some() && !matches!(spec, DataSpec::Npy { .. }) {
            return Err(Error::InvalidSpec(
                "--labels goes with --data npy:PATH".into(),
            ));
        }
        Ok(spec)
    }

    /// Checks what can be checked without reading any file.
    pub fn validate(&self) -> Result<()> {
        match self {
            DataSpec::Toy { name, points } => toys::check(name, *points),
            DataSpec::Gaussian { spectrum } => {
                if spectrum.is_empty() {
                    return Err(Error::InvalidSpec(
                        "--data gaussian: needs at least one eigenvalue".into(),
                    ));
                }
                match spectrum.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
                    Some(bad) => Err(Error::InvalidSpec(format!(
                        "--data gaussian: eigenvalues must be positive and finite, got {bad}"
                    ))),
                    None => Ok(()),
                }
            }
            DataSpec::Digits | DataSpec::BinaryDigits => Ok(()),
            DataSpec::Npy { path, .. } if path.as_os_str().is_empty() => Err(Error::InvalidSpec(
                "--data npy:PATH needs the path of a .npy file".into(),
            )),
            DataSpec::Npy { .. } => Ok(()),
            DataSpec::Images { dir, .. } if dir.as_os_str().is_empty() => Err(Error::InvalidSpec(
                "--data images:DIR needs the path of a folder".into(),
            )),
            DataSpec::Images { size, .. } => folder::check_size(*size),
        }
    }

    /// (rows, values per row) of the data once loaded, from .npy headers and folder listings
    /// alone; `None` for the closed-form models, whose memory does not grow with data.
    pub fn peek_shape(&self) -> Result<Option<(usize, usize)>> {
        Ok(match self {
            DataSpec::Toy { name, points } if toys::SAMPLED.contains(&name.as_str()) => {
                Some((*points, 2))
            }
            DataSpec::Toy { .. } | DataSpec::Gaussian { .. } => None,
            DataSpec::Digits | DataSpec::BinaryDigits => Some((digits::ROWS, digits::DIM)),
            DataSpec::Npy { path, .. } => {
                Some(npy::rows_and_dim(&npy::read_header(path)?.shape, path)?)
            }
            DataSpec::Images { dir, size, rgb } => {
                Some((folder::list(dir)?.len(), folder::image_dim(*size, *rgb)))
            }
        })
    }

    /// A short label for titles and file names.
    pub fn label(&self) -> String {
        match self {
            DataSpec::Toy { name, .. } => format!("toy:{name}"),
            DataSpec::Gaussian { spectrum } => format!("gaussian ({} dims)", spectrum.len()),
            DataSpec::Digits => "digits".into(),
            DataSpec::BinaryDigits => "digits:binary".into(),
            DataSpec::Npy { path, .. } => format!("npy:{}", path.display()),
            DataSpec::Images { dir, .. } => format!("images:{}", dir.display()),
        }
    }

    /// Loads the data (reads files; may take a while for large folders).
    pub fn load(&self) -> Result<Source> {
        match self {
            DataSpec::Toy { name, points } => toys::load(name, *points),
            DataSpec::Gaussian { spectrum } => {
                Ok(Source::Gaussian(GaussianModel::diagonal(spectrum.clone())?))
            }
            DataSpec::Digits => Ok(Source::Empirical(digits::load()?)),
            DataSpec::BinaryDigits => Ok(Source::Empirical(digits::load_binary()?)),
            DataSpec::Npy { path, labels } => Ok(Source::Empirical(npy::load_dataset(
                path,
                labels.as_deref(),
            )?)),
            DataSpec::Images { dir, size, rgb } => {
                Ok(Source::Empirical(folder::load(dir, *size, *rgb)?))
            }
        }
    }
}

/// Loaded data: a finite set, or a model known in closed form.
#[derive(Clone, Debug)]
pub enum Source {
    Empirical(DataSet),
    Gaussian(GaussianModel),
    Mixture(MixtureModel),
}

impl Source {
    pub fn dim(&self) -> usize {
        match self {
            Source::Empirical(s) => s.dim,
            Source::Gaussian(g) => g.dim(),
            Source::Mixture(m) => m.dim(),
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            Source::Empirical(s) => s.num_classes(),
            Source::Gaussian(_) => 0,
            Source::Mixture(m) => m.num_classes(),
        }
    }

    pub fn image(&self) -> Option<ImageShape> {
        match self {
            Source::Empirical(s) => s.image,
            _ => None,
        }
    }

    /// The eigenvalues of the data's covariance (the tangent law's coefficient depends on them):
    /// exact for a Gaussian, else estimated from up to 4096 points, floored at 1e-8; above 128
    /// dimensions only the diagonal.
    pub fn covariance_spectrum(&self) -> Vec<f64> {
        if let Source::Gaussian(g) = self {
            return g.eigenvalues.clone();
        }
        let pts = self.display_points(4096);
        let (n, d) = (pts.n as f64, pts.dim);
        let mean: Vec<f64> = (0..d)
            .map(|k| (0..pts.n).map(|j| pts.values[j * d + k]).sum::<f64>() / n)
            .collect();
        let cov_entry = |a: usize, b: usize| {
            (0..pts.n)
                .map(|j| (pts.values[j * d + a] - mean[a]) * (pts.values[j * d + b] - mean[b]))
                .sum::<f64>()
                / n
        };
        let floor = 1e-8;
        if d <= 128 {
            let cov: Vec<f64> = (0..d * d).map(|i| cov_entry(i / d, i % d)).collect();
            symmetric_eigen(&cov, d)
                .0
                .into_iter()
                .map(|l| l.max(floor))
                .collect()
        } else {
            (0..d).map(|k| cov_entry(k, k).max(floor)).collect()
        }
    }

    /// Points to draw the data with: the set itself, or `n` samples of the model.
    pub fn display_points(&self, n: usize) -> DataSet {
        match self {
            Source::Empirical(s) => s.clone(),
            Source::Gaussian(g) => g.sample(n, 11),
            Source::Mixture(m) => m.sample(n, 11),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_parse_plain_or_binary_and_nothing_else() -> Result<()> {
        let parse = |s: &str| DataSpec::parse(s, None, 100, 32, false);
        assert_eq!(parse("digits")?, DataSpec::Digits);
        assert_eq!(parse("digits:binary")?, DataSpec::BinaryDigits);
        assert!(parse("digits:bin").is_err());
        assert_eq!(DataSpec::BinaryDigits.label(), "digits:binary");
        let json = serde_json::to_string(&DataSpec::BinaryDigits)
            .map_err(|e| Error::Data(e.to_string()))?;
        assert_eq!(json, r#"{"kind":"binary_digits"}"#);
        let back: DataSpec = serde_json::from_str(&json).map_err(|e| Error::Data(e.to_string()))?;
        assert_eq!(back, DataSpec::BinaryDigits);
        Ok(())
    }

    #[test]
    fn rows_are_sorted_by_label_in_place_keeping_their_order_within_a_class() -> Result<()> {
        // Row j holds (j, 10 j); labels 2, 0, 1, 0, 2, 1, 0.
        let labels = vec![2, 0, 1, 0, 2, 1, 0];
        let values: Vec<f64> = (0..7).flat_map(|j| [j as f64, 10.0 * j as f64]).collect();
        let set = DataSet::new(7, 2, values, Some(labels), None)?;
        assert_eq!(set.labels, Some(vec![0, 0, 0, 1, 1, 2, 2]));
        let rows: Vec<f64> = (0..7).map(|j| set.row(j)[0]).collect();
        assert_eq!(rows, [1.0, 3.0, 6.0, 2.0, 5.0, 0.0, 4.0]);
        assert!((0..7).all(|j| set.row(j)[1] == 10.0 * set.row(j)[0]));
        assert_eq!(set.class_range(1), (3, 5));
        Ok(())
    }

    #[test]
    fn data_beyond_single_precision_needs_f64_and_says_so() -> Result<()> {
        let set = DataSet::new(2, 1, vec![1.0, 1e10], None, None)?;
        set.check_precision(Precision::F64, "npy:a.npy")?;
        let e = set
            .check_precision(Precision::F32, "npy:a.npy")
            .map_err(|e| e.to_string());
        assert!(e.is_err_and(|e| e.contains("npy:a.npy") && e.contains("--precision f64")));
        assert!(DataSet::new(1, 1, vec![1e101], None, None).is_err());
        assert!(DataSet::new(1, 1, vec![f64::NAN], None, None).is_err());
        Ok(())
    }

    #[test]
    fn specs_are_checked_before_any_file_is_read() {
        let bad = [
            DataSpec::Toy {
                name: "moons".into(),
                points: 0,
            },
            DataSpec::Toy {
                name: "nope".into(),
                points: 10,
            },
            DataSpec::Gaussian { spectrum: vec![] },
            DataSpec::Gaussian {
                spectrum: vec![1.0, f64::INFINITY],
            },
            DataSpec::Npy {
                path: "".into(),
                labels: None,
            },
            DataSpec::Images {
                dir: "photos".into(),
                size: 1,
                rgb: false,
            },
        ];
        for spec in bad {
            assert!(spec.validate().is_err(), "{spec:?}");
        }
        assert!(DataSpec::Digits.validate().is_ok());
    }
}
