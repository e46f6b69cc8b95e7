//! Formatting and reporting without allocating.
//!
//! [`StackBuf`] formats into a fixed array with `core::fmt` (which never
//! allocates) and flushes to a file descriptor when full. The fatal path
//! writes one line, `memalloc: <error> at <address>`, then aborts.

use core::fmt;
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// A duplicate of the stderr the program started with, kept while an exit
/// report is wanted (`keep_stderr`): a program may close its stderr before
/// the report is written (coreutils close stdout and stderr in an atexit
/// handler of their own, which runs before ours), and the report would be
/// lost. -1 if none.
static KEPT_FD: AtomicI32 = AtomicI32::new(-1);
/// The device and inode of that stderr: the kept descriptor is written only
/// while it still names that file, never one the program opened in its place
/// after closing it.
static KEPT_DEV: AtomicU64 = AtomicU64::new(0);
static KEPT_INO: AtomicU64 = AtomicU64::new(0);

/// Keeps a duplicate of stderr for the reports (from the constructor, when
/// an exit report is wanted).
pub fn keep_stderr() {
    if KEPT_FD.load(Ordering::Relaxed) >= 0 {
        return;
    }
    if let Some((fd, dev, ino)) = crate::os::dup_high(2) {
        KEPT_DEV.store(dev, Ordering::Relaxed);
        KEPT_INO.store(ino, Ordering::Relaxed);
        KEPT_FD.store(fd, Ordering::Release);
    }
}

/// Where reports go: stderr, or if it is closed, the duplicate of the
/// original one (`keep_stderr`) while that still names the same file.
pub fn err_fd() -> i32 {
    let kept = KEPT_FD.load(Ordering::Acquire);
    if kept < 0 || crate::os::file_id(2).is_some() {
        return 2;
    }
    let id = (
        KEPT_DEV.load(Ordering::Relaxed),
        KEPT_INO.load(Ordering::Relaxed),
    );
    if crate::os::file_id(kept) == Some(id) {
        kept
    } else {
        2
    }
}

/// A fixed-size output buffer that flushes to `fd` when full.
pub struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    fd: i32,
}

impl<const N: usize> StackBuf<N> {
    /// An empty buffer that flushes to `fd` (or never, if `fd < 0`:
    /// output past the end is then dropped).
    pub const fn new(fd: i32) -> Self {
        StackBuf {
            buf: [0; N],
            len: 0,
            fd,
        }
    }

    /// The bytes held and not yet flushed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes what is held to the file descriptor.
    pub fn flush(&mut self) {
        if self.fd >= 0 {
            crate::os::write_all(self.fd, &self.buf[..self.len]);
            self.len = 0;
        }
    }

    /// Appends raw bytes.
    pub fn push(&mut self, mut s: &[u8]) {
        while !s.is_empty() {
            if self.len == N {
                if self.fd < 0 {
                    return;
                }
                self.flush();
            }
            let n = core::cmp::min(N - self.len, s.len());
            self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
            self.len += n;
            s = &s[n..];
        }
    }
}

impl<const N: usize> fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

impl<const N: usize> Drop for StackBuf<N> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Reports a heap error at `addr` on stderr and aborts:
/// `memalloc: <what> at 0x...`.
#[cold]
#[inline(never)]
pub fn fatal(what: &str, addr: *const u8) -> ! {
    use fmt::Write;
    let mut b = StackBuf::<256>::new(err_fd());
    let _ = writeln!(b, "memalloc: {} at {:p}", what, addr);
    b.flush();
    crate::os::abort()
}

/// Reports an error that has no address and aborts.
#[cold]
#[inline(never)]
pub fn fatal_msg(what: &str) -> ! {
    let mut b = StackBuf::<256>::new(err_fd());
    b.push(b"memalloc: ");
    b.push(what.as_bytes());
    b.push(b"\n");
    b.flush();
    crate::os::abort()
}

/// Prints an informational line `memalloc: ...` on stderr.
#[cold]
pub fn note(args: fmt::Arguments<'_>) {
    use fmt::Write;
    let mut b = StackBuf::<256>::new(err_fd());
    let _ = b.write_str("memalloc: ");
    let _ = b.write_fmt(args);
    let _ = b.write_str("\n");
}

/// Prints a warning line `memalloc: warning: ...` on stderr.
#[cold]
pub fn warn(args: fmt::Arguments<'_>) {
    use fmt::Write;
    let mut b = StackBuf::<256>::new(err_fd());
    let _ = b.write_str("memalloc: warning: ");
    let _ = b.write_fmt(args);
    let _ = b.write_str("\n");
}
