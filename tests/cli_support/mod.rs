//! What the command-line tests share: the binary run on arguments, its stderr, paths in a
//! temporary folder and a tiny PNG.
// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

pub fn noisescope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_noisescope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
