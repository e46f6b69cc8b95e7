//! Unwinding: the CFI rows of return addresses (`RULES`, `find_rule`,
//! `run_cfi`), kept once found, and a sample's walk from its own frame
//! (`unwind_here`).

use super::*;

// A sample's stack, without libgcc's unwinder on the way: libgcc's
// `_Unwind_Backtrace` finds each frame's FDE and interprets its CFI program
// anew on every call (about 1,700 instructions a frame, 16,000 a sample:
// most of what a sample cost). Here each return address's row of the CFI
// table (where the CFA is, where the return address and %rbp are saved) is
// looked up once, with libgcc's `_Unwind_Find_FDE` and a small interpreter
// of the DWARF call-frame instructions x86-64 compilers emit, and kept in
// `RULES`, so a sample's frames cost a few loads each. Anything the
// interpreter does not handle (signal frames, CFA or register expressions,
// 64-bit DWARF) makes that sample fall back to glibc's `backtrace()`, whose
// stacks this one reproduces (the unit test `unwinds_as_backtrace` compares
// them). Nothing here allocates; `RULE_LOCK` is held while a sample's stack
// is walked, never across `_Unwind_Find_FDE` or `dl_iterate_phdr` (which
// may take the loader's lock, as `backtrace` does).
//
// Unloaded objects: a row kept for an address of an object since unloaded
// would be wrong for another object mapped there later, so the table is
// emptied when glibc's count of unloads (`dlpi_subs`, from
// `dl_iterate_phdr`) moved since it was last emptied. Reading that count
// costs 150-160 instructions (the loader's lock), so it is read only when
// a walk needs it: a row is marked, when it is made, *lasting* if its
// address lies in an object that is never unloaded (the program, the C
// library, the loader, this library: `LASTING`; glibc unloads only what
// dlopen loaded). A walk reads the count before it uses its first row
// that is not lasting (then looks that row up again: another thread may
// have emptied the table meanwhile), and whenever a return address misses
// the table or a walk fails. A walk through the program's and libc's frames
// only, the common case, reads it never; one through a dlopen'd library
// (or libstdc++, not known to be lasting) once, as before.
//
// Why that is enough: a row is used for a return address on this thread's
// stack, whose frame, and so whose object, was there before the walk
// began. A lasting row's address belongs to its object for the process's
// life. For another row, the count read during the walk, equal to the one
// the table was last emptied at, says no object was unloaded since, so
// the row was made for the object now mapped there. (Reading it only on
// misses and every 64th walk was tried: a stack whose every return address
// hits, one of them in an object mapped over an unloaded one at a call
// site of the old one, was then walked with a stale row, and the walk's
// checks -- the frame above the stack pointer, within 1 GiB, aligned -- do
// not stop a read past the top of the stack: c_tests/prof.sh's dlswap test
// makes that case.)

/// `_Unwind_Find_FDE` of libgcc_s, found by `prime` once `backtrace` loaded
/// it (0: not found, samples use `backtrace`).
static FIND_FDE: AtomicUsize = AtomicUsize::new(0);
/// The rule table: `RULE_SLOTS` (address, rule) pairs, under `RULE_LOCK`.
pub(super) static RULES: AtomicPtr<[usize; 2]> = AtomicPtr::new(null_mut());
pub(super) static RULE_LOCK: Lock = Lock::new();
pub(super) const RULE_SLOTS: usize = 1 << 12;
/// `unloads()` when the table was last emptied.
static UNLOADS: AtomicU64 = AtomicU64::new(0);

/// DWARF register numbers (x86-64 psABI).
const DW_RBP: u64 = 6;
const DW_RSP: u64 = 7;
const DW_RA: u64 = 16;

/// How to unwind from one address: the CFA is `%rsp` (or `%rbp`) plus
/// `cfa`; the return address is saved at CFA + `ra`; `%rbp` at CFA + `rbp`
/// (0: not saved, unchanged); `end`: the outermost frame (return address
/// undefined); `lasting`: the address lies in an object never unloaded
/// (set when the row is kept: see "Unloaded objects").
#[derive(Clone, Copy, PartialEq, Debug)]
struct Rule {
    cfa_rbp: bool,
    cfa: i64,
    ra: i64,
    rbp: i64,
    end: bool,
    lasting: bool,
}

impl Rule {
    /// The outermost frame.
    const END: Rule = Rule {
        cfa_rbp: false,
        cfa: 0,
        ra: 0,
        rbp: 0,
        end: true,
        lasting: false,
    };

    /// One word for the table (0 never: bit 1 is set), if the offsets fit
    /// (the saved registers' offsets are multiples of 8: their low bits
    /// hold the flags).
    fn pack(self) -> Option<usize> {
        if self.cfa != self.cfa as i32 as i64
            || self.ra != self.ra as i16 as i64
            || self.rbp != self.rbp as i16 as i64
            || self.ra & 7 != 0
            || self.rbp & 7 != 0
        {
            return None;
        }
        let flags = 2 | self.cfa_rbp as u64 | (self.end as u64) << 2;
        Some(
            (self.cfa as u32 as u64
                | (self.rbp as u16 as u64 | self.lasting as u64) << 32
                | ((self.ra as u16 as u64) | flags) << 48) as usize,
        )
    }
}

/// A packed rule's flags (see `Rule::pack`): the CFA is `%rbp`-based, the
/// outermost frame, the address lies in a lasting object.
pub(super) const W_CFA_RBP: usize = 1 << 48;
pub(super) const W_END: usize = 1 << 50;
pub(super) const W_LASTING: usize = 1 << 32;

/// A packed rule's CFA offset.
#[inline(always)]
pub(super) fn w_cfa(w: usize) -> usize {
    w as u32 as i32 as isize as usize
}

/// A packed rule's offset of the saved return address from the CFA.
#[inline(always)]
pub(super) fn w_ra(w: usize) -> usize {
    ((w as isize >> 48) & !7) as usize
}

/// A packed rule's offset of the saved `%rbp` from the CFA (0: not saved).
#[inline(always)]
pub(super) fn w_rbp(w: usize) -> usize {
    (((w << 16) as isize >> 48) & !7) as usize
}

/// `struct dwarf_eh_bases` of libgcc's `unwind-dw2-fde.h`.
#[repr(C)]
struct EhBases {
    tbase: usize,
    dbase: usize,
    func: usize,
}

type FindFde = unsafe extern "C" fn(pc: usize, bases: *mut EhBases) -> *const u8;

/// From `prime` (the constructor, after `backtrace` loaded libgcc_s): finds
/// `_Unwind_Find_FDE` and maps the rule table.
pub(super) fn prime_unwinder() {
    // SAFETY: dlopen with RTLD_NOLOAD only returns a loaded object's
    // handle; dlsym reads its symbol table.
    let f = unsafe {
        let h = libc::dlopen(
            c"libgcc_s.so.1".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_NOLOAD,
        );
        if h.is_null() {
            return;
        }
        libc::dlsym(h, c"_Unwind_Find_FDE".as_ptr())
    };
    let t = crate::os::map(RULE_SLOTS * 16);
    if f.is_null() || t.is_null() {
        return;
    }
    RULES.store(t as *mut [usize; 2], Ordering::Release);
    let m = crate::os::map(MEMO_SLOTS * core::mem::size_of::<Memo>());
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: from the constructor, no allocator lock held (it may
    // allocate); `memo_thread_exit` is the key's destructor.
    if !m.is_null() && unsafe { libc::pthread_key_create(&mut key, Some(memo_thread_exit)) } == 0 {
        MEMO_KEY.store(key, Ordering::Relaxed);
        MEMOS.store(m as *mut Memo, Ordering::Release);
    }
    FIND_FDE.store(f as usize, Ordering::Release);
}

/// Why a walk stopped short.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Stop {
    /// A frame's rule is not handled (use `backtrace`).
    Unhandled,
    /// An object was unloaded since the table was last checked: the table
    /// was emptied, and rows the walk already used may have been stale.
    Flushed,
}

/// The slot of the rule table for address `at`.
#[inline(always)]
pub(super) fn rule_slot(at: usize) -> usize {
    (at.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) & (RULE_SLOTS - 1)
}

/// The packed rule (`Rule::pack`) of the frame at `at` (the address whose
/// row applies: a return address less one, or the unwinder's own address
/// for the first frame), when `at` misses the table (`walk` looks it up):
/// finds it and keeps it. Called with `RULE_LOCK` held; releases it while
/// it looks up an FDE. A miss is also when unloads are checked (see
/// "Unloaded objects" above): if one happened, the table is emptied and the
/// walk must start again. A rule that does not pack is not handled.
#[cold]
#[inline(never)]
pub(super) fn rule_miss(at: usize, slot: usize) -> Result<usize, Stop> {
    let t = RULES.load(Ordering::Acquire);
    RULE_LOCK.unlock();
    // (Without RULE_LOCK: dl_iterate_phdr and _Unwind_Find_FDE may take
    // the loader's lock.)
    let subs = unloads();
    let r = find_rule(at);
    RULE_LOCK.lock();
    if flush_if_unloaded(subs) {
        return Err(Stop::Flushed);
    }
    let mut r = r.ok_or(Stop::Unhandled)?;
    r.lasting = lasting(at);
    let w = r.pack().ok_or(Stop::Unhandled)?;
    // SAFETY: the slot lies in the table, written under RULE_LOCK.
    unsafe { *t.add(slot) = [at, w] };
    Ok(w)
}

/// Does `at` lie in an object that is never unloaded (`LASTING`)?
fn lasting(at: usize) -> bool {
    LASTING
        .iter()
        .any(|r| r[0].load(Ordering::Relaxed) <= at && at < r[1].load(Ordering::Relaxed))
}

/// With `RULE_LOCK` held (released meanwhile): reads the count of unloads,
/// and empties the table if it moved (`Stop::Flushed`: the walk starts
/// again).
#[cold]
#[inline(never)]
pub(super) fn check_unloads() -> Result<(), Stop> {
    RULE_LOCK.unlock();
    // (Before RULE_LOCK: dl_iterate_phdr takes the loader's lock.)
    let subs = unloads();
    RULE_LOCK.lock();
    if flush_if_unloaded(subs) {
        return Err(Stop::Flushed);
    }
    Ok(())
}

/// With `RULE_LOCK` held: empties the rule table if `subs` (a fresh
/// `unloads()`) differs from the count it was last emptied at.
fn flush_if_unloaded(subs: u64) -> bool {
    if subs == UNLOADS.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: the table is ours, written under RULE_LOCK.
    unsafe { core::ptr::write_bytes(RULES.load(Ordering::Relaxed), 0, RULE_SLOTS) };
    UNLOADS.store(subs, Ordering::Relaxed);
    true
}

/// Objects unloaded so far (`dlpi_subs`): a rule kept for an address of an
/// unloaded object would be wrong for another object mapped there since.
fn unloads() -> u64 {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        size: usize,
        out: *mut libc::c_void,
    ) -> i32 {
        if size >= core::mem::size_of::<libc::dl_phdr_info>() {
            // SAFETY: the loader's info, holding dlpi_subs (size says so);
            // out is the caller's u64.
            unsafe { *(out as *mut u64) = (*info).dlpi_subs };
        }
        1
    }
    let mut n = u64::MAX;
    // SAFETY: the callback only reads the info it is given.
    unsafe { libc::dl_iterate_phdr(Some(first), &mut n as *mut u64 as *mut libc::c_void) };
    n
}

/// A cursor over CFI bytes: `p..end` is readable, or `p >= end`.
struct Cfi {
    p: *const u8,
    end: *const u8,
}

impl Cfi {
    /// # Safety
    /// `p..end` is readable memory (an object's .eh_frame).
    unsafe fn new(p: *const u8, end: *const u8) -> Cfi {
        Cfi { p, end }
    }

    fn u8(&mut self) -> Option<u8> {
        if self.p >= self.end {
            return None;
        }
        // SAFETY: p lies before end (`new`'s contract).
        let b = unsafe { *self.p };
        self.p = self.p.wrapping_add(1);
        Some(b)
    }

    fn fixed(&mut self, n: usize) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..n {
            v |= (self.u8()? as u64) << (8 * i);
        }
        Some(v)
    }

    /// A LEB128 number's bits, the bits it spans and its last byte.
    fn leb(&mut self) -> Option<(u64, u32, u8)> {
        let (mut v, mut shift) = (0u64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= ((b & 0x7f) as u64) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return Some((v, shift, b));
            }
        }
    }

    fn uleb(&mut self) -> Option<u64> {
        self.leb().map(|(v, _, _)| v)
    }

    fn sleb(&mut self) -> Option<i64> {
        let (v, shift, last) = self.leb()?;
        let mut v = v as i64;
        if shift < 64 && last & 0x40 != 0 {
            v |= -1i64 << shift;
        }
        Some(v)
    }

    /// Skips a pointer of DW_EH_PE encoding `enc`.
    fn skip_ptr(&mut self, enc: u8) -> Option<()> {
        match enc & 0x0f {
            0x00 | 0x04 | 0x0c => self.fixed(8).map(|_| ()),
            0x02 | 0x0a => self.fixed(2).map(|_| ()),
            0x03 | 0x0b => self.fixed(4).map(|_| ()),
            0x01 => self.uleb().map(|_| ()),
            0x09 => self.sleb().map(|_| ()),
            _ => None,
        }
    }
}

/// The rule a DWARF register is under: not saved, or saved at CFA + offset.
#[derive(Clone, Copy)]
struct Row {
    cfa_reg: u64,
    cfa: i64,
    ra: Option<i64>,
    rbp: Option<i64>,
    end: bool,
}

/// Looks up the FDE of `at` and runs its CIE's and its own instructions up
/// to `at`'s row.
fn find_rule(at: usize) -> Option<Rule> {
    let f = FIND_FDE.load(Ordering::Relaxed);
    // SAFETY: f is libgcc's _Unwind_Find_FDE.
    let find: FindFde = unsafe { core::mem::transmute::<usize, FindFde>(f) };
    let mut bases = EhBases {
        tbase: 0,
        dbase: 0,
        func: 0,
    };
    // SAFETY: bases is writable; an address outside every object gives null.
    let fde = unsafe { find(at, &mut bases) };
    if fde.is_null() {
        // (No frame information: libgcc ends the stack here too.)
        return Some(Rule::END);
    }
    // SAFETY: an FDE and its CIE, in a loaded object's .eh_frame: the
    // lengths read bound every read after them.
    unsafe {
        let len = (fde as *const u32).read_unaligned();
        if len == 0 || len == u32::MAX {
            return None;
        }
        let fde_end = fde.add(4 + len as usize);
        let cie_ptr = fde.add(4);
        let cie = cie_ptr.sub((cie_ptr as *const u32).read_unaligned() as usize);
        let clen = (cie as *const u32).read_unaligned();
        if clen == 0 || clen == u32::MAX {
            return None;
        }
        let mut c = Cfi::new(cie.add(8), cie.add(4 + clen as usize));
        let version = c.u8()?;
        let mut aug = [0u8; 8];
        let mut na = 0;
        loop {
            let b = c.u8()?;
            if b == 0 {
                break;
            }
            if na == aug.len() {
                return None;
            }
            aug[na] = b;
            na += 1;
        }
        let aug = &aug[..na];
        let code_align = c.uleb()?;
        let data_align = c.sleb()?;
        let ra_reg = if version == 1 {
            c.u8()? as u64
        } else {
            c.uleb()?
        };
        if ra_reg != DW_RA || aug.first() != Some(&b'z') {
            return None;
        }
        let alen = c.uleb()?;
        let adata_end = c.p.add(alen as usize);
        let mut fde_enc = 0u8;
        for &a in &aug[1..] {
            match a {
                b'R' => fde_enc = c.u8()?,
                b'P' => {
                    let e = c.u8()?;
                    c.skip_ptr(e)?;
                }
                b'L' => {
                    c.u8()?;
                }
                _ => return None, // 'S' (a signal frame) and the rest
            }
        }
        c.p = adata_end;
        let init = Row {
            cfa_reg: DW_RSP,
            cfa: 0,
            ra: None,
            rbp: None,
            end: false,
        };
        let target = at as u64;
        let cie_row = run_cfi(&mut c, init, init, 0, u64::MAX, code_align, data_align)?;
        let mut d = Cfi::new(fde.add(8), fde_end);
        d.skip_ptr(fde_enc)?; // pc_begin (bases.func holds it)
        d.skip_ptr(fde_enc & 0x0f)?; // pc_range
        let alen = d.uleb()?;
        d.p = d.p.add(alen as usize);
        let row = run_cfi(
            &mut d,
            cie_row,
            cie_row,
            bases.func as u64,
            target,
            code_align,
            data_align,
        )?;
        if row.end {
            return Some(Rule::END);
        }
        Some(Rule {
            cfa_rbp: match row.cfa_reg {
                DW_RSP => false,
                DW_RBP => true,
                _ => return None,
            },
            cfa: row.cfa,
            ra: row.ra?,
            rbp: row.rbp.unwrap_or(0),
            end: false,
            lasting: false,
        })
    }
}

/// Runs the call-frame instructions of `c` from location `loc`, stopping
/// before the first row past `target`: the row in force at `target`.
/// `init`: the CIE's row (for DW_CFA_restore). None for what is not handled.
fn run_cfi(
    c: &mut Cfi,
    init: Row,
    mut row: Row,
    mut loc: u64,
    target: u64,
    code_align: u64,
    data_align: i64,
) -> Option<Row> {
    let mut saved = [row; 8];
    let mut depth = 0;
    // Sets register `reg`'s rule (only %rbp's and the return address's
    // matter; a rule this interpreter cannot follow for them is None).
    fn set(row: &mut Row, reg: u64, off: Option<i64>) {
        match reg {
            DW_RBP => row.rbp = off,
            DW_RA => row.ra = off,
            _ => {}
        }
    }
    while c.p < c.end {
        let op = c.u8()?;
        let advance = match op >> 6 {
            1 => (op & 0x3f) as u64,
            2 => {
                let off = c.uleb()? as i64 * data_align;
                set(&mut row, (op & 0x3f) as u64, Some(off));
                0
            }
            3 => {
                let reg = (op & 0x3f) as u64;
                set(
                    &mut row,
                    reg,
                    if reg == DW_RBP { init.rbp } else { init.ra },
                );
                0
            }
            _ => match op {
                0x00 => 0,
                0x02 => c.fixed(1)?,
                0x03 => c.fixed(2)?,
                0x04 => c.fixed(4)?,
                0x05 => {
                    let reg = c.uleb()?;
                    let off = c.uleb()? as i64 * data_align;
                    set(&mut row, reg, Some(off));
                    0
                }
                0x06 => {
                    let reg = c.uleb()?;
                    set(
                        &mut row,
                        reg,
                        if reg == DW_RBP { init.rbp } else { init.ra },
                    );
                    0
                }
                0x07 => {
                    // undefined
                    match c.uleb()? {
                        DW_RA => row.end = true,
                        DW_RBP => return None,
                        _ => {}
                    }
                    0
                }
                0x08 => {
                    // same value
                    let reg = c.uleb()?;
                    if reg == DW_RA {
                        return None;
                    }
                    set(&mut row, reg, None);
                    0
                }
                0x09 => {
                    // register
                    let reg = c.uleb()?;
                    c.uleb()?;
                    if reg == DW_RA || reg == DW_RBP {
                        return None;
                    }
                    0
                }
                0x0a => {
                    if depth == saved.len() {
                        return None;
                    }
                    saved[depth] = row;
                    depth += 1;
                    0
                }
                0x0b => {
                    if depth == 0 {
                        return None;
                    }
                    depth -= 1;
                    // (With the CFA's rule, as libgcc and LLVM's
                    // libunwind restore it.)
                    row = saved[depth];
                    0
                }
                0x0c => {
                    row.cfa_reg = c.uleb()?;
                    row.cfa = c.uleb()? as i64;
                    0
                }
                0x0d => {
                    row.cfa_reg = c.uleb()?;
                    0
                }
                0x0e => {
                    row.cfa = c.uleb()? as i64;
                    0
                }
                0x11 => {
                    let reg = c.uleb()?;
                    let off = c.sleb()? * data_align;
                    set(&mut row, reg, Some(off));
                    0
                }
                0x12 => {
                    row.cfa_reg = c.uleb()?;
                    row.cfa = c.sleb()? * data_align;
                    0
                }
                0x13 => {
                    row.cfa = c.sleb()? * data_align;
                    0
                }
                0x10 | 0x14 | 0x15 | 0x16 => {
                    // expression, val_offset(_sf), val_expression
                    let reg = c.uleb()?;
                    if reg == DW_RA || reg == DW_RBP || reg == DW_RSP {
                        return None;
                    }
                    if op == 0x10 || op == 0x16 {
                        let n = c.uleb()?;
                        c.p = c.p.wrapping_add(n as usize);
                    } else {
                        c.uleb()?;
                    }
                    0
                }
                0x2e => {
                    c.uleb()?; // GNU_args_size
                    0
                }
                0x2f => {
                    let reg = c.uleb()?;
                    let off = -(c.uleb()? as i64) * data_align;
                    set(&mut row, reg, Some(off));
                    0
                }
                _ => return None, // set_loc, def_cfa_expression, ...
            },
        };
        if advance != 0 {
            loc = loc.wrapping_add(advance * code_align);
            if loc > target {
                break;
            }
        }
    }
    Some(row)
}

/// Unwinds the calling thread's stack into `out`: the unwinder's own
/// address, then each frame's return address, as `backtrace` lists them.
/// None when a frame's rule is not handled (use `backtrace`).
#[cfg(test)]
#[inline(never)]
fn unwind(out: &mut [MaybeUninit<usize>]) -> Option<usize> {
    unwind_here(out, false).0
}

/// `unwind` from the frame of the function it is inlined into (the
/// sample's: one frame of the allocator's less to walk through).
/// Also returns the memo it used (null: none), this thread's: the caller
/// reads or sets its `stack`. With `known`, a memo that replays its walk
/// and knows the stack its frames were filed as writes no frame: 0 frames
/// (a walk finds 1 at least), the stack is the memo's.
#[inline(always)]
pub(super) fn unwind_here(
    out: &mut [MaybeUninit<usize>],
    known: bool,
) -> (Option<usize>, *mut Memo) {
    if FIND_FDE.load(Ordering::Acquire) == 0 || out.is_empty() {
        return (None, null_mut());
    }
    let (ip, sp, rbp): (usize, usize, usize);
    // SAFETY: reads this frame's address and stack and frame registers.
    unsafe {
        core::arch::asm!(
            "lea {ip}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            ip = out(reg) ip,
            sp = out(reg) sp,
            bp = out(reg) rbp,
            options(nomem, nostack, preserves_flags)
        );
    }
    out[0].write(ip);
    let mut m = memo_take(ip, sp);
    if !m.is_null() {
        // SAFETY: `m` is a memo of this thread's group.
        unsafe {
            if let Some(n) = memo_replay(&*m, out, ip, sp, rbp, known) {
                (*m).last1 = false;
                return (Some(n), m);
            }
            let (hit, v) = memo_other(m, out, ip, sp, rbp, known);
            if hit.is_some() {
                return (hit, v);
            }
            m = v;
        }
    }
    #[cfg(test)]
    tests::WALKS.with(|w| w.set(w.get() + 1));
    // Twice at most: a walk that found the table stale walks again on the
    // emptied table (its rows are then all new); a third is not needed
    // unless objects are being unloaded meanwhile: `backtrace` then.
    let mut r = Err(Stop::Unhandled);
    for _ in 0..2 {
        RULE_LOCK.lock();
        r = walk(out, ip, sp, rbp, m);
        RULE_LOCK.unlock();
        if r != Err(Stop::Flushed) {
            break;
        }
    }
    if let Ok(n) = r {
        if !m.is_null() {
            // SAFETY: as above; the walk filled its checks.
            unsafe { memo_keep(&mut *m, out, n, ip, sp, rbp) };
        }
    }
    match r {
        Ok(n) => (Some(n), m),
        Err(Stop::Flushed) => (None, m),
        Err(Stop::Unhandled) => {
            // A stale row may have sent the walk astray: check.
            let subs = unloads();
            RULE_LOCK.lock();
            flush_if_unloaded(subs);
            RULE_LOCK.unlock();
            (None, m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `backtrace`'s and `unwind`'s frames, walk after walk.
    type Walks = Vec<(Vec<usize>, Vec<usize>)>;

    std::thread_local! {
        /// This thread's walks (`unwind_here` that no memo answered).
        pub(super) static WALKS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    /// Appends `backtrace`'s and `unwind`'s stacks, both walked from the
    /// caller's frame (inlined into it).
    #[inline(always)]
    fn walk_both(out: &mut Vec<(Vec<usize>, Vec<usize>)>) {
        let mut a = [0usize; RAW_FRAMES];
        let mut b = [MaybeUninit::new(0usize); RAW_FRAMES];
        // SAFETY: a holds RAW_FRAMES entries.
        let na = unsafe { backtrace(a.as_mut_ptr() as *mut *mut libc::c_void, RAW_FRAMES as i32) }
            as usize;
        let nb = unwind(&mut b).expect("a rule not handled");
        // SAFETY: b was initialized (to zero).
        let b: Vec<usize> = b[..nb].iter().map(|x| unsafe { x.assume_init() }).collect();
        out.push((a[..na].to_vec(), b));
    }

    /// The walks' memo: two callers at the same depth (the same stack
    /// pointer where the walk starts, other return addresses) alternate,
    /// each time with `backtrace`'s frames, never the other caller's.
    #[test]
    fn memo_tells_callers_apart() {
        configure(true, 4096, null_mut());
        prime();
        #[inline(never)]
        fn leaf(out: &mut Vec<(Vec<usize>, Vec<usize>)>) {
            walk_both(out);
        }
        #[inline(never)]
        fn via_a(out: &mut Vec<(Vec<usize>, Vec<usize>)>) {
            leaf(out);
            core::hint::black_box(1);
        }
        #[inline(never)]
        fn via_b(out: &mut Vec<(Vec<usize>, Vec<usize>)>) {
            leaf(out);
            core::hint::black_box(2);
        }
        let mut out = Vec::new();
        let walks = WALKS.with(|w| w.get());
        // (One call site, in a loop not unrolled: each call site of this
        // function would be a stack of its own.)
        let via: [fn(&mut Walks); 2] = [via_a, via_b];
        for i in 0..core::hint::black_box(8) {
            core::hint::black_box(via[i % 2])(&mut out);
        }
        // Each caller's walk is kept in a way of the set (one walk each:
        // with one way, each call evicted the other's and walked, 8).
        assert_eq!(WALKS.with(|w| w.get()) - walks, 2);
        for (i, (a, b)) in out.iter().enumerate() {
            assert_eq!(
                a[1..],
                b[2..],
                "call {}: backtrace {:x?} unwind {:x?}",
                i,
                a,
                b
            );
        }
        // The two callers' stacks differ (and so were told apart).
        assert_ne!(out[0].1, out[1].1);
    }

    /// The stacks `unwind` finds are `backtrace`'s, from nested calls
    /// (twice: the second time from the rule table).
    #[test]
    fn unwinds_as_backtrace() {
        configure(true, 4096, null_mut());
        prime();
        assert!(FIND_FDE.load(Ordering::Relaxed) != 0);
        #[inline(never)]
        fn both(depth: usize, out: &mut Vec<(Vec<usize>, Vec<usize>)>) -> usize {
            if depth > 0 {
                // (Not a tail call: the frames stay.)
                return both(depth - 1, out) + core::hint::black_box(1);
            }
            walk_both(out);
            0
        }
        let mut out = Vec::new();
        for d in [0, 3, 9, 3] {
            both(d, &mut out);
        }
        for (a, b) in &out {
            // a[0] returns into `both`, b[0] is in `unwind`: the callers
            // from there on are the same frames.
            assert!(a.len() > 3, "{:x?}", a);
            assert_eq!(a[1..], b[2..], "backtrace {:x?} unwind {:x?}", a, b);
        }
    }

    /// A rule packed for the table reads back through the accessors `walk`
    /// uses; offsets that do not fit do not pack.
    #[test]
    fn packed_rules_read_back() {
        for &(cfa_rbp, cfa, ra, rbp, end, lasting) in &[
            (false, 8i64, -8i64, 0i64, false, true),
            (true, 16, -8, -16, false, false),
            (false, 0x7fff_fff8, -32760, 32760, false, true),
            (false, -24, 8, -4096, false, false),
            (false, 0, 0, 0, true, false),
        ] {
            let r = Rule {
                cfa_rbp,
                cfa,
                ra,
                rbp,
                end,
                lasting,
            };
            let w = r.pack().expect("packs");
            assert_eq!(w & W_CFA_RBP != 0, cfa_rbp);
            assert_eq!(w & W_END != 0, end);
            assert_eq!(w & W_LASTING != 0, lasting);
            assert_eq!(w_cfa(w) as i64, cfa);
            assert_eq!(w_ra(w) as i64, ra);
            assert_eq!(w_rbp(w) as i64, rbp);
        }
        let r = Rule {
            rbp: -12,
            ..Rule::END
        };
        assert_eq!(r.pack(), None);
        let r = Rule {
            cfa: 1 << 40,
            ..Rule::END
        };
        assert_eq!(r.pack(), None);
    }
}
