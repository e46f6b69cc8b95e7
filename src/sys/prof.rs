//! The sampling heap profiler (`MEMALLOC_PROF=1`): which code holds the
//! memory.
//!
//! **Sampling.** Each thread counts the bytes it allocates down from an
//! interval drawn from an exponential distribution of mean
//! `MEMALLOC_PROF_RATE` (default 512 KiB); the allocation that crosses zero
//! is sampled and a new interval drawn. A block of `n` bytes is thus sampled
//! with probability `1 - exp(-n / rate)` whatever the sizes around it, and a
//! sample weighs `n / (1 - exp(-n / rate))` bytes: the estimates are
//! unbiased (jemalloc's and tcmalloc's scheme).
//!
//! **Where the counting happens, and what it costs.** Small requests are
//! counted per size class by the thread cache's fast path, with the
//! counters it keeps anyway (`cache::prof_tick`): each class of each thread
//! samples its blocks with probability `1 - exp(-size / rate)` (`size` its
//! block size), i.e. a geometric number of blocks between two samples
//! (`draw_blocks`), and the counters are set so that they fire on the
//! allocation to sample; a sample of `n` requested bytes weighs
//! `n / (1 - exp(-size / rate))`, unbiased for the bytes requested. The
//! fast path only tests its counters after the add it made anyway: one
//! instruction, profiling or not (the small pair: 78.0 instructions off,
//! 78.2 on, against 77.0 before the test). Medium, aligned and large
//! requests are counted here (`count`, `counted`) by `export` after the
//! block is made. A medium malloc served by the thread's medium cache, the
//! common case, tests the modes once after loading its list's head, as it
//! does off (`mcache::pop`), and, profiling, counts inline on the cache's
//! own countdown (`count_in`: one subtraction from the cache's line and a
//! branch on its flags) and tail-calls the sample when one is due
//! (`counted_due_in`, which then walks the stack from its own frame: one
//! frame of the allocator's, not six). Off, that costs nothing on the
//! medium cache's path (the 8 KiB pair: 123.0 instructions, as before the
//! profiler) and one load of `ACTIVE` on the slower paths.
//!
//! **Sampled blocks** are always heap chunks or own mappings, never zone
//! blocks (a sampled small request is served by the thread's medium cache
//! or the TLSF heap), and each is marked in its own header (`SAMPLED`, a
//! bit of the head word no size uses, set by the export layer's `MARK`
//! hook once the sample is filed, by a compare-and-swap with no lock: the
//! heap writes an in-use chunk's head word too, and does so by a
//! compare-and-swap while profiling, `chunk::set_flags`): the fast path of
//! free tests the head word's flags and the chunk's size anyway, and the
//! bit fails that test
//! at no cost of its own, so the frees of blocks not sampled (14 in 15 of
//! `bench/mthreads`'s) run exactly as when not profiling, and only a
//! marked block's free drops its sample (`freed_here`, a lookup in its
//! shard's table under the shard's lock). (Before, a counting filter in
//! `.bss` answered "surely not sampled" on every free while profiling:
//! about 9 instructions a free, and an atomic add and subtract a sample.)
//!
//! **What a sample keeps.** Its call stack (up to `MAX_FRAMES` return
//! addresses, the allocator's own frames dropped), deduplicated in `STACKS`
//! (written once, shared by all threads, looked up without a lock); and,
//! while its block lives, an entry (address, weight, stack) in the live
//! table of its thread's *shard*, where the shard also keeps each stack's
//! figures (bytes allocated, live, live at the peak). All of it lives in
//! memory mapped here (`os::map`), never in the heap.
//!
//! **Shards: no lock shared on the fast path.** A thread files its samples
//! in a shard of its own (`my_shard`: the one of its group of memos, so
//! one per thread while at most 64 threads sample at once), under that
//! shard's lock: threads on different processors take different locks and
//! write different lines. A sampled block's free looks in its own thread's
//! shard first (the common case: the thread that made a block frees it),
//! then in the other shards holding samples (`freed_elsewhere`: a block
//! freed by another thread, or after the thread that sampled it exited; a
//! shard outlives its threads). Reports take every shard's lock and sum
//! the shards' figures. (One lock for all, before: with two threads on two
//! processors, `bench/mthreads 2` counted 233,719 contended acquisitions
//! for 254,873 samples, and ran 4-5 times the CPU time of no profiling.)
//!
//! **The peak.** The live total of all shards is one atomic counter
//! (`Totals::live`: an add a sample, a subtraction a free, the only line
//! the threads share). A *peak is recorded* when it passes the latest
//! recorded one by more than `1 / 2^PEAK_SHIFT` (1/256) of it (`new_peak`,
//! `Totals::next`): the peak's epoch moves on, and every stack's peak bytes
//! are its live bytes at that moment, kept lazily: a stack whose live bytes
//! are about to change keeps them first if they have not changed since that
//! peak (`touch`; `peak_of` reads them), one test per change and no copy.
//! So the peak report shows the samples live when the live total was within
//! 1/256 of its maximum (at most that fraction of the bytes can have come
//! or gone since the true maximum), and a peak costs a write to the epoch's
//! line (read by every change) at most once per 1/256 of growth, not once
//! per sample while a program grows. Across threads the moment is exact up
//! to the samples being filed or dropped at that instant by other threads
//! (a stack's figures change before the total does: at most one sample per
//! thread is on either side).
//!
//! **Unwinding neither allocates nor deadlocks.** Stacks are unwound from
//! the DWARF call-frame information (`.eh_frame`), so programs without
//! frame pointers unwind: each return address's CFI row is found once, with
//! libgcc's `_Unwind_Find_FDE` and the interpreter of `prof/unwind.rs`, and
//! kept in a table, so a sample costs a few loads per frame (and a sample
//! whose stack slots hold what an earlier walk from the same place read,
//! the common case in a loop, replays that walk: `prof/memo.rs`); what
//! the interpreter does not handle falls back to glibc's `backtrace()`
//! (libgcc's `_Unwind_Backtrace`, 16,000 instructions a sample). libgcc's
//! first use dlopens libgcc_s and allocates: `prime` makes that first call
//! from the constructor, before sampling is enabled (`READY`) and while no
//! allocator lock is held; after it, libgcc finds each FDE through
//! `_dl_find_object` or `dl_iterate_phdr` and the object's
//! `PT_GNU_EH_FRAME` index, with no allocation. A per-thread `busy`
//! flag stops a sample from being taken while this thread is already taking
//! one (should anything in the unwinder allocate, that allocation is served
//! but not sampled). We never unwind while holding an allocator lock: a
//! sample is recorded after its block is made and every lock released, so
//! `dl_iterate_phdr`'s loader lock (recursive) is never taken under ours,
//! and a thread inside `dlopen` that allocates only takes it again (the
//! unwinder's own lock is never held across a call into the loader).
//! dlopen'd libraries unwind like any other; the table of CFI rows is
//! emptied once an object was unloaded (checked by a walk before it uses a
//! row of an object that may be unloaded: "Unloaded objects" in `unwind`).
//!
//! **Reports**, in the collapsed-stack format (`frame;frame;frame bytes`,
//! outermost frame first): at exit `PREFIX.PID.leak` (live), `.total`
//! (allocated) and `.peak`; on demand `memalloc_prof_dump(fd)` (live). A
//! frame reads `function [object+0xoffset]`: the name from `dladdr` when the
//! object exports one, and the offset that `scripts/memprof` turns into
//! `function (file:line)` with addr2line. `PREFIX` is `MEMALLOC_PROF_OUT`
//! (default `memalloc-prof`). A fork child starts a profile of its own
//! (`after_fork_child`) and writes its own files at its exit.
//!
//! A heap block that realloc resizes in place counts as freed and allocated
//! again at its new size; one that moves, likewise (malloc + free).
//! Known limit: allocations before the constructor are not sampled.
//!
//! **Files**: this one holds the shared statics and types (the stacks, the
//! shards and their tables, the totals, a thread's state); the code is in
//! `prof/`: `settings` (configuration, priming), `sampling` (counting,
//! draws, weights, a sample's recording), `live` (the shards' live tables,
//! the stacks' index, the peak, frees), `unwind` (the CFI rows), `memo`
//! (the walks' memo and the walk), `fork`, `report` and `math` (`exp_neg`).

use crate::lock::{Lock, SpinLock};
use core::cell::UnsafeCell;
use core::fmt::Write;
use core::mem::MaybeUninit;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[path = "prof/fork.rs"]
mod fork;
#[path = "prof/live.rs"]
mod live;
#[path = "prof/math.rs"]
mod math;
#[path = "prof/memo.rs"]
mod memo;
#[path = "prof/report.rs"]
mod report;
#[path = "prof/sampling.rs"]
mod sampling;
#[path = "prof/settings.rs"]
mod settings;
#[path = "prof/unwind.rs"]
mod unwind;
pub use self::fork::{after_fork_child, is_locked, lock_all, unlock_all};
pub use self::live::freed_here;
use self::live::*;
use self::math::*;
use self::memo::*;
pub use self::report::{dump, exit_report};
pub use self::sampling::{
    can_sample, count, count_in, counted, draw_blocks, record, record_as, take,
};
use self::settings::*;
pub use self::settings::{active, configure, prime, set_mark};
use self::unwind::*;

/// Frames kept per stack.
pub const MAX_FRAMES: usize = 64;
/// Frames unwound: the kept ones plus the allocator's own.
const RAW_FRAMES: usize = MAX_FRAMES + 16;
/// Distinct stacks kept; samples of further stacks are counted as dropped.
const STACK_CAP: usize = 1 << 14;
/// Buckets of the stack index (twice STACK_CAP: at most half full).
const INDEX_CAP: usize = STACK_CAP * 2;
/// Live samples a shard keeps at once (at most half of SAMPLE_SLOTS; a
/// shard maps its tables at its first sample: 8.5 MiB of address space,
/// touched as used).
const SAMPLE_CAP: usize = 1 << 16;
const SAMPLE_SLOTS: usize = SAMPLE_CAP * 2;
/// Slots of the live samples' table at first; it doubles whenever it
/// would be more than half full, up to `SAMPLE_SLOTS`. (At its full size
/// from the start, 3 MiB, a sample's slot was a cache miss at its filing
/// and often at its free: 85% of the filing's time in `perf` on
/// `bench/mthreads 1`, whose 256 live blocks hold about 20 samples.)
const SAMPLE_SLOTS_MIN: usize = 256;

/// Profiling asked for (from the environment): the caches route small
/// requests through the counting path.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The unwinder is primed and the tables mapped: samples may be taken.
static READY: AtomicBool = AtomicBool::new(false);
static RATE: AtomicUsize = AtomicUsize::new(512 << 10);
/// `1 / RATE`, an f64's bits (`weight_by`).
static INV_RATE: AtomicU64 = AtomicU64::new(0x3ec0_0000_0000_0000);
const _: () = assert!(0x3ec0_0000_0000_0000 == (1.0f64 / (512 << 10) as f64).to_bits());
/// `2^64 / (12 RATE)`, rounded down (`weight_small`).
static INV12_RATE: AtomicU64 = AtomicU64::new(inv12(512 << 10));
/// `2^64 / (12 rate)`, rounded down, for a rate of at least 1.
const fn inv12(rate: usize) -> u64 {
    (u64::MAX / 12) / rate as u64
}
static OUT: AtomicPtr<u8> = AtomicPtr::new(null_mut());
/// The allocator's own code: frames in it are dropped.
static SELF_START: AtomicUsize = AtomicUsize::new(0);
static SELF_END: AtomicUsize = AtomicUsize::new(0);
/// Objects never unloaded, as [start, end) address ranges (0, 0: none):
/// the rows of the unwinder's table for their code never go stale (see
/// "Unloaded objects", `unwind`).
static LASTING: [[AtomicUsize; 2]; 4] = [const { [const { AtomicUsize::new(0) }; 2] }; 4];
/// Marks a sampled block in its header (the export layer's, set once by
/// `set_mark`; 0: none, as in the unit tests, whose addresses are no
/// blocks): see "Sampled blocks".
static MARK: AtomicUsize = AtomicUsize::new(0);

/// A distinct call stack: written once (`find_stack`), then only read;
/// shared by every shard.
#[repr(C, align(64))]
struct Stack {
    hash: u64,
    depth: usize,
    frames: [usize; MAX_FRAMES],
}

/// A stack's figures in one shard (`Part::figs`, indexed as the stacks):
/// the bytes the shard's samples of that stack allocated, hold, and held at
/// the latest peak. A report sums them over the shards.
#[repr(C)]
#[derive(Clone, Copy)]
struct Fig {
    alloc_bytes: u64,
    live_bytes: u64,
    /// Live bytes at the latest peak, if `peak_seen` is the peak's epoch
    /// (`Totals::peak`); else they are `live_bytes` (unchanged since that
    /// peak): see `touch`.
    peak_bytes: u64,
    peak_seen: u64,
}

/// A live sample: its block's address (0: empty slot), weight and stack
/// (its index). (32 bytes: a slot never straddles two cache lines.)
#[repr(C, align(32))]
#[derive(Clone, Copy)]
struct Sample {
    addr: usize,
    weight: u64,
    stack: usize,
}

/// One shard's tables, under its lock (`Shard`).
#[repr(C)]
struct Part {
    /// The live samples' table, open addressing with linear probing:
    /// `slots` slots (a power of two, at most `SAMPLE_SLOTS`) of an area of
    /// `SAMPLE_SLOTS`; `spare`, another such area, takes the entries when
    /// the table doubles (`grow`). Address `a`'s first slot is
    /// `slot_of(a, shift)`, `shift` being 64 - log2(slots). Null: not
    /// mapped yet (the shard's first sample maps it, `map_part`).
    samples: *mut Sample,
    /// `STACK_CAP` figures, one per stack.
    figs: *mut Fig,
    slots: usize,
    /// Samples the table takes before it must grow (or be mapped): half its
    /// slots once mapped (at most `SAMPLE_CAP`), 0 before. (One test of
    /// the count in `file`, where the table's null, its load and the cap
    /// were three.)
    room: usize,
    shift: u32,
    spare: *mut Sample,
    alloc_total: u64,
    sample_count: u64,
    dropped: u64,
}

impl Part {
    /// No table mapped, nothing counted.
    const EMPTY: Part = Part {
        samples: null_mut(),
        figs: null_mut(),
        spare: null_mut(),
        slots: SAMPLE_SLOTS_MIN,
        room: 0,
        shift: 64 - SAMPLE_SLOTS_MIN.trailing_zeros(),
        alloc_total: 0,
        sample_count: 0,
        dropped: 0,
    };

    /// Maps the part's tables (false if the system refused).
    fn map(&mut self) -> bool {
        let figs = crate::os::map(STACK_CAP * core::mem::size_of::<Fig>());
        if figs.is_null() {
            return false;
        }
        let samples = crate::os::map(2 * SAMPLE_SLOTS * core::mem::size_of::<Sample>());
        if samples.is_null() {
            // SAFETY: the mapping just made, unused.
            unsafe { crate::os::unmap(figs, STACK_CAP * core::mem::size_of::<Fig>()) };
            return false;
        }
        let samples = samples as *mut Sample;
        *self = Part {
            figs: figs as *mut Fig,
            samples,
            // SAFETY: the second half of the area just mapped.
            spare: unsafe { samples.add(SAMPLE_SLOTS) },
            room: SAMPLE_SLOTS_MIN / 2,
            ..Part::EMPTY
        };
        true
    }
}

/// A shard of the live samples: its lock, at the start of a cache line
/// with its count and its tables' fields (a sample's filing and its
/// block's free touch that line, the sample's slot and its stack's
/// figures). A thread files its samples in its own shard (`my_shard`: one
/// per thread while at most `SHARDS` sample at once), so threads on
/// different processors take different locks and write different lines;
/// a free looks in its own thread's shard first, then in the others
/// (`freed_here`). The lock is released by a plain store (`SpinLock`).
#[repr(C, align(64))]
struct Shard {
    lock: SpinLock,
    /// Live samples in the shard: written under the lock, read without it
    /// by a free that looks for its sample (see `freed_here`).
    nsamples: AtomicUsize,
    part: UnsafeCell<Part>,
}
// SAFETY: `part` is only touched under `lock` (or by the one thread of a
// fork child, `after_fork_child`).
unsafe impl Sync for Shard {}
const _: () = assert!(core::mem::offset_of!(Shard, part) + core::mem::offset_of!(Part, shift) < 64);

impl Shard {
    const fn new() -> Shard {
        Shard {
            lock: SpinLock::new(),
            nsamples: AtomicUsize::new(0),
            part: UnsafeCell::new(Part::EMPTY),
        }
    }
}

/// Shards of the live samples (one per group of memos, `MEMO_SLOTS /
/// MEMO_GROUP`: a thread that owns group `g` files in shard `g`).
const SHARDS: usize = 64;
const _: () = assert!(SHARDS.is_power_of_two() && SHARDS <= 64);
static SHARD: [Shard; SHARDS] = [const { Shard::new() }; SHARDS];
/// The shards whose tables are mapped (bit `k`: shard `k`).
static MAPPED: AtomicU64 = AtomicU64::new(0);
/// Samples dropped because their shard's tables could not be mapped.
static UNMAPPED_DROPS: AtomicU64 = AtomicU64::new(0);

/// The live total and the peak, all shards together (see "The peak").
#[repr(C, align(64))]
struct Totals {
    /// Estimated bytes live: an add a sample, a subtraction a free.
    live: AtomicU64,
    /// The live total from which the next peak is recorded.
    next: AtomicU64,
    /// In a line of its own: read by every change of a stack's live bytes,
    /// written only when a peak is recorded.
    peak: PeakLine,
}

/// The latest recorded peak: its number (`epoch`, counting them) and the
/// live total then.
#[repr(C, align(64))]
struct PeakLine {
    epoch: AtomicU64,
    total: AtomicU64,
}

impl Totals {
    const fn new() -> Totals {
        Totals {
            live: AtomicU64::new(0),
            next: AtomicU64::new(0),
            peak: PeakLine {
                epoch: AtomicU64::new(0),
                total: AtomicU64::new(0),
            },
        }
    }
}
static TOTALS: Totals = Totals::new();
/// A peak is recorded when the live total passes the latest one by more
/// than `1 / 2^PEAK_SHIFT` of it (see "The peak").
const PEAK_SHIFT: u32 = 8;

/// The stacks (`STACK_CAP`, mapped by `prime`), their index (`INDEX_CAP`
/// buckets, a stack's index + 1 each, 0: empty) and how many there are.
/// Looked up without a lock; a stack is added under `STACK_LOCK`.
static STACKS: AtomicPtr<Stack> = AtomicPtr::new(null_mut());
static INDEX: AtomicPtr<AtomicU32> = AtomicPtr::new(null_mut());
static NSTACKS: AtomicUsize = AtomicUsize::new(0);
static STACK_LOCK: SpinLock = SpinLock::new();

// ---- per-thread state --------------------------------------------------------

/// A thread's sampling state, in an initial-exec TLS block (as `tls`'s
/// slot, for the same reasons), zero in a new thread.
#[repr(C)]
struct ThreadState {
    /// Bytes still to allocate before the next sample.
    left: i64,
    /// The random generator's state (`rng_next`); 0 until the thread's
    /// first count.
    rng: u64,
    /// Taking a sample: allocations are not counted.
    busy: u64,
    /// The thread's own group of memos (see `memo`): its
    /// address; 0: none yet; `NO_MEMO`: none, ever (the thread is exiting).
    memo: usize,
    /// The shard the thread files its samples in, + 1 (0: none yet): see
    /// `my_shard`.
    shard: usize,
}

core::arch::global_asm!(
    ".pushsection .tbss.memalloc_prof,\"awT\",@nobits",
    ".p2align 4",
    ".hidden memalloc_prof_tls",
    ".globl memalloc_prof_tls",
    ".type memalloc_prof_tls,@object",
    ".size memalloc_prof_tls,40",
    "memalloc_prof_tls:",
    ".zero 40",
    ".popsection",
);

/// This thread's sampling state.
#[inline(always)]
fn thread_state() -> *mut ThreadState {
    let p: *mut ThreadState;
    // SAFETY: the address of this thread's block: its initial-exec offset
    // plus the thread pointer (%fs:0 holds it on x86-64).
    unsafe {
        core::arch::asm!(
            "movq memalloc_prof_tls@GOTTPOFF(%rip), {p}",
            "addq %fs:0, {p}",
            p = out(reg) p,
            // (`nomem`: the thread pointer never changes, so the address
            // may be computed once for a whole sample, across its stores.)
            options(att_syntax, nostack, nomem, pure)
        );
    }
    p
}
