//! A thread's medium cache made (`init_cache`, on its first miss) and
//! given back at thread exit (`thread_exit`, the pthread key's destructor).

use super::*;

/// Gives this thread a medium cache; returns it, or null (the heap serves
/// the thread).
///
/// # Safety
/// Called by the thread whose slot it sets, outside every lock.
#[cold]
pub(super) unsafe fn init_cache() -> *mut MCache {
    // While we set up, this thread's medium requests go to the heap
    // (pthread_setspecific may allocate).
    tls::mc_set(addr_of!(DEAD_MCACHE));
    let key = *KEY.call_once(|| {
        let mut k: libc::pthread_key_t = 0;
        if libc::pthread_key_create(&mut k, Some(thread_exit)) != 0 {
            return libc::pthread_key_t::MAX;
        }
        k
    });
    if key == libc::pthread_key_t::MAX {
        return null_mut();
    }
    let cs = request_to_size(core::mem::size_of::<MCache>()).unwrap_or(0);
    let ch = HEAP.with(|h| h.alloc(cs));
    if ch.is_null() {
        tls::mc_set(addr_of!(EMPTY_MCACHE));
        return null_mut();
    }
    let t = to_user(ch) as *mut MCache;
    t.write(MCache::new(LIVE));
    (*t).pend = addr_of_mut!((*t).sink);
    (*t).mkey = mark_key();
    (*t).tag_mul = crate::guard::tag_mul();
    (*t).home = NEXT_HOME.fetch_add(1, Ordering::Relaxed) % SHARDS;
    THREADS.fetch_add(1, Ordering::Relaxed);
    (*t).cap = thread_cap();
    if libc::pthread_setspecific(key, t as *const libc::c_void) != 0 {
        THREADS.fetch_sub(1, Ordering::Relaxed);
        HEAP.with(|h| h.free(ch));
        return null_mut();
    }
    register(t);
    tls::mc_set(t);
    t
}

/// The pthread key destructor: the thread's cache goes back to the heap.
///
/// # Safety
/// `arg` is the exiting thread's cache (its pthread key's value).
unsafe extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let t = arg as *mut MCache;
    if t.is_null() {
        return;
    }
    tls::mc_set(addr_of!(DEAD_MCACHE));
    // (After this no reclaimer reaches t: each holds REG while it works.)
    unregister(t);
    let left = THREADS.fetch_sub(1, Ordering::Relaxed) - 1;
    flush_all_of(&mut *t);
    // The shared lists keep what the threads left may take again.
    drain_central(CENTRAL_CAP.min(left * CAP_MIN));
    (*t).state = DEAD;
    let ch = from_user(t as *mut u8);
    HEAP.with(|h| h.free(ch));
}
