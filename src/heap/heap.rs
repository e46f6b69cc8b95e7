//! The shared heap: one TLSF index over the break region and any mmap'd
//! regions, behind one lock.
//!
//! Owns: where heap memory comes from and when it goes back.
//! - The break region grows with `sbrk` (by the request plus `top_pad`,
//!   rounded to pages) and shrinks with a negative `sbrk` as soon as its free
//!   tail exceeds `trim_threshold`, keeping `top_pad` bytes. Before moving the
//!   break we check that `sbrk(0)` is still our end: if anything else moved it,
//!   or it cannot grow (ENOMEM, RLIMIT_DATA), the heap continues in mmap'd
//!   regions.
//! - mmap'd regions (at least `REGION_MIN`) are unmapped as soon as they are
//!   wholly free, except the last one, kept against thrashing. Where they
//!   are the whole heap (the Rust crate), they grow by half the heap and ask
//!   for transparent huge pages (`region_len`).
//!
//! - Free space goes back with `MADV_DONTNEED`: the whole pages of free
//!   chunks of 256 KiB or more once they stayed free a purge interval
//!   (`maybe_purge`, 250 ms), and, once the resident set grew 4 MiB past
//!   where it was left, those of the big free chunks that are sparsely
//!   resident (`purge_sparse`, taken out of the index meanwhile: no system
//!   call under the lock).
//!
//! Invariant: every region in `regions` is indexed by `tlsf` and
//! `in_use + borrowed == sum of used chunk sizes`. Cost: the TLSF operation plus, rarely,
//! one system call; the lock is a futex mutex (see `lock`).

use crate::chunk::*;
use crate::config;
use crate::lock::Lock;
use crate::os;
use crate::region::{sentinel_region, Region, RegionList, KIND_BRK, KIND_MMAP};
use crate::tlsf::{is_partial, RegionCheck, Tlsf, PARTIAL, PURGED, STAMP_MIN, STAMP_OFF};
use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Bytes freed between two purges of large free chunks.
const PURGE_STEP: usize = 8 << 20;
/// A growth of the break this soon after a trim counts as a cycle.
const THRASH_NS: usize = 250_000_000;
/// At most one purge per this many nanoseconds.
const PURGE_INTERVAL_NS: usize = 250_000_000;
/// Free chunks are stamped with `coarse_ns() >> EPOCH_SHIFT` (268 ms).
const EPOCH_SHIFT: u32 = 28;
/// Free chunks at least this big have their inner pages purged.
const PURGE_MIN: usize = 256 << 10;
/// At most this many bytes are discarded per call: a purge goes on over the
/// next frees, so that no single free pays for a heap's worth of madvise
/// (discarding costs about 55 us per resident MiB here, so a purge of
/// 200 MiB in one call would take about 11 ms). 128 KiB take about 20k
/// cycles: with 512 KiB, purge steps were 9-12 of the 11-17 frees per run of
/// `bench/latency` that took over 100k cycles; with 128 KiB, 1-2.
const PURGE_BUDGET: usize = 128 << 10;

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
const BOOST_LIFE_NS: usize = 1_000_000_000;

/// A block at the break's tail this big or more grows the break rather than
/// move (see `resize_in_place`).
const MOVE_MAX: usize = 256 << 10;

/// Smallest mmap'd heap region.
const REGION_MIN: usize = 1 << 20;
/// A transparent huge page (the PMD size with 4 KiB pages, x86_64 and
/// aarch64).
const HUGE_PAGE: usize = 2 << 20;
/// Largest growth step of a heap in mmap'd regions (see `region_len`).
const REGION_STEP_MAX: usize = 64 << 20;

/// What the purge asks of the frees that do not reach the heap (the medium
/// caches', see `mcache`): `PURGE_IDLE`, `PURGE_DUE` (bytes enough were
/// freed: a free may start one, the interval decides) or `PURGE_ON` (one is
/// part way: every free runs a step, as every heap free does).
static PURGE_STATE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
pub const PURGE_IDLE: u8 = 0;
pub const PURGE_DUE: u8 = 1;
pub const PURGE_ON: u8 = 2;

/// While the purge is due: the coarse clock's reading (`os::coarse_ns`)
/// before which `maybe_purge` would not start one (0: at once), so that the
/// frees outside the heap look at the clock, not take the heap's lock, to
/// learn whether it is time.
static PURGE_AFTER: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// `PURGE_AFTER`: while the purge is due, no purge starts before this
/// reading of the coarse clock.
#[inline]
pub fn purge_after() -> usize {
    PURGE_AFTER.load(core::sync::atomic::Ordering::Relaxed)
}

/// The purge's state for frees outside the heap (a relaxed load).
#[inline(always)]
pub fn purge_state() -> u8 {
    PURGE_STATE.load(core::sync::atomic::Ordering::Relaxed)
}

/// Chunk sizes below this are not rounded by `big_size`: the requests the
/// export layer gives it are above the medium classes (`mcache::MC_MAX`,
/// 1 MiB; this layer cannot name it).
const BIG_MIN: usize = 1 << 20;

/// The chunk size the heap gives a request of chunk size `csize` above the
/// medium classes: rounded up to one of 8 sizes per power of two (a 12.5%
/// step), page multiples, each the first size of a TLSF list.
///
/// A freed big chunk between two blocks in use stays in the free lists at
/// its size; rounded, the next request of its class takes it whole, at the
/// same address (a search for a list's first size looks in that list
/// first, where every chunk fits), and the first page the program writes
/// there, with the block's header, is resident already; a chunk cut from a
/// bigger one leaves a rest that is a class size too. Unrounded, the next
/// request of about its size was cut from the back of some free chunk, at
/// an address never used before: a page fault in malloc or at the program's
/// first write, and a page that stayed resident in the free space for good
/// (the purge runs every 250 ms, and a chunk cut from or merged is recent
/// again). `bench/mthreads 8 4e5 16 256k 64M s` (`large-8`: 8 threads, 16
/// live blocks each, 256 KiB-64 MiB with a 1/size² density, one byte
/// written per block) took 44-51k page faults and peaked at 170-199 MiB
/// unrounded; 5-7k and 20-22 MiB so (jemalloc: 19k and 22 MiB). The waste
/// is address space: a program that fills its block touches none of the
/// tail. (Measured when the medium classes ended at 256 KiB and this
/// rounded from 64 KiB, 4 sizes per power of two below 1 MiB.) Tried: 4
/// sizes per power of two all the way up, `large-8` at 13-24 MiB but
/// `bench/large` at 204 MiB against 188 (this: 175); 4 up to 4 MiB, 11-16
/// MiB and 182, but 1 MiB blocks became 1.25 MiB ones, and in
/// `c_tests/brk.c` a free tail under the trim threshold stayed; 8 all the
/// way, `large-8` at 22-38 MiB; the size plus a page (so that 1 MiB stays
/// 1 MiB) and a look at the class's list first: a rest cut off was no class
/// size, 20k faults.
#[inline]
pub fn big_size(csize: usize) -> usize {
    if csize < BIG_MIN {
        return csize;
    }
    let msb = usize::BITS - 1 - csize.leading_zeros();
    let step = (1usize << (msb - 3)).max(os::PAGE);
    // (csize <= 2 * MAX_REQUEST < 2^47: no overflow.)
    (csize + step - 1) & !(step - 1)
}

/// Free chunks this big or more are looked at by the sparse purge.
const SPARSE_MIN: usize = 1 << 20;
/// A sparse purge check at most this many nanoseconds (coarse clock) after
/// the last, if a big free was made.
const SPARSE_NS: usize = 20_000_000;
/// Chunks looked at per pass, and list entries visited at most.
const SPARSE_CHUNKS: usize = 8;
const SPARSE_VISITS: usize = 64;
/// A chunk's density is sampled in this many windows of `SPARSE_WINDOW`
/// pages (`mincore`), spread over it.
const SPARSE_SAMPLES: usize = 4;
const SPARSE_WINDOW: usize = 64;
/// A chunk with more than one resident page in this many sampled is dense:
/// its pages are kept (a program that fills its blocks reuses them). (One
/// in 8 was too low: a free chunk cut from over and over keeps the pages
/// where successive blocks ended, in runs; samples of such chunks found
/// 10-40% resident.)
const SPARSE_DENSE: usize = 2;
/// Fewer resident pages than this (estimated from the samples) are not
/// worth a discard.
const SPARSE_WORTH: usize = 16;

/// A free chunk this big is purged if its samples are not dense, even when
/// they find too few resident pages to tell (those of a chunk of GiBs with
/// a page or two per block that was cut from it find none), and even when
/// the last big free made it. bench/grid's `short` cell of 1-64 MiB (one
/// block at a time, first and last bytes written): the heap is one free
/// chunk, always the last freed, whose interior collects the last page of
/// every size drawn: peak RSS 24.8 MB (tcmalloc 9.4, jemalloc 10.0); 11.1
/// so, for 0.084 s of CPU instead of 0.025 (tcmalloc 0.093), the pages
/// faulted in again. 16 threads: 66 -> 35 MB (jemalloc 36).
const SPARSE_HUGE: usize = 64 << 20;
/// A sparse purge check is due (see `purge_sparse`).
static SPARSE_DUE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// When the last sparse purge ran (coarse clock).
static SPARSE_AT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
/// The resident set (bytes) the last pass left, or the lowest a check
/// saw since; 0: the next check sets it.
static SPARSE_BASE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
/// How far the resident set may grow past `SPARSE_BASE` before a pass: the
/// pages of freed big blocks retained for reuse. (8 MiB before: bench/grid's
/// cells of 1-64 MiB, peak RSS with 8 -> 4 MiB, medians of 5: long at 1
/// thread 30.1 -> 15.8 MB (jemalloc 18.6), for 0.117 -> 0.136 s of CPU;
/// long at 16 threads 53 -> 39 MB; cross at 16, 45 -> 35 MB (glibc 25);
/// c_tests/bigreuse.c, 1231 faults, under its bound.)
const SPARSE_SLACK: usize = 4 << 20;
/// The list the next pass starts from (`Tlsf::walk_free_from`).
static SPARSE_FROM: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
/// Bytes the sparse purge discarded (statistics; also in `released`).
pub static SPARSE_PURGED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// A check after this many big frees, or `SPARSE_NS` after the last,
/// whichever comes first (a program churning big blocks touches new pages
/// faster than the coarse clock ticks).
const SPARSE_FREES: usize = 256;

/// Whether the program writes the ends of its big blocks: about 256 times
/// the share of the watched blocks whose request's last page was resident
/// when they were freed (an exponential average over about 16; see
/// `Heap::alloc_big`, `check_end`). Racy updates lose a sample at worst.
static ENDS: AtomicUsize = AtomicUsize::new(0);
/// Ends are written while `ENDS` is at least this (half of those watched).
const ENDS_MIN: usize = 128;
/// One big block in this many is watched (if its request ends in a page of
/// its own): one `mincore` when it is freed, outside the heap's lock. This
/// many while the watch learns (its first `ENDS_LEARN` samples) and while
/// the answer is open (`ENDS` between `ENDS_LOW` and `ENDS_HIGH`); else
/// `ENDS_SAMPLE_SETTLED`.
const ENDS_SAMPLE: usize = 16;
/// While ends are written, one big cut in this many is made on the lattice
/// all the same (a probe): blocks cut to their request end in the page of
/// the next header, so only such blocks (and those taken whole) tell
/// whether the program still writes its ends; and the probes' headers, in
/// the memo, let `RECUR` see the lattice recur again. (Probing 1 in 256
/// with the watch: `grid 4 4e4 1M 64M short 4`, whose lattice recurs once
/// found again, 18.8k -> 23.7k faults, medians of 7.)
const ENDS_PROBE: usize = 16;
/// One big block in this many is watched while the answer is settled (see
/// `ENDS_MASK`; a multiple of `ENDS_PROBE`: the blocks watched are probes).
/// Every block was 1 in 16 until big17e: 6.1k `mincore` calls in
/// `bench/mthreads 8 4e5 16 256k 64M s` (`large-8`), 500 in the 8000
/// blocks of `grid 4 8e3 1M 64M cross 4`.
const ENDS_SAMPLE_SETTLED: usize = 256;
const _: () = assert!(
    ENDS_SAMPLE.is_power_of_two()
        && ENDS_SAMPLE_SETTLED.is_power_of_two()
        && ENDS_SAMPLE.is_multiple_of(ENDS_PROBE)
        && ENDS_SAMPLE_SETTLED.is_multiple_of(ENDS_PROBE)
);
/// Samples taken at `ENDS_SAMPLE` first.
const ENDS_LEARN: usize = 16;
/// `ENDS` below this, or this or more, is settled: some 4-5 samples
/// the other way (about 1000 big blocks at `ENDS_SAMPLE_SETTLED`) bring it
/// back between them.
const ENDS_LOW: usize = 48;
const ENDS_HIGH: usize = 208;
/// Samples `check_end` took (saturating at `ENDS_LEARN`).
static ENDS_SEEN: AtomicUsize = AtomicUsize::new(0);
/// One less than the number of big blocks of which one is watched now
/// (`ENDS_SAMPLE` or `ENDS_SAMPLE_SETTLED`), set by `check_end`:
/// `Heap::alloc_big` tests the count of big blocks with it (a load and an
/// `and`).
static ENDS_MASK: AtomicUsize = AtomicUsize::new(ENDS_SAMPLE - 1);

/// The header pages big cuts wrote lately (direct-mapped by a hash of the
/// page number), and how often the lattice's header page was among them
/// (see `Heap::alloc_big`). Cost: a multiply, two loads and a store a big
/// cut, under the heap's lock; 8 KiB of the heap's state.
struct CutMemo {
    pages: [usize; MEMO_PAGES],
}

const MEMO_PAGES: usize = 1024;
const _: () = assert!(MEMO_PAGES.is_power_of_two());

/// About 256 times the share of big cuts lately (an exponential average
/// over about 32) whose header page on the lattice was known (`CutMemo`).
/// Written under the heap's lock, read by `purge_sparse` without it.
static RECUR: AtomicUsize = AtomicUsize::new(256);
/// The lattice's pages recur while `RECUR` is at least this (half of them
/// known: bench/grid's 1-64 MiB cells measured on the lattice, *short*
/// 97-99%, *long* at 16 threads 77%, `mthreads ... s` 89%; *bulk* and
/// *cross* at 4-16 threads 8-43%).
const RECUR_MIN: usize = 128;

impl CutMemo {
    const fn new() -> Self {
        CutMemo {
            pages: [0; MEMO_PAGES],
        }
    }

    #[inline]
    fn slot(addr: usize) -> (usize, usize) {
        let page = addr / os::PAGE;
        let bits = MEMO_PAGES.trailing_zeros();
        (
            page.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (usize::BITS - bits),
            page,
        )
    }

    /// Notes a header written at `addr`.
    #[inline]
    fn note(&mut self, addr: usize) {
        let (i, p) = Self::slot(addr);
        self.pages[i] = p;
    }

    /// Is the page of `addr` (the header a cut on the lattice would write)
    /// known, or have such pages been known lately (`RECUR`)? Counts it.
    #[inline]
    fn recurs(&mut self, addr: usize) -> bool {
        let (i, p) = Self::slot(addr);
        let known = self.pages[i] == p;
        let r = RECUR.load(Ordering::Relaxed);
        let r = r - r / 32 + if known { 8 } else { 0 };
        RECUR.store(r, Ordering::Relaxed);
        known || r >= RECUR_MIN
    }
}

/// Are big blocks cut to their requests now (see `Heap::alloc_big`)?
#[inline]
fn cut_to_request() -> bool {
    ENDS.load(Ordering::Relaxed) >= ENDS_MIN && RECUR.load(Ordering::Relaxed) < RECUR_MIN
}

/// Blocks watched at once.
const WATCH: usize = 4;
/// The address of the end of a watched block just freed (0: none), for
/// `check_end`.
static END_CHECK: AtomicUsize = AtomicUsize::new(0);

/// Looks whether the page of a watched block's end (see `END_CHECK`) is
/// resident, and updates `ENDS`. Without the heap's lock: the page may have
/// been reused or purged meanwhile, which only blurs a sample.
#[cold]
fn check_end() {
    let a = END_CHECK.swap(0, Ordering::Relaxed);
    if a == 0 {
        return;
    }
    let mut v = [0u8; 1];
    // SAFETY: a read-only query of a page of our heap (the break's or a
    // heap region's); an error (the range given back meanwhile) says no.
    let resident =
        unsafe { os::resident((a & !(os::PAGE - 1)) as *const u8, 1, &mut v) } && v[0] & 1 != 0;
    let e = ENDS.load(Ordering::Relaxed);
    let e = e - e / 16 + if resident { 16 } else { 0 };
    ENDS.store(e, Ordering::Relaxed);
    // The watch's rate: 1 in ENDS_SAMPLE while learning or open, else 1
    // in ENDS_SAMPLE_SETTLED.
    let n = ENDS_SEEN.load(Ordering::Relaxed);
    if n < ENDS_LEARN {
        ENDS_SEEN.store(n + 1, Ordering::Relaxed);
    }
    let open = n < ENDS_LEARN || (ENDS_LOW..ENDS_HIGH).contains(&e);
    ENDS_MASK.store(
        if open {
            ENDS_SAMPLE - 1
        } else {
            ENDS_SAMPLE_SETTLED - 1
        },
        Ordering::Relaxed,
    );
}

/// The sparse purge, if due: call it after a heap free, without the heap's
/// lock; then the check of a watched big block's end, if one is due
/// (`check_end`). Two relaxed loads when neither is due.
///
/// Big blocks that a program writes only in part (a header, a few fields,
/// the end) leave a few resident pages each in the free space; the next
/// blocks are cut at other offsets and touch other pages, so the free space
/// accumulates resident pages that nothing reuses (`bench/grid` long 1-64
/// MiB, 4 live blocks with their first and last bytes written: 112 MB of
/// peak RSS, jemalloc 19 MB), and a block cut over them later holds them
/// too. The 250 ms purge (`maybe_purge`) comes too late for a program that
/// churns.
///
/// A check, after `SPARSE_FREES` frees of `SPARSE_MIN` bytes or more or
/// `SPARSE_NS` after the last, reads the process's resident set
/// (`/proc/self/statm`). Only when it grew `SPARSE_SLACK` past where the
/// last pass left it (the retained budget) does a pass run: it samples up
/// to `SPARSE_CHUNKS` big free chunks with `mincore` and discards
/// (`MADV_DONTNEED`) those not dense (at most half their sampled pages
/// resident), but the chunk the last big free made, likeliest to be reused
/// next, unless it is `SPARSE_HUGE` or more. A program that reuses its free space (bench/large, whose blocks
/// are written whole; c_tests/bigreuse.c, whose freed blocks are reused at
/// their address) keeps its resident set where it is and makes no pass. A
/// chunk is taken out of the index while its pages are discarded, so no
/// system call runs under the heap's lock. Cost: 3 system calls a check; a
/// pass 2 lock acquisitions, at most `SPARSE_CHUNKS * SPARSE_SAMPLES`
/// `mincore` and `SPARSE_CHUNKS` `madvise` calls, and the page faults of
/// the pages discarded that the program uses again.
#[inline]
pub fn purge_sparse() {
    if SPARSE_DUE.load(Ordering::Relaxed) {
        purge_sparse_slow();
    }
    if END_CHECK.load(Ordering::Relaxed) != 0 {
        check_end();
    }
}

#[cold]
fn purge_sparse_slow() {
    if !SPARSE_DUE.swap(false, Ordering::Relaxed) {
        return; // another thread runs it
    }
    SPARSE_AT.store(os::coarse_ns(), Ordering::Relaxed);
    // The retained budget: a pass only once the process's resident set
    // grew `SPARSE_SLACK` past where the last pass (or the lowest check
    // since) left it. A program that reuses its free space (the resident
    // set stays where it is) is left alone, whatever it frees; one whose
    // new blocks keep touching fresh pages is purged every `SPARSE_SLACK`.
    // (Without /proc: every check is a pass.)
    if let Some(rss) = os::resident_bytes() {
        let base = SPARSE_BASE.load(Ordering::Relaxed);
        if base == 0 || rss < base {
            SPARSE_BASE.store(rss, Ordering::Relaxed);
            return;
        }
        if rss - base <= SPARSE_SLACK {
            return;
        }
    }
    let mut cand = [(null_mut::<Chunk>(), 0usize); SPARSE_CHUNKS];
    let mut n = 0;
    HEAP.with(|h| {
        let mut visits = 0;
        let last = h.last_big;
        // SAFETY: under the lock the index is consistent; chunks in the
        // lists of SPARSE_MIN and up are free chunks of at least STAMP_MIN.
        let at = unsafe {
            h.tlsf
                .walk_free_from(SPARSE_MIN, SPARSE_FROM.load(Ordering::Relaxed), |c| {
                    visits += 1;
                    if size(c) >= SPARSE_MIN
                        && (c != last || size(c) >= SPARSE_HUGE)
                        && crate::tlsf::stamp(c) != PURGED
                    {
                        cand[n] = (c, size(c));
                        n += 1;
                    }
                    n < SPARSE_CHUNKS && visits < SPARSE_VISITS
                })
        };
        SPARSE_FROM.store(at.unwrap_or(0), Ordering::Relaxed);
    });
    // Which are sparse (without the lock: mincore only reads the page
    // tables, and a chunk that changed meanwhile is not taken below).
    let mut k = 0;
    for i in 0..n {
        let (c, s) = cand[i];
        if sparse(inner(c, s)) {
            cand[k] = cand[i];
            k += 1;
        }
    }
    if k == 0 {
        SPARSE_BASE.store(0, Ordering::Relaxed); // the next check sets it
        return;
    }
    // (A child forked between the two sections below starts with the held
    // chunks out of the index, and never gives them back: at most
    // SPARSE_CHUNKS free chunks of address space, their pages discarded or
    // about to be; `borrowed` keeps `check` consistent in the child.)
    let mut held = [false; SPARSE_CHUNKS];
    HEAP.with(|h| {
        for i in 0..k {
            // SAFETY: take_exact only reads c once it found it in the list.
            held[i] = unsafe { h.tlsf.take_exact(cand[i].0, cand[i].1) };
            if held[i] {
                h.borrowed += cand[i].1;
            }
        }
    });
    let mut gone = 0;
    for i in 0..k {
        if held[i] {
            let (lo, hi) = inner(cand[i].0, cand[i].1);
            // SAFETY: the chunk is ours and out of the index: no other
            // thread can be given its pages until it is freed back; its
            // header and links lie below `lo`.
            if hi > lo && unsafe { os::discard(lo as *mut u8, hi - lo) } {
                gone += hi - lo;
            }
        }
    }
    HEAP.with(|h| {
        for i in 0..k {
            if held[i] {
                // SAFETY: taken by take_exact above, in use since.
                unsafe { h.give_back(cand[i].0) };
            }
        }
        h.released += gone;
    });
    SPARSE_PURGED.fetch_add(gone, Ordering::Relaxed);
    // The base the next checks measure from: what the pass left. But while
    // big blocks are cut to their requests (the program writes their ends,
    // and the lattice's pages seldom recur, see `Heap::alloc_big`), their
    // pages seldom serve again, so a discard costs few faults: then a pass that left the
    // resident set above the base it started from (its pages were in
    // chunks it did not visit) leaves the base where it was, so that the
    // next check makes another pass, from the next chunks. Raised to what
    // each pass left, the base ratcheted up by the slack at every pass that
    // could not catch up (bench/grid's bulk and cross 1-64 MiB at 8-16
    // threads, whose free space is split into many chunks: 17-28 MB of
    // peak RSS, glibc 22-23; 12-17 so). A program whose blocks recur on the
    // lattice reuses the pages a pass would discard (c_tests/bigreuse.c:
    // 1.6k faults, 7.8k with the base held).
    let left = os::resident_bytes().unwrap_or(0);
    let base = SPARSE_BASE.load(Ordering::Relaxed);
    let hold = base != 0 && cut_to_request();
    SPARSE_BASE.store(if hold { left.min(base) } else { left }, Ordering::Relaxed);
}

/// The whole pages of free chunk `c` of `s` bytes past its links and stamp.
fn inner(c: *mut Chunk, s: usize) -> (usize, usize) {
    let base = c as usize;
    (
        align_up(base + STAMP_OFF + 8, os::PAGE),
        (base + s) & !(os::PAGE - 1),
    )
}

/// Is range `[lo, hi)` worth a discard: at most one resident page in
/// `SPARSE_DENSE` of the pages sampled, and an estimated `SPARSE_WORTH`
/// resident pages or more? False if the kernel could not say (the range
/// was given back meanwhile).
fn sparse((lo, hi): (usize, usize)) -> bool {
    if hi <= lo {
        return false;
    }
    let pages = (hi - lo) / os::PAGE;
    let mut v = [0u8; SPARSE_WINDOW];
    let (mut seen, mut resident) = (0, 0);
    for k in 0..SPARSE_SAMPLES {
        let first = (pages - SPARSE_WINDOW.min(pages)) * k / (SPARSE_SAMPLES - 1).max(1);
        let w = SPARSE_WINDOW.min(pages - first);
        // SAFETY: a read-only query of our own address range; an error
        // (ENOMEM: unmapped meanwhile) only says no.
        if !unsafe { os::resident((lo + first * os::PAGE) as *const u8, w, &mut v) } {
            return false;
        }
        seen += w;
        resident += v[..w].iter().filter(|b| **b & 1 != 0).count();
        if pages <= SPARSE_WINDOW {
            break;
        }
    }
    // None resident in the samples, or too few to pay for the madvise (its
    // cost is the range's page tables, and the other threads' TLBs): left.
    resident * SPARSE_DENSE <= seen
        && (resident * pages >= SPARSE_WORTH * seen || pages * os::PAGE >= SPARSE_HUGE)
}

/// Bytes of heap chunks in use (a relaxed snapshot, without the lock).
pub fn in_use_hint() -> usize {
    crate::events::heap_in_use()
}

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

/// The heap's state; only touched under [`HEAP`]'s lock.
pub struct Heap {
    pub tlsf: Tlsf,
    pub regions: RegionList,
    brk: Region,
    brk_started: bool,
    /// The break cannot (or may no longer) be grown.
    brk_failed: bool,
    mmap_regions: usize,
    /// Bytes of chunks in use.
    pub in_use: usize,
    /// Bytes of free chunks the sparse purge holds out of the index.
    borrowed: usize,
    /// Frees of big chunks since the sparse purge was last made due.
    big_frees: usize,
    /// The free chunk the last big free made (or merged into): the one the
    /// program is likeliest to reuse next, which the sparse purge leaves.
    last_big: *mut Chunk,
    pub brk_bytes: usize,
    pub mmap_region_bytes: usize,
    pub released: usize,
    /// Bytes freed since the last purge of large free chunks.
    dirty: usize,
    /// When the last purge ran (CLOCK_MONOTONIC ns).
    last_purge: usize,
    /// A purge that ran out of budget: the list to resume its walk from
    /// (see `Tlsf::walk_free_from`), else None.
    purge_at: Option<usize>,
    /// The epoch that purge started in: chunks indexed since are left.
    purge_before: usize,
    /// Bytes that purge left so far (chunks indexed in its epoch; a list the
    /// walk resumes in is counted again, which only starts the next purge
    /// a little sooner).
    purge_left: usize,
    /// When the break was last trimmed (or own mappings were freed, see
    /// `note_unmapped`), 0 once it grew again.
    last_trim: usize,
    /// When `pad_boost` last grew (coarse clock).
    boost_at: usize,
    /// Extra free tail kept on trims while the program cycles.
    pad_boost: usize,
    /// Bytes the last trim (or burst of unmaps) gave back.
    last_cut: usize,
    /// Bytes trimmed since the break last grew.
    cycle_cut: usize,
    /// Bytes trimmed between the last two growths of the break, if the
    /// last one came within THRASH_NS of a trim (a cycle), else 0.
    last_cycle: usize,
    /// The reserves (see "Reserves" below), linked through their `RES_NEXT`
    /// and `RES_PREV` words; null: none.
    reserves: *mut Chunk,
    /// A reserve is being taken: a growth of the break takes the step.
    for_reserve: bool,
    /// Big blocks allocated (see `alloc_big`).
    big_allocs: usize,
    /// Big blocks whose ends `check_end` looks at when they are freed:
    /// (chunk, the address of the request's last bytes); 0: none.
    watch: [(usize, usize); WATCH],
    /// The header pages big cuts wrote lately.
    memo: CutMemo,
}

/// Acquisitions of the heap's lock that found it held (also counted in
/// `lock::CONTENDED`; statistics).
pub static HEAP_CONTENDED: core::sync::atomic::AtomicUsize =
    core::sync::atomic::AtomicUsize::new(0);

/// The process heap.
pub struct GlobalHeap {
    lock: Lock,
    heap: UnsafeCell<Heap>,
}

// SAFETY: the heap is only reached through `with`, which holds the lock.
unsafe impl Sync for GlobalHeap {}

/// What the heap calls when it cannot grow, before it gives up: a function
/// of the layer above that gives memory back to the OS and returns the bytes
/// it gave (the cache of freed large mappings: `large::trim`, registered at
/// start by `lib.rs`). It runs under the heap lock and must not take it.
static RELIEF: AtomicPtr<()> = AtomicPtr::new(null_mut());

/// Registers the heap's out-of-memory relief (see `RELIEF`).
pub fn set_relief(f: fn() -> usize) {
    RELIEF.store(f as *mut (), Ordering::Relaxed);
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

pub static HEAP: GlobalHeap = GlobalHeap {
    lock: Lock::new(),
    heap: UnsafeCell::new(Heap {
        tlsf: Tlsf::new(),
        regions: RegionList::new(),
        // (Kind 0 until the region starts: every field of HEAP is zero, so
        // it lies in .bss and only the pages the program touches are
        // resident. In .data, a first read mapped all of the library's
        // writable pages.)
        brk: Region::empty(0),
        brk_started: false,
        brk_failed: false,
        mmap_regions: 0,
        in_use: 0,
        borrowed: 0,
        big_frees: 0,
        last_big: null_mut(),
        brk_bytes: 0,
        mmap_region_bytes: 0,
        released: 0,
        dirty: 0,
        last_purge: 0,
        purge_at: None,
        purge_before: 0,
        purge_left: 0,
        last_trim: 0,
        boost_at: 0,
        pad_boost: 0,
        last_cut: 0,
        cycle_cut: 0,
        last_cycle: 0,
        reserves: null_mut(),
        for_reserve: false,
        big_allocs: 0,
        watch: [(0, 0); WATCH],
        memo: CutMemo::new(),
    }),
};

impl GlobalHeap {
    /// Runs `f` on the heap under the lock.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut Heap) -> R) -> R {
        config::init();
        let _g = self.lock.guard_counted(&HEAP_CONTENDED);
        // SAFETY: the lock gives exclusive access.
        f(unsafe { &mut *self.heap.get() })
    }

    /// `with`, if the heap's lock is free; None, having waited for nothing,
    /// if another thread holds it.
    pub fn try_with<R>(&self, f: impl FnOnce(&mut Heap) -> R) -> Option<R> {
        config::init();
        let _g = self.lock.try_guard()?;
        // SAFETY: the lock gives exclusive access.
        Some(f(unsafe { &mut *self.heap.get() }))
    }

    /// The heap lock (for the fork handlers).
    pub fn lock(&self) -> &Lock {
        &self.lock
    }
}

impl Heap {
    /// Allocates a chunk of `csize` bytes, growing the heap if needed.
    /// Null when memory is exhausted.
    #[inline]
    pub fn alloc(&mut self, csize: usize) -> *mut Chunk {
        // SAFETY: the index and regions are consistent under the lock.
        unsafe {
            let mut c = self.tlsf.alloc_keeping(csize);
            if c.is_null() {
                c = self.alloc_slow(csize, 0, 0);
            }
            if !c.is_null() {
                self.account_alloc(size(c));
            }
            c
        }
    }

    /// Allocates a chunk for a big request of `csize` bytes whose size class
    /// is `class` (`big_size(csize)`): a free chunk of about `class` whole,
    /// or `class` or `csize` bytes cut from a bigger one (`Tlsf::alloc_big`).
    /// Null when memory is exhausted.
    ///
    /// Cut at `class`, blocks lie on a lattice of class sizes from the free
    /// chunks' ends, where a program whose sizes repeat finds the header
    /// pages of the blocks before resident (`bench/mthreads 8 4e5 16 256k
    /// 64M s`, only the first bytes written: 89% of the cuts' header pages
    /// had been written before; 5.5-6k page faults in 98k big mallocs; cut
    /// at `csize`, 52k). But a block cut at `class` ends up to an eighth
    /// before the header past it, and a program that writes the end of its
    /// block faults in a page there besides the header's page (`bench/grid`
    /// 1-64 MiB, first and last bytes written: 2.2 faults a block at 4-16
    /// threads, 1.1 for glibc, whose chunks end with their requests; cut at
    /// `csize`: 1.1). So a cut is made at `csize` only while the program
    /// writes the ends of its big blocks (`ENDS`) and the lattice's header
    /// pages seldom recur (`RECUR`: the header page of the cut on the
    /// lattice is not among those big cuts wrote lately, in `memo`); but one
    /// cut in `ENDS_PROBE` is made on the lattice all the same. Where the
    /// pages recur, the ends do too: `grid 16 4e4 1M 64M short 4` (each
    /// block freed at once), 97% of the lattice's header pages known, 24k
    /// faults for 40k blocks on it, 30k at `csize`.
    pub fn alloc_big(&mut self, csize: usize, class: usize) -> *mut Chunk {
        self.big_allocs += 1;
        let ends = ENDS.load(Ordering::Relaxed) >= ENDS_MIN;
        let probe = self.big_allocs.is_multiple_of(ENDS_PROBE);
        // SAFETY: as alloc.
        unsafe {
            let mut c = self.tlsf.alloc_big(csize, class, ends, |a| {
                self.memo.recurs(a) || !ends || probe
            });
            if c.is_null() && self.grow_for(class, 0) {
                c = self.tlsf.alloc_big(csize, class, ends, |a| {
                    self.memo.recurs(a) || !ends || probe
                });
            }
            if c.is_null() {
                return c;
            }
            self.account_alloc(size(c));
            // the headers the cut wrote (the block's; the rest's past it)
            self.memo.note(c as usize);
            self.memo.note(c as usize + size(c));
            // Watch one block in `ENDS_MASK + 1` whose request ends in a
            // page of its own (not its header's, not the next header's).
            let end = c as usize + csize - 1;
            let page = |a: usize| a / os::PAGE;
            if self.big_allocs & ENDS_MASK.load(Ordering::Relaxed) == 0
                && page(end) != page(c as usize)
                && page(end) != page(c as usize + size(c))
            {
                self.watch[self.big_allocs / ENDS_SAMPLE % WATCH] = (c as usize, end);
            }
            c
        }
    }

    /// Allocates a chunk of `csize` bytes whose user pointer is aligned to
    /// `align` (> 16).
    pub fn alloc_aligned(&mut self, csize: usize, align: usize) -> *mut Chunk {
        self.alloc_aligned_at(csize, align, HDR)
    }

    /// Allocates a chunk of `csize` bytes whose address plus `at` is aligned
    /// to `align` (see `Tlsf::alloc_aligned_at`).
    pub fn alloc_aligned_at(&mut self, csize: usize, align: usize, at: usize) -> *mut Chunk {
        // SAFETY: as alloc.
        unsafe {
            let mut c = self.tlsf.alloc_aligned_at(csize, align, at);
            if c.is_null() {
                c = self.alloc_slow(csize, align, at);
            }
            if !c.is_null() {
                self.account_alloc(size(c));
            }
            c
        }
    }

    #[inline]
    fn account_alloc(&mut self, s: usize) {
        self.in_use += s;
        crate::events::heap_in_use_rose(self.in_use.saturating_sub(reserved()));
    }

    #[cold]
    unsafe fn alloc_slow(&mut self, csize: usize, align: usize, at: usize) -> *mut Chunk {
        if self.grow_for(csize, align) {
            let c = if align == 0 {
                self.tlsf.alloc_keeping(csize)
            } else {
                self.tlsf.alloc_aligned_at(csize, align, at)
            };
            if !c.is_null() {
                return c;
            }
        }
        null_mut()
    }

    /// Grows the heap so that a search for `csize` bytes aligned to `align`
    /// (0: 16) finds a chunk; whether it did.
    #[cold]
    unsafe fn grow_for(&mut self, csize: usize, align: usize) -> bool {
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

    unsafe fn grow_brk(&mut self, need: usize) -> bool {
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
        let len = match need.checked_add(hdr + SENTINEL + os::PAGE) {
            Some(l) => region_len(
                align_up(l.max(REGION_MIN), os::PAGE),
                self.mmap_region_bytes,
            ),
            None => return false,
        };
        let base = os::map(len);
        if base.is_null() {
            return false;
        }
        if HUGE_PAGES && len >= HUGE_PAGE {
            os::huge_pages(base, len);
        }
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

    /// Frees in-use chunk `c`, then gives memory back to the OS if the free
    /// tail of the break passed the trim threshold or an mmap'd region
    /// became wholly free.
    ///
    /// # Safety
    /// `c` is an in-use chunk of this heap (as `validate` checks).
    #[inline]
    pub unsafe fn free(&mut self, c: *mut Chunk) {
        // SAFETY: c was validated by the caller as an in-use chunk of ours.
        unsafe {
            let s = size(c);
            self.in_use -= s;
            crate::events::set_heap_in_use(self.in_use.saturating_sub(reserved()));
            let f = self.tlsf.free(c);
            let n = next(f);
            if is_sentinel(n) {
                self.release_tail(f, n);
            }
            if s >= SPARSE_MIN {
                self.last_big = f;
                self.note_big_free();
                self.unwatch(c as usize);
            }
            self.dirty += s;
            if self.dirty >= PURGE_STEP {
                self.maybe_purge();
                self.publish_purge();
            }
        }
    }

    /// If big chunk `c`, being freed, is watched (see `alloc_big`): leaves
    /// the address of its request's end for `check_end`.
    #[inline]
    fn unwatch(&mut self, c: usize) {
        for w in self.watch.iter_mut() {
            if w.0 == c {
                END_CHECK.store(w.1, Ordering::Relaxed);
                *w = (0, 0);
            }
        }
    }

    /// Notes a heap free of a big chunk: the sparse purge is due after
    /// `SPARSE_FREES` of them, or once its interval has passed.
    #[inline]
    fn note_big_free(&mut self) {
        self.big_frees += 1;
        if !SPARSE_DUE.load(Ordering::Relaxed)
            && (self.big_frees >= SPARSE_FREES
                || os::coarse_ns().wrapping_sub(SPARSE_AT.load(Ordering::Relaxed)) >= SPARSE_NS)
        {
            self.big_frees = 0;
            SPARSE_DUE.store(true, Ordering::Relaxed);
        }
    }

    /// Gives back a chunk the sparse purge took (`Tlsf::take_exact`), its
    /// inner pages discarded: indexed again, stamped `PURGED` if it merged
    /// with nothing, and the break's tail given back as after a free.
    ///
    /// # Safety
    /// `c` was taken by `take_exact` from this heap and not given back.
    unsafe fn give_back(&mut self, c: *mut Chunk) {
        let s = size(c);
        self.borrowed -= s;
        let f = self.tlsf.free(c);
        if f == c && size(f) == s {
            crate::tlsf::set_stamp(f, PURGED);
        }
        let n = next(f);
        if is_sentinel(n) {
            self.release_tail(f, n);
        }
    }

    /// A free that did not reach the heap (a medium cache's) while the
    /// purge is due or part way: does what a heap free would.
    pub fn purge_from_cache(&mut self) {
        if self.dirty >= PURGE_STEP {
            self.maybe_purge();
        }
        self.publish_purge();
    }

    /// Tells frees outside the heap whether the purge wants them.
    #[inline]
    fn publish_purge(&self) {
        let v = if self.purge_at.is_some() || self.tlsf.partial_from != 0 {
            PURGE_ON
        } else if self.dirty >= PURGE_STEP {
            let after = if self.last_purge == 0 {
                0
            } else {
                self.last_purge + PURGE_INTERVAL_NS
            };
            PURGE_AFTER.store(after, core::sync::atomic::Ordering::Relaxed);
            PURGE_DUE
        } else {
            PURGE_IDLE
        };
        if PURGE_STATE.load(core::sync::atomic::Ordering::Relaxed) != v {
            PURGE_STATE.store(v, core::sync::atomic::Ordering::Relaxed);
            crate::gate::set(crate::gate::PURGE, v != PURGE_IDLE);
        }
    }

    /// Purges if the last purge is at least `PURGE_INTERVAL_NS` old: memory
    /// a program frees and soon reuses is not given back and faulted in again
    /// over and over (jemalloc and mimalloc delay purging for the same
    /// reason), while a heap that stays free after a burst goes back at the
    /// next free past the interval. A purge that ran out of budget goes on
    /// at once.
    #[cold]
    fn maybe_purge(&mut self) {
        if self.purge_at.is_some() || self.tlsf.partial_from != 0 {
            self.purge();
            return;
        }
        // (Until the purge, every free looks at the clock: a program that
        // went quiet gets its memory back at its next free. The coarse clock
        // costs a few nanoseconds.)
        let now = os::coarse_ns();
        // Free chunks are stamped with the interval they were indexed in
        // (as of the last look at the clock; intervals of 2^28 ns, about the
        // purge interval): the purge leaves this one's.
        self.tlsf.epoch = now >> EPOCH_SHIFT;
        if self.last_purge == 0 {
            // The first time: start the clock, so that a program's first
            // 8 MiB of frees do not purge what it is about to reuse.
            self.last_purge = now;
        } else if now.wrapping_sub(self.last_purge) >= PURGE_INTERVAL_NS {
            self.last_purge = now;
            self.purge_at = Some(0);
            self.purge_before = self.tlsf.epoch;
            self.purge_left = 0;
            self.purge();
        }
    }

    /// Returns the whole pages inside large free chunks to the OS
    /// (`MADV_DONTNEED`), so that RSS falls after a burst even where the break
    /// cannot shrink. Starts once per `PURGE_STEP` bytes freed; visits only
    /// the chunks of `PURGE_MIN` bytes or more, and discards at most
    /// `PURGE_BUDGET` bytes per call, resuming at the next free.
    #[cold]
    fn purge(&mut self) {
        // Only chunks indexed before the purge's interval: one freed (or cut
        // from) in this one may be about to be reused, and discarding it
        // would fault it in again. The bytes left count as freed since this
        // purge, so the first free past the next interval purges them (else
        // a burst freed just before a purge stayed resident until 8 MiB more
        // were freed, which an idle program never does).
        // (A chunk the walk left part way through may have moved to another
        // list since, when cut from or merged: it goes on from there.)
        let from = match self.tlsf.partial_from {
            0 => self.purge_at.unwrap_or(usize::MAX),
            k => self.purge_at.unwrap_or(usize::MAX).min(k - 1),
        };
        self.tlsf.partial_from = 0;
        let (n, left, at) = self.discard_free(PURGE_MIN, self.purge_before, from, PURGE_BUDGET);
        self.released += n;
        self.purge_left += left;
        self.purge_at = at;
        // Until it ends, every free comes back here (`free` tests `dirty`).
        self.dirty = if at.is_some() {
            PURGE_STEP
        } else {
            self.purge_left
        };
    }

    /// Discards the whole pages inside the free chunks of at least `min`
    /// bytes last indexed before epoch `before` and not discarded since,
    /// walking the lists from number `from`, until `budget` bytes were
    /// discarded. Returns how many bytes, the bytes of the chunks left
    /// because they were indexed at or after `before`, and the list to
    /// resume from if the budget ran out (see `Tlsf::walk_free_from`).
    fn discard_free(
        &mut self,
        min: usize,
        before: usize,
        from: usize,
        budget: usize,
    ) -> (usize, usize, Option<usize>) {
        let (mut n, mut left) = (0, 0);
        // SAFETY: free chunks hold no user data; only whole pages past the
        // list links and the stamp are discarded.
        let at = unsafe {
            self.tlsf.walk_free_from(min.max(STAMP_MIN), from, |c| {
                let t = crate::tlsf::stamp(c);
                let base = c as usize;
                let lo = align_up(base + STAMP_OFF + 8, os::PAGE);
                let hi = (base + size(c)) & !(os::PAGE - 1);
                // Pages from `top` up are discarded already.
                let top = if t == PURGED {
                    return true;
                } else if is_partial(t) {
                    (base + (t & !PARTIAL)).min(hi)
                } else if t >= before {
                    left += size(c); // recent
                    return true;
                } else {
                    hi
                };
                if top <= lo {
                    crate::tlsf::set_stamp(c, PURGED);
                    return true;
                }
                if n >= budget {
                    return false;
                }
                // From the top down, so that the part left keeps its header.
                let start = (top.saturating_sub(budget - n) & !(os::PAGE - 1)).max(lo);
                if os::discard(start as *mut u8, top - start) {
                    n += top - start;
                }
                // A chunk left part way through is where the walk resumes.
                let st = if start == lo {
                    PURGED
                } else {
                    PARTIAL | (start - base)
                };
                crate::tlsf::set_stamp(c, st);
                start == lo
            })
        };
        (n, left, at)
    }

    #[cold]
    unsafe fn release_tail(&mut self, f: *mut Chunk, sent: *mut Chunk) {
        let r = sentinel_region(sent);
        if (*r).kind == KIND_BRK {
            let cfg = config::get();
            if self.pad_boost != 0 && os::coarse_ns().wrapping_sub(self.boost_at) > BOOST_LIFE_NS {
                self.pad_boost = 0; // the program stopped cycling
            }
            let keep = cfg.top_pad + self.pad_boost;
            if size(f) > cfg.trim_threshold && size(f) > keep + os::PAGE {
                let cut = self.trim_brk(keep);
                if cut != 0 {
                    self.last_trim = os::coarse_ns();
                    self.last_cut = cut;
                    self.cycle_cut += cut;
                }
            }
        } else if (*r).kind == KIND_MMAP && f as *mut u8 == (*r).start && self.mmap_regions > 1 {
            self.tlsf.unlink(f);
            self.regions.remove(r);
            self.mmap_regions -= 1;
            self.mmap_region_bytes -= (*r).map_len;
            self.released += (*r).map_len;
            crate::zonemap::remove_ours((*r).map_base, (*r).map_base.add((*r).map_len));
            os::unmap((*r).map_base, (*r).map_len);
            self.traced();
        }
    }

    /// Shrinks the break so that about `keep` free bytes stay at its tail.
    /// Returns the bytes released.
    pub fn trim_brk(&mut self, keep: usize) -> usize {
        if !self.brk_started {
            return 0;
        }
        // SAFETY: the break region is ours; we check sbrk(0) before moving it.
        unsafe {
            let end = self.brk.end;
            if os::brk_top() != end {
                return 0;
            }
            let cut = self.tlsf.shrink_tail(end, keep, os::PAGE);
            if cut == 0 {
                return 0;
            }
            if !os::brk_shrink(cut) {
                // The break did not move: take the memory back.
                self.tlsf.grow_tail(self.brk.end, cut);
                return 0;
            }
            crate::zonemap::shrink_ours(end, self.brk.end);
            self.brk_bytes -= cut;
            self.released += cut;
            self.traced();
            cut
        }
    }

    /// malloc_trim: shrinks the break down to `pad` free bytes and discards
    /// the whole pages inside every free chunk. Returns whether any memory
    /// went back.
    pub fn trim(&mut self, pad: usize) -> bool {
        let mut any = self.trim_brk(pad) != 0;
        let (discarded, _, _) = self.discard_free(0, PURGED, 0, usize::MAX);
        if discarded != 0 {
            self.released += discarded;
            any = true;
        }
        any
    }

    /// Tries to resize in-use chunk `c` to `csize` in place, extending the
    /// break when `c` is its last chunk. A growing chunk takes up to `want`
    /// bytes (`>= csize`) where its free neighbour has them: headroom for
    /// the next steps of a block that grows by small steps.
    ///
    /// # Safety
    /// `c` is an in-use chunk of this heap (as `validate` checks).
    pub unsafe fn resize_in_place(&mut self, c: *mut Chunk, csize: usize, want: usize) -> bool {
        // SAFETY: c is an in-use chunk of ours (validated by the caller).
        unsafe {
            let old = size(c);
            let mut ok = if csize <= old {
                self.tlsf.resize_in_place(c, csize)
            } else {
                self.tlsf.grow_in_place(c, csize, want)
            };
            if !ok
                && !self.brk_failed
                && self.brk_started
                && self.tail_of_brk(c)
                && (old >= MOVE_MAX || !self.tlsf.can_serve(want))
            {
                // Grow the break under the tail chunk (string building), but
                // a small block moves instead where a free chunk can take it.
                // A string growing at the tail while the others moved into
                // the holes below pushed the heap up for ever: 64 strings
                // built to 64 KiB, 4000 times over, left a 36 MiB free hole
                // under them and a 44 MiB break (glibc: 3.4 MiB). A big
                // block still grows in place: a move would copy it, and hold
                // both copies at once (`bench/large`: +4 MiB of peak RSS).
                if self.grow_brk(csize - old) {
                    ok = self.tlsf.grow_in_place(c, csize, want);
                }
            }
            if ok {
                self.in_use = self.in_use - old + size(c);
                crate::events::heap_in_use_rose(self.in_use.saturating_sub(reserved()));
                let n = next(c);
                if is_free(n) && is_sentinel(next(n)) {
                    self.release_tail(n, next(n));
                }
            }
            ok
        }
    }

    /// Is `c` followed only by free space (or nothing) up to the break's end?
    unsafe fn tail_of_brk(&self, c: *mut Chunk) -> bool {
        let n = next(c);
        let nn = if is_free(n) { next(n) } else { n };
        nn == self.brk.sentinel()
    }

    /// Checks a chunk passed to free/realloc before trusting it (its own
    /// header was checked by the caller): the error to report for a double
    /// free, or for neighbours whose headers an overflow or underflow
    /// overwrote. The caller reports after releasing the lock.
    ///
    /// # Safety
    /// `c`'s header lies in memory of this heap and carries a valid tag
    /// (`head_ok`): its size then leads to the next header in the same region.
    #[inline]
    pub unsafe fn validate(&self, c: *mut Chunk) -> Result<(), &'static str> {
        if !crate::guard::CHECKS {
            return Ok(());
        }
        // SAFETY: c's header is ours (tag checked), so its size leads to the
        // next header inside the same region.
        unsafe {
            let h = head(c);
            if h & FREE != 0 {
                return Err("double free");
            }
            let s = h & SIZE_MASK;
            if !(MIN_CHUNK..=MAX_REQUEST * 2).contains(&s) {
                return Err("invalid pointer or corrupted block header");
            }
            let n = next(c);
            if !head_ok(n) || head(n) & (PREV_FREE | MMAPPED) != 0 {
                return Err("heap overflow (the next block's header was overwritten)");
            }
            if h & PREV_FREE != 0 {
                let p = prev(c);
                if !head_ok(p) || !is_free(p) || size(p) != (*c).prev_size {
                    return Err(
                        "heap corruption (the previous block's header or footer was overwritten)",
                    );
                }
            }
        }
        Ok(())
    }

    /// Walks every region and the index; returns the number of broken
    /// invariants, and what the walks found in total. `zone_ok(c)` is the
    /// small layer's test of the zone header in zone chunk `c` (live and in
    /// use when it is called).
    pub fn check(&self, mut zone_ok: impl FnMut(*mut Chunk) -> bool) -> (usize, RegionCheck) {
        let mut total = RegionCheck::default();
        let mut bad = 0;
        // SAFETY: under the lock every region descriptor is live.
        unsafe {
            self.sync_reserves();
            let mut r = self.regions.head;
            while !r.is_null() {
                let rc = self.tlsf.check_region(r);
                bad += rc.bad;
                total.free_chunks += rc.free_chunks;
                total.free_bytes += rc.free_bytes;
                total.used_chunks += rc.used_chunks;
                total.used_bytes += rc.used_bytes;
                r = (*r).next;
            }
            let regions = &self.regions;
            bad += self.tlsf.check_lists(|p| !regions.find(p).is_null());
        }
        // Zones: their chunk must span its granule, and the header fields
        // fixed at creation must still hold. Only over a sound chunk chain:
        // the walk follows sizes without the checks of check_region.
        if bad == 0 {
            self.for_each_zone(|c| {
                // SAFETY: c is a live chunk (for_each_zone).
                if unsafe { size(c) != crate::zonemap::ZONE_SIZE } || !zone_ok(c) {
                    bad += 1;
                }
            });
        }
        if total.free_chunks != self.tlsf.free_count || total.free_bytes != self.tlsf.free_bytes {
            bad += 1;
        }
        if total.used_bytes != self.in_use + self.borrowed {
            bad += 1;
        }
        total.bad = bad;
        (bad, total)
    }

    /// Calls `f(chunk)` for every zone chunk of the heap (in use, and marked
    /// a zone in the zone map); the zone header in it is the small layer's.
    pub fn for_each_zone(&self, mut f: impl FnMut(*mut Chunk)) {
        // SAFETY: under the lock every region and chunk header is consistent
        // (the reserves' sizes once synced); a zone header is live while its
        // chunk is in use.
        unsafe {
            self.sync_reserves();
            let mut r = self.regions.head;
            while !r.is_null() {
                let mut c = (*r).start as *mut Chunk;
                while !is_sentinel(c) {
                    if !is_free(c) && crate::zonemap::is_zone(to_user(c)) {
                        f(c);
                    }
                    c = next(c);
                }
                r = (*r).next;
            }
        }
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
    fn traced(&self) {
        crate::events::trace_heap(self.brk_bytes + self.mmap_region_bytes);
    }

    /// Free bytes at the tail of the break (glibc's keepcost).
    pub fn brk_tail_free(&self) -> usize {
        if !self.brk_started {
            return 0;
        }
        let s = self.brk.sentinel();
        // SAFETY: the sentinel of a started break region is live.
        unsafe {
            if is_prev_free(s) {
                (*s).prev_size
            } else {
                0
            }
        }
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

// ---- reserves ----------------------------------------------------------------
//
// A *reserve* is a chunk in use that a layer above (a thread's medium cache)
// cuts chunks from, from its back, without the heap's lock: one acquisition
// takes it, and every chunk cut from it after that costs none (at 64
// threads the threads' first fills queued on the heap's lock, one
// acquisition and a page fault under it per refill: mscale17, m64).
//
// Why the back: a cut writes the new chunk's header (at the reserve's end,
// in a page nobody else knows of) and nothing else the heap may write. The
// reserve's own head word, which the heap rewrites under its lock
// (PREV_FREE, when the chunk before it is freed or taken), is left alone:
// its size is stale (it still covers the chunks cut since) until a holder of
// the lock syncs it from the reserve's `RES_LEFT` word (`sync_reserves`), as
// every walk of the regions does first (`check`, `for_each_zone`). Nothing
// else reads it: a chunk cut from a reserve says PREV_FREE clear (the
// reserve before it is in use), so a free of it never looks back at the
// reserve, and the chunk before the reserve only reads its FREE flag.
//
// Layout, in the reserve's user words (never handed out): `RES_NEXT` and
// `RES_PREV` link the heap's list of reserves (under the lock);
// `RES_LEFT`, the reserve's size now (written by its owner alone, with
// release order, after the header of the chunk it cut; read with acquire
// order under the lock). A cut leaves at least `RES_KEEP` bytes.
//
// Accounting: a reserve counts in `in_use` whole from the start (its cut
// chunks are in use, and their frees subtract their sizes); `RESERVED` is
// the bytes not cut yet, which the statistics leave out of what is in use.

/// A reserve's word linking the next reserve.
const RES_NEXT: usize = 16;
/// A reserve's word linking the previous one.
const RES_PREV: usize = 24;
/// A reserve's size now (an `AtomicUsize`).
const RES_LEFT: usize = 32;
/// The least a reserve keeps: its header and the three words above.
pub const RES_KEEP: usize = 64;
const _: () = assert!(RES_LEFT + 8 <= RES_KEEP && RES_KEEP >= MIN_CHUNK);

/// Free bytes in the index besides the break's tail (and an eighth of the
/// heap) from which reserves are only what a refill needs (`take_reserve`).
const RES_HOLES: usize = 4 << 20;

/// Bytes of the reserves not cut yet.
static RESERVED: AtomicUsize = AtomicUsize::new(0);

/// Bytes of the reserves not cut yet (statistics: free, not in use).
pub fn reserved() -> usize {
    RESERVED.load(Ordering::Relaxed)
}

/// Word `off` of reserve `r`.
///
/// # Safety
/// `r` is a reserve (or becoming one, under the heap's lock).
#[inline(always)]
unsafe fn res_word(r: *mut Chunk, off: usize) -> *mut usize {
    (r as *mut u8).add(off) as *mut usize
}

/// Reserve `r`'s size now.
///
/// # Safety
/// `r` is a reserve.
#[inline(always)]
unsafe fn res_left(r: *mut Chunk) -> &'static AtomicUsize {
    // SAFETY: the word is 8-aligned, inside the reserve's kept bytes, and
    // only ever accessed atomically while `r` is a reserve.
    AtomicUsize::from_ptr(res_word(r, RES_LEFT))
}

/// Bytes reserve `r` has left to cut (`RES_KEEP` stays).
///
/// # Safety
/// `r` is a reserve this thread owns.
#[inline]
pub unsafe fn reserve_room(r: *mut Chunk) -> usize {
    res_left(r).load(Ordering::Relaxed) - RES_KEEP
}

/// Cuts a chunk of `csize` bytes (a multiple of `ALIGN`, at least
/// `MIN_CHUNK`) from the back of reserve `r`, without the heap's lock, and
/// returns it: in use, `MARK` set; null if `r` has not room for it. The
/// chunk's header is the only word written (a page fault if its page is
/// fresh, outside the lock).
///
/// # Safety
/// `r` is a reserve this thread owns (only its owner cuts it).
#[inline]
pub unsafe fn reserve_cut(r: *mut Chunk, csize: usize) -> *mut Chunk {
    let left = res_left(r).load(Ordering::Relaxed);
    if left < csize + RES_KEEP {
        return null_mut();
    }
    let now = left - csize;
    let c = (r as *mut u8).add(now) as *mut Chunk;
    // (PREV_FREE clear: the reserve before it is in use. The chunk after it,
    // the last one cut or the reserve's old neighbour, already says its
    // previous chunk is in use.)
    set_head(c, csize | MARK);
    // (Release: a holder of the lock that reads `now` sees the header.)
    res_left(r).store(now, Ordering::Release);
    RESERVED.fetch_sub(csize, Ordering::Relaxed);
    c
}

impl Heap {
    /// Takes a reserve of `want` bytes, else the biggest of `want / 4`,
    /// `want / 16`, ... down to `min` that the index has a chunk for (no
    /// growth: the freed memory is used first), else grows the heap for
    /// `want`, then `min`; null when memory is exhausted. Its owner cuts it
    /// with `reserve_cut` and gives it back with `end_reserve`.
    pub fn take_reserve(&mut self, want: usize, min: usize) -> *mut Chunk {
        let min = min.max(RES_KEEP + MIN_CHUNK);
        // While the index holds many freed chunks besides the break's free
        // tail (an eighth of the heap, and `RES_HOLES`), a reserve is only
        // what the refill needs, from the best fit: those chunks' pages are
        // the program's already, where a big reserve from the tail would
        // fault in fresh ones and leave the small freed chunks, which no
        // purge gives back (under 256 KiB), free for nothing (always
        // `want`: `bench/xmalloc 4 4 1e6 64 32 64 32k` peaked at 100-116 MB
        // of RSS against 72-77, c_tests/stress.c's heap grew to 330 MiB
        // against 190 and its RSS after the pause failed its bound).
        let holes = self.tlsf.free_bytes.saturating_sub(self.brk_tail_free());
        let heap = self.brk_bytes + self.mmap_region_bytes;
        let want = if holes >= RES_HOLES.max(heap / 8) {
            min
        } else {
            want
        };
        // SAFETY: the index and regions are consistent under the lock; the
        // chunk taken is ours to link (its user words are not handed out).
        unsafe {
            let mut c: *mut Chunk = null_mut();
            let mut s = want;
            while c.is_null() && s >= min {
                c = self.tlsf.alloc_keeping(s);
                s /= 4;
            }
            // (A growth for a reserve takes the growth step, as a refill's
            // did: `grow_brk`.)
            self.for_reserve = true;
            if c.is_null() {
                c = self.alloc_slow(want.max(min), 0, 0);
            }
            if c.is_null() && want > min {
                c = self.alloc_slow(min, 0, 0);
            }
            self.for_reserve = false;
            if c.is_null() {
                return c;
            }
            let s = size(c);
            RESERVED.fetch_add(s, Ordering::Relaxed);
            self.account_alloc(s);
            *res_word(c, RES_NEXT) = self.reserves as usize;
            *res_word(c, RES_PREV) = 0;
            if !self.reserves.is_null() {
                *res_word(self.reserves, RES_PREV) = c as usize;
            }
            self.reserves = c;
            res_left(c).store(s, Ordering::Relaxed);
            c
        }
    }

    /// Gives reserve `r` back: what is left of it is freed.
    ///
    /// # Safety
    /// `r` is a reserve the caller owns, which it cuts no more.
    pub unsafe fn end_reserve(&mut self, r: *mut Chunk) {
        let n = *res_word(r, RES_NEXT) as *mut Chunk;
        let p = *res_word(r, RES_PREV) as *mut Chunk;
        if p.is_null() {
            self.reserves = n;
        } else {
            *res_word(p, RES_NEXT) = n as usize;
        }
        if !n.is_null() {
            *res_word(n, RES_PREV) = p as usize;
        }
        let left = res_left(r).load(Ordering::Acquire);
        RESERVED.fetch_sub(left, Ordering::Relaxed);
        set_size(r, left);
        self.free(r);
    }

    /// Sets every reserve's size to what is left of it (their owners cut
    /// without the lock; a walk of the regions needs sizes that lead from
    /// one header to the next). A chunk cut while the walk runs is in use
    /// and still covered by its reserve's size: the walk steps over it.
    ///
    /// # Safety
    /// The caller holds the heap's lock (`&self` of the heap under it).
    pub unsafe fn sync_reserves(&self) {
        let mut r = self.reserves;
        while !r.is_null() {
            set_size(r, res_left(r).load(Ordering::Acquire));
            r = *res_word(r, RES_NEXT) as *mut Chunk;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_sizes_are_classes_with_bounded_waste() {
        let mut s = 16;
        while s <= 2 * MAX_REQUEST - (1 << 20) {
            for cs in [s, s + 16, s + (s >> 3), s + (s >> 2) + 16, 2 * s - 16] {
                let b = big_size(cs);
                assert!(b >= cs, "{cs} -> {b}");
                if cs < BIG_MIN {
                    assert_eq!(b, cs);
                    continue;
                }
                assert_eq!(b % os::PAGE, 0, "{cs} -> {b}");
                // Less than an eighth over.
                assert!(b - cs < (cs / 8).max(os::PAGE), "{cs} -> {b}");
                // A class size is its own class (a freed chunk fits the
                // next request of its class exactly)...
                assert_eq!(big_size(b), b, "{cs} -> {b}");
                // ...and a TLSF list's first size, so that a search for it
                // looks in the list of that size first.
                assert_eq!(crate::tlsf::search_size(b), b, "{cs} -> {b}");
            }
            s *= 2;
        }
        // Eight sizes per power of two.
        let mut classes = [0usize; 2];
        for (i, base) in [(0, 1usize << 20), (1, 8 << 20)] {
            let mut last = 0;
            let mut cs = base + 16;
            while cs <= 2 * base {
                let b = big_size(cs);
                if b != last {
                    classes[i] += 1;
                    last = b;
                }
                cs += 4096;
            }
        }
        assert_eq!(classes, [8, 8]);
    }
}
