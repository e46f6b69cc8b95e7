//! Which 64 KiB granules of the address space hold zones.
//!
//! `free(p)` must tell a zone block (no header) from a TLSF chunk (header at
//! `p - 16`) from the pointer alone. Zones are 64 KiB-aligned, so one byte per
//! 64 KiB granule answers it: a two-level radix map, like tcmalloc's page map.
//! Level 1 is a static array indexed by address bits 32-46 (256 KiB of .bss,
//! touched only where used); level 2 is an array of 32-byte entries per 4 GiB
//! of address space (a 2 MiB mapping, of which a page covers 8 MiB of our
//! memory; then the rooms, 12 MiB, a page for 21 granules, touched only
//! where zones are), mapped on first use and never freed. Bit 7 of a granule's byte is the zone
//! bit; bits 0-6 count our mappings over it (below).
//!
//! Invariant: bit(g) is set iff a live zone starts at granule g. A bit only
//! changes while no block of that granule is live (zone creation and
//! retirement), so a reader holding a live pointer always sees a stable bit.
//! Cost of a lookup: two dependent loads and a byte test (about 13
//! instructions with the range check); under the first leaf mapped
//! (`FIRST`, the heap's), one load after the pointer, the leaf's address
//! loaded off the pointer's chain.
//!
//! Beside the byte, a granule's entry holds what `free` needs of the zone
//! starting there: its owner, class and block geometry ([`ZoneInfo`]), so a
//! `free` reads nothing of the zone's header. A zone header sits at the same
//! offset of every 64 KiB granule, so all headers fall in the same few sets
//! of a cache indexed by the low address bits (a 1 MiB 8-way L2 holds only
//! 16 lines 64 KiB apart): a free that read its zone's header missed
//! whenever more than a handful of zones were in use. Entries lie 32 bytes
//! apart, two to a cache line, like tcmalloc's page map entries.
//!
//! Each leaf also holds, per granule, a room for the header of the zone
//! starting there ([`Room`]): this layer stores it and never reads it; the
//! layer above keeps its `Zone` there, so that the headers of all zones lie
//! together in a few pages rather than one in each zone.
//!
//! The same leaves count, per granule, how many of our mappings overlap it
//! (a heap region with all its granules, a large block with the granule of
//! its headers only: see `large::ours_end`): `free` of a pointer whose
//! header's granule counts zero reports "not allocated by memalloc" instead
//! of reading a header that is not there (a stack or global address, a block
//! already unmapped, a pointer into a large block's later granules).

use core::cell::UnsafeCell;
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// log2 of the zone size and alignment.
pub const ZONE_SHIFT: usize = 16;
/// Zone size and alignment (64 KiB).
pub const ZONE_SIZE: usize = 1 << ZONE_SHIFT;

const L1_SHIFT: usize = 32;
const L1_LEN: usize = 1 << (47 - L1_SHIFT);

const GRANULES: usize = 1 << (L1_SHIFT - ZONE_SHIFT);

/// The zone bit of a granule's byte.
pub const ZONE_BIT: u8 = 0x80;

/// A granule's entry: its map byte and, while the zone bit is set, what
/// `free` needs of the zone starting there: its owner (a mirror of
/// `Zone::owner`, written at the same points) and, fixed while the zone
/// lives, its class and the block geometry of `cache::block_ok`.
/// (The fixed fields are plain memory, not atomics: x86 code generation
/// does not fold an atomic load into the instruction that uses it.)
#[repr(C, align(32))]
pub struct ZoneInfo {
    pub owner: AtomicUsize,
    /// The multiplier and bound of [`ZoneInfo::block_at`] ([`geometry`]).
    magic: UnsafeCell<u64>,
    bound: UnsafeCell<u64>,
    /// Offset of the first block in the granule (zone headers are coloured).
    first: UnsafeCell<u32>,
    class: UnsafeCell<u16>,
    bits: AtomicU8,
    _pad: u8,
}

const _: () = assert!(core::mem::size_of::<ZoneInfo>() == 32);

/// The multiplier and bound that [`ZoneInfo::block_at`] tests a block's
/// offset with, for `capacity` blocks of `block_size` bytes: `c =
/// floor(2^64 / block_size) + 1` and `capacity * r`, where `r` is
/// `block_size * c - 2^64`, between 1 and `block_size`. For an offset
/// `j * block_size + i` below 2^32 (`i < block_size`), the product with
/// `c` is `j * r + i * c` (mod 2^64): below `capacity * r` if `i == 0`
/// and `j < capacity`, and at least `c > 2^52` otherwise (Lemire, "Faster remainder by direct
/// computation", 2019, with `j < capacity` folded into the compare).
pub const fn geometry(block_size: u32, capacity: u32) -> (u64, u64) {
    if block_size == 0 {
        return (0, 0);
    }
    let bs = block_size as u64;
    let c = u64::MAX / bs + 1 + bs.is_power_of_two() as u64;
    (c, capacity as u64 * bs.wrapping_mul(c))
}

impl ZoneInfo {
    /// The granule's map byte (see [`bits`]).
    #[inline(always)]
    pub fn bits(&self) -> u8 {
        self.bits.load(Ordering::Relaxed)
    }

    /// The zone's class.
    #[inline(always)]
    pub fn class(&self) -> usize {
        // SAFETY: written only before the zone bit is set (`set`), and read
        // by holders of the zone's blocks, which were handed out after.
        unsafe { *self.class.get() as usize }
    }

    /// The fixed fields: (class, first block's offset, `geometry`), for
    /// `memalloc_check`.
    pub fn fixed(&self) -> (u32, u32, (u64, u64)) {
        // SAFETY: as in `class`.
        unsafe {
            (
                *self.class.get() as u32,
                *self.first.get(),
                (*self.magic.get(), *self.bound.get()),
            )
        }
    }

    /// Is `p`, in this entry's granule, where a block of its zone starts?
    /// (Its offset from the first block is a multiple of the block size
    /// below the blocks' end: one multiply and one compare, see
    /// [`geometry`]; in 32-bit arithmetic, an offset before the first block
    /// wraps to above any block's.)
    #[inline(always)]
    pub fn block_at(&self, p: *const u8) -> bool {
        // SAFETY: as in `class`.
        unsafe {
            let off = (p as u32 & (ZONE_SIZE as u32 - 1)).wrapping_sub(*self.first.get());
            (off as u64).wrapping_mul(*self.magic.get()) < *self.bound.get()
        }
    }
}

/// Bytes of a granule's room for the header of the zone starting there
/// (`cache::Zone`, which this layer only stores: [`room`]).
pub const ROOM: usize = 192;

/// A granule's room for its zone's header: the headers of all zones lie
/// together here, in the leaves, rather than each in its own zone's first
/// page. A thread's slow paths (a bin's spill, one block to each of up to
/// 31 zones; the zone lists' links) touch the headers of many zones in a
/// row: in the zones, each header was a page of its own (a TLB miss) and
/// its line one of a few cache sets (a zone is 64 KiB-aligned), so that
/// with a few hundred zones every one was a cache miss; here a page holds
/// 21 of them and their lines spread over all sets.
#[repr(C, align(64))]
pub struct Room(pub [u64; ROOM / 8]);

#[repr(C)]
struct Leaf {
    entry: [ZoneInfo; GRANULES],
    room: [Room; GRANULES],
}

/// Level 1, after the lock that serialises mapping new leaves. One static:
/// the linker put the lock on its own, after the 256 KiB array, where it
/// cost the first `leaf_of` a page of its own.
#[repr(C)]
struct Map {
    leaf_lock: crate::lock::Lock,
    l1: [AtomicPtr<Leaf>; L1_LEN],
}

static MAP: Map = Map {
    leaf_lock: crate::lock::Lock::new(),
    l1: [const { AtomicPtr::new(core::ptr::null_mut()) }; L1_LEN],
};

/// The leaf and index of the granule holding `p`, if its leaf exists.
#[inline(always)]
fn slot(p: *const u8) -> Option<(&'static Leaf, usize)> {
    let a = p as usize;
    let mut i = a >> L1_SHIFT;
    // An empty asm! that "may change" i: without it LLVM tests the pointer's
    // top bits with a shift of its own (a >> 47) and shifts again for the
    // index, one instruction more on every free.
    // SAFETY: the asm has no instruction; i is unchanged.
    unsafe { core::arch::asm!("/* {0} */", inout(reg) i, options(pure, nomem, nostack)) };
    let g = (a >> ZONE_SHIFT) & (GRANULES - 1);
    if i == FIRST.key.load(Ordering::Acquire) {
        let leaf = FIRST.leaf.load(Ordering::Relaxed);
        // SAFETY: the key is set after the leaf (not null), which is never
        // freed. (Said to the compiler: else it tests the leaf again.)
        unsafe { core::hint::assert_unchecked(!leaf.is_null()) };
        return Some((unsafe { &*leaf }, g));
    }
    beyond_first();
    if i >= L1_LEN {
        return None;
    }
    let leaf = MAP.l1[i].load(Ordering::Acquire);
    if leaf.is_null() {
        return None;
    }
    // SAFETY: leaves are never freed.
    Some((unsafe { &*leaf }, g))
}

/// Marks `slot`'s way through level 1 cold, so that the first leaf's way
/// falls through with no taken jump.
#[cold]
#[inline(always)]
fn beyond_first() {}

/// The first leaf mapped and its level-1 index (`usize::MAX` until then),
/// which `slot` compares before level 1. The first leaf is the heap's (its
/// region is counted at start-up, before any block: a program whose first
/// request is 64 MiB still frees its small blocks this way). For a pointer
/// under that leaf (every zone and heap chunk of a program whose heap spans
/// under 4 GiB), the entry's address waits on no load after the pointer
/// (level 1's load was on `free`'s chain), and the way has two instructions
/// fewer: `bench/pair`
/// 32 B 66.4 -> 64.4, 4096 B 78 -> 76, 8192 and 20000 B 95 -> 94;
/// `bench/cycles` (`invsq-1`'s loop) 2-4% fewer cycles a pair by minimums
/// (docs/performance.md, "invsq again (inv17j)"). The way through level 1
/// is laid out apart (`beyond_first`): with a taken jump on the first
/// leaf's way instead, `fixed 16` took 5-12% more CPU time.
#[repr(C)]
struct First {
    key: AtomicUsize,
    leaf: AtomicPtr<Leaf>,
}

static FIRST: First = First {
    key: AtomicUsize::new(usize::MAX),
    leaf: AtomicPtr::new(core::ptr::null_mut()),
};

/// The byte of the granule holding `p`, if its leaf exists.
#[inline(always)]
fn granule(p: *const u8) -> Option<&'static AtomicU8> {
    // SAFETY: `slot` gives an index below GRANULES.
    slot(p).map(|(leaf, g)| unsafe { &leaf.entry.get_unchecked(g).bits })
}

/// `free`'s lookup: the map byte of `p`'s granule (0 if unmapped) and, when
/// it has the zone bit, the zone's info.
#[inline(always)]
pub fn lookup(p: *const u8) -> (u8, *const ZoneInfo) {
    match slot(p) {
        // SAFETY: g < GRANULES.
        Some((leaf, g)) => unsafe {
            let e = leaf.entry.get_unchecked(g);
            (e.bits.load(Ordering::Relaxed), e)
        },
        None => (0, core::ptr::null()),
    }
}

/// `free`'s lookup: the entry of `p`'s granule, null if its leaf does not
/// exist. Its owner is a live thread cache only while a zone of that cache
/// starts there (`clear` zeroes it), so `free` compares the owner first and
/// reads the map byte only for the blocks of other threads' zones and heap
/// chunks.
#[inline(always)]
pub fn entry(p: *const u8) -> *const ZoneInfo {
    match slot(p) {
        // SAFETY: g < GRANULES.
        Some((leaf, g)) => unsafe { leaf.entry.get_unchecked(g) },
        None => core::ptr::null(),
    }
}

/// The info of the zone starting at the granule holding `p` (which must be
/// marked a zone).
#[inline]
pub fn info(p: *const u8) -> &'static ZoneInfo {
    let (leaf, g) = slot(p).expect("zone map: info of an unmapped granule");
    &leaf.entry[g]
}

/// The room for the zone header of the granule holding `p` (see [`Room`]):
/// `p` lies in one of our mappings (`add_ours`), whose leaves exist.
#[inline(always)]
pub fn room(p: *const u8) -> *mut Room {
    let a = p as usize;
    let leaf = MAP.l1[(a >> L1_SHIFT) & (L1_LEN - 1)].load(Ordering::Acquire);
    debug_assert!(!leaf.is_null());
    // SAFETY: leaves are never freed; the index is below GRANULES. (Only the
    // address is computed.)
    unsafe { addr_of_mut!((*leaf).room[(a >> ZONE_SHIFT) & (GRANULES - 1)]) }
}

/// The entry of the granule holding `p`, by address arithmetic only (as
/// [`room`]: `p` lies in one of our mappings, whose leaves exist), for a
/// prefetch of it.
#[inline(always)]
pub fn entry_in_ours(p: *const u8) -> *const ZoneInfo {
    let a = p as usize;
    let leaf = MAP.l1[(a >> L1_SHIFT) & (L1_LEN - 1)].load(Ordering::Acquire);
    debug_assert!(!leaf.is_null());
    // SAFETY: as in `room`.
    unsafe { core::ptr::addr_of!((*leaf).entry[(a >> ZONE_SHIFT) & (GRANULES - 1)]) }
}

/// [`room`] of the granule holding `p`, whose entry is `e` (no lookup: an
/// entry and its room lie in one leaf, at one index).
#[inline(always)]
pub fn room_of(e: *const ZoneInfo, p: *const u8) -> *mut Room {
    const _: () = assert!(core::mem::offset_of!(Leaf, room) == GRANULES * 32);
    let i = (p as usize >> ZONE_SHIFT) & (GRANULES - 1);
    (e as usize + (GRANULES - i) * 32 + i * ROOM) as *mut Room
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

/// The lock that serialises mapping new leaves (for the fork handlers).
pub fn leaf_lock() -> &'static crate::lock::Lock {
    &MAP.leaf_lock
}

/// The leaf for address `a`, mapped on first use; null if out of range or
/// the mapping failed.
fn leaf_of(a: usize) -> *mut Leaf {
    let i = a >> L1_SHIFT;
    if i >= L1_LEN {
        return core::ptr::null_mut();
    }
    let leaf = MAP.l1[i].load(Ordering::Acquire);
    if !leaf.is_null() {
        return leaf;
    }
    let _g = MAP.leaf_lock.guard();
    let leaf = MAP.l1[i].load(Ordering::Acquire);
    if !leaf.is_null() {
        return leaf;
    }
    let m = crate::os::map(core::mem::size_of::<Leaf>()) as *mut Leaf;
    if !m.is_null() {
        // SAFETY: m is the mapping just made.
        unsafe { crate::os::no_huge_pages(m as *mut u8, core::mem::size_of::<Leaf>()) };
        MAP.l1[i].store(m, Ordering::Release);
        if FIRST.key.load(Ordering::Relaxed) == usize::MAX {
            // (Under the leaf lock: key and leaf are one pair.)
            FIRST.leaf.store(m, Ordering::Relaxed);
            FIRST.key.store(i, Ordering::Release);
        }
    }
    m
}

/// Marks granule of `z` as a zone of class `class` owned by `owner`, whose
/// blocks start at offset `first` of the granule, take `area` bytes and
/// are `capacity` blocks of `block_size` bytes; false if the leaf could not
/// be mapped.
pub fn set(
    z: *const u8,
    owner: usize,
    class: u32,
    first: u32,
    block_size: u32,
    capacity: u32,
) -> bool {
    let a = z as usize;
    let leaf = leaf_of(a);
    if leaf.is_null() {
        return false;
    }
    let g = (a >> ZONE_SHIFT) & (GRANULES - 1);
    // SAFETY: leaves are never freed; g < GRANULES. The info is written
    // before the bit (Release): whoever sees the bit sees the info.
    unsafe {
        let e = &(*leaf).entry[g];
        e.owner.store(owner, Ordering::Relaxed);
        let (magic, bound) = geometry(block_size, capacity);
        *e.magic.get() = magic;
        *e.bound.get() = bound;
        *e.first.get() = first;
        *e.class.get() = class as u16;
        e.bits.fetch_or(ZONE_BIT, Ordering::Release)
    };
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
        let leaf = MAP.l1[a >> L1_SHIFT].load(Ordering::Acquire);
        // SAFETY: add_ours mapped every leaf of the range; leaves are never
        // freed.
        unsafe { f(&(*leaf).entry[g & (GRANULES - 1)].bits) };
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
    let leaf = MAP.l1[a >> L1_SHIFT].load(Ordering::Acquire);
    if leaf.is_null() {
        return;
    }
    let g = (a >> ZONE_SHIFT) & (GRANULES - 1);
    // SAFETY: as in is_zone. (No block of the zone is live: no `free`
    // compares the owner of this entry until a new zone starts here.)
    unsafe {
        let e = &(*leaf).entry[g];
        e.owner.store(0, Ordering::Relaxed);
        e.bits.fetch_and(!ZONE_BIT, Ordering::Release)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `block_at`'s one multiply and compare against the definition: an
    /// offset at or after the first block, a multiple of the block size,
    /// below the capacity's end; for every block size of 16-byte steps, at
    /// the first and last colour of a zone header and an odd offset, and
    /// every address of the granule.
    #[test]
    fn block_at_is_exactly_the_block_starts() {
        let granule = 7 * ZONE_SIZE;
        for bs in (16..=4096u32).step_by(16) {
            for first in [192u32, 192 + 15 * 64, 1000] {
                let cap = (ZONE_SIZE as u32 - first) / bs;
                let (magic, bound) = geometry(bs, cap);
                let e = ZoneInfo {
                    owner: AtomicUsize::new(0),
                    magic: UnsafeCell::new(magic),
                    bound: UnsafeCell::new(bound),
                    first: UnsafeCell::new(first),
                    class: UnsafeCell::new(0),
                    bits: AtomicU8::new(ZONE_BIT),
                    _pad: 0,
                };
                for off in 0..ZONE_SIZE as u32 {
                    let want = off >= first && (off - first) % bs == 0 && (off - first) / bs < cap;
                    let p = (granule + off as usize) as *const u8;
                    assert_eq!(
                        e.block_at(p),
                        want,
                        "block size {bs}, first {first}, offset {off}"
                    );
                }
            }
        }
    }
}
