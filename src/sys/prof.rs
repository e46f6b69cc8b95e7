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
//! libgcc's `_Unwind_Find_FDE` and the interpreter below (`walk`), and
//! kept in a table, so a sample costs a few loads per frame (and a sample
//! whose stack slots hold what an earlier walk from the same place read,
//! the common case in a loop, replays that walk: "the walks' memo"); what
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
//! row of an object that may be unloaded: see "Unloaded objects" below).
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

use crate::lock::{Lock, SpinLock};
use core::cell::UnsafeCell;
use core::fmt::Write;
use core::mem::MaybeUninit;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

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
static OUT: AtomicPtr<u8> = AtomicPtr::new(null_mut());
/// The allocator's own code: frames in it are dropped.
static SELF_START: AtomicUsize = AtomicUsize::new(0);
static SELF_END: AtomicUsize = AtomicUsize::new(0);
/// Objects never unloaded, as [start, end) address ranges (0, 0: none):
/// the rows of the unwinder's table for their code never go stale (see
/// "Unloaded objects").
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
    /// The thread's own group of memos (see "the walks' memo"): its
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
            options(att_syntax, nostack, readonly, pure)
        );
    }
    p
}

// ---- settings ------------------------------------------------------------------

/// From `config`: MEMALLOC_PROF, MEMALLOC_PROF_RATE, MEMALLOC_PROF_OUT.
pub fn configure(on: bool, rate: usize, out: *const u8) {
    // (At most 2^56: a drawn interval, under 37 times the rate, then fits
    // an i64: `draw`'s conversion is one instruction.)
    let rate = rate.clamp(1, 1 << 56);
    RATE.store(rate, Ordering::Relaxed);
    INV_RATE.store((1.0 / rate as i64 as f64).to_bits(), Ordering::Relaxed);
    OUT.store(out as *mut u8, Ordering::Relaxed);
    ACTIVE.store(on, Ordering::Relaxed);
    crate::gate::set(crate::gate::PROF, on);
}

/// From the constructor, before `prime`: how a sampled block is marked in
/// its header (`mark(p)` for the block at user address `p`), so that its
/// free is seen (see "Sampled blocks").
pub fn set_mark(mark: unsafe fn(*mut u8)) {
    MARK.store(mark as usize, Ordering::Relaxed);
}

/// Is profiling on? (One load: the test on the slower paths.)
#[inline(always)]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// From the constructor, with no allocator lock held: maps the tables,
/// finds the allocator's own code and makes the unwinder's first call (which
/// dlopens libgcc_s and allocates), then lets samples be taken.
pub fn prime() {
    if !active() || READY.load(Ordering::Relaxed) {
        return;
    }
    let stacks = crate::os::map(STACK_CAP * core::mem::size_of::<Stack>());
    let index = crate::os::map(INDEX_CAP * 4);
    if stacks.is_null() || index.is_null() {
        // (ACTIVE stays: the caches route through the counting path, which
        // takes no sample while READY is false.)
        crate::report::warn(format_args!(
            "MEMALLOC_PROF: cannot map the tables, no profile"
        ));
        return;
    }
    {
        // (Once: the unit tests' threads may prime at the same time.)
        let _g = STACK_LOCK.guard();
        if STACKS.load(Ordering::Relaxed).is_null() {
            INDEX.store(index as *mut AtomicU32, Ordering::Relaxed);
            STACKS.store(stacks as *mut Stack, Ordering::Release);
        } else {
            // SAFETY: the mappings just made, unused.
            unsafe {
                crate::os::unmap(stacks, STACK_CAP * core::mem::size_of::<Stack>());
                crate::os::unmap(index, INDEX_CAP * 4);
            }
        }
    }
    find_self();
    let mut buf = [null_mut::<libc::c_void>(); 4];
    // SAFETY: buf holds 4 entries.
    unsafe { backtrace(buf.as_mut_ptr(), buf.len() as i32) };
    prime_unwinder();
    READY.store(true, Ordering::Release);
}

extern "C" {
    fn backtrace(buf: *mut *mut libc::c_void, size: i32) -> i32;
    fn dladdr1(
        addr: *const libc::c_void,
        info: *mut libc::Dl_info,
        extra: *mut *mut libc::c_void,
        flags: i32,
    ) -> i32;
}
/// dladdr1's flag: `extra` receives the object's `struct link_map *`.
const RTLD_DL_LINKMAP: i32 = 2;

/// The load bias (`link_map::l_addr`) of the object holding `addr`, and the
/// `Dl_info` dladdr fills; None outside every object.
fn object_of(addr: usize) -> Option<(usize, libc::Dl_info)> {
    // SAFETY: dladdr1 writes the info and a link_map pointer; l_addr is the
    // first field of glibc's struct link_map.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        let mut lm: *mut libc::c_void = null_mut();
        if dladdr1(addr as *const _, &mut info, &mut lm, RTLD_DL_LINKMAP) == 0 || lm.is_null() {
            return None;
        }
        Some((*(lm as *const usize), info))
    }
}

/// Records the range of the allocator's executable segment, and the
/// objects that are never unloaded (`LASTING`).
fn find_self() {
    let here = find_self as fn() as usize;
    // The program (its entry point), the C library, the loader and this
    // library: loaded at start-up, never unloaded (glibc's dlclose unloads
    // only objects that dlopen loaded, `lt_loaded` in `_dl_close_worker`).
    // SAFETY: getauxval has no preconditions.
    let (entry, base) = unsafe {
        (
            libc::getauxval(libc::AT_ENTRY),
            libc::getauxval(libc::AT_BASE),
        )
    };
    let libc_fn = libc::dl_iterate_phdr as *const () as usize;
    for (i, &a) in [here, entry as usize, libc_fn, base as usize]
        .iter()
        .enumerate()
    {
        if let Some((s, e)) = object_range(a) {
            LASTING[i][0].store(s, Ordering::Relaxed);
            LASTING[i][1].store(e, Ordering::Relaxed);
        }
    }
    let Some((bias, info)) = object_of(here) else {
        return;
    };
    // SAFETY: dli_fbase is the object's ELF header, mapped with its program
    // headers (the first PT_LOAD segment starts at offset 0).
    unsafe {
        let eh = info.dli_fbase as *const libc::Elf64_Ehdr;
        let ph = (eh as usize + (*eh).e_phoff as usize) as *const libc::Elf64_Phdr;
        for i in 0..(*eh).e_phnum as usize {
            let p = &*ph.add(i);
            let (s, e) = (
                bias + p.p_vaddr as usize,
                bias + (p.p_vaddr + p.p_memsz) as usize,
            );
            if p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0 && s <= here && here < e {
                SELF_START.store(s, Ordering::Relaxed);
                SELF_END.store(e, Ordering::Relaxed);
            }
        }
    }
}

/// The range of addresses the loaded segments of the object holding `a`
/// span (`a` itself when it is the object's ELF header).
fn object_range(a: usize) -> Option<(usize, usize)> {
    if a == 0 {
        return None;
    }
    let (bias, info) = object_of(a)?;
    let (mut lo, mut hi) = (usize::MAX, 0);
    // SAFETY: dli_fbase is the object's ELF header, mapped with its program
    // headers (the first PT_LOAD segment starts at offset 0).
    unsafe {
        let eh = info.dli_fbase as *const libc::Elf64_Ehdr;
        let ph = (eh as usize + (*eh).e_phoff as usize) as *const libc::Elf64_Phdr;
        for i in 0..(*eh).e_phnum as usize {
            let p = &*ph.add(i);
            if p.p_type == libc::PT_LOAD {
                lo = lo.min(bias + p.p_vaddr as usize);
                hi = hi.max(bias + (p.p_vaddr + p.p_memsz) as usize);
            }
        }
    }
    (lo < hi).then_some((lo, hi))
}

// ---- counting and sampling -------------------------------------------------------

/// The thread's next 64 random bits: a 64-bit linear congruential
/// generator (Knuth's MMIX constants; full period), two instructions where
/// xorshift64* took ten. Its low bits are weak (bit `k` repeats with
/// period `2^(k + 1)`), but a draw reads the top ones (`exp_q56`: the
/// leading zeros and the 24 bits below the leading one, which reach below
/// bit 24 only when there are 16 leading zeros or more: one draw in 65,536).
#[inline(always)]
fn rng_next(t: &mut ThreadState) -> u64 {
    if t.rng == 0 {
        seed(t);
    }
    let x = t
        .rng
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    t.rng = x;
    x
}

/// The thread's first random state: its state's address, the clock and a
/// counter, mixed (splitmix64).
#[cold]
#[inline(never)]
fn seed(t: &mut ThreadState) {
    static SEEDS: AtomicUsize = AtomicUsize::new(0x9e37_79b9);
    let mut z = (t as *mut ThreadState as u64)
        ^ (crate::os::now_ns() as u64).rotate_left(32)
        ^ SEEDS.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    t.rng = (z ^ (z >> 31)) | 1;
}

/// An interval drawn from the exponential distribution of mean `RATE`, at
/// least 1. (All in integers: `exp_q56` and one 128-bit product.)
fn draw(t: &mut ThreadState) -> i64 {
    interval(rng_next(t), RATE.load(Ordering::Relaxed))
}

/// The interval of mean `rate` (at most 2^56, `configure`) that random bits
/// `r` draw: below 2^62 (`exp_q56` is under 45 * 2^56), at least 1.
#[inline(always)]
fn interval(r: u64, rate: usize) -> i64 {
    (((exp_q56(r) as u128 * rate as u128) >> 56) as i64).max(1)
}

/// Bits of the mantissa that pick a row of `LN1P_Q56`.
const LN1P_BITS: u32 = 8;
/// Bits below them that interpolate between two rows (two rows differ by
/// less than `2^(56 - 8)`: the product fits 64 bits).
const LN1P_FRAC: u32 = 16;
const LN1P_ROWS: usize = 1 << LN1P_BITS;

/// `ln(1 + i / 256) * 2^56` for `i` in 0..=256 (rounded), from
/// `2 atanh(i / (512 + i))`'s series (|z| < 1/3, 40 terms: exact to the
/// last bit of an f64), at compile time.
const LN1P_Q56: [u64; LN1P_ROWS + 1] = {
    let mut t = [0u64; LN1P_ROWS + 1];
    let mut i = 0;
    while i <= LN1P_ROWS {
        let z = i as f64 / (2 * LN1P_ROWS + i) as f64;
        let mut p = 0.0;
        let mut k = 40;
        while k > 0 {
            k -= 1;
            p = p * z * z + 1.0 / (2 * k + 1) as f64;
        }
        t[i] = (2.0 * z * p * (1u64 << 56) as f64 + 0.5) as u64;
        i += 1;
    }
    t
};
/// `ln 2 * 2^56`, rounded.
const LN2_Q56: u64 = 0x00b1_7217_f7d1_cf7a;
const _: () = assert!(LN1P_Q56[LN1P_ROWS].abs_diff(LN2_Q56) <= 64);

/// A draw of the exponential distribution of mean 1, times 2^56, from 64
/// random bits `r`: `-ln u` for `u = r / 2^64` (`r` 0 read as 1). With `z`
/// the leading zeros of `r` and `f` the bits below its leading one (a
/// fraction in [0, 1)), `u = 2^-(z + 1) (1 + f)`, so `-ln u = (z + 1) ln 2 -
/// ln(1 + f)`: the first term is exact (`z` is geometric, as the bits are
/// fair), the second `LN1P_Q56`'s row for the top 8 bits of `f`, linearly
/// interpolated to the next row by its next 16. Linear interpolation of a
/// concave curve errs by at most `2^-16 / 8` (1.9e-6), always upward, and
/// the bits of `f` dropped by at most `2^-24`: the mean is 1 + 1e-6 or so,
/// far below what any profile can tell (the test `exponential_draws`
/// checks the mean and the distribution). About 20 instructions and no
/// floating point, where `-ln u` in floating point (a table and a degree-5
/// series) and its conversions took about 45.
#[inline(always)]
fn exp_q56(r: u64) -> u64 {
    let r = r | 1;
    let z = r.leading_zeros();
    // The bits below the leading one, at the top (two shifts: `z + 1` may
    // be 64).
    let f = (r << z) << 1;
    let i = (f >> (64 - LN1P_BITS)) as usize;
    let frac = (f << LN1P_BITS) >> (64 - LN1P_FRAC);
    // SAFETY: `i < LN1P_ROWS`, so `i + 1 <= LN1P_ROWS`.
    let (a, b) = unsafe { (*LN1P_Q56.get_unchecked(i), *LN1P_Q56.get_unchecked(i + 1)) };
    let ln1p = a + (((b - a) * frac) >> LN1P_FRAC);
    (z as u64 + 1) * LN2_Q56 - ln1p
}

/// Blocks of `size` bytes to allocate up to and including the next one
/// sampled, when each is sampled with probability `1 - exp(-size / rate)`,
/// independently: geometric, drawn as `floor(X / size) + 1` with `X` an
/// exponential interval (the block during which `X` bytes are crossed).
/// At least 1, at most 2^40 + 1. (The small classes' countdowns: see
/// `cache::prof_tick`.)
pub fn draw_blocks(size: usize) -> u64 {
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    blocks(rng_next(t), RATE.load(Ordering::Relaxed), size)
}

/// `draw_blocks` from random bits `r` at rate `rate`.
#[inline(always)]
fn blocks(r: u64, rate: usize, size: usize) -> u64 {
    let x = (exp_q56(r) as u128 * rate as u128) >> 56;
    (x as u64 / size.max(1) as u64).min(1 << 40) + 1
}

/// May an allocation that fell due be sampled now (the tables are ready and
/// this thread is not taking a sample already)?
#[inline]
pub fn can_sample() -> bool {
    // SAFETY: this thread's own state.
    READY.load(Ordering::Relaxed) && unsafe { (*thread_state()).busy == 0 }
}

/// Counts `n` bytes allocated by this thread: is this allocation sampled?
/// (A leaf while no sample is due: a load, a subtraction and a store.)
#[inline(always)]
pub fn take(n: usize) -> bool {
    if !READY.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    let left = t.left;
    t.left = left.wrapping_sub(n as i64);
    if left > n as i64 {
        return false;
    }
    take_due(t)
}

/// `take` when the count reached zero: the thread's first count (no
/// interval drawn yet: the count starts from a new one), or a sample, unless
/// this thread is taking one already or the tables are not ready (then only
/// a new interval).
#[cold]
#[inline(never)]
fn take_due(t: &mut ThreadState) -> bool {
    if t.rng == 0 {
        t.left += draw(t);
        if t.left > 0 {
            return false;
        }
    }
    t.left = draw(t);
    t.busy == 0 && READY.load(Ordering::Relaxed)
}

/// The bytes a sample of an `n`-byte block stands for: `n / P(sampled)`.
#[cfg(test)]
fn weight(n: usize) -> u64 {
    weight_at(n, n, RATE.load(Ordering::Relaxed))
}

/// The bytes a sample of an `n`-byte block counted as `counted` bytes
/// stands for at rate `rate`: `n / (1 - exp(-counted / rate))`.
#[cfg(test)]
fn weight_at(n: usize, counted: usize, rate: usize) -> u64 {
    // (Sizes and rates are below 2^63: through i64, as in `exponential`.)
    let rate = rate as i64 as f64;
    weight_by(n, counted, rate, 1.0 / rate)
}

/// `weight_at` at rate `rate` (as a float), its inverse `inv` given: no
/// division on the common path (its latency was most of `weight_at`'s
/// time, 15% of what profiling cost `bench/mthreads 1`, under `perf`).
#[inline(always)]
fn weight_by(n: usize, counted: usize, rate: f64, inv: f64) -> u64 {
    let c = counted as i64 as f64;
    let x = c * inv;
    if n == counted && x < 1.0 / 16.0 {
        // Most medium samples: `n / p` is `rate * x / p`, and
        // `x / (1 - exp(-x))`'s series (Bernoulli's numbers) to x^2,
        // `rate + n / 2 + n x / 12`: the next term, `rate x^4 / 720`, is
        // under 2.1e-8 of the sum (blocks under 32 KiB at the default
        // rate). No division, and a short chain of dependent arithmetic:
        // the sample's next atomic operation waits for it (`weight_at` was
        // 3% of `bench/mthreads 1`'s time under `perf`, most of it its
        // divisions' latency, then its series' to x^6).
        // SAFETY: finite, positive and below 2^63 (`rate` is at most 2^56,
        // `c` below a sixteenth of it). (`as` would test for NaN and
        // saturate: five instructions more.)
        return unsafe { (rate + c * (0.5 + x * (1.0 / 12.0)) + 0.5).to_int_unchecked::<i64>() }
            as u64;
    }
    if n == counted && x < 0.25 {
        // To x^6 (the next term is under 2e-11 of the sum).
        let x2 = x * x;
        let g = 1.0 + x * 0.5 + x2 * (1.0 / 12.0 - x2 * (1.0 / 720.0 - x2 * (1.0 / 30240.0)));
        return (rate * g + 0.5) as i64 as u64;
    }
    let p = sampled_p(x);
    if p <= 0.0 {
        return rate as i64 as u64;
    }
    (n as i64 as f64 / p + 0.5) as i64 as u64
}

/// `1 - exp(-x)` for `x >= 0`, the probability that a block counted as
/// `x` times the rate is sampled: below 1/4 (blocks under 128 KiB at the
/// default rate), its series to x^7 (the next term is under 2e-9 of the
/// sum), 15 instructions where `exp_neg` takes 60; above, `exp_neg`.
#[inline]
fn sampled_p(x: f64) -> f64 {
    if x < 0.25 {
        const C: [f64; 7] = [
            1.0,
            1.0 / 2.0,
            1.0 / 6.0,
            1.0 / 24.0,
            1.0 / 120.0,
            1.0 / 720.0,
            1.0 / 5040.0,
        ];
        x * (C[0] - x * (C[1] - x * (C[2] - x * (C[3] - x * (C[4] - x * (C[5] - x * C[6]))))))
    } else {
        1.0 - exp_neg(x)
    }
}

/// Counts block `p` (not null) of `n` bytes, made on a path that counts
/// itself (medium, aligned, large), and samples it if due. Returns `p`.
/// Inlined into the medium malloc's profiling branch (`mcache::pop`): the
/// thread's count (its address, a subtraction and a store) and a test; the
/// sample is a tail call, so that the caller keeps no frame. (Counts made
/// before `READY` take no sample: `take_due` tests it.)
#[inline(always)]
pub fn count(p: *mut u8, n: usize) -> *mut u8 {
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    // (As in `count_in`: the subtraction's own flags.)
    let left = t.left;
    t.left = left.wrapping_sub(n as i64);
    if left <= n as i64 {
        return counted_due(p, n);
    }
    p
}

/// `count` for a block `p` that may be null (the allocation failed).
#[inline(never)]
pub fn counted(p: *mut u8, n: usize) -> *mut u8 {
    if p.is_null() {
        return p;
    }
    count(p, n)
}

/// `count` when the count reached zero (see `take_due`): the sample, taken
/// here (`record_inline`, the walk inlined too), with no frame of the
/// allocator's between this one and the caller's when the caller
/// tail-called it (`count`): the walk then starts in this frame, the only
/// one of ours it unwinds.
#[cold]
#[inline(never)]
fn counted_due(p: *mut u8, n: usize) -> *mut u8 {
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    // (`take_due`, with the new interval drawn after the sample: see
    // `counted_due_in`.)
    if t.rng == 0 {
        t.left += draw(t);
        if t.left > 0 {
            return opaque(p);
        }
    }
    if t.busy == 0 && READY.load(Ordering::Relaxed) {
        record_inline(p, n, n);
    }
    t.left = draw(t);
    opaque(p)
}

/// `p`, through an asm comment: were LLVM to see that a sample's function
/// returns its argument, the caller would keep `p` in a register of its
/// own across a call instead of a tail call.
#[inline(always)]
fn opaque(p: *mut u8) -> *mut u8 {
    let q: usize;
    // SAFETY: an asm comment: `q` is `p`'s address.
    unsafe {
        core::arch::asm!(
            "/* {0} */",
            inlateout(reg) p as usize => q,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
    q as *mut u8
}

/// `count` for a block `p` of `n` bytes popped from the thread's medium
/// cache, on the cache's own countdown `left` (`mcache::MCache::prof_left`:
/// a subtraction from the line the pop has loaded, and a test). Each
/// countdown runs over its own bytes from an exponential interval, so a
/// block of `n` bytes is sampled with probability `1 - exp(-n / rate)`
/// whichever countdown counts it (the interval is memoryless), as the
/// small classes' countdowns are too.
#[inline(always)]
pub fn count_in(p: *mut u8, n: usize, left: &mut i64) -> *mut u8 {
    // (`l <= n` rather than `l - n <= 0`: the subtraction's own flags.)
    let l = *left;
    *left = l.wrapping_sub(n as i64);
    if l <= n as i64 {
        return counted_due_in(p, n, left);
    }
    p
}

/// `count_in` when the countdown reached zero: a new interval, and the
/// sample unless the countdown was not armed yet (it was 0: an interval
/// drawn is at least 1, and one used up is drawn again at once) or this
/// thread is taking a sample already or the tables are not ready. A tail
/// call, as `counted_due`.
#[cold]
#[inline(never)]
fn counted_due_in(p: *mut u8, n: usize, left: &mut i64) -> *mut u8 {
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    let armed = *left + n as i64 != 0;
    if armed && t.busy == 0 && READY.load(Ordering::Relaxed) {
        record_inline(p, n, n);
    }
    // (The new interval after the sample, not before: its chain of
    // dependent arithmetic, 60-odd cycles, then ends its store while this
    // thread goes on; before the sample, the first atomic operation of the
    // sample's waited for that store. `draw` was 30% of what profiling cost
    // `bench/mthreads 1`, under `perf`. An allocation made meanwhile, by the
    // unwinder, finds this countdown still due and draws: overwritten here.)
    *left = draw(t);
    opaque(p)
}

/// Records a sample for block `p` of `n` bytes: unwinds (no lock held),
/// then files the stack and the sample.
#[cold]
#[inline(never)]
pub fn record(p: *mut u8, n: usize) {
    record_inline(p, n, n)
}

/// `record` for a block of `n` bytes that was counted as `counted` bytes
/// (a small request counts its class's size: see `cache::prof_tick`).
#[cold]
#[inline(never)]
pub fn record_as(p: *mut u8, n: usize, counted: usize) {
    record_inline(p, n, counted)
}

/// `record_as`'s work, inlined into its callers (one frame less to unwind).
#[inline(always)]
fn record_inline(p: *mut u8, n: usize, counted: usize) {
    let t = thread_state();
    // SAFETY: this thread's own state.
    unsafe { (*t).busy = 1 };
    // Not zeroed (a memset of 640 bytes a sample): only the first `got`
    // entries, which the unwinder or `backtrace` wrote, are read.
    let mut raw = [const { MaybeUninit::<usize>::uninit() }; RAW_FRAMES];
    // (0 frames: a memo replayed its walk and knows its stack, `hint`
    // below; the frames are not copied, nor the allocator's own skipped.)
    let (got, m) = unwind_here(&mut raw, true);
    let got = match got {
        Some(n) => n,
        // SAFETY: raw holds RAW_FRAMES entries.
        None => unsafe {
            backtrace(
                raw.as_mut_ptr() as *mut *mut libc::c_void,
                RAW_FRAMES as i32,
            )
        }
        .clamp(0, RAW_FRAMES as i32) as usize,
    };
    // SAFETY: the first `got` entries were written (above).
    let raw = unsafe { &*(&raw[..got] as *const [MaybeUninit<usize>] as *const [usize]) };
    let mut first = 0;
    if got != 0 {
        let (lo, hi) = (
            SELF_START.load(Ordering::Relaxed),
            SELF_END.load(Ordering::Relaxed),
        );
        while first < got && raw[first] >= lo && raw[first] < hi {
            first += 1;
        }
    }
    let frames = &raw[first..got.min(first + MAX_FRAMES)];
    // The mark first (the block is not yet the program's: no free can see
    // it before its sample is filed), so that the sample's atomic
    // operations come together: each waits for the stores before it to
    // reach the cache, and the filing's may miss it (a table's line).
    let mark = MARK.load(Ordering::Relaxed);
    if mark != 0 {
        // SAFETY: MARK holds `set_mark`'s function; `p` is the block just
        // made, a heap chunk or own mapping (see "Sampled blocks"), not yet
        // returned to the program.
        unsafe { core::mem::transmute::<usize, unsafe fn(*mut u8)>(mark)(p) };
    }
    // A memo that holds these frames (its walk replayed, or just kept)
    // knows their stack, once a sample filed it: the sample then skips the
    // hash and the index's lookup.
    // SAFETY: `m` (if not null) is a memo of this thread's group.
    let kept = !m.is_null() && unsafe { (*m).ip != 0 };
    let hint = if kept { unsafe { (*m).stack } } else { 0 };
    let s = if hint != 0 { hint } else { find_stack(frames) };
    // SAFETY: this thread's own state.
    let sh = &SHARD[unsafe { my_shard(&mut *t) } & (SHARDS - 1)];
    {
        let _g = sh.lock.guard();
        // (The weight under the lock, after its atomic operation, which
        // would otherwise wait for the weight's arithmetic.)
        let w = weight_by(
            n,
            counted,
            RATE.load(Ordering::Relaxed) as i64 as f64,
            f64::from_bits(INV_RATE.load(Ordering::Relaxed)),
        );
        // SAFETY: the shard's part is only touched under its lock.
        unsafe { file(sh, &mut *sh.part.get(), &TOTALS, p as usize, w, s) };
    }
    if kept {
        // SAFETY: as above.
        unsafe { (*m).stack = s };
    }
    // SAFETY: this thread's own state.
    unsafe { (*t).busy = 0 };
}

/// The shard thread `t` files its samples in: its group of memos' (see
/// `memo_claim`), else one taken in turn.
#[inline(always)]
fn my_shard(t: &mut ThreadState) -> usize {
    if t.shard != 0 {
        return t.shard - 1;
    }
    assign_shard(t)
}

/// `my_shard` for a thread that has none yet (no group of memos: the
/// unwinder or the memos are missing, or more than 64 threads sample).
#[cold]
#[inline(never)]
fn assign_shard(t: &mut ThreadState) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let k = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    t.shard = k + 1;
    k
}

fn hash_frames(frames: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &f in frames {
        h = (h ^ f as u64).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h ^ frames.len() as u64
}

/// The first slot of address `a` in a table of `1 << (64 - shift)` slots:
/// the top bits of a multiplicative hash.
#[inline]
fn slot_of(a: usize, shift: u32) -> usize {
    ((a as u64 >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
}

/// Files a sample of weight `w` for block `addr`, of stack `s` (index +
/// 1; 0: none, the stacks are full), in shard `sh` (its lock held, `p`
/// its part). Inlined into the sample when the shard has room (no call, no
/// frame); `file_slow` otherwise.
///
/// # Safety
/// `sh`'s lock is held and `p` is its part; `s` is 0 or a stack's index + 1.
#[inline(always)]
unsafe fn file(sh: &Shard, p: &mut Part, tot: &Totals, addr: usize, w: u64, s: usize) {
    let n = sh.nsamples.load(Ordering::Relaxed);
    if s == 0 || p.samples.is_null() || 2 * (n + 1) > p.slots || n >= SAMPLE_CAP {
        return file_slow(sh, p, tot, addr, w, s);
    }
    p.alloc_total += w;
    p.sample_count += 1;
    (*p.figs.add(s - 1)).alloc_bytes += w;
    file_live(sh, p, tot, addr, w, s - 1);
}

/// `file`, every case: the shard's first sample maps its tables.
///
/// # Safety
/// As `file`.
#[inline(never)]
unsafe fn file_slow(sh: &Shard, p: &mut Part, tot: &Totals, addr: usize, w: u64, s: usize) {
    if p.samples.is_null() {
        let _e = crate::os::ErrnoGuard::new();
        if !p.map() {
            UNMAPPED_DROPS.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let k = (sh as *const Shard).offset_from(SHARD.as_ptr());
        if (0..SHARDS as isize).contains(&k) {
            MAPPED.fetch_or(1 << k, Ordering::Release);
        }
    }
    p.alloc_total += w;
    p.sample_count += 1;
    if s == 0 {
        p.dropped += 1;
        return;
    }
    (*p.figs.add(s - 1)).alloc_bytes += w;
    let n = sh.nsamples.load(Ordering::Relaxed);
    if n >= SAMPLE_CAP {
        p.dropped += 1;
        return;
    }
    if 2 * (n + 1) > p.slots {
        grow(p);
    }
    file_live(sh, p, tot, addr, w, s - 1);
}

/// Files live sample `addr` of weight `w` and stack `s` in shard `sh`, whose
/// table has room for it; adds `w` to the live total.
///
/// # Safety
/// As `file`; `p`'s tables are mapped, `s` is a stack's index,
/// `2 * (nsamples + 1) <= p.slots`.
#[inline(always)]
unsafe fn file_live(sh: &Shard, p: &mut Part, tot: &Totals, addr: usize, w: u64, s: usize) {
    let mask = p.slots - 1;
    let mut i = slot_of(addr, p.shift);
    let mut n = sh.nsamples.load(Ordering::Relaxed);
    loop {
        let e = &mut *p.samples.add(i);
        if e.addr == 0 || e.addr == addr {
            if e.addr == addr {
                // A stale entry (a block freed unseen): replace it.
                (*touch(p, tot, e.stack)).live_bytes -= e.weight;
                tot.live.fetch_sub(e.weight, Ordering::Relaxed);
                n -= 1;
            }
            *e = Sample {
                addr,
                weight: w,
                stack: s,
            };
            break;
        }
        i = (i + 1) & mask;
    }
    sh.nsamples.store(n + 1, Ordering::Relaxed);
    // (The stack's figures before the live total: a peak that this sample
    // records counts it, see "The peak".)
    (*touch(p, tot, s)).live_bytes += w;
    let live = tot.live.fetch_add(w, Ordering::Relaxed) + w;
    if live >= tot.next.load(Ordering::Relaxed) {
        new_peak(tot, live);
    }
}

/// The live total reached `live`, past the threshold of the next peak:
/// records a peak (every stack's peak bytes are now its live bytes:
/// `touch` copies them when a stack next changes, `peak_of` reads them
/// meanwhile), and sets the next threshold `1 / 2^PEAK_SHIFT` above.
#[cold]
#[inline(never)]
fn new_peak(tot: &Totals, live: u64) {
    let mut next = tot.next.load(Ordering::Relaxed);
    while live >= next {
        match tot.next.compare_exchange_weak(
            next,
            live + (live >> PEAK_SHIFT) + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                tot.peak.total.fetch_max(live, Ordering::Relaxed);
                tot.peak.epoch.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(now) => next = now,
        }
    }
}

/// Doubles the live samples' table (under its shard's lock): its entries
/// go to the spare area, which becomes the table. O(slots), once per
/// doubling.
///
/// # Safety
/// `p`'s tables are mapped and held under its shard's lock; `p.slots <
/// SAMPLE_SLOTS` (true while the shard holds fewer than `SAMPLE_CAP`).
unsafe fn grow(p: &mut Part) {
    let (old, slots) = (p.samples, p.slots);
    let (new, shift) = (p.spare, p.shift - 1);
    let mask = 2 * slots - 1;
    core::ptr::write_bytes(new, 0, 2 * slots);
    for k in 0..slots {
        let e = *old.add(k);
        if e.addr != 0 {
            let mut i = slot_of(e.addr, shift);
            while (*new.add(i)).addr != 0 {
                i = (i + 1) & mask;
            }
            *new.add(i) = e;
        }
    }
    p.samples = new;
    p.spare = old;
    p.slots = 2 * slots;
    p.shift = shift;
}

/// Stack `s`'s figures in part `p`, about to have their live bytes changed:
/// if they have not changed since the latest peak, they are its bytes at
/// that peak, kept first. (The peak thus costs one test per change, not a
/// copy of every stack at each new peak.)
///
/// # Safety
/// `p`'s tables are mapped and held under its shard's lock; `s` is a
/// stack's index.
#[inline(always)]
unsafe fn touch(p: &Part, tot: &Totals, s: usize) -> *mut Fig {
    let f = &mut *p.figs.add(s);
    let epoch = tot.peak.epoch.load(Ordering::Relaxed);
    if f.peak_seen != epoch {
        f.peak_bytes = f.live_bytes;
        f.peak_seen = epoch;
    }
    f as *mut Fig
}

/// Figures `f`'s live bytes at the peak of number `epoch`.
fn peak_of(f: &Fig, epoch: u64) -> u64 {
    if f.peak_seen == epoch {
        f.peak_bytes
    } else {
        f.live_bytes
    }
}

/// The index + 1 of the stack of `frames`, added if new; 0 when the table
/// is full. Looked up without a lock (a bucket is written once, with
/// release ordering, after its stack); added under `STACK_LOCK`, which is
/// never held with a shard's lock.
fn find_stack(frames: &[usize]) -> usize {
    let (stacks, index) = (
        STACKS.load(Ordering::Acquire),
        INDEX.load(Ordering::Relaxed),
    );
    if stacks.is_null() {
        return 0;
    }
    let h = hash_frames(frames);
    let mask = INDEX_CAP - 1;
    let mut i = h as usize & mask;
    let mut locked = false;
    loop {
        // SAFETY: `i` is a bucket of the index (mapped by `prime`).
        let e = unsafe { (*index.add(i)).load(Ordering::Acquire) };
        if e == 0 {
            if locked {
                break;
            }
            // (This bucket again, under the lock: another thread may have
            // just filled it.)
            STACK_LOCK.lock();
            locked = true;
            continue;
        }
        // SAFETY: a bucket's stack was written before the bucket.
        let s = unsafe { &*stacks.add(e as usize - 1) };
        if s.hash == h && s.depth == frames.len() && &s.frames[..s.depth] == frames {
            if locked {
                STACK_LOCK.unlock();
            }
            return e as usize;
        }
        i = (i + 1) & mask;
    }
    let k = NSTACKS.load(Ordering::Relaxed);
    if k >= STACK_CAP {
        STACK_LOCK.unlock();
        return 0;
    }
    // SAFETY: stack `k` is not in use yet, written under STACK_LOCK.
    unsafe {
        let s = &mut *stacks.add(k);
        s.hash = h;
        s.depth = frames.len();
        s.frames[..frames.len()].copy_from_slice(frames);
        NSTACKS.store(k + 1, Ordering::Release);
        (*index.add(i)).store(k as u32 + 1, Ordering::Release);
    }
    STACK_LOCK.unlock();
    k + 1
}

/// The block at user address `p`, marked sampled, is being freed (or
/// moved): drops its sample (none, if a table was full when it was taken,
/// or in a fork child for a block its parent sampled). Looked for in this
/// thread's shard first, where its sample is unless another thread took it;
/// then in the other shards that hold samples (`freed_elsewhere`).
#[inline(always)]
pub fn freed_here(p: *mut u8) {
    // SAFETY: this thread's own state.
    let own = unsafe { (*thread_state()).shard };
    if own != 0 {
        // (No test of its count first: its own samples are there, as a
        // rule.)
        let sh = &SHARD[(own - 1) & (SHARDS - 1)];
        let _g = sh.lock.guard();
        // SAFETY: the shard's part is only touched under its lock.
        if unsafe { remove(sh, &mut *sh.part.get(), &TOTALS, p as usize) } {
            return;
        }
    }
    freed_elsewhere(p as usize, own)
}

/// `freed_here` for a sample not in this thread's shard (`own` - 1; 0:
/// none): each other shard with a table and a sample is looked at, under
/// its lock. (A shard whose count of samples reads 0 cannot hold it: the
/// sample was filed before the block reached the program, so before this
/// free, which reads a count at least as recent.)
#[cold]
#[inline(never)]
fn freed_elsewhere(addr: usize, own: usize) {
    let mut m = MAPPED.load(Ordering::Acquire);
    if own != 0 {
        m &= !(1 << (own - 1));
    }
    while m != 0 {
        let k = m.trailing_zeros() as usize;
        m &= m - 1;
        if remove_in(k, addr) {
            return;
        }
    }
}

/// Drops the sample of block `addr` from shard `k`, if it is there.
fn remove_in(k: usize, addr: usize) -> bool {
    let sh = &SHARD[k];
    if sh.nsamples.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let _g = sh.lock.guard();
    // SAFETY: the shard's part is only touched under its lock.
    unsafe { remove(sh, &mut *sh.part.get(), &TOTALS, addr) }
}

/// Drops the sample of block `addr` from shard `sh` (its lock held, `p` its
/// part), if it is there: whether it was.
///
/// # Safety
/// `sh`'s lock is held and `p` is its part.
#[inline(always)]
unsafe fn remove(sh: &Shard, p: &mut Part, tot: &Totals, addr: usize) -> bool {
    if p.samples.is_null() {
        return false;
    }
    let mask = p.slots - 1;
    let mut i = slot_of(addr, p.shift);
    loop {
        let e = *p.samples.add(i);
        if e.addr == 0 {
            return false;
        }
        if e.addr == addr {
            break;
        }
        i = (i + 1) & mask;
    }
    let e = *p.samples.add(i);
    (*touch(p, tot, e.stack)).live_bytes -= e.weight;
    tot.live.fetch_sub(e.weight, Ordering::Relaxed);
    sh.nsamples
        .store(sh.nsamples.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
    // Backward-shift deletion (linear probing keeps no tombstones).
    let mut hole = i;
    let mut j = (i + 1) & mask;
    loop {
        let x = *p.samples.add(j);
        if x.addr == 0 {
            break;
        }
        let home = slot_of(x.addr, p.shift);
        // x may fill the hole unless its home lies in (hole, j].
        if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
            *p.samples.add(hole) = x;
            hole = j;
        }
        j = (j + 1) & mask;
    }
    (*p.samples.add(hole)).addr = 0;
    true
}

// ---- unwinding ---------------------------------------------------------------------
//
// A sample's stack, without libgcc's unwinder on the way: libgcc's
// `_Unwind_Backtrace` finds each frame's FDE and interprets its CFI program
// anew on every call (about 1,700 instructions a frame, 16,000 a sample:
// most of what a sample cost). Here each return address's row of the CFI
// table (where the CFA is, where the return address and %rbp are saved) is
// looked up once, with libgcc's `_Unwind_Find_FDE` and a small interpreter
// of the DWARF call-frame instructions x86-64 compilers emit, and kept in
// `RULES`, so a sample's frames cost a few loads each. Anything the
// interpreter does not handle (signal frames, CFA or register expressions,
// 64-bit DWARF) makes that sample fall back to glibc's `backtrace()`, whose
// stacks this one reproduces (the unit test `unwinds_as_backtrace` compares
// them). Nothing here allocates; `RULE_LOCK` is held while a sample's stack
// is walked, never across `_Unwind_Find_FDE` or `dl_iterate_phdr` (which
// may take the loader's lock, as `backtrace` does).
//
// Unloaded objects: a row kept for an address of an object since unloaded
// would be wrong for another object mapped there later, so the table is
// emptied when glibc's count of unloads (`dlpi_subs`, from
// `dl_iterate_phdr`) moved since it was last emptied. Reading that count
// costs 150-160 instructions (the loader's lock), so it is read only when
// a walk needs it: a row is marked, when it is made, *lasting* if its
// address lies in an object that is never unloaded (the program, the C
// library, the loader, this library: `LASTING`; glibc unloads only what
// dlopen loaded). A walk reads the count before it uses its first row
// that is not lasting (then looks that row up again: another thread may
// have emptied the table meanwhile), and whenever a return address misses
// the table or a walk fails. A walk through the program's and libc's frames
// only, the common case, reads it never; one through a dlopen'd library
// (or libstdc++, not known to be lasting) once, as before.
//
// Why that is enough: a row is used for a return address on this thread's
// stack, whose frame, and so whose object, was there before the walk
// began. A lasting row's address belongs to its object for the process's
// life. For another row, the count read during the walk, equal to the one
// the table was last emptied at, says no object was unloaded since, so
// the row was made for the object now mapped there. (Reading it only on
// misses and every 64th walk was tried: a stack whose every return address
// hits, one of them in an object mapped over an unloaded one at a call
// site of the old one, was then walked with a stale row, and the walk's
// checks -- the frame above the stack pointer, within 1 GiB, aligned -- do
// not stop a read past the top of the stack: c_tests/prof.sh's dlswap test
// makes that case.)

/// `_Unwind_Find_FDE` of libgcc_s, found by `prime` once `backtrace` loaded
/// it (0: not found, samples use `backtrace`).
static FIND_FDE: AtomicUsize = AtomicUsize::new(0);
/// The rule table: `RULE_SLOTS` (address, rule) pairs, under `RULE_LOCK`.
static RULES: AtomicPtr<[usize; 2]> = AtomicPtr::new(null_mut());
static RULE_LOCK: Lock = Lock::new();
const RULE_SLOTS: usize = 1 << 12;
/// `unloads()` when the table was last emptied.
static UNLOADS: AtomicU64 = AtomicU64::new(0);

/// DWARF register numbers (x86-64 psABI).
const DW_RBP: u64 = 6;
const DW_RSP: u64 = 7;
const DW_RA: u64 = 16;

/// How to unwind from one address: the CFA is `%rsp` (or `%rbp`) plus
/// `cfa`; the return address is saved at CFA + `ra`; `%rbp` at CFA + `rbp`
/// (0: not saved, unchanged); `end`: the outermost frame (return address
/// undefined); `lasting`: the address lies in an object never unloaded
/// (set when the row is kept: see "Unloaded objects").
#[derive(Clone, Copy, PartialEq, Debug)]
struct Rule {
    cfa_rbp: bool,
    cfa: i64,
    ra: i64,
    rbp: i64,
    end: bool,
    lasting: bool,
}

impl Rule {
    /// The outermost frame.
    const END: Rule = Rule {
        cfa_rbp: false,
        cfa: 0,
        ra: 0,
        rbp: 0,
        end: true,
        lasting: false,
    };

    /// One word for the table (0 never: bit 1 is set), if the offsets fit
    /// (the saved registers' offsets are multiples of 8: their low bits
    /// hold the flags).
    fn pack(self) -> Option<usize> {
        if self.cfa != self.cfa as i32 as i64
            || self.ra != self.ra as i16 as i64
            || self.rbp != self.rbp as i16 as i64
            || self.ra & 7 != 0
            || self.rbp & 7 != 0
        {
            return None;
        }
        let flags = 2 | self.cfa_rbp as u64 | (self.end as u64) << 2;
        Some(
            (self.cfa as u32 as u64
                | (self.rbp as u16 as u64 | self.lasting as u64) << 32
                | ((self.ra as u16 as u64) | flags) << 48) as usize,
        )
    }
}

/// A packed rule's flags (see `Rule::pack`): the CFA is `%rbp`-based, the
/// outermost frame, the address lies in a lasting object.
const W_CFA_RBP: usize = 1 << 48;
const W_END: usize = 1 << 50;
const W_LASTING: usize = 1 << 32;

/// A packed rule's CFA offset.
#[inline(always)]
fn w_cfa(w: usize) -> usize {
    w as u32 as i32 as isize as usize
}

/// A packed rule's offset of the saved return address from the CFA.
#[inline(always)]
fn w_ra(w: usize) -> usize {
    ((w as isize >> 48) & !7) as usize
}

/// A packed rule's offset of the saved `%rbp` from the CFA (0: not saved).
#[inline(always)]
fn w_rbp(w: usize) -> usize {
    (((w << 16) as isize >> 48) & !7) as usize
}

/// `struct dwarf_eh_bases` of libgcc's `unwind-dw2-fde.h`.
#[repr(C)]
struct EhBases {
    tbase: usize,
    dbase: usize,
    func: usize,
}

type FindFde = unsafe extern "C" fn(pc: usize, bases: *mut EhBases) -> *const u8;

/// From `prime` (the constructor, after `backtrace` loaded libgcc_s): finds
/// `_Unwind_Find_FDE` and maps the rule table.
fn prime_unwinder() {
    // SAFETY: dlopen with RTLD_NOLOAD only returns a loaded object's
    // handle; dlsym reads its symbol table.
    let f = unsafe {
        let h = libc::dlopen(
            c"libgcc_s.so.1".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_NOLOAD,
        );
        if h.is_null() {
            return;
        }
        libc::dlsym(h, c"_Unwind_Find_FDE".as_ptr())
    };
    let t = crate::os::map(RULE_SLOTS * 16);
    if f.is_null() || t.is_null() {
        return;
    }
    RULES.store(t as *mut [usize; 2], Ordering::Release);
    let m = crate::os::map(MEMO_SLOTS * core::mem::size_of::<Memo>());
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: from the constructor, no allocator lock held (it may
    // allocate); `memo_thread_exit` is the key's destructor.
    if !m.is_null() && unsafe { libc::pthread_key_create(&mut key, Some(memo_thread_exit)) } == 0 {
        MEMO_KEY.store(key, Ordering::Relaxed);
        MEMOS.store(m as *mut Memo, Ordering::Release);
    }
    FIND_FDE.store(f as usize, Ordering::Release);
}

/// Why a walk stopped short.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Stop {
    /// A frame's rule is not handled (use `backtrace`).
    Unhandled,
    /// An object was unloaded since the table was last checked: the table
    /// was emptied, and rows the walk already used may have been stale.
    Flushed,
}

/// The slot of the rule table for address `at`.
#[inline(always)]
fn rule_slot(at: usize) -> usize {
    (at.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) & (RULE_SLOTS - 1)
}

/// The packed rule (`Rule::pack`) of the frame at `at` (the address whose
/// row applies: a return address less one, or the unwinder's own address
/// for the first frame), when `at` misses the table (`walk` looks it up):
/// finds it and keeps it. Called with `RULE_LOCK` held; releases it while
/// it looks up an FDE. A miss is also when unloads are checked (see
/// "Unloaded objects" above): if one happened, the table is emptied and the
/// walk must start again. A rule that does not pack is not handled.
#[cold]
#[inline(never)]
fn rule_miss(at: usize, slot: usize) -> Result<usize, Stop> {
    let t = RULES.load(Ordering::Acquire);
    RULE_LOCK.unlock();
    // (Without RULE_LOCK: dl_iterate_phdr and _Unwind_Find_FDE may take
    // the loader's lock.)
    let subs = unloads();
    let r = find_rule(at);
    RULE_LOCK.lock();
    if flush_if_unloaded(subs) {
        return Err(Stop::Flushed);
    }
    let mut r = r.ok_or(Stop::Unhandled)?;
    r.lasting = lasting(at);
    let w = r.pack().ok_or(Stop::Unhandled)?;
    // SAFETY: the slot lies in the table, written under RULE_LOCK.
    unsafe { *t.add(slot) = [at, w] };
    Ok(w)
}

/// Does `at` lie in an object that is never unloaded (`LASTING`)?
fn lasting(at: usize) -> bool {
    LASTING
        .iter()
        .any(|r| r[0].load(Ordering::Relaxed) <= at && at < r[1].load(Ordering::Relaxed))
}

/// With `RULE_LOCK` held (released meanwhile): reads the count of unloads,
/// and empties the table if it moved (`Stop::Flushed`: the walk starts
/// again).
#[cold]
#[inline(never)]
fn check_unloads() -> Result<(), Stop> {
    RULE_LOCK.unlock();
    // (Before RULE_LOCK: dl_iterate_phdr takes the loader's lock.)
    let subs = unloads();
    RULE_LOCK.lock();
    if flush_if_unloaded(subs) {
        return Err(Stop::Flushed);
    }
    Ok(())
}

/// With `RULE_LOCK` held: empties the rule table if `subs` (a fresh
/// `unloads()`) differs from the count it was last emptied at.
fn flush_if_unloaded(subs: u64) -> bool {
    if subs == UNLOADS.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: the table is ours, written under RULE_LOCK.
    unsafe { core::ptr::write_bytes(RULES.load(Ordering::Relaxed), 0, RULE_SLOTS) };
    UNLOADS.store(subs, Ordering::Relaxed);
    true
}

/// Objects unloaded so far (`dlpi_subs`): a rule kept for an address of an
/// unloaded object would be wrong for another object mapped there since.
fn unloads() -> u64 {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        size: usize,
        out: *mut libc::c_void,
    ) -> i32 {
        if size >= core::mem::size_of::<libc::dl_phdr_info>() {
            // SAFETY: the loader's info, holding dlpi_subs (size says so);
            // out is the caller's u64.
            unsafe { *(out as *mut u64) = (*info).dlpi_subs };
        }
        1
    }
    let mut n = u64::MAX;
    // SAFETY: the callback only reads the info it is given.
    unsafe { libc::dl_iterate_phdr(Some(first), &mut n as *mut u64 as *mut libc::c_void) };
    n
}

/// A cursor over CFI bytes: `p..end` is readable, or `p >= end`.
struct Cfi {
    p: *const u8,
    end: *const u8,
}

impl Cfi {
    /// # Safety
    /// `p..end` is readable memory (an object's .eh_frame).
    unsafe fn new(p: *const u8, end: *const u8) -> Cfi {
        Cfi { p, end }
    }

    fn u8(&mut self) -> Option<u8> {
        if self.p >= self.end {
            return None;
        }
        // SAFETY: p lies before end (`new`'s contract).
        let b = unsafe { *self.p };
        self.p = self.p.wrapping_add(1);
        Some(b)
    }

    fn fixed(&mut self, n: usize) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..n {
            v |= (self.u8()? as u64) << (8 * i);
        }
        Some(v)
    }

    /// A LEB128 number's bits, the bits it spans and its last byte.
    fn leb(&mut self) -> Option<(u64, u32, u8)> {
        let (mut v, mut shift) = (0u64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= ((b & 0x7f) as u64) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return Some((v, shift, b));
            }
        }
    }

    fn uleb(&mut self) -> Option<u64> {
        self.leb().map(|(v, _, _)| v)
    }

    fn sleb(&mut self) -> Option<i64> {
        let (v, shift, last) = self.leb()?;
        let mut v = v as i64;
        if shift < 64 && last & 0x40 != 0 {
            v |= -1i64 << shift;
        }
        Some(v)
    }

    /// Skips a pointer of DW_EH_PE encoding `enc`.
    fn skip_ptr(&mut self, enc: u8) -> Option<()> {
        match enc & 0x0f {
            0x00 | 0x04 | 0x0c => self.fixed(8).map(|_| ()),
            0x02 | 0x0a => self.fixed(2).map(|_| ()),
            0x03 | 0x0b => self.fixed(4).map(|_| ()),
            0x01 => self.uleb().map(|_| ()),
            0x09 => self.sleb().map(|_| ()),
            _ => None,
        }
    }
}

/// The rule a DWARF register is under: not saved, or saved at CFA + offset.
#[derive(Clone, Copy)]
struct Row {
    cfa_reg: u64,
    cfa: i64,
    ra: Option<i64>,
    rbp: Option<i64>,
    end: bool,
}

/// Looks up the FDE of `at` and runs its CIE's and its own instructions up
/// to `at`'s row.
fn find_rule(at: usize) -> Option<Rule> {
    let f = FIND_FDE.load(Ordering::Relaxed);
    // SAFETY: f is libgcc's _Unwind_Find_FDE.
    let find: FindFde = unsafe { core::mem::transmute::<usize, FindFde>(f) };
    let mut bases = EhBases {
        tbase: 0,
        dbase: 0,
        func: 0,
    };
    // SAFETY: bases is writable; an address outside every object gives null.
    let fde = unsafe { find(at, &mut bases) };
    if fde.is_null() {
        // (No frame information: libgcc ends the stack here too.)
        return Some(Rule::END);
    }
    // SAFETY: an FDE and its CIE, in a loaded object's .eh_frame: the
    // lengths read bound every read after them.
    unsafe {
        let len = (fde as *const u32).read_unaligned();
        if len == 0 || len == u32::MAX {
            return None;
        }
        let fde_end = fde.add(4 + len as usize);
        let cie_ptr = fde.add(4);
        let cie = cie_ptr.sub((cie_ptr as *const u32).read_unaligned() as usize);
        let clen = (cie as *const u32).read_unaligned();
        if clen == 0 || clen == u32::MAX {
            return None;
        }
        let mut c = Cfi::new(cie.add(8), cie.add(4 + clen as usize));
        let version = c.u8()?;
        let mut aug = [0u8; 8];
        let mut na = 0;
        loop {
            let b = c.u8()?;
            if b == 0 {
                break;
            }
            if na == aug.len() {
                return None;
            }
            aug[na] = b;
            na += 1;
        }
        let aug = &aug[..na];
        let code_align = c.uleb()?;
        let data_align = c.sleb()?;
        let ra_reg = if version == 1 {
            c.u8()? as u64
        } else {
            c.uleb()?
        };
        if ra_reg != DW_RA || aug.first() != Some(&b'z') {
            return None;
        }
        let alen = c.uleb()?;
        let adata_end = c.p.add(alen as usize);
        let mut fde_enc = 0u8;
        for &a in &aug[1..] {
            match a {
                b'R' => fde_enc = c.u8()?,
                b'P' => {
                    let e = c.u8()?;
                    c.skip_ptr(e)?;
                }
                b'L' => {
                    c.u8()?;
                }
                _ => return None, // 'S' (a signal frame) and the rest
            }
        }
        c.p = adata_end;
        let init = Row {
            cfa_reg: DW_RSP,
            cfa: 0,
            ra: None,
            rbp: None,
            end: false,
        };
        let target = at as u64;
        let cie_row = run_cfi(&mut c, init, init, 0, u64::MAX, code_align, data_align)?;
        let mut d = Cfi::new(fde.add(8), fde_end);
        d.skip_ptr(fde_enc)?; // pc_begin (bases.func holds it)
        d.skip_ptr(fde_enc & 0x0f)?; // pc_range
        let alen = d.uleb()?;
        d.p = d.p.add(alen as usize);
        let row = run_cfi(
            &mut d,
            cie_row,
            cie_row,
            bases.func as u64,
            target,
            code_align,
            data_align,
        )?;
        if row.end {
            return Some(Rule::END);
        }
        Some(Rule {
            cfa_rbp: match row.cfa_reg {
                DW_RSP => false,
                DW_RBP => true,
                _ => return None,
            },
            cfa: row.cfa,
            ra: row.ra?,
            rbp: row.rbp.unwrap_or(0),
            end: false,
            lasting: false,
        })
    }
}

/// Runs the call-frame instructions of `c` from location `loc`, stopping
/// before the first row past `target`: the row in force at `target`.
/// `init`: the CIE's row (for DW_CFA_restore). None for what is not handled.
fn run_cfi(
    c: &mut Cfi,
    init: Row,
    mut row: Row,
    mut loc: u64,
    target: u64,
    code_align: u64,
    data_align: i64,
) -> Option<Row> {
    let mut saved = [row; 8];
    let mut depth = 0;
    // Sets register `reg`'s rule (only %rbp's and the return address's
    // matter; a rule this interpreter cannot follow for them is None).
    fn set(row: &mut Row, reg: u64, off: Option<i64>) {
        match reg {
            DW_RBP => row.rbp = off,
            DW_RA => row.ra = off,
            _ => {}
        }
    }
    while c.p < c.end {
        let op = c.u8()?;
        let advance = match op >> 6 {
            1 => (op & 0x3f) as u64,
            2 => {
                let off = c.uleb()? as i64 * data_align;
                set(&mut row, (op & 0x3f) as u64, Some(off));
                0
            }
            3 => {
                let reg = (op & 0x3f) as u64;
                set(
                    &mut row,
                    reg,
                    if reg == DW_RBP { init.rbp } else { init.ra },
                );
                0
            }
            _ => match op {
                0x00 => 0,
                0x02 => c.fixed(1)?,
                0x03 => c.fixed(2)?,
                0x04 => c.fixed(4)?,
                0x05 => {
                    let reg = c.uleb()?;
                    let off = c.uleb()? as i64 * data_align;
                    set(&mut row, reg, Some(off));
                    0
                }
                0x06 => {
                    let reg = c.uleb()?;
                    set(
                        &mut row,
                        reg,
                        if reg == DW_RBP { init.rbp } else { init.ra },
                    );
                    0
                }
                0x07 => {
                    // undefined
                    match c.uleb()? {
                        DW_RA => row.end = true,
                        DW_RBP => return None,
                        _ => {}
                    }
                    0
                }
                0x08 => {
                    // same value
                    let reg = c.uleb()?;
                    if reg == DW_RA {
                        return None;
                    }
                    set(&mut row, reg, None);
                    0
                }
                0x09 => {
                    // register
                    let reg = c.uleb()?;
                    c.uleb()?;
                    if reg == DW_RA || reg == DW_RBP {
                        return None;
                    }
                    0
                }
                0x0a => {
                    if depth == saved.len() {
                        return None;
                    }
                    saved[depth] = row;
                    depth += 1;
                    0
                }
                0x0b => {
                    if depth == 0 {
                        return None;
                    }
                    depth -= 1;
                    // (With the CFA's rule, as libgcc and LLVM's
                    // libunwind restore it.)
                    row = saved[depth];
                    0
                }
                0x0c => {
                    row.cfa_reg = c.uleb()?;
                    row.cfa = c.uleb()? as i64;
                    0
                }
                0x0d => {
                    row.cfa_reg = c.uleb()?;
                    0
                }
                0x0e => {
                    row.cfa = c.uleb()? as i64;
                    0
                }
                0x11 => {
                    let reg = c.uleb()?;
                    let off = c.sleb()? * data_align;
                    set(&mut row, reg, Some(off));
                    0
                }
                0x12 => {
                    row.cfa_reg = c.uleb()?;
                    row.cfa = c.sleb()? * data_align;
                    0
                }
                0x13 => {
                    row.cfa = c.sleb()? * data_align;
                    0
                }
                0x10 | 0x14 | 0x15 | 0x16 => {
                    // expression, val_offset(_sf), val_expression
                    let reg = c.uleb()?;
                    if reg == DW_RA || reg == DW_RBP || reg == DW_RSP {
                        return None;
                    }
                    if op == 0x10 || op == 0x16 {
                        let n = c.uleb()?;
                        c.p = c.p.wrapping_add(n as usize);
                    } else {
                        c.uleb()?;
                    }
                    0
                }
                0x2e => {
                    c.uleb()?; // GNU_args_size
                    0
                }
                0x2f => {
                    let reg = c.uleb()?;
                    let off = -(c.uleb()? as i64) * data_align;
                    set(&mut row, reg, Some(off));
                    0
                }
                _ => return None, // set_loc, def_cfa_expression, ...
            },
        };
        if advance != 0 {
            loc = loc.wrapping_add(advance * code_align);
            if loc > target {
                break;
            }
        }
    }
    Some(row)
}

/// Unwinds the calling thread's stack into `out`: the unwinder's own
/// address, then each frame's return address, as `backtrace` lists them.
/// None when a frame's rule is not handled (use `backtrace`).
#[cfg(test)]
#[inline(never)]
fn unwind(out: &mut [MaybeUninit<usize>]) -> Option<usize> {
    unwind_here(out, false).0
}

/// `unwind` from the frame of the function it is inlined into (the
/// sample's: one frame of the allocator's less to walk through).
/// Also returns the memo it used (null: none), this thread's: the caller
/// reads or sets its `stack`. With `known`, a memo that replays its walk
/// and knows the stack its frames were filed as writes no frame: 0 frames
/// (a walk finds 1 at least), the stack is the memo's.
#[inline(always)]
fn unwind_here(out: &mut [MaybeUninit<usize>], known: bool) -> (Option<usize>, *mut Memo) {
    if FIND_FDE.load(Ordering::Acquire) == 0 || out.is_empty() {
        return (None, null_mut());
    }
    let (ip, sp, rbp): (usize, usize, usize);
    // SAFETY: reads this frame's address and stack and frame registers.
    unsafe {
        core::arch::asm!(
            "lea {ip}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            ip = out(reg) ip,
            sp = out(reg) sp,
            bp = out(reg) rbp,
            options(nomem, nostack, preserves_flags)
        );
    }
    out[0].write(ip);
    let m = memo_take(ip, sp);
    if !m.is_null() {
        // SAFETY: `m` is a memo of this thread's group.
        unsafe {
            if let Some(n) = memo_replay(&*m, out, ip, sp, rbp, known) {
                return (Some(n), m);
            }
            (*m).ip = 0;
        }
    }
    // Twice at most: a walk that found the table stale walks again on the
    // emptied table (its rows are then all new); a third is not needed
    // unless objects are being unloaded meanwhile: `backtrace` then.
    let mut r = Err(Stop::Unhandled);
    for _ in 0..2 {
        RULE_LOCK.lock();
        r = walk(out, ip, sp, rbp, m);
        RULE_LOCK.unlock();
        if r != Err(Stop::Flushed) {
            break;
        }
    }
    if let Ok(n) = r {
        if !m.is_null() {
            // SAFETY: as above; the walk filled its checks.
            unsafe { memo_keep(&mut *m, out, n, ip, sp, rbp) };
        }
    }
    match r {
        Ok(n) => (Some(n), m),
        Err(Stop::Flushed) => (None, m),
        Err(Stop::Unhandled) => {
            // A stale row may have sent the walk astray: check.
            let subs = unloads();
            RULE_LOCK.lock();
            flush_if_unloaded(subs);
            RULE_LOCK.unlock();
            (None, m)
        }
    }
}

// ---- the walks' memo ---------------------------------------------------------------
//
// A program samples the same stacks again and again (a loop's malloc, at the
// same depth): a walk is memoized, keyed by where it starts (the sampling
// function's address and stack pointer), with the list of what it read
// from the stack that decided its result: each saved return address, and
// each saved `%rbp` it computed a CFA from (with the starting `%rbp`, if it
// did), as (slot address, value) pairs in the order it read them. Replaying
// the list -- a load and a compare each -- and finding every value the
// same proves that the walk would find the same frames: its rows are
// chosen by the return addresses, its CFAs computed from the same registers
// and rows, so it would read the same slots and take the same branches.
// The first value that differs stops the replay (so every slot it reads
// lies where the walk itself would have read it, the earlier values being
// the walk's), and the walk runs. About 6 instructions a frame, where the
// walk takes about 37 and the rule table's lock.
//
// Only walks whose every row is *lasting* are kept (see "Unloaded objects":
// their rows never change; others depend on the loader's count of unloads,
// which a walk reads).
//
// Each thread owns a group of `MEMO_GROUP` memos (a slot per hash of where
// the walk starts), claimed at its first sample from a bitmap
// (`MEMO_OWNED`) and given back by a pthread key's destructor when the
// thread exits: a sample uses its memo with no atomic operation, and no
// thread evicts another's walks. (They were 64 slots shared by all
// threads, hashed by stack pointer, each taken and given back by an atomic
// swap and a store a sample: the swap held 7% of `counted_due_in`'s
// samples in `perf` on `bench/mthreads 1`, as it waited for the stores
// before it; without it, the time measured is the same within this
// machine's noise: the next atomic operation waits for them instead.) A
// thread that finds every group taken (more than `MEMO_SLOTS /
// MEMO_GROUP` threads sampling) walks without a memo, and tries again at
// its next sample.

/// Slots of the memo table: `MEMO_SLOTS / MEMO_GROUP` groups, one per
/// thread that samples (a bit of `MEMO_OWNED` each).
const MEMO_SLOTS: usize = 256;
/// Memos a thread owns (a slot per hash of where a walk starts).
const MEMO_GROUP: usize = 4;
const _: () = assert!(MEMO_SLOTS / MEMO_GROUP == SHARDS && MEMO_GROUP.is_power_of_two());
/// `ThreadState::memo` of a thread that takes no group (it is exiting).
const NO_MEMO: usize = 1;
/// Checks a memo holds: a return address and at most one `%rbp` a frame.
const MEMO_CHECKS: usize = 2 * RAW_FRAMES;

/// A memoized walk (see above). `ip == 0`: empty.
#[repr(C)]
struct Memo {
    /// Where the walk started: the sampling function's address and stack
    /// pointer; its `%rbp`, if the walk used it (`use_rbp`).
    ip: usize,
    sp: usize,
    rbp: usize,
    use_rbp: bool,
    /// While a walk fills it: false once it used a row that is not lasting.
    lasting: bool,
    /// The stack (index + 1 in `STACKS`; 0: not known) its frames
    /// were filed as. (The stacks are emptied only in a fork child, which
    /// empties the memos too.)
    stack: usize,
    /// Frames found (`out[..n]`, `out[0]` being `ip`), and the checks.
    n: usize,
    nchecks: usize,
    frames: [usize; RAW_FRAMES],
    checks: [[usize; 2]; MEMO_CHECKS],
}

/// The memo table: `MEMO_SLOTS` memos, mapped by `prime_unwinder` (null
/// before, or if it or `MEMO_KEY` could not be made: walks are not
/// memoized).
static MEMOS: AtomicPtr<Memo> = AtomicPtr::new(null_mut());
/// The groups of `MEMOS` owned by a thread (bit `g`: group `g`).
static MEMO_OWNED: AtomicU64 = AtomicU64::new(0);
/// The pthread key whose destructor gives an exiting thread's group back.
static MEMO_KEY: AtomicU32 = AtomicU32::new(0);

/// This thread's memo for a walk from address `ip` and stack pointer
/// `sp` (null: none). (Both in the hash: the medium malloc's two sampling
/// functions start at the same stack pointer and evicted each other's
/// walks.)
#[inline(always)]
fn memo_take(ip: usize, sp: usize) -> *mut Memo {
    // SAFETY: this thread's own state.
    let mut g = unsafe { (*thread_state()).memo };
    if g <= NO_MEMO {
        g = memo_claim();
        if g <= NO_MEMO {
            return null_mut();
        }
    }
    let i = (((sp ^ ip << 8) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 62) as usize;
    const _: () = assert!(MEMO_GROUP == 1 << 2);
    // SAFETY: `g` is this thread's group, `MEMO_GROUP` memos.
    unsafe { (g as *mut Memo).add(i) }
}

/// Claims a group of memos for this thread (its first sample, or the
/// first since every group was found taken): the group's address, or 0
/// (none free: try again later) or `NO_MEMO`.
#[cold]
#[inline(never)]
fn memo_claim() -> usize {
    // SAFETY: this thread's own state.
    let t = unsafe { &mut *thread_state() };
    let table = MEMOS.load(Ordering::Acquire);
    if t.memo == NO_MEMO || table.is_null() {
        return NO_MEMO;
    }
    let mut owned = MEMO_OWNED.load(Ordering::Relaxed);
    let g = loop {
        if owned == u64::MAX {
            return 0;
        }
        let g = (!owned).trailing_zeros() as usize;
        match MEMO_OWNED.compare_exchange_weak(
            owned,
            owned | 1 << g,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => break g,
            Err(now) => owned = now,
        }
    };
    // SAFETY: group `g` lies in the table; it is ours now (its bit): its
    // memos are emptied (a thread that owned it before left them).
    let m = unsafe { table.add(g * MEMO_GROUP) };
    for k in 0..MEMO_GROUP {
        // SAFETY: as above.
        unsafe { (*m.add(k)).ip = 0 };
    }
    // The key's destructor gives it back at the thread's exit. (A key
    // below 32, as ours is unless the program made 30 before it, is set
    // with no allocation; above, glibc allocates its second level: the
    // allocation is served, not sampled, this thread being `busy`.)
    // SAFETY: the key was made by `prime_unwinder` (MEMOS is not null).
    if unsafe { libc::pthread_setspecific(MEMO_KEY.load(Ordering::Relaxed), m as *const _) } != 0 {
        MEMO_OWNED.fetch_and(!(1 << g), Ordering::Release);
        t.memo = NO_MEMO;
        return NO_MEMO;
    }
    t.memo = m as usize;
    // (Its samples go to the group's shard: one per thread that samples.)
    t.shard = g + 1;
    t.memo
}

/// The key's destructor: an exiting thread gives its group of memos back
/// (and takes none again, should it still sample).
unsafe extern "C" fn memo_thread_exit(group: *mut libc::c_void) {
    // SAFETY: this thread's own state.
    unsafe { (*thread_state()).memo = NO_MEMO };
    let table = MEMOS.load(Ordering::Relaxed) as usize;
    let g = (group as usize - table) / (MEMO_GROUP * core::mem::size_of::<Memo>());
    MEMO_OWNED.fetch_and(!(1 << g), Ordering::Release);
}

/// The frames of a walk from (`ip`, `sp`, `rbp`) into `out`, if `m` holds
/// it and every value it read is unchanged; None otherwise. With `known`,
/// when `m` knows their stack (`stack`), none is written: 0.
///
/// # Safety
/// `m` is a memo of this thread's group.
#[inline(always)]
unsafe fn memo_replay(
    m: &Memo,
    out: &mut [MaybeUninit<usize>],
    ip: usize,
    sp: usize,
    rbp: usize,
    known: bool,
) -> Option<usize> {
    if m.ip != ip || m.sp != sp || (m.use_rbp && m.rbp != rbp) || m.n > out.len() {
        return None;
    }
    for c in &m.checks[..m.nchecks] {
        // SAFETY: a stack slot the walk read, at an address computed from
        // the values checked before it, all unchanged: where the walk would
        // read it now.
        if *(c[0] as *const usize) != c[1] {
            return None;
        }
    }
    if known && m.stack != 0 {
        // (The sample takes the stack from the memo: the frames' copy, and
        // the allocator's own frames skipped, about 40 instructions a
        // sample, are not needed.)
        return Some(0);
    }
    for (o, &f) in out[1..m.n].iter_mut().zip(&m.frames[1..m.n]) {
        o.write(f);
    }
    Some(m.n)
}

/// Keeps the walk that found `out[..n]` from (`ip`, `sp`, `rbp`) in `m`,
/// whose checks it filled, if every row it used was lasting.
///
/// # Safety
/// `m` is a memo of this thread's group; `out[..n]` were written.
unsafe fn memo_keep(
    m: &mut Memo,
    out: &[MaybeUninit<usize>],
    n: usize,
    ip: usize,
    sp: usize,
    rbp: usize,
) {
    if !m.lasting || m.nchecks > MEMO_CHECKS {
        return;
    }
    for (f, o) in m.frames[1..n].iter_mut().zip(&out[1..n]) {
        *f = o.assume_init();
    }
    m.stack = 0;
    m.n = n;
    m.sp = sp;
    m.rbp = rbp;
    m.ip = ip;
}

/// May a frame whose stack pointer is `sp` (8-aligned) have its CFA at
/// `cfa`: above `sp`, within 1 GiB of it, 8-aligned? One test: the
/// difference less 8 is then a multiple of 8 from 0 to 2^30 - 8; rotated
/// right by 3 bits, any other value (negative, or not aligned) is above
/// 2^27 - 1.
#[inline(always)]
fn frame_ok(sp: usize, cfa: usize) -> bool {
    cfa.wrapping_sub(sp).wrapping_sub(8).rotate_right(3) <= ((1 << 30) - 8) >> 3
}

/// `unwind` from its own frame (`ip`, `sp`, `rbp`), with `RULE_LOCK` held.
/// Fills the checks of memo `m` (null: none) as it goes (see "the walks'
/// memo").
fn walk(
    out: &mut [MaybeUninit<usize>],
    mut ip: usize,
    mut sp: usize,
    mut rbp: usize,
    m: *mut Memo,
) -> Result<usize, Stop> {
    // Where the current `%rbp` was read from (0: it is the starting one).
    let mut rbp_slot = 0usize;
    if !m.is_null() {
        // SAFETY: a memo of this thread's group.
        unsafe {
            (*m).nchecks = 0;
            (*m).use_rbp = false;
            (*m).lasting = true;
        }
    }
    let mut n = 1;
    // The first address is where `unwind`'s frame is; the others are
    // return addresses, whose row is the call's (one byte before).
    let mut at = ip;
    // `W_LASTING` once the count of unloads was read during this walk (on a
    // miss, or before the first row that is not lasting was used), so that
    // `w | checked` has the bit when the row may be used.
    let mut checked = 0;
    let t = RULES.load(Ordering::Acquire);
    while n < out.len() {
        let slot = rule_slot(at);
        // SAFETY: the slot lies in the table, read under RULE_LOCK (a pair
        // is written and emptied under it: a key that matches has its rule).
        let e = unsafe { *t.add(slot) };
        let w = if e[0] == at {
            e[1]
        } else {
            checked = W_LASTING;
            rule_miss(at, slot)?
        };
        if (w | checked) & W_LASTING == 0 {
            check_unloads()?;
            checked = W_LASTING;
            // (Looked up again: the table may have been emptied by another
            // thread while RULE_LOCK was released.)
            continue;
        }
        if !m.is_null() {
            // SAFETY: a memo of this thread's group; at most two checks a frame
            // (`MEMO_CHECKS`).
            unsafe {
                if w & W_LASTING == 0 {
                    (*m).lasting = false;
                }
                if w & W_CFA_RBP != 0 && w & W_END == 0 {
                    if rbp_slot == 0 {
                        (*m).use_rbp = true;
                    } else {
                        (*m).checks[(*m).nchecks] = [rbp_slot, rbp];
                        (*m).nchecks += 1;
                    }
                }
            }
        }
        if w & W_END != 0 {
            break;
        }
        let cfa = (if w & W_CFA_RBP != 0 { rbp } else { sp }).wrapping_add(w_cfa(w));
        if !frame_ok(sp, cfa) {
            return Err(Stop::Unhandled);
        }
        // SAFETY: the CFA lies above the stack pointer within the stack, and
        // the frame's CFI says where its caller's registers were saved.
        unsafe {
            let ra_slot = cfa.wrapping_add(w_ra(w));
            ip = *(ra_slot as *const usize);
            if !m.is_null() {
                (*m).checks[(*m).nchecks] = [ra_slot, ip];
                (*m).nchecks += 1;
            }
            if w_rbp(w) != 0 {
                rbp_slot = cfa.wrapping_add(w_rbp(w));
                rbp = *(rbp_slot as *const usize);
            }
        }
        sp = cfa;
        if ip == 0 {
            break;
        }
        out[n].write(ip);
        n += 1;
        at = ip - 1;
    }
    Ok(n)
}

// ---- fork ------------------------------------------------------------------------

/// The fork handlers: the profile's locks (every shard's, then the
/// stacks') are taken before the allocator's.
pub fn lock_all() {
    for sh in &SHARD {
        sh.lock.lock();
    }
    STACK_LOCK.lock();
}

/// Releases what `lock_all` took.
pub fn unlock_all() {
    STACK_LOCK.unlock();
    for sh in &SHARD {
        sh.lock.unlock();
    }
}

/// Whether some thread holds one of the profile's locks (a snapshot: the
/// fork of a process with one thread, from a signal handler, may have
/// interrupted the profiler).
pub fn is_locked() -> bool {
    STACK_LOCK.is_locked() || SHARD.iter().any(|sh| sh.lock.is_locked())
}

/// In a fork child: a profile of its own, empty (the parent's samples stay
/// the parent's).
pub fn after_fork_child() {
    for sh in &SHARD {
        sh.lock.reset_after_fork();
    }
    STACK_LOCK.reset_after_fork();
    RULE_LOCK.reset_after_fork();
    let rules = RULES.load(Ordering::Relaxed);
    if !rules.is_null() {
        // A pair another thread was writing at the fork may be torn.
        // SAFETY: the table is ours, mapped by `prime_unwinder`.
        unsafe { crate::os::discard(rules as *mut u8, RULE_SLOTS * 16) };
    }
    let memos = MEMOS.load(Ordering::Relaxed);
    if !memos.is_null() {
        // A memo another thread was filling at the fork may be torn: empty
        // them; only this thread's group stays owned (the other threads
        // are gone).
        // SAFETY: the table is ours, mapped by `prime_unwinder`.
        unsafe { crate::os::discard(memos as *mut u8, MEMO_SLOTS * core::mem::size_of::<Memo>()) };
        // SAFETY: this thread's own state.
        let g = unsafe { (*thread_state()).memo };
        let own = if g > NO_MEMO {
            1 << ((g - memos as usize) / (MEMO_GROUP * core::mem::size_of::<Memo>()))
        } else {
            0
        };
        MEMO_OWNED.store(own, Ordering::Relaxed);
    }
    let stacks = STACKS.load(Ordering::Relaxed);
    if stacks.is_null() {
        return;
    }
    // SAFETY: single-threaded child; the tables are ours.
    unsafe {
        crate::os::discard(stacks as *mut u8, STACK_CAP * core::mem::size_of::<Stack>());
        crate::os::discard(INDEX.load(Ordering::Relaxed) as *mut u8, INDEX_CAP * 4);
        NSTACKS.store(0, Ordering::Relaxed);
        for sh in &SHARD {
            let p = &mut *sh.part.get();
            if !p.samples.is_null() {
                // (Both areas, one mapping: the lower address is its start.)
                crate::os::discard(
                    p.samples.min(p.spare) as *mut u8,
                    2 * SAMPLE_SLOTS * core::mem::size_of::<Sample>(),
                );
                crate::os::discard(p.figs as *mut u8, STACK_CAP * core::mem::size_of::<Fig>());
                p.slots = Part::EMPTY.slots;
                p.shift = Part::EMPTY.shift;
                p.samples = p.samples.min(p.spare);
                p.spare = p.samples.add(SAMPLE_SLOTS);
            }
            p.alloc_total = 0;
            p.sample_count = 0;
            p.dropped = 0;
            sh.nsamples.store(0, Ordering::Relaxed);
        }
    }
    for a in [
        &TOTALS.live,
        &TOTALS.next,
        &TOTALS.peak.epoch,
        &TOTALS.peak.total,
    ] {
        a.store(0, Ordering::Relaxed);
    }
}

// ---- reports -----------------------------------------------------------------------

/// Which figure of each stack a report shows.
#[derive(Clone, Copy, PartialEq)]
enum Figure {
    Live,
    Peak,
    Total,
}

/// Writes one frame: `name [object+0xoffset]`, the offset one byte before
/// the return address (inside the call), relative to the object's load bias
/// (what addr2line takes, PIE or not).
/// `exe`: the program's path, for its own frames (the loader names the
/// program as it was started, maybe relative, or not at all).
fn write_frame<const N: usize>(b: &mut crate::report::StackBuf<N>, ret: usize, exe: &[u8]) {
    let a = ret.wrapping_sub(1);
    match object_of(a) {
        Some((bias, info)) => {
            if !info.dli_sname.is_null() {
                // SAFETY: a NUL-terminated name from the loader's tables.
                let name = unsafe { core::ffi::CStr::from_ptr(info.dli_sname) }.to_bytes();
                push_clean(b, name);
                b.push(b" ");
            }
            b.push(b"[");
            let f: &[u8] = if info.dli_fname.is_null() {
                b""
            } else {
                // SAFETY: as above.
                unsafe { core::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes()
            };
            push_clean(b, if f.first() == Some(&b'/') { f } else { exe });
            let _ = write!(b, "+{:#x}]", a - bias);
        }
        None => {
            let _ = write!(b, "[?+{:#x}]", a);
        }
    }
}

/// Appends `s` with the characters the collapsed format reserves (';' and
/// the newline) replaced, at most 240 bytes of it.
fn push_clean<const N: usize>(b: &mut crate::report::StackBuf<N>, s: &[u8]) {
    for &c in &s[..s.len().min(240)] {
        b.push(if c == b';' || c == b'\n' {
            b":"
        } else {
            core::slice::from_ref(&c)
        });
    }
}

/// Writes every stack with a non-zero figure to `fd`, one line each.
fn write_report(fd: i32, fig: Figure) {
    let mut exe = [0u8; 512];
    // SAFETY: readlink writes at most exe.len() bytes.
    let n = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            exe.as_mut_ptr() as *mut libc::c_char,
            exe.len(),
        )
    };
    let exe = &exe[..n.clamp(0, 512) as usize];
    let held = AllLocked::new();
    let epoch = TOTALS.peak.epoch.load(Ordering::Relaxed);
    let stacks = STACKS.load(Ordering::Acquire);
    let mut b = crate::report::StackBuf::<4096>::new(fd);
    for k in 0..NSTACKS.load(Ordering::Acquire) {
        let mut v = 0;
        for p in parts(&held) {
            // SAFETY: figures of a mapped part, under its lock; `k` is a stack.
            let f = unsafe { &*p.figs.add(k) };
            v += match fig {
                Figure::Live => f.live_bytes,
                Figure::Peak => peak_of(f, epoch),
                Figure::Total => f.alloc_bytes,
            };
        }
        if v == 0 {
            continue;
        }
        // SAFETY: stack `k` was written before NSTACKS counted it.
        let s = unsafe { &*stacks.add(k) };
        if s.depth == 0 {
            b.push(b"[unknown]");
        }
        for i in (0..s.depth).rev() {
            write_frame(&mut b, s.frames[i], exe);
            if i != 0 {
                b.push(b";");
            }
        }
        let _ = writeln!(b, " {}", v);
    }
    b.flush();
}

/// Every shard's lock, held (a report's consistent view of the shards).
struct AllLocked;

impl AllLocked {
    fn new() -> AllLocked {
        for sh in &SHARD {
            sh.lock.lock();
        }
        AllLocked
    }
}

impl Drop for AllLocked {
    fn drop(&mut self) {
        for sh in &SHARD {
            sh.lock.unlock();
        }
    }
}

/// The shards' parts whose tables are mapped, while `held` holds every
/// shard's lock.
fn parts(held: &AllLocked) -> impl Iterator<Item = &Part> {
    let _ = held;
    let m = MAPPED.load(Ordering::Acquire);
    // SAFETY: read with every shard's lock held (`held`, borrowed as long
    // as the parts are).
    (0..SHARDS)
        .filter(move |k| m & 1 << k != 0)
        .map(|k| unsafe { &*SHARD[k].part.get() })
}

/// `memalloc_prof_dump(fd)`: the live samples, now.
pub fn dump(fd: i32) {
    if READY.load(Ordering::Acquire) {
        write_report(fd, Figure::Live);
    }
}

/// At exit: writes PREFIX.PID.leak, .peak and .total, and one line on
/// stderr naming them.
pub fn exit_report() {
    if !READY.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: this thread's own state: no more samples from here.
    unsafe { (*thread_state()).busy = 1 };
    let prefix = OUT.load(Ordering::Relaxed);
    let prefix: &[u8] = if prefix.is_null() {
        b"memalloc-prof"
    } else {
        // SAFETY: a NUL-terminated string from the environment.
        unsafe { core::ffi::CStr::from_ptr(prefix as *const libc::c_char) }.to_bytes()
    };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    for (suffix, fig) in [
        (&b"leak"[..], Figure::Live),
        (&b"peak"[..], Figure::Peak),
        (&b"total"[..], Figure::Total),
    ] {
        let mut path = [0u8; 512];
        let mut w = crate::report::StackBuf::<512>::new(-1);
        w.push(prefix);
        let _ = write!(w, ".{}.", pid);
        w.push(suffix);
        let n = w.as_bytes().len().min(path.len() - 1);
        path[..n].copy_from_slice(&w.as_bytes()[..n]);
        // SAFETY: path is NUL-terminated.
        let fd = unsafe {
            libc::open(
                path.as_ptr() as *const libc::c_char,
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            crate::report::warn(format_args!("MEMALLOC_PROF: cannot write the profile"));
            return;
        }
        write_report(fd, fig);
        // SAFETY: closing the descriptor we opened.
        unsafe { libc::close(fd) };
    }
    let (mut samples, mut total, mut dropped) = (0, 0, UNMAPPED_DROPS.load(Ordering::Relaxed));
    {
        let held = AllLocked::new();
        for p in parts(&held) {
            samples += p.sample_count;
            total += p.alloc_total;
            dropped += p.dropped;
        }
    }
    let (peak, live) = (
        TOTALS.peak.total.load(Ordering::Relaxed),
        TOTALS.live.load(Ordering::Relaxed),
    );
    crate::report::note(format_args!(
        "heap profile: {} samples, peak {} KiB, live at exit {} KiB, allocated {} KiB{}: {}.{}.{{peak,leak,total}}",
        samples,
        peak >> 10,
        live >> 10,
        total >> 10,
        if dropped != 0 { " (some samples dropped)" } else { "" },
        core::str::from_utf8(prefix).unwrap_or("?"),
        pid
    ));
}

// ---- arithmetic without libm -------------------------------------------------------

const LN2: f64 = core::f64::consts::LN_2;

/// Rows of `EXP_TAB`: `exp_neg` reduces its argument to within
/// `ln 2 / (2 EXP_ROWS)` of a multiple of `ln 2 / EXP_ROWS`.
const EXP_ROWS: usize = 64;

/// `2^(j / EXP_ROWS)` for each row `j`: `exp(j ln 2 / EXP_ROWS)` from its
/// Taylor series (30 terms, argument below ln 2: exact to the last bit),
/// at compile time.
const EXP_TAB: [f64; EXP_ROWS] = {
    let mut t = [0.0; EXP_ROWS];
    let mut j = 0;
    while j < EXP_ROWS {
        let a = j as f64 * (LN2 / EXP_ROWS as f64);
        let (mut sum, mut term, mut i) = (1.0, 1.0, 1);
        while i < 30 {
            term = term * a / i as f64;
            sum += term;
            i += 1;
        }
        t[j] = sum;
        j += 1;
    }
    t
};

/// `exp(-x)` for `x >= 0`: `-x = (k / 64) ln 2 + r` with `k` the nearest
/// integer and |r| <= ln 2 / 128, so `exp(-x) = 2^(k >> 6) 2^((k & 63) / 64)
/// exp(r)`: a power of two made from its bits, a row of `EXP_TAB` and
/// `exp r`'s series to r^5 (the next term is below 4e-17), in Estrin's
/// form: about 25 instructions and a chain of 6 dependent operations.
/// (Its series to r^16 with |r| up to ln 2 / 2, in Horner's form, was a
/// chain of 32: 12% of `bench/mthreads 16 1e6 64 64k 1M`'s time profiling,
/// in `perf`, whose blocks above 128 KiB each weigh `n / (1 - exp(-n /
/// rate))`.)
fn exp_neg(x: f64) -> f64 {
    if x > 700.0 {
        return 0.0;
    }
    // (Below 2^16 * 64 / ln 2: the rounding through i64 is exact enough,
    // one instruction each way.)
    let k = -((x * (EXP_ROWS as f64 / LN2) + 0.5) as i64);
    let r = -x - k as f64 * (LN2 / EXP_ROWS as f64);
    let r2 = r * r;
    let p = (1.0 + r) + r2 * ((0.5 + r * (1.0 / 6.0)) + r2 * (1.0 / 24.0 + r * (1.0 / 120.0)));
    let scale = f64::from_bits(((1023 + (k >> 6)) as u64) << 52);
    p * EXP_TAB[(k & (EXP_ROWS as i64 - 1)) as usize] * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_and_probability() {
        for &x in &[0.0f64, 1e-9, 3e-5, 0.5, 1.0, 7.5, 40.0, 600.0] {
            let want = (-x).exp();
            assert!((exp_neg(x) - want).abs() <= 1e-12 * want, "exp {}", x);
        }
        // Every row of the exponential's table, at both ends and between.
        for i in 0..EXP_ROWS * 40 {
            let x = i as f64 * (LN2 / EXP_ROWS as f64 / 3.0) + 1e-3 * (i % 7) as f64;
            let want = (-x).exp();
            assert!((exp_neg(x) - want).abs() <= 1e-13 * want, "exp {}", x);
        }
        for i in 0..=1000 {
            let x = i as f64 * 0.001;
            let want = -(-x).exp_m1();
            assert!((sampled_p(x) - want).abs() <= 3e-9 * want, "p {}", x);
        }
    }

    /// `exp_q56` against `-ln u` computed in floating point, over the whole
    /// range of its random bits (every row of its table, both ends and
    /// between; leading zeros 0 to 63).
    #[test]
    fn exponential_of_bits() {
        let mut worst = 0.0f64;
        for z in 0..64u32 {
            for i in 0..LN1P_ROWS as u64 * 8 {
                // The leading one at bit 63 - z, then the row and fraction.
                let f = (i << 53) + (i * 0x9e37_79b9) % (1 << 40);
                let r = (1u64 << 63 | f >> 1) >> z;
                let u = (r | 1) as f64 / 2f64.powi(64);
                let want = -u.ln();
                let got = exp_q56(r) as f64 / 2f64.powi(56);
                worst = worst.max((got - want).abs());
            }
        }
        assert!(worst < 2.5e-6, "worst error {worst}");
        // 0 reads as 1 (2^-64: the largest draw), under 45.
        assert_eq!(exp_q56(0), exp_q56(1));
        assert!(exp_q56(0) < 45 << 56);
    }

    /// The intervals `draw` makes, from the thread's own random numbers:
    /// their mean is the rate (within 4 standard errors of 2^22 draws:
    /// 0.2%), and the fraction below `q` times the rate is `1 - exp(-q)`
    /// (within 4 standard errors) for quantiles from 0.001 to 10. And
    /// `draw_blocks`: a geometric count of mean `1 / (1 - exp(-size /
    /// rate))`.
    #[test]
    fn exponential_draws() {
        // A state of the test's own (the tests share the process's
        // settings, and each its thread's state).
        let mut t = ThreadState {
            left: 0,
            rng: 0,
            busy: 0,
            memo: 0,
            shard: 0,
        };
        const RATE: usize = 1 << 20;
        const N: usize = 1 << 22;
        let qs = [0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 4.0, 10.0];
        let mut below = [0usize; 8];
        let mut sum = 0.0f64;
        for _ in 0..N {
            let x = interval(rng_next(&mut t), RATE) as f64 / RATE as f64;
            sum += x;
            for (k, q) in qs.iter().enumerate() {
                below[k] += (x < *q) as usize;
            }
        }
        let mean = sum / N as f64;
        assert!((mean - 1.0).abs() < 4.0 / (N as f64).sqrt(), "mean {mean}");
        for (k, q) in qs.iter().enumerate() {
            let p = 1.0 - (-q).exp();
            let got = below[k] as f64 / N as f64;
            let tol = 4.0 * (p * (1.0 - p) / N as f64).sqrt();
            assert!((got - p).abs() < tol, "P(x < {q}): {got}, want {p}");
        }
        for size in [16, 4096, 1 << 17] {
            let mut sum = 0u64;
            const M: u64 = 1 << 20;
            for _ in 0..M {
                sum += blocks(rng_next(&mut t), RATE, size);
            }
            let p = -(-(size as f64) / RATE as f64).exp_m1();
            let (mean, want) = (sum as f64 / M as f64, 1.0 / p);
            let sd = ((1.0 - p) / (p * p) / M as f64).sqrt();
            assert!(
                (mean - want).abs() < 4.0 * sd,
                "blocks of {size}: {mean}, want {want}"
            );
        }
    }

    /// The lazy peak (`touch`, `peak_of`) against a model that copies every
    /// stack's live bytes at each recorded peak (whenever the total passes
    /// the previous one by more than `1 / 2^PEAK_SHIFT`), on two shards and
    /// totals of its own with many stacks, samples made in either shard and
    /// freed at random.
    #[test]
    fn peak_per_stack_against_a_model() {
        configure(true, 4096, null_mut());
        prime();
        let shards = [Shard::new(), Shard::new()];
        let tot = Totals::new();
        const NS: usize = 300;
        let (mut live, mut peak) = ([0u64; NS], [0u64; NS]);
        let mut ids = [0usize; NS];
        let mut blocks: Vec<(usize, usize, u64, usize)> = Vec::new();
        let (mut total, mut top, mut next) = (0u64, 0u64, 0u64);
        let mut x: u64 = 0x9abc_def1_2345_6789;
        let base = 0x6000_0000_0000usize;
        for i in 0..100_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Growing phases (new peaks often) and shrinking ones.
            let grow = (i / 5000) % 2 == 0;
            if !blocks.is_empty() && (x % 100 < if grow { 30 } else { 70 }) {
                let (a, s, w, k) = blocks.swap_remove((x >> 8) as usize % blocks.len());
                let sh = &shards[k];
                // SAFETY: the shard is this test's, used by this thread only.
                assert!(unsafe { remove(sh, &mut *sh.part.get(), &tot, a) });
                live[s] -= w;
                total -= w;
            } else {
                let s = (x >> 16) as usize % NS;
                let w = 1 + (x >> 32) % 10_000;
                let a = base + i * 16;
                let k = (x >> 48) as usize & 1;
                if ids[s] == 0 {
                    ids[s] = find_stack(&[0x1000 + s, 0x2000, 0x3000 + s % 7]);
                }
                let sh = &shards[k];
                // SAFETY: as above.
                unsafe { file(sh, &mut *sh.part.get(), &tot, a, w, ids[s]) };
                blocks.push((a, s, w, k));
                live[s] += w;
                total += w;
                if total >= next {
                    next = total + (total >> PEAK_SHIFT) + 1;
                    top = total;
                    peak = live;
                }
            }
        }
        assert_eq!(tot.live.load(Ordering::Relaxed), total);
        assert_eq!(tot.peak.total.load(Ordering::Relaxed), top);
        let epoch = tot.peak.epoch.load(Ordering::Relaxed);
        for s in 0..NS {
            let (mut l, mut p) = (0, 0);
            for sh in &shards {
                // SAFETY: as above; ids[s] is a stack's index + 1.
                let f = unsafe { &*(*sh.part.get()).figs.add(ids[s] - 1) };
                l += f.live_bytes;
                p += peak_of(f, epoch);
            }
            assert_eq!(l, live[s], "stack {}", s);
            assert_eq!(p, peak[s], "stack {}", s);
        }
        for (a, _, _, k) in blocks {
            let sh = &shards[k];
            // SAFETY: as above.
            unsafe { remove(sh, &mut *sh.part.get(), &tot, a) };
        }
        assert_eq!(tot.live.load(Ordering::Relaxed), 0);
    }

    /// Every live sample of the process's shards: address -> weight; and
    /// the shards' count of samples.
    fn live_samples() -> (std::collections::HashMap<usize, u64>, usize) {
        let _g = AllLocked::new();
        let (mut got, mut n) = (std::collections::HashMap::new(), 0);
        for (k, sh) in SHARD.iter().enumerate() {
            n += sh.nsamples.load(Ordering::Relaxed);
            // SAFETY: read under the shard's lock.
            let p = unsafe { &*sh.part.get() };
            if p.samples.is_null() {
                continue;
            }
            assert!(MAPPED.load(Ordering::Relaxed) & 1 << k != 0);
            assert!(p.slots <= SAMPLE_SLOTS);
            for i in 0..p.slots {
                // SAFETY: i < slots.
                let e = unsafe { *p.samples.add(i) };
                if e.addr != 0 {
                    assert!(
                        got.insert(e.addr, e.weight).is_none(),
                        "{:#x} twice",
                        e.addr
                    );
                }
            }
        }
        (got, n)
    }

    /// The sample tables against a model: random records and frees (many
    /// colliding in the probe sequences), then every live address is found
    /// and every freed one is gone; the live total matches. Then samples
    /// taken by two threads, one of which has exited, freed by this one
    /// (another shard's): none is lost or counted twice.
    #[test]
    fn samples_against_a_model() {
        configure(true, 4096, null_mut());
        prime();
        assert!(READY.load(Ordering::Relaxed));
        let mut live: std::collections::HashMap<usize, u64> = Default::default();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = 0x7000_0000_0000usize;
        for _ in 0..200_000 {
            let r = next();
            // Addresses from a small range: frequent reuse and collisions.
            let a = base + ((r as usize >> 8) % 60_000) * 16;
            if r & 1 == 0 || live.len() > 40_000 {
                // (Freeing an address never sampled has no effect.)
                live.remove(&a);
                freed_here(a as *mut u8);
            } else if let std::collections::hash_map::Entry::Vacant(v) = live.entry(a) {
                let n = 1 + (r as usize >> 40) % 5000;
                record(a as *mut u8, n);
                v.insert(weight(n));
            }
        }
        let (got, n) = live_samples();
        assert_eq!(n, live.len());
        assert_eq!(got, live);
        assert_eq!(
            TOTALS.live.load(Ordering::Relaxed),
            live.values().sum::<u64>()
        );
        // (The recorded peak: within 1 / 2^PEAK_SHIFT of the live total.)
        let peak = TOTALS.peak.total.load(Ordering::Relaxed);
        assert!(peak + (peak >> PEAK_SHIFT) >= TOTALS.live.load(Ordering::Relaxed));
        // Two threads' samples: one exits, the other waits; this thread
        // frees both's (neither in its own shard).
        let take = |from: usize| {
            (0..5000usize)
                .map(|i| {
                    let a = 0x5000_0000_0000 + from * (1 << 30) + i * 64;
                    record(a as *mut u8, 1000 + i);
                    (a, weight(1000 + i))
                })
                .collect::<Vec<_>>()
        };
        let gone = std::thread::spawn(move || take(1)).join().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let waiting = std::thread::spawn(move || {
            tx.send(take(2)).unwrap();
            done_rx.recv().unwrap();
        });
        let other = rx.recv().unwrap();
        let (got, _) = live_samples();
        for (a, w) in gone.iter().chain(&other) {
            assert_eq!(got.get(a), Some(w), "{:#x}", a);
        }
        let before = TOTALS.live.load(Ordering::Relaxed);
        let all: u64 = gone.iter().chain(&other).map(|e| e.1).sum();
        for (a, _) in gone.iter().chain(&other) {
            freed_here(*a as *mut u8);
        }
        done_tx.send(()).unwrap();
        waiting.join().unwrap();
        assert_eq!(TOTALS.live.load(Ordering::Relaxed), before - all);
        let (got, n) = live_samples();
        assert_eq!(n, live.len());
        assert_eq!(got, live);
    }

    /// Appends `backtrace`'s and `unwind`'s stacks, both walked from the
    /// caller's frame (inlined into it).
    #[inline(always)]
    fn walk_both(out: &mut Vec<(Vec<usize>, Vec<usize>)>) {
        let mut a = [0usize; RAW_FRAMES];
        let mut b = [MaybeUninit::new(0usize); RAW_FRAMES];
        // SAFETY: a holds RAW_FRAMES entries.
        let na = unsafe { backtrace(a.as_mut_ptr() as *mut *mut libc::c_void, RAW_FRAMES as i32) }
            as usize;
        let nb = unwind(&mut b).expect("a rule not handled");
        // SAFETY: b was initialized (to zero).
        let b: Vec<usize> = b[..nb].iter().map(|x| unsafe { x.assume_init() }).collect();
        out.push((a[..na].to_vec(), b));
    }

    /// The walks' memo: two callers at the same depth (the same stack
    /// pointer where the walk starts, other return addresses) alternate,
    /// each time with `backtrace`'s frames, never the other caller's.
    #[test]
    fn memo_tells_callers_apart() {
        configure(true, 4096, null_mut());
        prime();
        #[inline(never)]
        fn leaf(out: &mut Vec<(Vec<usize>, Vec<usize>)>) {
            walk_both(out);
        }
        #[inline(never)]
        fn via_a(out: &mut Vec<(Vec<usize>, Vec<usize>)>) {
            leaf(out);
            core::hint::black_box(1);
        }
        #[inline(never)]
        fn via_b(out: &mut Vec<(Vec<usize>, Vec<usize>)>) {
            leaf(out);
            core::hint::black_box(2);
        }
        let mut out = Vec::new();
        for i in 0..8 {
            if i % 2 == 0 {
                via_a(&mut out);
            } else {
                via_b(&mut out);
            }
        }
        for (i, (a, b)) in out.iter().enumerate() {
            assert_eq!(
                a[1..],
                b[2..],
                "call {}: backtrace {:x?} unwind {:x?}",
                i,
                a,
                b
            );
        }
        // The two callers' stacks differ (and so were told apart).
        assert_ne!(out[0].1, out[1].1);
    }

    /// The stacks `unwind` finds are `backtrace`'s, from nested calls
    /// (twice: the second time from the rule table).
    #[test]
    fn unwinds_as_backtrace() {
        configure(true, 4096, null_mut());
        prime();
        assert!(FIND_FDE.load(Ordering::Relaxed) != 0);
        #[inline(never)]
        fn both(depth: usize, out: &mut Vec<(Vec<usize>, Vec<usize>)>) -> usize {
            if depth > 0 {
                // (Not a tail call: the frames stay.)
                return both(depth - 1, out) + core::hint::black_box(1);
            }
            walk_both(out);
            0
        }
        let mut out = Vec::new();
        for d in [0, 3, 9, 3] {
            both(d, &mut out);
        }
        for (a, b) in &out {
            // a[0] returns into `both`, b[0] is in `unwind`: the callers
            // from there on are the same frames.
            assert!(a.len() > 3, "{:x?}", a);
            assert_eq!(a[1..], b[2..], "backtrace {:x?} unwind {:x?}", a, b);
        }
    }

    /// A rule packed for the table reads back through the accessors `walk`
    /// uses; offsets that do not fit do not pack.
    #[test]
    fn packed_rules_read_back() {
        for &(cfa_rbp, cfa, ra, rbp, end, lasting) in &[
            (false, 8i64, -8i64, 0i64, false, true),
            (true, 16, -8, -16, false, false),
            (false, 0x7fff_fff8, -32760, 32760, false, true),
            (false, -24, 8, -4096, false, false),
            (false, 0, 0, 0, true, false),
        ] {
            let r = Rule {
                cfa_rbp,
                cfa,
                ra,
                rbp,
                end,
                lasting,
            };
            let w = r.pack().expect("packs");
            assert_eq!(w & W_CFA_RBP != 0, cfa_rbp);
            assert_eq!(w & W_END != 0, end);
            assert_eq!(w & W_LASTING != 0, lasting);
            assert_eq!(w_cfa(w) as i64, cfa);
            assert_eq!(w_ra(w) as i64, ra);
            assert_eq!(w_rbp(w) as i64, rbp);
        }
        let r = Rule {
            rbp: -12,
            ..Rule::END
        };
        assert_eq!(r.pack(), None);
        let r = Rule {
            cfa: 1 << 40,
            ..Rule::END
        };
        assert_eq!(r.pack(), None);
    }

    /// `frame_ok` is the three tests it stands for.
    #[test]
    fn frame_test() {
        let sp = 0x7fff_0000_1000usize;
        for d in [
            0usize,
            1,
            7,
            8,
            9,
            16,
            24,
            4096,
            (1 << 30) - 8,
            (1 << 30) - 1,
            1 << 30,
            (1 << 30) + 8,
        ] {
            for cfa in [sp.wrapping_add(d), sp.wrapping_sub(d)] {
                let want = cfa > sp && cfa - sp <= 1 << 30 && cfa & 7 == 0;
                assert_eq!(frame_ok(sp, cfa), want, "cfa {:#x}", cfa);
            }
        }
    }

    #[test]
    fn weights_are_size_over_probability() {
        // Small blocks stand for about the rate; big ones for themselves.
        assert!((weight_at(1, 1, 1000) as i64 - 1000).abs() <= 1);
        assert_eq!(weight_at(1_000_000, 1_000_000, 1000), 1_000_000);
        let w = weight_at(1000, 1000, 1000) as f64;
        assert!((w - 1000.0 / (1.0 - (-1.0f64).exp())).abs() < 1.0);
        // Both forms (a block counted as its own size below a quarter of
        // the rate, any other) against `n / (1 - exp(-x))`.
        let rate = 512 << 10;
        for n in [
            1usize, 100, 4096, 20_000, 32_767, 32_768, 32_769, 65_536, 131_071, 131_072, 131_073,
            400_000,
        ] {
            for counted in [n, n + 16, 4096] {
                let x = counted as f64 / rate as f64;
                let want = n as f64 / -(-x).exp_m1();
                let got = weight_at(n, counted, rate) as f64;
                assert!((got - want).abs() <= 0.5 + 1e-9 * want, "{} {}", n, counted);
            }
        }
    }
}
