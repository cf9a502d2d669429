//! Sweeps (issue 15): every row of sweep.csv is the run `noisescope sample` makes with that
//! point's flags (same noise, same metrics to the last bit), a Gaussian sweep's KL is the closed
//! form (and the samples' own variances agree with it), a cancelled sweep keeps its finished
//! rows, and each bad --vary is one clear error.

mod cli_support;

use std::cell::Cell;
use std::collections::HashMap;
use std::ops::ControlFlow;

use noisescope::core::theory::{gaussian_theory, kl_gaussian};
use noisescope::error::Result;
use noisescope::run::RunSpec;
use noisescope::run::sweep::engine::PreparedSweep;
use noisescope::run::sweep::{SweepAxis, SweepMetric, SweepSpec};

use cli_support::{assert_one_line_error, noisescope, path, stderr};

/// sweep.csv as one map per row, column name -> text.
fn read_csv(text: &str) -> Vec<HashMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("a header")
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|line| {
            // The settings of these tests hold no commas, so no quoting to undo.
            header
                .iter()
                .cloned()
                .zip(line.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

#[test]
fn each_row_equals_running_that_point_alone_with_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "sweep");
    let common = [
        "--data",
        "toy:moons",
        "--batch",
        "48",
        "--seed",
        "5",
        "--class",
        "1",
        "--cfg",
        "1.5",
        "--churn",
        "10",
        "--diagnostics",
        "off",
    ];
    let mut args = vec![
        "sweep",
        "--vary",
        "steps=3,5",
        "--vary",
        "sampler=euler,heun,edm",
        "--metric",
        "w2,mmd,nn,class-acc",
        "--out",
        &out,
    ];
    args.extend(common);
    let o = noisescope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("[6/6]"), "progress: {}", stderr(&o));
    let csv = std::fs::read_to_string(dir.path().join("sweep/sweep.csv")).expect("sweep.csv");
    let rows = read_csv(&csv);
    assert_eq!(rows.len(), 6);
    let png = image::open(dir.path().join("sweep/sweep.png")).expect("sweep.png");
    assert!(png.width() > 400 && png.height() > 4 * 300);
    for row in &rows {
        let one = path(dir.path(), &format!("point{}", row["point"]));
        let mut args = vec![
            "sample",
            "--steps",
            &row["steps"],
            "--sampler",
            &row["sampler"],
            "--out",
            &one,
        ];
        args.extend(common);
        let o = noisescope(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("point{}/run.json", row["point"])))
                .expect("run.json"),
        )
        .expect("json");
        let quality = &json["quality"];
        for (column, field) in [
            ("w2", "sliced_w2"),
            ("mmd", "mmd"),
            ("nn", "nearest_distance"),
            ("class-acc", "class_accuracy"),
        ] {
            let swept: f64 = row[column].parse().expect("a number");
            let alone = quality[field].as_f64().expect("a number");
            assert_eq!(swept, alone, "point {} {column}", row["point"]);
        }
        assert_eq!(
            row["evaluations"],
            json["evaluations"].to_string(),
            "point {}",
            row["point"]
        );
        assert_eq!(row["s_churn"], "10");
    }
    // The sweep's JSON runs the same sweep again: same rows, but the time.
    let again = path(dir.path(), "again");
    let preset = path(dir.path(), "sweep/sweep.json");
    let o = noisescope(&["sweep", "--sweep", &preset, "--out", &again]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rerun =
        read_csv(&std::fs::read_to_string(dir.path().join("again/sweep.csv")).expect("csv"));
    for (a, b) in rows.iter().zip(&rerun) {
        for column in [
            "w2",
            "mmd",
            "nn",
            "class-acc",
            "steps",
            "sampler",
            "evaluations",
        ] {
            assert_eq!(a[column], b[column], "{column}");
        }
    }
}

fn gaussian_sweep(batch: usize) -> Result<SweepSpec> {
    let base = RunSpec {
        data: noisescope::data::DataSpec::parse("gaussian:0.01,0.1,1,4", None, 0, 32, false)?,
        batch,
        seed: 3,
        ..Default::default()
    };
    Ok(SweepSpec {
        name: "kl".into(),
        base,
        vary: vec![
            SweepAxis::parse("steps=2,4,8")?,
            SweepAxis::parse("schedule=karras,log,tangent")?,
        ],
        metrics: vec![SweepMetric::Kl],
    })
}

#[test]
fn a_gaussian_kl_sweep_equals_the_closed_form() -> Result<()> {
    let lambdas = [0.01, 0.1, 1.0, 4.0];
    let mut spec = gaussian_sweep(20_000)?;
    spec.base.diagnostics.enabled = false;
    let prepared = PreparedSweep::new(&spec)?;
    for point in &prepared.points {
        let (row, samples) = prepared.run_point(point, &|| false)?.expect("not stopped");
        let samples = samples.expect("the run succeeded");
        let kl = row.metric(SweepMetric::Kl).expect("a KL");
        // The closed form on the sigmas the schedule gives (tangent: its KL-optimal c).
        let mut schedule = point.spec.schedule;
        if let noisescope::core::schedule::ScheduleKind::Tangent { c: None } = schedule.kind {
            let c = noisescope::core::theory::best_tangent_c(
                &lambdas,
                schedule.steps,
                schedule.sigma_min,
                schedule.sigma_max,
                point.spec.sampler,
            );
            schedule.kind = noisescope::core::schedule::ScheduleKind::Tangent { c: Some(c) };
        }
        let sigmas = schedule.sigmas_with(None)?;
        let theory = gaussian_theory(
            &lambdas,
            &sigmas,
            point.spec.sampler,
            &point.spec.stochasticity,
        );
        assert!(
            (kl - theory.kl).abs() <= 1e-12 * theory.kl.max(1.0),
            "{:?}: {kl} vs {}",
            point.values,
            theory.kl
        );
        // And the samples are the distribution the closed form describes: their variances
        // per direction (20000 samples: ~1% each) give nearly the same KL.
        let empirical: Vec<f64> = (0..lambdas.len())
            .map(|k| {
                let n = samples.rows as f64;
                let mean = (0..samples.rows).map(|r| samples.row(r)[k]).sum::<f64>() / n;
                (0..samples.rows)
                    .map(|r| (samples.row(r)[k] - mean).powi(2))
                    .sum::<f64>()
                    / n
            })
            .collect();
        let measured = kl_gaussian(&lambdas, &empirical);
        assert!(
            (measured - kl).abs() <= 0.02 + 0.05 * kl,
            "{:?}: samples give KL {measured}, the closed form {kl}",
            point.values
        );
    }
    Ok(())
}

#[test]
fn a_cancelled_sweep_keeps_its_finished_rows() -> Result<()> {
    let spec = gaussian_sweep(256)?;
    let prepared = PreparedSweep::new(&spec)?;
    let whole = prepared.run(&mut |_| ControlFlow::Continue(()), &|| false)?;
    assert!(!whole.cancelled);
    assert_eq!(whole.rows.len(), 9);
    // Stopped by the caller after two rows.
    let mut seen = 0;
    let stopped = prepared.run(
        &mut |_| {
            seen += 1;
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
        &|| false,
    )?;
    assert!(stopped.cancelled);
    assert_eq!(stopped.rows.len(), 2);
    // Stopped in the middle of the fourth point: three rows stay, the fourth is dropped.
    let finished = Cell::new(0);
    let cancelled = prepared.run(
        &mut |_| {
            finished.set(finished.get() + 1);
            ControlFlow::Continue(())
        },
        &|| finished.get() >= 3,
    )?;
    assert!(cancelled.cancelled);
    assert_eq!(cancelled.rows.len(), 3);
    for kept in [&stopped.rows, &cancelled.rows] {
        for (a, b) in kept.iter().zip(&whole.rows) {
            assert_eq!(a.metrics, b.metrics);
            assert_eq!(a.values, b.values);
        }
    }
    Ok(())
}

#[test]
fn each_bad_vary_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "never");
    let cases: [(&[&str], &str); 13] = [
        (&["--vary", "stepz=4,8"], "unknown setting 'stepz'"),
        (&["--vary", "steps="], "--vary steps="),
        (&["--vary", "steps=4,0"], "steps=0"),
        (&["--vary", "steps=4,x"], "steps=x"),
        (&["--vary", "sampler=euler,rk4"], "sampler=rk4"),
        (&["--vary", "rho=-1"], "rho=-1"),
        (&["--vary", "cfg=1,1e9"], "cfg=1e9"),
        (
            &["--vary", "denoiser=bundled:nope"],
            "denoiser=bundled:nope",
        ),
        (&["--vary", "steps=8:2:3"], "steps=8:2:3"),
        (
            &["--vary", "steps=4", "--vary", "rho=1", "--vary", "eta=1"],
            "one or two",
        ),
        (&["--vary", "steps=4", "--metric", "kl"], "--metric kl"),
        (&["--vary", "steps=4", "--metric", "class-acc"], "--class"),
        // Refused only with the data: the exact denoiser has no learned NAG branch.
        (
            &["--vary", "nag_form=posterior-average,learned", "--nag", "1"],
            "nag_form=learned",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec![
            "sweep",
            "--data",
            "toy:moons",
            "--batch",
            "16",
            "--out",
            &out,
        ];
        args.extend(extra);
        let o = noisescope(&args);
        assert_one_line_error(&o, needle);
        assert!(!dir.path().join("never").exists(), "{extra:?} wrote --out");
    }
}
