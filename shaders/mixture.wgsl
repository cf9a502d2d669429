// The exact denoiser of a Gaussian mixture sum_c w_c N(mu_c, U_c diag(lambda_c) U_c^T) (a single
// Gaussian is one component), science.md section 7, in f32. In component c's eigenbasis
// z = U^T (x - mu): D_c = mu + U (lambda / (lambda + s^2) z), and the responsibilities are the
// softmax over the allowed components of ln w_c + ln N(x; mu_c, Sigma_c + s^2 I). The
// x-independent part (ln w_c - 1/2 sum_k ln(2 pi (lambda_k + s^2))) comes from the host in f64.

struct Params {
    dim: u32,
    components: u32,
    // s^2 of this call.
    sigma2: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// [rows][dim].
@group(0) @binding(1) var<storage, read> queries: array<f32>;
// Per row: the class to condition on, or ANY_CLASS.
@group(0) @binding(2) var<storage, read> row_class: array<u32>;
// Per component: (label, has a basis, offset of its basis in `bases`, unused).
@group(0) @binding(3) var<storage, read> component_info: array<vec4<u32>>;
// Per component, this call: ln w_c - 1/2 sum_k ln(2 pi (lambda_ck + s^2)).
@group(0) @binding(4) var<storage, read> log_base: array<f32>;
// Per component [2][dim]: the mean, then the eigenvalues.
@group(0) @binding(5) var<storage, read> moments: array<f32>;
// Per component with a basis, at its offset: U (row-major [i][k]), then U^T (coalesced reads
// when rotating back).
@group(0) @binding(6) var<storage, read> bases: array<f32>;
// Scratch [rows][components][dim]: z of every component.
@group(0) @binding(7) var<storage, read_write> eigen_coords: array<f32>;
// [rows][dim].
@group(0) @binding(8) var<storage, read_write> denoised: array<f32>;

const WORKGROUP: u32 = 256u;
const ANY_CLASS: u32 = 0xffffffffu;
const MAX_COMPONENTS: u32 = 256u;
const EXCLUDED: f32 = -3.0e38;

var<workgroup> partial: array<f32, 256>;
var<workgroup> logits: array<f32, 256>;

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

// One workgroup per row.
@compute @workgroup_size(256)
fn mixture_denoise(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x;
    let dim = params.dim;
    let count = min(params.components, MAX_COMPONENTS);
    let wanted = row_class[row];
    let s2 = params.sigma2;
    let x_base = row * dim;
    var any_allowed = false;
    for (var c = 0u; c < count; c = c + 1u) {
        let info = component_info[c];
        let allowed = wanted == ANY_CLASS || info.x == wanted;
        var q = 0.0;
        if (allowed) {
            // z = U^T (x - mu), one eigen-direction per thread; the squared Mahalanobis norm.
            let z_base = (row * params.components + c) * dim;
            for (var k = lid; k < dim; k = k + WORKGROUP) {
                var z = 0.0;
                if (info.y != 0u) {
                    for (var i = 0u; i < dim; i = i + 1u) {
                        let centred = queries[x_base + i] - moments[c * 2u * dim + i];
                        z = fma(bases[info.z + i * dim + k], centred, z);
                    }
                } else {
                    z = queries[x_base + k] - moments[c * 2u * dim + k];
                }
                eigen_coords[z_base + k] = z;
                q = q + z * z / (moments[c * 2u * dim + dim + k] + s2);
            }
        }
        q = reduce_sum(lid, q);
        if (lid == 0u) {
            logits[c] = select(EXCLUDED, log_base[c] - 0.5 * q, allowed);
        }
        any_allowed = any_allowed || allowed;
    }
    storageBarrier();
    workgroupBarrier();
    if (!any_allowed) {
        for (var i = lid; i < dim; i = i + WORKGROUP) {
            denoised[x_base + i] = 0.0;
        }
        return;
    }
    var top = EXCLUDED;
    for (var c = 0u; c < count; c = c + 1u) {
        top = max(top, logits[c]);
    }
    var total = 0.0;
    for (var c = 0u; c < count; c = c + 1u) {
        if (logits[c] > EXCLUDED) {
            total = total + exp(logits[c] - top);
        }
    }
    // D = sum_c r_c (mu_c + U_c (lambda / (lambda + s^2) z_c)), one output coordinate per thread.
    for (var i = lid; i < dim; i = i + WORKGROUP) {
        var value = 0.0;
        for (var c = 0u; c < count; c = c + 1u) {
            if (logits[c] <= EXCLUDED) {
                continue;
            }
            let r = exp(logits[c] - top) / total;
            if (r == 0.0) {
                continue;
            }
            let info = component_info[c];
            let z_base = (row * params.components + c) * dim;
            var v = 0.0;
            if (info.y != 0u) {
                for (var k = 0u; k < dim; k = k + 1u) {
                    let l = moments[c * 2u * dim + dim + k];
                    v = fma(bases[info.z + dim * dim + k * dim + i], l / (l + s2) * eigen_coords[z_base + k], v);
                }
            } else {
                let l = moments[c * 2u * dim + dim + i];
                v = l / (l + s2) * eigen_coords[z_base + i];
            }
            value = value + r * (moments[c * 2u * dim + i] + v);
        }
        denoised[x_base + i] = value;
    }
}
