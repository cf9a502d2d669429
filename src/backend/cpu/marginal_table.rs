//! NAG's marginal weights (f32 sets) read from a table, not summed over the prior's nodes point
//! by point.
//!
//! The marginal weighs point j by w_j = sum_k e^(L_k(d_j) - M) / s_k^m and adds
//! z_j = sum_k e^(L_k(d_j) - M) to the normaliser, L_k(d) = l_k - D ln s_k - d / (2 s_k^2)
//! (`Weighting::Marginal`): functions of the point's squared distance d_j alone, the same for every
//! row. So ln Z(d) = ln sum_k e^L_k(d) (a log-sum-exp of affine functions of d: smooth and convex)
//! and the ratio R(d) = W(d) / Z(d), W(d) = sum_k e^L_k(d) / s_k^m (the node posterior's mean of
//! s^-m: smooth, and within a cell it changes by a few percent at most) are tabulated once per node
//! set, in cubic Hermite cells 2^-sub of an octave of v = d + d0 wide, and each point costs one
//! table record and one exp, z = e^(ln Z - M) and w = z R, instead of one exp per node (~40 of 45
//! nodes in 2-D, where the node posterior is broad). The interpolation error, measured at every
//! cell's midpoint (where the Hermite remainder t^2 (1 - t)^2 h^4 f''''/24 peaks), is held below
//! TABLE_TOLERANCE in ln z and relative in R (so ~2x that in w); a node set that needs
//! finer cells than 2^-MAX_SUB keeps the direct sum. From the last cell on, the widest node carries
//! all but LINEAR_SHARE of both sums, so the logs are linear in d: rows whose nearest point lies
//! there take their weights in gap form (one exp, exact however far the row). Above TABLE_MAX_DIM
//! (the digits' 64-D, ~13-18 active nodes a point, one exp each) the GEMM form's weights read the
//! table too, with ln Z's levels stored less a slope in the cell index (`MarginalTable::slope`).
//!
//! The kernels compiled for AVX2 read the table with AVX2 + FMA intrinsics (`avx2`), eight points
//! at a time: two 16-byte loads per point's record and an in-register transpose in place of
//! gathers (slow on AMD Zen and Intel alike), 8-wide cubics and exp; on CPUs with AVX-512 the
//! same sixteen at a time (`avx512`). LLVM's vectorisation of the plain loop (`Lookup::lanes`, the
//! portable copy's) moves the records lane by lane.
//!
//! The one-pass sums (D <= TABLE_MAX_DIM: distances, weights and weighted sums in registers, no
//! buffer) run with AVX2 + FMA (`avx2`, 8 points a register) or AVX-512. Those of a row whose
//! points' cells all lie among the WINDOW from its nearest one's (far from the data: its squared
//! distances span little) skip the records' loads and transposes: the coefficients also lie in
//! planes, one per coefficient; AVX-512 holds WINDOW (32) consecutive cells of each in two
//! registers and picks every lane's by one two-source permute, AVX2 holds `avx2::WINDOW` (8) in
//! one register and picks by one permute (the same bits either way).

use std::sync::{Arc, Mutex};

use super::layout::LANES;
use super::real::Real;
use crate::backend::Weighting;

/// Data of up to this many dimensions take NAG's one-pass sums, and their tables store ln Z's
/// levels as they are; above it ln Z(d) grows with D ln s, and its levels are stored sloped.
pub(super) const TABLE_MAX_DIM: usize = 3;
/// The largest interpolation error allowed in ln z and relative in R: ~1e-6 in each weight, the
/// order of the direct sum's own f32 rounding (exp < 4e-7, d / 2 s^2 to eps (CUTOFF + offset)).
pub(super) const TABLE_TOLERANCE: f64 = 1e-6;
/// From the cell where every node but the widest carries less than this share of Z and of W,
/// the logs are taken as linear in d (an error below this share in ln w).
const LINEAR_SHARE: f64 = 1e-9;
/// Cells per octave tried: 2^4, 2^5, 2^6.
const MIN_SUB: u32 = 4;
const MAX_SUB: u32 = 6;
/// The table spans at most this many octaves of d + d0 (more: the direct sum).
const MAX_OCTAVES: u32 = 96;
/// Cells a row's window holds in registers (two of 16 per coefficient, read by one two-source
/// permute): a row whose points all fall in the WINDOW cells from its nearest one's skips the
/// records' loads and transposes.
pub(super) const WINDOW: u32 = 32;
/// f32 per plane of the table's coefficients (`MarginalTable::planes`): a constant, so that a
/// window's eight loads share one address register. Tables of more than PLANE - WINDOW cells
/// (finer than 16 a octave over 100 octaves) have no planes and read their records.
const PLANE: usize = 2048;

/// The SIMD exps' polynomial (`Real::exp`'s for f32: Taylor to degree 7 on the reduced
/// argument), highest power first, in the order Horner's rule takes them.
const EXP_HORNER: [f32; 8] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// ln Z(d), ln W(d) and their slopes at one d, and the share of all nodes but the widest.
struct Sums {
    z: f64,
    dz: f64,
    w: f64,
    dw: f64,
    rest: f64,
}

/// The node set's constants: a_k = l_k - D ln s_k, c_k = 1 / (2 s_k^2), s_k^-m.
struct Nodes {
    a: Vec<f64>,
    c: Vec<f64>,
    scale: Vec<f64>,
    /// The node of the largest sigma (smallest c).
    widest: usize,
    /// The data's dimension (above TABLE_MAX_DIM the table's levels are stored sloped).
    dim: usize,
}

impl Nodes {
    fn sums(&self, d: f64) -> Sums {
        let m = self
            .a
            .iter()
            .zip(&self.c)
            .map(|(a, c)| a - d * c)
            .fold(f64::NEG_INFINITY, f64::max);
        let (mut sz, mut sz1, mut sw, mut sw1, mut rz, mut rw) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for (k, ((a, c), s)) in self.a.iter().zip(&self.c).zip(&self.scale).enumerate() {
            let e = (a - d * c - m).exp();
            let ew = e * s;
            sz += e;
            sz1 += c * e;
            sw += ew;
            sw1 += c * ew;
            if k != self.widest {
                rz += e;
                rw += ew;
            }
        }
        Sums {
            z: m + sz.ln(),
            dz: -sz1 / sz,
            w: m + sw.ln(),
            dw: -sw1 / sw,
            rest: (rz / sz).max(rw / sw),
        }
    }
}

/// The cubic on [0, h] with values f0, f1 and slopes g0, g1 at its ends, in powers of s.
fn hermite(f0: f64, g0: f64, f1: f64, g1: f64, h: f64) -> [f64; 4] {
    let slope = (f1 - f0) / h;
    [
        f0,
        g0,
        (3.0 * slope - 2.0 * g0 - g1) / h,
        (g0 + g1 - 2.0 * slope) / (h * h),
    ]
}

fn horner(c: &[f64; 4], s: f64) -> f64 {
    c[0] + s * (c[1] + s * (c[2] + s * c[3]))
}

/// ln Z(d) and ln W(d) of one node set in cells over v = d + d0 (`offset`), f32: cell i starts at
/// the float whose bits are (first + i) << shift, so a point's cell comes from its bits.
pub(super) struct MarginalTable {
    shift: u32,
    first: u32,
    last: u32,
    offset: f32,
    /// v at the start of the last cell, the linear one.
    last_start: f32,
    /// Per cell, the cubic's coefficients in s = v - cell start, for ln Z then for R = W / Z:
    /// one 32-byte record, read by one load (vector gathers are slow on this class of CPU).
    cells: Vec<[f32; 8]>,
    /// The same coefficients by coefficient: plane q (PLANE f32 from q PLANE) holds
    /// coefficient q of every cell, then at least WINDOW padding cells, so that a window loaded
    /// from any cell stays within its plane; empty where the cells do not fit.
    planes: Vec<f32>,
    /// ln Z's level in cell i is stored as ln Z + `slope` i - `level`: in D dimensions ln Z falls
    /// by ~(D/2) ln 2 an octave, and in f32 its raw values (|ln Z| ~ D ln s) would lose ~1e-5.
    /// A multiple of 2^-12 (so `slope` times a cell count is exact in f32); 0 up to
    /// TABLE_MAX_DIM dimensions (those tables' bits as they were).
    slope: f32,
    level: f64,
    nodes: Nodes,
    /// The largest interpolation error measured, in ln z or relative in R (read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub max_error: f64,
}

impl MarginalTable {
    /// The table of NAG's marginal with prior nodes (`sigmas`, `log_weights`) and sigma power m
    /// on `dim`-dimensional data; `None` where cells of 2^-MAX_SUB octave do not reach
    /// TABLE_TOLERANCE or the table would be too long.
    pub fn new(sigmas: &[f64], log_weights: &[f64], power: i32, dim: usize) -> Option<Self> {
        if sigmas.is_empty() || sigmas.len() != log_weights.len() {
            return None;
        }
        let widest = (0..sigmas.len()).max_by(|&i, &j| sigmas[i].total_cmp(&sigmas[j]))?;
        let nodes = Nodes {
            a: sigmas
                .iter()
                .zip(log_weights)
                .map(|(s, l)| l - dim as f64 * s.ln())
                .collect(),
            c: sigmas.iter().map(|s| 1.0 / (2.0 * s * s)).collect(),
            scale: sigmas.iter().map(|s| s.powi(-power)).collect(),
            widest,
            dim,
        };
        if nodes.a.iter().chain(&nodes.c).any(|v| !v.is_finite()) {
            return None;
        }
        (MIN_SUB..=MAX_SUB)
            .find_map(|sub| Self::with_cells(&nodes, sub))
            .map(|t| MarginalTable { nodes, ..t })
    }

    /// The table with 2^sub cells per octave, if it meets TABLE_TOLERANCE (its `nodes` empty).
    fn with_cells(nodes: &Nodes, sub: u32) -> Option<Self> {
        let shift = f32::MANTISSA_DIGITS - 1 - sub;
        // d0: a power of two below the narrowest node's scale 2 s^2, so the first cells are
        // 1/16 of it or narrower.
        let narrowest = nodes.c.iter().copied().fold(0.0, f64::max);
        let scale = (1.0 / narrowest) as f32;
        let offset = f32::from_bits(scale.to_bits() & 0xff80_0000).max(f32::MIN_POSITIVE);
        let first = offset.to_bits() >> shift;
        let start = |i: u32| f64::from(f32::from_bits((first + i) << shift));
        let mut z: [Vec<f32>; 4] = Default::default();
        let mut ratio: [Vec<f32>; 4] = Default::default();
        // ln Z's levels in f64, stored once the table's range (and so `level`) is known.
        let mut levels: Vec<f64> = Vec::new();
        let mut push = |cz: [f64; 4], cr: [f64; 4]| {
            levels.push(cz[0]);
            for q in 0..4 {
                z[q].push(cz[q] as f32);
                ratio[q].push(cr[q] as f32);
            }
        };
        // R = W / Z and its slope dR/dv = R (d ln W - d ln Z).
        let r_of = |at: &Sums| {
            let r = (at.w - at.z).exp();
            (r, r * (at.dw - at.dz))
        };
        let mut at = nodes.sums(0.0);
        let mut max_error = 0.0f64;
        let mut i = 0u32;
        loop {
            let v0 = start(i);
            if at.rest <= LINEAR_SHARE {
                // ln Z and ln W both fall with the widest node's slope: R is constant.
                let slope = -nodes.c[nodes.widest];
                push([at.z, slope, 0.0, 0.0], [r_of(&at).0, 0.0, 0.0, 0.0]);
                break;
            }
            let v1 = start(i + 1);
            if i >= MAX_OCTAVES << sub || !v1.is_finite() {
                return None;
            }
            let h = v1 - v0;
            let d = |v: f64| v - f64::from(offset);
            let next = nodes.sums(d(v1));
            let mid = nodes.sums(d(v0 + h / 2.0));
            let cz = hermite(at.z, at.dz, next.z, next.dz, h);
            let ((r0, g0), (r1, g1)) = (r_of(&at), r_of(&next));
            let cr = hermite(r0, g0, r1, g1, h);
            max_error = max_error
                .max((horner(&cz, h / 2.0) - mid.z).abs())
                .max((horner(&cr, h / 2.0) / r_of(&mid).0 - 1.0).abs());
            if max_error > TABLE_TOLERANCE {
                // Finer cells, or the direct sum: no need to build the rest.
                return None;
            }
            push(cz, cr);
            at = next;
            i += 1;
        }
        // Above TABLE_MAX_DIM: ln Z's levels less their fall of ~(D/2) ln 2 an octave, centred.
        let slope = if nodes.dim > TABLE_MAX_DIM {
            let per_cell = nodes.dim as f64 / 2.0 * std::f64::consts::LN_2 / f64::from(1u32 << sub);
            ((per_cell * 4096.0).round() / 4096.0) as f32
        } else {
            0.0
        };
        let level = if slope == 0.0 {
            0.0
        } else {
            let flat = levels
                .iter()
                .enumerate()
                .map(|(i, l)| l + f64::from(slope) * i as f64);
            let (lo, hi) = flat.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            (lo + hi) / 2.0
        };
        if slope != 0.0 {
            for (i, (stored, l)) in z[0].iter_mut().zip(&levels).enumerate() {
                *stored = (l + f64::from(slope) * i as f64 - level) as f32;
            }
        }
        let cells: Vec<[f32; 8]> = (0..z[0].len())
            .map(|i| {
                [
                    z[0][i],
                    z[1][i],
                    z[2][i],
                    z[3][i],
                    ratio[0][i],
                    ratio[1][i],
                    ratio[2][i],
                    ratio[3][i],
                ]
            })
            .collect();
        let finite = cells.iter().flatten().all(|v| v.is_finite());
        let mut planes = Vec::new();
        if cells.len() + WINDOW as usize <= PLANE {
            planes.resize(8 * PLANE, 0.0f32);
            for (c, record) in cells.iter().enumerate() {
                for (q, &v) in record.iter().enumerate() {
                    planes[q * PLANE + c] = v;
                }
            }
        }
        (finite && max_error <= TABLE_TOLERANCE).then(|| MarginalTable {
            shift,
            first,
            last: i,
            offset,
            last_start: start(i) as f32,
            cells,
            planes,
            slope,
            level,
            nodes: Nodes {
                a: Vec::new(),
                c: Vec::new(),
                scale: Vec::new(),
                widest: 0,
                dim: 0,
            },
            max_error,
        })
    }

    /// Cells in the table.
    #[cfg(test)]
    pub fn cells(&self) -> usize {
        self.last as usize + 1
    }

    /// A row's view of the table (top logit `top`); `None` where the row's nearest point lies
    /// in the last cell, whose rows take the gap form.
    #[inline(always)]
    fn lookup(&self, d_min: f64, top: f64) -> Option<Lookup<'_>> {
        if d_min + f64::from(self.offset) >= f64::from(self.last_start) {
            return None;
        }
        let base = (d_min + f64::from(self.offset)) as f32;
        // The cell of the row's nearest point: its points' cells are this one or later.
        let ref_cell = ((base.to_bits() >> self.shift).max(self.first) - self.first).min(self.last);
        // ln z - M = (stored level + cubic - slope (cell - ref_cell)) - (M - level + slope
        // ref_cell): both terms of the size of the row's own range of ln z.
        let top = if self.slope == 0.0 {
            top
        } else {
            top - self.level + f64::from(self.slope) * f64::from(ref_cell)
        };
        Some(Lookup {
            shift: self.shift,
            first: self.first,
            last: self.last,
            last_start: self.last_start,
            base,
            top: top as f32,
            slope: self.slope,
            ref_cell,
            cells: &self.cells,
            planes: &self.planes,
        })
    }

    /// The row's top logit M = max_k L_k(d_min), the direct sum's scale.
    fn top(&self, d_min: f64) -> f64 {
        let n = &self.nodes;
        n.a.iter()
            .zip(&n.c)
            .map(|(a, c)| a - d_min * c)
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// A row's view of the table, copied into locals so that LLVM keeps it in registers.
#[derive(Clone, Copy)]
struct Lookup<'a> {
    shift: u32,
    first: u32,
    last: u32,
    last_start: f32,
    /// v at the row's nearest point, and its top logit (less the table's level).
    base: f32,
    top: f32,
    /// The table's `slope`, and the cell of `base`, from which a point's cell count is taken.
    slope: f32,
    ref_cell: u32,
    cells: &'a [[f32; 8]],
    /// `MarginalTable::planes`: 8 planes of PLANE f32, or none.
    planes: &'a [f32],
}

impl Lookup<'_> {
    /// Whether a row whose squared distances run from `nearest` to `farthest` finds every
    /// point's cell among the `window` (at most WINDOW) from its nearest point's: the cell of the farthest, by
    /// the passes' own f32 arithmetic (monotone in d, so no point's cell lies beyond it).
    #[inline(always)]
    fn window_holds(&self, nearest: f32, farthest: f32, window: u32) -> bool {
        let v = (farthest - nearest).max(0.0) + self.base;
        let cell = ((v.to_bits() >> self.shift).max(self.first) - self.first).min(self.last);
        self.has_planes() && cell.saturating_sub(self.ref_cell) < window
    }

    /// Whether the table's coefficients come in planes too (`MarginalTable::planes`).
    #[inline(always)]
    fn has_planes(&self) -> bool {
        self.planes.len() == 8 * PLANE && self.cells.len() + WINDOW as usize <= PLANE
    }

    /// (w, z) of LANES points at gaps `gaps`: the cells' index and offset vectorised, the cells
    /// read one 32-byte record per point, the cubics and the exp of ln z vectorised; w = z R.
    #[inline(always)]
    fn lanes<const FMA: bool>(self, gaps: [f32; LANES]) -> ([f32; LANES], [f32; LANES]) {
        let mut cell = [0usize; LANES];
        let mut offset = [0.0f32; LANES];
        let mut inside = [false; LANES];
        for l in 0..LANES {
            let v = gaps[l].max(0.0) + self.base;
            let bits = v.to_bits();
            cell[l] = ((bits >> self.shift).max(self.first) - self.first).min(self.last) as usize;
            let cell_start = f32::from_bits(bits >> self.shift << self.shift).min(self.last_start);
            offset[l] = v - cell_start;
            // +inf gaps (outside the span) weigh nothing.
            inside[l] = v <= f32::MAX;
        }
        let mut records = [[0.0f32; 8]; LANES];
        for l in 0..LANES {
            if let Some(r) = self.cells.get(cell[l]) {
                records[l] = *r;
            }
        }
        let (mut w, mut z) = ([0.0f32; LANES], [0.0f32; LANES]);
        for l in 0..LANES {
            let (s, c) = (offset[l], &records[l]);
            let cubic = |q: usize| {
                s.fused::<FMA>(
                    s.fused::<FMA>(s.fused::<FMA>(c[q + 3], c[q + 2]), c[q + 1]),
                    c[q],
                )
            };
            // The stored level's slope undone from the row's own cell: an exact product.
            let steps = (cell[l] as u32).saturating_sub(self.ref_cell) as f32;
            let e_z = Real::exp((-self.slope).fused::<FMA>(steps, cubic(0)) - self.top);
            // A select, not a product: outside, the cubics are NaN (inf x 0).
            let e_w = e_z * cubic(4);
            z[l] = if inside[l] { e_z } else { 0.0 };
            w[l] = if inside[l] { e_w } else { 0.0 };
        }
        (w, z)
    }
}

/// How the table is read: the portable loop (`Lookup::lanes`), AVX2 + FMA (`avx2`, 8 points at
/// a time) or AVX-512 (`avx512`, 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reading {
    Portable,
    Avx2,
    Avx512,
}

impl Reading {
    /// Whether this CPU runs the reading.
    pub fn available(self) -> bool {
        match self {
            Reading::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Reading::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Reading::Avx512 => {
                Reading::Avx2.available()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The widest reading this CPU runs; the portable one for the kernels' portable copy (FMA
    /// false), whose arithmetic it matches.
    #[inline(always)]
    pub fn fastest<const FMA: bool>() -> Reading {
        if FMA && Reading::Avx512.available() {
            Reading::Avx512
        } else if FMA && Reading::Avx2.available() {
            Reading::Avx2
        } else {
            Reading::Portable
        }
    }
}

/// `weights::weigh_gaps` for NAG's marginal through `table`: gaps d_j - d_min (>= 0; +inf outside
/// the span) into weights in place; returns the normaliser Z, on the direct sum's scale. Read
/// the widest way the CPU allows.
#[inline(always)]
pub(super) fn weigh_gaps_tabled<T: Real, const FMA: bool>(
    gaps: &mut [T],
    d_min: f64,
    table: &MarginalTable,
) -> f64 {
    weigh_gaps_read::<T, FMA>(gaps, d_min, table, Reading::fastest::<FMA>())
}

/// `weigh_gaps_tabled` read the way `reading` says (where the CPU runs it and T is f32; else
/// the portable loop).
#[inline(always)]
pub(super) fn weigh_gaps_read<T: Real, const FMA: bool>(
    gaps: &mut [T],
    d_min: f64,
    table: &MarginalTable,
    reading: Reading,
) -> f64 {
    let top = table.top(d_min);
    let Some(lookup) = table.lookup(d_min, top) else {
        return weigh_gaps_linear::<T, FMA>(gaps, d_min, top, &table.nodes);
    };
    #[cfg(target_arch = "x86_64")]
    if reading != Reading::Portable
        && table.cells.len() > table.last as usize
        && reading.available()
        && let Some(gaps) = T::as_f32_mut(gaps)
    {
        return match reading {
            // SAFETY: the CPU has AVX-512 F + VL, AVX2 and FMA (`available`), and the table
            // `last + 1` cells (checked above).
            Reading::Avx512 => unsafe { avx512::weigh(gaps, &lookup) },
            // SAFETY: the CPU has AVX2 and FMA, and the table `last + 1` cells.
            _ => unsafe { avx2::weigh(gaps, &lookup) },
        };
    }
    let mut lanes = [0.0f32; LANES];
    let mut chunks = gaps.chunks_exact_mut(LANES);
    for ch in &mut chunks {
        let mut g = [0.0f32; LANES];
        for l in 0..LANES {
            g[l] = ch[l].to_f64() as f32;
        }
        let (w, z) = lookup.lanes::<FMA>(g);
        for l in 0..LANES {
            ch[l] = T::from_f64(f64::from(w[l]));
            lanes[l] += z[l];
        }
    }
    let rest = chunks.into_remainder();
    let mut g = [f32::INFINITY; LANES];
    for (v, r) in g.iter_mut().zip(rest.iter()) {
        *v = r.to_f64() as f32;
    }
    let (w, z) = lookup.lanes::<FMA>(g);
    let mut total = 0.0;
    for (q, r) in rest.iter_mut().enumerate() {
        *r = T::from_f64(f64::from(w[q]));
        total += f64::from(z[q]);
    }
    total + lanes.iter().map(|&v| f64::from(v)).sum::<f64>()
}

/// A row's marginal sums in one pass, its distances formed in registers: Z, sum_j w_j and
/// sum_j w_j y_jk over the points `counted` of the `columns` (one per dimension of `x`, all as
/// long), the distances and weights never stored; the same numbers as `span_distances`, then
/// `weigh_gaps_tabled`, `sum_of` and `dot_lanes` (bit for bit when the columns' length is a
/// multiple of 16, as the kernels' spans are). No points counted: zeros. `None` where it does
/// not apply (no AVX2 + FMA reading on this CPU, the kernels' portable copy (FMA false, whose
/// arithmetic the portable reading matches), T is not f32, more than TABLE_MAX_DIM columns, or
/// the row lies in the last cell): the caller takes the separate passes.
///
/// Rows whose points' cells all lie among the WINDOW (AVX2: `avx2::WINDOW`) from the nearest
/// one's read the coefficients from registers (`OnePass::Windowed`), with the same bits.
#[inline(always)]
pub(super) fn weigh_and_sum_tabled<T: Real, const FMA: bool>(
    x: &[T],
    columns: &[&[T]],
    counted: std::ops::Range<usize>,
    table: &MarginalTable,
) -> Option<(f64, f64, [f64; TABLE_MAX_DIM])> {
    let reading = Reading::fastest::<FMA>();
    weigh_and_sum_read::<T, FMA>(x, columns, counted, table, OnePass::Windowed, reading)
}

/// How the one-pass sums read the table's records; both give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OnePass {
    /// From registers holding the WINDOW cells (AVX2: `avx2::WINDOW`) from the row's nearest
    /// point's, where every point's cell lies among them (else `Staged`).
    Windowed,
    /// Cells found for CHUNK points, then their records loaded and transposed.
    #[cfg_attr(not(test), allow(dead_code))]
    Staged,
}

/// Rows the one-pass sums took windowed (read by the tests, which check that some do).
#[cfg(test)]
pub(super) static WINDOWED_ROWS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// `weigh_and_sum_tabled` read as `reading` says (AVX2 or AVX-512, where the CPU runs it), its
/// records as `one_pass` says.
#[inline(always)]
pub(super) fn weigh_and_sum_read<T: Real, const FMA: bool>(
    x: &[T],
    columns: &[&[T]],
    counted: std::ops::Range<usize>,
    table: &MarginalTable,
    one_pass: OnePass,
    reading: Reading,
) -> Option<(f64, f64, [f64; TABLE_MAX_DIM])> {
    #[cfg(target_arch = "x86_64")]
    {
        if columns.len() > TABLE_MAX_DIM
            || columns.len() != x.len()
            || table.cells.len() <= table.last as usize
            || !matches!(reading, Reading::Avx2 | Reading::Avx512)
            || !reading.available()
        {
            return None;
        }
        let n = columns.first().map_or(0, |c| c.len());
        // The passes compare point indices in 32-bit lanes (AVX2's signed), a block past n.
        if i32::try_from(n + 16).is_err() {
            return None;
        }
        let (lo, hi) = (counted.start.min(n), counted.end.min(n));
        let mut x_f32 = [0.0f32; TABLE_MAX_DIM];
        x_f32[..x.len()].copy_from_slice(T::as_f32(x)?);
        let mut cols = [std::ptr::null(); TABLE_MAX_DIM];
        for (c, col) in cols.iter_mut().zip(columns) {
            *c = T::as_f32(col).filter(|col| col.len() == n)?.as_ptr();
        }
        let (avx2_row, avx512_row) = (
            avx2::Row { x: x_f32, lo, hi },
            avx512::Row { x: x_f32, lo, hi },
        );
        // SAFETY (both matches): the CPU runs `reading` (`available`: AVX2 and FMA, plus
        // AVX-512 F + VL for Avx512), the table has `last + 1` cells, the first
        // `columns.len()` columns hold `n` f32, hi <= n, and n + 16 fits in i32 (checked above).
        let (nearest, farthest) = unsafe {
            match (reading, columns.len()) {
                (Reading::Avx2, 1) => avx2_row.nearest_and_farthest::<1>(cols, n),
                (Reading::Avx2, 2) => avx2_row.nearest_and_farthest::<2>(cols, n),
                (Reading::Avx2, 3) => avx2_row.nearest_and_farthest::<3>(cols, n),
                (Reading::Avx512, 1) => avx512_row.nearest_and_farthest::<1>(cols, n),
                (Reading::Avx512, 2) => avx512_row.nearest_and_farthest::<2>(cols, n),
                (Reading::Avx512, 3) => avx512_row.nearest_and_farthest::<3>(cols, n),
                _ => return None,
            }
        };
        if nearest == f32::INFINITY {
            return Some((0.0, 0.0, [0.0; TABLE_MAX_DIM]));
        }
        let d_min = f64::from(nearest);
        let lookup = table.lookup(d_min, table.top(d_min))?;
        let window = if reading == Reading::Avx2 {
            avx2::WINDOW
        } else {
            WINDOW
        };
        let windowed =
            one_pass == OnePass::Windowed && lookup.window_holds(nearest, farthest, window);
        #[cfg(test)]
        if windowed {
            WINDOWED_ROWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (near, at) = (nearest, &lookup);
        unsafe {
            match (reading, columns.len()) {
                (Reading::Avx2, 1) => Some(avx2::weigh_and_sum::<1>(
                    &avx2_row, cols, n, near, at, windowed,
                )),
                (Reading::Avx2, 2) => Some(avx2::weigh_and_sum::<2>(
                    &avx2_row, cols, n, near, at, windowed,
                )),
                (Reading::Avx2, 3) => Some(avx2::weigh_and_sum::<3>(
                    &avx2_row, cols, n, near, at, windowed,
                )),
                (Reading::Avx512, 1) => Some(avx512::weigh_and_sum::<1>(
                    &avx512_row,
                    cols,
                    n,
                    near,
                    at,
                    windowed,
                )),
                (Reading::Avx512, 2) => Some(avx512::weigh_and_sum::<2>(
                    &avx512_row,
                    cols,
                    n,
                    near,
                    at,
                    windowed,
                )),
                (Reading::Avx512, 3) => Some(avx512::weigh_and_sum::<3>(
                    &avx512_row,
                    cols,
                    n,
                    near,
                    at,
                    windowed,
                )),
                _ => None,
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, columns, counted, table, one_pass, reading);
        None
    }
}

/// The table read with AVX2 + FMA intrinsics, eight points at a time: a point's 32-byte record
/// comes as two 16-byte loads (no gathers: they are slow on AMD Zen and on Intel alike), the
/// records are transposed in registers (in-lane shuffles only), and the cubics, the exp and the
/// selects run 8 wide. The same arithmetic as `Lookup::lanes` (FMA in the cubics and the exp's
/// reduction), the normaliser summed in two 8-lane f32 accumulators, then in f64.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::*;

    use super::Lookup;

    /// Cells a row's window holds (one register per coefficient, read by one permute): a row
    /// whose points all fall in the WINDOW cells from its nearest one's skips the records'
    /// loads and transposes.
    pub(super) const WINDOW: u32 = 8;
    /// Points whose cells are found before their coefficients are read (a multiple of 16).
    const CHUNK: usize = 256;

    /// e^x in N registers of 8 lanes: `Real::exp`'s f32 polynomial (Cody-Waite, degree 7), 0
    /// below -80; the registers stage by stage: N independent chains in flight, where one
    /// register's (the polynomial's nine dependent FMAs among them) would leave the core waiting.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp8s<const N: usize>(x: [__m256; N]) -> [__m256; N] {
        let magic = _mm256_set1_ps(12_582_912.0);
        let mut shifted = x;
        let mut r = x;
        let mut p = x;
        for i in 0..N {
            let c = _mm256_min_ps(
                _mm256_max_ps(x[i], _mm256_set1_ps(-87.0)),
                _mm256_set1_ps(88.0),
            );
            shifted[i] = _mm256_add_ps(
                _mm256_mul_ps(c, _mm256_set1_ps(std::f32::consts::LOG2_E)),
                magic,
            );
            let n = _mm256_sub_ps(shifted[i], magic);
            r[i] = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), c);
            r[i] = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r[i]);
            p[i] = _mm256_set1_ps(super::EXP_HORNER[0]);
        }
        for &coefficient in &super::EXP_HORNER[1..] {
            for i in 0..N {
                p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(coefficient));
            }
        }
        for i in 0..N {
            let n_int = _mm256_sub_epi32(
                _mm256_castps_si256(shifted[i]),
                _mm256_set1_epi32(0x4B40_0000),
            );
            let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                n_int,
                _mm256_set1_epi32(127),
            )));
            let below = _mm256_cmp_ps::<_CMP_LT_OQ>(x[i], _mm256_set1_ps(-80.0));
            p[i] = _mm256_andnot_ps(below, _mm256_mul_ps(p[i], scale));
        }
        p
    }

    /// Four registers' 4x4 blocks transposed within each 128-bit lane.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn transpose(a: [__m256; 4]) -> [__m256; 4] {
        let t0 = _mm256_unpacklo_ps(a[0], a[1]);
        let t1 = _mm256_unpacklo_ps(a[2], a[3]);
        let t2 = _mm256_unpackhi_ps(a[0], a[1]);
        let t3 = _mm256_unpackhi_ps(a[2], a[3]);
        [
            _mm256_shuffle_ps::<0x44>(t0, t1),
            _mm256_shuffle_ps::<0xEE>(t0, t1),
            _mm256_shuffle_ps::<0x44>(t2, t3),
            _mm256_shuffle_ps::<0xEE>(t2, t3),
        ]
    }

    /// The table's constants in registers.
    struct Consts {
        base: __m256,
        top: __m256,
        shift: __m128i,
        first: __m256i,
        last: __m256i,
        last_start: __m256,
        /// The levels' slope (None: 0, nothing to undo) and the row's reference cell.
        slope: Option<__m256>,
        ref_cell: __m256i,
        /// The records, `last + 1` of eight f32 each.
        records: *const f32,
    }

    impl Consts {
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn new(lookup: &Lookup) -> Consts {
            Consts {
                base: _mm256_set1_ps(lookup.base),
                top: _mm256_set1_ps(lookup.top),
                shift: _mm_cvtsi32_si128(lookup.shift as i32),
                first: _mm256_set1_epi32(lookup.first as i32),
                last: _mm256_set1_epi32(lookup.last as i32),
                last_start: _mm256_set1_ps(lookup.last_start),
                slope: (lookup.slope != 0.0).then(|| _mm256_set1_ps(lookup.slope)),
                ref_cell: _mm256_set1_epi32(lookup.ref_cell as i32),
                records: lookup.cells.as_ptr().cast(),
            }
        }
    }

    /// The cells of the eight points at gaps `g`, and each point's offset s within its cell
    /// (+inf where the gap is +inf: outside the span).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn locate(k: &Consts, g: __m256) -> (__m256i, __m256) {
        let v = _mm256_add_ps(_mm256_max_ps(g, _mm256_setzero_ps()), k.base);
        let high = _mm256_srl_epi32(_mm256_castps_si256(v), k.shift);
        let cell = _mm256_min_epu32(
            _mm256_sub_epi32(_mm256_max_epu32(high, k.first), k.first),
            k.last,
        );
        let start = _mm256_min_ps(
            _mm256_castsi256_ps(_mm256_sll_epi32(high, k.shift)),
            k.last_start,
        );
        (cell, _mm256_sub_ps(v, start))
    }

    /// The ln Z and R cubics' coefficients of eight points, from their cells' records: two
    /// 16-byte loads per record and an in-register transpose.
    ///
    /// # Safety
    /// `offsets` holds at least eight record offsets in f32 (`record_offsets`: 8 x a cell index
    /// at most `last`) of `k.records`' records.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn records(k: &Consts, offsets: &[u32]) -> ([__m256; 4], [__m256; 4]) {
        // SAFETY: every offset is of a record (as the caller promises).
        let record = |l: usize| unsafe { k.records.add(offsets[l] as usize) };
        let mut z = [_mm256_setzero_ps(); 4];
        let mut r = [_mm256_setzero_ps(); 4];
        for l in 0..4 {
            let (lo, hi) = (record(l), record(l + 4));
            // SAFETY: a record is eight f32: [ln Z cubic, R cubic].
            unsafe {
                z[l] = _mm256_loadu2_m128(hi, lo);
                r[l] = _mm256_loadu2_m128(hi.add(4), lo.add(4));
            }
        }
        (transpose(z), transpose(r))
    }

    /// Cells -> their records' offsets in f32 (a record is eight), so that a point's address
    /// is one scaled add.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn record_offsets(cell: __m256i) -> __m256i {
        _mm256_slli_epi32::<3>(cell)
    }

    /// The coefficients of eight points whose cells lie `index` cells past the row's, picked
    /// from `window` (the planes' WINDOW cells from the row's) by one permute each: the bits
    /// `records` reads.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn picks(window: &[__m256; 8], index: __m256i) -> ([__m256; 4], [__m256; 4]) {
        let pick = |q: usize| _mm256_permutevar8x32_ps(window[q], index);
        (
            [pick(0), pick(1), pick(2), pick(3)],
            [pick(4), pick(5), pick(6), pick(7)],
        )
    }

    /// (w, z) of N registers of points at offsets `s` in their cells, `steps` cells past the
    /// row's, from their cubics' coefficients: the N registers stage by stage, so that their
    /// chains (cubic, exp) overlap.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn weights<const N: usize>(
        k: &Consts,
        s: [__m256; N],
        steps: [__m256i; N],
        coefficients: [([__m256; 4], [__m256; 4]); N],
    ) -> [(__m256, __m256); N] {
        let cubic = |s: __m256, c: &[__m256; 4]| {
            _mm256_fmadd_ps(
                s,
                _mm256_fmadd_ps(s, _mm256_fmadd_ps(s, c[3], c[2]), c[1]),
                c[0],
            )
        };
        let mut level = s;
        let mut ratio = s;
        for i in 0..N {
            level[i] = cubic(s[i], &coefficients[i].0);
            ratio[i] = cubic(s[i], &coefficients[i].1);
            if let Some(slope) = k.slope {
                // The stored level's slope undone from the row's own cell (`Lookup::lanes`).
                level[i] = _mm256_fnmadd_ps(slope, _mm256_cvtepi32_ps(steps[i]), level[i]);
            }
            level[i] = _mm256_sub_ps(level[i], k.top);
        }
        let e_z = exp8s(level);
        let mut out = [(_mm256_setzero_ps(), _mm256_setzero_ps()); N];
        for i in 0..N {
            // +inf offsets (outside the span) weigh nothing.
            let inside = _mm256_cmp_ps::<_CMP_LE_OQ>(s[i], _mm256_set1_ps(f32::MAX));
            let e_w = _mm256_mul_ps(e_z[i], ratio[i]);
            // A select, not a product: outside, the cubics are NaN (inf x 0).
            out[i] = (_mm256_and_ps(inside, e_w), _mm256_and_ps(inside, e_z[i]));
        }
        out
    }

    /// (w, z) of the eight points at gaps `g`.
    ///
    /// # Safety
    /// `k.records` holds `last + 1` records (the cell index is clamped to `last`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn eight(k: &Consts, g: __m256) -> (__m256, __m256) {
        let (cell, s) = locate(k, g);
        let mut offsets = [0u32; 8];
        // SAFETY: `offsets` holds 32 bytes.
        unsafe { _mm256_storeu_si256(offsets.as_mut_ptr().cast(), record_offsets(cell)) };
        // SAFETY: every index is at most `last` (clamped in `locate`).
        let coefficients = unsafe { records(k, &offsets) };
        let steps = _mm256_sub_epi32(cell, k.ref_cell);
        weights(k, [s], [steps], [coefficients])[0]
    }

    /// (w, z) of the two registers of points at gaps `g`, their chains side by side.
    ///
    /// # Safety
    /// As `eight`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sixteen(k: &Consts, g: [__m256; 2]) -> [(__m256, __m256); 2] {
        let mut offsets = [0u32; 16];
        let mut s = [_mm256_setzero_ps(); 2];
        let mut steps = [_mm256_setzero_si256(); 2];
        for h in 0..2 {
            let (cell, offset) = locate(k, g[h]);
            // SAFETY: `offsets` holds 64 bytes.
            unsafe {
                _mm256_storeu_si256(offsets.as_mut_ptr().add(8 * h).cast(), record_offsets(cell))
            };
            s[h] = offset;
            steps[h] = _mm256_sub_epi32(cell, k.ref_cell);
        }
        // SAFETY: every index is at most `last` (clamped in `locate`).
        let coefficients = unsafe { [records(k, &offsets[..8]), records(k, &offsets[8..])] };
        weights(k, s, steps, coefficients)
    }

    /// Gaps -> the marginal's weights in place through `lookup`; returns the sum of z.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA, and `lookup.cells` holds `lookup.last + 1` records.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weigh(gaps: &mut [f32], lookup: &Lookup) -> f64 {
        let k = Consts::new(lookup);
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut pairs = gaps.chunks_exact_mut(16);
        for ch in &mut pairs {
            // SAFETY: `ch` holds 16 f32; the records as `weigh` requires.
            unsafe {
                let [(w0, z0), (w1, z1)] = sixteen(
                    &k,
                    [
                        _mm256_loadu_ps(ch.as_ptr()),
                        _mm256_loadu_ps(ch.as_ptr().add(8)),
                    ],
                );
                _mm256_storeu_ps(ch.as_mut_ptr(), w0);
                _mm256_storeu_ps(ch.as_mut_ptr().add(8), w1);
                acc0 = _mm256_add_ps(acc0, z0);
                acc1 = _mm256_add_ps(acc1, z1);
            }
        }
        let mut total = 0.0;
        for rest in pairs.into_remainder().chunks_mut(8) {
            let mut buf = [f32::INFINITY; 8];
            buf[..rest.len()].copy_from_slice(rest);
            let mut z = [0.0f32; 8];
            // SAFETY: `buf` and `z` hold 8 f32; the records as `weigh` requires.
            unsafe {
                let (w, zs) = eight(&k, _mm256_loadu_ps(buf.as_ptr()));
                _mm256_storeu_ps(buf.as_mut_ptr(), w);
                _mm256_storeu_ps(z.as_mut_ptr(), zs);
            }
            rest.copy_from_slice(&buf[..rest.len()]);
            total += z.iter().map(|&v| f64::from(v)).sum::<f64>();
        }
        let mut lanes = [0.0f32; 16];
        // SAFETY: `lanes` holds 16 f32.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc0);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), acc1);
        }
        total + lanes.iter().map(|&v| f64::from(v)).sum::<f64>()
    }

    /// The query point of a one-pass sum, and the points `lo..hi` of the columns that count;
    /// the others read as +inf, as the lanes outside a span do in `distances::span_distances`.
    pub(super) struct Row {
        pub x: [f32; super::TABLE_MAX_DIM],
        pub lo: usize,
        pub hi: usize,
    }

    /// Lane indices 0..8, to compare with counts and bounds.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn lane_indices() -> __m256i {
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
    }

    /// The eight f32 from `p + j`, lanes at or past `n` read as 0 and never touched (a plain
    /// load where all eight lie below `n`).
    ///
    /// # Safety
    /// `p` is valid for `n` f32, and `n + 8` fits in i32.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load_below(p: *const f32, j: usize, n: usize) -> __m256 {
        // SAFETY: as the caller promises; a masked-off lane is not read.
        unsafe {
            if j + 8 <= n {
                _mm256_loadu_ps(p.add(j))
            } else {
                let left = _mm256_set1_epi32(n.saturating_sub(j) as i32);
                let mask = _mm256_cmpgt_epi32(left, lane_indices());
                _mm256_maskload_ps(p.wrapping_add(j), mask)
            }
        }
    }

    impl Row {
        /// The squared distances to points `j..j + 8` from the first DIM columns (lanes outside
        /// `lo..hi` +inf), summed as `distances::span_distances` sums them (t = x_k - y_k, then
        /// t t fused into a sum from 0): the same f32 bits.
        ///
        /// # Safety
        /// `columns[..DIM]` are each valid for `n` f32, `hi <= n`, and `n + 8` fits in i32.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn distances<const DIM: usize>(
            &self,
            columns: [*const f32; super::TABLE_MAX_DIM],
            j: usize,
            n: usize,
        ) -> __m256 {
            let mut d = _mm256_setzero_ps();
            for c in 0..DIM {
                // SAFETY: as the caller promises.
                let y = unsafe { load_below(columns[c], j, n) };
                let t = _mm256_sub_ps(_mm256_set1_ps(self.x[c]), y);
                d = _mm256_fmadd_ps(t, t, d);
            }
            if j >= self.lo && j + 8 <= self.hi {
                // A block inside the span (all but its ends): every lane counts.
                return d;
            }
            let lane = _mm256_add_epi32(_mm256_set1_epi32(j as i32), lane_indices());
            let below_lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(self.lo as i32), lane);
            let below_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(self.hi as i32), lane);
            let counted = _mm256_castsi256_ps(_mm256_andnot_si256(below_lo, below_hi));
            _mm256_blendv_ps(_mm256_set1_ps(f32::INFINITY), d, counted)
        }

        /// The smallest and the largest finite squared distance to points `lo..hi` (+inf and
        /// -inf if there are none), over the same distances as `weigh_and_sum` forms.
        ///
        /// # Safety
        /// As `distances`.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn nearest_and_farthest<const DIM: usize>(
            &self,
            columns: [*const f32; super::TABLE_MAX_DIM],
            n: usize,
        ) -> (f32, f32) {
            // Two minima in flight: the min's latency, not its throughput, would bound one.
            let mut m = [_mm256_set1_ps(f32::INFINITY); 2];
            let mut far = [_mm256_set1_ps(f32::NEG_INFINITY); 2];
            let mut j = self.lo / 16 * 16;
            while j < self.hi {
                for b in 0..2 {
                    // SAFETY: as the caller promises.
                    let d = unsafe { self.distances::<DIM>(columns, j + 8 * b, n) };
                    m[b] = _mm256_min_ps(m[b], d);
                    // Uncounted lanes read +inf: left out, as the passes weigh them 0.
                    let finite = _mm256_cmp_ps::<_CMP_LE_OQ>(d, _mm256_set1_ps(f32::MAX));
                    far[b] = _mm256_blendv_ps(far[b], _mm256_max_ps(far[b], d), finite);
                }
                j += 16;
            }
            let (mut low, mut high) = ([0.0f32; 8], [0.0f32; 8]);
            // SAFETY: `low` and `high` hold 8 f32 each.
            unsafe {
                _mm256_storeu_ps(low.as_mut_ptr(), _mm256_min_ps(m[0], m[1]));
                _mm256_storeu_ps(high.as_mut_ptr(), _mm256_max_ps(far[0], far[1]));
            }
            (
                low.iter().copied().fold(f32::INFINITY, f32::min),
                high.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            )
        }
    }

    /// Two registers' lanes, 16 in all, summed in f64 in lane order (as `sum_of` and
    /// `dot_lanes` finish their LANES partial sums).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn lanes_in_f64(halves: [__m256; 2]) -> f64 {
        let mut lanes = [0.0f32; 16];
        // SAFETY: `lanes` holds 16 f32.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), halves[0]);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), halves[1]);
        }
        let mut total = 0.0;
        for v in lanes {
            total += f64::from(v);
        }
        total
    }

    /// `row`'s squared distances to the `n` points of the columns -> (sum of z, sum of w, sum
    /// of w times each of the first DIM columns): one pass over the points, their cells and
    /// offsets staged CHUNK at a time on the stack (`pass`), no buffer of weights. Each sum in
    /// two 8-lane f32 accumulators, the halves of
    /// a 16-point block (`sum_of`'s and `dot_lanes`' LANES), then f64: the separate passes'
    /// bits where `n` is a multiple of 16. Where `windowed`, the coefficients come from the
    /// WINDOW cells from the row's in registers (`picks`), with the same bits. DIM is
    /// a constant so that the accumulators stay in registers.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA, `lookup.cells` holds `lookup.last + 1` records,
    /// `columns[..DIM]` each hold `n` f32, `row.hi <= n`, `n + 16` fits in i32, and where
    /// `windowed`, every point's cell lies among the WINDOW from the row's
    /// (`Lookup::window_holds`, which also checks the planes).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weigh_and_sum<const DIM: usize>(
        row: &Row,
        columns: [*const f32; super::TABLE_MAX_DIM],
        n: usize,
        d_min: f32,
        lookup: &Lookup,
        windowed: bool,
    ) -> (f64, f64, [f64; super::TABLE_MAX_DIM]) {
        // SAFETY: as the caller promises.
        let acc = unsafe {
            if windowed {
                pass::<DIM, true>(row, columns, n, d_min, lookup)
            } else {
                pass::<DIM, false>(row, columns, n, d_min, lookup)
            }
        };
        (
            lanes_in_f64(acc[0]),
            lanes_in_f64(acc[1]),
            [
                lanes_in_f64(acc[2]),
                lanes_in_f64(acc[3]),
                lanes_in_f64(acc[4]),
            ],
        )
    }

    /// `weigh_and_sum`'s pass, its 8-lane sums left in registers; WINDOWED a constant so that
    /// the loop holds one reading. In two stages per CHUNK points, as `avx512::pass`: the
    /// cells and offsets first (short chains), then the coefficients, cubics and exp of a
    /// 16-point block's two halves together, whose long chains (~90 cycles from a point's cell
    /// to its weight) left one half at a time waiting on them.
    ///
    /// # Safety
    /// As `weigh_and_sum`, with `windowed` WINDOWED.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pass<const DIM: usize, const WINDOWED: bool>(
        row: &Row,
        columns: [*const f32; super::TABLE_MAX_DIM],
        n: usize,
        d_min: f32,
        lookup: &Lookup,
    ) -> [[__m256; 2]; 2 + super::TABLE_MAX_DIM] {
        let k = Consts::new(lookup);
        let nearest = _mm256_set1_ps(d_min);
        let mut window = [_mm256_setzero_ps(); 8];
        if WINDOWED {
            let at = lookup
                .planes
                .as_ptr()
                .wrapping_add(lookup.ref_cell as usize);
            for (q, cells) in window.iter_mut().enumerate() {
                // SAFETY: ref_cell + WINDOW <= cells.len() + WINDOW <= PLANE (`has_planes`):
                // within plane q.
                *cells = unsafe { _mm256_loadu_ps(at.add(q * super::PLANE)) };
            }
        }
        let mut acc = [[_mm256_setzero_ps(); 2]; 2 + super::TABLE_MAX_DIM];
        let mut cells = [0u32; CHUNK];
        let mut within = [0.0f32; CHUNK];
        // Blocks wholly outside lo..hi weigh nothing: +0 added to every sum, so skipped.
        let mut j0 = row.lo / 16 * 16;
        while j0 < row.hi {
            let len = CHUNK.min((row.hi - j0).next_multiple_of(16));
            for at in (0..len).step_by(8) {
                // SAFETY: the columns as required.
                let d = unsafe { row.distances::<DIM>(columns, j0 + at, n) };
                let (cell, s) = locate(&k, _mm256_sub_ps(d, nearest));
                // Windowed: the cells past the row's, which pick from the window; else the
                // records' offsets.
                let cell = if WINDOWED {
                    _mm256_sub_epi32(cell, k.ref_cell)
                } else {
                    record_offsets(cell)
                };
                // SAFETY: at + 8 <= len <= CHUNK.
                unsafe {
                    _mm256_storeu_si256(cells.as_mut_ptr().add(at).cast(), cell);
                    _mm256_storeu_ps(within.as_mut_ptr().add(at), s);
                }
            }
            for at in (0..len).step_by(16) {
                // SAFETY: at + 16 <= len <= CHUNK; the columns as required.
                unsafe {
                    weigh_blocks::<DIM, WINDOWED, 2>(
                        &k, &window, &cells, &within, at, j0, columns, n, &mut acc,
                    )
                };
            }
            j0 += len;
        }
        acc
    }

    /// The weights of R registers of points `at..at + 8 R` of a chunk (R / 2 16-point blocks,
    /// in `cells` their cells past the row's (WINDOWED) or their records' offsets, in `within`
    /// their offsets in the cells), stage by stage, added to `acc` block by block, half by
    /// half: the sums `pass` would form one block at a time.
    ///
    /// # Safety
    /// at + 8 R <= CHUNK; `cells` as `pass` stores them (clamped in `locate`); the columns as
    /// `weigh_and_sum` requires, j0 + at their point index.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn weigh_blocks<const DIM: usize, const WINDOWED: bool, const R: usize>(
        k: &Consts,
        window: &[__m256; 8],
        cells: &[u32; CHUNK],
        within: &[f32; CHUNK],
        at: usize,
        j0: usize,
        columns: [*const f32; super::TABLE_MAX_DIM],
        n: usize,
        acc: &mut [[__m256; 2]; 2 + super::TABLE_MAX_DIM],
    ) {
        let mut s = [_mm256_setzero_ps(); R];
        let mut steps = [_mm256_setzero_si256(); R];
        let mut coefficients = [([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]); R];
        for r in 0..R {
            let here = at + 8 * r;
            // SAFETY: here + 8 <= CHUNK (as the caller promises).
            let stored = unsafe {
                s[r] = _mm256_loadu_ps(within.as_ptr().add(here));
                _mm256_loadu_si256(cells.as_ptr().add(here).cast())
            };
            if WINDOWED {
                steps[r] = stored;
                coefficients[r] = picks(window, stored);
            } else {
                if k.slope.is_some() {
                    // Only a sloped table reads the cells past the row's.
                    steps[r] = _mm256_sub_epi32(_mm256_srli_epi32::<3>(stored), k.ref_cell);
                }
                // SAFETY: the offsets are of records (as the caller promises).
                coefficients[r] = unsafe { records(k, &cells[here..here + 8]) };
            }
        }
        let weighed = weights(k, s, steps, coefficients);
        for (r, &(w, z)) in weighed.iter().enumerate() {
            let (here, half) = (j0 + at + 8 * r, r % 2);
            acc[0][half] = _mm256_add_ps(acc[0][half], z);
            acc[1][half] = _mm256_add_ps(acc[1][half], w);
            for c in 0..DIM {
                // SAFETY: the columns as the caller promises.
                let y = unsafe { load_below(columns[c], here, n) };
                acc[2 + c][half] = _mm256_fmadd_ps(w, y, acc[2 + c][half]);
            }
        }
    }
}

/// The table read with AVX-512 (F + VL) intrinsics, sixteen points to a register: `avx2`'s
/// reading twice as wide. Each zmm of records comes from four 16-byte loads and is transposed
/// in-lane as in `avx2`; the selects are masks. BLOCKS registers go through each stage together:
/// a block's chain (cell, records, cubic, exp) is ~40 dependent instructions, and one block at a
/// time left the loop waiting on it. The same arithmetic and summation lanes as `avx2` (its two
/// 8-lane accumulators are one 16-lane one here), so the weights are bit for bit `avx2`'s.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use core::arch::x86_64::*;

    use super::Lookup;

    /// Registers of 16 points in flight per loop step.
    const BLOCKS: usize = 1;
    /// Points per loop step.
    const STEP: usize = 16 * BLOCKS;
    /// Points whose cells are found before their records are read (a multiple of STEP).
    const CHUNK: usize = 512;

    /// e^x in 16 lanes per register: `avx2::exp8s`'s polynomial and rounding, 0 below -80.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    fn exp16<const N: usize>(x: [__m512; N]) -> [__m512; N] {
        let magic = _mm512_set1_ps(12_582_912.0);
        let mut c = x;
        let mut n = x;
        let mut r = x;
        let mut p = x;
        for i in 0..N {
            c[i] = _mm512_min_ps(
                _mm512_max_ps(x[i], _mm512_set1_ps(-87.0)),
                _mm512_set1_ps(88.0),
            );
            let shifted = _mm512_add_ps(
                _mm512_mul_ps(c[i], _mm512_set1_ps(std::f32::consts::LOG2_E)),
                magic,
            );
            n[i] = _mm512_sub_ps(shifted, magic);
            r[i] = _mm512_fnmadd_ps(n[i], _mm512_set1_ps(0.693_145_75), c[i]);
            r[i] = _mm512_fnmadd_ps(n[i], _mm512_set1_ps(1.428_606_8e-6), r[i]);
            p[i] = _mm512_set1_ps(super::EXP_HORNER[0]);
        }
        for &coefficient in &super::EXP_HORNER[1..] {
            for i in 0..N {
                p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(coefficient));
            }
        }
        for i in 0..N {
            // Not below -80; a NaN lane passes (as avx2's and-not lets it), clamped to -87 above.
            let kept = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x[i], _mm512_set1_ps(-80.0));
            // p 2^n in one instruction: exact, as avx2's product with the built power of two is.
            p[i] = _mm512_maskz_scalef_ps(kept, p[i], n[i]);
        }
        p
    }

    /// Four registers' 4x4 blocks transposed within each 128-bit lane.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    fn transpose(a: [__m512; 4]) -> [__m512; 4] {
        let t0 = _mm512_unpacklo_ps(a[0], a[1]);
        let t1 = _mm512_unpacklo_ps(a[2], a[3]);
        let t2 = _mm512_unpackhi_ps(a[0], a[1]);
        let t3 = _mm512_unpackhi_ps(a[2], a[3]);
        [
            _mm512_shuffle_ps::<0x44>(t0, t1),
            _mm512_shuffle_ps::<0xEE>(t0, t1),
            _mm512_shuffle_ps::<0x44>(t2, t3),
            _mm512_shuffle_ps::<0xEE>(t2, t3),
        ]
    }

    /// The table's constants in registers.
    struct Consts {
        base: __m512,
        top: __m512,
        shift: __m128i,
        first: __m512i,
        last: __m512i,
        last_start: __m512,
        /// The levels' slope (0 where the table has none) and the row's reference cell.
        slope: __m512,
        ref_cell: __m512i,
        /// The records, `last + 1` of eight f32 each.
        records: *const f32,
    }

    impl Consts {
        #[inline]
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        fn new(lookup: &Lookup) -> Consts {
            Consts {
                base: _mm512_set1_ps(lookup.base),
                top: _mm512_set1_ps(lookup.top),
                shift: _mm_cvtsi32_si128(lookup.shift as i32),
                first: _mm512_set1_epi32(lookup.first as i32),
                last: _mm512_set1_epi32(lookup.last as i32),
                last_start: _mm512_set1_ps(lookup.last_start),
                slope: _mm512_set1_ps(lookup.slope),
                ref_cell: _mm512_set1_epi32(lookup.ref_cell as i32),
                records: lookup.cells.as_ptr().cast(),
            }
        }
    }

    /// The cubics' coefficients of sixteen points whose records lie `offset` bytes into the
    /// table (each at most `last` records in), as registers of one coefficient each: ln Z's,
    /// then R's.
    ///
    /// # Safety
    /// `k.records` holds `last + 1` records.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn coefficients(k: &Consts, offset: &[u32]) -> ([__m512; 4], [__m512; 4]) {
        let base = k.records.cast::<u8>();
        let mut z = [_mm512_setzero_ps(); 4];
        let mut r = [_mm512_setzero_ps(); 4];
        for l in 0..4 {
            // Register l, lane j: point 4j + l, so that the transpose leaves point e in lane e.
            // SAFETY: every offset is that of a record within the table.
            let p: [*const f32; 4] = unsafe {
                [
                    base.add(offset[l] as usize).cast(),
                    base.add(offset[l + 4] as usize).cast(),
                    base.add(offset[l + 8] as usize).cast(),
                    base.add(offset[l + 12] as usize).cast(),
                ]
            };
            // Whole records two to a register ([z, r] of p[0], then of p[1]), their quarters
            // sorted by one shuffle each: 4 loads, 2 inserts and 2 shuffles for the two
            // registers, where four 16-byte quarters each took 2 loads and 6 inserts.
            // SAFETY: a record is eight f32: [ln Z cubic, R cubic].
            let (front, back) = unsafe { (records(p[0], p[1]), records(p[2], p[3])) };
            z[l] = _mm512_shuffle_f32x4::<0b10_00_10_00>(front, back);
            r[l] = _mm512_shuffle_f32x4::<0b11_01_11_01>(front, back);
        }
        (transpose(z), transpose(r))
    }

    /// The 32-byte records at `a` and `b` in one register, `a`'s lowest.
    ///
    /// # Safety
    /// Each pointer is valid for eight f32.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn records(a: *const f32, b: *const f32) -> __m512 {
        // SAFETY: as the caller promises.
        unsafe {
            let low = _mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(a)));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                low,
                _mm256_castps_pd(_mm256_loadu_ps(b)),
            ))
        }
    }

    /// The `kept` lanes of 16 f32 at `p`, the others 0: a plain load where all are kept (a
    /// masked one costs a shuffle-port uop besides the load).
    ///
    /// # Safety
    /// The kept lanes at `p` are valid.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn load_kept(kept: __mmask16, p: *const f32) -> __m512 {
        // SAFETY: as the caller promises.
        unsafe {
            if kept == 0xffff {
                _mm512_loadu_ps(p)
            } else {
                _mm512_maskz_loadu_ps(kept, p)
            }
        }
    }

    /// The lanes of a 16-point register that `left` points still fill (none at 0, all from 16).
    #[inline(always)]
    fn lanes_left(left: usize) -> __mmask16 {
        if left >= 16 { 0xffff } else { (1 << left) - 1 }
    }

    /// One pass over `n` points, CHUNK at a time in two stages. First each point's gap (its
    /// squared distance - `d_min`), its cell's byte offset and its offset s in the cell, stored
    /// to `offsets` and `within`; then BLOCKS registers of sixteen at a time: the records (their
    /// offsets read back as scalars: LLVM's lane extractions of a register of indices cost ~35
    /// shuffle-port uops per 16 points), the cubics, the exp and the selects. STORE: the
    /// distances are read from `input` and the weights stored over them (the z summed);
    /// otherwise the distances to `row` are formed from the columns in registers and nothing
    /// is stored (the sums of z, of w and of w times each of the first DIM columns, 16 f32
    /// lanes each).
    ///
    /// # Safety
    /// Where STORE, `input` is valid for reading and writing `n` f32; otherwise
    /// `columns[..DIM]` are each valid for `n` f32; `k.records` holds `last + 1` records.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn pass<const DIM: usize, const STORE: bool, const SLOPED: bool>(
        k: &Consts,
        input: *mut f32,
        n: usize,
        d_min: f32,
        columns: [*const f32; super::TABLE_MAX_DIM],
        row: &Row,
    ) -> [__m512; 2 + super::TABLE_MAX_DIM] {
        let nearest = _mm512_set1_ps(d_min);
        let mut acc = [_mm512_setzero_ps(); 2 + super::TABLE_MAX_DIM];
        let mut offsets = [0u32; CHUNK];
        let mut within = [0.0f32; CHUNK];
        // SLOPED: each point's cells past the row's reference cell, as f32.
        let mut steps = [0.0f32; CHUNK];
        let mut j0 = 0;
        while j0 < n {
            let len = CHUNK.min(n - j0);
            let mut at = 0;
            while at < len {
                // Lanes past the end read as +inf: they weigh nothing and add 0 to every sum.
                let kept = lanes_left(len - at);
                let d = if STORE {
                    // SAFETY: the kept lanes lie within the `n` values.
                    unsafe {
                        if kept == 0xffff {
                            _mm512_loadu_ps(input.add(j0 + at))
                        } else {
                            _mm512_mask_loadu_ps(
                                _mm512_set1_ps(f32::INFINITY),
                                kept,
                                input.add(j0 + at),
                            )
                        }
                    }
                } else {
                    // SAFETY: the kept lanes lie within the columns' `n` values.
                    unsafe { row.distances::<DIM>(columns, j0 + at, kept) }
                };
                let g = _mm512_sub_ps(d, nearest);
                // The one pass's distances are never below their own minimum: g >= +0 as is.
                let g = if STORE {
                    _mm512_max_ps(g, _mm512_setzero_ps())
                } else {
                    g
                };
                let v = _mm512_add_ps(g, k.base);
                let high = _mm512_srl_epi32(_mm512_castps_si512(v), k.shift);
                // v >= base >= the table's offset, so high >= first (`lanes` clamps it anyway).
                let cell = _mm512_min_epu32(_mm512_sub_epi32(high, k.first), k.last);
                let start = _mm512_min_ps(
                    _mm512_castsi512_ps(_mm512_sll_epi32(high, k.shift)),
                    k.last_start,
                );
                // SAFETY: `at` + 16 <= CHUNK (CHUNK is a multiple of 16).
                unsafe {
                    // A record is 32 bytes.
                    _mm512_storeu_si512(
                        offsets.as_mut_ptr().add(at).cast(),
                        _mm512_slli_epi32::<5>(cell),
                    );
                    // +inf (outside the span) stays +inf: v - last_start.
                    _mm512_storeu_ps(within.as_mut_ptr().add(at), _mm512_sub_ps(v, start));
                    if SLOPED {
                        _mm512_storeu_ps(
                            steps.as_mut_ptr().add(at),
                            _mm512_cvtepi32_ps(_mm512_sub_epi32(cell, k.ref_cell)),
                        );
                    }
                }
                at += 16;
            }
            let mut at = 0;
            while at < len {
                let mut s = [_mm512_setzero_ps(); BLOCKS];
                let mut inside = [0 as __mmask16; BLOCKS];
                let mut kept = [0 as __mmask16; BLOCKS];
                let mut cubic_z = s;
                let mut cubic_r = s;
                for b in 0..BLOCKS {
                    let here = at + 16 * b;
                    kept[b] = lanes_left(len.saturating_sub(here));
                    // SAFETY: here + 16 <= CHUNK (BLOCKS registers divide CHUNK).
                    s[b] = unsafe { _mm512_loadu_ps(within.as_ptr().add(here)) };
                    // +inf gaps (outside the span, past the end) weigh nothing.
                    inside[b] = _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(
                        kept[b],
                        s[b],
                        _mm512_set1_ps(f32::MAX),
                    );
                    // SAFETY: the offsets (past the end: of earlier points) are of records.
                    let (z, r) = unsafe { coefficients(k, &offsets[here..here + 16]) };
                    cubic_z[b] = _mm512_fmadd_ps(
                        s[b],
                        _mm512_fmadd_ps(s[b], _mm512_fmadd_ps(s[b], z[3], z[2]), z[1]),
                        z[0],
                    );
                    cubic_r[b] = _mm512_fmadd_ps(
                        s[b],
                        _mm512_fmadd_ps(s[b], _mm512_fmadd_ps(s[b], r[3], r[2]), r[1]),
                        r[0],
                    );
                    if SLOPED {
                        // The stored level's slope undone (`Lookup::lanes`).
                        // SAFETY: here + 16 <= CHUNK.
                        let steps = unsafe { _mm512_loadu_ps(steps.as_ptr().add(here)) };
                        cubic_z[b] = _mm512_fnmadd_ps(k.slope, steps, cubic_z[b]);
                    }
                    cubic_z[b] = _mm512_sub_ps(cubic_z[b], k.top);
                }
                let e_z = exp16(cubic_z);
                for b in 0..BLOCKS {
                    let here = j0 + at + 16 * b;
                    // A select, not a product: outside, the cubics are NaN (inf x 0).
                    let w = _mm512_maskz_mul_ps(inside[b], e_z[b], cubic_r[b]);
                    acc[0] = _mm512_add_ps(acc[0], _mm512_maskz_mov_ps(inside[b], e_z[b]));
                    if STORE {
                        // SAFETY: the kept lanes lie within the `n` values.
                        unsafe { _mm512_mask_storeu_ps(input.wrapping_add(here), kept[b], w) };
                    } else {
                        acc[1] = _mm512_add_ps(acc[1], w);
                    }
                    for c in 0..DIM {
                        // SAFETY: the kept lanes lie within `columns[c]`'s `n` values.
                        let y = unsafe { load_kept(kept[b], columns[c].wrapping_add(here)) };
                        acc[2 + c] = _mm512_fmadd_ps(w, y, acc[2 + c]);
                    }
                }
                at += STEP;
            }
            j0 += len;
        }
        acc
    }

    /// `pass` (its distances formed, nothing stored) for a row whose points' cells all lie
    /// among the WINDOW from its nearest point's (`Lookup::window_holds`): the coefficients
    /// held in registers, two of 16 cells each, and each point's picked by one two-source
    /// permute of its cell's index past the row's, where `pass` stores the cells' offsets,
    /// loads each point's record and transposes them. The same arithmetic in the same order:
    /// the same bits as `pass`.
    ///
    /// # Safety
    /// `columns[..DIM]` are each valid for `n` f32; `lookup.has_planes()`, and
    /// `lookup.ref_cell <= lookup.last < lookup.cells.len()`.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn windowed_pass<const DIM: usize, const SLOPED: bool>(
        k: &Consts,
        lookup: &Lookup,
        n: usize,
        d_min: f32,
        columns: [*const f32; super::TABLE_MAX_DIM],
        row: &Row,
    ) -> [__m512; 2 + super::TABLE_MAX_DIM] {
        // SAFETY: ref_cell <= last (`MarginalTable::lookup`); the planes as required.
        let window = unsafe { window_from(lookup, lookup.ref_cell) };
        let nearest = _mm512_set1_ps(d_min);
        let mut acc = [_mm512_setzero_ps(); 2 + super::TABLE_MAX_DIM];
        let mut j = 0;
        while j < n {
            let mut s = [_mm512_setzero_ps(); BLOCKS];
            let mut inside = [0 as __mmask16; BLOCKS];
            let mut kept = [0 as __mmask16; BLOCKS];
            let mut cubic_z = s;
            let mut cubic_r = s;
            for b in 0..BLOCKS {
                let here = j + 16 * b;
                kept[b] = lanes_left(n.saturating_sub(here));
                // SAFETY: the kept lanes lie within the columns' `n` values.
                let d = unsafe { row.distances::<DIM>(columns, here, kept[b]) };
                let v = _mm512_add_ps(_mm512_sub_ps(d, nearest), k.base);
                let high = _mm512_srl_epi32(_mm512_castps_si512(v), k.shift);
                let cell = _mm512_min_epu32(_mm512_sub_epi32(high, k.first), k.last);
                let start = _mm512_min_ps(
                    _mm512_castsi512_ps(_mm512_sll_epi32(high, k.shift)),
                    k.last_start,
                );
                s[b] = _mm512_sub_ps(v, start);
                // +inf gaps (outside the span, past the end) weigh nothing; their indices
                // wrap within the window, and the select below drops what they read.
                inside[b] =
                    _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(kept[b], s[b], _mm512_set1_ps(f32::MAX));
                let index = _mm512_sub_epi32(cell, k.ref_cell);
                let pick = |q: usize| _mm512_permutex2var_ps(window[q][0], index, window[q][1]);
                cubic_z[b] = _mm512_fmadd_ps(
                    s[b],
                    _mm512_fmadd_ps(s[b], _mm512_fmadd_ps(s[b], pick(3), pick(2)), pick(1)),
                    pick(0),
                );
                cubic_r[b] = _mm512_fmadd_ps(
                    s[b],
                    _mm512_fmadd_ps(s[b], _mm512_fmadd_ps(s[b], pick(7), pick(6)), pick(5)),
                    pick(4),
                );
                if SLOPED {
                    // The stored level's slope undone (`Lookup::lanes`).
                    let steps = _mm512_cvtepi32_ps(index);
                    cubic_z[b] = _mm512_fnmadd_ps(k.slope, steps, cubic_z[b]);
                }
                cubic_z[b] = _mm512_sub_ps(cubic_z[b], k.top);
            }
            let e_z = exp16(cubic_z);
            for b in 0..BLOCKS {
                let here = j + 16 * b;
                // A select, not a product: outside, the cubics are NaN (inf x 0).
                let w = _mm512_maskz_mul_ps(inside[b], e_z[b], cubic_r[b]);
                acc[0] = _mm512_add_ps(acc[0], _mm512_maskz_mov_ps(inside[b], e_z[b]));
                acc[1] = _mm512_add_ps(acc[1], w);
                for c in 0..DIM {
                    // SAFETY: the kept lanes lie within `columns[c]`'s `n` values.
                    let y = unsafe { load_kept(kept[b], columns[c].wrapping_add(here)) };
                    acc[2 + c] = _mm512_fmadd_ps(w, y, acc[2 + c]);
                }
            }
            j += STEP;
        }
        acc
    }

    /// The query point of a pass that forms its distances, and the points `lo..hi` (of the
    /// columns it reads) that count; the others read as +inf, as the lanes outside a span
    /// do in `distances::span_distances`.
    pub(super) struct Row {
        pub x: [f32; super::TABLE_MAX_DIM],
        pub lo: usize,
        pub hi: usize,
    }

    impl Row {
        /// The row of a pass that reads its distances.
        const NONE: Row = Row {
            x: [0.0; super::TABLE_MAX_DIM],
            lo: 0,
            hi: 0,
        };

        /// The squared distances to points `j..j + 16` from the first DIM columns (lanes not
        /// `kept`, or outside `lo..hi`, +inf), summed as `distances::span_distances` sums them
        /// (t = x_k - y_k, then t t fused into a sum from 0): the same f32 bits.
        ///
        /// # Safety
        /// The `kept` lanes of `columns[..DIM]` at `j` are valid.
        #[inline]
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        unsafe fn distances<const DIM: usize>(
            &self,
            columns: [*const f32; super::TABLE_MAX_DIM],
            j: usize,
            kept: __mmask16,
        ) -> __m512 {
            let mut d = _mm512_setzero_ps();
            for c in 0..DIM {
                // SAFETY: as the caller promises.
                let y = unsafe { load_kept(kept, columns[c].wrapping_add(j)) };
                let t = _mm512_sub_ps(_mm512_set1_ps(self.x[c]), y);
                d = _mm512_fmadd_ps(t, t, d);
            }
            if kept == 0xffff && j >= self.lo && j + 16 <= self.hi {
                // A block inside the span (all but its ends): every lane counts.
                return d;
            }
            // Point indices fit in u32 (`weigh_and_sum_tabled` checks n).
            let lane = _mm512_add_epi32(
                _mm512_set1_epi32(j as i32),
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            );
            let counted =
                _mm512_mask_cmpge_epu32_mask(kept, lane, _mm512_set1_epi32(self.lo as i32))
                    & _mm512_cmplt_epu32_mask(lane, _mm512_set1_epi32(self.hi as i32));
            _mm512_mask_mov_ps(_mm512_set1_ps(f32::INFINITY), counted, d)
        }

        /// The smallest and the largest finite squared distance to points `lo..hi` of the `n`
        /// in the columns (+inf and -inf if there are none), over the same distances as `pass`
        /// forms.
        ///
        /// # Safety
        /// `columns[..DIM]` are each valid for `n` f32.
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        pub(super) unsafe fn nearest_and_farthest<const DIM: usize>(
            &self,
            columns: [*const f32; super::TABLE_MAX_DIM],
            n: usize,
        ) -> (f32, f32) {
            // Two minima in flight: the min's latency, not its throughput, would bound one.
            let mut m = [_mm512_set1_ps(f32::INFINITY); 2];
            let mut far = [_mm512_set1_ps(f32::NEG_INFINITY); 2];
            let mut j = self.lo / 16 * 16;
            while j < self.hi.min(n) {
                for b in 0..2 {
                    let here = j + 16 * b;
                    let kept = lanes_left(n.saturating_sub(here));
                    // SAFETY: the kept lanes lie within the `n` values.
                    let d = unsafe { self.distances::<DIM>(columns, here, kept) };
                    m[b] = _mm512_min_ps(m[b], d);
                    // Uncounted lanes read +inf: left out, as the passes weigh them 0.
                    let finite = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(d, _mm512_set1_ps(f32::MAX));
                    far[b] = _mm512_mask_max_ps(far[b], finite, far[b], d);
                }
                j += 32;
            }
            (
                _mm512_reduce_min_ps(_mm512_min_ps(m[0], m[1])),
                _mm512_reduce_max_ps(_mm512_max_ps(far[0], far[1])),
            )
        }
    }

    /// The 16 cells from `from` of each coefficient's plane, two registers per coefficient.
    ///
    /// # Safety
    /// `from <= last < cells.len()`, and `lookup.has_planes()`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn window_from(lookup: &Lookup, from: u32) -> [[__m512; 2]; 8] {
        // SAFETY: from + WINDOW <= cells.len() + WINDOW <= PLANE: within plane 0.
        let at = unsafe { lookup.planes.as_ptr().add(from as usize) };
        let mut window = [[_mm512_setzero_ps(); 2]; 8];
        for (q, halves) in window.iter_mut().enumerate() {
            // SAFETY: as above, within plane q.
            unsafe {
                let at = at.add(q * super::PLANE);
                *halves = [_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(16))];
            }
        }
        window
    }

    /// A register's lanes summed in f64, in lane order (as `sum_of` and `dot_lanes` finish).
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    fn lanes_in_f64(v: __m512) -> f64 {
        let mut lanes = [0.0f32; 16];
        // SAFETY: `lanes` holds 16 f32.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), v) };
        let mut total = 0.0;
        for v in lanes {
            total += f64::from(v);
        }
        total
    }

    /// `row`'s squared distances to the `n` points of the columns -> (sum of z, sum of w, sum
    /// of w times each of the first DIM columns), the distances and their gaps d - `d_min`
    /// formed in registers and the weights kept there: one pass, no buffer. The sums in 16 f32
    /// lanes, then f64, as `sum_of` and `dot_lanes` add them. DIM is a constant so that the
    /// column accumulators stay in registers.
    ///
    /// # Safety
    /// The CPU has AVX-512 F + VL, AVX2 and FMA, `lookup.cells` holds `lookup.last + 1` records,
    /// `columns[..DIM]` each hold `n` f32, and where `windowed`, every point's cell lies among
    /// the WINDOW from the row's (`Lookup::window_holds`, which also checks the planes).
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn weigh_and_sum<const DIM: usize>(
        row: &Row,
        columns: [*const f32; super::TABLE_MAX_DIM],
        n: usize,
        d_min: f32,
        lookup: &Lookup,
        windowed: bool,
    ) -> (f64, f64, [f64; super::TABLE_MAX_DIM]) {
        let k = Consts::new(lookup);
        // Never read (STORE false).
        let input = std::ptr::null_mut();
        // SAFETY: the first DIM columns hold `n` f32; records and planes as required.
        let acc = unsafe {
            match (windowed, lookup.slope == 0.0) {
                (true, true) => windowed_pass::<DIM, false>(&k, lookup, n, d_min, columns, row),
                (true, false) => windowed_pass::<DIM, true>(&k, lookup, n, d_min, columns, row),
                (false, true) => pass::<DIM, false, false>(&k, input, n, d_min, columns, row),
                (false, false) => pass::<DIM, false, true>(&k, input, n, d_min, columns, row),
            }
        };
        (
            lanes_in_f64(acc[0]),
            lanes_in_f64(acc[1]),
            [
                lanes_in_f64(acc[2]),
                lanes_in_f64(acc[3]),
                lanes_in_f64(acc[4]),
            ],
        )
    }

    /// Gaps -> the marginal's weights in place through `lookup`; returns the sum of z.
    ///
    /// # Safety
    /// The CPU has AVX-512 F + VL, AVX2 and FMA, and `lookup.cells` holds `lookup.last + 1`
    /// records.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn weigh(gaps: &mut [f32], lookup: &Lookup) -> f64 {
        let k = Consts::new(lookup);
        let none = [std::ptr::null(); super::TABLE_MAX_DIM];
        // The gaps minus 0: themselves, exactly.
        // SAFETY: `gaps` holds `gaps.len()` f32, written in place; records as required.
        let acc = unsafe {
            let (input, n) = (gaps.as_mut_ptr(), gaps.len());
            if lookup.slope == 0.0 {
                pass::<0, true, false>(&k, input, n, 0.0, none, &Row::NONE)
            } else {
                pass::<0, true, true>(&k, input, n, 0.0, none, &Row::NONE)
            }
        };
        lanes_in_f64(acc[0])
    }
}

/// A row whose nearest point lies beyond the table: only the widest node counts, in gap form.
#[inline(always)]
fn weigh_gaps_linear<T: Real, const FMA: bool>(
    gaps: &mut [T],
    d_min: f64,
    top: f64,
    nodes: &Nodes,
) -> f64 {
    let k = nodes.widest;
    let c = T::from_f64(-nodes.c[k]);
    let shift = T::from_f64(nodes.a[k] - d_min * nodes.c[k] - top);
    let scale = T::from_f64(nodes.scale[k]);
    let mut lanes = [T::ZERO; LANES];
    let mut chunks = gaps.chunks_exact_mut(LANES);
    for ch in &mut chunks {
        for l in 0..LANES {
            let e = ch[l].fused::<FMA>(c, shift).exp();
            ch[l] = e * scale;
            lanes[l] = lanes[l] + e;
        }
    }
    let mut total = 0.0;
    for g in chunks.into_remainder() {
        let e = g.fused::<FMA>(c, shift).exp();
        *g = e * scale;
        total += e.to_f64();
    }
    total + lanes.iter().map(|v| v.to_f64()).sum::<f64>()
}

/// The node set a table was built for.
#[derive(PartialEq)]
struct Key {
    dim: usize,
    power: i32,
    sigmas: Vec<u64>,
    log_weights: Vec<u64>,
}

/// A node set and its table (`None`: it needs the direct sum).
type Entry = (Key, Option<Arc<MarginalTable>>);

/// The tables of the node sets used lately on one prepared set (shared by its clones), built at
/// first use: a model's nodes are fixed, so each is built once per run.
#[derive(Clone, Default)]
pub(super) struct MarginalTables {
    entries: Arc<Mutex<Vec<Entry>>>,
}

/// Node sets kept (NAG's two analytic forms, and room for a change of prior).
const TABLES_KEPT: usize = 4;

impl std::fmt::Debug for MarginalTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MarginalTables")
    }
}

impl MarginalTables {
    /// The table for `weighting` on `dim`-dimensional data in T, where one serves: NAG's
    /// marginal, f32 (f64 stays the oracle and sums directly); above TABLE_MAX_DIM the GEMM
    /// form's and the separate passes' weights read it (no one-pass sums).
    pub fn get<T: Real>(&self, weighting: &Weighting, dim: usize) -> Option<Arc<MarginalTable>> {
        let Weighting::Marginal {
            sigmas,
            log_weights,
            sigma_power,
        } = *weighting
        else {
            return None;
        };
        if !T::GEMM_FORM {
            return None;
        }
        let key = Key {
            dim,
            power: sigma_power,
            sigmas: sigmas.iter().map(|v| v.to_bits()).collect(),
            log_weights: log_weights.iter().map(|v| v.to_bits()).collect(),
        };
        let mut entries = self.entries.lock().ok()?;
        if let Some((_, table)) = entries.iter().find(|(k, _)| *k == key) {
            return table.clone();
        }
        let table = MarginalTable::new(sigmas, log_weights, sigma_power, dim).map(Arc::new);
        entries.push((key, table.clone()));
        if entries.len() > TABLES_KEPT {
            entries.remove(0);
        }
        table
    }
}
