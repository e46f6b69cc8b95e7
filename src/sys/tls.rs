//! The thread slot: one pointer per thread, in an initial-exec TLS slot.
//!
//! A stable `thread_local!` in a cdylib compiles to the general-dynamic model
//! (a call to `__tls_get_addr` on every access). glibc's manual asks a
//! replacement malloc for initial-exec, and it is one `%fs`-relative load. So
//! the slot is declared in assembly, in `.tdata`, read through `@GOTTPOFF`.
//!
//! The slot belongs to the layer that keeps a pointer per thread (`cache`,
//! the thread's cache), which declares it with [`thread_slot!`] and gives its
//! first value: the address of a static of its own, so that the slot is never
//! null (`cache` starts every thread on a static empty cache whose zones are
//! all empty: a new thread's first malloc simply misses and takes the slow
//! path, and the fast path needs no "is the cache initialised?" test). This
//! module owns only how the slot is made, and knows nothing of what it holds.
//! Each slot has a symbol of its own: `memalloc_tc_slot` (the small blocks'
//! cache) and `memalloc_mc_slot` (the medium blocks' cache).
//!
//! The `gd-tls` feature builds the same slot as a `thread_local!` instead, to
//! measure the difference (see docs/performance.md).

/// Declares a thread slot named `$slot` (its symbol), holding a `*mut $t`
/// whose first value is the address of static `$init`, and two functions in
/// the calling module: `$get() -> *mut $t`, this thread's value, and
/// `$set(*const $t)`.
#[cfg(not(feature = "gd-tls"))]
macro_rules! thread_slot {
    ($slot:literal, $t:ty = $init:path; $get:ident, $set:ident) => {
        core::arch::global_asm!(
            concat!(".pushsection .tdata.", $slot, ",\"awT\",@progbits"),
            ".p2align 3",
            concat!(".hidden ", $slot),
            concat!(".globl ", $slot),
            concat!(".type ", $slot, ",@object"),
            concat!(".size ", $slot, ",8"),
            concat!($slot, ":"),
            ".quad {init}",
            ".popsection",
            init = sym $init,
        );

        /// This thread's value of the slot.
        #[inline(always)]
        pub fn $get() -> *mut $t {
            let p: *mut $t;
            // SAFETY: reads this thread's slot through its initial-exec offset.
            unsafe {
                core::arch::asm!(
                    concat!("movq ", $slot, "@GOTTPOFF(%rip), {p}"),
                    "movq %fs:({p}), {p}",
                    p = out(reg) p,
                    options(att_syntax, nostack, readonly, preserves_flags, pure)
                );
            }
            p
        }

        /// Sets this thread's value of the slot.
        #[inline(always)]
        pub fn $set(c: *const $t) {
            // SAFETY: writes this thread's slot through its initial-exec offset.
            unsafe {
                core::arch::asm!(
                    concat!("movq ", $slot, "@GOTTPOFF(%rip), {t}"),
                    "movq {c}, %fs:({t})",
                    t = out(reg) _,
                    c = in(reg) c,
                    options(att_syntax, nostack, preserves_flags)
                );
            }
        }
    };
}

/// The slot as a general-dynamic `thread_local!` (the `gd-tls` feature).
#[cfg(feature = "gd-tls")]
macro_rules! thread_slot {
    ($slot:literal, $t:ty = $init:path; $get:ident, $set:ident) => {
        std::thread_local! {
            static SLOT: core::cell::Cell<*mut $t> =
                const { core::cell::Cell::new(core::ptr::addr_of!($init) as *mut $t) };
        }

        /// This thread's value of the slot (general-dynamic variant).
        #[inline(always)]
        pub fn $get() -> *mut $t {
            SLOT.with(|s| s.get())
        }

        /// Sets this thread's value of the slot (general-dynamic variant).
        #[inline(always)]
        pub fn $set(c: *const $t) {
            SLOT.with(|s| s.set(c as *mut $t))
        }
    };
}

pub(crate) use thread_slot;
