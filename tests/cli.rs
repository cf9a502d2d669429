//! The `noisescope sample` command on real files: outputs, errors, and an independent f64
//! reference implementation of EDM Algorithms 1/2 and DPM-Solver++(2M) written from the formulas.

use std::path::Path;
use std::process::Command;

use noisescope::data::npy;

fn noisescope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_noisescope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: exit 2, one `error:` line mentioning `needle`, no panic.
fn assert_clear_error(o: &std::process::Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.starts_with("error:"), "stderr: {err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "expected '{needle}' in: {err}"
    );
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

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
fn bad_input_gives_one_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "o");
    // A malformed .npy.
    let bad = dir.path().join("bad.npy");
    std::fs::write(&bad, b"\x93NUMPY\x01\x00garbage").expect("write");
    let o = noisescope(&[
        "sample",
        "--data",
        &format!("npy:{}", bad.display()),
        "--out",
        &out,
    ]);
    assert_clear_error(&o, "bad.npy");
    // Data with NaN.
    let nan = dir.path().join("nan.npy");
    npy::write(&nan, &[3, 2], &[0.0, 1.0, f64::NAN, 2.0, 3.0, 4.0], true).expect("write");
    let o = noisescope(&[
        "sample",
        "--data",
        &format!("npy:{}", nan.display()),
        "--out",
        &out,
    ]);
    assert_clear_error(&o, "nan");
    // Labels of the wrong length.
    let data = dir.path().join("data.npy");
    npy::write(&data, &[3, 2], &[0.0, 1.0, 2.0, 2.0, 3.0, 4.0], false).expect("write");
    let labels = dir.path().join("labels.npy");
    npy::write(&labels, &[2], &[0.0, 1.0], false).expect("write");
    let o = noisescope(&[
        "sample",
        "--data",
        &format!("npy:{}", data.display()),
        "--labels",
        &labels.display().to_string(),
        "--out",
        &out,
    ]);
    assert_clear_error(&o, "2 labels");
    // Initial noise of the wrong shape.
    let z = dir.path().join("z.npy");
    npy::write(&z, &[4, 3], &[0.0; 12], false).expect("write");
    let o = noisescope(&[
        "sample",
        "--data",
        "toy:moons",
        "--batch",
        "4",
        "--init-noise",
        &z.display().to_string(),
        "--out",
        &out,
    ]);
    assert_clear_error(&o, "shape");
    // sigma_min >= sigma_max, steps = 0, unknown names.
    let o = noisescope(&[
        "sample",
        "--sigma-min",
        "5",
        "--sigma-max",
        "1",
        "--out",
        &out,
    ]);
    assert_clear_error(&o, "sigma_min");
    let o = noisescope(&["sample", "--steps", "0", "--out", &out]);
    assert_clear_error(&o, "steps");
    let o = noisescope(&["sample", "--data", "toy:nope", "--out", &out]);
    assert_clear_error(&o, "unknown toy");
    let o = noisescope(&[
        "sample",
        "--data",
        "images:/definitely/not/here",
        "--out",
        &out,
    ]);
    assert_clear_error(&o, "not a folder");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let o = noisescope(&[
        "sample",
        "--data",
        &format!("images:{}", empty.display()),
        "--out",
        &out,
    ]);
    assert_clear_error(&o, "no .png");
    let o = noisescope(&[
        "sample",
        "--data",
        "toy:checkerboard",
        "--class",
        "1",
        "--out",
        &out,
    ]);
    assert_clear_error(&o, "no classes");
    let o = noisescope(&["sample", "--data", "digits", "--class", "12", "--out", &out]);
    assert_clear_error(&o, "class 12");
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

// ---- An independent f64 reference, written from the formulas of EDM (Karras et al. 2022,
// Algorithms 1 and 2) and DPM-Solver++(2M) (k-diffusion's sample_dpmpp_2m). ----

struct Reference {
    data: Vec<Vec<f64>>,
}

/// A reference run of one sample: the states x_0..x_N and the first denoiser call of each step.
struct RefRun {
    traj: Vec<Vec<f64>>,
    denoised: Vec<Vec<f64>>,
}

impl Reference {
    /// D(x; s) = sum_j softmax_j(-|x - y_j|^2 / 2s^2) y_j, with a log-sum-exp.
    fn denoise(&self, x: &[f64], s: f64) -> Vec<f64> {
        let logits: Vec<f64> = self
            .data
            .iter()
            .map(|y| -y.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / (2.0 * s * s))
            .collect();
        let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
        let z: f64 = w.iter().sum();
        (0..x.len())
            .map(|k| self.data.iter().zip(&w).map(|(y, w)| w * y[k]).sum::<f64>() / z)
            .collect()
    }

    /// EDM Algorithm 2 (Algorithm 1 when churn = 0), one sample.
    fn edm(
        &self,
        z: &[f64],
        t: &[f64],
        churn: f64,
        tmin: f64,
        tmax: f64,
        snoise: f64,
        eps: &[Vec<f64>],
    ) -> RefRun {
        let n = t.len() - 1;
        let mut x: Vec<f64> = z.iter().map(|v| v * t[0]).collect();
        let mut run = RefRun {
            traj: vec![x.clone()],
            denoised: Vec::new(),
        };
        for i in 0..n {
            let gamma = if tmin <= t[i] && t[i] <= tmax {
                (churn / n as f64).min(2f64.sqrt() - 1.0)
            } else {
                0.0
            };
            let t_hat = t[i] + gamma * t[i];
            let x_hat: Vec<f64> = x
                .iter()
                .zip(&eps[i])
                .map(|(x, e)| x + (t_hat * t_hat - t[i] * t[i]).sqrt() * snoise * e)
                .collect();
            let den = self.denoise(&x_hat, t_hat);
            let d: Vec<f64> = x_hat
                .iter()
                .zip(&den)
                .map(|(a, b)| (a - b) / t_hat)
                .collect();
            let mut next: Vec<f64> = x_hat
                .iter()
                .zip(&d)
                .map(|(x, d)| x + (t[i + 1] - t_hat) * d)
                .collect();
            if t[i + 1] != 0.0 {
                let den2 = self.denoise(&next, t[i + 1]);
                let d2: Vec<f64> = next
                    .iter()
                    .zip(&den2)
                    .map(|(a, b)| (a - b) / t[i + 1])
                    .collect();
                next = x_hat
                    .iter()
                    .zip(d.iter().zip(&d2))
                    .map(|(x, (a, b))| x + (t[i + 1] - t_hat) * (0.5 * a + 0.5 * b))
                    .collect();
            }
            run.denoised.push(den);
            x = next;
            run.traj.push(x.clone());
        }
        run
    }

    /// Euler ancestral (k-diffusion sample_euler_ancestral with s_noise); eta = 0 is plain Euler.
    fn euler_ancestral(
        &self,
        z: &[f64],
        s: &[f64],
        eta: f64,
        snoise: f64,
        eps: &[Vec<f64>],
    ) -> RefRun {
        let mut x: Vec<f64> = z.iter().map(|v| v * s[0]).collect();
        let mut run = RefRun {
            traj: vec![x.clone()],
            denoised: Vec::new(),
        };
        for i in 0..s.len() - 1 {
            let den = self.denoise(&x, s[i]);
            let (from, to) = (s[i], s[i + 1]);
            let up = if eta == 0.0 || to == 0.0 {
                0.0
            } else {
                (eta * (to * to * (from * from - to * to) / (from * from)).sqrt()).min(to)
            };
            let down = (to * to - up * up).sqrt();
            x = x
                .iter()
                .zip(&den)
                .map(|(x, d)| x + (down - from) * (x - d) / from)
                .collect();
            if to > 0.0 {
                x = x
                    .iter()
                    .zip(&eps[i])
                    .map(|(x, e)| x + e * snoise * up)
                    .collect();
            }
            run.denoised.push(den);
            run.traj.push(x.clone());
        }
        run
    }

    fn dpmpp_2m(&self, z: &[f64], s: &[f64]) -> RefRun {
        let n = s.len() - 1;
        let mut x: Vec<f64> = z.iter().map(|v| v * s[0]).collect();
        let mut run = RefRun {
            traj: vec![x.clone()],
            denoised: Vec::new(),
        };
        let mut old: Option<Vec<f64>> = None;
        for i in 0..n {
            let den = self.denoise(&x, s[i]);
            let t = -s[i].ln();
            if s[i + 1] == 0.0 {
                x = den.clone();
            } else {
                let t_next = -s[i + 1].ln();
                let h = t_next - t;
                let dd: Vec<f64> = match &old {
                    None => den.clone(),
                    Some(o) => {
                        let r = (t - (-s[i - 1].ln())) / h;
                        den.iter()
                            .zip(o)
                            .map(|(d, o)| (1.0 + 1.0 / (2.0 * r)) * d - (1.0 / (2.0 * r)) * o)
                            .collect()
                    }
                };
                x = x
                    .iter()
                    .zip(&dd)
                    .map(|(x, d)| (s[i + 1] / s[i]) * x - (-h).exp_m1() * d)
                    .collect();
            }
            old = Some(den.clone());
            run.denoised.push(den);
            run.traj.push(x.clone());
        }
        run
    }
}

#[test]
fn f64_cli_reproduces_edm_algorithms_and_dpmpp_2m_to_1e_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n, dim, batch, steps) = (40, 3, 5, 12);
    let data: Vec<f64> = (0..n * dim)
        .map(|i| (((i * 7919) % 211) as f64 / 105.0 - 1.0) * 1.3)
        .collect();
    let z: Vec<f64> = (0..batch * dim)
        .map(|i| (((i * 104_729) % 97) as f64 - 48.0) / 20.0)
        .collect();
    let eps: Vec<f64> = (0..steps * batch * dim)
        .map(|i| (((i * 6151) % 89) as f64 - 44.0) / 19.0)
        .collect();
    let p = |name: &str| dir.path().join(name);
    npy::write(&p("data.npy"), &[n, dim], &data, true).expect("write");
    npy::write(&p("z.npy"), &[batch, dim], &z, true).expect("write");
    npy::write(&p("eps.npy"), &[steps, batch, dim], &eps, true).expect("write");
    let reference = Reference {
        data: data.chunks(dim).map(|c| c.to_vec()).collect(),
    };
    type Ref<'a> = Box<dyn Fn(&[f64], &[f64], &[Vec<f64>]) -> RefRun + 'a>;
    let r = &reference;
    let cases: Vec<(&str, &str, Vec<&str>, Ref)> = vec![
        (
            "heun",
            "heun",
            vec![],
            Box::new(move |z, s, e| r.edm(z, s, 0.0, 0.0, f64::INFINITY, 1.0, e)),
        ),
        // gamma clamped at sqrt(2) - 1 (40/12 > 0.414) within [S_tmin, S_tmax]...
        (
            "edm",
            "edm",
            vec![
                "--churn", "40", "--tmin", "0.05", "--tmax", "50", "--snoise", "1.003",
            ],
            Box::new(move |z, s, e| r.edm(z, s, 40.0, 0.05, 50.0, 1.003, e)),
        ),
        // ...and on the S_churn / N branch (2/12 < 0.414) everywhere.
        (
            "edm-mild",
            "edm",
            vec!["--churn", "2", "--snoise", "1.007"],
            Box::new(move |z, s, e| r.edm(z, s, 2.0, 0.0, f64::INFINITY, 1.007, e)),
        ),
        (
            "euler",
            "euler",
            vec![],
            Box::new(move |z, s, e| r.euler_ancestral(z, s, 0.0, 1.0, e)),
        ),
        (
            "euler-a",
            "euler-a",
            vec!["--eta", "0.7", "--snoise", "1.01"],
            Box::new(move |z, s, e| r.euler_ancestral(z, s, 0.7, 1.01, e)),
        ),
        (
            "dpmpp-2m",
            "dpmpp-2m",
            vec![],
            Box::new(move |z, s, _| r.dpmpp_2m(z, s)),
        ),
    ];
    for (name, sampler, extra, reference_run) in cases {
        let out = p(name);
        let mut args = vec![
            "sample".to_string(),
            "--data".into(),
            format!("npy:{}", p("data.npy").display()),
            "--sampler".into(),
            sampler.into(),
            "--steps".into(),
            steps.to_string(),
            "--batch".into(),
            batch.to_string(),
            "--precision".into(),
            "f64".into(),
            "--init-noise".into(),
            p("z.npy").display().to_string(),
            "--churn-noise".into(),
            p("eps.npy").display().to_string(),
            "--diagnostics".into(),
            "off".into(),
            "--out".into(),
            out.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = noisescope(&args);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let sigmas = npy::read(&out.join("sigmas.npy")).expect("sigmas").data;
        // Karras rho = 7 from the formula.
        for (i, s) in sigmas[..steps].iter().enumerate() {
            let u = i as f64 / (steps - 1) as f64;
            let expect = (80f64.powf(1.0 / 7.0)
                + u * (0.002f64.powf(1.0 / 7.0) - 80f64.powf(1.0 / 7.0)))
            .powf(7.0);
            assert!((s - expect).abs() < 1e-12 * expect);
        }
        let traj = npy::read(&out.join("traj.npy")).expect("traj");
        let denoised = npy::read(&out.join("denoised.npy")).expect("denoised");
        assert_eq!(traj.shape, vec![steps + 1, batch, dim]);
        assert_eq!(denoised.shape, vec![steps, batch, dim]);
        let close = |got: f64, want: f64| (got - want).abs() < 1e-9 * (1.0 + want.abs());
        for b in 0..batch {
            let zb = &z[b * dim..(b + 1) * dim];
            let eps_b: Vec<Vec<f64>> = (0..steps)
                .map(|i| eps[(i * batch + b) * dim..(i * batch + b + 1) * dim].to_vec())
                .collect();
            let expect = reference_run(zb, &sigmas, &eps_b);
            for (i, state) in expect.traj.iter().enumerate() {
                for k in 0..dim {
                    let got = traj.data[(i * batch + b) * dim + k];
                    assert!(
                        close(got, state[k]),
                        "{name} sample {b} state {i}: {got} vs {}",
                        state[k]
                    );
                }
            }
            // denoised.npy holds the first denoiser call of each step (at x_hat for edm).
            for (i, den) in expect.denoised.iter().enumerate() {
                for k in 0..dim {
                    let got = denoised.data[(i * batch + b) * dim + k];
                    assert!(
                        close(got, den[k]),
                        "{name} sample {b} denoised {i}: {got} vs {}",
                        den[k]
                    );
                }
            }
        }
    }
}

#[test]
fn adaptive_runs_replan_from_sigma_hat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = path(dir.path(), "a");
    let o = noisescope(&[
        "sample",
        "--data",
        "digits",
        "--sampler",
        "euler",
        "--steps",
        "6",
        "--batch",
        "64",
        "--adaptive",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let used = npy::read(&dir.path().join("a/sigmas.npy"))
        .expect("sigmas")
        .data;
    let planned = noisescope::core::schedule::karras(6, 0.002, 80.0, 7.0);
    assert_eq!(used.len(), planned.len());
    assert_eq!(used[0], planned[0]);
    assert!(
        used.windows(2).all(|w| w[0] > w[1]),
        "not decreasing: {used:?}"
    );
    // The last level is where the last re-plan put it (sigma_hat, not below sigma_min), then 0.
    assert!(used[5] >= 0.002 && used[6] == 0.0);
    assert!(
        used.iter()
            .zip(&planned)
            .any(|(u, p)| (u - p).abs() > 1e-6 * p),
        "nothing re-planned"
    );
    // By design each re-planned level is the state's estimated noise level, so the diagnostics
    // (same estimator, subset and prior) see no shift: this checks the wiring, not the estimator.
    let csv = std::fs::read_to_string(dir.path().join("a/diagnostics.csv")).expect("csv");
    for line in csv.lines().skip(2).take(3) {
        let f: Vec<f64> = line
            .split(',')
            .map(|v| v.parse().unwrap_or(f64::NAN))
            .collect();
        // delta_median (column 7) is ln(sigma_hat / sigma) of the re-planned sigma: near 0.
        assert!(f[7].abs() < 0.05, "{line}");
    }
}

#[test]
fn adaptive_runs_never_stall_or_fail_when_sigma_hat_is_unidentifiable() {
    // States cleaner than sigma_min (euler-a with no noise) and a Gaussian whose small noise
    // levels cannot be told apart: the re-planned schedule still decreases strictly.
    let dir = tempfile::tempdir().expect("tempdir");
    let runs: [&[&str]; 3] = [
        &[
            "--data",
            "digits",
            "--sampler",
            "euler-a",
            "--snoise",
            "0",
            "--eta",
            "5",
            "--steps",
            "8",
            "--batch",
            "32",
        ],
        &[
            "--data",
            "gaussian:0.5,2",
            "--sampler",
            "euler",
            "--steps",
            "6",
            "--batch",
            "500",
            "--precision",
            "f64",
        ],
        &[
            "--data",
            "toy:moons",
            "--sampler",
            "dpmpp-2m",
            "--steps",
            "10",
            "--batch",
            "64",
        ],
    ];
    for (k, extra) in runs.iter().enumerate() {
        let out = path(dir.path(), &format!("r{k}"));
        let mut args = vec!["sample", "--adaptive", "--out", &out];
        args.extend_from_slice(extra);
        let o = noisescope(&args);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        let used = npy::read(&dir.path().join(format!("r{k}/sigmas.npy")))
            .expect("sigmas")
            .data;
        assert!(used.windows(2).all(|w| w[1] < w[0]), "{extra:?}: {used:?}");
        // No level is spent twice: consecutive levels differ by more than rounding.
        assert!(
            used.windows(2).all(|w| w[1] < w[0] * 0.999),
            "{extra:?}: {used:?}"
        );
    }
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
fn binarised_digits_sample_and_unknown_digit_variants_are_refused() {
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
    assert_clear_error(
        &noisescope(&[
            "sample",
            "--data",
            "digits:grey",
            "--out",
            &path(dir.path(), "x"),
        ]),
        "digits:binary",
    );
}
