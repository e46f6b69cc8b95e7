//! Chunk headers: the physical blocks of a heap region, linked through their
//! headers.
//!
//! A chunk `c` (16-aligned) looks like glibc's:
//! ```text
//!   c +  0  prev_size   size of the previous chunk; valid only if PREV_FREE
//!   c +  8  head        size | flags  (size a multiple of 16, >= MIN_CHUNK;
//!                           bit 47: SAMPLED; bits 48-63: the tag)
//!   c + 16  user data   ... up to c + size + 8 (through the next chunk's
//!                           prev_size word, which is unused while c is used)
//!   free chunks keep their list links at c + 16 (next_free), c + 24 (prev_free)
//!   and a footer: next(c).prev_size == size(c), and next(c) has PREV_FREE.
//! ```
//! So an in-use chunk costs 8 bytes of header, and the user pointer is 16-aligned.
//!
//! A region ends with a 32-byte *sentinel*: a chunk of size 0, never free, whose
//! word at +16 points to the region's descriptor (so the tail chunk finds its
//! region in O(1): `region::sentinel_region`). Blocks mapped on their own ("large") carry the MMAPPED flag.
//!
//! Invariants (checked by `Tlsf::check_region`): sizes are multiples of 16 and
//! at least MIN_CHUNK; every header carries MARK; no two physically adjacent
//! chunks are both free; PREV_FREE of a chunk equals FREE of its predecessor;
//! a free chunk's footer equals its size; no free chunk carries SAMPLED.

/// This chunk is free (indexed in the TLSF lists).
pub const FREE: usize = 1;
/// The physically previous chunk is free; `prev_size` is valid.
pub const PREV_FREE: usize = 2;
/// A block mapped on its own with mmap (see `large`).
pub const MMAPPED: usize = 4;
/// Set on every header memalloc writes. A glibc chunk never has this bit
/// (glibc sizes are multiples of 16 with flags in bits 0-2), so a pointer from
/// glibc's heap is recognised as foreign rather than corrupted.
pub const MARK: usize = 8;
/// All flag bits.
pub const FLAGS: usize = 15;
/// The profiler sampled this in-use block (`prof`, "Sampled blocks"): bit
/// 47, above every size (a chunk lies in the 47-bit user address space).
/// Set and cleared by the export layer only, on a block of its own; never on
/// a free or cached chunk. Inside the bits the tag covers, and inside what
/// the medium free's fast path reads as a size (`SIZE_SAMPLED`): a marked
/// block fails that size's range test at no cost of its own.
///
/// The mark is written without the heap's lock, by a compare-and-swap
/// (`update_head`), while the heap, under its lock, may rewrite the same
/// head word (`PREV_FREE`, when the chunk before it is freed or taken):
/// so, while profiling, the heap's flag updates (`set_flags`,
/// `clear_flags`) are compare-and-swaps too, and neither write is lost.
pub const SAMPLED: usize = 1 << 47;
/// The size bits of a head word.
pub const SIZE_MASK: usize = 0x0000_7fff_ffff_fff0;
/// The size bits and `SAMPLED`: a head word's size for the medium free's
/// fast path, above every class when the block is sampled.
pub const SIZE_SAMPLED: usize = SIZE_MASK | SAMPLED;
const _: () = assert!(SIZE_SAMPLED == 0x0000_ffff_ffff_fff0 && MAX_REQUEST * 2 <= SAMPLED);
/// Size and flags: the bits the tag covers.
pub const LOW_MASK: usize = 0x0000_ffff_ffff_ffff;

/// Alignment of every chunk and every user pointer.
pub const ALIGN: usize = 16;
/// From the chunk start to the user pointer.
pub const HDR: usize = 16;
/// Bytes of an in-use chunk not available to the user.
pub const OVERHEAD: usize = 8;
/// The smallest chunk: header plus two list links.
pub const MIN_CHUNK: usize = 32;
/// The size of a region's closing sentinel.
pub const SENTINEL: usize = 32;
/// Largest request served (64 TiB); above it malloc fails with ENOMEM. Keeps
/// every size computation far from overflow.
pub const MAX_REQUEST: usize = 1 << 46;

/// A chunk header. Only `prev_size` and `head` exist for used chunks.
#[repr(C)]
pub struct Chunk {
    pub prev_size: usize,
    pub head: usize,
    pub next_free: *mut Chunk,
    pub prev_free: *mut Chunk,
}

/// Rounds `x` up to a multiple of `a` (a power of two). No overflow check.
#[inline(always)]
pub const fn align_up(x: usize, a: usize) -> usize {
    (x + a - 1) & !(a - 1)
}

/// The chunk size serving a request of `n` bytes, or None if too big.
#[inline(always)]
pub const fn request_to_size(n: usize) -> Option<usize> {
    if n > MAX_REQUEST {
        return None;
    }
    let s = align_up(n + OVERHEAD, ALIGN);
    Some(if s < MIN_CHUNK { MIN_CHUNK } else { s })
}

// The accessors below take raw pointers. Their common contract (each one's
// `# Safety` says which part applies): `c` points to a chunk header in
// memory this allocator (or a pool's owner) gave it, readable; writers also
// need it writable; the neighbour accessors need the neighbour's header to be
// there too (the size or `prev_size` word is intact).

/// The chunk's size in bytes (flags masked off).
///
/// # Safety
/// `c` is a readable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn size(c: *const Chunk) -> usize {
    (*c).head & SIZE_MASK
}
/// Is the chunk free (in the TLSF lists)?
///
/// # Safety
/// `c` is a readable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn is_free(c: *const Chunk) -> bool {
    (*c).head & FREE != 0
}
/// Is the physically previous chunk free (`prev_size` valid)?
///
/// # Safety
/// `c` is a readable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn is_prev_free(c: *const Chunk) -> bool {
    (*c).head & PREV_FREE != 0
}
/// Is the chunk a block mapped on its own?
///
/// # Safety
/// `c` is a readable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn is_mmapped(c: *const Chunk) -> bool {
    (*c).head & MMAPPED != 0
}
/// The integrity tag of a head word with size and flags `low` at `c`:
/// bits 48-63, the top 16 bits of `(u + low) M`, `u` the user address
/// `c + HDR`, for the process's secret
/// multiplier `M` (`guard::tag_mul`). A pointer offset into user data finds
/// a word whose tag does not match. (Until 2026-12-07 the word was `c ^ low
/// ^ key` times a fixed multiplier: one load and one `xor` more on every
/// test, the medium free's fast path among them, for no more checked: the
/// secret is the multiplier's 48 high bits now, as it was the key's 48.
/// Then `c ^ low`, until chk17h: the sum is formed by one `lea` from the
/// pointer free was given and the word, into a register of its own, where
/// the `xor` needed a copy of `c` or of the word first, both of which the
/// free goes on to use: one instruction fewer on each test. (Of `u`, not
/// `c`: LLVM splits a three-part `lea`, `c + low` of `p - 16`, in two.) A
/// forged word is as hard to find either way: it must carry the 16 bits a
/// secret 48-bit multiplier gives its `u + low`, a chunk's end plus 16 and
/// its flags, no better known than `c ^ low` was.)
#[inline(always)]
pub fn tag(c: *const Chunk, low: usize) -> usize {
    tag_by(c, low, crate::guard::tag_mul())
}
/// `tag` with the multiplier given (`mul`, loaded once by a caller that
/// tags in a loop: `swap_head`).
#[inline(always)]
fn tag_by(c: *const Chunk, low: usize, mul: usize) -> usize {
    (c as usize).wrapping_add(HDR + low).wrapping_mul(mul) & !LOW_MASK
}
const _: () = assert!(
    crate::guard::TAG_MUL_FIXED as u16 == u16::MAX && SAMPLED < LOW_MASK && SIZE_MASK < LOW_MASK
);
/// Does head word `h` (tag included) carry the tag of its size and flags
/// at `c`? The same answer as `tag(c, h & LOW_MASK) == h & !LOW_MASK`, in
/// one multiplication and no mask: the multiplier `M` is `-1` modulo 2^16
/// (`guard::TAG_MUL_FIXED`); with `x = u + (h & LOW_MASK)` (below 2^49: `u`
/// is below 2^47) and `T` the tag bits, `u + h` is `x + T 2^48` (modulo
/// 2^64), whose product's top 16 bits are `top16(x M) + T M = top16(x M) -
/// T` modulo 2^16 (the term `T M 2^48` has no bit below 48 to carry): zero
/// exactly when `T` is `x`'s tag.
#[inline(always)]
pub fn tag_matches(c: *const Chunk, h: usize) -> bool {
    tag_matches_in(c as usize + HDR, h, &crate::guard::tag_mul())
}
/// `tag_matches` of the chunk whose user address is `u`, for a fast path
/// that holds the multiplier in memory (`mul`, read there: an `imul` from
/// memory, as `mcache`'s copy). (The user address, not the chunk: the
/// compiler does not fold `p - HDR + HDR`.)
#[inline(always)]
pub fn tag_matches_in(u: usize, h: usize, mul: &usize) -> bool {
    u.wrapping_add(h).wrapping_mul(*mul) >> 48 == 0
}
/// Writes the head word (size | flags) with its tag.
///
/// # Safety
/// `c` is a writable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn set_head(c: *mut Chunk, low: usize) {
    (*c).head = low | tag(c, low);
}
/// The head word's size and flags.
///
/// # Safety
/// `c` is a readable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn head(c: *const Chunk) -> usize {
    (*c).head & LOW_MASK
}
/// Does the head word carry our mark and a valid tag?
///
/// # Safety
/// `c` is a readable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn head_ok(c: *const Chunk) -> bool {
    head_ok_at(to_user(c as *mut Chunk))
}
/// `head_ok` of the chunk whose user address is `p` (the tag's sum, `p`
/// plus the word, one `lea`: from the chunk, the compiler adds `HDR` apart).
///
/// # Safety
/// As `head_ok`, for `from_user(p)`.
#[inline(always)]
pub unsafe fn head_ok_at(p: *mut u8) -> bool {
    let h = (*from_user(p)).head;
    h & MARK != 0 && tag_matches_in(p as usize, h, &crate::guard::tag_mul())
}
/// Sets the size, keeping the flags (the tag is rewritten).
///
/// # Safety
/// `c` is a writable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn set_size(c: *mut Chunk, size: usize) {
    set_head(c, (head(c) & !SIZE_MASK) | size);
}
/// Sets flag bits `f` (the tag is rewritten); while profiling, by a
/// compare-and-swap (see `SAMPLED`).
///
/// # Safety
/// `c` is a writable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn set_flags(c: *mut Chunk, f: usize) {
    if crate::prof::active() {
        return update_head(c, |low| low | f);
    }
    set_head(c, head(c) | f);
}
/// Clears flag bits `f` (the tag is rewritten); while profiling, by a
/// compare-and-swap (see `SAMPLED`).
///
/// # Safety
/// `c` is a writable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn clear_flags(c: *mut Chunk, f: usize) {
    if crate::prof::active() {
        return update_head(c, |low| low & !f);
    }
    set_head(c, head(c) & !f);
}
/// Rewrites the head word's size and flags `low` as `f(low)`, with its
/// tag, by a compare-and-swap: for a word another thread may rewrite at
/// the same time the same way (the profiler's mark, `SAMPLED`, and the
/// heap's flags), neither change is lost.
///
/// # Safety
/// `c` is a writable chunk header (see the contract above), 8-aligned
/// (every header is 16-aligned); whoever else writes its head word at the
/// same time writes it through this function.
#[inline(never)]
pub unsafe fn update_head(c: *mut Chunk, f: impl Fn(usize) -> usize) {
    // SAFETY: our caller's contract is `swap_head`'s.
    unsafe { swap_head(c, f) };
}
/// Sets (`on`) or clears `SAMPLED` in the head word of `c` as
/// `update_head` does, inlined into its caller (the profiler's mark and a
/// sampled block's free: no call); returns the head word written, tag
/// included.
///
/// # Safety
/// As `update_head`.
#[inline(always)]
pub unsafe fn swap_sampled(c: *mut Chunk, on: bool) -> usize {
    // SAFETY: as `update_head`'s.
    unsafe { swap_head(c, |low| if on { low | SAMPLED } else { low & !SAMPLED }) }
}
/// The compare-and-swap of `update_head` and `swap_sampled`, the tag's
/// multiplier loaded once; returns the head word written.
///
/// # Safety
/// As `update_head`.
#[inline(always)]
unsafe fn swap_head(c: *mut Chunk, f: impl Fn(usize) -> usize) -> usize {
    use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    // SAFETY: the head word is aligned and ours to write (the contract);
    // every concurrent write of it is atomic too.
    let a = unsafe { AtomicUsize::from_ptr(core::ptr::addr_of_mut!((*c).head)) };
    let mul = crate::guard::tag_mul();
    let mut h = a.load(Relaxed);
    loop {
        let low = f(h & LOW_MASK);
        let new = low | tag_by(c, low, mul);
        match a.compare_exchange_weak(h, new, Relaxed, Relaxed) {
            Ok(_) => return new,
            Err(now) => h = now,
        }
    }
}
/// The physically next chunk.
///
/// # Safety
/// `c` is a readable chunk header with an intact size; the result is only
/// a header if `c` is not a sentinel.
#[inline(always)]
pub unsafe fn next(c: *const Chunk) -> *mut Chunk {
    (c as *mut u8).add(size(c)) as *mut Chunk
}
/// The physically previous chunk.
///
/// # Safety
/// `c` is a readable chunk header with PREV_FREE set, so that `prev_size`
/// holds the previous chunk's size.
#[inline(always)]
pub unsafe fn prev(c: *const Chunk) -> *mut Chunk {
    (c as *mut u8).sub((*c).prev_size) as *mut Chunk
}
#[inline(always)]
pub fn from_user(p: *mut u8) -> *mut Chunk {
    p.wrapping_sub(HDR) as *mut Chunk
}
#[inline(always)]
pub fn to_user(c: *mut Chunk) -> *mut u8 {
    (c as *mut u8).wrapping_add(HDR)
}
/// Usable bytes of an in-use heap chunk.
///
/// # Safety
/// `c` is a readable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn usable(c: *const Chunk) -> usize {
    size(c) - OVERHEAD
}
/// Marks `c` in use: clears FREE here and PREV_FREE on the next chunk.
///
/// # Safety
/// `c` and the chunk after it are writable chunk headers.
#[inline(always)]
pub unsafe fn mark_used(c: *mut Chunk) {
    clear_flags(c, FREE);
    clear_flags(next(c), PREV_FREE);
}
/// Marks `c` free: sets FREE here, the footer, and PREV_FREE on the next chunk.
///
/// # Safety
/// `c` and the chunk after it are writable chunk headers.
#[inline(always)]
pub unsafe fn mark_free(c: *mut Chunk) {
    set_flags(c, FREE);
    let n = next(c);
    (*n).prev_size = size(c);
    set_flags(n, PREV_FREE);
}
/// Is `c` a region sentinel (size 0)?
///
/// # Safety
/// `c` is a readable chunk header (see the contract above).
#[inline(always)]
pub unsafe fn is_sentinel(c: *const Chunk) -> bool {
    size(c) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tag_matches` answers as the tag's definition does, on whole words
    /// and on words with a bit of the size, the flags or the tag changed,
    /// and `tag_matches_in` never accepts what it rejects; the multiplier
    /// is a secret one (not the fallback) with its fixed bits, and random
    /// words (user data found by an interior pointer) pass about once in
    /// 2^16.
    #[test]
    fn tag_matches_agrees_with_the_tag() {
        crate::guard::init_secrets();
        let m = crate::guard::tag_mul();
        assert!(m & crate::guard::TAG_MUL_FIXED == crate::guard::TAG_MUL_FIXED);
        assert_ne!(m, crate::guard::TAG_MUL_FALLBACK);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rejected = 0;
        let mut forged = 0;
        for i in 0..100_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = ((x as usize) & 0x7fff_ffff_fff0) as *const Chunk;
            let low = ((x >> 20) as usize & SIZE_MASK) | (i & FLAGS);
            let h = low | tag(c, low);
            assert!(tag_matches(c, h));
            let bad = h ^ (1 << (i % 64));
            let exact = tag(c, bad & LOW_MASK) == bad & !LOW_MASK;
            assert_eq!(tag_matches(c, bad), exact);
            assert!(!tag_matches_in(c as usize + HDR, bad, &m) || exact);
            rejected += !tag_matches_in(c as usize + HDR, h, &m) as u32;
            forged += tag_matches(c, x.rotate_left(29) as usize) as u32;
        }
        assert!(forged < 8, "{forged} random words passed");
        assert!(rejected < 2, "{rejected} good words missed");
    }
    /// `swap_sampled` writes the head word `set_head` would, its tag
    /// included, with `SAMPLED` set and cleared (its tag was once computed
    /// by a formula of its own, and the profiler's every sampled free then
    /// read as a corrupted header).
    #[test]
    fn swap_sampled_writes_the_tag() {
        crate::guard::init_secrets();
        for size in [32usize, 4096, 1 << 20] {
            let mut c = Chunk {
                prev_size: 0,
                head: 0,
                next_free: core::ptr::null_mut(),
                prev_free: core::ptr::null_mut(),
            };
            let p = core::ptr::addr_of_mut!(c);
            // SAFETY: `p` is a local chunk header, written and read here only.
            unsafe {
                set_head(p, size | MARK);
                let on = swap_sampled(p, true);
                assert_eq!(on, (*p).head);
                assert_eq!(on & LOW_MASK, size | MARK | SAMPLED);
                assert!(head_ok(p), "sampled word's tag");
                let off = swap_sampled(p, false);
                assert_eq!(off & LOW_MASK, size | MARK);
                assert!(head_ok(p), "cleared word's tag");
            }
        }
    }
}
