//! The medium blocks' fast paths: `pop` (malloc: a chunk off this
//! thread's list of the class, through `pop_moded` while a mode or a
//! reclaim's signal is on), `free` and `free_fast` (a push onto the list,
//! after the checks), the cache's `busy` sections (`enter`, `leave`), the
//! cap on big classes (`free_big`), the purge tick, and the reports of a
//! corrupt or doubly freed chunk. The costs are in the comment of `mcache`
//! (this module's parent).

use super::*;

/// The fast path of malloc for `MC_MIN < n <= MC_MAX`: the user pointer of
/// a chunk from this thread's list of `n`'s class, else `miss(n)`. A listed
/// chunk serves its class whatever the mmap threshold has become since it
/// was cached (as glibc's tcache does). With the profiler on, the chunk is
/// served the same way and handed to `counted` with the cache's countdown
/// (the export layer counts it: `prof::count_in`); with a perturb byte set,
/// `miss` (the export layer's slower path fills the block). The modes and
/// a reclaim's signal are one test of the gate, before the list is read;
/// when any is on, `pop_moded` takes the chunk (one pop per malloc,
/// profiling or not). Every call here is in tail position, so that the
/// caller needs no frame.
#[inline(always)]
pub fn pop(
    n: usize,
    counted: impl FnOnce(*mut u8, usize, &mut i64) -> *mut u8,
    miss: impl FnOnce(usize) -> *mut u8,
) -> *mut u8 {
    let tc = tls::mc_get();
    // SAFETY: tc is this thread's cache or a static one; n is in range.
    let k = unsafe { class_in(tc, n) };
    // SAFETY: as `alloc`; `enter` .. `leave` is a fast section, whose
    // signal (the gate's `RECLAIM` bit, tested with the modes: no
    // instruction of its own) is tested before the list is read.
    unsafe {
        enter(tc);
        let g = crate::gate::bits();
        if g & (crate::gate::PERTURB | crate::gate::PROF | crate::gate::RECLAIM) != 0 {
            // (Profiling alone: the bits already loaded are tested again,
            // where `pop_moded` loaded them again.)
            if g & (crate::gate::PERTURB | crate::gate::RECLAIM) == 0 {
                return pop_counted(n, k, tc, counted, miss);
            }
            return pop_moded(n, k, tc, counted, miss);
        }
        let c = take_head(tc, k);
        if c.is_null() {
            return miss(n);
        }
        to_user(c)
    }
}

/// In a fast section of `tc` whose signal was found clear: takes the head
/// of list `k` (null if it is empty) and leaves the section.
///
/// # Safety
/// `tc` is this thread's cache, in a fast section with its signal clear.
#[inline(always)]
unsafe fn take_head(tc: *mut MCache, k: usize) -> *mut Chunk {
    // (A reclaim that cleared the bit is seen whole: its release fence.)
    fence(Ordering::Acquire);
    let c = *(*tc).head.get_unchecked(k);
    if c.is_null() {
        leave(tc);
        return c;
    }
    let c = take(tc, k, c);
    leave_popped(tc);
    c
}

/// `pop` while a mode is on or a reclaim under way (out of line: the fast
/// path keeps no frame), inside `pop`'s fast section.
///
/// # Safety
/// `tc` is this thread's cache, in a fast section `pop` entered.
#[inline(never)]
unsafe fn pop_moded(
    n: usize,
    k: usize,
    tc: *mut MCache,
    counted: impl FnOnce(*mut u8, usize, &mut i64) -> *mut u8,
    miss: impl FnOnce(usize) -> *mut u8,
) -> *mut u8 {
    if crate::gate::any(crate::gate::PERTURB | crate::gate::RECLAIM) {
        leave(tc);
        return miss(n);
    }
    pop_counted(n, k, tc, counted, miss)
}

/// `pop` while profiling and no other mode of the gate's is on: the chunk
/// taken, counted on the cache's own countdown (out of line, as
/// `pop_moded`).
///
/// # Safety
/// As `pop_moded`; the gate's `PERTURB` and `RECLAIM` were found clear in
/// this fast section.
#[inline(never)]
unsafe fn pop_counted(
    n: usize,
    k: usize,
    tc: *mut MCache,
    counted: impl FnOnce(*mut u8, usize, &mut i64) -> *mut u8,
    miss: impl FnOnce(usize) -> *mut u8,
) -> *mut u8 {
    let c = take_head(tc, k);
    if c.is_null() {
        return miss(n);
    }
    // (`tc` is live: its list held `c`.)
    counted(to_user(c), n, &mut (*tc).prof_left)
}

/// Enters a fast section of this thread's cache `tc`: `busy += 1` (odd),
/// kept by the compiler before every later access (the processor may
/// still let the next loads pass the store: the reclaimer's `membarrier`
/// covers that). The caller then tests the section's signal (see "Idle
/// threads"). (Only the owner writes `busy`: a load and a store, one
/// `inc` to memory.)
///
/// # Safety
/// `tc` is this thread's cache (or a static one: nobody reads their `busy`).
#[inline(always)]
unsafe fn enter(tc: *mut MCache) {
    let b = &(*tc).busy;
    b.store(b.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
}

/// Leaves a fast section that served no chunk: `busy -= 1` (even again),
/// after every write to the lists (release).
///
/// # Safety
/// As [`enter`].
#[inline(always)]
unsafe fn leave(tc: *mut MCache) {
    let b = &(*tc).busy;
    fence(Ordering::Release);
    b.store(b.load(Ordering::Relaxed).wrapping_sub(1), Ordering::Relaxed);
}

/// Leaves a pop's fast section that served a chunk: `busy += 1` (even
/// again, and 2 more than before the section: the allocation counted).
///
/// # Safety
/// As [`enter`].
#[inline(always)]
unsafe fn leave_popped(tc: *mut MCache) {
    let b = &(*tc).busy;
    fence(Ordering::Release);
    b.store(b.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Enters a fast section of this thread's cache, for the export layer's
/// fast path of free (`free_fast`); returns the cache.
#[inline(always)]
pub fn enter_mine() -> *mut MCache {
    let tc = tls::mc_get();
    // SAFETY: the slot holds this thread's cache or a static one.
    unsafe { enter(tc) };
    tc
}

/// Leaves the section `enter_mine` entered.
///
/// # Safety
/// `tc` is `enter_mine`'s answer on this thread.
#[inline(always)]
pub unsafe fn leave_mine(tc: *mut MCache) {
    leave(tc)
}

/// Unlinks `c`, the head of `tc`'s list `k`, and returns it.
///
/// # Safety
/// `tc` is this thread's live cache; `c` the head of its non-empty list `k`.
#[inline(always)]
pub(super) unsafe fn take(tc: *mut MCache, k: usize, c: *mut Chunk) -> *mut Chunk {
    if crate::guard::CHECKS {
        // The mark's test and its clearing in one `xor` to memory: 0 is
        // left exactly when the mark was there, and its flags are the test
        // (one instruction fewer than a compare and a store of 0; the
        // compiler, given the same in Rust, loads, xors and stores).
        // SAFETY: `c` is a chunk of the list, its `prev_free` word ours to
        // write (0 once taken); the label reports and never returns.
        core::arch::asm!(
            "xor qword ptr [{c} + {off}], {k}",
            "jnz {bad}",
            c = in(reg) c,
            k = in(reg) (*tc).mkey,
            off = const core::mem::offset_of!(Chunk, prev_free),
            bad = label { corrupt_user(to_user(c)) },
            options(nostack),
        );
    } else {
        (*c).prev_free = null_mut();
    }
    *(*tc).head.get_unchecked_mut(k) = (*c).next_free;
    // `if above[k] > 0 { above[k] -= 1 } else { low[k] -= 1 }` in three
    // instructions to memory, no branch: the `sub` borrows when `above[k]`
    // is 0, the `adc` undoes it and carries out exactly then, the `sbb`
    // subtracts that carry from `low[k]` (at least 1: the list held `c`).
    // SAFETY: `k < NMC`: `above[k]` and `low[k]` are `u32`s of the cache.
    core::arch::asm!(
        "sub dword ptr [{t} + {k} * 4 + {ab}], 1",
        "adc dword ptr [{t} + {k} * 4 + {ab}], 0",
        "sbb dword ptr [{t} + {k} * 4 + {lo}], 0",
        t = in(reg) tc,
        k = in(reg) k,
        ab = const core::mem::offset_of!(MCache, above),
        lo = const core::mem::offset_of!(MCache, low),
        options(nostack),
    );
    (*tc).bytes -= *(*tc).cw.get_unchecked(k);
    c
}

/// A block of this thread's cache's first class, for a sampled small request
/// (`cache::set_medium_sample`: the profiler samples blocks of 1 KiB classes
/// and up from here, not from the heap); null when that class is mapped (a
/// low mmap threshold) or memory is exhausted.
///
/// Popped from the class's list as a medium malloc is (`pop`), not counted
/// (the small class's counters count it), else from `alloc`. (Through
/// `alloc` every time, the slow path's 100 instructions were about a sixth
/// of a small request's sample: `bench/pair 200000 4096`.)
pub fn sample() -> *mut u8 {
    let m = MC_MIN + 1;
    match request_to_size(m) {
        Some(cs) if cs < crate::large::threshold() => pop(
            m,
            |p, _, _| p,
            |m| {
                let c = alloc(m);
                if c.is_null() {
                    null_mut()
                } else {
                    to_user(c)
                }
            },
        ),
        _ => null_mut(),
    }
}

/// A chunk for a request of `n` bytes (`MC_MIN < n <= MC_MAX`, below the
/// mmap threshold); null when memory is exhausted. (After `pop` missed: the
/// list is empty, a mode is on or a reclaim under way; under the cache's
/// `own` lock.)
#[inline]
pub fn alloc(n: usize) -> *mut Chunk {
    let tc = tls::mc_get();
    let k = class_of(n);
    // SAFETY: tc is this thread's cache or a static one whose lists are
    // empty; listed chunks are in-use heap chunks this thread owns.
    unsafe { alloc_slow(tc, k, n) }
}

/// Takes in-use heap chunk `c` (its header checked, not mmapped) into this
/// thread's cache; false if it does not belong there (the caller frees it to
/// the heap).
///
/// # Safety
/// `c` is a chunk passed to free whose own header passed the tag check.
#[inline(always)]
pub unsafe fn free(c: *mut Chunk) -> bool {
    let s = size(c);
    if !(class_chunk(0)..=class_chunk(NMC - 1)).contains(&s) {
        return false;
    }
    let tc = tls::mc_get();
    if (*tc).state != LIVE {
        return free_slow(c);
    }
    if class_chunk(class_of_chunk(s)) != s {
        return free_odd(tc, c, s);
    }
    if s >= class_chunk(BIG_FIRST) {
        return free_big(tc, c, s);
    }
    let mk = check_free(tc, c);
    let ps = crate::heap::purge_state();
    if ps != crate::heap::PURGE_IDLE {
        purge_tick(tc, ps);
    }
    // A fast section whose signal is `own` held (by a reclaimer).
    enter(tc);
    let held = (*tc).own.is_locked();
    fence(Ordering::Acquire);
    if held {
        leave(tc);
        return free_locked(tc, c, s, mk);
    }
    let k = push(tc, c, s, mk);
    let b = (*tc).bytes + class_chunk(k);
    (*tc).bytes = b;
    let over = b > (*tc).cap;
    if !over && b > (*tc).peak {
        (*tc).peak = b;
    }
    leave(tc);
    if over {
        lock_own(tc);
        flush_over_cap(tc, k);
        unlock_own(tc);
        maybe_reclaim();
    }
    true
}

/// `free` of a chunk of `s` bytes that is no class's chunk size (a realloc
/// resized it in place, or an aligned allocation cut it): cut down to its
/// class's size under the heap's lock (the rest goes back to the heap), then
/// cached as any other; given to the heap whole where its rest is too small
/// to be a chunk. Why: the lists hold chunks of their class's exact size,
/// so that a pop, which reads no header, takes off `bytes` what the free
/// added (counted at the class's size, a chunk that a realloc left up to
/// 25% bigger was counted short: the statistics' `in_use` too high and a
/// cache over its cap).
///
/// # Safety
/// As [`free`]; `tc` is this thread's live cache, `s` is `c`'s size.
#[cold]
#[inline(never)]
unsafe fn free_odd(tc: *mut MCache, c: *mut Chunk, s: usize) -> bool {
    if (*tc).cap == 0 {
        return false; // (the caches are off: the heap takes it)
    }
    let _ = check_free(tc, c);
    let cs = class_chunk(class_of_chunk(s));
    let r = HEAP.with(|h| {
        h.validate(c)?;
        if !h.resize_in_place(c, cs, cs) || size(c) != cs {
            h.free(c);
            return Ok(false);
        }
        Ok(true)
    });
    match r {
        Err(e) => crate::report::fatal(e, to_user(c)),
        Ok(true) => free(c),
        Ok(false) => true,
    }
}

/// `free` while a reclaimer holds `tc`'s lock: waits for it, then caches
/// `c` under the lock.
///
/// # Safety
/// As [`free`]; `mk` is `c`'s mark in `tc`.
#[cold]
#[inline(never)]
unsafe fn free_locked(tc: *mut MCache, c: *mut Chunk, s: usize, mk: usize) -> bool {
    lock_own(tc);
    let k = push(tc, c, s, mk);
    let b = (*tc).bytes + class_chunk(k);
    (*tc).bytes = b;
    if b > (*tc).cap {
        flush_over_cap(tc, k);
    } else if b > (*tc).peak {
        (*tc).peak = b;
    }
    unlock_own(tc);
    true
}

/// The share of a thread's cap its big classes may hold together: a
/// quarter, but room for one chunk of the biggest class (within the cap).
/// (Half the cap: the same rate on `mlarge-16`, and c_tests/stress.c's
/// peak RSS 211-224 MiB against 189-202.)
/// With few threads, more: `big_extra`, which `thread_cap` added to the
/// cap.
/// (`big_room(n)` for `n` threads is cached in `t`: `room`.)
#[inline]
pub(super) fn big_cap(t: &mut MCache) -> usize {
    let n = THREADS.load(Ordering::Relaxed).max(1);
    if n != t.room_n {
        t.room = big_room(n);
        t.room_n = n;
    }
    t.room.min(t.cap)
}

/// `big_cap` before the thread's own cap: the big classes' room while `n`
/// threads have a cache.
#[cold]
fn big_room(n: usize) -> usize {
    let base = base_cap(n);
    big_quarter(base) + big_extra(base, n)
}

/// The bytes `t`'s big classes hold, at least (each chunk counted at its
/// class's chunk size; a listed chunk is less than the next class's).
pub(super) fn big_held(t: &MCache) -> usize {
    let r = if t.bres.is_null() {
        0
    } else {
        // SAFETY: `bres` is this thread's reserve (the caller holds `own`).
        unsafe { crate::heap::reserve_left(t.bres) }
    };
    (BIG_FIRST..NMC)
        .map(|j| count_of(t, j) as usize * class_chunk(j))
        .sum::<usize>()
        + r
}

/// `free` of a chunk of a big class (`s` bytes): into this thread's list
/// while its big classes hold at most `big_cap`, else to the class's shared
/// list (for any thread's next refill), under the cache's lock.
///
/// Why a share: a big chunk a thread frees and keeps is up to 1 MiB of
/// pages the program wrote, which nobody can use or purge while it sits in
/// the cache; with the whole cap for them, 32 threads of
/// `c_tests/stress.c` cached 4 MiB each, its peak RSS rose from 166-178 to
/// 222-260 MiB, and 2000 frees did not purge it all back (see
/// docs/medium.md).
///
/// # Safety
/// As [`free`]; `tc` is this thread's live cache.
#[cold]
#[inline(never)]
unsafe fn free_big(tc: *mut MCache, c: *mut Chunk, s: usize) -> bool {
    let mk = check_free(tc, c);
    let ps = crate::heap::purge_state();
    if ps != crate::heap::PURGE_IDLE {
        purge_tick(tc, ps);
    }
    lock_own(tc);
    let t = &mut *tc;
    // (A chunk where the big reserve ends, the last cut from it: back into
    // it, see `big_cut`.)
    if !t.bres.is_null() && crate::heap::reserve_merge(t.bres, t.bres_end, c) {
        unlock_own(tc);
        return true;
    }
    let k = push(tc, c, s, mk);
    t.bytes += class_chunk(k);
    if t.cap != 0 && big_held(t) > big_cap(t) {
        // c (the head of list k) leaves for the shared list.
        let _ = to_central(t, k, 1);
        FLUSHES.fetch_add(1, Ordering::Relaxed);
        let cc = big_central_cap();
        if CENTRAL_BYTES.load(Ordering::Relaxed) > cc {
            drain_central_soft(cc / 2);
        }
    }
    if t.bytes > t.cap {
        // (MEMALLOC_MEDIUM_CACHE=0 too: to the heap)
        flush_over_cap(tc, k);
    } else if t.bytes > t.peak {
        t.peak = t.bytes;
    }
    unlock_own(tc);
    true
}

/// `free`'s common case only: false, having done nothing, unless `c` fits
/// a class and this thread's cache is live and stays under its cap (the
/// caller then leaves the section and runs `free`); true once `c` is
/// cached. No call but to the reports: the export layer's fast path of
/// free needs no register saved.
///
/// # Safety
/// As [`free`]; `s` is `c`'s size; the caller found `c` neither free nor
/// mmapped (a second free of a free chunk is reported by the slow path);
/// `tc` is this thread's cache (`enter`'s answer), in a fast
/// section whose signal the caller tested after `enter`: the gate's
/// `RECLAIM` bit clear (with every slower mode: `gate`, the heap's purge
/// among them), followed by an acquire fence.
#[inline(always)]
pub unsafe fn free_fast(tc: *mut MCache, c: *mut Chunk, h: usize) -> bool {
    // One subtraction and one rotation test the flags and the range, and
    // give the class's index: `w - (class_chunk(0) | MARK)` has its low 4
    // bits clear exactly when the flags are MARK alone (ours, neither free
    // nor mapped; a free chunk's second free goes to the slow path, which
    // reports it), and every class's chunk (but the big ones') is
    // `CHUNK_PAD` past a multiple of 1 KiB, the first's 5 KiB. Rotated right by 4, any flag left over
    // lands in the top bits and fails the range's test. (Three
    // instructions fewer than the flags' test and the range's apart.) The
    // big classes take `free`, which bounds their share.
    // (The mask read from the cache: an `and` from memory, where the
    // constant took a 10-byte `movabs` first.)
    // (Rotated by 10: a size that is not `class_chunk(0)` plus whole KiB,
    // which no class's chunk is, lands in the top bits as well; one whose
    // KiB are no class's has the class `SINK`, whose `cw` fails the cap's
    // test: such a chunk, which a realloc or an aligned allocation made,
    // goes to `free`, and the lists hold chunks of their class's exact
    // size.)
    let w = h & (*tc).head_mask;
    let d = w.wrapping_sub(class_chunk(0) | MARK).rotate_right(10);
    if d > (class_chunk(BIG_FIRST - 1) - class_chunk(0)) >> 10 {
        return false;
    }
    // (In bounds: `d` passed the range test, so it is below
    // `FREE_CLASS_LEN`.)
    let k = *(*tc).free_class.get_unchecked(d) as usize;
    // (The static caches, EMPTY and DEAD, have a cap of 0: this test
    // sends them to `free` too.)
    let b = (*tc).bytes + *(*tc).cw.get_unchecked(k);
    if b > (*tc).cap {
        return false;
    }
    debug_assert!((*tc).state == LIVE);
    let mk = (*tc).mkey;
    if crate::guard::CHECKS && (*c).prev_free as usize == mk {
        double_free(c);
    }
    // The push waits for the next free: `c` is marked (a second free of it
    // is found) and becomes the pending chunk, and the chunk pending
    // before is pushed, its class long read. Why:
    // `k` comes from the header, in the line the program read last (often
    // a cache miss still under way); stores to `head[k]`, `count[k]` and
    // `above[k]`, whose address waited for it, held up the next malloc's
    // loads of its list (the processor cannot tell them apart until then),
    // and with them the program's next miss: 1.2x tcmalloc's time on
    // `bench/mthreads 1 2e7 256 5121 6144 u`, 1.0x with the class fixed.
    (*c).prev_free = mk as *mut Chunk;
    let prev = (*tc).pend;
    let pk = (*tc).pend_k;
    (*tc).pend = c;
    (*tc).pend_k = k;
    (*tc).bytes = b;
    link_class(tc, prev, pk);
    true
}

/// Pushes the pending chunk, if any, on its list (the owner's slow paths,
/// under `own`, and a reclaim: nothing reads the lists with one pending).
///
/// # Safety
/// `tc` is a cache whose lists its caller may write.
#[inline]
pub(super) unsafe fn settle(tc: *mut MCache) {
    let sink = addr_of_mut!((*tc).sink);
    let c = core::mem::replace(&mut (*tc).pend, sink);
    let k = core::mem::replace(&mut (*tc).pend_k, SINK);
    if c != sink {
        link_class(tc, c, k);
    }
}

/// The checks of a free of in-use chunk `c` into live cache
/// `tc`: reports a double free (the chunk free, or marked as cached).
/// Returns `c`'s mark.
///
/// # Safety
/// As [`free`]; `tc` is this thread's live cache.
#[inline(always)]
unsafe fn check_free(tc: *mut MCache, c: *mut Chunk) -> usize {
    let mk = (*tc).mkey;
    if crate::guard::CHECKS && (is_free(c) || (*c).prev_free as usize == mk) {
        double_free(c);
    }
    // Not the next header: reading it cost a cache miss of its own on most
    // frees (a third of free's time on bench/mthreads 1). An overflow into
    // it is reported when the chunk leaves the caches for the heap
    // (`free_to_heap`: `Heap::validate`, which also checks the previous
    // footer), or by the next block's own free (its tag).
    mk
}

/// Pushes `c` (`s` bytes, mark `mk`) on its class's list in `tc`; returns
/// the class. The caller adds `s` to `bytes`.
///
/// # Safety
/// As [`check_free`], which passed.
#[inline(always)]
unsafe fn push(tc: *mut MCache, c: *mut Chunk, s: usize, mk: usize) -> usize {
    let k = class_of_chunk(s);
    push_class(tc, c, k, mk);
    k
}

/// Pushes `c` (mark `mk`) on `tc`'s list `k`, its class's.
///
/// # Safety
/// As [`push`].
#[inline(always)]
pub(super) unsafe fn push_class(tc: *mut MCache, c: *mut Chunk, k: usize, mk: usize) {
    (*c).prev_free = mk as *mut Chunk;
    link_class(tc, c, k);
}

/// Links `c`, marked, on `tc`'s list `k`.
///
/// # Safety
/// As [`push`]; `k < NMC`.
#[inline(always)]
unsafe fn link_class(tc: *mut MCache, c: *mut Chunk, k: usize) {
    (*c).next_free = *(*tc).head.get_unchecked(k);
    *(*tc).head.get_unchecked_mut(k) = c;
    *(*tc).above.get_unchecked_mut(k) += 1;
}

/// Reports a second free of a chunk that is cached or free.
#[cold]
#[inline(never)]
pub(super) fn double_free(c: *mut Chunk) -> ! {
    crate::report::fatal("double free", to_user(c))
}

/// A free while the heap's purge is due or part way: the free a heap free
/// would have been runs the purge's step (every free while one is part
/// way; every 64th while one is due, the heap's clock deciding), so that
/// memory still goes back when the program's frees stop at the caches
/// (c_tests/stress.c: 2000 frees after a pause).
///
/// # Safety
/// `tc` is this thread's live cache.
#[cold]
#[inline(never)]
unsafe fn purge_tick(tc: *mut MCache, ps: u8) {
    if (*tc).cap == 0 {
        return; // (the caches are off: the free goes to the heap)
    }
    (*tc).tick = (*tc).tick.wrapping_add(1);
    // (While one is only due, every 64th free looks at the clock, and takes
    // the heap's lock only once the purge's interval is over: taking it on
    // every 64th free, 8 threads queued on it, 2400 times in 2M pairs of
    // bench/mthreads. And only if the lock is free: a thread that holds it
    // is doing the heap's work, purge steps included, and a free that
    // waited for it behind its madvise calls would gain nothing.)
    if ps == crate::heap::PURGE_ON
        || ((*tc).tick.is_multiple_of(64) && crate::os::coarse_ns() >= crate::heap::purge_after())
    {
        let _ = HEAP.try_with(|h| h.purge_from_cache());
    }
}

/// The purge's tick (`purge_tick`) of a free that the export layer's fast
/// path cached (`free_fast`) while the gate's `PURGE` bit was set: what
/// `free` does before its push.
#[inline]
pub fn tick_purge() {
    let ps = crate::heap::purge_state();
    if ps != crate::heap::PURGE_IDLE {
        // SAFETY: the slot holds this thread's cache, live since the chunk
        // went to it (a static one has a cap of 0: `purge_tick` returns).
        unsafe { purge_tick(tls::mc_get(), ps) }
    }
}

/// `corrupt` of the chunk whose user pointer is `p` (the fast path's
/// report: passing the pointer the report names leaves the chunk's
/// register free for the pop, and the request's for the miss).
#[cold]
#[inline(never)]
fn corrupt_user(p: *mut u8) -> ! {
    corrupt(from_user(p))
}

/// Reports a cached chunk whose mark or link was overwritten.
#[cold]
#[inline(never)]
pub(super) fn corrupt(c: *mut Chunk) -> ! {
    crate::report::fatal(
        "heap corruption (a freed medium block was written: use after free?)",
        to_user(c),
    )
}
