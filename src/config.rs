//! Settings, read once from the environment at first use, without allocating;
//! `mallopt` changes them at run time.
//!
//! | variable                    | default  | meaning                                   |
//! |-----------------------------|----------|-------------------------------------------|
//! | `MEMALLOC_TRIM_THRESHOLD`   | 128 KiB  | free tail of the break that triggers a shrink |
//! | `MEMALLOC_TOP_PAD`          | 64 KiB   | slack added when growing, kept when shrinking |
//! | `MEMALLOC_MMAP_THRESHOLD`   | 128 KiB  | requests at or above it get their own mapping |
//! | `MEMALLOC_LARGE_CACHE`      | 64 MiB   | freed own mappings kept (up to 1 s) for reuse; 0: none |
//! | `MEMALLOC_MEDIUM_CACHE`     | 4 MiB    | bytes of freed medium blocks each thread keeps (see `mcache`) |
//! | `MEMALLOC_STATS`            | 0        | 1: print a statistics summary on stderr at exit |
//! | `MEMALLOC_TRACE`            | unset    | file: record the heap size over time (one line per change) |
//! | `MEMALLOC_DUMP`             | unset    | file: write a heap dump at exit |
//! | `MEMALLOC_VERBOSE`          | 0        | 1: print the settings at start |
//! | `MEMALLOC_DEBUG`            | 0        | 1: fill patterns, canaries, guard pages, quarantine (see `debug`) |
//! | `MEMALLOC_FAIL_AFTER`       | unset    | N: fault injection, the memory system calls after the first N fail |
//! | `MEMALLOC_FAIL_COUNT`       | unset    | K: with FAIL_AFTER, only K calls fail, later ones succeed |
//!
//! Until either threshold is set (here or by mallopt), both follow the
//! program as glibc's do: freeing a block mapped on its own raises the mmap
//! threshold to its size (at most 64 MiB, twice glibc's limit) and the trim
//! threshold to twice that.
//!
//! Sizes accept a `k`, `m` or `g` suffix. A bad value, or a `MEMALLOC_`
//! variable that is not one of these, prints a warning and is ignored.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// The largest mmap threshold mallopt accepts (glibc's
/// DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: 32 MiB).
pub const MMAP_THRESHOLD_MAX: usize = 32 << 20;

/// The largest the dynamic mmap threshold rises to: twice glibc's, so that
/// a program freeing and allocating blocks of 32 MiB (glibc's largest)
/// gets them from the heap, which keeps their pages, rather than mapping
/// and faulting them in every time.
pub const DYNAMIC_MMAP_MAX: usize = 2 * MMAP_THRESHOLD_MAX;

/// The settings in force.
pub struct Settings {
    pub trim_threshold: usize,
    pub top_pad: usize,
    pub mmap_threshold: usize,
}

static TRIM_THRESHOLD: AtomicUsize = AtomicUsize::new(128 << 10);
static TOP_PAD: AtomicUsize = AtomicUsize::new(64 << 10);
static MMAP_THRESHOLD: AtomicUsize = AtomicUsize::new(128 << 10);
static LARGE_CACHE: AtomicUsize = AtomicUsize::new(64 << 20);
static STATS: AtomicBool = AtomicBool::new(false);
/// Thresholds follow the program (see `raise_thresholds`) until set by hand.
static DYNAMIC: AtomicBool = AtomicBool::new(true);
static DEBUG: AtomicBool = AtomicBool::new(false);
static VERBOSE: AtomicBool = AtomicBool::new(false);
static TRACE: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static DUMP: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static INIT: spin::Once<()> = spin::Once::new();

/// The variables we read; any other `MEMALLOC_*` gets a warning.
const KNOWN: [&[u8]; 15] = [
    b"MEMALLOC_LARGE_CACHE",
    b"MEMALLOC_MEDIUM_CACHE",
    b"MEMALLOC_DEBUG",
    b"MEMALLOC_FAIL_AFTER",
    b"MEMALLOC_FAIL_COUNT",
    b"MEMALLOC_TRIM_THRESHOLD",
    b"MEMALLOC_TOP_PAD",
    b"MEMALLOC_MMAP_THRESHOLD",
    b"MEMALLOC_STATS",
    b"MEMALLOC_TRACE",
    b"MEMALLOC_DUMP",
    b"MEMALLOC_VERBOSE",
    // read by the test and benchmark scripts, not by the library (as is any
    // MEMALLOC_TEST_* or MEMALLOC_BENCH_*)
    b"MEMALLOC_LIB",
    b"MEMALLOC_EXPECT",
    b"MEMALLOC_KEEP_TMP",
];

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

/// Reads the environment once (idempotent; the first allocation calls it).
#[inline]
pub fn init() {
    if !INIT.is_completed() {
        INIT.call_once(read_env);
    }
}

/// Print statistics at exit?
pub fn stats() -> bool {
    init();
    STATS.load(Ordering::Relaxed)
}

/// A block of `size` bytes mapped on its own was freed: as glibc does
/// (malloc.c, "dynamic mmap threshold"), later blocks of that size come from
/// the heap instead, where freeing them costs no system call and reusing
/// them no page faults: the mmap threshold rises to `size` (up to
/// MMAP_THRESHOLD_MAX) and the trim threshold to twice that. Not once the
/// program or the environment set either threshold.
pub fn raise_thresholds(size: usize) {
    if DYNAMIC.load(Ordering::Relaxed)
        && size > MMAP_THRESHOLD.load(Ordering::Relaxed)
        && size <= DYNAMIC_MMAP_MAX
    {
        MMAP_THRESHOLD.store(size, Ordering::Relaxed);
        TRIM_THRESHOLD.store(2 * size, Ordering::Relaxed);
    }
}

/// Bytes of freed large mappings kept for reuse, at most.
pub fn large_cache() -> usize {
    init();
    LARGE_CACHE.load(Ordering::Relaxed)
}

/// Do the thresholds still follow the program (see `raise_thresholds`)?
pub fn dynamic_thresholds() -> bool {
    DYNAMIC.load(Ordering::Relaxed)
}

/// Debug mode?
#[inline]
pub fn debug() -> bool {
    init();
    DEBUG.load(Ordering::Relaxed)
}

/// Print the settings at start?
pub fn verbose() -> bool {
    init();
    VERBOSE.load(Ordering::Relaxed)
}

/// The trace file's name (NUL-terminated, from the environment), or null.
pub fn trace_path() -> *const u8 {
    init();
    TRACE.load(Ordering::Relaxed)
}

/// The exit dump file's name, or null.
pub fn dump_path() -> *const u8 {
    init();
    DUMP.load(Ordering::Relaxed)
}

fn read_flag(name: &core::ffi::CStr, slot: &AtomicBool) {
    if let Some(v) = crate::os::getenv(name) {
        match v {
            b"1" | b"yes" | b"on" | b"true" => slot.store(true, Ordering::Relaxed),
            b"0" | b"no" | b"off" | b"false" | b"" => slot.store(false, Ordering::Relaxed),
            _ => crate::report::warn(format_args!(
                "{}: bad value '{}' (use 1 or 0), ignored",
                name.to_str().unwrap_or("?"),
                core::str::from_utf8(v).unwrap_or("?")
            )),
        }
    }
}

fn read_path(name: &core::ffi::CStr, slot: &AtomicPtr<u8>) {
    if let Some(v) = crate::os::getenv(name) {
        if !v.is_empty() {
            slot.store(v.as_ptr() as *mut u8, Ordering::Relaxed);
        }
    }
}

/// Warns about `MEMALLOC_*` variables we do not know (a typo would otherwise
/// be silently ignored).
fn check_unknown() {
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: environ is a NULL-terminated array of C strings, read only.
    unsafe {
        let mut e = environ;
        if e.is_null() {
            return;
        }
        while !(*e).is_null() {
            let var = core::ffi::CStr::from_ptr(*e).to_bytes();
            let name = var.split(|&b| b == b'=').next().unwrap_or(var);
            if name.starts_with(b"MEMALLOC_")
                && !KNOWN.contains(&name)
                && !name.starts_with(b"MEMALLOC_TEST_")
                && !name.starts_with(b"MEMALLOC_BENCH_")
            {
                crate::report::warn(format_args!(
                    "unknown variable {} ignored",
                    core::str::from_utf8(name).unwrap_or("?")
                ));
            }
            e = e.add(1);
        }
    }
}

fn read_env() {
    crate::guard::init_secrets();
    check_unknown();
    read_flag(c"MEMALLOC_STATS", &STATS);
    read_flag(c"MEMALLOC_DEBUG", &DEBUG);
    read_size(
        c"MEMALLOC_FAIL_AFTER",
        &crate::os::FAIL_AFTER,
        usize::MAX - 1,
    );
    read_size(c"MEMALLOC_FAIL_COUNT", &crate::os::FAIL_COUNT, usize::MAX);
    read_flag(c"MEMALLOC_VERBOSE", &VERBOSE);
    read_path(c"MEMALLOC_TRACE", &TRACE);
    read_path(c"MEMALLOC_DUMP", &DUMP);
    read_size(c"MEMALLOC_TRIM_THRESHOLD", &TRIM_THRESHOLD, usize::MAX / 2);
    read_size(c"MEMALLOC_TOP_PAD", &TOP_PAD, 1 << 30);
    read_size(c"MEMALLOC_LARGE_CACHE", &LARGE_CACHE, 1 << 40);
    let mc = AtomicUsize::new(crate::mcache::CAP_DEFAULT);
    read_size(c"MEMALLOC_MEDIUM_CACHE", &mc, 1 << 40);
    crate::mcache::set_cap(mc.load(Ordering::Relaxed));
    read_size(
        c"MEMALLOC_MMAP_THRESHOLD",
        &MMAP_THRESHOLD,
        MMAP_THRESHOLD_MAX,
    );
}

fn read_size(name: &core::ffi::CStr, slot: &AtomicUsize, max: usize) {
    if let Some(v) = crate::os::getenv(name) {
        match parse_size(v) {
            Some(n) if n <= max => {
                if core::ptr::eq(slot, &TRIM_THRESHOLD) || core::ptr::eq(slot, &MMAP_THRESHOLD) {
                    DYNAMIC.store(false, Ordering::Relaxed);
                }
                slot.store(n, Ordering::Relaxed)
            }
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
        M_TRIM_THRESHOLD if value >= 0 => {
            DYNAMIC.store(false, Ordering::Relaxed);
            TRIM_THRESHOLD.store(value as usize, Ordering::Relaxed)
        }
        M_TOP_PAD if value >= 0 => TOP_PAD.store(value as usize, Ordering::Relaxed),
        M_MMAP_THRESHOLD if value >= 0 && value as usize <= MMAP_THRESHOLD_MAX => {
            DYNAMIC.store(false, Ordering::Relaxed);
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
