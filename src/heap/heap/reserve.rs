//! Reserves: chunks in use that a thread's medium cache cuts chunks from
//! without the heap's lock (see the section's comment below).

use super::*;

// ---- reserves ----------------------------------------------------------------
//
// A *reserve* is a chunk in use that a layer above (a thread's medium cache)
// cuts chunks from, from its back, without the heap's lock: one acquisition
// takes it, and every chunk cut from it after that costs none (at 64
// threads the threads' first fills queued on the heap's lock, one
// acquisition and a page fault under it per refill: mscale17, m64).
//
// Why the back: a cut writes the new chunk's header (at the reserve's end,
// in a page nobody else knows of) and nothing else the heap may write. The
// reserve's own head word, which the heap rewrites under its lock
// (PREV_FREE, when the chunk before it is freed or taken), is left alone:
// its size is stale (it still covers the chunks cut since) until a holder of
// the lock syncs it from the reserve's `RES_LEFT` word (`sync_reserves`), as
// every walk of the regions does first (`check`, `for_each_zone`). Nothing
// else reads it: a chunk cut from a reserve says PREV_FREE clear (the
// reserve before it is in use), so a free of it never looks back at the
// reserve, and the chunk before the reserve only reads its FREE flag.
//
// Layout, in the reserve's user words (never handed out): `RES_NEXT` and
// `RES_PREV` link the heap's list of reserves (under the lock);
// `RES_LEFT`, the reserve's size now (written by its owner alone, with
// release order, after the header of the chunk it cut; read with acquire
// order under the lock). A cut leaves at least `RES_KEEP` bytes.
//
// Accounting: a reserve counts in `in_use` whole from the start (its cut
// chunks are in use, and their frees subtract their sizes); `RESERVED` is
// the bytes not cut yet, which the statistics leave out of what is in use.

/// A reserve's word linking the next reserve.
const RES_NEXT: usize = 16;
/// A reserve's word linking the previous one.
const RES_PREV: usize = 24;
/// A reserve's size now (an `AtomicUsize`).
const RES_LEFT: usize = 32;
/// `RES_LEFT`'s bit that a walk of the regions sets (`hold_reserves`)
/// while it relies on the sizes it synced: a merge sees it and fails.
const HOLD: usize = 1 << 63;
/// The least a reserve keeps: its header and the three words above.
pub const RES_KEEP: usize = 64;
const _: () = assert!(RES_LEFT + 8 <= RES_KEEP && RES_KEEP >= MIN_CHUNK);

/// Free bytes in the index besides the break's tail (and an eighth of the
/// heap) from which reserves are only what a refill needs (`take_reserve`).
const RES_HOLES: usize = 4 << 20;

/// Bytes of the reserves not cut yet.
static RESERVED: AtomicUsize = AtomicUsize::new(0);

/// Bytes of the reserves not cut yet (statistics: free, not in use).
pub fn reserved() -> usize {
    RESERVED.load(Ordering::Relaxed)
}

/// Word `off` of reserve `r`.
///
/// # Safety
/// `r` is a reserve (or becoming one, under the heap's lock).
#[inline(always)]
unsafe fn res_word(r: *mut Chunk, off: usize) -> *mut usize {
    (r as *mut u8).add(off) as *mut usize
}

/// Reserve `r`'s size now.
///
/// # Safety
/// `r` is a reserve.
#[inline(always)]
unsafe fn res_left(r: *mut Chunk) -> &'static AtomicUsize {
    // SAFETY: the word is 8-aligned, inside the reserve's kept bytes, and
    // only ever accessed atomically while `r` is a reserve.
    AtomicUsize::from_ptr(res_word(r, RES_LEFT))
}

/// Bytes reserve `r` has left to cut (`RES_KEEP` stays).
///
/// # Safety
/// `r` is a reserve this thread owns.
#[inline]
pub unsafe fn reserve_room(r: *mut Chunk) -> usize {
    (res_left(r).load(Ordering::Relaxed) & !HOLD) - RES_KEEP
}

/// Cuts a chunk of `csize` bytes (a multiple of `ALIGN`, at least
/// `MIN_CHUNK`) from the back of reserve `r`, without the heap's lock, and
/// returns it: in use, `MARK` set; null if `r` has not room for it. The
/// chunk's header is the only word written (a page fault if its page is
/// fresh, outside the lock).
///
/// # Safety
/// `r` is a reserve this thread owns (only its owner cuts it).
#[inline]
pub unsafe fn reserve_cut(r: *mut Chunk, csize: usize) -> *mut Chunk {
    let c = reserve_cut_quiet(r, csize);
    if !c.is_null() {
        RESERVED.fetch_sub(csize, Ordering::Relaxed);
    }
    c
}

/// `reserve_cut` leaving the statistics' `RESERVED` to its owner, who
/// settles it later (`reserved_settle`): no write to a line that every
/// thread's cuts write.
///
/// # Safety
/// As [`reserve_cut`].
#[inline]
pub unsafe fn reserve_cut_quiet(r: *mut Chunk, csize: usize) -> *mut Chunk {
    let left = res_left(r).load(Ordering::Relaxed) & !HOLD;
    if left < csize + RES_KEEP {
        return null_mut();
    }
    let now = left - csize;
    let c = (r as *mut u8).add(now) as *mut Chunk;
    // (PREV_FREE clear: the reserve before it is in use. The chunk after it,
    // the last one cut or the reserve's old neighbour, already says its
    // previous chunk is in use.)
    set_head(c, csize | MARK);
    // (Release: a holder of the lock that reads `now` sees the header.
    // Subtracted, not stored: a walk's `HOLD` stays.)
    res_left(r).fetch_sub(csize, Ordering::Release);
    c
}

/// Takes chunk `c`, in use, back into reserve `r` when it starts where
/// `r` ends and ends at or below `end`, where `r` ended when it was taken
/// (the last chunk cut from it, or one the heap made there since): the
/// cut undone, without the heap's lock; false otherwise. (Not the chunk
/// past `end`: a reserve taken from the back of a freed chunk, just below
/// an older reserve's cuts, took them in one by one as they were freed,
/// and grew without bound.) `c`'s header
/// then says FREE (a second free of it is reported as a double free, by
/// any thread), inside the reserve, where no walk reads it once the size
/// is synced. Statistics as `reserve_cut_quiet`.
///
/// Sound: the chunk after `c` already says its previous chunk is in use,
/// and the reserve is; nothing but `r`'s owner writes `r`'s end, and the
/// heap writes no header of a chunk in use whose previous chunk is in use.
/// A walk of the regions that synced `r`'s size holds it (`HOLD`): the
/// merge fails and `c` is freed to the heap, under its lock (the walk
/// would step onto `c` marked FREE and in no list, and count it broken).
/// The size grows before `c` says FREE, so a walk that syncs between the
/// two steps over `c`.
///
/// # Safety
/// `r` is a reserve this thread owns; `c` an in-use heap chunk, not
/// mmapped, that the caller is freeing (its own header checked).
#[inline]
pub unsafe fn reserve_merge(r: *mut Chunk, end: usize, c: *mut Chunk) -> bool {
    let left = res_left(r).load(Ordering::Relaxed);
    // (`HOLD` set: `left` is past any chunk, the test fails.)
    if c as usize != r as usize + left || c as usize + size(c) > end {
        return false;
    }
    let s = size(c);
    if res_left(r)
        .compare_exchange(left, left + s, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false; // a walk holds it since the load
    }
    set_flags(c, FREE);
    true
}

/// Reserve `r`'s bytes not cut now (its owner's, for `reserved_settle`).
///
/// # Safety
/// `r` is a reserve this thread owns.
#[inline]
pub unsafe fn reserve_left(r: *mut Chunk) -> usize {
    res_left(r).load(Ordering::Relaxed) & !HOLD
}

/// The statistics' `RESERVED` moved from `was` to `now` for a reserve
/// whose owner cuts and merges quietly (`reserve_cut_quiet`,
/// `reserve_merge`); the owner does so before `end_reserve`.
pub fn reserved_settle(was: usize, now: usize) {
    if now > was {
        RESERVED.fetch_add(now - was, Ordering::Relaxed);
    } else if was > now {
        RESERVED.fetch_sub(was - now, Ordering::Relaxed);
    }
}

impl Heap {
    /// Takes a reserve of `want` bytes, else the biggest of `want / 4`,
    /// `want / 16`, ... down to `min` that the index has a chunk for (no
    /// growth: the freed memory is used first), else grows the heap for
    /// `want`, then `min`; null when memory is exhausted. Its owner cuts it
    /// with `reserve_cut` and gives it back with `end_reserve`.
    pub fn take_reserve(&mut self, want: usize, min: usize) -> *mut Chunk {
        let min = min.max(RES_KEEP + MIN_CHUNK);
        // While the index holds many freed chunks besides the break's free
        // tail (an eighth of the heap, and `RES_HOLES`), a reserve is only
        // what the refill needs, from the best fit: those chunks' pages are
        // the program's already, where a big reserve from the tail would
        // fault in fresh ones and leave the small freed chunks, which no
        // purge gives back (under 256 KiB), free for nothing (always
        // `want`: `bench/xmalloc 4 4 1e6 64 32 64 32k` peaked at 100-116 MB
        // of RSS against 72-77, c_tests/stress.c's heap grew to 330 MiB
        // against 190 and its RSS after the pause failed its bound).
        let holes = self.tlsf.free_bytes.saturating_sub(self.brk_tail_free());
        let heap = self.brk_bytes + self.mmap_region_bytes;
        let want = if holes >= RES_HOLES.max(heap / 8) {
            min
        } else {
            want
        };
        // SAFETY: the index and regions are consistent under the lock; the
        // chunk taken is ours to link (its user words are not handed out).
        unsafe {
            let mut c: *mut Chunk = null_mut();
            let mut s = want;
            while c.is_null() && s >= min {
                c = self.tlsf.alloc_keeping(s);
                s /= 4;
            }
            // (A growth for a reserve takes the growth step, as a refill's
            // did: `grow_brk`.)
            self.for_reserve = true;
            if c.is_null() {
                c = self.alloc_slow(want.max(min), 0, 0);
            }
            if c.is_null() && want > min {
                c = self.alloc_slow(min, 0, 0);
            }
            self.for_reserve = false;
            if c.is_null() {
                return c;
            }
            let s = size(c);
            RESERVED.fetch_add(s, Ordering::Relaxed);
            self.account_alloc(s);
            *res_word(c, RES_NEXT) = self.reserves as usize;
            *res_word(c, RES_PREV) = 0;
            if !self.reserves.is_null() {
                *res_word(self.reserves, RES_PREV) = c as usize;
            }
            self.reserves = c;
            res_left(c).store(s, Ordering::Relaxed);
            c
        }
    }

    /// Gives reserve `r` back: what is left of it is freed.
    ///
    /// # Safety
    /// `r` is a reserve the caller owns, which it cuts no more.
    pub unsafe fn end_reserve(&mut self, r: *mut Chunk) {
        let n = *res_word(r, RES_NEXT) as *mut Chunk;
        let p = *res_word(r, RES_PREV) as *mut Chunk;
        if p.is_null() {
            self.reserves = n;
        } else {
            *res_word(p, RES_NEXT) = n as usize;
        }
        if !n.is_null() {
            *res_word(n, RES_PREV) = p as usize;
        }
        let left = res_left(r).load(Ordering::Acquire) & !HOLD;
        RESERVED.fetch_sub(left, Ordering::Relaxed);
        set_size(r, left);
        self.free(r);
    }

    /// Sets every reserve's size to what is left of it (their owners cut
    /// without the lock; a walk of the regions needs sizes that lead from
    /// one header to the next). A chunk cut while the walk runs is in use
    /// and still covered by its reserve's size: the walk steps over it.
    ///
    /// # Safety
    /// The caller holds the heap's lock (`&self` of the heap under it).
    pub unsafe fn sync_reserves(&self) {
        let mut r = self.reserves;
        while !r.is_null() {
            set_size(r, res_left(r).load(Ordering::Acquire) & !HOLD);
            r = *res_word(r, RES_NEXT) as *mut Chunk;
        }
    }

    /// `sync_reserves`, and every reserve held (`HOLD`) until
    /// `release_reserves`: no merge moves a reserve's end meanwhile, so a
    /// walk that must find each chunk where the sizes say (`check`) never
    /// meets one taken back since the sync. (Cuts go on: a chunk cut is
    /// inside the size synced, in use.)
    ///
    /// # Safety
    /// As `sync_reserves`; the caller calls `release_reserves` before it
    /// lets the lock go.
    pub unsafe fn hold_reserves(&self) {
        let mut r = self.reserves;
        while !r.is_null() {
            set_size(r, res_left(r).fetch_or(HOLD, Ordering::Acquire) & !HOLD);
            r = *res_word(r, RES_NEXT) as *mut Chunk;
        }
    }

    /// Ends `hold_reserves`.
    ///
    /// # Safety
    /// The caller holds the heap's lock and held the reserves.
    pub unsafe fn release_reserves(&self) {
        let mut r = self.reserves;
        while !r.is_null() {
            res_left(r).fetch_and(!HOLD, Ordering::Release);
            r = *res_word(r, RES_NEXT) as *mut Chunk;
        }
    }
}
