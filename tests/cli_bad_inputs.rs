//! Bad input to the binary, table-driven: each case exits 2 with exactly one line on stderr that
//! names the offending flag or file, never panics, and leaves the output folder (and the files
//! beside it) as they were, mtimes included.

mod cli_support;

use std::path::Path;
use std::process::Command;

use noisescope::data::npy;

use cli_support::{save_png, stderr};

/// One bad input: the arguments (after `noisescope`), the words stderr must contain (the
/// offending flag or file among them) and an optional environment variable.
struct BadInput {
    args: Vec<String>,
    needles: Vec<String>,
    env: Option<(&'static str, &'static str)>,
}

fn bad(args: &[&str], needles: &[&str]) -> BadInput {
    BadInput {
        args: args.iter().map(|s| s.to_string()).collect(),
        needles: needles.iter().map(|s| s.to_string()).collect(),
        env: None,
    }
}

/// Name, size, modification time and bytes of every entry of `dir` (sorted by name).
fn snapshot(dir: &Path) -> Vec<(String, u64, std::time::SystemTime, Vec<u8>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            let meta = e.metadata().expect("metadata");
            let bytes = if meta.is_file() {
                std::fs::read(e.path()).expect("read")
            } else {
                Vec::new()
            };
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.modified().expect("mtime"),
                bytes,
            )
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

/// A .npy written by hand: `header` (the dict) and `body` bytes.
fn raw_npy(path: &Path, header: &str, body: &[u8]) {
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(body);
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn every_bad_input_gives_one_line_exit_2_and_leaves_the_output_folder_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = |name: &str| dir.path().join(name).display().to_string();
    // Files the cases read.
    std::fs::write(dir.path().join("bad.npy"), b"\x93NUMPY\x01\x00garbage").expect("write");
    npy::write(
        &dir.path().join("nan.npy"),
        &[3, 2],
        &[0.0, 1.0, f64::NAN, 2.0, 3.0, 4.0],
        true,
    )
    .expect("write");
    npy::write(
        &dir.path().join("data.npy"),
        &[3, 2],
        &[0.0, 1.0, 2.0, 2.0, 3.0, 4.0],
        false,
    )
    .expect("write");
    npy::write(&dir.path().join("labels.npy"), &[2], &[0.0, 1.0], false).expect("write");
    npy::write(&dir.path().join("frac.npy"), &[3], &[0.0, 0.5, 1.0], true).expect("write");
    npy::write(&dir.path().join("z.npy"), &[4, 3], &[0.0; 12], false).expect("write");
    let mut z_nan = vec![0.0; 4];
    z_nan[1] = f64::NAN;
    npy::write(&dir.path().join("znan.npy"), &[2, 2], &z_nan, true).expect("write");
    npy::write(&dir.path().join("eps.npy"), &[2, 2, 2], &[0.0; 8], true).expect("write");
    npy::write(&dir.path().join("classes5.npy"), &[5], &[0.0; 5], false).expect("write");
    npy::write(&dir.path().join("cube.npy"), &[2, 2, 2], &[0.0; 8], false).expect("write");
    npy::write(
        &dir.path().join("huge.npy"),
        &[2, 2],
        &[0.0, 1e10, 1.0, 2.0],
        true,
    )
    .expect("write");
    raw_npy(
        &dir.path().join("complex.npy"),
        "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 2), }\n",
        &[0u8; 32],
    );
    raw_npy(
        &dir.path().join("trunc.npy"),
        "{'descr': '<f8', 'fortran_order': False, 'shape': (100, 2), }\n",
        &[0u8; 24],
    );
    std::fs::create_dir(dir.path().join("empty")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("mixed/cats")).expect("mkdir");
    save_png(&dir.path().join("mixed/top.png"), 10);
    save_png(&dir.path().join("mixed/cats/a.png"), 90);
    std::fs::create_dir(dir.path().join("corrupt")).expect("mkdir");
    std::fs::write(dir.path().join("corrupt/x.png"), b"not a png").expect("write");
    std::fs::create_dir(dir.path().join("imgs")).expect("mkdir");
    save_png(&dir.path().join("imgs/a.png"), 40);
    let presets = [
        ("steps0.json", r#"{"schedule": {"steps": 0}}"#),
        (
            "tangent.json",
            r#"{"schedule": {"kind": {"family": "tangent", "c": -1.0}}}"#,
        ),
        ("typo.json", r#"{"step": 5}"#),
        ("nested.json", r#"{"schedule": {"step": 5}}"#),
        ("broken.json", r#"{"batch": 5"#),
        ("kind.json", r#"{"data": {"kind": "mnist"}}"#),
        ("batch0.json", r#"{"batch": 0}"#),
    ];
    for (name, text) in presets {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let a_file = f("data.npy");
    let cases = vec![
        // Data files.
        bad(
            &["sample", "--data", &format!("npy:{}", f("bad.npy"))],
            &["bad.npy"],
        ),
        bad(
            &["sample", "--data", &format!("npy:{}", f("nan.npy"))],
            &["nan", "nan.npy"],
        ),
        bad(
            &[
                "sample",
                "--data",
                &format!("npy:{a_file}"),
                "--labels",
                &f("labels.npy"),
            ],
            &["2 labels", "labels.npy"],
        ),
        bad(
            &[
                "sample",
                "--data",
                &format!("npy:{a_file}"),
                "--labels",
                &f("frac.npy"),
            ],
            &["frac.npy", "0.5"],
        ),
        bad(
            &[
                "sample",
                "--data",
                &format!("npy:{a_file}"),
                "--labels",
                &f("none.npy"),
            ],
            &["none.npy"],
        ),
        bad(
            &["sample", "--data", &format!("npy:{}", f("cube.npy"))],
            &["cube.npy", "[N, D]"],
        ),
        bad(
            &["sample", "--data", &format!("npy:{}", f("complex.npy"))],
            &["complex.npy", "<c8"],
        ),
        bad(
            &["sample", "--data", &format!("npy:{}", f("trunc.npy"))],
            &["trunc.npy", "truncated"],
        ),
        bad(
            &["sample", "--data", &format!("npy:{}", f("missing.npy"))],
            &["missing.npy"],
        ),
        bad(
            &["sample", "--data", &format!("npy:{}", f("huge.npy"))],
            &["huge.npy", "--precision f64"],
        ),
        bad(&["sample", "--data", "npy:"], &["--data"]),
        bad(&["sample", "--data", "mnist"], &["--data"]),
        bad(
            &["sample", "--data", "digits:grey"],
            &["--data", "digits:binary"],
        ),
        bad(
            &["sample", "--data", "toy:nope"],
            &["unknown toy", "--data"],
        ),
        bad(&["sample", "--data", "gaussian:1,abc"], &["--data", "abc"]),
        bad(&["sample", "--data", "gaussian:-1"], &["--data", "-1"]),
        bad(
            &["sample", "--data", "toy:moons", "--points", "0"],
            &["--points"],
        ),
        bad(
            &[
                "sample",
                "--data",
                "toy:moons",
                "--labels",
                &f("labels.npy"),
            ],
            &["--labels"],
        ),
        // Image folders.
        bad(
            &["sample", "--data", "images:/definitely/not/here"],
            &["not a folder", "/definitely/not/here"],
        ),
        bad(
            &["sample", "--data", &format!("images:{}", f("empty"))],
            &["no .png", "empty"],
        ),
        bad(
            &["sample", "--data", &format!("images:{}", f("mixed"))],
            &["mixed", "sub-folder"],
        ),
        bad(
            &["sample", "--data", &format!("images:{}", f("corrupt"))],
            &["x.png"],
        ),
        bad(
            &[
                "sample",
                "--data",
                &format!("images:{}", f("imgs")),
                "--image-size",
                "1",
            ],
            &["--image-size"],
        ),
        bad(
            &[
                "sample",
                "--data",
                &format!("images:{}", f("imgs")),
                "--image-size",
                "1000",
            ],
            &["--image-size"],
        ),
        // Schedule and sampler.
        bad(
            &["sample", "--sigma-min", "5", "--sigma-max", "1"],
            &["sigma_min", "--sigma-min"],
        ),
        bad(&["sample", "--sigma-min", "0"], &["--sigma-min"]),
        bad(&["sample", "--sigma-max", "1e13"], &["--sigma-max"]),
        bad(&["sample", "--steps", "0"], &["steps", "--steps"]),
        bad(&["sample", "--steps", "100001"], &["--steps"]),
        bad(&["sample", "--steps", "abc"], &["--steps"]),
        bad(&["sample", "--rho", "0"], &["--rho"]),
        bad(&["sample", "--sampler", "foo"], &["--sampler"]),
        bad(&["sample", "--schedule", "foo"], &["--schedule"]),
        bad(&["sample", "--schedule", "tangent:-1"], &["--schedule"]),
        bad(&["sample", "--schedule", "tangent:abc"], &["--schedule"]),
        bad(&["sample", "--churn", "inf"], &["--churn", "finite"]),
        bad(&["sample", "--churn", "-1"], &["--churn"]),
        bad(&["sample", "--tmin", "5", "--tmax", "1"], &["--tmax"]),
        bad(&["sample", "--snoise", "-1"], &["--snoise"]),
        bad(&["sample", "--eta", "nan"], &["--eta"]),
        bad(&["sample", "--adaptive", "maybe"], &["--adaptive"]),
        // Guidance.
        bad(
            &["sample", "--data", "toy:checkerboard", "--class", "1"],
            &["no classes", "--class"],
        ),
        bad(
            &["sample", "--data", "digits", "--class", "12"],
            &["class 12", "--class"],
        ),
        bad(
            &["sample", "--data", "digits", "--class", "-1"],
            &["--class", "-1"],
        ),
        bad(
            &["sample", "--data", "digits", "--class", "2.5"],
            &["--class"],
        ),
        bad(
            &["sample", "--data", "digits", "--class", &f("nope.npy")],
            &["nope.npy"],
        ),
        bad(
            &[
                "sample",
                "--data",
                "digits",
                "--batch",
                "4",
                "--class",
                &f("classes5.npy"),
            ],
            &["classes5.npy"],
        ),
        bad(
            &[
                "sample", "--data", "digits", "--class", "1", "--cfg", "1e300",
            ],
            &["--cfg"],
        ),
        bad(&["sample", "--cfg", "nan"], &["--cfg"]),
        bad(
            // The explicit step diverges at this weight (the default exponential one does not).
            &[
                "sample",
                "--data",
                "digits",
                "--nag",
                "100",
                "--nag-step",
                "explicit",
            ],
            &["--nag", "sigma"],
        ),
        bad(&["sample", "--nag", "inf"], &["--nag"]),
        bad(&["sample", "--nag-prior", "flat"], &["--nag-prior"]),
        // Run settings.
        bad(&["sample", "--batch", "0"], &["--batch"]),
        bad(
            &["sample", "--data", "digits", "--batch", "10000000"],
            &["--batch", "GiB", "limit"],
        ),
        bad(&["sample", "--seed", "-1"], &["--seed"]),
        bad(&["sample", "--precision", "f16"], &["--precision"]),
        bad(&["sample", "--backend", "tpu"], &["--backend"]),
        bad(&["sample", "--diagnostics", "maybe"], &["--diagnostics"]),
        bad(
            &["sample", "--diagnostics-subset", "0"],
            &["--diagnostics-subset"],
        ),
        bad(&["sample", "--bogus", "1"], &["--bogus"]),
        bad(&["sample", "--step", "3"], &["--step"]),
        // Injected noise.
        bad(
            &[
                "sample",
                "--data",
                "toy:moons",
                "--batch",
                "4",
                "--init-noise",
                &f("z.npy"),
            ],
            &["shape", "z.npy"],
        ),
        bad(
            &[
                "sample",
                "--data",
                "toy:moons",
                "--batch",
                "2",
                "--init-noise",
                &f("znan.npy"),
            ],
            &["znan.npy"],
        ),
        bad(
            &["sample", "--init-noise", &f("nothere.npy")],
            &["nothere.npy"],
        ),
        bad(
            &[
                "sample",
                "--data",
                "toy:moons",
                "--sampler",
                "edm",
                "--churn",
                "5",
                "--steps",
                "4",
                "--batch",
                "2",
                "--churn-noise",
                &f("eps.npy"),
            ],
            &["eps.npy"],
        ),
        // Presets.
        bad(
            &["sample", "--preset", &f("steps0.json")],
            &["steps0.json", "--steps"],
        ),
        bad(
            &["sample", "--preset", &f("tangent.json")],
            &["tangent.json", "tangent"],
        ),
        bad(
            &["sample", "--preset", &f("typo.json")],
            &["typo.json", "`step`"],
        ),
        bad(
            &["sample", "--preset", &f("nested.json")],
            &["nested.json", "`step`"],
        ),
        bad(&["sample", "--preset", &f("broken.json")], &["broken.json"]),
        bad(
            &["sample", "--preset", &f("kind.json")],
            &["kind.json", "mnist"],
        ),
        bad(
            &["sample", "--preset", &f("batch0.json")],
            &["batch0.json", "--batch"],
        ),
        bad(&["sample", "--preset", &f("absent.json")], &["absent.json"]),
        // The output folder itself.
        bad(&["sample", "--out", &a_file], &["--out"]),
        // The memory limit, set by hand.
        BadInput {
            env: Some(("NOISESCOPE_MEMORY_LIMIT", "100")),
            ..bad(
                &["sample", "--data", &format!("npy:{a_file}")],
                &["data.npy", "NOISESCOPE_MEMORY_LIMIT"],
            )
        },
        BadInput {
            env: Some(("NOISESCOPE_MEMORY_LIMIT", "lots")),
            ..bad(&["sample"], &["NOISESCOPE_MEMORY_LIMIT"])
        },
        // The benchmarks.
        bad(&["bench", "--repeats", "0"], &["--repeats"]),
        bad(&["bench", "--workload", "huge"], &["--workload"]),
        bad(&["bench-ui", "--drag-seconds", "nan"], &["--drag-seconds"]),
        bad(&["bench-ui", "--reruns", "0"], &["--reruns"]),
        bad(&["bench-ui", "--width", "10"], &["--width"]),
        bad(
            &["bench-ui", "--train-alone-seconds", "3"],
            &["--train-steps"],
        ),
        // The app's own flags.
        bad(
            &["--preset", &f("typo.json"), "--renderer", "glow"],
            &["typo.json", "`step`"],
        ),
        bad(&["--renderer", "vulkan"], &["--renderer"]),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    // An earlier run's folder, with a file of the user's beside it, all dated an hour ago.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for (name, bytes) in [
        ("run.json", &b"{\"old\": true}"[..]),
        ("traj.npy", &b"old trajectory"[..]),
        ("samples.png", &b"old picture"[..]),
        ("my-notes.txt", &b"keep me"[..]),
    ] {
        std::fs::write(out.join(name), bytes).expect("write");
        std::fs::File::options()
            .write(true)
            .open(out.join(name))
            .and_then(|file| file.set_modified(an_hour_ago))
            .expect("set mtime");
    }
    let before = snapshot(&out);
    let around = snapshot(dir.path());
    for case in &cases {
        let mut args = case.args.clone();
        if args[0] == "sample" && !args.iter().any(|a| a == "--out") {
            args.extend(["--out".to_string(), out.display().to_string()]);
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_noisescope"));
        command.args(&args).env_remove("NOISESCOPE_MEMORY_LIMIT");
        if let Some((key, value)) = case.env {
            command.env(key, value);
        }
        let o = command.output().expect("the binary runs");
        let err = stderr(&o);
        let shown = format!("{args:?} -> {err}");
        println!("{shown}");
        assert_eq!(o.status.code(), Some(2), "{shown}");
        assert!(!err.contains("panicked"), "panic: {shown}");
        assert_eq!(err.lines().count(), 1, "not one line: {shown}");
        assert!(err.starts_with("error: "), "{shown}");
        for needle in &case.needles {
            assert!(
                err.to_lowercase().contains(&needle.to_lowercase()),
                "expected '{needle}' in: {shown}"
            );
        }
        assert!(
            snapshot(&out) == before,
            "the output folder changed: {shown}"
        );
        assert!(
            snapshot(dir.path()) == around,
            "files beside it changed: {shown}"
        );
    }
}
