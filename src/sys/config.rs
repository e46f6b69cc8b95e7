//! Settings, read once from the environment at first use, without allocating;
//! `mallopt` changes them at run time.
//!
//! | variable                    | default  | meaning                                   |
//! |-----------------------------|----------|-------------------------------------------|
//! | `MEMALLOC_TRIM_THRESHOLD`   | 128 KiB  | free tail of the break that triggers a shrink |
//! | `MEMALLOC_TOP_PAD`          | 64 KiB   | slack added when growing, kept when shrinking |
//! | `MEMALLOC_MMAP_THRESHOLD`   | 128 KiB  | requests at or above it get their own mapping |
//! | `MEMALLOC_LARGE_CACHE`      | 64 MiB   | freed own mappings kept (up to 1 s) for reuse; 0: none |
//! | `MEMALLOC_MEDIUM_CACHE`     | 4 MiB    | bytes of freed medium blocks each thread keeps (the default: more above 256 KiB with few threads; see `mcache`) |
//! | `MEMALLOC_STATS`            | 0        | 1: print a statistics summary on stderr at exit |
//! | `MEMALLOC_TRACE`            | unset    | file: record the heap size over time (one line per change) |
//! | `MEMALLOC_DUMP`             | unset    | file: write a heap dump at exit |
//! | `MEMALLOC_VERBOSE`          | 0        | 1: print the settings at start |
//! | `MEMALLOC_DEBUG`            | 0        | 1: fill patterns, canaries, guard pages, quarantine (see `debug`) |
//! | `MEMALLOC_FAIL_AFTER`       | unset    | N: fault injection, the memory system calls after the first N fail |
//! | `MEMALLOC_FAIL_COUNT`       | unset    | K: with FAIL_AFTER, only K calls fail, later ones succeed |
//! | `MEMALLOC_PROF`             | 0        | 1: sampling heap profiler (see `prof`); not with DEBUG |
//! | `MEMALLOC_PROF_RATE`        | 512 KiB  | mean bytes allocated between two samples |
//! | `MEMALLOC_PROF_OUT`         | memalloc-prof | prefix of the profile files written at exit |
//!
//! Until either threshold is set (here or by mallopt), both follow the
//! program as glibc's do: freeing a block mapped on its own raises the mmap
//! threshold to its size (at most 64 MiB, twice glibc's limit) and the trim
//! threshold to twice that.
//!
//! Sizes accept a `k`, `m` or `g` suffix. A bad value, or a `MEMALLOC_`
//! variable that is not one of these, prints a warning and is ignored.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering};

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
const KNOWN: [&[u8]; 19] = [
    b"MEMALLOC_LARGE_CACHE",
    b"MEMALLOC_MEDIUM_CACHE",
    b"MEMALLOC_IDLE_MS",
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
    b"MEMALLOC_PROF",
    b"MEMALLOC_PROF_RATE",
    b"MEMALLOC_PROF_OUT",
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

/// Debug mode, without the first-use check: for a caller given a block of
/// ours (whose allocation read the environment) or null. One byte load.
#[inline(always)]
pub fn debug_ready() -> bool {
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
    crate::gate::set(crate::gate::DEBUG, DEBUG.load(Ordering::Relaxed));
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
    read_size(c"MEMALLOC_TOP_PAD", &TOP_PAD, TOP_PAD_MAX);
    read_perturb();
    read_size(c"MEMALLOC_LARGE_CACHE", &LARGE_CACHE, 1 << 40);
    read_size(c"MEMALLOC_MEDIUM_CACHE", &MEDIUM_CACHE, 1 << 40);
    read_size(c"MEMALLOC_IDLE_MS", &IDLE_MS, 1 << 30);
    read_size(
        c"MEMALLOC_MMAP_THRESHOLD",
        &MMAP_THRESHOLD,
        MMAP_THRESHOLD_MAX,
    );
    read_prof();
}

/// MEMALLOC_PROF, MEMALLOC_PROF_RATE, MEMALLOC_PROF_OUT, for `prof`.
fn read_prof() {
    let on = AtomicBool::new(false);
    read_flag(c"MEMALLOC_PROF", &on);
    let rate = AtomicUsize::new(512 << 10);
    read_size(c"MEMALLOC_PROF_RATE", &rate, 1 << 40);
    let out = AtomicPtr::new(core::ptr::null_mut());
    read_path(c"MEMALLOC_PROF_OUT", &out);
    let mut on = on.load(Ordering::Relaxed);
    if on && DEBUG.load(Ordering::Relaxed) {
        crate::report::warn(format_args!("MEMALLOC_PROF is ignored with MEMALLOC_DEBUG"));
        on = false;
    }
    crate::prof::configure(
        on,
        rate.load(Ordering::Relaxed),
        out.load(Ordering::Relaxed),
    );
}

/// glibc's MALLOC_PERTURB_ (its tunable glibc.malloc.perturb): a byte,
/// 0-255, as M_PERTURB sets it. Programs' test suites set it.
fn read_perturb() {
    let name = c"MALLOC_PERTURB_";
    if let Some(v) = crate::os::getenv(name) {
        match parse_size(v) {
            Some(b) if b <= 255 => set_perturb(b as i32),
            _ => crate::report::warn(format_args!(
                "MALLOC_PERTURB_: bad value '{}' (use 0-255), ignored",
                core::str::from_utf8(v).unwrap_or("?")
            )),
        }
    }
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

/// glibc's largest M_MXFAST (malloc.c MAX_FAST_SIZE on 64-bit).
const MXFAST_MAX: usize = 160;

/// mallopt, with glibc 2.36's return values (malloc.c `__libc_mallopt` and
/// its `do_set_*` helpers; measured on Debian 12): 1 for every parameter and
/// value, even a parameter it does not know, except M_MXFAST above 160
/// bytes, which is 0. Where glibc's helper takes a `size_t`, a negative
/// value is a huge size, as there: `M_TRIM_THRESHOLD -1` never trims and
/// `M_MMAP_THRESHOLD -1` never maps a block on its own.
///
/// | parameter | here |
/// |---|---|
/// | M_TRIM_THRESHOLD, M_MMAP_THRESHOLD | applied, and stop the thresholds following the program |
/// | M_TOP_PAD | applied (above 1 GiB, as 1 GiB: the most MEMALLOC_TOP_PAD takes) |
/// | M_MMAP_MAX | applied: no block gets a mapping of its own while that many are live (0 or less: never) |
/// | M_PERTURB | applied: the fill bytes of glibc's `alloc_perturb` and `free_perturb` |
/// | M_MXFAST, M_CHECK_ACTION, M_ARENA_TEST, M_ARENA_MAX | accepted and ignored: no fastbins or arenas here, and misuse always aborts |
pub fn mallopt(param: i32, value: i32) -> i32 {
    init();
    // glibc's size_t conversion of an int: -1 is SIZE_MAX.
    let size = value as isize as usize;
    match param {
        M_TRIM_THRESHOLD => {
            DYNAMIC.store(false, Ordering::Relaxed);
            TRIM_THRESHOLD.store(size, Ordering::Relaxed)
        }
        M_TOP_PAD => {
            DYNAMIC.store(false, Ordering::Relaxed);
            TOP_PAD.store(size.min(TOP_PAD_MAX), Ordering::Relaxed)
        }
        M_MMAP_THRESHOLD => {
            DYNAMIC.store(false, Ordering::Relaxed);
            MMAP_THRESHOLD.store(size, Ordering::Relaxed)
        }
        M_MMAP_MAX => {
            DYNAMIC.store(false, Ordering::Relaxed);
            MMAP_MAX.store(value, Ordering::Relaxed)
        }
        M_PERTURB => set_perturb(value),
        M_MXFAST if size > MXFAST_MAX => return 0,
        _ => {}
    }
    1
}

/// glibc's perturb byte (M_PERTURB, MALLOC_PERTURB_): 0 is off.
static PERTURB: AtomicI32 = AtomicI32::new(0);

/// The live mappings of their own that blocks may have (M_MMAP_MAX; glibc's
/// default).
static MMAP_MAX: AtomicI32 = AtomicI32::new(65536);

/// The most M_TOP_PAD and MEMALLOC_TOP_PAD take.
const TOP_PAD_MAX: usize = 1 << 30;

fn set_perturb(value: i32) {
    PERTURB.store(value, Ordering::Relaxed);
    crate::gate::set(crate::gate::PERTURB, value != 0);
}

/// The perturb byte in force, 0 when off. Blocks that do not come through a
/// thread cache's bins or zones (which, like glibc's tcache, hand back what
/// they hold unfilled) are filled with its complement when allocated, except
/// by calloc, and with the byte itself when freed, as glibc does.
#[inline]
pub fn perturb() -> i32 {
    PERTURB.load(Ordering::Relaxed)
}

/// glibc's `alloc_perturb`: with a perturb byte set, fills the `n` bytes of
/// new block `p` with its complement. (Not on calloc's path.)
///
/// # Safety
/// `p` is null or holds `n` writable bytes.
#[inline]
pub unsafe fn perturb_alloc(p: *mut u8, n: usize) -> *mut u8 {
    let b = perturb();
    if b != 0 && !p.is_null() {
        core::ptr::write_bytes(p, (b ^ 0xff) as u8, n);
    }
    p
}

/// glibc's `free_perturb`: with a perturb byte set, fills the `n` bytes of
/// freed block `p` with it, before the block goes back.
///
/// # Safety
/// `p` holds `n` writable bytes that nobody reads as live data any more.
#[inline]
pub unsafe fn perturb_free(p: *mut u8, n: usize) {
    let b = perturb();
    if b != 0 {
        core::ptr::write_bytes(p, b as u8, n);
    }
}

/// The default cap of one thread's cache of medium blocks (`mcache`).
pub const MEDIUM_CACHE_DEFAULT: usize = 4 << 20;
static MEDIUM_CACHE: AtomicUsize = AtomicUsize::new(MEDIUM_CACHE_DEFAULT);

/// The cap of one thread's cache of medium blocks, in bytes
/// (`MEMALLOC_MEDIUM_CACHE`; 0: no caches).
#[inline]
pub fn medium_cache() -> usize {
    MEDIUM_CACHE.load(Ordering::Relaxed)
}

/// The default of `MEMALLOC_IDLE_MS` (`idle_ns`).
pub const IDLE_MS_DEFAULT: usize = 1000;
static IDLE_MS: AtomicUsize = AtomicUsize::new(IDLE_MS_DEFAULT);

/// How long a thread must go without a medium cache refill, flush or
/// allocation before another thread takes its medium cache back, in ns
/// (`MEMALLOC_IDLE_MS`; 0: never).
#[inline]
pub fn idle_ns() -> usize {
    IDLE_MS.load(Ordering::Relaxed) * 1_000_000
}

/// How many mappings of their own blocks may have at once (M_MMAP_MAX).
#[inline]
pub fn mmap_max() -> i32 {
    MMAP_MAX.load(Ordering::Relaxed)
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
