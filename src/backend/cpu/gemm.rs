//! Dense matrix products through the `gemm` crate (register-blocked, packed, AVX-512 / AVX2 /
//! portable kernels chosen at run time), and the throughput probe `noisescope bench` prints.

use std::time::Instant;

use super::real::Real;

/// How a product may use the machine's threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only (the caller is already one of many parallel tasks).
    One,
    /// Spread over rayon's pool.
    All,
}

impl Threads {
    fn parallelism(self) -> gemm::Parallelism {
        match self {
            Threads::One => gemm::Parallelism::None,
            Threads::All => gemm::Parallelism::Rayon(0),
        }
    }
}

/// out[m][n] = a[m][k] b[n][k]^T, all row-major (`b` holds one data point per row).
pub fn product_transposed<T: Real>(
    a: &[T],
    b: &[T],
    (m, n, k): (usize, usize, usize),
    out: &mut [T],
    threads: Threads,
) {
    // b^T is k x n with strides (1, k).
    strided_product(a, (b, 1, k as isize), (m, n, k), out, threads);
}

/// out[m][n] = a[m][k] b[k][n], all row-major.
pub fn product<T: Real>(
    a: &[T],
    b: &[T],
    (m, n, k): (usize, usize, usize),
    out: &mut [T],
    threads: Threads,
) {
    // b is k x n with strides (n, 1).
    strided_product(a, (b, n as isize, 1), (m, n, k), out, threads);
}

/// out[m][n] = a[m][k] B[k][n] with `a` and `out` row-major and B read from `b` with the given
/// (row, column) strides: the one place the `gemm` crate is called.
fn strided_product<T: Real>(
    a: &[T],
    (b, b_row, b_col): (&[T], isize, isize),
    (m, n, k): (usize, usize, usize),
    out: &mut [T],
    threads: Threads,
) {
    assert!(
        a.len() >= m * k && b.len() >= n * k && out.len() >= m * n,
        "product shapes"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(T::ZERO);
        return;
    }
    // SAFETY: the assert above keeps every access of the strided views inside the slices: a is
    // m x k with strides (k, 1), out is m x n with (n, 1), and B is k x n read at
    // i b_row + j b_col <= (k - 1) n + (n - 1) or (n - 1) k + (k - 1), both < n k <= b.len()
    // for the two callers' strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            b_col,
            b_row,
            T::ZERO,
            T::ONE,
            false,
            false,
            false,
            threads.parallelism(),
        );
    }
}

/// This machine's f32 throughput (GFLOP/s, 2 m n k flops per product) for the product the
/// empirical kernels run on a workload's shape: m query rows against n data points of
/// dimension k, on every thread, repeated for at least `seconds`; the best of three rounds.
pub fn probe_throughput(m: usize, n: usize, k: usize, seconds: f64) -> f64 {
    let fill = |len: usize, salt: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + salt) % 1021) as f32 / 511.0 - 1.0)
            .collect()
    };
    let (a, b) = (fill(m * k, 1), fill(n * k, 2));
    let mut out = vec![0.0f32; m * n];
    let flops = 2.0 * (m * n * k) as f64;
    product_transposed(&a, &b, (m, n, k), &mut out, Threads::All);
    let mut best = 0.0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let mut reps = 0usize;
        while reps == 0 || started.elapsed().as_secs_f64() < seconds / 3.0 {
            product_transposed(&a, &b, (m, n, k), &mut out, Threads::All);
            reps += 1;
        }
        best = best.max(flops * reps as f64 / started.elapsed().as_secs_f64() / 1e9);
    }
    std::hint::black_box(&out);
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_the_definition() {
        let (m, n, k) = (5, 7, 19);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..n * k).map(|i| (i as f64 * 0.11).cos()).collect();
        let mut out = vec![0.0; m * n];
        product_transposed(&a, &b, (m, n, k), &mut out, Threads::One);
        for i in 0..m {
            for j in 0..n {
                let expect: f64 = (0..k).map(|q| a[i * k + q] * b[j * k + q]).sum();
                assert!((out[i * n + j] - expect).abs() < 1e-12);
            }
        }
        // b read as k x n.
        let mut out2 = vec![0.0; m * n];
        product(&a, &b[..k * n], (m, n, k), &mut out2, Threads::All);
        for i in 0..m {
            for j in 0..n {
                let expect: f64 = (0..k).map(|q| a[i * k + q] * b[q * n + j]).sum();
                assert!((out2[i * n + j] - expect).abs() < 1e-12);
            }
        }
        assert!(probe_throughput(8, 16, 4, 0.001) > 0.0);
    }
}
