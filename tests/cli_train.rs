//! The `noisescope train` command: a checkpoint on disk, resume, and one clear error per bad input.

use std::path::Path;

use noisescope::models::learned::LearnedDenoiser;

mod cli_support;
use cli_support::{assert_one_line_error as assert_clear_error, noisescope, path, text};

#[test]
fn train_writes_a_checkpoint_and_resumes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "moons.safetensors");
    let o = noisescope(&[
        "train",
        "--data",
        "toy:moons",
        "--points",
        "500",
        "--model",
        "mlp",
        "--steps",
        "20",
        "--batch",
        "32",
        "--seed",
        "3",
        "--log-every",
        "10",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("step      10/20"), "{stdout}");
    assert!(stdout.contains("wrote"), "{stdout}");
    let model = LearnedDenoiser::from_checkpoint(Path::new(&out)).expect("loads");
    let sidecar = model.sidecar.as_ref().expect("sidecar");
    assert_eq!((sidecar.steps_done, sidecar.seed), (20, 3));
    assert_eq!(sidecar.data.label, "toy:moons");
    assert!(sidecar.weights.optimizer_state);
    // No temporary files are left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    let more = path(dir.path(), "more.safetensors");
    let o = noisescope(&[
        "train",
        "--data",
        "toy:moons",
        "--points",
        "500",
        "--model",
        "mlp",
        "--steps",
        "30",
        "--resume",
        &out,
        "--weights-only",
        "--out",
        &more,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let resumed = LearnedDenoiser::from_checkpoint(Path::new(&more)).expect("loads");
    let sidecar = resumed.sidecar.as_ref().expect("sidecar");
    // The resumed run keeps the saved settings it was not told to change.
    assert_eq!((sidecar.steps_done, sidecar.training.batch), (30, 32));
    assert!(!sidecar.weights.optimizer_state);
}

#[test]
fn train_rejects_bad_input_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "m.safetensors");
    let base = [
        "train",
        "--data",
        "toy:moons",
        "--points",
        "300",
        "--steps",
        "2",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |args: Vec<String>| noisescope(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_clear_error(
        &run(with(&["--model", "unet", "--out", &out])),
        "needs image data",
    );
    assert_clear_error(
        &run(with(&[
            "--model",
            "mlp",
            "--out",
            &path(dir.path(), "m.bin"),
        ])),
        ".safetensors",
    );
    assert_clear_error(
        &run(with(&[
            "--model",
            "mlp",
            "--out",
            &path(dir.path(), "missing/m.safetensors"),
        ])),
        "does not exist",
    );
    assert_clear_error(
        &run(with(&["--model", "mlp", "--lr", "-1", "--out", &out])),
        "lr",
    );
    assert_clear_error(
        &run(with(&[
            "--model",
            "mlp",
            "--noise-dropout",
            "1.5",
            "--out",
            &out,
        ])),
        "dropout",
    );
    assert_clear_error(
        &run(with(&["--model", "mlp", "--batch", "0", "--out", &out])),
        "batch",
    );
    assert_clear_error(
        &run(with(&[
            "--model",
            "mlp",
            "--resume",
            &path(dir.path(), "nope.safetensors"),
            "--out",
            &out,
        ])),
        "nope.safetensors",
    );
    // A checkpoint of other data cannot be resumed on moons.
    let o = noisescope(&[
        "train",
        "--data",
        "toy:rings",
        "--points",
        "300",
        "--model",
        "mlp",
        "--steps",
        "2",
        "--batch",
        "8",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_clear_error(
        &run(with(&[
            "--model",
            "mlp",
            "--resume",
            &out,
            "--out",
            &path(dir.path(), "r.safetensors"),
        ])),
        "different data",
    );
    assert_clear_error(
        &noisescope(&[
            "train",
            "--data",
            "toy:rings",
            "--points",
            "300",
            "--model",
            "mlp",
            "--steps",
            "2",
            "--resume",
            &out,
            "--out",
            &path(dir.path(), "r.safetensors"),
        ]),
        "already done 2 steps",
    );
    // InfoNoise's flags (issue 12).
    assert_clear_error(
        &run(with(&[
            "--model",
            "mlp",
            "--infonoise",
            "ema=0.5",
            "--out",
            &out,
        ])),
        "--sigma-dist infonoise",
    );
    assert_clear_error(
        &run(with(&[
            "--model",
            "mlp",
            "--sigma-dist",
            "infonoise",
            "--infonoise",
            "warmup=3",
            "--out",
            &out,
        ])),
        "unknown constant 'warmup'",
    );
    assert_clear_error(
        &run(with(&[
            "--model",
            "mlp",
            "--profile-csv",
            &path(dir.path(), "p.csv"),
            "--out",
            &out,
        ])),
        "--sigma-dist infonoise",
    );
    // Nothing was written by the failed runs.
    assert!(!dir.path().join("r.safetensors").exists());
    assert!(!dir.path().join("p.csv").exists());
}

#[test]
fn train_with_infonoise_records_its_constants_and_writes_its_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "info.safetensors");
    let csv = path(dir.path(), "profile.csv");
    let o = noisescope(&[
        "train",
        "--data",
        "toy:moons",
        "--points",
        "500",
        "--model",
        "mlp",
        "--steps",
        "40",
        "--batch",
        "32",
        "--sigma-dist",
        "infonoise",
        "--infonoise",
        "warmup_steps=10,rebuild_every=10,bins=32,gate=pinned:0.01",
        "--profile-csv",
        &csv,
        "--eval-every",
        "40",
        "--eval-samples",
        "50",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("validation loss") && stdout.contains("infonoise 4 rebuilds gate c 0.0100"),
        "{stdout}"
    );
    let model = LearnedDenoiser::from_checkpoint(Path::new(&out)).expect("loads");
    let sidecar = model.sidecar.as_ref().expect("sidecar");
    let recorded = serde_json::to_value(&sidecar.training.sigma).expect("json");
    assert_eq!(recorded["kind"], "infonoise");
    assert_eq!(recorded["warmup_steps"], 10);
    assert_eq!(recorded["bins"], 32);
    assert_eq!(recorded["sigma_data"], sidecar.data.sigma_data);
    let state = sidecar.sigma_sampler.as_ref().expect("InfoNoise state");
    assert_eq!(state.profile().rebuilds, 4);
    // One report (the last step): a row per bin, each with m_hat, the exact profile of the
    // 500 moons points, InfoNoise's density and the log-normal's.
    let table = std::fs::read_to_string(&csv).expect("csv");
    let mut lines = table.lines();
    assert_eq!(
        lines.next(),
        Some("step,sigma,m_hat,exact_mmse,infonoise_density,lognormal_density")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().expect("a number")).collect())
        .collect();
    assert_eq!(rows.len(), 32);
    assert!(rows.iter().all(|r| r.len() == 6 && r[0] == 40.0));
    assert!(rows.windows(2).all(|w| w[0][1] < w[1][1]));
    // The exact mmse/dim is at most sigma^2 and grows with sigma.
    assert!(
        rows.iter()
            .all(|r| r[3] > 0.0 && r[3] <= r[1] * r[1] * 1.01)
    );
    assert!(rows[31][3] > rows[0][3]);
    // Both densities integrate to about 1 over ln sigma (bins 1/32 of ln(80/0.002) wide).
    let width = (80.0f64 / 0.002).ln() / 32.0;
    let info: f64 = rows.iter().map(|r| r[4]).sum::<f64>() * width;
    assert!((info - 1.0).abs() < 0.05, "{info}");
    let lognormal: f64 = rows.iter().map(|r| r[5]).sum::<f64>() * width;
    assert!((lognormal - 1.0).abs() < 0.05, "{lognormal}");
}

#[test]
fn sample_runs_a_learned_denoiser_and_reports_its_quality() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "run");
    let o = noisescope(&[
        "sample",
        "--data",
        "toy:moons",
        "--denoiser",
        "bundled:moons",
        "--class",
        "0",
        "--cfg",
        "2",
        "--nag",
        "1",
        "--batch",
        "200",
        // NAG w = 1 needs more than 8 Heun steps to be stable (README, NAG), learned or exact.
        "--steps",
        "18",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("quality vs the data: sliced W2"),
        "{stdout}"
    );
    assert!(stdout.contains("class accuracy"), "{stdout}");
    let run: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/run.json")).expect("run.json"),
    )
    .expect("json");
    assert_eq!(run["spec"]["denoiser"]["bundled"], "moons");
    assert!(
        run["backend"]
            .as_str()
            .is_some_and(|b| b.starts_with("candle"))
    );
    let accuracy = run["quality"]["class_accuracy"].as_f64().expect("accuracy");
    assert!(accuracy > 0.9, "{accuracy}");
    assert!(
        run["quality"]["sliced_w2"]
            .as_f64()
            .is_some_and(|w| w > 0.0)
    );
    // Exact runs report their quality too.
    let o = noisescope(&[
        "sample",
        "--data",
        "toy:moons",
        "--batch",
        "50",
        "--steps",
        "6",
        "--out",
        &path(dir.path(), "exact"),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("quality vs the data"));
}

#[test]
fn sample_refuses_a_learned_denoiser_of_other_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "run");
    let sample = |data: &str, denoiser: &str| {
        noisescope(&[
            "sample",
            "--data",
            data,
            "--denoiser",
            denoiser,
            "--out",
            &out,
        ])
    };
    assert_clear_error(
        &sample("toy:checkerboard", "bundled:moons"),
        "knows 2 classes",
    );
    assert_clear_error(&sample("digits", "bundled:moons"), "64-dimensional");
    assert_clear_error(&sample("toy:moons", "bundled:nothing"), "no bundled model");
    assert_clear_error(
        &sample("toy:moons", &path(dir.path(), "none.safetensors")),
        "none.safetensors",
    );
    assert!(!dir.path().join("run").exists());
}

#[test]
fn train_estimator_writes_one_that_classifier_based_nag_samples_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "g.safetensors");
    let o = noisescope(&[
        "train",
        "--data",
        "toy:moons",
        "--points",
        "500",
        "--model",
        "mlp",
        "--estimator",
        "--estimator-range",
        "0.01,80",
        "--steps",
        "30",
        "--batch",
        "32",
        "--log-every",
        "10",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("noise-level estimator") && stdout.contains("step 30"),
        "{stdout}"
    );
    let sampled = path(dir.path(), "run");
    let sample = |w: &str, out: &str| {
        noisescope(&[
            "sample",
            "--data",
            "toy:moons",
            "--batch",
            "16",
            "--steps",
            "6",
            "--nag",
            w,
            "--nag-estimator",
            &path(dir.path(), "g.safetensors"),
            "--out",
            out,
        ])
    };
    let o = sample("2", &sampled);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let spec = std::fs::read_to_string(Path::new(&sampled).join("run.json")).expect("run.json");
    assert!(spec.contains("nag_estimator"), "{spec}");
    // An estimator for other data is refused with one line.
    let o = noisescope(&[
        "sample",
        "--data",
        "digits",
        "--nag",
        "2",
        "--nag-estimator",
        &out,
        "--out",
        &path(dir.path(), "bad"),
    ]);
    assert_clear_error(&o, "reads 2-dimensional samples");
    // --estimator: its sigma_hat in diagnostics.csv, the classifier-based form and the adaptive
    // schedule from it; without it, those are one clear error.
    let with_estimator = path(dir.path(), "with-g");
    let o = noisescope(&[
        "sample",
        "--data",
        "toy:moons",
        "--batch",
        "16",
        "--steps",
        "6",
        "--estimator",
        &out,
        "--nag",
        "1",
        "--nag-form",
        "classifier-based",
        "--adaptive",
        "true",
        "--adaptive-estimator",
        "learned",
        "--out",
        &with_estimator,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let csv = std::fs::read_to_string(Path::new(&with_estimator).join("diagnostics.csv"))
        .expect("diagnostics.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let column = header
        .iter()
        .position(|h| *h == "learned_sigma_hat_median")
        .expect("the learned column");
    for line in lines {
        let value: f64 = line
            .split(',')
            .nth(column)
            .expect("a value")
            .parse()
            .expect("a number");
        assert!(value.is_finite() && value > 0.0, "{line}");
    }
    let o = noisescope(&[
        "sample",
        "--data",
        "toy:moons",
        "--nag",
        "1",
        "--nag-form",
        "classifier-based",
        "--out",
        &path(dir.path(), "no-g"),
    ]);
    assert_clear_error(&o, "needs a learned noise-level estimator");
}
