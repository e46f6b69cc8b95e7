//! Which 64 KiB granules of the address space hold zones.
//!
//! `free(p)` must tell a zone block (no header) from a TLSF chunk (header at
//! `p - 16`) from the pointer alone. Zones are 64 KiB-aligned, so one bit per
//! 64 KiB granule answers it: a two-level radix map, like tcmalloc's page map.
//! Level 1 is a static array indexed by address bits 32-46 (256 KiB of .bss,
//! touched only where used); level 2 is an 8 KiB bitmap per 4 GiB of address
//! space, mapped on first use and never freed.
//!
//! Invariant: bit(g) is set iff a live zone starts at granule g. A bit only
//! changes while no block of that granule is live (zone creation and
//! retirement), so a reader holding a live pointer always sees a stable bit.
//! Cost of a lookup: two dependent loads, a shift and a bit test.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// log2 of the zone size and alignment.
pub const ZONE_SHIFT: usize = 16;
/// Zone size and alignment (64 KiB).
pub const ZONE_SIZE: usize = 1 << ZONE_SHIFT;

const L1_SHIFT: usize = 32;
const L1_LEN: usize = 1 << (47 - L1_SHIFT);
const L2_WORDS: usize = 1 << (L1_SHIFT - ZONE_SHIFT - 6);

type Leaf = [AtomicU64; L2_WORDS];

static L1: [AtomicPtr<Leaf>; L1_LEN] = [const { AtomicPtr::new(core::ptr::null_mut()) }; L1_LEN];

/// Does a zone start at the 64 KiB granule holding `p`?
#[inline(always)]
pub fn is_zone(p: *const u8) -> bool {
    let a = p as usize;
    let i = a >> L1_SHIFT;
    if i >= L1_LEN {
        return false;
    }
    let leaf = L1[i].load(Ordering::Acquire);
    if leaf.is_null() {
        return false;
    }
    let g = (a >> ZONE_SHIFT) & ((1 << (L1_SHIFT - ZONE_SHIFT)) - 1);
    // SAFETY: leaves are never freed; g / 64 < L2_WORDS.
    let w = unsafe { (*leaf)[g >> 6].load(Ordering::Relaxed) };
    (w >> (g & 63)) & 1 != 0
}

/// Marks granule of `z` as a zone; false if the leaf could not be mapped.
/// Called under the heap lock (leaf creation is serialised by it).
pub fn set(z: *const u8) -> bool {
    let a = z as usize;
    let i = a >> L1_SHIFT;
    if i >= L1_LEN {
        return false;
    }
    let mut leaf = L1[i].load(Ordering::Acquire);
    if leaf.is_null() {
        let m = crate::os::map(core::mem::size_of::<Leaf>()) as *mut Leaf;
        if m.is_null() {
            return false;
        }
        L1[i].store(m, Ordering::Release);
        leaf = m;
    }
    let g = (a >> ZONE_SHIFT) & ((1 << (L1_SHIFT - ZONE_SHIFT)) - 1);
    // SAFETY: as in is_zone.
    unsafe { (*leaf)[g >> 6].fetch_or(1 << (g & 63), Ordering::Release) };
    true
}

/// Clears the granule of `z` (its zone is being retired).
pub fn clear(z: *const u8) {
    let a = z as usize;
    let leaf = L1[a >> L1_SHIFT].load(Ordering::Acquire);
    if leaf.is_null() {
        return;
    }
    let g = (a >> ZONE_SHIFT) & ((1 << (L1_SHIFT - ZONE_SHIFT)) - 1);
    // SAFETY: as in is_zone.
    unsafe { (*leaf)[g >> 6].fetch_and(!(1 << (g & 63)), Ordering::Release) };
}
