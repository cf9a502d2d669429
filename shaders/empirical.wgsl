// The ideal empirical denoiser and the exact noise posterior of a finite data set (science.md
// sections 4-5), in f32. One call runs, per chunk of query rows:
//   distances       tiled |x_r - y_j|^2 with explicit differences (no |x|^2 - 2x.y + |y|^2),
//   row_min         d_min of every row over its span (class masking for CFG),
//   softmax_weights w_j = exp(-(d_j - d_min) / (2 s^2)), or
//   marginal_weights NAG's sum over prior nodes with host-computed per-row node offsets,
//   weighted_sum    sum_j w_j y_j, and
//   log_sum_exp     ln sum_j exp(-(d_j - d_min) / (2 s^2)) on a sigma grid.
// Subtracting d_min before scaling keeps sigma = 0.002 exact: the nearest point weighs 1 and
// weights below e^-80 are exactly 0, as in the CPU kernels (backend/cpu/).

struct Params {
    // Dimension of one sample.
    dim: u32,
    // Row stride of the distance / weight buffer (the longest span of the chunk).
    stride: u32,
    // Sigmas per row (log_sum_exp) or prior nodes per row (marginal_weights).
    grid: u32,
    // 0 when every row shares one sigma grid, else `grid`.
    grid_stride: u32,
    // softmax_weights: -1 / (2 s^2).
    coeff: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// The data set, [n][dim], uploaded once.
@group(0) @binding(1) var<storage, read> data: array<f32>;
// The query rows of this chunk, [rows][dim].
@group(0) @binding(2) var<storage, read> queries: array<f32>;
// Distance tiles: (first entry in row_list, row count, span start, span end).
@group(0) @binding(3) var<storage, read> tiles: array<vec4<u32>>;
// Local row indices, grouped by span.
@group(0) @binding(4) var<storage, read> row_list: array<u32>;
// [rows][stride]: squared distances, overwritten in place by the weights.
@group(0) @binding(5) var<storage, read_write> dist: array<f32>;
// Per row: (span start, span end).
@group(0) @binding(6) var<storage, read> spans: array<vec2<u32>>;
// Per row: (d_min, sum_j w_j, normaliser Z, unused).
@group(0) @binding(7) var<storage, read_write> sums: array<vec4<f32>>;
// marginal_weights, [rows][grid]: (offset_k, -1 / (2 s_k^2), 1 / s_k^m, unused), active nodes first.
@group(0) @binding(8) var<storage, read> nodes: array<vec4<f32>>;
// marginal_weights: active nodes per row.
@group(0) @binding(9) var<storage, read> node_counts: array<u32>;
// [rows][dim]: sum_j w_j y_j.
@group(0) @binding(10) var<storage, read_write> weighted: array<f32>;
// log_sum_exp: 1 / (2 s^2) per grid node, [grid] or [rows][grid].
@group(0) @binding(11) var<storage, read> sigma_coeffs: array<f32>;
// log_sum_exp, [rows][grid]: ln sum_j exp(-(d_j - d_min) / (2 s^2)).
@group(0) @binding(12) var<storage, read_write> lse: array<f32>;

const WORKGROUP: u32 = 256u;
const TILE_ROWS: u32 = 16u;
const TILE_POINTS: u32 = 64u;
const TILE_DIMS: u32 = 16u;
// One padding column so that threads reading one column of a tile hit different banks.
const TILE_PITCH: u32 = 17u;
// Below this exponent a weight is exactly 0, as on the CPU (e^-80 relative to the nearest point).
const UNDERFLOW: f32 = -80.0;
// log_sum_exp skips terms below e^-25 of the nearest, as on the CPU (LIKELIHOOD_MARGIN).
const LSE_CUTOFF: f32 = -25.0;
// The tiled weighted sum: data points per step, output columns per workgroup.
const WEIGHT_CHUNK: u32 = 32u;
const TILE_COLUMNS: u32 = 64u;
// d_min of an empty span.
const NO_DISTANCE: f32 = 3.0e38;

var<workgroup> tile_x: array<f32, 272>;   // TILE_ROWS x TILE_PITCH
var<workgroup> tile_y: array<f32, 1088>;  // TILE_POINTS x TILE_PITCH
var<workgroup> partial: array<f32, 256>;
var<workgroup> tile_w: array<f32, 528>;   // TILE_ROWS x (WEIGHT_CHUNK + 1)
var<workgroup> tile_v: array<f32, 2048>;  // WEIGHT_CHUNK x TILE_COLUMNS
var<workgroup> any_weight: atomic<u32>;
// log_sum_exp: the current node's skip flag, shared so that the branch is workgroup-uniform.
var<workgroup> skip_node: u32;

fn reduce_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width = width / 2u) {
        if (lid < width) {
            partial[lid] = partial[lid] + partial[lid + width];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

fn reduce_min(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width = width / 2u) {
        if (lid < width) {
            partial[lid] = min(partial[lid], partial[lid + width]);
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

// One workgroup: TILE_ROWS query rows x TILE_POINTS data points of one span; dispatch
// (ceil(stride / TILE_POINTS), tiles). Each thread owns one row and four points, and accumulates
// over the dimensions in order, one partial sum per tile of TILE_DIMS dimensions added to the
// total, like the CPU kernel (blocked summation: rounding grows with TILE_DIMS + D / TILE_DIMS
// terms rather than D).
@compute @workgroup_size(16, 16)
fn distances(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) index: u32,
) {
    let tile = tiles[wg.y];
    let first = tile.x;
    let count = tile.y;
    let start = tile.z;
    let span_len = tile.w - tile.z;
    let j0 = wg.x * TILE_POINTS;
    if (j0 >= span_len) {
        return;
    }
    let dim = params.dim;
    let my_row = lid.y;
    let my_point = lid.x;
    var acc = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < dim; k0 = k0 + TILE_DIMS) {
        let kn = min(TILE_DIMS, dim - k0);
        // Only the kn live columns are loaded: with D = 2 that is 1/8 of a full tile.
        for (var e = index; e < TILE_ROWS * kn; e = e + WORKGROUP) {
            let r = e / kn;
            let kk = e % kn;
            var v = 0.0;
            if (r < count) {
                v = queries[row_list[first + r] * dim + k0 + kk];
            }
            tile_x[r * TILE_PITCH + kk] = v;
        }
        for (var e = index; e < TILE_POINTS * kn; e = e + WORKGROUP) {
            let p = e / kn;
            let kk = e % kn;
            var v = 0.0;
            if (j0 + p < span_len) {
                v = data[(start + j0 + p) * dim + k0 + kk];
            }
            tile_y[p * TILE_PITCH + kk] = v;
        }
        workgroupBarrier();
        var part = vec4<f32>(0.0);
        for (var kk = 0u; kk < kn; kk = kk + 1u) {
            let xv = tile_x[my_row * TILE_PITCH + kk];
            let t0 = xv - tile_y[my_point * TILE_PITCH + kk];
            let t1 = xv - tile_y[(my_point + 16u) * TILE_PITCH + kk];
            let t2 = xv - tile_y[(my_point + 32u) * TILE_PITCH + kk];
            let t3 = xv - tile_y[(my_point + 48u) * TILE_PITCH + kk];
            part = vec4<f32>(fma(t0, t0, part.x), fma(t1, t1, part.y), fma(t2, t2, part.z), fma(t3, t3, part.w));
        }
        acc = acc + part;
        workgroupBarrier();
    }
    if (my_row < count) {
        let base = row_list[first + my_row] * params.stride;
        for (var q = 0u; q < 4u; q = q + 1u) {
            let j = j0 + my_point + q * 16u;
            if (j < span_len) {
                dist[base + j] = acc[q];
            }
        }
    }
}

// One workgroup per row: d_min over the row's span.
@compute @workgroup_size(256)
fn row_min(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x;
    let span = spans[row];
    let len = span.y - span.x;
    let base = row * params.stride;
    var m = NO_DISTANCE;
    for (var j = lid; j < len; j = j + WORKGROUP) {
        m = min(m, dist[base + j]);
    }
    m = reduce_min(lid, m);
    if (lid == 0u) {
        sums[row] = vec4<f32>(m, 0.0, 0.0, 0.0);
    }
}

// One workgroup per row: w_j = exp((d_j - d_min) * coeff), coeff = -1 / (2 s^2); Z = sum_j w_j.
@compute @workgroup_size(256)
fn softmax_weights(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x;
    let span = spans[row];
    let len = span.y - span.x;
    let base = row * params.stride;
    let d_min = sums[row].x;
    var total = 0.0;
    for (var j = lid; j < len; j = j + WORKGROUP) {
        let v = (dist[base + j] - d_min) * params.coeff;
        let w = select(exp(v), 0.0, v < UNDERFLOW);
        dist[base + j] = w;
        total = total + w;
    }
    total = reduce_sum(lid, total);
    if (lid == 0u) {
        sums[row] = vec4<f32>(d_min, total, total, 0.0);
    }
}

// One workgroup per row: NAG's noise-unconditional weights
// w_j = sum_k exp(offset_k - (d_j - d_min) / (2 s_k^2)) / s_k^m over the row's active nodes,
// Z = sum_j sum_k exp(...). The offsets come from the host, in f64 there.
@compute @workgroup_size(256)
fn marginal_weights(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x;
    let span = spans[row];
    let len = span.y - span.x;
    let base = row * params.stride;
    let d_min = sums[row].x;
    let count = node_counts[row];
    let node_base = row * params.grid;
    var total = 0.0;
    var normaliser = 0.0;
    for (var j = lid; j < len; j = j + WORKGROUP) {
        let gap = dist[base + j] - d_min;
        var w = 0.0;
        for (var k = 0u; k < count; k = k + 1u) {
            let node = nodes[node_base + k];
            let v = fma(gap, node.y, node.x);
            let e = select(exp(v), 0.0, v < UNDERFLOW);
            w = fma(e, node.z, w);
            normaliser = normaliser + e;
        }
        dist[base + j] = w;
        total = total + w;
    }
    total = reduce_sum(lid, total);
    normaliser = reduce_sum(lid, normaliser);
    if (lid == 0u) {
        sums[row] = vec4<f32>(d_min, total, normaliser, 0.0);
    }
}

// sum_j w_j y_j for small dimensions; dispatch (ceil(dim / 64), rows). The 256 threads are
// `lanes` consecutive output columns (coalesced reads of y) times 256 / lanes phases that split
// the data points.
@compute @workgroup_size(256)
fn weighted_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.y;
    let dim = params.dim;
    let lanes = min(64u, dim);
    let phases = WORKGROUP / lanes;
    let lane = lid % lanes;
    let phase = lid / lanes;
    let k = wg.x * 64u + lane;
    let span = spans[row];
    let len = span.y - span.x;
    let base = row * params.stride;
    var acc = 0.0;
    if (phase < phases && k < dim) {
        for (var j = phase; j < len; j = j + phases) {
            let w = dist[base + j];
            if (w != 0.0) {
                acc = fma(w, data[(span.x + j) * dim + k], acc);
            }
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    if (phase == 0u && k < dim) {
        var total = 0.0;
        for (var p = 0u; p < phases; p = p + 1u) {
            total = total + partial[p * lanes + lane];
        }
        weighted[row * dim + k] = total;
    }
}

// sum_j w_j y_j for wide data, as a tiled matrix product W Y; dispatch (ceil(dim / 64), tiles).
// A workgroup owns TILE_ROWS rows that share a span and 64 output columns; each thread one row
// and four columns, accumulated over j in order (as the CPU does). Chunks of data points whose
// weights are all zero (most of them at small sigma) are skipped.
@compute @workgroup_size(16, 16)
fn weighted_sum_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) index: u32,
) {
    let tile = tiles[wg.y];
    let first = tile.x;
    let count = tile.y;
    let start = tile.z;
    let span_len = tile.w - tile.z;
    let dim = params.dim;
    let col0 = wg.x * TILE_COLUMNS;
    let my_row = lid.y;
    let my_col = lid.x;
    var acc = vec4<f32>(0.0);
    for (var j0 = 0u; j0 < span_len; j0 = j0 + WEIGHT_CHUNK) {
        if (index == 0u) {
            atomicStore(&any_weight, 0u);
        }
        workgroupBarrier();
        var seen = false;
        for (var e = index; e < TILE_ROWS * WEIGHT_CHUNK; e = e + WORKGROUP) {
            let r = e / WEIGHT_CHUNK;
            let jj = e % WEIGHT_CHUNK;
            var w = 0.0;
            if (r < count && j0 + jj < span_len) {
                w = dist[row_list[first + r] * params.stride + j0 + jj];
            }
            tile_w[r * (WEIGHT_CHUNK + 1u) + jj] = w;
            seen = seen || w != 0.0;
        }
        if (seen) {
            atomicOr(&any_weight, 1u);
        }
        workgroupBarrier();
        let live = atomicLoad(&any_weight) != 0u;
        if (live) {
            for (var e = index; e < WEIGHT_CHUNK * TILE_COLUMNS; e = e + WORKGROUP) {
                let jj = e / TILE_COLUMNS;
                let c = e % TILE_COLUMNS;
                var v = 0.0;
                if (j0 + jj < span_len && col0 + c < dim) {
                    v = data[(start + j0 + jj) * dim + col0 + c];
                }
                tile_v[jj * TILE_COLUMNS + c] = v;
            }
        }
        workgroupBarrier();
        if (live) {
            let chunk = min(WEIGHT_CHUNK, span_len - j0);
            for (var jj = 0u; jj < chunk; jj = jj + 1u) {
                let w = tile_w[my_row * (WEIGHT_CHUNK + 1u) + jj];
                let v = jj * TILE_COLUMNS + my_col;
                acc = vec4<f32>(
                    fma(w, tile_v[v], acc.x),
                    fma(w, tile_v[v + 16u], acc.y),
                    fma(w, tile_v[v + 32u], acc.z),
                    fma(w, tile_v[v + 48u], acc.w),
                );
            }
        }
        workgroupBarrier();
    }
    if (my_row < count) {
        let base = row_list[first + my_row] * dim;
        for (var q = 0u; q < 4u; q = q + 1u) {
            let c = col0 + my_col + q * 16u;
            if (c < dim) {
                weighted[base + c] = acc[q];
            }
        }
    }
}

// One workgroup per row: for every sigma of the row's grid, ln sum_j exp(-(d_j - d_min) c) with
// c = 1 / (2 s^2); the host adds -d_min c in f64.
@compute @workgroup_size(256)
fn log_sum_exp(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x;
    let span = spans[row];
    let len = span.y - span.x;
    let base = row * params.stride;
    let d_min = sums[row].x;
    let grid_base = row * params.grid_stride;
    // As on the CPU, nodes whose likelihood is provably below e^-25 of the best carry no
    // posterior mass: ln p lies in [b, b + ln N] with b = -d_min c + (D/2) ln(2c) (+ const).
    // They keep their lower bound (an LSE of 0) without a pass over the data.
    let half_dim = 0.5 * f32(params.dim);
    var best = -3.0e38;
    for (var g = 0u; g < params.grid; g = g + 1u) {
        let c = sigma_coeffs[grid_base + g];
        best = max(best, -d_min * c + half_dim * log(2.0 * c));
    }
    let spread = log(f32(max(len, 1u)));
    for (var g = 0u; g < params.grid; g = g + 1u) {
        let c = sigma_coeffs[grid_base + g];
        // Everyone has read the previous node's flag before it is overwritten.
        workgroupBarrier();
        if (lid == 0u) {
            skip_node = select(0u, 1u, -d_min * c + half_dim * log(2.0 * c) + spread < best + LSE_CUTOFF);
        }
        // One barrier for a skipped node instead of a whole reduction.
        if (workgroupUniformLoad(&skip_node) == 1u) {
            if (lid == 0u) {
                lse[row * params.grid + g] = 0.0;
            }
            continue;
        }
        var total = 0.0;
        for (var j = lid; j < len; j = j + WORKGROUP) {
            let v = (d_min - dist[base + j]) * c;
            if (v >= LSE_CUTOFF) {
                total = total + exp(v);
            }
        }
        total = reduce_sum(lid, total);
        if (lid == 0u) {
            lse[row * params.grid + g] = log(total);
        }
    }
}
