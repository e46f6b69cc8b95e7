//! Checks and walks of the heap: a chunk validated before free/realloc
//! trust it (`validate`), the whole heap checked (`check`), its zones
//! visited (`for_each_zone`), and figures read without or under the lock.

use super::*;

/// Bytes of heap chunks in use (a relaxed snapshot, without the lock).
pub fn in_use_hint() -> usize {
    crate::events::heap_in_use()
}

impl Heap {
    /// Checks a chunk passed to free/realloc before trusting it (its own
    /// header was checked by the caller): the error to report for a double
    /// free, or for neighbours whose headers an overflow or underflow
    /// overwrote. The caller reports after releasing the lock.
    ///
    /// # Safety
    /// `c`'s header lies in memory of this heap and carries a valid tag
    /// (`head_ok`): its size then leads to the next header in the same region.
    #[inline]
    pub unsafe fn validate(&self, c: *mut Chunk) -> Result<(), &'static str> {
        if !crate::guard::CHECKS {
            return Ok(());
        }
        // SAFETY: c's header is ours (tag checked), so its size leads to the
        // next header inside the same region.
        unsafe {
            let h = head(c);
            if h & FREE != 0 {
                return Err("double free");
            }
            let s = h & SIZE_MASK;
            if !(MIN_CHUNK..=MAX_REQUEST * 2).contains(&s) {
                return Err("invalid pointer or corrupted block header");
            }
            let n = next(c);
            if !head_ok(n) || head(n) & (PREV_FREE | MMAPPED) != 0 {
                return Err("heap overflow (the next block's header was overwritten)");
            }
            if h & PREV_FREE != 0 {
                let p = prev(c);
                if !head_ok(p) || !is_free(p) || size(p) != (*c).prev_size {
                    return Err(
                        "heap corruption (the previous block's header or footer was overwritten)",
                    );
                }
            }
        }
        Ok(())
    }

    /// Walks every region and the index; returns the number of broken
    /// invariants, and what the walks found in total. `zone_ok(c)` is the
    /// small layer's test of the zone header in zone chunk `c` (live and in
    /// use when it is called).
    pub fn check(&self, mut zone_ok: impl FnMut(*mut Chunk) -> bool) -> (usize, RegionCheck) {
        let mut total = RegionCheck::default();
        let mut bad = 0;
        // SAFETY: under the lock every region descriptor is live.
        unsafe {
            self.hold_reserves();
            let mut r = self.regions.head;
            while !r.is_null() {
                let rc = self.tlsf.check_region(r);
                bad += rc.bad;
                total.free_chunks += rc.free_chunks;
                total.free_bytes += rc.free_bytes;
                total.used_chunks += rc.used_chunks;
                total.used_bytes += rc.used_bytes;
                r = (*r).next;
            }
            let regions = &self.regions;
            bad += self.tlsf.check_lists(|p| !regions.find(p).is_null());
            self.release_reserves();
        }
        // Zones: their chunk must span its granule, and the header fields
        // fixed at creation must still hold. Only over a sound chunk chain:
        // the walk follows sizes without the checks of check_region.
        if bad == 0 {
            self.for_each_zone(|c| {
                // SAFETY: c is a live chunk (for_each_zone).
                if unsafe { size(c) != crate::zonemap::ZONE_SIZE } || !zone_ok(c) {
                    bad += 1;
                }
            });
        }
        if total.free_chunks != self.tlsf.free_count || total.free_bytes != self.tlsf.free_bytes {
            bad += 1;
        }
        if total.used_bytes != self.in_use + self.borrowed {
            bad += 1;
        }
        total.bad = bad;
        (bad, total)
    }

    /// Calls `f(chunk)` for every zone chunk of the heap (in use, and marked
    /// a zone in the zone map); the zone header in it is the small layer's.
    pub fn for_each_zone(&self, mut f: impl FnMut(*mut Chunk)) {
        // SAFETY: under the lock every region and chunk header is consistent
        // (the reserves' sizes once synced); a zone header is live while its
        // chunk is in use.
        unsafe {
            self.sync_reserves();
            let mut r = self.regions.head;
            while !r.is_null() {
                let mut c = (*r).start as *mut Chunk;
                while !is_sentinel(c) {
                    if !is_free(c) && crate::zonemap::is_zone(to_user(c)) {
                        f(c);
                    }
                    c = next(c);
                }
                r = (*r).next;
            }
        }
    }

    /// Free bytes at the tail of the break (glibc's keepcost).
    pub fn brk_tail_free(&self) -> usize {
        if !self.brk_started {
            return 0;
        }
        let s = self.brk.sentinel();
        // SAFETY: the sentinel of a started break region is live.
        unsafe {
            if is_prev_free(s) {
                (*s).prev_size
            } else {
                0
            }
        }
    }
}
