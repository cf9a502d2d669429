//! Running a sweep: the data is loaded once and each denoiser built once; every point is a
//! `Session` of its own `RunSpec` (the run `noisescope sample` makes with that point's flags),
//! measured with the same quality function and written as one row of sweep.csv.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::Compute;
use crate::core::Batch;
use crate::core::diagnostics::StepRecord;
use crate::error::{Error, Result};
use crate::models::quality::quality;

use super::{SweepMetric, SweepParam, SweepPoint, SweepSpec};
use crate::run::handle::ModelHandle;
use crate::run::session::{RunResult, Session};
use crate::run::spec::RunSpec;

/// One measured point.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRow {
    pub index: usize,
    /// The value of each varied setting, in the order of `SweepSpec::vary`.
    pub values: Vec<String>,
    pub spec: RunSpec,
    /// Each metric asked for; NaN where this point cannot have it (KL of a learned model).
    pub metrics: Vec<(SweepMetric, f64)>,
    /// Denoiser evaluations (NFE) the run made.
    pub evaluations: usize,
    /// Seconds for the point: the run, its diagnostics and the metrics.
    pub wall_s: f64,
    /// Why the run failed (a guided run that diverged, say); its metrics are NaN.
    pub error: Option<String>,
}

impl SweepRow {
    pub fn metric(&self, metric: SweepMetric) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, v)| *v)
            .filter(|v| v.is_finite())
    }
}

/// A finished or cancelled sweep.
#[derive(Clone, Debug)]
pub struct SweepOutcome {
    pub rows: Vec<SweepRow>,
    pub cancelled: bool,
}

/// A sweep ready to run: checked, its points laid out, its data and denoisers loaded, and every
/// point's run built once (so a value only the data can refuse fails before anything runs).
pub struct PreparedSweep {
    pub spec: SweepSpec,
    pub points: Vec<SweepPoint>,
    handles: Vec<Arc<ModelHandle>>,
    pub notes: Vec<String>,
}

impl PreparedSweep {
    pub fn new(spec: &SweepSpec) -> Result<Self> {
        spec.validate()?;
        let points = spec.points()?;
        let mut notes = spec.base.notes();
        let source = Arc::new(spec.base.load_data()?);
        let compute = Compute::select(spec.base.backend, &mut notes)?;
        let mut handles: Vec<Arc<ModelHandle>> = Vec::new();
        for point in &points {
            if !handles.iter().any(|h| h.serves(&point.spec)) {
                let handle = ModelHandle::with_source(&point.spec, source.clone(), &compute)
                    .map_err(|e| spec.point_error(point, e))?;
                handles.push(Arc::new(handle));
            }
        }
        let prepared = PreparedSweep {
            spec: spec.clone(),
            points,
            handles,
            notes,
        };
        for point in &prepared.points {
            prepared
                .session(point)
                .map_err(|e| spec.point_error(point, e))?;
        }
        Ok(prepared)
    }

    fn session(&self, point: &SweepPoint) -> Result<Session> {
        let handle = self
            .handles
            .iter()
            .find(|h| h.serves(&point.spec))
            .ok_or_else(|| Error::InvalidSpec("no denoiser loaded for this point".into()))?;
        Session::new(&point.spec, handle.clone())
    }

    /// Runs one point; `None` when `stop` said so before it finished. Also returns its samples.
    pub fn run_point(
        &self,
        point: &SweepPoint,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<(SweepRow, Option<Batch>)>> {
        let started = Instant::now();
        let session = self.session(point)?;
        let run = session.run(&mut |_, _| {
            if stop() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if stop() {
            return Ok(None);
        }
        let mut row = SweepRow {
            index: point.index,
            values: point.values.clone(),
            spec: point.spec.clone(),
            metrics: self.spec.metrics.iter().map(|&m| (m, f64::NAN)).collect(),
            evaluations: 0,
            wall_s: 0.0,
            error: None,
        };
        let samples = match run {
            Ok(result) => {
                row.evaluations = result.output.evaluations;
                row.metrics = measure(&self.spec.metrics, &session, &result, &mut row.error);
                Some(result.output.x)
            }
            Err(e) => {
                row.error = Some(e.to_string());
                None
            }
        };
        row.wall_s = started.elapsed().as_secs_f64();
        Ok(Some((row, samples)))
    }

    /// Runs every point in order; `on_row` sees each finished row and may stop the sweep, and
    /// `stop` is asked at every step. The rows finished before a stop are kept.
    pub fn run(
        &self,
        on_row: &mut dyn FnMut(&SweepRow) -> ControlFlow<()>,
        stop: &dyn Fn() -> bool,
    ) -> Result<SweepOutcome> {
        let mut rows = Vec::with_capacity(self.points.len());
        for point in &self.points {
            let Some((row, _)) = self.run_point(point, stop)? else {
                return Ok(SweepOutcome {
                    rows,
                    cancelled: true,
                });
            };
            let flow = on_row(&row);
            rows.push(row);
            if flow.is_break() {
                let cancelled = rows.len() < self.points.len();
                return Ok(SweepOutcome { rows, cancelled });
            }
        }
        Ok(SweepOutcome {
            rows,
            cancelled: false,
        })
    }
}

/// The metrics of a finished run: quality as `noisescope sample` measures it, the closed-form
/// KL, the late noise shift. A metric this run cannot have is NaN (and `why` says so once).
fn measure(
    metrics: &[SweepMetric],
    session: &Session,
    result: &RunResult,
    why: &mut Option<String>,
) -> Vec<(SweepMetric, f64)> {
    let wants_quality = metrics.iter().any(|m| {
        matches!(
            m,
            SweepMetric::W2 | SweepMetric::Mmd | SweepMetric::Nn | SweepMetric::ClassAcc
        )
    });
    let quality = wants_quality
        .then(|| {
            quality(
                &result.output.x,
                &session.handle.source,
                session.cond.class.as_deref(),
                session.spec.seed,
            )
        })
        .and_then(|q| {
            q.map_err(|e| *why = Some(format!("no quality metrics: {e}")))
                .ok()
        });
    metrics
        .iter()
        .map(|&m| {
            let value = match m {
                SweepMetric::W2 => quality.as_ref().map(|q| q.sliced_w2),
                SweepMetric::Mmd => quality.as_ref().map(|q| q.mmd),
                SweepMetric::Nn => quality.as_ref().map(|q| q.nearest_distance),
                SweepMetric::ClassAcc => quality.as_ref().and_then(|q| q.class_accuracy),
                SweepMetric::Kl => session.theory_for(&result.output.sigmas).map(|t| t.kl),
                SweepMetric::DeltaLate => late_delta(&result.records),
            };
            (m, value.unwrap_or(f64::NAN))
        })
        .collect()
}

/// The median over the last three steps (with a noise-level estimate) of each step's median
/// ln sigma_hat - ln sigma.
pub fn late_delta(records: &[StepRecord]) -> Option<f64> {
    let deltas: Vec<f64> = records
        .iter()
        .map(|r| r.delta.median)
        .filter(|d| d.is_finite())
        .collect();
    let mut late = deltas[deltas.len().saturating_sub(3)..].to_vec();
    if late.is_empty() {
        return None;
    }
    late.sort_by(f64::total_cmp);
    let n = late.len();
    Some(if n % 2 == 1 {
        late[n / 2]
    } else {
        0.5 * (late[n / 2 - 1] + late[n / 2])
    })
}

/// sweep.csv's header: the point, every sweepable setting, the batch, the metrics, NFE, time.
pub fn csv_header(metrics: &[SweepMetric]) -> String {
    let mut columns = vec!["point"];
    columns.extend(SweepParam::ALL.map(|p| p.name()));
    columns.push("batch");
    columns.extend(metrics.iter().map(|m| m.name()));
    columns.extend(["evaluations", "wall_s", "error"]);
    columns.join(",")
}

/// One row of sweep.csv; numbers print in full (the shortest text that reads back exactly).
pub fn csv_line(row: &SweepRow) -> String {
    let mut cells = vec![row.index.to_string()];
    cells.extend(SweepParam::ALL.map(|p| csv_cell(&p.value_of(&row.spec))));
    cells.push(row.spec.batch.to_string());
    cells.extend(row.metrics.iter().map(|(_, v)| {
        if v.is_finite() {
            v.to_string()
        } else {
            String::new()
        }
    }));
    cells.push(row.evaluations.to_string());
    cells.push(format!("{:.4}", row.wall_s));
    cells.push(csv_cell(row.error.as_deref().unwrap_or("")));
    cells.join(",")
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::estimate::Spread;

    fn record(step: usize, delta: f64) -> StepRecord {
        let spread = Spread {
            median: delta,
            p10: delta,
            p90: delta,
        };
        StepRecord {
            step,
            sigma: 1.0,
            sigma_churned: 1.0,
            sigma_next: 0.5,
            sigma_hat: spread,
            delta: spread,
            sigma_hat_pooled: f64::NAN,
            posterior_std_ln: f64::NAN,
            learned_sigma_hat: Spread::NAN,
            angle_deg: f64::NAN,
            local_error: f64::NAN,
            evaluations: 1,
            step_ms: 0.0,
            diagnostics_ms: 0.0,
        }
    }

    #[test]
    fn late_delta_is_the_median_of_the_last_three_measured_steps() {
        let records: Vec<StepRecord> = [0.9, 0.5, 0.1, f64::NAN, 0.3, 0.2]
            .iter()
            .enumerate()
            .map(|(i, &d)| record(i, d))
            .collect();
        assert_eq!(late_delta(&records), Some(0.2));
        assert_eq!(late_delta(&records[..2]), Some(0.7));
        assert_eq!(late_delta(&[]), None);
    }

    #[test]
    fn csv_cells_quote_what_needs_it() {
        assert_eq!(csv_cell("heun"), "heun");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
