//! Medium blocks (above the small classes, below the mmap threshold) in
//! per-thread caches: the common case takes no lock shared between threads
//! and makes no system call.
//!
//! **Shape** (tcmalloc's thread caches in front of a central heap): requests
//! of `SMALL_MAX + 1 ..= MC_MAX` bytes are rounded up to one of `NMC` size
//! classes, four per power of two (internal waste under 25%, bounded). Each
//! thread keeps, per class, a singly linked list of chunks it freed; malloc
//! pops from it, free pushes onto it. The chunks stay *in use* as far as the
//! TLSF heap knows: `free` finds them by their header as today, and their
//! neighbours coalesce around them as around any used block. An empty list
//! is refilled from the shared lists below (a batch that grows with the
//! misses of that class, up to `BATCH_BYTES`), else from the heap (one
//! chunk, cut from the thread's *reserve*, a chunk of up to 1 MiB taken
//! from the heap with one lock acquisition: see `carve`); a cache holding more
//! than 3/4 of its cap (`MEMALLOC_MEDIUM_CACHE`, default `CAP_DEFAULT`) at a
//! malloc's slow path, or more than its cap after a free, gives a few
//! chunks of a few classes to the shared lists (`flush_soft`,
//! `flush_over_cap`). A thread's whole cache goes back at its exit (a pthread
//! key destructor) and at `malloc_trim`, so the break still shrinks. A
//! thread's frees go to its own cache whoever allocated the block, as in
//! tcmalloc: cross-thread frees need no remote list.
//!
//! **Shared lists**: between the thread lists and the heap, per class,
//! `SHARDS` lists of chunks that threads over their cap gave back, for any
//! thread's refill (tcmalloc's transfer cache), each under its own lock. A
//! thread starts at its home shard and passes over one whose lock is held
//! (`lock_shard`, `from_central`), so that a holder preempted for a time
//! slice (more threads than cores) keeps nobody waiting.
//!
//! **Big classes** (above 256 KiB, `BIG_FIRST..NMC`): a thread's lists of
//! them hold at most `big_cap` bytes together (a quarter of its cap, and
//! room for one 1 MiB chunk; with the default cap and fewer than 16
//! threads, up to 6 MiB, the cap raised as much: `big_extra`); a big chunk
//! freed past that goes to its
//! class's shared list (`free_big`, under the cache's lock: `free_fast`
//! leaves big chunks to `free`). A big chunk in a thread's list is up to
//! 1 MiB of pages the program may have written, which no other thread
//! uses and nothing purges until the thread exits or goes idle.
//!
//! Why not per-thread TLSF arenas: an arena per thread needs a remote-free
//! list and a way to give an exited thread's arena back, doubles the
//! regions to trim, and does not make a refill cheaper than one lock round
//! trip per batch; the caches keep the one heap (one break that shrinks,
//! one index) and put the lock behind a batch.
//!
//! **Integrity**: a cached chunk carries at `+24` (its `prev_free` word) the
//! mark `mc_key() ^ address`; a second free of it finds the mark and is
//! reported as a double free, by whichever thread frees it. A chunk taken
//! from a list must still have its mark (a use after free that overwrote it,
//! or a corrupted link, is reported). The chunk's own header is checked on
//! free by the export layer (tag, FREE bit); its neighbours' headers and
//! footers (an overflow past the block, which other threads may be
//! rewriting under the heap lock) when the chunk goes back to the heap
//! (`Heap::validate`, under the lock), at a flush, a thread's exit or
//! `malloc_trim`. The head
//! word of a cached chunk is never written outside the heap lock: the heap
//! sets and clears PREV_FREE on it when its neighbour changes.
//!
//! Invariants, per thread cache: every listed chunk is an in-use heap chunk
//! (not mmapped) of exactly its class's chunk size (`free_odd` cuts any
//! other down first); `low[k] + above[k]` is the length of list k; `bytes`
//! is the sum of the sizes of the listed chunks and the pending one
//! (`pend`, cached by the last fast free and not linked yet), `class_chunk(k)`
//! each; after every free,
//! `bytes <= cap`; a freed big chunk stays in the thread's list only if
//! then `big_held <= big_cap`.
//!
//! Cost: a pop or a push is a TLS load, the class (one byte of a table in
//! the cache itself) and three or four stores; the mark and header tests
//! of free; and the two increments of `busy` below, which also count the
//! pops. A 20000 B malloc+free pair: 99 instructions under callgrind
//! (`bench/pair.c`, 12 of them the loop's; 118 until 2026-12-07, see
//! docs/medium.md, "The fast paths' cost" and "Where the time went").
//!
//! **Idle threads** (an asymmetric Dekker handshake with `membarrier(2)`, as
//! in liburcu and folly's asymmetric fences). A thread blocked in a condvar
//! runs no code, yet holds up to its cap; another thread takes its lists
//! back, without the owner's fast paths taking a lock or an atomic
//! read-modify-write:
//! - *Owner, fast sections* (`pop`, the export layer's free through
//!   `free_fast`, `free`): `busy += 1` (odd: a plain store), then a plain
//!   load of a *signal*, then the lists, then `busy += 1` after a pop that
//!   served a chunk, `busy -= 1` otherwise (even again; release). The
//!   signal of `pop` and of the export layer's free is the gate's `RECLAIM` bit, which
//!   they test anyway with the slower modes (no instruction of its own);
//!   `free`'s is the cache's `own` lock being held. On a signal the section
//!   leaves (`busy -= 1`) without touching the lists and takes the slow
//!   path.
//! - *Owner, slow paths* (refill, flush, `malloc_trim`, statistics): under
//!   the cache's `own` lock (one compare-exchange), which bumps `act`.
//! - *Reclaimer* (any thread, from its refill or flush, outside its own
//!   lock, at most every quarter of `MEMALLOC_IDLE_MS` and every 16th slow
//!   path of a thread, holding the registry's lock `REG`): for a cache whose `(act, allocs + busy)` has not moved
//!   for `MEMALLOC_IDLE_MS`: takes `own` (try: a held lock means the owner
//!   is busy), sets the gate's `RECLAIM` bit, calls
//!   `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, then loads `busy`. If odd,
//!   it undoes both and leaves. If even, it takes the lists (empties them,
//!   `bytes = 0`), clears the bit after a release fence, releases `own`, and
//!   frees the chunks to the heap.
//!
//! Why the owner never touches its lists while the reclaimer does: the
//! membarrier puts a full barrier at some point P of the owner's
//! instruction stream (an IPI if it runs, a context switch if not) before
//! it returns. (1) Every owner load after P sees the signals, set before
//! the call. (2) Every owner store before P is visible to the reclaimer's
//! load of `busy`, after the call. The owner's `busy` stores come in
//! program order, so that load reads the last one before P or a later one.
//! If that is odd, or even after P, ending a section which began before
//! P, the reclaimer leaves or the section is over; in every case it reads
//! even only once each section that began before P has ended, and sees its
//! writes (release/acquire), while each section that begins after P loads
//! its signal after P and, by (1), keeps off the lists. A slow path's lock
//! excludes the reclaimer outright. When the reclaimer clears the signals
//! (after a release fence), a section that reads them clear (the acquire
//! fence after the gate's test, the lock's acquire) sees the emptied lists.
//! What the membarrier pays for is the processor's store-to-load reordering
//! in the owner (odd `busy` still in its store buffer when it loads the
//! signal), which a plain store and load do not prevent; the compiler keeps
//! the order (a compiler fence after the store). Without `membarrier`
//! (kernels before 4.14, a refusing filter) nothing is reclaimed.
//! - Exit: the thread leaves the registry under `REG` before it flushes;
//!   a reclaimer holds `REG` while it works, so it never sees a freed cache.
//! - Fork: the prepare handler takes `REG` (no reclaim under way), the child
//!   keeps its own cache alone in the registry and registers for
//!   `membarrier` again.
//! - A thread that only frees (no slow path, no allocation) looks idle and
//!   may be taken back while it pushes: the handshake covers it. After a
//!   reclaim a cache is not looked at again until its `(act, allocs + busy)` moves
//!   (`bytes` is the owner's alone, not read by the scan): such a thread
//!   keeps at most its cap until its next flush, as before.

use crate::chunk::*;
use crate::heap::HEAP;
use crate::lock::Lock;
use core::cell::UnsafeCell;
use core::ptr::{addr_of, addr_of_mut, null_mut};
use core::sync::atomic::{compiler_fence, fence, AtomicU32, AtomicUsize, Ordering};

/// Largest request served from the caches.
pub const MC_MAX: usize = 1 << 20;
/// Smallest request served from the caches, minus one (the small classes).
pub const MC_MIN: usize = crate::cache::SMALL_MAX;
/// Number of medium classes: 4 per power of two from 4 KiB to 1 MiB.
pub const NMC: usize = 32;
/// The first of the *big* classes (above 256 KiB): a thread's lists of
/// them hold at most `big_cap` bytes together (see `free_big`).
pub const BIG_FIRST: usize = 24;
/// Default cap of one thread's cache, in chunk bytes.
pub const CAP_DEFAULT: usize = crate::config::MEDIUM_CACHE_DEFAULT;
/// A refill from the shared lists takes up to this many bytes of one class
/// (at least one chunk); one from the heap takes one chunk (see `refill`).
/// (When the heap's refills took the batch too, each chunk's header a page
/// fault in fresh memory: 64 KiB and 8 chunks made the medium latency
/// workload's malloc p99.99 25.6-27.4k cycles, 32 KiB and 4 chunks
/// 17.4-18.4k, with bench/mthreads' rates at 1-32 threads unchanged.)
const BATCH_BYTES: usize = 32 << 10;
/// A refill takes at most this many chunks.
const BATCH_MAX: u32 = 4;

/// The class of a request of `n` bytes, `MC_MIN < n <= MC_MAX`: one load
/// from `CLASS_OF_KIB` (every class size is a multiple of 1 KiB, so the
/// smallest class of at least `n` bytes is the smallest of at least
/// `ceil(n / 1024)` KiB).
#[inline(always)]
pub fn class_of(n: usize) -> usize {
    // (n - 1 < MC_MAX: the index is below 1024.)
    // SAFETY: in bounds, as said.
    unsafe { *CLASS_OF_KIB.get_unchecked((n - 1) >> 10) as usize }
}

/// `class_of(n)` from cache `tc`'s copy of the table (the fast path holds
/// `tc` already: no address of a static to form).
///
/// # Safety
/// `tc` is a cache (live or static); `MC_MIN < n <= MC_MAX`.
#[inline(always)]
unsafe fn class_in(tc: *const MCache, n: usize) -> usize {
    // (n - 1 < MC_MAX: the index is below 1024.)
    *(*tc).class_of_kib.get_unchecked((n - 1) >> 10) as usize
}

static CLASS_OF_KIB: [u8; MC_MAX >> 10] = CLASS_OF_KIB_T;

/// Per `k`, the class of requests of `1024 k + 1 ..= 1024 (k + 1)` bytes
/// (`class_by_shift`'s answer, tabulated).
const CLASS_OF_KIB_T: [u8; MC_MAX >> 10] = {
    let mut t = [0u8; MC_MAX >> 10];
    let mut k = MC_MIN >> 10;
    while k < t.len() {
        t[k] = class_by_shift(1024 * k + 1) as u8;
        k += 1;
    }
    t
};

/// The class of a request of `n` bytes computed from its top bits.
const fn class_by_shift(n: usize) -> usize {
    let m = n - 1;
    let msb = (usize::BITS - 1 - m.leading_zeros()) as usize;
    ((msb - 12) << 2) + ((m >> (msb - 2)) & 3)
}

/// The user size of class `k`.
#[inline(always)]
pub const fn class_size(k: usize) -> usize {
    (5 + (k & 3)) << ((k >> 2) + 10)
}

/// The chunk size of class `k`: its size and `CHUNK_PAD` (`ALIGN` for the
/// big classes).
#[inline(always)]
const fn class_chunk(k: usize) -> usize {
    class_size(k) + if k < BIG_FIRST { CHUNK_PAD } else { ALIGN }
}

/// A class's chunk is this much above its size (`request_to_size` asks
/// `ALIGN`): a multiple of 64, so that every chunk a thread cuts from its
/// reserve (`carve`, from the reserve's end down) starts at the same offset
/// in its cache line as the reserve's end. Why: free reads the header at
/// `p - 8`, and the program has just touched `p`; with chunks of
/// `ALIGN` past a multiple of 1 KiB, a quarter of the medium blocks began a
/// cache line (the header in the line before), and 2.6% a page (the header
/// on the page before: a TLB miss too), since most classes are whole pages
/// and reserves end at page boundaries: on the medium latency workload
/// those frees were most of those over 858 cycles (an untimed read of the
/// header before each free took them from about 1750 to 80 a million).
/// Not the big classes (above 256 KiB), which are not cut from reserves:
/// padded too, `c_tests/bigreuse.c`'s churn of 256 KiB-64 MiB blocks took
/// 3800-4100 page faults against 1300-1900 (bound 3000).
const CHUNK_PAD: usize = 64;

/// The bits of a cached chunk's head word that free's fast path keeps:
/// the size with the profiler's mark (`SAMPLED`: a sampled block's size is
/// then above every class, and its free takes the slow path, which drops
/// its sample) and every flag but PREV_FREE (which the heap sets and clears
/// on a cached chunk when its neighbour changes): a chunk to cache has
/// MARK, neither FREE nor MMAPPED.
pub const HEAD_MASK: usize = SIZE_SAMPLED | MARK | MMAPPED | FREE;

/// The class a chunk of `s` bytes serves: the largest whose chunk size is
/// at most `s`. One load from `CLASS_OF_CHUNK_KIB` and a compare.
///
/// # Safety
/// `class_chunk(0) <= s <= class_chunk(NMC - 1)` (the frees test it).
#[inline(always)]
unsafe fn class_of_chunk(s: usize) -> usize {
    let k = *CLASS_OF_CHUNK_KIB.get_unchecked((s - ALIGN) >> 10) as usize;
    // (A chunk less than `CHUNK_PAD` past a class's size holds the class
    // below.)
    k - (class_chunk(k) > s) as usize
}

/// Per `k`, the largest class whose size is at most `1024 k` bytes (a chunk
/// of `1024 k + ALIGN ..` bytes serves it: every class size is a multiple
/// of 1 KiB); 0 below the first class, which no cached chunk is.
static CLASS_OF_CHUNK_KIB: [u8; (MC_MAX >> 10) + 1] = CLASS_OF_CHUNK_KIB_T;
const CLASS_OF_CHUNK_KIB_T: [u8; (MC_MAX >> 10) + 1] = {
    let mut t = [0u8; (MC_MAX >> 10) + 1];
    let mut k = class_size(0) >> 10;
    while k < t.len() {
        let mut c = 0;
        while c + 1 < NMC && class_size(c + 1) <= 1024 * k {
            c += 1;
        }
        t[k] = c as u8;
        k += 1;
    }
    t
};

/// Per `d >> 10`, the class of a chunk of `class_chunk(0) + d` bytes below
/// the big classes when that is its class's chunk size exactly, else
/// `SINK`, whose `cw` is above every cap: free's fast path then leaves the
/// chunk to `free` at no cost of its own (see `free_odd`). (The free's
/// range test's difference indexes it with no offset.)
const FREE_CLASS_LEN: usize = ((class_chunk(BIG_FIRST - 1) - class_chunk(0)) >> 10) + 1;
const FREE_CLASS_T: [u8; FREE_CLASS_LEN] = {
    let mut t = [0u8; FREE_CLASS_LEN];
    let mut i = 0;
    while i < FREE_CLASS_LEN {
        let k = CLASS_OF_CHUNK_KIB_T[i + (class_size(0) >> 10)] as usize;
        t[i] = if class_chunk(k) == class_chunk(0) + (i << 10) {
            k as u8
        } else {
            SINK as u8
        };
        i += 1;
    }
    t
};

/// `class_chunk(k)` per class (`MCache::cw`), and for `SINK` a size above
/// every cap (which no addition to `bytes` overflows).
const CW_T: [usize; NMC + 1] = {
    let mut t = [usize::MAX / 2; NMC + 1];
    let mut k = 0;
    while k < NMC {
        t[k] = class_chunk(k);
        k += 1;
    }
    t
};

const _: () = assert!(class_size(0) == 5120 && class_size(3) == 8192);
const _: () = assert!(class_size(NMC - 1) == MC_MAX && class_size(4) == 10240);
const _: () = assert!(class_size(BIG_FIRST - 1) == 256 << 10 && BIG_FIRST < NMC);
const _: () = assert!(request_to_size(class_size(0)).unwrap() <= class_chunk(0));
const _: () = assert!(CHUNK_PAD.is_multiple_of(64) && CHUNK_PAD < 1024 - ALIGN);

/// The key of the marks (see `mark`); a live cache keeps a copy (`mkey`).
#[inline(always)]
fn mark_key() -> usize {
    crate::guard::list_key().rotate_left(17) ^ 0x6d63_6163_6865
}

/// The mark of a cached chunk `c` (at `+24`): the key itself, as a small
/// block's (`cache`). (It was `key ^ address` until 2026-12-07: one
/// instruction more on each of malloc's and free's fast paths, for no
/// report more: a second free finds a random 64-bit word either way, and a
/// freed chunk's link and mark give the key away alike to a program that
/// reads freed memory.)
#[inline(always)]
fn mark(_c: *const Chunk) -> *mut Chunk {
    mark_key() as *mut Chunk
}

/// The sink's list (`MCache::pend`), past the classes'.
const SINK: usize = NMC;

/// Cache states.
const EMPTY: u32 = 0;
const LIVE: u32 = 1;
const DEAD: u32 = 2;

/// A thread's medium cache.
#[repr(C)]
pub struct MCache {
    /// Per class, the cached chunks (linked through `next_free`).
    /// (Index `SINK`, past the classes, is the sink's list: see `pend`.)
    head: [*mut Chunk; NMC + 1],
    /// Per class, the list's low-water mark: the shortest list `k` has been
    /// since the last flush, that many chunks sat unused all along
    /// (tcmalloc's), and the chunks above it. The list's length is their
    /// sum (`count_of`): a pop updates the two with no branch (a
    /// saturating decrement of `above`, whose borrow decrements `low`:
    /// `sub`, `adc`, `sbb`), a push `above` alone. (A pop's `left < low`
    /// test was taken at random, 5.5% of the pops of `bench/mthreads 1`,
    /// and mispredicted as often: cachegrind, --branch-sim=yes.)
    low: [u32; NMC + 1],
    above: [u32; NMC + 1],
    /// This thread's cap: `cap()`, less while many threads have a cache
    /// (see `thread_cap`).
    cap: usize,
    /// Chunks a refill of each class takes next (grows with the misses).
    batch: [u32; NMC],
    /// Chunk bytes in the lists: each listed chunk is its class's chunk
    /// size exactly (`class_chunk`, see `free_odd`), so that a pop need not
    /// read the chunk's header (in another cache line than its link for one
    /// chunk in four): a subtraction of `cw[k]`.
    bytes: usize,
    /// The chunk the last fast free cached, not in its list yet (its class
    /// `pend_k`): the next fast free, or any slow path (`settle`), pushes
    /// it. Counted in `bytes`, not in `count`. See `free_fast` for why.
    /// When none is, `sink` (a live cache's; null in the static ones,
    /// whose frees never get that far) of class `SINK`: the fast free
    /// pushes it on that list, which nobody reads, rather than test for
    /// none.
    pend: *mut Chunk,
    pend_k: usize,
    /// The stand-in pending chunk.
    sink: Chunk,
    /// Odd while the owner is in a fast section (see "Idle threads" above);
    /// each pop that served a chunk adds 2 (its count of allocations: the
    /// section's two stores count it, with no counter of its own).
    busy: AtomicU32,
    /// `busy` as of the last `publish`.
    busy_published: u32,
    /// The most `bytes` has been at a slow path or a free that took one
    /// (statistics, tests): the fast path of free leaves it alone, but
    /// `bytes` only passes the cap through `free`, which records it.
    peak: usize,
    /// Allocations served by the slow paths since the last `publish` (read
    /// by the reclaimer; the fast path's are in `busy`).
    allocs: AtomicUsize,
    /// While profiling, bytes the pops may still serve before the next
    /// sample: their own countdown (`prof::count_in`, a subtraction in this
    /// line where the thread's count cost five more instructions); 0 until
    /// its first interval is drawn. The owner's alone.
    prof_left: i64,
    /// `bytes` as of the last `publish` (its share of `CACHED`).
    published: usize,
    /// Frees seen while the heap's purge was due (see `purge_tick`).
    tick: u32,
    state: u32,
    /// `mark_key()`, read once (0 in the static caches, which hold nothing):
    /// the fast paths' mark, one load from this line.
    mkey: usize,
    /// `guard::tag_mul()`, read once (the fallback in the static caches,
    /// whose frees the cap test sends to `free` whatever the tag says), so
    /// that free's tag test multiplies by it from this line (`imul`).
    pub tag_mul: usize,
    /// `HEAD_MASK`, for free's fast path (an `and` from memory).
    head_mask: usize,
    /// Held by the owner on its slow paths, and by a reclaimer while it
    /// takes the lists.
    own: Lock,
    /// Bumped at each of the owner's slow paths (read by the reclaimer).
    act: AtomicUsize,
    /// The registry's links (under `REG`).
    next: *mut MCache,
    prev: *mut MCache,
    /// What the reclaimer saw last of `(act, allocs)`, and since when (under
    /// `REG`; 0: not seen yet); whether it emptied the lists since.
    seen: (usize, usize),
    seen_at: usize,
    spent: bool,
    /// The class after which `flush_over_cap`'s low-water pass starts.
    flush_at: u8,
    /// The shard of the shared lists this thread looks at first.
    home: usize,
    /// This thread's reserve (`heap::take_reserve`; null: none): refills
    /// from the heap cut their chunks from it without the heap's lock (see
    /// `carve`). The owner's alone, under `own`.
    res: *mut Chunk,
    /// The size of this thread's next reserve (doubles up to `RES_MAX`).
    res_next: usize,
    /// `class_chunk(k)` per class, for the fast paths' `bytes` (every
    /// listed chunk is exactly its class's size: see `free_odd`); `SINK`'s
    /// is above every cap (`FREE_CLASS_T`).
    cw: [usize; NMC + 1],
    /// `CLASS_OF_KIB` and `FREE_CLASS_T`, here so that the fast paths index
    /// them from the cache they hold (one instruction less each than from
    /// a static, whose address takes one). Never written after `new`.
    class_of_kib: [u8; MC_MAX >> 10],
    free_class: [u8; FREE_CLASS_LEN],
}

/// The length of `t`'s list `k`.
#[inline]
fn count_of(t: &MCache, k: usize) -> u32 {
    t.low[k] + t.above[k]
}

/// Sets the length of `t`'s list `k` to `n` (chunks taken off it by a slow
/// path): the low-water mark falls with it.
#[inline]
fn set_count(t: &mut MCache, k: usize, n: u32) {
    t.low[k] = t.low[k].min(n);
    t.above[k] = n - t.low[k];
}

/// A flush: each list's low-water mark is its length now.
fn reset_low(t: &mut MCache) {
    for k in 0..NMC {
        t.low[k] += t.above[k];
        t.above[k] = 0;
    }
}

impl MCache {
    const fn new(state: u32) -> MCache {
        MCache {
            head: [null_mut(); NMC + 1],
            low: [0; NMC + 1],
            above: [0; NMC + 1],
            cap: 0,
            batch: [1; NMC],
            bytes: 0,
            pend: null_mut(),
            pend_k: SINK,
            sink: Chunk {
                prev_size: 0,
                head: 0,
                next_free: null_mut(),
                prev_free: null_mut(),
            },
            busy: AtomicU32::new(0),
            busy_published: 0,
            peak: 0,
            allocs: AtomicUsize::new(0),
            prof_left: 0,
            published: 0,
            tick: 0,
            state,
            mkey: 0,
            tag_mul: crate::guard::TAG_MUL_FALLBACK,
            head_mask: HEAD_MASK,
            own: Lock::new(),
            act: AtomicUsize::new(0),
            next: null_mut(),
            prev: null_mut(),
            seen: (0, 0),
            seen_at: 0,
            spent: false,
            flush_at: 0,
            home: 0,
            res: null_mut(),
            res_next: RES_FIRST,
            cw: CW_T,
            class_of_kib: CLASS_OF_KIB_T,
            free_class: FREE_CLASS_T,
        }
    }
}

/// The cache of a thread that has no medium cache yet. Never written but
/// for `busy` (atomic; in no registry, so nobody reads it): its lists are
/// empty, so every pop misses into the slow path.
pub static mut EMPTY_MCACHE: MCache = MCache::new(EMPTY);
/// The cache of a thread whose cache was given back at exit. Never written
/// but for `busy`.
pub static mut DEAD_MCACHE: MCache = MCache::new(DEAD);

/// This thread's medium cache: `tls::mc_get()`, `tls::mc_set(c)`, an
/// initial-exec slot whose first value is `EMPTY_MCACHE`.
mod tls {
    use super::{MCache, EMPTY_MCACHE};
    crate::tls::thread_slot!("memalloc_mc_slot", MCache = EMPTY_MCACHE; mc_get, mc_set);
}

/// Bytes in all threads' caches, as of each thread's last slow path.
static CACHED: AtomicUsize = AtomicUsize::new(0);
/// The most one thread's cache has held after a free.
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Allocations served by the caches, as of each thread's last slow path.
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Refills and flushes (each one lock acquisition).
static REFILLS: AtomicUsize = AtomicUsize::new(0);
static FLUSHES: AtomicUsize = AtomicUsize::new(0);
/// Of them: refills the heap served, and flushes and drains that gave
/// chunks back to the heap (each one acquisition of the heap's lock).
static HEAP_REFILLS: AtomicUsize = AtomicUsize::new(0);
static HEAP_FLUSHES: AtomicUsize = AtomicUsize::new(0);
/// Acquisitions of a shared list's lock that found it held.
pub static CENTRAL_CONTENDED: AtomicUsize = AtomicUsize::new(0);
static KEY: spin::Once<libc::pthread_key_t> = spin::Once::new();

/// A shard of a class's shared list (tcmalloc's transfer cache): chunks
/// that threads over their cap gave back, for any thread's next refill of
/// the class, before they go back to the heap. Moving a batch here or from
/// here costs a walk of the batch and this shard's own lock, not the
/// heap's lock and a TLSF operation per chunk. The chunks keep their mark
/// (a double free of one is still found).
///
/// Each class has `SHARDS` of them; a thread starts at its `home` shard
/// and, finding a shard's lock held, tries the next rather than wait
/// (`lock_shard`, `from_central`): a thread preempted while it holds one
/// (with more threads than cores, for a time slice) blocks no other
/// thread. One list per class: at 64 threads on 2 cores, 150-180
/// contended acquisitions of these locks per million allocations on
/// `bench/mthreads` (see docs/medium.md).
#[repr(C, align(64))]
struct Central {
    lock: Lock,
    /// Chunks in `list` (written under `lock`; read without it as a hint).
    n: AtomicU32,
    list: UnsafeCell<*mut Chunk>,
}

// SAFETY: `list` is only touched under `lock`.
unsafe impl Sync for Central {}

/// Shards per class (see `Central`).
const SHARDS: usize = 8;

static CENTRAL: [[Central; SHARDS]; NMC] = [const {
    [const {
        Central {
            lock: Lock::new(),
            n: AtomicU32::new(0),
            list: UnsafeCell::new(null_mut()),
        }
    }; SHARDS]
}; NMC];
/// The next cache's `home` shard (a count of caches set up).
static NEXT_HOME: AtomicUsize = AtomicUsize::new(0);
/// Shards skipped because their lock was held (statistics).
static SHARD_SKIPS: AtomicUsize = AtomicUsize::new(0);

/// Shards passed over because their lock was held (statistics).
pub fn shard_skips() -> usize {
    SHARD_SKIPS.load(Ordering::Relaxed)
}

/// Every shard of every class (the fork handlers, `drain_central`).
fn all_shards() -> impl Iterator<Item = &'static Central> {
    CENTRAL.iter().flatten()
}

/// Locks a shard of class `j`'s shared list for a push: the first free
/// one from `home` on, else (every one held) waits for `home`'s.
fn lock_shard(j: usize, home: usize) -> (&'static Central, crate::lock::Guard<'static>) {
    let sh = &CENTRAL[j];
    for i in 0..SHARDS {
        let c = &sh[(home + i) % SHARDS];
        if let Some(g) = c.lock.try_guard() {
            return (c, g);
        }
        SHARD_SKIPS.fetch_add(1, Ordering::Relaxed);
    }
    let c = &sh[home % SHARDS];
    (c, c.lock.guard_counted(&CENTRAL_CONTENDED))
}

/// Bytes in all classes' shared lists.
static CENTRAL_BYTES: AtomicUsize = AtomicUsize::new(0);
/// The shared lists hold at most about this much; past it, a class's
/// list goes back to the heap.
const CENTRAL_CAP: usize = 16 << 20;

/// What the shared lists may hold after a big chunk went there: `CAP_MIN`
/// per thread with a cache, at most `CENTRAL_CAP`. (A drain gives back the
/// biggest classes first. A lone thread's big frees filled them to 16 MiB,
/// which no other thread would take and nothing gave back before
/// `malloc_trim`. Not for all classes: a lone thread's medium churn, 256
/// blocks of 4-64 KiB, went through the heap then, at 16 MiB of RSS
/// against 4.)
fn big_central_cap() -> usize {
    CENTRAL_CAP.min(THREADS.load(Ordering::Relaxed).max(1) * CAP_MIN)
}

/// Caches live now.
static THREADS: AtomicUsize = AtomicUsize::new(0);
/// What all threads' caches hold together, at most about: with many
/// threads each gets a share (tcmalloc's overall thread cache budget),
/// but never less than `CAP_MIN`. (32 MiB and 1 MiB made the caps of 16-64
/// threads 1-2 MiB: their caches flushed to the shared lists every few
/// dozen frees, 750-2200 contended lock acquisitions per million pairs on
/// bench/mthreads 16-64; with these, 40-170, and the same peak RSS: the
/// chunks a cache holds were touched anyway. 128 MiB halved the cap at 64
/// threads against 32, and a list's refills and flushes go about as the
/// inverse square of the room it has: at 64 threads, 2.6-3.2 times the
/// refills and 3.5-4.7 times the flushes of 256 MiB, whose peak RSS was
/// 104-108 MB against 94-108 on `bench/mthreads 64 16e6 256 4k 64k u`.)
const BUDGET: usize = 256 << 20;
const CAP_MIN: usize = 2 << 20;

/// The cap of one thread's cache while `THREADS` threads have one: its
/// share of `BUDGET`, and the room `big_extra` gives its big classes.
fn thread_cap() -> usize {
    let n = THREADS.load(Ordering::Relaxed).max(1);
    let base = base_cap(n);
    base + big_extra(base, n)
}

/// A thread's share of `BUDGET` while `n` threads have a cache.
fn base_cap(n: usize) -> usize {
    cap().min((BUDGET / n).max(CAP_MIN))
}

/// What all threads' big classes may hold together beyond a quarter of
/// their caps, while few threads have a cache: each gets `BIG_BUDGET / n`,
/// at most `BIG_SHARE_MAX`. (One chunk of each big class is 4.9 MiB: a
/// lone thread allocating and freeing blocks of 64 KiB-1 MiB at random,
/// its big classes held to 1 MiB, sent 38% of its requests through the
/// shared lists, 152k of 400k in `bench/grid 1 4e5 64k 1M short`, some
/// 500 instructions and six atomic read-modify-writes each: 1.38 times
/// glibc's time.) From 16 threads on, the quarter alone, as before.
const BIG_BUDGET: usize = 16 << 20;
const BIG_SHARE_MAX: usize = 6 << 20;

/// The room a thread's big classes get above their quarter of cap `base`
/// while `n` threads have a cache (see `BIG_BUDGET`); 0 without a cache.
fn big_extra(base: usize, n: usize) -> usize {
    // (Not with a cap the program set: `MEMALLOC_MEDIUM_CACHE` is its cap.)
    if base == 0 || cap() != CAP_DEFAULT {
        return 0;
    }
    (BIG_BUDGET / n)
        .min(BIG_SHARE_MAX)
        .saturating_sub(big_quarter(base))
}

/// A quarter of cap `base`, but room for one chunk of the biggest class
/// (within the cap).
fn big_quarter(base: usize) -> usize {
    (base / 4).max(class_chunk(NMC - 1)).min(base)
}

/// The per-thread cap in bytes (`MEMALLOC_MEDIUM_CACHE`).
pub fn cap() -> usize {
    crate::config::medium_cache()
}

/// The cap of a lone thread's cache, `cap()` and its big classes' extra
/// room (`big_extra`): the most one thread may hold.
pub fn lone_cap() -> usize {
    let base = base_cap(1);
    base + big_extra(base, 1)
}

/// (refills the heap served, flushes and drains to the heap): the medium
/// caches' acquisitions of the heap's lock.
pub fn heap_trips() -> (usize, usize) {
    (
        HEAP_REFILLS.load(Ordering::Relaxed),
        HEAP_FLUSHES.load(Ordering::Relaxed),
    )
}

/// (bytes cached in all threads as of their last slow path, the most one
/// thread held, allocations served, refills, flushes).
pub fn totals() -> (usize, usize, usize, usize, usize) {
    (
        CACHED.load(Ordering::Relaxed) + CENTRAL_BYTES.load(Ordering::Relaxed),
        PEAK.load(Ordering::Relaxed),
        ALLOCS.load(Ordering::Relaxed),
        REFILLS.load(Ordering::Relaxed),
        FLUSHES.load(Ordering::Relaxed),
    )
}

// ---- fast paths ------------------------------------------------------------

/// The fast path of malloc for `MC_MIN < n <= MC_MAX`: the user pointer of
/// a chunk from this thread's list of `n`'s class, else `miss(n)`. A listed
/// chunk serves its class whatever the mmap threshold has become since it
/// was cached (as glibc's tcache does). With the profiler on, the chunk is
/// served the same way and handed to `counted` with the cache's countdown
/// (the export layer counts it: `prof::count_in`); with a perturb byte set,
/// `miss` (the export layer's slower path fills the block). The modes and
/// a reclaim's signal are one test of the gate, before the list is read;
/// when any is on, `pop_moded` takes the chunk (one pop per malloc,
/// profiling or not). Every call here is in tail position, so that the
/// caller needs no frame.
#[inline(always)]
pub fn pop(
    n: usize,
    counted: impl FnOnce(*mut u8, usize, &mut i64) -> *mut u8,
    miss: impl FnOnce(usize) -> *mut u8,
) -> *mut u8 {
    let tc = tls::mc_get();
    // SAFETY: tc is this thread's cache or a static one; n is in range.
    let k = unsafe { class_in(tc, n) };
    // SAFETY: as `alloc`; `enter` .. `leave` is a fast section, whose
    // signal (the gate's `RECLAIM` bit, tested with the modes: no
    // instruction of its own) is tested before the list is read.
    unsafe {
        enter(tc);
        let g = crate::gate::bits();
        if g & (crate::gate::PERTURB | crate::gate::PROF | crate::gate::RECLAIM) != 0 {
            // (Profiling alone: the bits already loaded are tested again,
            // where `pop_moded` loaded them again.)
            if g & (crate::gate::PERTURB | crate::gate::RECLAIM) == 0 {
                return pop_counted(n, k, tc, counted, miss);
            }
            return pop_moded(n, k, tc, counted, miss);
        }
        let c = take_head(tc, k);
        if c.is_null() {
            return miss(n);
        }
        to_user(c)
    }
}

/// In a fast section of `tc` whose signal was found clear: takes the head
/// of list `k` (null if it is empty) and leaves the section.
///
/// # Safety
/// `tc` is this thread's cache, in a fast section with its signal clear.
#[inline(always)]
unsafe fn take_head(tc: *mut MCache, k: usize) -> *mut Chunk {
    // (A reclaim that cleared the bit is seen whole: its release fence.)
    fence(Ordering::Acquire);
    let c = *(*tc).head.get_unchecked(k);
    if c.is_null() {
        leave(tc);
        return c;
    }
    let c = take(tc, k, c);
    leave_popped(tc);
    c
}

/// `pop` while a mode is on or a reclaim under way (out of line: the fast
/// path keeps no frame), inside `pop`'s fast section.
///
/// # Safety
/// `tc` is this thread's cache, in a fast section `pop` entered.
#[inline(never)]
unsafe fn pop_moded(
    n: usize,
    k: usize,
    tc: *mut MCache,
    counted: impl FnOnce(*mut u8, usize, &mut i64) -> *mut u8,
    miss: impl FnOnce(usize) -> *mut u8,
) -> *mut u8 {
    if crate::gate::any(crate::gate::PERTURB | crate::gate::RECLAIM) {
        leave(tc);
        return miss(n);
    }
    let c = take_head(tc, k);
    if c.is_null() {
        return miss(n);
    }
    // (`tc` is live: its list held `c`.)
    counted(to_user(c), n, &mut (*tc).prof_left)
}

/// `pop` while profiling and no other mode of the gate's is on: the chunk
/// taken, counted on the cache's own countdown (out of line, as
/// `pop_moded`).
///
/// # Safety
/// As `pop_moded`; the gate's `PERTURB` and `RECLAIM` were found clear in
/// this fast section.
#[inline(never)]
unsafe fn pop_counted(
    n: usize,
    k: usize,
    tc: *mut MCache,
    counted: impl FnOnce(*mut u8, usize, &mut i64) -> *mut u8,
    miss: impl FnOnce(usize) -> *mut u8,
) -> *mut u8 {
    let c = take_head(tc, k);
    if c.is_null() {
        return miss(n);
    }
    // (`tc` is live: its list held `c`.)
    counted(to_user(c), n, &mut (*tc).prof_left)
}

/// Enters a fast section of this thread's cache `tc`: `busy += 1` (odd),
/// kept by the compiler before every later access (the processor may
/// still let the next loads pass the store: the reclaimer's `membarrier`
/// covers that). The caller then tests the section's signal (see "Idle
/// threads"). (Only the owner writes `busy`: a load and a store, one
/// `inc` to memory.)
///
/// # Safety
/// `tc` is this thread's cache (or a static one: nobody reads their `busy`).
#[inline(always)]
unsafe fn enter(tc: *mut MCache) {
    let b = &(*tc).busy;
    b.store(b.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
}

/// Leaves a fast section that served no chunk: `busy -= 1` (even again),
/// after every write to the lists (release).
///
/// # Safety
/// As [`enter`].
#[inline(always)]
unsafe fn leave(tc: *mut MCache) {
    let b = &(*tc).busy;
    fence(Ordering::Release);
    b.store(b.load(Ordering::Relaxed).wrapping_sub(1), Ordering::Relaxed);
}

/// Leaves a pop's fast section that served a chunk: `busy += 1` (even
/// again, and 2 more than before the section: the allocation counted).
///
/// # Safety
/// As [`enter`].
#[inline(always)]
unsafe fn leave_popped(tc: *mut MCache) {
    let b = &(*tc).busy;
    fence(Ordering::Release);
    b.store(b.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Enters a fast section of this thread's cache, for the export layer's
/// fast path of free (`free_fast`); returns the cache.
#[inline(always)]
pub fn enter_mine() -> *mut MCache {
    let tc = tls::mc_get();
    // SAFETY: the slot holds this thread's cache or a static one.
    unsafe { enter(tc) };
    tc
}

/// Leaves the section `enter_mine` entered.
///
/// # Safety
/// `tc` is `enter_mine`'s answer on this thread.
#[inline(always)]
pub unsafe fn leave_mine(tc: *mut MCache) {
    leave(tc)
}

/// Unlinks `c`, the head of `tc`'s list `k`, and returns it.
///
/// # Safety
/// `tc` is this thread's live cache; `c` the head of its non-empty list `k`.
#[inline(always)]
unsafe fn take(tc: *mut MCache, k: usize, c: *mut Chunk) -> *mut Chunk {
    if crate::guard::CHECKS {
        // The mark's test and its clearing in one `xor` to memory: 0 is
        // left exactly when the mark was there, and its flags are the test
        // (one instruction fewer than a compare and a store of 0; the
        // compiler, given the same in Rust, loads, xors and stores).
        // SAFETY: `c` is a chunk of the list, its `prev_free` word ours to
        // write (0 once taken); the label reports and never returns.
        core::arch::asm!(
            "xor qword ptr [{c} + {off}], {k}",
            "jnz {bad}",
            c = in(reg) c,
            k = in(reg) (*tc).mkey,
            off = const core::mem::offset_of!(Chunk, prev_free),
            bad = label { corrupt_user(to_user(c)) },
            options(nostack),
        );
    } else {
        (*c).prev_free = null_mut();
    }
    *(*tc).head.get_unchecked_mut(k) = (*c).next_free;
    // `if above[k] > 0 { above[k] -= 1 } else { low[k] -= 1 }` in three
    // instructions to memory, no branch: the `sub` borrows when `above[k]`
    // is 0, the `adc` undoes it and carries out exactly then, the `sbb`
    // subtracts that carry from `low[k]` (at least 1: the list held `c`).
    // SAFETY: `k < NMC`: `above[k]` and `low[k]` are `u32`s of the cache.
    core::arch::asm!(
        "sub dword ptr [{t} + {k} * 4 + {ab}], 1",
        "adc dword ptr [{t} + {k} * 4 + {ab}], 0",
        "sbb dword ptr [{t} + {k} * 4 + {lo}], 0",
        t = in(reg) tc,
        k = in(reg) k,
        ab = const core::mem::offset_of!(MCache, above),
        lo = const core::mem::offset_of!(MCache, low),
        options(nostack),
    );
    (*tc).bytes -= *(*tc).cw.get_unchecked(k);
    c
}

/// A block of this thread's cache's first class, for a sampled small request
/// (`cache::set_medium_sample`: the profiler samples blocks of 1 KiB classes
/// and up from here, not from the heap); null when that class is mapped (a
/// low mmap threshold) or memory is exhausted.
pub fn sample() -> *mut u8 {
    let m = MC_MIN + 1;
    match request_to_size(m) {
        Some(cs) if cs < crate::large::threshold() => {
            let c = alloc(m);
            if c.is_null() {
                null_mut()
            } else {
                to_user(c)
            }
        }
        _ => null_mut(),
    }
}

/// A chunk for a request of `n` bytes (`MC_MIN < n <= MC_MAX`, below the
/// mmap threshold); null when memory is exhausted. (After `pop` missed: the
/// list is empty, a mode is on or a reclaim under way; under the cache's
/// `own` lock.)
#[inline]
pub fn alloc(n: usize) -> *mut Chunk {
    let tc = tls::mc_get();
    let k = class_of(n);
    // SAFETY: tc is this thread's cache or a static one whose lists are
    // empty; listed chunks are in-use heap chunks this thread owns.
    unsafe { alloc_slow(tc, k, n) }
}

/// Takes in-use heap chunk `c` (its header checked, not mmapped) into this
/// thread's cache; false if it does not belong there (the caller frees it to
/// the heap).
///
/// # Safety
/// `c` is a chunk passed to free whose own header passed the tag check.
#[inline(always)]
pub unsafe fn free(c: *mut Chunk) -> bool {
    let s = size(c);
    if !(class_chunk(0)..=class_chunk(NMC - 1)).contains(&s) {
        return false;
    }
    let tc = tls::mc_get();
    if (*tc).state != LIVE {
        return free_slow(c);
    }
    if class_chunk(class_of_chunk(s)) != s {
        return free_odd(tc, c, s);
    }
    if s >= class_chunk(BIG_FIRST) {
        return free_big(tc, c, s);
    }
    let mk = check_free(tc, c);
    let ps = crate::heap::purge_state();
    if ps != crate::heap::PURGE_IDLE {
        purge_tick(tc, ps);
    }
    // A fast section whose signal is `own` held (by a reclaimer).
    enter(tc);
    let held = (*tc).own.is_locked();
    fence(Ordering::Acquire);
    if held {
        leave(tc);
        return free_locked(tc, c, s, mk);
    }
    let k = push(tc, c, s, mk);
    let b = (*tc).bytes + class_chunk(k);
    (*tc).bytes = b;
    let over = b > (*tc).cap;
    if !over && b > (*tc).peak {
        (*tc).peak = b;
    }
    leave(tc);
    if over {
        lock_own(tc);
        flush_over_cap(tc, k);
        unlock_own(tc);
        maybe_reclaim();
    }
    true
}

/// `free` of a chunk of `s` bytes that is no class's chunk size (a realloc
/// resized it in place, or an aligned allocation cut it): cut down to its
/// class's size under the heap's lock (the rest goes back to the heap), then
/// cached as any other; given to the heap whole where its rest is too small
/// to be a chunk. Why: the lists hold chunks of their class's exact size,
/// so that a pop, which reads no header, takes off `bytes` what the free
/// added (counted at the class's size, a chunk that a realloc left up to
/// 25% bigger was counted short: the statistics' `in_use` too high and a
/// cache over its cap).
///
/// # Safety
/// As [`free`]; `tc` is this thread's live cache, `s` is `c`'s size.
#[cold]
#[inline(never)]
unsafe fn free_odd(tc: *mut MCache, c: *mut Chunk, s: usize) -> bool {
    if (*tc).cap == 0 {
        return false; // (the caches are off: the heap takes it)
    }
    let _ = check_free(tc, c);
    let cs = class_chunk(class_of_chunk(s));
    let r = HEAP.with(|h| {
        h.validate(c)?;
        if !h.resize_in_place(c, cs, cs) || size(c) != cs {
            h.free(c);
            return Ok(false);
        }
        Ok(true)
    });
    match r {
        Err(e) => crate::report::fatal(e, to_user(c)),
        Ok(true) => free(c),
        Ok(false) => true,
    }
}

/// `free` while a reclaimer holds `tc`'s lock: waits for it, then caches
/// `c` under the lock.
///
/// # Safety
/// As [`free`]; `mk` is `c`'s mark in `tc`.
#[cold]
#[inline(never)]
unsafe fn free_locked(tc: *mut MCache, c: *mut Chunk, s: usize, mk: usize) -> bool {
    lock_own(tc);
    let k = push(tc, c, s, mk);
    let b = (*tc).bytes + class_chunk(k);
    (*tc).bytes = b;
    if b > (*tc).cap {
        flush_over_cap(tc, k);
    } else if b > (*tc).peak {
        (*tc).peak = b;
    }
    unlock_own(tc);
    true
}

/// The share of a thread's cap its big classes may hold together: a
/// quarter, but room for one chunk of the biggest class (within the cap).
/// (Half the cap: the same rate on `mlarge-16`, and c_tests/stress.c's
/// peak RSS 211-224 MiB against 189-202.)
/// With few threads, more: `big_extra`, which `thread_cap` added to the
/// cap.
#[inline]
fn big_cap(t: &MCache) -> usize {
    let n = THREADS.load(Ordering::Relaxed).max(1);
    let base = base_cap(n);
    (big_quarter(base) + big_extra(base, n)).min(t.cap)
}

/// The bytes `t`'s big classes hold, at least (each chunk counted at its
/// class's chunk size; a listed chunk is less than the next class's).
fn big_held(t: &MCache) -> usize {
    (BIG_FIRST..NMC)
        .map(|j| count_of(t, j) as usize * class_chunk(j))
        .sum()
}

/// `free` of a chunk of a big class (`s` bytes): into this thread's list
/// while its big classes hold at most `big_cap`, else to the class's shared
/// list (for any thread's next refill), under the cache's lock.
///
/// Why a share: a big chunk a thread frees and keeps is up to 1 MiB of
/// pages the program wrote, which nobody can use or purge while it sits in
/// the cache; with the whole cap for them, 32 threads of
/// `c_tests/stress.c` cached 4 MiB each, its peak RSS rose from 166-178 to
/// 222-260 MiB, and 2000 frees did not purge it all back (see
/// docs/medium.md).
///
/// # Safety
/// As [`free`]; `tc` is this thread's live cache.
#[cold]
#[inline(never)]
unsafe fn free_big(tc: *mut MCache, c: *mut Chunk, s: usize) -> bool {
    let mk = check_free(tc, c);
    let ps = crate::heap::purge_state();
    if ps != crate::heap::PURGE_IDLE {
        purge_tick(tc, ps);
    }
    lock_own(tc);
    let t = &mut *tc;
    let k = push(tc, c, s, mk);
    t.bytes += class_chunk(k);
    if t.cap != 0 && big_held(t) > big_cap(t) {
        // c (the head of list k) leaves for the shared list.
        let _ = to_central(t, k, 1);
        FLUSHES.fetch_add(1, Ordering::Relaxed);
        let cc = big_central_cap();
        if CENTRAL_BYTES.load(Ordering::Relaxed) > cc {
            drain_central_soft(cc / 2);
        }
    }
    if t.bytes > t.cap {
        // (MEMALLOC_MEDIUM_CACHE=0 too: to the heap)
        flush_over_cap(tc, k);
    } else if t.bytes > t.peak {
        t.peak = t.bytes;
    }
    unlock_own(tc);
    true
}

/// `free`'s common case only: false, having done nothing, unless `c` fits
/// a class and this thread's cache is live and stays under its cap (the
/// caller then leaves the section and runs `free`); true once `c` is
/// cached. No call but to the reports: the export layer's fast path of
/// free needs no register saved.
///
/// # Safety
/// As [`free`]; `s` is `c`'s size; the caller found `c` neither free nor
/// mmapped (a second free of a free chunk is reported by the slow path);
/// `tc` is this thread's cache (`enter`'s answer), in a fast
/// section whose signal the caller tested after `enter`: the gate's
/// `RECLAIM` bit clear (with every slower mode: `gate`, the heap's purge
/// among them), followed by an acquire fence.
#[inline(always)]
pub unsafe fn free_fast(tc: *mut MCache, c: *mut Chunk, h: usize) -> bool {
    // One subtraction and one rotation test the flags and the range, and
    // give the class's index: `w - (class_chunk(0) | MARK)` has its low 4
    // bits clear exactly when the flags are MARK alone (ours, neither free
    // nor mapped; a free chunk's second free goes to the slow path, which
    // reports it), and every class's chunk (but the big ones') is
    // `CHUNK_PAD` past a multiple of 1 KiB, the first's 5 KiB. Rotated right by 4, any flag left over
    // lands in the top bits and fails the range's test. (Three
    // instructions fewer than the flags' test and the range's apart.) The
    // big classes take `free`, which bounds their share.
    // (The mask read from the cache: an `and` from memory, where the
    // constant took a 10-byte `movabs` first.)
    // (Rotated by 10: a size that is not `class_chunk(0)` plus whole KiB,
    // which no class's chunk is, lands in the top bits as well; one whose
    // KiB are no class's has the class `SINK`, whose `cw` fails the cap's
    // test: such a chunk, which a realloc or an aligned allocation made,
    // goes to `free`, and the lists hold chunks of their class's exact
    // size.)
    let w = h & (*tc).head_mask;
    let d = w.wrapping_sub(class_chunk(0) | MARK).rotate_right(10);
    if d > (class_chunk(BIG_FIRST - 1) - class_chunk(0)) >> 10 {
        return false;
    }
    // (In bounds: `d` passed the range test, so it is below
    // `FREE_CLASS_LEN`.)
    let k = *(*tc).free_class.get_unchecked(d) as usize;
    // (The static caches, EMPTY and DEAD, have a cap of 0: this test
    // sends them to `free` too.)
    let b = (*tc).bytes + *(*tc).cw.get_unchecked(k);
    if b > (*tc).cap {
        return false;
    }
    debug_assert!((*tc).state == LIVE);
    let mk = (*tc).mkey;
    if crate::guard::CHECKS && (*c).prev_free as usize == mk {
        double_free(c);
    }
    // The push waits for the next free: `c` is marked (a second free of it
    // is found) and becomes the pending chunk, and the chunk pending
    // before is pushed, its class long read. Why:
    // `k` comes from the header, in the line the program read last (often
    // a cache miss still under way); stores to `head[k]`, `count[k]` and
    // `above[k]`, whose address waited for it, held up the next malloc's
    // loads of its list (the processor cannot tell them apart until then),
    // and with them the program's next miss: 1.2x tcmalloc's time on
    // `bench/mthreads 1 2e7 256 5121 6144 u`, 1.0x with the class fixed.
    (*c).prev_free = mk as *mut Chunk;
    let prev = (*tc).pend;
    let pk = (*tc).pend_k;
    (*tc).pend = c;
    (*tc).pend_k = k;
    (*tc).bytes = b;
    link_class(tc, prev, pk);
    true
}

/// Pushes the pending chunk, if any, on its list (the owner's slow paths,
/// under `own`, and a reclaim: nothing reads the lists with one pending).
///
/// # Safety
/// `tc` is a cache whose lists its caller may write.
#[inline]
unsafe fn settle(tc: *mut MCache) {
    let sink = addr_of_mut!((*tc).sink);
    let c = core::mem::replace(&mut (*tc).pend, sink);
    let k = core::mem::replace(&mut (*tc).pend_k, SINK);
    if c != sink {
        link_class(tc, c, k);
    }
}

/// The checks of a free of in-use chunk `c` into live cache
/// `tc`: reports a double free (the chunk free, or marked as cached).
/// Returns `c`'s mark.
///
/// # Safety
/// As [`free`]; `tc` is this thread's live cache.
#[inline(always)]
unsafe fn check_free(tc: *mut MCache, c: *mut Chunk) -> usize {
    let mk = (*tc).mkey;
    if crate::guard::CHECKS && (is_free(c) || (*c).prev_free as usize == mk) {
        double_free(c);
    }
    // Not the next header: reading it cost a cache miss of its own on most
    // frees (a third of free's time on bench/mthreads 1). An overflow into
    // it is reported when the chunk leaves the caches for the heap
    // (`free_to_heap`: `Heap::validate`, which also checks the previous
    // footer), or by the next block's own free (its tag).
    mk
}

/// Pushes `c` (`s` bytes, mark `mk`) on its class's list in `tc`; returns
/// the class. The caller adds `s` to `bytes`.
///
/// # Safety
/// As [`check_free`], which passed.
#[inline(always)]
unsafe fn push(tc: *mut MCache, c: *mut Chunk, s: usize, mk: usize) -> usize {
    let k = class_of_chunk(s);
    push_class(tc, c, k, mk);
    k
}

/// Pushes `c` (mark `mk`) on `tc`'s list `k`, its class's.
///
/// # Safety
/// As [`push`].
#[inline(always)]
unsafe fn push_class(tc: *mut MCache, c: *mut Chunk, k: usize, mk: usize) {
    (*c).prev_free = mk as *mut Chunk;
    link_class(tc, c, k);
}

/// Links `c`, marked, on `tc`'s list `k`.
///
/// # Safety
/// As [`push`]; `k < NMC`.
#[inline(always)]
unsafe fn link_class(tc: *mut MCache, c: *mut Chunk, k: usize) {
    (*c).next_free = *(*tc).head.get_unchecked(k);
    *(*tc).head.get_unchecked_mut(k) = c;
    *(*tc).above.get_unchecked_mut(k) += 1;
}

/// Reports a second free of a chunk that is cached or free.
#[cold]
#[inline(never)]
fn double_free(c: *mut Chunk) -> ! {
    crate::report::fatal("double free", to_user(c))
}

/// A free while the heap's purge is due or part way: the free a heap free
/// would have been runs the purge's step (every free while one is part
/// way; every 64th while one is due, the heap's clock deciding), so that
/// memory still goes back when the program's frees stop at the caches
/// (c_tests/stress.c: 2000 frees after a pause).
///
/// # Safety
/// `tc` is this thread's live cache.
#[cold]
#[inline(never)]
unsafe fn purge_tick(tc: *mut MCache, ps: u8) {
    if (*tc).cap == 0 {
        return; // (the caches are off: the free goes to the heap)
    }
    (*tc).tick = (*tc).tick.wrapping_add(1);
    // (While one is only due, every 64th free looks at the clock, and takes
    // the heap's lock only once the purge's interval is over: taking it on
    // every 64th free, 8 threads queued on it, 2400 times in 2M pairs of
    // bench/mthreads. And only if the lock is free: a thread that holds it
    // is doing the heap's work, purge steps included, and a free that
    // waited for it behind its madvise calls would gain nothing.)
    if ps == crate::heap::PURGE_ON
        || ((*tc).tick.is_multiple_of(64) && crate::os::coarse_ns() >= crate::heap::purge_after())
    {
        let _ = HEAP.try_with(|h| h.purge_from_cache());
    }
}

/// The purge's tick (`purge_tick`) of a free that the export layer's fast
/// path cached (`free_fast`) while the gate's `PURGE` bit was set: what
/// `free` does before its push.
#[inline]
pub fn tick_purge() {
    let ps = crate::heap::purge_state();
    if ps != crate::heap::PURGE_IDLE {
        // SAFETY: the slot holds this thread's cache, live since the chunk
        // went to it (a static one has a cap of 0: `purge_tick` returns).
        unsafe { purge_tick(tls::mc_get(), ps) }
    }
}

/// `corrupt` of the chunk whose user pointer is `p` (the fast path's
/// report: passing the pointer the report names leaves the chunk's
/// register free for the pop, and the request's for the miss).
#[cold]
#[inline(never)]
fn corrupt_user(p: *mut u8) -> ! {
    corrupt(from_user(p))
}

/// Reports a cached chunk whose mark or link was overwritten.
#[cold]
#[inline(never)]
fn corrupt(c: *mut Chunk) -> ! {
    crate::report::fatal(
        "heap corruption (a freed medium block was written: use after free?)",
        to_user(c),
    )
}

// ---- slow paths ------------------------------------------------------------

/// `pop` missed: set up the cache, or take the head of the class's list
/// under the cache's lock, or refill the list from the heap.
///
/// # Safety
/// `tc` is this thread's cache (or a static one), `k` the class of `n`.
#[cold]
#[inline(never)]
unsafe fn alloc_slow(mut tc: *mut MCache, k: usize, n: usize) -> *mut Chunk {
    if (*tc).state == EMPTY {
        tc = init_cache();
    }
    let csize = class_chunk(k);
    // (The caller tested the request against the mmap threshold. Its
    // class may round it past a threshold that fell in between, as the
    // dynamic one does, set to the size of a freed mapping: the class's
    // chunk serves it all the same. Served unrounded, it would go to a
    // smaller class's list when freed, and every later request of its
    // size would miss and go to the heap: 1044 instructions a pair of
    // 200000 B against 117.)
    if tc.is_null() || (*tc).state != LIVE {
        return alloc_uncached(n);
    }
    // (A list whose one chunk is the one pending (`free_fast`), settled by
    // `lock_own`, is refilled all the same: a program that frees and
    // allocates one block of a class in turn, as `bench/pair.c`, needs two
    // chunks of it going round, one in the list while the other waits.)
    let pend = (*tc).pend;
    lock_own(tc);
    let c = *(*tc).head.get_unchecked(k);
    let only_pend = !c.is_null() && c == pend && (*c).next_free.is_null();
    let r = if !c.is_null() && !only_pend {
        *(*tc).allocs.get_mut() += 1;
        take(tc, k, c)
    } else if (*tc).cap == 0 {
        // MEMALLOC_MEDIUM_CACHE=0 (a reclaimer's 0 is gone: we hold `own`)
        alloc_uncached(n)
    } else {
        refill(&mut *tc, k, csize)
    };
    if (*tc).bytes > soft_cap((*tc).cap) {
        flush_soft(tc, k);
    }
    unlock_own(tc);
    maybe_reclaim();
    r
}

/// No cache (being set up, torn down, or none wanted): the heap serves the
/// request itself, unrounded.
fn alloc_uncached(n: usize) -> *mut Chunk {
    let cs = request_to_size(n).unwrap_or(0);
    HEAP.with(|h| h.alloc(cs))
}

/// Refills `t`'s empty list `k` (chunks of `csize` bytes) from the class's
/// shared list, else takes one chunk of a bigger class's shared list
/// (`bigger_resident`), else refills from the heap; returns the chunk for
/// the caller.
///
/// # Safety
/// `t` is this thread's live cache, its `own` lock held.
unsafe fn refill(t: &mut MCache, k: usize, csize: usize) -> *mut Chunk {
    // A batch fills at most the room left under the cap.
    let room = (t.cap.saturating_sub(t.bytes) / csize) as u32;
    let want = t.batch[k].min(room).max(1);
    let first = from_central(t, k, want);
    if !first.is_null() {
        *t.allocs.get_mut() += 1;
        REFILLS.fetch_add(1, Ordering::Relaxed);
        return first;
    }
    if let Some(c) = bigger_resident(t, k) {
        REFILLS.fetch_add(1, Ordering::Relaxed);
        return c;
    }
    // One chunk from the heap, whatever the batch: each chunk cut writes
    // its header, a page fault in fresh memory, and the program faults in
    // that page anyway when it writes its block (a batch of 4 took up to 4
    // faults in one malloc: on the medium latency workload, malloc p99.99
    // 13.1k cycles against 16.6k, medians of 3 alternating runs; the cut
    // takes no lock, see `carve`).
    let first = carve(t, k, csize, 1);
    // The next miss of this class takes twice as many, up to the batch limit.
    let limit = ((BATCH_BYTES / csize) as u32).clamp(1, BATCH_MAX);
    t.batch[k] = (want * 2).min(limit);
    if !first.is_null() {
        *t.allocs.get_mut() += 1;
    }
    REFILLS.fetch_add(1, Ordering::Relaxed);
    publish(t);
    first
}

/// Takes `want` chunks of `csize` bytes (class `k`'s) from the heap: cut
/// from this thread's reserve without the heap's lock, else (the reserve
/// has no room for one) from a new reserve taken with one acquisition,
/// which gives the old one's rest back in the same; returns the first, the
/// others go to `t`'s list `k` (null when memory is exhausted). A chunk
/// bigger than `RES_CHUNK_MAX` comes from the heap itself (one acquisition:
/// `want` is 1 for those).
///
/// Why a reserve: 64 threads filling their caches at once took the heap's
/// lock 20k times in a 2e6-pair run of `bench/mthreads 64`, twice per
/// refill of several chunks (the span's cut, then its own size set under
/// the lock) and with a page fault under it (the span's header); whenever
/// a holder was preempted, 63 threads queued behind it (556 contended
/// acquisitions per million allocations at 7fd92b8, `results/syscalls.md`).
/// With reserves of 128 KiB-1 MiB a thread takes the lock about a tenth as
/// often in its first fill, and the headers of the chunks it cuts fault in
/// outside it. The reserve is address space: only the headers of the
/// chunks cut touch its pages, and its rest goes back to the heap at the
/// thread's exit, at `malloc_trim` and when the thread is idle.
///
/// # Safety
/// `t` is this thread's live cache, its `own` lock held; `csize` is class
/// `k`'s chunk size; `want * csize` at most `BATCH_BYTES` when `want > 1`.
unsafe fn carve(t: &mut MCache, k: usize, csize: usize, want: u32) -> *mut Chunk {
    if csize > RES_CHUNK_MAX {
        HEAP_REFILLS.fetch_add(1, Ordering::Relaxed);
        return HEAP.with(|h| {
            let c = h.alloc(csize);
            exact(h, c, csize)
        });
    }
    let mut first = null_mut();
    if !t.res.is_null() {
        first = crate::heap::reserve_cut(t.res, csize);
    }
    if first.is_null() {
        let old = core::mem::replace(&mut t.res, null_mut());
        let min = csize * want as usize + crate::heap::RES_KEEP;
        let want_res = t.res_next.max(min);
        let r = HEAP.with(|h| {
            if !old.is_null() {
                h.end_reserve(old);
            }
            let r = h.take_reserve(want_res, min);
            if r.is_null() {
                // (No room for a reserve: one chunk, if any.)
                let c = h.alloc(csize);
                first = exact(h, c, csize);
            }
            r
        });
        HEAP_REFILLS.fetch_add(1, Ordering::Relaxed);
        t.res_next = (t.res_next * 2).min(RES_MAX);
        if r.is_null() {
            return first;
        }
        t.res = r;
        first = crate::heap::reserve_cut(r, csize);
    }
    // The cuts go down from the reserve's end; the caller gets the lowest
    // and the list the others, the one just above it on top: the batch is
    // handed out in ascending order, a block's neighbour above it the
    // block handed out next (as the heap's front cuts did: an overflow of
    // one into the next, in c_tests/misuse.c's overflow-free-next, is found
    // at that next block's free).
    for _ in 1..want {
        let c = crate::heap::reserve_cut(t.res, csize);
        if c.is_null() {
            break;
        }
        let mk = t.mkey;
        push_class(t, first, k, mk);
        t.bytes += csize;
        first = c;
    }
    first
}

/// Chunk `c` (null, or fresh from heap `h`, under its lock) cut down to
/// `csize` bytes where the heap kept a rest with it (`alloc_keeping`), so
/// that it goes to its class's list when freed (see `free_odd`).
///
/// # Safety
/// `h` is the locked heap; `c` null or a chunk it just allocated.
unsafe fn exact(h: &mut crate::heap::Heap, c: *mut Chunk, csize: usize) -> *mut Chunk {
    if !c.is_null() && size(c) != csize {
        let _ = h.resize_in_place(c, csize, csize);
    }
    c
}

/// The size of a thread's first reserve, and the most a reserve grows to
/// (each next one twice the last): a thread that makes few medium requests
/// holds little address space, one that fills a cache takes the heap's
/// lock a few times. (`bench/mthreads 64 2e6 256 4k 64k u`: 8.5 MiB per
/// thread in its first fill.)
const RES_FIRST: usize = 128 << 10;
const RES_MAX: usize = 1 << 20;
/// The biggest chunk cut from a reserve (bigger ones: one acquisition each
/// anyway, and a reserve would be spent on a few).
const RES_CHUNK_MAX: usize = 128 << 10;

/// A chunk of one of the `SPAN_UP` classes above `k` from their shared
/// lists, for a refill of class `k` that found its own shared list empty;
/// None if they are all empty. (Big chunks serve big classes only.)
///
/// Why: a chunk that was handed out before has its first page resident
/// (its header, and what the program wrote there), while a chunk the heap
/// cuts for a refill puts its header in a page nobody touched since the
/// heap grew or purged it: a page fault inside malloc (4-8k cycles here).
/// With random sizes each class's live count drifts, so classes ran dry
/// while their neighbours' chunks waited in the shared lists, to be drained
/// to the heap later: on the medium latency workload (`bench/latency 2e6
/// 50000 1 medium`, one byte written per block) 3800 refills from the heap
/// in the timed phase, a fault each; twice tcmalloc's and mimalloc's
/// faults in all (4500 against 2100 and 2350), now 1900-2300. The chunk
/// serves the request whole (its usable size is larger; freed, it goes to
/// its own class's list).
///
/// Only the shared lists: they hold what threads had no use for. Taking
/// this thread's own lists of those classes too (1900 faults) made them run
/// dry in turn, and a program that writes its blocks whole (the small
/// latency workload) then faulted in more fresh pages of the bigger class:
/// 4100 faults against 2350 (2500 with the shared lists only).
///
/// # Safety
/// As [`refill`].
unsafe fn bigger_resident(t: &mut MCache, k: usize) -> Option<*mut Chunk> {
    let top = if k < BIG_FIRST { BIG_FIRST } else { NMC };
    let end = (k + 1 + SPAN_UP).min(top);
    for j in k + 1..end {
        let c = from_central(t, j, 1);
        if !c.is_null() {
            *t.allocs.get_mut() += 1;
            return Some(c);
        }
    }
    None
}

/// How many classes above its own a refill looks at for a chunk that was
/// used before (`bigger_resident`): one power of two, so a request is
/// served by a chunk less than twice its size. Pages of the chunk past
/// what the program writes stay as they were (resident only if an earlier
/// owner wrote them). Faults in the timed phase of the medium latency
/// workload, with this thread's lists too: 1 class, 2800; 2, 2600; 4, 1900.
const SPAN_UP: usize = 4;

/// Free by a thread with no live cache: set one up (a thread that frees
/// medium blocks, even others', keeps doing so), else the heap takes it.
///
/// # Safety
/// As [`free`].
#[cold]
#[inline(never)]
unsafe fn free_slow(c: *mut Chunk) -> bool {
    let mut tc = tls::mc_get();
    if (*tc).state == EMPTY {
        tc = init_cache();
    }
    if tc.is_null() || (*tc).state != LIVE {
        // The heap takes it: not if it is in some thread's list.
        if crate::guard::CHECKS && (is_free(c) || (*c).prev_free == mark(c)) {
            double_free(c);
        }
        return false;
    }
    free(c)
}

/// The cache holds more than its cap after a free into class `k`: a
/// flush (`flush_some`), then as many chunks as it takes to bring the cache
/// under its cap. Shared lists over their cap go back to the heap.
///
/// # Safety
/// `tc` is this thread's live cache, its `own` lock held.
#[cold]
#[inline(never)]
unsafe fn flush_over_cap(tc: *mut MCache, k: usize) {
    let t = &mut *tc;
    if t.cap == 0 {
        // MEMALLOC_MEDIUM_CACHE=0: no cache, every free goes to the heap.
        flush_all_of(t);
        return;
    }
    if t.bytes <= t.cap {
        return; // (a reclaimer took the lists meanwhile)
    }
    let mut moved = flush_some(t, k);
    // Under the cap in any case (one chunk over it, in the common case).
    // (`to_central`'s `set_count` keeps each low-water mark at most its
    // list's length.)
    let mut j = NMC;
    while t.bytes > t.cap && j > 0 {
        j -= 1;
        while t.bytes > t.cap && count_of(t, j) != 0 {
            moved += to_central(t, j, 1);
        }
    }
    flushed(t, moved);
}

/// A malloc's slow path (a refill of class `k`, or its list's head taken
/// under the lock) found the cache above `soft_cap`: a flush
/// (`flush_some`), which a free would otherwise make once the cache passed
/// its cap.
///
/// Why here: a flush costs 1-2k cycles, most of them misses on the chunks
/// it walks to (the lists' links), and came on 0.06% of the frees of the
/// medium latency workload, all of its free p99.99 and a third of its
/// p99.9 (an `rdtsc` probe: the walk 760-850 cycles a class given to). A
/// malloc that takes this path is a refill already, from the shared lists
/// (500 cycles) or the heap (a page fault: 5-7k): its tails are the
/// faults', which a flush does not reach. Between `soft_cap` and the cap,
/// the frees take the fast path; a thread that only frees still flushes at
/// the cap.
///
/// # Safety
/// As [`flush_over_cap`].
#[cold]
#[inline(never)]
unsafe fn flush_soft(tc: *mut MCache, k: usize) {
    let t = &mut *tc;
    if t.bytes <= soft_cap(t.cap) {
        return;
    }
    let moved = flush_some(t, k);
    flushed(t, moved);
}

/// Where the malloc slow paths flush (`flush_soft`): 7/8 of the cap.
#[inline]
fn soft_cap(cap: usize) -> usize {
    cap - cap / 4
}

/// A flush's accounting: `moved` chunks went to the shared lists; shared
/// lists over their cap go back to the heap.
///
/// # Safety
/// As [`flush_over_cap`].
unsafe fn flushed(t: &mut MCache, moved: u32) {
    FLUSHES.fetch_add(1, Ordering::Relaxed);
    // (A read-modify-write only for a new maximum.)
    if moved as usize > FLUSH_MOST.load(Ordering::Relaxed) {
        FLUSH_MOST.fetch_max(moved as usize, Ordering::Relaxed);
    }
    publish(t);
    if CENTRAL_BYTES.load(Ordering::Relaxed) > CENTRAL_CAP {
        drain_central_soft(CENTRAL_CAP / 2);
    }
}

/// Moves to the shared lists half of the chunks of the classes that sat
/// unused since the last look (their low-water mark: tcmalloc's
/// scavenging), from the class after the last one looked at on (each class
/// looked at starts its mark again), then, while the cache holds more than
/// `FLUSH_GOAL` of `soft_cap`, half of the biggest classes' lists (not
/// `k`'s, which the program is using): at most `FLUSH_MOVES` chunks of at
/// most `FLUSH_CLASSES` classes. Returns the chunks moved.
///
/// # Safety
/// `t` is this thread's live cache, its `own` lock held.
unsafe fn flush_some(t: &mut MCache, k: usize) -> u32 {
    let goal = soft_cap(t.cap) / FLUSH_GOAL.1 * FLUSH_GOAL.0;
    // The classes to give to, at most `FLUSH_CLASSES`, and how many chunks
    // each: first half the unused chunks (low-water mark) of the classes
    // from the cursor on, each class looked at starting its mark again;
    // then, while that leaves the cache above `goal`, half of the biggest
    // classes' lists (not `k`'s, which the program is using).
    let mut picks = [(0usize, 0u32); FLUSH_CLASSES];
    let mut np = 0;
    let mut budget = FLUSH_MOVES;
    let mut planned = 0;
    let mut j = t.flush_at as usize;
    for _ in 0..NMC {
        j = (j + 1) % NMC;
        let want = t.low[j].div_ceil(2).min(budget);
        // (The mark starts again: its list's length. The give's
        // `set_count` then lowers it by the chunks given.)
        t.low[j] += t.above[j];
        t.above[j] = 0;
        if want != 0 {
            picks[np] = (j, want);
            np += 1;
            budget -= want;
            planned += want as usize * class_chunk(j);
            if np == FLUSH_CLASSES || budget == 0 {
                break;
            }
        }
    }
    t.flush_at = j as u8;
    let mut j = NMC;
    while np < FLUSH_CLASSES && t.bytes.saturating_sub(planned) > goal && j > 0 && budget > 0 {
        j -= 1;
        let want = count_of(t, j).div_ceil(2).min(budget);
        if j != k && want != 0 && !picks[..np].iter().any(|p| p.0 == j) {
            picks[np] = (j, want);
            np += 1;
            budget -= want;
            planned += want as usize * class_chunk(j);
        }
    }
    for &(j, _) in &picks[..np] {
        prefetch(addr_of!(CENTRAL[j][t.home % SHARDS]) as *const u8);
    }
    let mut moved = 0;
    let mut given = 0;
    for &(j, want) in &picks[..np] {
        let m = give_central(t, j, want);
        moved += m;
        given += m as usize * class_chunk(j);
    }
    CENTRAL_BYTES.fetch_add(given, Ordering::Relaxed);
    moved
}

/// The chunks one `flush_over_cap` moves at most, beyond those it must
/// move to bring the cache under its cap, and the part of the cap it
/// flushes down to (numerator, denominator). A flush's cost grows with the
/// chunks it moves (a walk to each one's header, in `to_central`) and the
/// classes it gives to (a shard's lock and the shared counters for each):
/// a flush of half of each class's unused chunks, then down to three
/// quarters of the cap, moved up to 75 chunks on the medium latency
/// workload and took that free to 4-7k cycles (0.05% of its frees, its
/// p99.99). Bounded, flushes come more often and each costs less: see
/// docs/medium.md, "Bounded flushes", for where their cycles go.
const FLUSH_MOVES: u32 = 16;
const FLUSH_GOAL: (usize, usize) = (15, 16);
/// The classes one `flush_over_cap` gives to at most (beyond those it must
/// give to to bring the cache under its cap).
const FLUSH_CLASSES: usize = 2;

/// The most chunks one flush moved (statistics).
static FLUSH_MOST: AtomicUsize = AtomicUsize::new(0);

/// The most chunks one `flush_over_cap` moved to the shared lists.
pub fn flush_most() -> usize {
    FLUSH_MOST.load(Ordering::Relaxed)
}

/// Asks the processor for the cache line of `p`, for writing soon (a hint:
/// no fault, no change to memory, whatever `p` is).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes no memory.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_ET0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Moves the first `n` chunks of `t`'s class `j` to the class's shared
/// list; returns how many it moved (fewer if the list is shorter).
///
/// # Safety
/// `t` is this thread's live cache; its lists hold cached chunks.
unsafe fn to_central(t: &mut MCache, j: usize, n: u32) -> u32 {
    let m = give_central(t, j, n);
    CENTRAL_BYTES.fetch_add(m as usize * class_chunk(j), Ordering::Relaxed);
    m
}

/// `to_central` but for `CENTRAL_BYTES`, which the caller raises by the
/// bytes moved (`class_chunk(j)` each: a listed chunk is its class's size).
///
/// # Safety
/// As [`to_central`].
unsafe fn give_central(t: &mut MCache, j: usize, n: u32) -> u32 {
    let first = t.head[j];
    if n == 0 || first.is_null() {
        return 0;
    }
    let (mut last, mut m) = (first, 1u32);
    while m < n {
        let nx = (*last).next_free;
        if nx.is_null() {
            break;
        }
        last = nx;
        m += 1;
    }
    t.head[j] = (*last).next_free;
    set_count(t, j, count_of(t, j) - m);
    t.bytes -= m as usize * class_chunk(j);
    {
        let (cen, _g) = lock_shard(j, t.home);
        let l = &mut *cen.list.get();
        (*last).next_free = *l;
        *l = first;
        cen.n
            .store(cen.n.load(Ordering::Relaxed) + m, Ordering::Relaxed);
    }
    m
}

/// Takes up to `want` chunks of class `k` from its shared list: returns the
/// first (null if the list was empty), the others go to `t`'s list. The
/// shards are looked at from `t`'s home on; one whose lock is held is
/// passed over, and waited for only if no other had chunks.
///
/// # Safety
/// As [`to_central`].
unsafe fn from_central(t: &mut MCache, k: usize, want: u32) -> *mut Chunk {
    let sh = &CENTRAL[k];
    let mut held = None;
    for i in 0..SHARDS {
        let cen = &sh[(t.home + i) % SHARDS];
        if cen.n.load(Ordering::Relaxed) == 0 {
            continue; // (a racy peek: a miss only goes to the heap)
        }
        match cen.lock.try_guard() {
            Some(g) => {
                let c = take_shard(cen, want);
                drop(g);
                if !c.is_null() {
                    return finish_take(t, k, c);
                }
            }
            None => {
                SHARD_SKIPS.fetch_add(1, Ordering::Relaxed);
                held = held.or(Some(cen));
            }
        }
    }
    let Some(cen) = held else {
        return null_mut();
    };
    let c = {
        let _g = cen.lock.guard_counted(&CENTRAL_CONTENDED);
        take_shard(cen, want)
    };
    if c.is_null() {
        return c;
    }
    finish_take(t, k, c)
}

/// Under shard `cen`'s lock: unlinks up to `want` chunks from it; returns
/// the first, linked to the others through `next_free` and the last's link
/// null (null if the shard is empty).
///
/// # Safety
/// `cen`'s lock is held; its list holds cached chunks.
unsafe fn take_shard(cen: &Central, want: u32) -> *mut Chunk {
    let l = &mut *cen.list.get();
    let first = *l;
    if first.is_null() {
        return first;
    }
    let (mut last, mut m) = (first, 1u32);
    while m < want {
        let nx = (*last).next_free;
        if nx.is_null() {
            break;
        }
        last = nx;
        m += 1;
    }
    *l = (*last).next_free;
    (*last).next_free = null_mut();
    cen.n
        .store(cen.n.load(Ordering::Relaxed) - m, Ordering::Relaxed);
    first
}

/// Outside the shards' locks: accounts the chunks `take_shard` took
/// (`first` and those linked after it) and gives all but `first` to `t`'s
/// list `k`; returns `first` for the caller.
///
/// # Safety
/// `first` is `take_shard`'s answer, not null; `t` as [`to_central`].
unsafe fn finish_take(t: &mut MCache, k: usize, first: *mut Chunk) -> *mut Chunk {
    let (mut bytes, mut m, mut last) = (0, 0u32, first);
    let mut c = first;
    while !c.is_null() {
        bytes += size(c);
        m += 1;
        last = c;
        c = (*c).next_free;
    }
    CENTRAL_BYTES.fetch_sub(bytes, Ordering::Relaxed);
    if crate::guard::CHECKS && (*first).prev_free != mark(first) {
        corrupt(first);
    }
    // first goes to the caller; the rest to the thread's list
    if m > 1 {
        (*last).next_free = t.head[k];
        t.head[k] = (*first).next_free;
        t.above[k] += m - 1;
        t.bytes += (m - 1) as usize * class_chunk(k);
    }
    (*first).prev_free = null_mut();
    first
}

/// Gives the shared lists back to the heap, from the biggest class down,
/// until they hold at most `keep` bytes.
///
/// # Safety
/// The shared lists hold cached chunks (their locks guard them).
unsafe fn drain_central(keep: usize) {
    drain_central_by(keep, false)
}

/// `drain_central` from a flush (`flush_over_cap`, `free_big`): stops
/// while another thread holds the heap's lock, unless the shared lists
/// hold twice their cap (`CENTRAL_CAP`) or more. Why: a drain frees a
/// whole shard's list under one acquisition, the longest holds of the
/// heap's lock in the steady state; at 64 threads (c_tests/medium.c's part
/// 8, exits left out) they were most of the heap's contended acquisitions
/// once the refills cut their chunks from reserves. A thread that finds
/// the lock held leaves the drain to the next flush (or to the holder's).
///
/// # Safety
/// As [`drain_central`].
unsafe fn drain_central_soft(keep: usize) {
    drain_central_by(
        keep,
        CENTRAL_BYTES.load(Ordering::Relaxed) < 2 * CENTRAL_CAP,
    )
}

/// `drain_central`; `soft`: stop before a shard's list while the heap's
/// lock is held.
///
/// # Safety
/// As [`drain_central`].
unsafe fn drain_central_by(keep: usize, soft: bool) {
    let mut j = NMC * SHARDS;
    while j > 0 && CENTRAL_BYTES.load(Ordering::Relaxed) > keep {
        j -= 1;
        let cen = &CENTRAL[j / SHARDS][j % SHARDS];
        if cen.n.load(Ordering::Relaxed) == 0 {
            continue;
        }
        if soft && HEAP.lock().is_locked() {
            return; // (a racy peek: at worst one wait, as before)
        }
        let first = {
            let _g = cen.lock.guard_counted(&CENTRAL_CONTENDED);
            cen.n.store(0, Ordering::Relaxed);
            core::mem::replace(&mut *cen.list.get(), null_mut())
        };
        if first.is_null() {
            continue;
        }
        let mut err = None;
        let mut bytes = 0;
        HEAP.with(|h| {
            let mut c = first;
            while !c.is_null() && err.is_none() {
                let nx = (*c).next_free;
                bytes += size(c);
                err = free_to_heap(h, c);
                c = nx;
            }
        });
        CENTRAL_BYTES.fetch_sub(bytes, Ordering::Relaxed);
        FLUSHES.fetch_add(1, Ordering::Relaxed);
        HEAP_FLUSHES.fetch_add(1, Ordering::Relaxed);
        if let Some((e, c)) = err {
            crate::report::fatal(e, to_user(c));
        }
    }
}

/// Frees cached chunk `c` to heap `h` (under its lock) after the heap's
/// checks; the error to report otherwise (after the lock is released).
///
/// # Safety
/// `c` is a cached chunk taken off its list; `h` is the locked heap.
unsafe fn free_to_heap(
    h: &mut crate::heap::Heap,
    c: *mut Chunk,
) -> Option<(&'static str, *mut Chunk)> {
    if crate::guard::CHECKS && (*c).prev_free != mark(c) {
        return Some((
            "heap corruption (a freed medium block was written: use after free?)",
            c,
        ));
    }
    (*c).prev_free = null_mut();
    if let Err(e) = h.validate(c) {
        return Some((e, c));
    }
    h.free(c);
    None
}

/// For the fork handlers: takes the registry's lock (no reclaim is under
/// way then) and every shared list's lock.
pub fn lock_all() {
    REG.lock.lock();
    for c in all_shards() {
        c.lock.lock();
    }
}

/// For the fork handlers: releases every shared list's lock and the
/// registry's.
pub fn unlock_all() {
    for c in all_shards() {
        c.lock.unlock();
    }
    REG.lock.unlock();
}

/// In a fork child: the shared lists' locks are free again, and the only
/// thread is the one that forked (the others' caches are lost with them,
/// as glibc's tcaches are): the registry holds its cache alone, and the
/// child registers for `membarrier` again before its first reclaim.
pub fn reset_after_fork() {
    for c in all_shards() {
        c.lock.reset_after_fork();
    }
    REG.lock.reset_after_fork();
    let tc = tls::mc_get();
    // SAFETY: the slot holds this thread's cache or a static one; the
    // registry is ours alone (one thread, its lock reset).
    let live = unsafe {
        let live = (*tc).state == LIVE;
        let head = &mut *REG.head.get();
        *head = null_mut();
        if live {
            (*tc).next = null_mut();
            (*tc).prev = null_mut();
            (*tc).seen_at = 0;
            *head = tc;
        }
        live
    };
    THREADS.store(live as usize, Ordering::Relaxed);
    MEMBARRIER.store(MB_UNKNOWN, Ordering::Relaxed);
}

/// Gives the first `n` chunks of class `k`'s list back to heap `h`
/// (under its lock). Stops at a chunk the heap's checks reject, returning
/// the error to report (after the lock is released).
///
/// # Safety
/// As [`to_central`]; `h` is the locked heap.
unsafe fn release(
    h: &mut crate::heap::Heap,
    t: &mut MCache,
    k: usize,
    n: u32,
) -> Option<(&'static str, *mut Chunk)> {
    for _ in 0..n {
        let c = t.head[k];
        if c.is_null() {
            break;
        }
        t.head[k] = (*c).next_free;
        set_count(t, k, count_of(t, k) - 1);
        t.bytes -= class_chunk(k);
        let e = free_to_heap(h, c);
        if e.is_some() {
            return e;
        }
    }
    None
}

/// Gives every cached chunk of `t` back to the heap (one lock acquisition).
///
/// # Safety
/// As [`to_central`].
unsafe fn flush_all_of(t: &mut MCache) {
    settle(t);
    let res = core::mem::replace(&mut t.res, null_mut());
    if t.bytes == 0 && res.is_null() {
        return;
    }
    let mut err = None;
    HEAP.with(|h| {
        if !res.is_null() {
            h.end_reserve(res);
        }
        for k in 0..NMC {
            if err.is_none() {
                err = release(h, t, k, count_of(t, k));
            }
        }
    });
    reset_low(t);
    FLUSHES.fetch_add(1, Ordering::Relaxed);
    HEAP_FLUSHES.fetch_add(1, Ordering::Relaxed);
    publish(t);
    if let Some((e, c)) = err {
        crate::report::fatal(e, to_user(c));
    }
}

/// Adds what `t` did since its last publication to the global figures,
/// and sets its cap for the number of threads now.
///
/// # Safety
/// `t` is this thread's live cache.
unsafe fn publish(t: &mut MCache) {
    let bytes = t.bytes;
    t.peak = t.peak.max(bytes);
    t.cap = thread_cap();
    // (Outside the fast sections: `busy` is even.)
    let b = *t.busy.get_mut();
    let popped = (b.wrapping_sub(core::mem::replace(&mut t.busy_published, b)) / 2) as usize;
    ALLOCS.fetch_add(
        core::mem::take(t.allocs.get_mut()) + popped,
        Ordering::Relaxed,
    );
    PEAK.fetch_max(t.peak, Ordering::Relaxed);
    // CACHED: each thread's last published figure is in it; replace ours.
    let old = t.published;
    if bytes >= old {
        CACHED.fetch_add(bytes - old, Ordering::Relaxed);
    } else {
        CACHED.fetch_sub(old - bytes, Ordering::Relaxed);
    }
    t.published = bytes;
}

/// malloc_trim's part: gives the calling thread's cache and the shared
/// lists back to the heap.
pub fn flush_all() {
    let tc = tls::mc_get();
    // SAFETY: tc is this thread's cache; only a live one has chunks. The
    // shared lists are taken under their locks.
    unsafe {
        if (*tc).state == LIVE {
            lock_own(tc);
            flush_all_of(&mut *tc);
            unlock_own(tc);
        }
        drain_central(0);
    }
}

/// The statistics' part: publishes the calling thread's figures.
pub fn publish_mine() {
    let tc = tls::mc_get();
    // SAFETY: as flush_all.
    unsafe {
        if (*tc).state == LIVE {
            lock_own(tc);
            publish(&mut *tc);
            unlock_own(tc);
        }
    }
}

// ---- idle threads ------------------------------------------------------------

/// Takes `tc`'s lock for one of its owner's slow paths (waiting while a
/// reclaimer holds it), and counts the slow path (the reclaimer's sign of
/// life), and pushes the pending chunk on its list (`settle`).
///
/// # Safety
/// `tc` is this thread's live cache.
#[inline]
unsafe fn lock_own(tc: *mut MCache) {
    (*tc).own.lock();
    let a = &(*tc).act;
    a.store(a.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    settle(tc);
}

/// Releases what `lock_own` took.
///
/// # Safety
/// As [`lock_own`], which this thread called.
#[inline]
unsafe fn unlock_own(tc: *mut MCache) {
    (*tc).own.unlock();
}

/// The live caches, doubly linked through `next` and `prev`, under `lock`.
/// Its holder is the only reclaimer; it takes no other lock of ours but a
/// cache's `own` (`try_guard`) and, to give chunks back, the heap's.
struct Registry {
    lock: Lock,
    head: UnsafeCell<*mut MCache>,
}

// SAFETY: `head` and the caches' links and `seen` fields are only touched
// under `lock`.
unsafe impl Sync for Registry {}

static REG: Registry = Registry {
    lock: Lock::new(),
    head: UnsafeCell::new(null_mut()),
};

/// The coarse clock's time of the next scan for idle caches.
static NEXT_SCAN: AtomicUsize = AtomicUsize::new(0);
/// Idle caches taken back, and their bytes.
static RECLAIMS: AtomicUsize = AtomicUsize::new(0);
static RECLAIMED: AtomicUsize = AtomicUsize::new(0);
/// `membarrier`'s state in this process.
static MEMBARRIER: AtomicU32 = AtomicU32::new(MB_UNKNOWN);
const MB_UNKNOWN: u32 = 0;
const MB_READY: u32 = 1;
const MB_NONE: u32 = 2;

/// Links live cache `t` into the registry.
///
/// # Safety
/// `t` is a live cache not in the registry.
unsafe fn register(t: *mut MCache) {
    let _g = REG.lock.guard();
    let head = &mut *REG.head.get();
    (*t).prev = null_mut();
    (*t).next = *head;
    if !(*head).is_null() {
        (**head).prev = t;
    }
    *head = t;
}

/// Unlinks cache `t` from the registry; no reclaimer reaches it after.
///
/// # Safety
/// `t` is in the registry.
unsafe fn unregister(t: *mut MCache) {
    let _g = REG.lock.guard();
    let head = &mut *REG.head.get();
    if (*t).prev.is_null() {
        *head = (*t).next;
    } else {
        (*(*t).prev).next = (*t).next;
    }
    if !(*t).next.is_null() {
        (*(*t).next).prev = (*t).prev;
    }
}

/// From a thread's slow path (a refill, a flush), outside every lock: at
/// most every quarter of `MEMALLOC_IDLE_MS`, takes back the caches of the
/// threads that have been idle that long (`scan`).
fn maybe_reclaim() {
    let idle = crate::config::idle_ns();
    if idle == 0 || THREADS.load(Ordering::Relaxed) < 2 {
        return;
    }
    // (Every 16th slow path of a thread looks at the clock: under valgrind
    // a clock read is a system call, which reschedules the threads.)
    // SAFETY: the slot holds this thread's cache or a static one.
    if unsafe { (*tls::mc_get()).act.load(Ordering::Relaxed) } % 16 != 0 {
        return;
    }
    if crate::os::coarse_ns() < NEXT_SCAN.load(Ordering::Relaxed) {
        return;
    }
    let Some(_g) = REG.lock.try_guard() else {
        return; // (another thread scans, or a thread starts or exits)
    };
    // (The time again, under the lock: the scans' times only grow.)
    let now = crate::os::coarse_ns();
    if now < NEXT_SCAN.load(Ordering::Relaxed) {
        return;
    }
    NEXT_SCAN.store(now + idle / 4, Ordering::Relaxed);
    // SAFETY: we hold the registry's lock.
    unsafe { scan(now, idle) }
}

/// Walks the registry: a cache whose `(act, allocs)` has not moved for
/// `idle` ns and that holds chunks is taken back (`reclaim`).
///
/// # Safety
/// The caller holds `REG.lock`.
unsafe fn scan(now: usize, idle: usize) {
    let me = tls::mc_get();
    let mut t = *REG.head.get();
    while !t.is_null() {
        let sig = (
            (*t).act.load(Ordering::Relaxed),
            (*t).allocs
                .load(Ordering::Relaxed)
                .wrapping_add((*t).busy.load(Ordering::Relaxed) as usize),
        );
        if t == me {
            // (the scanning thread is not idle)
        } else if sig != (*t).seen || (*t).seen_at == 0 {
            (*t).seen = sig;
            (*t).seen_at = now;
            (*t).spent = false;
        } else if !(*t).spent && now.saturating_sub((*t).seen_at) >= idle && membarrier_ready() {
            (*t).spent = reclaim(t) == Reclaim::Done;
        }
        t = (*t).next;
    }
}

/// Registers for `membarrier` on the first call; is it usable?
fn membarrier_ready() -> bool {
    match MEMBARRIER.load(Ordering::Relaxed) {
        MB_READY => true,
        MB_NONE => false,
        _ => {
            let ok = crate::os::membarrier_register();
            MEMBARRIER.store(if ok { MB_READY } else { MB_NONE }, Ordering::Relaxed);
            ok
        }
    }
}

/// Takes idle cache `t`'s lists and gives their chunks back to the heap,
/// unless its owner is in a fast section (then nothing is done). The
/// handshake (asymmetric Dekker) is written out in the module's comment.
///
/// # Safety
/// The caller holds `REG.lock`; `t` is in the registry, not this thread's.
unsafe fn reclaim(t: *mut MCache) -> Reclaim {
    let Some(g) = (*t).own.try_guard() else {
        return Reclaim::Busy; // (the owner is on a slow path: not idle)
    };
    // The signals: the lock (taken) and the gate's bit.
    crate::gate::set(crate::gate::RECLAIM, true);
    fence(Ordering::SeqCst);
    let fenced = crate::os::membarrier_expedited();
    fence(Ordering::SeqCst);
    if !fenced || (*t).busy.load(Ordering::Acquire) & 1 != 0 {
        // Inside a fast section (or no barrier): leave it be.
        fence(Ordering::Release);
        crate::gate::set(crate::gate::RECLAIM, false);
        drop(g);
        return Reclaim::Busy;
    }
    // The owner is outside, and every entry of its from now on waits.
    settle(t);
    // (The classes' lists; not the sink's.)
    let all = (*t).head;
    let mut heads = [null_mut(); NMC];
    heads.copy_from_slice(&all[..NMC]);
    let bytes = (*t).bytes;
    let res = core::mem::replace(&mut (*t).res, null_mut());
    (*t).head = [null_mut(); NMC + 1];
    (*t).low = [0; NMC + 1];
    (*t).above = [0; NMC + 1];
    (*t).bytes = 0;
    CACHED.fetch_sub(core::mem::take(&mut (*t).published), Ordering::Relaxed);
    fence(Ordering::Release);
    crate::gate::set(crate::gate::RECLAIM, false);
    drop(g);
    if bytes == 0 && res.is_null() {
        return Reclaim::Done;
    }
    let mut err = None;
    HEAP.with(|h| {
        if !res.is_null() {
            h.end_reserve(res);
        }
        for first in heads {
            let mut c = first;
            while !c.is_null() && err.is_none() {
                let nx = (*c).next_free;
                err = free_to_heap(h, c);
                c = nx;
            }
        }
    });
    RECLAIMS.fetch_add(1, Ordering::Relaxed);
    RECLAIMED.fetch_add(bytes, Ordering::Relaxed);
    if let Some((e, c)) = err {
        crate::report::fatal(e, to_user(c));
    }
    Reclaim::Done
}

/// What `reclaim` did.
#[derive(PartialEq)]
enum Reclaim {
    /// The lists are empty now (taken back, or were).
    Done,
    /// Nothing: the owner was inside (or no barrier to be had).
    Busy,
}

/// (idle caches taken back, their bytes).
pub fn reclaims() -> (usize, usize) {
    (
        RECLAIMS.load(Ordering::Relaxed),
        RECLAIMED.load(Ordering::Relaxed),
    )
}

/// Gives this thread a medium cache; returns it, or null (the heap serves
/// the thread).
///
/// # Safety
/// Called by the thread whose slot it sets, outside every lock.
#[cold]
unsafe fn init_cache() -> *mut MCache {
    // While we set up, this thread's medium requests go to the heap
    // (pthread_setspecific may allocate).
    tls::mc_set(addr_of!(DEAD_MCACHE));
    let key = *KEY.call_once(|| {
        let mut k: libc::pthread_key_t = 0;
        if libc::pthread_key_create(&mut k, Some(thread_exit)) != 0 {
            return libc::pthread_key_t::MAX;
        }
        k
    });
    if key == libc::pthread_key_t::MAX {
        return null_mut();
    }
    let cs = request_to_size(core::mem::size_of::<MCache>()).unwrap_or(0);
    let ch = HEAP.with(|h| h.alloc(cs));
    if ch.is_null() {
        tls::mc_set(addr_of!(EMPTY_MCACHE));
        return null_mut();
    }
    let t = to_user(ch) as *mut MCache;
    t.write(MCache::new(LIVE));
    (*t).pend = addr_of_mut!((*t).sink);
    (*t).mkey = mark_key();
    (*t).tag_mul = crate::guard::tag_mul();
    (*t).home = NEXT_HOME.fetch_add(1, Ordering::Relaxed) % SHARDS;
    THREADS.fetch_add(1, Ordering::Relaxed);
    (*t).cap = thread_cap();
    if libc::pthread_setspecific(key, t as *const libc::c_void) != 0 {
        THREADS.fetch_sub(1, Ordering::Relaxed);
        HEAP.with(|h| h.free(ch));
        return null_mut();
    }
    register(t);
    tls::mc_set(t);
    t
}

/// The pthread key destructor: the thread's cache goes back to the heap.
///
/// # Safety
/// `arg` is the exiting thread's cache (its pthread key's value).
unsafe extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let t = arg as *mut MCache;
    if t.is_null() {
        return;
    }
    tls::mc_set(addr_of!(DEAD_MCACHE));
    // (After this no reclaimer reaches t: each holds REG while it works.)
    unregister(t);
    let left = THREADS.fetch_sub(1, Ordering::Relaxed) - 1;
    flush_all_of(&mut *t);
    // The shared lists keep what the threads left may take again.
    drain_central(CENTRAL_CAP.min(left * CAP_MIN));
    (*t).state = DEAD;
    let ch = from_user(t as *mut u8);
    HEAP.with(|h| h.free(ch));
}

/// Is `c` in a thread cache's list, as its mark says? (For tests.)
///
/// # Safety
/// `c` is an in-use heap chunk.
pub unsafe fn is_cached(c: *const Chunk) -> bool {
    (*c).prev_free == mark(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_the_range_with_bounded_waste() {
        let mut prev = MC_MIN;
        for k in 0..NMC {
            assert!(class_size(k) > prev);
            prev = class_size(k);
        }
        for n in MC_MIN + 1..=MC_MAX {
            let k = class_of(n);
            assert!(k < NMC);
            assert!(class_size(k) >= n, "n {n} class {k}");
            assert!(k == 0 || class_size(k - 1) < n, "n {n} class {k}");
            assert!((class_size(k) - n) * 4 <= n, "waste for {n}");
        }
        assert_eq!(class_of(MC_MAX), NMC - 1);
    }

    #[test]
    fn a_chunk_serves_the_largest_class_it_holds() {
        // SAFETY: every size passed is in the classes' range.
        unsafe { chunks_serve_their_largest_class() }
    }

    /// # Safety
    /// None beyond `class_of_chunk`'s, which every size passed meets.
    unsafe fn chunks_serve_their_largest_class() {
        for s in (class_chunk(0)..=class_chunk(NMC - 1)).step_by(16) {
            let k = class_of_chunk(s);
            assert!(class_chunk(k) <= s, "size {s} class {k}");
            assert!(k + 1 == NMC || class_chunk(k + 1) > s, "size {s} class {k}");
        }
        let t = MCache::new(EMPTY);
        // free's fast path: a chunk of its class's exact size finds its
        // class, any other size `SINK` (whose `cw` no cap admits) or fails
        // the range test (not whole KiB past the first class's chunk).
        let mut exact = 0;
        for s in (class_chunk(0)..=class_chunk(BIG_FIRST - 1)).step_by(16) {
            let w = s | MARK;
            let d = w.wrapping_sub(class_chunk(0) | MARK).rotate_right(10);
            let in_range = d <= (class_chunk(BIG_FIRST - 1) - class_chunk(0)) >> 10;
            let k = class_of_chunk(s);
            if class_chunk(k) == s {
                exact += 1;
                assert!(in_range, "size {s}");
                assert_eq!(t.free_class[d] as usize, k, "size {s}");
                assert_eq!(t.cw[k], s);
            } else if in_range {
                assert_eq!(t.free_class[d] as usize, SINK, "size {s}");
                assert!(t.cw[SINK] > usize::MAX / 4);
            }
        }
        assert_eq!(exact, BIG_FIRST);
        for n in MC_MIN + 1..=MC_MAX {
            assert_eq!(class_in(&t, n), class_of(n));
        }
        for k in 0..NMC {
            let c = class_chunk(k);
            assert_eq!(class_of_chunk(c), k);
            if k + 1 < NMC {
                assert_eq!(class_of_chunk(class_chunk(k + 1) - 16), k);
            }
        }
    }
}
