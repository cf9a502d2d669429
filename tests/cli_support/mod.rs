//! What the command-line tests share: the binary run on arguments, its output as text, paths in a
//! temporary folder, a tiny PNG and the check of a clean failure.
// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn noisescope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_noisescope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

pub fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// A tiny PNG.
pub fn save_png(path: &Path, shade: u8) {
    image::GrayImage::from_fn(5, 4, |x, y| {
        image::Luma([shade.wrapping_add((x * y) as u8)])
    })
    .save(path)
    .expect("save png");
}

/// Asserts a clean failure: exit 2, an `error:` message mentioning `needle`, no panic.
pub fn assert_clear_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.starts_with("error:"), "stderr: {err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "expected '{needle}' in: {err}"
    );
}

/// `assert_clear_error`, and the message is one line.
pub fn assert_one_line_error(o: &Output, needle: &str) {
    assert_clear_error(o, needle);
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}
