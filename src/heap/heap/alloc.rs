//! Chunks in and out of the heap: allocation (plain and aligned; a miss
//! grows the heap, see `grow`), free (which may trim the break's tail, run
//! a purge step and make the sparse purge due), and resizing in place.

use super::*;

impl Heap {
    /// Allocates a chunk of `csize` bytes, growing the heap if needed.
    /// Null when memory is exhausted.
    #[inline]
    pub fn alloc(&mut self, csize: usize) -> *mut Chunk {
        // SAFETY: the index and regions are consistent under the lock.
        unsafe {
            let mut c = self.tlsf.alloc_keeping(csize);
            if c.is_null() {
                c = self.alloc_slow(csize, 0, 0);
            }
            if !c.is_null() {
                self.account_alloc(size(c));
            }
            c
        }
    }

    /// Whether a search for a chunk of `csize` bytes finds one without the
    /// heap growing.
    pub fn can_serve(&self, csize: usize) -> bool {
        self.tlsf.can_serve(csize)
    }

    /// Allocates a chunk of `csize` bytes whose user pointer is aligned to
    /// `align` (> 16).
    pub fn alloc_aligned(&mut self, csize: usize, align: usize) -> *mut Chunk {
        self.alloc_aligned_at(csize, align, HDR)
    }

    /// Allocates a chunk of `csize` bytes whose address plus `at` is aligned
    /// to `align` (see `Tlsf::alloc_aligned_at`).
    pub fn alloc_aligned_at(&mut self, csize: usize, align: usize, at: usize) -> *mut Chunk {
        // SAFETY: as alloc.
        unsafe {
            let mut c = self.tlsf.alloc_aligned_at(csize, align, at);
            if c.is_null() {
                c = self.alloc_slow(csize, align, at);
            }
            if !c.is_null() {
                self.account_alloc(size(c));
            }
            c
        }
    }

    #[inline]
    pub(super) fn account_alloc(&mut self, s: usize) {
        self.in_use += s;
        crate::events::heap_in_use_rose(self.in_use.saturating_sub(reserved()));
    }

    #[cold]
    pub(super) unsafe fn alloc_slow(
        &mut self,
        csize: usize,
        align: usize,
        at: usize,
    ) -> *mut Chunk {
        if self.grow_for(csize, align) {
            let c = if align == 0 {
                self.tlsf.alloc_keeping(csize)
            } else {
                self.tlsf.alloc_aligned_at(csize, align, at)
            };
            if !c.is_null() {
                return c;
            }
        }
        null_mut()
    }

    /// Frees in-use chunk `c`, then gives memory back to the OS if the free
    /// tail of the break passed the trim threshold or an mmap'd region
    /// became wholly free.
    ///
    /// # Safety
    /// `c` is an in-use chunk of this heap (as `validate` checks).
    #[inline]
    pub unsafe fn free(&mut self, c: *mut Chunk) {
        // SAFETY: c was validated by the caller as an in-use chunk of ours.
        unsafe {
            let s = size(c);
            self.in_use -= s;
            crate::events::set_heap_in_use(self.in_use.saturating_sub(reserved()));
            let f = self.tlsf.free(c);
            let n = next(f);
            if is_sentinel(n) {
                self.release_tail(f, n);
            }
            if s >= SPARSE_MIN {
                self.last_big = f;
                self.unwatch(c as usize);
            }
            self.dirty += s;
            if self.dirty >= PURGE_STEP {
                self.maybe_purge();
                self.publish_purge();
            }
        }
    }

    /// Tries to resize in-use chunk `c` to `csize` in place, extending the
    /// break when `c` is its last chunk. A growing chunk takes up to `want`
    /// bytes (`>= csize`) where its free neighbour has them: headroom for
    /// the next steps of a block that grows by small steps.
    ///
    /// # Safety
    /// `c` is an in-use chunk of this heap (as `validate` checks).
    pub unsafe fn resize_in_place(&mut self, c: *mut Chunk, csize: usize, want: usize) -> bool {
        // SAFETY: c is an in-use chunk of ours (validated by the caller).
        unsafe {
            let old = size(c);
            let mut ok = if csize <= old {
                self.tlsf.resize_in_place(c, csize)
            } else {
                self.tlsf.grow_in_place(c, csize, want)
            };
            if !ok
                && !self.brk_failed
                && self.brk_started
                && self.tail_of_brk(c)
                && !self.tlsf.can_serve(want)
            {
                // Grow the break under the tail chunk (string building), but
                // a block moves instead where a free chunk can take it.
                // A string growing at the tail while the others moved into
                // the holes below pushed the heap up for ever: 64 strings
                // built to 64 KiB, 4000 times over, left a 36 MiB free hole
                // under them and a 44 MiB break (glibc: 3.4 MiB). Big
                // blocks too (until realloc17j, from 256 KiB on they grew
                // the break: a move copies them): a free chunk below is
                // pages the program wrote and freed, the break's growth
                // fresh pages, a fault each (about 2 us here, where a copy
                // of one costs 0.15). bench/realloc's vectors, grown at the
                // tail of the 14 MiB the strings before them had freed,
                // grew the break by 10 MiB; `bench/large` peak RSS 163 ->
                // 153 MB with `mcache::make_room`.
                if self.grow_brk(csize - old) {
                    ok = self.tlsf.grow_in_place(c, csize, want);
                }
            }
            if ok {
                self.in_use = self.in_use - old + size(c);
                crate::events::heap_in_use_rose(self.in_use.saturating_sub(reserved()));
                let n = next(c);
                if is_free(n) && is_sentinel(next(n)) {
                    self.release_tail(n, next(n));
                }
            }
            ok
        }
    }

    /// Is `c` followed only by free space (or nothing) up to the break's end?
    unsafe fn tail_of_brk(&self, c: *mut Chunk) -> bool {
        let n = next(c);
        let nn = if is_free(n) { next(n) } else { n };
        nn == self.brk.sentinel()
    }
}
