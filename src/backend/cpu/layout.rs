//! The data set laid out for the kernels, and the row tasks that fit the cache.

use std::sync::OnceLock;

use super::cache::{BucketCache, DistanceCache, RereadHistory};
use super::marginal_table::MarginalTables;
use super::panels::{PANELS_MIN_DIM, Panels};
use super::pruned::Projection;
use super::real::Real;
use super::tiles::TileCache;

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
    /// The GEMM form's operands, built at first use.
    pub(super) gemm: OnceLock<GemmOperands<T>>,
    /// The GEMM form's operands packed for the AVX-512 products, built at first use; `None` for
    /// f64 sets, below the panels' dimensions and where AVX-512F is missing (the `gemm` crate
    /// serves).
    pub(super) panels: OnceLock<Option<Panels>>,
    /// The principal directions for pruning at small sigma, built at first use.
    pub(super) projection: OnceLock<Projection>,
    /// The last batches' distances in GEMM form.
    pub(super) cache: DistanceCache<T>,
    /// Which recent softmax batches were read again in full (whether to prune the next).
    pub(super) rereads: RereadHistory,
    /// NAG's marginal as tables over the squared distance, per node set.
    pub(super) marginal: MarginalTables,
    /// The noise posterior's last rows, bucketed (its pooled pass reads them again).
    pub(super) buckets: BucketCache<T>,
    /// Low-dimensional spans in spatially compact blocks (`tiles.rs`), built at first use.
    pub(super) tiles: TileCache<T>,
}

/// f32 sets of this many dimensions or more take the distances in GEMM form.
pub(super) const GEMM_MIN_DIM: usize = 16;
/// ... and this many or fewer (the 784-D images included: there the GEMM form is nearer f64 than
/// explicit f32 differences, 1.5e-5 against 7.9e-5 in the weighted means and weight sums, tests.rs;
/// its error bound grows with D, and the candidates it cannot resolve are recomputed explicitly).
pub(super) const GEMM_MAX_DIM: usize = 1024;

/// The data set centred on its mean for the GEMM form x.y - |y|^2 / 2: centring keeps |x| and |y|,
/// and with them the form's rounding error, at the scale of the data's spread.
#[derive(Clone, Debug)]
pub(super) struct GemmOperands<T> {
    /// The data mean mu, in f64.
    pub mean: Vec<f64>,
    /// [n][dim]: y_j - mu, rounded once.
    pub centred: Vec<T>,
    /// |y_j - mu|^2 / 2 of the rounded rows, rounded once.
    pub half_norms: Vec<T>,
    /// |y_j - mu| of the rounded rows.
    pub norms: Vec<f64>,
}

impl<T: Real> GemmOperands<T> {
    /// From the set's rows as the kernels see them (rounded to T).
    fn new(rows: &[T], n: usize, dim: usize) -> Self {
        let mut mean = vec![0.0; dim];
        for row in rows.chunks_exact(dim) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v.to_f64();
            }
        }
        for m in mean.iter_mut() {
            *m /= n.max(1) as f64;
        }
        let centred: Vec<T> = rows
            .chunks_exact(dim)
            .flat_map(|row| {
                row.iter()
                    .zip(&mean)
                    .map(|(v, m)| T::from_f64(v.to_f64() - m))
            })
            .collect();
        let norms2: Vec<f64> = centred
            .chunks_exact(dim)
            .map(|row| row.iter().map(|v| v.to_f64() * v.to_f64()).sum())
            .collect();
        GemmOperands {
            mean,
            centred,
            half_norms: norms2.iter().map(|v| T::from_f64(v / 2.0)).collect(),
            norms: norms2.iter().map(|v| v.sqrt()).collect(),
        }
    }

    fn bytes(&self) -> usize {
        (self.centred.len() + self.half_norms.len()) * std::mem::size_of::<T>()
            + (self.mean.len() + self.norms.len()) * 8
    }
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
            gemm: OnceLock::new(),
            panels: OnceLock::new(),
            projection: OnceLock::new(),
            cache: DistanceCache::default(),
            rereads: RereadHistory::default(),
            marginal: MarginalTables::default(),
            buckets: BucketCache::default(),
            tiles: TileCache::default(),
        }
    }

    /// Bytes a set of `n` points of `dim` values holds at most once every layout is built: the
    /// blocked and row layouts, the columns of small dimensions, on the GEMM form its centred
    /// copy, and from PANELS_MIN_DIM dimensions on its two packings (`panels.rs`; AVX-512
    /// machines only, counted everywhere).
    pub fn bytes_at_most(n: usize, dim: usize) -> u64 {
        let values = (n as u64).saturating_mul(dim as u64);
        let mut layouts = 2;
        if dim <= SMALL_DIM {
            layouts += 1;
        }
        let mut bytes = values.saturating_mul(layouts);
        if T::GEMM_FORM && (GEMM_MIN_DIM..=GEMM_MAX_DIM).contains(&dim) {
            bytes = bytes.saturating_add(values);
            if dim >= PANELS_MIN_DIM {
                let (points, dims) = Panels::values_for(n, dim);
                bytes = bytes.saturating_add(points).saturating_add(dims);
            }
        }
        bytes.saturating_mul(std::mem::size_of::<T>() as u64)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.blocked.len() + self.rows.len() + self.columns.len()) * std::mem::size_of::<T>()
            + self.gemm.get().map_or(0, GemmOperands::bytes)
            + self
                .panels
                .get()
                .and_then(Option::as_ref)
                .map_or(0, Panels::bytes)
            + self.projection.get().map_or(0, Projection::bytes)
    }

    /// The GEMM form's operands (built at the first call).
    pub(super) fn gemm_operands(&self) -> &GemmOperands<T> {
        self.gemm
            .get_or_init(|| GemmOperands::new(&self.rows, self.n, self.dim))
    }

    /// The GEMM form's operands packed for the AVX-512 products (built at the first call), or
    /// `None` where they do not apply.
    pub(super) fn panels(&self) -> Option<&Panels> {
        self.panels
            .get_or_init(|| Panels::new(self.gemm_operands(), self.n, self.dim))
            .as_ref()
    }

    /// The pruning's projection (built at the first call).
    pub(super) fn projection(&self) -> &Projection {
        self.projection.get_or_init(|| Projection::new(self))
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
