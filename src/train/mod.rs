//! Learned denoisers: candle models, their training loop and the fused ops that make training
//! fast on the CPU (ops.rs).

pub mod ops;
pub mod speed;
