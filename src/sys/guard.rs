//! Per-process secrets for the integrity checks.
//!
//! Keys from the kernel's `AT_RANDOM` bytes (no system call, no
//! allocation): `TAG_MUL` is the secret multiplier of the 16-bit checksum in
//! every chunk header (`chunk::tag`), so that offsetting a pointer into user
//! data cannot forge a valid header; `TAG_KEY` keys the large blocks' and
//! the debug mode's own tags; `LIST_KEY` marks freed small blocks
//! (double-free detection) and encodes the free-list links stored inside
//! them. All are set before the first block exists (by the first call to
//! `config::init`) and never change.

use core::sync::atomic::{AtomicUsize, Ordering};

static TAG_KEY: AtomicUsize = AtomicUsize::new(0);
static LIST_KEY: AtomicUsize = AtomicUsize::new(0);
static TAG_MUL: AtomicUsize = AtomicUsize::new(TAG_MUL_FALLBACK);

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
    // (The tag key has no bit above 47.)
    TAG_KEY.store(
        ((a ^ salt.rotate_left(17)) as usize | 1) & TAG_KEY_MASK,
        Ordering::Relaxed,
    );
    LIST_KEY.store((b ^ salt.rotate_left(41)) as usize | 1, Ordering::Relaxed);
    // The multiplier: 48 secret bits above 16 set ones (`chunk::tag_matches`
    // needs it to be -1 modulo 2^16), its top bit set so that the product's
    // top 16 bits depend on every bit of the word tested.
    let m = (a.rotate_left(23) ^ b ^ salt.rotate_left(5)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    TAG_MUL.store(m as usize | TAG_MUL_FIXED, Ordering::Relaxed);
}

/// The bits every tag multiplier has: its top bit and its low 16.
pub const TAG_MUL_FIXED: usize = 1 << 63 | u16::MAX as usize;
/// The tag multiplier before `init_secrets` (no block exists then).
pub const TAG_MUL_FALLBACK: usize = 0xff51_afd7_ed55_ffff;
const _: () = assert!(TAG_MUL_FALLBACK & TAG_MUL_FIXED == TAG_MUL_FIXED);

/// The bits the header checksum key may have (below 2^48, as a head
/// word's size and flags).
pub const TAG_KEY_MASK: usize = (1 << 48) - 1;

/// The header checksum key.
#[inline(always)]
pub fn tag_key() -> usize {
    TAG_KEY.load(Ordering::Relaxed)
}

/// The header tag's secret multiplier (see `chunk::tag`).
#[inline(always)]
pub fn tag_mul() -> usize {
    TAG_MUL.load(Ordering::Relaxed)
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
