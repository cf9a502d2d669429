//! f32 / f64 for the kernels, with exp as a vectorisable polynomial.

/// f32 or f64 with the few operations the kernels need, all inlinable and branch-free.
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const INFINITY: Self;
    /// The largest finite value.
    const MAX: Self;
    /// Below -UNDERFLOW, exp() is treated as exactly 0 (e^-80 relative to the nearest point's 1).
    const UNDERFLOW: f64;
    /// Weights below e^-CUTOFF of a row's largest are left out of its sums (their total is below
    /// N e^-CUTOFF relative: 4e-18 N in f32, ~1e-152 N in f64).
    const CUTOFF: f64;
    /// The unit roundoff (half an ulp of 1).
    const EPSILON: f64;
    /// Whether distances may take the GEMM form (f32, where speed matters; f64 stays the oracle).
    const GEMM_FORM: bool;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// e^x, accurate to ~1 ulp, vectorisable; exactly 0 below -UNDERFLOW.
    fn exp(self) -> Self;
    fn fused<const FMA: bool>(self, b: Self, c: Self) -> Self;
    /// floor(log2(self)) for a positive normal value, from the exponent bits (0 and subnormals
    /// give the smallest exponent).
    fn binary_exponent(self) -> i32;
    /// The slice as f32, where Self is f32 (the kernels with hand-written f32 intrinsics).
    fn as_f32_mut(values: &mut [Self]) -> Option<&mut [f32]>;
    /// The slice as f32, where Self is f32.
    fn as_f32(values: &[Self]) -> Option<&[f32]>;
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        if other < self { other } else { self }
    }
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    const INFINITY: f32 = f32::INFINITY;
    const MAX: f32 = f32::MAX;
    const UNDERFLOW: f64 = 80.0;
    const CUTOFF: f64 = 40.0;
    const EPSILON: f64 = f32::EPSILON as f64 / 2.0;
    const GEMM_FORM: bool = true;
    #[inline(always)]
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp(self) -> f32 {
        // Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then a degree-7 Taylor polynomial
        // (truncation 6e-9 relative) and 2^n built from the exponent bits.
        const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
        let x = self.clamp(-87.0, 88.0);
        let shifted = x * std::f32::consts::LOG2_E + MAGIC;
        let n = shifted - MAGIC;
        let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0
                        + r * (1.0 / 24.0
                            + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
        let n_int = shifted.to_bits() as i32 - 0x4B40_0000;
        let scale = f32::from_bits(((n_int + 127) << 23) as u32);
        if self < -80.0 { 0.0 } else { p * scale }
    }
    #[inline(always)]
    fn fused<const FMA: bool>(self, b: f32, c: f32) -> f32 {
        if FMA {
            self.mul_add(b, c)
        } else {
            self * b + c
        }
    }
    #[inline(always)]
    fn binary_exponent(self) -> i32 {
        ((self.to_bits() >> 23) & 0xff) as i32 - 127
    }
    #[inline(always)]
    fn as_f32_mut(values: &mut [f32]) -> Option<&mut [f32]> {
        Some(values)
    }
    #[inline(always)]
    fn as_f32(values: &[f32]) -> Option<&[f32]> {
        Some(values)
    }
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    const INFINITY: f64 = f64::INFINITY;
    const MAX: f64 = f64::MAX;
    const UNDERFLOW: f64 = 700.0;
    const CUTOFF: f64 = 350.0;
    const EPSILON: f64 = f64::EPSILON / 2.0;
    const GEMM_FORM: bool = false;
    #[inline(always)]
    fn from_f64(v: f64) -> f64 {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp(self) -> f64 {
        // Cody-Waite with a two-part ln2, degree-13 Taylor polynomial (truncation 4e-18 relative).
        const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
        const LN2_HI: f64 = 6.931_471_803_691_238e-1;
        const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
        let x = self.clamp(-708.0, 709.0);
        let shifted = x * std::f64::consts::LOG2_E + MAGIC;
        let n = shifted - MAGIC;
        let r = x - n * LN2_HI - n * LN2_LO;
        let mut p = 1.0 / 6_227_020_800.0;
        for c in [
            1.0 / 479_001_600.0,
            1.0 / 39_916_800.0,
            1.0 / 3_628_800.0,
            1.0 / 362_880.0,
            1.0 / 40_320.0,
            1.0 / 5_040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = p * r + c;
        }
        let n_int = shifted.to_bits() as i64 - 0x4338_0000_0000_0000;
        let scale = f64::from_bits(((n_int + 1023) << 52) as u64);
        if self < -700.0 { 0.0 } else { p * scale }
    }
    #[inline(always)]
    fn fused<const FMA: bool>(self, b: f64, c: f64) -> f64 {
        if FMA {
            self.mul_add(b, c)
        } else {
            self * b + c
        }
    }
    #[inline(always)]
    fn binary_exponent(self) -> i32 {
        ((self.to_bits() >> 52) & 0x7ff) as i32 - 1023
    }
    #[inline(always)]
    fn as_f32_mut(_: &mut [f64]) -> Option<&mut [f32]> {
        None
    }
    #[inline(always)]
    fn as_f32(_: &[f64]) -> Option<&[f32]> {
        None
    }
}
