//! A folder of images (png / jpeg) as a data set: each image resized to size x size, grey or RGB,
//! scaled to [-1, 1]. Images in sub-folders get the sub-folder as their class.

use std::path::{Path, PathBuf};

use super::{DataSet, ImageShape};
use crate::error::{Error, Result};

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// Loads every image under `dir` (and one level of class sub-folders).
pub fn load(dir: &Path, size: u32, rgb: bool) -> Result<DataSet> {
    if !(2..=256).contains(&size) {
        return Err(Error::InvalidSpec(format!(
            "image size must be in 2..=256, got {size}"
        )));
    }
    if !dir.is_dir() {
        return Err(Error::Data(format!("{} is not a folder", dir.display())));
    }
    let entries = sorted_entries(dir)?;
    let mut files: Vec<(PathBuf, Option<u32>)> = entries
        .iter()
        .filter(|p| p.is_file() && is_image(p))
        .map(|p| (p.clone(), None))
        .collect();
    let class_dirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let mut class = 0u32;
    for sub in class_dirs {
        let images: Vec<PathBuf> = sorted_entries(sub)?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        if !images.is_empty() {
            files.extend(images.into_iter().map(|p| (p, Some(class))));
            class += 1;
        }
    }
    if files.is_empty() {
        return Err(Error::Data(format!(
            "no .png or .jpg images in {}",
            dir.display()
        )));
    }
    let labelled = files.iter().all(|(_, c)| c.is_some());
    let channels = if rgb { 3 } else { 1 };
    let dim = (size * size) as usize * channels;
    let mut values = Vec::with_capacity(files.len() * dim);
    for (path, _) in &files {
        let img = image::open(path).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        let img = img.resize_exact(size, size, image::imageops::FilterType::Triangle);
        if rgb {
            values.extend(
                img.to_rgb8()
                    .as_raw()
                    .iter()
                    .map(|&v| v as f64 / 127.5 - 1.0),
            );
        } else {
            values.extend(
                img.to_luma8()
                    .as_raw()
                    .iter()
                    .map(|&v| v as f64 / 127.5 - 1.0),
            );
        }
    }
    let labels = labelled.then(|| files.iter().map(|(_, c)| c.unwrap_or(0)).collect());
    DataSet::new(
        files.len(),
        dim,
        values,
        labels,
        Some(ImageShape {
            width: size as usize,
            height: size as usize,
            channels,
        }),
    )
}
