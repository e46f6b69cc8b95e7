//! Reports: the collapsed-stack files (`write_report`) at exit
//! (`exit_report`) and on demand (`dump`), every shard locked (`AllLocked`).

use super::*;

/// Which figure of each stack a report shows.
#[derive(Clone, Copy, PartialEq)]
enum Figure {
    Live,
    Peak,
    Total,
}

/// Writes one frame: `name [object+0xoffset]`, the offset one byte before
/// the return address (inside the call), relative to the object's load bias
/// (what addr2line takes, PIE or not).
/// `exe`: the program's path, for its own frames (the loader names the
/// program as it was started, maybe relative, or not at all).
fn write_frame<const N: usize>(b: &mut crate::report::StackBuf<N>, ret: usize, exe: &[u8]) {
    let a = ret.wrapping_sub(1);
    match object_of(a) {
        Some((bias, info)) => {
            if !info.dli_sname.is_null() {
                // SAFETY: a NUL-terminated name from the loader's tables.
                let name = unsafe { core::ffi::CStr::from_ptr(info.dli_sname) }.to_bytes();
                push_clean(b, name);
                b.push(b" ");
            }
            b.push(b"[");
            let f: &[u8] = if info.dli_fname.is_null() {
                b""
            } else {
                // SAFETY: as above.
                unsafe { core::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes()
            };
            push_clean(b, if f.first() == Some(&b'/') { f } else { exe });
            let _ = write!(b, "+{:#x}]", a - bias);
        }
        None => {
            let _ = write!(b, "[?+{:#x}]", a);
        }
    }
}

/// Appends `s` with the characters the collapsed format reserves (';' and
/// the newline) replaced, at most 240 bytes of it.
fn push_clean<const N: usize>(b: &mut crate::report::StackBuf<N>, s: &[u8]) {
    for &c in &s[..s.len().min(240)] {
        b.push(if c == b';' || c == b'\n' {
            b":"
        } else {
            core::slice::from_ref(&c)
        });
    }
}

/// Writes every stack with a non-zero figure to `fd`, one line each.
fn write_report(fd: i32, fig: Figure) {
    let mut exe = [0u8; 512];
    // SAFETY: readlink writes at most exe.len() bytes.
    let n = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            exe.as_mut_ptr() as *mut libc::c_char,
            exe.len(),
        )
    };
    let exe = &exe[..n.clamp(0, 512) as usize];
    let held = AllLocked::new();
    let epoch = TOTALS.peak.epoch.load(Ordering::Relaxed);
    let stacks = STACKS.load(Ordering::Acquire);
    let mut b = crate::report::StackBuf::<4096>::new(fd);
    for k in 0..NSTACKS.load(Ordering::Acquire) {
        let mut v = 0;
        for p in parts(&held) {
            // SAFETY: figures of a mapped part, under its lock; `k` is a stack.
            let f = unsafe { &*p.figs.add(k) };
            v += match fig {
                Figure::Live => f.live_bytes,
                Figure::Peak => peak_of(f, epoch),
                Figure::Total => f.alloc_bytes,
            };
        }
        if v == 0 {
            continue;
        }
        // SAFETY: stack `k` was written before NSTACKS counted it.
        let s = unsafe { &*stacks.add(k) };
        if s.depth == 0 {
            b.push(b"[unknown]");
        }
        for i in (0..s.depth).rev() {
            write_frame(&mut b, s.frames[i], exe);
            if i != 0 {
                b.push(b";");
            }
        }
        let _ = writeln!(b, " {}", v);
    }
    b.flush();
}

/// Every shard's lock, held (a report's consistent view of the shards).
pub(super) struct AllLocked;

impl AllLocked {
    pub(super) fn new() -> AllLocked {
        for sh in &SHARD {
            sh.lock.lock();
        }
        AllLocked
    }
}

impl Drop for AllLocked {
    fn drop(&mut self) {
        for sh in &SHARD {
            sh.lock.unlock();
        }
    }
}

/// The shards' parts whose tables are mapped, while `held` holds every
/// shard's lock.
fn parts(held: &AllLocked) -> impl Iterator<Item = &Part> {
    let _ = held;
    let m = MAPPED.load(Ordering::Acquire);
    // SAFETY: read with every shard's lock held (`held`, borrowed as long
    // as the parts are).
    (0..SHARDS)
        .filter(move |k| m & 1 << k != 0)
        .map(|k| unsafe { &*SHARD[k].part.get() })
}

/// `memalloc_prof_dump(fd)`: the live samples, now.
pub fn dump(fd: i32) {
    if READY.load(Ordering::Acquire) {
        write_report(fd, Figure::Live);
    }
}

/// At exit: writes PREFIX.PID.leak, .peak and .total, and one line on
/// stderr naming them.
pub fn exit_report() {
    if !READY.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: this thread's own state: no more samples from here.
    unsafe { (*thread_state()).busy = 1 };
    let prefix = OUT.load(Ordering::Relaxed);
    let prefix: &[u8] = if prefix.is_null() {
        b"memalloc-prof"
    } else {
        // SAFETY: a NUL-terminated string from the environment.
        unsafe { core::ffi::CStr::from_ptr(prefix as *const libc::c_char) }.to_bytes()
    };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    for (suffix, fig) in [
        (&b"leak"[..], Figure::Live),
        (&b"peak"[..], Figure::Peak),
        (&b"total"[..], Figure::Total),
    ] {
        let mut path = [0u8; 512];
        let mut w = crate::report::StackBuf::<512>::new(-1);
        w.push(prefix);
        let _ = write!(w, ".{}.", pid);
        w.push(suffix);
        let n = w.as_bytes().len().min(path.len() - 1);
        path[..n].copy_from_slice(&w.as_bytes()[..n]);
        // SAFETY: path is NUL-terminated.
        let fd = unsafe {
            libc::open(
                path.as_ptr() as *const libc::c_char,
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            crate::report::warn(format_args!("MEMALLOC_PROF: cannot write the profile"));
            return;
        }
        write_report(fd, fig);
        // SAFETY: closing the descriptor we opened.
        unsafe { libc::close(fd) };
    }
    let (mut samples, mut total, mut dropped) = (0, 0, UNMAPPED_DROPS.load(Ordering::Relaxed));
    {
        let held = AllLocked::new();
        for p in parts(&held) {
            samples += p.sample_count;
            total += p.alloc_total;
            dropped += p.dropped;
        }
    }
    let (peak, live) = (
        TOTALS.peak.total.load(Ordering::Relaxed),
        TOTALS.live.load(Ordering::Relaxed),
    );
    crate::report::note(format_args!(
        "heap profile: {} samples, peak {} KiB, live at exit {} KiB, allocated {} KiB{}: {}.{}.{{peak,leak,total}}",
        samples,
        peak >> 10,
        live >> 10,
        total >> 10,
        if dropped != 0 { " (some samples dropped)" } else { "" },
        core::str::from_utf8(prefix).unwrap_or("?"),
        pid
    ));
}
