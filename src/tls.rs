//! The thread's cache pointer, in one initial-exec TLS slot.
//!
//! A stable `thread_local!` in a cdylib compiles to the general-dynamic model
//! (a call to `__tls_get_addr` on every access). glibc's manual asks a
//! replacement malloc for initial-exec, and it is one `%fs`-relative load. So
//! the slot is declared in assembly, in `.tdata`, read through `@GOTTPOFF`.
//! Its initial value is the static empty cache, whose zones are all empty:
//! a new thread's first malloc simply misses and takes the slow path, so the
//! fast path needs no "is the cache initialised?" test.
//!
//! The `gd-tls` feature builds the same slot as a `thread_local!` instead, to
//! measure the difference (see the README).

use crate::cache::{Cache, EMPTY_CACHE};
use crate::mcache::{MCache, EMPTY_MCACHE};

#[cfg(not(feature = "gd-tls"))]
core::arch::global_asm!(
    ".pushsection .tdata.memalloc_tc,\"awT\",@progbits",
    ".p2align 3",
    ".hidden memalloc_tc_slot",
    ".globl memalloc_tc_slot",
    ".type memalloc_tc_slot,@object",
    ".size memalloc_tc_slot,8",
    "memalloc_tc_slot:",
    ".quad {empty}",
    ".popsection",
    empty = sym EMPTY_CACHE,
);

// The thread's medium cache (see `mcache`), in a slot of its own.
#[cfg(not(feature = "gd-tls"))]
core::arch::global_asm!(
    ".pushsection .tdata.memalloc_mc,\"awT\",@progbits",
    ".p2align 3",
    ".hidden memalloc_mc_slot",
    ".globl memalloc_mc_slot",
    ".type memalloc_mc_slot,@object",
    ".size memalloc_mc_slot,8",
    "memalloc_mc_slot:",
    ".quad {empty}",
    ".popsection",
    empty = sym EMPTY_MCACHE,
);

/// This thread's medium cache (a static one if it has none).
#[cfg(not(feature = "gd-tls"))]
#[inline(always)]
pub fn mc_get() -> *mut MCache {
    let p: *mut MCache;
    // SAFETY: reads this thread's slot through its initial-exec offset.
    unsafe {
        core::arch::asm!(
            "movq memalloc_mc_slot@GOTTPOFF(%rip), {p}",
            "movq %fs:({p}), {p}",
            p = out(reg) p,
            options(att_syntax, nostack, readonly, preserves_flags, pure)
        );
    }
    p
}

/// Sets this thread's medium cache.
#[cfg(not(feature = "gd-tls"))]
#[inline(always)]
pub fn mc_set(c: *const MCache) {
    // SAFETY: writes this thread's slot through its initial-exec offset.
    unsafe {
        core::arch::asm!(
            "movq memalloc_mc_slot@GOTTPOFF(%rip), {t}",
            "movq {c}, %fs:({t})",
            t = out(reg) _,
            c = in(reg) c,
            options(att_syntax, nostack, preserves_flags)
        );
    }
}

/// This thread's cache (the empty or dead static cache if it has none).
#[cfg(not(feature = "gd-tls"))]
#[inline(always)]
pub fn get() -> *mut Cache {
    let p: *mut Cache;
    // SAFETY: reads this thread's slot through its initial-exec offset.
    unsafe {
        core::arch::asm!(
            "movq memalloc_tc_slot@GOTTPOFF(%rip), {p}",
            "movq %fs:({p}), {p}",
            p = out(reg) p,
            options(att_syntax, nostack, readonly, preserves_flags, pure)
        );
    }
    p
}

/// Sets this thread's cache.
#[cfg(not(feature = "gd-tls"))]
#[inline(always)]
pub fn set(c: *const Cache) {
    // SAFETY: writes this thread's slot through its initial-exec offset.
    unsafe {
        core::arch::asm!(
            "movq memalloc_tc_slot@GOTTPOFF(%rip), {t}",
            "movq {c}, %fs:({t})",
            t = out(reg) _,
            c = in(reg) c,
            options(att_syntax, nostack, preserves_flags)
        );
    }
}

#[cfg(feature = "gd-tls")]
std::thread_local! {
    static SLOT: core::cell::Cell<*mut Cache> =
        const { core::cell::Cell::new(core::ptr::addr_of!(EMPTY_CACHE) as *mut Cache) };
}

/// This thread's cache (general-dynamic variant).
#[cfg(feature = "gd-tls")]
#[inline(always)]
pub fn get() -> *mut Cache {
    SLOT.with(|s| s.get())
}

/// Sets this thread's cache (general-dynamic variant).
#[cfg(feature = "gd-tls")]
#[inline(always)]
pub fn set(c: *const Cache) {
    SLOT.with(|s| s.set(c as *mut Cache))
}

#[cfg(feature = "gd-tls")]
std::thread_local! {
    static MC_SLOT: core::cell::Cell<*mut MCache> =
        const { core::cell::Cell::new(core::ptr::addr_of!(EMPTY_MCACHE) as *mut MCache) };
}

/// This thread's medium cache (general-dynamic variant).
#[cfg(feature = "gd-tls")]
#[inline(always)]
pub fn mc_get() -> *mut MCache {
    MC_SLOT.with(|s| s.get())
}

/// Sets this thread's medium cache (general-dynamic variant).
#[cfg(feature = "gd-tls")]
#[inline(always)]
pub fn mc_set(c: *const MCache) {
    MC_SLOT.with(|s| s.set(c as *mut MCache))
}
