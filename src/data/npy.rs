//! NumPy .npy files (format versions 1-3): read any numeric dtype, write f32 / f64, C order.

use std::path::Path;

use super::DataSet;
use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The values of a .npy file, as f64 (every supported dtype converts exactly, but i64 / u64 beyond 2^53).
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
    /// The dtype was an integer or bool type.
    pub integer: bool,
}

fn npy_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Npy {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

pub fn read(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes).map_err(|reason| npy_err(path, reason))
}

/// Parses the bytes of a .npy file.
pub fn parse(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported format version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let fortran = match fortran.trim() {
        "True" => true,
        "False" => false,
        other => return Err(format!("bad fortran_order '{other}'")),
    };
    let shape_text = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    let shape = parse_shape(shape_text)?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape is too large")?;
    let (kind, size, little) = parse_descr(descr)?;
    let body = &bytes[start + header_len..];
    let needed = count.checked_mul(size).ok_or("shape is too large")?;
    if body.len() < needed {
        return Err(format!(
            "data is truncated: {} bytes for {count} values of {size} bytes",
            body.len()
        ));
    }
    let mut data = Vec::with_capacity(count);
    for chunk in body[..needed].chunks_exact(size) {
        let mut b = [0u8; 8];
        b[..size].copy_from_slice(chunk);
        if !little {
            b[..size].reverse();
        }
        data.push(match (kind, size) {
            ('f', 4) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            ('f', 8) => f64::from_le_bytes(b),
            ('i', 1) => b[0] as i8 as f64,
            ('i', 2) => i16::from_le_bytes([b[0], b[1]]) as f64,
            ('i', 4) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            ('i', 8) => i64::from_le_bytes(b) as f64,
            ('u', 1) | ('b', 1) => b[0] as f64,
            ('u', 2) => u16::from_le_bytes([b[0], b[1]]) as f64,
            ('u', 4) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            ('u', 8) => u64::from_le_bytes(b) as f64,
            _ => return Err(format!("unsupported dtype '{descr}'")),
        });
    }
    if fortran && shape.len() > 1 {
        data = fortran_to_c(&data, &shape);
    }
    Ok(NpyArray {
        shape,
        data,
        integer: kind != 'f',
    })
}

/// The raw text of `key`'s value in the header's Python dict literal.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

fn parse_shape(text: &str) -> std::result::Result<Vec<usize>, String> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("bad shape '{text}'"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape '{text}'"))
        })
        .collect()
}

/// (kind, bytes, little-endian) from a descr like '<f8', '|u1', '>i4'.
fn parse_descr(descr: &str) -> std::result::Result<(char, usize, bool), String> {
    let mut chars = descr.chars();
    let order = chars.next().ok_or("empty dtype")?;
    let little = match order {
        '<' | '|' | '=' => true,
        '>' => false,
        _ => return Err(format!("unsupported dtype '{descr}'")),
    };
    let kind = chars.next().ok_or("empty dtype")?;
    let size: usize = chars
        .as_str()
        .parse()
        .map_err(|_| format!("unsupported dtype '{descr}'"))?;
    let ok = matches!(
        (kind, size),
        ('f', 4 | 8) | ('i', 1 | 2 | 4 | 8) | ('u', 1 | 2 | 4 | 8) | ('b', 1)
    );
    if !ok {
        return Err(format!("unsupported dtype '{descr}'"));
    }
    Ok((kind, size, little))
}

fn fortran_to_c(data: &[f64], shape: &[usize]) -> Vec<f64> {
    let n = data.len();
    let mut out = vec![0.0; n];
    let mut index = vec![0usize; shape.len()];
    for (c_pos, slot) in out.iter_mut().enumerate() {
        // c_pos -> multi-index (row-major) -> column-major position.
        let mut rem = c_pos;
        for d in (0..shape.len()).rev() {
            index[d] = rem % shape[d];
            rem /= shape[d];
        }
        let mut f_pos = 0;
        for d in (0..shape.len()).rev() {
            f_pos = f_pos * shape[d] + index[d];
        }
        *slot = data[f_pos];
    }
    out
}

/// Writes `data` with `shape` as little-endian f64 (`double`) or f32, C order, format 1.0.
pub fn write(path: &Path, shape: &[usize], data: &[f64], double: bool) -> Result<()> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(Error::Shape(format!(
            "{} values for shape {shape:?}",
            data.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let descr = if double { "<f8" } else { "<f4" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so the data starts on a 64-byte boundary, header ends in '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 8);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for &v in data {
        if double {
            bytes.extend_from_slice(&v.to_le_bytes());
        } else {
            bytes.extend_from_slice(&(v as f32).to_le_bytes());
        }
    }
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// The values of an array (read from `path`) as class indices: whole numbers in 0..65536.
pub fn class_indices(arr: &NpyArray, path: &Path) -> Result<Vec<u32>> {
    arr.data
        .iter()
        .map(|&v| {
            if v >= 0.0 && v.fract() == 0.0 && v < 65_536.0 {
                Ok(v as u32)
            } else {
                Err(npy_err(
                    path,
                    format!("{v} is not a class index in 0..65536"),
                ))
            }
        })
        .collect()
}

/// An [N, D] (or [N]) array as a data set, with optional [N] integer labels.
pub fn load_dataset(path: &Path, labels: Option<&Path>) -> Result<DataSet> {
    let arr = read(path)?;
    let (n, dim) = match arr.shape[..] {
        [n] => (n, 1),
        [n, d] => (n, d),
        ref s => {
            return Err(npy_err(
                path,
                format!("expected a [N, D] array, got shape {s:?}"),
            ));
        }
    };
    let labels = match labels {
        Some(lp) => {
            let l = read(lp)?;
            if l.shape.len() != 1 {
                return Err(npy_err(
                    lp,
                    format!("labels must be a [N] array, got shape {:?}", l.shape),
                ));
            }
            if l.shape[0] != n {
                return Err(Error::Shape(format!(
                    "{} has {} labels but {} has {n} rows",
                    lp.display(),
                    l.shape[0],
                    path.display()
                )));
            }
            let ints = class_indices(&l, lp)?;
            Some(ints)
        }
        None => None,
    };
    DataSet::new(n, dim, arr.data, labels, None).map_err(|e| npy_err(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_f32_and_f64() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let p = dir.path().join("a.npy");
        let data = vec![1.5, -2.25, 3.0, 1e-3, 7.0, 8.0];
        write(&p, &[2, 3], &data, true)?;
        let back = read(&p)?;
        assert_eq!(back.shape, vec![2, 3]);
        assert_eq!(back.data, data);
        write(&p, &[6], &data, false)?;
        let back = read(&p)?;
        assert_eq!(back.shape, vec![6]);
        assert_eq!(back.data[3], 1e-3f32 as f64);
        Ok(())
    }

    #[test]
    fn fortran_order_and_big_endian() -> std::result::Result<(), String> {
        let header = "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        // Column-major 2x3 [[1,2,3],[4,5,6]] is 1,4,2,5,3,6.
        for v in [1i16, 4, 2, 5, 3, 6] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        let arr = parse(&bytes)?;
        assert_eq!(arr.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(arr.integer);
        Ok(())
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(parse(b"hello world, not npy").is_err());
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0, 200, 0]);
        bytes.extend_from_slice(b"{'descr': '<f8'");
        assert!(parse(&bytes).is_err());
    }
}
