//! Blocks mapped on their own: requests at or above the mmap threshold.
//!
//! Layout of one mapping (`base` page-aligned):
//! ```text
//!   base + 0    LargeHdr { next, prev, len, tag, off } list links for dump/stats
//!   c = u - 16  prev_size = c - base, head = (len - (c - base)) | MMAPPED | MARK
//!   u           user pointer (aligned as requested), usable to base + len
//! ```
//! realloc resizes a mapping with `mremap`, which may move it. free keeps a
//! mapping of 8 MiB or more (any size once the thresholds are fixed by
//! `mallopt` or the environment), resident, in a small cache of freed
//! mappings (`Kept`), from which later large requests are served (and the
//! heap's next mapped region: `take_for_heap`): a program
//! that frees and allocates large blocks in turn would otherwise fault in
//! every page of every block again (the cost that made this layer 3x slower
//! than tcmalloc, which keeps freed spans, on the `large` benchmark). The
//! cache is bounded (8 mappings,
//! `MEMALLOC_LARGE_CACHE` bytes, 64 MiB by default, 0 turns it off) and
//! aged: at every large operation, mappings kept for over a second are
//! unmapped; `malloc_trim` unmaps them all. The list lock is held only to
//! link and unlink, to take or put a kept mapping (and across `mremap`,
//! which moves a linked header); system calls on kept mappings are made
//! outside it.

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
    /// The requested size (kept for debug mode), with GROWN.
    req: usize,
}

/// In `LargeHdr::req`: the block grew by `realloc` (by `mremap`, or into a
/// kept mapping: [`alloc_kept`]). Such a mapping is kept when freed, at any
/// size: the program builds blocks by growth (a vector that doubles), and
/// its next growth can land on these resident pages instead of the heap's
/// fresh ones (`bench/realloc`'s vectors).
const GROWN: usize = 1 << 63;

/// From the mapping base to the user pointer when no alignment is asked.
const LEAD: usize = 64;

/// The end of what the zone map counts as ours of a mapping at `base` whose
/// chunk header is `off` bytes in: the mapping header and the chunk header,
/// all that `free`'s checks look up (`chunk_of`, `header_of`). Not the whole
/// mapping: the map spends 32 bytes per 64 KiB granule counted, so counting
/// every granule of a sparse block made the map's pages resident in
/// proportion to the block's address space (`sort` of a 50 MB file mallocs
/// 3.4 GB and touches 120 MB of it: 1.6 MiB of map). A pointer into a
/// block's later granules is then "not from memalloc" to `free`, as it is.
fn ours_end(base: *mut u8, off: usize) -> *mut u8 {
    base.wrapping_add(off + HDR)
}

struct List {
    head: *mut LargeHdr,
    count: usize,
    bytes: usize,
}

static LOCK: Lock = Lock::new();
// `events::large_bytes` mirrors LIST.bytes, readable without the lock.

/// Blocks mapped now (mirrors LIST.count, readable without the lock).
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// The chunk size from which a request gets a mapping of its own: the mmap
/// threshold, or none while M_MMAP_MAX blocks have one (glibc's
/// `n_mmaps_max`; 0 or less: never).
#[inline]
pub fn threshold() -> usize {
    let max = crate::config::mmap_max();
    if max <= 0 || COUNT.load(Ordering::Relaxed) >= max as usize {
        return usize::MAX;
    }
    crate::config::mmap_threshold()
}

/// Whether a request of chunk size `csize` aligned to `align` gets a
/// mapping of its own: at or above `threshold()`, or aligned beyond 1 MiB
/// (the break would grow by the alignment; a mapping's slack is unmapped),
/// unless no block may have one (M_MMAP_MAX, a threshold of -1).
#[inline]
pub fn wants_mapping(csize: usize, align: usize) -> bool {
    let from = threshold();
    csize >= from || (align > (1 << 20) && from != usize::MAX)
}

/// Bytes unmapped (or given back by a shrinking mremap) so far.
static RELEASED: AtomicUsize = AtomicUsize::new(0);

/// Bytes of large blocks given back to the OS so far.
pub fn released() -> usize {
    RELEASED.load(Ordering::Relaxed)
}

static mut LIST: List = List {
    head: null_mut(),
    count: 0,
    bytes: 0,
};

/// A freed mapping kept for reuse: still mapped, still counted in the
/// address map, its chunk marked FREE (so that a second free of its block
/// is reported as a double free).
#[derive(Clone, Copy)]
struct Kept {
    base: *mut u8,
    len: usize,
    /// When it was freed (`os::coarse_ns`).
    at: usize,
}

/// Mappings kept at most.
const KEEP_COUNT: usize = 8;
/// A mapping kept longer than this is unmapped at the next large operation,
/// or the next free of a heap block (`expire`).
const KEEP_NS: usize = 1_000_000_000;

struct KeptSet {
    e: [Kept; KEEP_COUNT],
    n: usize,
    bytes: usize,
}

/// Under LOCK.
static mut KEPT: KeptSet = KeptSet {
    e: [Kept {
        base: null_mut(),
        len: 0,
        at: 0,
    }; KEEP_COUNT],
    n: 0,
    bytes: 0,
};
/// Bytes kept (mirrors KEPT.bytes, readable without the lock).
static KEPT_BYTES: AtomicUsize = AtomicUsize::new(0);
/// When the oldest kept mapping was freed, 0 if none is kept (mirrors KEPT,
/// so that `expire` needs the lock only when one is due).
static OLDEST: AtomicUsize = AtomicUsize::new(0);

/// Bytes of freed large mappings kept for reuse now.
pub fn kept_bytes() -> usize {
    KEPT_BYTES.load(Ordering::Relaxed)
}

/// Mappings to unmap once LOCK is released.
struct Evicted {
    e: [Kept; KEEP_COUNT + 1],
    n: usize,
}

impl Evicted {
    const fn new() -> Self {
        Evicted {
            e: [Kept {
                base: null_mut(),
                len: 0,
                at: 0,
            }; KEEP_COUNT + 1],
            n: 0,
        }
    }
    fn push(&mut self, k: Kept) {
        self.e[self.n] = k;
        self.n += 1;
    }
    /// Unmaps them (without LOCK held).
    unsafe fn release(&self) {
        for k in &self.e[..self.n] {
            unmap_kept(*k);
        }
    }
}

unsafe fn unmap_kept(k: Kept) {
    // (Kept mappings are plain ones: their chunk header is at LEAD - HDR.)
    crate::zonemap::remove_ours(k.base, ours_end(k.base, LEAD - HDR));
    os::unmap(k.base, k.len);
    RELEASED.fetch_add(k.len, Ordering::Relaxed);
}

impl KeptSet {
    fn remove(&mut self, i: usize) -> Kept {
        let k = self.e[i];
        self.n -= 1;
        self.e[i] = self.e[self.n];
        self.bytes -= k.len;
        self.publish();
        k
    }
    /// Mirrors the set's bytes and oldest time for readers without LOCK.
    fn publish(&self) {
        KEPT_BYTES.store(self.bytes, Ordering::Relaxed);
        let oldest = if self.n == 0 {
            0
        } else {
            self.e[self.oldest()].at.max(1)
        };
        OLDEST.store(oldest, Ordering::Relaxed);
        crate::gate::set(crate::gate::KEPT, oldest != 0);
    }
    /// Moves the mappings older than KEEP_NS to `out`.
    fn age(&mut self, now: usize, out: &mut Evicted) {
        let mut i = 0;
        while i < self.n {
            if now.wrapping_sub(self.e[i].at) >= KEEP_NS {
                out.push(self.remove(i));
            } else {
                i += 1;
            }
        }
    }
    /// The oldest mapping.
    fn oldest(&self) -> usize {
        let mut o = 0;
        for i in 1..self.n {
            if self.e[i].at < self.e[o].at {
                o = i;
            }
        }
        o
    }
    /// For a mapping of `len` bytes: the smallest kept one at least as
    /// big and at most twice as big (used whole), else the biggest smaller
    /// one (grown: its resident pages serve the block's first bytes, only
    /// the rest fault in). A bigger one is left for a request of its own
    /// size. A smaller one of any size is grown: a table that doubles (a
    /// `HashMap`, a `Vec`) frees its old block after mapping the new one,
    /// so the block kept from the growth before is a quarter of the next
    /// request; left kept, it stayed resident beside both tables (`hashmap`
    /// of bench/rust: 37 MiB of its peak RSS), and its pages faulted in
    /// again in the fresh mapping.
    /// Without `grow`, only the first kind.
    fn best(&self, len: usize, grow: bool) -> Option<usize> {
        let (mut fit, mut under) = (None::<usize>, None::<usize>);
        for i in 0..self.n {
            let l = self.e[i].len;
            if l >= len {
                if l / 2 <= len && fit.is_none_or(|f| l < self.e[f].len) {
                    fit = Some(i);
                }
            } else if under.is_none_or(|u| l > self.e[u].len) {
                under = Some(i);
            }
        }
        if grow {
            fit.or(under)
        } else {
            fit
        }
    }
}

/// Takes a kept mapping for a block needing `len` bytes, resized to fit:
/// (base, its length, at least `len`, the bytes from `base` that may not be
/// zero: those it had before it grew). None if there is none (or resizing
/// failed). Without `grow`, only one big enough, used whole.
unsafe fn take_kept(len: usize, grow: bool) -> Option<(*mut u8, usize, usize)> {
    let mut ev = Evicted::new();
    let k = {
        let _g = LOCK.guard();
        let set = &mut *core::ptr::addr_of_mut!(KEPT);
        if set.n == 0 {
            return None;
        }
        set.age(os::coarse_ns(), &mut ev);
        set.best(len, grow).map(|i| set.remove(i))
    };
    ev.release();
    let k = k?;
    if k.len >= len {
        return Some((k.base, k.len, k.len));
    }
    // Too small: grow it (the pages it has stay resident; only the new ones
    // fault in).
    let nb = os::remap(k.base, k.len, len);
    if nb.is_null() {
        unmap_kept(k);
        return None;
    }
    crate::zonemap::remove_ours(k.base, ours_end(k.base, LEAD - HDR));
    if !crate::zonemap::add_ours(nb, ours_end(nb, LEAD - HDR)) {
        os::unmap(nb, len);
        RELEASED.fetch_add(len, Ordering::Relaxed);
        return None;
    }
    Some((nb, len, k.len))
}

/// A kept mapping for the heap to grow into (`heap::set_adopt`): the
/// smallest of `min` to `max` bytes, out of the set and out of the zone
/// map (its pages resident: a block the program wrote and freed); (base,
/// length). The heap's lock is held (HEAP before LOCK, as in `trim`).
pub fn take_for_heap(min: usize, max: usize) -> Option<(*mut u8, usize)> {
    if !kept_any() {
        return None;
    }
    let mut ev = Evicted::new();
    let k = {
        let _g = LOCK.guard();
        // SAFETY: KEPT is only touched under LOCK.
        let set = unsafe { &mut *core::ptr::addr_of_mut!(KEPT) };
        set.age(os::coarse_ns(), &mut ev);
        let mut best = None::<usize>;
        for i in 0..set.n {
            let l = set.e[i].len;
            if l >= min && l <= max && best.is_none_or(|b| l < set.e[b].len) {
                best = Some(i);
            }
        }
        best.map(|i| set.remove(i))
    };
    // SAFETY: the evicted mappings are ours and no longer listed anywhere.
    unsafe { ev.release() };
    let k = k?;
    // (Kept mappings are plain ones: their chunk header is at LEAD - HDR.)
    crate::zonemap::remove_ours(k.base, ours_end(k.base, LEAD - HDR));
    Some((k.base, k.len))
}

/// Keeps freed mapping `[base, base + len)` for reuse, or unmaps it.
unsafe fn keep(base: *mut u8, len: usize) {
    let cap = crate::config::large_cache();
    let mut ev = Evicted::new();
    let k = Kept {
        base,
        len,
        at: os::coarse_ns(),
    };
    if len > cap {
        ev.push(k);
    } else {
        let _g = LOCK.guard();
        let set = &mut *core::ptr::addr_of_mut!(KEPT);
        set.age(k.at, &mut ev);
        while set.n == KEEP_COUNT || set.bytes + len > cap {
            let o = set.oldest();
            ev.push(set.remove(o));
        }
        set.e[set.n] = k;
        set.n += 1;
        set.bytes += len;
        set.publish();
    }
    ev.release();
}

/// Unmaps the kept mappings older than KEEP_NS, if any. The heap's free
/// calls it: a program whose later blocks all come from the heap (freeing a
/// mapping raised the threshold past its size) makes no large operation that
/// would age them, and kept them resident for good. Costs one relaxed load
/// while nothing is kept.
#[inline]
pub fn expire() {
    if !kept_any() {
        return;
    }
    expire_due();
}

/// Are mappings kept (so that `expire` has something to age)? One load.
#[inline(always)]
pub fn kept_any() -> bool {
    OLDEST.load(Ordering::Relaxed) != 0
}

#[inline]
fn expire_due() {
    let oldest = OLDEST.load(Ordering::Relaxed);
    if oldest == 0 || os::coarse_ns().wrapping_sub(oldest) < KEEP_NS {
        return;
    }
    expire_slow();
}

#[cold]
fn expire_slow() {
    let mut ev = Evicted::new();
    {
        let _g = LOCK.guard();
        // SAFETY: KEPT is only touched under LOCK.
        let set = unsafe { &mut *core::ptr::addr_of_mut!(KEPT) };
        set.age(os::coarse_ns(), &mut ev);
    }
    // SAFETY: the evicted mappings are ours and no longer listed anywhere.
    unsafe { ev.release() };
}

/// Unmaps every kept mapping (malloc_trim); returns the bytes released.
pub fn trim() -> usize {
    let mut ev = Evicted::new();
    {
        let _g = LOCK.guard();
        // SAFETY: KEPT is only touched under LOCK.
        let set = unsafe { &mut *core::ptr::addr_of_mut!(KEPT) };
        while set.n > 0 {
            ev.push(set.remove(0));
        }
    }
    // SAFETY: the evicted mappings are ours and no longer listed anywhere.
    unsafe { ev.release() };
    ev.e[..ev.n].iter().map(|k| k.len).sum()
}

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
    COUNT.store(list.count, Ordering::Relaxed);
    list.bytes += (*h).len;
    crate::events::large_bytes_rose(list.bytes);
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
    COUNT.store(list.count, Ordering::Relaxed);
    list.bytes -= (*h).len;
    crate::events::set_large_bytes(list.bytes);
}

/// Maps a block of `n` usable bytes whose user pointer is aligned to `align`
/// (a power of two), reusing a kept mapping if there is one. Null on
/// failure. With `zero`, the block's first `n` bytes are zero.
pub fn alloc(n: usize, align: usize, zero: bool) -> *mut u8 {
    if n > MAX_REQUEST || align > MAX_REQUEST {
        return null_mut();
    }
    crate::config::init();
    crate::events::LARGE_ALLOCS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: we own the fresh mappings we cut and write.
    unsafe {
        let (base, len, user);
        if align <= ALIGN {
            let want = align_up(n + LEAD, os::PAGE);
            if let Some((b, l, dirty)) = take_kept(want, true) {
                if zero {
                    // (A grown mapping's new pages are fresh zeros.)
                    core::ptr::write_bytes(b.add(LEAD), 0, n.min(dirty - LEAD));
                }
                return finish(b, l, b.add(LEAD), n);
            }
            len = want;
            base = map_or_trim(len);
            if base.is_null() {
                return null_mut();
            }
            user = base.add(LEAD);
        } else {
            let over = align_up(n + LEAD + align + os::PAGE, os::PAGE);
            let map = map_or_trim(over);
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
        if !crate::zonemap::add_ours(base, ours_end(base, user as usize - HDR - base as usize)) {
            os::unmap(base, len);
            return null_mut();
        }
        finish(base, len, user, n)
    }
}

/// A block of `n` bytes (below the mmap threshold: `realloc` growing a heap
/// block) from a kept mapping big enough and at most twice its size, marked
/// GROWN; null if none is kept, or no block may be mapped now (`M_MMAP_MAX`)
/// or in debug mode. No system call: its pages are resident, and the heap's
/// break need not grow for it. The mapping counts as a mapped block again
/// (mallinfo's hblks and hblkhd).
pub fn alloc_kept(n: usize) -> *mut u8 {
    if !kept_any() || n > MAX_REQUEST || threshold() == usize::MAX || crate::config::debug() {
        return null_mut();
    }
    let want = align_up(n + LEAD, os::PAGE);
    // SAFETY: a kept mapping is ours, unlisted once taken.
    unsafe {
        match take_kept(want, false) {
            Some((b, l, _)) => {
                crate::events::LARGE_ALLOCS.fetch_add(1, Ordering::Relaxed);
                let u = finish(b, l, b.add(LEAD), n);
                (*(b as *mut LargeHdr)).req |= GROWN;
                u
            }
            None => null_mut(),
        }
    }
}

/// A fresh mapping of `len` bytes; if that fails while freed mappings are
/// kept for reuse (a new_handler has just freed its reserve), once more
/// after unmapping them. Null on failure.
fn map_or_trim(len: usize) -> *mut u8 {
    let p = os::map(len);
    if p.is_null() && trim() != 0 {
        return os::map(len);
    }
    p
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
        crate::events::trace_event();
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
        let user = ((guard as usize - align_up(n, ALIGN)) & !(align - 1)) as *mut u8;
        let off = user as usize - HDR - base as usize;
        if !os::protect_none(guard, os::PAGE)
            || !crate::zonemap::add_ours(base, ours_end(base, off))
        {
            os::unmap(base, len);
            return null_mut();
        }
        finish(base, len, user, n)
    }
}

/// The size requested for large block `c` (debug mode's usable size).
///
/// # Safety
/// `c` carries MMAPPED and came from this module.
pub unsafe fn requested(c: *mut Chunk) -> usize {
    (*header_of(c)).req & !GROWN
}

/// The mapping header of large chunk `c`, after checking it; reports and
/// aborts on a forged or corrupted header.
unsafe fn header_of(c: *mut Chunk) -> *mut LargeHdr {
    let off = (*c).prev_size;
    let base = (c as usize).wrapping_sub(off);
    if off < LEAD - HDR
        || !base.is_multiple_of(os::PAGE)
        || !crate::zonemap::is_ours(base as *const u8)
    {
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
    if is_free(c) {
        crate::report::fatal("double free", to_user(c));
    }
    let h = header_of(c);
    let len = (*h).len;
    crate::config::raise_thresholds(size(c) - HDR);
    {
        let _g = LOCK.guard();
        unlink_locked(h);
    }
    (*h).tag = 0;
    let usable = size(c) - HDR;
    if (*h).off == LEAD - HDR
        && (usable * 4 > crate::config::MMAP_THRESHOLD_MAX
            || !crate::config::dynamic_thresholds()
            || (*h).req & GROWN != 0)
        && !crate::config::debug()
    {
        // A plain mapping (not aligned, not guarded) of 8 MiB or more, or
        // any once the thresholds are fixed, or one that grew by realloc:
        // keep it for reuse. (Freeing a smaller one has just raised the
        // dynamic threshold past its size, so the heap serves blocks of
        // that size from now on, and a kept copy would mostly hold memory;
        // a big one can still serve the blocks above the threshold, or grow
        // into one with mremap; a grown one, the next growth to its size:
        // `alloc_kept`.)
        set_head(c, (len - (*h).off) | MMAPPED | MARK | FREE);
        keep(h as *mut u8, len);
    } else {
        crate::zonemap::remove_ours(h as *mut u8, ours_end(h as *mut u8, (*h).off));
        os::unmap(h as *mut u8, len);
        RELEASED.fetch_add(len, Ordering::Relaxed);
        if crate::config::dynamic_thresholds() {
            crate::heap::HEAP.with(|hp| hp.note_unmapped(len));
        }
    }
    crate::events::trace_event();
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
    if !crate::zonemap::add_ours(nb, ours_end(nb, off)) {
        // The block moved to a window of the address map whose leaf could
        // not be mapped: put it back where it was (still registered), so
        // that realloc fails with the block intact, as when mremap fails.
        if !os::remap_back(nb, new_len, h as *mut u8, len) {
            crate::report::fatal_msg("out of memory for the address map");
        }
        crate::os::set_errno(libc::ENOMEM);
        return null_mut();
    }
    crate::zonemap::remove_ours(h as *mut u8, ours_end(h as *mut u8, off));
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
    crate::events::large_bytes_rose(list.bytes);
    (*nh).len = new_len;
    (*nh).tag = tag_of(nh);
    if new_len > len {
        (*nh).req |= GROWN;
    }
    let nc = nb.add(off) as *mut Chunk;
    set_head(nc, (new_len - off) | MMAPPED | MARK);
    drop(_g);
    crate::events::trace_event();
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
