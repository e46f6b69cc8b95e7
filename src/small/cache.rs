//! Size classes, zones and per-thread caches: the small-object layer.
//!
//! **Size classes** (`CLASS_SIZE`): 16-byte steps to 128, then four classes
//! per power of two up to `SMALL_MAX`, so internal waste stays under 12.5%
//! above 128 bytes (and under 16 bytes below).
//!
//! **Zones**: 64 KiB runs of one class's blocks, taken from the TLSF heap as
//! one 64 KiB-aligned chunk (the chunk exactly tiles 64 KiB, so consecutive
//! zones waste nothing) and marked in the `zonemap`. A block has no header:
//! `free(p)` finds its zone's granule by masking `p`, and its header in the
//! zone map's room for that granule (`zone_at`: the headers of all zones
//! lie together there, not in the zones). The free list lives inside the
//! free blocks. Blocks are carved lazily, a batch at a time, so a young zone
//! touches only the pages it uses.
//!
//! **Ownership**: each zone is owned by one thread cache. The owner pops and
//! pushes the zone's `free` list with plain loads and stores; any other thread
//! pushes onto the zone's atomic `remote` list (one compare-exchange for a
//! batch of up to `PENDING_MAX` blocks of the zone, linked and encoded by the
//! freeing thread, which counts them in the list's word), and the owner takes
//! the whole remote list with one swap when it runs dry, as its free list.
//! A dry zone with nothing on its remote list makes the owner look at its
//! oldest full zone before carving new blocks: blocks that other threads gave
//! back are reused before new pages are touched (`reclaim_full`; xmalloc's
//! producers held about two zones' worth of blocks per class otherwise),
//! and so are the free blocks of its first avail zone (`avail_ready`: a
//! carve into a fresh page is a page fault inside malloc).
//! Invariant, per zone: `used == blocks handed out and not yet collected
//! back`, i.e. `used + len(free) + len(remote) + (capacity - carved) ==
//! capacity`. When `used` reaches 0 on a zone that is not its class's current
//! one, the zone goes back to the heap, so the break can shrink after a burst.
//!
//! **Sparse threads**: a thread that starts while another has a cache takes
//! 256-byte blocks for all its requests of up to 256 bytes, from one zone,
//! until that zone has `SPARSE_USED` blocks out; then each size its own
//! class. Each cache holds its class table (`CacheOf::class_of`).
//!
//! **Cold classes**: while one thread has a cache and the heap is small, that
//! thread's first `COLD_ALLOCS` allocations of each class come from the TLSF
//! heap, where blocks of every size share pages; a zone, and its page, come
//! with the class's ninth allocation.
//!
//! **Thread caches**: per class, the current zone, a list of zones with free
//! blocks (`avail`) and a list of exhausted ones (`full`). At thread exit (a
//! pthread key destructor) empty zones go back to the heap and the rest are
//! abandoned to a global per-class list, from which the next thread that needs
//! that class adopts them. After its cache is gone, a thread's small requests
//! go to the TLSF heap, so `free` after the key destructors still works.
//!
//! **Bins**: in front of the zones, each cache keeps per class two small
//! stacks of blocks (`Cache::bin`): free pushes one, malloc pops the other,
//! and when its own is empty swaps them, or fills its own from the zone
//! if the other holds few (`bin_refill`), so that a malloc does not wait
//! for the free before it (see `Cache::bin`), and its empty stack is rare
//! even when classes vary (a branch no predictor learns then). Blocks
//! from every zone of the class mix there, so a program cycling through more
//! blocks than a zone holds does not switch zones on every turn, and a pop
//! is an array load rather than a load from the (possibly cold) block
//! itself. A thread that allocates a class also keeps there the blocks of
//! that class it frees for other threads (`free_foreign`; only blocks above
//! 128 bytes, with inner lines of their own: `KEEP_FOREIGN`), and reuses
//! them; other threads' blocks it does not keep go to their owners in
//! batches; a block leaving a bin goes back to its zone, through the remote
//! list if the zone is another thread's; a run of blocks of one zone goes
//! in one go (`give_back_all`: the blocks of a bin's half, freed one after
//! another, mostly came from one zone one after another). A full free half
//! becomes the alloc half, and the blocks of the alloc half go back
//! (`spill_bin`). The classes of up to 128 bytes and the sparse class (256)
//! have halves of 31 blocks, the others of 15 (`HALF`).
//!
//! Fast path cost: malloc is a TLS load, a bin top test and an array pop
//! (or, with the alloc half empty, a swap of its halves); free is a
//! zone-map lookup, an owner compare against the map's entry (not the zone
//! header: see `zonemap`), the block checks and an array push. No lock and
//! no atomic read-modify-write. (`bench/pair`: 68 instructions a malloc +
//! free pair of 32 bytes, 77 of 4096, under callgrind.)
//!
//! **Files**: this one holds the size classes, the zone and cache types,
//! the bins' layout and the shared lists; the code is in `cache/`: `fast`
//! (alloc, free, bins), `give_back` (blocks back to their zones, remote
//! frees), `slow` (a dry zone: collect, carve, adopt, retire), `thread` (a
//! cache's birth and exit) and `prof_hooks` (the profiler's sampling).

use crate::chunk::{self, to_user, ALIGN};
use crate::events::{several_threads, THREADS};
use crate::heap::{Heap, HEAP};
use crate::lock::Lock;
use crate::zonemap::{self, ZONE_SHIFT, ZONE_SIZE};
use core::ptr::{addr_of, addr_of_mut, null_mut};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

#[path = "cache/fast.rs"]
mod fast;
#[path = "cache/give_back.rs"]
mod give_back;
#[path = "cache/prof_hooks.rs"]
mod prof_hooks;
#[path = "cache/slow.rs"]
mod slow;
#[path = "cache/thread.rs"]
mod thread;
use self::fast::*;
pub use self::fast::{
    aligned_request, alloc, alloc_aligned, alloc_or, block_passes, check_block, free, free_other,
    free_own, free_passed, free_vouched_other, free_vouched_own, ZONE_ALIGN,
};
pub(crate) use self::give_back::prefetch;
use self::give_back::*;
pub use self::give_back::{flush_all_pending, leave_fast_path};
use self::prof_hooks::*;
pub use self::slow::set_medium_sample;
use self::slow::*;
use self::thread::*;
pub use self::thread::{trim_abandoned, trim_free_caches};

/// Largest size served from zones.
pub const SMALL_MAX: usize = 4096;
/// Number of size classes.
pub const NCLASS: usize = 28;
/// Block size of each class. A 64 KiB zone holds 15 blocks of the largest
/// (6% of it unused); the others leave under 3% unused.
pub const CLASS_SIZE: [u32; NCLASS] = [
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096,
];

/// Class of a request, indexed by `(n + 15) / 16`.
static CLASS_OF: [u8; SMALL_MAX / 16 + 1] = {
    let mut t = [0u8; SMALL_MAX / 16 + 1];
    let mut i = 0;
    while i < t.len() {
        let n = if i == 0 { 1 } else { i * 16 };
        let mut c = 0;
        while (CLASS_SIZE[c] as usize) < n {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
};

/// Entries of a class table: one per 16 bytes of request, up to SMALL_MAX.
const NSIZES: usize = SMALL_MAX / 16 + 1;

/// The class a sparse thread's requests of up to 256 bytes take (see
/// `SPARSE_USED`).
const SPARSE_CLASS: usize = 11;
const _: () = assert!(CLASS_SIZE[SPARSE_CLASS] == 256);

/// `CLASS_OF`, but every request of up to 256 bytes takes `SPARSE_CLASS`.
static CLASS_OF_SPARSE: [u8; NSIZES] = {
    let mut t = CLASS_OF;
    let mut i = 0;
    while i < t.len() {
        if t[i] < SPARSE_CLASS as u8 {
            t[i] = SPARSE_CLASS as u8;
        }
        i += 1;
    }
    t
};

/// The class serving `n` bytes (`n <= SMALL_MAX`), for a thread that is not
/// sparse.
#[inline(always)]
pub fn class_of(n: usize) -> usize {
    CLASS_OF[(n + 15) >> 4] as usize
}

/// A free block. `next` is encoded (see `enc`), in a zone's free list, its
/// remote list and a pending batch alike (whose last link is set when the
/// batch is pushed: `push_remote`). `mark` is
/// the free-list key while the block is free and 0 once handed out, so a
/// second free of it is recognised.
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
    pub mark: usize,
}

/// The encoded link stored in free block `at` to `next`. Both lie in the same
/// zone (the list ends with the zone's granule address: `is_end`), so `enc ^ key` is below
/// ZONE_SIZE for every genuine link: a link overwritten by a heap overflow
/// or a use after free decodes outside the zone and is reported instead of
/// handing out an arbitrary address.
#[inline(always)]
fn enc(next: *mut Block, at: *mut Block) -> *mut Block {
    (next as usize ^ at as usize ^ crate::guard::list_key()) as *mut Block
}

/// Decodes the link of free block `b`; reports a corrupted list.
#[inline(always)]
unsafe fn dec(b: *mut Block) -> *mut Block {
    let t = (*b).next as usize ^ crate::guard::list_key();
    if t >= ZONE_SIZE {
        corrupt_list(b);
    }
    (t ^ b as usize) as *mut Block
}

/// Reports a corrupted free list. (Declared to return, so that callers on
/// the fast path reach it with a jump rather than a call.)
#[cold]
#[inline(never)]
fn corrupt_list(b: *mut Block) -> *mut u8 {
    crate::report::fatal(
        "heap corruption (free list link overwritten, use after free?)",
        b as *const u8,
    )
}

/// Zone states (which list of its owner holds it).
const CURRENT: u32 = 0;
const AVAIL: u32 = 1;
const FULL: u32 = 2;
const ABANDONED: u32 = 3;
const SPARE: u32 = 4;
/// An abandoned zone whose last block came back: being retired.
const RETIRING: u32 = 5;
/// A full zone that got blocks back: on the full list still, and on the
/// revived list of its class too (see `Cache::revived`).
const REVIVED: u32 = 6;

/// Bytes from the zone's 64 KiB-aligned start to its first block when its
/// colour is 0: the heap chunk's header, and the room where the `Zone`
/// header lay before it moved to the zone map (see `zone_at`). (Kept, with
/// the colours, so that every class's geometry stays as it was.)
pub const ZONE_HDR: usize = 192;
/// A zone's first block is coloured: it starts `colour * 64` bytes after
/// `ZONE_HDR`, the colour taken from address bits 16-19, for at most 960
/// bytes (1.5%) of a zone. (Introduced when the header lay there, so that
/// headers did not all fall in the same few cache sets.)
const COLOURS: usize = 16;
/// Offset of the first block of the zone at `granule`: `ZONE_HDR + colour * 64`.
#[inline(always)]
const fn first_at(granule: usize) -> usize {
    ZONE_HDR + ((granule >> (ZONE_SHIFT - 6)) & ((COLOURS - 1) << 6))
}
/// The zone header of the zone at 64 KiB-aligned `granule`: in the zone
/// map's room for that granule (`zonemap::Room`), not in the zone, so that
/// the headers of all zones lie together. A spill of a bin gives blocks
/// back to up to 31 zones, and the lists' links touch their neighbours'
/// headers: with each header in its own zone's first page, every one was a
/// TLB miss and, all 64 KiB apart, a line in one of a few cache sets
/// (docs/performance.md, "Zone headers together").
#[inline(always)]
pub fn zone_at(granule: usize) -> *mut Zone {
    zonemap::room(granule as *const u8) as *mut Zone
}
/// Blocks a zone of `bs`-byte blocks at `granule` holds.
const fn zone_capacity(granule: usize, bs: usize) -> u32 {
    ((ZONE_END - first_at(granule)) / bs) as u32
}
/// Is `b` the end of a zone's free or remote list? A list ends with its
/// zone's granule address, where the heap chunk's header lies and no block
/// (so that the last link, encoded, still stays within the granule: see
/// `enc`), or null (`EMPTY_ZONE`'s).
#[inline(always)]
fn is_end(b: *mut Block) -> bool {
    (b as usize) & (ZONE_SIZE - 1) == 0
}
/// The zone's chunk spans exactly its 64 KiB granule (the chunk, not its user
/// pointer, is aligned), so its chunk header lies in the zone's own first
/// page: a zone costs no page of its neighbour's, and blocks may run to the
/// end of the granule (the next chunk's header starts there).
const ZONE_END: usize = ZONE_SIZE;

/// A zone header, in the zone map's room for the zone's granule (see
/// `zone_at`). Laid out on three cache lines, so that the owner's writes
/// (line 1) and other threads' pushes (line 2) never make a free on another
/// core miss on what it reads (line 0).
#[repr(C, align(64))]
pub struct Zone {
    // line 0: fixed while the zone lives, but for its owner (each field
    // that `free` needs is mirrored in the zone map's entry, which it reads
    // instead: see `zonemap::ZoneInfo`)
    /// The owning cache; null when abandoned.
    pub owner: AtomicPtr<Cache>,
    pub block_size: u32,
    pub class: u32,
    pub capacity: u32,
    /// capacity * block_size: block offsets are below it.
    area: u32,
    /// u64::MAX / block_size + 1: a 32-bit `off` is a multiple of the block
    /// size iff `off * div_magic < div_magic` (mod 2^64; Lemire, "Faster
    /// remainder by direct computation", 2019).
    div_magic: u64,
    /// The zone's 64 KiB-aligned start (its chunk), which is also the end
    /// of its lists (`is_end`).
    granule: usize,
    _pad0: [u32; 6],
    // line 1: the owner's
    /// Blocks ready to hand out (encoded list, ending with the granule: `is_end`).
    pub free: *mut Block,
    /// Blocks handed out and not collected back.
    pub used: u32,
    /// Which list of the owner holds the zone (CURRENT, AVAIL, FULL,
    /// REVIVED, ABANDONED).
    state: u32,
    /// Blocks carved into `free` so far.
    pub carved: u32,
    _pad1: u32,
    next: *mut Zone,
    prev: *mut Zone,
    /// Links in the owner's revived list of the class (`Cache::revived`),
    /// while the zone is `REVIVED`.
    rnext: *mut Zone,
    rprev: *mut Zone,
    _pad2: usize,
    // line 2: other threads' frees
    /// The blocks other threads freed into the zone (see `remote_word`):
    /// an encoded list like `free`, ending with the granule, so that
    /// the owner takes it whole as its free list when that is empty, and
    /// its length (`collect`).
    remote: AtomicUsize,
    /// Guards the zone while abandoned: frees into it take this lock, not
    /// the shared one, so threads freeing into different abandoned zones do
    /// not wait for each other.
    alock: Lock,
    _pad3: [u32; 13],
}

impl Zone {
    const fn new(
        owner: *mut Cache,
        block_size: u32,
        class: u32,
        capacity: u32,
        granule: usize,
    ) -> Zone {
        Zone {
            owner: AtomicPtr::new(owner),
            block_size,
            class,
            capacity,
            area: capacity * block_size,
            div_magic: if block_size == 0 {
                0
            } else {
                u64::MAX / block_size as u64 + 1
            },
            granule,
            _pad0: [0; 6],
            free: granule as *mut Block,
            used: 0,
            state: CURRENT,
            carved: 0,
            _pad1: 0,
            next: null_mut(),
            prev: null_mut(),
            rnext: null_mut(),
            rprev: null_mut(),
            _pad2: 0,
            remote: AtomicUsize::new(0),
            alock: Lock::new(),
            _pad3: [0; 13],
        }
    }
}

const _: () = assert!(
    core::mem::size_of::<Zone>() == zonemap::ROOM
        && core::mem::align_of::<Zone>() <= core::mem::align_of::<zonemap::Room>()
        && core::mem::offset_of!(Zone, free) == 64
        && core::mem::offset_of!(Zone, remote) == 128
);

/// A list of zones (owner's avail/full lists, the abandoned lists).
#[derive(Clone, Copy)]
struct ZoneList {
    head: *mut Zone,
    tail: *mut Zone,
}

impl ZoneList {
    const fn new() -> Self {
        ZoneList {
            head: null_mut(),
            tail: null_mut(),
        }
    }
    unsafe fn push_back(&mut self, z: *mut Zone) {
        (*z).next = null_mut();
        (*z).prev = self.tail;
        if self.tail.is_null() {
            self.head = z;
        } else {
            (*self.tail).next = z;
        }
        self.tail = z;
    }
    unsafe fn unlink(&mut self, z: *mut Zone) {
        if (*z).prev.is_null() {
            self.head = (*z).next;
        } else {
            (*(*z).prev).next = (*z).next;
        }
        if (*z).next.is_null() {
            self.tail = (*z).prev;
        } else {
            (*(*z).next).prev = (*z).prev;
        }
        (*z).next = null_mut();
        (*z).prev = null_mut();
    }
    /// Moves the zones of `other` to the end of this list (O(1)).
    unsafe fn append(&mut self, other: &mut ZoneList) {
        if other.head.is_null() {
            return;
        }
        if self.tail.is_null() {
            self.head = other.head;
        } else {
            (*self.tail).next = other.head;
            (*other.head).prev = self.tail;
        }
        self.tail = other.tail;
        *other = ZoneList::new();
    }
    unsafe fn pop_front(&mut self) -> *mut Zone {
        let z = self.head;
        if !z.is_null() {
            self.unlink(z);
        }
        z
    }
}

/// Cache states.
const LIVE: u32 = 0;
const EMPTY: u32 = 1;
const DEAD: u32 = 2;

/// A thread's cache: `CacheOf<NBIN>`.
pub type Cache = CacheOf<NBIN>;

/// A cache with `N` bin slots. Thread caches have them all; the static
/// caches (`EMPTY_CACHE`, `DEAD_CACHE`) have none, as their bins are always
/// empty and a slot is only read below its bin's count, so they are used
/// through a `*mut Cache` whose fields before `bin` are theirs. That keeps
/// them 7 KiB smaller each: they are not all zero (`current`), so they lie
/// in .data, whose pages a first read maps all at once.
#[repr(C)]
pub struct CacheOf<const N: usize> {
    /// With `unsettled`, the stand-in `Block` for no unsettled block, at
    /// the cache's own address (`settled`): its `mark` is `unsettled`
    /// itself, never the key while it points there. Never read.
    settled_next: usize,
    /// The block this thread last freed through [`free_vouched_own`] (Rust's
    /// `dealloc`), whose double-free mark is not checked and set yet, or
    /// `settled(cache)` if none, so that the fast path needs no null test.
    unsettled: *mut Block,
    /// The class of each request size, by `(n + 15) / 16`: `CLASS_OF`, or
    /// `CLASS_OF_SPARSE` while the thread is sparse (see `SPARSE_USED`).
    /// Here rather than a static, so that the fast path reads it from the
    /// cache it already holds.
    class_of: [u8; NSIZES],
    /// The thread is sparse: `class_of` is `CLASS_OF_SPARSE`.
    sparse: bool,
    /// `SWAP_MIN`, here for the same reason as `class_of`.
    swap_min: [u8; NCLASS],
    /// `HALF_MASK`, here for the same reason.
    half_mask: [u8; NCLASS],
    /// The zone each class allocates from (`EMPTY_ZONE` if none).
    pub current: [*mut Zone; NCLASS],
    /// Per class: the top of the bin's alloc half (the low 16 bits,
    /// `BIN_TOP`: see `bin`) and,
    /// above them, the allocations the bin served (statistics, in units of
    /// `BIN_POP`). One word, so a pop counts itself with the store that
    /// updates the bin: a separate counter was a second read-modify-write
    /// of memory on every malloc (`fixed 16`: 0.36 s before, 0.33 s after,
    /// medians of 21 alternating runs).
    bin_state: [u64; NCLASS],
    /// Per class, the top of the bin's free half (see `bin`): written by
    /// `free`, read by `malloc` only when its alloc half is empty.
    free_top: [u64; NCLASS],
    avail: [ZoneList; NCLASS],
    full: [ZoneList; NCLASS],
    /// Per class, the first of the full zones that got blocks back
    /// (`REVIVED`), most recent first, linked through `Zone::rnext` and
    /// `rprev`: they stay on the full list too, so that a spill that
    /// gives a block to a dry zone writes only that zone's own line and
    /// the most recently revived one's, not the links of its neighbours
    /// on the full list (see `free_local_slow`).
    revived: [*mut Zone; NCLASS],
    /// One empty zone kept per class (see `keep_or_retire`).
    spare: [*mut Zone; NCLASS],
    /// Frees of other threads' blocks, batched per class while they hit the
    /// same zone, then pushed with one compare-exchange.
    pending: [Pending; NCLASS],
    /// Per class, `alloc_sum` at its last spill (`spill_bin`): while it is
    /// unchanged, the thread frees other threads' blocks of the class to
    /// their owners at once (`free_foreign`).
    spilled: [u32; NCLASS],
    /// Allocations served per class (statistics).
    pub allocs: [usize; NCLASS],
    state: u32,
    next_free: *mut Cache,
    /// Links in the list of live caches (statistics).
    live_next: *mut Cache,
    live_prev: *mut Cache,
    /// Per class, the sampling countdown while profiling (see `prof_tick`).
    prof: [ProfClass; NCLASS],
    /// Per class, the blocks the thread freed, served first. Mostly of this
    /// cache's own zones; other threads' blocks too once the thread
    /// allocates the class (`free_foreign`).
    /// A program cycling through more blocks than one zone holds would
    /// otherwise free into one zone while allocating from another, and
    /// switch zones every `capacity` calls. Blocks in a bin count as used
    /// by their zone.
    ///
    /// A class's row (`2 * HALF[cls]` slots) holds two stacks of up to
    /// `HALF[cls] - 1` blocks, one in each half: malloc pops the *alloc* half (its top
    /// in `bin_state`), free pushes the *free* half (its top in
    /// `free_top`), and when the alloc half is empty malloc swaps the two
    /// (two stores), as mimalloc's pages keep `free` and `local_free`, or,
    /// if the free half holds fewer than `SWAP_MIN`, fills the alloc half
    /// from the zone (`bin_refill`). So a malloc reads nothing that a free
    /// wrote, unless it finds its alloc half empty (once in `SWAP_MIN` or
    /// more of its class's mallocs). With one stack per class, each
    /// malloc's pop read the count that the free just before it had
    /// written, whenever the two had the same class: in a loop of random
    /// classes the CPU cannot know whether they do before the free's class
    /// lookup is done, and after a few wrong guesses every malloc waited
    /// for it (docs/performance.md, "Small requests of random classes").
    /// A full free half becomes the alloc half, whose blocks go back to the
    /// zones (`spill_bin`).
    /// A top is a slot index in `bin` (class-major): the row's start
    /// (`ROW`), plus 0 or `HALF[cls]` for the half, plus the half's count;
    /// so a push or pop is one indexed store or load, and a half is empty
    /// exactly when its top is a multiple of `HALF[cls]` (`half_empty`).
    /// Last in the struct, and never initialised (see `init_fields`).
    bin: [*mut Block; N],
}

/// A batch of blocks of one zone freed by a thread that does not own it.
#[derive(Clone, Copy)]
struct Pending {
    zone: *mut Zone,
    head: *mut Block,
    tail: *mut Block,
    count: u32,
}

/// Blocks batched before a remote push.
const PENDING_MAX: u32 = 32;

/// Slots of a half of a bin row of a class of at most `WIDE_MAX` bytes
/// (`WIDE_HALF`), and of a bigger class (`BIN_CAP`). A half of `h` slots
/// holds `h - 1` blocks, and starts at a multiple of `h`, so that its top
/// is a multiple of `h` exactly when it is empty (see `Cache::bin`).
///
/// The classes of up to 128 bytes have halves of 32 slots: with 16, their
/// alloc half emptied once in 8-14 mallocs, and the branch that leaves the
/// pop then is one no predictor learns when classes vary (`bench/grid 1
/// 2e6 16 128 long 64`: 228k mispredicted branches in 2M pairs with 16,
/// 109k with 32, callgrind; CPU time -5%, medians of 21 alternating runs).
/// For all the classes it doubled a thread's bins to 14 KiB
/// (`c_tests/threads.c` holds 64 dead caches for reuse: over its 1 MiB
/// bound); these eight add 2 KiB.
///
/// `SPARSE_CLASS` (256 B) has them too (256 bytes more): a sparse thread
/// takes it for all its requests of up to 256 bytes, as many as the eight
/// classes together. A sparse thread that allocates 16 blocks and then
/// frees them in order (`bench/grid 1 4e6 16 128 cross 1000`: the ring is
/// drained every 16 allocations) filled a 15-block free half at the 16th
/// free, spilled the alloc half's blocks to the zone, and refilled from
/// the zone at the next burst's 16th malloc: 167.9 instructions and 0.25
/// mispredicted branches a pair of that cell (callgrind, the program's
/// own included), 132.3 and 0.19 with 31 (tcmalloc 144.6 and 0.13;
/// `c_tests/classes.sh` mode burst).
const WIDE_HALF: usize = 32;
const BIN_CAP: usize = 16;
/// The biggest class with halves of `WIDE_HALF` slots, but `SPARSE_CLASS`.
const WIDE_MAX: u32 = 128;
/// Per class, the slots of a half of its bin row.
const HALF: [usize; NCLASS] = {
    let mut t = [0; NCLASS];
    let mut cls = 0;
    while cls < NCLASS {
        t[cls] = if CLASS_SIZE[cls] <= WIDE_MAX || cls == SPARSE_CLASS {
            WIDE_HALF
        } else {
            BIN_CAP
        };
        cls += 1;
    }
    t
};
/// Per class, `HALF - 1`: a top `t` is that of an empty half iff `t & mask
/// == 0`, and `t & mask` is the half's count.
const HALF_MASK: [u8; NCLASS] = {
    let mut t = [0; NCLASS];
    let mut cls = 0;
    while cls < NCLASS {
        t[cls] = (HALF[cls] - 1) as u8;
        cls += 1;
    }
    t
};
/// Per class, the first slot of its bin row (the rows in class order: the
/// wide ones first, and `SPARSE_CLASS`'s where its row falls on a multiple
/// of 32, so that every half starts at a multiple of its size).
const ROW: [usize; NCLASS] = {
    let mut t = [0; NCLASS];
    let mut cls = 1;
    while cls < NCLASS {
        t[cls] = t[cls - 1] + 2 * HALF[cls - 1];
        assert!(t[cls].is_multiple_of(HALF[cls]));
        cls += 1;
    }
    t
};
/// Slots of a thread's bins, all rows.
const NBIN: usize = ROW[NCLASS - 1] + 2 * HALF[NCLASS - 1];
/// `Cache::bin_state`: the alloc half's top (see `Cache::bin`), and one pop.
const BIN_TOP: u64 = 0xffff;
const _: () = assert!(BIN_TOP == u16::MAX as u64 && NBIN <= u16::MAX as usize);
const _: () = assert!(BIN_CAP.is_power_of_two() && WIDE_HALF == 2 * BIN_CAP);
const BIN_POP: u64 = 1 << 16;

/// Is the bin half whose top is `top` empty (`mask`: its class's
/// `HALF_MASK`)?
#[inline(always)]
fn half_empty(top: usize, mask: u8) -> bool {
    top as u8 & mask == 0
}

/// Is the bin half whose top is `top` full (`mask`: its class's
/// `HALF_MASK`)?
#[inline(always)]
fn half_full(top: usize, mask: u8) -> bool {
    (top + 1) as u8 & mask == 0
}

/// The tops of empty bins: `bin_state` (alloc half first) and `free_top`.
const EMPTY_BINS: ([u64; NCLASS], [u64; NCLASS]) = {
    let (mut a, mut f) = ([0; NCLASS], [0; NCLASS]);
    let mut cls = 0;
    while cls < NCLASS {
        a[cls] = ROW[cls] as u64;
        f[cls] = (ROW[cls] + HALF[cls]) as u64;
        cls += 1;
    }
    (a, f)
};

/// Zones of exited threads adopted: by a malloc that needed one (`adopt`),
/// and by a free into one (`adopt_freed`). Statistics.
pub static ADOPTED: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// A zone with no free block: the current zone of every class of a cache
/// that has none, so the fast path misses without a test of its own.
/// Never written.
pub static mut EMPTY_ZONE: Zone = Zone::new(null_mut(), 0, 0, 0, 0);

const fn static_cache(state: u32) -> CacheOf<0> {
    CacheOf {
        settled_next: 0,
        unsettled: null_mut(),
        class_of: CLASS_OF,
        sparse: false,
        swap_min: SWAP_MIN,
        half_mask: HALF_MASK,
        // SAFETY: only the address is taken.
        current: [addr_of_mut!(EMPTY_ZONE); NCLASS],
        bin_state: EMPTY_BINS.0,
        free_top: EMPTY_BINS.1,
        bin: [],
        avail: [ZoneList::new(); NCLASS],
        full: [ZoneList::new(); NCLASS],
        revived: [null_mut(); NCLASS],
        spare: [null_mut(); NCLASS],
        pending: [Pending {
            zone: null_mut(),
            head: null_mut(),
            tail: null_mut(),
            count: 0,
        }; NCLASS],
        spilled: [0; NCLASS],
        allocs: [0; NCLASS],
        state,
        next_free: null_mut(),
        live_next: null_mut(),
        live_prev: null_mut(),
        prof: [ProfClass::OFF; NCLASS],
    }
}

/// The cache of a thread that has not allocated yet. Never written.
pub static mut EMPTY_CACHE: CacheOf<0> = static_cache(EMPTY);
/// The cache of a thread whose cache was torn down at exit. Never written.
pub static mut DEAD_CACHE: CacheOf<0> = static_cache(DEAD);

/// A static cache, as the cache pointer of a thread (see `CacheOf`).
fn static_cache_ptr(c: *const CacheOf<0>) -> *const Cache {
    c as *const Cache
}

/// This thread's cache: `tls::get()`, `tls::set(c)`, an initial-exec slot
/// whose first value is the static empty cache (see `crate::tls`).
mod tls {
    use super::{Cache, EMPTY_CACHE};
    crate::tls::thread_slot!("memalloc_tc_slot", Cache = EMPTY_CACHE; get, set);
}

/// Global state shared by all caches, under `SHARED_LOCK`.
struct Shared {
    abandoned: [ZoneList; NCLASS],
    free_caches: *mut Cache,
    /// Live caches, for the statistics.
    live: *mut Cache,
    /// Allocations per class of caches that have exited.
    allocs: [usize; NCLASS],
}
static SHARED_LOCK: Lock = Lock::new();
// `events::THREADS` counts the live thread caches (the length of
// `Shared::live`), for `several_threads` here and in the heap.
static mut SHARED: Shared = Shared {
    abandoned: [ZoneList::new(); NCLASS],
    free_caches: null_mut(),
    live: null_mut(),
    allocs: [0; NCLASS],
};

/// Allocations served per size class so far, all threads (live caches are
/// read without their owners' cooperation: a figure, not an invariant).
pub fn class_allocs() -> [usize; NCLASS] {
    let _g = SHARED_LOCK.guard();
    // SAFETY: the live list and totals are only changed under SHARED_LOCK.
    unsafe {
        let s = &*addr_of!(SHARED);
        let mut t = s.allocs;
        let mut c = s.live;
        while !c.is_null() {
            for (i, n) in t.iter_mut().enumerate() {
                *n += served(c, i);
            }
            c = (*c).live_next;
        }
        t
    }
}
static KEY: spin::Once<libc::pthread_key_t> = spin::Once::new();

/// The lock of the shared lists (for the fork handlers).
pub fn shared_lock() -> &'static Lock {
    &SHARED_LOCK
}

/// In a fork child: frees into abandoned zones take the zone's own lock
/// without the shared one, so a thread of the parent may have held one at
/// the fork; it does not exist in the child, so the locks are reset. (Every
/// such zone is on an abandoned list: it leaves the list only after its lock
/// is released. The fork handlers hold SHARED_LOCK, which every other user
/// of a zone lock takes first.)
pub fn reset_zone_locks_after_fork() {
    // SAFETY: single-threaded child; the lists are consistent (SHARED_LOCK
    // was held across the fork).
    unsafe {
        for list in (*addr_of!(SHARED)).abandoned.iter() {
            let mut z = list.head;
            while !z.is_null() {
                (*z).alock.reset_after_fork();
                z = (*z).next;
            }
        }
    }
}

/// The zone holding small block `p`.
#[inline(always)]
pub fn zone_of(p: *const u8) -> *mut Zone {
    zone_at(p as usize & !(ZONE_SIZE - 1))
}

/// Offset of zone `z`'s first block in its granule.
///
/// # Safety
/// `z` is a live zone.
#[inline]
unsafe fn first_offset(z: *const Zone) -> u32 {
    first_at((*z).granule) as u32
}

/// memalloc_check's test of zone `z`: the header fields fixed when the zone
/// was made still agree with its class and with its zone-map entry (which
/// `free` reads instead of the header), and its counters are in range.
///
/// # Safety
/// `z` is a live zone (its chunk is in use). The counters belong to the
/// owner thread and are read racily; each stays in range at every moment.
pub unsafe fn zone_ok(z: *const Zone) -> bool {
    let cls = (*z).class as usize;
    let g = (*z).granule;
    if cls >= NCLASS || !g.is_multiple_of(ZONE_SIZE) || z != zone_at(g) {
        return false;
    }
    let bs = CLASS_SIZE[cls];
    let cap = zone_capacity(g, bs as usize);
    let used = core::ptr::read_volatile(addr_of!((*z).used));
    let carved = core::ptr::read_volatile(addr_of!((*z).carved));
    (*z).block_size == bs
        && (*z).capacity == cap
        && (*z).area == cap * bs
        && (*z).div_magic == u64::MAX / bs as u64 + 1
        && used <= cap
        && carved <= cap
        && zonemap::is_zone(g as *const u8)
        && zonemap::info(g as *const u8).fixed()
            == (cls as u32, first_offset(z), zonemap::geometry(bs, cap))
}

/// The zones of heap `h`: (zone count, bytes of zone chunks, bytes of
/// blocks in use in them). Reads owner-only counters racily: a figure for
/// statistics, not an invariant.
pub fn zone_usage(h: &Heap) -> (usize, usize, usize) {
    let (mut zones, mut chunk_bytes, mut used) = (0, 0, 0);
    h.for_each_zone(|c| {
        zones += 1;
        let z = zone_at(c as usize);
        // SAFETY: c is a live zone chunk (for_each_zone), z its header.
        unsafe {
            chunk_bytes += chunk::size(c);
            used += core::ptr::read_volatile(&(*z).used) as usize * (*z).block_size as usize;
        }
    });
    (zones, chunk_bytes, used)
}

/// Usable bytes of a block of zone `z`.
///
/// # Safety
/// `z` is a live zone.
#[inline]
pub unsafe fn usable(z: *const Zone) -> usize {
    (*z).block_size as usize
}

const _: () = assert!(ZONE_HDR.is_multiple_of(ALIGN));
