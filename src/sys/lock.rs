//! The lock used where sharing is unavoidable (the shared heap, the list of
//! large blocks).
//!
//! A futex mutex after Drepper's "Futexes Are Tricky" (mutex 2): state 0 =
//! free, 1 = held, 2 = held with waiters. It spins briefly (the critical
//! sections are short), then sleeps in the kernel, so that a holder preempted
//! with more threads than cores does not have its time slice burnt by
//! spinners. Uncontended cost: one compare-exchange to lock, one swap to
//! unlock. Allocates nothing.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// A futex-backed mutex that never allocates.
pub struct Lock {
    state: AtomicU32,
}

const SPINS: u32 = 64;

/// Acquisitions of any `Lock` that found it held (statistics: counted on
/// the slow path only, so the uncontended path is unchanged).
pub static CONTENDED: AtomicUsize = AtomicUsize::new(0);

impl Lock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        Lock {
            state: AtomicU32::new(0),
        }
    }

    /// Takes the lock.
    #[inline]
    pub fn lock(&self) {
        if self
            .state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
    }

    /// Takes the lock if it is free and returns a guard that releases it;
    /// None (nothing done, nothing counted) if it is held.
    #[inline]
    pub fn try_guard(&self) -> Option<Guard<'_>> {
        self.state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            // (`then`, not `then_some`: a Guard made and dropped when the
            // lock is held would release another thread's lock.)
            .then(|| Guard(self))
    }

    /// `guard`, counting a contended acquisition in `also` as well as in
    /// `CONTENDED` (a lock whose contention the statistics show apart).
    #[inline]
    pub fn guard_counted(&self, also: &AtomicUsize) -> Guard<'_> {
        if self
            .state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            also.fetch_add(1, Ordering::Relaxed);
            self.lock_slow();
        }
        Guard(self)
    }

    #[cold]
    fn lock_slow(&self) {
        CONTENDED.fetch_add(1, Ordering::Relaxed);
        for _ in 0..SPINS {
            core::hint::spin_loop();
            if self.state.load(Ordering::Relaxed) == 0
                && self
                    .state
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        // Mark contended; whoever unlocks then wakes a sleeper.
        while self.state.swap(2, Ordering::Acquire) != 0 {
            crate::os::futex_wait(&self.state, 2);
        }
    }

    /// Releases the lock.
    #[inline]
    pub fn unlock(&self) {
        if self.state.swap(0, Ordering::Release) == 2 {
            crate::os::futex_wake(&self.state);
        }
    }

    /// Makes the lock free again in a forked child, where the thread that held
    /// it (the forking thread, in the prepare handler) is the only thread.
    pub fn reset_after_fork(&self) {
        self.state.store(0, Ordering::Relaxed);
    }

    /// Whether some thread holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != 0
    }

    /// Takes the lock and returns a guard that releases it.
    #[inline]
    pub fn guard(&self) -> Guard<'_> {
        self.lock();
        Guard(self)
    }
}

impl Default for Lock {
    fn default() -> Self {
        Self::new()
    }
}

/// A lock that a [`Guard`] releases.
pub trait Unlock {
    /// Releases the lock.
    fn unlock(&self);
}

impl Unlock for Lock {
    #[inline]
    fn unlock(&self) {
        Lock::unlock(self);
    }
}

/// Releases its lock (a [`Lock`] unless said) when dropped.
pub struct Guard<'a, L: Unlock = Lock>(&'a L);

impl<L: Unlock> Drop for Guard<'_, L> {
    #[inline]
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// A lock released by a plain store, no read-modify-write: for short
/// critical sections taken often and seldom contended, where `Lock`'s
/// release (a swap, to see sleepers) doubles the atomic operations (the
/// profiler's tables: a sample's filing and its block's free each take
/// it). A waiter spins briefly, then yields the processor (sched_yield),
/// so that a holder preempted with more threads than cores gets to run.
/// Allocates nothing.
pub struct SpinLock {
    state: AtomicU32,
}

impl SpinLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        SpinLock {
            state: AtomicU32::new(0),
        }
    }

    /// Takes the lock.
    #[inline]
    pub fn lock(&self) {
        if self
            .state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
    }

    #[cold]
    fn lock_slow(&self) {
        CONTENDED.fetch_add(1, Ordering::Relaxed);
        let mut spins = 0;
        loop {
            if self.state.load(Ordering::Relaxed) == 0
                && self
                    .state
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            if spins < SPINS {
                spins += 1;
                core::hint::spin_loop();
            } else {
                crate::os::yield_now();
            }
        }
    }

    /// Releases the lock: one store.
    #[inline]
    pub fn unlock(&self) {
        self.state.store(0, Ordering::Release);
    }

    /// Makes the lock free again in a forked child (as `Lock`'s).
    pub fn reset_after_fork(&self) {
        self.state.store(0, Ordering::Relaxed);
    }

    /// Whether some thread holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != 0
    }

    /// Takes the lock and returns a guard that releases it.
    #[inline]
    pub fn guard(&self) -> Guard<'_, SpinLock> {
        self.lock();
        Guard(self)
    }
}

impl Unlock for SpinLock {
    #[inline]
    fn unlock(&self) {
        SpinLock::unlock(self);
    }
}

impl Default for SpinLock {
    fn default() -> Self {
        Self::new()
    }
}
