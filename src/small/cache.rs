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
//! producers held about two zones' worth of blocks per class otherwise).
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
//! that class it frees for other threads (`free_foreign`; only blocks with
//! cache lines of their own, `KEEP_FOREIGN`), and reuses them; other threads'
//! blocks it does not keep go to their owners in batches; a block leaving a
//! bin goes back to its zone, through the remote list if the zone is another
//! thread's; a run of blocks of one zone goes in one go (`give_back_all`:
//! the blocks of a bin's half, freed one after another, mostly came from
//! one zone one after another). A full free half becomes the alloc half,
//! and the blocks of the alloc half go back (`spill_bin`). The classes of
//! up to 128 bytes have halves of 31 blocks, the others of 15 (`HALF`).
//!
//! Fast path cost: malloc is a TLS load, a bin top test and an array pop
//! (or, with the alloc half empty, a swap of its halves); free is a
//! zone-map lookup, an owner compare against the map's entry (not the zone
//! header: see `zonemap`), the block checks and an array push. No lock and
//! no atomic read-modify-write. (`bench/pair`: 68 instructions a malloc +
//! free pair of 32 bytes, 77 of 4096, under callgrind.)

use crate::chunk::{self, to_user, ALIGN};
use crate::events::{several_threads, THREADS};
use crate::heap::{Heap, HEAP};
use crate::lock::Lock;
use crate::zonemap::{self, ZONE_SHIFT, ZONE_SIZE};
use core::ptr::{addr_of, addr_of_mut, null_mut};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

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
    /// Which list of the owner holds the zone (CURRENT, AVAIL, FULL, ABANDONED).
    state: u32,
    /// Blocks carved into `free` so far.
    pub carved: u32,
    _pad1: u32,
    next: *mut Zone,
    prev: *mut Zone,
    _pad2: [usize; 3],
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
            _pad2: [0; 3],
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
    unsafe fn push_front(&mut self, z: *mut Zone) {
        (*z).prev = null_mut();
        (*z).next = self.head;
        if self.head.is_null() {
            self.tail = z;
        } else {
            (*self.head).prev = z;
        }
        self.head = z;
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
    /// The block this thread last freed through [`free_vouched`] (Rust's
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
const WIDE_HALF: usize = 32;
const BIN_CAP: usize = 16;
/// The biggest class with halves of `WIDE_HALF` slots.
const WIDE_MAX: u32 = 128;
/// Per class, the slots of a half of its bin row.
const HALF: [usize; NCLASS] = {
    let mut t = [0; NCLASS];
    let mut cls = 0;
    while cls < NCLASS {
        t[cls] = if CLASS_SIZE[cls] <= WIDE_MAX {
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
/// wide ones first, so that every half starts at a multiple of its size).
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

// ---- fast paths ------------------------------------------------------------

/// Allocates a block for a request of `n <= SMALL_MAX` bytes for this thread;
/// null + ENOMEM on exhaustion.
#[inline(always)]
pub fn alloc(n: usize) -> *mut u8 {
    let tc = tls::get();
    // SAFETY: tc is this thread's cache or a static one; its current zone is
    // a live zone owned by tc, or EMPTY_ZONE whose free list is always empty.
    debug_assert!(n <= SMALL_MAX);
    unsafe {
        // (n <= SMALL_MAX, the caller's test: the index is below NSIZES.)
        let cls = *(*tc).class_of.get_unchecked((n + 15) >> 4) as usize;
        alloc_class(tc, cls, n)
    }
}

/// `alloc` for class `cls` of cache `tc` (this thread's).
///
/// # Safety
/// `tc` is this thread's cache or a static one, `cls < NCLASS` serves `n`.
#[inline(always)]
unsafe fn alloc_class(tc: *mut Cache, cls: usize, n: usize) -> *mut u8 {
    // (cls < NCLASS; a top is a slot of the class's row.)
    let st = *(*tc).bin_state.get_unchecked(cls);
    let top = st as u16 as usize; // (BIN_TOP)
    if !half_empty(top, *(*tc).half_mask.get_unchecked(cls)) {
        return bin_pop(tc, cls, st, top, n);
    }
    // (The mask again, from the static table: the one in the cache, read
    // once for both tests, was a load and a test above, where the test
    // reads it from memory.)
    let mask = *HALF_MASK.get_unchecked(cls);
    let ft = *(*tc).free_top.get_unchecked(cls);
    if half_empty(ft as usize, mask) {
        // The bin is empty, and nothing was freed since the alloc half was
        // last filled: the class is being allocated in a run. A block from
        // the zone, and the alloc half stays empty, so that each malloc of
        // the run comes here (a branch a predictor learns; filled, the
        // alloc half would empty once in a fill, at random when classes
        // vary: `bench/bulkfree`). (The static caches' bins are empty and
        // their zones `EMPTY_ZONE`.)
        let z = *(*tc).current.get_unchecked(cls);
        let b = (*z).free;
        if !is_end(b) {
            // (As the pops count in `bin_pop`: the count wraps to 0.)
            let a = (*tc).allocs.get_unchecked(cls).wrapping_add(1);
            *(*tc).allocs.get_unchecked_mut(cls) = a;
            if a == 0 {
                return prof_tick(n);
            }
            let t = (*b).next as usize ^ crate::guard::list_key();
            if crate::guard::CHECKS && t >= ZONE_SIZE {
                return corrupt_list(b);
            }
            let nb = (t ^ b as usize) as *mut Block;
            (*z).free = nb;
            (*z).used += 1;
            // The run's next malloc loads `nb`'s link: its line, fetched
            // now, comes while the program uses this block (a list of
            // blocks freed at random is a miss a block, waited for here).
            prefetch(nb as *const u8);
            (*b).mark = 0;
            return b as *mut u8;
        }
        return alloc_slow(n, cls, tc);
    }
    // The free half becomes the alloc half, and the empty one the free
    // half, if it has enough blocks; else `bin_refill`.
    if ft as u8 & mask >= *(*tc).swap_min.get_unchecked(cls) {
        if (*tc).unsettled != settled(tc) {
            return swap_unsettled(n, cls, tc, st);
        }
        *(*tc).free_top.get_unchecked_mut(cls) = top as u64;
        return bin_pop(tc, cls, (st & !BIN_TOP) | ft, ft as usize, n);
    }
    bin_refill(n, cls, tc, st)
}

/// `alloc_class`'s swap of the halves when the thread has an unsettled
/// block (see [`free_vouched`]), which may lie in the free half: settled
/// first. Out of line, so that the swap saves no register for the call.
///
/// (Its arguments are `bin_refill`'s, in the registers that hold them.)
///
/// # Safety
/// As `alloc_class`; the alloc half of `cls` (state `st`) is empty and the
/// free half holds at least the class's `SWAP_MIN` blocks.
#[inline(never)]
unsafe fn swap_unsettled(n: usize, cls: usize, tc: *mut Cache, st: u64) -> *mut u8 {
    let ft = *(*tc).free_top.get_unchecked(cls);
    // (`settle`, with the report a jump.)
    let q = (*tc).unsettled;
    let none = settled(tc);
    let key = crate::guard::list_key();
    if (*q).mark == key {
        return double_free(q);
    }
    (*q).mark = key;
    (*tc).unsettled = none;
    *(*tc).free_top.get_unchecked_mut(cls) = st & BIN_TOP;
    bin_pop(tc, cls, (st & !BIN_TOP) | ft, ft as usize, n)
}

/// Blocks the free half of a bin must hold for an empty alloc half to take
/// them as they are (a swap; or the class's fill if lower, `bin_refill`);
/// with fewer, the alloc half is filled from the zone.
const SWAP_AT: usize = 8;
/// Bytes of blocks an alloc half is filled to from the zone.
const FILL_BYTES: usize = 1024;
/// Per class, the blocks an alloc half is filled to from the zone:
/// `FILL_BYTES` of them, at least one and at most one fewer than a half
/// holds (so that in a loop of one class the alloc half empties, and takes
/// the free half, before the free half is full, which would spill). Few
/// blocks of the big classes: a thread that keeps one block of a class
/// cycles through the blocks of its bin, and its first zone batch is one
/// page (8 blocks of 512 bytes, the last reaching into the next page).
///
/// One block for every class above `WIDE_MAX` but `SPARSE_CLASS` (so its
/// `SWAP_MIN` is 1 and it never takes `bin_refill`): a program that frees
/// each block soon after its malloc (the grid's *short* 128 B-4 KiB)
/// cycles, per class, through as many blocks as its row holds, swapping
/// the halves once a cycle. With fills of 8 down to 1 block over these
/// classes (1 KiB of blocks), the swap came once in 1 to 8 mallocs
/// depending on the class, a branch no predictor learns when classes vary:
/// 0.37 mispredicted branches a pair (`c_tests/classes.sh` mode short),
/// 0.05 now; CPU time of `classes 2e7 short` 0.205 -> 0.178 s (tcmalloc
/// 0.191), of `grid 1 1.5e7 128 4096 short` 0.161 -> 0.148 (medians of 7).
/// Every such malloc of a pair loop swaps (a branch the predictor learns):
/// `bench/pair` 160 B 68 -> 78 instructions, 512 B 72 -> 78, as 1024 B and
/// up were already.
/// `SPARSE_CLASS` keeps its 4 blocks: a sparse thread's pairs of any size
/// up to 256 B take it (`tests/rust_path.rs`: the Rust pair of 24 B, 76.2
/// instructions, was 92 with one block, 81.5 with two; its bound is 78).
/// A fill of at least 4 blocks for all these classes instead took the grid
/// cell to 0.21 s (more blocks cycled, their first and last lines
/// written). Random long-lived classes swap a little more often
/// (callgrind: `grid ... 128 4096 long` mispredictions +4.3%, `mchurn`
/// +1.6%; instructions -0.3% and -0.5%).
const FILL_TO: [u8; NCLASS] = {
    let mut t = [0u8; NCLASS];
    let mut cls = 0;
    while cls < NCLASS {
        let n = FILL_BYTES / CLASS_SIZE[cls] as usize;
        t[cls] = if n < 1 || (CLASS_SIZE[cls] > WIDE_MAX && cls != SPARSE_CLASS) {
            1
        } else if n > HALF[cls] - 2 {
            (HALF[cls] - 2) as u8
        } else {
            n as u8
        };
        cls += 1;
    }
    t
};
/// Per class, the blocks a free half must hold for an empty alloc half to
/// take them as they are (a swap): `SWAP_AT`, or the class's fill if lower.
const SWAP_MIN: [u8; NCLASS] = {
    let mut t = [0u8; NCLASS];
    let mut cls = 0;
    while cls < NCLASS {
        t[cls] = if FILL_TO[cls] as usize > SWAP_AT {
            SWAP_AT as u8
        } else {
            FILL_TO[cls]
        };
        cls += 1;
    }
    t
};

/// The alloc half of `cls`'s bin (state `st`) is empty, and the free half
/// holds fewer than the class's `SWAP_MIN` blocks but some: blocks from the
/// current zone's free list fill the alloc half up to the class's fill
/// (`FILL_TO`; fewer where the list leaps about the zone: `REFILL_JUMPS`),
/// the free half's on top of them; then a block is popped.
///
/// So the alloc half of a small class empties once in 8 or more of the
/// class's mallocs: the branch that leaves `alloc_class`'s pop is one a
/// predictor cannot learn when classes vary (`bench/mthreads ... s`), and
/// a plain swap of the halves took it on a quarter of the mallocs there
/// (the halves held a few blocks each); filled, on under a tenth
/// (docs/performance.md, "Small requests of random classes").
///
/// # Safety
/// As `alloc_class`; the alloc half of `cls` is empty (`st`'s top).
#[inline(never)]
unsafe fn bin_refill(n: usize, cls: usize, tc: *mut Cache, st: u64) -> *mut u8 {
    settle(tc);
    let top = (st & BIN_TOP) as usize;
    let ft = *(*tc).free_top.get_unchecked(cls) as usize;
    let k = ft & HALF_MASK[cls] as usize;
    let z = *(*tc).current.get_unchecked(cls);
    let fill = FILL_TO[cls] as usize;
    // Zone blocks at the bottom of the alloc half, in the order of the
    // zone's list (the first on top: a fresh zone's blocks are handed out
    // in address order), and the free half's (freed last, the likeliest in
    // cache) above them. The static caches' current zones are
    // `EMPTY_ZONE`, whose list is empty.
    let want = fill - k;
    let bin = (*tc).bin.as_mut_ptr();
    let mut b = (*z).free;
    let key = crate::guard::list_key();
    let mut got = 0;
    let mut jumps = 0;
    while got < want && !is_end(b) {
        let t = (*b).next as usize ^ key;
        if crate::guard::CHECKS && t >= ZONE_SIZE {
            return corrupt_list(b);
        }
        got += 1;
        *bin.add(top + want - got) = b;
        let nb = (t ^ b as usize) as *mut Block;
        // (A link to a block far from this one: its line is likely cold.)
        jumps += ((nb as usize).wrapping_sub(b as usize).wrapping_add(256) > 512) as usize;
        b = nb;
        if jumps >= REFILL_JUMPS {
            break;
        }
    }
    if got != 0 {
        (*z).free = b;
        (*z).used += got as u32;
        if got < want {
            core::ptr::copy(bin.add(top + want - got), bin.add(top), got);
        }
    }
    let mut at = top + got;
    let fb = ft - k;
    if k != 0 {
        // (Two halves of one row: disjoint.)
        core::ptr::copy_nonoverlapping(bin.add(fb), bin.add(at), k);
        at += k;
        *(*tc).free_top.get_unchecked_mut(cls) = fb as u64;
    }
    if at == top {
        return alloc_slow(n, cls, tc);
    }
    bin_pop(tc, cls, (st & !BIN_TOP) | at as u64, at, n)
}

/// Links to a far block (more than 256 bytes away) a fill from a zone's list
/// follows at most (`bin_refill`). The list is walked one dependent load
/// after another, and a block far from the one before it is mostly a cache
/// miss (and a TLB miss when the zone's blocks were freed at random long
/// ago): a fill of up to 14 blocks of such a list took malloc's p99.9 on the
/// small latency workload to 3.1-3.6k cycles; stopping at the second far
/// link, 1.7k (medians of 5, `bench/latency 1e7 100000 1 small`). A fresh
/// zone's blocks, carved in address order, are near each other: their
/// fills are whole. (`c_tests/classes.sh`: 87.9 instructions a pair, 87.5
/// now; `bursts.sh` unchanged.)
const REFILL_JUMPS: usize = 2;

/// `alloc_class`'s pop from the alloc half of `cls`'s bin, whose state is
/// `st` and top `top` (not empty).
///
/// # Safety
/// As `alloc_class`; `tc` is a live cache.
#[inline(always)]
unsafe fn bin_pop(tc: *mut Cache, cls: usize, st: u64, top: usize, n: usize) -> *mut u8 {
    let b = *(*tc).bin.get_unchecked(top - 1);
    // (The pops count reaches the sign bit only when profiling says a
    // sample is due: see `prof_tick`.)
    let st = st + BIN_POP - 1;
    *(*tc).bin_state.get_unchecked_mut(cls) = st;
    if (st as i64) < 0 {
        return prof_tick(n);
    }
    (*b).mark = 0;
    b as *mut u8
}

/// Frees block `p` if the zone-map entry `info` of its granule says that
/// this thread's cache owns a zone there (the fast path of `free`: no read
/// of the map byte, see `zonemap::entry`); false, having done nothing, if
/// not.
///
/// # Safety
/// `info` is the zone-map entry of `p`'s granule.
#[inline(always)]
pub unsafe fn free_own(info: *const zonemap::ZoneInfo, p: *mut u8) -> bool {
    let tc = tls::get();
    let e = &*info;
    if e.owner.load(Ordering::Relaxed) != tc as usize {
        return false;
    }
    let key = crate::guard::list_key();
    let b = p as *mut Block;
    if !block_ok(e, p, key) {
        return bad_free(p);
    }
    (*b).mark = key;
    // (A zone's class is below NCLASS, fixed while the zone lives.)
    let cls = e.class();
    if !bin_push(tc, cls, b) {
        spill_bin(b, cls, tc);
    }
    true
}

/// Frees block `p` of the zone whose zone-map info is `info`. Reads nothing
/// of the zone's header unless the zone is another thread's (see
/// [`zonemap::ZoneInfo`]).
///
/// # Safety
/// `p` lies in a zone's granule and `info` is that granule's info.
#[inline(always)]
pub unsafe fn free(info: *const zonemap::ZoneInfo, p: *mut u8) {
    let key = crate::guard::list_key();
    if !block_ok(&*info, p, key) {
        return bad_block(p, "free");
    }
    (*(p as *mut Block)).mark = key;
    free_to_bin(info, p)
}

/// [`free`] of a block that [`free_own`] found not of this thread's zones:
/// the checks, then to the bin or the owner (`free_foreign`), with no
/// second owner test.
///
/// # Safety
/// As [`free`]; `free_own(info, p)` returned false on this thread.
#[inline(always)]
pub unsafe fn free_other(info: *const zonemap::ZoneInfo, p: *mut u8) {
    let key = crate::guard::list_key();
    let e = &*info;
    if !block_ok(e, p, key) {
        return bad_block(p, "free");
    }
    let b = p as *mut Block;
    (*b).mark = key;
    free_foreign_here(tls::get(), e.class(), b)
}

/// [`free`] for a caller whose contract makes `p` the start of a block of
/// ours (Rust's `GlobalAlloc::dealloc`: safe code cannot forge a pointer):
/// the block-start check is not made (eight instructions fewer than `free`,
/// bench/rust `json`), and the double-free mark of a block of this
/// thread's own zones is checked one `free_vouched` later.
///
/// Why later: the mark lies in the block, and a program often frees a
/// block it has not touched for long (a map's value string, removed; a
/// table's entries, dropped), whose line is in no cache. A load of it
/// stalls the free until the line comes; a store does not wait. So the
/// block is prefetched and pushed, and becomes the thread's `unsettled`
/// block; the previous one, prefetched one free earlier, has its mark
/// checked and set now (`settle`). Before a block can leave its free half
/// (a swap or refill of the alloc half, a spill, a drain) or be read by
/// `check_block`, the unsettled one is settled, so a block freed twice is
/// still reported before it could be handed out twice: at once when the
/// two frees follow each other, else at the next `free_vouched`, swap,
/// spill, realloc or thread exit. (bench/rust: CPU time of `btree` and
/// `hashmap` about 6% lower; tests/rust_path.rs counts the pair and checks
/// the reports.) The C paths check at once, as before.
///
/// # Safety
/// `p` is the start of a block of the zone whose zone-map info is `info`.
#[inline(always)]
pub unsafe fn free_vouched(info: *const zonemap::ZoneInfo, p: *mut u8) {
    let key = crate::guard::list_key();
    let b = p as *mut Block;
    let tc = tls::get();
    let e = &*info;
    if !crate::guard::CHECKS || e.owner.load(Ordering::Relaxed) != tc as usize {
        if crate::guard::CHECKS && (*b).mark == key {
            return bad_block(p, "free");
        }
        (*b).mark = key;
        return free_to_bin(info, p);
    }
    prefetch(b as *const u8);
    // (`settled` when there is none: its mark is 0.)
    let q = (*tc).unsettled;
    if q == b || (*q).mark == key {
        double_free(q);
        return;
    }
    (*q).mark = key;
    (*tc).unsettled = b;
    // (A zone's class is below NCLASS, fixed while the zone lives.)
    let cls = e.class();
    if !bin_push(tc, cls, b) {
        spill_bin(b, cls, tc);
    }
}

/// Checks and sets the double-free mark of `tc`'s unsettled block (see
/// [`free_vouched`]), if it has one.
///
/// # Safety
/// `tc` is this thread's cache.
#[inline]
unsafe fn settle(tc: *mut Cache) {
    let q = (*tc).unsettled;
    let none = settled(tc);
    if q == none || (*tc).state != LIVE {
        return;
    }
    (*tc).unsettled = none;
    if (*q).mark == crate::guard::list_key() {
        double_free(q);
    }
    (*q).mark = crate::guard::list_key();
}

/// The stand-in for no unsettled block of cache `tc`: a `Block` at the
/// cache's address, whose `mark` is `tc.unsettled` itself. When the fast
/// path settles it, it writes the key there, then the new unsettled block
/// over it.
#[inline(always)]
fn settled(tc: *mut Cache) -> *mut Block {
    const _: () = assert!(
        core::mem::offset_of!(Cache, settled_next) == core::mem::offset_of!(Block, next)
            && core::mem::offset_of!(Cache, unsettled) == core::mem::offset_of!(Block, mark)
    );
    tc as *mut Block
}

/// Reports block `b` freed twice (found by `free_vouched` or `settle`).
/// (Returns for null, never passed: so that the compiler does not know
/// that it never returns, and the fast path reaches it with a jump rather
/// than a call, saving no register.)
#[cold]
#[inline(never)]
fn double_free(b: *mut Block) -> *mut u8 {
    if !b.is_null() {
        crate::report::fatal("double free", b as *const u8)
    }
    b as *mut u8
}

/// The end of [`free`]: block `p`, checked and marked free, into this
/// thread's bin for its class (or to its owner).
///
/// # Safety
/// `p` is a block of the zone whose zone-map info is `info`, marked free.
#[inline(always)]
unsafe fn free_to_bin(info: *const zonemap::ZoneInfo, p: *mut u8) {
    let tc = tls::get();
    let b = p as *mut Block;
    let e = &*info;
    if e.owner.load(Ordering::Relaxed) == tc as usize {
        // (A zone's class is below NCLASS, fixed while the zone lives.)
        let cls = e.class();
        if !bin_push(tc, cls, b) {
            spill_bin(b, cls, tc);
        }
    } else {
        free_foreign(tc, e.class(), b);
    }
}

/// Pushes block `b` onto the free half of the bin of `cls` in cache `tc`;
/// false, having done nothing, if it is full.
///
/// # Safety
/// `tc` is this thread's live cache, `cls < NCLASS`, and `b` a free block
/// of `cls`, counted as used by its zone.
#[inline(always)]
unsafe fn bin_push(tc: *mut Cache, cls: usize, b: *mut Block) -> bool {
    // (cls < NCLASS; a top is a slot of the class's row.)
    let ft = *(*tc).free_top.get_unchecked(cls) as usize;
    if half_full(ft, *(*tc).half_mask.get_unchecked(cls)) {
        return false;
    }
    *(*tc).bin.get_unchecked_mut(ft) = b;
    *(*tc).free_top.get_unchecked_mut(cls) = ft as u64 + 1;
    true
}

/// Frees block `b` of class `cls` from a zone `tc` does not own. A cache
/// that is allocating the class (it allocated some since the class's last
/// spill, `alloc_sum`) keeps it in its bin, like a block of its own, for
/// its next malloc of the class, if the block has cache lines of its own
/// (`KEEP_FOREIGN`): a thread that frees what others allocated
/// (a server thread taking over requests) reuses those blocks instead of
/// carving its own while they wait on a remote list for an owner that may
/// never allocate again (larson: the main thread's 8 MiB of first blocks).
/// A block leaving the bin goes back through its zone's owner
/// (`give_back_all`).
///
/// A thread that is not allocating the class (a consumer) would only pass
/// the block on later, so it goes to its owner at once, batched with the
/// blocks of its zone freed before it: a link and a count here, one list
/// push a batch (`remote_run`). Through the bin, each cost a push, its
/// share of a spill and a remote free of its own: 126 instructions a
/// free, 62 now, 73 under mimalloc (`c_tests/xfree.c`, mode c).
/// Out of line: inlined, it made every free save registers; and with no
/// call but tail calls, so that it saves none either.
#[inline(never)]
unsafe fn free_foreign(tc: *mut Cache, cls: usize, b: *mut Block) {
    free_foreign_here(tc, cls, b)
}

/// [`free_foreign`], inline.
///
/// # Safety
/// As `free_foreign`.
#[inline(always)]
unsafe fn free_foreign_here(tc: *mut Cache, cls: usize, b: *mut Block) {
    // (The static caches have allocated nothing and spilled nothing, and
    // have pending batches of no zone.)
    if *KEEP_FOREIGN.get_unchecked(cls) && alloc_sum(tc, cls) != *(*tc).spilled.get_unchecked(cls) {
        if bin_push(tc, cls, b) {
            return;
        }
        return spill_bin(b, cls, tc);
    }
    let p = (*tc).pending.get_unchecked_mut(cls);
    // (A batch's head is a block of its zone; with no batch, null.)
    if (p.head as usize ^ b as usize) < ZONE_SIZE {
        (*b).next = enc(p.head, b);
        p.head = b;
        p.count += 1;
        if p.count >= PENDING_MAX {
            return flush_pending(p);
        }
        return;
    }
    free_foreign_slow(tc, cls, b)
}

/// Per class: a block of it has cache lines of its own, so that another
/// thread's block of it may be kept in a bin and reused (`free_foreign`):
/// its size is a multiple of 64 (its blocks start and end on line
/// boundaries, as a zone's first block starts on one: `ZONE_HDR` and the
/// colours are), or at least 128 bytes (its inner lines are its own; two
/// at its ends are shared). A smaller block, reused, would share its line
/// with the neighbours that the zone's owner hands to other threads
/// (passive false sharing, Hoard's `cache-scratch`: the main thread's
/// 8-byte blocks, one a thread, each freed by its thread and taken back by
/// its next malloc, four to a line; mimalloc and snmalloc never reuse
/// another thread's block). Such blocks go to their owner.
const KEEP_FOREIGN: [bool; NCLASS] = {
    let mut t = [false; NCLASS];
    let mut cls = 0;
    while cls < NCLASS {
        t[cls] = CLASS_SIZE[cls].is_multiple_of(64) || CLASS_SIZE[cls] >= 128;
        cls += 1;
    }
    t
};
const _: () = assert!(ZONE_HDR.is_multiple_of(64) && (COLOURS - 1) * 64 < ZONE_SIZE);

/// The allocations of `cls` that cache `tc` served (its pops and its zone
/// allocations, which only grow, but for profiling's offsets: their sum
/// moves with every allocation), mod 2^32.
///
/// # Safety
/// `tc` is this thread's cache or a static one, `cls < NCLASS`.
#[inline(always)]
unsafe fn alloc_sum(tc: *mut Cache, cls: usize) -> u32 {
    let st = *(*tc).bin_state.get_unchecked(cls);
    ((st >> 16) as u32).wrapping_add(*(*tc).allocs.get_unchecked(cls) as u32)
}

/// `free_foreign` of a block that starts a pending batch: the batch of
/// another zone goes; a thread without a live cache pushes the block alone.
#[cold]
#[inline(never)]
unsafe fn free_foreign_slow(tc: *mut Cache, cls: usize, b: *mut Block) {
    let z = zone_of(b as *const u8);
    if (*tc).state != LIVE {
        return push_remote(z, b, b, 1);
    }
    new_pending((*tc).pending.get_unchecked_mut(cls), z, b, b, 1)
}

/// Asks the processor for the cache line of `p`, for writing soon (a
/// hint: no fault, no change to memory, whatever `p` is): a zone's header
/// line before a spill, a block whose mark `settle` reads and writes.
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

/// Asks for the line of each zone of blocks `xs` that `give_back_all`
/// writes (once a run of one zone).
#[inline(never)]
fn prefetch_zones(xs: &[*mut Block]) {
    let mut last = 0;
    for &x in xs {
        let g = x as usize & !(ZONE_SIZE - 1);
        if g != last {
            last = g;
            // (Address arithmetic only: nothing is read.)
            prefetch(zone_at(g).wrapping_byte_add(core::mem::offset_of!(Zone, free)) as *const u8);
        }
    }
}

/// Gives blocks `xs` of class `cls`, leaving `tc`'s bin, back to their
/// zones: at once to a zone of `tc`'s, else through the zone's remote list
/// (batched in `tc`'s pending list). A run of blocks of one zone goes in
/// one go: one owner test, the run linked onto the zone's free list and
/// `used` lowered once, or linked onto the pending batch. Blocks freed one
/// after another were mostly allocated one after another, from one zone: a
/// block after a run's first costs 9 instructions, where each went back on
/// its own for about 40.
///
/// # Safety
/// `tc` is this thread's live cache; `xs` are free blocks (marked free) of
/// live zones of `cls`, counted as used by them, and not in any bin or
/// list; `xs` is not in `*tc`.
unsafe fn give_back_all(tc: *mut Cache, cls: usize, xs: &[*mut Block]) {
    // The zones' lines that the runs read and write, asked for at once: in
    // a program that frees at random, the blocks of a spill lie in as many
    // zones, whose headers are mostly cold (a cache and a TLB miss each),
    // and the loop below would take those misses one after another. (Not
    // when the first and last blocks share a zone, as a burst's do: the
    // pass cost `c_tests/bursts.sh` 8 instructions a pair.)
    if let (Some(&a), Some(&b)) = (xs.first(), xs.last()) {
        if (a as usize ^ b as usize) >= ZONE_SIZE {
            prefetch_zones(xs);
        }
    }
    let mut i = 0;
    while i < xs.len() {
        let x = xs[i];
        i += 1;
        let g = x as usize & !(ZONE_SIZE - 1);
        let e = zonemap::info(x as *const u8);
        let z = zonemap::room_of(e, x as *const u8) as *mut Zone;
        if e.owner.load(Ordering::Relaxed) != tc as usize {
            // Another thread's zone: the run to its pending batch.
            let (head, n) = link_run(xs, &mut i, g, x);
            remote_run(tc, cls, z, head, x, n);
            continue;
        }
        // The run: x and the blocks after it in the same zone, linked
        // onto the zone's free list.
        let old = (*z).free;
        (*x).next = enc(old, x);
        let (head, n) = link_run(xs, &mut i, g, x);
        end_run(tc, cls, z, old, head, n);
    }
}

/// Links onto `x` the blocks of `xs` from `*i` on that lie in granule `g`,
/// each onto the one before it, and moves `*i` past them; returns the last
/// one linked (the run's head, `x` if none) and the run's length with `x`.
///
/// # Safety
/// As [`give_back_all`]; `x` is the block of `xs` before `*i`, in `g`.
#[inline(always)]
unsafe fn link_run(xs: &[*mut Block], i: &mut usize, g: usize, x: *mut Block) -> (*mut Block, u32) {
    let mut head = x;
    let mut n = 1;
    while *i < xs.len() && xs[*i] as usize & !(ZONE_SIZE - 1) == g {
        let y = xs[*i];
        (*y).next = enc(head, y);
        head = y;
        n += 1;
        *i += 1;
    }
    (head, n)
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
unsafe fn spill_bin(b: *mut Block, cls: usize, tc: *mut Cache) {
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
        give_back_all(tc, cls, xs);
    }
    (*tc).bin_state[cls] = ((*tc).bin_state[cls] & !BIN_TOP) | (fb + h - 1) as u64;
    (*tc).bin[ab] = b;
    (*tc).free_top[cls] = (ab + 1) as u64;
    (*tc).spilled[cls] = alloc_sum(tc, cls);
}

/// Gives every block of `tc`'s bins back to the zones.
unsafe fn drain_bins(tc: *mut Cache) {
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

/// The checks every pointer into a zone gets: it is where a block starts
/// (not an interior or misaligned pointer: the zone map's entry `e` for its
/// granule says where blocks lie) and that block is not free. About nine
/// instructions.
#[inline(always)]
unsafe fn block_ok(e: &zonemap::ZoneInfo, p: *mut u8, key: usize) -> bool {
    if !crate::guard::CHECKS {
        return true;
    }
    e.block_at(p) && (*(p as *mut Block)).mark != key
}

/// `block_ok` for `p` in a zone's granule, reporting and aborting on
/// failure; `what` names the call.
///
/// # Safety
/// `p` lies in a live zone (the zone map says its granule is one).
#[inline(always)]
pub unsafe fn check_block(p: *mut u8, what: &'static str) {
    settle(tls::get());
    if !block_ok(zonemap::info(p), p, crate::guard::list_key()) {
        bad_block(p, what);
    }
}

/// `bad_block` for `free_own` (a tail call: the fast path saves nothing).
#[cold]
#[inline(never)]
fn bad_free(p: *mut u8) -> bool {
    bad_block(p, "free");
    true
}

/// Reports a bad pointer into a zone: freed already, or not a block start.
#[cold]
#[inline(never)]
fn bad_block(p: *mut u8, what: &'static str) {
    // SAFETY: p lies in a live zone (the zone map said so), so its first
    // bytes are ours to read.
    let freed = zonemap::info(p).block_at(p)
        && unsafe { (*(p as *mut Block)).mark == crate::guard::list_key() };
    let msg = match (what, freed) {
        ("free", true) => "double free",
        ("realloc", true) => "realloc of a freed block",
        (_, true) => "malloc_usable_size of a freed block",
        _ => "invalid pointer (not the start of a block)",
    };
    crate::report::fatal(msg, p)
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
unsafe fn new_pending(p: &mut Pending, z: *mut Zone, head: *mut Block, tail: *mut Block, n: u32) {
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

/// Pushes a pending batch to its zone.
#[inline(never)]
unsafe fn flush_pending(p: &mut Pending) {
    push_remote(p.zone, p.head, p.tail, p.count);
    p.zone = null_mut();
    p.head = null_mut();
}

/// `Zone::remote`'s word: the list's first block in the low
/// `REMOTE_SHIFT` bits (user addresses are below 2^47), its length above
/// them (at most a zone's capacity, 4084). 0: the list is empty.
const REMOTE_SHIFT: u32 = 48;
const _: () = assert!(ZONE_SIZE / 16 < 1 << (64 - REMOTE_SHIFT));

/// The remote word of a list of `n` blocks from `head`.
#[inline(always)]
fn remote_word(head: *mut Block, n: usize) -> usize {
    head as usize | n << REMOTE_SHIFT
}

/// The first block of the remote list of word `w` of the zone at `granule`;
/// the list's end if it is empty.
#[inline(always)]
fn remote_head(w: usize, granule: usize) -> *mut Block {
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
unsafe fn push_remote(z: *mut Zone, head: *mut Block, tail: *mut Block, n: u32) {
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

// ---- slow paths ------------------------------------------------------------

/// Frees the chain `head..=tail` of `n` blocks into abandoned zone `z` under
/// the shared lock (abandoned zones belong to whoever holds it). False if `z`
/// was adopted meanwhile.
#[cold]
#[inline(never)]
unsafe fn free_abandoned(z: *mut Zone, head: *mut Block, tail: *mut Block, n: u32) -> bool {
    {
        let _g = (*z).alock.guard();
        if !(*z).owner.load(Ordering::Relaxed).is_null() {
            return false;
        }
        collect(z);
        (*tail).next = enc((*z).free, tail);
        (*z).free = head;
        (*z).used -= n;
        if (*z).used != 0 {
            return true;
        }
        // The last block came back. Nobody else retires or adopts a
        // RETIRING zone; we unlink it under the shared lock (taken after the
        // zone's lock is released: the order elsewhere is shared, then zone).
        (*z).state = RETIRING;
    }
    {
        let _g = SHARED_LOCK.guard();
        (*addr_of_mut!(SHARED)).abandoned[(*z).class as usize].unlink(z);
    }
    retire(z);
    true
}

/// The current zone of `cls` is dry: collect, carve, switch zones or make a
/// new one.
#[cold]
#[inline(never)]
unsafe fn alloc_slow(n: usize, cls: usize, tc: *mut Cache) -> *mut u8 {
    if crate::prof::active() {
        return prof_alloc(n, cls, tc);
    }
    alloc_dry(n, cls, tc)
}

/// `alloc_slow` but for profiling (out of line, so that the profiled
/// path does not pay for this one's registers).
#[cold]
#[inline(never)]
unsafe fn alloc_dry(n: usize, cls: usize, tc: *mut Cache) -> *mut u8 {
    if (*tc).state == EMPTY && crate::config::debug() {
        // Debug mode: no caches, every block is checked (see `debug`).
        let p = crate::debug::alloc(n, ALIGN);
        if p.is_null() {
            crate::os::set_errno(libc::ENOMEM);
        }
        return p;
    }
    let p = refill(tc, cls, n);
    if p.is_null() {
        crate::os::set_errno(libc::ENOMEM);
    }
    p
}

// ---- profiling (see `prof`) -------------------------------------------------
//
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
struct ProfClass {
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
    const OFF: ProfClass = ProfClass {
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
unsafe fn prof_arm(tc: *mut Cache, cls: usize, bin: u64, zone: u64) {
    let c = &mut *tc;
    let p = &mut c.prof[cls];
    if p.left == 0 {
        p.left = crate::prof::draw_blocks(CLASS_SIZE[cls] as usize);
    }
    let fast = p.left - 1;
    // (In floating point, not u128: a 128-bit division was a call to
    // `__udivti3`, twice a sample. Through i64, one conversion instruction
    // each: the counts are far below 2^62; `fast` is below 2^41, exact, and
    // the share below 1, so `z <= fast`.)
    let share = (zone as i64 + 1) as f64 / (bin as i64 + zone as i64 + 2) as f64;
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
unsafe fn prof_tick(n: usize) -> *mut u8 {
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
unsafe fn prof_alloc(n: usize, cls: usize, tc: *mut Cache) -> *mut u8 {
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
unsafe fn served(c: *const Cache, cls: usize) -> usize {
    let allocs = core::ptr::read_volatile(&(*c).allocs[cls]);
    let pops = core::ptr::read_volatile(&(*c).bin_state[cls]) >> 16;
    let p = core::ptr::read_volatile(&(*c).prof[cls]);
    if !p.armed {
        return allocs + pops as usize;
    }
    let (bin, zone) = prof_counts(&p, pops, allocs);
    p.allocs + zone as usize + (p.pops + bin) as usize
}

unsafe fn refill(mut tc: *mut Cache, mut cls: usize, n: usize) -> *mut u8 {
    if crate::config::perturb() != 0 {
        // glibc's perturb byte is set: blocks come from the heap, filled, and
        // a thread gets no cache meanwhile.
        return crate::config::perturb_alloc(heap_small(cls), n);
    }
    if (*tc).state != LIVE {
        if (*tc).state == EMPTY {
            tc = init_cache();
        }
        if tc.is_null() || (*tc).state == DEAD {
            return heap_small(cls);
        }
        // The class came from the static cache's table; the new cache's
        // may differ (a sparse thread's).
        cls = (*tc).class_of[(n + 15) >> 4] as usize;
    }
    let c = &mut *tc;
    let empty = addr_of_mut!(EMPTY_ZONE);
    if c.sparse && cls == SPARSE_CLASS {
        let z = c.current[cls];
        if z != empty && (*z).used >= SPARSE_USED {
            // No longer sparse: each size takes its own class from now on.
            c.class_of = CLASS_OF;
            c.sparse = false;
        }
    }
    if c.allocs[cls] < COLD_ALLOCS
        && c.current[cls] == empty
        && crate::heap::in_use_hint() < COLD_HEAP
        && !several_threads()
        && no_abandoned(cls)
    {
        // A class this thread has barely used: from the heap (see
        // `COLD_ALLOCS`).
        let p = heap_small(cls);
        if !p.is_null() {
            c.allocs[cls] += 1;
        }
        return p;
    }
    loop {
        let z = c.current[cls];
        if z != empty {
            if collect(z) == 0 && is_end((*z).free) {
                let f = reclaim_full(c, cls);
                if !f.is_null() {
                    // Blocks other threads gave back to a full zone go
                    // before new ones are carved.
                    if (*z).carved < (*z).capacity {
                        (*z).state = AVAIL;
                        c.avail[cls].push_back(z);
                    } else {
                        (*z).state = FULL;
                        c.full[cls].push_back(z);
                    }
                    (*f).state = CURRENT;
                    c.current[cls] = f;
                } else if !carve(z) {
                    // Exhausted: park it with the full zones.
                    (*z).state = FULL;
                    c.full[cls].push_back(z);
                    c.current[cls] = empty;
                }
            }
            let z = c.current[cls];
            if z != empty {
                let b = (*z).free;
                if !is_end(b) {
                    (*z).free = dec(b);
                    (*b).mark = 0;
                    (*z).used += 1;
                    c.allocs[cls] += 1;
                    return b as *mut u8;
                }
            }
        }
        let next = find_zone(c, cls);
        if next.is_null() {
            return null_mut();
        }
        (*next).state = CURRENT;
        c.current[cls] = next;
    }
}

/// The oldest full zone of `cls`, unlinked, if other threads freed blocks
/// into it (collected into its free list); null otherwise.
#[inline]
unsafe fn reclaim_full(c: &mut Cache, cls: usize) -> *mut Zone {
    let z = c.full[cls].head;
    if z.is_null() || (*z).remote.load(Ordering::Relaxed) == 0 {
        return null_mut();
    }
    c.full[cls].unlink(z);
    collect(z);
    z
}

/// A zone with free blocks for `cls`: from the avail list, a full zone that
/// received remote frees (the oldest few are checked), an abandoned zone, or
/// a new one. Null when memory is exhausted.
unsafe fn find_zone(c: &mut Cache, cls: usize) -> *mut Zone {
    let z = c.avail[cls].pop_front();
    if !z.is_null() {
        return z;
    }
    let z = c.spare[cls];
    if !z.is_null() {
        c.spare[cls] = null_mut();
        return z;
    }
    for _ in 0..4 {
        let z = c.full[cls].head;
        if z.is_null() {
            break;
        }
        c.full[cls].unlink(z);
        if collect(z) != 0 {
            return z;
        }
        c.full[cls].push_back(z);
    }
    let z = adopt(c, cls);
    if !z.is_null() {
        return z;
    }
    new_zone(c, cls)
}

/// Moves the remote list of `z` into its free list; returns how many blocks.
/// A dry zone (the common case: its owner collects when it runs out) takes
/// the list as its free list as it is, in O(1): the freeing threads
/// encoded its links, and counted it in the remote word. (Walked, re-encoded
/// and counted here, it cost the owner 13 instructions a block:
/// `c_tests/xfree.sh`.) Else its last block is found and linked to the
/// free list.
#[inline]
unsafe fn collect(z: *mut Zone) -> u32 {
    if (*z).remote.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let w = (*z).remote.swap(0, Ordering::Acquire);
    let g = (*z).granule;
    let head = remote_head(w, g);
    let n = (w >> REMOTE_SHIFT) as u32;
    if (head as usize ^ g) >= ZONE_SIZE || is_end(head) {
        corrupt_list(head);
    }
    let free = (*z).free;
    if !is_end(free) {
        // (At most n links: a cycle, or a list longer than its count, is
        // corruption.)
        let mut b = head;
        let mut k = 1;
        loop {
            let nx = dec(b);
            if is_end(nx) {
                break;
            }
            if k == n {
                corrupt_list(b);
            }
            b = nx;
            k += 1;
        }
        (*b).next = enc(free, b);
    }
    (*z).free = head;
    (*z).used -= n;
    n
}

/// Carves the next batch of never-used blocks into the free list: the
/// blocks that start in the page of the first one, and 8 blocks if those
/// start no further than the next page (but for a zone's first batch);
/// false if the zone is fully carved.
///
/// Carving writes a link at the start of each block, which makes its page
/// resident: a batch of 8 blocks of a big class (8 × 4 KiB) would commit
/// 32 KiB for a program that takes one (a stdio buffer). So a batch never
/// reaches more than a page past the first block; small classes (up to
/// 512 bytes) still get at least 8 blocks per batch. A zone's first batch
/// stays in the page of its header: the header's page holds 5-7 blocks of
/// 384-512 bytes, and 8 would make a second page resident for a program (or
/// a thread) that takes one or two (a `FILE` is 472 bytes).
unsafe fn carve(z: *mut Zone) -> bool {
    let (cap, done) = ((*z).capacity, (*z).carved);
    if done == cap {
        return false;
    }
    let bs = (*z).block_size as usize;
    let base = (*z).granule + first_at((*z).granule);
    let start = base + done as usize * bs;
    let page_end = (start | 4095) + 1;
    let in_page = (page_end - start).div_ceil(bs) as u32;
    let n = if done != 0 && start + 7 * bs < page_end + 4096 {
        in_page.max(8)
    } else {
        in_page
    };
    let n = n.min(cap - done);
    let mut head = (*z).free;
    let mut i = n;
    while i > 0 {
        i -= 1;
        let b = (start + i as usize * bs) as *mut Block;
        (*b).next = enc(head, b);
        head = b;
    }
    (*z).free = head;
    (*z).carved = done + n;
    true
}

/// Takes a 64 KiB-aligned chunk from the heap and makes it a zone of `cls`
/// owned by `c`.
unsafe fn new_zone(c: &mut Cache, cls: usize) -> *mut Zone {
    let bs = CLASS_SIZE[cls];
    let z = HEAP.with(|h| {
        let ch = h.alloc_aligned_at(ZONE_SIZE, ZONE_SIZE, 0);
        if ch.is_null() {
            return null_mut();
        }
        let cap = zone_capacity(ch as usize, bs as usize);
        // The header is written before the zone map says "zone": a heap
        // walk (memalloc_check, the statistics, a fork child's) under the
        // heap lock never meets a zone without one.
        let z = zone_at(ch as usize);
        z.write(Zone::new(c as *mut Cache, bs, cls as u32, cap, ch as usize));
        if !zonemap::set(
            ch as *const u8,
            c as *mut Cache as usize,
            cls as u32,
            first_offset(z),
            bs,
            cap,
        ) {
            // SAFETY: ch came from this heap just above and is in use.
            h.free(ch);
            return null_mut();
        }
        z
    });
    if z.is_null() {
        return z;
    }
    carve(z);
    z
}

/// Gives an empty zone back to the heap.
unsafe fn retire(z: *mut Zone) {
    HEAP.with(|h| retire_in(h, z));
}

/// `retire`, under the heap's lock (`h`).
///
/// # Safety
/// As `retire`.
unsafe fn retire_in(h: &mut Heap, z: *mut Zone) {
    let g = (*z).granule;
    zonemap::clear(g as *const u8);
    // SAFETY: a zone's chunk starts at its granule and is in use until
    // this free.
    h.free(g as *mut chunk::Chunk);
}

/// Takes a zone of `cls` abandoned by an exited thread.
unsafe fn adopt(c: &mut Cache, cls: usize) -> *mut Zone {
    loop {
        let z = {
            let _g = SHARED_LOCK.guard();
            let list = &mut (*addr_of_mut!(SHARED)).abandoned[cls];
            let mut z = list.head;
            while !z.is_null() {
                let _zg = (*z).alock.guard();
                if (*z).state != RETIRING {
                    (*z).owner.store(c as *mut Cache, Ordering::Relaxed);
                    zonemap::info((*z).granule as *const u8)
                        .owner
                        .store(c as *mut Cache as usize, Ordering::Relaxed);
                    break;
                }
                z = (*z).next;
            }
            if !z.is_null() {
                list.unlink(z);
            }
            z
        };
        if z.is_null() {
            return z;
        }
        collect(z);
        if !is_end((*z).free) || (*z).carved < (*z).capacity {
            if is_end((*z).free) {
                carve(z);
            }
            return z;
        }
        (*z).state = FULL;
        c.full[cls].push_back(z);
    }
}

/// Owner free that emptied the zone or refilled a dry one. (The class is
/// the caller's: the zone's own field lies in a line of its header that
/// the free did not read.)
#[cold]
#[inline(never)]
unsafe fn free_local_slow(tc: *mut Cache, cls: usize, z: *mut Zone) {
    let c = &mut *tc;
    match (*z).state {
        AVAIL if (*z).used == 0 => c.avail[cls].unlink(z),
        FULL => {
            c.full[cls].unlink(z);
            if (*z).used != 0 {
                (*z).state = AVAIL;
                c.avail[cls].push_front(z);
                return;
            }
        }
        _ => return, // the current zone stays, even empty: no thrashing
    }
    keep_or_retire(c, cls, z);
    // The class is shrinking (a burst is being freed): the blocks the bin's
    // alloc half holds go back to their zones (most were taken from the
    // current zone by `bin_refill` and never handed out), and an empty
    // current zone goes too, so that the break can shrink past it.
    give_back_alloc_half(tc, cls);
    let c = &mut *tc;
    let cur = c.current[cls];
    if cur != addr_of_mut!(EMPTY_ZONE) && (*cur).used == 0 {
        c.current[cls] = addr_of_mut!(EMPTY_ZONE);
        keep_or_retire(c, cls, cur);
    }
}

/// Gives the blocks of the alloc half of `cls`'s bin back to their zones.
/// (Its top is lowered first: a zone this empties may bring us back here,
/// through `free_local_slow`, and finds the half empty.)
///
/// # Safety
/// `tc` is this thread's live cache, `cls < NCLASS`.
unsafe fn give_back_alloc_half(tc: *mut Cache, cls: usize) {
    let st = (*tc).bin_state[cls];
    let at = (st & BIN_TOP) as usize;
    let base = at & !(HALF[cls] - 1);
    if at == base {
        return;
    }
    (*tc).bin_state[cls] = (st & !BIN_TOP) | base as u64;
    let mut xs = [null_mut(); WIDE_HALF];
    xs[..at - base].copy_from_slice(&(&(*tc).bin)[base..at]);
    give_back_all(tc, cls, &xs[..at - base]);
}

/// An empty zone leaves the lists: the cache keeps one empty zone per class
/// as a spare (a program cycling through a window of blocks would otherwise
/// hand a zone back to the heap and take a new one on every turn), the one
/// at the lowest address, so that the break can still shrink above it. The
/// other goes back to the heap.
unsafe fn keep_or_retire(c: &mut Cache, cls: usize, z: *mut Zone) {
    let spare = c.spare[cls];
    if spare.is_null() {
        (*z).state = SPARE;
        c.spare[cls] = z;
    } else if z < spare {
        (*z).state = SPARE;
        c.spare[cls] = z;
        retire(spare);
    } else {
        retire(z);
    }
}

/// Blocks a sparse thread may have out of its 256-byte zone (its bin's
/// included) before it stops being sparse.
///
/// A zone makes at least its header's page resident, and a thread that keeps
/// a few blocks live may spread them over many classes: each of the 32
/// threads of `bench/threads32` keeps 16 blocks of 16-256 bytes live, over 12
/// classes, so 12 pages a thread for 16 blocks. So a thread that starts while
/// another has a cache starts *sparse*: its requests of up to 256 bytes all
/// take 256-byte blocks, from one zone and one bin (the class table in its
/// cache says so, so the fast path is unchanged). Once that zone has
/// `SPARSE_USED` blocks out, at its next refill, the thread takes each size's
/// own class from then on; the 256-byte blocks it holds stay valid. The
/// waste is bounded: at most 32 blocks of 256 bytes, 8 KiB a thread. The
/// first thread of a process starts with its own classes (a single-threaded
/// program would only pay the waste), and its first blocks of each class
/// come from the heap (`COLD_ALLOCS`).
const SPARSE_USED: u32 = 32;

/// A thread's first allocations of a class come from the TLSF heap, not a
/// zone: a zone makes at least its header's page resident (two pages for
/// blocks of 2 KiB and up), and its class's bin slots in the cache, for what
/// may be one block. Short programs and threads touch many classes a few
/// times each (`sleep 0.1` took 18 zones, 12 of them for one or two
/// blocks: 96 KiB of heap resident, 44 KiB with this; glibc 16), where heap
/// blocks share their pages. Only while one thread has a cache: heap blocks
/// of two threads can share a cache line (false sharing, which zones, one
/// thread's each, avoid), and threads would meet on the heap's lock. And
/// only while the heap is small (`COLD_HEAP`), and when the class has no
/// abandoned zones to adopt.
const COLD_ALLOCS: usize = 8;

/// No abandoned zone of `cls` waits (read without the lock: a hint).
#[inline]
fn no_abandoned(cls: usize) -> bool {
    // SAFETY: a pointer-sized read of a static; a stale answer only sends
    // one allocation to the heap or to a zone.
    unsafe { core::ptr::read_volatile(addr_of!(SHARED.abandoned[cls].head)).is_null() }
}

/// Heap bytes in use (zones included) below which a class's first
/// allocations go to the heap. In a bigger heap, a zone created late (at its
/// class's ninth allocation rather than its first) would land wherever the
/// heap has room, often high, and stay there as its class's current zone:
/// `bench/realloc`'s strings had the zones of six classes scattered over the
/// top 5 MiB of the heap, which the vectors after them then could not reuse
/// (peak RSS 27.8-29.0 MiB against 24.5-26.3; with this bound, 23.1-25.5).
const COLD_HEAP: usize = 256 << 10;

/// Where a sampled block of a class of `SAMPLE_FROM_MEDIUM` bytes or more
/// comes from: a function of the layer above that serves a block of the
/// medium cache's first class, or null when it does not (`mcache::sample`,
/// registered at start by `lib.rs`); unset, the heap.
static MEDIUM_SAMPLE: AtomicPtr<()> = AtomicPtr::new(null_mut());

/// Registers the source of sampled blocks (see `MEDIUM_SAMPLE`).
pub fn set_medium_sample(f: fn() -> *mut u8) {
    MEDIUM_SAMPLE.store(f as *mut (), Ordering::Relaxed);
}

/// A sampled block of `cls` from `MEDIUM_SAMPLE`, else from the heap.
unsafe fn medium_sample(cls: usize) -> *mut u8 {
    let f = MEDIUM_SAMPLE.load(Ordering::Relaxed);
    if !f.is_null() {
        // SAFETY: only `set_medium_sample` stores here, a `fn() -> *mut u8`.
        let f: fn() -> *mut u8 = core::mem::transmute(f);
        let p = f();
        if !p.is_null() {
            return p;
        }
    }
    heap_small(cls)
}

/// Small request served by the TLSF heap (threads without a cache, and the
/// first allocations of a class: `COLD_ALLOCS`).
#[cold]
unsafe fn heap_small(cls: usize) -> *mut u8 {
    let cs = chunk::request_to_size(CLASS_SIZE[cls] as usize).unwrap_or(0);
    let ch = HEAP.with(|h| h.alloc(cs));
    if ch.is_null() {
        null_mut()
    } else {
        to_user(ch)
    }
}

/// Gives this thread a cache; returns it, or null (the caller falls back to
/// the heap).
#[cold]
unsafe fn init_cache() -> *mut Cache {
    // While we set up, small requests of this thread go to the heap
    // (pthread_setspecific may allocate).
    tls::set(static_cache_ptr(addr_of!(DEAD_CACHE)));
    let key = *KEY.call_once(|| {
        let mut k: libc::pthread_key_t = 0;
        if libc::pthread_key_create(&mut k, Some(thread_exit)) != 0 {
            return libc::pthread_key_t::MAX;
        }
        k
    });
    let mut c = {
        let _g = SHARED_LOCK.guard();
        let s = &mut *addr_of_mut!(SHARED);
        let c = s.free_caches;
        if !c.is_null() {
            s.free_caches = (*c).next_free;
        }
        c
    };
    if c.is_null() {
        let cs = chunk::request_to_size(core::mem::size_of::<Cache>()).unwrap_or(0);
        let ch = HEAP.with(|h| h.alloc_aligned(cs, 64));
        if ch.is_null() {
            tls::set(static_cache_ptr(addr_of!(EMPTY_CACHE)));
            return null_mut();
        }
        c = to_user(ch) as *mut Cache;
    }
    // A thread that starts while another has a cache starts sparse.
    init_fields(c, THREADS.load(Ordering::Relaxed) >= 1);
    if key == libc::pthread_key_t::MAX
        || libc::pthread_setspecific(key, c as *const libc::c_void) != 0
    {
        // No destructor means no clean exit: serve this thread from the heap.
        recycle(c);
        return null_mut();
    }
    {
        let _g = SHARED_LOCK.guard();
        let s = &mut *addr_of_mut!(SHARED);
        (*c).live_next = s.live;
        if !s.live.is_null() {
            (*s.live).live_prev = c;
        }
        s.live = c;
        THREADS.fetch_add(1, Ordering::Relaxed);
    }
    tls::set(c);
    c
}

/// Initialises every field of cache `c` but the bins' slots, which are only
/// read below their counts: writing them all would make two more pages of a
/// thread's cache resident for nothing (a thread uses a few classes).
unsafe fn init_fields(c: *mut Cache, sparse: bool) {
    let s = static_cache(LIVE);
    let CacheOf {
        settled_next,
        unsettled: _,
        class_of,
        sparse: _,
        swap_min,
        half_mask,
        current,
        bin_state,
        free_top,
        bin: _,
        avail,
        full,
        spare,
        pending,
        spilled,
        allocs,
        state,
        next_free,
        live_next,
        live_prev,
        prof,
    } = s;
    if sparse {
        addr_of_mut!((*c).class_of).write(CLASS_OF_SPARSE);
    } else {
        addr_of_mut!((*c).class_of).write(class_of);
    }
    addr_of_mut!((*c).sparse).write(sparse);
    addr_of_mut!((*c).swap_min).write(swap_min);
    addr_of_mut!((*c).half_mask).write(half_mask);
    addr_of_mut!((*c).current).write(current);
    addr_of_mut!((*c).bin_state).write(bin_state);
    addr_of_mut!((*c).free_top).write(free_top);
    addr_of_mut!((*c).settled_next).write(settled_next);
    addr_of_mut!((*c).unsettled).write(settled(c));
    addr_of_mut!((*c).avail).write(avail);
    addr_of_mut!((*c).full).write(full);
    addr_of_mut!((*c).spare).write(spare);
    addr_of_mut!((*c).pending).write(pending);
    addr_of_mut!((*c).spilled).write(spilled);
    addr_of_mut!((*c).allocs).write(allocs);
    addr_of_mut!((*c).state).write(state);
    addr_of_mut!((*c).next_free).write(next_free);
    addr_of_mut!((*c).live_next).write(live_next);
    addr_of_mut!((*c).live_prev).write(live_prev);
    addr_of_mut!((*c).prof).write(prof);
}

unsafe fn recycle(c: *mut Cache) {
    let _g = SHARED_LOCK.guard();
    let s = &mut *addr_of_mut!(SHARED);
    (*c).next_free = s.free_caches;
    s.free_caches = c;
}

/// The pthread key destructor: returns the cache's empty zones to the heap and
/// abandons the rest to the shared lists.
///
/// The zones are sorted first, outside every shared lock: the empty ones go
/// to the heap under one acquisition of its lock, the others are abandoned
/// under one acquisition of the shared lock, with the cache's figures and
/// the cache itself. (A zone at a time, each taking the shared lock or the
/// heap's, threads that exit together queued on them: 8 threads exiting at
/// once made 13 futex calls per million pairs of `bench/mthreads 8 5e6 1000
/// 1 32k s`, half the program's; see docs/performance.md.)
unsafe extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let c = arg as *mut Cache;
    if c.is_null() {
        return;
    }
    drain_bins(c);
    for p in (*c).pending.iter_mut() {
        if !p.zone.is_null() {
            flush_pending(p);
        }
    }
    tls::set(static_cache_ptr(addr_of!(DEAD_CACHE)));
    let empty = addr_of_mut!(EMPTY_ZONE);
    let mut keep = [ZoneList::new(); NCLASS];
    let mut dead = ZoneList::new();
    for (cls, kept) in keep.iter_mut().enumerate() {
        let cur = (*c).current[cls];
        if cur != empty {
            sort_zone(cur, kept, &mut dead);
        }
        if !(*c).spare[cls].is_null() {
            dead.push_back((*c).spare[cls]);
        }
        loop {
            let z = (*c).avail[cls].pop_front();
            if z.is_null() {
                break;
            }
            sort_zone(z, kept, &mut dead);
        }
        loop {
            let z = (*c).full[cls].pop_front();
            if z.is_null() {
                break;
            }
            sort_zone(z, kept, &mut dead);
        }
    }
    if !dead.head.is_null() {
        HEAP.with(|h| {
            let mut z = dead.head;
            while !z.is_null() {
                // (Read before the zone's chunk is freed.)
                let next = (*z).next;
                retire_in(h, z);
                z = next;
            }
        });
    }
    let _g = SHARED_LOCK.guard();
    let s = &mut *addr_of_mut!(SHARED);
    for (cls, kept) in keep.iter_mut().enumerate() {
        let mut z = kept.head;
        while !z.is_null() {
            let _zg = (*z).alock.guard();
            (*z).state = ABANDONED;
            (*z).owner.store(null_mut(), Ordering::Release);
            zonemap::info((*z).granule as *const u8)
                .owner
                .store(0, Ordering::Release);
            z = (*z).next;
        }
        s.abandoned[cls].append(kept);
    }
    for (i, n) in s.allocs.iter_mut().enumerate() {
        *n += served(c, i);
    }
    if (*c).live_prev.is_null() {
        s.live = (*c).live_next;
    } else {
        (*(*c).live_prev).live_next = (*c).live_next;
    }
    if !(*c).live_next.is_null() {
        (*(*c).live_next).live_prev = (*c).live_prev;
    }
    THREADS.fetch_sub(1, Ordering::Relaxed);
    (*c).next_free = s.free_caches;
    s.free_caches = c;
}

/// At owner exit: zone `z` (of the owner's lists, unlinked) goes to `dead`
/// if all its blocks came back, else to `kept`, to be abandoned.
///
/// # Safety
/// `z` is a live zone of the exiting thread's cache, on none of its lists.
unsafe fn sort_zone(z: *mut Zone, kept: &mut ZoneList, dead: &mut ZoneList) {
    collect(z);
    if (*z).used == 0 {
        dead.push_back(z);
    } else {
        kept.push_back(z);
    }
}

/// malloc_trim's part: the caches of exited threads, kept for the next
/// threads, go back to the heap (a cache lies in the heap, and one at its
/// top would keep the break up). Returns how many.
pub fn trim_free_caches() -> usize {
    let mut list = {
        let _g = SHARED_LOCK.guard();
        // SAFETY: the list is only touched under SHARED_LOCK; we take it whole.
        unsafe { core::mem::replace(&mut (*addr_of_mut!(SHARED)).free_caches, null_mut()) }
    };
    let mut n = 0;
    while !list.is_null() {
        // SAFETY: a cache on the free list belongs to no thread, and is a
        // heap chunk of its own (`init_cache`).
        unsafe {
            let next = (*list).next_free;
            HEAP.with(|h| h.free(chunk::from_user(list as *mut u8)));
            list = next;
        }
        n += 1;
    }
    n
}

/// malloc_trim's part: retires abandoned zones whose blocks have all been
/// freed by other threads. Returns how many.
pub fn trim_abandoned() -> usize {
    let mut n = 0;
    // SAFETY: abandoned zones are only touched under SHARED_LOCK.
    unsafe {
        for cls in 0..NCLASS {
            let mut todo = ZoneList::new();
            {
                let _g = SHARED_LOCK.guard();
                let s = &mut *addr_of_mut!(SHARED);
                let mut z = s.abandoned[cls].head;
                while !z.is_null() {
                    let nx = (*z).next;
                    let _zg = (*z).alock.guard();
                    if (*z).state != RETIRING {
                        collect(z);
                        if (*z).used == 0 {
                            (*z).state = RETIRING;
                            s.abandoned[cls].unlink(z);
                            todo.push_back(z);
                        }
                    }
                    z = nx;
                }
            }
            loop {
                let z = todo.pop_front();
                if z.is_null() {
                    break;
                }
                retire(z);
                n += 1;
            }
        }
    }
    n
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
