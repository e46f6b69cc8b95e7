//! The profiler's settings (`configure`, `set_mark`, `active`), its
//! priming (`prime`: the unwinder's first call, the tables mapped) and the
//! objects it knows (the allocator's own code, the objects never unloaded).

use super::*;

/// From `config`: MEMALLOC_PROF, MEMALLOC_PROF_RATE, MEMALLOC_PROF_OUT.
pub fn configure(on: bool, rate: usize, out: *const u8) {
    // (At most 2^56: a drawn interval, under 37 times the rate, then fits
    // an i64: `draw`'s conversion is one instruction.)
    let rate = rate.clamp(1, 1 << 56);
    RATE.store(rate, Ordering::Relaxed);
    INV_RATE.store((1.0 / rate as i64 as f64).to_bits(), Ordering::Relaxed);
    INV12_RATE.store(inv12(rate), Ordering::Relaxed);
    OUT.store(out as *mut u8, Ordering::Relaxed);
    ACTIVE.store(on, Ordering::Relaxed);
    crate::gate::set(crate::gate::PROF, on);
}

/// From the constructor, before `prime`: how a sampled block is marked in
/// its header (`mark(p)` for the block at user address `p`), so that its
/// free is seen (see "Sampled blocks").
pub fn set_mark(mark: unsafe fn(*mut u8)) {
    MARK.store(mark as usize, Ordering::Relaxed);
}

/// Is profiling on? (One load: the test on the slower paths.)
#[inline(always)]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// From the constructor, with no allocator lock held: maps the tables,
/// finds the allocator's own code and makes the unwinder's first call (which
/// dlopens libgcc_s and allocates), then lets samples be taken.
pub fn prime() {
    if !active() || READY.load(Ordering::Relaxed) {
        return;
    }
    let stacks = crate::os::map(STACK_CAP * core::mem::size_of::<Stack>());
    let index = crate::os::map(INDEX_CAP * 4);
    if stacks.is_null() || index.is_null() {
        // (ACTIVE stays: the caches route through the counting path, which
        // takes no sample while READY is false.)
        crate::report::warn(format_args!(
            "MEMALLOC_PROF: cannot map the tables, no profile"
        ));
        return;
    }
    {
        // (Once: the unit tests' threads may prime at the same time.)
        let _g = STACK_LOCK.guard();
        if STACKS.load(Ordering::Relaxed).is_null() {
            INDEX.store(index as *mut AtomicU32, Ordering::Relaxed);
            STACKS.store(stacks as *mut Stack, Ordering::Release);
        } else {
            // SAFETY: the mappings just made, unused.
            unsafe {
                crate::os::unmap(stacks, STACK_CAP * core::mem::size_of::<Stack>());
                crate::os::unmap(index, INDEX_CAP * 4);
            }
        }
    }
    find_self();
    let mut buf = [null_mut::<libc::c_void>(); 4];
    // SAFETY: buf holds 4 entries.
    unsafe { backtrace(buf.as_mut_ptr(), buf.len() as i32) };
    prime_unwinder();
    READY.store(true, Ordering::Release);
}

extern "C" {
    pub(super) fn backtrace(buf: *mut *mut libc::c_void, size: i32) -> i32;
    fn dladdr1(
        addr: *const libc::c_void,
        info: *mut libc::Dl_info,
        extra: *mut *mut libc::c_void,
        flags: i32,
    ) -> i32;
}
/// dladdr1's flag: `extra` receives the object's `struct link_map *`.
const RTLD_DL_LINKMAP: i32 = 2;

/// The load bias (`link_map::l_addr`) of the object holding `addr`, and the
/// `Dl_info` dladdr fills; None outside every object.
pub(super) fn object_of(addr: usize) -> Option<(usize, libc::Dl_info)> {
    // SAFETY: dladdr1 writes the info and a link_map pointer; l_addr is the
    // first field of glibc's struct link_map.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        let mut lm: *mut libc::c_void = null_mut();
        if dladdr1(addr as *const _, &mut info, &mut lm, RTLD_DL_LINKMAP) == 0 || lm.is_null() {
            return None;
        }
        Some((*(lm as *const usize), info))
    }
}

/// Records the range of the allocator's executable segment, and the
/// objects that are never unloaded (`LASTING`).
fn find_self() {
    let here = find_self as fn() as usize;
    // The program (its entry point), the C library, the loader and this
    // library: loaded at start-up, never unloaded (glibc's dlclose unloads
    // only objects that dlopen loaded, `lt_loaded` in `_dl_close_worker`).
    // SAFETY: getauxval has no preconditions.
    let (entry, base) = unsafe {
        (
            libc::getauxval(libc::AT_ENTRY),
            libc::getauxval(libc::AT_BASE),
        )
    };
    let libc_fn = libc::dl_iterate_phdr as *const () as usize;
    for (i, &a) in [here, entry as usize, libc_fn, base as usize]
        .iter()
        .enumerate()
    {
        if let Some((s, e)) = object_range(a) {
            LASTING[i][0].store(s, Ordering::Relaxed);
            LASTING[i][1].store(e, Ordering::Relaxed);
        }
    }
    let Some((bias, info)) = object_of(here) else {
        return;
    };
    // SAFETY: dli_fbase is the object's ELF header, mapped with its program
    // headers (the first PT_LOAD segment starts at offset 0).
    unsafe {
        let eh = info.dli_fbase as *const libc::Elf64_Ehdr;
        let ph = (eh as usize + (*eh).e_phoff as usize) as *const libc::Elf64_Phdr;
        for i in 0..(*eh).e_phnum as usize {
            let p = &*ph.add(i);
            let (s, e) = (
                bias + p.p_vaddr as usize,
                bias + (p.p_vaddr + p.p_memsz) as usize,
            );
            if p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0 && s <= here && here < e {
                SELF_START.store(s, Ordering::Relaxed);
                SELF_END.store(e, Ordering::Relaxed);
            }
        }
    }
}

/// The range of addresses the loaded segments of the object holding `a`
/// span (`a` itself when it is the object's ELF header).
fn object_range(a: usize) -> Option<(usize, usize)> {
    if a == 0 {
        return None;
    }
    let (bias, info) = object_of(a)?;
    let (mut lo, mut hi) = (usize::MAX, 0);
    // SAFETY: dli_fbase is the object's ELF header, mapped with its program
    // headers (the first PT_LOAD segment starts at offset 0).
    unsafe {
        let eh = info.dli_fbase as *const libc::Elf64_Ehdr;
        let ph = (eh as usize + (*eh).e_phoff as usize) as *const libc::Elf64_Phdr;
        for i in 0..(*eh).e_phnum as usize {
            let p = &*ph.add(i);
            if p.p_type == libc::PT_LOAD {
                lo = lo.min(bias + p.p_vaddr as usize);
                hi = hi.max(bias + (p.p_vaddr + p.p_memsz) as usize);
            }
        }
    }
    (lo < hi).then_some((lo, hi))
}
