//! The shared lists, between the thread caches and the heap: chunks moved
//! to them (`to_central`, `give_central`) and taken from them
//! (`from_central`, `take_shard`, `finish_take`), drained to the heap
//! (`drain_central`); chunks given back to the heap (`release`,
//! `flush_all_of`); the fork handlers' part (`lock_all`, `unlock_all`,
//! `reset_after_fork`), malloc_trim's (`flush_all`) and the statistics'
//! (`publish`, `publish_mine`).

use super::*;

/// Moves the first `n` chunks of `t`'s class `j` to the class's shared
/// list; returns how many it moved (fewer if the list is shorter).
///
/// # Safety
/// `t` is this thread's live cache; its lists hold cached chunks.
pub(super) unsafe fn to_central(t: &mut MCache, j: usize, n: u32) -> u32 {
    let m = give_central(t, j, n);
    CENTRAL_BYTES.fetch_add(m as usize * class_chunk(j), Ordering::Relaxed);
    m
}

/// `to_central` but for `CENTRAL_BYTES`, which the caller raises by the
/// bytes moved (`class_chunk(j)` each: a listed chunk is its class's size).
///
/// # Safety
/// As [`to_central`].
pub(super) unsafe fn give_central(t: &mut MCache, j: usize, n: u32) -> u32 {
    let first = t.head[j];
    if n == 0 || first.is_null() {
        return 0;
    }
    let (mut last, mut m) = (first, 1u32);
    while m < n {
        let nx = (*last).next_free;
        if nx.is_null() {
            break;
        }
        last = nx;
        m += 1;
    }
    t.head[j] = (*last).next_free;
    set_count(t, j, count_of(t, j) - m);
    t.bytes -= m as usize * class_chunk(j);
    {
        let (cen, s, _g) = lock_shard(j, t.home);
        let l = &mut *cen.list.get();
        (*last).next_free = *l;
        *l = first;
        let was = cen.n.load(Ordering::Relaxed);
        cen.n.store(was + m, Ordering::Relaxed);
        if was == 0 {
            AVAIL[j].0.fetch_or(1 << s, Ordering::Relaxed); // (now not empty)
        }
    }
    m
}

/// Takes up to `want` chunks of class `k` from its shared list: returns the
/// first (null if the list was empty), the others go to `t`'s list. The
/// shards that hold chunks (`AVAIL`) are looked at from `t`'s home on; one
/// whose lock is held is passed over, and waited for only if no other had
/// chunks.
///
/// # Safety
/// As [`to_central`].
pub(super) unsafe fn from_central(t: &mut MCache, k: usize, want: u32) -> *mut Chunk {
    let sh = &CENTRAL[k];
    let mut held = None;
    // The shards that hold chunks (`AVAIL`; a racy peek: a miss only goes
    // to the heap), from `home` on: bit `i` is shard `home + i`.
    let home = t.home % SHARDS;
    let a = AVAIL[k].0.load(Ordering::Relaxed);
    let mut m = (a >> home | a << (SHARDS - home)) & ((1 << SHARDS) - 1);
    while m != 0 {
        let s = (home + m.trailing_zeros() as usize) % SHARDS;
        m &= m - 1;
        let cen = &sh[s];
        match cen.lock.try_guard() {
            Some(g) => {
                let c = take_shard(cen, k, s, want);
                drop(g);
                if !c.is_null() {
                    return finish_take(t, k, c);
                }
            }
            None => {
                SHARD_SKIPS.fetch_add(1, Ordering::Relaxed);
                held = held.or(Some(s));
            }
        }
    }
    let Some(s) = held else {
        return null_mut();
    };
    let c = {
        let _g = sh[s].lock.guard_counted(&CENTRAL_CONTENDED);
        take_shard(&sh[s], k, s, want)
    };
    if c.is_null() {
        return c;
    }
    finish_take(t, k, c)
}

/// Under shard `cen`'s lock (shard `s` of class `k`): unlinks up to `want`
/// chunks from it; returns the first, linked to the others through
/// `next_free` and the last's link null (null if the shard is empty).
///
/// # Safety
/// `cen`'s lock is held; its list holds cached chunks.
unsafe fn take_shard(cen: &Central, k: usize, s: usize, want: u32) -> *mut Chunk {
    let l = &mut *cen.list.get();
    let first = *l;
    if first.is_null() {
        return first;
    }
    let (mut last, mut m) = (first, 1u32);
    while m < want {
        let nx = (*last).next_free;
        if nx.is_null() {
            break;
        }
        last = nx;
        m += 1;
    }
    *l = (*last).next_free;
    (*last).next_free = null_mut();
    let left = cen.n.load(Ordering::Relaxed) - m;
    cen.n.store(left, Ordering::Relaxed);
    if left == 0 {
        emptied(k, s);
    }
    first
}

/// Under its lock: shard `s` of class `k`'s shared list was emptied (its
/// bit of `AVAIL` cleared).
fn emptied(k: usize, s: usize) {
    AVAIL[k].0.fetch_and(!(1 << s), Ordering::Relaxed);
}

/// Outside the shards' locks: accounts the chunks `take_shard` took
/// (`first` and those linked after it) and gives all but `first` to `t`'s
/// list `k`; returns `first` for the caller.
///
/// # Safety
/// `first` is `take_shard`'s answer, not null; `t` as [`to_central`].
unsafe fn finish_take(t: &mut MCache, k: usize, first: *mut Chunk) -> *mut Chunk {
    let (mut bytes, mut m, mut last) = (0, 0u32, first);
    let mut c = first;
    while !c.is_null() {
        bytes += size(c);
        m += 1;
        last = c;
        c = (*c).next_free;
    }
    CENTRAL_BYTES.fetch_sub(bytes, Ordering::Relaxed);
    if crate::guard::CHECKS && (*first).prev_free != mark(first) {
        corrupt(first);
    }
    // first goes to the caller; the rest to the thread's list
    if m > 1 {
        (*last).next_free = t.head[k];
        t.head[k] = (*first).next_free;
        t.above[k] += m - 1;
        t.bytes += (m - 1) as usize * class_chunk(k);
    }
    (*first).prev_free = null_mut();
    first
}

/// Gives the shared lists back to the heap, from the biggest class down,
/// until they hold at most `keep` bytes.
///
/// # Safety
/// The shared lists hold cached chunks (their locks guard them).
pub(super) unsafe fn drain_central(keep: usize) {
    drain_central_by(keep, false)
}

/// `drain_central` from a flush (`flush_over_cap`, `free_big`): stops
/// while another thread holds the heap's lock, unless the shared lists
/// hold twice their cap (`CENTRAL_CAP`) or more. Why: a drain frees a
/// whole shard's list under one acquisition, the longest holds of the
/// heap's lock in the steady state; at 64 threads (c_tests/medium.c's part
/// 8, exits left out) they were most of the heap's contended acquisitions
/// once the refills cut their chunks from reserves. A thread that finds
/// the lock held leaves the drain to the next flush (or to the holder's).
///
/// # Safety
/// As [`drain_central`].
pub(super) unsafe fn drain_central_soft(keep: usize) {
    drain_central_by(
        keep,
        CENTRAL_BYTES.load(Ordering::Relaxed) < 2 * CENTRAL_CAP,
    )
}

/// `drain_central`; `soft`: stop before a shard's list while the heap's
/// lock is held.
///
/// # Safety
/// As [`drain_central`].
unsafe fn drain_central_by(keep: usize, soft: bool) {
    let mut j = NMC * SHARDS;
    while j > 0 && CENTRAL_BYTES.load(Ordering::Relaxed) > keep {
        j -= 1;
        let cen = &CENTRAL[j / SHARDS][j % SHARDS];
        if cen.n.load(Ordering::Relaxed) == 0 {
            continue;
        }
        if soft && HEAP.lock().is_locked() {
            return; // (a racy peek: at worst one wait, as before)
        }
        let first = {
            let _g = cen.lock.guard_counted(&CENTRAL_CONTENDED);
            cen.n.store(0, Ordering::Relaxed);
            emptied(j / SHARDS, j % SHARDS);
            core::mem::replace(&mut *cen.list.get(), null_mut())
        };
        if first.is_null() {
            continue;
        }
        let mut err = None;
        let mut bytes = 0;
        HEAP.with(|h| {
            let mut c = first;
            while !c.is_null() && err.is_none() {
                let nx = (*c).next_free;
                bytes += size(c);
                err = free_to_heap(h, c);
                c = nx;
            }
        });
        CENTRAL_BYTES.fetch_sub(bytes, Ordering::Relaxed);
        FLUSHES.fetch_add(1, Ordering::Relaxed);
        HEAP_FLUSHES.fetch_add(1, Ordering::Relaxed);
        if let Some((e, c)) = err {
            crate::report::fatal(e, to_user(c));
        }
    }
}

/// Frees cached chunk `c` to heap `h` (under its lock) after the heap's
/// checks; the error to report otherwise (after the lock is released).
///
/// # Safety
/// `c` is a cached chunk taken off its list; `h` is the locked heap.
pub(super) unsafe fn free_to_heap(
    h: &mut crate::heap::Heap,
    c: *mut Chunk,
) -> Option<(&'static str, *mut Chunk)> {
    if crate::guard::CHECKS && (*c).prev_free != mark(c) {
        return Some((
            "heap corruption (a freed medium block was written: use after free?)",
            c,
        ));
    }
    (*c).prev_free = null_mut();
    if let Err(e) = h.validate(c) {
        return Some((e, c));
    }
    h.free(c);
    None
}

/// For the fork handlers: takes the registry's lock (no reclaim is under
/// way then) and every shared list's lock.
pub fn lock_all() {
    REG.lock.lock();
    for c in all_shards() {
        c.lock.lock();
    }
}

/// For the fork handlers: releases every shared list's lock and the
/// registry's.
pub fn unlock_all() {
    for c in all_shards() {
        c.lock.unlock();
    }
    REG.lock.unlock();
}

/// In a fork child: the shared lists' locks are free again, and the only
/// thread is the one that forked (the others' caches are lost with them,
/// as glibc's tcaches are): the registry holds its cache alone, and the
/// child registers for `membarrier` again before its first reclaim.
pub fn reset_after_fork() {
    for c in all_shards() {
        c.lock.reset_after_fork();
    }
    REG.lock.reset_after_fork();
    let tc = tls::mc_get();
    // SAFETY: the slot holds this thread's cache or a static one; the
    // registry is ours alone (one thread, its lock reset).
    let live = unsafe {
        let live = (*tc).state == LIVE;
        let head = &mut *REG.head.get();
        *head = null_mut();
        if live {
            (*tc).next = null_mut();
            (*tc).prev = null_mut();
            (*tc).seen_at = 0;
            *head = tc;
        }
        live
    };
    THREADS.store(live as usize, Ordering::Relaxed);
    MEMBARRIER.store(MB_UNKNOWN, Ordering::Relaxed);
}

/// Gives the first `n` chunks of class `k`'s list back to heap `h`
/// (under its lock). Stops at a chunk the heap's checks reject, returning
/// the error to report (after the lock is released).
///
/// # Safety
/// As [`to_central`]; `h` is the locked heap.
pub(super) unsafe fn release(
    h: &mut crate::heap::Heap,
    t: &mut MCache,
    k: usize,
    n: u32,
) -> Option<(&'static str, *mut Chunk)> {
    for _ in 0..n {
        let c = t.head[k];
        if c.is_null() {
            break;
        }
        t.head[k] = (*c).next_free;
        set_count(t, k, count_of(t, k) - 1);
        t.bytes -= class_chunk(k);
        let e = free_to_heap(h, c);
        if e.is_some() {
            return e;
        }
    }
    None
}

/// Gives every cached chunk of `t` back to the heap (one lock acquisition).
///
/// # Safety
/// As [`to_central`].
pub(super) unsafe fn flush_all_of(t: &mut MCache) {
    settle(t);
    let res = core::mem::replace(&mut t.res, null_mut());
    let bres = take_bres(t);
    if t.bytes == 0 && res.is_null() && bres.0.is_null() {
        return;
    }
    let mut err = None;
    HEAP.with(|h| {
        if !res.is_null() {
            h.end_reserve(res);
        }
        end_bres(h, bres);
        for k in 0..NMC {
            if err.is_none() {
                err = release(h, t, k, count_of(t, k));
            }
        }
    });
    reset_low(t);
    FLUSHES.fetch_add(1, Ordering::Relaxed);
    HEAP_FLUSHES.fetch_add(1, Ordering::Relaxed);
    publish(t);
    if let Some((e, c)) = err {
        crate::report::fatal(e, to_user(c));
    }
}

/// Adds what `t` did since its last publication to the global figures,
/// and sets its cap for the number of threads now.
///
/// # Safety
/// `t` is this thread's live cache.
pub(super) unsafe fn publish(t: &mut MCache) {
    let bytes = t.bytes;
    t.peak = t.peak.max(bytes);
    if !t.bres.is_null() {
        let left = crate::heap::reserve_left(t.bres);
        crate::heap::reserved_settle(core::mem::replace(&mut t.bres_acct, left), left);
    }
    t.cap = thread_cap();
    // (Outside the fast sections: `busy` is even.)
    let b = *t.busy.get_mut();
    let popped = (b.wrapping_sub(core::mem::replace(&mut t.busy_published, b)) / 2) as usize;
    ALLOCS.fetch_add(
        core::mem::take(t.allocs.get_mut()) + popped,
        Ordering::Relaxed,
    );
    PEAK.fetch_max(t.peak, Ordering::Relaxed);
    // CACHED: each thread's last published figure is in it; replace ours.
    let old = t.published;
    if bytes >= old {
        CACHED.fetch_add(bytes - old, Ordering::Relaxed);
    } else {
        CACHED.fetch_sub(old - bytes, Ordering::Relaxed);
    }
    t.published = bytes;
}

/// malloc_trim's part: gives the calling thread's cache and the shared
/// lists back to the heap.
pub fn flush_all() {
    let tc = tls::mc_get();
    // SAFETY: tc is this thread's cache; only a live one has chunks. The
    // shared lists are taken under their locks.
    unsafe {
        if (*tc).state == LIVE {
            lock_own(tc);
            flush_all_of(&mut *tc);
            unlock_own(tc);
        }
        drain_central(0);
    }
}

/// The statistics' part: publishes the calling thread's figures.
pub fn publish_mine() {
    let tc = tls::mc_get();
    // SAFETY: as flush_all.
    unsafe {
        if (*tc).state == LIVE {
            lock_own(tc);
            publish(&mut *tc);
            unlock_own(tc);
        }
    }
}
