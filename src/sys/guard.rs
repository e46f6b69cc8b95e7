//! Per-process secrets for the integrity checks.
//!
//! Two 64-bit keys from the kernel's `AT_RANDOM` bytes (no system call, no
//! allocation): `TAG_KEY` keys the 16-bit checksum in every chunk header, so
//! that offsetting a pointer into user data cannot forge a valid header;
//! `LIST_KEY` marks freed small blocks (double-free detection) and encodes
//! the free-list links stored inside them. Both are set before the first
//! block exists (by the first call to `config::init`) and never change.

use core::sync::atomic::{AtomicUsize, Ordering};

static TAG_KEY: AtomicUsize = AtomicUsize::new(0);
static LIST_KEY: AtomicUsize = AtomicUsize::new(0);

/// Reads the secrets. Called once, from `config::init`.
pub fn init_secrets() {
    // SAFETY: getauxval has no preconditions; AT_RANDOM points to 16 bytes
    // the kernel placed on the initial stack for the process's lifetime.
    let (a, b) = unsafe {
        let p = libc::getauxval(libc::AT_RANDOM) as *const u64;
        if p.is_null() {
            (0x9e37_79b9_7f4a_7c15u64, 0xc2b2_ae3d_27d4_eb4fu64)
        } else {
            (p.read_unaligned(), p.add(1).read_unaligned())
        }
    };
    // Without AT_RANDOM, the stack address (randomised by ASLR) still makes
    // the keys differ between runs.
    let salt = &a as *const u64 as u64;
    // (The tag key has no bit above 47: `chunk::tag_matches` relies on it.)
    TAG_KEY.store(
        ((a ^ salt.rotate_left(17)) as usize | 1) & TAG_KEY_MASK,
        Ordering::Relaxed,
    );
    LIST_KEY.store((b ^ salt.rotate_left(41)) as usize | 1, Ordering::Relaxed);
}

/// The bits the header checksum key may have (below 2^48, as a head
/// word's size and flags).
pub const TAG_KEY_MASK: usize = (1 << 48) - 1;

/// The header checksum key.
#[inline(always)]
pub fn tag_key() -> usize {
    TAG_KEY.load(Ordering::Relaxed)
}

/// The free-list key.
#[inline(always)]
pub fn list_key() -> usize {
    LIST_KEY.load(Ordering::Relaxed)
}

/// Are the default integrity checks compiled in? Only the `unchecked`
/// feature turns them off, to measure what they cost (`scripts/bench.sh
/// --checks-cost`); never use it in production.
pub const CHECKS: bool = !cfg!(feature = "unchecked");

/// `x`, which the compiler may not see through (an empty `asm!`): keeps it
/// from rewriting the arithmetic of a check into a longer equivalent (the
/// fast paths' instruction counts are measured, `bench/pair.c`).
#[inline(always)]
pub fn opaque(mut x: usize) -> usize {
    // SAFETY: an empty template: no instruction, no memory, no stack, no
    // flags.
    unsafe {
        core::arch::asm!("/* {0} */", inout(reg) x, options(pure, nomem, nostack, preserves_flags))
    };
    x
}
