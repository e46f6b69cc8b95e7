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
// requested. The fast path counts its allocations with the counters it
// already keeps for the statistics, the pops count in `bin_state`'s high 48
// bits and `allocs`, and tests each after its add: the pops count reaching
// `POPS_FIRE` (the word's sign bit), `allocs` wrapping to 0. While a class
// is *armed*, the two hold offsets chosen so that the bin's counter fires
// on its `bin_fast + 1`-th pop and the zone path's on its `zone_fast +
// 1`-th, with `bin_fast + zone_fast` = the allocations before the sampled
// one: the fast path never serves the sampled allocation, and a firing
// (`prof_tick`) or a miss (`prof_alloc`) is where the counts are settled,
// the sample taken if due, and the class armed again. Profiling off,
// nothing is armed: a counter fires only after 2^47 pops (2^64 zone pops)
// of one class, and `prof_tick` just serves it. Cost off: one test and
// branch on each of the two paths.

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
    /// The statistics the two counters held when armed.
    pops: u64,
    allocs: usize,
    /// The counters hold the offsets.
    armed: bool,
}

impl ProfClass {
    pub(super) const OFF: ProfClass = ProfClass {
        left: 0,
        bin_fast: 0,
        zone_fast: 0,
        pops: 0,
        allocs: 0,
        armed: false,
    };
}

/// The pops count whose top bit is `bin_state`'s sign: the bin's counter
/// fires when it gets there.
const POPS_FIRE: u64 = 1 << 47;
/// The bits of the pops count.
const POPS_MASK: u64 = u64::MAX >> 16;

/// The pops count and `allocs` of an armed class as the allocations served
/// since arming (bin, zone; a counter that fired counts the allocation that
/// fired it).
fn prof_counts(p: &ProfClass, pops: u64, allocs: usize) -> (u64, u64) {
    let bin = pops.wrapping_sub(POPS_FIRE - 1 - p.bin_fast) & POPS_MASK;
    let zone = allocs.wrapping_sub(usize::MAX - p.zone_fast as usize) as u64;
    (bin, zone)
}

/// Allocations of `cls` served by `tc`'s fast path since it was armed (as
/// `prof_counts`), and the counters back to their statistics; (0, 0) if
/// the class is not armed.
///
/// # Safety
/// `tc` is this thread's live cache, `cls < NCLASS`.
unsafe fn prof_disarm(tc: *mut Cache, cls: usize) -> (u64, u64) {
    let c = &mut *tc;
    let p = &mut c.prof[cls];
    if !p.armed {
        return (0, 0);
    }
    p.armed = false;
    let st = c.bin_state[cls];
    let (bin, zone) = prof_counts(p, st >> 16, c.allocs[cls]);
    c.bin_state[cls] = (st & BIN_TOP) | ((p.pops + bin) & (POPS_FIRE - 1)) << 16;
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
    let st = c.bin_state[cls];
    p.pops = st >> 16;
    p.allocs = c.allocs[cls];
    c.bin_state[cls] = (st & BIN_TOP) | (POPS_FIRE - 1 - p.bin_fast) << 16;
    c.allocs[cls] = usize::MAX - z as usize;
    p.armed = true;
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

/// A counter of the fast path fired on a request of `n` bytes: the bin's
/// (its count already taken down: the popped block is still in the slot
/// above it, marked free) or the zone path's (the zone's block not taken).
/// Profiling, the counts are settled, the block is served, or the request
/// sampled, and the class armed again; not profiling, a count wrapped, and
/// the block is served.
#[cold]
#[inline(never)]
pub(super) unsafe fn prof_tick(n: usize) -> *mut u8 {
    let tc = tls::get();
    // (The fast path's class: n <= SMALL_MAX.)
    let cls = (*tc).class_of[(n + 15) >> 4] as usize;
    let st = (*tc).bin_state[cls];
    let from_bin = (st as i64) < 0;
    let (mut bin, mut zone) = (0, 0);
    let mut p = null_mut();
    if (*tc).prof[cls].armed {
        (bin, zone) = prof_disarm(tc, cls);
        if prof_due(tc, cls, bin + zone) {
            p = prof_sample(cls, n);
        }
    } else if from_bin {
        (*tc).bin_state[cls] = st & BIN_TOP;
    }
    let st = (*tc).bin_state[cls];
    if !p.is_null() {
        if from_bin {
            // The popped block goes back on top of its bin.
            (*tc).bin_state[cls] = st + 1;
        }
    } else if from_bin {
        let b = (*tc).bin[(st & BIN_TOP) as usize];
        (*b).mark = 0;
        p = b as *mut u8;
    } else {
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
    let allocs = core::ptr::read_volatile(&(*c).allocs[cls]);
    let pops = core::ptr::read_volatile(&(*c).bin_state[cls]) >> 16;
    let p = core::ptr::read_volatile(&(*c).prof[cls]);
    if !p.armed {
        return allocs + pops as usize;
    }
    let (bin, zone) = prof_counts(&p, pops, allocs);
    p.allocs + zone as usize + (p.pops + bin) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The profiling counters against a model: a class is armed for its
    /// `left`-th allocation, the fast path's two counters are bumped as
    /// `alloc_class` bumps them (bin pops and zone pops in random order),
    /// and one of them must fire before the `left`-th allocation is served
    /// and no sooner than its share; `prof_disarm` then reports what was
    /// served, `served` counts right while armed, and the statistics are
    /// back when disarmed.
    #[test]
    fn profiling_counters_fire_on_the_sampled_allocation() {
        let mut c: Box<core::mem::MaybeUninit<Cache>> = Box::new(core::mem::MaybeUninit::uninit());
        let tc = c.as_mut_ptr();
        // SAFETY: tc is a cache's worth of memory, initialised here.
        unsafe { init_fields(tc, false) };
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let cls = 3;
        let (mut true_pops, mut true_allocs) = (0u64, 0usize);
        let (mut last_bin, mut last_zone) = (0u64, 0u64);
        for round in 0..2000 {
            // SAFETY: tc is initialised; cls < NCLASS.
            unsafe {
                let c = &mut *tc;
                let left = 1 + next() % if round % 3 == 0 { 5 } else { 3000 };
                c.prof[cls].left = left;
                c.bin_state[cls] = (c.bin_state[cls] & !BIN_TOP) | (ROW[cls] + 20) as u64;
                prof_arm(tc, cls, last_bin, last_zone);
                let zone_share = next() % 4; // how often the zone path serves
                let (mut bin, mut zone) = (0u64, 0u64);
                loop {
                    if next() % 4 < zone_share {
                        let a = c.allocs[cls].wrapping_add(1);
                        c.allocs[cls] = a;
                        zone += 1;
                        if a == 0 {
                            break;
                        }
                    } else {
                        // A free, then a pop: the count stays at 20.
                        let st = c.bin_state[cls] + 1 + BIN_POP - 1;
                        c.bin_state[cls] = st;
                        bin += 1;
                        if (st as i64) < 0 {
                            break;
                        }
                    }
                    assert!(bin + zone < left, "served the sampled allocation");
                    assert_eq!(
                        served(tc, cls),
                        (true_pops + bin) as usize + true_allocs + zone as usize
                    );
                }
                // The firing allocation is the left-th, or comes early
                // because its path's share ran out.
                assert!(bin + zone <= left);
                let (b, z) = prof_disarm(tc, cls);
                assert_eq!((b, z), (bin, zone));
                true_pops += bin;
                true_allocs += zone as usize;
                assert_eq!(c.bin_state[cls] >> 16, true_pops);
                assert_eq!(c.bin_state[cls] & BIN_TOP, (ROW[cls] + 20) as u64);
                assert_eq!(c.allocs[cls], true_allocs);
                assert_eq!(served(tc, cls), true_pops as usize + true_allocs);
                (last_bin, last_zone) = (b, z);
            }
        }
    }
}
