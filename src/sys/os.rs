//! The only module that makes system calls.
//!
//! Owns: `sbrk`, `mmap`, `munmap`, `mremap`, `madvise`, `mincore`, `write`, `abort`,
//! the futex calls used by `lock`, `membarrier` (`mcache`'s reclaim of idle
//! threads' caches), and the clocks (vDSO reads, not system
//! calls). It uses no other module of the crate. Every system call is counted
//! in [`SYSCALLS`] for the statistics. Calls that may run on a `free` path
//! (`munmap`, a negative `sbrk`, `madvise`) preserve `errno`, because `free`
//! must not change it (POSIX.1-2024; glibc 2.33+ guarantees it too).

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The page size. x86_64 and aarch64 Linux with 4 KiB pages; checked at start
/// against `sysconf(_SC_PAGESIZE)` by [`check_page_size`].
pub const PAGE: usize = 4096;

/// Number of memory-management system calls made so far.
pub static SYSCALLS: AtomicUsize = AtomicUsize::new(0);

#[inline]
fn count() {
    SYSCALLS.fetch_add(1, Ordering::Relaxed);
}

/// Fault injection (`MEMALLOC_FAIL_AFTER=N`, `MEMALLOC_FAIL_COUNT=K`): after
/// N calls that acquire memory (sbrk up, mmap, mremap), the next K fail with
/// ENOMEM (all of them if K is unset).
static ACQUIRED: AtomicUsize = AtomicUsize::new(0);
pub static FAIL_AFTER: AtomicUsize = AtomicUsize::new(usize::MAX);
pub static FAIL_COUNT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Should this memory-acquiring call fail (fault injection)?
#[inline]
fn injected_failure() -> bool {
    let after = FAIL_AFTER.load(Ordering::Relaxed);
    if after == usize::MAX {
        return false;
    }
    let k = ACQUIRED.fetch_add(1, Ordering::Relaxed);
    if k >= after && k - after < FAIL_COUNT.load(Ordering::Relaxed) {
        set_errno(libc::ENOMEM);
        return true;
    }
    false
}

/// Saves `errno` and puts it back when dropped.
pub struct ErrnoGuard(i32);

impl ErrnoGuard {
    #[inline]
    pub fn new() -> Self {
        // SAFETY: __errno_location always returns this thread's errno slot.
        ErrnoGuard(unsafe { *libc::__errno_location() })
    }
}

impl Default for ErrnoGuard {
    /// Saves `errno`, as [`ErrnoGuard::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ErrnoGuard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = self.0 }
    }
}

/// Sets this thread's `errno`.
#[inline]
pub fn set_errno(e: i32) {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e }
}

/// Aborts if the kernel's page size is not [`PAGE`].
pub fn check_page_size() {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if ps != PAGE as libc::c_long {
        // (From the constructor, before any report could need the kept
        // stderr of `report`, which is above this module.)
        write_all(
            2,
            b"memalloc: unsupported page size (memalloc is built for 4 KiB pages)\n",
        );
        abort();
    }
}

/// Clock `id` in nanoseconds (vDSO: no system call).
#[inline]
fn clock_ns(id: libc::clockid_t) -> usize {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as usize * 1_000_000_000 + ts.tv_nsec as usize
}

/// CLOCK_MONOTONIC_COARSE in ns: a read of the vDSO's last tick (a few
/// nanoseconds, a few ms of resolution), for the allocator's own timing
/// decisions (purge intervals, cycle detection, ageing), which may look at
/// the clock on every free.
pub fn coarse_ns() -> usize {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// CLOCK_MONOTONIC in nanoseconds (the trace's timestamps).
pub fn now_ns() -> usize {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The current program break.
pub fn brk_top() -> *mut u8 {
    count();
    // SAFETY: sbrk(0) only reads the break.
    unsafe { libc::sbrk(0) as *mut u8 }
}

/// Moves the break up by `incr` bytes; returns the old break, or null.
///
/// # Safety
/// The caller holds the heap lock (sbrk is not thread-safe).
pub unsafe fn brk_grow(incr: usize) -> *mut u8 {
    count();
    if incr > isize::MAX as usize || injected_failure() {
        return core::ptr::null_mut();
    }
    let p = libc::sbrk(incr as libc::intptr_t);
    if p as isize == -1 {
        core::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

/// Moves the break down by `decr` bytes; returns whether it moved.
///
/// # Safety
/// The caller holds the heap lock and owns the memory released.
pub unsafe fn brk_shrink(decr: usize) -> bool {
    let _e = ErrnoGuard::new();
    count();
    libc::sbrk(-(decr as libc::intptr_t)) as isize != -1
}

/// Maps `len` bytes of fresh zeroed anonymous memory; null on failure.
pub fn map(len: usize) -> *mut u8 {
    count();
    if injected_failure() {
        return core::ptr::null_mut();
    }
    // SAFETY: an anonymous private mapping at an address the kernel chooses
    // touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        core::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

/// Unmaps `[p, p + len)`.
///
/// # Safety
/// The range is a mapping (or part of one) this allocator owns, and nothing
/// refers to it any more.
pub unsafe fn unmap(p: *mut u8, len: usize) {
    if len == 0 {
        return;
    }
    let _e = ErrnoGuard::new();
    count();
    libc::munmap(p as *mut libc::c_void, len);
}

/// Resizes the mapping at `p`, possibly moving it; null on failure (the old
/// mapping is then unchanged).
///
/// # Safety
/// `[p, p + old)` is a whole mapping this allocator owns.
pub unsafe fn remap(p: *mut u8, old: usize, new: usize) -> *mut u8 {
    count();
    if new > old && injected_failure() {
        return core::ptr::null_mut();
    }
    let q = libc::mremap(p as *mut libc::c_void, old, new, libc::MREMAP_MAYMOVE);
    if q == libc::MAP_FAILED {
        core::ptr::null_mut()
    } else {
        q as *mut u8
    }
}

/// Undoes a [`remap`] that gave `[q, q + len)` for the mapping that was
/// `[p, p + old)`: moves its first `old` bytes back to `p` (or shrinks it in
/// place when `q == p`). The old range is first reserved with
/// `MAP_FIXED_NOREPLACE`, so a mapping made there since is never replaced:
/// false (the block stays at `q`) if the range is taken or the kernel
/// refuses. Not subject to fault injection: it gives memory back.
///
/// # Safety
/// `[q, q + len)` is one mapping this allocator owns, and `p`, `old` the
/// address and length the remap moved it from (`old <= len`).
pub unsafe fn remap_back(q: *mut u8, len: usize, p: *mut u8, old: usize) -> bool {
    count();
    if q == p {
        return libc::mremap(q as *mut libc::c_void, len, old, 0) != libc::MAP_FAILED;
    }
    let r = libc::mmap(
        p as *mut libc::c_void,
        old,
        libc::PROT_NONE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
        -1,
        0,
    );
    if r != p as *mut libc::c_void {
        if r != libc::MAP_FAILED {
            // A kernel before 4.17 took the flag as a hint and mapped elsewhere.
            libc::munmap(r, old);
        }
        return false;
    }
    let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    libc::mremap(q as *mut libc::c_void, len, old, flags, p) == p as *mut libc::c_void
}

/// Makes `[p, p + len)` inaccessible (a guard page).
///
/// # Safety
/// The range is page-aligned and part of a mapping this allocator owns.
pub unsafe fn protect_none(p: *mut u8, len: usize) -> bool {
    count();
    libc::mprotect(p as *mut libc::c_void, len, libc::PROT_NONE) == 0
}

/// Tells the kernel that the pages of `[p, p + len)` may be dropped; they read
/// as zero afterwards.
///
/// # Safety
/// The range is page-aligned, owned by this allocator and holds no live data.
pub unsafe fn discard(p: *mut u8, len: usize) -> bool {
    let _e = ErrnoGuard::new();
    count();
    libc::madvise(p as *mut libc::c_void, len, libc::MADV_DONTNEED) == 0
}

/// Which of the `n` pages from `p` are resident: bit 0 of `out[i]` for page
/// `i` (`n <= out.len()`). False if the kernel could not tell.
///
/// # Safety
/// `p` is page-aligned and the `n` pages are mapped.
pub unsafe fn resident(p: *const u8, n: usize, out: &mut [u8]) -> bool {
    debug_assert!(n <= out.len());
    let _e = ErrnoGuard::new();
    count();
    libc::mincore(p as *mut libc::c_void, n * PAGE, out.as_mut_ptr()) == 0
}

/// Asks the kernel not to back `[p, p + len)` with transparent huge pages (a
/// sparse table would cost a 2 MiB page where it touches 4 KiB). Advisory:
/// failure is ignored.
///
/// # Safety
/// The range is a mapping this allocator owns.
pub unsafe fn no_huge_pages(p: *mut u8, len: usize) {
    let _e = ErrnoGuard::new();
    count();
    libc::madvise(p as *mut libc::c_void, len, libc::MADV_NOHUGEPAGE);
}

/// Asks the kernel to back `[p, p + len)` with transparent huge pages where
/// it can (`madvise(MADV_HUGEPAGE)`: the system setting `madvise` gives them
/// only to ranges that ask). Advisory: failure is ignored.
///
/// # Safety
/// The range is a mapping this allocator owns.
pub unsafe fn huge_pages(p: *mut u8, len: usize) {
    let _e = ErrnoGuard::new();
    count();
    libc::madvise(p as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
}

/// Writes all of `buf` to `fd`, retrying on short writes and EINTR.
pub fn write_all(fd: i32, mut buf: &[u8]) {
    let _e = ErrnoGuard::new();
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
        if n < 0 {
            // SAFETY: reading errno.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return;
        }
        if n == 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// A close-on-exec duplicate of `fd`, numbered 100 or above (out of the
/// way of the descriptors a program counts on), with the device and inode
/// of its file; None if `fd` is not open.
pub fn dup_high(fd: i32) -> Option<(i32, u64, u64)> {
    let _e = ErrnoGuard::new();
    // SAFETY: plain system calls on descriptors.
    unsafe {
        let d = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
        if d < 0 {
            return None;
        }
        match file_id(d) {
            Some((dev, ino)) => Some((d, dev, ino)),
            None => {
                libc::close(d);
                None
            }
        }
    }
}

/// The (device, inode) of the file open at `fd`, or None if none is.
pub fn file_id(fd: i32) -> Option<(u64, u64)> {
    let _e = ErrnoGuard::new();
    let mut st = core::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes the whole struct on success.
    unsafe {
        if libc::fstat(fd, st.as_mut_ptr()) != 0 {
            return None;
        }
        let st = st.assume_init();
        Some((st.st_dev, st.st_ino))
    }
}

/// Ends the process with SIGABRT.
pub fn abort() -> ! {
    // SAFETY: abort never returns.
    unsafe { libc::abort() }
}

/// Sleeps while `*word == val` (FUTEX_WAIT, private).
pub fn futex_wait(word: &AtomicU32, val: u32) {
    // SAFETY: the futex word is a live AtomicU32; a spurious wake is harmless.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes one waiter on `word` (FUTEX_WAKE, private).
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: as above.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// membarrier(2) commands (linux/membarrier.h).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Registers the process for `membarrier_expedited` (once; again in a fork
/// child). False if the kernel has no membarrier (before 4.14) or a filter
/// refuses it. Keeps `errno`.
pub fn membarrier_register() -> bool {
    let _e = ErrnoGuard::new();
    count();
    // SAFETY: membarrier takes no pointer.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
            0,
        ) == 0
    }
}

/// A full memory barrier on every CPU that runs a thread of this process,
/// before this returns (MEMBARRIER_CMD_PRIVATE_EXPEDITED: an IPI to each;
/// a thread not running passes a barrier at its next context switch). The
/// process registered with `membarrier_register`. False if it failed.
/// Keeps `errno`.
pub fn membarrier_expedited() -> bool {
    let _e = ErrnoGuard::new();
    count();
    // SAFETY: membarrier takes no pointer.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0 }
}

/// Reads an environment variable without allocating; None if unset.
pub fn getenv(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv returns a pointer into the environment block (or null),
    // which lives for the process; we do not modify it.
    unsafe {
        let p = libc::getenv(name.as_ptr());
        if p.is_null() {
            None
        } else {
            Some(core::ffi::CStr::from_ptr(p).to_bytes())
        }
    }
}

/// Gives the processor to another thread that can run (sched_yield(2)).
pub fn yield_now() {
    // SAFETY: no arguments, no memory.
    unsafe { libc::sched_yield() };
}
