//! The medium blocks' slow paths: a miss (`alloc_slow`: set up the cache,
//! refill the list from the shared lists or the heap, a chunk carved from
//! the thread's reserve: `carve`, `bigger_resident`), a free past the fast
//! path (`free_slow`), and a cache over its cap giving chunks of a few
//! classes to the shared lists (`flush_soft`, `flush_over_cap`,
//! `flush_some`).

use super::*;

/// `pop` missed: set up the cache, or take the head of the class's list
/// under the cache's lock, or refill the list from the heap.
///
/// # Safety
/// `tc` is this thread's cache (or a static one), `k` the class of `n`.
#[cold]
#[inline(never)]
pub(super) unsafe fn alloc_slow(mut tc: *mut MCache, k: usize, n: usize) -> *mut Chunk {
    if (*tc).state == EMPTY {
        tc = init_cache();
    }
    let csize = class_chunk(k);
    // (The caller tested the request against the mmap threshold. Its
    // class may round it past a threshold that fell in between, as the
    // dynamic one does, set to the size of a freed mapping: the class's
    // chunk serves it all the same. Served unrounded, it would go to a
    // smaller class's list when freed, and every later request of its
    // size would miss and go to the heap: 1044 instructions a pair of
    // 200000 B against 117.)
    if tc.is_null() || (*tc).state != LIVE {
        return alloc_uncached(n);
    }
    // (A list whose one chunk is the one pending (`free_fast`), settled by
    // `lock_own`, is refilled all the same: a program that frees and
    // allocates one block of a class in turn, as `bench/pair.c`, needs two
    // chunks of it going round, one in the list while the other waits.)
    let pend = (*tc).pend;
    lock_own(tc);
    let c = *(*tc).head.get_unchecked(k);
    let only_pend = !c.is_null() && c == pend && (*c).next_free.is_null();
    let r = if !c.is_null() && !only_pend {
        *(*tc).allocs.get_mut() += 1;
        take(tc, k, c)
    } else if (*tc).cap == 0 {
        // MEMALLOC_MEDIUM_CACHE=0 (a reclaimer's 0 is gone: we hold `own`)
        alloc_uncached(n)
    } else if let Some(c) = big_cut(&mut *tc, k, csize) {
        *(*tc).allocs.get_mut() += 1;
        c
    } else if let Some(c) = bigger_own(tc, k, pend) {
        *(*tc).allocs.get_mut() += 1;
        c
    } else {
        refill(&mut *tc, k, csize)
    };
    if (*tc).bytes > soft_cap((*tc).cap) {
        flush_soft(tc, k);
    }
    unlock_own(tc);
    maybe_reclaim();
    r
}

/// No cache (being set up, torn down, or none wanted): the heap serves the
/// request itself, unrounded.
fn alloc_uncached(n: usize) -> *mut Chunk {
    let cs = request_to_size(n).unwrap_or(0);
    HEAP.with(|h| h.alloc(cs))
}

/// Refills `t`'s empty list `k` (chunks of `csize` bytes) from the class's
/// shared list, else takes one chunk of a bigger class's shared list
/// (`bigger_resident`), else refills from the heap; returns the chunk for
/// the caller.
///
/// # Safety
/// `t` is this thread's live cache, its `own` lock held.
unsafe fn refill(t: &mut MCache, k: usize, csize: usize) -> *mut Chunk {
    // A batch fills at most the room left under the cap.
    let room = (t.cap.saturating_sub(t.bytes) / csize) as u32;
    let want = t.batch[k].min(room).max(1);
    let first = from_central(t, k, want);
    if !first.is_null() {
        *t.allocs.get_mut() += 1;
        REFILLS.fetch_add(1, Ordering::Relaxed);
        return first;
    }
    if let Some(c) = bigger_resident(t, k) {
        REFILLS.fetch_add(1, Ordering::Relaxed);
        return c;
    }
    // One chunk from the heap, whatever the batch: each chunk cut writes
    // its header, a page fault in fresh memory, and the program faults in
    // that page anyway when it writes its block (a batch of 4 took up to 4
    // faults in one malloc: on the medium latency workload, malloc p99.99
    // 13.1k cycles against 16.6k, medians of 3 alternating runs; the cut
    // takes no lock, see `carve`).
    let first = carve(t, k, csize, 1);
    // The next miss of this class takes twice as many, up to the batch limit.
    let limit = ((BATCH_BYTES / csize) as u32).clamp(1, BATCH_MAX);
    t.batch[k] = (want * 2).min(limit);
    if !first.is_null() {
        *t.allocs.get_mut() += 1;
    }
    REFILLS.fetch_add(1, Ordering::Relaxed);
    publish(t);
    first
}

/// Takes `want` chunks of `csize` bytes (class `k`'s) from the heap: cut
/// from this thread's reserve without the heap's lock, else (the reserve
/// has no room for one) from a new reserve taken with one acquisition,
/// which gives the old one's rest back in the same; returns the first, the
/// others go to `t`'s list `k` (null when memory is exhausted). A chunk
/// bigger than `RES_CHUNK_MAX` comes from the heap itself (one acquisition:
/// `want` is 1 for those).
///
/// Why a reserve: 64 threads filling their caches at once took the heap's
/// lock 20k times in a 2e6-pair run of `bench/mthreads 64`, twice per
/// refill of several chunks (the span's cut, then its own size set under
/// the lock) and with a page fault under it (the span's header); whenever
/// a holder was preempted, 63 threads queued behind it (556 contended
/// acquisitions per million allocations at 7fd92b8, `results/syscalls.md`).
/// With reserves of 128 KiB-1 MiB a thread takes the lock about a tenth as
/// often in its first fill, and the headers of the chunks it cuts fault in
/// outside it. The reserve is address space: only the headers of the
/// chunks cut touch its pages, and its rest goes back to the heap at the
/// thread's exit, at `malloc_trim` and when the thread is idle.
///
/// # Safety
/// `t` is this thread's live cache, its `own` lock held; `csize` is class
/// `k`'s chunk size; `want * csize` at most `BATCH_BYTES` when `want > 1`.
unsafe fn carve(t: &mut MCache, k: usize, csize: usize, want: u32) -> *mut Chunk {
    if csize > RES_CHUNK_MAX {
        if room_worth(t, csize) {
            room_for(t, csize);
        }
        HEAP_REFILLS.fetch_add(1, Ordering::Relaxed);
        return HEAP.with(|h| {
            let c = h.alloc(csize);
            exact(h, c, csize)
        });
    }
    let mut first = null_mut();
    if !t.res.is_null() {
        first = crate::heap::reserve_cut(t.res, csize);
    }
    if first.is_null() {
        let old = core::mem::replace(&mut t.res, null_mut());
        let min = csize * want as usize + crate::heap::RES_KEEP;
        let want_res = t.res_next.max(min);
        let r = HEAP.with(|h| {
            if !old.is_null() {
                h.end_reserve(old);
            }
            let r = h.take_reserve(want_res, min);
            if r.is_null() {
                // (No room for a reserve: one chunk, if any.)
                let c = h.alloc(csize);
                first = exact(h, c, csize);
            }
            r
        });
        HEAP_REFILLS.fetch_add(1, Ordering::Relaxed);
        t.res_next = (t.res_next * 2).min(RES_MAX);
        if r.is_null() {
            return first;
        }
        t.res = r;
        first = crate::heap::reserve_cut(r, csize);
    }
    // The cuts go down from the reserve's end; the caller gets the lowest
    // and the list the others, the one just above it on top: the batch is
    // handed out in ascending order, a block's neighbour above it the
    // block handed out next (as the heap's front cuts did: an overflow of
    // one into the next, in c_tests/misuse.c's overflow-free-next, is found
    // at that next block's free).
    for _ in 1..want {
        let c = crate::heap::reserve_cut(t.res, csize);
        if c.is_null() {
            break;
        }
        let mk = t.mkey;
        push_class(t, first, k, mk);
        t.bytes += csize;
        first = c;
    }
    first
}

/// Chunk `c` (null, or fresh from heap `h`, under its lock) cut down to
/// `csize` bytes where the heap kept a rest with it (`alloc_keeping`), so
/// that it goes to its class's list when freed (see `free_odd`).
///
/// # Safety
/// `h` is the locked heap; `c` null or a chunk it just allocated.
unsafe fn exact(h: &mut crate::heap::Heap, c: *mut Chunk, csize: usize) -> *mut Chunk {
    if !c.is_null() && size(c) != csize {
        let _ = h.resize_in_place(c, csize, csize);
    }
    c
}

/// The size of a thread's first reserve, and the most a reserve grows to
/// (each next one twice the last): a thread that makes few medium requests
/// holds little address space, one that fills a cache takes the heap's
/// lock a few times. (`bench/mthreads 64 2e6 256 4k 64k u`: 8.5 MiB per
/// thread in its first fill.)
pub(super) const RES_FIRST: usize = 128 << 10;
const RES_MAX: usize = 1 << 20;
/// The biggest chunk cut from a reserve (bigger ones: one acquisition each
/// anyway, and a reserve would be spent on a few).
const RES_CHUNK_MAX: usize = 128 << 10;

/// A chunk of one of the `SPAN_UP` classes above `k` from their shared
/// lists, for a refill of class `k` that found its own shared list empty;
/// None if they are all empty. (Big chunks serve big classes only.)
///
/// Why: a chunk that was handed out before has its first page resident
/// (its header, and what the program wrote there), while a chunk the heap
/// cuts for a refill puts its header in a page nobody touched since the
/// heap grew or purged it: a page fault inside malloc (4-8k cycles here).
/// With random sizes each class's live count drifts, so classes ran dry
/// while their neighbours' chunks waited in the shared lists, to be drained
/// to the heap later: on the medium latency workload (`bench/latency 2e6
/// 50000 1 medium`, one byte written per block) 3800 refills from the heap
/// in the timed phase, a fault each; twice tcmalloc's and mimalloc's
/// faults in all (4500 against 2100 and 2350), now 1900-2300. The chunk
/// serves the request whole (its usable size is larger; freed, it goes to
/// its own class's list).
///
/// Only the shared lists: they hold what threads had no use for. Taking
/// this thread's own lists of those classes too (1900 faults) made them run
/// dry in turn, and a program that writes its blocks whole (the small
/// latency workload) then faulted in more fresh pages of the bigger class:
/// 4100 faults against 2350 (2500 with the shared lists only).
///
/// # Safety
/// As [`refill`].
unsafe fn bigger_resident(t: &mut MCache, k: usize) -> Option<*mut Chunk> {
    let top = if k < BIG_FIRST { BIG_FIRST } else { NMC };
    let end = (k + 1 + SPAN_UP).min(top);
    for j in k + 1..end {
        let c = from_central(t, j, 1);
        if !c.is_null() {
            *t.allocs.get_mut() += 1;
            return Some(c);
        }
    }
    None
}

/// A big class's list `k` of `t` is empty (chunks of `csize` bytes) and
/// its big classes' share (`big_cap`) has no room for a chunk of `k`: a
/// chunk cut from the thread's big reserve (`bres`), taken first if the
/// thread has none (`new_big_reserve`, one acquisition of the heap's
/// lock); None if the share has room, or the reserve has none.
///
/// Why: from 16 threads on a thread's big classes hold 1-1.5 MiB together,
/// one or two chunks, and a thread whose big requests vary in class took a
/// trip through the shared lists for most of them (a refill, then the
/// free's flush past the share: `bench/grid 16 4e5 64k 1M short`, 51.6k
/// refills and 48.9k flushes in 400k pairs, each trip 40-85 ns, mostly
/// lines other cores wrote; docs/performance.md, short17i). A chunk cut
/// from the thread's own reserve, freed right after, goes back into it
/// (`free_big`, `reserve_merge`): a thread that holds one big block at a
/// time, as glibc's arenas serve it from their top, needs no list and
/// no lock. The reserve counts in what the share holds (`big_held`).
///
/// # Safety
/// `t` is this thread's live cache, its `own` lock held; `csize` is
/// class `k`'s chunk size.
unsafe fn big_cut(t: &mut MCache, k: usize, csize: usize) -> Option<*mut Chunk> {
    if k < BIG_FIRST || big_held(t) + csize <= big_cap(t) {
        return None;
    }
    if !t.bres.is_null() {
        // (No room: the lists serve. A reserve is not renewed while its
        // owner lives: renewed whenever most of its cuts had come back,
        // `grid 16 4e5 64k 1M long 32` renewed 9k times, each a heap
        // acquisition and fresh pages, its peak RSS 148 -> 225 MB.)
        return Some(crate::heap::reserve_cut_quiet(t.bres, csize)).filter(|c| !c.is_null());
    }
    new_big_reserve(t, csize)
}

/// `big_cut`'s reserve taken (one acquisition of the heap's lock), and a
/// chunk of `csize` bytes cut from it; None when the heap has none.
///
/// # Safety
/// As [`big_cut`]; `t` has no big reserve.
#[cold]
#[inline(never)]
unsafe fn new_big_reserve(t: &mut MCache, csize: usize) -> Option<*mut Chunk> {
    let r = HEAP.with(|h| h.take_reserve(BRES, BRES));
    HEAP_REFILLS.fetch_add(1, Ordering::Relaxed);
    if r.is_null() {
        return None;
    }
    t.bres = r;
    t.bres_acct = crate::heap::reserve_left(r);
    t.bres_end = r as usize + t.bres_acct;
    Some(crate::heap::reserve_cut_quiet(r, csize)).filter(|c| !c.is_null())
}

/// The size of a big reserve (`big_cut`): room for one chunk of the
/// biggest class, and the reserve's own words.
const BRES: usize = class_chunk(NMC - 1) + crate::heap::RES_KEEP;

/// Takes `t`'s big reserve away from it (for `end_bres`, under the heap's
/// lock): the reserve and what the statistics have of it.
///
/// # Safety
/// `t`'s lists are its caller's to change (its owner under `own`, or a
/// reclaimer holding `own`).
pub(super) unsafe fn take_bres(t: &mut MCache) -> (*mut Chunk, usize) {
    (
        core::mem::replace(&mut t.bres, null_mut()),
        core::mem::take(&mut t.bres_acct),
    )
}

/// Gives a big reserve that `take_bres` took back to heap `h` (under its
/// lock), its statistics settled first.
///
/// # Safety
/// `r` is `take_bres`'s answer; `h` is the locked heap.
pub(super) unsafe fn end_bres(h: &mut crate::heap::Heap, (r, acct): (*mut Chunk, usize)) {
    if !r.is_null() {
        crate::heap::reserved_settle(acct, crate::heap::reserve_left(r));
        h.end_reserve(r);
    }
}

/// A big class's list `k` of `tc` is empty and its big classes' share
/// (`big_cap`) has no room for a chunk of `k`: the head of one of this
/// thread's own lists of the next `SPAN_UP` classes, if one holds a chunk
/// (not `pend`, the chunk whose free is pending), taken; it serves the
/// request whole and goes back to its own list when freed.
///
/// Why: a thread's big classes hold `big_cap` together, 1 MiB from 24
/// threads on (`mcache::big_extra`), one or two chunks; a big free past
/// that goes to the shared list, and each request of a class the thread
/// does not hold took a refill from it: `bench/grid 16 4e5 64k 1M short`,
/// 120k refills and 117k flushes in 400k pairs. A chunk of a bigger class
/// (less than twice the request: see `SPAN_UP`) serves it with no lock
/// and no shared list, and costs no memory the thread did not hold: pages
/// past what the program writes stay as they were. Only the big classes:
/// the medium classes' own lists run dry in turn (see `bigger_resident`).
///
/// # Safety
/// `tc` is this thread's live cache, its `own` lock held; `k < NMC`.
unsafe fn bigger_own(tc: *mut MCache, k: usize, pend: *mut Chunk) -> Option<*mut Chunk> {
    // (Only when the share has no room for a chunk of `k`: with room, the
    // refill gives the thread a chunk of its own of `k`, which the next
    // requests pop on the fast path; served from a bigger list each time,
    // a lone thread's pairs of 64 KiB-1 MiB took the slow path on every
    // miss, 292.5 instructions a pair against 246.9, `c_tests/regrow.sh`.)
    if k < BIG_FIRST || big_held(&*tc) + class_chunk(k) <= big_cap(&mut *tc) {
        return None;
    }
    for j in k + 1..(k + 1 + SPAN_UP).min(NMC) {
        let c = *(*tc).head.get_unchecked(j);
        if !c.is_null() && c != pend {
            return Some(take(tc, j, c));
        }
    }
    None
}

/// How many classes above its own a refill looks at for a chunk that was
/// used before (`bigger_resident`): one power of two, so a request is
/// served by a chunk less than twice its size. Pages of the chunk past
/// what the program writes stay as they were (resident only if an earlier
/// owner wrote them). Faults in the timed phase of the medium latency
/// workload, with this thread's lists too: 1 class, 2800; 2, 2600; 4, 1900.
const SPAN_UP: usize = 4;

/// Free by a thread with no live cache: set one up (a thread that frees
/// medium blocks, even others', keeps doing so), else the heap takes it.
///
/// # Safety
/// As [`free`].
#[cold]
#[inline(never)]
pub(super) unsafe fn free_slow(c: *mut Chunk) -> bool {
    let mut tc = tls::mc_get();
    if (*tc).state == EMPTY {
        tc = init_cache();
    }
    if tc.is_null() || (*tc).state != LIVE {
        // The heap takes it: not if it is in some thread's list.
        if crate::guard::CHECKS && (is_free(c) || (*c).prev_free == mark(c)) {
            double_free(c);
        }
        return false;
    }
    free(c)
}

/// The cache holds more than its cap after a free into class `k`: a
/// flush (`flush_some`), then as many chunks as it takes to bring the cache
/// under its cap. Shared lists over their cap go back to the heap.
///
/// # Safety
/// `tc` is this thread's live cache, its `own` lock held.
#[cold]
#[inline(never)]
pub(super) unsafe fn flush_over_cap(tc: *mut MCache, k: usize) {
    let t = &mut *tc;
    if t.cap == 0 {
        // MEMALLOC_MEDIUM_CACHE=0: no cache, every free goes to the heap.
        flush_all_of(t);
        return;
    }
    if t.bytes <= t.cap {
        return; // (a reclaimer took the lists meanwhile)
    }
    let mut moved = flush_some(t, k);
    // Under the cap in any case (one chunk over it, in the common case).
    // (`to_central`'s `set_count` keeps each low-water mark at most its
    // list's length.)
    let mut j = NMC;
    while t.bytes > t.cap && j > 0 {
        j -= 1;
        while t.bytes > t.cap && count_of(t, j) != 0 {
            moved += to_central(t, j, 1);
        }
    }
    flushed(t, moved);
}

/// A malloc's slow path (a refill of class `k`, or its list's head taken
/// under the lock) found the cache above `soft_cap`: a flush
/// (`flush_some`), which a free would otherwise make once the cache passed
/// its cap.
///
/// Why here: a flush costs 1-2k cycles, most of them misses on the chunks
/// it walks to (the lists' links), and came on 0.06% of the frees of the
/// medium latency workload, all of its free p99.99 and a third of its
/// p99.9 (an `rdtsc` probe: the walk 760-850 cycles a class given to). A
/// malloc that takes this path is a refill already, from the shared lists
/// (500 cycles) or the heap (a page fault: 5-7k): its tails are the
/// faults', which a flush does not reach. Between `soft_cap` and the cap,
/// the frees take the fast path; a thread that only frees still flushes at
/// the cap.
///
/// # Safety
/// As [`flush_over_cap`].
#[cold]
#[inline(never)]
unsafe fn flush_soft(tc: *mut MCache, k: usize) {
    let t = &mut *tc;
    if t.bytes <= soft_cap(t.cap) {
        return;
    }
    let moved = flush_some(t, k);
    flushed(t, moved);
}

/// Where the malloc slow paths flush (`flush_soft`): 7/8 of the cap.
#[inline]
fn soft_cap(cap: usize) -> usize {
    cap - cap / 4
}

/// A flush's accounting: `moved` chunks went to the shared lists; shared
/// lists over their cap go back to the heap.
///
/// # Safety
/// As [`flush_over_cap`].
unsafe fn flushed(t: &mut MCache, moved: u32) {
    FLUSHES.fetch_add(1, Ordering::Relaxed);
    // (A read-modify-write only for a new maximum.)
    if moved as usize > FLUSH_MOST.load(Ordering::Relaxed) {
        FLUSH_MOST.fetch_max(moved as usize, Ordering::Relaxed);
    }
    publish(t);
    if CENTRAL_BYTES.load(Ordering::Relaxed) > CENTRAL_CAP {
        drain_central_soft(CENTRAL_CAP / 2);
    }
}

/// Moves to the shared lists half of the chunks of the classes that sat
/// unused since the last look (their low-water mark: tcmalloc's
/// scavenging), from the class after the last one looked at on (each class
/// looked at starts its mark again), then, while the cache holds more than
/// `FLUSH_GOAL` of `soft_cap`, half of the biggest classes' lists (not
/// `k`'s, which the program is using): at most `FLUSH_MOVES` chunks of at
/// most `FLUSH_CLASSES` classes. Returns the chunks moved.
///
/// # Safety
/// `t` is this thread's live cache, its `own` lock held.
unsafe fn flush_some(t: &mut MCache, k: usize) -> u32 {
    let goal = soft_cap(t.cap) / FLUSH_GOAL.1 * FLUSH_GOAL.0;
    // The classes to give to, at most `FLUSH_CLASSES`, and how many chunks
    // each: first half the unused chunks (low-water mark) of the classes
    // from the cursor on, each class looked at starting its mark again;
    // then, while that leaves the cache above `goal`, half of the biggest
    // classes' lists (not `k`'s, which the program is using).
    let mut picks = [(0usize, 0u32); FLUSH_CLASSES];
    let mut np = 0;
    let mut budget = FLUSH_MOVES;
    let mut planned = 0;
    let mut j = t.flush_at as usize;
    for _ in 0..NMC {
        j = (j + 1) % NMC;
        let want = t.low[j].div_ceil(2).min(budget);
        // (The mark starts again: its list's length. The give's
        // `set_count` then lowers it by the chunks given.)
        t.low[j] += t.above[j];
        t.above[j] = 0;
        if want != 0 {
            picks[np] = (j, want);
            np += 1;
            budget -= want;
            planned += want as usize * class_chunk(j);
            if np == FLUSH_CLASSES || budget == 0 {
                break;
            }
        }
    }
    t.flush_at = j as u8;
    let mut j = NMC;
    while np < FLUSH_CLASSES && t.bytes.saturating_sub(planned) > goal && j > 0 && budget > 0 {
        j -= 1;
        let want = count_of(t, j).div_ceil(2).min(budget);
        if j != k && want != 0 && !picks[..np].iter().any(|p| p.0 == j) {
            picks[np] = (j, want);
            np += 1;
            budget -= want;
            planned += want as usize * class_chunk(j);
        }
    }
    for &(j, _) in &picks[..np] {
        prefetch(addr_of!(CENTRAL[j][t.home % SHARDS]) as *const u8);
    }
    let mut moved = 0;
    let mut given = 0;
    for &(j, want) in &picks[..np] {
        let m = give_central(t, j, want);
        moved += m;
        given += m as usize * class_chunk(j);
    }
    CENTRAL_BYTES.fetch_add(given, Ordering::Relaxed);
    moved
}

/// The chunks one `flush_over_cap` moves at most, beyond those it must
/// move to bring the cache under its cap, and the part of the cap it
/// flushes down to (numerator, denominator). A flush's cost grows with the
/// chunks it moves (a walk to each one's header, in `to_central`) and the
/// classes it gives to (a shard's lock and the shared counters for each):
/// a flush of half of each class's unused chunks, then down to three
/// quarters of the cap, moved up to 75 chunks on the medium latency
/// workload and took that free to 4-7k cycles (0.05% of its frees, its
/// p99.99). Bounded, flushes come more often and each costs less: see
/// docs/medium.md, "Bounded flushes", for where their cycles go.
const FLUSH_MOVES: u32 = 16;
const FLUSH_GOAL: (usize, usize) = (15, 16);
/// The classes one `flush_over_cap` gives to at most (beyond those it must
/// give to to bring the cache under its cap).
const FLUSH_CLASSES: usize = 2;

/// The most chunks one flush moved (statistics).
static FLUSH_MOST: AtomicUsize = AtomicUsize::new(0);

/// The most chunks one `flush_over_cap` moved to the shared lists.
pub fn flush_most() -> usize {
    FLUSH_MOST.load(Ordering::Relaxed)
}

/// Before the heap serves a chunk of `need` bytes itself (a big class's
/// refill, a request above the classes), while the caches hold most of
/// what the heap handed out (`room_worth`): if it has no free chunk for it, this
/// thread's chunks that sat unused since their class was last looked at
/// (the low-water marks, as a flush's) go back to the heap, and the shared
/// lists too if that was not enough, so that the heap serves the request
/// from memory the program wrote and freed, not from a break grown by
/// fresh pages (and the caches do not hold those pages apart meanwhile).
///
/// Why: bench/realloc builds strings of up to 64 KiB, then vectors of up
/// to 4 MiB. The strings' chunks, 15 MiB of them, stayed in the caches
/// (9 MiB in the thread's lists, the rest in the shared lists: chunks of
/// the 5-80 KiB classes, which the vectors pass through once a batch), and
/// the vectors' second batch grew the break by 10 MiB for its 128 KiB-2
/// MiB steps: 2694 page faults in that batch, peak RSS 43.5 MB (tcmalloc
/// 42.8, mimalloc 29.9). Given back here: 317 faults, 34 MB (with the
/// heap's growth of a tail block into a free chunk, `resize_in_place`).
/// Only when the heap is short: a heap that can serve the request keeps
/// the caches as they are (one `can_serve` under the lock the refill takes
/// anyway).
///
/// # Safety
/// `t` is this thread's live cache, its `own` lock held.
#[cold]
#[inline(never)]
pub(super) unsafe fn room_for(t: &mut MCache, need: usize) {
    let mut err = None;
    let mut gave = false;
    let short = HEAP.with(|h| {
        if h.can_serve(need) {
            return false;
        }
        for k in 0..NMC {
            let n = t.low[k];
            if n != 0 && err.is_none() {
                gave = true;
                err = release(h, t, k, n);
            }
        }
        !h.can_serve(need)
    });
    if let Some((e, c)) = err {
        crate::report::fatal(e, to_user(c));
    }
    if gave {
        FLUSHES.fetch_add(1, Ordering::Relaxed);
        HEAP_FLUSHES.fetch_add(1, Ordering::Relaxed);
        publish(t);
    }
    if short && CENTRAL_BYTES.load(Ordering::Relaxed) != 0 {
        drain_central(0);
    }
}

/// Whether the caches (`t`'s lists and the shared lists) hold enough for
/// `room_for` to look at the heap before a chunk of `need` bytes: at least
/// `ROOM_FACTOR` times that, and half of the heap's bytes in use (cached
/// chunks count as in use): the program has moved on from the sizes it
/// cached, as bench/realloc from its strings to its vectors (15 MiB cached
/// of 17.5 in use). A program that churns through the classes keeps its
/// caches, though they are full: bench/mchurn (40 MiB cached of about 100)
/// took 10-15% more page faults and 1-1.7 MB more peak RSS with the first
/// test alone (its refills cut headers into the pages of the chunks given
/// back, of which only the first had been written).
#[inline]
pub(super) fn room_worth(t: &MCache, need: usize) -> bool {
    let held = t.bytes + CENTRAL_BYTES.load(Ordering::Relaxed);
    held >= ROOM_FACTOR * need && held >= crate::events::heap_in_use() / 2
}

/// See `room_worth`: a heap short of one chunk is not worth a cache's
/// chunks unless they are several times that (they need not lie together).
const ROOM_FACTOR: usize = 4;
