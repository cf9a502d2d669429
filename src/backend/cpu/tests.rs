use super::*;
use crate::backend::{Span, Weighting};

#[test]
fn exp_is_accurate_over_the_range_used() {
    let mut worst32 = 0.0f64;
    let mut worst64 = 0.0f64;
    let mut x = -79.0f64;
    while x < 80.0 {
        let e = x.exp();
        worst32 = worst32.max(((Real::exp(x as f32) as f64) - (x as f32 as f64).exp()).abs() / e);
        worst64 = worst64.max((Real::exp(x) - e).abs() / e);
        x += 0.0137;
    }
    assert!(worst32 < 4e-7, "f32 exp relative error {worst32}");
    assert!(worst64 < 4e-16, "f64 exp relative error {worst64}");
    assert_eq!(Real::exp(-1000.0f32), 0.0);
    assert_eq!(Real::exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(Real::exp(-1e6f64), 0.0);
    assert_eq!(Real::exp(0.0f64), 1.0);
}

/// f64 squared distances from the row `x` to every point of `values` (row-major, `dim` wide).
fn squared_distances(x: &[f64], values: &[f64], dim: usize) -> Vec<f64> {
    values
        .chunks_exact(dim)
        .map(|y| x[..dim].iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum())
        .collect()
}

fn brute(set_values: &[f64], dim: usize, x: &[f64], sigma: f64) -> Vec<f64> {
    let n = set_values.len() / dim;
    let d = squared_distances(x, set_values, dim);
    let m = d.iter().copied().fold(f64::INFINITY, f64::min);
    let w: Vec<f64> = d
        .iter()
        .map(|v| (-(v - m) / (2.0 * sigma * sigma)).exp())
        .collect();
    let z: f64 = w.iter().sum();
    (0..dim)
        .map(|k| (0..n).map(|j| w[j] * set_values[j * dim + k]).sum::<f64>() / z)
        .collect()
}

#[test]
fn every_isa_matches_brute_force_in_f64() {
    for dim in [1, 2, 5, 9, 33] {
        let n = 37;
        let values: Vec<f64> = (0..n * dim)
            .map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0)
            .collect();
        let set = PreparedSet::<f64>::new(&values, n, dim);
        let x: Vec<f64> = (0..6 * dim)
            .map(|i| ((i * 31) % 17) as f64 / 8.0 - 1.0)
            .collect();
        let spans = vec![Span { start: 0, end: n }; 6];
        for sigma in [0.002, 0.3, 5.0] {
            for isa in [Isa::detect(), Isa::Portable] {
                let out = weighted_rows(&set, &x, &spans, &Weighting::Softmax { sigma }, isa);
                for r in 0..6 {
                    let expect = brute(&values, dim, &x[r * dim..(r + 1) * dim], sigma);
                    for k in 0..dim {
                        let got = out[r].weighted[k] / out[r].weight_sum;
                        assert!(
                            (got - expect[k]).abs() < 1e-12,
                            "dim {dim} sigma {sigma}: {got} vs {}",
                            expect[k]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn log_sum_exp_grid_matches_brute_force() {
    let (n, dim) = (300, 5);
    let values: Vec<f64> = (0..n * dim)
        .map(|i| ((i * 7919) % 211) as f64 / 100.0 - 1.0)
        .collect();
    let set = PreparedSet::<f64>::new(&values, n, dim);
    let x: Vec<f64> = (0..3 * dim)
        .map(|i| ((i * 31) % 17) as f64 / 9.0 - 0.8)
        .collect();
    let spans = vec![
        Span { start: 0, end: n },
        Span {
            start: 10,
            end: 200,
        },
        Span { start: 0, end: n },
    ];
    let sigmas: Vec<f64> = (0..60)
        .map(|k| (0.001f64).ln() + k as f64 * 0.2)
        .map(f64::exp)
        .collect();
    let refine = |_: usize, _: &[f64]| vec![0.05, 0.5];
    for isa in [Isa::detect(), Isa::Portable] {
        let rows = log_sum_exp_grid(&set, &x, &spans, &sigmas, &refine, isa);
        for (r, (coarse, fine_sigmas, fine)) in rows.iter().enumerate() {
            let xr = &x[r * dim..(r + 1) * dim];
            let d = squared_distances(xr, &values[spans[r].start * dim..spans[r].end * dim], dim);
            let lse = |s: f64| {
                let t: Vec<f64> = d.iter().map(|d| -d / (2.0 * s * s)).collect();
                crate::core::log_sum_exp(&t)
            };
            let bound = |s: f64| {
                let m = d.iter().copied().fold(f64::INFINITY, f64::min);
                -m / (2.0 * s * s) - dim as f64 * s.ln()
            };
            let best = sigmas
                .iter()
                .map(|&s| bound(s))
                .fold(f64::NEG_INFINITY, f64::max);
            for (&s, &got) in sigmas.iter().zip(coarse) {
                // Nodes skipped as massless carry their lower bound instead.
                if bound(s) + (d.len() as f64).ln() >= best - LIKELIHOOD_MARGIN {
                    // Terms below e^-25 of the nearest are left out: < N 1.4e-11 relative.
                    assert!(
                        (got - lse(s)).abs() < 1e-8 * (1.0 + lse(s).abs()),
                        "{s}: {got} vs {}",
                        lse(s)
                    );
                } else {
                    assert!(got <= lse(s) + 1e-9);
                }
            }
            assert_eq!(fine_sigmas, &vec![0.05, 0.5]);
            assert!((fine[1] - lse(0.5)).abs() < 1e-9 * (1.0 + lse(0.5).abs()));
        }
    }
}

#[test]
fn spans_restrict_the_sum_to_a_class() {
    let values = vec![0.0, 1.0, 10.0, 11.0];
    let set = PreparedSet::<f64>::new(&values, 4, 1);
    let x = vec![0.4, 0.4];
    let spans = [Span { start: 2, end: 4 }, Span { start: 0, end: 2 }];
    let out = weighted_rows(
        &set,
        &x,
        &spans,
        &Weighting::Softmax { sigma: 1.0 },
        Isa::detect(),
    );
    assert!(out[0].weighted[0] / out[0].weight_sum > 9.9);
    assert!(out[1].weighted[0] / out[1].weight_sum < 1.0);
}

/// A data set's values with exact duplicates of rows 0..8 and near-duplicates of rows 8..16
/// (one coordinate moved by 1e-3) appended: rows near them have tied or nearly tied nearest points.
fn with_ties(values: &[f64], dim: usize) -> Vec<f64> {
    let n = values.len() / dim;
    let mut out = values.to_vec();
    for j in 0..16 {
        let mut row = values[(j % n) * dim..(j % n + 1) * dim].to_vec();
        if j >= 8 {
            row[j % dim] += 1e-3;
        }
        out.extend(row);
    }
    out
}

/// Rows at `sigma` from the data (made by `with_ties`): on exactly tied points, on nearly tied
/// points, on other data points, and pure noise sigma z for sigma >= 5 (as sampling has them;
/// pure noise at small sigma is far from all data, where f32 distances of any form lose the
/// ~1e-7 |x|^2 / 2 sigma^2 that decides the weights) or more points on the data otherwise.
fn rows_around(values: &[f64], dim: usize, sigma: f64, seed: u64) -> Vec<f64> {
    let original = values.len() / dim - 16;
    let z = crate::core::noise::initial_noise(seed, 32, dim);
    let mut x = Vec::with_capacity(32 * dim);
    for r in 0..32 {
        let centre = match r / 8 {
            0 => Some((r % 8) % original),
            1 => Some((8 + r % 8) % original),
            _ if sigma >= 5.0 && r >= 24 => None,
            _ => Some((r * 7919) % original),
        };
        for k in 0..dim {
            let y = centre.map_or(0.0, |j| values[j * dim + k]);
            x.push(y + sigma * z.row(r)[k]);
        }
    }
    x
}

fn f32_rounded(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&v| v as f32 as f64).collect()
}

/// The reference data sets: a 2-D toy, the digits and 784-D images, each with ties.
fn reference_sets() -> Vec<(&'static str, Vec<f64>, usize)> {
    let moons = match crate::data::toys::load("moons", 1024) {
        Ok(crate::data::Source::Empirical(set)) => set,
        _ => panic!("moons"),
    };
    let digits = crate::data::digits::load().expect("digits");
    let images = crate::data::digits::synthetic_28x28(1000, 3).expect("images");
    [("moons", moons), ("digits", digits), ("784-d", images)]
        .into_iter()
        .map(|(name, set)| (name, with_ties(&set.values, set.dim), set.dim))
        .collect()
}

/// The largest error of D = sum w y / sum w against a reference, relative to the data's scale,
/// and the largest relative error of the weight sums.
fn errors(
    got: &[crate::backend::WeightedRow],
    reference: &[(Vec<f64>, f64)],
    scale: f64,
) -> (f64, f64) {
    let (mut d, mut sum) = (0.0f64, 0.0f64);
    for (g, (expect, expect_sum)) in got.iter().zip(reference) {
        for (v, e) in g.weighted.iter().zip(expect) {
            d = d.max((v / g.weight_sum - e).abs() / scale);
        }
        sum = sum.max((g.weight_sum / expect_sum - 1.0).abs());
    }
    (d, sum)
}

/// f64 brute force: D(x) and sum_j exp(-(d_j - d_min) / 2 s^2) for each row.
fn brute_rows(values: &[f64], dim: usize, x: &[f64], sigma: f64) -> Vec<(Vec<f64>, f64)> {
    x.chunks_exact(dim)
        .map(|xr| {
            let n = values.len() / dim;
            let d = squared_distances(xr, values, dim);
            let m = d.iter().copied().fold(f64::INFINITY, f64::min);
            let w: Vec<f64> = d
                .iter()
                .map(|v| (-(v - m) / (2.0 * sigma * sigma)).exp())
                .collect();
            let z: f64 = w.iter().sum();
            let mean = (0..dim)
                .map(|k| (0..n).map(|j| w[j] * values[j * dim + k]).sum::<f64>() / z)
                .collect();
            (mean, z)
        })
        .collect()
}

#[test]
fn the_gemm_form_matches_explicit_differences_at_every_sigma() {
    for (name, values, dim) in reference_sets() {
        let n = values.len() / dim;
        let set = PreparedSet::<f32>::new(&values, n, dim);
        let exact_values = f32_rounded(&values);
        let scale = exact_values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for sigma in [80.0, 5.0, 0.5, 0.05, 0.002] {
            let x = f32_rounded(&rows_around(&values, dim, sigma, 17));
            let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let spans = vec![Span { start: 0, end: n }; x.len() / dim];
            let weighting = Weighting::Softmax { sigma };
            let reference = brute_rows(&exact_values, dim, &x, sigma);
            let run = |path| weighted_rows_on(&set, &xs, &spans, &weighting, Isa::detect(), path);
            let (gemm, explicit) = (run(Path::Gemm), run(Path::Explicit));
            let (gemm_d, gemm_sum) = errors(&gemm, &reference, scale);
            let (explicit_d, explicit_sum) = errors(&explicit, &reference, scale);
            let between: Vec<(Vec<f64>, f64)> = explicit
                .iter()
                .map(|e| {
                    (
                        e.weighted.iter().map(|v| v / e.weight_sum).collect(),
                        e.weight_sum,
                    )
                })
                .collect();
            let (apart_d, apart_sum) = errors(&gemm, &between, scale);
            eprintln!(
                "{name} sigma {sigma}: gemm {gemm_d:.1e} / {gemm_sum:.1e}, explicit {explicit_d:.1e} / {explicit_sum:.1e}, apart {apart_d:.1e} / {apart_sum:.1e}"
            );
            for (what, e) in [
                ("gemm D", gemm_d),
                ("gemm weight sum", gemm_sum),
                ("explicit D", explicit_d),
                ("explicit weight sum", explicit_sum),
                ("gemm vs explicit D", apart_d),
                ("gemm vs explicit weight sum", apart_sum),
            ] {
                assert!(e <= 1e-4, "{name} sigma {sigma}: {what} error {e:e}");
            }
        }
    }
}

/// f64 brute force of NAG's marginal weights: (sum_j w_j y_j / sum_j w_j, sum_j w_j / Z) per row.
fn brute_marginal(
    values: &[f64],
    dim: usize,
    x: &[f64],
    (sigmas, log_weights): (&[f64], &[f64]),
    power: i32,
) -> Vec<(Vec<f64>, f64)> {
    let n = values.len() / dim;
    x.chunks_exact(dim)
        .map(|xr| {
            let d = squared_distances(xr, values, dim);
            let logit = |j: usize, k: usize| {
                log_weights[k] - dim as f64 * sigmas[k].ln() - d[j] / (2.0 * sigmas[k] * sigmas[k])
            };
            let top = (0..n)
                .flat_map(|j| (0..sigmas.len()).map(move |k| (j, k)))
                .map(|(j, k)| logit(j, k))
                .fold(f64::NEG_INFINITY, f64::max);
            let (mut z, mut sum) = (0.0, 0.0);
            let mut weighted = vec![0.0; dim];
            for j in 0..n {
                let mut w = 0.0;
                for k in 0..sigmas.len() {
                    let e = (logit(j, k) - top).exp();
                    z += e;
                    w += e * sigmas[k].powi(-power);
                }
                sum += w;
                for q in 0..dim {
                    weighted[q] += w * values[j * dim + q];
                }
            }
            (weighted.iter().map(|v| v / sum).collect(), sum / z)
        })
        .collect()
}

#[test]
fn the_gemm_form_matches_explicit_differences_for_nag() {
    for (name, values, dim) in reference_sets() {
        let n = values.len() / dim;
        let set = PreparedSet::<f32>::new(&values, n, dim);
        let exact_values = f32_rounded(&values);
        let scale = exact_values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let prior = crate::core::estimate::SigmaPrior::edm_training();
        let (sigmas, log_weights) = prior.quadrature(120);
        let weighting = Weighting::Marginal {
            sigmas: &sigmas,
            log_weights: &log_weights,
            sigma_power: 2,
        };
        for sigma in [80.0, 5.0, 0.5, 0.05, 0.002] {
            let x = f32_rounded(&rows_around(&values, dim, sigma, 5));
            let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let spans = vec![Span { start: 0, end: n }; xs.len() / dim];
            let reference = brute_marginal(&exact_values, dim, &x, (&sigmas, &log_weights), 2);
            let run = |path| weighted_rows_on(&set, &xs, &spans, &weighting, Isa::detect(), path);
            let mut worst = [0.0f64; 4];
            for (p, path) in [Path::Gemm, Path::Explicit].into_iter().enumerate() {
                for (g, (mean, ratio)) in run(path).iter().zip(&reference) {
                    let r = (g.weight_sum / g.normaliser) / ratio - 1.0;
                    worst[2 * p] = worst[2 * p].max(r.abs());
                    for (gv, ev) in g.weighted.iter().zip(mean) {
                        worst[2 * p + 1] =
                            worst[2 * p + 1].max((gv / g.weight_sum - ev).abs() / scale);
                    }
                }
            }
            eprintln!(
                "nag {name} sigma {sigma}: gemm {:.1e} / {:.1e}, explicit {:.1e} / {:.1e}",
                worst[0], worst[1], worst[2], worst[3]
            );
            for e in worst {
                assert!(e <= 1e-4, "nag {name} sigma {sigma}: {worst:?}");
            }
        }
    }
}

#[test]
fn the_tiles_match_brute_force_on_every_toy() {
    for toy in crate::data::toys::NAMES {
        let set = match crate::data::toys::load(toy, 1500) {
            Ok(crate::data::Source::Empirical(set)) => set,
            _ => continue,
        };
        let dim = set.dim;
        let values = with_ties(&set.values, dim);
        let n = set.n + 16;
        let scale = values.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-9);
        let exact = PreparedSet::<f64>::new(&values, n, dim);
        let single = PreparedSet::<f32>::new(&values, n, dim);
        // Whole set and a class span (or a part of the set).
        let half = Span {
            start: 0,
            end: n / 2,
        };
        for sigma in [80.0, 5.0, 0.5, 0.05, 0.002] {
            let x = f32_rounded(&rows_around(&values, dim, sigma, 3));
            let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            for span in [Span { start: 0, end: n }, half] {
                let spans = vec![span; x.len() / dim];
                let weighting = Weighting::Softmax { sigma };
                let reference =
                    brute_rows(&values[span.start * dim..span.end * dim], dim, &x, sigma);
                let tiled =
                    weighted_rows_on(&exact, &x, &spans, &weighting, Isa::detect(), Path::Tiles);
                let (d, sum) = errors(&tiled, &reference, scale);
                assert!(
                    d <= 1e-12 && sum <= 1e-12,
                    "{toy} f64 sigma {sigma}: {d:e} / {sum:e}"
                );
                let on =
                    |path| weighted_rows_on(&single, &xs, &spans, &weighting, Isa::detect(), path);
                let explicit = on(Path::Explicit);
                let between: Vec<(Vec<f64>, f64)> = explicit
                    .iter()
                    .map(|e| {
                        (
                            e.weighted.iter().map(|v| v / e.weight_sum).collect(),
                            e.weight_sum,
                        )
                    })
                    .collect();
                let (d, sum) = errors(&on(Path::Tiles), &between, scale);
                // The same weights; only the order of the sums differs.
                assert!(
                    d <= 2e-6 && sum <= 2e-6,
                    "{toy} f32 sigma {sigma}: {d:e} / {sum:e}"
                );
            }
        }
    }
}

/// The fused dense softmax (`Path::Dense`; `Path::Tiles`'s tiled blocks use its arithmetic) recomputes the
/// explicit path's distances and sums in the same order: bit for bit the same rows, on whole
/// sets and on spans that start and end inside a block of LANES points.
#[test]
fn the_fused_softmax_equals_explicit_differences_bit_for_bit() {
    for toy in crate::data::toys::NAMES {
        let Ok(crate::data::Source::Empirical(set)) = crate::data::toys::load(toy, 1000) else {
            continue;
        };
        let (dim, n) = (set.dim, set.n + 16);
        let values = with_ties(&set.values, dim);
        let single = PreparedSet::<f32>::new(&values, n, dim);
        for sigma in [80.0, 5.0] {
            let xs: Vec<f32> = rows_around(&values, dim, sigma, 11)
                .iter()
                .map(|&v| v as f32)
                .collect();
            for span in [
                Span { start: 0, end: n },
                Span {
                    start: 5,
                    end: n - 3,
                },
            ] {
                let spans = vec![span; xs.len() / dim];
                let weighting = Weighting::Softmax { sigma };
                let on =
                    |path| weighted_rows_on(&single, &xs, &spans, &weighting, Isa::detect(), path);
                let (fused, explicit) = (on(Path::Dense), on(Path::Explicit));
                for (r, (f, e)) in fused.iter().zip(&explicit).enumerate() {
                    let same = (&f.weighted, f.weight_sum, f.normaliser)
                        == (&e.weighted, e.weight_sum, e.normaliser);
                    assert!(
                        same,
                        "{toy} sigma {sigma} span {span:?} row {r}: {f:?} vs {e:?}"
                    );
                }
            }
        }
    }
}

/// The tiled blocks (`tiles.rs`) skip only blocks whose boxes rule them out: each row's nearest
/// squared distance is bit for bit the minimum of the explicit distances to every point of the
/// span, in f32 and f64, with and without FMA, on whole sets, on spans that start and end
/// inside a block and on an empty span, for rows on (tied) points and far from the data.
#[test]
fn tiled_nearest_distances_equal_the_minimum_over_every_point() {
    fn check<T: Real, const FMA: bool>(
        values: &[f64],
        n: usize,
        dim: usize,
        xs: &[f64],
        toy: &str,
    ) {
        let set = PreparedSet::<T>::new(values, n, dim);
        let x: Vec<T> = xs.iter().map(|&v| T::from_f64(v)).collect();
        let rows: Vec<usize> = (0..x.len() / dim).collect();
        for span in [
            Span { start: 0, end: n },
            Span {
                start: 5,
                end: n - 3,
            },
            Span { start: 3, end: 3 },
        ] {
            let tiles = tiles::tiles_for(&set, span);
            let tiled = tiles::tiles_nearest_task::<T, FMA>(&tiles, &x, &rows);
            for (&r, &got) in rows.iter().zip(&tiled) {
                let xr = &x[r * dim..(r + 1) * dim];
                let mut best = T::INFINITY;
                for j in span.start..span.end {
                    let d = distances::explicit_distance::<T, FMA>(
                        xr,
                        &set.rows[j * dim..(j + 1) * dim],
                    );
                    best = best.min(d);
                }
                assert_eq!(got.to_f64(), best.to_f64(), "{toy} span {span:?} row {r}");
            }
        }
    }
    for toy in crate::data::toys::NAMES {
        let Ok(crate::data::Source::Empirical(set)) = crate::data::toys::load(toy, 700) else {
            continue;
        };
        let (dim, n) = (set.dim, set.n + 16);
        let values = with_ties(&set.values, dim);
        for sigma in [80.0, 5.0, 0.5, 0.05, 0.002] {
            let xs = rows_around(&values, dim, sigma, 13);
            check::<f32, true>(&values, n, dim, &xs, toy);
            check::<f32, false>(&values, n, dim, &xs, toy);
            check::<f64, true>(&values, n, dim, &xs, toy);
        }
    }
}

/// The explicit distances sum one partial sum per 16 dimensions (the GPU kernel's order, which
/// the parity tests rely on): bit for bit against a plain loop in that order, on 784-D rows in
/// groups of 8, 4 and 1 and a span inside the blocks.
#[test]
fn explicit_distances_sum_in_tiles_of_sixteen_dimensions() {
    let (n, dim, rows) = (70, 784, 13);
    let values: Vec<f64> = (0..n * dim)
        .map(|i| ((i * 7919) % 1009) as f64 / 97.0 - 5.0)
        .collect();
    let set = PreparedSet::<f32>::new(&values, n, dim);
    let x: Vec<f32> = (0..rows * dim)
        .map(|i| (((i * 31) % 211) as f64 / 23.0 - 4.0) as f32)
        .collect();
    let span = Span { start: 3, end: 61 };
    let order: Vec<usize> = (0..rows).rev().collect();
    let (dist, first, width) =
        super::distances::span_distances::<f32, false>(&set, &x, &order, span);
    for (q, &r) in order.iter().enumerate() {
        for j in 0..width {
            let got = dist[q * width + j];
            let point = first + j;
            if point < span.start || point >= span.end {
                assert_eq!(got, f32::INFINITY);
                continue;
            }
            let mut total = 0.0f32;
            for tile in (0..dim).step_by(16) {
                let mut part = 0.0f32;
                for k in tile..(tile + 16).min(dim) {
                    let t = x[r * dim + k] - values[point * dim + k] as f32;
                    part += t * t;
                }
                total = if tile == 0 { part } else { total + part };
            }
            assert_eq!(got.to_bits(), total.to_bits(), "row {r} point {point}");
        }
    }
}

/// NAG's prior nodes as the model builds them: the posterior-average form's log-uniform prior
/// on [0.002, 80] with Simpson's weights (odd count, spacing <= 1 / sqrt(2 D)), or EDM's
/// log-normal with the trapezoid rule.
fn nag_nodes(log_uniform: bool, dim: usize) -> (Vec<f64>, Vec<f64>) {
    use crate::core::estimate::SigmaPrior;
    let spacing = (1.0 / (2.0 * dim as f64).sqrt()).min(0.25);
    if !log_uniform {
        let prior = SigmaPrior::edm_training();
        let (a, b) = prior.ln_support();
        return prior.quadrature(((b - a) / spacing).ceil() as usize + 1);
    }
    let prior = SigmaPrior::LogUniform {
        lo: 0.002,
        hi: 80.0,
    };
    let (a, b) = prior.ln_support();
    let n = (((b - a) / spacing).ceil() as usize + 1) | 1;
    let h = (b - a) / (n - 1) as f64;
    (0..n)
        .map(|k| {
            let u = a + h * k as f64;
            let simpson = match k {
                0 => 1.0,
                _ if k == n - 1 => 1.0,
                _ if k % 2 == 1 => 4.0,
                _ => 2.0,
            };
            (u.exp(), prior.log_density(u) + (simpson * h / 3.0).ln())
        })
        .unzip()
}

/// f64 over every node: the marginal's weight of each gap and the normaliser, on the direct
/// sum's scale (relative to the row's top logit at d_min).
fn exact_marginal_weights(
    gaps: &[f64],
    d_min: f64,
    (sigmas, log_weights): (&[f64], &[f64]),
    power: i32,
    dim: usize,
) -> (Vec<f64>, f64) {
    let logit = |k: usize, d: f64| {
        log_weights[k] - dim as f64 * sigmas[k].ln() - d / (2.0 * sigmas[k] * sigmas[k])
    };
    let top = (0..sigmas.len())
        .map(|k| logit(k, d_min))
        .fold(f64::NEG_INFINITY, f64::max);
    let mut z = 0.0;
    let weights = gaps
        .iter()
        .map(|&g| {
            (0..sigmas.len())
                .map(|k| {
                    let e = (logit(k, d_min + g) - top).exp();
                    z += e;
                    e * sigmas[k].powi(-power)
                })
                .sum()
        })
        .collect();
    (weights, z)
}

#[test]
fn the_marginal_table_equals_the_direct_sum() {
    // Rows from on a data point to far beyond every node's reach (d_min up to 1e9: |x| ~ 3e4),
    // gaps from 0 to 1e4 (geometric, with every cell boundary crossed at some rows) and +inf.
    let d_mins = [
        0.0, 1e-9, 3e-6, 1e-4, 2e-3, 0.05, 0.7, 3.0, 40.0, 900.0, 2e4, 6e5, 1e9,
    ];
    let mut gaps: Vec<f64> = (0..400)
        .map(|i| 1e-9 * 10f64.powf(i as f64 * 13.0 / 399.0))
        .map(|g| g as f32 as f64)
        .collect();
    gaps.extend([0.0, 0.0, f64::INFINITY]);
    // The toys' dimensions (one-pass sums), and the GEMM form's sets' (levels stored sloped).
    for dim in [1, 2, 3, 16, 64] {
        for log_uniform in [true, false] {
            let (sigmas, log_weights) = nag_nodes(log_uniform, dim);
            for power in [1, 2] {
                let Some(table) =
                    marginal_table::MarginalTable::new(&sigmas, &log_weights, power, dim)
                else {
                    panic!("no table: dim {dim}, log-uniform {log_uniform}, power {power}");
                };
                assert!(table.max_error <= marginal_table::TABLE_TOLERANCE);
                let weighting = Weighting::Marginal {
                    sigmas: &sigmas,
                    log_weights: &log_weights,
                    sigma_power: power,
                };
                let (mut worst_table, mut worst_direct, mut apart) = (0.0f64, 0.0f64, 0.0f64);
                // The AVX2 reading against the portable one.
                let mut portable = 0.0f64;
                for &d_min in &d_mins {
                    let d_min = d_min as f32 as f64;
                    let (exact, exact_z) =
                        exact_marginal_weights(&gaps, d_min, (&sigmas, &log_weights), power, dim);
                    let as_f32: Vec<f32> = gaps.iter().map(|&g| g as f32).collect();
                    // Relative errors of the weights above e^-30 of the row's largest (the
                    // others' share of the sums is below 1e-13 N), and of Z.
                    let largest = exact.iter().copied().fold(0.0, f64::max);
                    let relative = |got: f64, want: f64| (got / want - 1.0).abs();
                    let mut tabled = as_f32.clone();
                    let tabled_z =
                        marginal_table::weigh_gaps_tabled::<f32, false>(&mut tabled, d_min, &table);
                    // The AVX2 intrinsics where the CPU has them (as the kernels compiled for
                    // AVX2 read the table), held to the portable reading; the AVX-512 reading
                    // has its own test below.
                    let mut fused = as_f32.clone();
                    let fused_z = marginal_table::weigh_gaps_read::<f32, true>(
                        &mut fused,
                        d_min,
                        &table,
                        marginal_table::Reading::Avx2,
                    );
                    let mut direct = as_f32;
                    let direct_z =
                        weights::weigh_gaps::<f32, false>(&mut direct, d_min, &weighting, dim);
                    worst_table = worst_table.max(relative(fused_z, exact_z));
                    portable = portable.max(relative(fused_z, tabled_z));
                    for ((&e, &t), &f) in exact.iter().zip(&tabled).zip(&fused) {
                        if e >= largest * (-30.0f64).exp() {
                            worst_table = worst_table.max(relative(f64::from(f), e));
                            portable = portable.max(relative(f64::from(f), f64::from(t)));
                        } else {
                            assert!(f64::from(f) <= largest * (-29.0f64).exp());
                        }
                    }
                    assert_eq!(fused[gaps.len() - 1], 0.0, "an infinite gap weighs nothing");
                    worst_table = worst_table.max(relative(tabled_z, exact_z));
                    worst_direct = worst_direct.max(relative(direct_z, exact_z));
                    apart = apart.max(relative(tabled_z, direct_z));
                    for ((&e, &t), &d) in exact.iter().zip(&tabled).zip(&direct) {
                        if e >= largest * (-30.0f64).exp() {
                            worst_table = worst_table.max(relative(f64::from(t), e));
                            worst_direct = worst_direct.max(relative(f64::from(d), e));
                            apart = apart.max(relative(f64::from(t), f64::from(d)));
                        } else {
                            assert!(f64::from(t) <= largest * (-29.0f64).exp());
                        }
                    }
                    assert_eq!(
                        tabled[gaps.len() - 1],
                        0.0,
                        "an infinite gap weighs nothing"
                    );
                }
                eprintln!(
                    "dim {dim}, log-uniform {log_uniform}, power {power}: {} cells, \
                     interpolation {:.1e}; weights against f64: table {worst_table:.1e}, \
                     direct {worst_direct:.1e}; table against direct {apart:.1e}; \
                     AVX2 against portable {portable:.1e}",
                    table.cells(),
                    table.max_error
                );
                assert!(
                    worst_table <= 1e-5 && apart <= 1e-5 && portable <= 1e-5,
                    "dim {dim}, log-uniform {log_uniform}, power {power}: table {worst_table:e}, \
                     direct {worst_direct:e}, apart {apart:e}, AVX2 {portable:e}"
                );
            }
        }
    }
}

/// Whether the CPU reads NAG's table with AVX-512 (else the AVX-512 tests print a note and
/// return).
fn avx512_reading_runs(test: &str) -> bool {
    let runs = marginal_table::Reading::Avx512.available();
    if !runs {
        eprintln!("{test}: skipped, this CPU has no AVX-512 F + VL");
    }
    runs
}

#[test]
fn the_avx512_table_reading_equals_f64_and_the_portable_one() {
    if !avx512_reading_runs("the_avx512_table_reading_equals_f64_and_the_portable_one") {
        return;
    }
    use marginal_table::{MarginalTable, Reading, weigh_and_sum_tabled, weigh_gaps_read};
    let d_mins = [
        0.0, 1e-9, 3e-6, 1e-4, 2e-3, 0.05, 0.7, 3.0, 40.0, 900.0, 2e4, 6e5, 1e9,
    ];
    // Gaps from 0 to 1e4, geometric, shuffled by a fixed stride so that every register mixes
    // cells far apart; two zeros and a +inf.
    // Past 1024 points: the AVX-512 reading works in chunks of 512.
    let count = 1097;
    let mut gaps: Vec<f64> = (0..count)
        .map(|i| (i * 151) % count)
        .map(|i| 1e-9 * 10f64.powf(i as f64 * 13.0 / (count - 1) as f64))
        .map(|g| g as f32 as f64)
        .collect();
    gaps.extend([0.0, 0.0, f64::INFINITY]);
    // Lengths with tails of every kind (the readings take 16 and 32 points a step).
    let lengths = [
        1,
        2,
        15,
        16,
        17,
        31,
        32,
        33,
        47,
        100,
        255,
        406,
        512,
        513,
        1040,
        gaps.len(),
    ];
    for dim in [1, 2, 3, 16, 64] {
        for log_uniform in [true, false] {
            let (sigmas, log_weights) = nag_nodes(log_uniform, dim);
            for power in [1, 2] {
                let table = MarginalTable::new(&sigmas, &log_weights, power, dim)
                    .expect("a table for the toys' node sets");
                let relative = |got: f64, want: f64| (got / want - 1.0).abs();
                let (mut worst_f64, mut worst_portable, mut worst_sums) = (0.0f64, 0.0f64, 0.0f64);
                let mut rows = 0;
                for &d_min in &d_mins {
                    let d_min = d_min as f32 as f64;
                    for &len in &lengths {
                        let gaps = &gaps[gaps.len() - len..];
                        let as_f32: Vec<f32> = gaps.iter().map(|&g| g as f32).collect();
                        let (exact, exact_z) = exact_marginal_weights(
                            gaps,
                            d_min,
                            (&sigmas, &log_weights),
                            power,
                            dim,
                        );
                        let largest = exact.iter().copied().fold(0.0, f64::max);
                        let read = |reading: Reading| {
                            let mut w = as_f32.clone();
                            let z = weigh_gaps_read::<f32, true>(&mut w, d_min, &table, reading);
                            (w, z)
                        };
                        let (wide, wide_z) = read(Reading::Avx512);
                        let (portable, portable_z) = read(Reading::Portable);
                        if Reading::Avx2.available() {
                            // The same arithmetic 16 wide: the same bits.
                            let (avx2, avx2_z) = read(Reading::Avx2);
                            assert_eq!(wide, avx2, "dim {dim}, d_min {d_min}, length {len}");
                            assert!(
                                wide_z == avx2_z || relative(wide_z, avx2_z) <= 1e-6,
                                "{wide_z} {avx2_z}"
                            );
                        }
                        worst_f64 = worst_f64.max(relative(wide_z, exact_z));
                        worst_portable = worst_portable.max(relative(wide_z, portable_z));
                        for ((&e, &w), &p) in exact.iter().zip(&wide).zip(&portable) {
                            if e >= largest * (-30.0f64).exp() {
                                worst_f64 = worst_f64.max(relative(f64::from(w), e));
                                worst_portable =
                                    worst_portable.max(relative(f64::from(w), f64::from(p)));
                            } else {
                                assert!(f64::from(w) <= largest * (-29.0f64).exp());
                            }
                        }
                        if gaps[len - 1].is_infinite() {
                            assert_eq!(wide[len - 1], 0.0, "an infinite gap weighs nothing");
                        }
                        if dim > marginal_table::TABLE_MAX_DIM {
                            // The one-pass sums serve the toys' dimensions only.
                            continue;
                        }
                        // The one-pass sums, distances formed from a query point and the
                        // columns: against the kernels' separate passes on the same f32
                        // distances, and against f64. Points placed at distance^2 d_min + gap
                        // from x along turning directions; a length past 4 leaves its first
                        // three and its last point uncounted (a span's neighbours).
                        let x = &[0.3f32, -1.2, 2.0][..dim];
                        let cols: Vec<Vec<f32>> = (0..dim)
                            .map(|k| {
                                (0..len)
                                    .map(|j| {
                                        let angle = j as f64 * 0.7 + k as f64 * 1.3;
                                        let unit = match dim {
                                            1 => {
                                                if j % 2 == 0 {
                                                    1.0
                                                } else {
                                                    -1.0
                                                }
                                            }
                                            _ => angle.cos() / (dim as f64 - 1.0).sqrt().max(1.0),
                                        };
                                        let r = (d_min + gaps[j].min(1e30)).sqrt();
                                        (f64::from(x[k]) + r * unit) as f32
                                    })
                                    .collect()
                            })
                            .collect();
                        let cols: Vec<&[f32]> = cols.iter().map(|c| &c[..]).collect();
                        let counted = if len > 4 { 3..len - 1 } else { 0..len };
                        // As span_distances forms them: t = x - y, t t fused into a sum from 0.
                        let dist: Vec<f32> = (0..len)
                            .map(|j| {
                                if !counted.contains(&j) {
                                    return f32::INFINITY;
                                }
                                (0..dim).fold(0.0f32, |d, k| {
                                    let t = x[k] - cols[k][j];
                                    t.mul_add(t, d)
                                })
                            })
                            .collect();
                        let nearest = dist.iter().copied().fold(f32::INFINITY, f32::min);
                        let d_min = f64::from(nearest);
                        // The kernels' portable copy keeps its own arithmetic: never this pass.
                        assert!(
                            weigh_and_sum_tabled::<f32, false>(x, &cols, counted.clone(), &table)
                                .is_none()
                        );
                        let Some((z, w_sum, weighted)) =
                            weigh_and_sum_tabled::<f32, true>(x, &cols, counted.clone(), &table)
                        else {
                            // The row lies in the table's last cell: the gap form serves.
                            continue;
                        };
                        rows += 1;
                        let mut separate: Vec<f32> = dist.iter().map(|&d| d - nearest).collect();
                        let separate_z = weigh_gaps_read::<f32, true>(
                            &mut separate,
                            d_min,
                            &table,
                            Reading::Avx512,
                        );
                        assert!(
                            z == separate_z || relative(z, separate_z) <= 1e-6,
                            "z {z} against {separate_z}"
                        );
                        let separate_sum = distances::sum_of(&separate);
                        let sums_exact = |col: Option<&[f32]>| -> f64 {
                            // f64 weights of the gaps as the f32 distances give them.
                            let gaps: Vec<f64> =
                                separate_gaps(&dist, nearest).into_iter().collect();
                            let (w, _) = exact_marginal_weights(
                                &gaps,
                                d_min,
                                (&sigmas, &log_weights),
                                power,
                                dim,
                            );
                            w.iter()
                                .enumerate()
                                .map(|(j, &w)| w * col.map_or(1.0, |c| f64::from(c[j])))
                                .sum()
                        };
                        let scale = sums_exact(None);
                        worst_sums = worst_sums.max(relative(w_sum, scale));
                        if len % 16 == 0 {
                            assert_eq!(w_sum, separate_sum, "dim {dim}, d_min {d_min}, {len}");
                        } else {
                            assert!(w_sum == separate_sum || relative(w_sum, separate_sum) <= 1e-6);
                        }
                        for k in 0..dim {
                            let dot = distances::dot_lanes::<f32, true>(&separate, cols[k]);
                            if len % 16 == 0 {
                                assert_eq!(weighted[k], dot, "dim {dim}, column {k}, {len}");
                            }
                            // Relative to the weights' sum times the column's scale: the dot
                            // products cancel.
                            let column_scale = cols[k]
                                .iter()
                                .map(|&c| f64::from(c.abs()))
                                .fold(0.0, f64::max);
                            let want = sums_exact(Some(cols[k]));
                            worst_sums =
                                worst_sums.max((weighted[k] - want).abs() / (column_scale * scale));
                            assert!((weighted[k] - dot).abs() <= 1e-6 * column_scale * scale);
                        }
                    }
                }
                eprintln!(
                    "AVX-512 reading, dim {dim}, log-uniform {log_uniform}, power {power}: \
                     weights and Z against f64 {worst_f64:.1e}, against portable \
                     {worst_portable:.1e}; one-pass sums against f64 {worst_sums:.1e} \
                     ({rows} rows)"
                );
                assert!(
                    rows > 0 || dim > marginal_table::TABLE_MAX_DIM,
                    "the one-pass sums were never taken"
                );
                assert!(
                    worst_f64 <= 1e-5 && worst_portable <= 1e-5 && worst_sums <= 1e-5,
                    "dim {dim}, log-uniform {log_uniform}, power {power}: f64 {worst_f64:e}, \
                     portable {worst_portable:e}, sums {worst_sums:e}"
                );
            }
        }
    }
}

/// The gaps d - d_min as f32 makes them, in f64.
fn separate_gaps(dist: &[f32], d_min: f32) -> Vec<f64> {
    dist.iter().map(|&d| f64::from(d - d_min)).collect()
}

#[test]
fn nag_on_the_toys_through_the_table_matches_brute_force() {
    for toy in crate::data::toys::SAMPLED {
        let set = match crate::data::toys::load(toy, 800) {
            Ok(crate::data::Source::Empirical(set)) => set,
            _ => panic!("{toy}"),
        };
        let dim = set.dim;
        let values = with_ties(&set.values, dim);
        let n = values.len() / dim;
        let exact_values = f32_rounded(&values);
        let single = PreparedSet::<f32>::new(&values, n, dim);
        let scale = exact_values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (log_uniform, power) in [(true, 1), (false, 2)] {
            let (sigmas, log_weights) = nag_nodes(log_uniform, dim);
            let weighting = Weighting::Marginal {
                sigmas: &sigmas,
                log_weights: &log_weights,
                sigma_power: power,
            };
            for sigma in [80.0, 5.0, 0.5, 0.05, 0.002] {
                let mut x = rows_around(&values, dim, sigma, 23);
                // Far rows: 50 and 500 from the data (NAG's diverging states).
                x.extend([30.0, -50.0, 400.0, 300.0]);
                let x = f32_rounded(&x);
                let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let rows = x.len() / dim;
                // Every row on the whole set, then on spans whose ends cut the kernels' blocks
                // (as classes do): even rows on the points before `cut`, odd rows after it.
                let cut = n / 2 + 3;
                let halves = [Span { start: 0, end: cut }, Span { start: cut, end: n }];
                for split in [false, true] {
                    let span_of = |r: usize| match split {
                        false => Span { start: 0, end: n },
                        true => halves[r % 2],
                    };
                    let spans: Vec<Span> = (0..rows).map(span_of).collect();
                    let got = weighted_rows_on(
                        &single,
                        &xs,
                        &spans,
                        &weighting,
                        Isa::detect(),
                        Path::Explicit,
                    );
                    let (mut mean, mut ratio) = (0.0f64, 0.0f64);
                    for (r, g) in got.iter().enumerate() {
                        let span = span_of(r);
                        let (m, e) = brute_marginal(
                            &exact_values[span.start * dim..span.end * dim],
                            dim,
                            &x[r * dim..(r + 1) * dim],
                            (&sigmas, &log_weights),
                            power,
                        )
                        .remove(0);
                        ratio = ratio.max(((g.weight_sum / g.normaliser) / e - 1.0).abs());
                        for (gv, ev) in g.weighted.iter().zip(&m) {
                            mean = mean.max((gv / g.weight_sum - ev).abs() / scale);
                        }
                    }
                    eprintln!(
                        "{toy} power {power} sigma {sigma} split {split}: mean {mean:.1e}, \
                         ratio {ratio:.1e}"
                    );
                    assert!(
                        mean <= 1e-5 && ratio <= 1e-5,
                        "{toy} power {power} sigma {sigma} split {split}: mean {mean:e}, \
                         ratio {ratio:e}"
                    );
                }
            }
        }
    }
}

/// The noise posterior's log-sum-exps on the digits and 784-D images (GEMM form: rows whose grid
/// sees most gaps exactly take explicit distances to the whole span, the others recompute their
/// candidates) against f64 brute force on the same f32-rounded inputs, at every sigma the states are drawn at,
/// on the estimator's own coarse grid and a fine grid around sigma; rows on tied and nearly tied
/// points included.
#[test]
fn posterior_grids_in_gemm_form_match_f64_at_every_sigma() {
    for (name, values, dim) in reference_sets() {
        if dim < layout::GEMM_MIN_DIM {
            continue;
        }
        posterior_grids_match_f64(name, &values, dim);
    }
}

/// `log_sum_exp_grid` on the set's default path against f64 sums over every point.
fn posterior_grids_match_f64(name: &str, values: &[f64], dim: usize) {
    use crate::core::estimate::{PosteriorEstimator, SigmaPrior};
    let n = values.len() / dim;
    let set = PreparedSet::<f32>::new(values, n, dim);
    assert_eq!(Path::for_set(&set), Path::Gemm);
    let exact_values = f32_rounded(values);
    let coarse = PosteriorEstimator::new(SigmaPrior::for_schedule(0.002, 80.0)).coarse_grid(dim);
    for sigma in [80.0, 5.0, 0.5, 0.05, 0.002] {
        let x = f32_rounded(&rows_around(values, dim, sigma, 23));
        let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let spans = vec![Span { start: 0, end: n }; x.len() / dim];
        let fine = vec![sigma * 0.9, sigma, sigma * 1.1];
        let refine = |_: usize, _: &[f64]| fine.clone();
        let rows = log_sum_exp_grid(&set, &xs, &spans, &coarse, &refine, Isa::detect());
        for (r, (got_coarse, fine_sigmas, got_fine)) in rows.iter().enumerate() {
            let xr = &x[r * dim..(r + 1) * dim];
            let d = squared_distances(xr, &exact_values, dim);
            let d_min = d.iter().copied().fold(f64::INFINITY, f64::min);
            let lse = |s: f64| {
                let t: Vec<f64> = d.iter().map(|d| -d / (2.0 * s * s)).collect();
                crate::core::log_sum_exp(&t)
            };
            let lower = |s: f64| -d_min / (2.0 * s * s) - dim as f64 * s.ln();
            let best = coarse
                .iter()
                .map(|&s| lower(s))
                .fold(f64::NEG_INFINITY, f64::max);
            let massive = |s: f64| lower(s) + (n as f64).ln() >= best - LIKELIHOOD_MARGIN;
            let check = |s: f64, got: f64| {
                let expect = lse(s);
                if massive(s) {
                    assert!(
                        (got - expect).abs() <= 1e-4 * (1.0 + expect.abs()),
                        "{name} sigma {sigma}, row {r}, node {s}: {got} vs {expect}"
                    );
                } else {
                    // A massless node carries its lower bound.
                    assert!(got <= expect + 1e-4 * (1.0 + expect.abs()));
                }
            };
            for (&s, &got) in coarse.iter().zip(got_coarse) {
                check(s, got);
            }
            assert_eq!(fine_sigmas, &fine);
            for (&s, &got) in fine.iter().zip(got_fine) {
                check(s, got);
            }
        }
    }
}

/// Pruning by projected lower bounds (pruned.rs) against f64 brute force, explicit differences and
/// the GEMM form's sparse rows, at every sigma, on the digits and 784-D images with tied and nearly
/// tied rows, on the whole set and on a span inside it; at small sigma every row prunes, at
/// sigma 80 none does.
#[test]
fn pruned_candidates_match_brute_force_at_every_sigma() {
    for (name, values, dim) in reference_sets() {
        if dim < layout::GEMM_MIN_DIM {
            continue;
        }
        let n = values.len() / dim;
        let set = PreparedSet::<f32>::new(&values, n, dim);
        let proj = set.projection();
        assert_eq!(proj.k, pruned::directions(dim), "{name}: directions kept");
        let exact_values = f32_rounded(&values);
        let scale = exact_values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for span in [
            Span { start: 0, end: n },
            Span {
                start: 5,
                end: n - 3,
            },
        ] {
            let inside = &exact_values[span.start * dim..span.end * dim];
            for sigma in [80.0, 5.0, 0.5, 0.05, 0.002] {
                let x = f32_rounded(&rows_around(&values, dim, sigma, 29));
                let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let rows = x.len() / dim;
                let spans = vec![span; rows];
                let weighting = Weighting::Softmax { sigma };
                let reference = brute_rows(inside, dim, &x, sigma);
                let explicit =
                    weighted_rows_on(&set, &xs, &spans, &weighting, Isa::detect(), Path::Explicit);
                let all: Vec<usize> = (0..rows).collect();
                let gemm = dispatch::gemm_rows(
                    &set,
                    &xs,
                    &all,
                    span,
                    &weighting,
                    Isa::detect(),
                    gemm::Threads::All,
                );
                let mut pruned_rows = 0;
                let mut worst_gap = 0.0f64;
                for r in 0..rows {
                    let xr = &xs[r * dim..(r + 1) * dim];
                    let Some(got) = pruned::pruned_row::<f32, false>(&set, proj, xr, span, sigma)
                    else {
                        continue;
                    };
                    pruned_rows += 1;
                    let one = std::slice::from_ref(&got);
                    let (d, sum) = errors(one, &reference[r..r + 1], scale);
                    let e = &explicit[r];
                    let between = (
                        e.weighted.iter().map(|v| v / e.weight_sum).collect(),
                        e.weight_sum,
                    );
                    let (apart_d, apart_sum) = errors(one, &[between], scale);
                    for (what, err) in [
                        ("D", d),
                        ("weight sum", sum),
                        ("D vs explicit", apart_d),
                        ("weight sum vs explicit", apart_sum),
                    ] {
                        assert!(
                            err <= 1e-4,
                            "{name} sigma {sigma} row {r} span {span:?}: {what} error {err:e}"
                        );
                    }
                    // The same candidates within reach as the GEMM form's: the same sums (to the
                    // f32 rounding of a nearly tied row the GEMM form weighs densely). The GEMM
                    // form's f32 distance |x|^2 + |y|^2 - 2 x.y cancels: an error d in a squared
                    // distance moves a nearly tied row's weight by d / (2 sigma^2), 200 d at sigma
                    // 0.05. Measured (cargo test --release --lib backend, 00:57 UTC Dec 2): 784-d
                    // sigma 0.05 row 8, weight sums 1.9872079 (pruned) vs 1.9872314 (GEMM), 1.2e-5
                    // apart, while the pruned row is within 1e-4 of f64 brute force (above); hence
                    // 5e-5 here; the largest gap measured over all sets is 1.3e-5 (784-d, 0.002).
                    let g = &gemm[r];
                    let gap = (got.weight_sum / g.weight_sum - 1.0).abs();
                    worst_gap = worst_gap.max(gap);
                    assert!(
                        gap <= 5e-5,
                        "{name} sigma {sigma} row {r}: weight sums {} vs {}",
                        got.weight_sum,
                        g.weight_sum
                    );
                    for (a, b) in got.weighted.iter().zip(&g.weighted) {
                        assert!((a - b).abs() <= 5e-5 * scale * g.weight_sum);
                    }
                }
                eprintln!(
                    "{name} sigma {sigma} span {span:?}: {pruned_rows} of {rows} rows pruned, \
                     weight sums vs GEMM form {worst_gap:.1e}"
                );
                if sigma <= 0.05 {
                    assert_eq!(pruned_rows, rows, "{name} sigma {sigma}: rows pruned");
                }
                if sigma >= 80.0 {
                    assert_eq!(pruned_rows, 0, "{name} sigma {sigma}: rows pruned");
                }
            }
        }
    }
}

/// Pruning leaves no distances behind; a softmax batch that NAG's second call (or the posterior)
/// reads again takes the product once the call sequence shows such re-reads, and only then.
#[test]
fn softmax_batches_read_again_take_the_product_and_leave_it_cached() {
    let (_, values, dim) = reference_sets()
        .into_iter()
        .find(|(name, _, _)| *name == "digits")
        .expect("digits");
    let n = values.len() / dim;
    let span = Span { start: 0, end: n };
    let sigma = 0.05;
    let (sigmas, log_weights) = nag_nodes(true, dim);
    let marginal = Weighting::Marginal {
        sigmas: &sigmas,
        log_weights: &log_weights,
        sigma_power: 1,
    };
    let batch = |seed: u64| -> Vec<f32> {
        rows_around(&values, dim, sigma, seed)
            .iter()
            .map(|&v| v as f32)
            .collect()
    };
    let all: Vec<usize> = (0..32).collect();
    let spans = vec![span; 32];
    let softmax = |set: &PreparedSet<f32>, x: &[f32]| {
        weighted_rows(set, x, &spans, &Weighting::Softmax { sigma }, Isa::detect())
    };
    let cached = |set: &PreparedSet<f32>, x: &[f32]| set.cache.lookup(x, dim, &all, span).is_some();

    // NAG: every softmax batch is read again by the noise-dropped call.
    let set = PreparedSet::<f32>::new(&values, n, dim);
    let mut product_rows = 0;
    for step in 0..8 {
        let x = batch(100 + step);
        let expected = set.rereads.expects_reread();
        let rows = softmax(&set, &x);
        assert_eq!(cached(&set, &x), expected, "NAG step {step}");
        assert_eq!(expected, step >= 4, "NAG step {step}: forecast");
        product_rows += usize::from(expected);
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let reference = brute_rows(&f32_rounded(&values), dim, &x64, sigma);
        let (d, sum) = errors(&rows, &reference, 16.0);
        assert!(
            d <= 1e-4 && sum <= 1e-4,
            "NAG step {step}: errors {d:e} {sum:e}"
        );
        weighted_rows(&set, &x, &spans, &marginal, Isa::detect());
    }
    assert_eq!(product_rows, 4);

    // Heun with the posterior: the predictor's batch is never read again, so pruning stays.
    let set = PreparedSet::<f32>::new(&values, n, dim);
    for step in 0..8 {
        let x = batch(200 + step);
        let predictor = batch(300 + step);
        softmax(&set, &x);
        softmax(&set, &predictor);
        assert!(
            !cached(&set, &x) && !cached(&set, &predictor),
            "Heun step {step}"
        );
        let coarse = [0.01, 0.1, 1.0];
        log_sum_exp_grid(&set, &x, &spans, &coarse, &|_, _| Vec::new(), Isa::detect());
        assert!(!set.rereads.expects_reread(), "Heun step {step}: forecast");
    }
}

/// Each row's nearest squared distance to the span's points by explicit f32 differences.
fn brute_nearest(x: &[f32], values: &[f64], dim: usize, rows: &[usize], span: Span) -> Vec<f32> {
    rows.iter()
        .map(|&r| {
            (span.start..span.end)
                .map(|j| {
                    let mut d = 0.0f32;
                    for k in 0..dim {
                        let t = x[r * dim + k] - values[j * dim + k] as f32;
                        d = t.mul_add(t, d);
                    }
                    d
                })
                .fold(f32::INFINITY, f32::min)
        })
        .collect()
}

/// The Taylor expansion at large sigma (`expansion.rs`) against f64 brute force on every toy, rows
/// near the data and far from it (noise at sigma about the origin); the test also checks that the
/// rows were expanded, not handed to the fused kernel. At sigma 0.05 every row is refused (the
/// expansion would need more monomials than the budget), and at 80 none is on sets of 1024 points
/// or more.
#[test]
fn the_expansion_matches_brute_force_on_every_toy() {
    for toy in crate::data::toys::NAMES {
        let Ok(crate::data::Source::Empirical(set)) = crate::data::toys::load(toy, 4096) else {
            continue;
        };
        let dim = set.dim;
        let values = with_ties(&set.values, dim);
        let n = set.n + 16;
        let scale = values.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-9);
        let single = PreparedSet::<f32>::new(&values, n, dim);
        let rounded = f32_rounded(&values);
        let span = Span { start: 0, end: n };
        for sigma in [80.0, 20.0, 5.0, 0.5, 0.05] {
            // The 32 rows repeated up to the call size the expansion takes.
            let around = f32_rounded(&rows_around(&values, dim, sigma, 5));
            let copies = super::expansion::MIN_ROWS.div_ceil(around.len() / dim);
            let x = around.repeat(copies);
            let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let rows: Vec<usize> = (0..x.len() / dim).collect();
            // The nearest squared distance as the fused pass measures it (explicit, f32).
            let nearest = |rows: &[usize]| brute_nearest(&xs, &rounded, dim, rows, span);
            let expanded =
                super::expansion::expanded_rows(&single, &xs, &rows, span, sigma, &nearest);
            let taken = expanded.iter().filter(|e| e.is_some()).count();
            // (Two Diracs have too few points to pay for any monomial.)
            if sigma >= 80.0 && n >= 1024 {
                assert_eq!(taken, rows.len(), "{toy} sigma {sigma}: rows expanded");
            }
            if sigma <= 0.05 {
                assert_eq!(taken, 0, "{toy} sigma {sigma}: rows expanded");
            }
            // A small call leaves every row to the fused pass (the moments would not pay).
            let few =
                super::expansion::expanded_rows(&single, &xs, &rows[..32], span, sigma, &nearest);
            assert!(
                few.iter().all(Option::is_none),
                "{toy} sigma {sigma}: 32 rows expanded"
            );
            let reference = brute_rows(&rounded, dim, &x, sigma);
            let (got, want): (Vec<_>, Vec<_>) = expanded
                .into_iter()
                .zip(reference)
                .filter_map(|(e, r)| e.map(|e| (e, r)))
                .unzip();
            let (d, sum) = errors(&got, &want, scale);
            eprintln!("{toy} sigma {sigma}: {taken} rows expanded, errors {d:e} / {sum:e}");
            assert!(
                d <= 1e-6 && sum <= 1e-6,
                "{toy} sigma {sigma}: {d:e} / {sum:e}"
            );
        }
    }
}

/// The posterior's second call on the same state (the pooled estimate's nodes) takes the rows'
/// buckets from the first; its values equal those of a set that never saw the state, on every
/// reference set (explicit and GEMM-form paths) and at every sigma the states are drawn at.
#[test]
fn a_second_posterior_call_on_the_same_state_matches_a_fresh_one() {
    use crate::core::estimate::{PosteriorEstimator, SigmaPrior};
    for (name, values, dim) in reference_sets() {
        let n = values.len() / dim;
        let coarse =
            PosteriorEstimator::new(SigmaPrior::for_schedule(0.002, 80.0)).coarse_grid(dim);
        for sigma in [80.0, 5.0, 0.5, 0.05, 0.002] {
            let x: Vec<f32> = rows_around(&values, dim, sigma, 29)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let spans = vec![Span { start: 0, end: n }; x.len() / dim];
            let pool: Vec<f64> = (0..9).map(|k| sigma * (0.8 + 0.05 * k as f64)).collect();
            let none = |_: usize, _: &[f64]| Vec::new();
            let warm = PreparedSet::<f32>::new(&values, n, dim);
            let _ = log_sum_exp_grid(&warm, &x, &spans, &coarse, &none, Isa::detect());
            let second = log_sum_exp_grid(&warm, &x, &spans, &pool, &none, Isa::detect());
            let fresh_set = PreparedSet::<f32>::new(&values, n, dim);
            let fresh = log_sum_exp_grid(&fresh_set, &x, &spans, &pool, &none, Isa::detect());
            for (r, (a, b)) in second.iter().zip(&fresh).enumerate() {
                assert_eq!(a.0.len(), pool.len());
                for (&u, &v) in a.0.iter().zip(&b.0) {
                    assert!(
                        (u - v).abs() <= 1e-5 * (1.0 + v.abs()),
                        "{name} sigma {sigma} row {r}: {u} vs {v}"
                    );
                }
            }
        }
    }
}

/// The pooled estimate's call keeps only the gaps within the first call's reach: on windows
/// around, far above and far below the rows' own sigma (the latter two outside what the kept
/// buckets reach, measured afresh), its values match f64 sums over every point, on the digits
/// and 784-D images at every sigma the states are drawn at.
#[test]
fn a_pooled_call_on_kept_buckets_matches_f64_at_every_sigma() {
    use crate::core::estimate::{PosteriorEstimator, SigmaPrior};
    for (name, values, dim) in reference_sets() {
        if dim < layout::GEMM_MIN_DIM {
            continue;
        }
        let n = values.len() / dim;
        let exact_values = f32_rounded(&values);
        let coarse =
            PosteriorEstimator::new(SigmaPrior::for_schedule(0.002, 80.0)).coarse_grid(dim);
        for sigma in [80.0, 5.0, 0.5, 0.05, 0.002] {
            let x = f32_rounded(&rows_around(&values, dim, sigma, 31));
            let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let spans = vec![Span { start: 0, end: n }; x.len() / dim];
            let none = |_: usize, _: &[f64]| Vec::new();
            for shift in [1.0, 8.0, 0.125] {
                let pool: Vec<f64> = (0..9)
                    .map(|k| shift * sigma * (0.8 + 0.05 * k as f64))
                    .collect();
                let set = PreparedSet::<f32>::new(&values, n, dim);
                let _ = log_sum_exp_grid(&set, &xs, &spans, &coarse, &none, Isa::detect());
                let pooled = log_sum_exp_grid(&set, &xs, &spans, &pool, &none, Isa::detect());
                for (r, (got, _, _)) in pooled.iter().enumerate() {
                    let xr = &x[r * dim..(r + 1) * dim];
                    let d = squared_distances(xr, &exact_values, dim);
                    let d_min = d.iter().copied().fold(f64::INFINITY, f64::min);
                    let lower = |s: f64| -d_min / (2.0 * s * s) - dim as f64 * s.ln();
                    let best = pool
                        .iter()
                        .map(|&s| lower(s))
                        .fold(f64::NEG_INFINITY, f64::max);
                    for (&s, &v) in pool.iter().zip(got) {
                        let t: Vec<f64> = d.iter().map(|d| -d / (2.0 * s * s)).collect();
                        let expect = crate::core::log_sum_exp(&t);
                        let tol = 1e-4 * (1.0 + expect.abs());
                        if lower(s) + (n as f64).ln() >= best - LIKELIHOOD_MARGIN {
                            assert!(
                                (v - expect).abs() <= tol,
                                "{name} sigma {sigma} x{shift} row {r} node {s}: {v} vs {expect}"
                            );
                        } else {
                            // A massless node carries its lower bound.
                            assert!(v <= expect + tol);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_gemm_form_on_panels_matches_the_gemm_crate_path() {
    if Isa::detect() != Isa::Avx512 {
        eprintln!("no AVX-512 here: the panels are never built, nothing to compare");
        return;
    }
    let prior = crate::core::estimate::SigmaPrior::edm_training();
    let (sigmas, log_weights) = prior.quadrature(120);
    let marginal = Weighting::Marginal {
        sigmas: &sigmas,
        log_weights: &log_weights,
        sigma_power: 2,
    };
    for (name, values, dim) in reference_sets() {
        // The sets the panels serve (the 784-D images; not the 64-D digits).
        if !(panels::PANELS_MIN_DIM..=layout::GEMM_MAX_DIM).contains(&dim) {
            continue;
        }
        let n = values.len() / dim;
        let on_panels = PreparedSet::<f32>::new(&values, n, dim);
        // The same set with the panels ruled out: its products go through the gemm crate.
        let on_crate = PreparedSet::<f32>::new(&values, n, dim);
        assert!(on_crate.panels.set(None).is_ok());
        let exact_values = f32_rounded(&values);
        let scale = exact_values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for sigma in [80.0, 5.0, 0.5, 0.05] {
            let x = f32_rounded(&rows_around(&values, dim, sigma, 23));
            let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let rows = xs.len() / dim;
            // One span for the whole batch, and two spans that start and end mid-panel.
            let whole = vec![Span { start: 0, end: n }; rows];
            let split: Vec<Span> = (0..rows)
                .map(|r| match r % 2 {
                    0 => Span {
                        start: 3,
                        end: n / 2 + 5,
                    },
                    _ => Span {
                        start: n / 2 + 5,
                        end: n - 7,
                    },
                })
                .collect();
            for (spans, what) in [(&whole, "whole"), (&split, "split")] {
                for (weighting, kind) in
                    [(Weighting::Softmax { sigma }, "softmax"), (marginal, "nag")]
                {
                    let run = |set: &PreparedSet<f32>| {
                        weighted_rows_on(set, &xs, spans, &weighting, Isa::Avx512, Path::Gemm)
                    };
                    let (panels, gemm) = (run(&on_panels), run(&on_crate));
                    let as_reference: Vec<(Vec<f64>, f64)> = gemm
                        .iter()
                        .map(|g| {
                            let mean = g.weighted.iter().map(|v| v / g.weight_sum).collect();
                            (mean, g.weight_sum)
                        })
                        .collect();
                    let (d, sum) = errors(&panels, &as_reference, scale);
                    let z = panels
                        .iter()
                        .zip(&gemm)
                        .map(|(p, g)| (p.normaliser / g.normaliser - 1.0).abs())
                        .fold(0.0f64, f64::max);
                    eprintln!(
                        "{name} sigma {sigma} {what} {kind}: panels vs gemm crate \
                         D {d:.1e}, weight sum {sum:.1e}, Z {z:.1e}"
                    );
                    assert!(
                        d <= 1e-4 && sum <= 1e-4 && z <= 1e-4,
                        "{name} sigma {sigma} {what} {kind}: D {d:e}, weight sum {sum:e}, Z {z:e}"
                    );
                }
                // The f64 brute force covers the whole-set batch.
                if what == "whole" {
                    let weighting = Weighting::Softmax { sigma };
                    let reference = brute_rows(&exact_values, dim, &x, sigma);
                    let got = weighted_rows_on(
                        &on_panels,
                        &xs,
                        spans,
                        &weighting,
                        Isa::Avx512,
                        Path::Gemm,
                    );
                    let (d, sum) = errors(&got, &reference, scale);
                    assert!(
                        d <= 1e-4 && sum <= 1e-4,
                        "{name} sigma {sigma}: panels against f64 D {d:e}, weight sum {sum:e}"
                    );
                }
            }
        }
        // The products ran on the panels (they were built), and the other set never built any.
        assert!(on_panels.panels.get().is_some_and(Option::is_some));
        assert!(on_crate.panels.get().is_some_and(Option::is_none));
    }
}

/// NAG's one-pass sums read through a window of cells in registers (rows whose cells all fit
/// one) give the staged pass's bits, and f64's within the tables' tolerance. On every toy with
/// tied points, for rows around the data from sigma 80 (far from it) to 0.002 (on the ties),
/// over whole spans and spans that start and end inside a block.
#[test]
fn the_windowed_one_pass_sums_equal_the_staged_ones() {
    if !avx512_reading_runs("the_windowed_one_pass_sums_equal_the_staged_ones") {
        return;
    }
    use marginal_table::{MarginalTable, OnePass, Reading, WINDOWED_ROWS, weigh_and_sum_read};
    use std::sync::atomic::Ordering;
    let windowed_before = WINDOWED_ROWS.load(Ordering::Relaxed);
    let (mut rows, mut worst_f64) = (0, 0.0f64);
    for toy in crate::data::toys::NAMES {
        let Ok(crate::data::Source::Empirical(data)) = crate::data::toys::load(toy, 700) else {
            continue;
        };
        let (dim, n) = (data.dim, data.n + 16);
        let values = with_ties(&data.values, dim);
        let exact_values = f32_rounded(&values);
        let scale = exact_values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let set = PreparedSet::<f32>::new(&values, n, dim);
        for power in [1, 2] {
            let (sigmas, log_weights) = nag_nodes(true, dim);
            let table = MarginalTable::new(&sigmas, &log_weights, power, dim)
                .expect("a table for the toys' node set");
            for span in [
                Span { start: 0, end: n },
                Span {
                    start: 5,
                    end: n - 3,
                },
            ] {
                let blocks = span.start / 16 * 16..span.end.div_ceil(16) * 16;
                let width = set.columns.len() / dim;
                let columns: Vec<&[f32]> = (0..dim)
                    .map(|k| &set.columns[k * width + blocks.start..k * width + blocks.end])
                    .collect();
                let counted = span.start - blocks.start..span.end - blocks.start;
                for sigma in [80.0, 5.0, 0.5, 0.05, 0.002] {
                    let x = f32_rounded(&rows_around(&values, dim, sigma, 17));
                    let reference = (span.start == 0).then(|| {
                        brute_marginal(&exact_values, dim, &x, (&sigmas, &log_weights), power)
                    });
                    for (r, xr) in x.chunks_exact(dim).enumerate() {
                        let xr: Vec<f32> = xr.iter().map(|&v| v as f32).collect();
                        let read = |one_pass| {
                            weigh_and_sum_read::<f32, true>(
                                &xr,
                                &columns,
                                counted.clone(),
                                &table,
                                one_pass,
                                Reading::Avx512,
                            )
                        };
                        let windowed = read(OnePass::Windowed);
                        assert_eq!(windowed, read(OnePass::Staged), "{toy} {sigma} row {r}");
                        let (Some(sums), Some(reference)) = (windowed, &reference) else {
                            continue;
                        };
                        rows += 1;
                        let (mean, ratio) = &reference[r];
                        let mut error = (sums.1 / sums.0 / ratio - 1.0).abs();
                        for k in 0..dim {
                            error = error.max((sums.2[k] / sums.1 - mean[k]).abs() / scale);
                        }
                        worst_f64 = worst_f64.max(error);
                        assert!(error <= 1e-4, "{toy} sigma {sigma} row {r}: {error:e}");
                    }
                }
            }
        }
    }
    let windowed = WINDOWED_ROWS.load(Ordering::Relaxed) - windowed_before;
    eprintln!("one-pass sums: {rows} rows against f64 ({windowed} windowed), {worst_f64:.1e}");
    assert!(rows > 0 && windowed > 0, "{rows} rows, {windowed} windowed");
}

/// NAG's one-pass sums read with AVX2 + FMA give the separate passes' bits (distances as
/// `span_distances` forms them, `weigh_gaps_read` through AVX2, `sum_of`, `dot_lanes`), and the
/// windowed reading gives the staged one's: the AVX2 kernels' outputs as they were before they
/// took the one pass. On every toy with tied points, rows from sigma 80 to 0.002, over whole
/// spans and spans that start and end inside a block.
#[test]
fn the_avx2_one_pass_sums_equal_the_separate_passes() {
    use marginal_table::{
        MarginalTable, OnePass, Reading, WINDOWED_ROWS, weigh_and_sum_read, weigh_gaps_read,
    };
    use std::sync::atomic::Ordering;
    if !Reading::Avx2.available() {
        eprintln!("the_avx2_one_pass_sums_equal_the_separate_passes: skipped, no AVX2 + FMA");
        return;
    }
    let windowed_before = WINDOWED_ROWS.load(Ordering::Relaxed);
    let mut rows = 0;
    for toy in crate::data::toys::NAMES {
        let Ok(crate::data::Source::Empirical(data)) = crate::data::toys::load(toy, 700) else {
            continue;
        };
        let (dim, n) = (data.dim, data.n + 16);
        if dim > marginal_table::TABLE_MAX_DIM {
            continue;
        }
        let values = with_ties(&data.values, dim);
        let set = PreparedSet::<f32>::new(&values, n, dim);
        for power in [1, 2] {
            let (sigmas, log_weights) = nag_nodes(true, dim);
            let table = MarginalTable::new(&sigmas, &log_weights, power, dim)
                .expect("a table for the toys' node set");
            for span in [
                Span { start: 0, end: n },
                Span {
                    start: 5,
                    end: n - 3,
                },
            ] {
                let blocks = span.start / 16 * 16..span.end.div_ceil(16) * 16;
                let width = set.columns.len() / dim;
                let columns: Vec<&[f32]> = (0..dim)
                    .map(|k| &set.columns[k * width + blocks.start..k * width + blocks.end])
                    .collect();
                let counted = span.start - blocks.start..span.end - blocks.start;
                for sigma in [80.0, 5.0, 0.5, 0.05, 0.002] {
                    let x = f32_rounded(&rows_around(&values, dim, sigma, 17));
                    for (r, xr) in x.chunks_exact(dim).enumerate() {
                        let xr: Vec<f32> = xr.iter().map(|&v| v as f32).collect();
                        let read = |one_pass| {
                            weigh_and_sum_read::<f32, true>(
                                &xr,
                                &columns,
                                counted.clone(),
                                &table,
                                one_pass,
                                Reading::Avx2,
                            )
                        };
                        let windowed = read(OnePass::Windowed);
                        assert_eq!(windowed, read(OnePass::Staged), "{toy} {sigma} row {r}");
                        let Some((z, w_sum, weighted)) = windowed else {
                            // The row lies in the table's last cell: the gap form serves.
                            continue;
                        };
                        rows += 1;
                        // As span_distances forms them: t = x - y, t t fused into a sum from 0.
                        let dist: Vec<f32> = (0..columns[0].len())
                            .map(|j| {
                                if !counted.contains(&j) {
                                    return f32::INFINITY;
                                }
                                (0..dim).fold(0.0f32, |d, k| {
                                    let t = xr[k] - columns[k][j];
                                    t.mul_add(t, d)
                                })
                            })
                            .collect();
                        let nearest = distances::min_of(&dist);
                        let mut weights: Vec<f32> = dist.iter().map(|&d| d - nearest).collect();
                        let separate_z = weigh_gaps_read::<f32, true>(
                            &mut weights,
                            f64::from(nearest),
                            &table,
                            Reading::Avx2,
                        );
                        let at = format!("{toy} power {power} sigma {sigma} row {r}");
                        assert_eq!(z, separate_z, "{at}");
                        assert_eq!(w_sum, distances::sum_of(&weights), "{at}");
                        for k in 0..dim {
                            let dot = distances::dot_lanes::<f32, true>(&weights, columns[k]);
                            assert_eq!(weighted[k], dot, "{at}, column {k}");
                        }
                    }
                }
            }
        }
    }
    let windowed = WINDOWED_ROWS.load(Ordering::Relaxed) - windowed_before;
    eprintln!("AVX2 one-pass sums: {rows} rows equal the separate passes ({windowed} windowed)");
    assert!(rows > 0 && windowed > 0, "{rows} rows, {windowed} windowed");
}
