//! memalloc: a malloc replacement for Linux.
//!
//! Layers, each using only the ones below it:
//! ```text
//! export   C ABI: argument rules, errno, overflow and alignment checks
//! cache    size classes, zones, per-thread caches (small objects, no lock)
//! mcache   per-thread caches of medium chunks (4-256 KiB classes, no lock)
//! heap     the shared heap: one TLSF index over the break and mmap'd regions
//! large    blocks at or above the mmap threshold, mapped on their own
//! tlsf     two-level segregated fit over header-linked chunks (O(1))
//! region   region descriptors; chunk: header accessors
//! os       every system call
//! ```
//! Cross-cutting: `tls` (the initial-exec thread slot), `zonemap` (which
//! 64 KiB granules are zones, and what `free` needs of each zone), `lock` (futex mutex), `config` (environment, mallopt),
//! `stats` (figures, dump), `report` (output without allocating), `pool`
//! (TLSF heaps over caller memory).
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

#![cfg_attr(not(any(test, feature = "gd-tls")), no_std)]
#![warn(missing_docs)]
#![allow(missing_docs)] // accessors and ABI shims document themselves by name
#![allow(clippy::missing_safety_doc)]

pub mod cache;
pub mod chunk;
pub mod config;
pub mod debug;
pub mod export;
pub mod guard;
pub mod heap;
pub mod large;
pub mod lock;
pub mod mcache;
pub mod os;
pub mod pool;
pub mod region;
pub mod report;
pub mod stats;
pub mod tls;
pub mod tlsf;
pub mod zonemap;

// Without std nothing asks the linker for libc (the libc crate leaves that to
// std): name it, so the library records its NEEDED entry and versioned
// symbols (pthread_atfork, say, comes from libc_nonshared.a).
#[cfg(not(any(test, feature = "gd-tls")))]
#[link(name = "c")]
extern "C" {}

/// A panic is a bug in memalloc (the code avoids every panicking path it
/// can): say where, without allocating, and abort as `panic = "abort"` would.
#[cfg(not(any(test, feature = "gd-tls")))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(l) => report::note(format_args!("internal panic at {}:{}", l.file(), l.line())),
        None => report::note(format_args!("internal panic")),
    }
    os::abort()
}

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
    stats::trace_open();
    stats::register_exit();
    // SAFETY: the handlers only take and release our locks.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
}

/// Before fork: take every allocator lock, so the child never inherits a lock
/// held by a thread that does not exist there.
extern "C" fn fork_prepare() {
    debug::lock().lock();
    cache::shared_lock().lock();
    mcache::lock_all();
    heap::HEAP.lock().lock();
    large::lock().lock();
    zonemap::leaf_lock().lock();
}

extern "C" fn fork_parent() {
    zonemap::leaf_lock().unlock();
    large::lock().unlock();
    heap::HEAP.lock().unlock();
    mcache::unlock_all();
    cache::shared_lock().unlock();
    debug::lock().unlock();
}

extern "C" fn fork_child() {
    zonemap::leaf_lock().reset_after_fork();
    cache::reset_zone_locks_after_fork();
    large::lock().reset_after_fork();
    heap::HEAP.lock().reset_after_fork();
    mcache::reset_after_fork();
    cache::shared_lock().reset_after_fork();
    debug::lock().reset_after_fork();
}
