//! Gaps d_j - d_min -> weights, for every weighting and every distance path (explicit, GEMM
//! form, spatial index): what each path must resolve, and the weights themselves.

use super::layout::LANES;
use super::real::Real;
use crate::backend::Weighting;

/// Which gaps a weighting can see, and which it needs exactly: gaps above `gap_cut` carry less
/// than e^-CUTOFF of the row's largest weight (they are left out); gaps up to `exact_cut` are seen
/// by a scale s (sigma, or one of NAG's nodes) that resolves finer than the distances' error
/// bound e (e > TIGHT 2 s^2), so they must be measured exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Reach {
    pub gap_cut: f64,
    pub exact_cut: f64,
}

/// An error bound below this fraction of 2 s^2 changes no weight at scale s by more than a factor
/// e^TIGHT: gaps carrying such a bound serve as they are.
pub(super) const TIGHT: f64 = 1e-6;

/// Node offsets of NAG's marginal relative to its top node: l_k - D ln s_k - d_min / (2 s_k^2) - max.
fn node_offsets(sigmas: &[f64], log_weights: &[f64], d_min: f64, dim: usize) -> Vec<f64> {
    let logits: Vec<f64> = sigmas
        .iter()
        .zip(log_weights)
        .map(|(&s, &lw)| lw - dim as f64 * s.ln() - d_min / (2.0 * s * s))
        .collect();
    let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    logits.iter().map(|l| l - top).collect()
}

impl Reach {
    /// The reach of `weighting` for a row whose nearest squared distance lies in
    /// [d_low, d_high] (NAG's active nodes depend on it), with gaps known to within `bound`.
    pub fn of<T: Real>(
        weighting: &Weighting,
        (d_low, d_high): (f64, f64),
        dim: usize,
        bound: f64,
    ) -> Reach {
        let sees = |s: f64, offset: f64| 2.0 * s * s * (T::CUTOFF + offset);
        match *weighting {
            Weighting::Softmax { sigma } => {
                let gap_cut = sees(sigma, 0.0);
                Reach {
                    gap_cut,
                    exact_cut: if bound > TIGHT * 2.0 * sigma * sigma {
                        gap_cut
                    } else {
                        0.0
                    },
                }
            }
            Weighting::Marginal {
                sigmas,
                log_weights,
                ..
            } => {
                let mut reach = Reach {
                    gap_cut: 0.0,
                    exact_cut: 0.0,
                };
                for d in [d_low.max(0.0), d_high.max(0.0)] {
                    let offsets = node_offsets(sigmas, log_weights, d, dim);
                    for (&s, &o) in sigmas.iter().zip(&offsets) {
                        if o >= -T::CUTOFF {
                            reach.gap_cut = reach.gap_cut.max(sees(s, o));
                            if bound > TIGHT * 2.0 * s * s {
                                reach.exact_cut = reach.exact_cut.max(sees(s, o));
                            }
                        }
                    }
                }
                reach
            }
        }
    }
}

/// Turns gaps d_j - d_min (>= 0; +inf for points outside the span) into weights in place;
/// returns the normaliser Z (the sum of the softmax terms). Gaps beyond the reach become 0
/// without an exp.
#[inline(always)]
pub(super) fn weigh_gaps<T: Real, const FMA: bool>(
    gaps: &mut [T],
    d_min: f64,
    weighting: &Weighting,
    dim: usize,
) -> f64 {
    match *weighting {
        Weighting::Softmax { sigma } => {
            let c = T::from_f64(-1.0 / (2.0 * sigma * sigma));
            let cut = T::from_f64(2.0 * sigma * sigma * T::CUTOFF);
            let mut lanes = [T::ZERO; LANES];
            let mut chunks = gaps.chunks_exact_mut(LANES);
            for ch in &mut chunks {
                // A chunk wholly beyond the reach (most of them at small sigma) needs no exp.
                let mut live = false;
                for l in 0..LANES {
                    live |= ch[l] <= cut;
                }
                if !live {
                    ch.fill(T::ZERO);
                    continue;
                }
                for l in 0..LANES {
                    let w = (ch[l] * c).exp();
                    ch[l] = if ch[l] <= cut { w } else { T::ZERO };
                    lanes[l] = lanes[l] + ch[l];
                }
            }
            let mut z = 0.0;
            for g in chunks.into_remainder() {
                *g = if *g <= cut { (*g * c).exp() } else { T::ZERO };
                z += g.to_f64();
            }
            z + lanes.iter().map(|v| v.to_f64()).sum::<f64>()
        }
        Weighting::Marginal {
            sigmas,
            log_weights,
            sigma_power,
        } => {
            let offsets = node_offsets(sigmas, log_weights, d_min, dim);
            let source = gaps.to_vec();
            gaps.fill(T::ZERO);
            let mut z = 0.0;
            for (&s, &offset) in sigmas.iter().zip(&offsets) {
                // Nodes whose best term is below e^-CUTOFF of the top add nothing.
                if offset < -T::CUTOFF {
                    continue;
                }
                let c = T::from_f64(-1.0 / (2.0 * s * s));
                let shift = T::from_f64(offset);
                let inv_s2 = T::from_f64(s.powi(-sigma_power));
                let mut zk = [T::ZERO; LANES];
                let chunks = source.chunks_exact(LANES);
                let rest = chunks.remainder();
                for (j, ch) in chunks.enumerate() {
                    let w = &mut gaps[j * LANES..(j + 1) * LANES];
                    for l in 0..LANES {
                        let e = ch[l].fused::<FMA>(c, shift).exp();
                        w[l] = e.fused::<FMA>(inv_s2, w[l]);
                        zk[l] = zk[l] + e;
                    }
                }
                let tail = source.len() - rest.len();
                for (q, &g) in rest.iter().enumerate() {
                    let e = g.fused::<FMA>(c, shift).exp();
                    gaps[tail + q] = e.fused::<FMA>(inv_s2, gaps[tail + q]);
                    z += e.to_f64();
                }
                z += zk.iter().map(|v| v.to_f64()).sum::<f64>();
            }
            z
        }
    }
}
