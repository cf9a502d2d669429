//! Image-data batches as picture grids (samples.png, the app's image views and exports).

use super::ImageShape;

/// Pixel repetition for exported grids: small images (8x8 digits) are blown up to ~32 pixels,
/// large ones kept as they are.
pub fn export_scale(shape: ImageShape) -> u32 {
    (32 / shape.width.max(1)).clamp(1, 8) as u32
}

/// Most pixels a grid may hold (about 48 MB of RGB); larger images mean fewer of them.
const MAX_GRID_PIXELS: usize = 16 << 20;

/// Lays out up to `max` rows of `values` ([rows][dim], in [-1, 1]) as a square grid of images,
/// each pixel repeated `scale` times, with a 1-pixel dark gap.
pub fn image_grid(
    values: &[f64],
    rows: usize,
    shape: ImageShape,
    max: usize,
    scale: u32,
) -> image::RgbImage {
    image_grid_columns(values, rows, shape, max, scale, None)
}

/// `image_grid` with `columns` images per row (`None`: as many as rows, a square grid).
pub fn image_grid_columns(
    values: &[f64],
    rows: usize,
    shape: ImageShape,
    max: usize,
    scale: u32,
    columns: Option<u32>,
) -> image::RgbImage {
    let cell = (shape.width * scale as usize + 1) * (shape.height * scale as usize + 1);
    let count = rows.min(max).min(MAX_GRID_PIXELS / cell.max(1)).max(1);
    let cols = columns
        .unwrap_or_else(|| (count as f64).sqrt().ceil() as u32)
        .clamp(1, count as u32);
    let grid_rows = (count as u32).div_ceil(cols);
    let (w, h) = (shape.width as u32 * scale, shape.height as u32 * scale);
    let mut img = image::RgbImage::from_pixel(
        cols * (w + 1) + 1,
        grid_rows * (h + 1) + 1,
        image::Rgb([24, 24, 32]),
    );
    let dim = shape.width * shape.height * shape.channels;
    let to_byte = |v: f64| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
    for i in 0..count.min(rows) {
        let sample = &values[i * dim..(i + 1) * dim];
        let (ox, oy) = (
            1 + (i as u32 % cols) * (w + 1),
            1 + (i as u32 / cols) * (h + 1),
        );
        for py in 0..h {
            for px in 0..w {
                let (sx, sy) = ((px / scale) as usize, (py / scale) as usize);
                let base = (sy * shape.width + sx) * shape.channels;
                let rgb = if shape.channels == 3 {
                    [
                        to_byte(sample[base]),
                        to_byte(sample[base + 1]),
                        to_byte(sample[base + 2]),
                    ]
                } else {
                    let g = to_byte(sample[base]);
                    [g, g, g]
                };
                img.put_pixel(ox + px, oy + py, image::Rgb(rgb));
            }
        }
    }
    img
}
