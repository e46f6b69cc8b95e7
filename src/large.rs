//! Blocks mapped on their own: requests at or above the mmap threshold.
//!
//! Layout of one mapping (`base` page-aligned):
//! ```text
//!   base + 0    LargeHdr { next, prev, len, tag, off } list links for dump/stats
//!   c = u - 16  prev_size = c - base, head = (len - (c - base)) | MMAPPED | MARK
//!   u           user pointer (aligned as requested), usable to base + len
//! ```
//! free unmaps the whole mapping; realloc resizes it with `mremap`, which may
//! move it. Costs one system call per operation; the list lock is held only
//! to link and unlink (and across `mremap`, which moves a linked header).

use crate::chunk::*;
use crate::lock::Lock;
use crate::os;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

#[repr(C)]
struct LargeHdr {
    next: *mut LargeHdr,
    prev: *mut LargeHdr,
    len: usize,
    tag: usize,
    /// From `base` to the chunk header.
    off: usize,
    /// The requested size (kept for debug mode).
    req: usize,
}

/// From the mapping base to the user pointer when no alignment is asked.
const LEAD: usize = 64;
struct List {
    head: *mut LargeHdr,
    count: usize,
    bytes: usize,
}

static LOCK: Lock = Lock::new();
/// Bytes mapped for large blocks (mirrors LIST.bytes, readable without the lock).
static BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes unmapped (or given back by a shrinking mremap) so far.
static RELEASED: AtomicUsize = AtomicUsize::new(0);

/// Bytes of large blocks given back to the OS so far.
pub fn released() -> usize {
    RELEASED.load(Ordering::Relaxed)
}

/// Bytes mapped for large blocks now.
#[inline]
pub fn bytes() -> usize {
    BYTES.load(Ordering::Relaxed)
}
static mut LIST: List = List {
    head: null_mut(),
    count: 0,
    bytes: 0,
};

/// The large-block lock (for the fork handlers).
pub fn lock() -> &'static Lock {
    &LOCK
}

/// The mapping header's check word: a keyed hash of its address.
#[inline]
fn tag_of(h: *const LargeHdr) -> usize {
    ((h as usize) ^ crate::guard::tag_key()).wrapping_mul(0xff51_afd7_ed55_8ccd)
}

unsafe fn link(h: *mut LargeHdr) {
    let _g = LOCK.guard();
    // SAFETY: LIST is only touched under LOCK.
    let list = &mut *core::ptr::addr_of_mut!(LIST);
    (*h).prev = null_mut();
    (*h).next = list.head;
    if !list.head.is_null() {
        (*list.head).prev = h;
    }
    list.head = h;
    list.count += 1;
    list.bytes += (*h).len;
    BYTES.store(list.bytes, Ordering::Relaxed);
    crate::stats::note_peak(list.bytes + crate::heap::in_use_hint());
}

/// Unlinks `h`; the caller holds LOCK.
unsafe fn unlink_locked(h: *mut LargeHdr) {
    let list = &mut *core::ptr::addr_of_mut!(LIST);
    if (*h).prev.is_null() {
        list.head = (*h).next;
    } else {
        (*(*h).prev).next = (*h).next;
    }
    if !(*h).next.is_null() {
        (*(*h).next).prev = (*h).prev;
    }
    list.count -= 1;
    list.bytes -= (*h).len;
    BYTES.store(list.bytes, Ordering::Relaxed);
}

/// Maps a block of `n` usable bytes whose user pointer is aligned to `align`
/// (a power of two). Null on failure. The memory is zeroed.
pub fn alloc(n: usize, align: usize) -> *mut u8 {
    if n > MAX_REQUEST || align > MAX_REQUEST {
        return null_mut();
    }
    crate::config::init();
    crate::stats::LARGE_ALLOCS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: we own the fresh mappings we cut and write.
    unsafe {
        let (base, len, user);
        if align <= ALIGN {
            len = align_up(n + LEAD, os::PAGE);
            base = os::map(len);
            if base.is_null() {
                return null_mut();
            }
            user = base.add(LEAD);
        } else {
            let over = align_up(n + LEAD + align + os::PAGE, os::PAGE);
            let map = os::map(over);
            if map.is_null() {
                return null_mut();
            }
            let u = align_up(map as usize + LEAD, align);
            let b = (u - LEAD) & !(os::PAGE - 1);
            let e = align_up(u + n, os::PAGE);
            os::unmap(map, b - map as usize);
            os::unmap(e as *mut u8, map as usize + over - e);
            base = b as *mut u8;
            len = e - b;
            user = u as *mut u8;
        }
        if !crate::zonemap::add_ours(base, base.add(len)) {
            os::unmap(base, len);
            return null_mut();
        }
        finish(base, len, user, n)
    }
}

/// Writes the headers of a new mapping and links it.
unsafe fn finish(base: *mut u8, len: usize, user: *mut u8, n: usize) -> *mut u8 {
    {
        let h = base as *mut LargeHdr;
        (*h).len = len;
        (*h).tag = tag_of(h);
        (*h).req = n;
        let c = from_user(user);
        let off = c as usize - base as usize;
        (*h).off = off;
        (*c).prev_size = off;
        set_head(c, (len - off) | MMAPPED | MARK);
        link(h);
        crate::stats::trace_event();
        user
    }
}

/// A block of `n` bytes (debug mode) that ends right before a PROT_NONE
/// guard page, so that an overflow faults at once. Null on failure.
pub fn alloc_guarded(n: usize, align: usize) -> *mut u8 {
    if n > MAX_REQUEST || align > MAX_REQUEST {
        return null_mut();
    }
    crate::config::init();
    // SAFETY: we own the fresh mapping we cut and write.
    unsafe {
        let body = align_up(n + LEAD + align + ALIGN, os::PAGE);
        let len = body + os::PAGE;
        let base = os::map(len);
        if base.is_null() {
            return null_mut();
        }
        let guard = base.add(body);
        if !os::protect_none(guard, os::PAGE) || !crate::zonemap::add_ours(base, base.add(len)) {
            os::unmap(base, len);
            return null_mut();
        }
        let user = ((guard as usize - align_up(n, ALIGN)) & !(align - 1)) as *mut u8;
        finish(base, len, user, n)
    }
}

/// The size requested for large block `c` (debug mode's usable size).
///
/// # Safety
/// `c` carries MMAPPED and came from this module.
pub unsafe fn requested(c: *mut Chunk) -> usize {
    (*header_of(c)).req
}

/// The mapping header of large chunk `c`, after checking it; reports and
/// aborts on a forged or corrupted header.
unsafe fn header_of(c: *mut Chunk) -> *mut LargeHdr {
    let off = (*c).prev_size;
    let base = (c as usize).wrapping_sub(off);
    if off < LEAD - HDR || base % os::PAGE != 0 || !crate::zonemap::is_ours(base as *const u8) {
        crate::report::fatal("invalid pointer (corrupted large block header)", to_user(c));
    }
    let h = base as *mut LargeHdr;
    if (*h).tag != tag_of(h) || (*h).off != off || (*h).len != off + size(c) {
        crate::report::fatal("invalid pointer (corrupted large block header)", to_user(c));
    }
    h
}

/// Usable bytes of large chunk `c`.
///
/// # Safety
/// `c` carries MMAPPED.
pub unsafe fn usable(c: *mut Chunk) -> usize {
    size(c) - HDR
}

/// Unmaps large chunk `c`.
///
/// # Safety
/// `c` carries MMAPPED and came from [`alloc`].
pub unsafe fn free(c: *mut Chunk) {
    let h = header_of(c);
    let len = (*h).len;
    crate::config::raise_thresholds(size(c) - HDR);
    {
        let _g = LOCK.guard();
        unlink_locked(h);
    }
    (*h).tag = 0;
    crate::zonemap::remove_ours(h as *mut u8, (h as *mut u8).add(len));
    os::unmap(h as *mut u8, len);
    RELEASED.fetch_add(len, Ordering::Relaxed);
    crate::stats::trace_event();
}

/// Resizes large chunk `c` to hold `n` bytes with `mremap`; returns the new
/// user pointer, or null (the block unchanged) on failure.
///
/// # Safety
/// `c` carries MMAPPED and came from [`alloc`].
pub unsafe fn realloc(c: *mut Chunk, n: usize) -> *mut u8 {
    let h = header_of(c);
    let off = c as usize - h as usize;
    let len = (*h).len;
    let new_len = match n.checked_add(off + HDR) {
        Some(x) if n <= MAX_REQUEST => align_up(x, os::PAGE),
        _ => return null_mut(),
    };
    if new_len == len {
        return to_user(c);
    }
    let _g = LOCK.guard();
    let nb = os::remap(h as *mut u8, len, new_len);
    if nb.is_null() {
        return null_mut();
    }
    crate::zonemap::remove_ours(h as *mut u8, (h as *mut u8).add(len));
    if !crate::zonemap::add_ours(nb, nb.add(new_len)) {
        crate::report::fatal_msg("out of memory for the address map");
    }
    let nh = nb as *mut LargeHdr;
    let list = &mut *core::ptr::addr_of_mut!(LIST);
    // Relink: the neighbours still point at the old address.
    if (*nh).prev.is_null() {
        list.head = nh;
    } else {
        (*(*nh).prev).next = nh;
    }
    if !(*nh).next.is_null() {
        (*(*nh).next).prev = nh;
    }
    list.bytes = list.bytes - len + new_len;
    if new_len < len {
        RELEASED.fetch_add(len - new_len, Ordering::Relaxed);
    }
    BYTES.store(list.bytes, Ordering::Relaxed);
    crate::stats::note_peak(list.bytes + crate::heap::in_use_hint());
    (*nh).len = new_len;
    (*nh).tag = tag_of(nh);
    let nc = nb.add(off) as *mut Chunk;
    set_head(nc, (new_len - off) | MMAPPED | MARK);
    drop(_g);
    crate::stats::trace_event();
    to_user(nc)
}

/// (count, bytes) of the mapped blocks.
pub fn totals() -> (usize, usize) {
    let _g = LOCK.guard();
    // SAFETY: under LOCK.
    let list = unsafe { &*core::ptr::addr_of!(LIST) };
    (list.count, list.bytes)
}

/// Calls `f(user pointer, usable bytes, mapping length)` for every block,
/// under the list lock (`f` must not allocate).
pub fn for_each(mut f: impl FnMut(*mut u8, usize, usize)) {
    let _g = LOCK.guard();
    // SAFETY: under LOCK every listed header is a live mapping.
    unsafe {
        let mut h = (*core::ptr::addr_of!(LIST)).head;
        while !h.is_null() {
            let c = (h as *mut u8).add((*h).off) as *mut Chunk;
            f(to_user(c), usable(c), (*h).len);
            h = (*h).next;
        }
    }
}
