//! The small blocks' fast paths: `alloc` (a pop from the class's bin, or
//! the zone's free list), `bin_refill` (a bin's alloc half filled from the
//! zone), the frees (`free_own`, `free`, `free_other`, `free_vouched_own`,
//! `free_vouched_other`: a push onto the bin), the foreign blocks a thread
//! keeps (`free_foreign`), and the checks of a pointer into a zone
//! (`block_ok`, `check_block`). The costs are in the comment of `cache`
//! (this module's parent).

use super::*;

/// Allocates a block for a request of `n <= SMALL_MAX` bytes for this thread;
/// null + ENOMEM on exhaustion.
#[inline(always)]
pub fn alloc(n: usize) -> *mut u8 {
    let tc = tls::get();
    // SAFETY: tc is this thread's cache or a static one; its current zone is
    // a live zone owned by tc, or EMPTY_ZONE whose free list is always empty.
    debug_assert!(n <= SMALL_MAX);
    unsafe {
        // (n <= SMALL_MAX, the caller's test: the index is below NSIZES.)
        let cls = *(*tc).class_of.get_unchecked((n + 15) >> 4) as usize;
        alloc_class(tc, cls, n, NO_OTHER)
    }
}

/// [`alloc`] for an entry point that has a slower path of its own: the
/// fast paths (a pop from the class's bin, a swap of its halves, a block
/// from the current zone's list) inline, and in place of every call out of
/// line (a refill, a swap that settles a block first, a profiling sample,
/// the slow path, a corrupted list's report) `other()`, having changed
/// nothing, which the caller makes `alloc`, or a path that checks what
/// `alloc` returns. Inlined, `other` is a tail call, and the fast paths
/// save no register for what comes after it (C++'s `operator new` tests
/// `alloc`'s result to call the `new_handler`; an aligned request, to see
/// that its block came from a zone). The fast paths give zone blocks only.
#[inline(always)]
pub fn alloc_or(n: usize, other: impl FnOnce() -> *mut u8 + Copy) -> *mut u8 {
    let tc = tls::get();
    debug_assert!(n <= SMALL_MAX);
    // SAFETY: as in `alloc`.
    unsafe {
        let cls = *(*tc).class_of.get_unchecked((n + 15) >> 4) as usize;
        alloc_class(tc, cls, n, Some(other))
    }
}

/// `alloc_class`'s `other` for `alloc`: none, each exit its own call.
const NO_OTHER: Option<fn() -> *mut u8> = None;

/// The largest alignment above 16 that [`alloc_aligned`] serves from the
/// zones: every zone's first block lies on a 64-byte line (`ZONE_HDR` and
/// the colours are multiples of 64), so the blocks of a class whose size is
/// a multiple of 64 are 64-aligned, and those of a multiple of 32,
/// 32-aligned.
pub const ZONE_ALIGN: usize = 64;

/// A block of at least `n <= SMALL_MAX` bytes aligned to `align` (a power
/// of two, `16 < align <= ZONE_ALIGN`) from this thread's bins and zones:
/// `alloc` of `n` rounded up to a multiple of `align`, which every class
/// serving such a request holds whole (asserted below), so the block is
/// aligned as asked. Or null (ENOMEM set), or a block that is not aligned,
/// which the caller frees and replaces: a block from the TLSF heap, which
/// `alloc` hands out for a class's first allocations (`COLD_ALLOCS`), on a
/// thread without a cache, with the perturb byte set, or as a profiling
/// sample. (C++'s `new` of an `alignas(64)` type, `aligned_alloc(64, n)`:
/// the heap's aligned path took about 900 instructions a pair, and the
/// heap's lock.)
#[inline(always)]
pub fn alloc_aligned(align: usize, n: usize) -> *mut u8 {
    alloc(aligned_request(align, n))
}

/// The request that [`alloc_aligned`] makes for `n` bytes aligned to
/// `align` (a power of two up to `ZONE_ALIGN`; every block is 16-aligned):
/// `n` rounded up to a multiple of `align` (at least `align`). (SMALL_MAX
/// is a multiple of ZONE_ALIGN: the rounded size stays in.)
#[inline(always)]
pub fn aligned_request(align: usize, n: usize) -> usize {
    debug_assert!(align.is_power_of_two() && align <= ZONE_ALIGN);
    debug_assert!(n <= SMALL_MAX);
    ((n + align - 1) & !(align - 1)).max(align)
}

/// Every class that serves a request of a multiple of 32 or 64 bytes (for
/// a sparse thread too) has a block size that is a multiple of it, and a
/// zone's first block lies on a multiple of 64 (`first_at`).
const _: () = {
    assert!(SMALL_MAX.is_multiple_of(ZONE_ALIGN) && ZONE_HDR.is_multiple_of(ZONE_ALIGN));
    let mut a = 32;
    while a <= ZONE_ALIGN {
        let mut m = a;
        while m <= SMALL_MAX {
            assert!((CLASS_SIZE[CLASS_OF[m >> 4] as usize] as usize).is_multiple_of(a));
            assert!((CLASS_SIZE[CLASS_OF_SPARSE[m >> 4] as usize] as usize).is_multiple_of(a));
            m += a;
        }
        a *= 2;
    }
};

/// `alloc` for class `cls` of cache `tc` (this thread's); with `other`,
/// [`alloc_or`]'s: each exit to a call out of line is `other()` instead,
/// taken before anything is stored.
///
/// # Safety
/// `tc` is this thread's cache or a static one, `cls < NCLASS` serves `n`.
#[inline(always)]
unsafe fn alloc_class<F: FnOnce() -> *mut u8 + Copy>(
    tc: *mut Cache,
    cls: usize,
    n: usize,
    other: Option<F>,
) -> *mut u8 {
    // (cls < NCLASS; a top is a slot of the class's row.)
    let st = *(*tc).bin_state.get_unchecked(cls);
    let top = st as u16 as usize; // (BIN_TOP)
    if !half_empty(top, *(*tc).half_mask.get_unchecked(cls)) {
        return bin_pop(tc, cls, st, top, n, other);
    }
    // (The mask again, from the static table: the one in the cache, read
    // once for both tests, was a load and a test above, where the test
    // reads it from memory.)
    let mask = *HALF_MASK.get_unchecked(cls);
    let ft = *(*tc).free_top.get_unchecked(cls);
    if half_empty(ft as usize, mask) {
        // The bin is empty, and nothing was freed since the alloc half was
        // last filled: the class is being allocated in a run. A block from
        // the zone, and the alloc half stays empty, so that each malloc of
        // the run comes here (a branch a predictor learns; filled, the
        // alloc half would empty once in a fill, at random when classes
        // vary: `bench/bulkfree`). (The static caches' bins are empty and
        // their zones `EMPTY_ZONE`.)
        let z = *(*tc).current.get_unchecked(cls);
        let b = (*z).free;
        if !is_end(b) {
            // (As the pops count in `bin_pop`: the count wraps to 0.)
            let a = (*tc).allocs.get_unchecked(cls).wrapping_add(1);
            let t;
            if let Some(o) = other {
                // (The link checked before the count is stored.)
                t = (*b).next as usize ^ crate::guard::list_key();
                if a == 0 || (crate::guard::CHECKS && t >= ZONE_SIZE) {
                    return o();
                }
                *(*tc).allocs.get_unchecked_mut(cls) = a;
            } else {
                // (`alloc`'s order: the link loaded after the count's
                // store. Loaded before it, the count's increment became a
                // load, an add and a store: `c_tests/xfree.sh` +1.4 to +2.9
                // instructions a pair.)
                *(*tc).allocs.get_unchecked_mut(cls) = a;
                if a == 0 {
                    return prof_tick(n);
                }
                t = (*b).next as usize ^ crate::guard::list_key();
                if crate::guard::CHECKS && t >= ZONE_SIZE {
                    return corrupt_list(b);
                }
            }
            let nb = (t ^ b as usize) as *mut Block;
            (*z).free = nb;
            (*z).used += 1;
            // The run's next malloc loads `nb`'s link: its line, fetched
            // now, comes while the program uses this block (a list of
            // blocks freed at random is a miss a block, waited for here).
            prefetch(nb as *const u8);
            (*b).mark = 0;
            return b as *mut u8;
        }
        if let Some(o) = other {
            return o();
        }
        return alloc_slow(n, cls, tc);
    }
    // The free half becomes the alloc half, and the empty one the free
    // half, if it has enough blocks; else `bin_refill`.
    if ft as u8 & mask >= *(*tc).swap_min.get_unchecked(cls) {
        let swapped = (st & !BIN_TOP) | ft;
        if let Some(o) = other {
            // (The pop's sample too: the swap is not to be half made.)
            if (*tc).unsettled != settled(tc) || ((swapped + BIN_POP - 1) as i64) < 0 {
                return o();
            }
        }
        if (*tc).unsettled != settled(tc) {
            return swap_unsettled(n, cls, tc, st);
        }
        *(*tc).free_top.get_unchecked_mut(cls) = top as u64;
        return bin_pop(tc, cls, swapped, ft as usize, n, other);
    }
    if let Some(o) = other {
        return o();
    }
    bin_refill(n, cls, tc, st)
}

/// `alloc_class`'s swap of the halves when the thread has an unsettled
/// block (see [`free_vouched_own`]), which may lie in the free half: settled
/// first. Out of line, so that the swap saves no register for the call.
///
/// (Its arguments are `bin_refill`'s, in the registers that hold them.)
///
/// # Safety
/// As `alloc_class`; the alloc half of `cls` (state `st`) is empty and the
/// free half holds at least the class's `SWAP_MIN` blocks.
#[inline(never)]
unsafe fn swap_unsettled(n: usize, cls: usize, tc: *mut Cache, st: u64) -> *mut u8 {
    let ft = *(*tc).free_top.get_unchecked(cls);
    // (`settle`, with the report a jump.)
    let q = (*tc).unsettled;
    let none = settled(tc);
    let key = crate::guard::list_key();
    if (*q).mark == key {
        return double_free(q);
    }
    (*q).mark = key;
    (*tc).unsettled = none;
    *(*tc).free_top.get_unchecked_mut(cls) = st & BIN_TOP;
    bin_pop(tc, cls, (st & !BIN_TOP) | ft, ft as usize, n, NO_OTHER)
}

/// Blocks the free half of a bin must hold for an empty alloc half to take
/// them as they are (a swap; or the class's fill if lower, `bin_refill`);
/// with fewer, the alloc half is filled from the zone.
pub(super) const SWAP_AT: usize = 8;
/// Bytes of blocks an alloc half is filled to from the zone.
const FILL_BYTES: usize = 1024;
/// Per class, the blocks an alloc half is filled to from the zone:
/// `FILL_BYTES` of them, at least one and at most one fewer than a half
/// holds (so that in a loop of one class the alloc half empties, and takes
/// the free half, before the free half is full, which would spill). Few
/// blocks of the big classes: a thread that keeps one block of a class
/// cycles through the blocks of its bin, and its first zone batch is one
/// page (8 blocks of 512 bytes, the last reaching into the next page).
///
/// One block for every class above `WIDE_MAX` but `SPARSE_CLASS` (so its
/// `SWAP_MIN` is 1 and it never takes `bin_refill`): a program that frees
/// each block soon after its malloc (the grid's *short* 128 B-4 KiB)
/// cycles, per class, through as many blocks as its row holds, swapping
/// the halves once a cycle. With fills of 8 down to 1 block over these
/// classes (1 KiB of blocks), the swap came once in 1 to 8 mallocs
/// depending on the class, a branch no predictor learns when classes vary:
/// 0.37 mispredicted branches a pair (`c_tests/classes.sh` mode short),
/// 0.05 now; CPU time of `classes 2e7 short` 0.205 -> 0.178 s (tcmalloc
/// 0.191), of `grid 1 1.5e7 128 4096 short` 0.161 -> 0.148 (medians of 7).
/// Every such malloc of a pair loop swaps (a branch the predictor learns):
/// `bench/pair` 160 B 68 -> 78 instructions, 512 B 72 -> 78, as 1024 B and
/// up were already.
/// `SPARSE_CLASS` keeps its 4 blocks: a sparse thread's pairs of any size
/// up to 256 B take it (`tests/rust_path.rs`: the Rust pair of 24 B, 76.2
/// instructions, was 92 with one block, 81.5 with two; its bound is 78).
/// A fill of at least 4 blocks for all these classes instead took the grid
/// cell to 0.21 s (more blocks cycled, their first and last lines
/// written). Random long-lived classes swap a little more often
/// (callgrind: `grid ... 128 4096 long` mispredictions +4.3%, `mchurn`
/// +1.6%; instructions -0.3% and -0.5%).
const FILL_TO: [u8; NCLASS] = {
    let mut t = [0u8; NCLASS];
    let mut cls = 0;
    while cls < NCLASS {
        let n = FILL_BYTES / CLASS_SIZE[cls] as usize;
        t[cls] = if n < 1 || (CLASS_SIZE[cls] > WIDE_MAX && cls != SPARSE_CLASS) {
            1
        } else if n > HALF[cls] - 2 {
            (HALF[cls] - 2) as u8
        } else {
            n as u8
        };
        cls += 1;
    }
    t
};
/// The blocks a *sparse* thread's alloc half of `SPARSE_CLASS` is filled to
/// from the zone (its fill otherwise: `FILL_TO`, 4), and the free half it
/// swaps from (`SWAP_AT`, set in the cache's `swap_min` while the thread is
/// sparse). A sparse thread takes that class for every request of up to 256
/// bytes, so it frees and allocates it in turn: the alloc half empties
/// once a fill, and with 4 blocks the branch that leaves the pop went the
/// rare way on a quarter of the mallocs, in no pattern a predictor learns
/// (`bench/threads32`, 32 sparse threads of 16 live blocks: 1.51 M of
/// 6.4 M mallocs mispredicted there, callgrind; 0.51 M with 12, and 1.5%
/// fewer instructions). 16 live blocks and a fill of 12 stay under
/// `SPARSE_USED`.
pub(super) const SPARSE_FILL: usize = 12;
const _: () = assert!(SPARSE_FILL <= HALF[SPARSE_CLASS] - 2 && SPARSE_FILL >= SWAP_AT);

/// Per class, the blocks a free half must hold for an empty alloc half to
/// take them as they are (a swap): `SWAP_AT`, or the class's fill if lower.
pub(super) const SWAP_MIN: [u8; NCLASS] = {
    let mut t = [0u8; NCLASS];
    let mut cls = 0;
    while cls < NCLASS {
        t[cls] = if FILL_TO[cls] as usize > SWAP_AT {
            SWAP_AT as u8
        } else {
            FILL_TO[cls]
        };
        cls += 1;
    }
    t
};

/// The alloc half of `cls`'s bin (state `st`) is empty, and the free half
/// holds fewer than the class's `SWAP_MIN` blocks but some: blocks from the
/// current zone's free list fill the alloc half up to the class's fill
/// (`FILL_TO`; fewer where the list leaps about the zone: `REFILL_JUMPS`),
/// the free half's on top of them; then a block is popped.
///
/// So the alloc half of a small class empties once in 8 or more of the
/// class's mallocs: the branch that leaves `alloc_class`'s pop is one a
/// predictor cannot learn when classes vary (`bench/mthreads ... s`), and
/// a plain swap of the halves took it on a quarter of the mallocs there
/// (the halves held a few blocks each); filled, on under a tenth
/// (docs/performance.md, "Small requests of random classes").
///
/// # Safety
/// As `alloc_class`; the alloc half of `cls` is empty (`st`'s top).
#[inline(never)]
unsafe fn bin_refill(n: usize, cls: usize, tc: *mut Cache, st: u64) -> *mut u8 {
    settle(tc);
    let top = (st & BIN_TOP) as usize;
    let ft = *(*tc).free_top.get_unchecked(cls) as usize;
    let k = ft & HALF_MASK[cls] as usize;
    let z = *(*tc).current.get_unchecked(cls);
    let fill = if cls == SPARSE_CLASS && (*tc).sparse {
        SPARSE_FILL
    } else {
        FILL_TO[cls] as usize
    };
    // Zone blocks at the bottom of the alloc half, in the order of the
    // zone's list (the first on top: a fresh zone's blocks are handed out
    // in address order), and the free half's (freed last, the likeliest in
    // cache) above them. The static caches' current zones are
    // `EMPTY_ZONE`, whose list is empty.
    let want = fill - k;
    let bin = (*tc).bin.as_mut_ptr();
    let mut b = (*z).free;
    let key = crate::guard::list_key();
    let mut got = 0;
    let mut jumps = 0;
    while got < want && !is_end(b) {
        let t = (*b).next as usize ^ key;
        if crate::guard::CHECKS && t >= ZONE_SIZE {
            return corrupt_list(b);
        }
        got += 1;
        *bin.add(top + want - got) = b;
        let nb = (t ^ b as usize) as *mut Block;
        // (A link to a block far from this one: its line is likely cold.)
        jumps += ((nb as usize).wrapping_sub(b as usize).wrapping_add(256) > 512) as usize;
        b = nb;
        if jumps >= REFILL_JUMPS {
            break;
        }
    }
    if got != 0 {
        (*z).free = b;
        (*z).used += got as u32;
        if got < want {
            core::ptr::copy(bin.add(top + want - got), bin.add(top), got);
        }
    }
    let mut at = top + got;
    let fb = ft - k;
    if k != 0 {
        // (Two halves of one row: disjoint.)
        core::ptr::copy_nonoverlapping(bin.add(fb), bin.add(at), k);
        at += k;
        *(*tc).free_top.get_unchecked_mut(cls) = fb as u64;
    }
    if at == top {
        return alloc_slow(n, cls, tc);
    }
    bin_pop(tc, cls, (st & !BIN_TOP) | at as u64, at, n, NO_OTHER)
}

/// Links to a far block (more than 256 bytes away) a fill from a zone's list
/// follows at most (`bin_refill`). The list is walked one dependent load
/// after another, and a block far from the one before it is mostly a cache
/// miss (and a TLB miss when the zone's blocks were freed at random long
/// ago): a fill of up to 14 blocks of such a list took malloc's p99.9 on the
/// small latency workload to 3.1-3.6k cycles; stopping at the second far
/// link, 1.7k (medians of 5, `bench/latency 1e7 100000 1 small`). A fresh
/// zone's blocks, carved in address order, are near each other: their
/// fills are whole. (`c_tests/classes.sh`: 87.9 instructions a pair, 87.5
/// now; `bursts.sh` unchanged.)
const REFILL_JUMPS: usize = 2;

/// `alloc_class`'s pop from the alloc half of `cls`'s bin, whose state is
/// `st` and top `top` (not empty); a sample is `other()` if given, with
/// nothing stored.
///
/// # Safety
/// As `alloc_class`; `tc` is a live cache.
#[inline(always)]
unsafe fn bin_pop<F: FnOnce() -> *mut u8 + Copy>(
    tc: *mut Cache,
    cls: usize,
    st: u64,
    top: usize,
    n: usize,
    other: Option<F>,
) -> *mut u8 {
    let b = *(*tc).bin.get_unchecked(top - 1);
    // (The pops count reaches the sign bit only when profiling says a
    // sample is due: see `prof_tick`.)
    let st = st + BIN_POP - 1;
    if let Some(o) = other {
        if (st as i64) < 0 {
            return o();
        }
    }
    *(*tc).bin_state.get_unchecked_mut(cls) = st;
    if (st as i64) < 0 {
        return prof_tick(n);
    }
    (*b).mark = 0;
    b as *mut u8
}

/// Frees block `p` if the zone-map entry `info` of its granule says that
/// this thread's cache owns a zone there (the fast path of `free`: no read
/// of the map byte, see `zonemap::entry`); false, having done nothing, if
/// not.
///
/// # Safety
/// `info` is the zone-map entry of `p`'s granule.
#[inline(always)]
pub unsafe fn free_own(info: *const zonemap::ZoneInfo, p: *mut u8) -> bool {
    let tc = tls::get();
    let e = &*info;
    if e.owner.load(Ordering::Relaxed) != tc as usize {
        return false;
    }
    let key = crate::guard::list_key();
    let b = p as *mut Block;
    if !block_ok(e, p, key) {
        return bad_free(p);
    }
    (*b).mark = key;
    // (A zone's class is below NCLASS, fixed while the zone lives.)
    let cls = e.class();
    if !bin_push(tc, cls, b) {
        spill_bin(b, cls, tc);
    }
    true
}

/// Frees block `p` of the zone whose zone-map info is `info`. Reads nothing
/// of the zone's header unless the zone is another thread's (see
/// [`zonemap::ZoneInfo`]).
///
/// # Safety
/// `p` lies in a zone's granule and `info` is that granule's info.
#[inline(always)]
pub unsafe fn free(info: *const zonemap::ZoneInfo, p: *mut u8) {
    let key = crate::guard::list_key();
    if !block_ok(&*info, p, key) {
        return bad_block(p, "free");
    }
    (*(p as *mut Block)).mark = key;
    free_to_bin(info, p)
}

/// [`free`] of a block that [`free_own`] found not of this thread's zones:
/// the checks, then to the bin or the owner (`free_foreign`), with no
/// second owner test.
///
/// # Safety
/// As [`free`]; `free_own(info, p)` returned false on this thread.
#[inline(always)]
pub unsafe fn free_other(info: *const zonemap::ZoneInfo, p: *mut u8) {
    let key = crate::guard::list_key();
    // (The cache read before the mark's store, and the key passed on: read
    // after it, each was read again, as the store might have changed it.)
    let tc = tls::get();
    let e = &*info;
    if !block_ok(e, p, key) {
        return bad_block(p, "free");
    }
    let b = p as *mut Block;
    (*b).mark = key;
    free_foreign_here(tc, e, b, key)
}

/// [`free`] for a caller whose contract makes `p` the start of a block of
/// ours (Rust's `GlobalAlloc::dealloc`: safe code cannot forge a pointer):
/// the block-start check is not made (eight instructions fewer than `free`,
/// bench/rust `json`), and the double-free mark of a block of this
/// thread's own zones is checked one `free_vouched_own` later.
///
/// Why later: the mark lies in the block, and a program often frees a
/// block it has not touched for long (a map's value string, removed; a
/// table's entries, dropped), whose line is in no cache. A load of it
/// stalls the free until the line comes; a store does not wait. So the
/// block is prefetched and pushed, and becomes the thread's `unsettled`
/// block; the previous one, prefetched one free earlier, has its mark
/// checked and set now (`settle`). Before a block can leave its free half
/// (a swap or refill of the alloc half, a spill, a drain) or be read by
/// `check_block`, the unsettled one is settled, so a block freed twice is
/// still reported before it could be handed out twice: at once when the
/// two frees follow each other, else at the next `free_vouched_own`, swap,
/// spill, realloc or thread exit. (bench/rust: CPU time of `btree` and
/// `hashmap` about 6% lower; tests/rust_path.rs counts the pair and checks
/// the reports.) The C paths check at once, as before.
///
/// This half takes the blocks of this thread's own zones, found at the
/// owner's compare of the zone-map entry `info` of `p - HDR`'s granule
/// (the owner is a live cache only while a zone of it starts there: no
/// read of the map byte, as [`free_own`]; `export::dealloc_sized`: 3
/// instructions a pair fewer than with the byte tested first); false,
/// having done nothing, for any other block (or every block, without the
/// checks), which [`free_vouched_other`] takes.
///
/// # Safety
/// `info` is the zone-map entry of `p - HDR`'s granule (not null), and
/// `p`, if that granule starts a zone of this thread's, the start of a
/// block of it.
#[inline(always)]
pub unsafe fn free_vouched_own(info: *const zonemap::ZoneInfo, p: *mut u8) -> bool {
    let key = crate::guard::list_key();
    let b = p as *mut Block;
    let tc = tls::get();
    let e = &*info;
    if !crate::guard::CHECKS || e.owner.load(Ordering::Relaxed) != tc as usize {
        return false;
    }
    prefetch(b as *const u8);
    // (`settled` when there is none: its mark is 0.)
    let q = (*tc).unsettled;
    if q == b || (*q).mark == key {
        double_free(q);
        return true;
    }
    (*q).mark = key;
    (*tc).unsettled = b;
    // (A zone's class is below NCLASS, fixed while the zone lives.)
    let cls = e.class();
    if !bin_push(tc, cls, b) {
        spill_bin(b, cls, tc);
    }
    true
}

/// [`free_vouched_own`]'s other half: a zone block it did not take,
/// another thread's: its mark checked at once, then to this thread's bin
/// or the owner (`free_foreign`), with no second owner test, as
/// [`free_other`]. (Without the checks, any block: to `free_to_bin`.)
///
/// # Safety
/// `p` is the start of a block of the zone whose zone-map info is `info`;
/// `free_vouched_own(info, p)` returned false on this thread.
#[inline(always)]
pub unsafe fn free_vouched_other(info: *const zonemap::ZoneInfo, p: *mut u8) {
    let key = crate::guard::list_key();
    let b = p as *mut Block;
    if !crate::guard::CHECKS {
        (*b).mark = key;
        return free_to_bin(info, p);
    }
    let tc = tls::get();
    if (*b).mark == key {
        return bad_block(p, "free");
    }
    (*b).mark = key;
    free_foreign_here(tc, &*info, b, key)
}

/// Checks and sets the double-free mark of `tc`'s unsettled block (see
/// [`free_vouched_own`]), if it has one.
///
/// # Safety
/// `tc` is this thread's cache.
#[inline]
pub(super) unsafe fn settle(tc: *mut Cache) {
    let q = (*tc).unsettled;
    let none = settled(tc);
    if q == none || (*tc).state != LIVE {
        return;
    }
    (*tc).unsettled = none;
    if (*q).mark == crate::guard::list_key() {
        double_free(q);
    }
    (*q).mark = crate::guard::list_key();
}

/// The stand-in for no unsettled block of cache `tc`: a `Block` at the
/// cache's address, whose `mark` is `tc.unsettled` itself. When the fast
/// path settles it, it writes the key there, then the new unsettled block
/// over it.
#[inline(always)]
pub(super) fn settled(tc: *mut Cache) -> *mut Block {
    const _: () = assert!(
        core::mem::offset_of!(Cache, settled_next) == core::mem::offset_of!(Block, next)
            && core::mem::offset_of!(Cache, unsettled) == core::mem::offset_of!(Block, mark)
    );
    tc as *mut Block
}

/// Reports block `b` freed twice (found by `free_vouched_own` or `settle`).
/// (Returns for null, never passed: so that the compiler does not know
/// that it never returns, and the fast path reaches it with a jump rather
/// than a call, saving no register.)
#[cold]
#[inline(never)]
fn double_free(b: *mut Block) -> *mut u8 {
    if !b.is_null() {
        crate::report::fatal("double free", b as *const u8)
    }
    b as *mut u8
}

/// The end of [`free`]: block `p`, checked and marked free, into this
/// thread's bin for its class (or to its owner).
///
/// # Safety
/// `p` is a block of the zone whose zone-map info is `info`, marked free.
#[inline(always)]
unsafe fn free_to_bin(info: *const zonemap::ZoneInfo, p: *mut u8) {
    let tc = tls::get();
    let b = p as *mut Block;
    let e = &*info;
    if e.owner.load(Ordering::Relaxed) == tc as usize {
        // (A zone's class is below NCLASS, fixed while the zone lives.)
        let cls = e.class();
        if !bin_push(tc, cls, b) {
            spill_bin(b, cls, tc);
        }
    } else {
        free_foreign(tc, e, b);
    }
}

/// Pushes block `b` onto the free half of the bin of `cls` in cache `tc`;
/// false, having done nothing, if it is full.
///
/// # Safety
/// `tc` is this thread's live cache, `cls < NCLASS`, and `b` a free block
/// of `cls`, counted as used by its zone.
#[inline(always)]
unsafe fn bin_push(tc: *mut Cache, cls: usize, b: *mut Block) -> bool {
    // (cls < NCLASS; a top is a slot of the class's row.)
    let ft = *(*tc).free_top.get_unchecked(cls) as usize;
    if half_full(ft, *(*tc).half_mask.get_unchecked(cls)) {
        return false;
    }
    *(*tc).bin.get_unchecked_mut(ft) = b;
    *(*tc).free_top.get_unchecked_mut(cls) = ft as u64 + 1;
    true
}

/// Frees block `b` of class `cls` from a zone `tc` does not own. A cache
/// that is allocating the class (it allocated some since the class's last
/// spill, `alloc_sum`) keeps it in its bin, like a block of its own, for
/// its next malloc of the class, if the block is above 128 bytes
/// (`KEEP_FOREIGN`): a thread that frees what others allocated
/// (a server thread taking over requests) reuses those blocks instead of
/// carving its own while they wait on a remote list for an owner that may
/// never allocate again (larson: the main thread's 8 MiB of first blocks).
/// A block leaving the bin goes back through its zone's owner
/// (`give_back_all`).
///
/// A thread that is not allocating the class (a consumer) would only pass
/// the block on later, so it goes to its owner at once, batched with the
/// blocks of its zone freed before it: a link and a count here, one list
/// push a batch (`remote_run`). Through the bin, each cost a push, its
/// share of a spill and a remote free of its own: 126 instructions a
/// free, 62 now, 73 under mimalloc (`c_tests/xfree.c`, mode c).
///
/// A block kept so whose zone has no owner (its thread exited) makes this
/// thread the zone's owner (`adopt_freed`): a thread that takes over
/// another's blocks (larson's servers, which take over the arrays of
/// threads that exited) frees them into zones of its own from then on, and
/// its free's owner test, which went either way at random when its bin held
/// blocks of its own zones and of others' alike, is mostly the same way.
/// Out of line: inlined, it made every free save registers; and with no
/// call but tail calls, so that it saves none either.
///
/// # Safety
/// `tc` is this thread's cache or a static one; `b` is a block of the zone
/// whose zone-map entry is `e`, which `tc` does not own, checked and marked
/// free.
#[inline(never)]
unsafe fn free_foreign(tc: *mut Cache, e: &zonemap::ZoneInfo, b: *mut Block) {
    free_foreign_here(tc, e, b, crate::guard::list_key())
}

/// [`free_foreign`], inline; `key` is the list key.
///
/// A batch that is full goes, and the block starts the next batch of its
/// zone (`flush_restart`): a batch stays open on its zone while the
/// blocks come from it, so that its next block finds it here, where a
/// batch emptied by its push sent that block through `free_foreign_slow`
/// and `new_pending` (about 75 instructions a batch, and a mispredicted
/// branch).
///
/// # Safety
/// As `free_foreign`.
#[inline(always)]
unsafe fn free_foreign_here(tc: *mut Cache, e: &zonemap::ZoneInfo, b: *mut Block, key: usize) {
    // (A zone's class is below NCLASS, fixed while the zone lives.)
    let cls = e.class();
    // (The static caches have allocated nothing and spilled nothing, and
    // have pending batches of no zone.)
    if keeps_foreign(cls) && alloc_sum(tc, cls) != *(*tc).spilled.get_unchecked(cls) {
        if e.owner.load(Ordering::Relaxed) == 0 {
            // (A tail call: a call here made every foreign free save three
            // registers, 7 instructions a free in `c_tests/xfree.sh`.)
            return adopt_and_keep(tc, cls, b);
        }
        if bin_push(tc, cls, b) {
            return;
        }
        return spill_bin(b, cls, tc);
    }
    let p = (*tc).pending.get_unchecked_mut(cls);
    // (A batch's head is a block of its zone; with no batch, null.)
    if (p.head as usize ^ b as usize) < ZONE_SIZE {
        let n = p.count;
        if n >= PENDING_MAX {
            return flush_restart(p, b);
        }
        (*b).next = (p.head as usize ^ b as usize ^ key) as *mut Block;
        p.head = b;
        p.count = n + 1;
        return;
    }
    free_foreign_slow(tc, cls, b)
}

/// `free_foreign`'s keeping of block `b` of class `cls`, whose zone has no
/// owner: the zone adopted (`adopt_freed`), then `b` into the bin.
///
/// # Safety
/// As `free_foreign`; `tc` is live (it allocated the class).
#[cold]
#[inline(never)]
unsafe fn adopt_and_keep(tc: *mut Cache, cls: usize, b: *mut Block) {
    adopt_freed(tc, cls, b);
    if !bin_push(tc, cls, b) {
        spill_bin(b, cls, tc);
    }
}

/// The first class whose blocks, another thread's, may be kept in a bin and
/// reused (`free_foreign`): the classes above 128 bytes. A smaller block, reused,
/// would share its line with the neighbours that the zone's owner hands to
/// other threads (passive false sharing, Hoard's `cache-scratch`: the main
/// thread's 8-byte blocks, one a thread, each freed by its thread and taken
/// back by its next malloc, four to a line; mimalloc and snmalloc never
/// reuse another thread's block). Such blocks go to their owner. A block
/// above 128 bytes has inner lines of its own (two at its ends are shared).
/// The 64 and 128-byte classes, whose blocks have lines of their own too
/// (`ZONE_HDR` and the colours start a zone's first block on one), were
/// kept until grid17h; where classes of up to 128 bytes vary at random
/// (the grid's *cross* and *bulk* 16-128 B) the keep-or-send branch was
/// then taken at random, a fifth of the blocks one way: 0.23 mispredictions
/// a free, half of the cells' (callgrind); one rule for the whole band is
/// a branch the predictor learns (`c_tests/xfree.sh` mode r bounds it).
const KEEP_FOREIGN: usize = 8;
const _: () = {
    let mut cls = 0;
    while cls < NCLASS {
        assert!((CLASS_SIZE[cls] > 128) == (cls >= KEEP_FOREIGN));
        cls += 1;
    }
};

/// Is another thread's block of class `cls` kept (see `KEEP_FOREIGN`)? A
/// compare of the class (a load of a table and its test before).
#[inline(always)]
fn keeps_foreign(cls: usize) -> bool {
    cls >= KEEP_FOREIGN
}
const _: () = assert!(ZONE_HDR.is_multiple_of(64) && (COLOURS - 1) * 64 < ZONE_SIZE);

/// The allocations of `cls` that cache `tc` served (its pops and its zone
/// allocations, which only grow, but for profiling's offsets: their sum
/// moves with every allocation), mod 2^32.
///
/// # Safety
/// `tc` is this thread's cache or a static one, `cls < NCLASS`.
#[inline(always)]
pub(super) unsafe fn alloc_sum(tc: *mut Cache, cls: usize) -> u32 {
    let st = *(*tc).bin_state.get_unchecked(cls);
    ((st >> 16) as u32).wrapping_add(*(*tc).allocs.get_unchecked(cls) as u32)
}

/// `free_foreign` of a block that starts a pending batch: the batch of
/// another zone goes. A thread that frees before it has allocated (a
/// consumer of other threads' blocks: a Rust thread that only drops what
/// it receives) gets its cache here, as its first small malloc would give
/// it one, so that its frees go to their owners in batches: each block
/// went alone before, one compare-exchange on the zone's remote word a
/// block (tests/rust_path.rs, `cross_thread_bare_instructions`: 157.6
/// instructions an alloc and its free by such a thread, 124.3 now, as by a
/// thread with a cache). A thread without one still (its cache torn down
/// at exit, or none to be had: debug mode, the perturb byte, no memory)
/// pushes the block alone.
#[cold]
#[inline(never)]
unsafe fn free_foreign_slow(tc: *mut Cache, cls: usize, b: *mut Block) {
    let z = zone_of(b as *const u8);
    let mut tc = tc;
    if (*tc).state == EMPTY && !crate::config::debug() && crate::config::perturb() == 0 {
        tc = init_cache();
    }
    if tc.is_null() || (*tc).state != LIVE {
        return push_remote(z, b, b, 1);
    }
    new_pending((*tc).pending.get_unchecked_mut(cls), z, b, b, 1)
}

/// The checks every pointer into a zone gets: it is where a block starts
/// (not an interior or misaligned pointer: the zone map's entry `e` for its
/// granule says where blocks lie) and that block is not free. About nine
/// instructions.
#[inline(always)]
unsafe fn block_ok(e: &zonemap::ZoneInfo, p: *mut u8, key: usize) -> bool {
    if !crate::guard::CHECKS {
        return true;
    }
    e.block_at(p) && (*(p as *mut Block)).mark != key
}

/// `block_ok` for `p` in a zone's granule, reporting and aborting on
/// failure; `what` names the call.
///
/// # Safety
/// `p` lies in a live zone (the zone map says its granule is one).
#[inline(always)]
pub unsafe fn check_block(p: *mut u8, what: &'static str) {
    settle(tls::get());
    if !block_ok(zonemap::info(p), p, crate::guard::list_key()) {
        bad_block(p, what);
    }
}

/// [`check_block`] without the reports, for a fast path that must save no
/// register: false when a report is due (the tail-called caller's cold
/// path then runs `check_block`, which makes it). The unsettled block is
/// settled here unless it is the one to report. For a caller whose
/// contract makes `p` the start of a block (Rust's `GlobalAlloc::realloc`,
/// as [`free_vouched_own`] for its `dealloc`): only the double-free mark
/// is checked, not where `p` lies in its zone (tests/rust_path.rs: 5
/// instructions a realloc fewer).
///
/// # Safety
/// `p` is the start of a block of a live zone.
#[inline(always)]
pub unsafe fn block_passes(p: *mut u8) -> bool {
    let key = crate::guard::list_key();
    let tc = tls::get();
    let q = (*tc).unsettled;
    if q != settled(tc) && (*tc).state == LIVE {
        if (*q).mark == key {
            return false;
        }
        (*tc).unsettled = settled(tc);
        (*q).mark = key;
    }
    !crate::guard::CHECKS || (*(p as *mut Block)).mark != key
}

/// [`free`] of block `p`, which [`block_passes`] passed since it was last
/// handed out (Rust's `realloc` of a block that moves: the block freed
/// after its copy): marked free and to the bin (or the owner), with no
/// check again (tests/rust_path.rs: 7 instructions a move fewer).
///
/// # Safety
/// `p` is the start of a live block of the zone whose zone-map info is
/// `info`, which `block_passes(p)` passed.
#[inline(always)]
pub unsafe fn free_passed(info: *const zonemap::ZoneInfo, p: *mut u8) {
    (*(p as *mut Block)).mark = crate::guard::list_key();
    free_to_bin(info, p)
}

/// `bad_block` for `free_own` (a tail call: the fast path saves nothing).
#[cold]
#[inline(never)]
fn bad_free(p: *mut u8) -> bool {
    bad_block(p, "free");
    true
}

/// Reports a bad pointer into a zone: freed already, or not a block start.
#[cold]
#[inline(never)]
fn bad_block(p: *mut u8, what: &'static str) {
    // SAFETY: p lies in a live zone (the zone map said so), so its first
    // bytes are ours to read.
    let freed = zonemap::info(p).block_at(p)
        && unsafe { (*(p as *mut Block)).mark == crate::guard::list_key() };
    let msg = match (what, freed) {
        ("free", true) => "double free",
        ("realloc", true) => "realloc of a freed block",
        (_, true) => "malloc_usable_size of a freed block",
        _ => "invalid pointer (not the start of a block)",
    };
    crate::report::fatal(msg, p)
}
