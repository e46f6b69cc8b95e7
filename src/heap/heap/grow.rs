//! Where heap memory comes from: growth of the break (`grow_brk`: its
//! start at a zone granule, its steps, the pad a cycling program gets,
//! `note_growth`) and of mmap'd regions (`grow_mmap`, `region_len`), and
//! the relief called when neither can grow (`set_relief`).

use super::*;

/// The most free tail a trim keeps while a program cycles (see `note_growth`).
/// Was 128 MiB: bench/grid's `bulk` cell of 1-64 MiB (16 threads, rounds of
/// 64 blocks, about 1 GiB, allocated then freed) cycles through more than
/// that, and each round trimmed the break in steps and grew it again by one
/// block at a time: 7249 `brk` calls for 8000 blocks, each under the heap's
/// lock (21k futex waits); 591 with 1 GiB, and 0.10 -> 0.06 s of CPU. The
/// tail kept is address space; the pages a program touched in it are
/// discarded by the sparse purge if it touched few (`purge_sparse`), else
/// by the 250 ms purge.
const BOOST_MAX: usize = 1 << 30;
/// A growth of the break for a big request adds half the tail a trim keeps
/// once the trims of the last cycle gave back this much (see `grow_brk`;
/// `last_cycle`: a round of frees may trim in several steps): smaller cycles
/// grow by the request (bench/large, whose cycles take about 55 MiB;
/// c_tests/brk.c's 16 MiB, whose free tail then stays under the trim
/// threshold). Not `pad_boost` itself, which doubles at every cycle: in
/// c_tests/stress.c (a heap of about 200 MiB) it passed 256 MiB, the step
/// grew the heap to 292 MiB, and the purge's 250 MiB of budget in the
/// test's 2000 frees after its pause left 57 MiB resident (its bound: 34).
const BOOST_STEP_MIN: usize = 256 << 20;
/// The most a growth of the break adds beyond the request for the heap's
/// own growth (see `grow_brk`).
const GROW_STEP_MAX: usize = 32 << 20;
/// Only growths for requests under this size take the step: the many small
/// ones of medium caches' refills. A big request grows the break by itself
/// (bench/large, blocks of 256 KiB-32 MiB with every page written: the step
/// on every growth raised its peak RSS from 162 to 213 MB).
const GROW_STEP_NEED: usize = 256 << 10;
/// A trim this long after the last cycle keeps no extra tail.
pub(super) const BOOST_LIFE_NS: usize = 1_000_000_000;

/// Smallest mmap'd heap region.
const REGION_MIN: usize = 1 << 20;
/// A transparent huge page (the PMD size with 4 KiB pages, x86_64 and
/// aarch64).
const HUGE_PAGE: usize = 2 << 20;
/// Largest growth step of a heap in mmap'd regions (see `region_len`).
const REGION_STEP_MAX: usize = 64 << 20;

/// Whether the heap grows on the program break. Only when memalloc is the
/// process's malloc (`override`, the C library): otherwise glibc's malloc
/// moves the break too, and `sbrk` updates glibc's `__curbrk` without a lock
/// (glibc misc/sbrk.c), so two threads growing the two heaps at once could
/// be handed the same memory. The heap then lives in mmap'd regions.
const USE_BRK: bool = cfg!(any(test, feature = "override"));

/// Whether the heap's mmap'd regions of 2 MiB or more ask for transparent
/// huge pages (`region_len`): in the Rust crate, where the regions are the
/// whole heap, as mimalloc's arenas do. (Blocks mapped on their own do not:
/// asking for them too, bench/rust `hashmap`, whose table is such a block,
/// spent twice the system time, 0.38 s against 0.19 s, medians of 9.)
const HUGE_PAGES: bool = !USE_BRK;

/// The length of a new mmap'd region of at least `len` bytes (page
/// multiple) for a heap that holds `held` bytes in such regions. Without
/// the break (the Rust crate, `USE_BRK` false) the regions are the whole
/// heap: from 4 MiB on it grows by half of itself (whole huge pages, at
/// most `REGION_STEP_MAX`), in regions that ask for transparent huge pages
/// (`os::huge_pages`). bench/rust `btree` (40 MiB of random-access tree
/// nodes) took 9,375 page faults in 1 MiB regions, 957 so (mimalloc, whose
/// arenas ask for huge pages too, 110), and its CPU time went from 0.740
/// to 0.662 s (medians of 11 alternating runs, a loaded machine).
/// bench/rust `hashmap` (100 MiB of small blocks, mostly touched once)
/// gains nothing: its user time went from 1.08 to 0.91 s and its system
/// time from 0.18 to 0.35 s (on this VM a huge page's first fault costs
/// three times its 512 small pages'). Below 4 MiB a heap grows by 1 MiB at
/// a time, as before: a small program is not charged a huge page.
fn region_len(len: usize, held: usize) -> usize {
    if USE_BRK {
        return len;
    }
    len.max((held / 2).min(REGION_STEP_MAX) & !(HUGE_PAGE - 1))
}

/// What the heap calls when it cannot grow, before it gives up: a function
/// of the layer above that gives memory back to the OS and returns the bytes
/// it gave (the cache of freed large mappings: `large::trim`, registered at
/// start by `lib.rs`). It runs under the heap lock and must not take it.
static RELIEF: AtomicPtr<()> = AtomicPtr::new(null_mut());

/// Registers the heap's out-of-memory relief (see `RELIEF`).
pub fn set_relief(f: fn() -> usize) {
    RELIEF.store(f as *mut (), Ordering::Relaxed);
}

/// A function of the layer above that hands the heap a freed mapping to
/// grow into, one of at least `min` and at most `max` bytes, taken out of
/// its keeping and out of the zone map: (base, length), or `None` (the
/// cache of freed large mappings: `large::take_for_heap`, registered at
/// start by `lib.rs`). It runs under the heap lock and must not take it.
/// Such a mapping is memory the program wrote and freed, resident: a region
/// there takes no page fault where a fresh one takes them all (bench/rust
/// `hashmap`: its old table, 49 MiB kept after the last growth, beside a
/// fresh region of 42 MiB for the entries that followed).
static ADOPT: AtomicPtr<()> = AtomicPtr::new(null_mut());

/// Registers the source of freed mappings the heap grows into (see `ADOPT`).
pub fn set_adopt(f: fn(usize, usize) -> Option<(*mut u8, usize)>) {
    ADOPT.store(f as *mut (), Ordering::Relaxed);
}

/// A freed mapping of `min` to `max` bytes for a new region, if `ADOPT`
/// has one.
fn adopt(min: usize, max: usize) -> Option<(*mut u8, usize)> {
    let f = ADOPT.load(Ordering::Relaxed);
    if f.is_null() {
        return None;
    }
    // SAFETY: only `set_adopt` stores here, a function of this type.
    let f: fn(usize, usize) -> Option<(*mut u8, usize)> = unsafe { core::mem::transmute(f) };
    f(min, max)
}

/// Calls the relief, if any; whether it gave memory back.
#[cold]
fn relieve() -> bool {
    let f = RELIEF.load(Ordering::Relaxed);
    if f.is_null() {
        return false;
    }
    // SAFETY: only `set_relief` stores here, a `fn() -> usize`.
    let f: fn() -> usize = unsafe { core::mem::transmute(f) };
    f() != 0
}

impl Heap {
    /// Grows the heap so that a search for `csize` bytes aligned to `align`
    /// (0: 16) finds a chunk; whether it did.
    #[cold]
    pub(super) unsafe fn grow_for(&mut self, csize: usize, align: usize) -> bool {
        // Grow by what a search is sure to find (TLSF rounds requests up).
        let need = crate::tlsf::search_size(if align == 0 {
            csize
        } else {
            csize + align + MIN_CHUNK
        });
        // Out of memory while freed large mappings are kept for reuse (a
        // new_handler has just freed its reserve): unmap them, try again.
        // (HEAP before the large-block lock: the fork handlers' order.)
        self.grow(need) || (relieve() && self.grow(need))
    }

    /// Adds at least `need` bytes of free space (one chunk that can hold it).
    unsafe fn grow(&mut self, need: usize) -> bool {
        if USE_BRK && !self.brk_failed && self.grow_brk(need) {
            return true;
        }
        self.grow_mmap(need)
    }

    pub(super) unsafe fn grow_brk(&mut self, need: usize) -> bool {
        let pad = config::get().top_pad;
        if !self.brk_started {
            let cur = os::brk_top() as usize;
            if cur as isize == -1 {
                self.brk_failed = true;
                return false;
            }
            // The heap starts at a zone granule (see `heap_start`).
            let skip = heap_start(cur) - cur;
            let want = match (cur + skip + need + SENTINEL)
                .checked_add(pad)
                .and_then(break_end)
            {
                Some(e) => e - cur,
                None => return false,
            };
            let mut want = want;
            let mut old = os::brk_grow(want);
            if old.is_null() && pad != 0 {
                // Without the pad (see the same below).
                if let Some(e) = break_end(cur + skip + need + SENTINEL) {
                    want = e - cur;
                    old = os::brk_grow(want);
                }
            }
            if old.is_null() {
                self.brk_failed = true;
                return false;
            }
            // Normally old == cur; if another thread of the program moved the
            // break in between, our region simply starts where sbrk says.
            let (start, end) = if old as usize == cur {
                (old.add(skip), old.add(want))
            } else {
                (old, old.add(want))
            };
            self.brk.kind = KIND_BRK;
            let r = &mut self.brk as *mut Region;
            if !crate::zonemap::add_ours(start, end) {
                os::brk_shrink(want);
                return false;
            }
            if !self.tlsf.add_region(start, end, r) {
                return false;
            }
            self.regions.push(r);
            self.brk_started = true;
            self.brk_bytes = want;
            self.traced();
            return true;
        }
        let end = self.brk.end;
        if os::brk_top() != end {
            // Something else moved the break (a direct sbrk/brk user): we
            // cannot extend our region contiguously any more.
            self.brk_failed = true;
            return false;
        }
        self.note_growth();
        let sent = self.brk.sentinel();
        let tail_free = if is_prev_free(sent) {
            (*sent).prev_size
        } else {
            0
        };
        let more = need.saturating_sub(tail_free);
        // A heap that keeps growing grows by an eighth of itself (at most
        // GROW_STEP_MAX): by the request and `top_pad` alone, bench/mthreads
        // at 8 threads made 914 `brk` calls of 128 KiB each to reach 110
        // MiB, each under the heap lock, and the other threads queued on it
        // (3475 futex calls in 2M pairs under strace; 568 with the step).
        // The step is address space, not memory: no page of it is touched
        // before a block is carved there, and a trim gives back what stays
        // free at the tail (a program that grows and trims over and over
        // gets a bigger pad: `note_growth`).
        // A big request grows it by itself, unless the program cycles
        // through more than the tail a trim keeps can hold (BOOST_MAX
        // reached, and the trims before the last growth gave back
        // BOOST_STEP_MIN or more, within BOOST_LIFE_NS: `note_growth`):
        // then by half that tail as well. (Below BOOST_MAX, the kept tail
        // grows until it holds the cycle, and the break stops moving: with
        // the step, the tail a round left was over the kept one, so every
        // round trimmed and grew again, and a pause of the process longer
        // than the cycle's windows, on a loaded machine, undid the boost:
        // c_tests/bigsparse.c's rounds of 360 MiB made 334 system calls.)
        // bench/grid's `bulk` cell of 1-64 MiB at 64 threads (rounds of 256
        // blocks, about 4 GiB, then all freed: more than BOOST_MAX) grew the
        // break once per block of every round after the trim: 6054 `brk`
        // calls for 8000 blocks, each under the heap's lock; about 230 so.
        // A reserve (see "Reserves") takes the step whatever its size.
        let pad = if need < GROW_STEP_NEED || self.for_reserve {
            pad.max((self.brk_bytes / 8).min(GROW_STEP_MAX))
        } else if self.pad_boost == BOOST_MAX
            && self.last_cycle >= BOOST_STEP_MIN
            && os::coarse_ns().wrapping_sub(self.boost_at) <= BOOST_LIFE_NS
        {
            pad.max(self.pad_boost / 2)
        } else {
            pad
        };
        let new_end = match (end as usize).checked_add(more + pad).and_then(break_end) {
            Some(e) => e,
            None => return false,
        };
        let mut incr = new_end - end as usize;
        let mut old = os::brk_grow(incr);
        if old.is_null() && pad != 0 {
            // The pad is slack, not need: under RLIMIT_AS, or with a
            // mapping close above the break, the request alone may still
            // fit (a new_handler that freed its reserve left room for the
            // request, not for a boosted pad). Only when that fails too is
            // the break given up for mapped regions.
            if let Some(e) = (end as usize).checked_add(more).and_then(break_end) {
                let least = e - end as usize;
                if least != 0 && least < incr {
                    incr = least;
                    old = os::brk_grow(incr);
                }
            }
        }
        if old.is_null() {
            self.brk_failed = true;
            return false;
        }
        if old != end {
            // Another thread of the program moved the break between our
            // check and our sbrk: what we got is not next to our region.
            // Give it back if the break is still ours to move, and stay off it.
            if os::brk_top() == old.add(incr) {
                os::brk_shrink(incr);
            }
            self.brk_failed = true;
            return false;
        }
        if !crate::zonemap::grow_ours(end, end.add(incr)) {
            os::brk_shrink(incr);
            return false;
        }
        self.tlsf.grow_tail(end, incr);
        self.brk_bytes += incr;
        self.traced();
        true
    }

    unsafe fn grow_mmap(&mut self, need: usize) -> bool {
        let hdr = align_up(core::mem::size_of::<Region>(), ALIGN);
        let min = match need.checked_add(hdr + SENTINEL + os::PAGE) {
            Some(l) => align_up(l.max(REGION_MIN), os::PAGE),
            None => return false,
        };
        let want = region_len(min, self.mmap_region_bytes);
        // A freed mapping the program wrote, if one is kept, before fresh
        // memory: up to twice the step, so that a small heap does not take
        // a big block's mapping whole.
        let (base, len) = match adopt(min, want.saturating_mul(2)) {
            Some(m) => m,
            None => {
                let base = os::map(want);
                if base.is_null() {
                    return false;
                }
                if HUGE_PAGES && want >= HUGE_PAGE {
                    os::huge_pages(base, want);
                }
                (base, want)
            }
        };
        if !crate::zonemap::add_ours(base, base.add(len)) {
            os::unmap(base, len);
            return false;
        }
        let r = base as *mut Region;
        r.write(Region::empty(KIND_MMAP));
        (*r).map_base = base;
        (*r).map_len = len;
        if !self.tlsf.add_region(base.add(hdr), base.add(len), r) {
            crate::zonemap::remove_ours(base, base.add(len));
            os::unmap(base, len);
            return false;
        }
        self.regions.push(r);
        self.mmap_regions += 1;
        self.mmap_region_bytes += len;
        self.traced();
        true
    }

    /// The break grows again: if it was just trimmed, the program is cycling
    /// (grow, free the tail, grow again), and every cycle would cost two
    /// system calls and page faults on every fresh page. At each such cycle
    /// (less than THRASH_NS after the trim), trims keep twice the free tail
    /// the last one kept plus what it gave back (up to BOOST_MAX): what the
    /// program took back at once, with room for the next swing, which is
    /// seldom smaller (bench/large: the first cycle's 55 MiB, kept once,
    /// would be cut again in steps of 2-17 MiB). A trim more than
    /// BOOST_LIFE_NS after the last cycle keeps no extra tail again.
    fn note_growth(&mut self) {
        if self.last_trim == 0 {
            return;
        }
        let now = os::coarse_ns();
        self.last_cycle = 0;
        if now.wrapping_sub(self.last_trim) < THRASH_NS {
            // What was kept plus what was cut: what the program took.
            self.pad_boost = ((self.pad_boost + self.last_cut) * 2).clamp(1 << 20, BOOST_MAX);
            self.boost_at = now;
            self.last_cycle = self.cycle_cut;
        }
        self.cycle_cut = 0;
        self.last_trim = 0;
    }

    /// The program freed `bytes` of blocks mapped on their own, whose size
    /// the heap serves from now on (freeing them raised the dynamic mmap
    /// threshold): a growth of the break soon after is the same cycle as
    /// after a trim, the memory given back being taken again, so it counts
    /// as one (`note_growth`). bench/realloc's vectors: batch 1 is mapped
    /// and unmapped, batch 2 grows the break; without this, the trim after
    /// batch 2 gave its 23 MiB back and batch 3 faulted them in again.
    pub fn note_unmapped(&mut self, bytes: usize) {
        let now = os::coarse_ns();
        if self.last_trim != 0 && now.wrapping_sub(self.last_trim) < THRASH_NS {
            self.last_cut = self.last_cut.saturating_add(bytes);
        } else {
            self.last_cut = bytes;
        }
        self.cycle_cut = self.cycle_cut.saturating_add(bytes);
        self.last_trim = now.max(1);
    }

    /// Tells the trace (if any) the heap's new size.
    #[inline]
    pub(super) fn traced(&self) {
        crate::events::trace_heap(self.brk_bytes + self.mmap_region_bytes);
    }
}

/// Where the heap starts when the break is at `cur`: the next zone granule,
/// so that its layout does not depend on where the kernel put the break
/// (page-aligned, at random): the heap's first blocks and the free space
/// after them start at the same offsets in their granules in every run.
/// (`bench/large` peaked at 172 MiB in 11 runs of 12 and at 162 MiB in the
/// one whose break started at a granule, once its few small blocks no longer
/// took a zone at the heap's start; 162 MiB in 6 of 6 with this.) The pages
/// skipped are never touched: they cost address space, not memory.
fn heap_start(cur: usize) -> usize {
    align_up(cur, crate::zonemap::ZONE_SIZE)
}

/// Where the break goes when it grows to at least `e`: one page past a zone
/// granule's start. The break's sentinel is written in the page below the
/// break, and that page stays resident; placed there, it is the page where
/// a zone that later takes the granule keeps its header and first blocks.
/// (A page-aligned break left a page touched at a random place in most
/// granules: 32 threads of `threads32` held 194 such pages, 0.8 MiB, in
/// their 384 zones.)
fn break_end(e: usize) -> Option<usize> {
    let g = crate::zonemap::ZONE_SIZE;
    e.saturating_sub(os::PAGE)
        .checked_add(g - 1)
        .map(|x| (x & !(g - 1)) + os::PAGE)
}
