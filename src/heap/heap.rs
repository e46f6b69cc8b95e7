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
//!   (`maybe_purge`, 250 ms), and, once the pages big blocks are reckoned
//!   to have made resident reach 4 MiB, those of the big free chunks of a
//!   program that writes its big blocks sparsely (`purge_sparse`, taken
//!   out of the index meanwhile: no system call under the lock).
//!
//! Invariant: every region in `regions` is indexed by `tlsf` and
//! `in_use + borrowed == sum of used chunk sizes`. Cost: the TLSF operation plus, rarely,
//! one system call; the lock is a futex mutex (see `lock`).
//!
//! **Files**: this one holds `Heap`, `GlobalHeap` and `HEAP`; the code is in
//! `heap/`: `alloc` (alloc, free, resizing in place), `grow` (the break's
//! and mmap'd regions' growth, the relief), `purge` (purges, the break's
//! tail and free regions given back, trims), `big` (big blocks' sizes, cuts
//! and end watch, the sparse purge), `reserve` (the medium caches' reserves)
//! and `walk` (validation, the heap check and walks, figures).

use crate::chunk::*;
use crate::config;
use crate::lock::Lock;
use crate::os;
use crate::region::{sentinel_region, Region, RegionList, KIND_BRK, KIND_MMAP};
use crate::tlsf::{is_partial, RegionCheck, Tlsf, PARTIAL, PURGED, STAMP_MIN, STAMP_OFF};
use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

#[path = "heap/alloc.rs"]
mod alloc;
#[path = "heap/big.rs"]
mod big;
#[path = "heap/grow.rs"]
mod grow;
#[path = "heap/purge.rs"]
mod purge;
#[path = "heap/reserve.rs"]
mod reserve;
#[path = "heap/walk.rs"]
mod walk;
use self::big::*;
pub use self::big::{big_size, purge_sparse, sparse_after_fork, SPARSE_PURGED};
use self::grow::*;
pub use self::grow::{set_adopt, set_relief};
use self::purge::*;
pub use self::purge::{purge_after, purge_state, PURGE_DUE, PURGE_IDLE, PURGE_ON};
pub use self::reserve::{
    reserve_cut, reserve_cut_quiet, reserve_left, reserve_merge, reserve_room, reserved,
    reserved_settle, RES_KEEP,
};
pub use self::walk::in_use_hint;

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
    /// The reserves (see "Reserves", `reserve`), linked through their `RES_NEXT`
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
