//! The fast paths' one test of whether a slower mode is on.
//!
//! Debug mode, the profiler, a perturb byte, mappings kept for reuse and a
//! heap purge that wants the frees each send some frees or mallocs off
//! their fast path. Each mode keeps its own state where it lives; each also
//! sets its bit here while it is on, so that a fast path tests them all
//! with one load and one branch (`any(mask)`) rather than one of each per
//! mode: the medium free's fast path tested five globals.
//!
//! A bit is set or cleared by the code that changes its mode, with an atomic
//! read-modify-write, so that bits changed by different threads at once are
//! all kept. Readers load it relaxed, as they loaded the modes' own globals:
//! a thread may see a change a little late, which every mode allows (each
//! slow path reads the mode's own state again).

use core::sync::atomic::{AtomicU8, Ordering};

static SLOW: AtomicU8 = AtomicU8::new(0);

/// The sampling profiler is on (`prof`).
pub const PROF: u8 = 1;
/// Debug mode is on (`config`, `MEMALLOC_DEBUG`).
pub const DEBUG: u8 = 2;
/// A perturb byte is set (`config`, M_PERTURB, MALLOC_PERTURB_).
pub const PERTURB: u8 = 4;
/// Mappings are kept for reuse, to be aged by frees (`large`).
pub const KEPT: u8 = 8;
/// The heap's purge wants the frees that do not reach it (`heap`).
pub const PURGE: u8 = 16;
/// An idle thread's medium cache is being taken back (`mcache`): medium
/// mallocs take their slower path meanwhile (a few microseconds).
pub const RECLAIM: u8 = 32;

/// Sets (`on`) or clears `bit`.
pub fn set(bit: u8, on: bool) {
    if on {
        if SLOW.load(Ordering::Relaxed) & bit == 0 {
            SLOW.fetch_or(bit, Ordering::Relaxed);
        }
    } else if SLOW.load(Ordering::Relaxed) & bit != 0 {
        SLOW.fetch_and(!bit, Ordering::Relaxed);
    }
}

/// Every mode's bit: one load, for a fast path that tests two masks.
#[inline(always)]
pub fn bits() -> u8 {
    SLOW.load(Ordering::Relaxed)
}

/// Is any mode of `mask` on? One load and one test.
#[inline(always)]
pub fn any(mask: u8) -> bool {
    // (A relaxed load, then the test: two instructions where a volatile
    // read folds into one `testb` from memory, but a volatile read racing
    // with `set`'s read-modify-writes is a data race, undefined in Rust's
    // memory model whatever x86-64 does with it.)
    SLOW.load(Ordering::Relaxed) & mask != 0
}
