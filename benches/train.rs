//! Criterion benches of one training step (data draw + forward + EDM loss + backward + AdamW +
//! EMA) of the two reference workloads (src/train/speed.rs), stock candle against the fused ops.
//! The PyTorch twin of the same steps is tools/peer_train.py.

use criterion::{Criterion, criterion_group};
use noisescope::train::ops;
use noisescope::train::speed::{Path, TrainBench, Workload};

fn training_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group.sample_size(20);
    // Stock first, with glibc's default allocator settings; the fused path tunes them. Both run
    // with the thread settings of `ops::pin_thread_count` (bench-train --stock runs without).
    for (path, label) in [(Path::Stock, "stock"), (Path::Fused, "fused")] {
        if path == Path::Fused {
            ops::keep_buffers_resident();
        }
        for workload in [Workload::Mlp, Workload::Unet] {
            let mut bench = TrainBench::new(workload, path, None, 0).expect("workload");
            group.bench_function(format!("{}_{label}", workload.name()), |b| {
                b.iter(|| bench.step().expect("step"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, training_step);

fn main() {
    // SAFETY: first thing in main, before any thread exists.
    unsafe { ops::pin_thread_count() };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
