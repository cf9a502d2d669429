//! A sweep over two numeric settings as a heatmap (issue 15, item 3): one cell per point, the
//! first axis along x and the second along y, each cell coloured by the metric. An axis whose
//! values are log-spaced is laid out in log10 (`plot::fits_log`); cell edges sit halfway between
//! neighbouring values, so uneven lists get cells of their own widths. The colour scale runs from
//! the smallest to the largest finite metric (log when they span a factor of 10); a missing,
//! failed or not yet measured point is NaN and drawn as missing. Pure: the Sweep tab draws it.

use super::engine::SweepRow;
use super::plot::fits_log;
use super::{SweepMetric, SweepParam, SweepSpec};

/// One axis of the heatmap: the setting, its values in the sweep's order, whether it is log.
#[derive(Clone, Debug, PartialEq)]
pub struct HeatAxis {
    pub param: SweepParam,
    pub values: Vec<f64>,
    pub log: bool,
}

impl HeatAxis {
    fn of(param: SweepParam, values: &[String]) -> Option<Self> {
        if !param.is_numeric() {
            return None;
        }
        let values: Vec<f64> = values
            .iter()
            .map(|v| v.parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect::<Option<_>>()?;
        let log = fits_log(values.iter().copied());
        Some(HeatAxis { param, values, log })
    }

    /// Where value `k` sits on the drawn axis (log10 of it on a log axis).
    pub fn position(&self, k: usize) -> f64 {
        let v = self.values.get(k).copied().unwrap_or(f64::NAN);
        if self.log { v.log10() } else { v }
    }

    /// Cell `k`'s [lower, upper] edges on the drawn axis: halfway to the nearest values below
    /// and above, and as far out as that at the ends (a single value gets a unit-wide cell).
    pub fn edges(&self, k: usize) -> [f64; 2] {
        let at = self.position(k);
        let others = (0..self.values.len())
            .filter(|&o| o != k)
            .map(|o| self.position(o));
        let below = others
            .clone()
            .filter(|&p| p < at)
            .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))));
        let above = others
            .filter(|&p| p > at)
            .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.min(p))));
        let down = below.map(|b| 0.5 * (at - b));
        let up = above.map(|a| 0.5 * (a - at));
        let fallback = down.or(up).unwrap_or(0.5);
        [at - down.unwrap_or(fallback), at + up.unwrap_or(fallback)]
    }
}

/// The heatmap of one metric: cells[j][i] is the point at the first axis's value i and the
/// second's value j (NaN where there is no finite value), with its row index when measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    pub x: HeatAxis,
    pub y: HeatAxis,
    pub cells: Vec<Vec<f64>>,
    pub rows: Vec<Vec<Option<usize>>>,
    pub scale: ColourScale,
}

/// The heatmap of `metric`, when both varied settings are numbers (else `None`: the lines).
pub fn heatmap(spec: &SweepSpec, rows: &[SweepRow], metric: SweepMetric) -> Option<Heatmap> {
    let [first, second] = spec.vary.as_slice() else {
        return None;
    };
    let x = HeatAxis::of(first.param, &first.values)?;
    let y = HeatAxis::of(second.param, &second.values)?;
    let mut cells = vec![vec![f64::NAN; x.values.len()]; y.values.len()];
    let mut at = vec![vec![None; x.values.len()]; y.values.len()];
    for (k, row) in rows.iter().enumerate() {
        let i = row
            .values
            .first()
            .and_then(|v| first.values.iter().position(|a| a == v));
        let j = row
            .values
            .get(1)
            .and_then(|v| second.values.iter().position(|a| a == v));
        if let (Some(i), Some(j)) = (i, j) {
            cells[j][i] = row
                .metric(metric)
                .filter(|v| v.is_finite())
                .unwrap_or(f64::NAN);
            at[j][i] = Some(k);
        }
    }
    let scale = ColourScale::over(cells.iter().flatten().copied());
    Some(Heatmap {
        x,
        y,
        cells,
        rows: at,
        scale,
    })
}

impl Heatmap {
    /// The cell (i, j) holding the drawn point (x, y), if any.
    pub fn cell_at(&self, x: f64, y: f64) -> Option<(usize, usize)> {
        let inside = |axis: &HeatAxis, v: f64| {
            (0..axis.values.len()).find(|&k| {
                let [lo, hi] = axis.edges(k);
                lo <= v && v <= hi
            })
        };
        Some((inside(&self.x, x)?, inside(&self.y, y)?))
    }
}

/// The metric's colour scale: its finite range, log when that spans a factor of 10 or more.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColourScale {
    pub min: f64,
    pub max: f64,
    pub log: bool,
}

impl ColourScale {
    /// The scale over the finite values (NaN when there are none yet).
    pub fn over(values: impl IntoIterator<Item = f64>) -> Self {
        let finite: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if finite.is_empty() {
            return ColourScale {
                min: f64::NAN,
                max: f64::NAN,
                log: false,
            };
        }
        let log = min > 0.0 && max / min >= 10.0;
        ColourScale { min, max, log }
    }

    /// Where `v` sits on the scale, 0 at the minimum and 1 at the maximum; `None` for a missing
    /// value. A flat scale (one value) puts everything in the middle.
    pub fn position(&self, v: f64) -> Option<f64> {
        if !v.is_finite() || !self.min.is_finite() {
            return None;
        }
        let t = |v: f64| if self.log { v.log10() } else { v };
        let span = t(self.max) - t(self.min);
        if span <= 0.0 {
            return Some(0.5);
        }
        Some(((t(v) - t(self.min)) / span).clamp(0.0, 1.0))
    }

    /// The metric at scale position `t` (the colour bar's labels).
    pub fn value_at(&self, t: f64) -> f64 {
        if self.log {
            10f64.powf(self.min.log10() + t * (self.max.log10() - self.min.log10()))
        } else {
            self.min + t * (self.max - self.min)
        }
    }

    /// The colour of `v`, `None` for a missing value.
    pub fn colour(&self, v: f64) -> Option<[u8; 3]> {
        self.position(v).map(colour_map)
    }
}

/// Viridis's ends and three inner stops (perceptually even, readable in grey), linearly between.
const STOPS: [[f64; 3]; 5] = [
    [68.0, 1.0, 84.0],
    [59.0, 82.0, 139.0],
    [33.0, 145.0, 140.0],
    [94.0, 201.0, 98.0],
    [253.0, 231.0, 37.0],
];

/// The colour at position `t` in [0, 1] (dark purple = low, yellow = high).
pub fn colour_map(t: f64) -> [u8; 3] {
    let s = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let k = (s.floor() as usize).min(STOPS.len() - 2);
    let f = s - k as f64;
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    [0, 1, 2].map(|c| (a[c] + f * (b[c] - a[c])).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;
    use crate::run::RunSpec;
    use crate::run::sweep::SweepAxis;

    fn row(index: usize, values: [&str; 2], metric: f64) -> SweepRow {
        SweepRow {
            index,
            values: values.map(String::from).to_vec(),
            spec: RunSpec::default(),
            metrics: vec![(SweepMetric::W2, metric)],
            evaluations: 0,
            wall_s: 0.0,
            error: None,
        }
    }

    fn rho_steps() -> Result<SweepSpec> {
        Ok(SweepSpec {
            name: "rho".into(),
            base: RunSpec::default(),
            vary: vec![
                SweepAxis::parse("rho=1,2,7")?,
                SweepAxis::parse("steps=4,8,32")?,
            ],
            metrics: vec![SweepMetric::W2],
        })
    }

    #[test]
    fn cells_land_where_their_values_are_and_missing_ones_are_nan() -> Result<()> {
        let spec = rho_steps()?;
        // Rows arrive in any order; (rho=7, steps=8) failed (NaN), (2, 32) is not there yet.
        let rows = vec![
            row(0, ["2", "4"], 0.5),
            row(1, ["1", "4"], 0.2),
            row(2, ["7", "8"], f64::NAN),
            row(3, ["7", "32"], 0.02),
        ];
        let map = heatmap(&spec, &rows, SweepMetric::W2).expect("both axes are numbers");
        assert_eq!(map.cells[0][1], 0.5);
        assert_eq!(map.cells[0][0], 0.2);
        assert_eq!(map.rows[0][1], Some(0));
        assert!(map.cells[1][2].is_nan());
        assert_eq!(map.rows[1][2], Some(2));
        assert!(map.cells[2][1].is_nan());
        assert_eq!(map.rows[2][1], None);
        assert_eq!(map.cells[2][2], 0.02);
        // Steps 4..32 span a factor of 8: a log axis; rho 1..7 too.
        assert!(map.y.log && map.x.log);
        assert_eq!(map.y.position(2), 32f64.log10());
        // Edges halfway (in log10) between neighbours; the end cells mirror their neighbour.
        let [lo, hi] = map.y.edges(1);
        assert!((lo - 0.5 * (4f64.log10() + 8f64.log10())).abs() < 1e-12);
        assert!((hi - 0.5 * (8f64.log10() + 32f64.log10())).abs() < 1e-12);
        let [lo0, hi0] = map.y.edges(0);
        assert!(
            (hi0 - lo).abs() < 1e-12 && (4f64.log10() - lo0 - (lo - 4f64.log10())).abs() < 1e-12
        );
        // A point inside a cell finds it; one outside every cell finds none.
        assert_eq!(map.cell_at(2f64.log10(), 8f64.log10()), Some((1, 1)));
        assert_eq!(map.cell_at(3.0, 8f64.log10()), None);
        // A choice axis has no heatmap.
        let lines = SweepSpec {
            vary: vec![
                SweepAxis::parse("steps=4,8")?,
                SweepAxis::parse("sampler=euler,heun")?,
            ],
            ..spec
        };
        assert!(heatmap(&lines, &rows, SweepMetric::W2).is_none());
        Ok(())
    }

    #[test]
    fn the_scale_maps_min_and_max_to_its_ends_and_nan_to_missing() {
        let linear = ColourScale::over([0.3, f64::NAN, 0.1, 0.5]);
        assert!(!linear.log);
        assert_eq!((linear.min, linear.max), (0.1, 0.5));
        assert_eq!(linear.position(0.1), Some(0.0));
        assert_eq!(linear.position(0.5), Some(1.0));
        assert!((linear.position(0.3).expect("finite") - 0.5).abs() < 1e-12);
        assert_eq!(linear.colour(0.1), Some(colour_map(0.0)));
        assert_eq!(linear.colour(0.5), Some(colour_map(1.0)));
        assert_eq!(linear.colour(f64::NAN), None);
        assert_eq!(colour_map(0.0), [68, 1, 84]);
        assert_eq!(colour_map(1.0), [253, 231, 37]);
        // A span of 100: log, so the geometric middle is the scale's middle.
        let log = ColourScale::over([0.01, 1.0]);
        assert!(log.log);
        assert!((log.position(0.1).expect("finite") - 0.5).abs() < 1e-12);
        assert!((log.value_at(0.5) - 0.1).abs() < 1e-12);
        assert_eq!(log.value_at(1.0), 1.0);
        // Nothing measured yet: every cell is missing; one value: the middle.
        assert_eq!(ColourScale::over([f64::NAN]).position(1.0), None);
        assert_eq!(ColourScale::over([2.0]).position(2.0), Some(0.5));
    }
}
