//! Counting and sampling: each thread's countdown and random draws
//! (`draw`, `draw_blocks`), the weights, the counting entry points
//! (`take`, `count`, `counted`, `count_in`) and a sample's recording
//! (`record`, `record_inline`).

use super::*;

/// The thread's next 64 random bits: a 64-bit linear congruential
/// generator (Knuth's MMIX constants; full period), two instructions where
/// xorshift64* took ten. Its low bits are weak (bit `k` repeats with
/// period `2^(k + 1)`), but a draw reads the top ones (`exp_q56`: the
/// leading zeros and the 24 bits below the leading one, which reach below
/// bit 24 only when there are 16 leading zeros or more: one draw in 65,536).
#[inline(always)]
fn rng_next(t: &mut ThreadState) -> u64 {
    if t.rng == 0 {
        seed(t);
    }
    let x = t
        .rng
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    t.rng = x;
    x
}

/// The thread's first random state: its state's address, the clock and a
/// counter, mixed (splitmix64).
#[cold]
#[inline(never)]
fn seed(t: &mut ThreadState) {
    static SEEDS: AtomicUsize = AtomicUsize::new(0x9e37_79b9);
    let mut z = (t as *mut ThreadState as u64)
        ^ (crate::os::now_ns() as u64).rotate_left(32)
        ^ SEEDS.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    t.rng = (z ^ (z >> 31)) | 1;
}

/// An interval drawn from the exponential distribution of mean `RATE`, at
/// least 1. (All in integers: `exp_q56` and one 128-bit product.)
fn draw(t: &mut ThreadState) -> i64 {
    interval(rng_next(t), RATE.load(Ordering::Relaxed))
}

/// The interval of mean `rate` (at most 2^56, `configure`) that random bits
/// `r` draw: below 2^62 (`exp_q56` is under 45 * 2^56), at least 1.
#[inline(always)]
fn interval(r: u64, rate: usize) -> i64 {
    (((exp_q56(r) as u128 * rate as u128) >> 56) as i64).max(1)
}

/// Bits of the mantissa that pick a row of `LN1P_Q56`.
const LN1P_BITS: u32 = 8;
/// Bits below them that interpolate between two rows (two rows differ by
/// less than `2^(56 - 8)`: the product fits 64 bits).
const LN1P_FRAC: u32 = 16;
const LN1P_ROWS: usize = 1 << LN1P_BITS;

/// `ln(1 + i / 256) * 2^56` for `i` in 0..=256 (rounded), from
/// `2 atanh(i / (512 + i))`'s series (|z| < 1/3, 40 terms: exact to the
/// last bit of an f64), at compile time.
const LN1P_Q56: [u64; LN1P_ROWS + 1] = {
    let mut t = [0u64; LN1P_ROWS + 1];
    let mut i = 0;
    while i <= LN1P_ROWS {
        let z = i as f64 / (2 * LN1P_ROWS + i) as f64;
        let mut p = 0.0;
        let mut k = 40;
        while k > 0 {
            k -= 1;
            p = p * z * z + 1.0 / (2 * k + 1) as f64;
        }
        t[i] = (2.0 * z * p * (1u64 << 56) as f64 + 0.5) as u64;
        i += 1;
    }
    t
};
/// `ln 2 * 2^56`, rounded.
const LN2_Q56: u64 = 0x00b1_7217_f7d1_cf7a;
const _: () = assert!(LN1P_Q56[LN1P_ROWS].abs_diff(LN2_Q56) <= 64);

/// A draw of the exponential distribution of mean 1, times 2^56, from 64
/// random bits `r`: `-ln u` for `u = r / 2^64` (`r` 0 read as 1). With `z`
/// the leading zeros of `r` and `f` the bits below its leading one (a
/// fraction in [0, 1)), `u = 2^-(z + 1) (1 + f)`, so `-ln u = (z + 1) ln 2 -
/// ln(1 + f)`: the first term is exact (`z` is geometric, as the bits are
/// fair), the second `LN1P_Q56`'s row for the top 8 bits of `f`, linearly
/// interpolated to the next row by its next 16. Linear interpolation of a
/// concave curve errs by at most `2^-16 / 8` (1.9e-6), always upward, and
/// the bits of `f` dropped by at most `2^-24`: the mean is 1 + 1e-6 or so,
/// far below what any profile can tell (the test `exponential_draws`
/// checks the mean and the distribution). About 20 instructions and no
/// floating point, where `-ln u` in floating point (a table and a degree-5
/// series) and its conversions took about 45.
#[inline(always)]
fn exp_q56(r: u64) -> u64 {
    let r = r | 1;
    let z = r.leading_zeros();
    // The bits below the leading one, at the top (two shifts: `z + 1` may
    // be 64).
    let f = (r << z) << 1;
    let i = (f >> (64 - LN1P_BITS)) as usize;
    let frac = (f << LN1P_BITS) >> (64 - LN1P_FRAC);
    // SAFETY: `i < LN1P_ROWS`, so `i + 1 <= LN1P_ROWS`.
    let (a, b) = unsafe { (*LN1P_Q56.get_unchecked(i), *LN1P_Q56.get_unchecked(i + 1)) };
    let ln1p = a + (((b - a) * frac) >> LN1P_FRAC);
    (z as u64 + 1) * LN2_Q56 - ln1p
}

/// Blocks of `size` bytes to allocate up to and including the next one
/// sampled, when each is sampled with probability `1 - exp(-size / rate)`,
/// independently: geometric, drawn as `floor(X / size) + 1` with `X` an
/// exponential interval (the block during which `X` bytes are crossed).
/// At least 1, at most 2^40 + 1. (The small classes' countdowns: see
/// `cache::prof_tick`.)
pub fn draw_blocks(size: usize) -> u64 {
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    blocks(rng_next(t), RATE.load(Ordering::Relaxed), size)
}

/// `draw_blocks` from random bits `r` at rate `rate`.
#[inline(always)]
fn blocks(r: u64, rate: usize, size: usize) -> u64 {
    let x = (exp_q56(r) as u128 * rate as u128) >> 56;
    (x as u64 / size.max(1) as u64).min(1 << 40) + 1
}

/// May an allocation that fell due be sampled now (the tables are ready and
/// this thread is not taking a sample already)?
#[inline]
pub fn can_sample() -> bool {
    // SAFETY: this thread's own state.
    READY.load(Ordering::Relaxed) && unsafe { (*thread_state()).busy == 0 }
}

/// Counts `n` bytes allocated by this thread: is this allocation sampled?
/// (A leaf while no sample is due: a load, a subtraction and a store.)
#[inline(always)]
pub fn take(n: usize) -> bool {
    if !READY.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    let left = t.left;
    t.left = left.wrapping_sub(n as i64);
    if left > n as i64 {
        return false;
    }
    take_due(t)
}

/// `take` when the count reached zero: the thread's first count (no
/// interval drawn yet: the count starts from a new one), or a sample, unless
/// this thread is taking one already or the tables are not ready (then only
/// a new interval).
#[cold]
#[inline(never)]
fn take_due(t: &mut ThreadState) -> bool {
    if t.rng == 0 {
        t.left += draw(t);
        if t.left > 0 {
            return false;
        }
    }
    t.left = draw(t);
    t.busy == 0 && READY.load(Ordering::Relaxed)
}

/// The bytes a sample of an `n`-byte block stands for: `n / P(sampled)`.
#[cfg(test)]
pub(super) fn weight(n: usize) -> u64 {
    weight_at(n, n, RATE.load(Ordering::Relaxed))
}

/// The bytes a sample of an `n`-byte block counted as `counted` bytes
/// stands for at rate `rate`: `n / (1 - exp(-counted / rate))`.
#[cfg(test)]
pub(super) fn weight_at(n: usize, counted: usize, rate: usize) -> u64 {
    // (Sizes and rates are below 2^63: through i64, as in `exponential`.)
    weight_with(n, counted, rate, inv12(rate), || 1.0 / rate as i64 as f64)
}

/// The weight of a sample of an `n`-byte block counted as `counted` bytes
/// at rate `rate` (`inv12` `2^64 / (12 rate)`, `inv` its inverse, loaded only
/// off the common case): below a
/// sixteenth of the rate and counted as its own size (most medium
/// samples), in integers: `n / p` is `rate * x / p` (`x = n / rate`), and
/// `x / (1 - exp(-x))`'s series (Bernoulli's numbers) to x^2 is
/// `rate + n / 2 + n^2 / (12 rate)`: the next term, `rate x^4 / 720`, is
/// under 2.1e-8 of the sum (blocks under 32 KiB at the default rate).
/// Computed to 1/16 of a byte before its rounding: a multiply, a 128-bit
/// multiply and shifts, about 9 instructions where the same series in
/// floating point took 17 (four conversions); else `weight_by`.
#[inline(always)]
fn weight_with(n: usize, counted: usize, rate: usize, inv12: u64, inv: impl Fn() -> f64) -> u64 {
    if n == counted && n < rate >> 4 {
        // `a = n 2^64 / (12 rate)`, below 2^64 / 192 (`n < rate / 16`);
        // `t = 16 n^2 / (12 rate)`, with 4 bits below the point.
        let a = (n as u64).wrapping_mul(inv12);
        let t = ((a as u128 * n as u128) >> 60) as u64;
        return (((rate as u64) << 4) + ((n as u64) << 3) + t + 8) >> 4;
    }
    weight_by(n, counted, rate as i64 as f64, inv())
}

/// `weight_with` above a sixteenth of the rate, or for a block counted as
/// another size: at rate `rate` (as a float), its inverse `inv` given. A
/// block counted as its own size `n`, `x = n / rate`, weighs `rate * x /
/// (1 - exp(-x))`: `x_over_p`'s table below `XP_END` (about 15
/// instructions, no division: `mthreads 4 5e4 64 64k 1M u`'s samples,
/// 60% of its blocks, took 41 instructions each in `exp_neg` alone, then a
/// division, whose latency was most of the weight's time under `perf`),
/// `n` itself above (to within `n exp(-32)`). A small request counted as
/// its class's size: `n / (1 - exp(-x))`.
#[inline(always)]
fn weight_by(n: usize, counted: usize, rate: f64, inv: f64) -> u64 {
    let c = counted as i64 as f64;
    let x = c * inv;
    if n == counted {
        if x < XP_END {
            return (rate * x_over_p(x) + 0.5) as i64 as u64;
        }
        return n as u64;
    }
    let p = sampled_p(x);
    if p <= 0.0 {
        return rate as i64 as u64;
    }
    (n as i64 as f64 / p + 0.5) as i64 as u64
}

/// `1 - exp(-x)` for `x >= 0`, the probability that a block counted as
/// `x` times the rate is sampled: below 1/4 (blocks under 128 KiB at the
/// default rate), its series to x^7 (the next term is under 2e-9 of the
/// sum), 15 instructions where `exp_neg` takes 60; above, `exp_neg`.
#[inline]
pub(super) fn sampled_p(x: f64) -> f64 {
    if x < 0.25 {
        const C: [f64; 7] = [
            1.0,
            1.0 / 2.0,
            1.0 / 6.0,
            1.0 / 24.0,
            1.0 / 120.0,
            1.0 / 720.0,
            1.0 / 5040.0,
        ];
        x * (C[0] - x * (C[1] - x * (C[2] - x * (C[3] - x * (C[4] - x * (C[5] - x * C[6]))))))
    } else {
        1.0 - exp_neg(x)
    }
}

/// Counts block `p` (not null) of `n` bytes, made on a path that counts
/// itself (medium, aligned, large), and samples it if due. Returns `p`.
/// Inlined into the medium malloc's profiling branch (`mcache::pop`): the
/// thread's count (its address, a subtraction and a store) and a test; the
/// sample is a tail call, so that the caller keeps no frame. (Counts made
/// before `READY` take no sample: `take_due` tests it.)
#[inline(always)]
pub fn count(p: *mut u8, n: usize) -> *mut u8 {
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    // (As in `count_in`: the subtraction's own flags.)
    let left = t.left;
    t.left = left.wrapping_sub(n as i64);
    if left <= n as i64 {
        return counted_due(p, n);
    }
    p
}

/// `count` for a block `p` that may be null (the allocation failed).
#[inline(never)]
pub fn counted(p: *mut u8, n: usize) -> *mut u8 {
    if p.is_null() {
        return p;
    }
    count(p, n)
}

/// `count` when the count reached zero (see `take_due`): the sample, taken
/// here (`record_inline`, the walk inlined too), with no frame of the
/// allocator's between this one and the caller's when the caller
/// tail-called it (`count`): the walk then starts in this frame, the only
/// one of ours it unwinds.
#[cold]
#[inline(never)]
fn counted_due(p: *mut u8, n: usize) -> *mut u8 {
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    // (`take_due`, with the new interval drawn after the sample: see
    // `counted_due_in`.)
    if t.rng == 0 {
        t.left += draw(t);
        if t.left > 0 {
            return opaque(p);
        }
    }
    if t.busy == 0 && READY.load(Ordering::Relaxed) {
        record_inline(p, n, n, mark_hook);
    }
    t.left = draw(t);
    opaque(p)
}

/// `p`, through an asm comment: were LLVM to see that a sample's function
/// returns its argument, the caller would keep `p` in a register of its
/// own across a call instead of a tail call.
#[inline(always)]
fn opaque(p: *mut u8) -> *mut u8 {
    let q: usize;
    // SAFETY: an asm comment: `q` is `p`'s address.
    unsafe {
        core::arch::asm!(
            "/* {0} */",
            inlateout(reg) p as usize => q,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
    q as *mut u8
}

/// `count` for a block `p` of `n` bytes popped from the thread's medium
/// cache, on the cache's own countdown `left` (`mcache::MCache::prof_left`:
/// a subtraction from the line the pop has loaded, and a test). Each
/// countdown runs over its own bytes from an exponential interval, so a
/// block of `n` bytes is sampled with probability `1 - exp(-n / rate)`
/// whichever countdown counts it (the interval is memoryless), as the
/// small classes' countdowns are too.
///
/// `mark` marks a sampled block in its header (as `set_mark`'s hook does),
/// inlined into the sample: the medium malloc passes the export layer's
/// own (a call through the hook, its load and test and the hook's frame
/// took about 8 instructions a sample more).
#[inline(always)]
pub fn count_in(p: *mut u8, n: usize, left: &mut i64, mark: impl Fn(*mut u8)) -> *mut u8 {
    // (`l <= n` rather than `l - n <= 0`: the subtraction's own flags.)
    let l = *left;
    *left = l.wrapping_sub(n as i64);
    if l <= n as i64 {
        return counted_due_in(p, n, left, mark);
    }
    p
}

/// `count_in` when the countdown reached zero: a new interval, and the
/// sample unless the countdown was not armed yet (it was 0: an interval
/// drawn is at least 1, and one used up is drawn again at once) or this
/// thread is taking a sample already or the tables are not ready. A tail
/// call, as `counted_due`.
#[cold]
#[inline(never)]
fn counted_due_in(p: *mut u8, n: usize, left: &mut i64, mark: impl Fn(*mut u8)) -> *mut u8 {
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    let armed = *left + n as i64 != 0;
    if armed && t.busy == 0 && READY.load(Ordering::Relaxed) {
        record_inline(p, n, n, mark);
    }
    // (The new interval after the sample, not before: its chain of
    // dependent arithmetic, 60-odd cycles, then ends its store while this
    // thread goes on; before the sample, the first atomic operation of the
    // sample's waited for that store. `draw` was 30% of what profiling cost
    // `bench/mthreads 1`, under `perf`. An allocation made meanwhile, by the
    // unwinder, finds this countdown still due and draws: overwritten here.)
    *left = draw(t);
    opaque(p)
}

/// Records a sample for block `p` of `n` bytes: unwinds (no lock held),
/// then files the stack and the sample.
#[cold]
#[inline(never)]
pub fn record(p: *mut u8, n: usize) {
    record_inline(p, n, n, mark_hook)
}

/// `record` for a block of `n` bytes that was counted as `counted` bytes
/// (a small request counts its class's size: see `cache::prof_tick`).
#[cold]
#[inline(never)]
pub fn record_as(p: *mut u8, n: usize, counted: usize) {
    record_inline(p, n, counted, mark_hook)
}

/// Marks sampled block `p` through `set_mark`'s hook (none: nothing, as in
/// the unit tests, whose addresses are no blocks).
#[inline(always)]
fn mark_hook(p: *mut u8) {
    let mark = MARK.load(Ordering::Relaxed);
    if mark != 0 {
        // SAFETY: MARK holds `set_mark`'s function; `p` is the block just
        // made, a heap chunk or own mapping (see "Sampled blocks"), not yet
        // returned to the program.
        unsafe { core::mem::transmute::<usize, unsafe fn(*mut u8)>(mark)(p) };
    }
}

/// `record_as`'s work, inlined into its callers (one frame less to unwind);
/// `mark(p)` marks the block (see "Sampled blocks").
#[inline(always)]
fn record_inline(p: *mut u8, n: usize, counted: usize, mark: impl Fn(*mut u8)) {
    let t = thread_state();
    // SAFETY: this thread's own state.
    unsafe { (*t).busy = 1 };
    // Not zeroed (a memset of 640 bytes a sample): only the first `got`
    // entries, which the unwinder or `backtrace` wrote, are read.
    let mut raw = [const { MaybeUninit::<usize>::uninit() }; RAW_FRAMES];
    // (0 frames: a memo replayed its walk and knows its stack, `hint`
    // below; the frames are not copied, nor the allocator's own skipped.)
    let (got, m) = unwind_here(&mut raw, true);
    let got = match got {
        Some(n) => n,
        // SAFETY: raw holds RAW_FRAMES entries.
        None => unsafe {
            backtrace(
                raw.as_mut_ptr() as *mut *mut libc::c_void,
                RAW_FRAMES as i32,
            )
        }
        .clamp(0, RAW_FRAMES as i32) as usize,
    };
    // SAFETY: the first `got` entries were written (above).
    let raw = unsafe { &*(&raw[..got] as *const [MaybeUninit<usize>] as *const [usize]) };
    let mut first = 0;
    if got != 0 {
        let (lo, hi) = (
            SELF_START.load(Ordering::Relaxed),
            SELF_END.load(Ordering::Relaxed),
        );
        while first < got && raw[first] >= lo && raw[first] < hi {
            first += 1;
        }
    }
    let frames = &raw[first..got.min(first + MAX_FRAMES)];
    // The mark first (the block is not yet the program's: no free can see
    // it before its sample is filed), so that the sample's atomic
    // operations come together: each waits for the stores before it to
    // reach the cache, and the filing's may miss it (a table's line).
    mark(p);
    // A memo that holds these frames (its walk replayed, or just kept)
    // knows their stack, once a sample filed it: the sample then skips the
    // hash and the index's lookup.
    // SAFETY: `m` (if not null) is a memo of this thread's group.
    let kept = !m.is_null() && unsafe { (*m).ip != 0 };
    let hint = if kept { unsafe { (*m).stack } } else { 0 };
    let s = if hint != 0 { hint } else { find_stack(frames) };
    // SAFETY: this thread's own state.
    let sh = &SHARD[unsafe { my_shard(&mut *t) } & (SHARDS - 1)];
    {
        let _g = sh.lock.guard();
        // (The weight under the lock, after its atomic operation, which
        // would otherwise wait for the weight's arithmetic.)
        let w = weight_with(
            n,
            counted,
            RATE.load(Ordering::Relaxed),
            INV12_RATE.load(Ordering::Relaxed),
            || f64::from_bits(INV_RATE.load(Ordering::Relaxed)),
        );
        // SAFETY: the shard's part is only touched under its lock.
        unsafe { file(sh, &mut *sh.part.get(), &TOTALS, p as usize, w, s) };
    }
    if kept {
        // SAFETY: as above.
        unsafe { (*m).stack = s };
    }
    // SAFETY: this thread's own state.
    unsafe { (*t).busy = 0 };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exp_q56` against `-ln u` computed in floating point, over the whole
    /// range of its random bits (every row of its table, both ends and
    /// between; leading zeros 0 to 63).
    #[test]
    fn exponential_of_bits() {
        let mut worst = 0.0f64;
        for z in 0..64u32 {
            for i in 0..LN1P_ROWS as u64 * 8 {
                // The leading one at bit 63 - z, then the row and fraction.
                let f = (i << 53) + (i * 0x9e37_79b9) % (1 << 40);
                let r = (1u64 << 63 | f >> 1) >> z;
                let u = (r | 1) as f64 / 2f64.powi(64);
                let want = -u.ln();
                let got = exp_q56(r) as f64 / 2f64.powi(56);
                worst = worst.max((got - want).abs());
            }
        }
        assert!(worst < 2.5e-6, "worst error {worst}");
        // 0 reads as 1 (2^-64: the largest draw), under 45.
        assert_eq!(exp_q56(0), exp_q56(1));
        assert!(exp_q56(0) < 45 << 56);
    }

    /// The intervals `draw` makes, from the thread's own random numbers:
    /// their mean is the rate (within 4 standard errors of 2^22 draws:
    /// 0.2%), and the fraction below `q` times the rate is `1 - exp(-q)`
    /// (within 4 standard errors) for quantiles from 0.001 to 10. And
    /// `draw_blocks`: a geometric count of mean `1 / (1 - exp(-size /
    /// rate))`.
    #[test]
    fn exponential_draws() {
        // A state of the test's own (the tests share the process's
        // settings, and each its thread's state).
        let mut t = ThreadState {
            left: 0,
            rng: 0,
            busy: 0,
            memo: 0,
            shard: 0,
        };
        const RATE: usize = 1 << 20;
        const N: usize = 1 << 22;
        let qs = [0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 4.0, 10.0];
        let mut below = [0usize; 8];
        let mut sum = 0.0f64;
        for _ in 0..N {
            let x = interval(rng_next(&mut t), RATE) as f64 / RATE as f64;
            sum += x;
            for (k, q) in qs.iter().enumerate() {
                below[k] += (x < *q) as usize;
            }
        }
        let mean = sum / N as f64;
        assert!((mean - 1.0).abs() < 4.0 / (N as f64).sqrt(), "mean {mean}");
        for (k, q) in qs.iter().enumerate() {
            let p = 1.0 - (-q).exp();
            let got = below[k] as f64 / N as f64;
            let tol = 4.0 * (p * (1.0 - p) / N as f64).sqrt();
            assert!((got - p).abs() < tol, "P(x < {q}): {got}, want {p}");
        }
        for size in [16, 4096, 1 << 17] {
            let mut sum = 0u64;
            const M: u64 = 1 << 20;
            for _ in 0..M {
                sum += blocks(rng_next(&mut t), RATE, size);
            }
            let p = -(-(size as f64) / RATE as f64).exp_m1();
            let (mean, want) = (sum as f64 / M as f64, 1.0 / p);
            let sd = ((1.0 - p) / (p * p) / M as f64).sqrt();
            assert!(
                (mean - want).abs() < 4.0 * sd,
                "blocks of {size}: {mean}, want {want}"
            );
        }
    }

    #[test]
    fn weights_are_size_over_probability() {
        // Small blocks stand for about the rate; big ones for themselves.
        assert!((weight_at(1, 1, 1000) as i64 - 1000).abs() <= 1);
        assert_eq!(weight_at(1_000_000, 1_000_000, 1000), 1_000_000);
        let w = weight_at(1000, 1000, 1000) as f64;
        assert!((w - 1000.0 / (1.0 - (-1.0f64).exp())).abs() < 1.0);
        // Both forms (a block counted as its own size below a quarter of
        // the rate, any other) against `n / (1 - exp(-x))`.
        let rate = 512 << 10;
        let sizes = [1usize, 100, 4096, 20_000, 32_767, 32_768, 32_769, 65_536];
        // (And the table's: a quarter of the rate up to 32 times it, and above.)
        let big = [131_071usize, 131_072, 131_073, 400_000, 1 << 20, 3_000_001];
        let huge = [16usize << 20, (32 << 19) - 1, 32 << 19, 40 << 20];
        for n in sizes.into_iter().chain(big).chain(huge) {
            for counted in [n, n + 16, 4096] {
                let x = counted as f64 / rate as f64;
                let want = n as f64 / -(-x).exp_m1();
                let got = weight_at(n, counted, rate) as f64;
                assert!((got - want).abs() <= 0.5 + 1e-9 * want, "{} {}", n, counted);
            }
        }
    }
}
