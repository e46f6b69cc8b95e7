//! What the layers record as they work, for the layers above to read.
//!
//! The heap, the large blocks and the thread caches each keep their own
//! figures under their own locks; here they publish the few that another
//! layer needs, so that no layer reads one above it (`stats` reads them all;
//! the heap reads the number of thread caches): bytes in use in the heap and
//! in large blocks, their peak, allocation counts, and the `MEMALLOC_TRACE`
//! file's lines.
//!
//! Invariants: each figure is a relaxed mirror of its owner's, stored by the
//! owner after every change (a reader sees a recent value, not a snapshot of
//! all of them); `PEAK >= HEAP_IN_USE + LARGE_BYTES` after every rise.
//! Cost: a relaxed store, a load and a compare for the peak; with a trace,
//! one `write(2)` per change of the heap's size or of the large blocks.

use crate::os;
use crate::report::StackBuf;
use core::fmt::Write;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// Bytes of heap chunks in use (zones counted whole).
static HEAP_IN_USE: AtomicUsize = AtomicUsize::new(0);
/// Bytes mapped for blocks mapped on their own.
static LARGE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Bytes of heap regions (break + mmap'd), as of the last trace line.
static HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);
/// The most bytes ever held in heap chunks plus large mappings: an upper
/// bound of the bytes in use at any moment.
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Live thread caches: the threads that allocated a small block and have not
/// exited.
pub static THREADS: AtomicUsize = AtomicUsize::new(0);
/// Allocations served by the TLSF heap for requests above the small classes.
pub static MEDIUM_ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Blocks mapped on their own.
pub static LARGE_ALLOCS: AtomicUsize = AtomicUsize::new(0);

/// Bytes of heap chunks in use (a relaxed snapshot).
#[inline]
pub fn heap_in_use() -> usize {
    HEAP_IN_USE.load(Ordering::Relaxed)
}

/// The heap's bytes in use fell to `n`.
#[inline]
pub fn set_heap_in_use(n: usize) {
    HEAP_IN_USE.store(n, Ordering::Relaxed);
}

/// The heap's bytes in use rose to `n`: a new peak, perhaps.
#[inline]
pub fn heap_in_use_rose(n: usize) {
    set_heap_in_use(n);
    note_peak(n + large_bytes());
}

/// Bytes mapped for large blocks now.
#[inline]
pub fn large_bytes() -> usize {
    LARGE_BYTES.load(Ordering::Relaxed)
}

/// The large blocks' bytes fell to `n`.
#[inline]
pub fn set_large_bytes(n: usize) {
    LARGE_BYTES.store(n, Ordering::Relaxed);
}

/// The large blocks' bytes rose to `n`: a new peak, perhaps.
#[inline]
pub fn large_bytes_rose(n: usize) {
    set_large_bytes(n);
    note_peak(n + heap_in_use());
}

/// Keeps the maximum of the totals of heap plus large bytes seen.
#[inline]
fn note_peak(total: usize) {
    if total > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(total, Ordering::Relaxed);
    }
}

/// The peak of heap plus large bytes so far.
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Do two threads or more have a cache? Then the heap does not ask the
/// kernel about pages while it holds its lock (see `Tlsf::resident_cut`).
#[inline]
pub fn several_threads() -> bool {
    THREADS.load(Ordering::Relaxed) > 1
}

// ---- MEMALLOC_TRACE ----------------------------------------------------------

static TRACE_FD: AtomicI32 = AtomicI32::new(-1);
static TRACE_T0: AtomicUsize = AtomicUsize::new(0);

/// Starts the trace on `fd`, opened for appending (`stats::trace_open`).
pub fn trace_start(fd: i32) {
    TRACE_T0.store(os::now_ns(), Ordering::Relaxed);
    TRACE_FD.store(fd, Ordering::Relaxed);
}

/// Is a trace being written?
pub fn tracing() -> bool {
    TRACE_FD.load(Ordering::Relaxed) >= 0
}

/// Records the heap's size after a change: `ns heap_bytes large_bytes
/// in_use`, one line, one write (atomic with O_APPEND).
pub fn trace_heap(heap_bytes: usize) {
    HEAP_BYTES.store(heap_bytes, Ordering::Relaxed);
    trace_event();
}

/// Records a change of the large blocks (or of the heap, via trace_heap).
pub fn trace_event() {
    let fd = TRACE_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let large = large_bytes();
    let t = os::now_ns().saturating_sub(TRACE_T0.load(Ordering::Relaxed));
    let mut b = StackBuf::<128>::new(-1);
    let _ = writeln!(
        b,
        "{} {} {} {}",
        t,
        HEAP_BYTES.load(Ordering::Relaxed),
        large,
        heap_in_use() + large
    );
    os::write_all(fd, b.as_bytes());
}
