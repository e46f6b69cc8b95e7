//! The C ABI: glibc's allocator family and memalloc's extensions.
//!
//! Owns the argument rules of each function (glibc's manual pages): overflow
//! checks, alignment validation, `errno`, `realloc(p, 0)` freeing. Everything
//! below this layer works in chunk sizes and never sees a C argument.
//!
//! Exported names are `#[no_mangle]` only with the `override` feature (the
//! C library, `capi/`, turns it on) and outside `cargo test`, so that unit
//! tests run on the system allocator and test the algorithms on buffers, and
//! a Rust program using `MemAlloc` keeps glibc's malloc for its C code.

use crate::cache::{self, zone_of, SMALL_MAX};
use crate::chunk::*;
use crate::config;
use crate::heap::HEAP;
use crate::large;
use crate::mcache;
use crate::os;
use crate::report::fatal;
use crate::zonemap;
use core::ffi::c_void;
use core::ptr::null_mut;

// ---- internal operations -------------------------------------------------

#[cold]
fn enomem() -> *mut u8 {
    os::set_errno(libc::ENOMEM);
    null_mut()
}

/// malloc: a block of at least `n` bytes, 16-aligned; null + ENOMEM.
#[inline(always)]
pub fn alloc(n: usize) -> *mut u8 {
    if n <= SMALL_MAX {
        return cache::alloc(n); // sets errno itself on failure
    }
    alloc_mid(n)
}

/// Requests above the small classes: a chunk of this thread's medium cache
/// (the fast path, with no register to save; while profiling, the same pop
/// and `prof::count_in`'s two instructions, the sample, if due, a tail call),
/// else `alloc_medium` (which counts what it serves). Out of line, so that
/// the small path stays as it was.
#[inline(never)]
fn alloc_mid(n: usize) -> *mut u8 {
    if n <= mcache::MC_MAX {
        return mcache::pop(
            n,
            // SAFETY: `p` is the chunk just popped, not yet the program's
            // (`mark_sampled`).
            |p, n, left| crate::prof::count_in(p, n, left, |p| unsafe { mark_sampled(p) }),
            alloc_medium,
        );
    }
    alloc_medium(n)
}

/// Requests above the small classes: the TLSF heap, or a mapping of their own.
#[inline(never)]
fn alloc_medium(n: usize) -> *mut u8 {
    if config::debug() {
        return or_enomem(crate::debug::alloc(n, ALIGN));
    }
    let csize = match request_to_size(n) {
        Some(s) => s,
        None => return enomem(),
    };
    if csize >= large::threshold() {
        return alloc_large(n, ALIGN, false);
    }
    let c = if n <= mcache::MC_MAX {
        mcache::alloc(n)
    } else {
        crate::events::MEDIUM_ALLOCS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        // Searched for at its class, so that a freed block is reused whole,
        // at its address (`heap::big_size`); cut to its size from a bigger
        // free chunk (`Tlsf::alloc_big`).
        let class = crate::heap::big_size(csize);
        mcache::make_room(class);
        HEAP.with(|h| h.alloc_big(csize, class))
    };
    if c.is_null() {
        return enomem();
    }
    // SAFETY: the chunk holds at least n bytes.
    let p = unsafe { config::perturb_alloc(to_user(c), n) };
    if crate::prof::active() {
        return crate::prof::counted(p, n);
    }
    p
}

#[inline]
fn or_enomem(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        enomem()
    } else {
        p
    }
}

#[cold]
fn alloc_large(n: usize, align: usize, zero: bool) -> *mut u8 {
    let p = large::alloc(n, align, zero);
    if p.is_null() {
        return enomem();
    }
    let p = if zero {
        p
    } else {
        // SAFETY: the block holds at least n bytes.
        unsafe { config::perturb_alloc(p, n) }
    };
    if crate::prof::active() {
        return crate::prof::counted(p, n);
    }
    p
}

/// An aligned block; `align` is a power of two.
pub fn alloc_aligned(align: usize, n: usize) -> *mut u8 {
    if align <= ALIGN {
        return alloc(n);
    }
    if align <= cache::ZONE_ALIGN && n <= SMALL_MAX {
        return alloc_aligned_small(align, n);
    }
    alloc_aligned_heap(align, n)
}

/// `alloc_aligned` of at most `SMALL_MAX` bytes and `16 < align <=
/// cache::ZONE_ALIGN`: a zone block, of a class whose blocks are all
/// aligned so (or null, ENOMEM set); else `alloc_aligned_again`. (Debug
/// mode is read after the block came: its allocation read the settings.
/// Debug mode's blocks, heap chunks that record the size asked for, must
/// record `n`, not the rounded size.) Out of line, so that
/// `alloc_aligned` saves no register.
#[inline(always)]
fn alloc_aligned_small(align: usize, n: usize) -> *mut u8 {
    // (`alloc_or`'s fast paths give zone blocks: aligned. They give none in
    // debug mode, where a thread has no cache.)
    cache::alloc_or(cache::aligned_request(align, n), || {
        alloc_aligned_checked(align, n)
    })
}

/// `alloc_aligned_small` past `alloc`'s fast paths: `alloc`'s block,
/// checked.
#[inline(never)]
fn alloc_aligned_checked(align: usize, n: usize) -> *mut u8 {
    let p = cache::alloc_aligned(align, n);
    if p as usize & (align - 1) == 0 && !config::debug_ready() {
        return p;
    }
    alloc_aligned_again(p, align, n)
}

/// `alloc_aligned` of a small block, whose first try gave block `p` that is
/// not aligned (a heap chunk: see `cache::alloc_aligned`), or gave it in
/// debug mode: `p` goes back, and the heap's aligned path serves.
#[cold]
#[inline(never)]
fn alloc_aligned_again(p: *mut u8, align: usize, n: usize) -> *mut u8 {
    if !p.is_null() {
        // SAFETY: p is the block `alloc` just returned.
        unsafe { dealloc(p) };
    }
    alloc_aligned_heap(align, n)
}

/// `alloc_aligned` from the heap or a mapping of its own.
#[inline(never)]
fn alloc_aligned_heap(align: usize, n: usize) -> *mut u8 {
    if config::debug() {
        return or_enomem(crate::debug::alloc(n, align));
    }
    let csize = match request_to_size(n) {
        Some(s) if align <= MAX_REQUEST => s,
        _ => return enomem(),
    };
    if large::wants_mapping(csize, align) {
        return alloc_large(n, align, false);
    }
    let c = HEAP.with(|h| h.alloc_aligned(csize, align));
    if c.is_null() {
        return enomem();
    }
    // SAFETY: the chunk holds at least n bytes.
    let p = unsafe { config::perturb_alloc(to_user(c), n) };
    if crate::prof::active() {
        return crate::prof::counted(p, n);
    }
    p
}

/// An aligned block, zeroed; `align` is a power of two. A fresh mapping is
/// not cleared again.
pub fn alloc_aligned_zeroed(align: usize, n: usize) -> *mut u8 {
    if align <= ALIGN {
        return calloc_impl(n, 1);
    }
    if !config::debug() {
        if let Some(csize) = request_to_size(n) {
            if align <= MAX_REQUEST && large::wants_mapping(csize, align) {
                return alloc_large(n, align, true); // aligned: always a fresh mapping
            }
        }
    }
    let p = alloc_aligned(align, n);
    if !p.is_null() {
        // SAFETY: p holds at least n bytes.
        unsafe { core::ptr::write_bytes(p, 0, n) };
    }
    p
}

/// The chunk of user pointer `p` after the checks every pointer passed back
/// to us gets: 16-aligned, inside memory we mapped, and a header whose keyed
/// tag matches. Reports and aborts otherwise.
#[inline]
unsafe fn chunk_of(p: *mut u8) -> *mut Chunk {
    if crate::guard::CHECKS && !zonemap::is_ours(from_user(p) as *const u8) {
        if p as usize & (ALIGN - 1) != 0 {
            fatal("invalid pointer (misaligned, not from malloc)", p);
        }
        fatal(
            "invalid pointer (not from memalloc, or already freed and unmapped)",
            p,
        );
    }
    chunk_of_in_ours(p)
}

/// `chunk_of` for a pointer whose header lies in memory of ours.
#[inline(always)]
unsafe fn chunk_of_in_ours(p: *mut u8) -> *mut Chunk {
    if p as usize & (ALIGN - 1) != 0 {
        fatal("invalid pointer (misaligned, not from malloc)", p);
    }
    let c = from_user(p);
    if !crate::guard::CHECKS {
        return c;
    }
    if !head_ok_at(p) {
        fatal(
            "corrupted block header (heap overflow?) or invalid pointer",
            p,
        );
    }
    c
}

/// free.
///
/// # Safety
/// `p` is null or a pointer this allocator returned and has not freed. (A
/// pointer that is neither is reported when the checks can tell, not trusted.)
#[inline(always)]
pub unsafe fn dealloc(p: *mut u8) {
    // The entry of the granule of `p - HDR`, where a heap chunk's header
    // lies: if it is ours, `dealloc_chunk` reads the header with no test of
    // its own. A zone block's granule is the same (a zone's first block is
    // at least 192 bytes into it); a pointer less than `HDR` into
    // a granule finds the entry below, whose zone's `block_at`, or heap
    // chunk's checks, reject it.
    let c = from_user(p);
    let info = zonemap::entry(c as *const u8);
    if info.is_null() {
        return dealloc_chunk_slow(p, false);
    }
    // A heap chunk goes on to `dealloc_chunk` (a tail call) at the map
    // byte's test; a block of this thread's zones then at the owner's
    // compare. (The owner's compare first made the small pair 70
    // instructions against 73, and the medium pair of 20000 B 129 against
    // 123, callgrind: the medium path is the one behind the peers.)
    let bits = (*info).bits();
    if bits & zonemap::ZONE_BIT == 0 {
        // (The map byte's one test: its sign the zone bit, zero not ours.)
        if bits == 0 {
            return dealloc_chunk_slow(p, false);
        }
        return dealloc_chunk(p);
    }
    if cache::free_own(info, p) {
        return;
    }
    dealloc_other_zone(p, info)
}

/// free of a block of another thread's zone (out of line, so that
/// `dealloc`'s fast path saves no register).
///
/// # Safety
/// As [`dealloc`]; `info` is the zone-map entry of `p - HDR`'s granule, a
/// zone's (`p`'s too, unless `p` is no block of it), and
/// `cache::free_own(info, p)` returned false.
#[inline(never)]
unsafe fn dealloc_other_zone(p: *mut u8, info: *const zonemap::ZoneInfo) {
    cache::free_other(info, p)
}

/// free of a block the caller says has `size` bytes (Rust's `dealloc`):
/// above the small classes it cannot be a zone block, so the zone test is
/// skipped. The zone map is still read, to validate the pointer. A zone
/// block is one Rust's contract vouches for: `cache::free_vouched_own` checks
/// its double-free mark, not that it starts a block.
///
/// # Safety
/// As [`dealloc`], and `p` is a pointer this allocator returned;
/// `size` is the size the block was requested with.
#[inline(always)]
pub unsafe fn dealloc_sized(p: *mut u8, size: usize) {
    // (The granule of `p - HDR`, as in `dealloc`.)
    if size > SMALL_MAX {
        return dealloc_chunk_any(p, zonemap::bits(from_user(p) as *const u8));
    }
    // A block of this thread's zones at the owner's compare, with no read
    // of the map byte (as `dealloc`).
    let info = zonemap::entry(from_user(p) as *const u8);
    if info.is_null() {
        return dealloc_chunk_slow(p, false);
    }
    if cache::free_vouched_own(info, p) {
        return;
    }
    dealloc_sized_other(p, info)
}

/// `dealloc_sized` of a small block that is not of this thread's zones:
/// another thread's zone block, or a heap chunk (out of line, so that the
/// fast path saves no register).
///
/// # Safety
/// As [`dealloc_sized`]; `info` is the zone-map entry of `p - HDR`'s
/// granule, and `cache::free_vouched_own(info, p)` returned false.
#[inline(never)]
unsafe fn dealloc_sized_other(p: *mut u8, info: *const zonemap::ZoneInfo) {
    let bits = (*info).bits();
    if bits & zonemap::ZONE_BIT != 0 {
        return cache::free_vouched_other(info, p);
    }
    dealloc_chunk_any(p, bits)
}

/// `dealloc_chunk` for any map byte `bits` of `p - HDR`'s granule, 0 (not
/// ours) included.
///
/// # Safety
/// As [`dealloc_chunk`], but for the granule.
#[inline(always)]
unsafe fn dealloc_chunk_any(p: *mut u8, bits: u8) {
    if bits == 0 {
        return dealloc_chunk_slow(p, false);
    }
    dealloc_chunk(p)
}

/// free of a pointer that is not in a zone: a heap chunk or a large block,
/// whose header (at `p - HDR`) lies in a granule the zone map says is ours,
/// not a zone's.
///
/// The common case first, with no register to save: a heap chunk of a
/// medium class into this thread's cache (the same checks as below: the
/// header's tag, then `mcache::free_fast`'s), else `dealloc_chunk_slow`.
/// The profiler adds nothing here: a sampled block's header says so, and
/// fails `to_medium_cache`'s test of its size (see `chunk::SAMPLED`).
///
/// The fast path is a fast section of the medium cache (`mcache`, "Idle
/// threads"): entered before the gate's test, whose `RECLAIM` bit is its
/// signal, left after the push.
#[inline(never)]
unsafe fn dealloc_chunk(p: *mut u8) {
    if p as usize & (ALIGN - 1) == 0 {
        let tc = mcache::enter_mine();
        if !crate::gate::any(MODES) {
            if to_medium_cache(tc, p) {
                mcache::leave_mine(tc);
                return;
            }
        } else {
            mcache::leave_mine(tc);
            return dealloc_chunk_moded(p);
        }
        mcache::leave_mine(tc);
        // (Off the fast path: one load, of the word just read, and a test.
        // `dealloc_chunk_sampled` checks the header.)
        if (*from_user(p)).head & SAMPLED != 0 {
            return dealloc_chunk_sampled(p, true);
        }
    }
    dealloc_chunk_slow(p, true)
}

/// The modes that send a heap chunk's free off `dealloc_chunk`'s fast path
/// (a reclaim's signal among them). Not the profiler's: see
/// `dealloc_chunk`.
const MODES: u8 = crate::gate::DEBUG
    | crate::gate::PERTURB
    | crate::gate::KEPT
    | crate::gate::PURGE
    | crate::gate::RECLAIM;

/// `dealloc_chunk`'s fast path for heap chunk `p` (its header in its
/// granule): into this thread's medium cache `tc`, after the header's tag
/// and `mcache::free_fast`'s checks; false, having done nothing, if it does
/// not go there.
///
/// # Safety
/// As [`dealloc`]; `p`'s header lies in memory of ours; as
/// `mcache::free_fast` for `tc`.
#[inline(always)]
unsafe fn to_medium_cache(tc: *mut mcache::MCache, p: *mut u8) -> bool {
    // (After the gate's test: a reclaim that cleared its bit is seen whole.)
    core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
    let c = from_user(p);
    // One load of the head word; its tag (of the whole word, with no
    // mask), then `free_fast`'s one test of its flags (ours, neither mapped
    // nor free: a free chunk's second free goes to the slow path, which
    // reports it) and its size.
    let h = (*c).head;
    if crate::guard::CHECKS && !tag_matches_in(p as usize, h, &(*tc).tag_mul) {
        return false;
    }
    // `h` whole: `free_fast`'s mask keeps the profiler's mark, and a
    // sampled block's size, with it, is above every class, so the range test
    // sends it to the slow path, which drops its sample.
    const _: () = assert!(SAMPLED > mcache::MC_MAX && mcache::HEAD_MASK & SAMPLED != 0);
    mcache::free_fast(tc, c, h)
}

/// `dealloc_chunk` of a heap chunk while a slower mode is on: during a
/// reclaim's signal or while the heap's purge wants the frees, and no other
/// mode, the block takes the fast path in a section of its own (out of
/// line, so that `dealloc_chunk` makes no call but tail calls and saves no
/// register), then the purge's tick that `mcache::free` would have made.
///
/// (Through `dealloc_chunk_slow`, the frees made while the purge was due,
/// a third of the medium latency workload's, took 190-300 cycles on
/// average against 95 and were most of its free p99.9: that path pushes
/// at once, where the fast one leaves the chunk pending, and reads more.)
///
/// # Safety
/// As `dealloc_chunk`, whose test of `p`'s alignment passed.
#[cold]
#[inline(never)]
unsafe fn dealloc_chunk_moded(p: *mut u8) {
    if !crate::gate::any(crate::gate::DEBUG | crate::gate::PERTURB | crate::gate::KEPT)
        && to_medium_cache_alone(p)
    {
        if crate::gate::any(crate::gate::PURGE) {
            mcache::tick_purge();
        }
        return;
    }
    dealloc_chunk_slow(p, true)
}

/// `to_medium_cache` in a fast section of its own, which a reclaim under
/// way (the gate's `RECLAIM` bit) sends to the slow path.
///
/// # Safety
/// As `to_medium_cache`.
#[inline(always)]
unsafe fn to_medium_cache_alone(p: *mut u8) -> bool {
    in_medium_cache(|tc| to_medium_cache(tc, p))
}

/// `put(tc)` on this thread's medium cache `tc`, entered as its owner
/// (`mcache::enter_mine`) and not while another thread reclaims idle
/// caches (`gate::RECLAIM`): whether `put` took the block.
#[inline(always)]
fn in_medium_cache(put: impl FnOnce(*mut mcache::MCache) -> bool) -> bool {
    let tc = mcache::enter_mine();
    let cached = !crate::gate::any(crate::gate::RECLAIM) && put(tc);
    // SAFETY: `tc` is `enter_mine`'s answer on this thread.
    unsafe { mcache::leave_mine(tc) };
    cached
}

/// Marks the block at user address `p` sampled (`prof::set_mark`'s hook):
/// its free then leaves the fast path for `dealloc_chunk_sampled`.
///
/// # Safety
/// `p` is the user pointer of an in-use heap chunk or own mapping of this
/// thread's, not yet returned to the program.
#[inline(always)]
pub unsafe fn mark_sampled(p: *mut u8) {
    set_sampled(from_user(p), true);
}

/// Sets or clears `SAMPLED` in the head word of in-use chunk `c`, by a
/// compare-and-swap and without the heap's lock: the heap, under its lock,
/// also rewrites an in-use chunk's head word (its `PREV_FREE`, when the
/// chunk before it is freed or taken), and while profiling it does so by a
/// compare-and-swap too (`chunk::set_flags`), so neither write is lost.
/// (A plain write lost one of the two: `threads32` and `larson` aborted on
/// "heap corruption"; under the heap's lock, `mlarge-16` queued on it.)
///
/// # Safety
/// `c` is an in-use chunk of ours, its header checked, that no other
/// thread frees or resizes meanwhile.
#[inline(always)]
unsafe fn set_sampled(c: *mut Chunk, on: bool) -> usize {
    swap_sampled(c, on)
}

/// The free of a block whose head word has `SAMPLED` set: its header
/// checked (`chunk_of_in_ours` or `chunk_of`, as `ours` says: as
/// `dealloc_chunk_slow`'s), its sample and its mark go, then the block is
/// freed as any other (by the medium cache's fast path when no mode is on).
///
/// # Safety
/// As `dealloc_chunk_slow`.
#[cold]
#[inline(never)]
unsafe fn dealloc_chunk_sampled(p: *mut u8, ours: bool) {
    let c = if ours {
        chunk_of_in_ours(p)
    } else {
        chunk_of(p)
    };
    // (The mark first: the two atomic operations together, the second, the
    // profiler's lock, not waiting for the sample's removal, whose stores
    // may miss the cache.)
    let h = set_sampled(c, false);
    crate::prof::freed_here(p);
    if ours && !crate::gate::any(MODES) {
        // The medium cache's fast path (`to_medium_cache_alone`) with the
        // head word just written: its tag was checked above and rewritten
        // by the compare-and-swap, and the bits `free_fast` reads (size,
        // `MARK`, `MMAPPED`, `FREE`) are the block's owner's, which the
        // heap's concurrent flag updates (`PREV_FREE`) leave. (Through
        // `to_medium_cache_alone`: the head word loaded and its tag
        // checked a second time.)
        if in_medium_cache(|tc| {
            core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
            mcache::free_fast(tc, c, h)
        }) {
            return;
        }
    }
    dealloc_chunk_slow(p, ours)
}

/// `dealloc_chunk`, every case; `ours`: the zone map said the granule of
/// `p`'s header is ours (not to be looked up again).
#[inline(never)]
unsafe fn dealloc_chunk_slow(p: *mut u8, ours: bool) {
    if p.is_null() {
        return;
    }
    // The map said the granule of p's header is ours: that is what
    // chunk_of would look up again.
    let c = if ours {
        chunk_of_in_ours(p)
    } else {
        chunk_of(p)
    };
    if (*c).head & SAMPLED != 0 {
        return dealloc_chunk_sampled(p, ours);
    }
    // (debug_ready: c is a chunk of ours, so the settings were read.)
    if config::debug_ready() {
        return debug_free(p, c);
    }
    if is_mmapped(c) {
        large::free(c);
        return;
    }
    // With a perturb byte set, a freed block is filled, after the heap's
    // checks: it goes to the heap, not to a thread's cache.
    if config::perturb() == 0 && mcache::free(c) {
        large::expire();
        return;
    }
    // SAFETY: chunk_of checked c's header; validate checks it is in use.
    let r = HEAP.with(|h| {
        h.validate(c)?;
        config::perturb_free(p, usable(c));
        h.free(c);
        Ok(())
    });
    if let Err(e) = r {
        fatal(e, p);
    }
    large::expire();
    crate::heap::purge_sparse();
}

/// free in debug mode: the heap's checks, then the canary and quarantine.
#[cold]
unsafe fn debug_free(p: *mut u8, c: *mut Chunk) {
    if !is_mmapped(c) {
        // SAFETY: chunk_of checked c's header.
        if let Err(e) = HEAP.with(|h| h.validate(c)) {
            fatal(e, p);
        }
    }
    crate::debug::free(p, c);
}

/// free_sized and free_aligned_sized in debug mode: `size` must be the size
/// block `p` was requested with (every block is a heap chunk or a large
/// block then, which records it), and `p` aligned to `align`. A block
/// already freed is left to `dealloc` to report. Then frees it. (Out of
/// line, so that the normal path of free_sized is free's.)
#[cold]
#[inline(never)]
unsafe fn debug_free_sized(p: *mut u8, size: usize, align: usize) {
    if !p.is_null() && !zonemap::is_zone(p) {
        check_sized(p, size, align);
    }
    dealloc(p)
}

/// free_sized and free_aligned_sized: `dealloc`, with debug mode's check
/// (`debug_free_sized`) off the zones' path. A zone block is freed as
/// `free` frees it in debug mode too (`debug_free_sized` checks heap chunks
/// and large blocks only: a zone block records no requested size), so the
/// zone-map entry is read first and the debug flag only for a pointer that
/// is no zone's: a sized delete of a small object is `free`'s path, without
/// the flag's load and test (`bench/cxx_stl uptr`: 3 instructions a delete).
///
/// # Safety
/// As [`dealloc`].
#[inline(always)]
unsafe fn dealloc_checking_size(p: *mut u8, size: usize, align: usize) {
    // (As `dealloc`: the entry of the granule of `p - HDR`.)
    let info = zonemap::entry(from_user(p) as *const u8);
    if !info.is_null() {
        let bits = (*info).bits();
        if bits & zonemap::ZONE_BIT != 0 {
            if cache::free_own(info, p) {
                return;
            }
            return dealloc_other_zone(p, info);
        }
        if config::debug_ready() {
            return debug_free_sized(p, size, align);
        }
        if bits == 0 {
            return dealloc_chunk_slow(p, false);
        }
        return dealloc_chunk(p);
    }
    if config::debug_ready() {
        return debug_free_sized(p, size, align);
    }
    dealloc_chunk_slow(p, false)
}

#[cold]
unsafe fn check_sized(p: *mut u8, size: usize, align: usize) {
    let c = chunk_of(p);
    if is_free(c) || crate::debug::in_quarantine(p) {
        return;
    }
    if !is_mmapped(c) {
        if let Err(e) = HEAP.with(|h| h.validate(c)) {
            fatal(e, p);
        }
    }
    use core::fmt::Write;
    let mut what = crate::report::StackBuf::<160>::new(-1);
    let requested = crate::debug::requested(p, c);
    if requested != size {
        let _ = write!(
            what,
            "free_sized or sized delete with a wrong size ({} for a block of {})",
            size, requested
        );
    } else if !is_pow2(align) || p as usize & (align - 1) != 0 {
        let _ = write!(
            what,
            "free_aligned_sized or aligned delete with a wrong alignment ({})",
            align
        );
    } else {
        return;
    }
    fatal(
        core::str::from_utf8(what.as_bytes()).unwrap_or("wrong size"),
        p,
    );
}

/// realloc in debug mode: always a new block, so that a stale pointer to the
/// old one finds it in quarantine.
#[cold]
unsafe fn debug_realloc(p: *mut u8, c: *mut Chunk, n: usize) -> *mut u8 {
    if !is_mmapped(c) {
        // SAFETY: chunk_of checked c's header.
        if let Err(e) = HEAP.with(|h| h.validate(c)) {
            fatal(e, p);
        }
    }
    if crate::debug::in_quarantine(p) {
        fatal("realloc of a freed block", p);
    }
    let old = crate::debug::requested(p, c);
    let q = alloc(n);
    if q.is_null() {
        return q;
    }
    core::ptr::copy_nonoverlapping(p, q, old.min(n));
    crate::debug::free(p, c);
    q
}

/// realloc, with glibc's `realloc(p, 0)` = free. The common case of a heap
/// block that already fits (`stays`) first, in a frame of its own; all else
/// in `realloc_any`.
///
/// # Safety
/// `p` is null or a pointer this allocator returned and has not freed. (A
/// pointer that is neither is reported when the checks can tell, not trusted.)
#[inline(always)]
pub unsafe fn realloc_impl(p: *mut u8, n: usize) -> *mut u8 {
    // The header's granule is ours and no zone's (as `dealloc`), the header
    // aligned and its tag right, the block neither free nor mapped nor
    // cached: else `realloc_any` takes it, and reports what is wrong.
    let c = from_user(p);
    let bits = zonemap::bits(c as *const u8);
    if bits != 0
        && bits & zonemap::ZONE_BIT == 0
        && p as usize & (ALIGN - 1) == 0
        && n != 0
        && !crate::gate::any(crate::gate::DEBUG)
        && (*c).head & FREE == 0
        && (!crate::guard::CHECKS || head_ok_at(p))
        && !mcache::is_cached(c)
    {
        if let Some(csize) = request_to_size(n) {
            if stays(c, csize) {
                return p;
            }
            // While profiling: the block stays and counts as allocated
            // again (`fits`), out of line. (Through `realloc_any`, 100
            // instructions more than this path; tested after `stays`, not
            // in it, so that the common case's code is the same as off.)
            if crate::gate::any(crate::gate::PROF) && fits(c, csize) {
                return realloc_counted(p, n);
            }
        }
    }
    realloc_any(p, n)
}

/// `realloc_impl`'s block `p` that stays (`fits`) while profiling: it
/// counts as allocated again, `n` bytes (as in `resize_heap_chunk`).
#[cold]
#[inline(never)]
fn realloc_counted(p: *mut u8, n: usize) -> *mut u8 {
    crate::prof::counted(p, n)
}

/// `realloc_impl`'s every case.
///
/// # Safety
/// As [`realloc_impl`].
#[inline(never)]
unsafe fn realloc_any(p: *mut u8, n: usize) -> *mut u8 {
    if p.is_null() {
        return alloc(n);
    }
    if n == 0 {
        dealloc(p);
        return null_mut();
    }
    let (bits, info) = zonemap::lookup(p);
    if bits & zonemap::ZONE_BIT != 0 {
        cache::check_block(p, "realloc");
        // (From the zone map, as `realloc_sized`: no zone header read.)
        let old = cache::CLASS_SIZE[(*info).class()] as usize;
        if n <= old && n > old / 2 {
            return p;
        }
        return move_growing(p, old, n, large::threshold());
    }
    let c = chunk_of(p);
    if is_free(c) || (!is_mmapped(c) && mcache::is_cached(c)) {
        fatal("realloc of a freed block", p);
    }
    if config::debug() {
        return debug_realloc(p, c, n);
    }
    let csize = match request_to_size(n) {
        Some(s) => s,
        None => return enomem(),
    };
    if fits(c, csize) {
        // (`stays`, while profiling: the block counts as allocated again.)
        if crate::prof::active() {
            return crate::prof::counted(p, n);
        }
        return p;
    }
    let threshold = large::threshold();
    if is_mmapped(c) {
        let old = large::usable(c);
        if csize < threshold && n <= old && n > old / 2 {
            // Below the threshold but in its mapping, more than half of it
            // used (a growth served by `large::alloc_kept`): it stays. (Its
            // sample goes, and it counts as allocated again, as a heap
            // chunk's that stays: `resize_heap_chunk`. Moved instead, as
            // before, each realloc of it while profiling copied it to a new
            // mapping: `bench/realloc 100 64 64k 48` 683 moves, not 65.)
            if (*c).head & SAMPLED != 0 {
                crate::prof::freed_here(p);
                set_sampled(c, false);
            }
            if crate::prof::active() {
                return crate::prof::counted(p, n);
            }
            return p;
        }
        // (Its sample goes whether it moves, by mremap or to the heap: the
        // block counts as allocated again.)
        if (*c).head & SAMPLED != 0 {
            crate::prof::freed_here(p);
            set_sampled(c, false);
        }
        if csize >= threshold {
            let q = large::realloc(c, n);
            if crate::prof::active() && !q.is_null() {
                return crate::prof::counted(q, n);
            }
            return if q.is_null() { enomem() } else { q };
        }
        return move_block(p, old, n, |p| large::free(from_user(p)));
    }
    if resize_heap_chunk(p, c, n, csize, threshold) {
        return p;
    }
    move_growing(p, usable(c), n, threshold)
}

/// Whether heap chunk `c`, in use and not mapped on its own, already fits
/// chunk size `csize` and is not worth a split (more than half of it is
/// needed): `realloc` then returns the block as it is, without the heap's
/// lock. The common case of a string grown by small steps in the headroom
/// `move_growing` and `resize_heap_chunk` gave it (`bench/realloc`: 197k of
/// 213k reallocs of its strings). Only `c`'s own head word is read, which
/// the caller checked (its tag, not free, not cached) as the medium free's
/// fast path checks it; its size bits change only by the block's owner
/// (the heap's flag updates of `PREV_FREE` under its lock leave them). Its
/// neighbours are checked when it goes back to the heap, as a cached
/// block's are. Not while profiling (the block counts as allocated again:
/// `realloc_any` takes the case, `fits`) nor for a sampled block (its
/// sample goes: `resize_heap_chunk`). Through the heap's lock, the same
/// case cost 168 instructions a realloc (callgrind), 65 more than
/// tcmalloc's.
///
/// # Safety
/// `c` is `chunk_of(p)` of a live block, checked not free and not cached.
#[inline(always)]
unsafe fn stays(c: *mut Chunk, csize: usize) -> bool {
    fits(c, csize) && !crate::gate::any(crate::gate::PROF)
}

/// `stays`, profiling or not. (While profiling, such a block went through
/// the heap's lock in `resize_heap_chunk` until prof19l: `bench/realloc
/// 100 64 64k 48` 10.6M instructions more than off, 1.24x its time.)
///
/// # Safety
/// As `stays`.
#[inline(always)]
unsafe fn fits(c: *mut Chunk, csize: usize) -> bool {
    let h = (*c).head;
    let have = h & SIZE_MASK;
    h & (MMAPPED | SAMPLED) == 0 && csize <= have && csize > have / 2
}

/// Resizes heap chunk `c` (of user pointer `p`) in place to chunk size
/// `csize` for `n` bytes, where its neighbours allow; whether it did. A
/// chunk that fits and is not worth a split stays as it is (keeping the
/// headroom a growing block was given, so the next steps do not move it);
/// one that grows takes a quarter of headroom below `threshold`.
///
/// # Safety
/// `c` is `chunk_of(p)`, checked not free, not mapped on its own.
unsafe fn resize_heap_chunk(
    p: *mut u8,
    c: *mut Chunk,
    n: usize,
    csize: usize,
    threshold: usize,
) -> bool {
    // (Read before the resize, which may write the head word afresh.)
    let sampled = (*c).head & SAMPLED != 0;
    // SAFETY: chunk_of checked c's header; validate checks it is in use
    // before resize_in_place touches it.
    let r = HEAP.with(|h| {
        h.validate(c)?;
        let have = size(c);
        Ok(if csize <= have && csize > have / 2 {
            true
        } else if csize <= have {
            h.resize_in_place(c, csize, csize)
        } else if csize < threshold {
            h.resize_in_place(c, csize, roomy_size(have, csize, threshold))
        } else {
            false
        })
    });
    match r {
        Err(e) => fatal(e, p),
        Ok(true) => {
            if sampled {
                crate::prof::freed_here(p);
                set_sampled(c, false);
            }
            if crate::prof::active() {
                // Its sample (if any) went, and the block counts as a new
                // allocation of n bytes.
                crate::prof::counted(p, n);
            }
            true
        }
        Ok(false) => false,
    }
}

/// realloc for a caller that knows the size `old` the block was requested
/// with (Rust's `GlobalAlloc::realloc`, alignment at most 16). A zone block
/// finds its size in the zone map (no zone header read), and one that must
/// move copies `old` bytes, not its whole class, with no errno to preserve
/// and no headroom: Rust's collections grow geometrically themselves (a
/// `String` built by `format!` moved through `move_growing` at about 200
/// instructions a realloc, callgrind). Other blocks go through
/// [`realloc_impl`], in place where they can. `n` is not 0.
///
/// The block that stays (the common case: `format!`'s strings) costs the
/// checks and a compare; everything else is out of line, the checks'
/// reports included (`realloc_reported`), so that this path saves no
/// registers (it saved six until rust18h: `check_block`'s reports return).
///
/// # Safety
/// `p` is a live block of ours of `old` requested bytes.
#[inline]
pub unsafe fn realloc_sized(p: *mut u8, old: usize, n: usize) -> *mut u8 {
    let (bits, info) = zonemap::lookup(p);
    if bits & zonemap::ZONE_BIT == 0 {
        return realloc_not_small(p, n);
    }
    if !cache::block_passes(p) {
        return realloc_reported(p);
    }
    // (A zone's blocks are CLASS_SIZE[class] bytes: `cache::zone_ok`.)
    // SAFETY: a zone's class is below NCLASS, fixed while the zone lives.
    let have = *cache::CLASS_SIZE.get_unchecked((*info).class()) as usize;
    // A block growing within its class stays, however small it was asked
    // for: `format!` asks for twice its literal text, 2 bytes for "s{}",
    // and grows it to 8 (class 16) at its first argument.
    if n <= have && (n >= old || n > have / 2) {
        return p;
    }
    realloc_small_move(p, info, old, n)
}

/// `realloc_sized` of zone block `p` that failed `cache::block_passes`:
/// `check_block` reports it and aborts. Out of line and reached by a tail
/// call, so that `realloc_sized` saves no register (with `check_block`
/// inline, whose reports return, it saved six: 14 instructions a realloc,
/// tests/rust_path.rs `small_stay_instructions`).
///
/// # Safety
/// `p` lies in a live zone.
#[cold]
#[inline(never)]
unsafe fn realloc_reported(p: *mut u8) -> *mut u8 {
    cache::check_block(p, "realloc");
    // (Not reached. Not `p`: the compiler would see that it returns its
    // argument and call it, to keep `p`, instead of jumping to it.)
    null_mut()
}

/// `realloc_sized` of a block that is not in a zone: [`realloc_impl`].
///
/// # Safety
/// As [`realloc_impl`].
#[inline(never)]
unsafe fn realloc_not_small(p: *mut u8, n: usize) -> *mut u8 {
    realloc_impl(p, n)
}

/// `realloc_sized` of zone block `p` (checked, of `old` requested bytes)
/// that moves: a new block of `n` bytes, `old` bytes copied, `p` freed
/// (with no check again: `cache::free_passed`).
///
/// # Safety
/// `p` is a live block of the zone whose zone-map info is `info`.
#[inline(never)]
unsafe fn realloc_small_move(
    p: *mut u8,
    info: *const zonemap::ZoneInfo,
    old: usize,
    n: usize,
) -> *mut u8 {
    let q = alloc(n);
    if q.is_null() {
        return q;
    }
    copy_small(q, p, old.min(n));
    cache::free_passed(info, p);
    q
}

/// Copies `c` bytes from zone block `src` to block `dst` (another block):
/// up to 32 bytes with one or two 16-byte moves (they overlap between 16
/// and 32), with no call to `memcpy`: a `String` that `format!` started at
/// 14 bytes and grows to 28 (BTreeMap churn's values, bench/rust `btree`)
/// moves in 7 instructions fewer (tests/rust_path.rs,
/// `small_move_instructions`: 233.8 -> 226.8 an alloc + realloc +
/// dealloc, before `realloc_reported`). Every block holds at
/// least 16 bytes (the smallest class), so the 16-byte move below 16
/// stays in both; the bytes past `c` it copies are the source block's
/// own, uninitialised or not, hence `MaybeUninit`.
///
/// # Safety
/// `src` is a zone block of ours holding at least `c` bytes and `dst` a
/// block of at least `c` bytes (and of 16), not overlapping `src`.
#[inline(always)]
unsafe fn copy_small(dst: *mut u8, src: *const u8, c: usize) {
    type Sixteen = core::mem::MaybeUninit<[u8; 16]>;
    if c <= 16 {
        // SAFETY: both blocks hold at least 16 bytes (the caller).
        (dst as *mut Sixteen).write_unaligned((src as *const Sixteen).read_unaligned());
    } else if c <= 32 {
        // SAFETY: 16 < c <= 32: both moves lie in the c bytes.
        let (a, b) = (
            (src as *const Sixteen).read_unaligned(),
            (src.add(c - 16) as *const Sixteen).read_unaligned(),
        );
        (dst as *mut Sixteen).write_unaligned(a);
        (dst.add(c - 16) as *mut Sixteen).write_unaligned(b);
    } else {
        core::ptr::copy_nonoverlapping(src, dst, c);
    }
}

/// realloc of a block allocated with alignment `align`, keeping it: a heap
/// chunk shrinks or grows in place where its neighbours allow (the address,
/// hence the alignment, stays), otherwise the block moves to a new aligned
/// one. `n` is not 0.
///
/// # Safety
/// `p` came from [`alloc_aligned`] with `align` (or from [`alloc`] when
/// `align` is at most 16) and is live.
pub unsafe fn realloc_aligned(p: *mut u8, align: usize, n: usize) -> *mut u8 {
    if align <= ALIGN {
        return realloc_impl(p, n);
    }
    if !zonemap::is_zone(p) && !config::debug() {
        let c = chunk_of(p);
        if is_free(c) || (!is_mmapped(c) && mcache::is_cached(c)) {
            fatal("realloc of a freed block", p);
        }
        if is_mmapped(c) {
            // mremap would keep only the page offset: grow by moving.
            if n <= large::usable(c) && n > large::usable(c) / 2 {
                return p;
            }
        } else if let Some(csize) = request_to_size(n) {
            if resize_heap_chunk(p, c, n, csize, large::threshold()) {
                return p;
            }
        }
    }
    let old = usable_size(p);
    let q = alloc_aligned(align, n);
    if q.is_null() {
        return q;
    }
    core::ptr::copy_nonoverlapping(p, q, old.min(n));
    dealloc(p);
    q
}

/// The chunk size a chunk of `have` bytes growing in place to `csize`
/// (below `threshold`) takes where it can: a quarter of headroom, as
/// `move_growing` gives a moved block, so that a string grown by small steps
/// does not go through the free lists at every step.
fn roomy_size(have: usize, csize: usize, threshold: usize) -> usize {
    let t = threshold & !(ALIGN - 1);
    ((have + have / 4 + ALIGN - 1) & !(ALIGN - 1)).clamp(csize, t.max(csize))
}

/// Moves a block of `old` usable bytes to a new one of `n` bytes. A block
/// that grows gets a quarter of headroom (below the mmap threshold), so that
/// growing by small steps moves it O(log n) times instead of once per size
/// class or step (string building; tcmalloc does the same).
unsafe fn move_growing(p: *mut u8, old: usize, n: usize, threshold: usize) -> *mut u8 {
    if n > old && n < threshold && large::kept_any() {
        let q = move_to_kept(p, old, n);
        if !q.is_null() {
            return q;
        }
    }
    let roomy = if n > old && n < threshold {
        n.max(old + old / 4).min(threshold - 1)
    } else {
        n
    };
    if roomy != n {
        let _e = os::ErrnoGuard::new(); // a failure here is not the caller's
        let q = move_block(p, old, roomy, |p| dealloc(p));
        if !q.is_null() {
            return q;
        }
    }
    move_block(p, old, n, |p| dealloc(p))
}

/// Moves a block that grows to `n` bytes (below the threshold) into a kept
/// mapping of at most twice that (`large::alloc_kept`), whose pages are
/// resident: bench/realloc's vectors, mapped, grown and freed in their first
/// batch (which raised the threshold past their size), grew the break by
/// 30 MiB of fresh pages in the next. Null (`p` untouched) if none fits.
#[cold]
unsafe fn move_to_kept(p: *mut u8, old: usize, n: usize) -> *mut u8 {
    let q = large::alloc_kept(n);
    if q.is_null() {
        return q;
    }
    let q = config::perturb_alloc(q, n);
    let q = if crate::prof::active() {
        crate::prof::counted(q, n)
    } else {
        q
    };
    core::ptr::copy_nonoverlapping(p, q, old.min(n));
    dealloc(p);
    q
}

/// Moves a block to a new allocation of `n` bytes; the old block stays
/// intact if that fails.
unsafe fn move_block(
    p: *mut u8,
    old_usable: usize,
    n: usize,
    free_old: impl FnOnce(*mut u8),
) -> *mut u8 {
    let q = alloc(n);
    if q.is_null() {
        return q;
    }
    core::ptr::copy_nonoverlapping(p, q, old_usable.min(n));
    free_old(p);
    q
}

/// calloc: zeroed; fresh mappings are not cleared again.
pub fn calloc_impl(n: usize, m: usize) -> *mut u8 {
    let total = match n.checked_mul(m) {
        Some(t) => t,
        None => return enomem(),
    };
    let csize = match request_to_size(total) {
        Some(s) => s,
        None => return enomem(),
    };
    if csize >= large::threshold() && !config::debug() {
        return alloc_large(total, ALIGN, true); // cleared only if reused
    }
    let p = alloc(total);
    if !p.is_null() {
        // SAFETY: p holds at least total bytes.
        unsafe { core::ptr::write_bytes(p, 0, total) };
    }
    p
}

/// malloc_usable_size.
///
/// # Safety
/// `p` is null or a pointer this allocator returned and has not freed. (A
/// pointer that is neither is reported when the checks can tell, not trusted.)
pub unsafe fn usable_size(p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    if zonemap::is_zone(p) {
        cache::check_block(p, "malloc_usable_size");
        return cache::usable(zone_of(p));
    }
    let c = chunk_of(p);
    if is_free(c) || (!is_mmapped(c) && mcache::is_cached(c)) {
        fatal("malloc_usable_size of a freed block", p);
    }
    if config::debug() {
        if crate::debug::in_quarantine(p) {
            fatal("malloc_usable_size of a freed block", p);
        }
        return crate::debug::requested(p, c);
    }
    if is_mmapped(c) {
        return large::usable(c);
    }
    usable(c)
}

/// memalloc_check: the number of broken invariants in the whole heap.
pub fn check_heap() -> usize {
    // SAFETY: check calls zone_ok's closure with live zone chunks, whose
    // zone header zone_at finds.
    HEAP.with(|h| {
        h.check(|c| unsafe { cache::zone_ok(cache::zone_at(c as usize)) })
            .0
    })
}

fn is_pow2(a: usize) -> bool {
    a != 0 && a & (a - 1) == 0
}

// ---- the exported ABI ----------------------------------------------------

macro_rules! export {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),*) $(-> $r:ty)? $body:block) => {
        $(#[$m])*
        ///
        /// # Safety
        /// The C contract of the function (its manual page; `memalloc.h` for
        /// the extensions): a block pointer is null or one this allocator
        /// returned and has not freed, an out-pointer is writable, a pool is
        /// one `memalloc_pool_create` made and not destroyed.
        #[cfg_attr(all(feature = "override", not(test)), no_mangle)]
        pub unsafe extern "C" fn $name($($a: $t),*) $(-> $r)? $body
    };
}

export!(
    /// malloc(3).
    fn malloc(n: usize) -> *mut c_void {
        alloc(n) as *mut c_void
    }
);
export!(
    /// glibc's internal alias of malloc.
    fn __libc_malloc(n: usize) -> *mut c_void {
        alloc(n) as *mut c_void
    }
);
export!(
    /// free(3): preserves errno.
    fn free(p: *mut c_void) {
        dealloc(p as *mut u8)
    }
);
export!(
    fn __libc_free(p: *mut c_void) {
        dealloc(p as *mut u8)
    }
);
export!(
    /// cfree: an old alias of free.
    fn cfree(p: *mut c_void) {
        dealloc(p as *mut u8)
    }
);
export!(
    /// C23 free_sized (and C++'s sized delete, include/memalloc-new-delete.h):
    /// `size` is the size the block was requested with. Debug mode checks
    /// it; otherwise we free as free does (the size saves no work there:
    /// docs/cxx.md).
    fn free_sized(p: *mut c_void, size: usize) {
        dealloc_checking_size(p as *mut u8, size, 1)
    }
);
export!(
    /// C23 free_aligned_sized (and C++'s sized aligned delete): debug mode
    /// also checks that the block is aligned to `align`.
    fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
        dealloc_checking_size(p as *mut u8, size, align)
    }
);
/// The C++ header's failure path of `operator new`
/// (`include/memalloc-new-delete.h`): called with the request's size and
/// alignment (0 for none) when memalloc has no block for it, it runs the
/// `new_handler` loop, and returns a block, or throws `std::bad_alloc`, or
/// returns null (the nothrow forms).
pub type NewFail = unsafe extern "C" fn(usize, usize) -> *mut c_void;

export!(
    /// `operator new(n)` of `include/memalloc-new-delete.h`, which jumps
    /// here: `malloc(n)`, and when that is null a tail call of `fail(n,
    /// 0)`, so that the C++ exception `fail` may throw passes no Rust frame
    /// (`c_tests/cxx.sh` checks the jump), and `operator new` needs no
    /// frame of its own to keep `n` for it.
    fn memalloc_new(n: usize, fail: NewFail) -> *mut c_void {
        if n <= SMALL_MAX {
            return cache::alloc_or(n, || new_other(n, fail, 0)) as *mut c_void;
        }
        new_other(n, fail, 0) as *mut c_void
    }
);
export!(
    /// `operator new(n, std::align_val_t(align))` of
    /// `include/memalloc-new-delete.h`: as `memalloc_new`, for
    /// `aligned_alloc(align, n)`; `align` is a power of two (the standard
    /// requires it of `std::align_val_t`), and `fail` gets it. (An `align`
    /// of 0, which is none, takes `new_other`, which reads it as `malloc`'s:
    /// the rounding to a multiple of it would ask for 0 bytes.)
    fn memalloc_new_aligned(n: usize, align: usize, fail: NewFail) -> *mut c_void {
        if align.wrapping_sub(1) < cache::ZONE_ALIGN && n <= SMALL_MAX {
            // (`alloc_or`'s fast paths give zone blocks: aligned.)
            let m = cache::aligned_request(align, n);
            return cache::alloc_or(m, || new_other(n, fail, align)) as *mut c_void;
        }
        new_other(n, fail, align) as *mut c_void
    }
);

/// `memalloc_new` and `memalloc_new_aligned` past `alloc`'s fast paths:
/// `alloc_aligned(align, n)` (`alloc(n)` for `align` 0), and when that is
/// null `fail(n, align)`, in tail position: LLVM makes it a jump (a
/// sibling call: same argument registers, no stack arguments), so no
/// frame of ours is under it when it throws (`c_tests/cxx.sh` checks the
/// jump in the library).
///
/// # Safety
/// `fail` is the header's failure path.
#[inline(never)]
unsafe fn new_other(n: usize, fail: NewFail, align: usize) -> *mut u8 {
    let p = if align == 0 {
        alloc(n)
    } else {
        alloc_aligned(align, n)
    };
    if !p.is_null() {
        return p;
    }
    fail(n, align) as *mut u8
}
export!(
    /// calloc(3): NULL + ENOMEM when n * m overflows.
    fn calloc(n: usize, m: usize) -> *mut c_void {
        calloc_impl(n, m) as *mut c_void
    }
);
export!(
    fn __libc_calloc(n: usize, m: usize) -> *mut c_void {
        calloc_impl(n, m) as *mut c_void
    }
);
export!(
    /// realloc(3).
    fn realloc(p: *mut c_void, n: usize) -> *mut c_void {
        realloc_impl(p as *mut u8, n) as *mut c_void
    }
);
export!(
    fn __libc_realloc(p: *mut c_void, n: usize) -> *mut c_void {
        realloc_impl(p as *mut u8, n) as *mut c_void
    }
);
export!(
    /// reallocarray(3): NULL + ENOMEM on overflow, the block untouched.
    fn reallocarray(p: *mut c_void, n: usize, m: usize) -> *mut c_void {
        match n.checked_mul(m) {
            Some(t) => realloc_impl(p as *mut u8, t) as *mut c_void,
            None => enomem() as *mut c_void,
        }
    }
);
export!(
    /// posix_memalign(3): EINVAL unless alignment is a power of two multiple
    /// of sizeof(void *), errno untouched; ENOMEM with errno ENOMEM, as
    /// glibc leaves it (its threaded allocation-failure test checks errno
    /// after a failed call); on success errno untouched.
    fn posix_memalign(out: *mut *mut c_void, align: usize, n: usize) -> i32 {
        if !is_pow2(align) || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
            return libc::EINVAL;
        }
        let e = os::ErrnoGuard::new();
        let p = alloc_aligned(align, n);
        if p.is_null() {
            drop(e);
            os::set_errno(libc::ENOMEM);
            return libc::ENOMEM;
        }
        *out = p as *mut c_void;
        0
    }
);
export!(
    fn __posix_memalign(out: *mut *mut c_void, align: usize, n: usize) -> i32 {
        posix_memalign(out, align, n)
    }
);
export!(
    /// aligned_alloc(3): NULL + EINVAL unless alignment is a power of two
    /// (glibc 2.38 behaviour).
    fn aligned_alloc(align: usize, n: usize) -> *mut c_void {
        if !is_pow2(align) {
            os::set_errno(libc::EINVAL);
            return null_mut();
        }
        alloc_aligned(align, n) as *mut c_void
    }
);
export!(
    /// memalign(3): an alignment that is not a power of two is rounded up to
    /// one, as glibc does; beyond SIZE_MAX/2 + 1 it is EINVAL.
    fn memalign(align: usize, n: usize) -> *mut c_void {
        if align > usize::MAX / 2 + 1 {
            os::set_errno(libc::EINVAL);
            return null_mut();
        }
        alloc_aligned(align.max(1).next_power_of_two(), n) as *mut c_void
    }
);
export!(
    fn __libc_memalign(align: usize, n: usize) -> *mut c_void {
        memalign(align, n)
    }
);
export!(
    /// valloc(3): page-aligned.
    fn valloc(n: usize) -> *mut c_void {
        alloc_aligned(os::PAGE, n) as *mut c_void
    }
);
export!(
    fn __libc_valloc(n: usize) -> *mut c_void {
        valloc(n)
    }
);
export!(
    /// pvalloc(3): page-aligned, size rounded up to whole pages.
    fn pvalloc(n: usize) -> *mut c_void {
        match n.checked_add(os::PAGE - 1) {
            Some(r) => alloc_aligned(os::PAGE, r & !(os::PAGE - 1)) as *mut c_void,
            None => enomem() as *mut c_void,
        }
    }
);
export!(
    fn __libc_pvalloc(n: usize) -> *mut c_void {
        pvalloc(n)
    }
);
export!(
    /// malloc_usable_size(3).
    fn malloc_usable_size(p: *mut c_void) -> usize {
        usable_size(p as *mut u8)
    }
);
export!(
    /// malloc_trim(3): 1 if memory went back to the OS.
    fn malloc_trim(pad: usize) -> i32 {
        crate::debug::drain();
        mcache::flush_all();
        cache::flush_all_pending();
        let zones = cache::trim_abandoned() + cache::trim_free_caches();
        let kept = large::trim();
        (HEAP.with(|h| h.trim(pad)) || zones != 0 || kept != 0) as i32
    }
);
export!(
    /// mallopt(3).
    fn mallopt(param: i32, value: i32) -> i32 {
        let r = config::mallopt(param, value);
        if param == config::M_PERTURB && value != 0 {
            // This thread's next small blocks take the slow path, which
            // fills them.
            cache::leave_fast_path();
        }
        r
    }
);
export!(
    /// mallinfo2(3).
    fn mallinfo2() -> crate::stats::Mallinfo2 {
        crate::stats::mallinfo2()
    }
);
export!(
    /// mallinfo(3): mallinfo2 with fields clamped to int.
    fn mallinfo() -> crate::stats::Mallinfo {
        crate::stats::mallinfo()
    }
);
export!(
    /// malloc_stats(3): a summary on stderr.
    fn malloc_stats() {
        crate::stats::malloc_stats()
    }
);
export!(
    /// malloc_info(3): glibc's XML shape; options must be 0.
    fn malloc_info(options: i32, fp: *mut libc::FILE) -> i32 {
        crate::stats::malloc_info(options, fp)
    }
);

// ---- extensions ------------------------------------------------------------

export!(
    /// Writes every region, block and the TLSF bitmaps to `fd`.
    fn memalloc_dump(fd: i32) {
        crate::stats::dump(fd)
    }
);
export!(
    /// Writes the heap profile's live samples to `fd` in the collapsed-stack
    /// format (see `prof`); nothing unless MEMALLOC_PROF=1.
    fn memalloc_prof_dump(fd: i32) {
        crate::prof::dump(fd)
    }
);
export!(
    /// Number of broken heap invariants (0 = consistent).
    fn memalloc_check() -> usize {
        check_heap()
    }
);
export!(
    /// Fills `*out` with the heap's figures.
    fn memalloc_get_stats(out: *mut crate::stats::Stats) {
        if !out.is_null() {
            *out = crate::stats::stats();
        }
    }
);

export!(
    /// Creates a pool over caller memory; null if too small.
    fn memalloc_pool_create(mem: *mut c_void, bytes: usize) -> *mut crate::pool::Pool {
        crate::pool::create(mem as *mut u8, bytes)
    }
);
export!(
    /// Adds a region of caller memory to a pool; 0 on success.
    fn memalloc_pool_add_region(p: *mut crate::pool::Pool, mem: *mut c_void, bytes: usize) -> i32 {
        crate::pool::add_region(p, mem as *mut u8, bytes)
    }
);
export!(
    fn memalloc_pool_malloc(p: *mut crate::pool::Pool, n: usize) -> *mut c_void {
        crate::pool::malloc(p, n) as *mut c_void
    }
);
export!(
    fn memalloc_pool_memalign(p: *mut crate::pool::Pool, align: usize, n: usize) -> *mut c_void {
        crate::pool::memalign(p, align, n) as *mut c_void
    }
);
export!(
    fn memalloc_pool_realloc(p: *mut crate::pool::Pool, q: *mut c_void, n: usize) -> *mut c_void {
        crate::pool::realloc(p, q as *mut u8, n) as *mut c_void
    }
);
export!(
    fn memalloc_pool_free(p: *mut crate::pool::Pool, q: *mut c_void) {
        crate::pool::free(p, q as *mut u8)
    }
);
export!(
    fn memalloc_pool_check(p: *mut crate::pool::Pool) -> usize {
        crate::pool::check(p)
    }
);
export!(
    fn memalloc_pool_destroy(p: *mut crate::pool::Pool) {
        crate::pool::destroy(p)
    }
);
