//! Two-level segregated fit (Masmano, Ripoll, Crespo, Real: "TLSF: a new
//! dynamic memory allocator for real-time systems", ECRTS 2004), over the
//! chunks of any number of regions.
//!
//! Owns: the free lists and their two bitmaps. Free chunks of size `s` live in
//! list `(fl, sl)` = [`mapping_insert`]`(s)`: `fl` is the power-of-two range,
//! `sl` one of `SL_COUNT` equal subdivisions of it; sizes below `SMALL` share
//! `fl = 0` in steps of 16.
//!
//! Invariants: bit `fl` of `fl_bitmap` is set iff `sl_bitmap[fl] != 0`; bit
//! `sl` of `sl_bitmap[fl]` is set iff list `(fl, sl)` is non-empty; every chunk
//! in list `(fl, sl)` is FREE and maps to `(fl, sl)`; `free_count` and
//! `free_bytes` sum the listed chunks.
//!
//! Cost: every operation is O(1) in the worst case: a search is two
//! find-first-set instructions on the bitmaps after rounding the request up to
//! the next list boundary ("good fit": any chunk of that list fits, so no list
//! is walked); free coalesces with at most two neighbours found through the
//! boundary tags. No path walks a list, except `check` and `trim`.

use crate::chunk::*;
#[cfg(test)]
use crate::os::PAGE;
use crate::region::{sentinel_region, Region};
use core::ptr::null_mut;

/// log2 of the number of second-level lists per first-level range.
pub const SL_LOG2: usize = 5;
/// Second-level lists per first-level range.
pub const SL_COUNT: usize = 1 << SL_LOG2;
const ALIGN_LOG2: usize = 4;
/// The first range handled by the logarithmic mapping: below it, lists are
/// 16 bytes apart (512 with 32 lists of 16 bytes).
const FL_SHIFT: usize = SL_LOG2 + ALIGN_LOG2;
pub const SMALL: usize = 1 << FL_SHIFT;
/// The largest chunk size indexed is below 2^FL_MAX_LOG2.
const FL_MAX_LOG2: usize = 48;
/// First-level ranges.
pub const FL_COUNT: usize = FL_MAX_LOG2 - FL_SHIFT + 1;

const _: () = assert!(SMALL / SL_COUNT == ALIGN);
const _: () = assert!(FL_COUNT <= 64);
const _: () = assert!(MAX_REQUEST < (1 << FL_MAX_LOG2) / 2);

/// The list for a free chunk of `size` (round down).
#[inline(always)]
pub fn mapping_insert(size: usize) -> (usize, usize) {
    if size < SMALL {
        (0, size / (SMALL / SL_COUNT))
    } else {
        let msb = usize::BITS as usize - 1 - size.leading_zeros() as usize;
        let sl = (size >> (msb - SL_LOG2)) ^ SL_COUNT;
        (msb - FL_SHIFT + 1, sl)
    }
}

/// The first list whose every chunk can hold `size` (round up).
#[inline(always)]
pub fn mapping_search(size: usize) -> (usize, usize) {
    if size < SMALL {
        mapping_insert(size)
    } else {
        let msb = usize::BITS as usize - 1 - size.leading_zeros() as usize;
        mapping_insert(size + (1 << (msb - SL_LOG2)) - 1)
    }
}

/// The smallest free chunk that a search for `size` is sure to find: `size`
/// rounded up to the next list boundary (good fit skips the lists below).
/// Grow a heap by at least this much to serve a request of `size`.
#[inline]
pub fn search_size(size: usize) -> usize {
    if size < SMALL {
        size
    } else {
        let msb = usize::BITS as usize - 1 - size.leading_zeros() as usize;
        let step = 1 << (msb - SL_LOG2);
        (size + step - 1) & !(step - 1)
    }
}

/// The TLSF index. Plain data: a pool places one in caller memory.
#[repr(C)]
pub struct Tlsf {
    fl_bitmap: u64,
    sl_bitmap: [u32; FL_COUNT],
    heads: [[*mut Chunk; SL_COUNT]; FL_COUNT],
    /// Number of free chunks indexed.
    pub free_count: usize,
    /// Sum of their sizes.
    pub free_bytes: usize,
    /// The current epoch: every free chunk of `STAMP_MIN` bytes or more is
    /// stamped with it when indexed (see `stamp`); the heap sets it from the
    /// clock (a purge interval's number).
    pub epoch: usize,
    /// One more than the lowest list number (`fl * SL_COUNT + sl`) a partly
    /// discarded chunk was indexed in since the heap last looked (see
    /// `PARTIAL`), 0 if none: a purge goes on from there. (Zero for none,
    /// so that the heap's static stays all zero, in .bss.)
    pub partial_from: usize,
}

/// A block of at most this many bytes keeps a small rest (see `keeps_rest`).
pub const KEEP_MAX: usize = 128 << 10;

/// Does a block of `csize` bytes, taken from a free chunk of `total`, keep
/// the rest rather than split it off? Yes when the rest is under an eighth of
/// the block (the waste the size classes allow) and the block at most
/// `KEEP_MAX`. Splitting writes the rest's header just past the block's end,
/// in a page that a program which fills only part of its buffer has never
/// touched: a page fault inside malloc, the slowest malloc calls measured
/// (bench/latency: one fault took 207 us). A kept rest's pages stay as they
/// were, untouched until the program writes them. Bigger blocks split: kept
/// rests of large blocks raised bench/large's peak RSS by 5%.
#[inline]
pub fn keeps_rest(csize: usize, total: usize) -> bool {
    csize <= KEEP_MAX && total - csize < csize >> 3
}

/// Where a free chunk keeps its stamp: past its list links.
pub const STAMP_OFF: usize = 32;
/// Free chunks this big or more carry a stamp.
pub const STAMP_MIN: usize = 4096;
/// The stamp of a free chunk whose pages were discarded since it was indexed.
pub const PURGED: usize = usize::MAX;
/// A stamp with this bit set and other than `PURGED` says the chunk's pages
/// from offset `stamp & !PARTIAL` on were discarded, and those below were not
/// yet: a purge that ran out of budget in the chunk (see `Heap::purge`).
pub const PARTIAL: usize = 1 << (usize::BITS - 1);

/// Is stamp `t` a partial one (see `PARTIAL`)?
#[inline]
pub fn is_partial(t: usize) -> bool {
    t & PARTIAL != 0 && t != PURGED
}

/// The epoch in which free chunk `c` (of `STAMP_MIN` bytes or more) was last
/// indexed, or `PURGED`.
///
/// # Safety
/// `c` is an indexed free chunk of at least `STAMP_MIN` bytes.
#[inline]
pub unsafe fn stamp(c: *const Chunk) -> usize {
    *((c as *const u8).add(STAMP_OFF) as *const usize)
}

/// Sets the stamp of free chunk `c`.
///
/// # Safety
/// As [`stamp`].
#[inline]
pub unsafe fn set_stamp(c: *mut Chunk, v: usize) {
    *((c as *mut u8).add(STAMP_OFF) as *mut usize) = v;
}

impl Default for Tlsf {
    fn default() -> Self {
        Self::new()
    }
}

impl Tlsf {
    /// An empty index.
    pub const fn new() -> Self {
        Tlsf {
            fl_bitmap: 0,
            sl_bitmap: [0; FL_COUNT],
            heads: [[null_mut(); SL_COUNT]; FL_COUNT],
            free_count: 0,
            free_bytes: 0,
            epoch: 0,
            partial_from: 0,
        }
    }

    /// Adds free chunk `c` to its list.
    ///
    /// # Safety
    /// `c` is a FREE chunk not in any list.
    #[inline]
    unsafe fn insert(&mut self, c: *mut Chunk) {
        self.insert_stamped(c, self.epoch);
    }

    /// The stamp a chunk merged from `c` (free, about to be unlinked) and
    /// others carries: the oldest, so that a big idle chunk a small free
    /// merges into still counts as idle.
    #[inline]
    unsafe fn older(&self, stamp: usize, c: *const Chunk) -> usize {
        if size(c) >= STAMP_MIN {
            let t = crate::tlsf::stamp(c);
            // A partial stamp's offset is `c`'s own: it does not carry over
            // to a merged chunk (`free` carries it where it can).
            if is_partial(t) {
                stamp
            } else {
                stamp.min(t)
            }
        } else {
            stamp
        }
    }

    /// `insert`, with stamp `st` (see `stamp`).
    #[inline]
    unsafe fn insert_stamped(&mut self, c: *mut Chunk, st: usize) {
        let s = size(c);
        if s >= STAMP_MIN {
            set_stamp(c, st);
        }
        let (fl, sl) = mapping_insert(s);
        if is_partial(st) {
            let k = fl * SL_COUNT + sl + 1;
            if self.partial_from == 0 || k < self.partial_from {
                self.partial_from = k;
            }
        }
        let head = self.heads[fl][sl];
        (*c).next_free = head;
        (*c).prev_free = null_mut();
        if !head.is_null() {
            (*head).prev_free = c;
        }
        self.heads[fl][sl] = c;
        self.fl_bitmap |= 1 << fl;
        self.sl_bitmap[fl] |= 1 << sl;
        self.free_count += 1;
        self.free_bytes += size(c);
    }

    /// Removes `c` from its list.
    ///
    /// # Safety
    /// `c` is in the list its size maps to.
    #[inline]
    unsafe fn remove(&mut self, c: *mut Chunk) {
        let (fl, sl) = mapping_insert(size(c));
        let (n, p) = ((*c).next_free, (*c).prev_free);
        // Safe unlinking: the neighbours must point back at c (an overflow
        // that rewrote the links cannot turn this into a write elsewhere).
        let linked_back = (n.is_null() || (*n).prev_free == c)
            && (if p.is_null() {
                self.heads[fl][sl] == c
            } else {
                (*p).next_free == c
            });
        if crate::guard::CHECKS && !linked_back {
            crate::report::fatal("heap corruption (free list links overwritten)", to_user(c));
        }
        if !n.is_null() {
            (*n).prev_free = p;
        }
        if !p.is_null() {
            (*p).next_free = n;
        } else {
            self.heads[fl][sl] = n;
            if n.is_null() {
                self.sl_bitmap[fl] &= !(1 << sl);
                if self.sl_bitmap[fl] == 0 {
                    self.fl_bitmap &= !(1 << fl);
                }
            }
        }
        self.free_count -= 1;
        self.free_bytes -= size(c);
    }

    /// Finds, unlinks and returns a free chunk of at least `size` bytes, or null.
    #[inline]
    unsafe fn take(&mut self, size: usize) -> *mut Chunk {
        let Some((fl, sl)) = self.find(size) else {
            return null_mut();
        };
        let c = self.heads[fl][sl];
        debug_assert!(!c.is_null() && crate::chunk::size(c) >= size);
        self.remove(c);
        c
    }

    /// The first non-empty list whose every chunk can hold `size` (good
    /// fit: two bit scans), if any.
    #[inline]
    fn find(&self, size: usize) -> Option<(usize, usize)> {
        let (mut fl, sl) = mapping_search(size);
        if fl >= FL_COUNT {
            return None;
        }
        let mut sl_map = self.sl_bitmap[fl] & (!0u32 << sl);
        if sl_map == 0 {
            let fl_map = if fl + 1 >= 64 {
                0
            } else {
                self.fl_bitmap & (!0u64 << (fl + 1))
            };
            if fl_map == 0 {
                return None;
            }
            fl = fl_map.trailing_zeros() as usize;
            sl_map = self.sl_bitmap[fl];
        }
        Some((fl, sl_map.trailing_zeros() as usize))
    }

    /// Would `alloc(size)` find a free chunk? (The same search, without
    /// taking the chunk.)
    pub fn can_serve(&self, size: usize) -> bool {
        self.find(size).is_some()
    }

    /// Makes `[start, end)` a region: one free chunk and a sentinel pointing
    /// at `region`. Returns false if the range is too small.
    ///
    /// # Safety
    /// The range is writable memory owned by the caller for as long as the
    /// index is used, and overlaps no other region.
    pub unsafe fn add_region(&mut self, start: *mut u8, end: *mut u8, region: *mut Region) -> bool {
        let s = align_up(start as usize, ALIGN);
        let e = (end as usize) & !(ALIGN - 1);
        if e < s || e - s < MIN_CHUNK + SENTINEL {
            return false;
        }
        let c = s as *mut Chunk;
        set_head(c, (e - s - SENTINEL) | MARK);
        let sent = next(c);
        set_head(sent, MARK);
        (*sent).next_free = region as *mut Chunk;
        (*region).start = s as *mut u8;
        (*region).end = e as *mut u8;
        self.release(c);
        true
    }

    /// Allocates a chunk of `csize` bytes (a chunk size, see
    /// [`request_to_size`]); null if no free chunk is big enough. The rest
    /// of the free chunk is split off if it can be a chunk (pools: their
    /// callers count on the bytes they gave).
    ///
    /// # Safety
    /// The index and its regions are consistent.
    #[inline]
    pub unsafe fn alloc(&mut self, csize: usize) -> *mut Chunk {
        self.alloc_with(csize, false)
    }

    /// `alloc`, but a rest under an eighth of the block stays with it (see
    /// `keeps_rest`), and a rest split off stays at the front of the free
    /// chunk, the block taking its back (see `alloc_with`): the heap's,
    /// whose fresh pages fault in on first touch.
    ///
    /// # Safety
    /// As [`alloc`](Self::alloc).
    #[inline]
    pub unsafe fn alloc_keeping(&mut self, csize: usize) -> *mut Chunk {
        self.alloc_with(csize, true)
    }

    /// Allocates a chunk for a big request of `csize` bytes whose size class
    /// is `class` (`heap::big_size`, `csize` or more), searched for at
    /// `class`. A free chunk of about the block's size is taken whole (a
    /// freed block reused at its address): one of `class` bytes, or, if the
    /// program writes the ends of its blocks (`ends`), one less than an
    /// eighth of `class` bigger than `csize`.
    /// A bigger one is cut as `alloc_keeping` cuts (at its back; at its
    /// front at the top of a region): `class` bytes or
    /// `csize`: `lattice(a)` chooses, `a` being the address of the header
    /// that the cut on the lattice writes where the program may never write
    /// (the block's, cut at the back; the rest's, at the front); it is not
    /// called when the chunk is taken whole (see `Heap::alloc_big`). At
    /// `class`, blocks lie on a lattice of class sizes from the chunks'
    /// ends, whose header pages recur (resident) when a program's sizes
    /// repeat. At `csize`, the block ends where its request ends, and the
    /// header past it (the next chunk's, in use, or the rest's) shares the
    /// page of its last bytes.
    ///
    /// # Safety
    /// As [`alloc`](Self::alloc).
    pub unsafe fn alloc_big(
        &mut self,
        csize: usize,
        class: usize,
        ends: bool,
        lattice: impl FnOnce(usize) -> bool,
    ) -> *mut Chunk {
        debug_assert!(class >= csize);
        let c = self.take(class);
        if c.is_null() {
            return c;
        }
        let total = size(c);
        let n = next(c);
        let whole = if !ends {
            class + MIN_CHUNK
        } else {
            csize + (class >> 3).max(MIN_CHUNK)
        };
        if total < whole {
            set_head(c, total | MARK);
            clear_flags(n, PREV_FREE);
            return c;
        }
        let on = if is_sentinel(n) {
            c as usize + class
        } else {
            c as usize + total - class
        };
        let bs = if total >= class + MIN_CHUNK && lattice(on) {
            class
        } else {
            csize
        };
        self.cut(c, total, bs, n, !is_sentinel(n))
    }

    /// Cuts a block of `bs` bytes from free chunk `c` of `total` bytes
    /// (just taken from its list; `n` its successor) and lists the rest:
    /// at `c`'s back (`back`: the rest keeps `c`'s header), else at its
    /// front. Returns the block.
    #[inline(always)]
    unsafe fn cut(
        &mut self,
        c: *mut Chunk,
        total: usize,
        bs: usize,
        n: *mut Chunk,
        back: bool,
    ) -> *mut Chunk {
        let rs = total - bs;
        if back {
            // the rest stays at c, the block takes the back
            let st = self.back_stamp(c, rs);
            set_head(c, rs | MARK | FREE);
            let b = (c as *mut u8).add(rs) as *mut Chunk;
            (*b).prev_size = rs;
            set_head(b, bs | MARK | PREV_FREE);
            clear_flags(n, PREV_FREE);
            self.insert_stamped(c, st);
            return b;
        }
        let st = self.cut_stamp(c, bs);
        set_head(c, bs | MARK);
        let rest = (c as *mut u8).add(bs) as *mut Chunk;
        set_head(rest, rs | MARK | FREE);
        // The successor keeps PREV_FREE; its footer moves.
        (*n).prev_size = rs;
        self.insert_stamped(rest, st);
        c
    }

    /// Takes a chunk of `csize` bytes from the free lists. The heap's
    /// (`keep`) splits a free chunk at its back: the rest keeps the free
    /// chunk's header, in a page that is resident, and the block's header
    /// goes in the block's own first page, which the program touches as
    /// soon as it writes the block. A cut at the front would write the
    /// rest's header just past the block's end, into a page that a program
    /// filling only part of its buffer never touched: a page fault inside
    /// malloc, and a resident page for nothing (`bench/latency`: 3.9k of 48k
    /// medium mallocs took one, the slowest calls measured). (Until issue
    /// 17 the cut moved to the first resident page found by `mincore`, a
    /// system call under the heap lock.) The chunk at the top of a region
    /// is cut at the front, so that the break can still shrink below what
    /// is left free: its pages are fresh up to the break anyway.
    #[inline(always)]
    unsafe fn alloc_with(&mut self, csize: usize, keep: bool) -> *mut Chunk {
        let c = self.take(csize);
        if c.is_null() {
            return c;
        }
        // c was free, so (the heap being coalesced) its predecessor and its
        // successor are in use: c has no PREV_FREE, and the successor has
        // PREV_FREE. Each header is written once (a tag is a multiply).
        let total = size(c);
        if total >= csize + MIN_CHUNK && !(keep && keeps_rest(csize, total)) {
            let n = next(c);
            return self.cut(c, total, csize, n, keep && !is_sentinel(n));
        }
        set_head(c, total | MARK);
        clear_flags(next(c), PREV_FREE);
        c
    }

    /// The stamp of the first `rs` bytes of free chunk `c` (just taken from
    /// its list), its back being cut off: its own, but if a purge is part
    /// way through `c` and discarded only pages beyond `rs`, the current
    /// epoch (none of the rest's pages were discarded).
    #[inline]
    unsafe fn back_stamp(&self, c: *const Chunk, rs: usize) -> usize {
        if size(c) >= STAMP_MIN {
            let t = crate::tlsf::stamp(c);
            if is_partial(t) && (t & !PARTIAL) >= rs {
                return self.epoch;
            }
            if rs >= STAMP_MIN {
                return t;
            }
        }
        self.epoch
    }

    /// Allocates a chunk of `csize` bytes whose user pointer is aligned to
    /// `align` (a power of two above 16). The leading and trailing slack goes
    /// back to the free lists, so at most `align` bytes are ever wasted.
    ///
    /// # Safety
    /// As [`alloc`](Self::alloc).
    pub unsafe fn alloc_aligned(&mut self, csize: usize, align: usize) -> *mut Chunk {
        self.alloc_aligned_at(csize, align, HDR)
    }

    /// Allocates a chunk of `csize` bytes such that the chunk's address plus
    /// `at` is aligned to `align` (`at` = HDR: the user pointer; 0: the
    /// chunk itself, so that its header lies in its first aligned page).
    ///
    /// # Safety
    /// As [`alloc`](Self::alloc).
    pub unsafe fn alloc_aligned_at(&mut self, csize: usize, align: usize, at: usize) -> *mut Chunk {
        let need = match csize.checked_add(align + MIN_CHUNK) {
            Some(n) if n <= MAX_REQUEST * 2 => n,
            _ => return null_mut(),
        };
        let mut c = self.take(need);
        if c.is_null() {
            return c;
        }
        let whole = c;
        clear_flags(c, FREE);
        let u = c as usize + at;
        let mut gap = align_up(u, align) - u;
        if gap != 0 && gap < MIN_CHUNK {
            gap += align;
        }
        if gap != 0 {
            let lead = c;
            c = (lead as *mut u8).add(gap) as *mut Chunk;
            set_head(c, (size(lead) - gap) | MARK);
            set_size(lead, gap);
            self.release(lead); // sets PREV_FREE on c
        }
        let st = self.cut_stamp(whole, c as usize - whole as usize + csize);
        self.split_stamped(c, csize, st);
        mark_used(c);
        c
    }

    /// The stamp of the part of free chunk `c` (just taken from its list)
    /// from offset `cut` on, once the part below is cut off: the current
    /// epoch (cut from, so maybe about to be reused), but if a purge is part
    /// way through `c`, what it has discarded, so that it goes on where it
    /// was (a purge discards from the top down).
    #[inline]
    unsafe fn cut_stamp(&self, c: *const Chunk, cut: usize) -> usize {
        if size(c) >= STAMP_MIN {
            let t = crate::tlsf::stamp(c);
            if is_partial(t) {
                let off = t & !PARTIAL;
                return if off > cut {
                    PARTIAL | (off - cut)
                } else {
                    PURGED
                };
            }
        }
        self.epoch
    }

    /// Frees in-use chunk `c`, coalescing with free neighbours. Returns the
    /// resulting free chunk (already indexed).
    ///
    /// # Safety
    /// `c` is an in-use chunk of a region of this index.
    #[inline]
    pub unsafe fn free(&mut self, c: *mut Chunk) -> *mut Chunk {
        // As `release`, with each header written once.
        let h = head(c);
        let mut sz = h & SIZE_MASK;
        let mut st = self.epoch;
        // A purge part way through the next chunk goes on in the merged one:
        // what it discarded is the same suffix (see `cut_stamp`).
        let mut part = 0;
        let n = (c as *mut u8).add(sz) as *mut Chunk;
        let n_free = is_free(n);
        if n_free {
            let ns = size(n);
            if ns >= STAMP_MIN && is_partial(crate::tlsf::stamp(n)) {
                part = sz + (crate::tlsf::stamp(n) & !PARTIAL);
            } else {
                st = self.older(st, n);
            }
            self.remove(n);
            sz += ns;
        }
        let mut start = c;
        if h & PREV_FREE != 0 {
            let p = prev(c);
            st = self.older(st, p);
            self.remove(p);
            let ps = size(p);
            sz += ps;
            if part != 0 {
                part += ps;
            }
            start = p;
            // c's header stays inside the merged chunk: it must say FREE,
            // so that a second free of c is recognised.
            set_head(c, h | FREE);
        }
        // start's predecessor is in use (chunks were coalesced).
        set_head(start, sz | MARK | FREE);
        let after = (start as *mut u8).add(sz) as *mut Chunk;
        (*after).prev_size = sz;
        if !n_free {
            // (If n was free, its successor has PREV_FREE already.)
            set_flags(after, PREV_FREE);
        }
        self.insert_stamped(start, if part != 0 { PARTIAL | part } else { st });
        start
    }

    /// Coalesces `c` with its free neighbours and indexes the result.
    #[inline]
    unsafe fn release(&mut self, c: *mut Chunk) -> *mut Chunk {
        self.release_stamped(c, self.epoch)
    }

    /// `release`, stamping the result with `st` or an older neighbour's stamp.
    #[inline]
    unsafe fn release_stamped(&mut self, mut c: *mut Chunk, mut st: usize) -> *mut Chunk {
        let n = next(c);
        if is_free(n) {
            st = self.older(st, n);
            self.remove(n);
            set_size(c, size(c) + size(n));
        }
        if is_prev_free(c) {
            let p = prev(c);
            st = self.older(st, p);
            self.remove(p);
            set_size(p, size(p) + size(c));
            c = p;
        }
        mark_free(c);
        self.insert_stamped(c, st);
        c
    }

    /// Cuts in-use (or unlisted) chunk `c` down to `csize`, freeing the rest
    /// if it can form a chunk.
    #[inline]
    unsafe fn split(&mut self, c: *mut Chunk, csize: usize) {
        self.split_stamped(c, csize, self.epoch);
    }

    /// `split`, the rest stamped as by `release_stamped`.
    #[inline]
    unsafe fn split_stamped(&mut self, c: *mut Chunk, csize: usize, st: usize) {
        let total = size(c);
        if total >= csize + MIN_CHUNK {
            let rest = (c as *mut u8).add(csize) as *mut Chunk;
            set_head(rest, (total - csize) | MARK);
            set_size(c, csize);
            self.release_stamped(rest, st);
        }
    }

    /// Resizes in-use chunk `c` to `csize` in place: shrinks by splitting, or
    /// grows into a free next chunk. Returns false (and changes nothing) if it
    /// cannot.
    ///
    /// # Safety
    /// `c` is an in-use chunk of a region of this index.
    pub unsafe fn resize_in_place(&mut self, c: *mut Chunk, csize: usize) -> bool {
        let old = size(c);
        if csize <= old {
            self.split(c, csize);
            return true;
        }
        self.grow_in_place(c, csize, csize)
    }

    /// Grows in-use chunk `c` into a free next chunk: to `want` bytes if the
    /// neighbour holds them, else to all of it if that makes `csize`
    /// (`csize <= want`, both multiples of 16, above `size(c)`). Returns
    /// false (and changes nothing) if not even `csize` fits.
    ///
    /// # Safety
    /// `c` is an in-use chunk of a region of this index.
    pub unsafe fn grow_in_place(&mut self, c: *mut Chunk, csize: usize, want: usize) -> bool {
        let old = size(c);
        let n = next(c);
        if is_free(n) && old + size(n) >= csize {
            self.remove(n);
            let total = old + size(n);
            set_size(c, total);
            clear_flags(next(c), PREV_FREE);
            self.split(c, want.min(total));
            return true;
        }
        false
    }

    /// Extends the region ending at `end` by `added` bytes (a multiple of 16)
    /// of fresh memory right after it; the new space becomes free and
    /// coalesces with a free tail. Returns the new end.
    ///
    /// # Safety
    /// `end` is the end of a region of this index; `[end, end + added)` is
    /// writable memory owned by the caller.
    pub unsafe fn grow_tail(&mut self, end: *mut u8, added: usize) -> *mut u8 {
        let old = end.sub(SENTINEL) as *mut Chunk;
        let region = sentinel_region(old);
        set_head(old, added | MARK | (head(old) & PREV_FREE));
        let sent = next(old);
        set_head(sent, MARK);
        (*sent).next_free = region as *mut Chunk;
        let new_end = end.add(added);
        (*region).end = new_end;
        self.release(old);
        new_end
    }

    /// If the region ending at `end` has a free tail chunk, cuts the region so
    /// that about `keep` free bytes remain and the new end is a multiple of
    /// `unit`. Returns the bytes cut (0 if none); the caller gives them back.
    ///
    /// # Safety
    /// `end` is the end of a region of this index.
    pub unsafe fn shrink_tail(&mut self, end: *mut u8, keep: usize, unit: usize) -> usize {
        let sent = end.sub(SENTINEL) as *mut Chunk;
        if !is_prev_free(sent) {
            return 0;
        }
        let region = sentinel_region(sent);
        let t = prev(sent);
        let t_addr = t as usize;
        let mut new_end = align_up(t_addr + keep.min(size(t)) + SENTINEL, unit);
        let mut t_size = new_end - SENTINEL - t_addr;
        if t_size != 0 && t_size < MIN_CHUNK {
            new_end += unit;
            t_size += unit;
        }
        if new_end >= end as usize {
            return 0;
        }
        self.remove(t);
        let new_sent;
        if t_size == 0 {
            new_sent = t;
            set_head(new_sent, MARK); // t's predecessor is in use: no PREV_FREE
        } else {
            set_size(t, t_size);
            new_sent = next(t);
            set_head(new_sent, MARK);
            mark_free(t);
            self.insert(t);
        }
        (*new_sent).next_free = region as *mut Chunk;
        (*region).end = new_end as *mut u8;
        end as usize - new_end
    }

    /// Takes free chunk `c` out of the index and marks it in use, if it is
    /// still indexed with `csize` bytes (else false, the index unchanged):
    /// the sparse purge's hold on a chunk whose pages it discards without
    /// the heap's lock (`heap::purge_sparse`). Walks the one list `csize`
    /// maps to (big chunks: a few entries); [`free`](Self::free) gives it
    /// back.
    ///
    /// # Safety
    /// The index is consistent; `c` need not be a chunk any more (it is only
    /// compared with the list's entries before it is read).
    pub unsafe fn take_exact(&mut self, c: *mut Chunk, csize: usize) -> bool {
        let (fl, sl) = mapping_insert(csize);
        let mut x = self.heads[fl][sl];
        while !x.is_null() && x != c {
            x = (*x).next_free;
        }
        if x.is_null() || size(c) != csize {
            return false;
        }
        self.remove(c);
        mark_used(c);
        true
    }

    /// Unindexes free chunk `c` (the caller is about to give its memory away).
    ///
    /// # Safety
    /// `c` is FREE and indexed.
    pub unsafe fn unlink(&mut self, c: *mut Chunk) {
        self.remove(c);
    }

    /// Calls `f` on every free chunk of at least `min` bytes (possibly some
    /// a little smaller, from the list `min` falls in), from list number
    /// `from` (`fl * SL_COUNT + sl`) on, while `f` returns true. Returns the
    /// number of the list where `f` returned false, to resume from (its
    /// chunks before the one `f` refused are visited again), or None once
    /// every list was walked. Not O(1): for purging and malloc_trim only.
    ///
    /// # Safety
    /// The index is consistent.
    pub unsafe fn walk_free_from(
        &self,
        min: usize,
        from: usize,
        mut f: impl FnMut(*mut Chunk) -> bool,
    ) -> Option<usize> {
        let (fl0, _) = mapping_insert(min);
        let from = from.max(fl0 * SL_COUNT);
        if from >= FL_COUNT * SL_COUNT {
            return None;
        }
        let mut map = self.fl_bitmap & (!0u64 << (from / SL_COUNT));
        while map != 0 {
            let fl = map.trailing_zeros() as usize;
            map &= map - 1;
            let sl0 = if fl == from / SL_COUNT {
                from % SL_COUNT
            } else {
                0
            };
            for sl in sl0..SL_COUNT {
                let mut c = self.heads[fl][sl];
                while !c.is_null() {
                    let n = (*c).next_free;
                    if !f(c) {
                        return Some(fl * SL_COUNT + sl);
                    }
                    c = n;
                }
            }
        }
        None
    }

    /// The first-level bitmap.
    pub fn fl_bitmap(&self) -> u64 {
        self.fl_bitmap
    }

    /// The second-level bitmap of range `fl`.
    pub fn sl_bitmap(&self, fl: usize) -> u32 {
        self.sl_bitmap[fl]
    }

    /// Checks the lists and bitmaps; returns the number of broken invariants.
    /// `in_region` says whether an address lies in one of the index's regions.
    /// Walks at most `free_count + 1` chunks per list, so a cycle is counted,
    /// not followed forever.
    ///
    /// # Safety
    /// Chunk pointers in the lists are readable (checked with `in_region`
    /// before reading).
    pub unsafe fn check_lists(&self, in_region: impl Fn(*const u8) -> bool) -> usize {
        let mut bad = 0;
        let mut count = 0usize;
        let mut bytes = 0usize;
        for fl in 0..FL_COUNT {
            if ((self.fl_bitmap >> fl) & 1 != 0) != (self.sl_bitmap[fl] != 0) {
                bad += 1;
            }
            for sl in 0..SL_COUNT {
                let head = self.heads[fl][sl];
                // The bit is set iff the list is non-empty.
                let bit = (self.sl_bitmap[fl] >> sl) & 1 != 0;
                if bit == head.is_null() {
                    bad += 1;
                }
                let mut prevc: *mut Chunk = null_mut();
                let mut c = head;
                let mut steps = 0;
                while !c.is_null() {
                    steps += 1;
                    if steps > self.free_count + 1 || !in_region(c as *const u8) {
                        bad += 1;
                        break;
                    }
                    if !is_free(c) || mapping_insert(size(c)) != (fl, sl) || (*c).prev_free != prevc
                    {
                        bad += 1;
                    }
                    count += 1;
                    bytes += size(c);
                    prevc = c;
                    c = (*c).next_free;
                }
            }
        }
        if count != self.free_count || bytes != self.free_bytes {
            bad += 1;
        }
        bad
    }

    /// Walks the chunks of `region`; returns (broken invariants, free chunks,
    /// free bytes, used chunks, used bytes).
    ///
    /// # Safety
    /// `region` describes a live region of this index.
    pub unsafe fn check_region(&self, region: *const Region) -> RegionCheck {
        let mut r = RegionCheck::default();
        let (start, end) = ((*region).start as usize, (*region).end as usize);
        let mut c = start as *mut Chunk;
        let mut prev_free = false;
        let mut prev_size = 0usize;
        loop {
            let a = c as usize;
            if a < start || a + SENTINEL > end || !a.is_multiple_of(ALIGN) {
                r.bad += 1;
                break;
            }
            if !head_ok(c) {
                r.bad += 1;
            }
            let h = head(c);
            if h & MMAPPED != 0 {
                r.bad += 1;
            }
            if ((h & PREV_FREE) != 0) != prev_free {
                r.bad += 1;
            }
            if prev_free && (*c).prev_size != prev_size {
                r.bad += 1;
            }
            if is_sentinel(c) {
                if a + SENTINEL != end
                    || h & FREE != 0
                    || !core::ptr::eq(sentinel_region(c), region)
                {
                    r.bad += 1;
                }
                break;
            }
            let s = size(c);
            if s < MIN_CHUNK || !s.is_multiple_of(ALIGN) {
                r.bad += 1;
                break;
            }
            let free = h & FREE != 0;
            if free {
                if prev_free {
                    r.bad += 1; // two adjacent free chunks
                }
                if h & SAMPLED != 0 {
                    r.bad += 1; // the profiler's mark outlived its block
                }
                r.free_chunks += 1;
                r.free_bytes += s;
            } else {
                r.used_chunks += 1;
                r.used_bytes += s;
            }
            prev_free = free;
            prev_size = s;
            c = next(c);
        }
        r
    }
}

/// What a walk of one region found.
#[derive(Default, Debug, Clone, Copy)]
pub struct RegionCheck {
    pub bad: usize,
    pub free_chunks: usize,
    pub free_bytes: usize,
    pub used_chunks: usize,
    pub used_bytes: usize,
}

#[cfg(test)]
mod tests {
    //! The index on a plain buffer, with a full check after every step and a
    //! shadow model of what each live block must hold.
    use super::*;
    use crate::region::{Region, KIND_POOL};

    /// A small deterministic generator (xorshift64*).
    pub struct Rng(u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    struct Arena {
        _buf: Vec<u128>,
        tlsf: Box<Tlsf>,
        region: Box<Region>,
    }

    impl Arena {
        fn new(bytes: usize) -> Arena {
            let mut buf = vec![0u128; bytes / 16];
            // every page resident, as a heap's are once used (see `resident_cut`)
            for x in buf.iter_mut().step_by(PAGE / 16) {
                // SAFETY: x is an element of the buffer.
                unsafe { core::ptr::write_volatile(x, 1) };
            }
            let mut tlsf = Box::new(Tlsf::new());
            let mut region = Box::new(Region::empty(KIND_POOL));
            let start = buf.as_mut_ptr() as *mut u8;
            // SAFETY: the test buffer outlives the index, and every chunk used came from it.
            unsafe {
                assert!(tlsf.add_region(start, start.add(bytes), &mut *region));
            }
            Arena {
                _buf: buf,
                tlsf,
                region,
            }
        }
        /// Drops the pages of `[from, to)` (page-aligned, inside a free
        /// chunk), as pages a program never touched: no longer resident.
        ///
        /// # Safety
        /// The range holds no header, link or live block.
        unsafe fn discard(&self, from: usize, to: usize) {
            let r = libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED);
            assert_eq!(r, 0);
        }
        fn check(&self) -> RegionCheck {
            // SAFETY: the test buffer outlives the index, and every chunk used came from it.
            unsafe {
                let rc = self.tlsf.check_region(&*self.region);
                let r = &*self.region;
                let bad = rc.bad + self.tlsf.check_lists(|p| r.contains(p));
                assert_eq!(bad, 0, "heap invariants broken");
                assert_eq!(rc.free_chunks, self.tlsf.free_count);
                assert_eq!(rc.free_bytes, self.tlsf.free_bytes);
                rc
            }
        }
    }

    #[test]
    fn mapping_rounds_to_a_list_that_fits() {
        for s in (MIN_CHUNK..1 << 20).step_by(16) {
            let (fl, sl) = mapping_insert(s);
            assert!(fl < FL_COUNT && sl < SL_COUNT);
            let (sfl, ssl) = mapping_search(s);
            // Every chunk in list (sfl, ssl) is at least s.
            let lo = if sfl == 0 {
                ssl * 16
            } else {
                (SL_COUNT + ssl) << (sfl - 1 + FL_SHIFT - SL_LOG2)
            };
            assert!(lo >= s, "size {s}: list ({sfl},{ssl}) starts at {lo}");
            assert!((sfl, ssl) >= (fl, sl));
        }
        assert_eq!(mapping_insert(511), (0, 31));
        assert_eq!(mapping_insert(512), (1, 0));
        assert_eq!(mapping_insert(1 << 20), (12, 0));
    }

    #[test]
    fn a_chunk_of_search_size_is_always_found() {
        for s in (MIN_CHUNK..1 << 22).step_by(4096 + 16) {
            let need = search_size(s);
            assert!(need >= s);
            // a free chunk of exactly `need` bytes is in a list the search visits
            assert!(
                mapping_insert(need) >= mapping_search(s),
                "size {s} need {need}"
            );
        }
    }

    /// A hole of `hole` bytes, then a block in use above it: allocating
    /// `csize` (`alloc_keeping` if `keep`) finds the hole first (the rest of
    /// the arena is bigger).
    fn take_from_hole(a: &mut Arena, hole: usize, csize: usize, keep: bool) -> usize {
        // SAFETY: the test buffer outlives the index, and every chunk used came from it.
        unsafe {
            let h = a.tlsf.alloc(hole);
            let fence = a.tlsf.alloc(64);
            assert_eq!(size(h), hole);
            a.tlsf.free(h);
            a.check();
            let c = if keep {
                a.tlsf.alloc_keeping(csize)
            } else {
                a.tlsf.alloc(csize)
            };
            // (the heap's block takes the back of a hole it splits)
            assert!(
                c == h || c as usize + size(c) == h as usize + hole,
                "the hole was not the chunk taken"
            );
            a.check();
            let got = size(c);
            a.tlsf.free(c);
            a.tlsf.free(fence);
            assert_eq!(a.check().free_chunks, 1);
            got
        }
    }

    #[test]
    fn a_rest_under_an_eighth_stays_with_its_block() {
        let a = &mut Arena::new(1 << 20);
        assert_eq!(
            take_from_hole(a, 9200, 8192, true),
            9200,
            "rest of 1008 < 8192 / 8: kept"
        );
        assert_eq!(
            take_from_hole(a, 9216, 8192, true),
            8192,
            "rest of 1024 = 8192 / 8: split"
        );
        assert_eq!(
            take_from_hole(a, 9200, 4096, true),
            4096,
            "rest above an eighth: split"
        );
        let big = KEEP_MAX + 16;
        assert_eq!(
            take_from_hole(a, big + 4096, big, true),
            big,
            "blocks above KEEP_MAX split"
        );
        assert_eq!(
            take_from_hole(a, KEEP_MAX + 4096, KEEP_MAX, true),
            KEEP_MAX + 4096
        );
        // pools split every rest that can be a chunk
        assert_eq!(take_from_hole(a, 9200, 8192, false), 8192);
    }

    #[test]
    fn a_heap_split_leaves_the_rest_where_it_was() {
        let a = &mut Arena::new(1 << 20);
        // SAFETY: the test buffer outlives the index, and every chunk used
        // came from it.
        unsafe {
            let hole = 64 * PAGE;
            let h = a.tlsf.alloc(hole);
            let fence = a.tlsf.alloc(64);
            a.tlsf.free(h);
            // the heap's block takes the back of the hole: the rest keeps
            // the hole's header, and nothing is written in between
            let c = a.tlsf.alloc_keeping(5 * PAGE);
            assert_eq!(c as usize, h as usize + hole - 5 * PAGE);
            assert_eq!(size(c), 5 * PAGE);
            assert!(is_free(h) && size(h) == hole - 5 * PAGE);
            a.check();
            a.tlsf.free(c);
            assert_eq!(size(h), hole, "coalesced back");
            // a pool's block is cut at the front
            let c = a.tlsf.alloc(5 * PAGE);
            assert_eq!(c, h);
            assert_eq!(size(c), 5 * PAGE);
            a.tlsf.free(c);
            a.tlsf.free(fence);
            a.check();
        }
    }

    #[test]
    fn take_exact_holds_a_free_chunk_out_of_the_index() {
        let a = &mut Arena::new(1 << 20);
        // SAFETY: the test buffer outlives the index, and every chunk used
        // came from it.
        unsafe {
            let hole = 64 * PAGE;
            let h = a.tlsf.alloc(hole);
            let fence = a.tlsf.alloc(64);
            a.tlsf.free(h);
            let free0 = a.tlsf.free_bytes;
            // a stale size or a chunk no longer indexed is not taken
            assert!(!a.tlsf.take_exact(h, hole - 16));
            assert!(!a.tlsf.take_exact(fence, size(fence)));
            assert!(a.tlsf.take_exact(h, hole));
            assert!(!is_free(h) && !is_prev_free(next(h)));
            assert_eq!(a.tlsf.free_bytes, free0 - hole);
            assert!(!a.tlsf.take_exact(h, hole), "taken twice");
            // no request is served from it meanwhile
            let c = a.tlsf.alloc(hole / 2);
            assert!(c as usize >= h as usize + hole || c as usize + size(c) <= h as usize);
            a.tlsf.free(c);
            // given back: indexed and merged as any freed chunk
            a.tlsf.free(h);
            assert_eq!(a.tlsf.free_bytes, free0);
            a.tlsf.free(fence);
            assert_eq!(a.check().free_chunks, 1);
        }
    }

    /// The heap's splits on memory whose pages are mostly not resident, as
    /// a program leaves them that writes only the ends of its blocks: the
    /// cuts that move to a resident page keep the index whole and the
    /// blocks apart.
    #[test]
    fn randomised_heap_splits_over_untouched_pages() {
        let bytes = 4 << 20;
        let a = &mut Arena::new(bytes);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        // (user pointer, requested bytes, fill byte)
        let mut live: Vec<(*mut u8, usize, u8)> = vec![];
        let (mut moved, mut splits) = (0, 0);
        // SAFETY: the test buffer outlives the index, and every chunk used
        // came from it; only whole pages inside the one free chunk are
        // discarded, before any block is taken.
        unsafe {
            let start = a.region.start as usize;
            let lo = align_up(start + 64, PAGE);
            let hi = (a.region.end as usize - 64) & !(PAGE - 1);
            a.discard(lo, hi);
        }
        // the ends of a block: what the program writes and checks
        let ends = |n: usize| (n.min(32), n.saturating_sub(32));
        for step in 0..20_000u32 {
            // SAFETY: as above.
            unsafe {
                let grow = if live.len() < 200 { 7 } else { 5 };
                if rng.below(10) < grow || live.is_empty() {
                    let n = if rng.below(4) == 0 {
                        4096 + rng.below(60_000)
                    } else {
                        rng.below(600)
                    } as usize;
                    let cs = request_to_size(n).unwrap();
                    let c = a.tlsf.alloc_keeping(cs);
                    if c.is_null() {
                        continue;
                    }
                    let p = to_user(c);
                    assert!(usable(c) >= n);
                    if is_prev_free(c) {
                        moved += 1; // cut from a hole's back
                    }
                    assert!(
                        size(c) < cs + MIN_CHUNK || keeps_rest(cs, size(c)),
                        "a block grew at step {step}"
                    );
                    splits += 1;
                    let fill = step as u8;
                    let (head, tail) = ends(n);
                    core::ptr::write_bytes(p, fill, head);
                    core::ptr::write_bytes(p.add(tail), fill, n - tail);
                    live.push((p, n, fill));
                } else {
                    let i = rng.below(live.len() as u64) as usize;
                    let (p, n, fill) = live.swap_remove(i);
                    let (head, tail) = ends(n);
                    assert!(
                        (0..head).chain(tail..n).all(|k| *p.add(k) == fill),
                        "block corrupted at step {step}"
                    );
                    a.tlsf.free(from_user(p));
                }
            }
            a.check();
        }
        for (p, _, _) in live.drain(..) {
            // SAFETY: as above.
            unsafe { a.tlsf.free(from_user(p)) };
        }
        assert_eq!(a.check().free_chunks, 1);
        assert!(
            moved > 100,
            "only {moved} of {splits} blocks were cut from a hole's back"
        );
    }

    /// Big cuts (`alloc_big`), randomised, on and off the lattice: the
    /// index stays consistent, every block keeps its ends, a block is its
    /// class's size on the lattice, else (cut) its request's, and a free
    /// chunk of about its size is taken whole.
    #[test]
    fn randomised_big_cuts_on_and_off_the_lattice() {
        // a size class as `heap::big_size` makes one: 8 per power of two
        let class = |cs: usize| {
            let msb = usize::BITS - 1 - cs.leading_zeros();
            let step = (1usize << (msb - 3)).max(PAGE);
            (cs + step - 1) & !(step - 1)
        };
        let a = &mut Arena::new(32 << 20);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut live: Vec<(*mut u8, usize, u8)> = vec![];
        let (mut exact, mut lattice) = (0, 0);
        for step in 0..6000u32 {
            // SAFETY: the test buffer outlives the index, and every chunk
            // used came from it.
            unsafe {
                if live.len() < 24 && (rng.below(10) < 6 || live.is_empty()) {
                    let n = 64 * 1024 + rng.below(900 * 1024) as usize;
                    let cs = request_to_size(n).unwrap();
                    let cl = class(cs);
                    let on = step % 2000 < 1000;
                    let c = a.tlsf.alloc_big(cs, cl, !on, |_| on);
                    if c.is_null() {
                        continue;
                    }
                    assert!(usable(c) >= n);
                    let s = size(c);
                    if s == cs && cs != cl {
                        assert!(!on, "cut off the lattice at step {step}");
                        exact += 1;
                    } else if s == cl && cs != cl {
                        lattice += 1;
                    } else {
                        assert!(s < cl + (cl >> 3).max(MIN_CHUNK), "step {step}");
                    }
                    let p = to_user(c);
                    let fill = step as u8;
                    *p = fill;
                    *p.add(n - 1) = fill;
                    live.push((p, n, fill));
                } else {
                    // the oldest first (as a queue between threads)
                    let (p, n, fill) = live.remove(0);
                    assert!(*p == fill && *p.add(n - 1) == fill, "step {step}");
                    a.tlsf.free(from_user(p));
                }
            }
            a.check();
        }
        for (p, _, _) in live.drain(..) {
            // SAFETY: as above.
            unsafe { a.tlsf.free(from_user(p)) };
        }
        assert_eq!(a.check().free_chunks, 1);
        assert!(
            exact > 200 && lattice > 200,
            "{exact} exact, {lattice} on the lattice"
        );
    }

    /// Where a big cut puts its block: on the lattice, its class's size from
    /// the chunk's end; off it, ending with its request (at the back of a
    /// chunk: against the next header; at the top: the rest's header right
    /// past it).
    #[test]
    fn a_big_cut_ends_with_its_request_off_the_lattice() {
        let a = &mut Arena::new(8 << 20);
        // SAFETY: the test buffer outlives the index, and every chunk used
        // came from it.
        unsafe {
            // a hole of 1 MiB between two blocks
            let hole = a.tlsf.alloc(1 << 20);
            let fence = a.tlsf.alloc(64);
            a.tlsf.free(hole);
            let (cs, cl) = (600_016, 640 << 10);
            let b = a.tlsf.alloc_big(cs, cl, true, |_| false);
            assert_eq!(size(b), cs);
            assert_eq!(
                b as usize + cs,
                fence as usize,
                "cut at the back, ending at the fence"
            );
            a.tlsf.free(b);
            let b = a.tlsf.alloc_big(cs, cl, false, |_| true);
            assert_eq!(size(b), cl);
            assert_eq!(b as usize + cl, fence as usize);
            a.tlsf.free(b);
            a.tlsf.alloc(1 << 20); // fill the hole
                                   // a chunk of about the request's size is taken whole
            let h2 = a.tlsf.alloc(cl + 4096);
            a.tlsf.alloc(64);
            a.tlsf.free(h2);
            assert_eq!(a.tlsf.alloc_big(cs, cl, true, |_| false), h2);
            assert_eq!(size(h2), cl + 4096);
            // at the top of the region: cut at the front, the rest right past it
            let top = a.tlsf.alloc_big(cs, cl, true, |_| false);
            assert_eq!(size(top), cs);
            assert!(is_free(next(top)) && is_sentinel(next(next(top))));
            a.check();
        }
    }

    #[test]
    fn randomised_against_a_shadow_model() {
        let a = &mut Arena::new(1 << 20);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // (user pointer, requested bytes, fill byte)
        let mut live: Vec<(*mut u8, usize, u8)> = vec![];
        for step in 0..20_000u32 {
            let op = rng.below(10);
            // SAFETY: the test buffer outlives the index, and every chunk used came from it.
            unsafe {
                if op < 5 || live.is_empty() {
                    let n = if rng.below(10) == 0 {
                        rng.below(20_000)
                    } else {
                        rng.below(600)
                    } as usize;
                    let align = if rng.below(8) == 0 {
                        1usize << (5 + rng.below(8))
                    } else {
                        16
                    };
                    let cs = request_to_size(n).unwrap();
                    let c = if align > 16 {
                        a.tlsf.alloc_aligned(cs, align)
                    } else {
                        a.tlsf.alloc(cs)
                    };
                    if c.is_null() {
                        continue;
                    }
                    let p = to_user(c);
                    assert_eq!(p as usize % align, 0);
                    assert!(usable(c) >= n);
                    for (q, m, _) in &live {
                        assert!(p.add(n) <= *q || q.add(*m) <= p, "overlap at step {step}");
                    }
                    let fill = step as u8;
                    core::ptr::write_bytes(p, fill, n);
                    live.push((p, n, fill));
                } else if op < 8 {
                    let i = rng.below(live.len() as u64) as usize;
                    let (p, n, fill) = live.swap_remove(i);
                    assert!(
                        (0..n).all(|k| *p.add(k) == fill),
                        "block corrupted at step {step}"
                    );
                    a.tlsf.free(from_user(p));
                } else {
                    let i = rng.below(live.len() as u64) as usize;
                    let (p, n, fill) = live[i];
                    let m = rng.below(2000) as usize;
                    if a.tlsf
                        .resize_in_place(from_user(p), request_to_size(m).unwrap())
                    {
                        assert!((0..n.min(m)).all(|k| *p.add(k) == fill));
                        assert!(usable(from_user(p)) >= m);
                        core::ptr::write_bytes(p, fill, m);
                        live[i].1 = m;
                    }
                }
            }
            a.check();
        }
        for (p, n, fill) in live.drain(..) {
            // SAFETY: the test buffer outlives the index, and every chunk used came from it.
            unsafe {
                assert!((0..n).all(|k| *p.add(k) == fill));
                a.tlsf.free(from_user(p));
            }
        }
        assert_eq!(a.check().free_chunks, 1);
    }
}
