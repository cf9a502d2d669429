//! Noise-level estimation sigma_hat(x) (science.md section 5): the exact posterior
//! p(sigma | x) ∝ p(x; sigma) pi(sigma) on a log-sigma grid, for data known in closed form.
//! The posterior of ln sigma is never narrower than ~1/sqrt(2D) (the curvature of
//! -D ln s - d / 2s^2 at its mode), so one grid with about that spacing over the prior's support
//! integrates it to ~1e-9 by the trapezoid rule; backends skip the nodes that provably carry no
//! mass. A fine grid around the mode is a safety net for posteriors narrower than that spacing.
//!
//! `NoiseLevelEstimator` is what the diagnostics and the adaptive re-planner ask for; the exact
//! posterior (`ExactPosterior`) is its first implementation, a learned g(sigma | x) the next.

use std::sync::Arc;

use rayon::prelude::*;

use super::denoiser::Cond;
use super::{Batch, quantile};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A prior over sigma, as a density in ln sigma.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum SigmaPrior {
    /// Uniform in ln sigma over [lo, hi].
    LogUniform { lo: f64, hi: f64 },
    /// ln sigma ~ N(mean, std^2): EDM's training distribution (-1.2, 1.2).
    LogNormal { mean: f64, std: f64 },
}

impl SigmaPrior {
    /// The estimator's default: log-uniform over [sigma_min / 10, 10 sigma_max].
    pub fn for_schedule(sigma_min: f64, sigma_max: f64) -> Self {
        SigmaPrior::LogUniform {
            lo: sigma_min / 10.0,
            hi: sigma_max * 10.0,
        }
    }

    /// NAG's default prior (EDM training's log-normal).
    pub fn edm_training() -> Self {
        SigmaPrior::LogNormal {
            mean: -1.2,
            std: 1.2,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            SigmaPrior::LogUniform { lo, hi } => lo > 0.0 && hi.is_finite() && lo < hi,
            SigmaPrior::LogNormal { mean, std } => mean.is_finite() && std.is_finite() && std > 0.0,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidSpec(format!("bad sigma prior {self:?}")))
        }
    }

    /// The ln-sigma interval holding (practically) all prior mass.
    pub fn ln_support(&self) -> (f64, f64) {
        match *self {
            SigmaPrior::LogUniform { lo, hi } => (lo.ln(), hi.ln()),
            SigmaPrior::LogNormal { mean, std } => (mean - 5.0 * std, mean + 5.0 * std),
        }
    }

    /// ln of the prior density in ln sigma (up to a constant); -inf outside the support.
    pub fn log_density(&self, ln_sigma: f64) -> f64 {
        match *self {
            SigmaPrior::LogUniform { lo, hi } => {
                if ln_sigma >= lo.ln() - 1e-12 && ln_sigma <= hi.ln() + 1e-12 {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            }
            SigmaPrior::LogNormal { mean, std } => -0.5 * ((ln_sigma - mean) / std).powi(2),
        }
    }

    /// A quadrature of the prior: `n` nodes uniform in ln sigma over the support, with
    /// ln(weight) = ln(prior density) + ln(trapezoid width). Returns (sigmas, log_weights).
    pub fn quadrature(&self, n: usize) -> (Vec<f64>, Vec<f64>) {
        let (a, b) = self.ln_support();
        let n = n.max(2);
        let h = (b - a) / (n - 1) as f64;
        (0..n)
            .map(|k| {
                let u = a + h * k as f64;
                let end = k == 0 || k == n - 1;
                let w = if end { 0.5 * h } else { h };
                (u.exp(), self.log_density(u) + w.ln())
            })
            .unzip()
    }
}

/// The exact likelihood p(x; sigma) of an analytic model, on per-row sigma grids.
pub trait NoiseLikelihood: Send + Sync {
    /// ln p(x_r; sigma) for every row r of `x` and every sigma of the coarse grid (shared by all
    /// rows), then for every sigma of the row's fine grid, which `refine` builds from the row's
    /// coarse values. Backends may cache per-row work (distances) between the two passes.
    fn log_likelihood(
        &self,
        x: &Batch,
        cond: &Cond,
        coarse: &[f64],
        refine: &(dyn Fn(&[f64]) -> Vec<f64> + Sync),
    ) -> Result<SigmaGrid>;
}

/// One row's values on the coarse grid, its fine sigmas, and its values on them.
pub type GridRow = (Vec<f64>, Vec<f64>, Vec<f64>);

/// Per-row values on sigma grids (log-likelihoods, or the backends' log-sum-exps they are made
/// of): on the coarse grid shared by every row ([rows][coarse.len()], flat), and on each row's
/// own fine grid.
#[derive(Clone, Debug, Default)]
pub struct SigmaGrid {
    pub coarse: Vec<f64>,
    pub fine_sigmas: Vec<Vec<f64>>,
    pub fine: Vec<Vec<f64>>,
}

impl SigmaGrid {
    /// Appends one row.
    pub fn push(&mut self, (coarse, fine_sigmas, fine): GridRow) {
        self.coarse.extend(coarse);
        self.fine_sigmas.push(fine_sigmas);
        self.fine.push(fine);
    }
}

impl FromIterator<GridRow> for SigmaGrid {
    fn from_iter<I: IntoIterator<Item = GridRow>>(rows: I) -> Self {
        // Sized once: growing the flat coarse table row by row reallocated and copied it.
        let rows: Vec<GridRow> = rows.into_iter().collect();
        let mut grid = SigmaGrid {
            coarse: Vec::with_capacity(rows.iter().map(|row| row.0.len()).sum()),
            fine_sigmas: Vec::with_capacity(rows.len()),
            fine: Vec::with_capacity(rows.len()),
        };
        for row in rows {
            grid.push(row);
        }
        grid
    }
}

/// The estimate for one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SigmaEstimate {
    /// E[ln sigma | x], the posterior mean of ln sigma; sigma_hat = exp(mean_ln).
    pub mean_ln: f64,
    /// The posterior mode (MAP) of ln sigma, refined by a parabola through the top three nodes.
    pub map_ln: f64,
    /// The posterior standard deviation of ln sigma: ~1/sqrt(2D) when x says what its noise
    /// level is, the prior's own width when it says nothing.
    pub std_ln: f64,
}

impl SigmaEstimate {
    pub fn sigma_hat(&self) -> f64 {
        self.mean_ln.exp()
    }
}

/// The estimates for a batch: per row, and pooled over the rows.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchEstimate {
    pub rows: Vec<SigmaEstimate>,
    /// ln of the batch's maximum-likelihood noise level argmax_sigma sum_b ln p(x_b; sigma)
    /// (science.md section 5); `None` where the estimator has no likelihood.
    pub pooled_ln: Option<f64>,
}

/// sigma_hat(x) for every row of a batch, under a class condition.
pub trait NoiseLevelEstimator: Send + Sync {
    fn estimate(&self, x: &Batch, cond: &Cond) -> Result<Vec<SigmaEstimate>>;

    /// The per-row estimates and the pooled one (none unless the estimator has a likelihood).
    fn estimate_batch(&self, x: &Batch, cond: &Cond) -> Result<BatchEstimate> {
        Ok(BatchEstimate {
            rows: self.estimate(x, cond)?,
            pooled_ln: None,
        })
    }
}

/// A noise-level density g(sigma | x) with an input gradient: what classifier-based NAG needs.
pub trait NoiseLevelGradient: Send + Sync {
    /// grad_x ln g(sigma | x) for every row of `x`.
    fn grad_log_density(&self, x: &Batch, sigma: f64) -> Result<Batch>;
}

/// The exact posterior p(sigma | x) ∝ p(x; sigma) pi(sigma) of a model whose likelihood is known.
#[derive(Clone)]
pub struct ExactPosterior {
    pub likelihood: Arc<dyn NoiseLikelihood>,
    pub posterior: PosteriorEstimator,
}

impl ExactPosterior {
    pub fn new(likelihood: Arc<dyn NoiseLikelihood>, posterior: PosteriorEstimator) -> Self {
        ExactPosterior {
            likelihood,
            posterior,
        }
    }
}

impl NoiseLevelEstimator for ExactPosterior {
    fn estimate(&self, x: &Batch, cond: &Cond) -> Result<Vec<SigmaEstimate>> {
        self.posterior.estimate(self.likelihood.as_ref(), x, cond)
    }

    fn estimate_batch(&self, x: &Batch, cond: &Cond) -> Result<BatchEstimate> {
        self.posterior
            .estimate_batch(self.likelihood.as_ref(), x, cond)
    }
}

/// The exact-posterior estimator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PosteriorEstimator {
    pub prior: SigmaPrior,
    /// Largest grid spacing in ln sigma (the spacing shrinks as 0.7/sqrt(D) below it).
    pub max_spacing: f64,
    pub fine_nodes: usize,
}

impl PosteriorEstimator {
    pub fn new(prior: SigmaPrior) -> Self {
        PosteriorEstimator {
            prior,
            max_spacing: 0.5,
            fine_nodes: 33,
        }
    }

    /// The grid over the prior's support for data of dimension `dim` (sigmas): spacing
    /// min(0.7/sqrt(D), max_spacing), the narrowest posterior's standard deviation 0.71/sqrt(D):
    /// the trapezoid rule then integrates it to ~1e-9.
    pub fn coarse_grid(&self, dim: usize) -> Vec<f64> {
        let (a, b) = self.prior.ln_support();
        let spacing = (0.7 / (dim.max(1) as f64).sqrt()).min(self.max_spacing);
        let n = (((b - a) / spacing).ceil() as usize + 1).clamp(3, 20_000);
        (0..n)
            .map(|k| (a + (b - a) * k as f64 / (n - 1) as f64).exp())
            .collect()
    }

    /// The fine grid for one row: `fine_nodes` nodes spanning two coarse steps either side of
    /// the coarse posterior mode, clipped to the prior's support; empty (the usual case) when the
    /// coarse posterior is wide enough (std >= 0.8 coarse steps) for the trapezoid rule to be
    /// exact to ~1e-5 on its own.
    pub fn fine_grid(&self, coarse_sigmas: &[f64], coarse_loglik: &[f64]) -> Vec<f64> {
        self.fine_grid_on(&self.nodes_of(coarse_sigmas), coarse_loglik)
    }

    /// ln sigma and ln prior of each grid node, computed once per batch rather than per row.
    fn nodes_of(&self, sigmas: &[f64]) -> GridNodes {
        let ln: Vec<f64> = sigmas.iter().map(|s| s.ln()).collect();
        let log_prior = ln.iter().map(|&u| self.prior.log_density(u)).collect();
        GridNodes { ln, log_prior }
    }

    fn fine_grid_on(&self, coarse: &GridNodes, coarse_loglik: &[f64]) -> Vec<f64> {
        let (a, b) = self.prior.ln_support();
        let n = coarse.ln.len();
        let h = (b - a) / (n - 1) as f64;
        let log_post: Vec<f64> = coarse_loglik
            .iter()
            .zip(&coarse.log_prior)
            .map(|(l, p)| l + p)
            .collect();
        let best = (0..n)
            .max_by(|&i, &j| log_post[i].total_cmp(&log_post[j]))
            .unwrap_or(0);
        let top = log_post[best];
        if top.is_finite() {
            let (mut m0, mut m1, mut m2) = (0.0, 0.0, 0.0);
            for (&u, &l) in coarse.ln.iter().zip(&log_post) {
                let p = relative_density(l, top);
                m0 += p;
                m1 += p * u;
                m2 += p * u * u;
            }
            let var = m2 / m0 - (m1 / m0).powi(2);
            if var >= (0.8 * h).powi(2) {
                return Vec::new();
            }
        }
        let center = coarse.ln[best];
        let (lo, hi) = ((center - 2.0 * h).max(a), (center + 2.0 * h).min(b));
        let m = self.fine_nodes.max(3);
        (0..m)
            .map(|k| (lo + (hi - lo) * k as f64 / (m - 1) as f64).exp())
            .collect()
    }

    /// sigma_hat for every row of `x`.
    pub fn estimate(
        &self,
        model: &dyn NoiseLikelihood,
        x: &Batch,
        cond: &Cond,
    ) -> Result<Vec<SigmaEstimate>> {
        let (coarse, grid) = self.coarse_pass(model, x, cond)?;
        self.summaries(x, &self.nodes_of(&coarse), &grid)
    }

    /// sigma_hat for every row of `x`, and the pooled maximum-likelihood estimate over the
    /// rows: the sum over rows of the coarse values the per-row pass computed anyway, then a hill
    /// climb on a fine grid around its best node (`POOL_NODES` over two coarse steps each side),
    /// refined by a parabola. Its width is ~1/sqrt(2 B D), far below the coarse spacing.
    pub fn estimate_batch(
        &self,
        model: &dyn NoiseLikelihood,
        x: &Batch,
        cond: &Cond,
    ) -> Result<BatchEstimate> {
        let (coarse, grid) = self.coarse_pass(model, x, cond)?;
        let nodes = self.nodes_of(&coarse);
        // Independent: the per-row summaries and the pooled climb share the pool, each one's
        // serial stretches (the climb's sums and cache look-ups) filled by the other's rows.
        let pooled = || -> Result<Option<f64>> {
            if x.rows == 0 {
                return Ok(None);
            }
            let summed = sum_rows(&grid.coarse, coarse.len());
            let best = argmax(&summed);
            let (lo, hi) = (
                nodes.ln[best.saturating_sub(2)],
                nodes.ln[(best + 2).min(coarse.len() - 1)],
            );
            let fine: Vec<f64> = (0..POOL_NODES)
                .map(|k| (lo + (hi - lo) * k as f64 / (POOL_NODES - 1) as f64).exp())
                .collect();
            let (summed, k) =
                climb_pooled(&fine, pool_start(&summed, &nodes.ln, best, lo, hi), |at| {
                    let sigmas: Vec<f64> = at.iter().map(|&i| fine[i]).collect();
                    let on_fine =
                        model.log_likelihood(x, cond, &sigmas, &|_: &[f64]| Vec::new())?;
                    Ok(sum_rows(&on_fine.coarse, sigmas.len()))
                })?;
            let point = |i: usize| (fine[i].ln(), summed[i]);
            Ok(Some(if k > 0 && k + 1 < fine.len() {
                parabola_vertex(point(k - 1), point(k), point(k + 1))
            } else {
                fine[k].ln()
            }))
        };
        let (rows, pooled_ln) = rayon::join(|| self.summaries(x, &nodes, &grid), pooled);
        let (rows, pooled_ln) = (rows?, pooled_ln?);
        Ok(BatchEstimate { rows, pooled_ln })
    }

    /// The likelihood on the coarse grid (and each row's fine window) for every row.
    fn coarse_pass(
        &self,
        model: &dyn NoiseLikelihood,
        x: &Batch,
        cond: &Cond,
    ) -> Result<(Vec<f64>, SigmaGrid)> {
        self.prior.validate()?;
        let coarse = self.coarse_grid(x.dim);
        let nodes = self.nodes_of(&coarse);
        let refine = |row: &[f64]| self.fine_grid_on(&nodes, row);
        let grid = model.log_likelihood(x, cond, &coarse, &refine)?;
        Ok((coarse, grid))
    }

    /// Each row's posterior summary from its grid values, the rows in parallel.
    fn summaries(
        &self,
        x: &Batch,
        nodes: &GridNodes,
        grid: &SigmaGrid,
    ) -> Result<Vec<SigmaEstimate>> {
        let g = nodes.ln.len();
        // Rows are independent: summarised in parallel (the same values in the same order).
        (0..x.rows)
            .into_par_iter()
            .map(|r| {
                let fine = &grid.fine_sigmas[r];
                // Inside the fine window only the fine nodes: the trapezoid rule keeps its
                // accuracy on a uniform grid, not on an interleaved one.
                let window = match (fine.first(), fine.last()) {
                    (Some(lo), Some(hi)) => (lo.ln(), hi.ln()),
                    _ => (f64::INFINITY, f64::NEG_INFINITY),
                };
                let mut points: Vec<(f64, f64)> = (0..g)
                    .filter(|&k| nodes.ln[k] < window.0 || nodes.ln[k] > window.1)
                    .map(|k| (nodes.ln[k], grid.coarse[r * g + k] + nodes.log_prior[k]))
                    .collect();
                for (s, ll) in fine.iter().zip(&grid.fine[r]) {
                    let u = s.ln();
                    points.push((u, ll + self.prior.log_density(u)));
                }
                posterior_summary(&mut points)
            })
            .collect()
    }
}

/// Nodes of the pooled estimate's fine grid.
const POOL_NODES: usize = 33;
/// Fine nodes the pooled estimate measures first either side of its starting node, and then
/// beyond whichever end of the measured run holds the best.
const POOL_REACH: usize = 2;

/// The fine node nearest the vertex of the parabola through the summed coarse values at `best`
/// and its neighbours: the pooled maximum lies within a fine step or two of it.
fn pool_start(summed: &[f64], coarse_ln: &[f64], best: usize, lo: f64, hi: f64) -> usize {
    let last = POOL_NODES - 1;
    let centre = if best > 0 && best + 1 < summed.len() {
        let point = |i: usize| (coarse_ln[i], summed[i]);
        parabola_vertex(point(best - 1), point(best), point(best + 1))
    } else {
        coarse_ln[best]
    };
    let at = ((centre - lo) / (hi - lo) * last as f64).round();
    if at.is_finite() {
        (at.max(0.0) as usize).min(last)
    } else {
        last / 2
    }
}

/// The summed likelihood on the fine nodes a hill climb from `start` measured (NaN elsewhere),
/// and the index of the best of them: a run of nodes around `start`, extended by POOL_REACH nodes
/// beyond whichever end holds the best until the best lies inside the run or at the grid's end.
/// The summed likelihood of B rows is unimodal over the window (its width, ~1/sqrt(2 B D), is far
/// below the window's), so the climb ends where a scan of every node would: on a few nodes
/// instead of all of them.
fn climb_pooled(
    fine: &[f64],
    start: usize,
    mut measure: impl FnMut(&[usize]) -> Result<Vec<f64>>,
) -> Result<(Vec<f64>, usize)> {
    let last = fine.len() - 1;
    let mut summed = vec![f64::NAN; fine.len()];
    let (mut from, mut to) = (
        start.saturating_sub(POOL_REACH),
        (start + POOL_REACH).min(last),
    );
    let mut next: Vec<usize> = (from..=to).collect();
    loop {
        for (&i, v) in next.iter().zip(measure(&next)?) {
            summed[i] = v;
        }
        let k = argmax_of(&summed, from..=to);
        next = if k == from && from > 0 {
            let below = from.saturating_sub(POOL_REACH);
            let nodes = (below..from).collect();
            from = below;
            nodes
        } else if k == to && to < last {
            let above = (to + POOL_REACH).min(last);
            let nodes = (to + 1..=above).collect();
            to = above;
            nodes
        } else {
            return Ok((summed, k));
        };
    }
}

/// Column sums of a [rows][width] table.
fn sum_rows(values: &[f64], width: usize) -> Vec<f64> {
    let mut sums = vec![0.0; width];
    for row in values.chunks_exact(width) {
        for (s, v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
    sums
}

/// The index of the largest value (NaN never wins).
fn argmax(values: &[f64]) -> usize {
    argmax_of(values, 0..=values.len().saturating_sub(1))
}

/// The index of the largest value among `range` (NaN never wins; the range's start if all are).
fn argmax_of(values: &[f64], range: std::ops::RangeInclusive<usize>) -> usize {
    let start = *range.start();
    range
        .filter(|&i| i < values.len() && !values[i].is_nan())
        .max_by(|&i, &j| values[i].total_cmp(&values[j]))
        .unwrap_or(start)
}

/// ln sigma and the ln prior at each node of a grid.
struct GridNodes {
    ln: Vec<f64>,
    log_prior: Vec<f64>,
}

/// Below this, exp underflows to 0 in f64 (e^-745.14 is half the least subnormal).
const EXP_UNDERFLOW: f64 = -746.0;

/// exp(l - top): 0 without the call where it underflows, so every bit is exp's own.
#[inline]
fn relative_density(l: f64, top: f64) -> f64 {
    let x = l - top;
    if x < EXP_UNDERFLOW { 0.0 } else { x.exp() }
}

/// Posterior mean and mode of u = ln sigma from (u, ln density) nodes, by the trapezoid rule on
/// the sorted nodes (any spacing).
pub fn posterior_summary(nodes: &mut Vec<(f64, f64)>) -> Result<SigmaEstimate> {
    nodes.retain(|(u, l)| u.is_finite() && !l.is_nan());
    nodes.sort_by(|a, b| a.0.total_cmp(&b.0));
    nodes.dedup_by(|a, b| (a.0 - b.0).abs() < 1e-12);
    let top = nodes.iter().map(|n| n.1).fold(f64::NEG_INFINITY, f64::max);
    if !top.is_finite() || nodes.len() < 2 {
        return Err(Error::NonFinite(
            "noise posterior is zero everywhere on the grid".into(),
        ));
    }
    // Each node's density once (the trapezoids share their ends).
    let densities: Vec<f64> = nodes
        .iter()
        .map(|&(_, l)| relative_density(l, top))
        .collect();
    let (mut mass, mut first, mut second) = (0.0, 0.0, 0.0);
    for (w, p) in nodes.windows(2).zip(densities.windows(2)) {
        let ((u0, _), (u1, _)) = (w[0], w[1]);
        let (p0, p1) = (p[0], p[1]);
        let h = u1 - u0;
        mass += 0.5 * h * (p0 + p1);
        first += 0.5 * h * (u0 * p0 + u1 * p1);
        second += 0.5 * h * (u0 * u0 * p0 + u1 * u1 * p1);
    }
    let mean_ln = first / mass;
    let k = nodes
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.1.total_cmp(&b.1.1))
        .map(|(k, _)| k)
        .unwrap_or(0);
    let map_ln = if k > 0 && k + 1 < nodes.len() {
        parabola_vertex(nodes[k - 1], nodes[k], nodes[k + 1])
    } else {
        nodes[k].0
    };
    Ok(SigmaEstimate {
        mean_ln,
        map_ln,
        std_ln: (second / mass - mean_ln * mean_ln).max(0.0).sqrt(),
    })
}

/// The abscissa of the vertex of the parabola through three points (any spacing).
fn parabola_vertex((x0, y0): (f64, f64), (x1, y1): (f64, f64), (x2, y2): (f64, f64)) -> f64 {
    let denom = (x0 - x1) * (x0 - x2) * (x1 - x2);
    let a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom;
    let b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denom;
    if a.is_finite() && a < 0.0 {
        (-b / (2.0 * a)).clamp(x0, x2)
    } else {
        x1
    }
}

/// Median, 10% and 90% quantiles of a set of values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
}

impl Spread {
    /// Not measured (diagnostics off, or no such estimator).
    pub const NAN: Spread = Spread {
        median: f64::NAN,
        p10: f64::NAN,
        p90: f64::NAN,
    };

    pub fn of(values: &[f64]) -> Self {
        Spread {
            median: quantile(values, 0.5),
            p10: quantile(values, 0.1),
            p90: quantile(values, 0.9),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Pure Gaussian noise around a known point: p(x; sigma) = N(x; 0, sigma^2 I).
    pub(crate) struct IsotropicAtZero;
    impl NoiseLikelihood for IsotropicAtZero {
        fn log_likelihood(
            &self,
            x: &Batch,
            _cond: &Cond,
            coarse: &[f64],
            refine: &(dyn Fn(&[f64]) -> Vec<f64> + Sync),
        ) -> Result<SigmaGrid> {
            let ll = |row: &[f64], s: f64| {
                let d = row.len() as f64;
                let r2: f64 = row.iter().map(|v| v * v).sum();
                -0.5 * r2 / (s * s) - d * s.ln()
            };
            Ok((0..x.rows)
                .map(|r| {
                    let c: Vec<f64> = coarse.iter().map(|&s| ll(x.row(r), s)).collect();
                    let fine = refine(&c);
                    let f = fine.iter().map(|&s| ll(x.row(r), s)).collect();
                    (c, fine, f)
                })
                .collect())
        }
    }

    #[test]
    fn posterior_mean_matches_the_inverse_gamma_closed_form() -> Result<()> {
        // With a flat prior in ln sigma and x ~ N(0, sigma^2 I_D), 1/sigma^2 | x ~ Gamma(D/2, r2/2),
        // so E[ln sigma | x] = (ln(r2/2) - digamma(D/2)) / 2.
        let dim = 64;
        let x = Batch::from_vec(1, dim, vec![0.3; dim])?;
        let r2 = 0.09 * dim as f64;
        let est = PosteriorEstimator::new(SigmaPrior::for_schedule(0.002, 80.0));
        let e = est.estimate(&IsotropicAtZero, &x, &Cond::plain())?[0];
        // digamma(32) = H_31 - gamma.
        let h31: f64 = (1..=31).map(|k| 1.0 / k as f64).sum();
        let digamma = h31 - 0.577_215_664_901_532_9;
        let expect = ((r2 / 2.0).ln() - digamma) / 2.0;
        assert!(
            (e.mean_ln - expect).abs() < 1e-4,
            "{} vs {expect}",
            e.mean_ln
        );
        // MAP of ln sigma: maximise -r2/(2 s^2) - D ln s -> s^2 = r2 / D.
        let map = (r2 / dim as f64).sqrt().ln();
        assert!((e.map_ln - map).abs() < 2e-3, "{} vs {map}", e.map_ln);
        Ok(())
    }

    /// The pooled estimate's climb against a scan of every node: the same best node and the same
    /// values either side of it, from every start, on peaks inside the window, at its ends and
    /// beyond them; and far fewer nodes measured than the scan's.
    #[test]
    fn the_pooled_climb_finds_the_scans_best_node() -> Result<()> {
        let fine: Vec<f64> = (0..POOL_NODES).map(|k| 1.0 + k as f64).collect();
        for peak in [-3.0, 0.0, 0.4, 7.5, 16.0, 23.2, 32.0, 40.0] {
            let value = |i: usize| -((i as f64 - peak) * 0.7).powi(2);
            let scan: Vec<f64> = (0..POOL_NODES).map(value).collect();
            let best = argmax(&scan);
            for start in 0..POOL_NODES {
                let mut measured = 0;
                let (summed, k) = climb_pooled(&fine, start, |at| {
                    measured += at.len();
                    Ok(at.iter().map(|&i| value(i)).collect())
                })?;
                assert_eq!(k, best, "peak {peak}, start {start}");
                for i in k.saturating_sub(1)..=(k + 1).min(POOL_NODES - 1) {
                    assert_eq!(summed[i], scan[i], "peak {peak}, start {start}, node {i}");
                }
                if start.abs_diff(best) <= 2 {
                    assert!(
                        measured <= 7,
                        "peak {peak}, start {start}: {measured} nodes"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn quadrature_weights_integrate_the_prior() {
        let prior = SigmaPrior::edm_training();
        let (s, lw) = prior.quadrature(200);
        let total: f64 = lw.iter().map(|l| l.exp()).sum();
        // Unnormalised N density integrates to std sqrt(2 pi).
        // Less the 5.7e-7 of the mass beyond five standard deviations.
        assert!((total - 1.2 * (2.0 * std::f64::consts::PI).sqrt()).abs() < 1e-5);
        assert!(s[0] < s[199]);
    }
}
