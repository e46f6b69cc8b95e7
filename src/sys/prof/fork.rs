//! Fork: every lock of the profiler taken around `fork` (`lock_all`,
//! `unlock_all`) and the child's profile of its own (`after_fork_child`).

use super::*;

/// The fork handlers: the profile's locks (every shard's, then the
/// stacks') are taken before the allocator's.
pub fn lock_all() {
    for sh in &SHARD {
        sh.lock.lock();
    }
    STACK_LOCK.lock();
}

/// Releases what `lock_all` took.
pub fn unlock_all() {
    STACK_LOCK.unlock();
    for sh in &SHARD {
        sh.lock.unlock();
    }
}

/// Whether some thread holds one of the profile's locks (a snapshot: the
/// fork of a process with one thread, from a signal handler, may have
/// interrupted the profiler).
pub fn is_locked() -> bool {
    STACK_LOCK.is_locked() || SHARD.iter().any(|sh| sh.lock.is_locked())
}

/// In a fork child: a profile of its own, empty (the parent's samples stay
/// the parent's).
pub fn after_fork_child() {
    for sh in &SHARD {
        sh.lock.reset_after_fork();
    }
    STACK_LOCK.reset_after_fork();
    RULE_LOCK.reset_after_fork();
    let rules = RULES.load(Ordering::Relaxed);
    if !rules.is_null() {
        // A pair another thread was writing at the fork may be torn.
        // SAFETY: the table is ours, mapped by `prime_unwinder`.
        unsafe { crate::os::discard(rules as *mut u8, RULE_SLOTS * 16) };
    }
    let memos = MEMOS.load(Ordering::Relaxed);
    if !memos.is_null() {
        // A memo another thread was filling at the fork may be torn: empty
        // them; only this thread's group stays owned (the other threads
        // are gone).
        // SAFETY: the table is ours, mapped by `prime_unwinder`.
        unsafe { crate::os::discard(memos as *mut u8, MEMO_SLOTS * core::mem::size_of::<Memo>()) };
        // SAFETY: this thread's own state.
        let g = unsafe { (*thread_state()).memo };
        let own = if g > NO_MEMO {
            1 << ((g - memos as usize) / (MEMO_GROUP * core::mem::size_of::<Memo>()))
        } else {
            0
        };
        MEMO_OWNED.store(own, Ordering::Relaxed);
    }
    let stacks = STACKS.load(Ordering::Relaxed);
    if stacks.is_null() {
        return;
    }
    // SAFETY: single-threaded child; the tables are ours.
    unsafe {
        crate::os::discard(stacks as *mut u8, STACK_CAP * core::mem::size_of::<Stack>());
        crate::os::discard(INDEX.load(Ordering::Relaxed) as *mut u8, INDEX_CAP * 4);
        NSTACKS.store(0, Ordering::Relaxed);
        for sh in &SHARD {
            let p = &mut *sh.part.get();
            if !p.samples.is_null() {
                // (Both areas, one mapping: the lower address is its start.)
                crate::os::discard(
                    p.samples.min(p.spare) as *mut u8,
                    2 * SAMPLE_SLOTS * core::mem::size_of::<Sample>(),
                );
                crate::os::discard(p.figs as *mut u8, STACK_CAP * core::mem::size_of::<Fig>());
                p.slots = Part::EMPTY.slots;
                p.room = SAMPLE_SLOTS_MIN / 2;
                p.shift = Part::EMPTY.shift;
                p.samples = p.samples.min(p.spare);
                p.spare = p.samples.add(SAMPLE_SLOTS);
            }
            p.alloc_total = 0;
            p.sample_count = 0;
            p.dropped = 0;
            sh.nsamples.store(0, Ordering::Relaxed);
        }
    }
    for a in [
        &TOTALS.live,
        &TOTALS.next,
        &TOTALS.peak.epoch,
        &TOTALS.peak.total,
    ] {
        a.store(0, Ordering::Relaxed);
    }
}
