//! Which 64 KiB granules of the address space hold zones.
//!
//! `free(p)` must tell a zone block (no header) from a TLSF chunk (header at
//! `p - 16`) from the pointer alone. Zones are 64 KiB-aligned, so one byte per
//! 64 KiB granule answers it: a two-level radix map, like tcmalloc's page map.
//! Level 1 is a static array indexed by address bits 32-46 (256 KiB of .bss,
//! touched only where used); level 2 is a 64 KiB byte array per 4 GiB of
//! address space, mapped on first use and never freed. Bit 7 of a granule's
//! byte is the zone bit; bits 0-6 count our mappings over it (below).
//!
//! Invariant: bit(g) is set iff a live zone starts at granule g. A bit only
//! changes while no block of that granule is live (zone creation and
//! retirement), so a reader holding a live pointer always sees a stable bit.
//! Cost of a lookup: two dependent loads and a byte test (about 13
//! instructions with the range check).
//!
//! The same leaves count, per granule, how many of our mappings (heap
//! regions, large blocks) overlap it: `free` of a pointer whose granule
//! counts zero reports "not allocated by memalloc" instead of reading a
//! header that is not there (a stack or global address, a block already
//! unmapped).

use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// log2 of the zone size and alignment.
pub const ZONE_SHIFT: usize = 16;
/// Zone size and alignment (64 KiB).
pub const ZONE_SIZE: usize = 1 << ZONE_SHIFT;

const L1_SHIFT: usize = 32;
const L1_LEN: usize = 1 << (47 - L1_SHIFT);

const GRANULES: usize = 1 << (L1_SHIFT - ZONE_SHIFT);

/// The zone bit of a granule's byte.
pub const ZONE_BIT: u8 = 0x80;

#[repr(C)]
struct Leaf {
    granule: [AtomicU8; GRANULES],
}

static L1: [AtomicPtr<Leaf>; L1_LEN] = [const { AtomicPtr::new(core::ptr::null_mut()) }; L1_LEN];

/// The byte of the granule holding `p`, if its leaf exists.
#[inline(always)]
fn granule(p: *const u8) -> Option<&'static AtomicU8> {
    let a = p as usize;
    let i = a >> L1_SHIFT;
    if i >= L1_LEN {
        return None;
    }
    let leaf = L1[i].load(Ordering::Acquire);
    if leaf.is_null() {
        return None;
    }
    // SAFETY: leaves are never freed; the index is below GRANULES.
    Some(unsafe { &(*leaf).granule[(a >> ZONE_SHIFT) & (GRANULES - 1)] })
}

/// The map byte of the granule holding `p` (0 if unmapped): `ZONE_BIT` if a
/// zone starts there, and in the low bits a count of our mappings over it.
#[inline(always)]
pub fn bits(p: *const u8) -> u8 {
    match granule(p) {
        Some(g) => g.load(Ordering::Relaxed),
        None => 0,
    }
}

/// Does a zone start at the 64 KiB granule holding `p`?
#[inline(always)]
pub fn is_zone(p: *const u8) -> bool {
    match granule(p) {
        Some(g) => g.load(Ordering::Relaxed) & ZONE_BIT != 0,
        None => false,
    }
}

static LEAF_LOCK: crate::lock::Lock = crate::lock::Lock::new();

/// The lock that serialises mapping new leaves (for the fork handlers).
pub fn leaf_lock() -> &'static crate::lock::Lock {
    &LEAF_LOCK
}

/// The leaf for address `a`, mapped on first use; null if out of range or
/// the mapping failed.
fn leaf_of(a: usize) -> *mut Leaf {
    let i = a >> L1_SHIFT;
    if i >= L1_LEN {
        return core::ptr::null_mut();
    }
    let leaf = L1[i].load(Ordering::Acquire);
    if !leaf.is_null() {
        return leaf;
    }
    let _g = LEAF_LOCK.guard();
    let leaf = L1[i].load(Ordering::Acquire);
    if !leaf.is_null() {
        return leaf;
    }
    let m = crate::os::map(core::mem::size_of::<Leaf>()) as *mut Leaf;
    if !m.is_null() {
        L1[i].store(m, Ordering::Release);
    }
    m
}

/// Marks granule of `z` as a zone; false if the leaf could not be mapped.
pub fn set(z: *const u8) -> bool {
    let a = z as usize;
    let leaf = leaf_of(a);
    if leaf.is_null() {
        return false;
    }
    let g = (a >> ZONE_SHIFT) & (GRANULES - 1);
    // SAFETY: leaves are never freed; g < GRANULES.
    unsafe { (*leaf).granule[g].fetch_or(ZONE_BIT, Ordering::Release) };
    true
}

/// Counts `[start, end)` as ours (a new mapping or heap extension); false
/// (and nothing counted) if a leaf could not be mapped.
pub fn add_ours(start: *const u8, end: *const u8) -> bool {
    let (s, e) = (start as usize, end as usize);
    if e <= s {
        return true;
    }
    // Map every leaf first, so that failure leaves no partial count.
    let mut a = s & !((1 << L1_SHIFT) - 1);
    while a < e {
        if leaf_of(a).is_null() {
            return false;
        }
        a += 1 << L1_SHIFT;
    }
    for_granules(s, e, |c| {
        c.fetch_add(1, Ordering::Release);
    });
    true
}

/// A region ending at `old_end` now ends at `new_end` (> old_end): counts
/// the granules it newly overlaps. False if a leaf could not be mapped.
pub fn grow_ours(old_end: *const u8, new_end: *const u8) -> bool {
    let first_new = (((old_end as usize - 1) >> ZONE_SHIFT) + 1) << ZONE_SHIFT;
    if first_new >= new_end as usize {
        return true;
    }
    add_ours(first_new as *const u8, new_end)
}

/// A region ending at `old_end` now ends at `new_end` (< old_end): stops
/// counting the granules it no longer overlaps.
pub fn shrink_ours(old_end: *const u8, new_end: *const u8) {
    let first_gone = (((new_end as usize - 1) >> ZONE_SHIFT) + 1) << ZONE_SHIFT;
    if first_gone < old_end as usize {
        remove_ours(first_gone as *const u8, old_end);
    }
}

/// Stops counting `[start, end)` as ours (unmapped, or the break shrunk).
pub fn remove_ours(start: *const u8, end: *const u8) {
    let (s, e) = (start as usize, end as usize);
    if e > s {
        for_granules(s, e, |c| {
            c.fetch_sub(1, Ordering::Release);
        });
    }
}

fn for_granules(s: usize, e: usize, mut f: impl FnMut(&AtomicU8)) {
    let mut g = s >> ZONE_SHIFT;
    let last = (e - 1) >> ZONE_SHIFT;
    while g <= last {
        let a = g << ZONE_SHIFT;
        let leaf = L1[a >> L1_SHIFT].load(Ordering::Acquire);
        // SAFETY: add_ours mapped every leaf of the range; leaves are never
        // freed.
        unsafe { f(&(*leaf).granule[g & (GRANULES - 1)]) };
        g += 1;
    }
}

/// Does one of our mappings overlap the 64 KiB granule of `p`?
#[inline]
pub fn is_ours(p: *const u8) -> bool {
    match granule(p) {
        Some(g) => g.load(Ordering::Acquire) & !ZONE_BIT != 0,
        None => false,
    }
}

/// Clears the granule of `z` (its zone is being retired).
pub fn clear(z: *const u8) {
    let a = z as usize;
    let leaf = L1[a >> L1_SHIFT].load(Ordering::Acquire);
    if leaf.is_null() {
        return;
    }
    let g = (a >> ZONE_SHIFT) & (GRANULES - 1);
    // SAFETY: as in is_zone.
    unsafe { (*leaf).granule[g].fetch_and(!ZONE_BIT, Ordering::Release) };
}
