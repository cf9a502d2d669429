//! The softmax of low-dimensional f32 data at large sigma by a truncated Taylor expansion (the fast
//! Gauss transform's idea: Greengard & Strain 1991). With c the centre of the span's bounding box,
//! u = (x - c) / s and v_j = (y_j - c) / s,
//!
//!   sum_j e^(-|x - y_j|^2 / 2 s^2) f(y_j) = e^(-|u|^2 / 2) sum_alpha u^alpha / alpha! M_alpha[f],
//!   M_alpha[f] = sum_j v_j^alpha e^(-|v_j|^2 / 2) f(y_j),
//!
//! for f in {1, y_1 - c_1, .., y_D - c_D}: the moments are shared by every row of a batch, so a
//! row costs one pass over the monomials instead of one over the data. Truncated at total degree
//! p, each point's factor e^(u.v_j) = sum_n (u.v_j)^n / n! has relative error at most
//! t^(p+1) e^(2t) / (p+1)! with t = |u| max_j |v_j| (Taylor's remainder against e^(-t)); a row
//! takes the smallest p that holds this below TOLERANCE, and rows that would need more monomials
//! than the budget (x far from the data against s) take the fused kernel. All in f64; the
//! nearest squared distance comes from the explicit pass, so the weights keep the exact paths'
//! scale (the nearest point's weight is 1). f32 sets only: f64 stays the oracle.

use rayon::prelude::*;

use super::layout::PreparedSet;
use super::real::Real;
use crate::backend::{Span, WeightedRow};

/// Relative error allowed per point's factor e^(u.v_j): below f32's rounding of the direct sums.
const TOLERANCE: f64 = 1e-9;
/// The highest total degree; a row may use at most one monomial per MONOMIALS_PER_POINT points of
/// the span, else it takes the fused kernel (moons, 2048 x 4096, Heun 18, sampling medians of 7
/// interleaved: one per 8, 16, 32, 64, 128 points gave 0.207, 0.187, 0.164-0.188, 0.172-0.198,
/// 0.187 s; without the expansion 0.216 s).
const MAX_DEGREE: usize = 40;
const MONOMIALS_PER_POINT: usize = 32;
/// Calls with fewer rows take the fused pass: the moments, computed once per call, do not pay
/// (moons at batch 256, Heun 18: 0.045 s without the expansion, 0.055 s with it).
pub(super) const MIN_ROWS: usize = 1024;

/// Multi-indices of total degree up to MAX_DEGREE in `dim` dimensions, graded (every degree's
/// indices after the lower degrees'), so that a truncation at degree p is a prefix.
struct Monomials {
    /// Exponents per axis (0 on axes beyond `dim`).
    alphas: Vec<[usize; 3]>,
    /// ends[p]: how many indices have degree <= p.
    ends: Vec<usize>,
}

impl Monomials {
    /// Those of degree up to the highest (at most MAX_DEGREE) whose count fits `budget`; `None`
    /// when not even degree 0 fits.
    fn within(dim: usize, budget: usize) -> Option<Self> {
        // C(p + dim, dim) indices have degree <= p.
        let count = |p: usize| (1..=dim).fold(1usize, |c, i| c * (p + i) / i);
        let fits = (0..=MAX_DEGREE)
            .take_while(|&p| count(p) <= budget)
            .last()?;
        Some(Monomials::new(dim, fits))
    }

    fn new(dim: usize, max_degree: usize) -> Self {
        let mut alphas = Vec::new();
        let mut ends = Vec::with_capacity(max_degree + 1);
        for degree in 0..=max_degree {
            match dim {
                1 => alphas.push([degree, 0, 0]),
                2 => alphas.extend((0..=degree).map(|a| [a, degree - a, 0])),
                _ => {
                    for a in 0..=degree {
                        for b in 0..=degree - a {
                            alphas.push([a, b, degree - a - b]);
                        }
                    }
                }
            }
            ends.push(alphas.len());
        }
        Monomials { alphas, ends }
    }
}

/// The smallest degree p whose remainder bound t^(p+1) e^(2t) / (p+1)! is below TOLERANCE, if it
/// is at most `max_degree`.
fn degree_for(t: f64, max_degree: usize) -> Option<usize> {
    if !t.is_finite() {
        return None;
    }
    // ln of t^(p+1) e^(2t) / (p+1)!, built up term by term.
    let mut log_bound = 2.0 * t;
    let ln_t = t.max(f64::MIN_POSITIVE).ln();
    for p in 0..=max_degree {
        log_bound += ln_t - ((p + 1) as f64).ln();
        if log_bound <= TOLERANCE.ln() {
            return Some(p);
        }
    }
    None
}

/// The span's bounding-box centre and the largest distance of its points from it.
fn centre_and_radius<T: Real>(set: &PreparedSet<T>, span: Span) -> ([f64; 3], f64) {
    let dim = set.dim;
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for p in set.rows[span.start * dim..span.end * dim].chunks_exact(dim) {
        for k in 0..dim {
            lo[k] = lo[k].min(p[k].to_f64());
            hi[k] = hi[k].max(p[k].to_f64());
        }
    }
    let mut centre = [0.0; 3];
    for k in 0..dim {
        centre[k] = 0.5 * (lo[k] + hi[k]);
    }
    let mut radius2: f64 = 0.0;
    for p in set.rows[span.start * dim..span.end * dim].chunks_exact(dim) {
        let mut d = 0.0;
        for k in 0..dim {
            d += (p[k].to_f64() - centre[k]).powi(2);
        }
        radius2 = radius2.max(d);
    }
    (centre, radius2.sqrt())
}

/// Partial sums per moment over the points: independent lanes, so that the adds are not one
/// serial chain (its latency bounded the moments' pass).
const MOMENT_LANES: usize = 8;

/// M_alpha[f] for the first `count` monomials: [count][1 + dim], f = 1 then y_k - c_k.
fn moments<T: Real>(
    set: &PreparedSet<T>,
    span: Span,
    centre: &[f64; 3],
    sigma: f64,
    monomials: &Monomials,
    degree: usize,
) -> Vec<f64> {
    let dim = set.dim;
    let n = span.len();
    let count = monomials.ends[degree];
    // e^(-|v|^2 / 2), the centred coordinates and the scaled ones v = (y - c) / s.
    let mut gauss = vec![0.0f64; n];
    let mut centred = vec![0.0f64; dim * n];
    let mut scaled = vec![0.0f64; dim * n];
    for (j, p) in set.rows[span.start * dim..span.end * dim]
        .chunks_exact(dim)
        .enumerate()
    {
        let mut v2 = 0.0;
        for k in 0..dim {
            let c = p[k].to_f64() - centre[k];
            centred[k * n + j] = c;
            let v = c / sigma;
            scaled[k * n + j] = v;
            v2 += v * v;
        }
        gauss[j] = (-0.5 * v2).exp();
    }
    // Per axis, the columns v_k^a for a <= degree ([axis][a][point]), a power at a time (the
    // same products as point by point); axes beyond dim read one column of ones.
    let ones = vec![1.0f64; n];
    let powers: Vec<Vec<f64>> = (0..dim)
        .map(|k| {
            let v = &scaled[k * n..(k + 1) * n];
            let mut column = vec![1.0f64; (degree + 1) * n];
            for a in 1..=degree {
                let (before, this) = column.split_at_mut(a * n);
                let last = &before[(a - 1) * n..];
                for ((p, &q), &v) in this[..n].iter_mut().zip(last).zip(v) {
                    *p = q * v;
                }
            }
            column
        })
        .collect();
    let power = |k: usize, a: usize| -> &[f64] {
        if k < dim {
            &powers[k][a * n..(a + 1) * n]
        } else {
            &ones
        }
    };
    let mut out = vec![0.0f64; count * (1 + dim)];
    out.par_chunks_mut(1 + dim)
        .zip(&monomials.alphas[..count])
        .for_each(|(m, alpha)| {
            let (p0, p1, p2) = (power(0, alpha[0]), power(1, alpha[1]), power(2, alpha[2]));
            let mut lanes = [[0.0f64; MOMENT_LANES]; 4];
            let whole = n / MOMENT_LANES * MOMENT_LANES;
            for at in (0..whole).step_by(MOMENT_LANES) {
                for l in 0..MOMENT_LANES {
                    let j = at + l;
                    let w = p0[j] * p1[j] * p2[j] * gauss[j];
                    lanes[0][l] += w;
                    for k in 0..dim {
                        lanes[1 + k][l] += w * centred[k * n + j];
                    }
                }
            }
            let mut sums = [0.0f64; 4];
            for j in whole..n {
                let w = p0[j] * p1[j] * p2[j] * gauss[j];
                sums[0] += w;
                for k in 0..dim {
                    sums[1 + k] += w * centred[k * n + j];
                }
            }
            for (s, lane) in sums.iter_mut().zip(&lanes) {
                *s += lane.iter().sum::<f64>();
            }
            m.copy_from_slice(&sums[..1 + dim]);
        });
    out
}

/// The softmax rows of `rows` (of `x`) at `sigma` over the span by the expansion, given each
/// row's nearest squared distance `d_min` (the explicit pass); `None` for a row whose expansion
/// would need more than the monomial budget.
pub(super) fn expanded_rows<T: Real>(
    set: &PreparedSet<T>,
    x: &[T],
    rows: &[usize],
    span: Span,
    sigma: f64,
    nearest: &dyn Fn(&[usize]) -> Vec<T>,
) -> Vec<Option<WeightedRow>> {
    let dim = set.dim;
    let serves = T::GEMM_FORM && (1..=3).contains(&dim) && rows.len() >= MIN_ROWS && sigma > 0.0;
    let monomials = serves
        .then(|| Monomials::within(dim, span.len() / MONOMIALS_PER_POINT))
        .flatten();
    let Some(monomials) = monomials else {
        return vec![None; rows.len()];
    };
    let max_degree = monomials.ends.len() - 1;
    let (centre, radius) = centre_and_radius(set, span);
    let u_of = |r: usize| -> [f64; 3] {
        let mut u = [0.0; 3];
        for k in 0..dim {
            u[k] = (x[r * dim + k].to_f64() - centre[k]) / sigma;
        }
        u
    };
    let degrees: Vec<Option<usize>> = rows
        .iter()
        .map(|&r| {
            let u = u_of(r);
            let norm = (u[0] * u[0] + u[1] * u[1] + u[2] * u[2]).sqrt();
            degree_for(norm * radius / sigma, max_degree)
        })
        .collect();
    let Some(degree) = degrees.iter().flatten().copied().max() else {
        return vec![None; rows.len()];
    };
    let m = moments(set, span, &centre, sigma, &monomials, degree);
    let taken: Vec<usize> = rows
        .iter()
        .zip(&degrees)
        .filter(|(_, d)| d.is_some())
        .map(|(&r, _)| r)
        .collect();
    let mut taken_d_min = nearest(&taken).into_iter();
    let d_mins: Vec<Option<f64>> = degrees
        .iter()
        .map(|d| d.and_then(|_| taken_d_min.next()).map(|v| v.to_f64()))
        .collect();
    let inv_factorial: Vec<f64> = (0..=degree)
        .scan(1.0f64, |f, a| {
            if a > 0 {
                *f /= a as f64;
            }
            Some(*f)
        })
        .collect();
    rows.par_iter()
        .zip(degrees.par_iter().zip(d_mins.par_iter()))
        .map(|(&r, (d, d_min))| {
            let (p, d_min) = ((*d)?, (*d_min)?);
            let u = u_of(r);
            // u_k^a / a! per axis.
            let mut scaled = [[0.0f64; MAX_DEGREE + 1]; 3];
            for k in 0..3 {
                let mut power = 1.0;
                for a in 0..=p {
                    scaled[k][a] = power * inv_factorial[a];
                    power *= u[k];
                }
            }
            let mut sums = [0.0f64; 4];
            for (i, alpha) in monomials.alphas[..monomials.ends[p]].iter().enumerate() {
                let term = scaled[0][alpha[0]] * scaled[1][alpha[1]] * scaled[2][alpha[2]];
                for (s, v) in sums.iter_mut().zip(&m[i * (1 + dim)..(i + 1) * (1 + dim)]) {
                    *s += term * v;
                }
            }
            // e^(-|x - c|^2 / 2 s^2) relative to the nearest point's e^(-d_min / 2 s^2).
            let u2 = u[0] * u[0] + u[1] * u[1] + u[2] * u[2];
            let scale = (d_min / (2.0 * sigma * sigma) - 0.5 * u2).exp();
            let weight_sum = scale * sums[0];
            Some(WeightedRow {
                weighted: (0..dim)
                    .map(|k| scale * (sums[1 + k] + centre[k] * sums[0]))
                    .collect(),
                weight_sum,
                normaliser: weight_sum,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remainder_bound_picks_the_smallest_degree() {
        for t in [1e-6, 0.01, 0.5, 1.0, 3.0, 5.0] {
            let p = degree_for(t, MAX_DEGREE).expect("within the budget");
            let bound = |p: usize| {
                let mut f = 1.0f64;
                for i in 1..=p + 1 {
                    f *= i as f64;
                }
                t.powi(p as i32 + 1) * (2.0 * t).exp() / f
            };
            assert!(bound(p) <= TOLERANCE * (1.0 + 1e-9), "t {t}: p {p}");
            if p > 0 {
                assert!(bound(p - 1) > TOLERANCE, "t {t}: p {p} is not the smallest");
            }
        }
        assert_eq!(degree_for(50.0, MAX_DEGREE), None);
    }

    #[test]
    fn monomials_are_graded_and_complete() {
        for dim in 1..=3 {
            let m = Monomials::new(dim, 6);
            for p in 0..=6 {
                let count = m.alphas[..m.ends[p]]
                    .iter()
                    .filter(|a| a.iter().sum::<usize>() <= p)
                    .count();
                assert_eq!(count, m.ends[p], "dim {dim} degree {p}");
            }
            // C(6 + dim, dim) indices of degree <= 6.
            let expected = [7, 28, 84][dim - 1];
            assert_eq!(m.ends[6], expected, "dim {dim}");
            // A budget of exactly that many stops at degree 6; one fewer at degree 5; none fits 0.
            let fits = |budget| Monomials::within(dim, budget).map(|m| m.ends.len() - 1);
            assert_eq!(fits(expected), Some(6), "dim {dim}");
            assert_eq!(fits(expected - 1), Some(5), "dim {dim}");
            assert_eq!(fits(0), None, "dim {dim}");
        }
    }
}
