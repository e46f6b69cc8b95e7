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
use core::sync::atomic::{AtomicUsize, Ordering};

/// The most bytes ever held in heap chunks (zones counted whole) plus large
/// mappings: an upper bound of the bytes in use at any moment.
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Records a new total of bytes held; keeps the maximum.
#[inline]
pub fn note_peak(total: usize) {
    if total > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(total, Ordering::Relaxed);
    }
}

/// `struct memalloc_stats` of memalloc.h.
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct Stats {
    pub in_use: usize,
    pub peak_in_use: usize,
    pub heap_bytes: usize,
    pub brk_bytes: usize,
    pub mmap_region_bytes: usize,
    pub large_bytes: usize,
    pub large_count: usize,
    pub free_bytes: usize,
    pub free_blocks: usize,
    pub released_bytes: usize,
    pub syscalls: usize,
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
    let mut s = HEAP.with(|h| Stats {
        in_use: small_adjusted_in_use(h),
        peak_in_use: PEAK.load(Ordering::Relaxed),
        heap_bytes: h.brk_bytes + h.mmap_region_bytes,
        brk_bytes: h.brk_bytes,
        mmap_region_bytes: h.mmap_region_bytes,
        large_bytes: 0,
        large_count: 0,
        free_bytes: h.tlsf.free_bytes,
        free_blocks: h.tlsf.free_count,
        released_bytes: h.released,
        syscalls: 0,
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
/// than whole zones.
fn small_adjusted_in_use(h: &crate::heap::Heap) -> usize {
    let (_, zone_chunks, zone_used) = h.zone_usage();
    h.in_use - zone_chunks + zone_used
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

/// memalloc_dump: every region and chunk, the mapped blocks and the TLSF
/// bitmaps. Holds the heap lock while writing.
pub fn dump(fd: i32) {
    let mut b = StackBuf::<4096>::new(fd);
    let _ = writeln!(b, "memalloc heap dump");
    HEAP.with(|h| {
        // SAFETY: under the heap lock every region and chunk is consistent.
        unsafe {
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
                    let state = if is_free(c) { "free" } else { "used" };
                    let _ = writeln!(b, "  block {:p} size {} {}", to_user(c), size(c), state);
                    c = next(c);
                }
                r = (*r).next;
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
