//! The last few batches' distances in GEMM form, so that a second look at the same states reuses
//! them: NAG's noise-unconditional call right after the denoiser's, and the noise posterior of a
//! step's state after the denoiser evaluated it; and the posterior's bucketed gaps of its last
//! batch, for the pooled estimate's pass on the same state. A row is reused only when its values
//! are bit-for-bit those cached, against the same span.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::gemm_form::{RowMeta, SpanDistances};
use super::log_sum_exp::RowBuckets;
use super::real::Real;
use crate::backend::Span;

/// Batches kept: a Heun step evaluates x_i and its Euler predictor before the posterior of x_i,
/// each batch in up to one entry per thread (`gemm_rows` splits it).
fn entries_kept() -> usize {
    3 * rayon::current_num_threads()
}
/// Gaps kept at most, over all entries (f32: 256 MiB).
const MAX_GAPS: usize = 1 << 26;

/// One batch's distances to one span, with its rows' values for the bit-for-bit check.
struct Entry<T> {
    distances: Arc<SpanDistances<T>>,
    /// [rows][dim], in the order of `distances.rows`.
    values: Vec<T>,
    /// Row hash -> positions in `distances.rows`.
    by_hash: HashMap<u64, Vec<usize>>,
}

/// The cache (shared by clones of a prepared set: they hold the same data).
#[derive(Clone)]
pub(super) struct DistanceCache<T> {
    entries: Arc<Mutex<VecDeque<Arc<Entry<T>>>>>,
}

impl<T> Default for DistanceCache<T> {
    fn default() -> Self {
        DistanceCache {
            entries: Arc::new(Mutex::new(VecDeque::new())),
        }
    }
}

impl<T> std::fmt::Debug for DistanceCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DistanceCache")
    }
}

/// A cheap multiply-rotate hash of a row's bits (FxHash's step): every hit is confirmed bit for
/// bit, so the hash only has to spread distinct rows, and SipHash cost as much as a distance.
fn row_hash<T: Real>(row: &[T]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = 0u64;
    for v in row {
        h = (h.rotate_left(5) ^ v.to_f64().to_bits()).wrapping_mul(K);
    }
    h
}

fn same_bits<T: Real>(a: &[T], b: &[T]) -> bool {
    a.iter()
        .zip(b)
        .all(|(u, v)| u.to_f64().to_bits() == v.to_f64().to_bits())
}

impl<T: Real> DistanceCache<T> {
    /// Where each of `rows` (of the batch `x`) lies in the cached distances to `span` (entry,
    /// position), if every row is cached: readers of single rows need no gathered copy.
    pub fn lookup_rows(
        &self,
        x: &[T],
        dim: usize,
        rows: &[usize],
        span: Span,
    ) -> Option<Vec<(Arc<SpanDistances<T>>, usize)>> {
        let entries = self.entries.lock().ok()?;
        let found = Self::find_rows(&entries, x, dim, rows, span)?;
        Some(
            found
                .into_iter()
                .map(|(e, q)| (Arc::clone(&e.distances), q))
                .collect(),
        )
    }

    /// Each row's entry and position, if every row is cached.
    fn find_rows<'e>(
        entries: &'e VecDeque<Arc<Entry<T>>>,
        x: &[T],
        dim: usize,
        rows: &[usize],
        span: Span,
    ) -> Option<Vec<(&'e Entry<T>, usize)>> {
        let mut found: Vec<(&Entry<T>, usize)> = Vec::with_capacity(rows.len());
        for &r in rows {
            let row = &x[r * dim..(r + 1) * dim];
            let hash = row_hash(row);
            let hit = entries.iter().rev().find_map(|e| {
                if e.distances.span != span {
                    return None;
                }
                e.by_hash.get(&hash)?.iter().find_map(|&q| {
                    same_bits(row, &e.values[q * dim..(q + 1) * dim]).then_some((&**e, q))
                })
            })?;
            found.push(hit);
        }
        Some(found)
    }

    /// The distances of `rows` (of the batch `x`) to `span` if every row is cached: the cached
    /// entry itself when it holds exactly these rows in this order, else the rows gathered.
    pub fn lookup(
        &self,
        x: &[T],
        dim: usize,
        rows: &[usize],
        span: Span,
    ) -> Option<Arc<SpanDistances<T>>> {
        let entries = self.entries.lock().ok()?;
        let found = Self::find_rows(&entries, x, dim, rows, span)?;
        if let Some(&(first, _)) = found.first() {
            let whole = found.len() == first.distances.rows.len()
                && found
                    .iter()
                    .enumerate()
                    .all(|(i, &(e, q))| std::ptr::eq(e, first) && q == i);
            if whole {
                return Some(Arc::clone(&first.distances));
            }
        }
        let width = span.len();
        let mut gaps = Vec::with_capacity(rows.len() * width);
        let mut meta: Vec<RowMeta> = Vec::with_capacity(rows.len());
        for &(e, q) in &found {
            gaps.extend_from_slice(&e.distances.gaps[q * width..(q + 1) * width]);
            meta.push(e.distances.meta[q]);
        }
        Some(Arc::new(SpanDistances {
            span,
            rows: rows.to_vec(),
            gaps,
            meta,
        }))
    }

    /// Keeps `distances` (of rows of the batch `x`) for later calls.
    pub fn insert(&self, x: &[T], dim: usize, distances: Arc<SpanDistances<T>>) {
        let mut values = Vec::with_capacity(distances.rows.len() * dim);
        let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
        for (q, &r) in distances.rows.iter().enumerate() {
            let row = &x[r * dim..(r + 1) * dim];
            values.extend_from_slice(row);
            by_hash.entry(row_hash(row)).or_default().push(q);
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        entries.push_back(Arc::new(Entry {
            distances,
            values,
            by_hash,
        }));
        let mut total: usize = entries.iter().map(|e| e.distances.gaps.len()).sum();
        while entries.len() > entries_kept() || (total > MAX_GAPS && entries.len() > 1) {
            if let Some(old) = entries.pop_front() {
                total -= old.distances.gaps.len();
            }
        }
    }
}

/// Softmax batches remembered for the re-read forecast.
const HISTORY: usize = 32;
/// Batches the forecast needs before it leaves the default (pruning).
const HISTORY_MIN: usize = 4;

/// Which of the last softmax batches a later call read again in full (NAG's noise-dropped call,
/// the noise posterior): pruning a batch's softmax leaves no distances for such a reader, which
/// then pays the whole product after the pruning. When nearly every recent batch was re-read
/// (NAG on, or one evaluation per step with diagnostics on), the softmax takes the product
/// itself and the reader finds it cached. The forecast depends only on the call sequence, so a
/// run's path, and its results, are reproducible.
#[derive(Clone, Debug, Default)]
pub(super) struct RereadHistory {
    /// (fingerprint of the batch's rows and span, re-read since), oldest first.
    entries: Arc<Mutex<VecDeque<(u64, bool)>>>,
}

/// One number for the rows `rows` of `x` against `span` (collisions only misplace a forecast).
pub(super) fn batch_fingerprint<T: Real>(x: &[T], dim: usize, rows: &[usize], span: Span) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = ((span.start as u64) << 32 ^ span.end as u64).wrapping_mul(K);
    for &r in rows {
        h = (h.rotate_left(5) ^ row_hash(&x[r * dim..(r + 1) * dim])).wrapping_mul(K);
    }
    h
}

impl RereadHistory {
    /// Whether the next softmax batch is likely to be re-read: at least three quarters of the
    /// remembered batches were.
    pub fn expects_reread(&self) -> bool {
        let Ok(entries) = self.entries.lock() else {
            return false;
        };
        let reread = entries.iter().filter(|(_, r)| *r).count();
        entries.len() >= HISTORY_MIN && 4 * reread >= 3 * entries.len()
    }

    /// A softmax batch was evaluated.
    pub fn softmax(&self, fingerprint: u64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        entries.push_back((fingerprint, false));
        if entries.len() > HISTORY {
            entries.pop_front();
        }
    }

    /// A batch was read in full by another weighting or the posterior: marks the latest softmax
    /// batch with the same fingerprint.
    pub fn reread(&self, fingerprint: u64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if let Some(entry) = entries.iter_mut().rev().find(|(f, _)| *f == fingerprint) {
            entry.1 = true;
        }
    }
}

/// One row's bucketed gaps with its values, for the bit-for-bit check.
struct Bucketed<T> {
    span: Span,
    values: Vec<T>,
    row: Arc<RowBuckets<T>>,
}

/// The noise posterior's bucketed gaps of the last batch it measured: the pooled estimate reads
/// the same rows again, on other nodes, right after the per-row pass.
/// A span's rows are kept until a call on that span finds none of them (the next step's state).
#[derive(Clone)]
pub(super) struct BucketCache<T> {
    entries: Arc<Mutex<HashMap<u64, Vec<Bucketed<T>>>>>,
}

impl<T> Default for BucketCache<T> {
    fn default() -> Self {
        BucketCache {
            entries: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<T> std::fmt::Debug for BucketCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BucketCache")
    }
}

impl<T: Real> BucketCache<T> {
    /// Each row's cached gaps against `span`, where its values are bit for bit those cached.
    pub fn lookup(
        &self,
        x: &[T],
        dim: usize,
        rows: &[usize],
        span: Span,
    ) -> Vec<Option<Arc<RowBuckets<T>>>> {
        let Ok(entries) = self.entries.lock() else {
            return vec![None; rows.len()];
        };
        rows.iter()
            .map(|&r| {
                let row = &x[r * dim..(r + 1) * dim];
                entries.get(&row_hash(row))?.iter().find_map(|e| {
                    (e.span == span && same_bits(row, &e.values)).then(|| e.row.clone())
                })
            })
            .collect()
    }

    /// Keeps `built` (row index, gaps), in place of what was kept for the same row (a row measured
    /// again because its kept gaps were not exact enough); forgets the span's other rows first
    /// when the call found none of its rows here.
    pub fn keep(
        &self,
        x: &[T],
        dim: usize,
        span: Span,
        built: Vec<(usize, RowBuckets<T>)>,
        hits: usize,
    ) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let mut retired: Vec<Bucketed<T>> = Vec::new();
        if hits == 0 {
            entries.retain(|_, list| {
                retired.extend(list.extract_if(.., |e| e.span == span));
                !list.is_empty()
            });
        }
        for (r, buckets) in built {
            let row = &x[r * dim..(r + 1) * dim];
            let list = entries.entry(row_hash(row)).or_default();
            retired.extend(list.extract_if(.., |e| e.span == span && same_bits(row, &e.values)));
            list.push(Bucketed {
                span,
                values: row.to_vec(),
                row: Arc::new(buckets),
            });
        }
        drop(entries);
        // Freed on the pool while the caller goes on: a batch's buckets are hundreds of vectors.
        if !retired.is_empty() {
            rayon::spawn(move || drop(retired));
        }
    }
}
