//! Idle threads' caches taken back: the owner's lock for its slow paths
//! (`lock_own`), the registry of live caches (`register`), the scan that
//! finds a cache idle and the `membarrier` handshake that empties it while
//! its owner sleeps (`maybe_reclaim`, `scan`, `reclaim`). Why the handshake
//! is sound is in the comment of `mcache` (this module's parent).

use super::*;

/// Takes `tc`'s lock for one of its owner's slow paths (waiting while a
/// reclaimer holds it), and counts the slow path (the reclaimer's sign of
/// life), and pushes the pending chunk on its list (`settle`).
///
/// # Safety
/// `tc` is this thread's live cache.
#[inline]
pub(super) unsafe fn lock_own(tc: *mut MCache) {
    (*tc).own.lock();
    let a = &(*tc).act;
    a.store(a.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    settle(tc);
}

/// Releases what `lock_own` took.
///
/// # Safety
/// As [`lock_own`], which this thread called.
#[inline]
pub(super) unsafe fn unlock_own(tc: *mut MCache) {
    (*tc).own.unlock();
}

/// The live caches, doubly linked through `next` and `prev`, under `lock`.
/// Its holder is the only reclaimer; it takes no other lock of ours but a
/// cache's `own` (`try_guard`) and, to give chunks back, the heap's.
pub(super) struct Registry {
    pub(super) lock: Lock,
    pub(super) head: UnsafeCell<*mut MCache>,
}

// SAFETY: `head` and the caches' links and `seen` fields are only touched
// under `lock`.
unsafe impl Sync for Registry {}

pub(super) static REG: Registry = Registry {
    lock: Lock::new(),
    head: UnsafeCell::new(null_mut()),
};

/// The coarse clock's time of the next scan for idle caches.
static NEXT_SCAN: AtomicUsize = AtomicUsize::new(0);
/// Idle caches taken back, and their bytes.
static RECLAIMS: AtomicUsize = AtomicUsize::new(0);
static RECLAIMED: AtomicUsize = AtomicUsize::new(0);
/// `membarrier`'s state in this process.
pub(super) static MEMBARRIER: AtomicU32 = AtomicU32::new(MB_UNKNOWN);
pub(super) const MB_UNKNOWN: u32 = 0;
const MB_READY: u32 = 1;
const MB_NONE: u32 = 2;

/// Links live cache `t` into the registry.
///
/// # Safety
/// `t` is a live cache not in the registry.
pub(super) unsafe fn register(t: *mut MCache) {
    let _g = REG.lock.guard();
    let head = &mut *REG.head.get();
    (*t).prev = null_mut();
    (*t).next = *head;
    if !(*head).is_null() {
        (**head).prev = t;
    }
    *head = t;
}

/// Unlinks cache `t` from the registry; no reclaimer reaches it after.
///
/// # Safety
/// `t` is in the registry.
pub(super) unsafe fn unregister(t: *mut MCache) {
    let _g = REG.lock.guard();
    let head = &mut *REG.head.get();
    if (*t).prev.is_null() {
        *head = (*t).next;
    } else {
        (*(*t).prev).next = (*t).next;
    }
    if !(*t).next.is_null() {
        (*(*t).next).prev = (*t).prev;
    }
}

/// From a thread's slow path (a refill, a flush), outside every lock: at
/// most every quarter of `MEMALLOC_IDLE_MS`, takes back the caches of the
/// threads that have been idle that long (`scan`).
pub(super) fn maybe_reclaim() {
    let idle = crate::config::idle_ns();
    if idle == 0 || THREADS.load(Ordering::Relaxed) < 2 {
        return;
    }
    // (Every 16th slow path of a thread looks at the clock: under valgrind
    // a clock read is a system call, which reschedules the threads.)
    // SAFETY: the slot holds this thread's cache or a static one.
    if unsafe { (*tls::mc_get()).act.load(Ordering::Relaxed) } % 16 != 0 {
        return;
    }
    if crate::os::coarse_ns() < NEXT_SCAN.load(Ordering::Relaxed) {
        return;
    }
    let Some(_g) = REG.lock.try_guard() else {
        return; // (another thread scans, or a thread starts or exits)
    };
    // (The time again, under the lock: the scans' times only grow.)
    let now = crate::os::coarse_ns();
    if now < NEXT_SCAN.load(Ordering::Relaxed) {
        return;
    }
    NEXT_SCAN.store(now + idle / 4, Ordering::Relaxed);
    // SAFETY: we hold the registry's lock.
    unsafe { scan(now, idle) }
}

/// Walks the registry: a cache whose `(act, allocs)` has not moved for
/// `idle` ns and that holds chunks is taken back (`reclaim`).
///
/// # Safety
/// The caller holds `REG.lock`.
unsafe fn scan(now: usize, idle: usize) {
    let me = tls::mc_get();
    let mut t = *REG.head.get();
    while !t.is_null() {
        let sig = (
            (*t).act.load(Ordering::Relaxed),
            (*t).allocs
                .load(Ordering::Relaxed)
                .wrapping_add((*t).busy.load(Ordering::Relaxed) as usize),
        );
        if t == me {
            // (the scanning thread is not idle)
        } else if sig != (*t).seen || (*t).seen_at == 0 {
            (*t).seen = sig;
            (*t).seen_at = now;
            (*t).spent = false;
        } else if !(*t).spent && now.saturating_sub((*t).seen_at) >= idle && membarrier_ready() {
            (*t).spent = reclaim(t) == Reclaim::Done;
        }
        t = (*t).next;
    }
}

/// Registers for `membarrier` on the first call; is it usable?
fn membarrier_ready() -> bool {
    match MEMBARRIER.load(Ordering::Relaxed) {
        MB_READY => true,
        MB_NONE => false,
        _ => {
            let ok = crate::os::membarrier_register();
            MEMBARRIER.store(if ok { MB_READY } else { MB_NONE }, Ordering::Relaxed);
            ok
        }
    }
}

/// Takes idle cache `t`'s lists and gives their chunks back to the heap,
/// unless its owner is in a fast section (then nothing is done). The
/// handshake (asymmetric Dekker) is written out in the module's comment.
///
/// # Safety
/// The caller holds `REG.lock`; `t` is in the registry, not this thread's.
unsafe fn reclaim(t: *mut MCache) -> Reclaim {
    let Some(g) = (*t).own.try_guard() else {
        return Reclaim::Busy; // (the owner is on a slow path: not idle)
    };
    // The signals: the lock (taken) and the gate's bit.
    crate::gate::set(crate::gate::RECLAIM, true);
    fence(Ordering::SeqCst);
    let fenced = crate::os::membarrier_expedited();
    fence(Ordering::SeqCst);
    if !fenced || (*t).busy.load(Ordering::Acquire) & 1 != 0 {
        // Inside a fast section (or no barrier): leave it be.
        fence(Ordering::Release);
        crate::gate::set(crate::gate::RECLAIM, false);
        drop(g);
        return Reclaim::Busy;
    }
    // The owner is outside, and every entry of its from now on waits.
    settle(t);
    // (The classes' lists; not the sink's.)
    let all = (*t).head;
    let mut heads = [null_mut(); NMC];
    heads.copy_from_slice(&all[..NMC]);
    let bytes = (*t).bytes;
    let res = core::mem::replace(&mut (*t).res, null_mut());
    let bres = take_bres(&mut *t);
    (*t).head = [null_mut(); NMC + 1];
    (*t).low = [0; NMC + 1];
    (*t).above = [0; NMC + 1];
    (*t).bytes = 0;
    CACHED.fetch_sub(core::mem::take(&mut (*t).published), Ordering::Relaxed);
    fence(Ordering::Release);
    crate::gate::set(crate::gate::RECLAIM, false);
    drop(g);
    if bytes == 0 && res.is_null() && bres.0.is_null() {
        return Reclaim::Done;
    }
    let mut err = None;
    HEAP.with(|h| {
        if !res.is_null() {
            h.end_reserve(res);
        }
        end_bres(h, bres);
        for first in heads {
            let mut c = first;
            while !c.is_null() && err.is_none() {
                let nx = (*c).next_free;
                err = free_to_heap(h, c);
                c = nx;
            }
        }
    });
    RECLAIMS.fetch_add(1, Ordering::Relaxed);
    RECLAIMED.fetch_add(bytes, Ordering::Relaxed);
    if let Some((e, c)) = err {
        crate::report::fatal(e, to_user(c));
    }
    Reclaim::Done
}

/// What `reclaim` did.
#[derive(PartialEq)]
enum Reclaim {
    /// The lists are empty now (taken back, or were).
    Done,
    /// Nothing: the owner was inside (or no barrier to be had).
    Busy,
}

/// (idle caches taken back, their bytes).
pub fn reclaims() -> (usize, usize) {
    (
        RECLAIMS.load(Ordering::Relaxed),
        RECLAIMED.load(Ordering::Relaxed),
    )
}
