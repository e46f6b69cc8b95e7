//! A thread's cache from birth to exit: made on its first small request
//! (`init_cache`, from the shared list of freed caches or the heap), and at
//! thread exit (the pthread key's destructor, `thread_exit`) its bins
//! drained, its empty zones given back, the others abandoned to the shared
//! per-class lists and the cache kept for the next thread (`recycle`);
//! malloc_trim's part for exited threads' caches and abandoned zones
//! (`trim_free_caches`, `trim_abandoned`).

use super::*;

/// Gives this thread a cache; returns it, or null (the caller falls back to
/// the heap).
#[cold]
pub(super) unsafe fn init_cache() -> *mut Cache {
    // While we set up, small requests of this thread go to the heap
    // (pthread_setspecific may allocate).
    tls::set(static_cache_ptr(addr_of!(DEAD_CACHE)));
    let key = *KEY.call_once(|| {
        let mut k: libc::pthread_key_t = 0;
        if libc::pthread_key_create(&mut k, Some(thread_exit)) != 0 {
            return libc::pthread_key_t::MAX;
        }
        k
    });
    let mut c = {
        let _g = SHARED_LOCK.guard();
        let s = &mut *addr_of_mut!(SHARED);
        let c = s.free_caches;
        if !c.is_null() {
            s.free_caches = (*c).next_free;
        }
        c
    };
    if c.is_null() {
        let cs = chunk::request_to_size(core::mem::size_of::<Cache>()).unwrap_or(0);
        let ch = HEAP.with(|h| h.alloc_aligned(cs, 64));
        if ch.is_null() {
            tls::set(static_cache_ptr(addr_of!(EMPTY_CACHE)));
            return null_mut();
        }
        c = to_user(ch) as *mut Cache;
    }
    // A thread that starts while another has a cache starts sparse.
    init_fields(c, THREADS.load(Ordering::Relaxed) >= 1);
    if key == libc::pthread_key_t::MAX
        || libc::pthread_setspecific(key, c as *const libc::c_void) != 0
    {
        // No destructor means no clean exit: serve this thread from the heap.
        recycle(c);
        return null_mut();
    }
    {
        let _g = SHARED_LOCK.guard();
        let s = &mut *addr_of_mut!(SHARED);
        (*c).live_next = s.live;
        if !s.live.is_null() {
            (*s.live).live_prev = c;
        }
        s.live = c;
        THREADS.fetch_add(1, Ordering::Relaxed);
    }
    tls::set(c);
    c
}

/// Initialises every field of cache `c` but the bins' slots, which are only
/// read below their counts: writing them all would make two more pages of a
/// thread's cache resident for nothing (a thread uses a few classes).
pub(super) unsafe fn init_fields(c: *mut Cache, sparse: bool) {
    let s = static_cache(LIVE);
    let CacheOf {
        settled_next,
        unsettled: _,
        class_of,
        sparse: _,
        swap_min,
        half_mask,
        current,
        bin_state,
        free_top,
        bin: _,
        avail,
        full,
        revived,
        spare,
        pending,
        spilled,
        allocs,
        state,
        next_free,
        live_next,
        live_prev,
        prof,
    } = s;
    if sparse {
        addr_of_mut!((*c).class_of).write(CLASS_OF_SPARSE);
    } else {
        addr_of_mut!((*c).class_of).write(class_of);
    }
    addr_of_mut!((*c).sparse).write(sparse);
    addr_of_mut!((*c).swap_min).write(swap_min);
    if sparse {
        (*c).swap_min[SPARSE_CLASS] = SWAP_AT as u8; // (see `SPARSE_FILL`)
    }
    addr_of_mut!((*c).half_mask).write(half_mask);
    addr_of_mut!((*c).current).write(current);
    addr_of_mut!((*c).bin_state).write(bin_state);
    addr_of_mut!((*c).free_top).write(free_top);
    addr_of_mut!((*c).settled_next).write(settled_next);
    addr_of_mut!((*c).unsettled).write(settled(c));
    addr_of_mut!((*c).avail).write(avail);
    addr_of_mut!((*c).full).write(full);
    addr_of_mut!((*c).revived).write(revived);
    addr_of_mut!((*c).spare).write(spare);
    addr_of_mut!((*c).pending).write(pending);
    addr_of_mut!((*c).spilled).write(spilled);
    addr_of_mut!((*c).allocs).write(allocs);
    addr_of_mut!((*c).state).write(state);
    addr_of_mut!((*c).next_free).write(next_free);
    addr_of_mut!((*c).live_next).write(live_next);
    addr_of_mut!((*c).live_prev).write(live_prev);
    addr_of_mut!((*c).prof).write(prof);
}

unsafe fn recycle(c: *mut Cache) {
    let _g = SHARED_LOCK.guard();
    let s = &mut *addr_of_mut!(SHARED);
    (*c).next_free = s.free_caches;
    s.free_caches = c;
}

/// The pthread key destructor: returns the cache's empty zones to the heap and
/// abandons the rest to the shared lists.
///
/// The zones are sorted first, outside every shared lock: the empty ones go
/// to the heap under one acquisition of its lock, the others are abandoned
/// under one acquisition of the shared lock, with the cache's figures and
/// the cache itself. (A zone at a time, each taking the shared lock or the
/// heap's, threads that exit together queued on them: 8 threads exiting at
/// once made 13 futex calls per million pairs of `bench/mthreads 8 5e6 1000
/// 1 32k s`, half the program's; see docs/performance.md.)
unsafe extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let c = arg as *mut Cache;
    if c.is_null() {
        return;
    }
    drain_bins(c);
    for p in (*c).pending.iter_mut() {
        if !p.zone.is_null() {
            flush_pending(p);
        }
    }
    tls::set(static_cache_ptr(addr_of!(DEAD_CACHE)));
    let empty = addr_of_mut!(EMPTY_ZONE);
    let mut keep = [ZoneList::new(); NCLASS];
    let mut dead = ZoneList::new();
    for (cls, kept) in keep.iter_mut().enumerate() {
        let cur = (*c).current[cls];
        if cur != empty {
            sort_zone(cur, kept, &mut dead);
        }
        if !(*c).spare[cls].is_null() {
            dead.push_back((*c).spare[cls]);
        }
        loop {
            let z = (*c).avail[cls].pop_front();
            if z.is_null() {
                break;
            }
            sort_zone(z, kept, &mut dead);
        }
        loop {
            let z = (*c).full[cls].pop_front();
            if z.is_null() {
                break;
            }
            sort_zone(z, kept, &mut dead);
        }
    }
    if !dead.head.is_null() {
        HEAP.with(|h| {
            let mut z = dead.head;
            while !z.is_null() {
                // (Read before the zone's chunk is freed.)
                let next = (*z).next;
                retire_in(h, z);
                z = next;
            }
        });
    }
    let _g = SHARED_LOCK.guard();
    let s = &mut *addr_of_mut!(SHARED);
    for (cls, kept) in keep.iter_mut().enumerate() {
        let mut z = kept.head;
        while !z.is_null() {
            let _zg = (*z).alock.guard();
            (*z).state = ABANDONED;
            (*z).owner.store(null_mut(), Ordering::Release);
            zonemap::info((*z).granule as *const u8)
                .owner
                .store(0, Ordering::Release);
            z = (*z).next;
        }
        s.abandoned[cls].append(kept);
    }
    for (i, n) in s.allocs.iter_mut().enumerate() {
        *n += served(c, i);
    }
    if (*c).live_prev.is_null() {
        s.live = (*c).live_next;
    } else {
        (*(*c).live_prev).live_next = (*c).live_next;
    }
    if !(*c).live_next.is_null() {
        (*(*c).live_next).live_prev = (*c).live_prev;
    }
    THREADS.fetch_sub(1, Ordering::Relaxed);
    (*c).next_free = s.free_caches;
    s.free_caches = c;
}

/// At owner exit: zone `z` (of the owner's lists, unlinked) goes to `dead`
/// if all its blocks came back, else to `kept`, to be abandoned.
///
/// # Safety
/// `z` is a live zone of the exiting thread's cache, on none of its lists.
unsafe fn sort_zone(z: *mut Zone, kept: &mut ZoneList, dead: &mut ZoneList) {
    collect(z);
    if (*z).used == 0 {
        dead.push_back(z);
    } else {
        kept.push_back(z);
    }
}

/// malloc_trim's part: the caches of exited threads, kept for the next
/// threads, go back to the heap (a cache lies in the heap, and one at its
/// top would keep the break up). Returns how many.
pub fn trim_free_caches() -> usize {
    let mut list = {
        let _g = SHARED_LOCK.guard();
        // SAFETY: the list is only touched under SHARED_LOCK; we take it whole.
        unsafe { core::mem::replace(&mut (*addr_of_mut!(SHARED)).free_caches, null_mut()) }
    };
    let mut n = 0;
    while !list.is_null() {
        // SAFETY: a cache on the free list belongs to no thread, and is a
        // heap chunk of its own (`init_cache`).
        unsafe {
            let next = (*list).next_free;
            HEAP.with(|h| h.free(chunk::from_user(list as *mut u8)));
            list = next;
        }
        n += 1;
    }
    n
}

/// malloc_trim's part: retires abandoned zones whose blocks have all been
/// freed by other threads. Returns how many.
pub fn trim_abandoned() -> usize {
    let mut n = 0;
    // SAFETY: abandoned zones are only touched under SHARED_LOCK.
    unsafe {
        for cls in 0..NCLASS {
            let mut todo = ZoneList::new();
            {
                let _g = SHARED_LOCK.guard();
                let s = &mut *addr_of_mut!(SHARED);
                let mut z = s.abandoned[cls].head;
                while !z.is_null() {
                    let nx = (*z).next;
                    let _zg = (*z).alock.guard();
                    if (*z).state != RETIRING {
                        collect(z);
                        if (*z).used == 0 {
                            (*z).state = RETIRING;
                            s.abandoned[cls].unlink(z);
                            todo.push_back(z);
                        }
                    }
                    z = nx;
                }
            }
            loop {
                let z = todo.pop_front();
                if z.is_null() {
                    break;
                }
                retire(z);
                n += 1;
            }
        }
    }
    n
}
