//! Region descriptors: a contiguous stretch of memory carved into chunks,
//! from the first chunk at `start` to the sentinel ending at `end`.
//!
//! Kinds: the break region (grown with `sbrk`, shrunk when its tail is free),
//! mmap'd regions (used when the break cannot grow; unmapped when wholly free)
//! and pool regions (caller memory; never grown by us).

use crate::chunk::*;

/// The break region.
pub const KIND_BRK: usize = 1;
/// A region mapped with mmap.
pub const KIND_MMAP: usize = 2;
/// A region of caller memory in a pool.
pub const KIND_POOL: usize = 3;

/// Describes one region. For mmap'd and pool regions it lives at the start of
/// the region's own memory; the break region's lives in the heap's static.
#[repr(C)]
pub struct Region {
    pub next: *mut Region,
    pub prev: *mut Region,
    /// The first chunk (16-aligned).
    pub start: *mut u8,
    /// One past the sentinel.
    pub end: *mut u8,
    /// One of the KIND_ constants.
    pub kind: usize,
    /// For mmap'd regions: the mapping's base and length.
    pub map_base: *mut u8,
    pub map_len: usize,
}

impl Region {
    /// An empty descriptor.
    pub const fn empty(kind: usize) -> Self {
        Region {
            next: core::ptr::null_mut(),
            prev: core::ptr::null_mut(),
            start: core::ptr::null_mut(),
            end: core::ptr::null_mut(),
            kind,
            map_base: core::ptr::null_mut(),
            map_len: 0,
        }
    }

    /// The region's sentinel chunk.
    #[inline]
    pub fn sentinel(&self) -> *mut Chunk {
        self.end.wrapping_sub(SENTINEL) as *mut Chunk
    }

    /// Does the region hold the address `p` strictly inside its chunks?
    #[inline]
    pub fn contains(&self, p: *const u8) -> bool {
        (self.start as *const u8) <= p && p < self.end as *const u8
    }

    /// Bytes of memory the region spans.
    pub fn span(&self) -> usize {
        self.end as usize - self.start as usize
    }
}

/// The region descriptor sentinel `c` points to.
///
/// # Safety
/// `c` is a region's sentinel (see `chunk::is_sentinel`), readable.
#[inline(always)]
pub unsafe fn sentinel_region(c: *const Chunk) -> *mut Region {
    (*c).next_free as *mut Region
}

/// A doubly-linked list of regions (head only; the descriptors hold links).
pub struct RegionList {
    pub head: *mut Region,
}

impl Default for RegionList {
    fn default() -> Self {
        Self::new()
    }
}

impl RegionList {
    pub const fn new() -> Self {
        RegionList {
            head: core::ptr::null_mut(),
        }
    }

    /// Adds `r` at the head.
    ///
    /// # Safety
    /// `r` is a live descriptor not in any list.
    pub unsafe fn push(&mut self, r: *mut Region) {
        (*r).prev = core::ptr::null_mut();
        (*r).next = self.head;
        if !self.head.is_null() {
            (*self.head).prev = r;
        }
        self.head = r;
    }

    /// Removes `r`.
    ///
    /// # Safety
    /// `r` is in this list.
    pub unsafe fn remove(&mut self, r: *mut Region) {
        if (*r).prev.is_null() {
            self.head = (*r).next;
        } else {
            (*(*r).prev).next = (*r).next;
        }
        if !(*r).next.is_null() {
            (*(*r).next).prev = (*r).prev;
        }
        (*r).next = core::ptr::null_mut();
        (*r).prev = core::ptr::null_mut();
    }

    /// The region holding `p`, or null. O(number of regions).
    ///
    /// # Safety
    /// Every descriptor in the list is live.
    pub unsafe fn find(&self, p: *const u8) -> *mut Region {
        let mut r = self.head;
        while !r.is_null() {
            if (*r).contains(p) {
                return r;
            }
            r = (*r).next;
        }
        core::ptr::null_mut()
    }
}
