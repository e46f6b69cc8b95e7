//! Formatting and reporting without allocating.
//!
//! [`StackBuf`] formats into a fixed array with `core::fmt` (which never
//! allocates) and flushes to a file descriptor when full. The fatal path
//! writes one line, `memalloc: <error> at <address>`, then aborts.

use core::fmt;

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
    let mut b = StackBuf::<256>::new(2);
    let _ = write!(b, "memalloc: {} at {:p}\n", what, addr);
    b.flush();
    crate::os::abort()
}

/// Reports an error that has no address and aborts.
#[cold]
#[inline(never)]
pub fn fatal_msg(what: &str) -> ! {
    let mut b = StackBuf::<256>::new(2);
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
    let mut b = StackBuf::<256>::new(2);
    let _ = b.write_str("memalloc: ");
    let _ = b.write_fmt(args);
    let _ = b.write_str("\n");
}

/// Prints a warning line `memalloc: warning: ...` on stderr.
#[cold]
pub fn warn(args: fmt::Arguments<'_>) {
    use fmt::Write;
    let mut b = StackBuf::<256>::new(2);
    let _ = b.write_str("memalloc: warning: ");
    let _ = b.write_fmt(args);
    let _ = b.write_str("\n");
}
