// Batched per-row reductions for the diagnostics: for two [rows][dim] batches a and b, per row
// (a.b, |a|^2, |b|^2, |a - b|^2), in f32; |a - b|^2 from explicit differences.

struct Params {
    dim: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> results: array<vec4<f32>>;

const WORKGROUP: u32 = 256u;

var<workgroup> partial: array<vec4<f32>, 256>;

// One workgroup per row.
@compute @workgroup_size(256)
fn row_reductions(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x;
    let dim = params.dim;
    let base = row * dim;
    var acc = vec4<f32>(0.0);
    for (var k = lid; k < dim; k = k + WORKGROUP) {
        let u = a[base + k];
        let v = b[base + k];
        let t = u - v;
        acc = vec4<f32>(fma(u, v, acc.x), fma(u, u, acc.y), fma(v, v, acc.z), fma(t, t, acc.w));
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width = width / 2u) {
        if (lid < width) {
            partial[lid] = partial[lid] + partial[lid + width];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        results[row] = partial[0];
    }
}
