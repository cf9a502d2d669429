//! A folder of images (png / jpeg) as a data set: each image resized to size x size, grey or RGB,
//! scaled to [-1, 1]. Images in sub-folders get the sub-folder as their class; a folder holds
//! either top-level images (unlabelled) or class sub-folders, never both.

use std::path::{Path, PathBuf};

use super::{DataSet, ImageShape};
use crate::error::{Error, Result};

/// The image sides accepted (the data set holds size^2 x channels values per image).
pub const SIZES: std::ops::RangeInclusive<u32> = 2..=256;

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

fn images_in(entries: &[PathBuf]) -> Vec<PathBuf> {
    entries
        .iter()
        .filter(|p| p.is_file() && is_image(p))
        .cloned()
        .collect()
}

/// The image files of `dir` with their class (the index of their sub-folder), in load order.
pub fn list(dir: &Path) -> Result<Vec<(PathBuf, Option<u32>)>> {
    if !dir.is_dir() {
        return Err(Error::Data(format!("{} is not a folder", dir.display())));
    }
    let entries = sorted_entries(dir)?;
    let top = images_in(&entries);
    let mut classes = Vec::new();
    for sub in entries.iter().filter(|p| p.is_dir()) {
        let images = images_in(&sorted_entries(sub)?);
        if !images.is_empty() {
            classes.push((sub, images));
        }
    }
    if !top.is_empty() && !classes.is_empty() {
        // Loading both would leave the top-level images without a class, and so every label.
        return Err(Error::Data(format!(
            "{} holds {} images at its top level and {} class sub-folders ({}, ...): move the \
             images into class sub-folders for labelled data, or out of the sub-folders for \
             unlabelled data",
            dir.display(),
            top.len(),
            classes.len(),
            classes[0].0.display()
        )));
    }
    if top.is_empty() && classes.is_empty() {
        return Err(Error::Data(format!(
            "no .png or .jpg images in {}",
            dir.display()
        )));
    }
    let mut files: Vec<(PathBuf, Option<u32>)> = top.into_iter().map(|p| (p, None)).collect();
    for (class, (_, images)) in classes.into_iter().enumerate() {
        let class = u32::try_from(class)
            .map_err(|_| Error::Data(format!("{} has too many classes", dir.display())))?;
        files.extend(images.into_iter().map(|p| (p, Some(class))));
    }
    Ok(files)
}

/// Values per image: size^2, times 3 for RGB.
pub fn image_dim(size: u32, rgb: bool) -> usize {
    (size as usize).pow(2) * if rgb { 3 } else { 1 }
}

/// Checks the image side.
pub fn check_size(size: u32) -> Result<()> {
    if SIZES.contains(&size) {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "--image-size must be in {}..={}, got {size}",
            SIZES.start(),
            SIZES.end()
        )))
    }
}

/// Loads every image under `dir` (or one level of class sub-folders).
pub fn load(dir: &Path, size: u32, rgb: bool) -> Result<DataSet> {
    check_size(size)?;
    let files = list(dir)?;
    let channels = if rgb { 3 } else { 1 };
    let dim = image_dim(size, rgb);
    let mut values = Vec::with_capacity(files.len() * dim);
    for (path, _) in &files {
        let img = image::open(path).map_err(|e| {
            // The decoders' messages may span lines; an error is one line.
            let reason: Vec<String> = e.to_string().split_whitespace().map(String::from).collect();
            Error::Data(format!("{}: {}", path.display(), reason.join(" ")))
        })?;
        let img = img.resize_exact(size, size, image::imageops::FilterType::Triangle);
        let pixels = if rgb {
            img.to_rgb8().into_raw()
        } else {
            img.to_luma8().into_raw()
        };
        values.extend(pixels.iter().map(|&v| v as f64 / 127.5 - 1.0));
    }
    let labels = files.iter().map(|(_, c)| *c).collect::<Option<Vec<u32>>>();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, shade: u8) -> Result<()> {
        image::GrayImage::from_pixel(3, 2, image::Luma([shade]))
            .save(path)
            .map_err(|e| Error::io(path, std::io::Error::other(e)))
    }

    #[test]
    fn class_folders_label_their_images_and_a_mix_is_refused() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let root = dir.path();
        for (class, name, shade) in [("b", "1.png", 255), ("a", "1.png", 0), ("a", "2.PNG", 0)] {
            std::fs::create_dir_all(root.join(class)).map_err(|e| Error::io(root, e))?;
            png(&root.join(class).join(name), shade)?;
        }
        std::fs::create_dir(root.join("no-images")).map_err(|e| Error::io(root, e))?;
        std::fs::write(root.join("readme.txt"), "not an image").map_err(|e| Error::io(root, e))?;
        let set = load(root, 4, false)?;
        assert_eq!((set.n, set.dim), (3, 16));
        assert_eq!(set.labels, Some(vec![0, 0, 1]));
        assert!(set.row(0).iter().all(|&v| v == -1.0));
        assert!(set.row(2).iter().all(|&v| v == 1.0));
        // One image beside the class folders would leave every label out: refused, named.
        png(&root.join("stray.png"), 9)?;
        let e = load(root, 4, false).map(|_| ()).map_err(|e| e.to_string());
        assert!(e.is_err_and(|e| e.contains("1 images at its top level") && e.contains("2 class")));
        Ok(())
    }
}
