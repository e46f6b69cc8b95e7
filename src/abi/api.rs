//! The Rust API: [`MemAlloc`], a [`GlobalAlloc`] on memalloc's own paths,
//! and safe wrappers for what `include/memalloc.h` offers: [`stats`],
//! [`check`], [`dump`] (and [`dump_to`] with the `std` feature) and
//! [`Pool`].
//!
//! Each `GlobalAlloc` method calls the layer the C functions call
//! (`export`'s internal functions), never the exported C names, so it works
//! whether or not the `override` feature exports them. Nothing here
//! allocates through Rust's allocator, which may be [`MemAlloc`] itself.
//! Costs: an allocation of at most 4 KiB with alignment up to 16 is the C
//! `malloc` fast path (a per-thread bin pop, no lock).

use crate::cache::SMALL_MAX;
use crate::chunk::{ALIGN, MAX_REQUEST};
use crate::export;
use crate::os;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

pub use crate::stats::Stats;

/// memalloc as Rust's global allocator.
///
/// Every [`Layout`] is served: alignments up to 16 by the small-object
/// caches and the heap, 32 and 64 for up to 4 KiB by the small-object
/// caches too, larger ones (above a page too) by aligned heap blocks or
/// aligned mappings. `alloc_zeroed` does not clear fresh mappings
/// again; `realloc` resizes a heap block in place where its neighbours
/// allow, and grows a large block of alignment up to 16 with `mremap`.
///
/// Without the `override` feature the C allocator of the process stays
/// glibc's: C libraries the program links keep their own heap.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: memalloc::MemAlloc = memalloc::MemAlloc;
///
/// fn main() {
///     let v: Vec<u64> = (0..10_000).collect();
///     assert_eq!(v.iter().sum::<u64>(), 49_995_000);
///     // The vector's 80,000 bytes are memalloc's.
///     assert!(memalloc::stats().in_use >= 80_000);
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MemAlloc;

// SAFETY: every method returns memory from memalloc's heap, caches or
// mappings that satisfies the layout (size and alignment) or null, and
// frees only what the caller says came from here; the allocator is
// thread-safe (per-thread caches, locked heap).
unsafe impl GlobalAlloc for MemAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= ALIGN {
            export::alloc(layout.size())
        } else {
            alloc_overaligned(layout.align(), layout.size())
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // A small block is the `alloc` path's, then cleared: the C calloc
        // path before it (its overflow test, the mmap threshold's loads)
        // cost a 24-byte alloc_zeroed + dealloc pair 106 instructions,
        // this 82.5 (callgrind, tests/rust_path.rs; `clear`).
        if layout.align() <= ALIGN && layout.size() <= SMALL_MAX {
            let p = export::alloc(layout.size());
            if !p.is_null() {
                // SAFETY: p holds at least layout.size() bytes.
                clear(p, layout.size());
            }
            return p;
        }
        alloc_zeroed_other(layout.align(), layout.size())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        export::dealloc_sized(ptr, layout.size())
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= ALIGN {
            export::realloc_sized(ptr, layout.size(), new_size)
        } else {
            realloc_overaligned(ptr, layout.align(), new_size)
        }
    }
}

/// Clears the `n` bytes at `p`: from 16 to 32 bytes with two 16-byte
/// stores (they overlap below 32), so that the small `alloc_zeroed` most
/// Rust types take makes no call to `memset` (`tests/rust_path.rs`: 8
/// instructions fewer a 24-byte pair); other sizes with `memset`.
///
/// # Safety
/// `p` is valid for writes of `n` bytes.
#[inline(always)]
unsafe fn clear(p: *mut u8, n: usize) {
    if n.wrapping_sub(16) <= 16 {
        // SAFETY: 16 <= n <= 32: both stores lie in the n bytes.
        (p as *mut [u8; 16]).write_unaligned([0; 16]);
        (p.add(n - 16) as *mut [u8; 16]).write_unaligned([0; 16]);
    } else {
        core::ptr::write_bytes(p, 0, n);
    }
}

/// [`MemAlloc::alloc`] above 16-byte alignment. Out of line: inlined into
/// `__rust_alloc` (rustc inlines it across crates, without LTO too), it made
/// the small path save and restore five registers (tests/rust_path.rs: 84
/// instructions an alloc + dealloc pair, 73 without).
#[inline(never)]
fn alloc_overaligned(align: usize, size: usize) -> *mut u8 {
    export::alloc_aligned(align, size)
}

/// [`MemAlloc::alloc_zeroed`] above 16-byte alignment or `SMALL_MAX`
/// bytes (fresh mappings are not cleared again), out of line as
/// [`alloc_overaligned`].
#[inline(never)]
fn alloc_zeroed_other(align: usize, size: usize) -> *mut u8 {
    export::alloc_aligned_zeroed(align, size)
}

/// [`MemAlloc::realloc`] above 16-byte alignment, out of line as
/// [`alloc_overaligned`].
///
/// # Safety
/// As [`export::realloc_aligned`].
#[inline(never)]
unsafe fn realloc_overaligned(ptr: *mut u8, align: usize, new_size: usize) -> *mut u8 {
    export::realloc_aligned(ptr, align, new_size)
}

/// The allocator's figures now: bytes in use and at peak, bytes held from
/// the OS, free bytes and blocks, bytes given back, system calls made (the
/// C `memalloc_get_stats`).
///
/// ```
/// let before = memalloc::stats();
/// let s = memalloc::stats();
/// assert!(s.peak_in_use >= s.in_use);
/// assert_eq!(s.heap_bytes, s.brk_bytes + s.mmap_region_bytes);
/// assert!(s.syscalls >= before.syscalls);
/// ```
pub fn stats() -> Stats {
    crate::stats::stats()
}

/// Walks the whole heap (every region, chunk, free list and bitmap) and
/// returns the number of broken invariants: 0 means consistent (the C
/// `memalloc_check`).
///
/// ```
/// let v = vec![1u8; 100_000]; // whatever the global allocator is
/// assert_eq!(memalloc::check(), 0);
/// drop(v);
/// ```
pub fn check() -> usize {
    crate::export::check_heap()
}

/// Writes every region and block (address, size, used or free), each zone's
/// class and occupancy, the blocks mapped on their own and the TLSF bitmaps
/// to the file descriptor `fd`, without allocating (the C `memalloc_dump`).
/// Errors writing are ignored.
///
/// ```
/// // Standard error:
/// memalloc::dump(2);
/// ```
pub fn dump(fd: i32) {
    crate::stats::dump(fd)
}

/// [`dump`] into any writer: a `String` buffer, a file, a socket.
///
/// The dump is written to an anonymous memory file first (`memfd_create`),
/// so that no allocator lock is held while `out` runs, which may allocate.
///
/// ```
/// let mut out = Vec::new();
/// memalloc::dump_to(&mut out).unwrap();
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.starts_with("memalloc heap dump"));
/// ```
#[cfg(feature = "std")]
pub fn dump_to<W: std::io::Write + ?Sized>(out: &mut W) -> std::io::Result<()> {
    use std::io::{Error, Read, Seek, SeekFrom};
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: a NUL-terminated name; the call creates a new descriptor.
    let fd = unsafe { libc::memfd_create(c"memalloc-dump".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    dump(fd);
    file.seek(SeekFrom::Start(0))?;
    let mut buf = [0u8; 4096];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
    }
}

/// A TLSF heap over memory you give it: a `&'static mut [u8]` (a static
/// buffer, bare metal) or a region it maps and owns ([`Pool::new`]).
///
/// Allocation and free are O(1) and make no system call; a pool has its own
/// lock, so `&Pool` may be shared between threads. A pointer that did not
/// come from the pool, or a block freed twice, is reported
/// (`memalloc: invalid pointer (not from this pool) at 0x...`) and the
/// process aborts, as with the C `memalloc_pool_*` functions.
///
/// ```
/// use std::alloc::Layout;
///
/// let pool = memalloc::Pool::new(1 << 20).expect("mmap");
/// let layout = Layout::from_size_align(1000, 64).unwrap();
/// let p = pool.alloc(layout).expect("room");
/// assert_eq!(p.as_ptr() as usize % 64, 0);
/// // SAFETY: p came from this pool with this layout.
/// unsafe { pool.dealloc(p, layout) };
/// assert_eq!(pool.check(), 0);
/// ```
#[derive(Debug)]
pub struct Pool {
    raw: NonNull<crate::pool::Pool>,
    /// The mapping [`Pool::new`] made, unmapped on drop.
    mapped: Option<(NonNull<u8>, usize)>,
}

// SAFETY: the pool's state is behind its own lock, and the memory it manages
// is owned by the pool for its whole life.
unsafe impl Send for Pool {}
// SAFETY: as above: every operation takes the pool's lock.
unsafe impl Sync for Pool {}

impl Pool {
    /// A pool over `bytes` bytes (rounded up to whole pages) that it maps
    /// from the OS and unmaps when dropped. `None` if the mapping fails or
    /// `bytes` is too small for the pool's header (about 10.5 KiB, most of
    /// it the TLSF index).
    ///
    /// ```
    /// let pool = memalloc::Pool::new(64 * 1024).unwrap();
    /// assert!(memalloc::Pool::new(100).is_none()); // one page: no room
    /// # drop(pool);
    /// ```
    pub fn new(bytes: usize) -> Option<Pool> {
        let len = bytes.checked_add(os::PAGE - 1)? & !(os::PAGE - 1);
        if len == 0 || len > MAX_REQUEST {
            return None;
        }
        let mem = NonNull::new(os::map(len))?;
        // SAFETY: the fresh mapping is ours alone until the pool unmaps it.
        let raw = unsafe { crate::pool::create(mem.as_ptr(), len) };
        match NonNull::new(raw) {
            Some(raw) => Some(Pool {
                raw,
                mapped: Some((mem, len)),
            }),
            None => {
                // SAFETY: the mapping is ours and nothing refers to it.
                unsafe { os::unmap(mem.as_ptr(), len) };
                None
            }
        }
    }

    /// A pool over a buffer that lives for the whole program. `None` if the
    /// buffer is too small for the pool's header (about 10.5 KiB).
    ///
    /// ```
    /// use std::alloc::Layout;
    ///
    /// let arena: &'static mut [u8] = Box::leak(vec![0u8; 1 << 16].into_boxed_slice());
    /// let pool = memalloc::Pool::from_static(arena).unwrap();
    /// let p = pool.alloc(Layout::new::<[u64; 4]>()).unwrap();
    /// # unsafe { pool.dealloc(p, Layout::new::<[u64; 4]>()) };
    /// ```
    pub fn from_static(mem: &'static mut [u8]) -> Option<Pool> {
        // SAFETY: the buffer is borrowed mutably for ever: only the pool
        // touches it from now on.
        let raw = unsafe { crate::pool::create(mem.as_mut_ptr(), mem.len()) };
        Some(Pool {
            raw: NonNull::new(raw)?,
            mapped: None,
        })
    }

    /// Adds a buffer to the pool, which then allocates from it too. `false`
    /// if it is too small to hold a block.
    ///
    /// ```
    /// use std::alloc::Layout;
    ///
    /// let pool = memalloc::Pool::new(32 * 1024).unwrap();
    /// let big = Layout::from_size_align(40_000, 16).unwrap();
    /// assert!(pool.alloc(big).is_none());
    /// let more: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
    /// assert!(pool.add_region(more));
    /// assert!(pool.alloc(big).is_some());
    /// ```
    pub fn add_region(&self, mem: &'static mut [u8]) -> bool {
        // SAFETY: the pool is live, and the buffer is the pool's for ever.
        unsafe { crate::pool::add_region(self.raw.as_ptr(), mem.as_mut_ptr(), mem.len()) == 0 }
    }

    /// A block for `layout` (any power-of-two alignment), or `None` when the
    /// pool has no room.
    ///
    /// ```
    /// use std::alloc::Layout;
    ///
    /// let pool = memalloc::Pool::new(1 << 16).unwrap();
    /// let l = Layout::from_size_align(100, 4096).unwrap();
    /// let p = pool.alloc(l).unwrap();
    /// assert_eq!(p.as_ptr() as usize % 4096, 0);
    /// # unsafe { pool.dealloc(p, l) };
    /// ```
    pub fn alloc(&self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: the pool is live (it is destroyed only on drop).
        NonNull::new(unsafe {
            crate::pool::memalign(self.raw.as_ptr(), layout.align(), layout.size())
        })
    }

    /// As [`Pool::alloc`], with the block's bytes set to zero.
    ///
    /// ```
    /// use std::alloc::Layout;
    ///
    /// let pool = memalloc::Pool::new(1 << 16).unwrap();
    /// let l = Layout::new::<[u8; 256]>();
    /// let p = pool.alloc_zeroed(l).unwrap();
    /// // SAFETY: the block holds 256 initialised bytes.
    /// assert!(unsafe { std::slice::from_raw_parts(p.as_ptr(), 256) }.iter().all(|&b| b == 0));
    /// # unsafe { pool.dealloc(p, l) };
    /// ```
    pub fn alloc_zeroed(&self, layout: Layout) -> Option<NonNull<u8>> {
        let p = self.alloc(layout)?;
        // SAFETY: the block holds at least layout.size() bytes.
        unsafe { core::ptr::write_bytes(p.as_ptr(), 0, layout.size()) };
        Some(p)
    }

    /// Frees a block of this pool. A pointer that is not a live block of
    /// this pool is reported and the process aborts.
    ///
    /// # Safety
    /// `ptr` came from this pool with `layout`, and is not used afterwards.
    ///
    /// ```
    /// use std::alloc::Layout;
    ///
    /// let pool = memalloc::Pool::new(1 << 16).unwrap();
    /// let p = pool.alloc(Layout::new::<u64>()).unwrap();
    /// // SAFETY: p came from this pool with this layout.
    /// unsafe { pool.dealloc(p, Layout::new::<u64>()) };
    /// ```
    pub unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) {
        let _ = layout;
        crate::pool::free(self.raw.as_ptr(), ptr.as_ptr())
    }

    /// Resizes a block to `new_size` bytes, keeping its contents and its
    /// alignment: in place where the next block is free (alignments up to
    /// 16), else moved.
    /// `None` (the block unchanged) when the pool has no room.
    ///
    /// # Safety
    /// `ptr` came from this pool with `layout`; `new_size` is not 0. On
    /// success the old pointer is not used again.
    ///
    /// ```
    /// use std::alloc::Layout;
    ///
    /// let pool = memalloc::Pool::new(1 << 16).unwrap();
    /// let l = Layout::from_size_align(8, 8).unwrap();
    /// let p = pool.alloc(l).unwrap();
    /// unsafe {
    ///     p.as_ptr().write(42);
    ///     let q = pool.realloc(p, l, 4000).unwrap();
    ///     assert_eq!(q.as_ptr().read(), 42);
    ///     pool.dealloc(q, Layout::from_size_align(4000, 8).unwrap());
    /// }
    /// ```
    pub unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        if layout.align() <= ALIGN {
            return NonNull::new(crate::pool::realloc(
                self.raw.as_ptr(),
                ptr.as_ptr(),
                new_size,
            ));
        }
        let new = Layout::from_size_align(new_size, layout.align()).ok()?;
        let q = self.alloc(new)?;
        core::ptr::copy_nonoverlapping(ptr.as_ptr(), q.as_ptr(), layout.size().min(new_size));
        self.dealloc(ptr, layout);
        Some(q)
    }

    /// Walks the pool and returns the number of broken invariants (0 means
    /// consistent).
    ///
    /// ```
    /// let pool = memalloc::Pool::new(1 << 16).unwrap();
    /// assert_eq!(pool.check(), 0);
    /// ```
    pub fn check(&self) -> usize {
        // SAFETY: the pool is live.
        unsafe { crate::pool::check(self.raw.as_ptr()) }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the pool is live; after this nothing uses it (blocks
        // still out are the caller's leak, and their memory goes now).
        unsafe {
            crate::pool::destroy(self.raw.as_ptr());
            if let Some((mem, len)) = self.mapped {
                os::unmap(mem.as_ptr(), len);
            }
        }
    }
}
