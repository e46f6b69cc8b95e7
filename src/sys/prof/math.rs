//! Arithmetic without libm: `exp_neg`, and `x_over_p` (a big sample's
//! weight, from a table of cubics made at compile time: about 15
//! instructions, no division).

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

/// `x_over_p`'s rows per unit of `x`.
const XP_STEPS: usize = 8;
/// `x_over_p` covers `[0, XP_END)`; above, `x / (1 - exp(-x))` is `x` to
/// within `x exp(-x)`, under 4e-13.
pub(super) const XP_END: f64 = 32.0;
const XP_ROWS: usize = 32 * XP_STEPS;

/// A row of `XP_TAB`: a cubic's coefficients (32 bytes: a row never
/// straddles two cache lines).
#[repr(C, align(32))]
struct Cubic([f64; 4]);

/// `exp(k / (3 XP_STEPS))` for `k` in 0..=3 XP_ROWS: `exp(1 / 24)` from its
/// series, then its powers, each a product (the rounding errors add up to
/// under 1e-13 of the value at the last).
const fn exp_steps() -> [f64; 3 * XP_ROWS + 1] {
    let a = 1.0 / (3 * XP_STEPS) as f64;
    let (mut e1, mut term, mut i) = (1.0, 1.0, 1);
    while i < 30 {
        term = term * a / i as f64;
        e1 += term;
        i += 1;
    }
    let mut t = [1.0; 3 * XP_ROWS + 1];
    let mut k = 1;
    while k <= 3 * XP_ROWS {
        t[k] = t[k - 1] * e1;
        k += 1;
    }
    t
}

/// `x / (1 - exp(-x))` on each row `j`, `x = (j + u) / XP_STEPS` for `u` in
/// [0, 1): the cubic in `u` through its values at `u` = 0, 1/3, 2/3 and 1
/// (Newton's divided differences, turned into powers of `u`). Its error is
/// at most `max |g| / 24 * (1 / 24)^4` (`g` is under 0.034): 5e-9,
/// against values of 1 and more.
const XP_TAB: [Cubic; XP_ROWS] = {
    let e = exp_steps();
    let mut t = [const { Cubic([0.0; 4]) }; XP_ROWS];
    let mut j = 0;
    while j < XP_ROWS {
        let mut y = [0.0; 4];
        let mut i = 0;
        while i < 4 {
            let k = 3 * j + i;
            y[i] = if k == 0 {
                1.0
            } else {
                (k as f64 / (3 * XP_STEPS) as f64) / (1.0 - 1.0 / e[k])
            };
            i += 1;
        }
        let s = 1.0 / 3.0;
        let (f01, f12, f23) = ((y[1] - y[0]) / s, (y[2] - y[1]) / s, (y[3] - y[2]) / s);
        let (f012, f123) = ((f12 - f01) / (2.0 * s), (f23 - f12) / (2.0 * s));
        let d3 = (f123 - f012) / (3.0 * s);
        t[j] = Cubic([
            y[0],
            f01 - s * f012 + 2.0 * s * s * d3,
            f012 - 3.0 * s * d3,
            d3,
        ]);
        j += 1;
    }
    t
};

/// `x / (1 - exp(-x))` for `0 <= x < XP_END`: a sample of a block counted
/// as `x` times the rate weighs the rate times this. A row of `XP_TAB`
/// and a cubic: about 15 instructions and no division, where `exp_neg`,
/// `1 - exp(-x)` and the division `n / p` took about 45 (blocks above a
/// quarter of the rate: 128 KiB at the default rate).
#[inline(always)]
pub(super) fn x_over_p(x: f64) -> f64 {
    let t = x * XP_STEPS as f64;
    // (`t` is in [0, XP_ROWS): truncated toward zero, its row.)
    let j = (t as i64 as usize).min(XP_ROWS - 1);
    let u = t - j as f64;
    let c = &XP_TAB[j].0;
    c[0] + u * (c[1] + u * (c[2] + u * c[3]))
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

    /// `x_over_p` against `x / (1 - exp(-x))` over its whole range, at
    /// every row's ends, thirds and between: within 1e-8 of the value.
    #[test]
    fn size_over_probability_table() {
        let mut worst = 0.0f64;
        for i in 0..XP_ROWS * 24 {
            let x = i as f64 / (24 * XP_STEPS) as f64 + 1e-4 * (i % 5) as f64;
            if x >= XP_END {
                break;
            }
            let want = if x == 0.0 { 1.0 } else { x / -(-x).exp_m1() };
            worst = worst.max((x_over_p(x) - want).abs() / want);
        }
        assert!(worst < 1e-8, "worst relative error {worst}");
    }
}
