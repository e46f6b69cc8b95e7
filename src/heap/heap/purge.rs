//! Where heap memory goes back: the purge of free chunks' inner pages
//! (`maybe_purge`, its state for the frees outside the heap), the break's
//! free tail and wholly free mmap'd regions given back (`release_tail`),
//! and the trims (`trim_brk`, `trim`).

use super::*;

/// Bytes freed between two purges of large free chunks.
pub(super) const PURGE_STEP: usize = 8 << 20;
/// A growth of the break this soon after a trim counts as a cycle.
pub(super) const THRASH_NS: usize = 250_000_000;
/// At most one purge per this many nanoseconds.
const PURGE_INTERVAL_NS: usize = 250_000_000;
/// Free chunks are stamped with `coarse_ns() >> EPOCH_SHIFT` (268 ms).
const EPOCH_SHIFT: u32 = 28;
/// Free chunks at least this big have their inner pages purged.
const PURGE_MIN: usize = 256 << 10;
/// At most this many bytes are discarded per call: a purge goes on over the
/// next frees, so that no single free pays for a heap's worth of madvise
/// (discarding costs about 55 us per resident MiB here, so a purge of
/// 200 MiB in one call would take about 11 ms). 128 KiB take about 20k
/// cycles: with 512 KiB, purge steps were 9-12 of the 11-17 frees per run of
/// `bench/latency` that took over 100k cycles; with 128 KiB, 1-2.
const PURGE_BUDGET: usize = 128 << 10;

/// What the purge asks of the frees that do not reach the heap (the medium
/// caches', see `mcache`): `PURGE_IDLE`, `PURGE_DUE` (bytes enough were
/// freed: a free may start one, the interval decides) or `PURGE_ON` (one is
/// part way: every free runs a step, as every heap free does).
static PURGE_STATE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
pub const PURGE_IDLE: u8 = 0;
pub const PURGE_DUE: u8 = 1;
pub const PURGE_ON: u8 = 2;

/// While the purge is due: the coarse clock's reading (`os::coarse_ns`)
/// before which `maybe_purge` would not start one (0: at once), so that the
/// frees outside the heap look at the clock, not take the heap's lock, to
/// learn whether it is time.
static PURGE_AFTER: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// `PURGE_AFTER`: while the purge is due, no purge starts before this
/// reading of the coarse clock.
#[inline]
pub fn purge_after() -> usize {
    PURGE_AFTER.load(core::sync::atomic::Ordering::Relaxed)
}

/// The purge's state for frees outside the heap (a relaxed load).
#[inline(always)]
pub fn purge_state() -> u8 {
    PURGE_STATE.load(core::sync::atomic::Ordering::Relaxed)
}

impl Heap {
    /// A free that did not reach the heap (a medium cache's) while the
    /// purge is due or part way: does what a heap free would.
    pub fn purge_from_cache(&mut self) {
        if self.dirty >= PURGE_STEP {
            self.maybe_purge();
        }
        self.publish_purge();
    }

    /// Tells frees outside the heap whether the purge wants them.
    #[inline]
    pub(super) fn publish_purge(&self) {
        let v = if self.purge_at.is_some() || self.tlsf.partial_from != 0 {
            PURGE_ON
        } else if self.dirty >= PURGE_STEP {
            let after = if self.last_purge == 0 {
                0
            } else {
                self.last_purge + PURGE_INTERVAL_NS
            };
            PURGE_AFTER.store(after, core::sync::atomic::Ordering::Relaxed);
            PURGE_DUE
        } else {
            PURGE_IDLE
        };
        if PURGE_STATE.load(core::sync::atomic::Ordering::Relaxed) != v {
            PURGE_STATE.store(v, core::sync::atomic::Ordering::Relaxed);
            crate::gate::set(crate::gate::PURGE, v != PURGE_IDLE);
        }
    }

    /// Purges if the last purge is at least `PURGE_INTERVAL_NS` old: memory
    /// a program frees and soon reuses is not given back and faulted in again
    /// over and over (jemalloc and mimalloc delay purging for the same
    /// reason), while a heap that stays free after a burst goes back at the
    /// next free past the interval. A purge that ran out of budget goes on
    /// at once.
    #[cold]
    pub(super) fn maybe_purge(&mut self) {
        if self.purge_at.is_some() || self.tlsf.partial_from != 0 {
            self.purge();
            return;
        }
        // (Until the purge, every free looks at the clock: a program that
        // went quiet gets its memory back at its next free. The coarse clock
        // costs a few nanoseconds.)
        let now = os::coarse_ns();
        // Free chunks are stamped with the interval they were indexed in
        // (as of the last look at the clock; intervals of 2^28 ns, about the
        // purge interval): the purge leaves this one's.
        self.tlsf.epoch = now >> EPOCH_SHIFT;
        if self.last_purge == 0 {
            // The first time: start the clock, so that a program's first
            // 8 MiB of frees do not purge what it is about to reuse.
            self.last_purge = now;
        } else if now.wrapping_sub(self.last_purge) >= PURGE_INTERVAL_NS {
            self.last_purge = now;
            self.purge_at = Some(0);
            self.purge_before = self.tlsf.epoch;
            self.purge_left = 0;
            self.purge();
        }
    }

    /// Returns the whole pages inside large free chunks to the OS
    /// (`MADV_DONTNEED`), so that RSS falls after a burst even where the break
    /// cannot shrink. Starts once per `PURGE_STEP` bytes freed; visits only
    /// the chunks of `PURGE_MIN` bytes or more, and discards at most
    /// `PURGE_BUDGET` bytes per call, resuming at the next free.
    #[cold]
    fn purge(&mut self) {
        // Only chunks indexed before the purge's interval: one freed (or cut
        // from) in this one may be about to be reused, and discarding it
        // would fault it in again. The bytes left count as freed since this
        // purge, so the first free past the next interval purges them (else
        // a burst freed just before a purge stayed resident until 8 MiB more
        // were freed, which an idle program never does).
        // (A chunk the walk left part way through may have moved to another
        // list since, when cut from or merged: it goes on from there.)
        let from = match self.tlsf.partial_from {
            0 => self.purge_at.unwrap_or(usize::MAX),
            k => self.purge_at.unwrap_or(usize::MAX).min(k - 1),
        };
        self.tlsf.partial_from = 0;
        let (n, left, at) = self.discard_free(PURGE_MIN, self.purge_before, from, PURGE_BUDGET);
        self.released += n;
        self.purge_left += left;
        self.purge_at = at;
        // Until it ends, every free comes back here (`free` tests `dirty`).
        self.dirty = if at.is_some() {
            PURGE_STEP
        } else {
            self.purge_left
        };
    }

    /// Discards the whole pages inside the free chunks of at least `min`
    /// bytes last indexed before epoch `before` and not discarded since,
    /// walking the lists from number `from`, until `budget` bytes were
    /// discarded. Returns how many bytes, the bytes of the chunks left
    /// because they were indexed at or after `before`, and the list to
    /// resume from if the budget ran out (see `Tlsf::walk_free_from`).
    fn discard_free(
        &mut self,
        min: usize,
        before: usize,
        from: usize,
        budget: usize,
    ) -> (usize, usize, Option<usize>) {
        let (mut n, mut left) = (0, 0);
        // SAFETY: free chunks hold no user data; only whole pages past the
        // list links and the stamp are discarded.
        let at = unsafe {
            self.tlsf.walk_free_from(min.max(STAMP_MIN), from, |c| {
                let t = crate::tlsf::stamp(c);
                let base = c as usize;
                let lo = align_up(base + STAMP_OFF + 8, os::PAGE);
                let hi = (base + size(c)) & !(os::PAGE - 1);
                // Pages from `top` up are discarded already.
                let top = if t == PURGED {
                    return true;
                } else if is_partial(t) {
                    (base + (t & !PARTIAL)).min(hi)
                } else if t >= before {
                    left += size(c); // recent
                    return true;
                } else {
                    hi
                };
                if top <= lo {
                    crate::tlsf::set_stamp(c, PURGED);
                    return true;
                }
                if n >= budget {
                    return false;
                }
                // From the top down, so that the part left keeps its header.
                let start = (top.saturating_sub(budget - n) & !(os::PAGE - 1)).max(lo);
                if os::discard(start as *mut u8, top - start) {
                    n += top - start;
                }
                // A chunk left part way through is where the walk resumes.
                let st = if start == lo {
                    PURGED
                } else {
                    PARTIAL | (start - base)
                };
                crate::tlsf::set_stamp(c, st);
                start == lo
            })
        };
        (n, left, at)
    }

    #[cold]
    pub(super) unsafe fn release_tail(&mut self, f: *mut Chunk, sent: *mut Chunk) {
        let r = sentinel_region(sent);
        if (*r).kind == KIND_BRK {
            let cfg = config::get();
            if self.pad_boost != 0 && os::coarse_ns().wrapping_sub(self.boost_at) > BOOST_LIFE_NS {
                self.pad_boost = 0; // the program stopped cycling
            }
            let keep = cfg.top_pad + self.pad_boost;
            if size(f) > cfg.trim_threshold && size(f) > keep + os::PAGE {
                let cut = self.trim_brk(keep);
                if cut != 0 {
                    self.last_trim = os::coarse_ns();
                    self.last_cut = cut;
                    self.cycle_cut += cut;
                }
            }
        } else if (*r).kind == KIND_MMAP && f as *mut u8 == (*r).start && self.mmap_regions > 1 {
            self.tlsf.unlink(f);
            self.regions.remove(r);
            self.mmap_regions -= 1;
            self.mmap_region_bytes -= (*r).map_len;
            self.released += (*r).map_len;
            crate::zonemap::remove_ours((*r).map_base, (*r).map_base.add((*r).map_len));
            os::unmap((*r).map_base, (*r).map_len);
            self.traced();
        }
    }

    /// Shrinks the break so that about `keep` free bytes stay at its tail.
    /// Returns the bytes released.
    pub fn trim_brk(&mut self, keep: usize) -> usize {
        if !self.brk_started {
            return 0;
        }
        // SAFETY: the break region is ours; we check sbrk(0) before moving it.
        unsafe {
            let end = self.brk.end;
            if os::brk_top() != end {
                return 0;
            }
            let cut = self.tlsf.shrink_tail(end, keep, os::PAGE);
            if cut == 0 {
                return 0;
            }
            if !os::brk_shrink(cut) {
                // The break did not move: take the memory back.
                self.tlsf.grow_tail(self.brk.end, cut);
                return 0;
            }
            crate::zonemap::shrink_ours(end, self.brk.end);
            self.brk_bytes -= cut;
            self.released += cut;
            self.traced();
            cut
        }
    }

    /// malloc_trim: shrinks the break down to `pad` free bytes and discards
    /// the whole pages inside every free chunk. Returns whether any memory
    /// went back.
    pub fn trim(&mut self, pad: usize) -> bool {
        let mut any = self.trim_brk(pad) != 0;
        let (discarded, _, _) = self.discard_free(0, PURGED, 0, usize::MAX);
        if discarded != 0 {
            self.released += discarded;
            any = true;
        }
        any
    }
}
