//! The walks' memo (a walk replayed from the values it read) and the walk
//! itself (`walk`).

use super::*;

// A program samples the same stacks again and again (a loop's malloc, at the
// same depth): a walk is memoized, keyed by where it starts (the sampling
// function's address and stack pointer), with the list of what it read
// from the stack that decided its result: each saved return address, and
// each saved `%rbp` it computed a CFA from (with the starting `%rbp`, if it
// did), as (slot address, value) pairs in the order it read them. Replaying
// the list -- a load and a compare each -- and finding every value the
// same proves that the walk would find the same frames: its rows are
// chosen by the return addresses, its CFAs computed from the same registers
// and rows, so it would read the same slots and take the same branches.
// The first value that differs stops the replay (so every slot it reads
// lies where the walk itself would have read it, the earlier values being
// the walk's), and the walk runs. About 7 instructions a frame, where the
// walk takes about 54 (`walk` inclusive, c_tests/prof_depth.c: 67 before
// prof19j) and the rule table's lock.
//
// Only walks whose every row is *lasting* are kept (see "Unloaded objects" in `unwind`:
// their rows never change; others depend on the loader's count of unloads,
// which a walk reads).
//
// Each thread owns a group of `MEMO_GROUP` memos (two sets of two ways, a
// set per hash of where the walk starts: `memo_take`), claimed at its first sample from a bitmap
// (`MEMO_OWNED`) and given back by a pthread key's destructor when the
// thread exits: a sample uses its memo with no atomic operation, and no
// thread evicts another's walks. (They were 64 slots shared by all
// threads, hashed by stack pointer, each taken and given back by an atomic
// swap and a store a sample: the swap held 7% of `counted_due_in`'s
// samples in `perf` on `bench/mthreads 1`, as it waited for the stores
// before it; without it, the time measured is the same within this
// machine's noise: the next atomic operation waits for them instead.) A
// thread that finds every group taken (more than `MEMO_SLOTS /
// MEMO_GROUP` threads sampling) walks without a memo, and tries again at
// its next sample.

/// Slots of the memo table: `MEMO_SLOTS / MEMO_GROUP` groups, one per
/// thread that samples (a bit of `MEMO_OWNED` each).
pub(super) const MEMO_SLOTS: usize = 256;
/// Memos a thread owns (a slot per hash of where a walk starts).
pub(super) const MEMO_GROUP: usize = 4;
const _: () = assert!(MEMO_SLOTS / MEMO_GROUP == SHARDS && MEMO_GROUP.is_power_of_two());
/// `ThreadState::memo` of a thread that takes no group (it is exiting).
pub(super) const NO_MEMO: usize = 1;
/// Checks a memo holds: a return address and at most one `%rbp` a frame.
const MEMO_CHECKS: usize = 2 * RAW_FRAMES;

/// A memoized walk (see above). `ip == 0`: empty.
#[repr(C)]
pub(super) struct Memo {
    /// Where the walk started: the sampling function's address and stack
    /// pointer; its `%rbp`, if the walk used it (`use_rbp`).
    pub(super) ip: usize,
    sp: usize,
    rbp: usize,
    use_rbp: bool,
    /// While a walk fills it: false once it used a row that is not lasting.
    lasting: bool,
    /// In a set's first way: its second way was used last (`memo_other`).
    pub(super) last1: bool,
    /// The stack (index + 1 in `STACKS`; 0: not known) its frames
    /// were filed as. (The stacks are emptied only in a fork child, which
    /// empties the memos too.)
    pub(super) stack: usize,
    /// Frames found (`out[..n]`, `out[0]` being `ip`), and the checks.
    n: usize,
    nchecks: usize,
    frames: [usize; RAW_FRAMES],
    checks: [[usize; 2]; MEMO_CHECKS],
}

/// The memo table: `MEMO_SLOTS` memos, mapped by `prime_unwinder` (null
/// before, or if it or `MEMO_KEY` could not be made: walks are not
/// memoized).
pub(super) static MEMOS: AtomicPtr<Memo> = AtomicPtr::new(null_mut());
/// The groups of `MEMOS` owned by a thread (bit `g`: group `g`).
pub(super) static MEMO_OWNED: AtomicU64 = AtomicU64::new(0);
/// The pthread key whose destructor gives an exiting thread's group back.
pub(super) static MEMO_KEY: AtomicU32 = AtomicU32::new(0);

/// The first of this thread's two memos that may hold a walk from address
/// `ip` and stack pointer `sp` (null: none): its group is two sets of two
/// ways, and `(ip, sp)` picks a set (both in the hash: the medium malloc's
/// two sampling functions start at the same stack pointer). The caller
/// replays the first way, then `memo_other` the second. Two ways, so that
/// two walks of one set do not evict each other at every sample: two call
/// sites of one function reach the sampling function with the same `ip`
/// and `sp` (their walks differ from the first return address on), and
/// two sampling functions (the medium cache's and the heap's) had one slot
/// one thread in four: with one way, `bench/mthreads 4 5e4 64 64k 1M u`
/// walked at 24% of its samples, `mthreads 8 2e4 16 256k 64M s` at 14%.
#[inline(always)]
pub(super) fn memo_take(ip: usize, sp: usize) -> *mut Memo {
    // SAFETY: this thread's own state.
    let mut g = unsafe { (*thread_state()).memo };
    if g <= NO_MEMO {
        g = memo_claim();
        if g <= NO_MEMO {
            return null_mut();
        }
    }
    let set = (((sp ^ ip << 8) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 63) as usize;
    const _: () = assert!(MEMO_GROUP == 2 * 2);
    // SAFETY: `g` is this thread's group, `MEMO_GROUP` memos.
    unsafe { (g as *mut Memo).add(2 * set) }
}

/// After the replay of the first way `m` of a set (`memo_take`) failed:
/// the frames of the walk from (`ip`, `sp`, `rbp`) into `out` if the
/// second way holds it (see `memo_replay`), and that memo; else None and
/// the memo to keep the new walk in, emptied: an empty way, else the one
/// used least recently (`last1`, which the caller clears when the first
/// way replays). Inlined, but with nothing the first way's replay keeps:
/// the second way's address, computed before it, cost a sample 12
/// instructions of spills there (`bench/pair 100000 20000`). (A victim
/// chosen without the recency, the second way unless the first was empty,
/// walked at 12% of `mthreads 4 5e4 64 64k 1M u`'s samples: a third walk
/// in a set then evicts the one used most.)
///
/// # Safety
/// `m` is the first way of a set of this thread's group (`memo_take`).
#[inline(always)]
pub(super) unsafe fn memo_other(
    m: *mut Memo,
    out: &mut [MaybeUninit<usize>],
    ip: usize,
    sp: usize,
    rbp: usize,
    known: bool,
) -> (Option<usize>, *mut Memo) {
    let m1 = m.add(1);
    if let Some(n) = memo_replay(&*m1, out, ip, sp, rbp, known) {
        (*m).last1 = true;
        return (Some(n), m1);
    }
    let v = if (*m).ip == 0 || ((*m1).ip != 0 && (*m).last1) {
        m
    } else {
        m1
    };
    (*m).last1 = v == m1;
    (*v).ip = 0;
    (None, v)
}

/// Claims a group of memos for this thread (its first sample, or the
/// first since every group was found taken): the group's address, or 0
/// (none free: try again later) or `NO_MEMO`.
#[cold]
#[inline(never)]
fn memo_claim() -> usize {
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    let table = MEMOS.load(Ordering::Acquire);
    if t.memo == NO_MEMO || table.is_null() {
        return NO_MEMO;
    }
    let mut owned = MEMO_OWNED.load(Ordering::Relaxed);
    let g = loop {
        if owned == u64::MAX {
            return 0;
        }
        let g = (!owned).trailing_zeros() as usize;
        match MEMO_OWNED.compare_exchange_weak(
            owned,
            owned | 1 << g,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => break g,
            Err(now) => owned = now,
        }
    };
    // SAFETY: group `g` lies in the table; it is ours now (its bit): its
    // memos are emptied (a thread that owned it before left them).
    let m = unsafe { table.add(g * MEMO_GROUP) };
    for k in 0..MEMO_GROUP {
        // SAFETY: as above.
        unsafe {
            (*m.add(k)).ip = 0;
            (*m.add(k)).last1 = false;
        }
    }
    // The key's destructor gives it back at the thread's exit. (A key
    // below 32, as ours is unless the program made 30 before it, is set
    // with no allocation; above, glibc allocates its second level: the
    // allocation is served, not sampled, this thread being `busy`.)
    // SAFETY: the key was made by `prime_unwinder` (MEMOS is not null).
    if unsafe { libc::pthread_setspecific(MEMO_KEY.load(Ordering::Relaxed), m as *const _) } != 0 {
        MEMO_OWNED.fetch_and(!(1 << g), Ordering::Release);
        t.memo = NO_MEMO;
        return NO_MEMO;
    }
    t.memo = m as usize;
    // (Its samples go to the group's shard: one per thread that samples.)
    t.shard = g + 1;
    t.memo
}

/// The key's destructor: an exiting thread gives its group of memos back
/// (and takes none again, should it still sample).
pub(super) unsafe extern "C" fn memo_thread_exit(group: *mut libc::c_void) {
    // SAFETY: this thread's own state.
    unsafe { (*thread_state()).memo = NO_MEMO };
    let table = MEMOS.load(Ordering::Relaxed) as usize;
    let g = (group as usize - table) / (MEMO_GROUP * core::mem::size_of::<Memo>());
    MEMO_OWNED.fetch_and(!(1 << g), Ordering::Release);
}

/// The frames of a walk from (`ip`, `sp`, `rbp`) into `out`, if `m` holds
/// it and every value it read is unchanged; None otherwise. With `known`,
/// when `m` knows their stack (`stack`), none is written: 0.
///
/// # Safety
/// `m` is a memo of this thread's group.
#[inline(always)]
pub(super) unsafe fn memo_replay(
    m: &Memo,
    out: &mut [MaybeUninit<usize>],
    ip: usize,
    sp: usize,
    rbp: usize,
    known: bool,
) -> Option<usize> {
    if m.ip != ip || m.sp != sp || (m.use_rbp && m.rbp != rbp) {
        return None;
    }
    // (No bounds test of the checks, nor of the frames before the sample
    // that knows its stack returns: 5 instructions a replay.)
    debug_assert!(m.nchecks <= MEMO_CHECKS);
    // SAFETY: a kept memo (`ip` not 0) holds at most `MEMO_CHECKS` checks
    // (`memo_keep`), and only this thread writes it.
    for c in m.checks.get_unchecked(..m.nchecks) {
        // SAFETY: a stack slot the walk read, at an address computed from
        // the values checked before it, all unchanged: where the walk would
        // read it now.
        if *(c[0] as *const usize) != c[1] {
            return None;
        }
    }
    if known && m.stack != 0 {
        // (The sample takes the stack from the memo: the frames' copy, and
        // the allocator's own frames skipped, about 40 instructions a
        // sample, are not needed.)
        return Some(0);
    }
    if m.n > out.len() {
        return None;
    }
    for (o, &f) in out[1..m.n].iter_mut().zip(&m.frames[1..m.n]) {
        o.write(f);
    }
    Some(m.n)
}

/// Keeps the walk that found `out[..n]` from (`ip`, `sp`, `rbp`) in `m`,
/// whose checks it filled, if every row it used was lasting.
///
/// # Safety
/// `m` is a memo of this thread's group; `out[..n]` were written.
pub(super) unsafe fn memo_keep(
    m: &mut Memo,
    out: &[MaybeUninit<usize>],
    n: usize,
    ip: usize,
    sp: usize,
    rbp: usize,
) {
    if !m.lasting || m.nchecks > MEMO_CHECKS {
        return;
    }
    for (f, o) in m.frames[1..n].iter_mut().zip(&out[1..n]) {
        *f = o.assume_init();
    }
    m.stack = 0;
    m.n = n;
    m.sp = sp;
    m.rbp = rbp;
    m.ip = ip;
}

/// May a frame whose stack pointer is `sp` (8-aligned) have its CFA at
/// `cfa`: above `sp`, within 1 GiB of it, 8-aligned? One test: the
/// difference less 8 is then a multiple of 8 from 0 to 2^30 - 8; rotated
/// right by 3 bits, any other value (negative, or not aligned) is above
/// 2^27 - 1.
#[inline(always)]
fn frame_ok(sp: usize, cfa: usize) -> bool {
    cfa.wrapping_sub(sp).wrapping_sub(8).rotate_right(3) <= ((1 << 30) - 8) >> 3
}

/// `unwind` from its own frame (`ip`, `sp`, `rbp`), with `RULE_LOCK` held.
/// Fills the checks of memo `m` (null: none) as it goes (see "the walks'
/// memo").
///
/// The memo's fields are kept in locals during the walk and written once
/// at its end (its checks go through a pointer that the loop moves on;
/// without a memo, into a scratch array of the walk's own): the loop then
/// neither tests the memo for null nor reloads its count at each frame,
/// nor tests the count against the array's bounds (at most two checks a
/// frame and `RAW_FRAMES` frames: `MEMO_CHECKS`). About 12 instructions a
/// frame fewer than with the memo's fields written in the loop (65 ->
/// 53 a frame, `walk` inclusive).
pub(super) fn walk(
    out: &mut [MaybeUninit<usize>],
    mut ip: usize,
    mut sp: usize,
    mut rbp: usize,
    m: *mut Memo,
) -> Result<usize, Stop> {
    // Where the current `%rbp` was read from (0: it is the starting one).
    let mut rbp_slot = 0usize;
    // Without a memo, the checks go to a scratch array, never read.
    let mut scratch = [const { MaybeUninit::<[usize; 2]>::uninit() }; MEMO_CHECKS];
    let checks: *mut [usize; 2] = if m.is_null() {
        scratch.as_mut_ptr() as *mut [usize; 2]
    } else {
        // SAFETY: a memo of this thread's group.
        unsafe { (*m).checks.as_mut_ptr() }
    };
    let mut nchecks = 0usize;
    let mut use_rbp = false;
    // The rows' `W_LASTING` bits, and-ed: the walk's rows were all lasting.
    let mut lasting = W_LASTING;
    let mut n = 1;
    // The first address is where `unwind`'s frame is; the others are
    // return addresses, whose row is the call's (one byte before).
    let mut at = ip;
    // `W_LASTING` once the count of unloads was read during this walk (on a
    // miss, or before the first row that is not lasting was used), so that
    // `w | checked` has the bit when the row may be used.
    let mut checked = 0;
    let t = RULES.load(Ordering::Acquire);
    // (At most `RAW_FRAMES` frames: the checks' bound.)
    let limit = out.len().min(RAW_FRAMES);
    let r = loop {
        if n >= limit {
            break Ok(n);
        }
        let slot = rule_slot(at);
        // SAFETY: the slot lies in the table, read under RULE_LOCK (a pair
        // is written and emptied under it: a key that matches has its rule).
        let e = unsafe { *t.add(slot) };
        let w = if e[0] == at {
            e[1]
        } else {
            checked = W_LASTING;
            match rule_miss(at, slot) {
                Ok(w) => w,
                Err(s) => break Err(s),
            }
        };
        if (w | checked) & W_LASTING == 0 {
            if let Err(s) = check_unloads() {
                break Err(s);
            }
            checked = W_LASTING;
            // (Looked up again: the table may have been emptied by another
            // thread while RULE_LOCK was released.)
            continue;
        }
        lasting &= w;
        if w & W_END != 0 {
            break Ok(n);
        }
        let cfa = if w & W_CFA_RBP != 0 {
            if rbp_slot == 0 {
                use_rbp = true;
            } else {
                // SAFETY: `nchecks` is below `MEMO_CHECKS`: at most two
                // checks an iteration that adds a frame or ends the walk,
                // and at most `limit` (`RAW_FRAMES`) of those.
                unsafe { *checks.add(nchecks) = [rbp_slot, rbp] };
                nchecks += 1;
            }
            rbp
        } else {
            sp
        }
        .wrapping_add(w_cfa(w));
        if !frame_ok(sp, cfa) {
            break Err(Stop::Unhandled);
        }
        // SAFETY: the CFA lies above the stack pointer within the stack, and
        // the frame's CFI says where its caller's registers were saved;
        // `nchecks` as above.
        unsafe {
            let ra_slot = cfa.wrapping_add(w_ra(w));
            ip = *(ra_slot as *const usize);
            *checks.add(nchecks) = [ra_slot, ip];
            nchecks += 1;
            if w_rbp(w) != 0 {
                rbp_slot = cfa.wrapping_add(w_rbp(w));
                rbp = *(rbp_slot as *const usize);
            }
        }
        sp = cfa;
        if ip == 0 {
            break Ok(n);
        }
        out[n].write(ip);
        n += 1;
        at = ip - 1;
    };
    if !m.is_null() {
        // SAFETY: a memo of this thread's group.
        unsafe {
            (*m).nchecks = nchecks;
            (*m).use_rbp = use_rbp;
            (*m).lasting = lasting != 0;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `frame_ok` is the three tests it stands for.
    #[test]
    fn frame_test() {
        let sp = 0x7fff_0000_1000usize;
        for d in [
            0usize,
            1,
            7,
            8,
            9,
            16,
            24,
            4096,
            (1 << 30) - 8,
            (1 << 30) - 1,
            1 << 30,
            (1 << 30) + 8,
        ] {
            for cfa in [sp.wrapping_add(d), sp.wrapping_sub(d)] {
                let want = cfa > sp && cfa - sp <= 1 << 30 && cfa & 7 == 0;
                assert_eq!(frame_ok(sp, cfa), want, "cfa {:#x}", cfa);
            }
        }
    }
}
