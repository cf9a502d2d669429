//! The `noisescope sample` command on real files: outputs, notes, presets mended by flags, run
//! folders replaced whole. Bad inputs are in tests/cli_bad_inputs.rs, the f64 reference runs in
//! tests/cli_reference.rs.

mod cli_support;

use noisescope::data::npy;

use cli_support::{noisescope, path, save_png, stderr};

#[test]
fn sample_writes_every_output_and_the_npy_files_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "run");
    let o = noisescope(&[
        "sample", "--data", "digits", "--batch", "9", "--steps", "6", "--class", "3", "--cfg", "2",
        "--out", &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let traj = npy::read(&dir.path().join("run/traj.npy")).expect("traj");
    assert_eq!(traj.shape, vec![7, 9, 64]);
    let den = npy::read(&dir.path().join("run/denoised.npy")).expect("denoised");
    assert_eq!(den.shape, vec![6, 9, 64]);
    let sig = npy::read(&dir.path().join("run/sigmas.npy")).expect("sigmas");
    assert_eq!(sig.data.len(), 7);
    assert_eq!(sig.data[6], 0.0);
    let csv = std::fs::read_to_string(dir.path().join("run/diagnostics.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 7);
    assert!(csv.starts_with("step,sigma,"));
    assert!(dir.path().join("run/samples.png").exists());
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/run.json")).expect("json"),
    )
    .expect("valid json");
    assert_eq!(json["evaluations"], 11);
    assert!(json["backend"].as_str().is_some_and(|b| !b.is_empty()));
    // f32 by default.
    let bytes = std::fs::read(dir.path().join("run/traj.npy")).expect("bytes");
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("<f4"));
}

#[test]
fn gaussian_runs_carry_the_theory_and_f64_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "g");
    let o = noisescope(&[
        "sample",
        "--data",
        "gaussian:0.5,2",
        "--batch",
        "4",
        "--steps",
        "5",
        "--precision",
        "f64",
        "--schedule",
        "tangent",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("g/run.json")).expect("json"),
    )
    .expect("valid");
    assert!(json["theory"]["kl"].as_f64().is_some_and(|kl| kl > 0.0));
    assert_eq!(
        json["theory"]["variances"].as_array().map(|v| v.len()),
        Some(6)
    );
    assert!(json["tangent_c"].as_f64().is_some_and(|c| c > 0.0));
    let bytes = std::fs::read(dir.path().join("g/traj.npy")).expect("bytes");
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("<f8"));
}
#[test]
fn presets_are_validated_after_the_flags_and_notes_name_ignored_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let preset = dir.path().join("steps0.json");
    std::fs::write(&preset, r#"{"schedule": {"steps": 0}, "batch": 3}"#).expect("write");
    let out = path(dir.path(), "o");
    // --steps mends the preset's steps: 0.
    let o = noisescope(&[
        "sample",
        "--preset",
        &preset.display().to_string(),
        "--steps",
        "3",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sig = npy::read(&dir.path().join("o/sigmas.npy")).expect("sigmas");
    assert_eq!(sig.data.len(), 4);
    // Flags the run ignores: one note each, and the run goes ahead.
    let data = dir.path().join("d.npy");
    npy::write(
        &data,
        &[4, 2],
        &[0.0, 1.0, 2.0, 3.0, 1.0, 0.0, 2.0, 1.0],
        false,
    )
    .expect("write");
    let runs: [(&[&str], &[&str]); 4] = [
        (&["--churn", "20", "--sampler", "heun"], &["--churn"]),
        (&["--churn", "20", "--sampler", "euler"], &["--churn"]),
        (
            &[
                "--data",
                &format!("npy:{}", data.display()),
                "--points",
                "9",
            ],
            &["--points"],
        ),
        (
            &["--data", "toy:moons", "--image-size", "8", "--rgb"],
            &["--image-size", "--rgb"],
        ),
    ];
    for (flags, expect) in runs {
        let mut args = vec!["sample", "--steps", "3", "--batch", "4", "--out", &out];
        args.extend_from_slice(flags);
        let o = noisescope(&args);
        let err = stderr(&o);
        assert!(o.status.success(), "{flags:?}: {err}");
        let notes: Vec<&str> = err.lines().filter(|l| l.starts_with("note: ")).collect();
        assert_eq!(notes.len(), expect.len(), "{flags:?}: {err}");
        for (note, flag) in notes.iter().zip(expect) {
            assert!(note.contains(flag) && note.contains("no effect"), "{note}");
        }
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("o/run.json")).expect("json"),
        )
        .expect("valid");
        assert_eq!(
            json["notes"].as_array().map(|n| n.len()),
            Some(expect.len())
        );
    }
    // A schedule no sampler can follow still runs, with a warning that names the fix.
    let o = noisescope(&[
        "sample",
        "--sigma-min",
        "1e-12",
        "--sigma-max",
        "1e12",
        "--steps",
        "18",
        "--batch",
        "4",
        "--out",
        &out,
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("--steps")),
        "{err}"
    );
    // The default schedule gets no warning.
    let o = noisescope(&["sample", "--batch", "4", "--out", &out]);
    assert!(
        o.status.success() && stderr(&o).is_empty(),
        "{}",
        stderr(&o)
    );
}

#[test]
fn double_precision_takes_data_single_precision_cannot_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("wide.npy");
    let values: Vec<f64> = (0..20).map(|i| (i as f64 - 10.0) * 1e9).collect();
    npy::write(&data, &[10, 2], &values, true).expect("write");
    let out = path(dir.path(), "o");
    let o = noisescope(&[
        "sample",
        "--data",
        &format!("npy:{}", data.display()),
        "--precision",
        "f64",
        "--sigma-max",
        "1e11",
        "--batch",
        "3",
        "--steps",
        "4",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let traj = npy::read(&dir.path().join("o/traj.npy")).expect("traj");
    assert!(traj.data.iter().all(|v| v.is_finite()));
}

#[test]
fn a_new_run_replaces_every_file_of_the_old_one_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).expect("mkdir");
    for i in 0..3 {
        save_png(&imgs.join(format!("{i}.png")), 60 * i);
    }
    let out = path(dir.path(), "o");
    let o = noisescope(&[
        "sample",
        "--data",
        &format!("images:{}", imgs.display()),
        "--image-size",
        "4",
        "--batch",
        "2",
        "--steps",
        "3",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("o/samples.png").exists());
    std::fs::write(dir.path().join("o/mine.txt"), "keep").expect("write");
    let o = noisescope(&["sample", "--batch", "2", "--steps", "3", "--out", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("o"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "denoised.npy",
            "diagnostics.csv",
            "mine.txt",
            "run.json",
            "sigmas.npy",
            "traj.npy"
        ]
    );
    // No staging folders are left beside it.
    let beside: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("o/run.json")).expect("json"),
    )
    .expect("valid");
    let mut keys: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "backend",
            "data",
            "evaluations",
            "notes",
            "quality",
            "sigmas",
            "spec",
            "straightness",
            "tangent_c",
            "theory",
            "timings"
        ]
    );
    assert_eq!(json["data"]["label"], "toy:8gaussians");
    assert_eq!(json["data"]["dim"], 2);
    assert!(
        json["timings"]["evaluations_per_s"]
            .as_f64()
            .is_some_and(|v| v > 0.0)
    );
}

#[test]
fn a_folder_of_images_is_a_data_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).expect("mkdir");
    for i in 0..5u8 {
        let img = image::RgbImage::from_fn(12, 10, |x, y| {
            image::Rgb([x as u8 * 20, y as u8 * 20, i * 40])
        });
        img.save(imgs.join(format!("{i}.png"))).expect("save");
    }
    let out = path(dir.path(), "o");
    let o = noisescope(&[
        "sample",
        "--data",
        &format!("images:{}", imgs.display()),
        "--image-size",
        "6",
        "--rgb",
        "--batch",
        "3",
        "--steps",
        "4",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let traj = npy::read(&dir.path().join("o/traj.npy")).expect("traj");
    assert_eq!(traj.shape, vec![5, 3, 6 * 6 * 3]);
    assert!(dir.path().join("o/samples.png").exists());
}

#[test]
fn info_schedule_follows_the_exact_information_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One Gaussian direction: the information per d ln sigma is lambda / (lambda + s^2), so the
    // levels are equally spaced in G(s) = -ln(1 + lambda / s^2) / 2.
    let out = path(dir.path(), "g");
    let o = noisescope(&[
        "sample",
        "--data",
        "gaussian:0.25",
        "--schedule",
        "info",
        "--steps",
        "6",
        "--batch",
        "4",
        "--precision",
        "f64",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let used = npy::read(&dir.path().join("g/sigmas.npy"))
        .expect("sigmas")
        .data;
    let g = |s: f64| -0.5 * (0.25 / (s * s)).ln_1p();
    assert_eq!((used[0], used[5], used[6]), (80.0, 0.002, 0.0));
    for (i, &s) in used[..6].iter().enumerate() {
        let u = i as f64 / 5.0;
        let target = (1.0 - u) * g(80.0) + u * g(0.002);
        let exact = (0.25 / (-2.0 * target).exp_m1()).sqrt();
        // The profile is log-linear between levels 0.125 apart in ln sigma.
        assert!((s / exact - 1.0).abs() < 5e-3, "{i}: {s} vs {exact}");
    }
    // A finite set (Monte Carlo profile of the ideal denoiser), re-planned adaptively.
    let data = dir.path().join("points.npy");
    let points: Vec<f64> = (0..60)
        .map(|i| ((i * 37) % 23) as f64 / 7.0 - 1.5)
        .collect();
    npy::write(&data, &[30, 2], &points, false).expect("write");
    let out = path(dir.path(), "e");
    let o = noisescope(&[
        "sample",
        "--data",
        &format!("npy:{}", data.display()),
        "--schedule",
        "info",
        "--adaptive",
        "--steps",
        "6",
        "--sigma-min",
        "0.01",
        "--sigma-max",
        "20",
        "--batch",
        "16",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let used = npy::read(&dir.path().join("e/sigmas.npy"))
        .expect("sigmas")
        .data;
    assert_eq!((used.len(), used[6]), (7, 0.0));
    assert!((used[0] / 20.0 - 1.0).abs() < 1e-7);
    assert!(used.windows(2).all(|w| w[0] > w[1]), "{used:?}");
    assert!(used[5] >= 0.01);
}

#[test]
fn binarised_digits_sample_to_pm1_pixels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "b");
    let o = noisescope(&[
        "sample",
        "--data",
        "digits:binary",
        "--batch",
        "4",
        "--steps",
        "4",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let traj = npy::read(&dir.path().join("b/traj.npy")).expect("traj");
    assert_eq!(traj.shape, vec![5, 4, 64]);
    // The ideal denoiser of +-1 data ends on +-1 pixels.
    let last = &traj.data[4 * 4 * 64..];
    assert!(
        last.iter().all(|v| (v.abs() - 1.0).abs() < 0.05),
        "{last:?}"
    );
}
