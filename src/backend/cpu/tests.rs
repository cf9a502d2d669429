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

fn brute(set_values: &[f64], dim: usize, x: &[f64], sigma: f64) -> Vec<f64> {
    let n = set_values.len() / dim;
    let d: Vec<f64> = (0..n)
        .map(|j| {
            (0..dim)
                .map(|k| (x[k] - set_values[j * dim + k]).powi(2))
                .sum()
        })
        .collect();
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
            let d: Vec<f64> = (spans[r].start..spans[r].end)
                .map(|j| {
                    (0..dim)
                        .map(|k| (xr[k] - values[j * dim + k]).powi(2))
                        .sum()
                })
                .collect();
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
