//! Pools over caller memory: a TLSF heap on regions the caller owns, for
//! users with no OS (bare metal, real-time code). No system call is made; the
//! pool's bookkeeping lives at the start of the first region.
//!
//! A pool has its own lock, so it may be shared between threads. Every
//! operation is O(1) (TLSF), except `free`'s check that the pointer lies in
//! one of the pool's regions, which is O(regions added).

use crate::chunk::*;
use crate::lock::Lock;
use crate::region::{Region, RegionList, KIND_POOL};
use crate::report::fatal;
use crate::tlsf::Tlsf;
use core::ptr::null_mut;

const POOL_MAGIC: usize = 0x706f_6f6c_6d65_6d61; // "poolmema"

/// `memalloc_pool_t`.
#[repr(C)]
pub struct Pool {
    magic: usize,
    lock: Lock,
    tlsf: Tlsf,
    regions: RegionList,
    first: Region,
}

const REGION_HDR: usize = align_up(core::mem::size_of::<Region>(), ALIGN);

/// Creates a pool over `[mem, mem + bytes)`; null if too small.
///
/// # Safety
/// The memory is writable, owned by the caller and untouched by anything else
/// until the pool is destroyed.
pub unsafe fn create(mem: *mut u8, bytes: usize) -> *mut Pool {
    if mem.is_null() {
        return null_mut();
    }
    crate::config::init();
    let base = align_up(mem as usize, ALIGN);
    let end = (mem as usize).saturating_add(bytes);
    let hdr = align_up(core::mem::size_of::<Pool>(), ALIGN);
    if end < base || end - base < hdr + MIN_CHUNK + SENTINEL + ALIGN {
        return null_mut();
    }
    let p = base as *mut Pool;
    p.write(Pool {
        magic: POOL_MAGIC,
        lock: Lock::new(),
        tlsf: Tlsf::new(),
        regions: RegionList::new(),
        first: Region::empty(KIND_POOL),
    });
    let first = core::ptr::addr_of_mut!((*p).first);
    if !(*p)
        .tlsf
        .add_region((base + hdr) as *mut u8, end as *mut u8, first)
    {
        return null_mut();
    }
    (*p).regions.push(first);
    p
}

unsafe fn checked<'a>(p: *mut Pool) -> &'a mut Pool {
    if p.is_null() || !(p as usize).is_multiple_of(ALIGN) || (*p).magic != POOL_MAGIC {
        fatal("invalid pool", p as *const u8);
    }
    &mut *p
}

/// Adds `[mem, mem + bytes)` to the pool; 0 on success, -1 if too small.
///
/// # Safety
/// As [`create`], and the range overlaps no region of any pool.
pub unsafe fn add_region(p: *mut Pool, mem: *mut u8, bytes: usize) -> i32 {
    let pool = checked(p);
    if mem.is_null() {
        return -1;
    }
    let base = align_up(mem as usize, ALIGN);
    let end = (mem as usize).saturating_add(bytes);
    if end < base || end - base < REGION_HDR + MIN_CHUNK + SENTINEL + ALIGN {
        return -1;
    }
    let _g = pool.lock.guard();
    let r = base as *mut Region;
    r.write(Region::empty(KIND_POOL));
    if !pool
        .tlsf
        .add_region((base + REGION_HDR) as *mut u8, end as *mut u8, r)
    {
        return -1;
    }
    pool.regions.push(r);
    0
}

/// Allocates `n` bytes (null + ENOMEM when the pool is full).
///
/// # Safety
/// `p` came from [`create`].
pub unsafe fn malloc(p: *mut Pool, n: usize) -> *mut u8 {
    memalign(p, ALIGN, n)
}

/// Allocates `n` bytes aligned to `align` (a power of two; EINVAL otherwise).
///
/// # Safety
/// `p` came from [`create`].
pub unsafe fn memalign(p: *mut Pool, align: usize, n: usize) -> *mut u8 {
    let pool = checked(p);
    if align == 0 || align & (align - 1) != 0 {
        crate::os::set_errno(libc::EINVAL);
        return null_mut();
    }
    let csize = match request_to_size(n) {
        Some(s) if align <= MAX_REQUEST => s,
        _ => {
            crate::os::set_errno(libc::ENOMEM);
            return null_mut();
        }
    };
    let c = {
        let _g = pool.lock.guard();
        if align <= ALIGN {
            pool.tlsf.alloc(csize)
        } else {
            pool.tlsf.alloc_aligned(csize, align)
        }
    };
    if c.is_null() {
        crate::os::set_errno(libc::ENOMEM);
        return null_mut();
    }
    to_user(c)
}

/// Checks a pointer handed back to the pool: inside one of its regions,
/// aligned, ours and in use. Returns the error to report.
unsafe fn validate(pool: &Pool, q: *mut u8) -> Result<*mut Chunk, &'static str> {
    if !(q as usize).is_multiple_of(ALIGN) || pool.regions.find(q).is_null() {
        return Err("invalid pointer (not from this pool)");
    }
    let c = from_user(q);
    if (*c).head & (MARK | MMAPPED) != MARK {
        return Err("invalid pointer (corrupted block header)");
    }
    if is_free(c) {
        return Err("double free (block is already free)");
    }
    Ok(c)
}

/// Frees `q` (null is a no-op); reports and aborts on a bad pointer.
///
/// # Safety
/// `p` came from [`create`].
pub unsafe fn free(p: *mut Pool, q: *mut u8) {
    if q.is_null() {
        return;
    }
    let pool = checked(p);
    let r = {
        let _g = pool.lock.guard();
        validate(pool, q).map(|c| {
            pool.tlsf.free(c);
        })
    };
    if let Err(e) = r {
        fatal(e, q);
    }
}

/// realloc within the pool: in place when possible, else move.
///
/// # Safety
/// `p` came from [`create`].
pub unsafe fn realloc(p: *mut Pool, q: *mut u8, n: usize) -> *mut u8 {
    if q.is_null() {
        return malloc(p, n);
    }
    if n == 0 {
        free(p, q);
        return null_mut();
    }
    let pool = checked(p);
    let csize = match request_to_size(n) {
        Some(s) => s,
        None => {
            crate::os::set_errno(libc::ENOMEM);
            return null_mut();
        }
    };
    let r = {
        let _g = pool.lock.guard();
        validate(pool, q).map(|c| (c, pool.tlsf.resize_in_place(c, csize)))
    };
    match r {
        Err(e) => fatal(e, q),
        Ok((_, true)) => q,
        Ok((c, false)) => {
            let nq = malloc(p, n);
            if !nq.is_null() {
                core::ptr::copy_nonoverlapping(q, nq, usable(c).min(n));
                free(p, q);
            }
            nq
        }
    }
}

/// Number of broken invariants in the pool.
///
/// # Safety
/// `p` came from [`create`].
pub unsafe fn check(p: *mut Pool) -> usize {
    let pool = checked(p);
    let _g = pool.lock.guard();
    let mut bad = 0;
    let (mut free_chunks, mut free_bytes) = (0, 0);
    let mut r = pool.regions.head;
    while !r.is_null() {
        let rc = pool.tlsf.check_region(r);
        bad += rc.bad;
        free_chunks += rc.free_chunks;
        free_bytes += rc.free_bytes;
        r = (*r).next;
    }
    let regions = &pool.regions;
    bad += pool.tlsf.check_lists(|a| !regions.find(a).is_null());
    if free_chunks != pool.tlsf.free_count || free_bytes != pool.tlsf.free_bytes {
        bad += 1;
    }
    bad
}

/// Ends the pool; its memory is the caller's again.
///
/// # Safety
/// `p` came from [`create`]; no block of it is used afterwards.
pub unsafe fn destroy(p: *mut Pool) {
    let pool = checked(p);
    pool.magic = 0;
}
