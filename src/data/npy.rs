//! NumPy .npy files (format versions 1-3): read any numeric dtype, write f32 / f64, C order.
//! Reading streams the file into the f64 values (no copy of the file's bytes is held), and a
//! header is checked against the file's length before anything is allocated.

use std::io::{BufWriter, Read, Write};
use std::path::Path;

use super::DataSet;
use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Headers longer than this are refused (numpy writes a few hundred bytes for plain arrays).
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Bytes read and converted at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// The values of a .npy file, as f64 (every supported dtype converts exactly, but i64 / u64 beyond 2^53).
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
    /// The dtype was an integer or bool type.
    pub integer: bool,
}

/// What a .npy header says about the array that follows it.
#[derive(Clone, Debug)]
pub struct NpyHeader {
    pub shape: Vec<usize>,
    /// Number of values (the product of the shape).
    pub count: usize,
    /// Bytes per value.
    pub value_bytes: usize,
    /// The dtype is an integer or bool type.
    pub integer: bool,
    /// Where the values start in the file.
    pub data_offset: usize,
    fortran: bool,
    convert: fn(&[u8]) -> f64,
}

impl NpyHeader {
    /// Bytes of data the header promises.
    pub fn data_bytes(&self) -> usize {
        self.count * self.value_bytes
    }
}

fn npy_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Npy {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads only the header of `path`.
pub fn read_header(path: &Path) -> Result<NpyHeader> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_header_from(&mut file, path)
}

fn read_header_from(file: &mut std::fs::File, path: &Path) -> Result<NpyHeader> {
    let mut prefix = [0u8; 12];
    let got = read_up_to(file, &mut prefix).map_err(|e| Error::io(path, e))?;
    let header_end = header_extent(&prefix[..got]).map_err(|reason| npy_err(path, reason))?;
    let mut bytes = prefix[..got.min(header_end)].to_vec();
    if header_end > got {
        bytes.resize(header_end, 0);
        file.read_exact(&mut bytes[got..])
            .map_err(|_| npy_err(path, "truncated header"))?;
    }
    let header = parse_header(&bytes).map_err(|reason| npy_err(path, reason))?;
    // The prefix may have read past the header: start the data where the header says.
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(header.data_offset as u64))
        .map_err(|e| Error::io(path, e))?;
    Ok(header)
}

/// Fills `buf` as far as the reader allows; the number of bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub fn read(path: &Path) -> Result<NpyArray> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let header = read_header_from(&mut file, path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let available = len.saturating_sub(header.data_offset as u64);
    if available < header.data_bytes() as u64 {
        return Err(npy_err(path, truncated(&header, available)));
    }
    let mut data = Vec::new();
    data.try_reserve_exact(header.count).map_err(|_| {
        npy_err(
            path,
            format!("{} values do not fit in memory", header.count),
        )
    })?;
    let chunk_values = (READ_CHUNK_BYTES / header.value_bytes).max(1);
    let mut chunk = vec![0u8; chunk_values * header.value_bytes];
    let mut left = header.count;
    while left > 0 {
        let take = left.min(chunk_values) * header.value_bytes;
        file.read_exact(&mut chunk[..take])
            .map_err(|e| Error::io(path, e))?;
        data.extend(
            chunk[..take]
                .chunks_exact(header.value_bytes)
                .map(header.convert),
        );
        left -= take / header.value_bytes;
    }
    Ok(finish(header, data))
}

/// Parses the bytes of a .npy file.
pub fn parse(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    let header = parse_header(bytes)?;
    let body = &bytes[header.data_offset..];
    let needed = header.data_bytes();
    if body.len() < needed {
        return Err(truncated(&header, body.len() as u64));
    }
    let data = body[..needed]
        .chunks_exact(header.value_bytes)
        .map(header.convert)
        .collect();
    Ok(finish(header, data))
}

fn truncated(header: &NpyHeader, available: u64) -> String {
    format!(
        "data is truncated: {available} bytes for {} values of {} bytes",
        header.count, header.value_bytes
    )
}

fn finish(header: NpyHeader, mut data: Vec<f64>) -> NpyArray {
    if header.fortran && header.shape.len() > 1 {
        data = fortran_to_c(&data, &header.shape);
    }
    NpyArray {
        shape: header.shape,
        data,
        integer: header.integer,
    }
}

/// Where the header ends (the data starts), from the magic, version and header length.
fn header_extent(bytes: &[u8]) -> std::result::Result<usize, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let (header_len, start) = match bytes[6] {
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
    if header_len > MAX_HEADER_BYTES {
        return Err(format!("a header of {header_len} bytes is too long"));
    }
    Ok(start + header_len)
}

/// Parses the header at the start of `bytes` (which may hold more: the data).
fn parse_header(bytes: &[u8]) -> std::result::Result<NpyHeader, String> {
    let end = header_extent(bytes)?;
    let start = if bytes[6] == 1 { 10 } else { 12 };
    let header = bytes.get(start..end).ok_or("truncated header")?;
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
    let (kind, value_bytes, little) = parse_descr(descr)?;
    count.checked_mul(value_bytes).ok_or("shape is too large")?;
    Ok(NpyHeader {
        shape,
        count,
        value_bytes,
        integer: kind != 'f',
        data_offset: end,
        fortran,
        convert: converter(kind, value_bytes, little)
            .ok_or_else(|| format!("unsupported dtype '{descr}'"))?,
    })
}

/// The conversion of one value's bytes to f64, chosen once per file.
fn converter(kind: char, size: usize, little: bool) -> Option<fn(&[u8]) -> f64> {
    macro_rules! from_bytes {
        ($t:ty, $n:literal) => {
            if little {
                (|b: &[u8]| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(&b[..$n]);
                    <$t>::from_le_bytes(a) as f64
                }) as fn(&[u8]) -> f64
            } else {
                (|b: &[u8]| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(&b[..$n]);
                    <$t>::from_be_bytes(a) as f64
                }) as fn(&[u8]) -> f64
            }
        };
    }
    Some(match (kind, size) {
        ('f', 4) => from_bytes!(f32, 4),
        ('f', 8) => from_bytes!(f64, 8),
        ('i', 1) => from_bytes!(i8, 1),
        ('i', 2) => from_bytes!(i16, 2),
        ('i', 4) => from_bytes!(i32, 4),
        ('i', 8) => from_bytes!(i64, 8),
        ('u', 1) | ('b', 1) => from_bytes!(u8, 1),
        ('u', 2) => from_bytes!(u16, 2),
        ('u', 4) => from_bytes!(u32, 4),
        ('u', 8) => from_bytes!(u64, 8),
        _ => return None,
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
    write_parts(path, shape, &[data], double)
}

/// Writes the concatenation of `parts` with `shape` (as `write`), streamed: no copy of the
/// whole array is made.
pub fn write_parts(path: &Path, shape: &[usize], parts: &[&[f64]], double: bool) -> Result<()> {
    let count: usize = shape.iter().product();
    let given: usize = parts.iter().map(|p| p.len()).sum();
    if count != given {
        return Err(Error::Shape(format!("{given} values for shape {shape:?}")));
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
    let header_len = u16::try_from(header.len())
        .map_err(|_| Error::Shape(format!("shape {shape:?} has too many dimensions")))?;
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = BufWriter::with_capacity(READ_CHUNK_BYTES, file);
    let written = (|| {
        out.write_all(MAGIC)?;
        out.write_all(&[1, 0])?;
        out.write_all(&header_len.to_le_bytes())?;
        out.write_all(header.as_bytes())?;
        for &v in parts.iter().flat_map(|p| p.iter()) {
            if double {
                out.write_all(&v.to_le_bytes())?;
            } else {
                out.write_all(&(v as f32).to_le_bytes())?;
            }
        }
        out.flush()
    })();
    written.map_err(|e| Error::io(path, e))
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

/// (N, D) of a data file's [N, D] (or [N]) shape.
pub fn rows_and_dim(shape: &[usize], path: &Path) -> Result<(usize, usize)> {
    match *shape {
        [n] => Ok((n, 1)),
        [n, d] => Ok((n, d)),
        ref s => Err(npy_err(
            path,
            format!("expected a [N, D] array, got shape {s:?}"),
        )),
    }
}

/// An [N, D] (or [N]) array as a data set, with optional [N] integer labels.
pub fn load_dataset(path: &Path, labels: Option<&Path>) -> Result<DataSet> {
    // The shape from the header first: a wrong file is refused before its data is read.
    let (n, dim) = rows_and_dim(&read_header(path)?.shape, path)?;
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
    let arr = read(path)?;
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
