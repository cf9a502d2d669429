//! Presets (a `RunSpec` as JSON) in their two containers: a .json file, or a PNG whose iTXt
//! chunk "noisescope-preset" holds the JSON of the scene that made the picture ("Export -> PNG of
//! the view"), so a picture restores its scene in the app and runs with
//! `noisescope sample --preset FILE.png`. A file is a PNG by its signature, not its name.

use std::io::Cursor;
use std::path::Path;

use crate::error::{Error, Result};

use super::spec::RunSpec;

/// The PNG text keyword of the preset.
pub const PRESET_KEY: &str = "noisescope-preset";

/// The eight bytes every PNG starts with.
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Whether `bytes` start like a PNG.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(&PNG_SIGNATURE)
}

fn png_error(what: impl std::fmt::Display) -> Error {
    Error::Data(format!("PNG: {what}"))
}

/// Every text chunk of a PNG (tEXt, zTXt and iTXt), as (keyword, text). Chunks after the image
/// data are read too.
pub fn png_texts(bytes: &[u8]) -> Result<Vec<(String, String)>> {
    let collect = |info: &png::Info<'_>| -> Result<Vec<(String, String)>> {
        let mut texts: Vec<(String, String)> = info
            .uncompressed_latin1_text
            .iter()
            .map(|t| (t.keyword.clone(), t.text.clone()))
            .collect();
        for chunk in &info.compressed_latin1_text {
            let text = chunk.get_text().map_err(png_error)?;
            texts.push((chunk.keyword.clone(), text));
        }
        for chunk in &info.utf8_text {
            let text = chunk.get_text().map_err(png_error)?;
            texts.push((chunk.keyword.clone(), text));
        }
        Ok(texts)
    };
    let mut reader = png::Decoder::new(Cursor::new(bytes))
        .read_info()
        .map_err(png_error)?;
    let before = collect(reader.info())?;
    if before.iter().any(|(k, _)| k == PRESET_KEY) {
        return Ok(before);
    }
    // Text may follow the image data: decode it to reach the end.
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| png_error("the image is too large"))?;
    let mut pixels = vec![0; size];
    reader.next_frame(&mut pixels).map_err(png_error)?;
    reader.finish().map_err(png_error)?;
    collect(reader.info())
}

/// `image` as a PNG with `texts` as iTXt chunks (UTF-8, so any path or name survives).
pub fn encode_png(image: &image::RgbaImage, texts: &[(&str, String)]) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, image.width(), image.height());
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    for (key, text) in texts {
        encoder
            .add_itxt_chunk((*key).to_string(), text.clone())
            .map_err(png_error)?;
    }
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(image.as_raw()).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(bytes)
}

/// The preset JSON of `path`: the file itself, or the "noisescope-preset" text of a PNG.
pub fn read_preset_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !is_png(&bytes) {
        return String::from_utf8(bytes).map_err(|_| {
            Error::InvalidSpec(format!(
                "{}: a preset is JSON text or a PNG exported by noisescope",
                path.display()
            ))
        });
    }
    let texts = png_texts(&bytes).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    texts
        .into_iter()
        .find(|(k, _)| k == PRESET_KEY)
        .map(|(_, text)| text)
        .ok_or_else(|| {
            Error::InvalidSpec(format!(
                "{}: this PNG carries no noisescope scene (export one with Export -> PNG of the view)",
                path.display()
            ))
        })
}

/// Reads and validates the preset of `path` (JSON or PNG).
pub fn load_preset(path: &Path) -> Result<RunSpec> {
    RunSpec::from_json(&read_preset_text(path)?)
}

/// Writes a preset (the `RunSpec` as JSON).
pub fn save_preset(spec: &RunSpec, path: &Path) -> Result<()> {
    std::fs::write(path, spec.to_json()).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| Error::io("tempdir", e))
    }

    #[test]
    fn a_png_carries_its_preset_and_other_texts() -> Result<()> {
        let spec = RunSpec {
            seed: 42,
            batch: 17,
            ..Default::default()
        };
        let image = image::RgbaImage::from_fn(7, 5, |x, y| image::Rgba([x as u8, y as u8, 9, 255]));
        let bytes = encode_png(
            &image,
            &[
                (PRESET_KEY, spec.to_json()),
                ("comment", "σ ünïcode".into()),
            ],
        )?;
        assert!(is_png(&bytes));
        // Still an ordinary picture.
        let decoded = image::load_from_memory(&bytes)
            .map_err(|e| Error::Data(e.to_string()))?
            .to_rgba8();
        assert_eq!(decoded, image);
        let texts = png_texts(&bytes)?;
        assert!(texts.contains(&("comment".into(), "σ ünïcode".into())));
        let dir = tempdir()?;
        let path = dir.path().join("view.png");
        std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        assert_eq!(load_preset(&path)?, spec);
        Ok(())
    }

    #[test]
    fn json_presets_round_trip_and_bad_files_are_named() -> Result<()> {
        let dir = tempdir()?;
        let path = dir.path().join("p.json");
        let spec = RunSpec {
            seed: 3,
            ..Default::default()
        };
        save_preset(&spec, &path)?;
        assert_eq!(load_preset(&path)?, spec);
        std::fs::write(&path, "{oops").map_err(|e| Error::io(&path, e))?;
        assert!(load_preset(&path).is_err());
        // A PNG without a scene says what it lacks.
        let plain = dir.path().join("plain.png");
        image::RgbaImage::new(2, 2)
            .save(&plain)
            .map_err(|e| Error::Data(e.to_string()))?;
        let why = load_preset(&plain).expect_err("no scene").to_string();
        assert!(why.contains("carries no noisescope scene"), "{why}");
        // Binary that is not a PNG is not taken for JSON.
        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, [0xff, 0xfe, 0x00]).map_err(|e| Error::io(&junk, e))?;
        assert!(load_preset(&junk).is_err());
        Ok(())
    }
}
