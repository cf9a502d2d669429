//! The data set laid out for the kernels, and the row tasks that fit the cache.

use super::real::Real;

/// SIMD width the blocked data layout is padded to.
pub const LANES: usize = 16;

/// A data set laid out for the kernels.
#[derive(Clone, Debug)]
pub struct PreparedSet<T> {
    pub n: usize,
    pub dim: usize,
    /// [block][dim][LANES], zero-padded to whole blocks: one block's columns are contiguous.
    pub(super) blocked: Vec<T>,
    /// [n][dim], for the weighted sum.
    pub(super) rows: Vec<T>,
    /// [dim][blocks * LANES], zero-padded columns, for the weighted sum of small dimensions.
    pub(super) columns: Vec<T>,
}

/// Dimensions up to this use the column layout for the weighted sum.
pub(super) const SMALL_DIM: usize = 8;

impl<T: Real> PreparedSet<T> {
    pub fn new(values: &[f64], n: usize, dim: usize) -> Self {
        let blocks = n.div_ceil(LANES);
        let mut blocked = vec![T::ZERO; blocks * dim * LANES];
        for j in 0..n {
            let (b, l) = (j / LANES, j % LANES);
            for k in 0..dim {
                blocked[(b * dim + k) * LANES + l] = T::from_f64(values[j * dim + k]);
            }
        }
        let rows = values.iter().map(|&v| T::from_f64(v)).collect();
        let mut columns = Vec::new();
        if dim <= SMALL_DIM {
            let width = blocks * LANES;
            columns = vec![T::ZERO; dim * width];
            for j in 0..n {
                for k in 0..dim {
                    columns[k * width + j] = T::from_f64(values[j * dim + k]);
                }
            }
        }
        PreparedSet {
            n,
            dim,
            blocked,
            rows,
            columns,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.blocked.len() + self.rows.len() + self.columns.len()) * std::mem::size_of::<T>()
    }
}

/// Rows of the query batch that share a span, cut into tasks that fit the cache.
pub(super) fn tasks(rows: &[usize], span_len: usize, dim: usize) -> Vec<&[usize]> {
    let threads = rayon::current_num_threads().max(1);
    // The task's distance matrix stays within ~1 MiB, and there are >= 2 tasks per thread.
    let cache_rows = (1 << 20) / (span_len.max(1) * 8).max(1);
    let balance = rows.len().div_ceil(2 * threads);
    let per_task = cache_rows.min(balance).clamp(8, 256).next_multiple_of(8);
    let _ = dim;
    rows.chunks(per_task).collect()
}
