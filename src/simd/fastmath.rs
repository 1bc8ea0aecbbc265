//! Branch-free single-precision `exp`, `erf` and GELU for loops that the compiler vectorises (libm's are scalar
//! calls), and [`avx512_dispatch`], which runs such a loop compiled for AVX-512 where the CPU has it (the crate is
//! built for baseline x86-64, whose vectors are four lanes wide).

/// `fn $name(args)` that calls `$inner(args)` compiled with AVX-512F (and AVX2, FMA) enabled when the CPU has it,
/// else as built. `$inner` should be `#[inline(always)]` so its loops are vectorised for the wider target.
macro_rules! avx512_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident => $inner:ident ($($arg:ident : $ty:ty),* $(,)?)) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn fast($($arg: $ty),*) {
                    $inner($($arg),*)
                }
                if $crate::simd::kernel::available() {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    unsafe { fast($($arg),*) };
                    return;
                }
            }
            $inner($($arg),*)
        }
    };
}
pub(crate) use avx512_dispatch;

/// `x · Φ(x) = x/2 · (1 + erf(x/√2))` with [`erf`].
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`, with `tanh(u) = 1 − 2 / (1 + e^{2u})`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    let u = C * (x + 0.044_715 * x * x * x);
    0.5 * x * (2.0 - 2.0 / (1.0 + exp(2.0 * u)))
}

/// erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7 in exact arithmetic, < 1e-6 in f32), branch-free so a row of it vectorises; the same
/// formula PyTorch's vectorised CPU `erf` uses.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// `e^x` as Cephes' `expf` (2ⁿ · e^r with |r| ≤ ln 2 / 2 and a degree-6 polynomial, ≈ 1 ulp), branch-free; inputs
/// are clamped to [−87, 88], where f32 stays normal.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * r
        * r
        + r
        + 1.0;
    // 2ⁿ from its bits: n + 127 + 2²³ holds the integer n + 127 in its low mantissa bits (n ∈ [−126, 127]).
    let biased = (n + (127.0 + 8_388_608.0)).to_bits() & 0x7f_ffff;
    p * f32::from_bits(biased << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_exp_and_gelu_match_the_libm_forms() {
        for i in -2000..=2000 {
            let x = i as f32 / 200.0; // −10 … 10
            let want = candle_core::cpu::erf::erf_f64(f64::from(x));
            // A&S's 1.5e-7, plus f32 rounding of `1 − poly · e^{−x²}` where that difference is small.
            assert!((f64::from(erf(x)) - want).abs() < 1e-6, "erf({x})");
            let e = f64::from(x).exp();
            assert!(((f64::from(exp(x)) - e) / e).abs() < 3e-7, "exp({x})");
            let g = 0.5
                * f64::from(x)
                * (1.0 + candle_core::cpu::erf::erf_f64(f64::from(x) / 2f64.sqrt()));
            assert!((f64::from(gelu(x)) - g).abs() < 3e-6, "gelu({x})");
            let u = (2.0 / std::f64::consts::PI).sqrt()
                * (f64::from(x) + 0.044715 * f64::from(x).powi(3));
            let gt = 0.5 * f64::from(x) * (1.0 + u.tanh());
            assert!(
                (f64::from(gelu_tanh(x)) - gt).abs() < 3e-6,
                "gelu_tanh({x})"
            );
        }
        assert_eq!(exp(-200.0), exp(-87.0));
        assert!(exp(-87.0) > 0.0);
    }
}
