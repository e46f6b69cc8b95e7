//! libmemalloc.so and libmemalloc.a: the memalloc crate built `no_std` with
//! its `override` feature, so that the C allocator ABI (`malloc`, `free`,
//! ..., `memalloc_*`) is exported under its C names.
//!
//! The panic handler lives here, not in the memalloc crate: an rlib that a
//! std program links must not define one (std has its own).

#![cfg_attr(not(any(test, feature = "gd-tls")), no_std)]

// Link the allocator: its `#[no_mangle]` functions are this library's
// exports.
extern crate memalloc_core;

/// A panic is a bug in memalloc (the code avoids every panicking path it
/// can): say where, without allocating, and abort as `panic = "abort"` would.
#[cfg(not(any(test, feature = "gd-tls")))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use memalloc_core::{os, report};
    match info.location() {
        Some(l) => report::note(format_args!("internal panic at {}:{}", l.file(), l.line())),
        None => report::note(format_args!("internal panic")),
    }
    os::abort()
}
