//! The profiler's hooks in the thread caches: each class's sampling state
//! (`ProfClass`), armed on the fast path's own counters, and the sample
//! taken when one fires (`prof_tick`) or on a miss (`prof_alloc`); the
//! allocations a cache served (`served`), which the counters hold offset
//! while armed. How the sampling works is in the comment below.

use super::*;

// While profiling, each class of a thread cache samples its own allocations:
// every block is sampled with probability `1 - exp(-size / rate)` (`size`
// the class's block size), independently, i.e. the allocations between two
// samples are geometric (`prof::draw_blocks`); the weight of a sample of `n`
// requested bytes is `n / (1 - exp(-size / rate))`, unbiased for the bytes
// requested. The fast paths count their allocations with the counters
// they already keep for the statistics, and test each where it moves: the
// zone path's `allocs` wrapping to 0 after its add, and `bin_in` (the
// blocks that entered the bin's alloc half) reaching `POPS_FIRE`, its sign
// bit, on a swap or a fill. The bin's pops themselves count nothing: they
// are `bin_in` less the blocks in the alloc half. While a class is *armed*,
// the two counters hold offsets chosen so that the zone path's fires on its
// `zone_fast + 1`-th allocation, and `bin_in`'s sign is set exactly while
// the bin's `bin_fast + 1`-th pop lies in the alloc half; then a null is
// written over that block's slot (the block is *held* in `ProfClass`), or
// over `alloc_top` when it is the top one (`prof_place`), so that the pop
// before it reads null as the next top, and the malloc after it misses;
// and, while it is held, the class's `allocs` is set to wrap on the zone
// path's next allocation and its `swap_min` to send a swap to
// `bin_refill`, so that the miss, with a half that is not empty, reaches
// `prof_fire` whichever way it takes, and the fast path has no test of its
// own for the held block. `bin_fast + zone_fast` is
// the allocations before the sampled one: the fast path never serves the
// sampled allocation, and a firing or a miss (`prof_alloc`) is where the
// counts are settled, the sample taken if due, and the class armed again.
// A slower path that reads or changes the alloc half puts the held block
// back first (`prof_unhold`) and places it again after (`prof_place`).
// Profiling off, nothing is armed: a counter fires only after 2^63 blocks
// entered a bin (2^64 zone pops) of one class, and serves the block. Cost
// off: one test and branch on the zone path, on a swap and on the miss.

/// A class's sampling state while profiling.
#[derive(Clone, Copy)]
pub(super) struct ProfClass {
    /// Allocations up to and including the one to sample, counted from
    /// when the class was last armed (0: none drawn yet).
    left: u64,
    /// Allocations the bin and the zone path may serve before their
    /// counter fires (`left - 1` between them).
    bin_fast: u64,
    zone_fast: u64,
    /// The statistics the two counters held when armed (the bin's pops).
    pops: u64,
    allocs: usize,
    /// The counters hold the offsets.
    armed: bool,
    /// The block whose slot holds null (`prof_place`), or null.
    pub(super) held: *mut Block,
    /// Its slot in `bin`.
    held_at: usize,
    /// The class's `allocs` and `swap_min` while a block is held (the
    /// cache's are set so that a miss fires).
    held_allocs: usize,
    held_swap: u8,
}

impl ProfClass {
    pub(super) const OFF: ProfClass = ProfClass {
        left: 0,
        bin_fast: 0,
        zone_fast: 0,
        pops: 0,
        allocs: 0,
        armed: false,
        held: null_mut(),
        held_at: 0,
        held_allocs: 0,
        held_swap: 0,
    };
}

/// The value of `bin_in` whose sign bit is set: while armed, the bin's
/// sampled pop is in the alloc half from there on.
const POPS_FIRE: u64 = 1 << 63;

/// The bin's pops of `cls` in cache `tc` (`bin_in` less the alloc half's
/// blocks; offset while armed).
///
/// # Safety
/// `tc` is a cache, `cls < NCLASS`.
#[inline]
unsafe fn bin_pops(tc: *const Cache, cls: usize) -> u64 {
    core::ptr::read_volatile(&(*tc).bin_in[cls]).wrapping_sub(alloc_count(tc, cls))
}

/// The counters of an armed class (the bin's pops, `allocs`) as the
/// allocations served since arming (bin, zone; the zone path's counter, if
/// it fired, counts the allocation that fired it).
fn prof_counts(p: &ProfClass, pops: u64, allocs: usize) -> (u64, u64) {
    let bin = pops.wrapping_sub(POPS_FIRE - 1 - p.bin_fast);
    let zone = allocs.wrapping_sub(usize::MAX - p.zone_fast as usize) as u64;
    (bin, zone)
}

/// Puts the held block of `cls` (if any) back in its slot, and
/// `alloc_top` as the bin says.
///
/// # Safety
/// `tc` is this thread's live cache, `cls < NCLASS`.
#[inline]
pub(super) unsafe fn prof_unhold(tc: *mut Cache, cls: usize) {
    let p = &mut (*tc).prof[cls];
    if p.held.is_null() {
        return;
    }
    (*tc).bin[p.held_at] = p.held;
    p.held = null_mut();
    (*tc).allocs[cls] = p.held_allocs;
    (*tc).swap_min[cls] = p.held_swap;
    sync_top(tc, cls);
}

/// If `cls` is armed and its sampled pop lies in the alloc half (`bin_in`'s
/// sign), holds that block: null over its slot, or over `alloc_top` if it
/// is the top one, so that the pops stop short of it.
///
/// # Safety
/// As `prof_unhold`; no block is held, and `alloc_top` is synced.
pub(super) unsafe fn prof_place(tc: *mut Cache, cls: usize) {
    let c = &mut *tc;
    let i = c.bin_in[cls];
    if !c.prof[cls].armed || (i as i64) >= 0 {
        return;
    }
    let count = alloc_count(tc, cls);
    // (The sampled pop is the `depth`-th from now: below the top, 1.)
    let depth = count.wrapping_sub(i - POPS_FIRE);
    debug_assert!(depth >= 1 && depth <= count);
    let at = c.bin_state[cls] as usize - depth as usize;
    let p = &mut c.prof[cls];
    p.held = c.bin[at];
    p.held_at = at;
    p.held_allocs = c.allocs[cls];
    p.held_swap = c.swap_min[cls];
    c.allocs[cls] = usize::MAX;
    c.swap_min[cls] = u8::MAX;
    if depth == 1 {
        c.alloc_top[cls] = null_mut();
    } else {
        c.bin[at] = null_mut();
    }
}

/// Allocations of `cls` served by `tc`'s fast path since it was armed (as
/// `prof_counts`), and the counters back to their statistics; (0, 0) if
/// the class is not armed. Puts a held block back.
///
/// # Safety
/// `tc` is this thread's live cache, `cls < NCLASS`.
unsafe fn prof_disarm(tc: *mut Cache, cls: usize) -> (u64, u64) {
    prof_unhold(tc, cls);
    let c = &mut *tc;
    let p = &mut c.prof[cls];
    if !p.armed {
        return (0, 0);
    }
    p.armed = false;
    let (bin, zone) = prof_counts(p, bin_pops(tc, cls), c.allocs[cls]);
    c.bin_in[cls] = p.pops.wrapping_add(bin).wrapping_add(alloc_count(tc, cls));
    c.allocs[cls] = p.allocs.wrapping_add(zone as usize);
    (bin, zone)
}

/// Arms `cls` of `tc` for its `left`-th allocation from now, sharing the
/// allocations before it between the bin and the zone path as they were
/// shared last time (`bin`, `zone`).
///
/// # Safety
/// As `prof_disarm`; `cls` is not armed.
#[inline(always)]
unsafe fn prof_arm(tc: *mut Cache, cls: usize, bin: u64, zone: u64) {
    let c = &mut *tc;
    let p = &mut c.prof[cls];
    if p.left == 0 {
        p.left = crate::prof::draw_blocks(CLASS_SIZE[cls] as usize);
    }
    let fast = p.left - 1;
    // The zone path's share as it was last time, with no smoothing: a
    // class whose allocations all came from its bin (a loop of malloc and
    // free) gives the zone path none, so that the bin's counter fires on
    // the sampled allocation itself. (With the share `(zone + 1) / (bin +
    // zone + 2)`, the zone path got one allocation of each interval, the
    // bin's counter fired one allocation early and a second firing took
    // the sample: 1.87 firings a sample of `bench/pair 1e6 4096`, about
    // 190 instructions each.) Half each when nothing was counted yet.
    // (In floating point, not u128: a 128-bit division was a call to
    // `__udivti3`, twice a sample. Through i64, one conversion instruction
    // each: the counts are far below 2^62; `fast` is below 2^41, exact, and
    // the share at most 1, so `z <= fast`.)
    let share = if bin + zone == 0 {
        0.5
    } else {
        zone as i64 as f64 / (bin as i64 + zone as i64) as f64
    };
    let z = ((fast as i64 as f64 * share) as i64 as u64).min(fast);
    p.zone_fast = z;
    p.bin_fast = fast - z;
    let count = alloc_count(tc, cls);
    p.pops = c.bin_in[cls].wrapping_sub(count);
    p.allocs = c.allocs[cls];
    c.bin_in[cls] = (POPS_FIRE - 1 - p.bin_fast).wrapping_add(count);
    c.allocs[cls] = usize::MAX - z as usize;
    p.armed = true;
    prof_place(tc, cls);
}

/// Counts `k` allocations of `cls`, the last one being made: is it the one
/// to sample?
///
/// # Safety
/// As `prof_disarm`.
#[inline(always)]
unsafe fn prof_due(tc: *mut Cache, cls: usize, k: u64) -> bool {
    let p = &mut (*tc).prof[cls];
    let size = CLASS_SIZE[cls] as usize;
    if p.left == 0 {
        p.left = crate::prof::draw_blocks(size);
    }
    if k >= p.left {
        p.left = crate::prof::draw_blocks(size);
        return crate::prof::can_sample();
    }
    p.left -= k;
    false
}

/// Classes of at least this block size have their samples served by the
/// thread's medium cache (a chunk of its first class, 4-5 KiB: at most 5
/// times the block, for one block in 512 or fewer at the default rate, so
/// under 1% more memory for those classes), not by the TLSF heap: no heap
/// lock at the sample's malloc or at its free (which the medium cache's
/// fast path takes). A sample of `fixed 4096` cost about 1,800
/// instructions, 550 of them in the heap.
const SAMPLE_FROM_MEDIUM: usize = 1024;

/// A sampled small request of `n` bytes counted as a block of `cls`: a heap
/// chunk (from the thread's medium cache, or from the heap), so that its
/// free is seen (its header marked `chunk::SAMPLED`); null if none.
unsafe fn prof_sample(cls: usize, n: usize) -> *mut u8 {
    let p = if CLASS_SIZE[cls] as usize >= SAMPLE_FROM_MEDIUM {
        medium_sample(cls)
    } else {
        heap_small(cls)
    };
    if !p.is_null() {
        crate::prof::record_as(p, n, CLASS_SIZE[cls] as usize);
    }
    p
}

/// The zone path's counter fired on a request of `n` bytes (the zone's
/// block not taken). Profiling, the counts are settled, the block is
/// served, or the request sampled, and the class armed again; not
/// profiling, the count wrapped, and the block is served.
#[cold]
#[inline(never)]
pub(super) unsafe fn prof_tick(n: usize) -> *mut u8 {
    let tc = tls::get();
    // (The fast path's class: n <= SMALL_MAX.)
    let cls = (*tc).class_of[(n + 15) >> 4] as usize;
    if !(*tc).prof[cls].held.is_null() {
        // (The count set to fire while a block is held: the bin's sampled
        // pop comes first. The zone's block stays, uncounted.)
        return prof_fire(n);
    }
    let (mut bin, mut zone) = (0, 0);
    let mut p = null_mut();
    if (*tc).prof[cls].armed {
        (bin, zone) = prof_disarm(tc, cls);
        if prof_due(tc, cls, bin + zone) {
            p = prof_sample(cls, n);
        }
    }
    if p.is_null() {
        let z = (*tc).current[cls];
        let b = (*z).free;
        if is_end(b) {
            // (Not from the fast path as it stands: only a malloc that
            // reentered this one, from a signal handler, could have
            // emptied the zone.)
            p = alloc_dry(n, cls, tc);
        } else {
            (*z).free = dec(b);
            (*z).used += 1;
            (*b).mark = 0;
            p = b as *mut u8;
        }
    }
    if crate::prof::active() {
        prof_arm(tc, cls, bin, zone);
    }
    p
}

/// A malloc of `n` bytes found its class's `alloc_top` null but the alloc
/// half not empty: the block below is held for a sample (`prof_place`).
/// The counts are settled (this allocation the bin's), the request sampled
/// if due (the block stays) or the block served, and the class armed again.
#[cold]
#[inline(never)]
pub(super) unsafe fn prof_fire(n: usize) -> *mut u8 {
    let tc = tls::get();
    // (The fast path's class: n <= SMALL_MAX.)
    let cls = (*tc).class_of[(n + 15) >> 4] as usize;
    let (mut bin, zone) = prof_disarm(tc, cls);
    sync_top(tc, cls);
    bin += 1;
    let mut p = null_mut();
    if prof_due(tc, cls, bin + zone) {
        p = prof_sample(cls, n);
    }
    if p.is_null() {
        p = bin_pop(tc, cls);
    } else {
        // (Counted with the class, as the bin's pops would have.)
        (*tc).allocs[cls] = (*tc).allocs[cls].wrapping_add(1);
    }
    if crate::prof::active() {
        prof_arm(tc, cls, bin, zone);
    }
    p
}

/// Blocks entered the alloc half of the class of a request of `n` bytes
/// (a swap or a fill: its top and `bin_in` are set, `alloc_top` maybe not)
/// and `bin_in`'s sign is set: the sampled pop lies among them, or the
/// count wrapped (not profiling). Holds that block, then pops.
#[cold]
#[inline(never)]
pub(super) unsafe fn prof_entered(n: usize) -> *mut u8 {
    let tc = tls::get();
    let cls = (*tc).class_of[(n + 15) >> 4] as usize;
    sync_top(tc, cls);
    prof_place(tc, cls);
    if (*tc).alloc_top[cls].is_null() {
        return prof_fire(n);
    }
    bin_pop(tc, cls)
}

/// A small malloc that missed while profiling: counted (with the fast
/// path's allocations since the class was armed), sampled if due, else
/// served as `alloc_dry` serves it. A thread without a live cache counts
/// bytes (`prof::take`) as the export layer does for larger blocks.
#[cold]
#[inline(never)]
pub(super) unsafe fn prof_alloc(n: usize, cls: usize, tc: *mut Cache) -> *mut u8 {
    if (*tc).state != LIVE {
        return prof_first(n, cls, tc);
    }
    let (bin, zone) = prof_disarm(tc, cls);
    let mut p = null_mut();
    if prof_due(tc, cls, bin + zone + 1) {
        p = prof_sample(cls, n);
    }
    if p.is_null() {
        p = alloc_dry(n, cls, tc);
    } else {
        // (Counted with the class, as a sample that fired on the fast path.)
        (*tc).allocs[cls] += 1;
    }
    // (tc, live, stays this thread's cache.)
    prof_arm(tc, cls, bin, zone);
    p
}

/// `prof_alloc` for a thread without a live cache: makes one (or serves
/// the request from the heap) and arms the class it served.
#[cold]
#[inline(never)]
unsafe fn prof_first(n: usize, cls: usize, tc: *mut Cache) -> *mut u8 {
    if crate::prof::take(n) {
        let p = heap_small(class_of(n));
        if p.is_null() {
            crate::os::set_errno(libc::ENOMEM);
        } else {
            crate::prof::record(p, n);
        }
        return p;
    }
    let p = alloc_dry(n, cls, tc);
    let c = tls::get();
    if (*c).state == LIVE {
        let cls = (*c).class_of[(n + 15) >> 4] as usize;
        if !(*c).prof[cls].armed {
            prof_arm(c, cls, 0, 0);
        }
    }
    p
}

/// Allocations cache `c` served from class `cls` (statistics; `c` may be
/// another thread's, read without its cooperation: a figure).
///
/// # Safety
/// `c` is a live cache, `cls < NCLASS`.
pub(super) unsafe fn served(c: *const Cache, cls: usize) -> usize {
    let mut allocs = core::ptr::read_volatile(&(*c).allocs[cls]);
    let pops = bin_pops(c, cls);
    let p = core::ptr::read_volatile(&(*c).prof[cls]);
    if !p.held.is_null() {
        allocs = p.held_allocs;
    }
    if !p.armed {
        return allocs.wrapping_add(pops as usize);
    }
    let (bin, zone) = prof_counts(&p, pops, allocs);
    p.allocs
        .wrapping_add(zone as usize)
        .wrapping_add(p.pops.wrapping_add(bin) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The profiling counters against a model: a class is armed for its
    /// `left`-th allocation, and mallocs are played as `alloc_class` plays
    /// them: a pop while `alloc_top` is set; with the alloc half empty,
    /// either the zone path (its count bumped) or blocks entering the half
    /// (`bin_in` bumped, and the held block placed when its sign is set);
    /// a miss with a block held fires. One of the counters must fire before
    /// the `left`-th allocation is served and no sooner than its share;
    /// `prof_disarm` then reports what was served, `served` counts right
    /// while armed, and the statistics are back when disarmed.
    #[test]
    fn profiling_counters_fire_on_the_sampled_allocation() {
        let mut c: Box<core::mem::MaybeUninit<Cache>> = Box::new(core::mem::MaybeUninit::uninit());
        let tc = c.as_mut_ptr();
        // SAFETY: tc is a cache's worth of memory, initialised here.
        unsafe {
            init_fields(tc, false);
            open_row(tc, 3);
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let cls = 3;
        let base = ROW[cls];
        let (mut true_pops, mut true_allocs) = (0u64, 0usize);
        let (mut last_bin, mut last_zone) = (0u64, 0u64);
        let (mut fired_bin, mut fired_zone) = (0, 0);
        for round in 0..3000 {
            // SAFETY: tc is initialised; cls < NCLASS; the blocks are
            // stand-ins, never dereferenced.
            unsafe {
                let c = &mut *tc;
                let left = 1 + next() % if round % 3 == 0 { 5 } else { 300 };
                c.prof[cls].left = left;
                prof_arm(tc, cls, last_bin, last_zone);
                let zone_share = next() % 4; // how often the zone path serves
                let (mut bin, mut zone) = (0u64, 0u64);
                let from_bin = loop {
                    assert_eq!(
                        served(tc, cls),
                        (true_pops + bin) as usize + true_allocs + zone as usize
                    );
                    let b = c.alloc_top[cls];
                    if !b.is_null() {
                        let top = c.bin_state[cls] as usize;
                        assert_eq!(b, c.bin[top - 1]);
                        c.alloc_top[cls] = *slot_below(tc, top - 1);
                        c.bin_state[cls] = (top - 1) as u64;
                        bin += 1;
                    } else if !half_empty(c.bin_state[cls] as usize, HALF_MASK[cls]) {
                        assert!(!c.prof[cls].held.is_null());
                        assert_eq!(c.allocs[cls], usize::MAX);
                        break true;
                    } else if next() % 4 < zone_share {
                        let a = c.allocs[cls].wrapping_add(1);
                        c.allocs[cls] = a;
                        zone += 1;
                        if a == 0 {
                            break false;
                        }
                    } else {
                        // Blocks enter the empty alloc half (a swap).
                        let k = 1 + next() % (HALF[cls] as u64 - 1);
                        for j in 0..k as usize {
                            c.bin[base + j] = (0x1000 * (round * 64 + j + 1)) as *mut Block;
                        }
                        c.bin_state[cls] = (base + k as usize) as u64;
                        sync_top(tc, cls);
                        c.bin_in[cls] = c.bin_in[cls].wrapping_add(k);
                        if (c.bin_in[cls] as i64) < 0 {
                            prof_place(tc, cls);
                        }
                        continue;
                    }
                    assert!(bin + zone < left, "served the sampled allocation");
                };
                let (b, z) = prof_disarm(tc, cls);
                if from_bin {
                    // The held block is the next pop, counted by the fire.
                    fired_bin += 1;
                    assert_eq!((b, z), (bin, zone));
                    assert_eq!(c.bin[c.bin_state[cls] as usize - 1], c.alloc_top[cls]);
                    assert!(!c.alloc_top[cls].is_null());
                    assert!(b + 1 + z <= left);
                    assert!(b + 1 + z == left || b == c.prof[cls].bin_fast);
                } else {
                    fired_zone += 1;
                    assert_eq!((b, z), (bin, zone));
                    assert!(b + z <= left);
                }
                true_pops += bin;
                true_allocs += zone as usize;
                assert_eq!(c.bin_in[cls].wrapping_sub(alloc_count(tc, cls)), true_pops);
                assert_eq!(c.allocs[cls], true_allocs);
                assert_eq!(served(tc, cls), true_pops as usize + true_allocs);
                (last_bin, last_zone) = (b + from_bin as u64, z);
            }
        }
        assert!(
            fired_bin > 100 && fired_zone > 100,
            "{fired_bin} {fired_zone}"
        );
    }
}
