//! The shards' live tables: a sample filed in its thread's shard (`file`,
//! `grow`), the stacks deduplicated (`find_stack`), the peak (`new_peak`,
//! `touch`) and a sampled block's free (`freed_here`, `remove`).

use super::*;

/// The shard thread `t` files its samples in: its group of memos' (see
/// `memo_claim`), else one taken in turn.
#[inline(always)]
pub(super) fn my_shard(t: &mut ThreadState) -> usize {
    if t.shard != 0 {
        return t.shard - 1;
    }
    assign_shard(t)
}

/// `my_shard` for a thread that has none yet (no group of memos: the
/// unwinder or the memos are missing, or more than 64 threads sample).
#[cold]
#[inline(never)]
fn assign_shard(t: &mut ThreadState) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let k = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    t.shard = k + 1;
    k
}

fn hash_frames(frames: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &f in frames {
        h = (h ^ f as u64).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h ^ frames.len() as u64
}

/// The first slot of address `a` in a table of `1 << (64 - shift)` slots:
/// the top bits of a multiplicative hash.
#[inline]
fn slot_of(a: usize, shift: u32) -> usize {
    ((a as u64 >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
}

/// Files a sample of weight `w` for block `addr`, of stack `s` (index +
/// 1; 0: none, the stacks are full), in shard `sh` (its lock held, `p`
/// its part). Inlined into the sample when the shard has room (no call, no
/// frame); `file_slow` otherwise.
///
/// # Safety
/// `sh`'s lock is held and `p` is its part; `s` is 0 or a stack's index + 1.
#[inline(always)]
pub(super) unsafe fn file(sh: &Shard, p: &mut Part, tot: &Totals, addr: usize, w: u64, s: usize) {
    let n = sh.nsamples.load(Ordering::Relaxed);
    if s == 0 || n >= p.room {
        return file_slow(sh, p, tot, addr, w, s);
    }
    p.alloc_total += w;
    p.sample_count += 1;
    (*p.figs.add(s - 1)).alloc_bytes += w;
    file_live(sh, p, tot, addr, w, s - 1);
}

/// `file`, every case: the shard's first sample maps its tables.
///
/// # Safety
/// As `file`.
#[inline(never)]
unsafe fn file_slow(sh: &Shard, p: &mut Part, tot: &Totals, addr: usize, w: u64, s: usize) {
    if p.samples.is_null() {
        let _e = crate::os::ErrnoGuard::new();
        if !p.map() {
            UNMAPPED_DROPS.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let k = (sh as *const Shard).offset_from(SHARD.as_ptr());
        if (0..SHARDS as isize).contains(&k) {
            MAPPED.fetch_or(1 << k, Ordering::Release);
        }
    }
    p.alloc_total += w;
    p.sample_count += 1;
    if s == 0 {
        p.dropped += 1;
        return;
    }
    (*p.figs.add(s - 1)).alloc_bytes += w;
    let n = sh.nsamples.load(Ordering::Relaxed);
    if n >= SAMPLE_CAP {
        p.dropped += 1;
        return;
    }
    if 2 * (n + 1) > p.slots {
        grow(p);
    }
    file_live(sh, p, tot, addr, w, s - 1);
}

/// Files live sample `addr` of weight `w` and stack `s` in shard `sh`, whose
/// table has room for it; adds `w` to the live total.
///
/// # Safety
/// As `file`; `p`'s tables are mapped, `s` is a stack's index,
/// `2 * (nsamples + 1) <= p.slots`.
#[inline(always)]
unsafe fn file_live(sh: &Shard, p: &mut Part, tot: &Totals, addr: usize, w: u64, s: usize) {
    let mask = p.slots - 1;
    let mut i = slot_of(addr, p.shift);
    let mut n = sh.nsamples.load(Ordering::Relaxed);
    loop {
        let e = &mut *p.samples.add(i);
        if e.addr == 0 || e.addr == addr {
            if e.addr == addr {
                // A stale entry (a block freed unseen): replace it.
                (*touch(p, tot, e.stack)).live_bytes -= e.weight;
                tot.live.fetch_sub(e.weight, Ordering::Relaxed);
                n -= 1;
            }
            *e = Sample {
                addr,
                weight: w,
                stack: s,
            };
            break;
        }
        i = (i + 1) & mask;
    }
    sh.nsamples.store(n + 1, Ordering::Relaxed);
    // (The stack's figures before the live total: a peak that this sample
    // records counts it, see "The peak".)
    (*touch(p, tot, s)).live_bytes += w;
    let live = tot.live.fetch_add(w, Ordering::Relaxed) + w;
    if live >= tot.next.load(Ordering::Relaxed) {
        new_peak(tot, live);
    }
}

/// The live total reached `live`, past the threshold of the next peak:
/// records a peak (every stack's peak bytes are now its live bytes:
/// `touch` copies them when a stack next changes, `peak_of` reads them
/// meanwhile), and sets the next threshold `1 / 2^PEAK_SHIFT` above.
#[cold]
#[inline(never)]
fn new_peak(tot: &Totals, live: u64) {
    let mut next = tot.next.load(Ordering::Relaxed);
    while live >= next {
        match tot.next.compare_exchange_weak(
            next,
            live + (live >> PEAK_SHIFT) + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                tot.peak.total.fetch_max(live, Ordering::Relaxed);
                tot.peak.epoch.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(now) => next = now,
        }
    }
}

/// Doubles the live samples' table (under its shard's lock): its entries
/// go to the spare area, which becomes the table. O(slots), once per
/// doubling.
///
/// # Safety
/// `p`'s tables are mapped and held under its shard's lock; `p.slots <
/// SAMPLE_SLOTS` (true while the shard holds fewer than `SAMPLE_CAP`).
unsafe fn grow(p: &mut Part) {
    let (old, slots) = (p.samples, p.slots);
    let (new, shift) = (p.spare, p.shift - 1);
    let mask = 2 * slots - 1;
    core::ptr::write_bytes(new, 0, 2 * slots);
    for k in 0..slots {
        let e = *old.add(k);
        if e.addr != 0 {
            let mut i = slot_of(e.addr, shift);
            while (*new.add(i)).addr != 0 {
                i = (i + 1) & mask;
            }
            *new.add(i) = e;
        }
    }
    p.samples = new;
    p.spare = old;
    p.slots = 2 * slots;
    p.room = slots;
    p.shift = shift;
}

/// Stack `s`'s figures in part `p`, about to have their live bytes changed:
/// if they have not changed since the latest peak, they are its bytes at
/// that peak, kept first. (The peak thus costs one test per change, not a
/// copy of every stack at each new peak.)
///
/// # Safety
/// `p`'s tables are mapped and held under its shard's lock; `s` is a
/// stack's index.
#[inline(always)]
unsafe fn touch(p: &Part, tot: &Totals, s: usize) -> *mut Fig {
    let f = &mut *p.figs.add(s);
    let epoch = tot.peak.epoch.load(Ordering::Relaxed);
    if f.peak_seen != epoch {
        f.peak_bytes = f.live_bytes;
        f.peak_seen = epoch;
    }
    f as *mut Fig
}

/// Figures `f`'s live bytes at the peak of number `epoch`.
pub(super) fn peak_of(f: &Fig, epoch: u64) -> u64 {
    if f.peak_seen == epoch {
        f.peak_bytes
    } else {
        f.live_bytes
    }
}

/// The index + 1 of the stack of `frames`, added if new; 0 when the table
/// is full. Looked up without a lock (a bucket is written once, with
/// release ordering, after its stack); added under `STACK_LOCK`, which is
/// never held with a shard's lock.
pub(super) fn find_stack(frames: &[usize]) -> usize {
    let (stacks, index) = (
        STACKS.load(Ordering::Acquire),
        INDEX.load(Ordering::Relaxed),
    );
    if stacks.is_null() {
        return 0;
    }
    let h = hash_frames(frames);
    let mask = INDEX_CAP - 1;
    let mut i = h as usize & mask;
    let mut locked = false;
    loop {
        // SAFETY: `i` is a bucket of the index (mapped by `prime`).
        let e = unsafe { (*index.add(i)).load(Ordering::Acquire) };
        if e == 0 {
            if locked {
                break;
            }
            // (This bucket again, under the lock: another thread may have
            // just filled it.)
            STACK_LOCK.lock();
            locked = true;
            continue;
        }
        // SAFETY: a bucket's stack was written before the bucket.
        let s = unsafe { &*stacks.add(e as usize - 1) };
        if s.hash == h && s.depth == frames.len() && &s.frames[..s.depth] == frames {
            if locked {
                STACK_LOCK.unlock();
            }
            return e as usize;
        }
        i = (i + 1) & mask;
    }
    let k = NSTACKS.load(Ordering::Relaxed);
    if k >= STACK_CAP {
        STACK_LOCK.unlock();
        return 0;
    }
    // SAFETY: stack `k` is not in use yet, written under STACK_LOCK.
    unsafe {
        let s = &mut *stacks.add(k);
        s.hash = h;
        s.depth = frames.len();
        s.frames[..frames.len()].copy_from_slice(frames);
        NSTACKS.store(k + 1, Ordering::Release);
        (*index.add(i)).store(k as u32 + 1, Ordering::Release);
    }
    STACK_LOCK.unlock();
    k + 1
}

/// The block at user address `p`, marked sampled, is being freed (or
/// moved): drops its sample (none, if a table was full when it was taken,
/// or in a fork child for a block its parent sampled). Looked for in this
/// thread's shard first, where its sample is unless another thread took it;
/// then in the other shards that hold samples (`freed_elsewhere`).
#[inline(always)]
pub fn freed_here(p: *mut u8) {
    // SAFETY: this thread's own state.
    let own = unsafe { (*thread_state()).shard };
    if own != 0 {
        // (No test of its count first: its own samples are there, as a
        // rule.)
        let sh = &SHARD[(own - 1) & (SHARDS - 1)];
        let _g = sh.lock.guard();
        // SAFETY: the shard's part is only touched under its lock.
        if unsafe { remove(sh, &mut *sh.part.get(), &TOTALS, p as usize) } {
            return;
        }
    }
    freed_elsewhere(p as usize, own)
}

/// `freed_here` for a sample not in this thread's shard (`own` - 1; 0:
/// none): each other shard with a table and a sample is looked at, under
/// its lock. (A shard whose count of samples reads 0 cannot hold it: the
/// sample was filed before the block reached the program, so before this
/// free, which reads a count at least as recent.)
#[cold]
#[inline(never)]
fn freed_elsewhere(addr: usize, own: usize) {
    let mut m = MAPPED.load(Ordering::Acquire);
    if own != 0 {
        m &= !(1 << (own - 1));
    }
    while m != 0 {
        let k = m.trailing_zeros() as usize;
        m &= m - 1;
        if remove_in(k, addr) {
            return;
        }
    }
}

/// Drops the sample of block `addr` from shard `k`, if it is there.
fn remove_in(k: usize, addr: usize) -> bool {
    let sh = &SHARD[k];
    if sh.nsamples.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let _g = sh.lock.guard();
    // SAFETY: the shard's part is only touched under its lock.
    unsafe { remove(sh, &mut *sh.part.get(), &TOTALS, addr) }
}

/// Drops the sample of block `addr` from shard `sh` (its lock held, `p` its
/// part), if it is there: whether it was.
///
/// # Safety
/// `sh`'s lock is held and `p` is its part.
#[inline(always)]
unsafe fn remove(sh: &Shard, p: &mut Part, tot: &Totals, addr: usize) -> bool {
    if p.samples.is_null() {
        return false;
    }
    let mask = p.slots - 1;
    let mut i = slot_of(addr, p.shift);
    // (The probe and the shift below read a slot's address alone, and
    // copy a slot only when it moves: read whole, each slot went through
    // the stack.)
    loop {
        let a = (*p.samples.add(i)).addr;
        if a == addr {
            break;
        }
        if a == 0 {
            return false;
        }
        i = (i + 1) & mask;
    }
    let e = &*p.samples.add(i);
    let (w, s) = (e.weight, e.stack);
    (*touch(p, tot, s)).live_bytes -= w;
    tot.live.fetch_sub(w, Ordering::Relaxed);
    sh.nsamples
        .store(sh.nsamples.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
    // Backward-shift deletion (linear probing keeps no tombstones).
    let mut hole = i;
    let mut j = (i + 1) & mask;
    loop {
        let a = (*p.samples.add(j)).addr;
        if a == 0 {
            break;
        }
        let home = slot_of(a, p.shift);
        // The slot may fill the hole unless its home lies in (hole, j].
        if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
            *p.samples.add(hole) = *p.samples.add(j);
            hole = j;
        }
        j = (j + 1) & mask;
    }
    (*p.samples.add(hole)).addr = 0;
    true
}

#[cfg(test)]
mod tests {
    use super::super::report::AllLocked;
    use super::super::sampling::weight;
    use super::*;

    /// The lazy peak (`touch`, `peak_of`) against a model that copies every
    /// stack's live bytes at each recorded peak (whenever the total passes
    /// the previous one by more than `1 / 2^PEAK_SHIFT`), on two shards and
    /// totals of its own with many stacks, samples made in either shard and
    /// freed at random.
    #[test]
    fn peak_per_stack_against_a_model() {
        configure(true, 4096, null_mut());
        prime();
        let shards = [Shard::new(), Shard::new()];
        let tot = Totals::new();
        const NS: usize = 300;
        let (mut live, mut peak) = ([0u64; NS], [0u64; NS]);
        let mut ids = [0usize; NS];
        let mut blocks: Vec<(usize, usize, u64, usize)> = Vec::new();
        let (mut total, mut top, mut next) = (0u64, 0u64, 0u64);
        let mut x: u64 = 0x9abc_def1_2345_6789;
        let base = 0x6000_0000_0000usize;
        for i in 0..100_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Growing phases (new peaks often) and shrinking ones.
            let grow = (i / 5000) % 2 == 0;
            if !blocks.is_empty() && (x % 100 < if grow { 30 } else { 70 }) {
                let (a, s, w, k) = blocks.swap_remove((x >> 8) as usize % blocks.len());
                let sh = &shards[k];
                // SAFETY: the shard is this test's, used by this thread only.
                assert!(unsafe { remove(sh, &mut *sh.part.get(), &tot, a) });
                live[s] -= w;
                total -= w;
            } else {
                let s = (x >> 16) as usize % NS;
                let w = 1 + (x >> 32) % 10_000;
                let a = base + i * 16;
                let k = (x >> 48) as usize & 1;
                if ids[s] == 0 {
                    ids[s] = find_stack(&[0x1000 + s, 0x2000, 0x3000 + s % 7]);
                }
                let sh = &shards[k];
                // SAFETY: as above.
                unsafe { file(sh, &mut *sh.part.get(), &tot, a, w, ids[s]) };
                blocks.push((a, s, w, k));
                live[s] += w;
                total += w;
                if total >= next {
                    next = total + (total >> PEAK_SHIFT) + 1;
                    top = total;
                    peak = live;
                }
            }
        }
        assert_eq!(tot.live.load(Ordering::Relaxed), total);
        assert_eq!(tot.peak.total.load(Ordering::Relaxed), top);
        let epoch = tot.peak.epoch.load(Ordering::Relaxed);
        for s in 0..NS {
            let (mut l, mut p) = (0, 0);
            for sh in &shards {
                // SAFETY: as above; ids[s] is a stack's index + 1.
                let f = unsafe { &*(*sh.part.get()).figs.add(ids[s] - 1) };
                l += f.live_bytes;
                p += peak_of(f, epoch);
            }
            assert_eq!(l, live[s], "stack {}", s);
            assert_eq!(p, peak[s], "stack {}", s);
        }
        for (a, _, _, k) in blocks {
            let sh = &shards[k];
            // SAFETY: as above.
            unsafe { remove(sh, &mut *sh.part.get(), &tot, a) };
        }
        assert_eq!(tot.live.load(Ordering::Relaxed), 0);
    }

    /// Every live sample of the process's shards: address -> weight; and
    /// the shards' count of samples.
    fn live_samples() -> (std::collections::HashMap<usize, u64>, usize) {
        let _g = AllLocked::new();
        let (mut got, mut n) = (std::collections::HashMap::new(), 0);
        for (k, sh) in SHARD.iter().enumerate() {
            n += sh.nsamples.load(Ordering::Relaxed);
            // SAFETY: read under the shard's lock.
            let p = unsafe { &*sh.part.get() };
            if p.samples.is_null() {
                continue;
            }
            assert!(MAPPED.load(Ordering::Relaxed) & 1 << k != 0);
            assert!(p.slots <= SAMPLE_SLOTS);
            for i in 0..p.slots {
                // SAFETY: i < slots.
                let e = unsafe { *p.samples.add(i) };
                if e.addr != 0 {
                    assert!(
                        got.insert(e.addr, e.weight).is_none(),
                        "{:#x} twice",
                        e.addr
                    );
                }
            }
        }
        (got, n)
    }

    /// The sample tables against a model: random records and frees (many
    /// colliding in the probe sequences), then every live address is found
    /// and every freed one is gone; the live total matches. Then samples
    /// taken by two threads, one of which has exited, freed by this one
    /// (another shard's): none is lost or counted twice.
    #[test]
    fn samples_against_a_model() {
        configure(true, 4096, null_mut());
        prime();
        assert!(READY.load(Ordering::Relaxed));
        let mut live: std::collections::HashMap<usize, u64> = Default::default();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = 0x7000_0000_0000usize;
        for _ in 0..200_000 {
            let r = next();
            // Addresses from a small range: frequent reuse and collisions.
            let a = base + ((r as usize >> 8) % 60_000) * 16;
            if r & 1 == 0 || live.len() > 40_000 {
                // (Freeing an address never sampled has no effect.)
                live.remove(&a);
                freed_here(a as *mut u8);
            } else if let std::collections::hash_map::Entry::Vacant(v) = live.entry(a) {
                let n = 1 + (r as usize >> 40) % 5000;
                record(a as *mut u8, n);
                v.insert(weight(n));
            }
        }
        let (got, n) = live_samples();
        assert_eq!(n, live.len());
        assert_eq!(got, live);
        assert_eq!(
            TOTALS.live.load(Ordering::Relaxed),
            live.values().sum::<u64>()
        );
        // (The recorded peak: within 1 / 2^PEAK_SHIFT of the live total.)
        let peak = TOTALS.peak.total.load(Ordering::Relaxed);
        assert!(peak + (peak >> PEAK_SHIFT) >= TOTALS.live.load(Ordering::Relaxed));
        // Two threads' samples: one exits, the other waits; this thread
        // frees both's (neither in its own shard).
        let take = |from: usize| {
            (0..5000usize)
                .map(|i| {
                    let a = 0x5000_0000_0000 + from * (1 << 30) + i * 64;
                    record(a as *mut u8, 1000 + i);
                    (a, weight(1000 + i))
                })
                .collect::<Vec<_>>()
        };
        let gone = std::thread::spawn(move || take(1)).join().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let waiting = std::thread::spawn(move || {
            tx.send(take(2)).unwrap();
            done_rx.recv().unwrap();
        });
        let other = rx.recv().unwrap();
        let (got, _) = live_samples();
        for (a, w) in gone.iter().chain(&other) {
            assert_eq!(got.get(a), Some(w), "{:#x}", a);
        }
        let before = TOTALS.live.load(Ordering::Relaxed);
        let all: u64 = gone.iter().chain(&other).map(|e| e.1).sum();
        for (a, _) in gone.iter().chain(&other) {
            freed_here(*a as *mut u8);
        }
        done_tx.send(()).unwrap();
        waiting.join().unwrap();
        assert_eq!(TOTALS.live.load(Ordering::Relaxed), before - all);
        let (got, n) = live_samples();
        assert_eq!(n, live.len());
        assert_eq!(got, live);
    }
}
