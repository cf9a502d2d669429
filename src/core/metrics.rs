//! Sample-quality metrics against the data: sliced Wasserstein-2 (seeded fixed projections),
//! MMD with a Gaussian kernel (median bandwidth), mean distance to the nearest training point
//! (memorisation), and class accuracy under a class posterior the caller supplies (the exact one
//! at sigma_min comes from models::quality::class_posterior).
//!
//! Every metric but class accuracy reads the data through dot products a.b^T only, which the
//! caller supplies (`Products`): `dot_products` here (plain loops, core stays single-threaded),
//! a multithreaded GEMM from models::quality. Distances are taken in Gram form
//! |a|^2 + |b|^2 - 2 a.b; the nearest-point distance recomputes the candidates within the Gram
//! form's rounding bound explicitly, so a copy of a data point is at distance exactly 0.

use serde::{Deserialize, Serialize};

use super::noise::{Rng, choose_subset};
use super::{Batch, dot, norm};
use crate::error::{Error, Result};

/// Projections the sliced W2 averages over by default.
pub const DEFAULT_PROJECTIONS: usize = 256;
/// Points per set the MMD uses at most (a seeded subset beyond): its cost is quadratic.
pub const DEFAULT_MMD_POINTS: usize = 2000;

fn same_dim(a: &Batch, b: &Batch) -> Result<()> {
    if a.dim != b.dim {
        return Err(Error::Shape(format!(
            "cannot compare samples of dimension {} with data of dimension {}",
            a.dim, b.dim
        )));
    }
    if a.rows == 0 || b.rows == 0 {
        return Err(Error::Shape(
            "a metric needs at least one point on each side".into(),
        ));
    }
    if !a.is_finite() || !b.is_finite() {
        return Err(Error::NonFinite(
            "samples or data hold NaN or infinity".into(),
        ));
    }
    Ok(())
}

/// Squared W2 between two 1-D empirical distributions (sorted in place), exact for any sizes:
/// the integral over u in (0, 1) of (F_a^-1(u) - F_b^-1(u))^2.
pub fn w2_squared_1d(a: &mut [f64], b: &mut [f64]) -> f64 {
    // Unstable: values equal under total_cmp are the same bits, so the order is the same.
    a.sort_unstable_by(f64::total_cmp);
    b.sort_unstable_by(f64::total_cmp);
    let (n, m) = (a.len(), b.len());
    let (mut i, mut j, mut u, mut total) = (0, 0, 0.0, 0.0);
    while i < n && j < m {
        // Next breakpoint of either quantile function.
        let (next_a, next_b) = ((i + 1) as f64 / n as f64, (j + 1) as f64 / m as f64);
        let next = next_a.min(next_b);
        total += (a[i] - b[j]).powi(2) * (next - u);
        u = next;
        if next_a <= next {
            i += 1;
        }
        if next_b <= next {
            j += 1;
        }
    }
    total
}

/// `count` unit vectors in `dim` dimensions, uniform on the sphere, from `seed`.
pub fn projections(dim: usize, count: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            loop {
                let v: Vec<f64> = (0..dim).map(|_| rng.normal()).collect();
                let n = norm(&v);
                if n > 1e-12 {
                    break v.iter().map(|x| x / n).collect();
                }
            }
        })
        .collect()
}

/// The products a.b^T of every row of `a` with every row of `b`, row-major [a.rows x b.rows].
pub type Products<'a> = &'a dyn Fn(&Batch, &Batch) -> Vec<f64>;

/// `Products` by plain loops.
pub fn dot_products(a: &Batch, b: &Batch) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.rows * b.rows);
    for i in 0..a.rows {
        out.extend((0..b.rows).map(|j| dot(a.row(i), b.row(j))));
    }
    out
}

fn squared_norms(set: &Batch) -> Vec<f64> {
    (0..set.rows).map(|r| dot(set.row(r), set.row(r))).collect()
}

/// The squared distances of every row of `a` to every row of `b` in Gram form, [a.rows x b.rows],
/// clamped at 0 (rounding may take a tiny one below).
pub fn squared_distances(a: &Batch, b: &Batch, products: Products) -> Vec<f64> {
    let (na, nb) = (squared_norms(a), squared_norms(b));
    let mut d = products(a, b);
    for (i, row) in d.chunks_mut(b.rows.max(1)).enumerate() {
        for (v, nb_j) in row.iter_mut().zip(&nb) {
            *v = (na[i] + nb_j - 2.0 * *v).max(0.0);
        }
    }
    d
}

/// Sliced W2: sqrt of the mean over projections theta of W2^2(theta . a, theta . b).
pub fn sliced_w2(a: &Batch, b: &Batch, projections_count: usize, seed: u64) -> Result<f64> {
    sliced_w2_with(a, b, projections_count, seed, &dot_products)
}

/// `sliced_w2` with the projections taken by `products`.
pub fn sliced_w2_with(
    a: &Batch,
    b: &Batch,
    projections_count: usize,
    seed: u64,
    products: Products,
) -> Result<f64> {
    same_dim(a, b)?;
    let count = projections_count.max(1);
    let dirs = projections(a.dim, count, seed).concat();
    let dirs = Batch::from_vec(count, a.dim, dirs)?;
    // Projected sets, one row per direction ([count x rows]): each direction's values contiguous.
    let (pa, pb) = (products(&dirs, a), products(&dirs, b));
    let total: f64 = (0..count)
        .map(|k| {
            w2_squared_1d(
                &mut pa[k * a.rows..(k + 1) * a.rows].to_vec(),
                &mut pb[k * b.rows..(k + 1) * b.rows].to_vec(),
            )
        })
        .sum();
    Ok((total / count as f64).sqrt())
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Row blocks of `symmetric_distances`: the products of blocks on and below the diagonal,
/// (BLOCKS + 1) / (2 BLOCKS) of the whole Gram matrix's.
const SYMMETRIC_BLOCKS: usize = 4;

/// `squared_distances(set, set)`, [rows x rows], from the products of the row blocks on and
/// below the diagonal only, each mirrored above it: the distances are symmetric.
fn symmetric_distances(set: &Batch, products: Products) -> Result<Vec<f64>> {
    let rows = set.rows;
    let size = rows.div_ceil(SYMMETRIC_BLOCKS).max(1);
    let block = |i: usize| -> Result<Batch> {
        let range = i * size..((i + 1) * size).min(rows);
        Batch::from_vec(
            range.len(),
            set.dim,
            set.data[range.start * set.dim..range.end * set.dim].to_vec(),
        )
    };
    let mut distances = vec![0.0; rows * rows];
    for i in 0..rows.div_ceil(size) {
        let lower = block(i)?;
        for j in 0..=i {
            let upper = if j == i { lower.clone() } else { block(j)? };
            let part = squared_distances(&lower, &upper, products);
            for (r, values) in part.chunks(upper.rows.max(1)).enumerate() {
                for (c, &d) in values.iter().enumerate() {
                    let (row, column) = (i * size + r, j * size + c);
                    distances[row * rows + column] = d;
                    distances[column * rows + row] = d;
                }
            }
        }
    }
    Ok(distances)
}

/// The squared distances within the union of two sets, from one Gram matrix: the blocks a-a,
/// b-b and a-b that the median heuristic and the MMD read.
struct Pooled {
    distances: Vec<f64>,
    rows_a: usize,
    rows: usize,
}

impl Pooled {
    fn new(a: &Batch, b: &Batch, products: Products) -> Result<Self> {
        if a.dim != b.dim {
            return Err(Error::Shape(format!(
                "cannot pool points of dimension {} with points of dimension {}",
                a.dim, b.dim
            )));
        }
        let mut values = a.data.clone();
        values.extend_from_slice(&b.data);
        let pooled = Batch::from_vec(a.rows + b.rows, a.dim, values)?;
        Ok(Pooled {
            distances: symmetric_distances(&pooled, products)?,
            rows_a: a.rows,
            rows: pooled.rows,
        })
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.distances[i * self.rows + j]
    }

    /// The median of the pairwise distances (the median heuristic); 0 for a single point.
    fn median_distance(&self) -> f64 {
        let mut below: Vec<f64> = (0..self.rows)
            .flat_map(|i| (0..i).map(move |j| (i, j)))
            .map(|(i, j)| self.at(i, j))
            .collect();
        if below.is_empty() {
            return 0.0;
        }
        // The median without sorting all O(n^2) distances.
        let mid = below.len() / 2;
        below.select_nth_unstable_by(mid, f64::total_cmp).1.sqrt()
    }

    /// The biased MMD with the kernel exp(-|x - y|^2 / (2 h^2)).
    fn mmd(&self, bandwidth: f64) -> f64 {
        let scale = -0.5 / (bandwidth * bandwidth);
        let a = 0..self.rows_a;
        let b = self.rows_a..self.rows;
        let kernel = |i: usize, j: usize| (scale * self.at(i, j)).exp();
        let mean_kernel = |p: std::ops::Range<usize>, q: std::ops::Range<usize>| -> f64 {
            let count = (p.len() * q.len()) as f64;
            let total: f64 = p
                .flat_map(|i| q.clone().map(move |j| (i, j)))
                .map(|(i, j)| kernel(i, j))
                .sum();
            total / count
        };
        // A set with itself: the kernel is symmetric and 1 on the diagonal (distance 0), so
        // the pairs below the diagonal twice, half the exps.
        let mean_within = |p: std::ops::Range<usize>| -> f64 {
            let count = (p.len() * p.len()) as f64;
            let below: f64 = p
                .clone()
                .flat_map(|i| (p.start..i).map(move |j| (i, j)))
                .map(|(i, j)| kernel(i, j))
                .sum();
            (2.0 * below + p.len() as f64) / count
        };
        let squared = mean_within(a.clone()) + mean_within(b.clone()) - 2.0 * mean_kernel(a, b);
        squared.max(0.0).sqrt()
    }
}

/// The median of the pairwise distances in the union of `a` and `b` (the median heuristic).
pub fn median_bandwidth(a: &Batch, b: &Batch) -> f64 {
    // Sets of different dimensions have no distances: NaN, as for no pairs at all.
    Pooled::new(a, b, &dot_products).map_or(f64::NAN, |p| p.median_distance())
}

/// MMD with the kernel exp(-|x - y|^2 / (2 h^2)), the biased (V-statistic) estimate:
/// sqrt(max(0, mean k(a, a') + mean k(b, b') - 2 mean k(a, b))). Zero for a set with itself.
pub fn mmd_with_bandwidth(a: &Batch, b: &Batch, bandwidth: f64) -> Result<f64> {
    same_dim(a, b)?;
    if !(bandwidth.is_finite() && bandwidth > 0.0) {
        return Err(Error::InvalidSpec(format!(
            "the MMD bandwidth must be positive, got {bandwidth}"
        )));
    }
    Ok(Pooled::new(a, b, &dot_products)?.mmd(bandwidth))
}

/// At most `max_points` rows of `set`, a seeded subset beyond.
fn subset(set: &Batch, max_points: usize, seed: u64) -> Batch {
    if set.rows <= max_points {
        return set.clone();
    }
    set.select_rows(&choose_subset(seed, set.rows, max_points))
}

/// MMD with the median-heuristic bandwidth, on at most `max_points` rows of each set.
/// Returns (mmd, bandwidth).
pub fn mmd(a: &Batch, b: &Batch, max_points: usize, seed: u64) -> Result<(f64, f64)> {
    mmd_with(a, b, max_points, seed, &dot_products)
}

/// `mmd` with the distances taken by `products`.
pub fn mmd_with(
    a: &Batch,
    b: &Batch,
    max_points: usize,
    seed: u64,
    products: Products,
) -> Result<(f64, f64)> {
    same_dim(a, b)?;
    let a = subset(a, max_points, seed);
    let b = subset(b, max_points, seed.wrapping_add(1));
    let pooled = Pooled::new(&a, &b, products)?;
    let bandwidth = pooled.median_distance();
    if !(bandwidth.is_finite() && bandwidth > 0.0) {
        // Every point is the same: the sets are identical.
        return Ok((0.0, 0.0));
    }
    Ok((pooled.mmd(bandwidth), bandwidth))
}

/// Mean over samples of the distance to the nearest data point: small when a model reproduces
/// its training points (memorisation), about the data's own spacing when it generalises.
pub fn mean_nearest_distance(samples: &Batch, data: &Batch) -> Result<f64> {
    mean_nearest_distance_with(samples, data, &dot_products)
}

/// `mean_nearest_distance` with the candidates found by `products` (Gram form) and the
/// distances of those within its rounding bound of the nearest recomputed explicitly: exact.
pub fn mean_nearest_distance_with(
    samples: &Batch,
    data: &Batch,
    products: Products,
) -> Result<f64> {
    same_dim(samples, data)?;
    let gram = squared_distances(samples, data, products);
    let largest_norm = squared_norms(data).into_iter().fold(0.0, f64::max);
    // |fl(a.b) - a.b| <= dim eps |a| |b| per product; the norms the same: a bound on the Gram
    // form's error in any squared distance of this row, with room for the summation order.
    let rounding = 4.0 * (samples.dim as f64 + 2.0) * f64::EPSILON;
    let total: f64 = (0..samples.rows)
        .map(|r| {
            let row = &gram[r * data.rows..(r + 1) * data.rows];
            let bound = rounding * (dot(samples.row(r), samples.row(r)) + largest_norm);
            let nearest = row.iter().copied().fold(f64::INFINITY, f64::min);
            row.iter()
                .enumerate()
                .filter(|&(_, &d)| d <= nearest + 2.0 * bound)
                .map(|(j, _)| squared_distance(samples.row(r), data.row(j)))
                .fold(f64::INFINITY, f64::min)
                .sqrt()
        })
        .sum();
    Ok(total / samples.rows as f64)
}

/// The fraction of samples whose most probable class under `posterior` (one probability vector
/// per row) is the class they were generated for.
pub fn class_accuracy(
    samples: &Batch,
    intended: &[u32],
    posterior: &dyn Fn(&Batch) -> Result<Vec<Vec<f64>>>,
) -> Result<f64> {
    if intended.len() != samples.rows || samples.rows == 0 {
        return Err(Error::Shape(format!(
            "{} intended classes for {} samples",
            intended.len(),
            samples.rows
        )));
    }
    let probabilities = posterior(samples)?;
    if probabilities.len() != samples.rows {
        return Err(Error::Shape("the class posterior skipped rows".into()));
    }
    let hits = probabilities
        .iter()
        .zip(intended)
        .filter(|&(p, &c)| {
            let best = p
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .map(|(k, _)| k);
            best == Some(c as usize)
        })
        .count();
    Ok(hits as f64 / samples.rows as f64)
}

/// The quality of a set of samples against the data, as written to run.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub sliced_w2: f64,
    pub mmd: f64,
    pub mmd_bandwidth: f64,
    pub nearest_distance: f64,
    /// Class-conditional samples only: accuracy under the exact class posterior at sigma_min.
    pub class_accuracy: Option<f64>,
}

impl Quality {
    /// Every metric but class accuracy (which needs a posterior: models::quality adds it), the
    /// dot products taken by `products`.
    pub fn measure(samples: &Batch, data: &Batch, seed: u64, products: Products) -> Result<Self> {
        let (mmd, mmd_bandwidth) = mmd_with(samples, data, DEFAULT_MMD_POINTS, seed, products)?;
        Ok(Quality {
            sliced_w2: sliced_w2_with(samples, data, DEFAULT_PROJECTIONS, seed, products)?,
            mmd,
            mmd_bandwidth,
            nearest_distance: mean_nearest_distance_with(samples, data, products)?,
            class_accuracy: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::noise::initial_noise;

    /// n points of N(mean, std^2 I).
    fn gaussian(n: usize, mean: &[f64], std: f64, seed: u64) -> Batch {
        let mut z = initial_noise(seed, n, mean.len());
        for r in 0..n {
            for (v, m) in z.row_mut(r).iter_mut().zip(mean) {
                *v = m + std * *v;
            }
        }
        z
    }

    #[test]
    fn one_dimensional_w2_is_exact_for_unequal_sizes() {
        assert_eq!(w2_squared_1d(&mut [1.0, 0.0], &mut [0.0, 1.0]), 0.0);
        // Half the mass moves by 1, half by 3: 0.5 + 4.5.
        assert!((w2_squared_1d(&mut [0.0], &mut [1.0, 3.0]) - 5.0).abs() < 1e-12);
        // A shift moves everything by the shift.
        assert!((w2_squared_1d(&mut [0.0, 1.0, 2.0], &mut [0.5, 1.5, 2.5]) - 0.25).abs() < 1e-12);
        // Quantile coupling of thirds against halves: (0-0)^2/3 + (1-0)^2/6 + (1-1)^2/6 + (2-1)^2/3.
        let w = w2_squared_1d(&mut [0.0, 1.0, 2.0], &mut [0.0, 1.0]);
        assert!((w - (1.0 / 6.0 + 1.0 / 3.0)).abs() < 1e-12, "{w}");
    }

    #[test]
    fn sliced_w2_between_gaussians_matches_the_closed_form() -> Result<()> {
        // N(m1, s1^2 I) vs N(m2, s2^2 I): along a uniform direction W2^2 = (theta.dm)^2 +
        // (s1 - s2)^2, whose mean over the sphere is |dm|^2 / d + (s1 - s2)^2.
        let (d, n) = (3, 20_000);
        let a = gaussian(n, &[0.0, 0.0, 0.0], 1.0, 1);
        let b = gaussian(n, &[1.5, 0.0, 0.0], 2.0, 2);
        let expect = (1.5f64 * 1.5 / d as f64 + 1.0).sqrt();
        let got = sliced_w2(&a, &b, 512, 7)?;
        assert!((got / expect - 1.0).abs() < 0.03, "{got} vs {expect}");
        // The same seed gives the same projections, so the same number.
        assert_eq!(got, sliced_w2(&a, &b, 512, 7)?);
        assert!(sliced_w2(&a, &a, 16, 1)? < 1e-12);
        assert!(sliced_w2(&a, &gaussian(5, &[0.0, 0.0], 1.0, 3), 4, 1).is_err());
        Ok(())
    }

    #[test]
    fn mmd_is_zero_for_a_set_with_itself_and_matches_the_gaussian_closed_form() -> Result<()> {
        let a = gaussian(1500, &[0.0, 0.0], 1.0, 4);
        let (same, h) = mmd(&a, &a, DEFAULT_MMD_POINTS, 0)?;
        assert!(same < 1e-6 && h > 0.0, "{same} {h}");
        // N(0, I) vs N(mu, I) in d = 2 with bandwidth h: E k = (h^2/(h^2+2))^(d/2)
        // exp(-|mu|^2 / (2 (h^2 + 2))), so MMD^2 = 2 (h^2/(h^2+2)) (1 - exp(-|mu|^2/(2(h^2+2)))).
        let b = gaussian(1500, &[1.0, 0.0], 1.0, 5);
        let h = 1.0;
        let expect = (2.0 * (1.0 / 3.0) * (1.0 - (-1.0f64 / 6.0).exp())).sqrt();
        let got = mmd_with_bandwidth(&a, &b, h)?;
        // The V-statistic's bias is O(1/n) in MMD^2: ~1e-3 here, against MMD^2 ~0.1.
        assert!((got / expect - 1.0).abs() < 0.05, "{got} vs {expect}");
        // Two unit Gaussians in 2-D are sqrt(2) x Rayleigh apart, median sqrt(4 ln 2) ~ 1.67;
        // the shift of one of them adds a little.
        let (_, h_median) = mmd(&a, &b, 500, 3)?;
        assert!((1.6..2.1).contains(&h_median), "{h_median}");
        Ok(())
    }

    #[test]
    fn nearest_distance_and_class_accuracy() -> Result<()> {
        let data = Batch::from_vec(3, 2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 5.0])?;
        let samples = Batch::from_vec(2, 2, vec![0.0, 0.25, 1.0, -1.0])?;
        assert!((mean_nearest_distance(&samples, &data)? - (0.25 + 1.0) / 2.0).abs() < 1e-12);
        // A posterior that says class 1 when x > 0.5.
        let posterior = |x: &Batch| -> Result<Vec<Vec<f64>>> {
            Ok((0..x.rows)
                .map(|r| {
                    if x.row(r)[0] > 0.5 {
                        vec![0.1, 0.9]
                    } else {
                        vec![0.8, 0.2]
                    }
                })
                .collect())
        };
        assert_eq!(class_accuracy(&samples, &[0, 1], &posterior)?, 1.0);
        assert_eq!(class_accuracy(&samples, &[1, 1], &posterior)?, 0.5);
        assert!(class_accuracy(&samples, &[1], &posterior).is_err());
        Ok(())
    }

    /// The squared distances by explicit differences, row-major.
    fn brute_distances(a: &Batch, b: &Batch) -> Vec<f64> {
        let mut out = Vec::new();
        for i in 0..a.rows {
            out.extend((0..b.rows).map(|j| squared_distance(a.row(i), b.row(j))));
        }
        out
    }

    #[test]
    fn gram_form_distances_match_explicit_differences() -> Result<()> {
        // Far from the origin, where |a|^2 + |b|^2 - 2 a.b cancels most.
        let a = gaussian(40, &[30.0; 64], 1.0, 8);
        let b = gaussian(70, &[30.0; 64], 1.0, 9);
        let (gram, brute) = (
            squared_distances(&a, &b, &dot_products),
            brute_distances(&a, &b),
        );
        for (g, e) in gram.iter().zip(&brute) {
            assert!((g - e).abs() <= 1e-9 * e.max(1.0), "{g} vs {e}");
        }
        Ok(())
    }

    #[test]
    fn symmetric_distances_equal_the_whole_gram_form_for_every_block_split() -> Result<()> {
        // Sizes below, at and past the block count, and one that leaves a short last block.
        for rows in [0, 1, 3, 4, 9, 23] {
            let set = gaussian(rows, &[2.0; 5], 1.0, 11);
            let (half, whole) = (
                symmetric_distances(&set, &dot_products)?,
                brute_distances(&set, &set),
            );
            assert_eq!(half.len(), rows * rows);
            for (i, (h, e)) in half.iter().zip(&whole).enumerate() {
                assert!(
                    (h - e).abs() <= 1e-12 * e.max(1.0),
                    "{rows} rows, entry {i}: {h} vs {e}"
                );
                assert_eq!(
                    *h,
                    half[(i % rows.max(1)) * rows + i / rows.max(1)],
                    "not symmetric"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn the_nearest_distance_is_exact_for_copies_and_near_ties() -> Result<()> {
        let data = gaussian(300, &[50.0; 16], 2.0, 10);
        // Copies of data points, points a hair from one, and a row equidistant from two points.
        let mut rows = Vec::new();
        rows.extend_from_slice(data.row(3));
        rows.extend_from_slice(data.row(200));
        rows.extend(data.row(7).iter().map(|v| v + 1e-7));
        rows.extend(
            data.row(11)
                .iter()
                .zip(data.row(12))
                .map(|(p, q)| 0.5 * (p + q)),
        );
        let samples = Batch::from_vec(4, 16, rows)?;
        let brute = (0..samples.rows)
            .map(|r| {
                (0..data.rows)
                    .map(|j| squared_distance(samples.row(r), data.row(j)))
                    .fold(f64::INFINITY, f64::min)
                    .sqrt()
            })
            .sum::<f64>()
            / samples.rows as f64;
        let got = mean_nearest_distance(&samples, &data)?;
        assert_eq!(got, brute);
        // The two copies contribute exactly 0: in Gram form alone each would be ~1e-6 off.
        let copies = Batch::from_vec(2, 16, samples.data[..32].to_vec())?;
        assert_eq!(mean_nearest_distance(&copies, &data)?, 0.0);
        Ok(())
    }

    #[test]
    fn mmd_and_median_from_one_gram_match_the_definitions() -> Result<()> {
        let a = gaussian(60, &[5.0, -2.0, 1.0], 1.0, 11);
        let b = gaussian(90, &[5.5, -2.0, 1.0], 1.5, 12);
        let h = 1.3;
        let kernel_mean = |p: &Batch, q: &Batch| -> f64 {
            brute_distances(p, q)
                .iter()
                .map(|d| (-d / (2.0 * h * h)).exp())
                .sum::<f64>()
                / (p.rows * q.rows) as f64
        };
        let expect = (kernel_mean(&a, &a) + kernel_mean(&b, &b) - 2.0 * kernel_mean(&a, &b)).sqrt();
        let got = mmd_with_bandwidth(&a, &b, h)?;
        assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
        let mut pooled = a.data.clone();
        pooled.extend_from_slice(&b.data);
        let pooled = Batch::from_vec(150, 3, pooled)?;
        let mut all: Vec<f64> = (0..150)
            .flat_map(|i| (0..i).map(move |j| (i, j)))
            .map(|(i, j)| squared_distance(pooled.row(i), pooled.row(j)).sqrt())
            .collect();
        all.sort_by(f64::total_cmp);
        let median = median_bandwidth(&a, &b);
        assert!((median - all[all.len() / 2]).abs() < 1e-12, "{median}");
        assert!(median_bandwidth(&a, &gaussian(4, &[0.0, 0.0], 1.0, 1)).is_nan());
        Ok(())
    }
}
