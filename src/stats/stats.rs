//! Figures about the heap and the heap dump, all formatted on the stack.
//!
//! `mallinfo2` maps our figures to glibc's fields: `arena` = bytes of heap
//! regions (break + mmap'd regions), `ordblks`/`fordblks` = free chunks/bytes,
//! `hblks`/`hblkhd` = blocks mapped on their own, `uordblks` = bytes in use in
//! the regions, `keepcost` = free bytes at the tail of the break.

use crate::chunk::*;
use crate::heap::HEAP;
use crate::large;
use crate::os;
use crate::region::{KIND_BRK, KIND_MMAP};
use crate::report::StackBuf;
use crate::tlsf::{FL_COUNT, SL_COUNT};
use core::fmt::Write;
use core::sync::atomic::Ordering;

/// `struct memalloc_stats` of memalloc.h.
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct Stats {
    /// Bytes in blocks in use now (small blocks counted by block, not zone).
    pub in_use: usize,
    /// The most `in_use` has been.
    pub peak_in_use: usize,
    /// Bytes of the heap: `brk_bytes + mmap_region_bytes`.
    pub heap_bytes: usize,
    /// Bytes of the heap on the program break.
    pub brk_bytes: usize,
    /// Bytes of the heap in mmap'd regions (when the break cannot grow).
    pub mmap_region_bytes: usize,
    /// Bytes in blocks mapped on their own (at or above the mmap threshold).
    pub large_bytes: usize,
    /// Number of blocks mapped on their own.
    pub large_count: usize,
    /// Free bytes in the heap's index.
    pub free_bytes: usize,
    /// Free blocks in the heap's index.
    pub free_blocks: usize,
    /// Bytes given back to the OS so far.
    pub released_bytes: usize,
    /// Memory system calls made so far.
    pub syscalls: usize,
    /// Bytes held in the medium caches (each thread's as of its last slow
    /// path, and the shared lists), not counted in `in_use`.
    pub medium_cached: usize,
    /// Idle threads' medium caches taken back so far (`MEMALLOC_IDLE_MS`).
    pub medium_reclaims: usize,
}

/// glibc's `struct mallinfo2`.
#[repr(C)]
pub struct Mallinfo2 {
    pub arena: usize,
    pub ordblks: usize,
    pub smblks: usize,
    pub hblks: usize,
    pub hblkhd: usize,
    pub usmblks: usize,
    pub fsmblks: usize,
    pub uordblks: usize,
    pub fordblks: usize,
    pub keepcost: usize,
}

/// glibc's `struct mallinfo` (int fields).
#[repr(C)]
pub struct Mallinfo {
    pub arena: i32,
    pub ordblks: i32,
    pub smblks: i32,
    pub hblks: i32,
    pub hblkhd: i32,
    pub usmblks: i32,
    pub fsmblks: i32,
    pub uordblks: i32,
    pub fordblks: i32,
    pub keepcost: i32,
}

/// The heap's figures now.
pub fn stats() -> Stats {
    let (large_count, large_bytes) = large::totals();
    // Chunks waiting in the medium caches are not the program's.
    crate::mcache::publish_mine();
    let cached = crate::mcache::totals().0;
    let mut s = HEAP.with(|h| Stats {
        in_use: small_adjusted_in_use(h).saturating_sub(cached),
        peak_in_use: crate::events::peak(),
        heap_bytes: h.brk_bytes + h.mmap_region_bytes,
        brk_bytes: h.brk_bytes,
        mmap_region_bytes: h.mmap_region_bytes,
        large_bytes: 0,
        large_count: 0,
        free_bytes: h.tlsf.free_bytes,
        free_blocks: h.tlsf.free_count,
        released_bytes: h.released,
        syscalls: 0,
        medium_cached: cached,
        medium_reclaims: crate::mcache::reclaims().0,
    });
    s.in_use += large_bytes;
    s.released_bytes += large::released();
    s.peak_in_use = s.peak_in_use.max(s.in_use);
    s.large_bytes = large_bytes;
    s.large_count = large_count;
    s.syscalls = os::SYSCALLS.load(core::sync::atomic::Ordering::Relaxed);
    s
}

/// Bytes in use in the heap regions, counting zone blocks in use rather
/// than whole zones (and medium caches' chunks as in use: see `stats`), and
/// not the medium caches' reserves, uncut (`heap::reserved`).
fn small_adjusted_in_use(h: &crate::heap::Heap) -> usize {
    let (_, zone_chunks, zone_used) = crate::cache::zone_usage(h);
    (h.in_use - zone_chunks + zone_used).saturating_sub(crate::heap::reserved())
}

pub fn mallinfo2() -> Mallinfo2 {
    let (hblks, hblkhd) = large::totals();
    HEAP.with(|h| Mallinfo2 {
        arena: h.brk_bytes + h.mmap_region_bytes,
        ordblks: h.tlsf.free_count,
        smblks: 0,
        hblks,
        hblkhd,
        usmblks: 0,
        fsmblks: 0,
        uordblks: small_adjusted_in_use(h),
        fordblks: h.tlsf.free_bytes,
        keepcost: h.brk_tail_free(),
    })
}

pub fn mallinfo() -> Mallinfo {
    let m = mallinfo2();
    let c = |x: usize| x.min(i32::MAX as usize) as i32;
    Mallinfo {
        arena: c(m.arena),
        ordblks: c(m.ordblks),
        smblks: c(m.smblks),
        hblks: c(m.hblks),
        hblkhd: c(m.hblkhd),
        usmblks: c(m.usmblks),
        fsmblks: c(m.fsmblks),
        uordblks: c(m.uordblks),
        fordblks: c(m.fordblks),
        keepcost: c(m.keepcost),
    }
}

/// malloc_stats: glibc's layout on stderr.
pub fn malloc_stats() {
    let s = stats();
    let mut b = StackBuf::<1024>::new(2);
    let _ = write!(
        b,
        "Arena 0:\nsystem bytes     = {:>10}\nin use bytes     = {:>10}\nTotal (incl. mmap):\nsystem bytes     = {:>10}\nin use bytes     = {:>10}\nmax mmap regions = {:>10}\nmax mmap bytes   = {:>10}\n",
        s.heap_bytes,
        s.in_use - s.large_bytes,
        s.heap_bytes + s.large_bytes,
        s.in_use,
        s.large_count,
        s.large_bytes
    );
}

/// malloc_info: glibc's XML shape, written with fwrite outside our locks.
///
/// # Safety
/// `fp` is null or an open stdio stream.
pub unsafe fn malloc_info(options: i32, fp: *mut libc::FILE) -> i32 {
    if options != 0 {
        os::set_errno(libc::EINVAL);
        return -1;
    }
    let s = stats();
    let mut b = StackBuf::<2048>::new(-1);
    let _ = write!(
        b,
        "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n</sizes>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n<total type=\"rest\" count=\"{}\" size=\"{}\"/>\n<system type=\"current\" size=\"{}\"/>\n<system type=\"max\" size=\"{}\"/>\n<aspace type=\"total\" size=\"{}\"/>\n<aspace type=\"mprotect\" size=\"{}\"/>\n</heap>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n<total type=\"rest\" count=\"{}\" size=\"{}\"/>\n<total type=\"mmap\" count=\"{}\" size=\"{}\"/>\n<system type=\"current\" size=\"{}\"/>\n<system type=\"max\" size=\"{}\"/>\n<aspace type=\"total\" size=\"{}\"/>\n<aspace type=\"mprotect\" size=\"{}\"/>\n</malloc>\n",
        s.free_blocks, s.free_bytes, s.heap_bytes, s.heap_bytes, s.heap_bytes, s.heap_bytes,
        s.free_blocks, s.free_bytes, s.large_count, s.large_bytes,
        s.heap_bytes + s.large_bytes, s.heap_bytes + s.large_bytes,
        s.heap_bytes + s.large_bytes, s.heap_bytes + s.large_bytes
    );
    if fp.is_null() {
        return 0;
    }
    let bytes = b.as_bytes();
    libc::fwrite(bytes.as_ptr() as *const libc::c_void, 1, bytes.len(), fp);
    0
}

// ---- MEMALLOC_TRACE ----------------------------------------------------------

/// Opens the trace file named by MEMALLOC_TRACE (from the constructor).
pub fn trace_open() {
    let path = crate::config::trace_path();
    if path.is_null() {
        return;
    }
    // SAFETY: path is a NUL-terminated string from the environment.
    let fd = unsafe {
        libc::open(
            path as *const libc::c_char,
            libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        crate::report::warn(format_args!(
            "MEMALLOC_TRACE: cannot open the file, no trace"
        ));
        return;
    }
    // Appended, not truncated: every process of a command (a shell and its
    // children) adds its own run, each opened by a `# pid` line.
    let mut b = StackBuf::<64>::new(-1);
    // SAFETY: getpid has no preconditions.
    let _ = writeln!(b, "# pid {}", unsafe { libc::getpid() });
    os::write_all(fd, b.as_bytes());
    crate::events::trace_start(fd);
}

// ---- exit report -------------------------------------------------------------

/// Registers the exit report if MEMALLOC_STATS, MEMALLOC_DEBUG, MEMALLOC_DUMP
/// or MEMALLOC_TRACE asks for one (from the constructor: atexit may
/// allocate).
pub fn register_exit() {
    if crate::config::stats()
        || crate::config::debug()
        || !crate::config::dump_path().is_null()
        || crate::events::tracing()
        || crate::prof::active()
    {
        crate::report::keep_stderr();
        extern "C" fn at_exit() {
            exit_report();
        }
        // SAFETY: registering a plain function.
        unsafe { libc::atexit(at_exit) };
    }
}

fn exit_report() {
    // Debug mode: every block still in quarantine is checked for writes
    // after free before the process goes.
    if crate::config::debug() {
        crate::debug::drain();
    }
    // The trace's last line: in-use bytes change without the heap's size
    // changing, so sample them once more.
    crate::events::trace_event();
    crate::prof::exit_report();
    if crate::config::stats() {
        summary(crate::report::err_fd());
    }
    let path = crate::config::dump_path();
    if !path.is_null() {
        // SAFETY: path is a NUL-terminated string from the environment.
        let fd = unsafe {
            libc::open(
                path as *const libc::c_char,
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd >= 0 {
            dump(fd);
            // SAFETY: closing the descriptor we opened.
            unsafe { libc::close(fd) };
        } else {
            crate::report::warn(format_args!("MEMALLOC_DUMP: cannot open the file, no dump"));
        }
    }
}

/// The MEMALLOC_STATS summary.
pub fn summary(fd: i32) {
    let s = stats();
    let allocs = crate::cache::class_allocs();
    let (medium, large_n) = (
        crate::events::MEDIUM_ALLOCS.load(Ordering::Relaxed),
        crate::events::LARGE_ALLOCS.load(Ordering::Relaxed),
    );
    let mut b = StackBuf::<4096>::new(fd);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let _ = writeln!(b, "memalloc statistics (pid {})", pid);
    let _ = writeln!(b, "  in use now         {:>14} bytes", s.in_use);
    let _ = writeln!(b, "  in use at peak     {:>14} bytes", s.peak_in_use);
    let _ = writeln!(b, "  heap (break)       {:>14} bytes", s.brk_bytes);
    let _ = writeln!(b, "  heap (mmap'd)      {:>14} bytes", s.mmap_region_bytes);
    let _ = writeln!(
        b,
        "  large blocks       {:>14} bytes in {} blocks",
        s.large_bytes, s.large_count
    );
    let _ = writeln!(
        b,
        "  kept for reuse     {:>14} bytes of freed large blocks",
        crate::large::kept_bytes()
    );
    let _ = writeln!(
        b,
        "  free in heap       {:>14} bytes in {} blocks",
        s.free_bytes, s.free_blocks
    );
    let _ = writeln!(b, "  returned to the OS {:>14} bytes", s.released_bytes);
    let _ = writeln!(b, "  system calls       {:>14}", s.syscalls);
    let _ = writeln!(b, "  allocations by size class:");
    for (i, n) in allocs.iter().enumerate() {
        if *n != 0 {
            let _ = writeln!(
                b,
                "    <= {:>5} bytes  {:>14}",
                crate::cache::CLASS_SIZE[i],
                n
            );
        }
    }
    crate::mcache::publish_mine();
    let (cached, peak, mc_allocs, refills, flushes) = crate::mcache::totals();
    let _ = writeln!(b, "    medium (cached)  {:>14}", mc_allocs);
    let _ = writeln!(b, "    medium (heap)    {:>14}", medium);
    let _ = writeln!(b, "    large (mmap)     {:>14}", large_n);
    let _ = writeln!(
        b,
        "  medium caches      {:>14} bytes held, one thread's most {} (cap {}); {} refills ({} from the heap), {} flushes ({} to the heap), at most {} chunks in one",
        cached,
        peak,
        crate::mcache::lone_cap(),
        refills,
        crate::mcache::heap_trips().0,
        flushes,
        crate::mcache::heap_trips().1,
        crate::mcache::flush_most()
    );
    let _ = writeln!(
        b,
        "  zones adopted      {:>14} by a malloc, {} by a free (zones of exited threads)",
        crate::cache::ADOPTED[0].load(Ordering::Relaxed),
        crate::cache::ADOPTED[1].load(Ordering::Relaxed)
    );
    let (reclaims, reclaimed) = crate::mcache::reclaims();
    let _ = writeln!(
        b,
        "  idle caches        {:>14} taken back, {} bytes (after {} ms idle)",
        reclaims,
        reclaimed,
        crate::config::idle_ns() / 1_000_000
    );
    let ops = allocs.iter().sum::<usize>() + mc_allocs + medium + large_n;
    let contended = crate::lock::CONTENDED.load(Ordering::Relaxed);
    let per_m = |x: usize| (x as u128 * 1_000_000 / ops.max(1) as u128) as usize;
    let _ = writeln!(
        b,
        "  contended locks    {:>14} ({} per million allocations, the heap's {}, shared lists' {}, shards passed {}; system calls {} per million)",
        contended,
        per_m(contended),
        per_m(crate::heap::HEAP_CONTENDED.load(Ordering::Relaxed)),
        per_m(crate::mcache::CENTRAL_CONTENDED.load(Ordering::Relaxed)),
        per_m(crate::mcache::shard_skips()),
        per_m(s.syscalls)
    );
}

/// memalloc_dump: every region and chunk, the mapped blocks and the TLSF
/// bitmaps. Holds the heap lock while writing.
pub fn dump(fd: i32) {
    let mut b = StackBuf::<4096>::new(fd);
    let _ = writeln!(b, "memalloc heap dump");
    // per class: (zones, blocks used, capacity)
    let mut zones = [(0usize, 0usize, 0usize); crate::cache::NCLASS];
    HEAP.with(|h| {
        // SAFETY: under the heap lock every region and chunk is consistent
        // (the reserves' sizes once synced).
        unsafe {
            h.sync_reserves();
            let mut r = h.regions.head;
            while !r.is_null() {
                let kind = match (*r).kind {
                    KIND_BRK => "brk",
                    KIND_MMAP => "mmap",
                    _ => "pool",
                };
                let _ = writeln!(
                    b,
                    "region {:p}-{:p} {} {} bytes",
                    (*r).start,
                    (*r).end,
                    kind,
                    (*r).span()
                );
                let mut c = (*r).start as *mut Chunk;
                while !is_sentinel(c) {
                    let u = to_user(c);
                    if is_free(c) {
                        let _ = writeln!(b, "  block {:p} size {} free", u, size(c));
                    } else if crate::zonemap::is_zone(u) {
                        let z = crate::cache::zone_at(c as usize);
                        let (cls, bs) = ((*z).class as usize, (*z).block_size as usize);
                        let used = core::ptr::read_volatile(&(*z).used) as usize;
                        let cap = (*z).capacity as usize;
                        let _ = writeln!(
                            b,
                            "  block {:p} size {} zone class {} block {} used {}/{}",
                            u,
                            size(c),
                            cls,
                            bs,
                            used,
                            cap
                        );
                        zones[cls].0 += 1;
                        zones[cls].1 += used;
                        zones[cls].2 += cap;
                    } else {
                        let _ = writeln!(b, "  block {:p} size {} used", u, size(c));
                    }
                    c = next(c);
                }
                r = (*r).next;
            }
            for (cls, z) in zones.iter().enumerate() {
                if z.0 != 0 {
                    let _ = writeln!(
                        b,
                        "zones class {} block {}: {} zones, {}/{} blocks used",
                        cls,
                        crate::cache::CLASS_SIZE[cls],
                        z.0,
                        z.1,
                        z.2
                    );
                }
            }
            let t = &h.tlsf;
            let _ = writeln!(
                b,
                "tlsf free blocks {} free bytes {} fl_bitmap {:#066b}",
                t.free_count,
                t.free_bytes,
                t.fl_bitmap()
            );
            for fl in 0..FL_COUNT {
                let sl = t.sl_bitmap(fl);
                if sl != 0 {
                    let _ = writeln!(b, "  fl {:2} sl_bitmap {:#034b}", fl, sl);
                }
            }
            let _ = SL_COUNT;
        }
    });
    large::for_each(|p, usable, len| {
        let _ = writeln!(
            b,
            "large block {:p} size {} used (mapping {} bytes)",
            p, usable, len
        );
    });
    b.flush();
}
