//! Big blocks (above the medium classes): their size classes (`big_size`),
//! their cuts and the watch of their ends (`alloc_big`, `check_end`), and
//! the sparse purge of the pages they leave in the free space
//! (`purge_sparse`).

use super::*;

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
pub(super) const SPARSE_MIN: usize = 1 << 20;
/// Chunks looked at per pass, and list entries visited at most.
const SPARSE_CHUNKS: usize = 8;
const SPARSE_VISITS: usize = 64;
/// A free chunk with more than one resident page in this many is dense:
/// its pages are kept (a program that fills its blocks reuses them). (One
/// in 8 was too low: a free chunk cut from over and over keeps the pages
/// where successive blocks ended, in runs; samples of such chunks found
/// 10-40% resident.)
const SPARSE_DENSE: usize = 2;
/// Fewer resident pages than this are not worth a discard.
const SPARSE_WORTH: usize = 16;
/// Pages of the break region a check looks at (from its start; 4 GiB):
/// one byte each in `SCAN`, 1 MiB of the library's zeroed data, resident
/// only as far as the heap reaches (a page of it per 16 MiB of heap).
const SCAN_PAGES: usize = 1 << 20;
/// The check's `mincore` vector (see `scan`); `SCAN_BUSY` gives it to one
/// thread at a time.
struct Scan(core::cell::UnsafeCell<[u8; SCAN_PAGES]>);
// SAFETY: used only by the thread that set `SCAN_BUSY`.
unsafe impl Sync for Scan {}
static SCAN: Scan = Scan(core::cell::UnsafeCell::new([0; SCAN_PAGES]));
static SCAN_BUSY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// The resident set of the break region the last pass left, or the lowest
/// a check saw since; 0: the next check sets it.
static SPARSE_BASE: AtomicUsize = AtomicUsize::new(0);

/// A free chunk this big is purged even when the last big free made it:
/// bench/grid's `short` cell of 1-64 MiB (one block at a time, first and
/// last bytes written): the heap is one free chunk, always the last freed,
/// whose interior collects the last page of every size drawn: peak RSS
/// 24.8 MB (tcmalloc 9.4, jemalloc 10.0); 11.1 so, for 0.084 s of CPU
/// instead of 0.025 (tcmalloc 0.093), the pages faulted in again. 16
/// threads: 66 -> 35 MB (jemalloc 36).
const SPARSE_HUGE: usize = 64 << 20;
/// A sparse purge pass is due (see `purge_sparse`).
static SPARSE_DUE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// The bytes big blocks are reckoned to have made resident since the last
/// check (see `Heap::note_dirty`): a check is due once they reach
/// `SPARSE_NEXT`.
static SPARSE_DIRTY: AtomicUsize = AtomicUsize::new(0);
/// The next check once `SPARSE_DIRTY` reaches this: the room the last
/// check found left under the slack, less in proportion where the resident
/// set grew faster than the pages reckoned (see `check`), and at least
/// `SPARSE_NEXT_MIN` (fewer, later checks: bigsparse.c's sparse churn
/// peaked at 18 MB with `SPARSE_SLACK`, 8 with this; each check's
/// `mincore` of the region costs 1-2 ms in `large-8`'s 480 MB). A quarter
/// of the slack at first, so that the check that sets the base comes early
/// (at the slack, bigsparse.c's churn peaked at 14 MB).
static SPARSE_NEXT: AtomicUsize = AtomicUsize::new(SPARSE_SLACK / 4);
const SPARSE_NEXT_MIN: usize = SPARSE_SLACK / 2;
/// The break region's resident set at the last check (or what the last
/// pass left).
static SPARSE_LAST: AtomicUsize = AtomicUsize::new(0);
/// The pages freed big blocks may leave resident in the free space before
/// a pass. (8 MiB before big17c: bench/grid's cells of 1-64 MiB, peak RSS
/// with 8 -> 4 MiB, medians of 5: long at 1 thread 30.1 -> 15.8 MB
/// (jemalloc 18.6), for 0.117 -> 0.136 s of CPU; long at 16 threads 53 ->
/// 39 MB; cross at 16, 45 -> 35 MB (glibc 25).)
const SPARSE_SLACK: usize = 4 << 20;
/// The list the next pass starts from (`Tlsf::walk_free_from`).
static SPARSE_FROM: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
/// Bytes the sparse purge discarded (statistics; also in `released`).
pub static SPARSE_PURGED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// How densely the program writes its big blocks: about 256 times the
/// share of the `DENSE_WINDOW - 1` pages before a watched block's last page
/// found resident when it was freed (`check_end`; an average over about 16,
/// the plain mean of the first `ENDS_LEARN`). A program that fills its big
/// blocks (bench/large) finds their pages again where it reuses them: no
/// pass while this is `DENSE_MAX` or more (half the pages).
static DENSE: AtomicUsize = AtomicUsize::new(256);
const DENSE_MAX: usize = 128;
/// `DENSE` below this counts as none (a page or two of the window: the
/// program's fields, not its data) in `Heap::note_dirty`: a share of a
/// few percent of 64 MiB blocks made c_tests/bigreuse.c's churn pass
/// several times as often.
const DENSE_MIN: usize = 16;
/// Pages `check_end` looks at: the last page of a watched block's request
/// and those before it.
const DENSE_WINDOW: usize = 64;

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
/// One big block in this many is watched once the answer settled (see
/// `ENDS_MASK`, `ENDS_SAMPLE_MAX`; a multiple of `ENDS_PROBE`: the blocks
/// watched are probes).
/// Every block was 1 in 16 until big17e: 6.1k `mincore` calls in
/// `bench/mthreads 8 4e5 16 256k 64M s` (`large-8`), 500 in the 8000
/// blocks of `grid 4 8e3 1M 64M cross 4`.
const ENDS_SAMPLE_SETTLED: usize = 1024;
const _: () = assert!(
    ENDS_SAMPLE.is_power_of_two()
        && ENDS_SAMPLE_SETTLED.is_power_of_two()
        && ENDS_SAMPLE.is_multiple_of(ENDS_PROBE)
        && ENDS_SAMPLE_SETTLED.is_multiple_of(ENDS_PROBE)
);
/// The most big blocks of which one is watched: once settled, each sample
/// that agrees with the answer doubles the interval from
/// `ENDS_SAMPLE_SETTLED` up to this; one that disagrees divides it by 4
/// (see `check_end`). 1 in 256 until sys17j: 210 `mincore` calls in
/// `large-8`'s 49k big blocks, where tcmalloc makes 200 system calls in
/// all, start-up included; 10-20 so.
const ENDS_SAMPLE_MAX: usize = 32768;
const _: () = assert!(ENDS_SAMPLE_MAX.is_power_of_two() && ENDS_SAMPLE_MAX >= ENDS_SAMPLE_SETTLED);
/// Samples taken at `ENDS_SAMPLE` first; `ENDS` and `DENSE` are their
/// plain mean meanwhile (16 samples of an average over 16 before sys17j).
const ENDS_LEARN: usize = 4;
/// `ENDS` below this, or this or more, is settled: some 4-5 samples
/// the other way (about 1000 big blocks at `ENDS_SAMPLE_SETTLED`) bring it
/// back between them.
const ENDS_LOW: usize = 48;
const ENDS_HIGH: usize = 208;
/// Samples `check_end` took (saturating at `ENDS_LEARN`).
static ENDS_SEEN: AtomicUsize = AtomicUsize::new(0);
/// One less than the number of big blocks of which one is watched now
/// (`ENDS_SAMPLE`, or `ENDS_SAMPLE_SETTLED` to `ENDS_SAMPLE_MAX`), set by
/// `check_end`:
/// `Heap::alloc_big` tests the count of big blocks with it (a load and an
/// `and`).
static ENDS_MASK: AtomicUsize = AtomicUsize::new(ENDS_SAMPLE - 1);

/// The header pages big cuts wrote lately (direct-mapped by a hash of the
/// page number), and how often the lattice's header page was among them
/// (see `Heap::alloc_big`). Cost: a multiply, two loads and a store a big
/// cut, under the heap's lock; 8 KiB of the heap's state.
pub(super) struct CutMemo {
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
    pub(super) const fn new() -> Self {
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

    /// Is the page of `addr` among those big cuts wrote lately?
    #[inline]
    fn knows(&self, addr: usize) -> bool {
        let (i, p) = Self::slot(addr);
        self.pages[i] == p
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
pub(super) const WATCH: usize = 4;
/// The address of the end of a watched block just freed (0: none), for
/// `check_end`.
static END_CHECK: AtomicUsize = AtomicUsize::new(0);

/// Looks whether the last page of a watched block's request (see
/// `END_CHECK`) and the `DENSE_WINDOW - 1` pages before it are resident
/// (one `mincore`), and updates `ENDS` and `DENSE`. Without the heap's
/// lock: the pages may have been reused or purged meanwhile, which only
/// blurs a sample.
#[cold]
fn check_end() {
    let a = END_CHECK.swap(0, Ordering::Relaxed);
    if a == 0 {
        return;
    }
    // (A watched request is of a big block, 1 MiB or more: the window lies
    // past its header's page.)
    let last = a & !(os::PAGE - 1);
    let mut v = [0u8; DENSE_WINDOW];
    // SAFETY: a read-only query of pages of our heap (the break's or a
    // heap region's); an error (the range given back meanwhile) says no.
    if !unsafe {
        os::resident(
            (last - (DENSE_WINDOW - 1) * os::PAGE) as *const u8,
            DENSE_WINDOW,
            &mut v,
        )
    } {
        return;
    }
    let resident = v[DENSE_WINDOW - 1] & 1 != 0;
    let inner = v[..DENSE_WINDOW - 1]
        .iter()
        .filter(|b| **b & 1 != 0)
        .count();
    let dense = inner * 256 / (DENSE_WINDOW - 1);
    let n = ENDS_SEEN.load(Ordering::Relaxed);
    let e = ENDS.load(Ordering::Relaxed);
    let d = DENSE.load(Ordering::Relaxed);
    let (e, d) = if n < ENDS_LEARN {
        ENDS_SEEN.store(n + 1, Ordering::Relaxed);
        (
            (e * n + if resident { 256 } else { 0 }) / (n + 1),
            (d * n + dense) / (n + 1),
        )
    } else {
        (
            e - e / 16 + if resident { 16 } else { 0 },
            (d * 15 + dense) / 16,
        )
    };
    ENDS.store(e, Ordering::Relaxed);
    DENSE.store(d, Ordering::Relaxed);
    // The watch's rate: 1 in ENDS_SAMPLE while learning or open; else from
    // 1 in ENDS_SAMPLE_SETTLED, halved at each sample that agrees, down to
    // 1 in ENDS_SAMPLE_MAX, and 4 times as high after one that disagrees
    // (a program that changed its ways brings `ENDS` into the open range
    // in 3-5 samples).
    let open = n + 1 < ENDS_LEARN || (ENDS_LOW..ENDS_HIGH).contains(&e);
    let now = ENDS_MASK.load(Ordering::Relaxed) + 1;
    let every = if open {
        ENDS_SAMPLE
    } else if resident != (e >= ENDS_MIN) {
        (now / 4).max(ENDS_SAMPLE_SETTLED)
    } else {
        (2 * now).clamp(ENDS_SAMPLE_SETTLED, ENDS_SAMPLE_MAX)
    };
    ENDS_MASK.store(every - 1, Ordering::Relaxed);
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
/// A check (`check`) is one `mincore` of the break region into `SCAN`: the
/// region's resident set, and which big free chunks in it are sparse. It
/// comes once the pages big blocks are reckoned to have made resident
/// since the last (`Heap::note_dirty`, no system call: the pages of the
/// headers a cut writes that no cut wrote lately, `CutMemo`; the page of a
/// request's end while the program writes the ends, `ENDS`; the share
/// `DENSE` of the rest) fill the room the last check found left under the
/// slack (`SPARSE_NEXT`). Only when the resident set grew `SPARSE_SLACK`
/// past where the last pass left it (the retained budget) does a pass run:
/// it discards (`MADV_DONTNEED`) up to `SPARSE_CHUNKS` big free chunks that
/// are not dense (at most half their pages resident, by the vector), but
/// the chunk the last big free made, likeliest to be reused next, unless it
/// is `SPARSE_HUGE` or more. None while the program fills its big blocks
/// (`DENSE`: bench/large). A program that reuses its free space
/// (c_tests/bigreuse.c, whose freed blocks are reused at their address)
/// keeps its resident set where it is and makes no pass. A chunk is taken
/// out of the index while its pages are discarded, so no system call runs
/// under the heap's lock. Cost: one system call a check; a pass 2 lock
/// acquisitions, at most `SPARSE_CHUNKS` `madvise` calls, and the page
/// faults of the pages discarded that the program uses again. Until sys17j
/// a check read the process's resident set (`/proc/self/statm`: 3 calls)
/// every 256 big frees or 20 ms, and a pass sampled each chunk with 4
/// `mincore` calls: 5215 system calls a million pairs that neither grow nor
/// shrink memory in `large-8`, tcmalloc's 1000 (its start-up) (see
/// docs/performance.md, "System calls again (sys17j, 2026-12-08)").
#[inline]
pub fn purge_sparse() {
    if SPARSE_DUE.load(Ordering::Relaxed) {
        purge_sparse_slow();
    }
    if END_CHECK.load(Ordering::Relaxed) != 0 {
        check_end();
    }
}

/// Lets the child of a fork make checks again (the fork may have come
/// while a thread of the parent made one).
pub fn sparse_after_fork() {
    SCAN_BUSY.store(false, Ordering::Relaxed);
}

#[cold]
fn purge_sparse_slow() {
    if !SPARSE_DUE.swap(false, Ordering::Relaxed) {
        return; // another thread runs it
    }
    let dirty = SPARSE_DIRTY.swap(0, Ordering::Relaxed);
    if DENSE.load(Ordering::Relaxed) >= DENSE_MAX || SCAN_BUSY.swap(true, Ordering::Acquire) {
        return;
    }
    // SAFETY: SCAN_BUSY is ours until the store below.
    unsafe { check(&mut *SCAN.0.get(), dirty) };
    SCAN_BUSY.store(false, Ordering::Release);
}

/// The check, and a pass if due (see `purge_sparse`): one `mincore` of the
/// break region into `v`, which tells both its resident set and, without
/// another call, which big free chunks in it are sparse.
fn check(v: &mut [u8; SCAN_PAGES], dirty: usize) {
    let Some((lo, pages)) = HEAP.with(|h| h.brk_pages()) else {
        return;
    };
    let pages = pages.min(SCAN_PAGES);
    // SAFETY: a read-only query of the break region's pages; an error (the
    // break shrank meanwhile) only says no.
    if pages == 0 || !unsafe { os::resident(lo as *const u8, pages, &mut v[..pages]) } {
        return;
    }
    let v = &v[..pages];
    let rss = resident_in(v, lo, (lo, lo + pages * os::PAGE)) * os::PAGE;
    // The retained budget: a pass only once the region's resident set grew
    // `SPARSE_SLACK` past where the last pass (or the lowest check since)
    // left it. A program that reuses its free space (the resident set stays
    // where it is) is left alone, whatever it frees.
    let base = SPARSE_BASE.load(Ordering::Relaxed);
    // The pages reckoned since the last check for a page the resident set
    // grew by (16ths): where it grew by more (the pages of medium blocks,
    // which are not reckoned; pages reckoned as known that a purge or a
    // trim gave back), the next check comes sooner in proportion (down to
    // an eighth); where it grew by less (pages reused), later, up to 4
    // times, but not while blocks are cut to their requests (their passes
    // hold the base: bigsparse.c's sparse churn peaked at 17-21 MB with it,
    // 8-9 without). large-8 (4e5): 20 checks a run at most 1 (each a
    // `mincore` of 480 MB of region, 1-2 ms of system time with the other
    // threads' `brk` and `madvise` waiting on it), about 10 so.
    let grown = rss.saturating_sub(SPARSE_LAST.swap(rss, Ordering::Relaxed));
    let most = if cut_to_request() { 16 } else { 16 * 4 };
    let ratio = (dirty * 16)
        .checked_div(grown)
        .map_or(most, |r| r.clamp(2, most));
    let next = |room: usize| {
        SPARSE_NEXT.store((room / 16 * ratio).max(SPARSE_NEXT_MIN), Ordering::Relaxed)
    };
    if base == 0 || rss < base {
        SPARSE_BASE.store(rss.max(1), Ordering::Relaxed);
        next(SPARSE_SLACK);
        return;
    }
    if rss - base <= SPARSE_SLACK {
        next(base + SPARSE_SLACK - rss);
        return;
    }
    next(SPARSE_SLACK);
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
    // Which are sparse, by the vector (without the lock: a chunk that
    // changed meanwhile is not taken below).
    let mut res = [0usize; SPARSE_CHUNKS];
    let mut k = 0;
    for i in 0..n {
        let (c, s) = cand[i];
        let (a, b) = inner(c, s);
        if a >= b || a < lo || b > lo + pages * os::PAGE {
            continue; // (not all of it looked at)
        }
        let r = resident_in(v, lo, (a, b));
        let p = (b - a) / os::PAGE;
        if r * SPARSE_DENSE <= p && (r >= SPARSE_WORTH || b - a >= SPARSE_HUGE) {
            cand[k] = cand[i];
            res[k] = r;
            k += 1;
        }
    }
    if k == 0 {
        SPARSE_BASE.store(0, Ordering::Relaxed); // the next check sets it
        SPARSE_NEXT.store(SPARSE_SLACK / 4, Ordering::Relaxed);
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
    let (mut gone, mut gone_resident) = (0, 0);
    for i in 0..k {
        if held[i] {
            let (a, b) = inner(cand[i].0, cand[i].1);
            // SAFETY: the chunk is ours and out of the index: no other
            // thread can be given its pages until it is freed back; its
            // header and links lie below `a`.
            if unsafe { os::discard(a as *mut u8, b - a) } {
                gone += b - a;
                gone_resident += res[i] * os::PAGE;
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
    // The base the next checks measure from: what the pass left (the
    // resident pages it discarded, counted in the vector). But while
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
    let left = (rss - gone_resident.min(rss)).max(1);
    SPARSE_LAST.store(left, Ordering::Relaxed);
    let hold = cut_to_request();
    if hold && left > base {
        // the next pass soon
        SPARSE_DIRTY.store(SPARSE_SLACK, Ordering::Relaxed);
    }
    SPARSE_BASE.store(if hold { left.min(base) } else { left }, Ordering::Relaxed);
}

/// The resident pages of `[a, b)` (page-aligned) by vector `v` of the pages
/// from `lo`.
fn resident_in(v: &[u8], lo: usize, (a, b): (usize, usize)) -> usize {
    v[(a - lo) / os::PAGE..(b - lo) / os::PAGE]
        .iter()
        .filter(|x| **x & 1 != 0)
        .count()
}

/// The whole pages of free chunk `c` of `s` bytes past its links and stamp.
fn inner(c: *mut Chunk, s: usize) -> (usize, usize) {
    let base = c as usize;
    (
        align_up(base + STAMP_OFF + 8, os::PAGE),
        (base + s) & !(os::PAGE - 1),
    )
}

impl Heap {
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
            self.note_dirty(c as usize, size(c), csize, ends);
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

    /// If big chunk `c`, being freed, is watched (see `alloc_big`): leaves
    /// the address of its request's end for `check_end`.
    #[inline]
    pub(super) fn unwatch(&mut self, c: usize) {
        for w in self.watch.iter_mut() {
            if w.0 == c {
                END_CHECK.store(w.1, Ordering::Relaxed);
                *w = (0, 0);
            }
        }
    }

    /// Reckons the pages big block `a` of `s` bytes, just cut for a request
    /// of `csize` bytes, makes resident (see `purge_sparse`): its header's
    /// page and that of the header past it, where no big cut wrote lately
    /// (`memo`); the page of the request's end while the program writes the
    /// ends (`ends`) and it is another; and, if its header's page is new,
    /// the share `DENSE` of its pages. A check is due once they add up to
    /// `SPARSE_NEXT`. Cost: two loads of the memo and an add a big
    /// allocation, under the lock.
    #[inline]
    fn note_dirty(&mut self, a: usize, s: usize, csize: usize, ends: bool) {
        let end = a + s;
        let fresh = !self.memo.knows(a);
        let mut pages = usize::from(fresh) + usize::from(!self.memo.knows(end));
        if ends && (a + csize - 1) / os::PAGE != end / os::PAGE {
            pages += 1;
        }
        let mut d = pages * os::PAGE;
        let dense = DENSE.load(Ordering::Relaxed);
        if fresh && dense >= DENSE_MIN {
            d += (s / 256) * dense;
        }
        let dirty = SPARSE_DIRTY.load(Ordering::Relaxed) + d;
        SPARSE_DIRTY.store(dirty, Ordering::Relaxed);
        if dirty >= SPARSE_NEXT.load(Ordering::Relaxed) && !SPARSE_DUE.load(Ordering::Relaxed) {
            SPARSE_DUE.store(true, Ordering::Relaxed);
        }
    }

    /// The break region's first page and its number of whole pages, if
    /// the heap has one.
    fn brk_pages(&self) -> Option<(usize, usize)> {
        if !self.brk_started {
            return None;
        }
        let lo = self.brk.start as usize & !(os::PAGE - 1);
        let hi = self.brk.end as usize & !(os::PAGE - 1);
        Some((lo, hi.saturating_sub(lo) / os::PAGE))
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
