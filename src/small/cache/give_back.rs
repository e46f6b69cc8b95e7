//! Blocks leaving a bin back to their zones: runs of one zone in one go
//! (`give_back_all`), a full bin half spilled (`spill_bin`), all bins
//! drained (`drain_bins`); frees into another thread's zone, batched per
//! class (`Pending`) and pushed onto the zone's remote list (`push_remote`);
//! malloc_trim's and M_PERTURB's part for the calling thread
//! (`flush_all_pending`, `leave_fast_path`).

use super::*;

/// Asks the processor for the cache line of `p`, for writing soon (a
/// hint: no fault, no change to memory, whatever `p` is): a zone's header
/// line before a spill, a block whose mark `settle` reads and writes.
/// (`mcache` uses it too.)
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes no memory.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_ET0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks for the lines of each zone of blocks `xs` that `give_back_all`
/// reads and writes (once a run of one zone): its header's owner line (in
/// the zone map's room) and its zone-map entry (the owner test).
#[inline(never)]
fn prefetch_zones(xs: &[*mut Block]) {
    let mut last = 0;
    for &x in xs {
        let g = x as usize & !(ZONE_SIZE - 1);
        if g != last {
            last = g;
            // (Address arithmetic only: nothing is read but the map's
            // first level.)
            let e = zonemap::entry_in_ours(g as *const u8);
            let z = zonemap::room_of(e, g as *const u8) as *const u8;
            prefetch(z.wrapping_add(core::mem::offset_of!(Zone, free)));
            prefetch(e as *const u8);
        }
    }
}

/// Gives blocks `xs` of class `cls`, leaving `tc`'s bin, back to their
/// zones: at once to a zone of `tc`'s, else through the zone's remote list
/// (batched in `tc`'s pending list). A run of blocks of one zone goes in
/// one go: one owner test, the run linked onto the zone's free list and
/// `used` lowered once, or linked onto the pending batch. Blocks freed one
/// after another were mostly allocated one after another, from one zone: a
/// block after a run's first costs 12 instructions, where each went back on
/// its own for about 40. A run of one block (a spill of blocks freed at
/// random) costs about 34: its zone is found with no check (a block of a
/// bin lies in a zone of ours) and the list key is read once a spill
/// (`c_tests/spills.sh`: 152.6 -> 126.2 instructions a free in spills,
/// rust18j).
///
/// # Safety
/// `tc` is this thread's live cache; `xs` are free blocks (marked free) of
/// live zones of `cls`, counted as used by them, and not in any bin or
/// list; `xs` is not in `*tc`.
pub(super) unsafe fn give_back_all(tc: *mut Cache, cls: usize, xs: &[*mut Block]) {
    // The zones' lines that the runs read and write, asked for at once: in
    // a program that frees at random, the blocks of a spill lie in as many
    // zones, whose headers are mostly cold (a cache and a TLB miss each),
    // and the loop below would take those misses one after another. (Not
    // when the first and last blocks share a zone, as a burst's do: the
    // pass cost `c_tests/bursts.sh` 8 instructions a pair.)
    if spread(xs) {
        prefetch_zones(xs);
    }
    give_back_runs(tc, cls, xs)
}

/// Do the first and last of blocks `xs` lie in different zones (false for
/// none)?
#[inline(always)]
fn spread(xs: &[*mut Block]) -> bool {
    match (xs.first(), xs.last()) {
        (Some(&a), Some(&b)) => (a as usize ^ b as usize) >= ZONE_SIZE,
        _ => false,
    }
}

/// [`give_back_all`] with no prefetch.
///
/// # Safety
/// As [`give_back_all`].
unsafe fn give_back_runs(tc: *mut Cache, cls: usize, xs: &[*mut Block]) {
    // (The key read once: the stores to the blocks below may alias it, for
    // the compiler, which reloaded it three times a run.)
    let key = crate::guard::list_key();
    let len = xs.len();
    // All of one zone (a burst's spill: blocks freed in the order they
    // were allocated): linked with no test of each block's zone. (The
    // test, an or of each block's xor with the first, is a pass the
    // compiler vectorises: 4 instructions a block fewer, c_tests/bursts.sh.)
    if let Some(&x) = xs.first() {
        if !spread(xs) && xs.iter().fold(0, |a, &y| a | (y as usize ^ x as usize)) < ZONE_SIZE {
            let mut head = x;
            for &y in xs.get_unchecked(1..) {
                (*y).next = (head as usize ^ y as usize ^ key) as *mut Block;
                head = y;
            }
            return run_back(tc, cls, key, x, head, len as u32);
        }
    }
    let mut i = 0;
    while i < len {
        // SAFETY (the slots): i < len, and below j < len.
        let x = *xs.get_unchecked(i);
        // The run: x and the blocks after it in the same granule, each
        // linked onto the one before it.
        let mut head = x;
        let mut j = i + 1;
        while j < len {
            let y = *xs.get_unchecked(j);
            if (y as usize ^ x as usize) >= ZONE_SIZE {
                break;
            }
            (*y).next = (head as usize ^ y as usize ^ key) as *mut Block;
            head = y;
            j += 1;
        }
        let n = (j - i) as u32;
        i = j;
        run_back(tc, cls, key, x, head, n);
    }
}

/// Gives back a run of [`give_back_runs`]: `n` blocks of one zone, from
/// `head` linked (with `key`) each onto the one before it, down to `x`.
///
/// # Safety
/// As [`give_back_all`], for the run's blocks.
#[inline(always)]
unsafe fn run_back(
    tc: *mut Cache,
    cls: usize,
    key: usize,
    x: *mut Block,
    head: *mut Block,
    n: u32,
) {
    // (Address arithmetic but the map's first level: a block of a bin
    // lies in a zone of ours, whose leaf exists.)
    let e = zonemap::entry_in_ours(x as *const u8);
    let z = zonemap::room_of(e, x as *const u8) as *mut Zone;
    if (*e).owner.load(Ordering::Relaxed) != tc as usize {
        // Another thread's zone: the run to its pending batch.
        return remote_run(tc, cls, z, head, x, n);
    }
    // Onto the zone's free list.
    let old = (*z).free;
    (*x).next = (old as usize ^ x as usize ^ key) as *mut Block;
    end_run(tc, cls, z, old, head, n);
}

/// Ends a run of `give_back_all`: `n` blocks linked from `head` onto `old`,
/// the free list of zone `z` (of class `cls`) when the run began.
///
/// # Safety
/// `z` is a live zone of `cls` of `tc`, this thread's cache, and the run's
/// blocks are free blocks of it, counted as used.
#[inline(always)]
unsafe fn end_run(
    tc: *mut Cache,
    cls: usize,
    z: *mut Zone,
    old: *mut Block,
    head: *mut Block,
    n: u32,
) {
    (*z).free = head;
    let used = (*z).used - n;
    (*z).used = used;
    // Only a zone that is not current changes lists (dry -> avail,
    // empty -> heap); the current zone never stops being current here.
    // (An empty zone may go back to the heap: no later block of the caller's
    // is in it, as each counts as used until its run comes.)
    if (*z).state != CURRENT && (is_end(old) || used == 0) {
        free_local_slow(tc, cls, z);
    }
}

/// The free half of the bin of `cls` is full: it becomes the alloc half,
/// the blocks of the alloc half go back to the zones, and `b` starts the
/// new free half.
///
/// So the alloc half is full after a spill, and the blocks given back are
/// the colder ones (freed before all of the free half's, or taken from the
/// zone). Giving back the free half's older half instead, as before, left
/// the alloc half as it was, often nearly empty: `bench/grid 1 1e6 16 128
/// cross 1000` (each block freed 1000 allocations after its malloc) took
/// 443k mispredicted branches, now 131k; `grid ... long 1000` 363k, now
/// 296k (callgrind, halves of 15 blocks for both).
///
/// Measured and not kept: a stash of 16-block magazines per class behind
/// the bins (a full bin's half copied there, an empty bin refilled from it
/// before the zone; 2 KiB of slots a cache, up to 64 KiB of blocks a
/// thread, a use-after-free check word in each stashed block) took
/// `bench/cxx_stl uptr` from 168 to 162 instructions an operation, but its
/// CPU time from 0.116 to 0.122 s (medians of 21 alternating runs): the
/// blocks a stash hands back are colder than a zone's, and the check reads
/// each of them once more.
#[cold]
#[inline(never)]
pub(super) unsafe fn spill_bin(b: *mut Block, cls: usize, tc: *mut Cache) {
    settle(tc);
    // The full free half becomes the alloc half, and the blocks of the old
    // alloc half (freed before any of them, or taken from the zone) go back
    // to the zones.
    let h = HALF[cls];
    let st = (*tc).bin_state[cls];
    let top = (st & BIN_TOP) as usize;
    let ab = top & !(h - 1);
    let fb = (*tc).free_top[cls] as usize + 1 - h;
    if top != ab {
        // (The alloc half's top is lowered first: a zone this empties
        // brings `free_local_slow` to `give_back_alloc_half`, which must
        // find the half empty.)
        (*tc).bin_state[cls] = (st & !BIN_TOP) | ab as u64;
        // (A copy, as the zones' slow paths take the cache as `&mut`; in
        // runs of a fixed length: a copy of `top - ab` slots was a call of
        // `memcpy`, whose branches on the length mispredicted about three
        // times a spill. The slots above `top` may never have been written:
        // only the first `top - ab` are read.)
        let k = top - ab;
        let mut xs = core::mem::MaybeUninit::<[*mut Block; WIDE_HALF]>::uninit();
        let (from, to) = (
            (*tc).bin.as_ptr().add(ab),
            xs.as_mut_ptr() as *mut *mut Block,
        );
        core::ptr::copy_nonoverlapping(from, to, BIN_CAP);
        if k > BIN_CAP {
            // (A wide half: its second run of slots.)
            core::ptr::copy_nonoverlapping(from.add(BIN_CAP), to.add(BIN_CAP), BIN_CAP);
        }
        let xs = core::slice::from_raw_parts(xs.as_ptr() as *const *mut Block, k);
        // (`give_back_all`'s prefetch.) Nothing of the class allocated
        // since its last spill (a burst of frees: a table dropped): the
        // alloc half is the one that spill left, whose first
        // `PREFETCH_NEXT` blocks' zones it asked for then. (Asked again,
        // they cost a drop at random 5 instructions a free:
        // `tests/rust_path.rs`, `random_drop_instructions`.)
        if spread(xs) {
            let asked = if alloc_sum(tc, cls) == (*tc).spilled[cls] {
                PREFETCH_NEXT
            } else {
                0
            };
            if asked < k {
                prefetch_zones(xs.get_unchecked(asked..));
            }
        }
        give_back_runs(tc, cls, xs);
    }
    (*tc).bin_state[cls] = ((*tc).bin_state[cls] & !BIN_TOP) | (fb + h - 1) as u64;
    // The zones of the blocks the next spill will give back, asked for now
    // (see `PREFETCH_NEXT`). (Not when its first and last share a zone,
    // as a burst's do.)
    let nx = core::slice::from_raw_parts((*tc).bin.as_ptr().add(fb), PREFETCH_NEXT);
    if (nx[0] as usize ^ nx[PREFETCH_NEXT - 1] as usize) >= ZONE_SIZE {
        prefetch_zones(nx);
    }
    (*tc).bin[ab] = b;
    (*tc).free_top[cls] = (ab + 1) as u64;
    (*tc).spilled[cls] = alloc_sum(tc, cls);
}

/// The blocks at the bottom of a new alloc half whose zones a spill asks
/// for (`prefetch_zones`), for the next spill of the class: the blocks
/// left in the alloc half then, which it gives back, are its bottom ones
/// (4.3 on average on the small latency workload), each mostly in a zone
/// of its own, whose header line and zone-map entry were not read since
/// the program freed the block. Without the prefetch, `give_back_all` of
/// one block took 190-280 cycles, with it 140-175; of 5-8 blocks 430-680
/// and 320-440 (an `rdtsc` probe, loaded machine; docs/performance.md,
/// "Spills' zones asked for early"). A full half of the small classes
/// holds 31 blocks, of the others 15.
const PREFETCH_NEXT: usize = 8;
const _: () = assert!(PREFETCH_NEXT < BIN_CAP);

/// Gives every block of `tc`'s bins back to the zones.
pub(super) unsafe fn drain_bins(tc: *mut Cache) {
    settle(tc);
    for (cls, h) in HALF.iter().enumerate() {
        let at = ((*tc).bin_state[cls] & BIN_TOP) as usize;
        let ft = (*tc).free_top[cls] as usize;
        let m = h - 1;
        let (ab, fb) = (at & !m, ft & !m);
        (*tc).bin_state[cls] = ((*tc).bin_state[cls] & !BIN_TOP) | ab as u64;
        (*tc).free_top[cls] = fb as u64;
        for (base, top) in [(ab, at), (fb, ft)] {
            let mut xs = [null_mut(); WIDE_HALF];
            xs[..top - base].copy_from_slice(&(&(*tc).bin)[base..top]);
            give_back_all(tc, cls, &xs[..top - base]);
        }
    }
}

/// Frees the chain `head..=tail` (links encoded) of `n` blocks of class
/// `cls` of another thread's zone `z`: onto this thread's pending batch of
/// the class if it is of `z` (a batch goes to its zone when it reaches
/// `PENDING_MAX` blocks), else the batch goes and the chain starts one.
///
/// # Safety
/// `tc` is this thread's live cache; the chain's blocks are free blocks of
/// zone `z` of `cls`, counted as used by it, in no bin or list.
#[inline(always)]
unsafe fn remote_run(
    tc: *mut Cache,
    cls: usize,
    z: *mut Zone,
    head: *mut Block,
    tail: *mut Block,
    n: u32,
) {
    let p = (*tc).pending.get_unchecked_mut(cls);
    if p.zone == z {
        (*tail).next = enc(p.head, tail);
        p.head = head;
        p.count += n;
        if p.count >= PENDING_MAX {
            flush_pending(p);
        }
        return;
    }
    new_pending(p, z, head, tail, n);
}

/// `remote_run` when the pending batch is of another zone (or there is
/// none): it goes, and the chain starts a new one.
#[cold]
#[inline(never)]
pub(super) unsafe fn new_pending(
    p: &mut Pending,
    z: *mut Zone,
    head: *mut Block,
    tail: *mut Block,
    n: u32,
) {
    if !p.zone.is_null() {
        flush_pending(p);
    }
    *p = Pending {
        zone: z,
        head,
        tail,
        count: n,
    };
}

/// A full pending batch goes to its zone, and block `b` of that zone (not
/// linked yet) starts the next one (see `free_foreign_here`). The zone
/// stays live meanwhile: `b` counts as used in it.
///
/// # Safety
/// `p` is a batch of this thread's live cache, of a zone; `b` a free block
/// of that zone, counted as used by it, in no bin or list.
#[cold]
#[inline(never)]
pub(super) unsafe fn flush_restart(p: &mut Pending, b: *mut Block) {
    push_remote(p.zone, p.head, p.tail, p.count);
    p.head = b;
    p.tail = b;
    p.count = 1;
}

/// Pushes a pending batch to its zone.
#[inline(never)]
pub(super) unsafe fn flush_pending(p: &mut Pending) {
    push_remote(p.zone, p.head, p.tail, p.count);
    p.zone = null_mut();
    p.head = null_mut();
}

/// `Zone::remote`'s word: the list's first block in the low
/// `REMOTE_SHIFT` bits (user addresses are below 2^47), its length above
/// them (at most a zone's capacity, 4084). 0: the list is empty.
pub(super) const REMOTE_SHIFT: u32 = 48;
const _: () = assert!(ZONE_SIZE / 16 < 1 << (64 - REMOTE_SHIFT));

/// The remote word of a list of `n` blocks from `head`.
#[inline(always)]
fn remote_word(head: *mut Block, n: usize) -> usize {
    head as usize | n << REMOTE_SHIFT
}

/// The first block of the remote list of word `w` of the zone at `granule`;
/// the list's end if it is empty.
#[inline(always)]
pub(super) fn remote_head(w: usize, granule: usize) -> *mut Block {
    if w == 0 {
        return granule as *mut Block;
    }
    (w & ((1 << REMOTE_SHIFT) - 1)) as *mut Block
}

/// Pushes the chain `head..=tail` of `n` blocks (encoded links, but for
/// `tail`'s) on `z`'s remote list: one compare-exchange; blocks of an
/// abandoned zone are put back at once, and the zone retired when that
/// empties it.
#[inline]
pub(super) unsafe fn push_remote(z: *mut Zone, head: *mut Block, tail: *mut Block, n: u32) {
    if (*z).owner.load(Ordering::Acquire).is_null() && free_abandoned(z, head, tail, n) {
        return;
    }
    let mut w = (*z).remote.load(Ordering::Relaxed);
    loop {
        (*tail).next = enc(remote_head(w, tail as usize & !(ZONE_SIZE - 1)), tail);
        let new = remote_word(head, (w >> REMOTE_SHIFT) + n as usize);
        match (*z)
            .remote
            .compare_exchange_weak(w, new, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => return,
            Err(x) => w = x,
        }
    }
}

/// malloc_trim's part for the calling thread: empties its bins into their
/// zones, pushes its pending batches, and gives back to the heap every zone
/// of its that is then empty: the spares, the current zones (which a free
/// otherwise keeps, against thrashing: an empty current zone at the top of
/// the heap would pin the free tail below it, and the break with it) and
/// the others whose blocks other threads have all freed. (Other threads'
/// caches are theirs alone; their zones go back when they exit.)
pub fn flush_all_pending() {
    let tc = tls::get();
    // SAFETY: tc is this thread's cache; only live caches have batches.
    unsafe {
        if (*tc).state != LIVE {
            return;
        }
        drain_bins(tc);
        for p in (*tc).pending.iter_mut() {
            if !p.zone.is_null() {
                flush_pending(p);
            }
        }
        for z in (*tc).spare.iter_mut() {
            if !z.is_null() {
                retire(*z);
                *z = null_mut();
            }
        }
        let c = &mut *tc;
        let empty = addr_of_mut!(EMPTY_ZONE);
        for cls in 0..NCLASS {
            let cur = c.current[cls];
            if cur != empty {
                collect(cur);
                if (*cur).used == 0 {
                    c.current[cls] = empty;
                    retire(cur);
                }
            }
            settle_revived(c, cls);
            let (avail, full) = (&mut c.avail[cls], &mut c.full[cls]);
            retire_empty(avail, None);
            retire_empty(full, Some(avail));
        }
    }
}

/// Collects the remote frees of every zone on `list` and gives back to the
/// heap those left with no block out. With `avail` (`list` holds full
/// zones), a zone that got free blocks but still has some out moves there,
/// as a full zone has none.
///
/// # Safety
/// The lists are of the calling thread's own cache.
unsafe fn retire_empty(list: &mut ZoneList, mut avail: Option<&mut ZoneList>) {
    let mut z = list.head;
    while !z.is_null() {
        let next = (*z).next;
        if collect(z) != 0 {
            if (*z).used == 0 {
                list.unlink(z);
                retire(z);
            } else if let Some(a) = avail.as_deref_mut() {
                list.unlink(z);
                (*z).state = AVAIL;
                a.push_back(z);
            }
        } else if (*z).used == 0 {
            list.unlink(z);
            retire(z);
        }
        z = next;
    }
}

/// M_PERTURB's part for the calling thread: its bins go back to their zones
/// and its current zones leave the fast path, so that its next allocation of
/// each class takes the slow path, where the perturb byte is seen. (Other
/// threads' bins and current zones serve what they hold unfilled, as glibc's
/// tcache does, and then take the slow path too.)
pub fn leave_fast_path() {
    let tc = tls::get();
    // SAFETY: tc is this thread's cache; its zones are its own.
    unsafe {
        if (*tc).state != LIVE {
            return;
        }
        drain_bins(tc);
        let c = &mut *tc;
        let empty = addr_of_mut!(EMPTY_ZONE);
        for cls in 0..NCLASS {
            let z = c.current[cls];
            if z == empty {
                continue;
            }
            c.current[cls] = empty;
            collect(z);
            if (*z).used == 0 {
                keep_or_retire(c, cls, z);
            } else if !is_end((*z).free) || (*z).carved < (*z).capacity {
                (*z).state = AVAIL;
                c.avail[cls].push_back(z);
            } else {
                (*z).state = FULL;
                c.full[cls].push_back(z);
            }
        }
    }
}
