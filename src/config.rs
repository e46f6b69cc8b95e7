//! Settings, read once from the environment at first use, without allocating;
//! `mallopt` changes them at run time.
//!
//! | variable                    | default  | meaning                                   |
//! |-----------------------------|----------|-------------------------------------------|
//! | `MEMALLOC_TRIM_THRESHOLD`   | 128 KiB  | free tail of the break that triggers a shrink |
//! | `MEMALLOC_TOP_PAD`          | 64 KiB   | slack added when growing, kept when shrinking |
//! | `MEMALLOC_MMAP_THRESHOLD`   | 128 KiB  | requests at or above it get their own mapping |
//!
//! Sizes accept a `k`, `m` or `g` suffix. A bad value prints a warning and the
//! default is used.

use core::sync::atomic::{AtomicUsize, Ordering};

/// The largest mmap threshold mallopt accepts (glibc's
/// DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: 32 MiB).
pub const MMAP_THRESHOLD_MAX: usize = 32 << 20;

/// The settings in force.
pub struct Settings {
    pub trim_threshold: usize,
    pub top_pad: usize,
    pub mmap_threshold: usize,
}

static TRIM_THRESHOLD: AtomicUsize = AtomicUsize::new(128 << 10);
static TOP_PAD: AtomicUsize = AtomicUsize::new(64 << 10);
static MMAP_THRESHOLD: AtomicUsize = AtomicUsize::new(128 << 10);
static INIT: spin::Once<()> = spin::Once::new();

/// The settings, reading the environment on the first call.
#[inline]
pub fn get() -> Settings {
    init();
    Settings {
        trim_threshold: TRIM_THRESHOLD.load(Ordering::Relaxed),
        top_pad: TOP_PAD.load(Ordering::Relaxed),
        mmap_threshold: MMAP_THRESHOLD.load(Ordering::Relaxed),
    }
}

/// The mmap threshold (read on every large request).
#[inline]
pub fn mmap_threshold() -> usize {
    init();
    MMAP_THRESHOLD.load(Ordering::Relaxed)
}

#[inline]
fn init() {
    if !INIT.is_completed() {
        INIT.call_once(read_env);
    }
}

fn read_env() {
    read_size(c"MEMALLOC_TRIM_THRESHOLD", &TRIM_THRESHOLD, usize::MAX / 2);
    read_size(c"MEMALLOC_TOP_PAD", &TOP_PAD, 1 << 30);
    read_size(
        c"MEMALLOC_MMAP_THRESHOLD",
        &MMAP_THRESHOLD,
        MMAP_THRESHOLD_MAX,
    );
}

fn read_size(name: &core::ffi::CStr, slot: &AtomicUsize, max: usize) {
    if let Some(v) = crate::os::getenv(name) {
        match parse_size(v) {
            Some(n) if n <= max => slot.store(n, Ordering::Relaxed),
            _ => crate::report::warn(format_args!(
                "{}: bad value '{}', using the default {}",
                name.to_str().unwrap_or("?"),
                core::str::from_utf8(v).unwrap_or("?"),
                slot.load(Ordering::Relaxed)
            )),
        }
    }
}

/// Parses `123`, `64k`, `2M`, `1g`.
pub fn parse_size(s: &[u8]) -> Option<usize> {
    let (digits, mult) = match s.last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1usize << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: usize = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((d - b'0') as usize)?;
    }
    n.checked_mul(mult)
}

/// mallopt parameters (glibc's <malloc.h>).
pub const M_TRIM_THRESHOLD: i32 = -1;
pub const M_TOP_PAD: i32 = -2;
pub const M_MMAP_THRESHOLD: i32 = -3;
pub const M_MMAP_MAX: i32 = -4;
pub const M_CHECK_ACTION: i32 = -5;
pub const M_PERTURB: i32 = -6;
pub const M_ARENA_TEST: i32 = -7;
pub const M_ARENA_MAX: i32 = -8;
pub const M_MXFAST: i32 = 1;

/// mallopt: 1 on success, 0 on a bad parameter or value (glibc's contract).
pub fn mallopt(param: i32, value: i32) -> i32 {
    init();
    match param {
        M_TRIM_THRESHOLD if value >= 0 => TRIM_THRESHOLD.store(value as usize, Ordering::Relaxed),
        M_TOP_PAD if value >= 0 => TOP_PAD.store(value as usize, Ordering::Relaxed),
        M_MMAP_THRESHOLD if value >= 0 && value as usize <= MMAP_THRESHOLD_MAX => {
            MMAP_THRESHOLD.store(value as usize, Ordering::Relaxed)
        }
        // Accepted for compatibility; memalloc has no fastbins, arenas or
        // perturb byte of glibc's kind.
        M_MMAP_MAX | M_CHECK_ACTION | M_PERTURB | M_ARENA_TEST | M_ARENA_MAX | M_MXFAST => {}
        _ => return 0,
    }
    1
}

#[cfg(test)]
mod tests {
    use super::parse_size;
    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"123"), Some(123));
        assert_eq!(parse_size(b"64k"), Some(65536));
        assert_eq!(parse_size(b"2M"), Some(2 << 20));
        assert_eq!(parse_size(b"1g"), Some(1 << 30));
        assert_eq!(parse_size(b""), None);
        assert_eq!(parse_size(b"k"), None);
        assert_eq!(parse_size(b"12x"), None);
        assert_eq!(parse_size(b"99999999999999999999999"), None);
    }
}
