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
//! slice (more threads than cores) keeps nobody waiting. A refill looks
//! only at the shards that its class's mask (`AVAIL`) says hold chunks.
//!
//! **Big classes** (above 256 KiB, `BIG_FIRST..NMC`): a thread's lists of
//! them hold at most `big_cap` bytes together (a quarter of its cap, and
//! room for one 1 MiB chunk; with the default cap and fewer than 24
//! threads, up to 6 MiB, the cap raised as much: `big_extra`); a big chunk
//! freed past that goes to its
//! class's shared list (`free_big`, under the cache's lock: `free_fast`
//! leaves big chunks to `free`). A big chunk in a thread's list is up to
//! 1 MiB of pages the program may have written, which no other thread
//! uses and nothing purges until the thread exits or goes idle. When the
//! share is full, a big request whose list is empty is cut from the
//! thread's *big reserve* (a chunk of 1 MiB that the heap lent it: `bres`,
//! `big_cut`), and a big chunk freed where that reserve ends goes back into
//! it (`reserve_merge`): a thread that holds one big block at a time makes
//! no trip through the shared lists. The reserve's room counts in the
//! share (`big_held`); it goes back to the heap with the thread's lists.
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
//!
//! **Files**: this one holds the classes, the cache type, the shared lists'
//! shards and the caps; the code is in `mcache/`: `fast` (pop, free),
//! `slow` (a miss, the reserve, flushes over the cap), `central` (the shared
//! lists, the fork handlers, malloc_trim), `idle` (idle caches taken back)
//! and `thread` (a cache made, and given back at thread exit).

use crate::cache::prefetch;
use crate::chunk::*;
use crate::heap::HEAP;
use crate::lock::Lock;
use core::cell::UnsafeCell;
use core::ptr::{addr_of, addr_of_mut, null_mut};
use core::sync::atomic::{compiler_fence, fence, AtomicU32, AtomicUsize, Ordering};

#[path = "mcache/central.rs"]
mod central;
#[path = "mcache/fast.rs"]
mod fast;
#[path = "mcache/idle.rs"]
mod idle;
#[path = "mcache/slow.rs"]
mod slow;
#[path = "mcache/thread.rs"]
mod thread;
use self::central::*;
pub use self::central::{flush_all, lock_all, publish_mine, reset_after_fork, unlock_all};
use self::fast::*;
pub use self::fast::{alloc, enter_mine, free, free_fast, leave_mine, pop, sample, tick_purge};
pub use self::idle::reclaims;
use self::idle::*;
pub use self::slow::flush_most;
use self::slow::*;
use self::thread::*;

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
    /// `big_room(room_n)`, and the thread count `room_n` it was computed
    /// for (0: not yet): `big_cap` recomputes it only when the count of
    /// threads with a cache moves (two divisions and some 40 instructions
    /// a big free before, grid17h).
    room: usize,
    room_n: usize,
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
    /// This thread's reserve for its big classes (null: none), taken when
    /// their share is full (`big_cut`): a big request whose list is empty
    /// is cut from it, and a big chunk freed where it ends goes back into
    /// it (`reserve_merge`), with no list and no lock shared with another
    /// thread. The owner's alone, under `own`. Its bytes not cut count in
    /// `big_held`.
    bres: *mut Chunk,
    /// `bres`'s bytes not cut as the statistics' `RESERVED` has them
    /// (`reserved_settle`, at `publish` and before it ends).
    bres_acct: usize,
    /// Where `bres` ended when it was taken: a chunk is merged back only
    /// below it (`reserve_merge`).
    bres_end: usize,
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

/// Before the heap serves a request of `need` bytes above the classes:
/// the caches' unused chunks go back to it if it is short (`room_for`).
/// Cost when `room_worth` says no: a TLS load, two of the caches' figures
/// and the heap's bytes in use (2 MiB pairs: 864.4 -> 868.4 instructions).
pub fn make_room(need: usize) {
    let tc = tls::mc_get();
    // SAFETY: tc is this thread's cache or a static one (whose `bytes` is
    // 0); only a live one has chunks, taken under its `own` lock.
    unsafe {
        if (*tc).state == LIVE && room_worth(&*tc, need) {
            lock_own(tc);
            room_for(&mut *tc, need);
            unlock_own(tc);
        }
    }
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
            room: 0,
            room_n: 0,
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
            bres: null_mut(),
            bres_acct: 0,
            bres_end: 0,
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
/// Per class, which of its shards hold chunks: bit `s` of `AVAIL[k]` set
/// while shard `s` of class `k`'s shared list is not empty (set and
/// cleared under that shard's lock, by the push that fills it and the
/// take or drain that empties it; read without a lock as a hint). One
/// cache line a class, as each shard has.
///
/// Why: a refill that finds its class's shared lists empty looked at
/// the count of each of its shards, and then of the next four classes'
/// (`bigger_resident`): 40 lines that other threads write, 8 compares
/// and branches a class. A thread whose big classes hold 1 MiB (the room
/// of each thread from 24 threads on; a lone thread's with
/// `MEMALLOC_MEDIUM_CACHE` other than the default) refills on a quarter
/// of its pairs of 64 KiB-1 MiB at random; the counts' loop was 85
/// instructions a pair of its 423 (docs/performance.md, "The grid's short
/// cells (short17i)"; `c_tests/regrow.sh`, `big1m`).
#[repr(C, align(64))]
struct Avail(AtomicU32);

static AVAIL: [Avail; NMC] = [const { Avail(AtomicU32::new(0)) }; NMC];

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
/// Returns the shard, its index and the guard.
fn lock_shard(j: usize, home: usize) -> (&'static Central, usize, crate::lock::Guard<'static>) {
    let sh = &CENTRAL[j];
    for i in 0..SHARDS {
        let s = (home + i) % SHARDS;
        if let Some(g) = sh[s].lock.try_guard() {
            return (&sh[s], s, g);
        }
        SHARD_SKIPS.fetch_add(1, Ordering::Relaxed);
    }
    let s = home % SHARDS;
    (&sh[s], s, sh[s].lock.guard_counted(&CENTRAL_CONTENDED))
}

/// Bytes in all classes' shared lists.
static CENTRAL_BYTES: AtomicUsize = AtomicUsize::new(0);
/// The shared lists hold at most about this much; past it, a class's
/// list goes back to the heap.
///
/// 32 MiB, 16 until tail17e: a drain gives chunks whose first pages are
/// resident back to the heap, which coalesces them, and the refills that
/// follow cut new chunks there whose headers land in pages nobody touched
/// (a page fault inside malloc each). On the medium latency workload (one
/// thread, 50k live blocks of 16 B-64 KiB) the lists went past 16 MiB:
/// with 32 MiB, refills from the heap that faulted 1075-1537 -> 659-1036
/// a million mallocs and malloc p99.9 about -15%; peak RSS of `mchurn`
/// 19.0 -> 11.9 MB, `mlarge-16` 40.5 -> 22.0 MB, `prodcons` 77 -> 64 MB
/// (its CPU time 0.92 -> 0.67 s; 64 MiB: 43 MB and 0.56 s), medians of 5
/// (docs/performance.md, "(tail17e)").
const CENTRAL_CAP: usize = 32 << 20;

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
/// glibc's time.) From 24 threads on, the quarter alone, as before.
///
/// 24 MiB, 16 until short17i: 4 threads got 4 MiB each, under one chunk
/// of each big class, and `grid 4 4e5 64k 1M short` made 10.3k refills
/// and 7.1k flushes (0.7k and 0.3k now; 8 threads 43k and 39k -> 14k and
/// 10k; 16 threads, 1.5 MiB each, 74k and 72k -> 31k and 28k), each a
/// trip through a shared list whose cost is mostly not instructions
/// (docs/performance.md, "The grid's short cells (short17i)"). At most
/// 8 MiB more over all threads; the cells' peak RSS: *short* 4 threads
/// 10.0 -> 7.7 MB (fewer chunks carved), *long* 64 KiB-1 MiB 4 threads
/// 92.5 -> 99.6 MB (glibc 52).
const BIG_BUDGET: usize = 24 << 20;
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
