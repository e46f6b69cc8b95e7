//! The small blocks' slow paths: a dry current zone (`alloc_slow`,
//! `refill`), finding the next zone (its remote frees collected, the oldest
//! full one reclaimed, a spare, an abandoned zone adopted, or a new one),
//! carving blocks, zones going back to the heap (`retire`), frees into
//! abandoned zones, and the requests the TLSF heap serves instead (cold
//! classes, threads without a cache: `heap_small`).

use super::*;

/// Frees the chain `head..=tail` of `n` blocks into abandoned zone `z` under
/// the shared lock (abandoned zones belong to whoever holds it). False if `z`
/// was adopted meanwhile.
#[cold]
#[inline(never)]
pub(super) unsafe fn free_abandoned(
    z: *mut Zone,
    head: *mut Block,
    tail: *mut Block,
    n: u32,
) -> bool {
    {
        let _g = (*z).alock.guard();
        if !(*z).owner.load(Ordering::Relaxed).is_null() {
            return false;
        }
        collect(z);
        (*tail).next = enc((*z).free, tail);
        (*z).free = head;
        (*z).used -= n;
        if (*z).used != 0 {
            return true;
        }
        // The last block came back. Nobody else retires or adopts a
        // RETIRING zone; we unlink it under the shared lock (taken after the
        // zone's lock is released: the order elsewhere is shared, then zone).
        (*z).state = RETIRING;
    }
    {
        let _g = SHARED_LOCK.guard();
        (*addr_of_mut!(SHARED)).abandoned[(*z).class as usize].unlink(z);
    }
    retire(z);
    true
}

/// The current zone of `cls` is dry: collect, carve, switch zones or make a
/// new one.
#[cold]
#[inline(never)]
pub(super) unsafe fn alloc_slow(n: usize, cls: usize, tc: *mut Cache) -> *mut u8 {
    if crate::prof::active() {
        return prof_alloc(n, cls, tc);
    }
    alloc_dry(n, cls, tc)
}

/// `alloc_slow` but for profiling (out of line, so that the profiled
/// path does not pay for this one's registers).
#[cold]
#[inline(never)]
pub(super) unsafe fn alloc_dry(n: usize, cls: usize, tc: *mut Cache) -> *mut u8 {
    if (*tc).state == EMPTY && crate::config::debug() {
        // Debug mode: no caches, every block is checked (see `debug`).
        let p = crate::debug::alloc(n, ALIGN);
        if p.is_null() {
            crate::os::set_errno(libc::ENOMEM);
        }
        return p;
    }
    let p = refill(tc, cls, n);
    if p.is_null() {
        crate::os::set_errno(libc::ENOMEM);
    }
    p
}

unsafe fn refill(mut tc: *mut Cache, mut cls: usize, n: usize) -> *mut u8 {
    if crate::config::perturb() != 0 {
        // glibc's perturb byte is set: blocks come from the heap, filled, and
        // a thread gets no cache meanwhile.
        return crate::config::perturb_alloc(heap_small(cls), n);
    }
    if (*tc).state != LIVE {
        if (*tc).state == EMPTY {
            tc = init_cache();
        }
        if tc.is_null() || (*tc).state == DEAD {
            return heap_small(cls);
        }
        // The class came from the static cache's table; the new cache's
        // may differ (a sparse thread's).
        cls = (*tc).class_of[(n + 15) >> 4] as usize;
    }
    let c = &mut *tc;
    let empty = addr_of_mut!(EMPTY_ZONE);
    if c.sparse && cls == SPARSE_CLASS {
        let z = c.current[cls];
        if z != empty && (*z).used >= SPARSE_USED {
            // No longer sparse: each size takes its own class from now on.
            c.class_of = CLASS_OF;
            c.sparse = false;
            c.swap_min[SPARSE_CLASS] = SWAP_MIN[SPARSE_CLASS];
        }
    }
    if c.allocs[cls] < COLD_ALLOCS
        && c.current[cls] == empty
        && crate::heap::in_use_hint() < COLD_HEAP
        && !several_threads()
        && no_abandoned(cls)
    {
        // A class this thread has barely used: from the heap (see
        // `COLD_ALLOCS`).
        let p = heap_small(cls);
        if !p.is_null() {
            c.allocs[cls] += 1;
        }
        return p;
    }
    loop {
        let z = c.current[cls];
        if z != empty {
            if collect(z) == 0 && is_end((*z).free) {
                // Blocks other threads gave back to a full zone, then the
                // free blocks of the class's other zones (a revived zone,
                // `avail_ready`), go before new ones are carved.
                let mut f = reclaim_full(c, cls);
                if f.is_null() {
                    f = take_revived(c, cls);
                }
                if f.is_null() && avail_ready(c, cls) {
                    f = c.avail[cls].pop_front();
                }
                if !f.is_null() {
                    if (*z).carved < (*z).capacity {
                        (*z).state = AVAIL;
                        c.avail[cls].push_back(z);
                    } else {
                        (*z).state = FULL;
                        c.full[cls].push_back(z);
                    }
                    (*f).state = CURRENT;
                    c.current[cls] = f;
                } else if !carve(z) {
                    // Exhausted: park it with the full zones.
                    (*z).state = FULL;
                    c.full[cls].push_back(z);
                    c.current[cls] = empty;
                }
            }
            let z = c.current[cls];
            if z != empty {
                let b = (*z).free;
                if !is_end(b) {
                    (*z).free = dec(b);
                    (*b).mark = 0;
                    (*z).used += 1;
                    c.allocs[cls] += 1;
                    return b as *mut u8;
                }
            }
        }
        let next = find_zone(c, cls);
        if next.is_null() {
            return null_mut();
        }
        (*next).state = CURRENT;
        c.current[cls] = next;
    }
}

/// Has the first zone of `cls`'s avail list free blocks in its list? Then
/// a dry current zone gives way to it rather than carve (it goes to the
/// back of the list, and carves when its turn comes back).
///
/// Why: a carve writes a link into each block of a page nobody touched, a
/// page fault inside malloc (5-6k cycles here), while the blocks that went
/// back to the class's other zones (a bin's spills; such a zone joins the
/// front of the list) lie in pages the program touched. On the medium
/// latency workload (`bench/latency 2e6 50000 SEED medium`, 1M timed
/// mallocs, two thirds of them small) the mallocs that faulted in a carve
/// went 772-819 -> 581-636 a million, all faults of the timed phase
/// 1514 -> 1343 (medians of 9), malloc p99.9 6847 -> 6527 cycles
/// (docs/performance.md, "(mtail17h)"). Only the first zone: the ones
/// behind it may be zones parked here with nothing but uncarved room.
#[inline]
unsafe fn avail_ready(c: &Cache, cls: usize) -> bool {
    let f = c.avail[cls].head;
    !f.is_null() && !is_end((*f).free)
}

/// The oldest full zone of `cls`, unlinked, if other threads freed blocks
/// into it (collected into its free list); null otherwise.
#[inline]
unsafe fn reclaim_full(c: &mut Cache, cls: usize) -> *mut Zone {
    let z = c.full[cls].head;
    if z.is_null() || (*z).remote.load(Ordering::Relaxed) == 0 {
        return null_mut();
    }
    take_full(c, cls, z);
    collect(z);
    z
}

/// Full zone `z` of `cls` got blocks back: it joins the front of the
/// revived list (see `Cache::revived`), and stays on the full list.
///
/// # Safety
/// `z` is a zone of `c`, of `cls`, on its full list and not revived.
unsafe fn revive(c: &mut Cache, cls: usize, z: *mut Zone) {
    let h = c.revived[cls];
    (*z).state = REVIVED;
    (*z).rprev = null_mut();
    (*z).rnext = h;
    if !h.is_null() {
        (*h).rprev = z;
    }
    c.revived[cls] = z;
}

/// Takes zone `z` of `cls` off `c`'s full list, and off the revived list
/// if it is on it.
///
/// # Safety
/// `z` is a zone of `c`, of `cls`, on its full list.
unsafe fn take_full(c: &mut Cache, cls: usize, z: *mut Zone) {
    c.full[cls].unlink(z);
    if (*z).state != REVIVED {
        return;
    }
    let (n, p) = ((*z).rnext, (*z).rprev);
    if p.is_null() {
        c.revived[cls] = n;
    } else {
        (*p).rnext = n;
    }
    if !n.is_null() {
        (*n).rprev = p;
    }
}

/// The most recently revived zone of `cls` (it has free blocks: only the
/// current zone hands blocks out), off the full and revived lists; null
/// when there is none.
///
/// # Safety
/// `c` is this thread's live cache, `cls < NCLASS`.
#[inline]
unsafe fn take_revived(c: &mut Cache, cls: usize) -> *mut Zone {
    let z = c.revived[cls];
    if !z.is_null() {
        take_full(c, cls, z);
    }
    z
}

/// Every revived zone of `cls` moved to the avail list (for the walks of
/// the lists, which then need not know of them).
///
/// # Safety
/// `c` is this thread's live cache.
pub(super) unsafe fn settle_revived(c: &mut Cache, cls: usize) {
    loop {
        let z = c.revived[cls];
        if z.is_null() {
            return;
        }
        take_full(c, cls, z);
        (*z).state = AVAIL;
        c.avail[cls].push_back(z);
    }
}

/// A zone with free blocks for `cls`: from the avail list, a full zone that
/// received remote frees (the oldest few are checked), an abandoned zone, or
/// a new one. Null when memory is exhausted.
unsafe fn find_zone(c: &mut Cache, cls: usize) -> *mut Zone {
    let z = take_revived(c, cls);
    if !z.is_null() {
        return z;
    }
    let z = c.avail[cls].pop_front();
    if !z.is_null() {
        return z;
    }
    let z = c.spare[cls];
    if !z.is_null() {
        c.spare[cls] = null_mut();
        return z;
    }
    for _ in 0..4 {
        let z = c.full[cls].head;
        if z.is_null() {
            break;
        }
        take_full(c, cls, z);
        if collect(z) != 0 || !is_end((*z).free) {
            return z;
        }
        (*z).state = FULL;
        c.full[cls].push_back(z);
    }
    let z = adopt(c, cls);
    if !z.is_null() {
        return z;
    }
    new_zone(c, cls)
}

/// Moves the remote list of `z` into its free list; returns how many blocks.
/// A dry zone (the common case: its owner collects when it runs out) takes
/// the list as its free list as it is, in O(1): the freeing threads
/// encoded its links, and counted it in the remote word. (Walked, re-encoded
/// and counted here, it cost the owner 13 instructions a block:
/// `c_tests/xfree.sh`.) Else its last block is found and linked to the
/// free list.
#[inline]
pub(super) unsafe fn collect(z: *mut Zone) -> u32 {
    if (*z).remote.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let w = (*z).remote.swap(0, Ordering::Acquire);
    let g = (*z).granule;
    let head = remote_head(w, g);
    let n = (w >> REMOTE_SHIFT) as u32;
    if (head as usize ^ g) >= ZONE_SIZE || is_end(head) {
        corrupt_list(head);
    }
    let free = (*z).free;
    if !is_end(free) {
        // (At most n links: a cycle, or a list longer than its count, is
        // corruption.)
        let mut b = head;
        let mut k = 1;
        loop {
            let nx = dec(b);
            if is_end(nx) {
                break;
            }
            if k == n {
                corrupt_list(b);
            }
            b = nx;
            k += 1;
        }
        (*b).next = enc(free, b);
    }
    (*z).free = head;
    (*z).used -= n;
    n
}

/// Carves the next batch of never-used blocks into the free list: the
/// blocks that start in the page of the first one, and 8 blocks if those
/// start no further than the next page (but for a zone's first batch);
/// false if the zone is fully carved.
///
/// Carving writes a link at the start of each block, which makes its page
/// resident: a batch of 8 blocks of a big class (8 × 4 KiB) would commit
/// 32 KiB for a program that takes one (a stdio buffer). So a batch never
/// reaches more than a page past the first block; small classes (up to
/// 512 bytes) still get at least 8 blocks per batch. A zone's first batch
/// stays in the page of its header: the header's page holds 5-7 blocks of
/// 384-512 bytes, and 8 would make a second page resident for a program (or
/// a thread) that takes one or two (a `FILE` is 472 bytes).
unsafe fn carve(z: *mut Zone) -> bool {
    let (cap, done) = ((*z).capacity, (*z).carved);
    if done == cap {
        return false;
    }
    let bs = (*z).block_size as usize;
    let base = (*z).granule + first_at((*z).granule);
    let start = base + done as usize * bs;
    let page_end = (start | 4095) + 1;
    let in_page = (page_end - start).div_ceil(bs) as u32;
    let n = if done != 0 && start + 7 * bs < page_end + 4096 {
        in_page.max(8)
    } else {
        in_page
    };
    let n = n.min(cap - done);
    let mut head = (*z).free;
    let mut i = n;
    while i > 0 {
        i -= 1;
        let b = (start + i as usize * bs) as *mut Block;
        (*b).next = enc(head, b);
        head = b;
    }
    (*z).free = head;
    (*z).carved = done + n;
    true
}

/// Takes a 64 KiB-aligned chunk from the heap and makes it a zone of `cls`
/// owned by `c`.
unsafe fn new_zone(c: &mut Cache, cls: usize) -> *mut Zone {
    let bs = CLASS_SIZE[cls];
    let z = HEAP.with(|h| {
        let ch = h.alloc_aligned_at(ZONE_SIZE, ZONE_SIZE, 0);
        if ch.is_null() {
            return null_mut();
        }
        let cap = zone_capacity(ch as usize, bs as usize);
        // The header is written before the zone map says "zone": a heap
        // walk (memalloc_check, the statistics, a fork child's) under the
        // heap lock never meets a zone without one.
        let z = zone_at(ch as usize);
        z.write(Zone::new(c as *mut Cache, bs, cls as u32, cap, ch as usize));
        if !zonemap::set(
            ch as *const u8,
            c as *mut Cache as usize,
            cls as u32,
            first_offset(z),
            bs,
            cap,
        ) {
            // SAFETY: ch came from this heap just above and is in use.
            h.free(ch);
            return null_mut();
        }
        z
    });
    if z.is_null() {
        return z;
    }
    carve(z);
    z
}

/// Gives an empty zone back to the heap.
pub(super) unsafe fn retire(z: *mut Zone) {
    HEAP.with(|h| retire_in(h, z));
}

/// `retire`, under the heap's lock (`h`).
///
/// # Safety
/// As `retire`.
pub(super) unsafe fn retire_in(h: &mut Heap, z: *mut Zone) {
    let g = (*z).granule;
    zonemap::clear(g as *const u8);
    // SAFETY: a zone's chunk starts at its granule and is in use until
    // this free.
    h.free(g as *mut chunk::Chunk);
}

/// Takes a zone of `cls` abandoned by an exited thread.
unsafe fn adopt(c: &mut Cache, cls: usize) -> *mut Zone {
    loop {
        let z = {
            let _g = SHARED_LOCK.guard();
            let list = &mut (*addr_of_mut!(SHARED)).abandoned[cls];
            let mut z = list.head;
            while !z.is_null() {
                let _zg = (*z).alock.guard();
                if (*z).state != RETIRING {
                    (*z).owner.store(c as *mut Cache, Ordering::Relaxed);
                    zonemap::info((*z).granule as *const u8)
                        .owner
                        .store(c as *mut Cache as usize, Ordering::Relaxed);
                    break;
                }
                z = (*z).next;
            }
            if !z.is_null() {
                list.unlink(z);
            }
            z
        };
        if z.is_null() {
            return z;
        }
        ADOPTED[0].fetch_add(1, Ordering::Relaxed);
        collect(z);
        if !is_end((*z).free) || (*z).carved < (*z).capacity {
            if is_end((*z).free) {
                carve(z);
            }
            return z;
        }
        (*z).state = FULL;
        c.full[cls].push_back(z);
    }
}

/// Takes abandoned zone `z` of block `b` (whose thread exited), of class
/// `cls`, for live cache `tc`, which is freeing `b` and allocating the
/// class (see `free_foreign`); nothing if another thread adopted it or its
/// last block came back meanwhile, or if `tc` already has two or more
/// zones of the class in reserve (`avail`): adopting every zone it freed
/// into, each of larson's threads took zones that the others, dry, could
/// then not adopt, and carved new ones (peak RSS, medians of 5: 24.6 MB
/// before, 28.6 so, 26.0 with the bound). `b` stays counted in the
/// zone's `used`, as every block in a bin. One shared-lock acquisition a
/// zone.
///
/// # Safety
/// `tc` is this thread's live cache; `b` a block of a live zone of `cls`.
#[inline(always)]
pub(super) unsafe fn adopt_freed(tc: *mut Cache, cls: usize, b: *mut Block) {
    let avail = &(*tc).avail[cls];
    if !avail.head.is_null() && avail.head != avail.tail {
        return;
    }
    let z = zone_of(b as *const u8);
    {
        let _g = SHARED_LOCK.guard();
        let _zg = (*z).alock.guard();
        if (*z).state != ABANDONED || !(*z).owner.load(Ordering::Relaxed).is_null() {
            return;
        }
        (*z).owner.store(tc, Ordering::Relaxed);
        zonemap::info((*z).granule as *const u8)
            .owner
            .store(tc as usize, Ordering::Relaxed);
        (*addr_of_mut!(SHARED)).abandoned[cls].unlink(z);
    }
    ADOPTED[1].fetch_add(1, Ordering::Relaxed);
    let c = &mut *tc;
    collect(z);
    if !is_end((*z).free) || (*z).carved < (*z).capacity {
        (*z).state = AVAIL;
        c.avail[cls].push_back(z);
    } else {
        (*z).state = FULL;
        c.full[cls].push_back(z);
    }
}

/// Owner free that emptied the zone or refilled a dry one. (The class is
/// the caller's: the zone's own field lies in a line of its header that
/// the free did not read.)
///
/// A full zone that gets blocks back joins the revived list and stays on
/// the full list (`revive`): moved to the avail list, as before, it wrote
/// the list links of its neighbours' headers, lines that no free had
/// read, in the middle of a bin's spill (on the small latency workload
/// 19k of 58k spills a run, the dearest ones; `c_tests/spills.sh`: 1.04 D1
/// write misses a free inside the spills; docs/performance.md, "Small
/// free tails"). `find_zone` takes the revived zones first, most recent
/// first, as it took the avail list's front.
#[cold]
#[inline(never)]
pub(super) unsafe fn free_local_slow(tc: *mut Cache, cls: usize, z: *mut Zone) {
    let c = &mut *tc;
    match (*z).state {
        AVAIL if (*z).used == 0 => c.avail[cls].unlink(z),
        FULL | REVIVED if (*z).used == 0 => take_full(c, cls, z),
        FULL => return revive(c, cls, z),
        _ => return, // the current zone stays, even empty: no thrashing
    }
    keep_or_retire(c, cls, z);
    // The class is shrinking (a burst is being freed): the blocks the bin's
    // alloc half holds go back to their zones (most were taken from the
    // current zone by `bin_refill` and never handed out), and an empty
    // current zone goes too, so that the break can shrink past it.
    give_back_alloc_half(tc, cls);
    let c = &mut *tc;
    let cur = c.current[cls];
    if cur != addr_of_mut!(EMPTY_ZONE) && (*cur).used == 0 {
        c.current[cls] = addr_of_mut!(EMPTY_ZONE);
        keep_or_retire(c, cls, cur);
    }
}

/// Gives the blocks of the alloc half of `cls`'s bin back to their zones.
/// (Its top is lowered first: a zone this empties may bring us back here,
/// through `free_local_slow`, and finds the half empty.)
///
/// # Safety
/// `tc` is this thread's live cache, `cls < NCLASS`.
unsafe fn give_back_alloc_half(tc: *mut Cache, cls: usize) {
    let st = (*tc).bin_state[cls];
    let at = (st & BIN_TOP) as usize;
    let base = at & !(HALF[cls] - 1);
    if at == base {
        return;
    }
    (*tc).bin_state[cls] = (st & !BIN_TOP) | base as u64;
    let mut xs = [null_mut(); WIDE_HALF];
    xs[..at - base].copy_from_slice(&(&(*tc).bin)[base..at]);
    give_back_all(tc, cls, &xs[..at - base]);
}

/// An empty zone leaves the lists: the cache keeps one empty zone per class
/// as a spare (a program cycling through a window of blocks would otherwise
/// hand a zone back to the heap and take a new one on every turn), the one
/// at the lowest address, so that the break can still shrink above it. The
/// other goes back to the heap.
pub(super) unsafe fn keep_or_retire(c: &mut Cache, cls: usize, z: *mut Zone) {
    let spare = c.spare[cls];
    if spare.is_null() {
        (*z).state = SPARE;
        c.spare[cls] = z;
    } else if z < spare {
        (*z).state = SPARE;
        c.spare[cls] = z;
        retire(spare);
    } else {
        retire(z);
    }
}

/// Blocks a sparse thread may have out of its 256-byte zone (its bin's
/// included) before it stops being sparse.
///
/// A zone makes at least its header's page resident, and a thread that keeps
/// a few blocks live may spread them over many classes: each of the 32
/// threads of `bench/threads32` keeps 16 blocks of 16-256 bytes live, over 12
/// classes, so 12 pages a thread for 16 blocks. So a thread that starts while
/// another has a cache starts *sparse*: its requests of up to 256 bytes all
/// take 256-byte blocks, from one zone and one bin (the class table in its
/// cache says so, so the fast path is unchanged). Once that zone has
/// `SPARSE_USED` blocks out, at its next refill, the thread takes each size's
/// own class from then on; the 256-byte blocks it holds stay valid. The
/// waste is bounded: at most 32 blocks of 256 bytes, 8 KiB a thread. The
/// first thread of a process starts with its own classes (a single-threaded
/// program would only pay the waste), and its first blocks of each class
/// come from the heap (`COLD_ALLOCS`).
const SPARSE_USED: u32 = 32;

/// A thread's first allocations of a class come from the TLSF heap, not a
/// zone: a zone makes at least its header's page resident (two pages for
/// blocks of 2 KiB and up), and its class's bin slots in the cache, for what
/// may be one block. Short programs and threads touch many classes a few
/// times each (`sleep 0.1` took 18 zones, 12 of them for one or two
/// blocks: 96 KiB of heap resident, 44 KiB with this; glibc 16), where heap
/// blocks share their pages. Only while one thread has a cache: heap blocks
/// of two threads can share a cache line (false sharing, which zones, one
/// thread's each, avoid), and threads would meet on the heap's lock. And
/// only while the heap is small (`COLD_HEAP`), and when the class has no
/// abandoned zones to adopt.
const COLD_ALLOCS: usize = 8;

/// No abandoned zone of `cls` waits (read without the lock: a hint).
#[inline]
fn no_abandoned(cls: usize) -> bool {
    // SAFETY: a pointer-sized read of a static; a stale answer only sends
    // one allocation to the heap or to a zone.
    unsafe { core::ptr::read_volatile(addr_of!(SHARED.abandoned[cls].head)).is_null() }
}

/// Heap bytes in use (zones included) below which a class's first
/// allocations go to the heap. In a bigger heap, a zone created late (at its
/// class's ninth allocation rather than its first) would land wherever the
/// heap has room, often high, and stay there as its class's current zone:
/// `bench/realloc`'s strings had the zones of six classes scattered over the
/// top 5 MiB of the heap, which the vectors after them then could not reuse
/// (peak RSS 27.8-29.0 MiB against 24.5-26.3; with this bound, 23.1-25.5).
const COLD_HEAP: usize = 256 << 10;

/// Where a sampled block of a class of `SAMPLE_FROM_MEDIUM` bytes or more
/// comes from: a function of the layer above that serves a block of the
/// medium cache's first class, or null when it does not (`mcache::sample`,
/// registered at start by `lib.rs`); unset, the heap.
static MEDIUM_SAMPLE: AtomicPtr<()> = AtomicPtr::new(null_mut());

/// Registers the source of sampled blocks (see `MEDIUM_SAMPLE`).
pub fn set_medium_sample(f: fn() -> *mut u8) {
    MEDIUM_SAMPLE.store(f as *mut (), Ordering::Relaxed);
}

/// A sampled block of `cls` from `MEDIUM_SAMPLE`, else from the heap.
pub(super) unsafe fn medium_sample(cls: usize) -> *mut u8 {
    let f = MEDIUM_SAMPLE.load(Ordering::Relaxed);
    if !f.is_null() {
        // SAFETY: only `set_medium_sample` stores here, a `fn() -> *mut u8`.
        let f: fn() -> *mut u8 = core::mem::transmute(f);
        let p = f();
        if !p.is_null() {
            return p;
        }
    }
    heap_small(cls)
}

/// Small request served by the TLSF heap (threads without a cache, and the
/// first allocations of a class: `COLD_ALLOCS`).
#[cold]
pub(super) unsafe fn heap_small(cls: usize) -> *mut u8 {
    let cs = chunk::request_to_size(CLASS_SIZE[cls] as usize).unwrap_or(0);
    let ch = HEAP.with(|h| h.alloc(cs));
    if ch.is_null() {
        null_mut()
    } else {
        to_user(ch)
    }
}
