//! Arithmetic without libm: `exp_neg`.

const LN2: f64 = core::f64::consts::LN_2;

/// Rows of `EXP_TAB`: `exp_neg` reduces its argument to within
/// `ln 2 / (2 EXP_ROWS)` of a multiple of `ln 2 / EXP_ROWS`.
const EXP_ROWS: usize = 64;

/// `2^(j / EXP_ROWS)` for each row `j`: `exp(j ln 2 / EXP_ROWS)` from its
/// Taylor series (30 terms, argument below ln 2: exact to the last bit),
/// at compile time.
const EXP_TAB: [f64; EXP_ROWS] = {
    let mut t = [0.0; EXP_ROWS];
    let mut j = 0;
    while j < EXP_ROWS {
        let a = j as f64 * (LN2 / EXP_ROWS as f64);
        let (mut sum, mut term, mut i) = (1.0, 1.0, 1);
        while i < 30 {
            term = term * a / i as f64;
            sum += term;
            i += 1;
        }
        t[j] = sum;
        j += 1;
    }
    t
};

/// `exp(-x)` for `x >= 0`: `-x = (k / 64) ln 2 + r` with `k` the nearest
/// integer and |r| <= ln 2 / 128, so `exp(-x) = 2^(k >> 6) 2^((k & 63) / 64)
/// exp(r)`: a power of two made from its bits, a row of `EXP_TAB` and
/// `exp r`'s series to r^5 (the next term is below 4e-17), in Estrin's
/// form: about 25 instructions and a chain of 6 dependent operations.
/// (Its series to r^16 with |r| up to ln 2 / 2, in Horner's form, was a
/// chain of 32: 12% of `bench/mthreads 16 1e6 64 64k 1M`'s time profiling,
/// in `perf`, whose blocks above 128 KiB each weigh `n / (1 - exp(-n /
/// rate))`.)
pub(super) fn exp_neg(x: f64) -> f64 {
    if x > 700.0 {
        return 0.0;
    }
    // (Below 2^16 * 64 / ln 2: the rounding through i64 is exact enough,
    // one instruction each way.)
    let k = -((x * (EXP_ROWS as f64 / LN2) + 0.5) as i64);
    let r = -x - k as f64 * (LN2 / EXP_ROWS as f64);
    let r2 = r * r;
    let p = (1.0 + r) + r2 * ((0.5 + r * (1.0 / 6.0)) + r2 * (1.0 / 24.0 + r * (1.0 / 120.0)));
    let scale = f64::from_bits(((1023 + (k >> 6)) as u64) << 52);
    p * EXP_TAB[(k & (EXP_ROWS as i64 - 1)) as usize] * scale
}

#[cfg(test)]
mod tests {
    use super::super::sampling::sampled_p;
    use super::*;

    #[test]
    fn exponential_and_probability() {
        for &x in &[0.0f64, 1e-9, 3e-5, 0.5, 1.0, 7.5, 40.0, 600.0] {
            let want = (-x).exp();
            assert!((exp_neg(x) - want).abs() <= 1e-12 * want, "exp {}", x);
        }
        // Every row of the exponential's table, at both ends and between.
        for i in 0..EXP_ROWS * 40 {
            let x = i as f64 * (LN2 / EXP_ROWS as f64 / 3.0) + 1e-3 * (i % 7) as f64;
            let want = (-x).exp();
            assert!((exp_neg(x) - want).abs() <= 1e-13 * want, "exp {}", x);
        }
        for i in 0..=1000 {
            let x = i as f64 * 0.001;
            let want = -(-x).exp_m1();
            assert!((sampled_p(x) - want).abs() <= 3e-9 * want, "p {}", x);
        }
    }
}
