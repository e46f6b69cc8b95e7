//! memalloc: a malloc replacement for Linux.
//!
//! The modules form layers, each in its folder of `src/`, declared below
//! from the bottom up: each module uses only the modules declared before it
//! (the layers below its own, and the modules before it in its layer).
//! `scripts/check_layers.py` holds the table of layers and fails when an
//! import points up (stage k of `scripts/test.sh`); docs/design.md draws it.
//! What a lower layer needs from a higher one is an interface the lower
//! layer owns: `events` for figures, closures for `Heap::check`'s zone test
//! and `Heap::for_each_zone`, `tls::thread_slot!` for the thread slot.
//!
//! Nothing in this crate allocates through Rust's allocator: in the cdylib
//! that would call our own exported malloc.
//!
//! The library itself is `no_std` (core and libc only). Linking std would
//! bring its panic and backtrace machinery (gimli, addr2line, miniz: about
//! 200 KiB of text) and a dependency on libgcc_s.so.1 for unwinding, which
//! every preloaded process would then map and relocate: about 0.2 MiB of
//! resident memory for nothing, since we never unwind. The unit tests
//! (`cfg(test)`) and the `gd-tls` feature (a std `thread_local!`) keep std.
//!
//! One crate, two uses (see `docs/rust.md`):
//! - a Rust program takes [`MemAlloc`] as its `#[global_allocator]` and uses
//!   the safe API of [`api`] (stats, check, dump, [`Pool`]). The C names are
//!   exported only with the `override` feature, so by default the C
//!   libraries the program links keep glibc's malloc;
//! - `capi/` builds libmemalloc.so and libmemalloc.a from this crate,
//!   `no_std` and with `override`, and holds the panic handler (an rlib
//!   linked by a std program must not define one).
//!
//! The internal modules are `pub` for `capi/` and the tests, and
//! `#[doc(hidden)]`: the API is [`api`], re-exported at the crate root.

#![cfg_attr(not(any(test, feature = "std", feature = "gd-tls")), no_std)]
#![warn(missing_docs)]
#![allow(missing_docs)] // accessors and ABI shims document themselves by name

// ---- sys/: the process and the OS -----------------------------------------
// os: every system call, and the clocks
#[doc(hidden)]
#[path = "sys/os.rs"]
pub mod os;
// gate: the one word that tells the fast paths a slower mode is on
#[doc(hidden)]
#[path = "sys/gate.rs"]
pub mod gate;
// guard: the per-process keys of the integrity checks
#[doc(hidden)]
#[path = "sys/guard.rs"]
pub mod guard;
// lock: the futex mutex
#[doc(hidden)]
#[path = "sys/lock.rs"]
pub mod lock;
// report: output without allocating; the fatal path
#[doc(hidden)]
#[path = "sys/report.rs"]
pub mod report;
// prof: the sampling heap profiler (MEMALLOC_PROF=1): samples, stacks, reports
#[doc(hidden)]
#[path = "sys/prof.rs"]
pub mod prof;
// config: environment variables and mallopt
#[doc(hidden)]
#[path = "sys/config.rs"]
pub mod config;
// events: counters, peak and trace that lower layers publish for higher ones
#[doc(hidden)]
#[path = "sys/events.rs"]
pub mod events;
// tls: how the initial-exec thread slot is declared
#[doc(hidden)]
#[path = "sys/tls.rs"]
pub mod tls;

// ---- heap/: the general heap ----------------------------------------------
// chunk: chunk header accessors
#[doc(hidden)]
#[path = "heap/chunk.rs"]
pub mod chunk;
// region: region descriptors
#[doc(hidden)]
#[path = "heap/region.rs"]
pub mod region;
// tlsf: two-level segregated fit over header-linked chunks (O(1))
#[doc(hidden)]
#[path = "heap/tlsf.rs"]
pub mod tlsf;
// zonemap: which 64 KiB granules are ours and zones; what free needs of a zone
#[doc(hidden)]
#[path = "heap/zonemap.rs"]
pub mod zonemap;
// pool: TLSF heaps over caller memory
#[doc(hidden)]
#[path = "heap/pool.rs"]
pub mod pool;
// heap: the shared heap: one TLSF index over the break and mmap'd regions
#[doc(hidden)]
#[path = "heap/heap.rs"]
pub mod heap;
// large: blocks at or above the mmap threshold, mapped on their own
#[doc(hidden)]
#[path = "heap/large.rs"]
pub mod large;
// debug: debug mode's blocks: fills, canaries, guard pages, quarantine
#[doc(hidden)]
#[path = "heap/debug.rs"]
pub mod debug;

// ---- small/: small blocks -------------------------------------------------
// cache: size classes, zones, per-thread caches (no lock)
#[doc(hidden)]
#[path = "small/cache.rs"]
pub mod cache;
// mcache: per-thread caches of medium chunks (4 KiB-1 MiB classes, no lock)
#[doc(hidden)]
#[path = "small/mcache.rs"]
pub mod mcache;

// ---- stats/: figures about the layers below -------------------------------
// stats: statistics, mallinfo, malloc_info, the heap dump, the exit report
#[doc(hidden)]
#[path = "stats/stats.rs"]
pub mod stats;

// ---- abi/: the C ABI ------------------------------------------------------
// export: glibc's allocator family and the extensions: argument rules, errno
#[doc(hidden)]
#[path = "abi/export.rs"]
pub mod export;
// api: the Rust API: MemAlloc (GlobalAlloc), stats, check, dump, Pool
#[path = "abi/api.rs"]
pub mod api;

#[cfg(feature = "std")]
pub use api::dump_to;
pub use api::{check, dump, stats, MemAlloc, Pool, Stats};

// Without std nothing asks the linker for libc (the libc crate leaves that to
// std): name it, so the library records its NEEDED entry and versioned
// symbols (pthread_atfork, say, comes from libc_nonshared.a).
#[cfg(not(any(test, feature = "std", feature = "gd-tls")))]
#[link(name = "c")]
extern "C" {}

/// Runs when the library is loaded: checks the page size, reads the
/// environment, and registers the fork handlers (pthread_atfork allocates, so
/// it is called here, never under a lock).
#[cfg(not(test))]
#[ctor::ctor]
fn memalloc_init() {
    os::check_page_size();
    config::init();
    if config::verbose() {
        let s = config::get();
        report::note(format_args!(
            "settings: trim_threshold {} top_pad {} mmap_threshold {} stats {}",
            s.trim_threshold,
            s.top_pad,
            s.mmap_threshold,
            config::stats() as u8
        ));
    }
    // Out of memory, the heap first unmaps the freed large mappings kept.
    heap::set_relief(large::trim);
    // Its mapped regions grow into the freed large mappings kept, first.
    heap::set_adopt(large::take_for_heap);
    // A sampled small block of 1 KiB or more comes from the medium cache.
    cache::set_medium_sample(mcache::sample);
    stats::trace_open();
    // A sampled block is marked in its header, so that its free is seen.
    prof::set_mark(export::mark_sampled);
    prof::prime();
    stats::register_exit();
    // SAFETY: the handlers only take and release our locks.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
}

// Fork.
//
// While the process has only ever had one thread (glibc's
// `__libc_single_threaded`, cleared by the first pthread_create, before the
// new thread exists), no lock is taken around fork, as glibc's own malloc
// does: the only thread that could hold one is the forking thread itself, and
// it forks from inside the allocator only from a signal handler that
// interrupted a call. Taking the lock there would wait for ever on a call
// that cannot go on until the handler returns. Child and parent both go on
// with the interrupted call where it stopped; as with glibc, that child may
// rely only on async-signal-safe functions until it execs or exits.
//
// With several threads, the prepare handler takes glibc's stream list lock
// (`_IO_list_lock`) before the allocator's locks. glibc's fork takes the same
// lock only after every prepare handler has run, and a thread in fflush(NULL),
// fopen or fclose holds it while it calls malloc or free: had we taken our
// locks first, the forking thread would wait for the stream list lock while
// that thread waited for ours. In this order, a thread that holds the list
// lock and waits for an allocator lock waits for a thread that is not
// waiting for the list lock (no allocator path uses stdio), so every wait
// ends. The list lock is recursive: glibc's fork takes it again, drops it
// once in the parent before our parent handler runs, and resets it in the
// child (`_IO_list_resetlock`) before our child handler runs, which therefore
// leaves it alone.

#[cfg(not(test))]
extern "C" {
    /// glibc (2.32 and later): nonzero while the process has one thread.
    static __libc_single_threaded: u8;
    fn _IO_list_lock();
    fn _IO_list_unlock();
}

/// Whether the current fork took the locks (decided by the prepare handler,
/// read by the parent and child handlers of the same fork).
#[cfg(not(test))]
static FORK_LOCKED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Before fork: take every allocator lock, so the child never inherits a lock
/// held by a thread that does not exist there (with several threads only).
#[cfg(not(test))]
extern "C" fn fork_prepare() {
    // SAFETY: a byte that glibc only ever writes before a thread exists.
    let single =
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(__libc_single_threaded)) } != 0;
    if single {
        FORK_LOCKED.store(false, core::sync::atomic::Ordering::Relaxed);
        return;
    }
    // SAFETY: glibc's recursive stream list lock; released in fork_parent.
    unsafe { _IO_list_lock() };
    prof::lock_all();
    debug::lock().lock();
    cache::shared_lock().lock();
    mcache::lock_all();
    heap::HEAP.lock().lock();
    large::lock().lock();
    zonemap::leaf_lock().lock();
    FORK_LOCKED.store(true, core::sync::atomic::Ordering::Relaxed);
}

#[cfg(not(test))]
extern "C" fn fork_parent() {
    if !FORK_LOCKED.load(core::sync::atomic::Ordering::Relaxed) {
        return;
    }
    zonemap::leaf_lock().unlock();
    large::lock().unlock();
    heap::HEAP.lock().unlock();
    mcache::unlock_all();
    cache::shared_lock().unlock();
    debug::lock().unlock();
    prof::unlock_all();
    // SAFETY: taken in fork_prepare by this thread.
    unsafe { _IO_list_unlock() };
}

#[cfg(not(test))]
extern "C" fn fork_child() {
    heap::sparse_after_fork();
    if !FORK_LOCKED.load(core::sync::atomic::Ordering::Relaxed) {
        // One thread, no lock taken: the child starts a profile of its own
        // unless the fork interrupted the profiler (a signal handler's
        // fork), whose call then goes on in the child with the tables.
        if !prof::is_locked() {
            prof::after_fork_child();
        }
        return;
    }
    zonemap::leaf_lock().reset_after_fork();
    cache::reset_zone_locks_after_fork();
    large::lock().reset_after_fork();
    heap::HEAP.lock().reset_after_fork();
    mcache::reset_after_fork();
    cache::shared_lock().reset_after_fork();
    debug::lock().reset_after_fork();
    prof::after_fork_child();
}
