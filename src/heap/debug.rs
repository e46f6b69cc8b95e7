//! Debug mode (`MEMALLOC_DEBUG=1`): every block is checked, at a cost.
//!
//! - No thread caches: every block is a heap chunk or a large mapping, so
//!   every check below applies to every block.
//! - Fill patterns: new blocks are filled with `ALLOC_FILL` (calloc still
//!   zeroes), freed blocks with `FREE_FILL`.
//! - A canary after every heap block: 8 bytes keyed with the block's address,
//!   right after the requested size, checked on free and realloc; the
//!   requested size is kept in the chunk's last word.
//! - A guard page (PROT_NONE) right after every large block.
//! - A quarantine of `QUARANTINE` freed blocks (at most `QUARANTINE_BYTES`)
//!   that delays their reuse; when a block leaves it, it must still hold
//!   `FREE_FILL` everywhere, or something wrote to it after free.
//!
//! Nothing here runs unless the variable is set: the switch is tested only
//! on slow paths (a thread never gets a cache in debug mode).

use crate::chunk::*;
use crate::heap::HEAP;
use crate::lock::Lock;
use crate::report::fatal;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

/// Byte written over a new block.
pub const ALLOC_FILL: u8 = 0xaa;
/// Byte written over a freed block.
pub const FREE_FILL: u8 = 0xdd;
/// Freed blocks held back from reuse.
const QUARANTINE: usize = 1024;
/// At most this many bytes held back.
const QUARANTINE_BYTES: usize = 16 << 20;
/// Bytes added after each heap block: the canary and the requested size.
const TRAILER: usize = 16;

struct Quarantine {
    ring: [*mut u8; QUARANTINE],
    head: usize,
    len: usize,
    bytes: usize,
}

static LOCK: Lock = Lock::new();
/// The quarantine, mapped at debug mode's first free. (As an 8 KiB static
/// in `.bss` it lay between statics that every program touches, and cost
/// each program a page.)
static Q: AtomicPtr<Quarantine> = AtomicPtr::new(null_mut());

/// The quarantine, mapped (zeroed: empty) on first use; None if that
/// mapping failed, and freed blocks then go back at once.
///
/// # Safety
/// The caller holds LOCK, and drops the reference before releasing it.
unsafe fn quarantine() -> Option<&'static mut Quarantine> {
    let mut q = Q.load(Ordering::Relaxed);
    if q.is_null() {
        q = crate::os::map(core::mem::size_of::<Quarantine>()) as *mut Quarantine;
        if q.is_null() {
            return None;
        }
        Q.store(q, Ordering::Relaxed);
    }
    Some(&mut *q)
}

/// The debug lock (for the fork handlers).
pub fn lock() -> &'static Lock {
    &LOCK
}

fn canary(p: *const u8) -> u64 {
    ((p as u64) ^ crate::guard::tag_key() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

/// A debug block of `n` bytes aligned to `align`; null when out of memory.
pub fn alloc(n: usize, align: usize) -> *mut u8 {
    let total = match n.checked_add(TRAILER) {
        Some(t) => t,
        None => return null_mut(),
    };
    let csize = match request_to_size(total) {
        Some(s) => s,
        None => return null_mut(),
    };
    // SAFETY: we own the block we just allocated.
    unsafe {
        if crate::large::wants_mapping(csize, align) {
            let p = crate::large::alloc_guarded(n, align.max(ALIGN));
            if !p.is_null() {
                core::ptr::write_bytes(p, ALLOC_FILL, n);
            }
            return p;
        }
        let c = HEAP.with(|h| {
            if align <= ALIGN {
                h.alloc(csize)
            } else {
                h.alloc_aligned(csize, align)
            }
        });
        if c.is_null() {
            return null_mut();
        }
        let p = to_user(c);
        core::ptr::write_bytes(p, ALLOC_FILL, usable(c));
        (p.add(n) as *mut u64).write_unaligned(canary(p));
        (p.add(usable(c) - 8) as *mut usize).write(n);
        p
    }
}

/// The requested size of debug block `p` (chunk `c`), after checking its
/// canary.
///
/// # Safety
/// `c` is a validated in-use chunk (or large block) and `p` its user pointer.
pub unsafe fn requested(p: *mut u8, c: *mut Chunk) -> usize {
    if is_mmapped(c) {
        return crate::large::requested(c);
    }
    let n = (p.add(usable(c) - 8) as *const usize).read();
    if n + TRAILER > usable(c) {
        fatal(
            "heap overflow (the block's size trailer was overwritten)",
            p,
        );
    }
    if (p.add(n) as *const u64).read_unaligned() != canary(p) {
        fatal(
            "heap overflow (the canary after the block was overwritten)",
            p,
        );
    }
    n
}

/// Is `p` waiting in the quarantine (freed, not yet reusable)?
pub fn in_quarantine(p: *mut u8) -> bool {
    let _g = LOCK.guard();
    let q = Q.load(Ordering::Relaxed);
    // SAFETY: under LOCK; a mapped quarantine is never unmapped.
    !q.is_null() && unsafe { (0..(*q).len).any(|i| (*q).ring[((*q).head + i) % QUARANTINE] == p) }
}

/// Frees debug block `p`: canary check, fill, quarantine.
///
/// # Safety
/// As [`requested`].
pub unsafe fn free(p: *mut u8, c: *mut Chunk) {
    if is_mmapped(c) {
        crate::large::free(c);
        return;
    }
    let len = usable(c);
    let evicted = {
        let _g = LOCK.guard();
        let q = match quarantine() {
            Some(q) => q,
            None => {
                drop(_g);
                let _n = requested(p, c);
                core::ptr::write_bytes(p, FREE_FILL, len);
                release(p);
                return;
            }
        };
        for i in 0..q.len {
            if q.ring[(q.head + i) % QUARANTINE] == p {
                drop(_g);
                fatal("double free (block in quarantine)", p);
            }
        }
        let _n = requested(p, c);
        core::ptr::write_bytes(p, FREE_FILL, len);
        let mut out = [null_mut(); 8];
        let mut k = 0;
        while k < out.len()
            && (q.len == QUARANTINE || q.bytes + len > QUARANTINE_BYTES)
            && q.len > 0
        {
            let old = q.ring[q.head];
            q.head = (q.head + 1) % QUARANTINE;
            q.len -= 1;
            q.bytes -= usable(from_user(old));
            out[k] = old;
            k += 1;
        }
        q.ring[(q.head + q.len) % QUARANTINE] = p;
        q.len += 1;
        q.bytes += len;
        (out, k)
    };
    for &old in &evicted.0[..evicted.1] {
        release(old);
    }
}

/// A block leaves the quarantine: it must still be all FREE_FILL.
unsafe fn release(p: *mut u8) {
    let c = from_user(p);
    let len = usable(c);
    for i in 0..len {
        if *p.add(i) != FREE_FILL {
            fatal("write after free (a freed block was modified)", p.add(i));
        }
    }
    // SAFETY: c's header was checked when the block entered the quarantine,
    // and validate checks it is still in use before it is freed.
    let r = HEAP.with(|h| {
        h.validate(c)?;
        h.free(c);
        Ok(())
    });
    if let Err(e) = r {
        fatal(e, p);
    }
}

/// Frees every block in the quarantine (malloc_trim), checking each.
pub fn drain() {
    loop {
        let p = {
            let _g = LOCK.guard();
            // SAFETY: under LOCK.
            let q = match unsafe { quarantine() } {
                Some(q) if q.len != 0 => q,
                _ => return,
            };
            let p = q.ring[q.head];
            q.head = (q.head + 1) % QUARANTINE;
            q.len -= 1;
            // SAFETY: p is a quarantined (in-use) chunk.
            q.bytes -= unsafe { usable(from_user(p)) };
            p
        };
        // SAFETY: as above.
        unsafe { release(p) };
    }
}
